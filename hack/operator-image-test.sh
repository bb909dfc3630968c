#!/usr/bin/env bash
# Builds the operator image with `docker build` (the host-built binary through
# BUILDER=prebuilt) and runs it: --help, the CRD it prints, non-root user. Needs a running
# dockerd (hack/docker.sh up).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE=${IMAGE:-renderfarm/operator:dev}
# release (default) or debug: which cargo build goes into the image.
PROFILE=${IMAGE_PROFILE:-release}
fail() { echo "operator-image-test: $*" >&2; exit 1; }

t0=$SECONDS
if [[ $PROFILE == release ]]; then
  cargo build --release --locked -p renderfarm --bin renderfarm-operator
else
  cargo build --locked -p renderfarm --bin renderfarm-operator
fi
hack/docker.sh build --build-arg BUILDER=prebuilt --build-arg "PROFILE=$PROFILE" -t "$IMAGE" -f operator/Dockerfile .
echo "operator-image-test: built $IMAGE ($PROFILE) in $((SECONDS - t0))s, $(($(docker image inspect "$IMAGE" --format '{{.Size}}') / 1048576)) MiB"

help=$(docker run --rm "$IMAGE" --help)
grep -q "Renders Blender animations on Kubernetes" <<<"$help" || fail "--help: $help"
docker run --rm "$IMAGE" crd >"${TMPDIR:-/tmp}/renderfarm-image-crd.yaml"
cmp -s "${TMPDIR:-/tmp}/renderfarm-image-crd.yaml" crds/renderjob.yaml || fail "the image's CRD differs from crds/renderjob.yaml"
user=$(docker image inspect "$IMAGE" --format '{{.Config.User}}')
[[ $user == 65532:65532 ]] || fail "runs as '$user', want 65532:65532"
# Read-only root and no capabilities, as the chart runs it: still starts (and fails only for
# want of a cluster, saying so).
out=$(docker run --rm --read-only --cap-drop ALL --user 65532:65532 "$IMAGE" run 2>&1 || true)
grep -qi "kube\|config" <<<"$out" || fail "unexpected start-up failure: $out"
echo "operator-image-test: ok (--help, crd, user $user, read-only start)"
