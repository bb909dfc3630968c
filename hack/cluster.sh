#!/usr/bin/env bash
# A real Kubernetes control plane as local processes on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, and kwok running fake nodes, started by kwokctl.
# Everything is built from Go modules and cached under $HOME/.cache/renderfarm. See
# hack/README.md.
#
#   hack/cluster.sh build             build the binaries (skipped when already cached)
#   hack/cluster.sh build-kind        also build what the kind lane needs (hack/kind.sh): kubelet,
#                                     kubeadm, kube-proxy, kind, crictl, CoreDNS
#   hack/cluster.sh bins              print NAME=PATH of every built binary (for other scripts)
#   hack/cluster.sh up                build, start, register the kwok nodes; idempotent
#   hack/cluster.sh down [--purge]    stop everything up started (--purge: delete the state dir)
#   hack/cluster.sh env               print exports: eval "$(hack/cluster.sh env)"
#   hack/cluster.sh status            what is running
#   hack/cluster.sh stage TEMPLATE [KEY=VALUE...]
#                                     fill a hack/kwok/ template's ${KEY}s and apply it
#   hack/cluster.sh evict NAMESPACE POD
#                                     POST an Eviction for a pod (kubectl has no evict)
#   hack/cluster.sh nodes NAME COUNT  COUNT more kwok nodes NAME-0... from hack/kwok/nodes.yaml,
#                                     Ready within 10 minutes (bench/envelope.sh)
#
# Environment: RENDERFARM_CLUSTER_DIR (state: certs, etcd data, logs, pids, kubeconfig;
# default $HOME/.cache/renderfarm/cluster), RENDERFARM_CACHE (binaries and Go modules;
# default $HOME/.cache/renderfarm), GOCACHE (default $HOME/.cache/go-build),
# RENDERFARM_PORT_OFFSET (added to every port; default 0, for a second cluster beside the first),
# RENDERFARM_KCM_QPS and RENDERFARM_KCM_BURST (kube-controller-manager's --kube-api-qps and
# --kube-api-burst; default 200 and 400, upstream's are 20 and 30; read at create only).
set -euo pipefail

# ---- ports, all on 127.0.0.1; RENDERFARM_PORT_OFFSET shifts them all (a second cluster) ----
OFFSET=${RENDERFARM_PORT_OFFSET:-0}
ETCD_PORT=$((23790 + OFFSET))
ETCD_PEER_PORT=$((23800 + OFFSET))
APISERVER_PORT=$((16443 + OFFSET))
KCM_PORT=$((16444 + OFFSET))
SCHED_PORT=$((16445 + OFFSET))
KWOK_PORT=$((16446 + OFFSET))

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$(realpath -m "${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}")
STATE=$(realpath -m "${RENDERFARM_CLUSTER_DIR:-$CACHE/cluster}")
export GOMODCACHE=${RENDERFARM_GOMODCACHE:-$CACHE/gomod}
export GOCACHE=${GOCACHE:-$HOME/.cache/go-build}
export GOWORK=off # each wrapper module alone decides its versions, whatever go.work is around
# Every binary static, as Kubernetes' own releases are: one cgo setting for all, so the kind
# lane's kubelet, kubeadm and kube-proxy reuse the packages the control plane's build compiled
# (a second setting compiles nearly every package again: the kubelet took 364 s cold, not ~60).
export CGO_ENABLED=0
SERVER=https://127.0.0.1:$APISERVER_PORT
KCM_QPS=${RENDERFARM_KCM_QPS:-200}
KCM_BURST=${RENDERFARM_KCM_BURST:-400}
DIR=$STATE/clusters/renderfarm # kwokctl's directory of the cluster named renderfarm
PKI=$DIR/pki
KUBECONFIG_FILE=$DIR/kubeconfig.yaml
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok-controller)
NODES=(kwok-node-0 kwok-node-1 kwok-node-2 kwok-gpu-0) # made by register_nodes

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- versions: each tool's is in the go.mod of its wrapper module, hack/tools/NAME (a `tool`
# directive and its require; see hack/README.md); the binaries' directories are named for it ----

