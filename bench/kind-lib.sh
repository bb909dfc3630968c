# Shared by render.sh and first-frame.sh: the kind cluster, its render storage, scenes,
# RenderJobs, watches stamped with this machine's clock, pod logs and the nodes' cgroup CPU.
# Sourced, not run.
# shellcheck shell=bash
# shellcheck source=bench/lib.sh
source bench/lib.sh

NS=${NAMESPACE:-default}
# The folder kind-config.yaml mounts at /renders in every node (the chart's hostPath storage,
# claim render-storage in namespace default, mounted at /data in batch pods).
STORE=$(realpath -m "${RENDERFARM_KIND_STORAGE:-$PWD/render}")
IMAGE=renderfarm/render-node:dev
START_AHEAD=${START_AHEAD:-}
# SPEC_IMAGE: a render-node image for spec.image (one loaded into the kind nodes), instead of
# the operator's.
SPEC_IMAGE=${SPEC_IMAGE:-}
# shellcheck disable=SC2034 # used by the scripts that source this file
RUN_ID=$(date -u +%Y%m%d-%H%M%S)
POLLER=
RJS=()

kind_cleanup() {
  [[ -z $POLLER ]] || kill "$POLLER" 2>/dev/null || true
  ((${#WATCHES[@]} == 0)) || kill "${WATCHES[@]}" 2>/dev/null || true
  local rj
  for rj in "${RJS[@]}"; do
    kubectl delete rj "$rj" -n "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  done
}

# The cluster (hack/kind.sh up unless KIND_UP=0), its kubeconfig, the storage folder.
kind_setup() {
  trap kind_cleanup EXIT
  [[ ${KIND_UP:-1} == 0 ]] || hack/kind.sh up >&2
  eval "$(hack/kind.sh env)"
  kubectl get crd renderjobs.renderfarm.io >/dev/null
  [[ -d $STORE/scenes && -d $STORE/renders ]] ||
    { echo "no $STORE/scenes: the kind cluster mounts another folder (RENDERFARM_KIND_STORAGE)" >&2 && exit 1; }
  WORKERS=()
  local n
  for n in $(kind get nodes --name "${KIND_CLUSTER:-renderfarm}"); do
    [[ $n == *-control-plane ]] || WORKERS+=("$n")
  done
  # What every node sees: kind gives its nodes the whole machine.
  NODE_CPUS=$(kubectl get node "${WORKERS[0]}" -o jsonpath='{.status.capacity.cpu}')
}

# The header of a results file: what ran, where, on what.
kind_header() {
  local v env=()
  for v in START_AHEAD SPEC_IMAGE COMPARE_IMAGE BATCH_SIZES SCENE_SIZE KIND_UP; do
    [[ -z ${!v:-} ]] || env+=("$v=${!v}")
  done
  echo "command: ${env[*]} $*"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' || echo ' (+ local changes)')"
  echo "uptime: $(uptime)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo); kind workers: ${WORKERS[*]} ($NODE_CPUS CPUs each, shared)"
  echo "images: render-node $(docker image inspect -f '{{.Id}}' "$IMAGE" | cut -c8-19)," \
    "operator $(kubectl get deploy -n renderfarm-system -o jsonpath='{.items[0].spec.template.spec.containers[0].image}')" \
    "($(kubectl get deploy -n renderfarm-system -o jsonpath='{.items[0].spec.template.metadata.annotations.renderfarm\.io/image-id}'))"
  echo "START_AHEAD: ${START_AHEAD:-(unset: field left out)}${SPEC_IMAGE:+; spec.image: $SPEC_IMAGE}"
}

# make_scene NAME FRAMES WIDTH HEIGHT SAMPLES: scenes/NAME.blend in the storage, written by
# make-scene.py with the node image's Blender (kept for the next run).
make_scene() {
  local name=$1
  shift
  [[ -s $STORE/scenes/$name.blend ]] && return
  docker run --rm --user 1000:1000 -v "$STORE:/data" --entrypoint blender "$IMAGE" \
    -b --factory-startup --python /usr/local/share/render-node/make-scene.py \
    -- "/data/scenes/$name.blend" "$@" >/dev/null
}

# apply_rj NAME SCENE FIRST LAST BATCH PARALLELISM THREADS OUTPUT: a RenderJob with the
# preview step off (it runs after the frames and is not part of these figures).
apply_rj() {
  local ahead='' image=''
  [[ -z $START_AHEAD ]] || ahead="startAhead: $START_AHEAD"
  [[ -z $SPEC_IMAGE ]] || image="image: $SPEC_IMAGE"
  RJS+=("$1")
  kubectl apply -n "$NS" -f - >/dev/null <<YAML
apiVersion: renderfarm.io/v1alpha1
kind: RenderJob
metadata: {name: $1}
spec:
  blendFile: scenes/$2.blend
  frames: {start: $3, end: $4}
  batchSize: $5
  parallelism: $6
  threads: $7
  output: {path: $8/frame_####, format: PNG}
  engine: CYCLES
  device: CPU
  storage: {claimName: render-storage, mountPath: /data}
  resources: {requests: {cpu: 500m, memory: 512Mi}, limits: {memory: 2Gi}}
  preview: {enabled: false}
  $ahead
  $image
YAML
}

# The watches of a run, each line stamped here on arrival (bench/lib.sh): renderfarm's pods
# (name|render|batch|node|phase|container state), Jobs (name|render|succeeded|Complete) and
# RenderJobs (name|phase), into DIR/pods, DIR/jobs, DIR/renderjobs.
kind_watches() {
  local dir=$1 sel=app.kubernetes.io/managed-by=renderfarm-operator
  # (stderr: "No resources found" before the first object)
  exec 3>&2 2>/dev/null
  watch_start "$dir/pods" pods -n "$NS" -l "$sel" -o \
    'jsonpath={.metadata.name}|{.metadata.labels.renderfarm\.io/renderjob}|{.metadata.labels.renderfarm\.io/batch}|{.spec.nodeName}|{.status.phase}|{.status.containerStatuses[0].state}{"\n"}'
  watch_start "$dir/jobs" jobs -n "$NS" -l "$sel" -o \
    'jsonpath={.metadata.name}|{.metadata.labels.renderfarm\.io/renderjob}|{.status.succeeded}|{.status.conditions[?(@.type=="Complete")].status}{"\n"}'
  watch_start "$dir/renderjobs" renderjobs -n "$NS" -o 'jsonpath={.metadata.name}|{.status.phase}{"\n"}'
  exec 2>&3 3>&-
  # A watch prints nothing until something changes; give the three a moment to connect.
  sleep 2
}

# poll_frames DIR COUNT OUT: stamps frames as they appear, in the background (POLLER).
poll_frames() {
  python3 bench/kind.py poll "$1" "$2" "$3" &
  POLLER=$!
}

wait_poller() {
  wait "$POLLER" || true
  POLLER=
}

# save_logs RJ DIR: every batch pod's log, with the runtime's ns timestamps, as DIR/POD.log.
save_logs() {
  local pod
  mkdir -p "$2"
  for pod in $(kubectl get pods -n "$NS" -l "renderfarm.io/renderjob=$1" -o name); do
    kubectl logs -n "$NS" --timestamps "$pod" >"$2/${pod#pod/}.log" 2>/dev/null || true
  done
}

# delete_rj RJ: the RenderJob and, before returning, its pods.
delete_rj() {
  kubectl delete rj "$1" -n "$NS" --wait=true >/dev/null
  kubectl wait --for=delete pod -n "$NS" -l "renderfarm.io/renderjob=$1" --timeout=180s >/dev/null 2>&1 || true
}

# Removes a folder of frames under the storage (files of uid 1000 in folders the kubelet made).
remove_frames() {
  docker run --rm --user 1000:1000 -v "$STORE:/data" --entrypoint rm "$IMAGE" -rf "/data/$1" || true
}

# cpu_snapshot OUT: every kind node's CPU nanoseconds (cgroup v1 cpuacct; v2 cpu.stat): the
# node's container, all its pods, and each pod's slice, as "node what value" lines.
cpu_snapshot() {
  local n
  for n in $(kind get nodes --name "${KIND_CLUSTER:-renderfarm}"); do
    docker exec "$n" sh -c '
      if [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then
        r=/sys/fs/cgroup/cpuacct f=cpuacct.usage; read_ns() { cat "$1"; }
      else
        r=/sys/fs/cgroup f=cpu.stat; read_ns() { awk "/^usage_usec/ {print \$2 * 1000}" "$1"; }
      fi
      k=$r/kubelet.slice/kubelet-kubepods.slice
      [ -d "$k" ] || k=$r/kubepods.slice
      echo "node $(read_ns $r/$f)"
      echo "kubepods $(read_ns $k/$f)"
      for p in "$k"/*pod*.slice "$k"/*/*pod*.slice; do
        [ -f "$p/$f" ] && echo "${p##*/} $(read_ns "$p/$f")"
      done' | sed "s/^/$n /"
  done >"$1"
}

# The operator pod's UID (its CPU is reported on its own).
operator_uid() {
  kubectl get pods -n renderfarm-system -l app.kubernetes.io/name=renderfarm -o jsonpath='{.items[0].metadata.uid}'
}
