#!/usr/bin/env bash
# A real Kubernetes control plane as local processes on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, and kwok running fake nodes. Everything is built
# from Go modules and cached under $HOME/.cache/renderfarm.
#
#   hack/cluster.sh build        build (or reuse) the binaries
#   hack/cluster.sh up           build, start, register nodes; idempotent
#   hack/cluster.sh down [--purge]  stop everything it started (--purge: drop state too)
#   hack/cluster.sh env          print exports: eval "$(hack/cluster.sh env)"
#   hack/cluster.sh status       what is running
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}
BIN=$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION
STATE=${RENDERFARM_CLUSTER_DIR:-$CACHE/cluster}
export GOMODCACHE=${GOMODCACHE:-$CACHE/gomod}
export GOCACHE=${GOCACHE:-$HOME/.cache/go-build}
export GOFLAGS=-mod=mod

ETCD_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT=16443
KCM_PORT=16444
SCHED_PORT=16445
KWOK_PORT=16446
SERVER=https://127.0.0.1:$APISERVER_PORT
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

build() {
  local start total
  total=$(date +%s)
  mkdir -p "$BIN"
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=37 -X $p.gitTreeState=clean"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x $BIN/$c ]] && continue
    start=$(date +%s)
    (cd "$HACK/tools/k8s" && go build -trimpath -ldflags "$ld" -o "$BIN/$c" "k8s.io/kubernetes/cmd/$c")
    log "built $c $K8S_VERSION in $(($(date +%s) - start))s"
  done
  if [[ ! -x $BIN/etcd ]]; then
    start=$(date +%s)
    (cd "$HACK/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .)
    log "built etcd $ETCD_VERSION in $(($(date +%s) - start))s"
  fi
  if [[ ! -x $BIN/kwok ]]; then
    start=$(date +%s)
    GOBIN=$BIN go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    log "built kwok $KWOK_VERSION in $(($(date +%s) - start))s"
  fi
  if [[ ! -x $BIN/helm ]]; then
    start=$(date +%s)
    GOBIN=$BIN go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    log "built helm $HELM_VERSION in $(($(date +%s) - start))s"
  fi
  log "binaries ready in $BIN ($(($(date +%s) - total))s)"
}

pidfile() { echo "$STATE/run/$1.pid"; }

running() {
  local f pid
  f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  kill -0 "$pid" 2>/dev/null
}

start() {
  local name=$1
  shift
  if running "$name"; then return 0; fi
  "$@" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$(pidfile "$name")"
}

wait_for() {
  local what=$1 tries=$2
  shift 2
  local i
  for ((i = 0; i < tries; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$what did not come up; last lines of its log:"
  tail -n 30 "$STATE/logs/$what.log" >&2 || true
  return 1
}

certs() {
  local pki=$STATE/pki
  [[ -f $pki/admin.crt ]] && return 0
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=renderfarm-local-ca" 2>/dev/null
    cat >apiserver.ext <<EOF
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=renderfarm-admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 3650 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr
  )
}

kubeconfig() {
  local pki=$STATE/pki
  cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: renderfarm-local
  cluster:
    server: $SERVER
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: renderfarm-local
  context: {cluster: renderfarm-local, user: admin}
current-context: renderfarm-local
EOF
}

audit_policy() {
  cat >"$STATE/audit-policy.yaml" <<'EOF'
# Writes to the objects renderfarm touches, at Metadata level: enough to count API writes.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete]
  resources:
  - group: ""
    resources: [pods, events]
  - group: batch
    resources: [jobs]
  - group: events.k8s.io
    resources: [events]
  - group: renderfarm.io
    resources: [renderjobs, renderjobs/status]
- level: None
EOF
}

kctl() { "$BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

nodes() {
  local n gpu
  for n in kwok-node-0 kwok-node-1 kwok-node-2 kwok-gpu-0; do
    gpu=false
    [[ $n == kwok-gpu-* ]] && gpu=true
    kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
$( $gpu && printf '    accelerator: nvidia\n' )
spec:
$( $gpu && printf '  taints:\n  - key: nvidia.com/gpu\n    value: present\n    effect: NoSchedule\n' || printf '  taints: []\n' )
status:
  allocatable: {cpu: "32", memory: 128Gi, pods: "110"$( $gpu && printf ', nvidia.com/gpu: "4"' )}
  capacity: {cpu: "32", memory: 128Gi, pods: "110"$( $gpu && printf ', nvidia.com/gpu: "4"' )}
EOF
  done
  wait_for kwok 120 bash -c "[[ \$('$BIN/kubectl' --kubeconfig '$STATE/kubeconfig' get nodes --no-headers 2>/dev/null | grep -c ' Ready') -ge 4 ]]"
}

up() {
  local t0 t1
  t0=$(date +%s)
  build
  t1=$(date +%s)
  if healthy; then
    log "already up ($SERVER)"
    return 0
  fi
  command -v openssl >/dev/null || die "openssl is missing (apt-get install -y openssl)"
  mkdir -p "$STATE/run" "$STATE/logs" "$STATE/etcd"
  certs
  kubeconfig
  audit_policy
  local pki=$STATE/pki
  start etcd "$BIN/etcd" --name local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 4294967296
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
  start kube-apiserver "$BIN/kube-apiserver" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC --allow-privileged \
    --audit-policy-file "$STATE/audit-policy.yaml" --audit-log-path "$STATE/logs/audit.log" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1
  wait_for kube-apiserver 240 curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$SERVER/readyz"
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/kubeconfig" --authentication-kubeconfig "$STATE/kubeconfig" --authorization-kubeconfig "$STATE/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false --controllers '*' \
    --use-service-account-credentials --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --concurrent-job-syncs 20 --kube-api-qps 200 --kube-api-burst 400
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$STATE/kubeconfig" --authentication-kubeconfig "$STATE/kubeconfig" --authorization-kubeconfig "$STATE/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --kube-api-qps 200 --kube-api-burst 400
  # kwok's Stage CRD first, so kwok can watch Stages created at run time.
  kctl apply --server-side -f "$GOMODCACHE/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/crd/bases/kwok.x-k8s.io_stages.yaml" >/dev/null
  kctl apply --server-side -f "$HACK/kwok/stages.yaml" >/dev/null
  start kwok "$BIN/kwok" --kubeconfig "$STATE/kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --enable-crds=Stage --node-ip 127.0.0.1 --server-address "127.0.0.1:$KWOK_PORT"
  wait_for kube-controller-manager 120 bash -c "'$BIN/kubectl' --kubeconfig '$STATE/kubeconfig' -n default get serviceaccount default"
  nodes
  log "up in $(($(date +%s) - t1))s (build/check $((t1 - t0))s): KUBECONFIG=$STATE/kubeconfig"
}

healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do running "$c" || return 1; done
  [[ -f $STATE/kubeconfig ]] && kctl get --raw /readyz >/dev/null 2>&1
}

down() {
  local c pid i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[$i]}
    if running "$c"; then
      pid=$(<"$(pidfile "$c")")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$(pidfile "$c")"
  done
  # Anything of ours that lost its pid file.
  pkill -f "$BIN/" 2>/dev/null || true
  if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
    log "stopped and purged $STATE"
  else
    log "stopped (state kept in $STATE)"
  fi
}

status() {
  local c
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then echo "$c: running (pid $(<"$(pidfile "$c")"))"; else echo "$c: stopped"; fi
  done
}

case ${1:-} in
  build) build ;;
  up) up ;;
  down) shift; down "${1:-}" ;;
  env)
    printf 'export KUBECONFIG=%q\n' "$STATE/kubeconfig"
    # shellcheck disable=SC2016 # $PATH expands where the output is eval'd
    printf 'export PATH=%q:"$PATH"\n' "$BIN"
    ;;
  status) status ;;
  *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
