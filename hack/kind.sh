#!/usr/bin/env bash
# The kind lane: renderfarm on a kind cluster whose pods run real Blender. See hack/README.md.
#
#   hack/kind.sh up           dockerd, the kind node image, the cluster from kind-config.yaml,
#                             the operator and render-node images (docker build + kind load;
#                             a render-node image per further Blender version, below),
#                             NetworkPolicy enforcement (hack/kind/network-policies.sh),
#                             and the chart (helm upgrade --install) with hostPath storage;
#                             idempotent, prints the time each step took
#   hack/kind.sh down         delete the cluster (frames in ./render stay)
#   hack/kind.sh env          print exports: eval "$(hack/kind.sh env)"
#   hack/kind.sh node-image   build the node image only (see "The node image" below)
#
# The node image: where kindest/node can be pulled (a normal machine), kind uses it. Where it
# cannot (no registry), this script builds renderfarm/kind-node from Debian's packages and
# binaries built from Go modules (hack/kind/node.Dockerfile, images.Dockerfile), the way
# `kind build node-image` assembles one. KIND_NODE_IMAGE names an image to use instead.
#
# Further Blender versions: the chart's default (4.5) renders with renderfarm/render-node:dev;
# each bpy release in KIND_BLENDER_VERSIONS (default 5.0.1; empty: none) gets an image of its
# own, renderfarm/render-node:dev-blenderMAJOR.MINOR, offered through the chart's blender.images
# (a RenderJob asks for it with spec.blenderVersion: "5.0").
#
# Environment: KIND_CLUSTER (default renderfarm), IMAGE_PROFILE (cargo profile of the images'
# binaries: debug, the default, or release), KIND_NODE_IMAGE, KIND_BLENDER_VERSIONS,
# RENDERFARM_CACHE.
# BIN_* come from load_bins' eval; most functions run through step, which shellcheck cannot follow.
# shellcheck disable=SC2154,SC2317
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HACK=$ROOT/hack
CLUSTER=${KIND_CLUSTER:-renderfarm}
CACHE=$(realpath -m "${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}")
STATE=$CACHE/kind/$CLUSTER
KUBECONFIG_FILE=$STATE/kubeconfig
PROFILE=${IMAGE_PROFILE:-debug}
RELEASE=renderfarm
RELEASE_NS=renderfarm-system
TAG=dev
OPERATOR_IMAGE=renderfarm/operator:$TAG
NODE_IMAGE_RENDER=renderfarm/render-node:$TAG
# bpy releases, space-separated; node-image/blender/requirements-MAJOR.MINOR.txt pins each.
BLENDER_VERSIONS=${KIND_BLENDER_VERSIONS-5.0.1}

log() { printf '[kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# step NAME CMD...: run one step and print how long it took.
step() {
  local name=$1 t=$SECONDS
  shift
  log "$name ..."
  "$@"
  log "$name: $((SECONDS - t))s"
}

# BIN_<name>: paths of the binaries hack/cluster.sh builds, and their versions.
load_bins() {
  eval "$("$HACK/cluster.sh" bins | sed 's/^/BIN_/')"
}

# ------------------------------------------------------------------------------ node image

# The images kubeadm and containerd expect on a node, by the names they ask for.
component_images() {
  local pause
  pause=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$BIN_kind_base_files/etc/containerd/config.toml")
  "$BIN_kubeadm" config images list --kubernetes-version "$BIN_k8s_version" | grep -v /pause:
  printf '%s\n' "$pause" docker.io/renderfarm/nodenet:v1
}

# The tag of the node image: changes when anything it is built from changes.
node_image_tag() {
  local sum
  sum=$(
    cat "$HACK"/kind/node.Dockerfile "$HACK"/kind/images.Dockerfile "$HACK"/kind/pause.c \
      "$HACK"/kind/nodenet.sh "$HACK"/kind/default-cni.yaml
    printf '%s\n' "$BIN_k8s_version" "$BIN_etcd_version" "$BIN_kind_version" "$BIN_coredns"
  )
  printf 'renderfarm/kind-node:%s-%s' "$BIN_k8s_version" "$(sha256sum <<<"$sum" | cut -c1-10)"
}

build_node_image() {
  local image=$1 ctx images=() tag target binary cid t
  ctx=$STATE/node-context
  rm -rf "$ctx"
  mkdir -p "$ctx/bin"
  cp -r "$BIN_kind_base_files" "$ctx/kind-base"
  cp "$BIN_kubelet" "$BIN_kubeadm" "$BIN_kubectl" "$BIN_crictl" "$BIN_kube_proxy" \
    "$BIN_kube_apiserver" "$BIN_kube_controller_manager" "$BIN_kube_scheduler" \
    "$BIN_etcd" "$BIN_coredns" "$ctx/bin/"
  cp "$HACK/kind/nodenet.sh" "$HACK/kind/default-cni.yaml" "$ctx/"
  printf '%s\n' "$BIN_k8s_version" >"$ctx/version"
  gcc -static -O2 -s -Wall -Wextra -o "$ctx/bin/pause" "$HACK/kind/pause.c"

  # Component images, each tagged with the name kubeadm (or containerd, for pause) expects.
  while IFS= read -r tag; do
    binary=${tag##*/}
    binary=${binary%%:*}
    case $binary in
      kube-apiserver | kube-controller-manager | kube-scheduler | etcd) target=component ;;
      *) target=$binary ;;
    esac
    "$HACK/docker.sh" build -q -f "$HACK/kind/images.Dockerfile" --target "$target" \
      --build-arg "BINARY=$binary" -t "$tag" "$ctx" >/dev/null
    images+=("$tag")
  done < <(component_images)
  log "component images: ${images[*]}"
  docker save -o "$ctx/images.tar" "${images[@]}"

  "$HACK/docker.sh" build -q -f "$HACK/kind/node.Dockerfile" -t "$image-base" "$ctx" >/dev/null

  # Import the images into the node's containerd, then commit: what `kind build node-image` does.
  cid=$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$image-base" infinity)
  # shellcheck disable=SC2064 # expand $cid now
  trap "docker rm -f $cid >/dev/null 2>&1 || true" RETURN
  docker exec -d "$cid" containerd
  t=$SECONDS
  until docker exec "$cid" test -S /run/containerd/containerd.sock; do
    ((SECONDS - t < 60)) || die "containerd in the build container did not start"
    sleep 0.5
  done
  docker exec -i "$cid" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
    --all-platforms --no-unpack --digests - <"$ctx/images.tar" >/dev/null
  docker exec "$cid" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' >&2
  docker exec "$cid" pkill containerd
  sleep 1
  docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    "$cid" "$image" >/dev/null
  docker rmi "$image-base" >/dev/null
  rm -rf "$ctx"
}