# mod_version NAME MODULE: the version of MODULE that hack/tools/NAME/go.mod selects.
mod_version() {
  (cd "$HACK/tools/$1" && go list -mod=readonly -m -f '{{.Version}}' "$2") ||
    die "could not read the version of $2 from hack/tools/$1/go.mod"
}

command -v go >/dev/null || die "Go is required (1.26+)"
K8S_VERSION=$(mod_version k8s k8s.io/kubernetes)             # kube-*, kubectl, kubelet, kubeadm
ETCD_VERSION=$(mod_version etcd go.etcd.io/etcd/server/v3)  # Kubernetes 1.37's default is 3.7
KWOK_VERSION=$(mod_version kwok sigs.k8s.io/kwok)           # kwok and kwokctl
HELM_VERSION=$(mod_version helm helm.sh/helm/v3)
KIND_VERSION=$(mod_version kind sigs.k8s.io/kind)            # the kind lane (hack/kind.sh)
CRICTL_VERSION=$(mod_version crictl sigs.k8s.io/cri-tools)   # as kind's base image has
COREDNS_VERSION=$(mod_version coredns github.com/coredns/coredns) # what kubeadm deploys
K8S_BIN=$CACHE/bin/k8s-$K8S_VERSION
ETCD_BIN=$CACHE/bin/etcd-$ETCD_VERSION
KWOK_BIN=$CACHE/bin/kwok-$KWOK_VERSION
HELM_BIN=$CACHE/bin/helm-$HELM_VERSION
KIND_BIN=$CACHE/bin/kind-$KIND_VERSION
CRICTL_BIN=$CACHE/bin/crictl-$CRICTL_VERSION
COREDNS_BIN=$CACHE/bin/coredns-$COREDNS_VERSION

# ------------------------------------------------------------------------------------ build

# go_build NAME DIR TOOLS ARGS...: build one binary with `go build ARGS...` in the wrapper
# module hack/tools/TOOLS (its go.mod and go.sum decide every module's version) unless DIR/NAME
# exists; print the time.
go_build() {
  local name=$1 dir=$2 moddir=$HACK/tools/$3 t
  shift 3
  [[ -x $dir/$name ]] && return 0
  mkdir -p "$dir"
  t=$(now)
  log "building $name ..."
  (cd "$moddir" && go build -mod=readonly -trimpath -o "$dir/.$name.tmp" "$@")
  mv "$dir/.$name.tmp" "$dir/$name"
  log "built $name in $(since "$t")s"
}

# k8s_ldflags: the version stamps Kubernetes' own build sets (kubeadm and the kubelet check them).
k8s_ldflags() {
  local ld="-s -w" p minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  printf '%s' "$ld"
}

# build_kind: the kind lane's binaries, on top of build's. Static (CGO off, as all): they run in
# the kind node image and in images of their own.
build_kind() {
  build
  exec 9>"$CACHE/bin/.build.lock"
  flock 9
  local t0 p src
  t0=$(now)
  for p in kubelet kubeadm kube-proxy; do
    go_build "$p" "$K8S_BIN" k8s -ldflags "$(k8s_ldflags)" "k8s.io/kubernetes/cmd/$p"
  done
  go_build kind "$KIND_BIN" kind -ldflags "-s -w" sigs.k8s.io/kind
  go_build crictl "$CRICTL_BIN" crictl \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    sigs.k8s.io/cri-tools/cmd/crictl
  go_build coredns "$COREDNS_BIN" coredns -ldflags "-s -w" github.com/coredns/coredns
  # kind's base image files (entrypoint, systemd units, containerd config) for the node image.
  if [[ ! -d $KIND_BIN/base-files ]]; then
    src=$(cd "$HACK/tools/kind" && go mod download sigs.k8s.io/kind &&
      go list -mod=readonly -m -f '{{.Dir}}' sigs.k8s.io/kind)
    [[ -d $src ]] || die "no module directory for sigs.k8s.io/kind (hack/tools/kind)"
    cp -r "$src/images/base/files" "$KIND_BIN/.base-files.tmp"
    chmod -R u+w "$KIND_BIN/.base-files.tmp"
    mv "$KIND_BIN/.base-files.tmp" "$KIND_BIN/base-files"
  fi
  flock -u 9
  exec 9>&-
  log "kind lane binaries ready ($(since "$t0")s)"
}

