#!/usr/bin/env bash
# Time to first frame on kind, warm images: RUNS renders of one small Cycles frame (one batch,
# a fresh RenderJob and output folder each, after one warm-up run that is not counted), from
# `kubectl apply` to the frame on this machine's disk. Prints each run and p50/p90 of its
# steps, in seconds:
#   apply     kubectl apply started -> the RenderJob seen by a watch
#   operator  -> its batch Job seen
#   Job->pod  -> the Job's pod seen (the Job controller)
#   sched     -> the pod seen with a node (the scheduler)
#   kubelet   -> render-node's first line (sandbox, volumes, container start, input checks)
#   blender   -> render-node's `rendering` event (Blender start and scene load)
#   frame     -> the first `frame_saved` event
#   visible   -> the PNG seen in the storage folder here
# Watches stamp API events with this machine's clock (bench/lib.sh); in-pod steps come from
# `kubectl logs --timestamps` (the node's runtime, ns; kind nodes share this clock).
# Not a test: figures only.
#
#   bench/first-frame.sh [RUNS]     default 10
#
# Environment: START_AHEAD, KIND_UP=0, RENDERFARM_KIND_STORAGE, KEEP_FRAMES=1 (as render.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/kind-lib.sh
source bench/kind-lib.sh

RUNS=${1:-10}
kind_setup
scene=bench-first-frame-160x90-4s
out=renders/bench-first-frame-$RUN_ID
dir=$(mktemp -d)

kind_header "bench/first-frame.sh $*"
echo "scene: make-scene.py, 160x90, Cycles 4 samples; each run renders frame 1 as one batch, threads: all, preview off"
make_scene "$scene" 6 160 90 4
kind_watches "$dir"

us() { date +%s%6N; }
results=()
for i in $(seq 0 "$RUNS"); do
  rj=bench-ff-$$-$i
  poll_frames "$STORE/$out/r$i" 1 "$dir/$rj.frames"
  t0=$(us)
  apply_rj "$rj" "$scene" 1 1 1 1 0 "$out/r$i"
  kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Succeeded "rj/$rj" --timeout=600s >/dev/null
  wait_poller
  sleep 1
  save_logs "$rj" "$dir/logs"
  python3 bench/kind.py first-frame-run "$dir" "$rj" "$t0" >"$dir/$rj.json"
  # Run 0 warms the node's page cache and the Job controller's caches: not counted.
  ((i == 0)) || results+=("$dir/$rj.json")
  delete_rj "$rj"
done
watch_stop
python3 bench/kind.py first-frame "${results[@]}"
[[ ${KEEP_FRAMES:-0} == 1 ]] || remove_frames "$out"
echo "raw: $dir" >&2
