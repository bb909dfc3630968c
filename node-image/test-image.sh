#!/usr/bin/env bash
# Builds the node image and renders with it as a batch Job would run it: read-only root
# filesystem, /tmp as the only writable place, uid 1000, the render storage at /data. Checks
# the frames, the termination message, bad input (exit 64) and `docker stop` (exit 143), and
# prints the timings. Needs a running dockerd (hack/docker.sh up) and cargo.
#
#   node-image/test-image.sh            build and test renderfarm/render-node:dev
#   IMAGE=name:tag node-image/test-image.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE=${IMAGE:-renderfarm/render-node:dev}
# release (default) or debug: which cargo build goes into the image.
PROFILE=${IMAGE_PROFILE:-release}
say() { printf '[test-image] %s\n' "$*" >&2; }
fail() {
  say "FAIL: $*"
  exit 1
}
now_ms() { date +%s%3N; }

docker info >/dev/null 2>&1 || fail "dockerd does not answer (start it with hack/docker.sh up)"

t0=$(now_ms)
if [[ $PROFILE == release ]]; then
  cargo build --release --locked -p render-node
else
  cargo build --locked -p render-node
fi
t_cargo=$(($(now_ms) - t0))

t0=$(now_ms)
hack/docker.sh build --build-arg BUILDER=prebuilt --build-arg "PROFILE=$PROFILE" -t "$IMAGE" -f node-image/Dockerfile .
t_build=$(($(now_ms) - t0))
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')

DATA=$(mktemp -d)
cleanup() {
  docker rm -f render-node-test-stop >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT
chmod 0777 "$DATA"

# As a batch pod runs: read-only root, /tmp an emptyDir, non-root, storage at /data.
run() {
  docker run --rm --read-only --tmpfs /tmp --user 1000:1000 -v "$DATA:/data" "$@"
}

t0=$(now_ms)
run --entrypoint blender "$IMAGE" -b --factory-startup \
  --python /usr/local/share/render-node/make-scene.py -- /data/scene.blend 12 320 180 8 >/dev/null
t_scene=$(($(now_ms) - t0))
[[ -s $DATA/scene.blend ]] || fail "make-scene.py wrote no scene"

t0=$(now_ms)
run "$IMAGE" --blend-file /data/scene.blend --frames 1..3 --output '/data/out/frame_####' \
  --termination-log /data/term.json >"$DATA/progress.jsonl"
t_render=$(($(now_ms) - t0))

# Three 320×180 PNGs, not blank, all different; the message says 3 rendered on the CPU.
python3 - "$DATA" <<'EOF'
import json, pathlib, struct, sys, zlib

data = pathlib.Path(sys.argv[1])
pictures = []
for f in (1, 2, 3):
    png = (data / "out" / f"frame_{f:04}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", f"frame {f} is not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (320, 180), f"frame {f} is {width}x{height}"
    idat, i = b"", 8
    while i < len(png):
        n, kind = struct.unpack(">I4s", png[i:i + 8])
        if kind == b"IDAT":
            idat += png[i + 8:i + 8 + n]
        i += 12 + n
    pixels = zlib.decompress(idat)
    assert len(set(pixels)) > 20, f"frame {f} looks blank"
    pictures.append(pixels)
assert pictures[0] != pictures[1] != pictures[2], "frames do not differ"
msg = json.loads((data / "term.json").read_text())
assert (msg["outcome"], msg["framesRendered"], msg["device"]) == ("Succeeded", 3, "CPU"), msg
events = [json.loads(line) for line in (data / "progress.jsonl").read_text().splitlines()]
saved = [e["frame"] for e in events if e["event"] == "frame_saved"]
assert saved == [1, 2, 3], saved
startup = next(e["startup_seconds"] for e in events if e["event"] == "rendering")
print(f"startup_seconds={startup} seconds_per_frame={msg['secondsPerFrame']} blender={msg['blenderVersion']}")
EOF

# Bad input: exit 64 and a termination message saying why.
set +e
run "$IMAGE" --blend-file /data/nope.blend --frames 1 --output '/data/out/x_####' \
  --termination-log /data/bad.json >/dev/null 2>&1
code=$?
set -e
[[ $code -eq 64 ]] || fail "missing .blend: exit $code, want 64"
grep -q '"outcome":"BadInput"' "$DATA/bad.json" || fail "no BadInput message: $(cat "$DATA/bad.json")"

# `docker stop` (SIGTERM to render-node as PID 1, as the kubelet does): exit 143, promptly.
docker run -d --name render-node-test-stop --read-only --tmpfs /tmp --user 1000:1000 \
  -v "$DATA:/data" "$IMAGE" --blend-file /data/scene.blend --frames 1..12 \
  --output '/data/stop/frame_####' --termination-log /data/stop.json >/dev/null
for _ in $(seq 100); do
  docker logs render-node-test-stop 2>/dev/null | grep -q frame_started && break
  sleep 0.2
done
t0=$(now_ms)
docker stop -t 20 render-node-test-stop >/dev/null
t_stop=$(($(now_ms) - t0))
code=$(docker inspect render-node-test-stop --format '{{.State.ExitCode}}')
[[ $code -eq 143 ]] || fail "docker stop: exit $code, want 143"
grep -q '"outcome":"Terminated"' "$DATA/stop.json" || fail "no Terminated message: $(cat "$DATA/stop.json")"
((t_stop < 5000)) || fail "docker stop took ${t_stop} ms"

printf '\n%-34s %s\n' "image" "$IMAGE"
printf '%-34s %s MB\n' "image size" "$((size / 1000000))"
printf '%-34s %s s\n' "cargo build ($PROFILE)" "$((t_cargo / 1000))"
printf '%-34s %s s\n' "docker build (prebuilt binary)" "$((t_build / 1000))"
printf '%-34s %s ms\n' "make-scene.py in the image" "$t_scene"
printf '%-34s %s ms\n' "render 3 frames (docker run)" "$t_render"
printf '%-34s %s ms\n' "docker stop during a render" "$t_stop"
say "ok: frames, termination message, exit 64 on bad input, exit 143 on docker stop"