# node_image: print the node image to use, building it when it cannot be pulled.
node_image() {
  local image
  if [[ -n ${KIND_NODE_IMAGE:-} ]]; then
    printf '%s' "$KIND_NODE_IMAGE"
    return
  fi
  image=$(node_image_tag)
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    step "build node image $image" build_node_image "$image"
  fi
  printf '%s' "$image"
}

# ---------------------------------------------------------------------------------- cluster

# The cluster's config: kind-config.yaml, plus what this machine needs and a normal one does not:
# - a cgroup v1 host: Kubernetes 1.35+ kubelets refuse it unless told otherwise;
# - no CAP_SYS_RESOURCE in our bounding set (see hack/runc-bounded): containerd must not lower
#   a pod's oom_score_adj below its own, which needs that capability (kind does the same for
#   rootless nodes).
cluster_config() {
  local out=$STATE/kind-config.yaml cgroup_v1=0 no_sys_resource=0
  [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]] || cgroup_v1=1
  (($(awk '/^CapBnd:/ { print $2 }' /proc/self/status | sed 's/^/0x/') >> 24 & 1)) || no_sys_resource=1
  python3 - "$ROOT/kind-config.yaml" "$out" "$cgroup_v1" "$no_sys_resource" <<'PY'
import sys, yaml
src, out, cgroup_v1, no_sys_resource = sys.argv[1:]
cfg = yaml.safe_load(open(src))
if cgroup_v1 == "1":
    cfg.setdefault("kubeadmConfigPatches", []).append(
        "kind: KubeletConfiguration\nfailCgroupV1: false\n")
if no_sys_resource == "1":
    cfg.setdefault("containerdConfigPatches", []).append(
        '[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n')
yaml.safe_dump(cfg, open(out, "w"), sort_keys=False)
PY
  printf '%s' "$out"
}

# blender_image VERSION: the render-node image of bpy VERSION (5.0.1: ...:dev-blender5.0).
blender_image() { printf 'renderfarm/render-node:%s-blender%s' "$TAG" "${1%.*}"; }

# The render-node images: the default one, then one per further Blender version.
render_images() {
  local v
  printf '%s\n' "$NODE_IMAGE_RENDER"
  for v in $BLENDER_VERSIONS; do blender_image "$v" && echo; done
}

