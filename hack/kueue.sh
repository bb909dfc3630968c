#!/usr/bin/env bash
# Kueue (sigs.k8s.io/kueue) as a local process against the local control plane
# (hack/cluster.sh): its CRDs installed from the Go module, its webhooks served on 127.0.0.1
# with a certificate made here and registered with `url:` and `caBundle`. See hack/README.md.
#
#   hack/kueue.sh build       build the kueue manager binary (skipped when already cached)
#   hack/kueue.sh up          build, install the CRDs, start it, register its webhooks; idempotent
#   hack/kueue.sh down        unregister the webhooks and stop it
#   hack/kueue.sh status      whether it runs
#   hack/kueue.sh kind        on the kind lane's cluster (hack/kind.sh up first): the binary in
#                             an image (hack/kueue/Dockerfile), kind load, and the module's own
#                             Helm chart installed with that image
#   hack/kueue.sh kind-down   uninstall it from the kind cluster (its CRDs stay)
#   hack/kueue.sh path        print the binary's path
#
# Environment: as hack/cluster.sh (RENDERFARM_CLUSTER_DIR, RENDERFARM_CACHE,
# RENDERFARM_PORT_OFFSET): Kueue runs beside the cluster those name.
set -euo pipefail

OFFSET=${RENDERFARM_PORT_OFFSET:-0}
WEBHOOK_PORT=$((16447 + OFFSET))
HEALTH_PORT=$((16448 + OFFSET))
METRICS_PORT=$((16449 + OFFSET))

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$(realpath -m "${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}")
STATE=$(realpath -m "${RENDERFARM_CLUSTER_DIR:-$CACHE/cluster}")
KDIR=$STATE/kueue # certificates, config, log, pid
# The version is in hack/tools/kueue/go.mod (a `tool` directive and its require), like the
# tools of hack/cluster.sh; its module cache and build cache too.
MODDIR=$HACK/tools/kueue
export GOMODCACHE=${RENDERFARM_GOMODCACHE:-$CACHE/gomod}
export GOCACHE=${GOCACHE:-$HOME/.cache/go-build}
export GOWORK=off # each wrapper module alone decides its versions, whatever go.work is around
# Webhook configurations are cluster-wide: one name per Kueue (per port offset).
HOOKS=renderfarm-kueue-$OFFSET

