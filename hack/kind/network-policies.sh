#!/usr/bin/env bash
# NetworkPolicy enforcement for the kind lane. The lane's pod network (nodenet.sh) enforces no
# NetworkPolicy, and kindnetd, which embeds kube-network-policies, cannot be built here; so
# kube-network-policies (sigs.k8s.io/kube-network-policies) runs beside it as a DaemonSet.
#
#   hack/kind/network-policies.sh binary                     build the binary (cached)
#   hack/kind/network-policies.sh image                      build the binary (cached) and image
#   hack/kind/network-policies.sh up CLUSTER KUBECONFIG      image, kind load, apply, wait
#
# The binary is built from the module as the Go module proxy serves it, with
# kube-network-policies.patch applied (it queues packets through the xtables NFQUEUE target:
# kernels without nft_queue refuse nftables' own queue expression), into
# $RENDERFARM_CACHE/bin/kube-network-policies-VERSION-PATCHSUM.
set -euo pipefail

VERSION=v0.8.0 # sigs.k8s.io/kube-network-policies, what kindnetd v1.x embeds
MODULE=sigs.k8s.io/kube-network-policies

KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HACK=$(dirname "$KIND_DIR")
CACHE=$(realpath -m "${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}")
export GOMODCACHE=${RENDERFARM_GOMODCACHE:-$CACHE/gomod}
export GOCACHE=${GOCACHE:-$HOME/.cache/go-build}
PATCH=$KIND_DIR/kube-network-policies.patch
SUM=$(cat "$PATCH" "$KIND_DIR/network-policies.Dockerfile" | sha256sum | cut -c1-10)
BIN_DIR=$CACHE/bin/kube-network-policies-$VERSION-$SUM
IMAGE=renderfarm/kube-network-policies:$VERSION-$SUM

log() { printf '[network-policies %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

build_binary() {
  local src work t=$SECONDS
  [[ -x $BIN_DIR/kube-network-policies ]] && return 0
  mkdir -p "$BIN_DIR"
  exec 9>"$BIN_DIR/.lock"
  flock 9
  if [[ ! -x $BIN_DIR/kube-network-policies ]]; then
    log "building kube-network-policies $VERSION ..."
    src=$(cd "$BIN_DIR" && GOFLAGS='' go mod download -json "$MODULE@$VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $src ]] || die "could not download $MODULE@$VERSION"
    work=$(mktemp -d "$BIN_DIR/.src.XXXXXX")
    # shellcheck disable=SC2064 # expand $work now
    trap "rm -rf '$work'" EXIT
    cp -r "$src/." "$work"
    chmod -R u+w "$work"
    (cd "$work" && git apply -p1 "$PATCH")
    (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
      -o "$BIN_DIR/.kube-network-policies.tmp" ./cmd)
    mv "$BIN_DIR/.kube-network-policies.tmp" "$BIN_DIR/kube-network-policies"
    log "built kube-network-policies in $((SECONDS - t))s"
  fi
  flock -u 9
  exec 9>&-
}

image() {
  build_binary
  if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    "$HACK/docker.sh" build -q -f "$KIND_DIR/network-policies.Dockerfile" -t "$IMAGE" "$BIN_DIR" >/dev/null
  fi
  printf '%s\n' "$IMAGE"
}

up() {
  local cluster=$1 kubeconfig=$2 kind kubectl
  eval "$("$HACK/cluster.sh" bins | grep -E '^(kind|kubectl)=')"
  image >/dev/null
  # Every node: the DaemonSet runs on the control plane too. kind skips nodes that hold the image.
  "$kind" load docker-image --name "$cluster" "$IMAGE"
  sed "s|\${IMAGE}|$IMAGE|" "$KIND_DIR/network-policies.yaml" |
    "$kubectl" --kubeconfig "$kubeconfig" apply -f - >/dev/null
  "$kubectl" --kubeconfig "$kubeconfig" -n kube-system rollout status daemonset/kube-network-policies \
    --timeout 180s
}

case ${1:-} in
  binary) build_binary ;;
  image) image ;;
  up)
    [[ $# -eq 3 ]] || die "usage: $0 up CLUSTER KUBECONFIG"
    up "$2" "$3"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 2
    ;;
esac