bins() {
  local n
  for n in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kubeadm kube-proxy; do
    printf '%s=%q\n' "${n//-/_}" "$K8S_BIN/$n"
  done
  printf '%s=%q\n' etcd "$ETCD_BIN/etcd" kwok "$KWOK_BIN/kwok" helm "$HELM_BIN/helm" \
    kind "$KIND_BIN/kind" crictl "$CRICTL_BIN/crictl" coredns "$COREDNS_BIN/coredns" \
    kind_base_files "$KIND_BIN/base-files" k8s_version "$K8S_VERSION" etcd_version "$ETCD_VERSION" \
    kind_version "$KIND_VERSION"
}

build() {
  mkdir -p "$CACHE/bin"
  # One build at a time per cache: a second `build`/`up` waits for the first.
  exec 9>"$CACHE/bin/.build.lock"
  flock 9
  local t0 p
  t0=$(now)
  # Kubernetes: through the wrapper module (see hack/README.md), with version ldflags.
  for p in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    go_build "$p" "$K8S_BIN" k8s -ldflags "$(k8s_ldflags)" "k8s.io/kubernetes/cmd/$p"
  done
  # etcd: its server module's go.mod has replace directives, so a three-line wrapper main.
  go_build etcd "$ETCD_BIN" etcd -ldflags "-s -w" .
  for p in kwok kwokctl; do
    go_build "$p" "$KWOK_BIN" kwok -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/$p"
  done
  local hv=helm.sh/helm/v3/internal/version
  go_build helm "$HELM_BIN" helm -ldflags "-s -w -X $hv.version=$HELM_VERSION -X $hv.gitTreeState=clean" \
    helm.sh/helm/v3/cmd/helm
  flock -u 9
  exec 9>&-
  log "binaries ready ($(since "$t0")s): $K8S_BIN, $ETCD_BIN, $KWOK_BIN, $HELM_BIN"
}

# ------------------------------------------------------------------------- running: kwokctl

# kwokctl (kwok's own cluster runner, the `binary` runtime) starts the components from the
# binaries built above, with its certificates and kubeconfig; it never downloads anything when
# every binary is given. Its cluster directory is $DIR: pids/, logs/, pki/, etcd/, kubeconfig.yaml.
kwokctl() { KWOK_WORKDIR=$STATE "$KWOK_BIN/kwokctl" --name renderfarm "$@"; }

pid_of() {
  local f=$DIR/pids/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" && echo "$pid"
}

running() { pid_of "$1" >/dev/null; }

# fail_with_log WHAT [LOG]: say WHAT failed, print the end of its log, exit.
fail_with_log() {
  local f=${2:-$DIR/logs/$1.log}
  log "$1 did not come up; the end of $f:"
  tail -n 40 "$f" >&2 || true
  exit 1
}

# settles SECS CMD...: whether CMD succeeds within SECS seconds.
settles() {
  local secs=$1 t
  shift
  t=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) - t < secs)) || return 1
    sleep 0.25
  done
}

# up_or_gone COMPONENT COMMAND...: COMMAND succeeds, or there is no COMPONENT left to wait for.
# shellcheck disable=SC2317 # called through settles
up_or_gone() {
  local what=$1
  shift
  "$@" || ! running "$what"
}

# wait_for COMPONENT SECONDS COMMAND...: until COMMAND succeeds; fails early if COMPONENT died.
wait_for() {
  local what=$1 secs=$2
  shift 2
  { settles "$secs" up_or_gone "$what" "$@" && running "$what"; } || fail_with_log "$what"
}

# Stops kwok-controller and has kwokctl start it again (it starts what is not running).
restart_kwok() {
  local pid
  if pid=$(pid_of kwok-controller); then
    kill "$pid" 2>/dev/null || true
    settles 10 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/pids/kwok-controller.pid"
  kwokctl start cluster >>"$STATE/kwokctl.log" 2>&1 || fail_with_log kwokctl "$STATE/kwokctl.log"
}

