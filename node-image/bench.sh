#!/usr/bin/env bash
# Benchmark (not a test): what render-node costs on top of Blender. Renders the demo scene's
# frames 1..3 (320×180, Cycles, 8 samples, CPU) with render-node and with the same Blender
# command bare, and prints Blender's start-up time, the time per frame and the ratio.
# Needs blender, hyperfine and python3 on PATH (apt-get install blender hyperfine).
#
#   node-image/bench.sh [RUNS]      (default 5 runs each, after one warm-up)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${1:-5}
for tool in blender hyperfine python3; do
  command -v "$tool" >/dev/null || {
    echo "bench: $tool is needed (apt-get install -y blender hyperfine python3)" >&2
    exit 1
  }
done
cargo build --release --locked -p render-node
NODE=$PWD/target/release/render-node

DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
blender -b --factory-startup --python node-image/scripts/make-scene.py -- \
  "$DIR/scene.blend" 12 320 180 8 >/dev/null

bare="blender -noaudio -b $DIR/scene.blend -o $DIR/bare/f_#### -F PNG -x 1 -E CYCLES -f 1..3 -- --cycles-device CPU"
node="$NODE --blend-file $DIR/scene.blend --frames 1..3 --output $DIR/node/f_#### --overwrite --termination-log $DIR/term.json"
startup="blender -noaudio -b $DIR/scene.blend"

hyperfine --style basic --warmup 1 --runs "$RUNS" --export-json "$DIR/bench.json" \
  -n "blender start-up (load, no render)" "$startup" \
  -n "blender bare, 3 frames" "$bare" \
  -n "render-node, 3 frames" "$node" >&2

python3 - "$DIR/bench.json" "$DIR/term.json" <<'EOF'
import json, sys

results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
startup = results["blender start-up (load, no render)"]["mean"]
bare = results["blender bare, 3 frames"]["mean"]
node = results["render-node, 3 frames"]["mean"]
term = json.load(open(sys.argv[2]))
print(f"blender start-up:           {startup:.2f} s")
print(f"blender bare, 3 frames:     {bare:.2f} s ({(bare - startup) / 3:.2f} s per frame after start-up)")
print(f"render-node, 3 frames:      {node:.2f} s (its own measure: {term['secondsPerFrame']} s per frame)")
print(f"overhead ratio:             {node / bare:.3f} (render-node / bare Blender)")
EOF