cluster_exists() { "$BIN_kind" get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

create_cluster() {
  local image config
  # Frames land here; render-node runs as uid 1000, whoever owns the checkout. The kubelet
  # makes each render's output directory (a subPath mount) with this folder's mode.
  mkdir -p "$ROOT/render/scenes" "$ROOT/render/renders"
  chmod 0777 "$ROOT/render" "$ROOT/render/scenes" "$ROOT/render/renders"
  if cluster_exists; then
    log "cluster $CLUSTER exists"
    "$BIN_kind" export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1
    return
  fi
  image=$(node_image)
  config=$(cluster_config)
  (cd "$ROOT" && "$BIN_kind" create cluster --name "$CLUSTER" --image "$image" --config "$config" \
    --kubeconfig "$KUBECONFIG_FILE" --wait 180s)
}

images() {
  local secret=() ca=/etc/ssl/certs/ca-certificates.crt
  # The node image's pip install trusts what this machine trusts (a TLS proxy on the way to PyPI).
  [[ -s $ca ]] && secret=(--secret "id=ca-certificates,src=$ca")
  if [[ $PROFILE == release ]]; then
    (cd "$ROOT" && cargo build --locked --release -p renderfarm -p render-node)
  else
    (cd "$ROOT" && cargo build --locked -p renderfarm -p render-node)
  fi
  "$HACK/docker.sh" build -q --build-arg BUILDER=prebuilt --build-arg "PROFILE=$PROFILE" \
    -t "$OPERATOR_IMAGE" -f "$ROOT/operator/Dockerfile" "$ROOT" >/dev/null
  "$HACK/docker.sh" build -q "${secret[@]}" --build-arg BUILDER=prebuilt --build-arg "PROFILE=$PROFILE" \
    -t "$NODE_IMAGE_RENDER" -f "$ROOT/node-image/Dockerfile" "$ROOT" >/dev/null
  # The same Dockerfile and binaries: the Debian layers are shared, the bpy wheel is installed
  # once per version (then cached), and a changed render-node rebuilds only the last layers.
  local v
  for v in $BLENDER_VERSIONS; do
    step "render-node image, Blender $v" \
      "$HACK/docker.sh" build -q "${secret[@]}" --build-arg BUILDER=prebuilt \
      --build-arg "PROFILE=$PROFILE" --build-arg "BLENDER_VERSION=$v" \
      -t "$(blender_image "$v")" -f "$ROOT/node-image/Dockerfile" "$ROOT" >/dev/null
  done
}

load_images() {
  local workers image renders
  # Only workers run renderfarm's pods (the control plane is tainted); kind skips nodes that
  # already hold the same image ID. One image per call: given several, kind sends all of them
  # to a node that lacks any one, and each render-node image is over a gigabyte.
  workers=$("$BIN_kind" get nodes --name "$CLUSTER" | grep -v -- -control-plane | paste -sd,)
  mapfile -t renders < <(render_images)
  for image in "$OPERATOR_IMAGE" "${renders[@]}"; do
    "$BIN_kind" load docker-image --name "$CLUSTER" --nodes "$workers" "$image"
  done
}

install_chart() {
  local id v series offered=()
  # blender.images."5.0": Helm reads a dot in a --set key as nesting unless escaped.
  for v in $BLENDER_VERSIONS; do
    series=${v%.*}
    offered+=(--set-string "blender.images.${series//./\\.}=$(blender_image "$v")")
  done
  # Helm installs CRDs only once and never upgrades them: apply this checkout's CRD first, so an
  # upgraded operator never writes status fields the API server does not know.
  "$BIN_kubectl" --kubeconfig "$KUBECONFIG_FILE" apply --server-side --force-conflicts \
    -f "$ROOT/charts/renderfarm/crds/renderjob.yaml" >/dev/null
  # The image ID in a pod annotation: a rebuilt image under the same tag rolls the pods.
  id=$(docker image inspect --format '{{.Id}}' "$OPERATOR_IMAGE" | cut -c8-19)
  "$BIN_helm" upgrade --install "$RELEASE" "$ROOT/charts/renderfarm" --kubeconfig "$KUBECONFIG_FILE" \
    --namespace "$RELEASE_NS" --create-namespace \
    --set image.tag="$TAG" --set nodeImage.tag="$TAG" "${offered[@]}" \
    --set-string podAnnotations.renderfarm\\.io/image-id="$id" \
    --set storage.create=true --set storage.namespace=default --set storage.hostPath=/renders \
    --wait --timeout 300s
}

up() {
  local t0=$SECONDS
  mkdir -p "$STATE"
  step "docker" "$HACK/docker.sh" up
  step "binaries" "$HACK/cluster.sh" build-kind
  load_bins
  step "cluster" create_cluster
  step "images" images
  step "kind load" load_images
  step "network policies" "$HACK/kind/network-policies.sh" up "$CLUSTER" "$KUBECONFIG_FILE"
  step "helm install" install_chart
  log "up in $((SECONDS - t0))s; eval \"\$(hack/kind.sh env)\" then kubectl get nodes"
}

down() {
  load_bins
  if [[ -x $BIN_kind ]] && cluster_exists; then
    "$BIN_kind" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE"
  fi
  rm -rf "$STATE"
}

env_exports() {
  load_bins
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  # shellcheck disable=SC2016 # $PATH is for the shell that evals this line
  printf 'export PATH=%q:"$PATH"\n' "$(dirname "$BIN_kubectl"):$(dirname "$BIN_helm"):$(dirname "$BIN_kind")"
}

main() {
  case ${1:-} in
    up) up ;;
    down) down ;;
    env) env_exports ;;
    node-image)
      mkdir -p "$STATE"
      "$HACK/docker.sh" up
      "$HACK/cluster.sh" build-kind
      load_bins
      node_image
      echo
      ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 2
      ;;
  esac
}

main "$@"; exit
