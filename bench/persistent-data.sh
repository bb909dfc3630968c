#!/usr/bin/env bash
# Seconds per frame with Blender's persistent data on and off (`spec.persistentData`), on a
# scene where it matters: a static 260k-triangle mesh (a subdivided sphere) under a 2048x2048
# packed texture, Cycles on the CPU, a camera that moves, few samples at a small size, so that
# the scene's sync (BVH build, texture load) weighs against the render. render-node renders
# batches of FRAMES (8) frames, RUNS (5) times each way, alternating; per run it prints
# render-node's secondsPerFrame (the mean of Blender's own per-frame `Time:`), the first
# frame's and the later frames' seconds, and the batch's wall time; then the medians.
#
#   bench/persistent-data.sh            # RUNS=5 FRAMES=8 THREADS=2
#
# Blender is the host's (`hack/blender.sh path 4.5`, the same bpy wheel the node image has;
# BLENDER=... for another). Raw output goes to bench/results/<date>-persistent-data.txt too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-5}
FRAMES=${FRAMES:-8}
THREADS=${THREADS:-2}
BLENDER=${BLENDER:-$(hack/blender.sh path 4.5)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/persistent-data.XXXXXX")
RESULTS=bench/results/$(date +%F)-persistent-data.txt
trap 'rm -rf "$WORK"' EXIT

cargo build -q --locked -p render-node >&2
NODE=$ROOT/target/debug/render-node

cat >"$WORK/scene.py" <<'EOF'
import sys

import bpy
import numpy as np

out = sys.argv[sys.argv.index("--") + 1]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 320, 180
scene.frame_start, scene.frame_end = 1, 100
bpy.ops.mesh.primitive_uv_sphere_add(segments=256, ring_count=128, radius=2)
sphere = bpy.context.active_object
subsurf = sphere.modifiers.new("subsurf", "SUBSURF")
subsurf.levels = subsurf.render_levels = 1
size = 2048
image = bpy.data.images.new("noise", size, size)
rng = np.random.default_rng(7)
pixels = np.ones((size * size, 4), dtype=np.float32)
pixels[:, :3] = rng.random((size * size, 3), dtype=np.float32)
image.pixels.foreach_set(pixels.ravel())
image.pack()
material = bpy.data.materials.new("textured")
material.use_nodes = True
nodes = material.node_tree.nodes
tex = nodes.new("ShaderNodeTexImage")
tex.image = image
material.node_tree.links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
sphere.data.materials.append(material)
bpy.ops.object.light_add(type="SUN", location=(4, -4, 8))
bpy.ops.object.camera_add(location=(0, -9, 3), rotation=(1.25, 0, 0))
camera = bpy.context.active_object
scene.camera = camera
camera.keyframe_insert(data_path="location", frame=1)
camera.location = (3, -8, 3)
camera.keyframe_insert(data_path="location", frame=100)
bpy.ops.wm.save_as_mainfile(filepath=out, compress=False)
EOF

"$BLENDER" -b --factory-startup --python-exit-code 1 --python "$WORK/scene.py" -- "$WORK/heavy.blend" >/dev/null

# One batch; prints: mode secondsPerFrame first later wall
batch() {
  local mode=$1 flags=() start end
  [[ $mode == on ]] || flags=(--no-persistent-data)
  rm -rf "$WORK/out"
  start=$(date +%s.%N)
  TMPDIR=$WORK "$NODE" --blender "$BLENDER" --blend-file "$WORK/heavy.blend" \
    --frames "1..$FRAMES" --output "$WORK/out/f_####" --threads "$THREADS" \
    --termination-log "$WORK/term" "${flags[@]}" >"$WORK/events" 2>"$WORK/stderr" ||
    { cat "$WORK/term" "$WORK/stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 - "$mode" "$WORK/term" "$WORK/events" "$start" "$end" <<'EOF'
import json, sys
mode, term, events, start, end = sys.argv[1:]
spf = json.load(open(term))["secondsPerFrame"]
saved = [e["seconds"] for e in map(json.loads, open(events)) if e.get("event") == "frame_saved"]
later = sum(saved[1:]) / max(len(saved) - 1, 1)
print("%s %.3f %.3f %.3f %.2f" % (mode, spf, saved[0], later, float(end) - float(start)))
EOF
}

{
  echo "# $(date -Is) persistent data on/off: $RUNS runs of batches of $FRAMES frames, -t $THREADS"
  echo "# $(uname -srm); $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $("$BLENDER" --version | head -1); scene: 260k-triangle sphere, 2048x2048 packed texture, 320x180, 4 samples"
  echo "# mode seconds_per_frame first_frame later_frames_mean batch_wall_seconds"
  for _ in $(seq "$RUNS"); do
    batch on
    batch off
  done
  echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$WORK/raw"
cp "$WORK/raw" "$RESULTS"

python3 - "$WORK/raw" <<'EOF' | tee -a "$RESULTS"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.split()[:1] in (["on"], ["off"])]
for mode in ("on", "off"):
    cols = list(zip(*[[float(x) for x in r[1:]] for r in rows if r[0] == mode]))
    med = [statistics.median(c) for c in cols]
    print("median %-3s: %.3f s/frame (first %.3f, later %.3f), batch %.2f s" % (mode, *med))
EOF
echo "raw output: $RESULTS" >&2