curl_admin() { curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }

kctl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# arg KEY VALUE: a component's extra --KEY=VALUE in write_config.
arg() { printf '  - {key: %s, value: "%s"}\n' "$1" "$2"; }

# The cluster's configuration: kwokctl's defaults changed where the tests or the benchmarks
# need Kubernetes' own behaviour (timings, leader election off, kwok only on annotated nodes) or
# more throughput (Job syncs, client QPS, API server in-flight limits). Read at `create` only.
write_config() {
  cat <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeApiserverPort: $APISERVER_PORT
  kubeControllerManagerPort: $KCM_PORT
  kubeSchedulerPort: $SCHED_PORT
  kwokControllerPort: $KWOK_PORT
  etcdPort: $ETCD_PORT
  etcdPeerPort: $ETCD_PEER_PORT
  kubeVersion: $K8S_VERSION
  etcdVersion: ${ETCD_VERSION#v}
  kubeApiserverBinary: $K8S_BIN/kube-apiserver
  kubeControllerManagerBinary: $K8S_BIN/kube-controller-manager
  kubeSchedulerBinary: $K8S_BIN/kube-scheduler
  kubectlBinary: $K8S_BIN/kubectl
  etcdBinary: $ETCD_BIN/etcd
  kwokControllerBinary: $KWOK_BIN/kwok
  kubeAuditPolicy: $HACK/kwok/audit-policy.yaml
  kubeApiserverCertSANs: [10.96.0.1]
  enableCRDs: [Stage]
  etcdQuotaBackendSize: 4Gi
  heartbeatFactor: 1
componentsPatches:
- name: etcd
  extraArgs:
$(arg unsafe-no-fsync true; arg log-level warn)
- name: kube-apiserver
  extraArgs:
$(arg advertise-address 127.0.0.1; arg endpoint-reconciler-type none
  arg service-cluster-ip-range 10.96.0.0/16; arg max-requests-inflight 800
  arg max-mutating-requests-inflight 400; arg audit-log-maxsize 500; arg audit-log-maxbackup 2)
- name: kube-controller-manager
  extraArgs:
$(arg leader-elect false; arg use-service-account-credentials true
  arg service-cluster-ip-range 10.96.0.0/16; arg concurrent-job-syncs 20
  arg kube-api-qps "$KCM_QPS"; arg kube-api-burst "$KCM_BURST")
- name: kube-scheduler
  extraArgs:
$(arg leader-elect false; arg kube-api-qps 200; arg kube-api-burst 400)
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: node-ip, value: 127.0.0.1, override: true}
$(arg manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake)
EOF
}

# register_nodes: the kwok nodes, made by kwokctl from the template in hack/kwok/nodes.yaml
# (NAME-0, NAME-1, ...; it makes only those missing, so a second run does nothing).
register_nodes() {
  {
    kwokctl -c "$HACK/kwok/nodes.yaml" scale node kwok-node --replicas 3 --serial-length 1 &&
      kwokctl -c "$HACK/kwok/nodes.yaml" scale node kwok-gpu --replicas 1 --serial-length 1 \
        --param '.gpus = 4'
  } >>"$STATE/kwokctl.log" 2>&1 || fail_with_log kwokctl "$STATE/kwokctl.log"
}

# more_nodes NAME COUNT: COUNT kwok nodes NAME-0..., as register_nodes makes its own.
more_nodes() {
  [[ ${2:-} =~ ^[0-9]+$ ]] || die "usage: nodes NAME COUNT"
  kwokctl -c "$HACK/kwok/nodes.yaml" scale node "$1" --replicas "$2" >>"$STATE/kwokctl.log" 2>&1 ||
    fail_with_log kwokctl "$STATE/kwokctl.log"
  kctl wait --for condition=Ready --timeout 600s nodes -l "kwok.x-k8s.io/kwokctl-scale=$1" >/dev/null ||
    fail_with_log kwok-controller
}

