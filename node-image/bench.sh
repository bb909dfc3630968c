#!/usr/bin/env bash
# Benchmark (not a test): what render-node costs on top of Blender, in the node image. Builds the
# image cold (no build cache; the bpy wheel is downloaded again) and prints its size and build
# time; then, in one container of it, renders the demo scene's frames 1..FRAMES with the image's
# `blender` bare and with render-node (same Blender command line, plus render-node's checks,
# its prepare script and the verification of every file), RUNS times each, alternating, and
# prints the wall and CPU time per frame of each and their ratios. The CPU time of the process
# tree is the steadier figure on a machine whose other load comes and goes.
#
#   node-image/bench.sh [RUNS]     (default 7, after one warm-up run of each)
#
# Environment: FRAMES (6), WIDTH (320), HEIGHT (180), SAMPLES (8), IMAGE
# (renderfarm/render-node:bench), COLD (1; 0 reuses the build cache). Needs dockerd
# (hack/docker.sh up) and cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${1:-7}
FRAMES=${FRAMES:-6}
WIDTH=${WIDTH:-320}
HEIGHT=${HEIGHT:-180}
SAMPLES=${SAMPLES:-8}
IMAGE=${IMAGE:-renderfarm/render-node:bench}
COLD=${COLD:-1}
now_ms() { date +%s%3N; }

docker info >/dev/null 2>&1 || {
  echo "bench: dockerd does not answer (start it with hack/docker.sh up)" >&2
  exit 1
}
cargo build --release --locked -p render-node

secret=()
CA=/etc/ssl/certs/ca-certificates.crt
[[ -s $CA ]] && secret=(--secret "id=ca-certificates,src=$CA")
cache=()
((COLD)) && cache=(--no-cache)
t0=$(now_ms)
hack/docker.sh build -q "${cache[@]}" "${secret[@]}" --build-arg BUILDER=prebuilt \
  -t "$IMAGE" -f node-image/Dockerfile . >/dev/null
t_build=$(($(now_ms) - t0))
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')

DATA=$(mktemp -d)
name=render-node-bench-$$
cleanup() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT
chmod 0777 "$DATA"
docker run -d --name "$name" --read-only --tmpfs /tmp --user 1000:1000 -v "$DATA:/data" \
  --entrypoint sleep "$IMAGE" infinity >/dev/null
docker exec "$name" blender -b --factory-startup --python /usr/local/share/render-node/make-scene.py \
  -- /data/scene.blend 12 "$WIDTH" "$HEIGHT" "$SAMPLES" >/dev/null

# Timed inside the container, so that neither side pays for `docker exec`.
docker exec -i "$name" /opt/blender/bin/python - "$RUNS" "$FRAMES" >"$DATA/result.txt" <<'EOF'
import json, os, shutil, statistics, subprocess, sys, time

runs, frames = int(sys.argv[1]), int(sys.argv[2])
bare = ["blender", "-noaudio", "-b", "/data/scene.blend", "-o", "/data/bare/f_####", "-F", "PNG",
        "-x", "1", "-E", "CYCLES", "-f", "1..%d" % frames, "--", "--cycles-device", "CPU"]
node = ["render-node", "--blend-file", "/data/scene.blend", "--frames", "1..%d" % frames,
        "--output", "/data/node/f_####", "--overwrite", "--termination-log", "/data/term.json"]
wall = {"bare": [], "node": []}
cpu = {"bare": [], "node": []}


def run(cmd):
    """(wall seconds, CPU seconds of the whole process tree)."""
    before = os.times()
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - t
    after = os.times()
    return elapsed, (after.children_user - before.children_user) + (after.children_system - before.children_system)


for i in range(runs + 1):
    for name, cmd in (("bare", bare), ("node", node)) if i % 2 else (("node", node), ("bare", bare)):
        shutil.rmtree("/data/" + name, ignore_errors=True)
        w, c = run(cmd)
        if i:  # the first round warms the page cache
            wall[name].append(w)
            cpu[name].append(c)
term = json.load(open("/data/term.json"))
med = statistics.median
print("runs:                        %d of each, %d frames a run, alternating" % (runs, frames))
for k, label in (("bare", "blender bare"), ("node", "render-node")):
    w, c = wall[k], cpu[k]
    print("%-28s %.3f s wall per frame (median run %.2f s, min %.2f, max %.2f), %.3f s CPU per frame"
          % (label + ":", med(w) / frames, med(w), min(w), max(w), med(c) / frames))
print("render-node's own measure:   %s s per frame (Blender's Time:, start-up excluded)" % term["secondsPerFrame"])
print("overhead ratio, CPU:         %.3f (render-node / bare, median CPU time of the process tree)"
      % (med(cpu["node"]) / med(cpu["bare"])))
print("overhead ratio, wall:        %.3f (median; of the fastest runs %.3f; the machine's other load moves it)"
      % (med(wall["node"]) / med(wall["bare"]), min(wall["node"]) / min(wall["bare"])))
EOF

printf '%-28s %s (Blender %s)\n' "image:" "$IMAGE" \
  "$(docker image inspect "$IMAGE" --format '{{index .Config.Labels "io.renderfarm.blender-version"}}')"
printf '%-28s %s MB\n' "image size:" "$((size / 1000000))"
printf '%-28s %s s (%s)\n' "image build:" "$((t_build / 1000))" "$( ((COLD)) && echo "cold, no build cache" || echo "build cache allowed")"
printf '%-28s %s×%s, %s samples, Cycles CPU\n' "scene:" "$WIDTH" "$HEIGHT" "$SAMPLES"
cat "$DATA/result.txt"
