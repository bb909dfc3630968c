#!/usr/bin/env bash
# Builds the node image and renders with it as a batch Job would run it: read-only root
# filesystem, /tmp as the only writable place, uid 1000, the render storage at /data. Checks
# the frames (Cycles and EEVEE, by the image's Blender), their thumbnails (PNG and EXR), the
# termination message, render-preview's video and contact sheet (read by the image's ffprobe),
# bad input (exit 64: a missing file, a file saved by a newer Blender) and `docker stop` (exit
# 143), and prints the timings. Needs a running dockerd (hack/docker.sh up) and cargo.
#
#   node-image/test-image.sh            build and test renderfarm/render-node:dev
#   IMAGE=name:tag node-image/test-image.sh
#   BLENDER_VERSION=5.0.1 node-image/test-image.sh
#                                       the same with Blender 5.0 (the Dockerfile's build arg),
#                                       as renderfarm/render-node:dev-blender5.0
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BLENDER_VERSION=${BLENDER_VERSION:-}
if [[ -n $BLENDER_VERSION ]]; then
  IMAGE=${IMAGE:-renderfarm/render-node:dev-blender${BLENDER_VERSION%.*}}
else
  IMAGE=${IMAGE:-renderfarm/render-node:dev}
fi
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

# The image's pip install trusts what this machine trusts (a TLS proxy's CA on the way to PyPI).
secret=()
CA=/etc/ssl/certs/ca-certificates.crt
[[ -s $CA ]] && secret=(--secret "id=ca-certificates,src=$CA")
blender_arg=()
[[ -n $BLENDER_VERSION ]] && blender_arg=(--build-arg "BLENDER_VERSION=$BLENDER_VERSION")
t0=$(now_ms)
hack/docker.sh build "${secret[@]}" "${blender_arg[@]}" --build-arg BUILDER=prebuilt \
  --build-arg "PROFILE=$PROFILE" -t "$IMAGE" -f node-image/Dockerfile .
t_build=$(($(now_ms) - t0))
version=$(docker image inspect "$IMAGE" --format '{{index .Config.Labels "io.renderfarm.blender-version"}}')
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
  --python /usr/local/share/render-node/make-scene.py -- /data/scene.blend 12 160 90 4 >/dev/null
t_scene=$(($(now_ms) - t0))
[[ -s $DATA/scene.blend ]] || fail "make-scene.py wrote no scene"

t0=$(now_ms)
run "$IMAGE" --blend-file /data/scene.blend --frames 1..3 --output '/data/out/frame_####' \
  --termination-log /data/term.json >"$DATA/progress.jsonl"
t_render=$(($(now_ms) - t0))

# Three 160×90 PNGs, not blank, all different; the message says 3 rendered on the CPU by the
# image's Blender, from a file the same Blender saved (its major.minor).
python3 - "$DATA" "$version" <<'EOF'
import json, pathlib, struct, sys, zlib

