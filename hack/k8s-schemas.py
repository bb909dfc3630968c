"""Writes JSON schemas for kubeconform from a live API server's OpenAPI v2 document, for the
kinds asked for, named as kubeconform's {{ .ResourceKind }}{{ .KindSuffix }}.json expects.
Strict: objects allow no properties their schema does not name.

    kubectl get --raw /openapi/v2 | python3 hack/k8s-schemas.py OUT_DIR Kind...
"""
import json
import sys


def main():
    out, kinds = sys.argv[1], set(sys.argv[2:])
    doc = json.load(sys.stdin)
    defs = doc["definitions"]
    # Quantities and int-or-strings are written as either in manifests.
    for name, d in defs.items():
        if d.get("format") == "int-or-string" or name.endswith("api.resource.Quantity"):
            defs[name] = {"type": ["string", "number"]}

    def fix(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for v in node.values():
                fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(defs)
    written = 0
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if gvk["kind"] not in kinds:
                continue
            group = gvk["group"].split(".")[0]
            suffix = f"-{group}-{gvk['version']}" if group else f"-{gvk['version']}"
            schema = {"$ref": f"#/definitions/{name}", "definitions": defs}
            with open(f"{out}/{gvk['kind'].lower()}{suffix}.json", "w") as f:
                json.dump(schema, f)
            written += 1
    print(f"k8s-schemas: wrote {written} schemas for {len(kinds)} kinds", file=sys.stderr)


main()