log() { printf '[kueue %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

command -v go >/dev/null || die "Go is required (1.26+)"
KUEUE_VERSION=$(cd "$MODDIR" && go list -mod=readonly -m -f '{{.Version}}' sigs.k8s.io/kueue) ||
  die "could not read the version of sigs.k8s.io/kueue from hack/tools/kueue/go.mod"
KUEUE_BIN=$CACHE/bin/kueue-$KUEUE_VERSION

# The module's source directory (downloaded into the module cache once): CRDs, webhooks, chart.
module_dir() {
  local dir
  dir=$(cd "$MODDIR" && go mod download sigs.k8s.io/kueue &&
    go list -mod=readonly -m -f '{{.Dir}}' sigs.k8s.io/kueue)
  [[ -d $dir ]] || die "could not download sigs.k8s.io/kueue $KUEUE_VERSION"
  printf '%s' "$dir"
}

# build: as hack/cluster.sh builds its tools (go build in the wrapper module), under the same
# build lock. Static (CGO off): the binary also goes into an image of its own for kind.
build() {
  [[ -x $KUEUE_BIN/kueue ]] && return 0
  mkdir -p "$KUEUE_BIN"
  exec 9>"$CACHE/bin/.build.lock"
  flock 9
  if [[ ! -x $KUEUE_BIN/kueue ]]; then
    local t
    t=$(now)
    log "building kueue $KUEUE_VERSION ..."
    (cd "$MODDIR" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" \
      -o "$KUEUE_BIN/.kueue.tmp" sigs.k8s.io/kueue/cmd/kueue)
    mv "$KUEUE_BIN/.kueue.tmp" "$KUEUE_BIN/kueue"
    log "built kueue in $(since "$t")s"
  fi
  flock -u 9
  exec 9>&-
}

kube() { "$K8S_KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

load_cluster() {
  local bins
  bins=$("$HACK/cluster.sh" bins)
  K8S_KUBECTL=$(sed -n 's/^kubectl=//p' <<<"$bins")
  KUBECONFIG_FILE=$STATE/clusters/renderfarm/kubeconfig.yaml
  [[ -f $KUBECONFIG_FILE ]] || die "no cluster at $STATE: run hack/cluster.sh up first"
}

pid_of() {
  local pid
  [[ -f $KDIR/kueue.pid ]] || return 1
  pid=$(<"$KDIR/kueue.pid")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$KDIR/" && echo "$pid"
}

# certs: a CA and a serving certificate for 127.0.0.1 (the API server calls the webhooks there).
# Kueue's own certificate manager wants a Service and a Secret in-cluster, so it is off.
certs() {
  [[ -f $KDIR/certs/tls.crt ]] && return 0
  mkdir -p "$KDIR/certs"
  local d=$KDIR/certs
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=renderfarm-kueue-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/tls.key" -out "$d/tls.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
  openssl x509 -req -in "$d/tls.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/ext.cnf" -out "$d/tls.crt" 2>/dev/null
}

config() {
  cat >"$KDIR/config.yaml" <<EOF
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health:
  healthProbeBindAddress: 127.0.0.1:$HEALTH_PORT
metrics:
  bindAddress: 127.0.0.1:$METRICS_PORT
webhook:
  host: 127.0.0.1
  port: $WEBHOOK_PORT
  certDir: $KDIR/certs
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
manageJobsWithoutQueueName: false
integrations:
  frameworks:
  - batch/job
fairSharing:
  preemptionStrategies: [LessThanOrEqualToFinalShare, LessThanInitialShare]
# Fair sharing between the LocalQueues of one ClusterQueue (with its admissionScope set):
# usage sampled every second and forgotten quickly, so a short test sees it.
admissionFairSharing:
  usageHalfLifeTime: 30s
  usageSamplingInterval: 1s
EOF
}

# webhooks: the module's webhook manifests, only those of the kinds served (Jobs and Kueue's
# own), pointed at 127.0.0.1. Job webhooks see only Jobs that name a queue, so Jobs outside
# Kueue are never held up by it (and a stopped Kueue blocks no one else's Jobs).
webhooks() {
  local src=$1 ca
  ca=$(base64 -w0 <"$KDIR/certs/ca.crt")
  python3 - "$src/config/components/webhook/manifests.yaml" "$ca" "$WEBHOOK_PORT" "$HOOKS" <<'EOF' >"$KDIR/webhooks.yaml"
import sys, yaml
path, ca, port, name = sys.argv[1:]
keep = ("-batch-v1-job", "-kueue-x-k8s-io-")
out = []
for doc in yaml.safe_load_all(open(path)):
    if not doc:
        continue
    doc["metadata"] = {"name": f"{name}-{doc['kind'].lower()}",
                       "labels": {"renderfarm.io/kueue": name}}
    hooks = []
    for h in doc["webhooks"]:
        p = h["clientConfig"]["service"]["path"]
        if not any(k in p for k in keep):
            continue
        h["clientConfig"] = {"url": f"https://127.0.0.1:{port}{p}", "caBundle": ca}
        if p.endswith("-batch-v1-job"):
            h["objectSelector"] = {"matchExpressions": [
                {"key": "kueue.x-k8s.io/queue-name", "operator": "Exists"}]}
        hooks.append(h)
    doc["webhooks"] = hooks
    out.append(doc)
yaml.safe_dump_all(out, sys.stdout)
EOF
}

up() {
  build
  load_cluster
  mkdir -p "$KDIR"
  local src t0
  t0=$(now)
  src=$(module_dir)
  if [[ -z $(pid_of || true) ]]; then
    # Webhooks of a Kueue that is gone would refuse its objects: off until it answers.
    kube delete mutatingwebhookconfiguration,validatingwebhookconfiguration \
      -l renderfarm.io/kueue="$HOOKS" --ignore-not-found >/dev/null
    local f
    for f in "$src"/config/components/crd/bases/kueue.x-k8s.io_*.yaml; do
      kube apply --server-side --force-conflicts -f "$f" >/dev/null
    done
    # A hand-written wait, not `kubectl wait --for condition=Established`: that fails at once
    # ("accessor error: <nil>") on a CRD created so recently that it has no conditions yet.
    local crd i
    for crd in workloads clusterqueues localqueues resourceflavors workloadpriorityclasses; do
      for i in $(seq 1 60); do
        [[ $(kube get "crd/$crd.kueue.x-k8s.io" \
          -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null) == True ]] && break
        [[ $i -lt 60 ]] || die "CRD $crd.kueue.x-k8s.io not established"
        sleep 0.5
      done
    done
    kube create namespace kueue-system --dry-run=client -o yaml | kube apply -f - >/dev/null
    certs
    config
    # Without its internal certificate manager, Kueue reads the metrics server's certificate
    # from this fixed path (cmd/kueue/main.go); the same 127.0.0.1 certificate serves.
    if ! cmp -s "$KDIR/certs/tls.crt" /etc/kueue/metrics/certs/tls.crt 2>/dev/null; then
      mkdir -p /etc/kueue/metrics/certs || die "Kueue needs /etc/kueue/metrics/certs (run as root)"
      cp "$KDIR/certs/tls.crt" "$KDIR/certs/tls.key" /etc/kueue/metrics/certs/
    fi
    log "starting kueue (webhooks on 127.0.0.1:$WEBHOOK_PORT, log $KDIR/kueue.log)"
    KUBECONFIG=$KUBECONFIG_FILE setsid "$KUEUE_BIN/kueue" --config "$KDIR/config.yaml" \
      --feature-gates=VisibilityOnDemand=false --zap-log-level=2 \
      >>"$KDIR/kueue.log" 2>&1 </dev/null &
    echo $! >"$KDIR/kueue.pid"
  fi
  local i
  for i in $(seq 1 120); do
    curl -fs "http://127.0.0.1:$HEALTH_PORT/readyz" >/dev/null 2>&1 && break
    # Alive by its pid, not pid_of: just after the fork its command line is still the shell's
    # (it said "kueue exited" of a Kueue that was starting, once).
    kill -0 "$(<"$KDIR/kueue.pid")" 2>/dev/null || die "kueue exited: $(tail -5 "$KDIR/kueue.log")"
    sleep 0.5
    [[ $i -lt 120 ]] || die "kueue not ready after 60 s: $(tail -5 "$KDIR/kueue.log")"
  done
  webhooks "$src"
  kube apply --server-side --force-conflicts -f "$KDIR/webhooks.yaml" >/dev/null
  # Ready when its webhooks answer: a server-side dry run of a ResourceFlavor goes through both.
  for i in $(seq 1 60); do
    if kube create --dry-run=server -f - >/dev/null 2>&1 <<EOF; then
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata:
  name: renderfarm-probe
EOF
      log "kueue $KUEUE_VERSION up ($(since "$t0")s)"
      return 0
    fi
    sleep 0.5
  done
  die "kueue's webhooks do not answer: $(tail -5 "$KDIR/kueue.log")"
}

down() {
  load_cluster
  kube delete mutatingwebhookconfiguration,validatingwebhookconfiguration \
    -l renderfarm.io/kueue="$HOOKS" --ignore-not-found >/dev/null || true
  local pid
  pid=$(pid_of || true)
  if [[ -n $pid ]]; then
    kill "$pid"
    local i
    for i in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
    log "kueue stopped"
  fi
  rm -f "$KDIR/kueue.pid"
}

# kind: Kueue in the kind cluster, installed the way users install it (its Helm chart, here from
# the module download) but with an image built here, so no registry is needed.
kind_up() {
  build
  local bins src ctx kind_bin kubeconfig workers image=renderfarm/kueue:$KUEUE_VERSION
  local cluster=${KIND_CLUSTER:-renderfarm}
  bins=$("$HACK/cluster.sh" bins)
  kind_bin=$(sed -n 's/^kind=//p' <<<"$bins")
  K8S_HELM=$(sed -n 's/^helm=//p' <<<"$bins")
  K8S_KUBECTL=$(sed -n 's/^kubectl=//p' <<<"$bins")
  kubeconfig=$CACHE/kind/$cluster/kubeconfig
  [[ -f $kubeconfig ]] || die "no kind cluster $cluster: run hack/kind.sh up first"
  src=$(module_dir)
  ctx=$(mktemp -d)
  cp "$KUEUE_BIN/kueue" "$HACK/kueue/Dockerfile" "$ctx/"
  "$HACK/docker.sh" build -q -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
  workers=$("$kind_bin" get nodes --name "$cluster" | grep -v -- -control-plane | paste -sd,)
  "$kind_bin" load docker-image --name "$cluster" --nodes "$workers" "$image"
  "$K8S_HELM" upgrade --install kueue "$src/charts/kueue" --kubeconfig "$kubeconfig" \
    --namespace kueue-system --create-namespace \
    --set controllerManager.manager.image.repository=renderfarm/kueue \
    --set controllerManager.manager.image.tag="$KUEUE_VERSION" \
    --set controllerManager.manager.image.pullPolicy=IfNotPresent \
    --wait --timeout 300s
  log "kueue $KUEUE_VERSION on kind cluster $cluster"
}

kind_down() {
  local bins cluster=${KIND_CLUSTER:-renderfarm}
  bins=$("$HACK/cluster.sh" bins)
  "$(sed -n 's/^helm=//p' <<<"$bins")" uninstall kueue --namespace kueue-system \
    --kubeconfig "$CACHE/kind/$cluster/kubeconfig" --wait --ignore-not-found
}

status() {
  local pid
  pid=$(pid_of || true)
  if [[ -n $pid ]]; then
    printf 'kueue %s running (pid %s), webhooks https://127.0.0.1:%s\n' "$KUEUE_VERSION" "$pid" "$WEBHOOK_PORT"
  else
    printf 'kueue %s not running\n' "$KUEUE_VERSION"
    return 1
  fi
}

case ${1:-} in
  build) build ;;
  up) up ;;
  down) down ;;
  status) status ;;
  kind) kind_up ;;
  kind-down) kind_down ;;
  path) printf '%s\n' "$KUEUE_BIN/kueue" ;;
  *)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
