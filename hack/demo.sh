#!/usr/bin/env bash
# The demo: a real render on kind. Brings up the kind cluster with renderfarm installed
# (hack/kind.sh up), writes a small scene with Blender's Python into the render storage,
# applies examples/renderjob.yaml (12 frames, batches of 3, two at a time), shows
# `kubectl get rj -w` until it completes, and prints where the PNG frames are on this machine.
# A second run reuses the cluster, the images and the frames already on disk (skip-existing).
# hack/demo-kwok.sh is the same render on the local control plane's fake nodes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t0=$SECONDS

hack/kind.sh up
eval "$(hack/kind.sh env)"

# The storage volume is ./render on this machine, /renders on every node, /data in a pod.
scene=render/scenes/demo.blend
if [[ ! -s $scene ]]; then
  echo "writing $scene with Blender 4.5's Python (in the render-node image)"
  docker run --rm --user 1000:1000 -v "$PWD/render:/data" --entrypoint blender renderfarm/render-node:dev \
    -b --factory-startup --python /usr/local/share/render-node/make-scene.py \
    -- /data/scenes/demo.blend 12 320 180 16 >/dev/null
fi

# Frames on disk stay; a new RenderJob skips them and renders only what is missing.
kubectl delete renderjob demo --ignore-not-found --wait=true >/dev/null
kubectl apply -f examples/renderjob.yaml
kubectl get rj demo -w &
watch=$!
trap 'kill $watch 2>/dev/null || true' EXIT
kubectl wait --for=condition=Complete rj/demo --timeout=900s >/dev/null
# The preview step runs once the frames are done: preview.mp4 and contact.jpg beside them.
if ! kubectl wait --for=condition=PreviewReady rj/demo --timeout=180s >/dev/null; then
  echo "no preview: $(kubectl get rj demo -o jsonpath='{.status.preview.state}: {.status.preview.message}')"
fi
sleep 1
kill $watch 2>/dev/null || true
echo
kubectl get rj demo -o wide
kubectl get pods -l renderfarm.io/renderjob=demo -o wide
echo
frames=(render/renders/demo/frame_*.png)
echo "${#frames[@]} frames and their preview in $PWD/render/renders/demo/ (demo took $((SECONDS - t0))s):"
ls -l render/renders/demo/
echo
echo "watch again: kubectl get rj -w (after: eval \"\$(hack/kind.sh env)\"); stop: hack/kind.sh down"
