#!/usr/bin/env bash
# Static and server-side checks of the Helm chart (needs helm and a cluster in $KUBECONFIG):
# lint, render every option and validate the objects on the real API server, and refuse values
# of the wrong type through values.schema.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHART=charts/renderfarm
# helm template assumes an old cluster unless told; use the one we talk to.
KUBE_VERSION=$(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[0-9.]*\)".*/\1/p' | tail -n 1)
fail() { echo "chart-test: $*" >&2; exit 1; }

cmp -s crds/renderjob.yaml "$CHART/crds/renderjob.yaml" || fail "chart CRD differs from crds/renderjob.yaml"
helm lint --strict "$CHART"
helm lint --strict "$CHART" --set watchNamespace=studio --set storage.create=true \
  --set metrics.serviceMonitor.enabled=true --set grafanaDashboard.enabled=true --set networkPolicy.enabled=true

# kubeconform, strict, with schemas made from this API server's own OpenAPI document (nothing
# is downloaded) and the RenderJob schema from the CRD, through kubeconform's own script.
KUBECONFORM_VERSION=v0.8.0
KC_BIN=${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}/bin/kubeconform-$KUBECONFORM_VERSION
if [[ ! -x $KC_BIN/kubeconform ]]; then
  GOMODCACHE=${GOMODCACHE:-${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}/gomod} GOBIN=$KC_BIN \
    go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
fi
SCHEMAS=$(mktemp -d)
trap 'rm -rf "$SCHEMAS"' EXIT
kubectl get --raw /openapi/v2 | python3 hack/k8s-schemas.py "$SCHEMAS" Deployment Service ServiceAccount \
  ClusterRole ClusterRoleBinding Role RoleBinding PersistentVolume PersistentVolumeClaim NetworkPolicy \
  ConfigMap CustomResourceDefinition ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding
O2J=$(GOMODCACHE=${GOMODCACHE:-${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}/gomod} \
  go list -m -f '{{.Dir}}' "github.com/yannh/kubeconform@$KUBECONFORM_VERSION" 2>/dev/null || true)
(cd "$SCHEMAS" && FILENAME_FORMAT='{kind}-{group}-{version}' /usr/bin/python3 "$O2J/scripts/openapi2jsonschema.py" \
  "$OLDPWD/crds/renderjob.yaml" >/dev/null)
kubeconform() {
  "$KC_BIN/kubeconform" -strict -summary -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}
kubeconform crds/renderjob.yaml examples/renderjob.yaml examples/gpu-renderjob.yaml

# Every template, both RBAC modes and both storage types: kubeconform, then the API server's
# own validation (server-side dry run).
kubectl apply --server-side -f crds/renderjob.yaml >/dev/null
kubectl create namespace chart-test --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for values in "" \
  "--set watchNamespace=chart-test --set storage.create=true --set storage.type=hostPath --set networkPolicy.enabled=true --set grafanaDashboard.enabled=true" \
  "--set storage.create=true --set storage.type=storageClass" \
  "--set batchNetworkPolicy.namespaces={chart-test} --set batchNetworkPolicy.dns=true --set batchNetworkPolicy.egress[0].cidr=10.0.0.5/32 --set batchNetworkPolicy.egress[0].ports[0].port=27000 --set batchNetworkPolicy.egress[0].ports[0].endPort=27009 --set batchNetworkPolicy.egress[1].cidr=0.0.0.0/0 --set batchNetworkPolicy.egress[1].except={169.254.169.254/32}" \
  "--set batchNetworkPolicy.enabled=false"; do
  # shellcheck disable=SC2086 # word splitting of the value flags is intended
  helm template rf "$CHART" --namespace chart-test --kube-version "$KUBE_VERSION" $values >"$SCHEMAS/chart.yaml"
  kubeconform "$SCHEMAS/chart.yaml" || fail "kubeconform refused the chart with: ${values:-defaults}"
  kubectl apply --dry-run=server -f "$SCHEMAS/chart.yaml" >/dev/null \
    || fail "server-side validation failed for: ${values:-defaults}"
  echo "chart-test: API server accepts the chart with ${values:-default values}"
done

# The values schema refuses wrong types with a clear message.
for bad in "replicaCount=two" "logFormat=xml" "metrics.port=99999" "storage.type=nfs" \
  "batchNetworkPolicy.egress[0].cidr=10.0.0.5"; do
  if out=$(helm template rf "$CHART" --set "$bad" 2>&1); then
    fail "values $bad were accepted"
  fi
  grep -q "values don't meet the specifications of the schema" <<<"$out" || fail "unclear error for $bad: $out"
  echo "chart-test: refused $bad: $(grep -m1 -E 'replicaCount|logFormat|port|type|cidr' <<<"$out" | sed 's/^ *//')"
done

# The examples are valid RenderJobs.
kubectl apply --dry-run=server -f examples/renderjob.yaml -f examples/gpu-renderjob.yaml -n chart-test
kubectl delete namespace chart-test --wait=false >/dev/null
echo "chart-test: ok"