data, version = pathlib.Path(sys.argv[1]), sys.argv[2]
series = ".".join(version.split(".")[:2])
pictures = []
for f in (1, 2, 3):
    png = (data / "out" / f"frame_{f:04}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", f"frame {f} is not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (160, 90), f"frame {f} is {width}x{height}"
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
assert (msg["blenderVersion"], msg["fileVersion"]) == (version, series), msg
events = [json.loads(line) for line in (data / "progress.jsonl").read_text().splitlines()]
saved = [e["frame"] for e in events if e["event"] == "frame_saved"]
assert saved == [1, 2, 3], saved
startup = next(e["startup_seconds"] for e in events if e["event"] == "rendering")
print(f"startup_seconds={startup} seconds_per_frame={msg['secondsPerFrame']} blender={msg['blenderVersion']}")
EOF

# A 320 px JPEG thumbnail of each frame, and lastFrame in the message.
probe() { run --entrypoint ffprobe "$IMAGE" -v error -count_frames -select_streams v:0 \
  -show_entries stream="$1" -of csv=p=0 "$2"; }
for f in 1 2 3; do
  [[ $(probe width,height "/data/out/.thumbs/frame_000$f.jpg") == 320,180 ]] ||
    fail "thumbnail of frame $f: $(probe width,height "/data/out/.thumbs/frame_000$f.jpg" 2>&1)"
done
grep -q '"lastFrame":3' "$DATA/term.json" || fail "no lastFrame 3: $(cat "$DATA/term.json")"

# render-preview, as the preview Job runs it: an H.264 video of the frames, a contact sheet.
t0=$(now_ms)
run --entrypoint render-preview "$IMAGE" --output '/data/out/frame_####' --frames 1..3 \
  --fps 12 --width 320 --termination-log /data/preview.json >/dev/null
t_preview=$(($(now_ms) - t0))
grep -q '^{"ok":true,"frames":3,"columns":3,"rows":1}$' "$DATA/preview.json" ||
  fail "render-preview: $(cat "$DATA/preview.json")"
video=$(probe codec_name,pix_fmt,width,r_frame_rate,nb_read_frames /data/out/preview.mp4)
[[ $video == h264,320,yuv420p,12/1,3 ]] || fail "preview.mp4: $video"
[[ $(probe width /data/out/contact.jpg) == 720 ]] || fail "contact.jpg: $(probe width /data/out/contact.jpg)"

# EXR: tone mapped, through zscale (zimg) in the image's ffmpeg.
t0=$(now_ms)
run "$IMAGE" --blend-file /data/scene.blend --frames 1 --output '/data/exr/frame_####' \
  --format OPEN_EXR --termination-log /data/exr.json >"$DATA/exr.jsonl"
t_exr=$(($(now_ms) - t0))
grep -q '"event":"thumbnail","frame":1' "$DATA/exr.jsonl" || fail "EXR thumbnail: $(cat "$DATA/exr.jsonl")"
[[ $(probe width /data/exr/.thumbs/frame_0001.jpg) == 320 ]] || fail "EXR thumbnail is not 320 wide"

# EEVEE (the CRD's BLENDER_EEVEE, 4.5's BLENDER_EEVEE_NEXT) through EGL and Mesa's llvmpipe.
t0=$(now_ms)
run "$IMAGE" --blend-file /data/scene.blend --frames 1 --output '/data/eevee/frame_####' \
  --engine BLENDER_EEVEE --termination-log /data/eevee.json >/dev/null
t_eevee=$(($(now_ms) - t0))
grep -q '"outcome":"Succeeded","framesRendered":1,.*"device":"OPENGL"' "$DATA/eevee.json" ||
  fail "EEVEE: $(cat "$DATA/eevee.json")"
[[ -s $DATA/eevee/frame_0001.png ]] || fail "EEVEE wrote no frame"

# Bad input: exit 64 and a termination message saying why.
bad() {
  local name=$1 blend=$2 want=$3 code
  set +e
  run "$IMAGE" --blend-file "$blend" --frames 1 --output "/data/$name/x_####" \
    --termination-log "/data/$name.json" >/dev/null 2>&1
  code=$?
  set -e
  [[ $code -eq 64 ]] || fail "$name: exit $code, want 64"
  grep -q '"outcome":"BadInput"' "$DATA/$name.json" || fail "$name: no BadInput message: $(cat "$DATA/$name.json")"
  grep -qF "$want" "$DATA/$name.json" || fail "$name: the message does not say $want: $(cat "$DATA/$name.json")"
}
bad missing /data/nope.blend "cannot read blend file"
# A file saved by a newer Blender (zstd; 5.0's header BLENDER17-01v0500, or for a 5.x image
# 5.x+1's): refused before Blender opens it, with the version the image's Blender has
# (RENDER_NODE_BLENDER_VERSION, not asked).
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
if ((major < 5)); then newer=5.0; else newer=$major.$((minor + 1)); fi
header=$(printf 'BLENDER17-01v%02d%02d' "${newer%.*}" "${newer#*.}")
run --entrypoint /opt/blender/bin/python "$IMAGE" -c \
  "import zstandard; open('/data/newer.blend', 'wb').write(zstandard.compress(b'$header' + bytes(4096)))"
bad newer /data/newer.blend "saved by Blender $newer, newer than this image's Blender $version"
grep -q "\"fileVersion\":\"$newer\"" "$DATA/newer.json" || fail "no fileVersion $newer: $(cat "$DATA/newer.json")"

# `docker stop` (SIGTERM to render-node as PID 1, as the kubelet does): exit 143, promptly.
docker run -d --name render-node-test-stop --read-only --tmpfs /tmp --user 1000:1000 \
  -v "$DATA:/data" "$IMAGE" --blend-file /data/scene.blend --frames 1..12 \
  --output '/data/stop/frame_####' --termination-log /data/stop.json >/dev/null
# Stop once a frame is saved, so that the stop lands mid-render; if rendering never started,
# that is a failure, not a stop to test.
started=0
for _ in $(seq 600); do
  if docker logs render-node-test-stop 2>/dev/null | grep -q '"event":"frame_saved"'; then
    started=1
    break
  fi
  [[ $(docker inspect render-node-test-stop --format '{{.State.Running}}') == true ]] ||
    fail "render-node ended before saving a frame: $(docker logs render-node-test-stop 2>&1 | tail -5)"
  sleep 0.2
done
((started)) || fail "no frame saved within 2 minutes: $(docker logs render-node-test-stop 2>&1 | tail -5)"
t0=$(now_ms)
docker stop -t 20 render-node-test-stop >/dev/null
t_stop=$(($(now_ms) - t0))
code=$(docker inspect render-node-test-stop --format '{{.State.ExitCode}}')
[[ $code -eq 143 ]] || fail "docker stop: exit $code, want 143"
grep -q '"outcome":"Terminated"' "$DATA/stop.json" || fail "no Terminated message: $(cat "$DATA/stop.json")"
grep -q '"framesMissing":\[' "$DATA/stop.json" || fail "the stop did not land mid-render: $(cat "$DATA/stop.json")"

printf '\n%-34s %s\n' "image" "$IMAGE"
printf '%-34s %s MB\n' "image size" "$((size / 1000000))"
printf '%-34s %s s\n' "cargo build ($PROFILE)" "$((t_cargo / 1000))"
printf '%-34s %s s\n' "docker build (prebuilt binary)" "$((t_build / 1000))"
printf '%-34s %s ms\n' "make-scene.py in the image" "$t_scene"
printf '%-34s %s\n' "Blender" "$version"
printf '%-34s %s ms\n' "render 3 frames (docker run)" "$t_render"
printf '%-34s %s ms\n' "render-preview, 3 frames" "$t_preview"
printf '%-34s %s ms\n' "EXR, 1 frame and its thumbnail" "$t_exr"
printf '%-34s %s ms\n' "EEVEE, 1 frame (docker run)" "$t_eevee"
printf '%-34s %s ms\n' "docker stop during a render" "$t_stop"
say "ok: frames (Cycles, EEVEE), thumbnails (PNG, EXR), render-preview (H.264, contact sheet), termination message, exit 64 on bad input and a newer file, exit 143 on docker stop"
