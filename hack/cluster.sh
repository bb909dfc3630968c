#!/usr/bin/env bash
# A real Kubernetes control plane as local processes on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, and kwok running fake nodes. Everything is built
# from Go modules and cached under $HOME/.cache/renderfarm. See hack/README.md.
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
#   hack/cluster.sh selftest          check on the running cluster what the tests rely on
#
# Environment: RENDERFARM_CLUSTER_DIR (state: certs, etcd data, logs, pids, kubeconfig;
# default $HOME/.cache/renderfarm/cluster), RENDERFARM_CACHE (binaries and Go modules;
# default $HOME/.cache/renderfarm), GOCACHE (default $HOME/.cache/go-build),
# RENDERFARM_PORT_OFFSET (added to every port; default 0, for a second cluster beside the first).
set -euo pipefail

# ---- versions: the only place they are set (hack/tools/*/go.mod must agree; build checks) ----
K8S_VERSION=v1.37.2  # kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
ETCD_VERSION=v3.7.3  # go.etcd.io/etcd/server/v3 (Kubernetes 1.37's default etcd is 3.7)
KWOK_VERSION=v0.8.0  # sigs.k8s.io/kwok
HELM_VERSION=v3.22.0 # helm.sh/helm/v3
KIND_VERSION=v0.33.0      # sigs.k8s.io/kind (the kind lane, hack/kind.sh)
CRICTL_VERSION=v1.36.0    # sigs.k8s.io/cri-tools, as kind v0.33's base image has
COREDNS_VERSION=v1.14.6   # github.com/coredns/coredns, the version kubeadm v1.37 deploys

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
K8S_BIN=$CACHE/bin/k8s-$K8S_VERSION
ETCD_BIN=$CACHE/bin/etcd-$ETCD_VERSION
KWOK_BIN=$CACHE/bin/kwok-$KWOK_VERSION
HELM_BIN=$CACHE/bin/helm-$HELM_VERSION
KIND_BIN=$CACHE/bin/kind-$KIND_VERSION
CRICTL_BIN=$CACHE/bin/crictl-$CRICTL_VERSION
COREDNS_BIN=$CACHE/bin/coredns-$COREDNS_VERSION
export GOMODCACHE=${RENDERFARM_GOMODCACHE:-$CACHE/gomod}
export GOCACHE=${GOCACHE:-$HOME/.cache/go-build}
SERVER=https://127.0.0.1:$APISERVER_PORT
PKI=$STATE/pki
KUBECONFIG_FILE=$STATE/kubeconfig
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
NODES=(kwok-node-0 kwok-node-1 kwok-node-2 kwok-gpu-0)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ------------------------------------------------------------------------------------ build

# check_pin FILE MODULE VERSION: a wrapper go.mod must pin the version this script names.
check_pin() {
  grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2 $3( |$)" "$1" ||
    die "$1 does not require $2 $3: update it (go get $2@$3 && go mod tidy) or the version here"
}

# go_build NAME DIR MODULE_DIR ARGS...: build one binary unless DIR/NAME exists; print the time.
go_build() {
  local name=$1 dir=$2 moddir=$3 t
  shift 3
  [[ -x $dir/$name ]] && return 0
  mkdir -p "$dir"
  t=$(now)
  log "building $name ..."
  (cd "$moddir" && go build -mod=readonly -trimpath -o "$dir/.$name.tmp" "$@")
  mv "$dir/.$name.tmp" "$dir/$name"
  log "built $name in $(since "$t")s"
}