# nodes_ready SECS: every node in NODES is Ready within SECS seconds (0: as they are now).
nodes_ready() {
  kctl wait --for condition=Ready --timeout "${1}s" "${NODES[@]/#/node/}" >/dev/null 2>&1
}

healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do running "$c" || return 1; done
  curl_admin "$SERVER/readyz" >/dev/null 2>&1 && nodes_ready 0
}

up() {
  local t0 t1 c p kwok_was_up=
  t0=$(now)
  build
  t1=$(now)
  if healthy; then
    # Edits to the stages take effect without a restart.
    kctl apply --server-side --force-conflicts -f "$HACK/kwok/stages.yaml" >/dev/null
    log "already up and healthy: $SERVER, KUBECONFIG=$KUBECONFIG_FILE"
    return 0
  fi
  [[ ! -e $STATE/run || -L $STATE/run ]] || die "$STATE is from an older cluster.sh: hack/cluster.sh down --purge"
  mkdir -p "$STATE"
  chmod 0700 "$STATE"
  running kwok-controller && kwok_was_up=1
  # A port held by something else would have kwokctl wait minutes for a component that cannot
  # start: say so now.
  local -A port_of=([etcd]="$ETCD_PORT $ETCD_PEER_PORT" [kube-apiserver]=$APISERVER_PORT
    [kube-controller-manager]=$KCM_PORT [kube-scheduler]=$SCHED_PORT [kwok-controller]=$KWOK_PORT)
  for c in "${COMPONENTS[@]}"; do
    running "$c" && continue
    for p in ${port_of[$c]}; do
      ! ss -Htln "sport = :$p" | grep -q . ||
        die "port 127.0.0.1:$p (for $c) is in use: $(ss -Htlnp "sport = :$p" | head -1)"
    done
  done
  if [[ -f $DIR/kwok.yaml ]]; then
    # A cluster made before: start what is not running, as it was created. kwokctl counts a
    # pid as running while it answers kill -0, which a killed component not yet reaped (a
    # zombie) or a reused pid does.
    cmp -s <(write_config) "$STATE/kwokctl.yaml" ||
      log "warning: the configuration in cluster.sh changed; it applies after down --purge"
    for c in "${COMPONENTS[@]}"; do running "$c" || rm -f "$DIR/pids/$c.pid"; done
    kwokctl start cluster >>"$STATE/kwokctl.log" 2>&1 || fail_with_log kwokctl "$STATE/kwokctl.log"
  else
    write_config >"$STATE/kwokctl.yaml"
    kwokctl --config "$STATE/kwokctl.yaml" create cluster --kubeconfig '' >>"$STATE/kwokctl.log" 2>&1 ||
      fail_with_log kwokctl "$STATE/kwokctl.log"
  fi
  # The pid files where the e2e tests look for them (restart.rs, watch.rs).
  ln -sfn "clusters/renderfarm/pids" "$STATE/run"
  wait_for kube-apiserver 180 curl_admin "$SERVER/readyz"
  # A new kwok waits for the Leases an earlier one held to expire (40 s, as long as the node
  # monitor's grace period) before it renews them: drop them so it takes over at once.
  [[ -n $kwok_was_up ]] || kctl -n kube-node-lease delete lease --ignore-not-found "${NODES[@]}" >/dev/null
  kctl wait --for condition=Established --timeout 60s crd/stages.kwok.x-k8s.io >/dev/null
  kctl apply --server-side --force-conflicts -f "$HACK/kwok/stages.yaml" >/dev/null
  wait_for kube-controller-manager 120 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for kube-scheduler 120 curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"
  kctl wait --for create --timeout 120s -n default serviceaccount/default >/dev/null ||
    fail_with_log kube-controller-manager
  register_nodes
  # A kwok-controller that never starts its stage controllers (seen once on a fresh cluster:
  # its log stopped after "Starting HTTP server" and no node got Ready) is started again,
  # once, instead of failing the run after two minutes.
  if ! nodes_ready 45; then
    log "kwok-controller: not every node Ready after 45 s; starting it again (its log: $DIR/logs/kwok-controller.log)"
    restart_kwok
  fi
  nodes_ready 120 || fail_with_log kwok-controller
  log "up: build $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s, start $(since "$t1")s; API server $SERVER"
  log "  KUBECONFIG=$KUBECONFIG_FILE; eval \"\$(hack/cluster.sh env)\""
}

