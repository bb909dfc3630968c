#!/usr/bin/env bash
# Static and server-side checks of the Helm chart (needs helm and a cluster in $KUBECONFIG):
# lint, render every option and validate the objects on the real API server, and refuse values
# of the wrong type through values.schema.json.
# Each check counts; a failed one does not stop the others. The last line says
# `chart-test: N passed, M failed` (hack/test.sh counts it); the exit status is non-zero when a
# check failed or a step the checks need did.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHART=charts/renderfarm
PASS=0 FAIL=0
SCHEMAS=$(mktemp -d)
summary() {
  local rc=$?
  rm -rf "$SCHEMAS"
  # A step the checks need failed (set -e, or die): one more failure.
  if ((rc != 0 && FAIL == 0)); then FAIL=1; fi
  echo "chart-test: $PASS passed, $FAIL failed"
  ((FAIL == 0)) || exit 1
}
trap summary EXIT
ok() {
  PASS=$((PASS + 1))
  echo "chart-test: ok: $*"
}
bad() {
  FAIL=$((FAIL + 1))
  echo "chart-test: FAILED: $*" >&2
}
die() {
  bad "$@"
  exit 1
}
# check WHAT CMD...: one check, passed when CMD exits 0; its output shows only when it failed.
check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$what"; else bad "$what: $out"; fi
}
# helm template assumes an old cluster unless told; use the one we talk to.
KUBE_VERSION=$(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[0-9.]*\)".*/\1/p' | tail -n 1)
[[ -n $KUBE_VERSION ]] || die "no cluster to ask for its version (KUBECONFIG?)"

check "the chart's CRD is crds/renderjob.yaml" cmp crds/renderjob.yaml "$CHART/crds/renderjob.yaml"
check "helm lint --strict, default values" helm lint --strict "$CHART"
check "helm lint --strict, every option on" helm lint --strict "$CHART" --set watchNamespace=studio \
  --set storage.create=true --set metrics.serviceMonitor.enabled=true \
  --set grafanaDashboard.enabled=true --set networkPolicy.enabled=true \
  --set metrics.prometheusRule.enabled=true
# The alert rules, as Prometheus reads them, and their unit tests (promtool, from Debian's
# prometheus package): each alert fires on the series it is for, and only then.
check "promtool check rules" promtool check rules "$CHART/alerts/renderfarm.rules.yaml"
check "promtool test rules" promtool test rules "$CHART/alerts/renderfarm.rules.test.yaml"

# kubeconform, strict, with schemas made from this API server's own OpenAPI document (nothing
# is downloaded) and the RenderJob schema from the CRD, through kubeconform's own script.
KUBECONFORM_VERSION=v0.8.0
KC_BIN=${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}/bin/kubeconform-$KUBECONFORM_VERSION
if [[ ! -x $KC_BIN/kubeconform ]]; then
  GOMODCACHE=${GOMODCACHE:-${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}/gomod} GOBIN=$KC_BIN \
    go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
fi
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
check "kubeconform: the CRD and the examples" kubeconform crds/renderjob.yaml examples/renderjob.yaml \
  examples/gpu-renderjob.yaml

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
  helm template rf "$CHART" --namespace chart-test --kube-version "$KUBE_VERSION" $values >"$SCHEMAS/chart.yaml" ||
    die "helm template failed with: ${values:-default values}"
  check "kubeconform accepts the chart with ${values:-default values}" kubeconform "$SCHEMAS/chart.yaml"
  check "the API server accepts the chart with ${values:-default values}" \
    kubectl apply --dry-run=server -f "$SCHEMAS/chart.yaml"
done

# The values schema refuses wrong types with a clear message.
for bad in "replicaCount=two" "logFormat=xml" "metrics.port=99999" "storage.type=nfs" \
  "batchNetworkPolicy.egress[0].cidr=10.0.0.5"; do
  if out=$(helm template rf "$CHART" --set "$bad" 2>&1); then
    bad "values $bad were accepted"
  elif ! grep -q "values don't meet the specifications of the schema" <<<"$out"; then
    bad "unclear error for $bad: $out"
  else
    ok "refused $bad: $(grep -m1 -E 'replicaCount|logFormat|port|type|cidr' <<<"$out" | sed 's/^ *//')"
  fi
done

# The examples are valid RenderJobs.
check "the API server accepts the examples" kubectl apply --dry-run=server -f examples/renderjob.yaml \
  -f examples/gpu-renderjob.yaml -n chart-test
kubectl delete namespace chart-test --wait=false >/dev/null