# go_install NAME DIR PKG@VERSION LDFLAGS: `go install` a module that builds with its own go.mod.
go_install() {
  local name=$1 dir=$2 pkg=$3 ld=$4 t tmp
  [[ -x $dir/$name ]] && return 0
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.gobin.XXXXXX")
  t=$(now)
  log "building $name ..."
  (cd "$tmp" && GOBIN=$tmp GOFLAGS='' go install -trimpath -ldflags "$ld" "$pkg")
  mv "$tmp/$name" "$dir/$name"
  rmdir "$tmp"
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

# build_kind: the kind lane's binaries, on top of build's. Static (CGO off): they run in the
# kind node image and in images of their own.
build_kind() {
  build
  exec 9>"$CACHE/bin/.build.lock"
  flock 9
  local t0 p
  t0=$(now)
  for p in kubelet kubeadm kube-proxy; do
    CGO_ENABLED=0 go_build "$p" "$K8S_BIN" "$HACK/tools/k8s" -ldflags "$(k8s_ldflags)" "k8s.io/kubernetes/cmd/$p"
  done
  CGO_ENABLED=0 go_install kind "$KIND_BIN" "sigs.k8s.io/kind@$KIND_VERSION" "-s -w"
  CGO_ENABLED=0 go_build_module crictl "$CRICTL_BIN" "sigs.k8s.io/cri-tools@$CRICTL_VERSION" ./cmd/crictl \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
  CGO_ENABLED=0 go_install coredns "$COREDNS_BIN" "github.com/coredns/coredns@$COREDNS_VERSION" "-s -w"
  # kind's base image files (entrypoint, systemd units, containerd config) for the node image.
  if [[ ! -d $KIND_BIN/base-files ]]; then
    (cd "$KIND_BIN" && GOFLAGS='' go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" >/dev/null)
    cp -r "$GOMODCACHE/sigs.k8s.io/kind@$KIND_VERSION/images/base/files" "$KIND_BIN/.base-files.tmp"
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

# go_build_module NAME DIR MODULE@VERSION PKG LDFLAGS: build PKG inside a downloaded module, for
# modules `go install` refuses (it reads the module's version list, which the proxy may not serve).
go_build_module() {
  local name=$1 dir=$2 mod=$3 pkg=$4 ld=$5 src t
  [[ -x $dir/$name ]] && return 0
  mkdir -p "$dir"
  t=$(now)
  log "building $name ..."
  src=$(cd "$dir" && GOFLAGS='' go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $src ]] || die "could not download $mod"
  (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ld" -o "$dir/.$name.tmp" "$pkg")
  mv "$dir/.$name.tmp" "$dir/$name"
  log "built $name in $(since "$t")s"
}

build() {
  command -v go >/dev/null || die "Go is required (1.26+)"
  mkdir -p "$CACHE/bin"
  # One build at a time per cache: a second `build`/`up` waits for the first.
  exec 9>"$CACHE/bin/.build.lock"
  flock 9
  local t0 p
  t0=$(now)
  check_pin "$HACK/tools/k8s/go.mod" k8s.io/kubernetes "$K8S_VERSION"
  check_pin "$HACK/tools/etcd/go.mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"

  # Kubernetes: through the wrapper module (see hack/README.md), with version ldflags.
  for p in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    go_build "$p" "$K8S_BIN" "$HACK/tools/k8s" -ldflags "$(k8s_ldflags)" "k8s.io/kubernetes/cmd/$p"
  done

  # etcd: its server module's go.mod has replace directives, so a three-line wrapper main.
  go_build etcd "$ETCD_BIN" "$HACK/tools/etcd" -ldflags "-s -w" .

  go_install kwok "$KWOK_BIN" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "-s -w"
  # kwok's Stage CRD, kept with the binary so `up` does not need the module cache.
  if [[ ! -f $KWOK_BIN/stages-crd.yaml ]]; then
    (cd "$KWOK_BIN" && GOFLAGS='' go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" >/dev/null)
    cp "$GOMODCACHE/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/crd/bases/kwok.x-k8s.io_stages.yaml" \
      "$KWOK_BIN/stages-crd.yaml"
    chmod 0644 "$KWOK_BIN/stages-crd.yaml"
  fi

  go_install helm "$HELM_BIN" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

  flock -u 9
  exec 9>&-
  log "binaries ready ($(since "$t0")s): $K8S_BIN, $ETCD_BIN, $KWOK_BIN, $HELM_BIN"
}

# ------------------------------------------------------------------------------- processes

pidfile() { echo "$STATE/run/$1.pid"; }

# ours PID: the process exists and was started by this state dir (guards against pid reuse).
ours() {
  [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$STATE/"
}

running() {
  local f=$STATE/run/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && ours "$pid"
}

start() {
  local name=$1
  shift
  running "$name" && return 0
  # Own session: the component outlives the shell that ran `up` and ignores its signals.
  setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$(pidfile "$name")"
}

fail_with_log() {
  log "$1 did not come up; the end of $STATE/logs/$1.log:"
  tail -n 40 "$STATE/logs/$1.log" >&2 || true
  exit 1
}

# wait_for COMPONENT SECONDS COMMAND...: until COMMAND succeeds; fails early if COMPONENT died.
wait_for() {
  local what=$1 secs=$2 t
  shift 2
  t=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    running "$what" || fail_with_log "$what"
    (($(date +%s) - t < secs)) || fail_with_log "$what"
    sleep 0.25
  done
}

port_free() {
  ! ss -Htln "sport = :$1" | grep -q .
}

curl_admin() { curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }

kctl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# ------------------------------------------------------------------------------------- up

certs() {
  [[ -f $PKI/sa.pub ]] && return 0
  command -v openssl >/dev/null || die "openssl is missing: apt-get install -y openssl"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=renderfarm-local-ca" 2>/dev/null
    cat >apiserver.ext <<'EOF'
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
EOF
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt \
      -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=renderfarm-admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt \
      -days 3650 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
  )
}

write_kubeconfig() {
  cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: renderfarm-local
  cluster:
    server: $SERVER
    certificate-authority: $PKI/ca.crt
users:
- name: renderfarm-admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: renderfarm-local
  context:
    cluster: renderfarm-local
    user: renderfarm-admin
current-context: renderfarm-local
EOF
  chmod 0600 "$KUBECONFIG_FILE"
}

write_audit_policy() {
  cat >"$STATE/audit-policy.yaml" <<'EOF'
# Requests for the objects renderfarm touches, at Metadata level (a line per request and
# stage; a watch also logs ResponseStarted): enough to count the operator's API requests by
# verb (bench/bench.sh). Everything else: not logged.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources:
  - group: ""
    resources: [pods, pods/*, events]
  - group: batch
    resources: [jobs, jobs/*]
  - group: events.k8s.io
    resources: [events]
  - group: renderfarm.io
    resources: [renderjobs, renderjobs/*]
- level: None
EOF
}

register_nodes() {
  local n extra_labels taints gpu
  for n in "${NODES[@]}"; do
    extra_labels='' taints='[]' gpu=''
    if [[ $n == kwok-gpu-* ]]; then
      extra_labels='    accelerator: nvidia'
      taints='[{key: nvidia.com/gpu, value: present, effect: NoSchedule}]'
      gpu=', nvidia.com/gpu: "4"'
    fi
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
$extra_labels
spec:
  taints: $taints
status:
  allocatable: {cpu: "32", memory: 128Gi, pods: "110", ephemeral-storage: 1Ti$gpu}
  capacity: {cpu: "32", memory: 128Gi, pods: "110", ephemeral-storage: 1Ti$gpu}
EOF
  done | kctl apply -f - >/dev/null
}

nodes_ready() {
  [[ $(kctl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$') -ge ${#NODES[@]} ]]
}

healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do running "$c" || return 1; done
  curl_admin "$SERVER/readyz" >/dev/null 2>&1 && nodes_ready 2>/dev/null
}

up() {
  local t0 t1 c
  t0=$(now)
  build
  t1=$(now)
  if healthy; then
    # Edits to the stages take effect without a restart.
    kctl apply --server-side --force-conflicts -f "$HACK/kwok/stages.yaml" >/dev/null
    log "already up and healthy: $SERVER, KUBECONFIG=$KUBECONFIG_FILE"
    return 0
  fi
  mkdir -p "$STATE/run" "$STATE/logs" "$STATE/etcd"
  chmod 0700 "$STATE"
  # A port held by something not ours would make a component fail obscurely: say so now.
  local -A port_of=([etcd]="$ETCD_PORT $ETCD_PEER_PORT" [kube-apiserver]=$APISERVER_PORT
    [kube-controller-manager]=$KCM_PORT [kube-scheduler]=$SCHED_PORT [kwok]=$KWOK_PORT)
  for c in "${COMPONENTS[@]}"; do
    running "$c" && continue
    for p in ${port_of[$c]}; do
      port_free "$p" || die "port 127.0.0.1:$p (for $c) is in use: $(ss -Htlnp "sport = :$p" | head -1)"
    done
  done
  certs
  write_kubeconfig
  write_audit_policy

  start etcd "$ETCD_BIN/etcd" --name renderfarm --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "renderfarm=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC --allow-privileged \
    --audit-policy-file "$STATE/audit-policy.yaml" --audit-log-path "$STATE/logs/audit.log" \
    --audit-log-maxsize 500 --audit-log-maxbackup 2 \
    --max-requests-inflight 800 --max-mutating-requests-inflight 400
  wait_for kube-apiserver 180 curl_admin "$SERVER/readyz"

  # Their own secure ports trust the CA directly (no front-proxy here, so looking up the
  # request-header CA in kube-system/extension-apiserver-authentication would only log errors).
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
    --authorization-kubeconfig "$KUBECONFIG_FILE" --client-ca-file "$PKI/ca.crt" --authentication-skip-lookup \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false --controllers '*' \
    --use-service-account-credentials --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" --service-cluster-ip-range 10.96.0.0/16 \
    --concurrent-job-syncs 20 --kube-api-qps 200 --kube-api-burst 400
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
    --authorization-kubeconfig "$KUBECONFIG_FILE" --client-ca-file "$PKI/ca.crt" --authentication-skip-lookup \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false \
    --kube-api-qps 200 --kube-api-burst 400

  # kwok watches Stage objects (--enable-crds=Stage): the CRD and our stages come first.
  kctl apply --server-side --force-conflicts -f "$KWOK_BIN/stages-crd.yaml" >/dev/null
  kctl wait --for condition=Established --timeout 60s crd/stages.kwok.x-k8s.io >/dev/null
  kctl apply --server-side --force-conflicts -f "$HACK/kwok/stages.yaml" >/dev/null
  # A new kwok would wait for the leases an earlier one held to expire (40 s) before it
  # manages the nodes again: drop them so it takes over at once.
  running kwok || kctl -n kube-node-lease delete lease --ignore-not-found "${NODES[@]}" >/dev/null
  start kwok "$KWOK_BIN/kwok" --kubeconfig "$KUBECONFIG_FILE" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --enable-crds=Stage --node-lease-duration-seconds 40 --node-ip 127.0.0.1 --node-port "$KWOK_PORT" \
    --server-address "127.0.0.1:$KWOK_PORT" --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key"

  wait_for kube-controller-manager 120 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for kube-scheduler 120 curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"
  wait_for kube-controller-manager 120 kctl -n default get serviceaccount default
  register_nodes
  wait_for kwok 120 nodes_ready
  log "up: build $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s, start $(since "$t1")s; API server $SERVER"
  log "  KUBECONFIG=$KUBECONFIG_FILE (context renderfarm-local); eval \"\$(hack/cluster.sh env)\""
}

# ----------------------------------------------------------------------------------- down

down() {
  local i c pid
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[$i]}
    if running "$c"; then
      pid=$(<"$(pidfile "$c")")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 40); do ours "$pid" || break; sleep 0.25; done
      ours "$pid" && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$(pidfile "$c")"
  done
  # A component whose pid file was lost: any process running one of our binaries with this
  # state dir on its command line.
  local left=()
  for pid in $(pgrep -f -- "$STATE/" || true); do
    case $(readlink "/proc/$pid/exe" 2>/dev/null) in
      "$ETCD_BIN"/* | "$K8S_BIN"/kube-* | "$KWOK_BIN"/*) left+=("$pid") ;;
    esac
  done
  if ((${#left[@]})); then
    log "stopping stray processes ${left[*]}"
    kill "${left[@]}" 2>/dev/null || true
    for pid in "${left[@]}"; do
      for _ in $(seq 20); do ours "$pid" || break; sleep 0.25; done
      ours "$pid" && kill -9 "$pid" 2>/dev/null
    done
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
      printf '%-24s running (pid %s)\n' "$c" "$(<"$(pidfile "$c")")"
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

# ------------------------------------------------------------------------------- selftest

# poll SECONDS PATTERN COMMAND...: run COMMAND until its output matches PATTERN; print it.
poll() {
  local secs=$1 pattern=$2 out t
  shift 2
  t=$(date +%s)
  while :; do
    out=$("$@" 2>/dev/null) || true
    # shellcheck disable=SC2053 # PATTERN is a glob on purpose
    [[ $out == $pattern ]] && break
    (($(date +%s) - t < secs)) || break
    sleep 0.25
  done
  printf '%s' "$out"
}

# selftest_job NS NAME SCENARIO BATCH BACKOFF: a Job like the operator's (pods labelled with the
# scenario and batch; Ignore disruptions, FailJob on exit code 64).
selftest_job() {
  kctl -n "$1" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: $2}
spec:
  backoffLimit: $5
  podFailurePolicy:
    rules:
    - {action: Ignore, onPodConditions: [{type: DisruptionTarget, status: "True"}]}
    - {action: FailJob, onExitCodes: {containerName: render, operator: In, values: [64]}}
  template:
    metadata:
      labels: {kwok.renderfarm.io/scenario: "$3", renderfarm.io/batch: "$4"}
    spec:
      restartPolicy: Never
      containers: [{name: render, image: busybox}]
EOF
}

# selftest: check on the running cluster, in a namespace of its own, what the tests rely on
# (hack/README.md); removes what it made. Ends with "selftest: N passed, M failed".
selftest() {
  curl_admin "$SERVER/readyz" >/dev/null 2>&1 || die "the cluster is not up: hack/cluster.sh up"
  local ns=rf-selftest-$$ pass=0 fail=0 t0 pod got
  t0=$(now)
  SELFTEST_NS=$ns
  trap selftest_cleanup EXIT
  expect() { # expect WHAT WANT GOT
    if [[ $3 == "$2" ]]; then
      pass=$((pass + 1))
      log "ok    $1"
    else
      fail=$((fail + 1))
      log "FAIL  $1: want '$2', got '$3'"
    fi
  }
  kctl create namespace "$ns" >/dev/null
  stage fail.yaml "SCENARIO=$ns" BATCHES=1 EXIT_CODE=64 REASON=Error >/dev/null
  stage succeed-others.yaml "SCENARIO=$ns" BATCHES=1 >/dev/null
  stage oom.yaml "SCENARIO=$ns-oom" BATCHES=0 >/dev/null
  stage slow.yaml "SCENARIO=$ns-slow" DELAY_MS=3000 >/dev/null
  kctl -n "$ns" create job plain --image=busybox -- true >/dev/null
  selftest_job "$ns" batch-0 "$ns" 0 3
  selftest_job "$ns" batch-1 "$ns" 1 3
  selftest_job "$ns" oom "$ns-oom" 0 0
  selftest_job "$ns" evicted "$ns-slow" 0 0
  kctl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {renderfarm.io/no-such-node: "true"}
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: gpu}
spec:
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers: [{name: c, image: busybox, resources: {limits: {nvidia.com/gpu: "1"}}}]
EOF
  local cond='{range .status.conditions[?(@.status=="True")]}{.type}:{.reason} {end}'
  local term='{.items[0].status.containerStatuses[0].state.terminated.exitCode} {.items[0].status.containerStatuses[0].state.terminated.reason}'

  got=$(poll 60 '*Complete:*' kctl -n "$ns" get job plain -o jsonpath="$cond")
  expect "a Job completes" yes "$([[ $got == *Complete:* ]] && echo yes || echo "$got")"
  got=$(poll 60 '*Complete:*' kctl -n "$ns" get job batch-0 -o jsonpath="$cond")
  expect "succeed-others.yaml: the other batch's Job completes" yes "$([[ $got == *Complete:* ]] && echo yes || echo "$got")"
  got=$(poll 60 '*Failed:*' kctl -n "$ns" get job batch-1 -o jsonpath="$cond")
  expect "fail.yaml + podFailurePolicy FailJob on 64: the Job fails by the policy" yes \
    "$([[ $got == *Failed:PodFailurePolicy* ]] && echo yes || echo "$got")"
  expect "... after one pod" 1 "$(kctl -n "$ns" get job batch-1 -o jsonpath='{.status.failed}')"
  expect "... whose terminated state has exit code 64" "64 Error" \
    "$(kctl -n "$ns" get pods -l job-name=batch-1 -o jsonpath="$term")"
  expect "oom.yaml: exit code 137, reason OOMKilled" "137 OOMKilled" \
    "$(poll 60 '137 *' kctl -n "$ns" get pods -l job-name=oom -o jsonpath="$term")"
  expect "a pod no node fits: PodScheduled False, Unschedulable" "False Unschedulable" \
    "$(poll 60 'False *' kctl -n "$ns" get pod nowhere -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].status} {.status.conditions[?(@.type=="PodScheduled")].reason}')"
  expect "a GPU pod with the toleration runs on kwok-gpu-0" "kwok-gpu-0 Running" \
    "$(poll 60 '* Running' kctl -n "$ns" get pod gpu -o jsonpath='{.spec.nodeName} {.status.phase}')"

  poll 60 Running kctl -n "$ns" get pods -l job-name=evicted -o jsonpath='{.items[0].status.phase}' >/dev/null
  pod=$(kctl -n "$ns" get pods -l job-name=evicted -o jsonpath='{.items[0].metadata.name}')
  got=$(evict "$ns" "$pod" 2>&1 | tr -d ' \n')
  expect "the Eviction API evicts a running Job pod" yes "$([[ $got == *'"status":"Success"'* ]] && echo yes || echo "$got")"
  expect "... which ends Failed, DisruptionTarget kept" "Failed True" \
    "$(poll 20 'Failed *' kctl -n "$ns" get pod "$pod" -o jsonpath='{.status.phase} {.status.conditions[?(@.type=="DisruptionTarget")].status}')"
  got=$(poll 90 '*Complete:*' kctl -n "$ns" get job evicted -o jsonpath="$cond")
  expect "... and its Job (backoffLimit 0) ignores it and completes" yes "$([[ $got == *Complete:* ]] && echo yes || echo "$got")"
  expect "... counting no failure" "" "$(kctl -n "$ns" get job evicted -o jsonpath='{.status.failed}')"

  selftest_cleanup
  trap - EXIT
  log "selftest took $(since "$t0")s"
  echo "selftest: $pass passed, $fail failed"
  ((fail == 0))
}

selftest_cleanup() {
  local ns=$SELFTEST_NS
  kctl delete stage --ignore-not-found "$ns-fail" "$ns-ok" "$ns-oom-oom" "$ns-slow-slow" >/dev/null 2>&1 || true
  kctl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
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
    selftest) selftest ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 2
      ;;
  esac
}

# On one line: bash reads a script as it runs, so an edit to this file during a long build must
# not change what runs after it.
main "$@"; exit