# ----------------------------------------------------------------------------------- down

down() {
  if [[ -f $DIR/kwok.yaml ]] && ! kwokctl stop cluster >>"$STATE/kwokctl.log" 2>&1; then
    log "kwokctl stop failed (see $STATE/kwokctl.log); stopping the processes"
  fi
  # A component whose pid file was lost: any process running one of our binaries with this
  # state dir on its command line.
  local pid left=()
  for pid in $(pgrep -f -- "$STATE/" || true); do
    case $(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)") in
      etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kwok) left+=("$pid") ;;
    esac
  done
  if ((${#left[@]})); then
    log "stopping stray processes ${left[*]}"
    kill -9 "${left[@]}" 2>/dev/null || true
  fi
  if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
    log "stopped; deleted $STATE"
  else
    log "stopped (state kept in $STATE)"
  fi
}

status() {
  local c any=1
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then
      printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"
      any=0
    else
      printf '%-24s stopped\n' "$c"
    fi
  done
  if ((any == 0)) && curl_admin "$SERVER/readyz" >/dev/null 2>&1; then
    echo "api server: ready at $SERVER; KUBECONFIG=$KUBECONFIG_FILE"
    kctl get nodes -l type=kwok 2>/dev/null || true
  else
    echo "api server: not ready"
  fi
}

# ------------------------------------------------------------------------ stage, evict, env

# stage TEMPLATE KEY=VALUE...: fill ${KEY} placeholders of hack/kwok/TEMPLATE and apply it.
stage() {
  local f=$1 text kv
  shift
  [[ -f $f ]] || f=$HACK/kwok/$f
  [[ -f $f ]] || die "no stage template $1"
  text=$(<"$f")
  for kv in "$@"; do
    [[ $kv == *=* ]] || die "expected KEY=VALUE, got $kv"
    text=${text//"\${${kv%%=*}}"/${kv#*=}}
  done
  if grep -o '[$]{[A-Z_]*}' <<<"$text" | sort -u | grep .; then
    die "unfilled placeholders above in $f"
  fi
  kctl apply -f - <<<"$text"
  # kwok looks at a pod again only when the pod changes: touch the scenario's existing pods so
  # the new Stage applies to them too, not only to pods that start after it.
  for kv in "$@"; do
    [[ $kv == SCENARIO=* ]] || continue
    kctl annotate pods -A -l "kwok.renderfarm.io/scenario=${kv#*=}" --overwrite \
      "kwok.renderfarm.io/stage-applied=$(date +%s%N)" >/dev/null
  done
}

evict() {
  (($# == 2)) || die "usage: evict NAMESPACE POD"
  curl_admin -X POST -H 'Content-Type: application/json' \
    "$SERVER/api/v1/namespaces/$1/pods/$2/eviction" \
    -d "{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{\"name\":\"$2\",\"namespace\":\"$1\"}}"
  echo
}

env_exports() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  # shellcheck disable=SC2016 # $PATH is for the shell that evals this line
  printf 'export PATH=%q:"$PATH"\n' "$K8S_BIN:$ETCD_BIN:$KWOK_BIN:$HELM_BIN"
}

main() {
  case ${1:-} in
    build) build ;;
    build-kind) build_kind ;;
    bins) bins ;;
    up) up ;;
    down) down "${2:-}" ;;
    env) env_exports ;;
    status) status ;;
    stage)
      (($# >= 2)) || die "usage: stage TEMPLATE [KEY=VALUE...]"
      shift
      stage "$@"
      ;;
    evict)
      shift
      evict "$@"
      ;;
    nodes) more_nodes "${2:-}" "${3:-}" ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 2
      ;;
  esac
}

# On one line: bash reads a script as it runs, so an edit to this file during a long build must
# not change what runs after it.
main "$@"; exit
