"""The user's kubeconfig contexts and their namespaces, read without a YAML library.

Blender's Python has no YAML parser and the add-on ships none: kubeconfigs written by kubectl
(and by every cloud's CLI) are block-style YAML, whose `contexts:` list this reads line by line.
Anything else (flow style, anchors) yields no context, and the panel then offers only the
kubeconfig's current context, which `kubectl render` resolves itself.
"""
import os


def path(override=""):
    """The kubeconfig kubectl uses: the override, else the first file of $KUBECONFIG, else
    ~/.kube/config."""
    if override:
        return os.path.expanduser(override)
    env = os.environ.get("KUBECONFIG", "")
    for p in env.split(os.pathsep):
        if p:
            return p
    return os.path.join(os.path.expanduser("~"), ".kube", "config")


def _value(line):
    value = line.split(":", 1)[1].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def parse(text):
    """(current context, [(context name, namespace or "")]) of a kubeconfig's text."""
    current = ""
    contexts = []
    in_contexts = False
    item = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        top_level = not line[0].isspace() and not line.startswith("-")
        if top_level:
            in_contexts = line.startswith("contexts:")
            if line.startswith("current-context:"):
                current = _value(line)
            continue
        if not in_contexts:
            continue
        stripped = line.lstrip()
        if stripped.startswith("- "):
            item = {"name": "", "namespace": ""}
            contexts.append(item)
            stripped = stripped[2:].lstrip()
        key = stripped.split(":", 1)[0]
        if item is not None and key in ("name", "namespace") and ":" in stripped:
            item[key] = _value(stripped)
    return current, [(c["name"], c["namespace"]) for c in contexts if c["name"]]


def read(override=""):
    """parse() of the kubeconfig file; nothing when it cannot be read."""
    try:
        with open(path(override), encoding="utf-8") as f:
            return parse(f.read())
    except OSError:
        return "", []
