#!/usr/bin/env bash
# Real renders on kind against bare Blender, in one run: the same FRAMES Cycles frames (a few
# seconds each on one thread) rendered
#   bare     by one `blender -b SCENE -a -t CORES` in the render-node image (docker run, the
#            storage folder mounted, as many CPUs as a kind node sees), before and after the
#            farm cases (ratios use their mean);
#   bs<N>    by renderfarm on kind, a fresh RenderJob per batch size N (BATCH_SIZES), two
#            workers, parallelism 2, threads per pod CORES/2, preview step off.
# Prints per case the wall time from start (docker run, kubectl apply) to the last frame on
# disk and to the RenderJob seen Succeeded, its ratio to bare Blender, CPU seconds per frame
# (bare: bash's `times` in the container; farm: the render's pods on the kind nodes' cgroups,
# not the operator, which is listed on its own), and where each batch's time goes: Job
# controller, scheduler, kubelet start (pod scheduled -> render-node's first line), Blender
# start and scene load, render, tail (last frame saved -> render-node done: thumbnails,
# checks), and the refill of a slot (one batch's last frame saved -> the next batch's first
# frame started in its place). In-pod times come from render-node's progress events
# (`kubectl logs --timestamps`, ns); API events from watches stamped with this machine's clock.
# Not a test: figures only.
#
#   bench/render.sh [FRAMES]     default 32 frames; BATCH_SIZES="1 4 16"
#
# Environment: BATCH_SIZES, SCENE_SIZE ("WIDTH HEIGHT SAMPLES", default "480 270 16"),
# START_AHEAD (true/false: sets spec.startAhead; unset leaves it out), SPEC_IMAGE (a render-node
# image loaded into the nodes, as spec.image), COMPARE_IMAGE (each batch size again with this
# image as spec.image, in the same run), KIND_UP=0 (use the
# running kind cluster as it is instead of `hack/kind.sh up`), KEEP_FRAMES=1,
# RENDERFARM_KIND_STORAGE (the folder the kind nodes mount, default ./render).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/kind-lib.sh
source bench/kind-lib.sh

N=${1:-32}
read -r -a SIZES <<<"${BATCH_SIZES:-1 4 16}"
read -r W H SAMPLES <<<"${SCENE_SIZE:-480 270 16}"
PAR=2
kind_setup
CORES=$NODE_CPUS
THREADS=$((CORES / 2 > 0 ? CORES / 2 : 1))
scene=bench-render-${W}x${H}-${SAMPLES}s-${N}f
out=renders/bench-render-$RUN_ID
dir=$(mktemp -d)

kind_header "bench/render.sh $*"
echo "scene: make-scene.py, $N frames ${W}x${H}, Cycles $SAMPLES samples; bare Blender -t $CORES;" \
  "renderfarm: parallelism $PAR, threads $THREADS per pod, batch sizes ${SIZES[*]}, preview off${COMPARE_IMAGE:+; each batch size also with spec.image $COMPARE_IMAGE}"
make_scene "$scene" "$N" "$W" "$H" "$SAMPLES"
kind_watches "$dir"
op=$(operator_uid)

us() { date +%s%6N; }

bare() { # CASE
  local case=$1 t0 t1
  poll_frames "$STORE/$out/$case" "$N" "$dir/$case.frames"
  t0=$(us)
  docker run --rm --user 1000:1000 -v "$STORE:/data" --entrypoint bash "$IMAGE" -c \
    "blender -b /data/scenes/$scene.blend -o /data/$out/$case/frame_#### -F PNG -t $CORES -s 1 -e $N -a \
      | grep -E '^ *Time:'; times" >"$dir/$case.out"
  t1=$(us)
  wait_poller
  python3 bench/kind.py bare-case "$dir/$case.out" "$dir/$case.frames" "$t0" "$t1" "$N" "$case" \
    >"$dir/$case.json"
  python3 bench/kind.py render-case "$dir/$case.json"
  CASES+=("$dir/$case.json")
}

farm() { # BATCH-SIZE [IMAGE]
  local bs=$1 case=bs$1 rj t0 SPEC_IMAGE=${2:-$SPEC_IMAGE}
  rj=bench-render-bs$1-$$
  if [[ -n ${2:-} ]]; then
    case="bs$1 ${2##*:}"
    rj=bench-render-bs$1-${2##*:}-$$
  fi
  cpu_snapshot "$dir/$rj.cpu0"
  poll_frames "$STORE/$out/${rj%-*}" "$N" "$dir/$rj.frames"
  t0=$(us)
  apply_rj "$rj" "$scene" 1 "$N" "$bs" "$PAR" "$THREADS" "$out/${rj%-*}"
  kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Succeeded "rj/$rj" --timeout=1800s >/dev/null
  wait_poller
  # The last watch events (pods seen Succeeded, Jobs Complete) and the pods' last CPU ticks.
  sleep 2
  cpu_snapshot "$dir/$rj.cpu1"
  save_logs "$rj" "$dir/logs"
  python3 bench/kind.py farm-case "$dir" "$rj" "$t0" "$PAR" "$N" "$case" \
    "$dir/$rj.cpu0" "$dir/$rj.cpu1" "$op" >"$dir/$rj.json"
  python3 bench/kind.py render-case "$dir/$rj.json"
  CASES+=("$dir/$rj.json")
  delete_rj "$rj"
}

CASES=()
bare bare-before
for bs in "${SIZES[@]}"; do
  farm "$bs"
  [[ -z ${COMPARE_IMAGE:-} ]] || farm "$bs" "$COMPARE_IMAGE"
done
bare bare-after
watch_stop
python3 bench/kind.py render-table "${CASES[@]}"
[[ ${KEEP_FRAMES:-0} == 1 ]] || remove_frames "$out"
echo "raw: $dir" >&2
