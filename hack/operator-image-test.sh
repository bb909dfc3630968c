#!/usr/bin/env bash
# Builds the operator image with `docker build` (the host-built binary through
# BUILDER=prebuilt) and runs it: --help, the CRD it prints, non-root user, and a start with a
# read-only root and no capabilities that fails only for want of a cluster. Needs a running
# dockerd (hack/docker.sh up). Each check counts; the last line says
# `operator-image-test: N passed, M failed` (hack/test.sh counts it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE=${IMAGE:-renderfarm/operator:dev}
# release (default) or debug: which cargo build goes into the image.
PROFILE=${IMAGE_PROFILE:-release}
PASS=0 FAIL=0
summary() {
  local rc=$?
  # A step the checks need failed (set -e): one more failure.
  if ((rc != 0 && FAIL == 0)); then FAIL=1; fi
  echo "operator-image-test: $PASS passed, $FAIL failed"
  ((FAIL == 0)) || exit 1
}
trap summary EXIT
ok() {
  PASS=$((PASS + 1))
  echo "operator-image-test: ok: $*"
}
bad() {
  FAIL=$((FAIL + 1))
  echo "operator-image-test: FAILED: $*" >&2
}

t0=$SECONDS
if [[ $PROFILE == release ]]; then
  cargo build --release --locked -p renderfarm --bin renderfarm-operator
else
  cargo build --locked -p renderfarm --bin renderfarm-operator
fi
if ! hack/docker.sh build --build-arg BUILDER=prebuilt --build-arg "PROFILE=$PROFILE" -t "$IMAGE" \
  -f operator/Dockerfile .; then
  bad "docker build"
  exit 1
fi
ok "built $IMAGE ($PROFILE) in $((SECONDS - t0))s, $(($(docker image inspect "$IMAGE" --format '{{.Size}}') / 1048576)) MiB"

help=$(docker run --rm "$IMAGE" --help 2>&1) || true
if grep -q "Renders Blender animations on Kubernetes" <<<"$help"; then ok "--help"; else bad "--help: $help"; fi

crd=$(mktemp)
if docker run --rm "$IMAGE" crd >"$crd" && cmp -s "$crd" crds/renderjob.yaml; then
  ok "the image's CRD is crds/renderjob.yaml"
else
  bad "the image's CRD differs from crds/renderjob.yaml: $(diff "$crd" crds/renderjob.yaml | head -n 20)"
fi
rm -f "$crd"

user=$(docker image inspect "$IMAGE" --format '{{.Config.User}}')
if [[ $user == 65532:65532 ]]; then ok "runs as $user"; else bad "runs as '$user', want 65532:65532"; fi

# Read-only root and no capabilities, as the chart runs it: it starts, and stops only because
# there is no cluster to talk to: kube's "failed to infer config" naming both the in-cluster
# environment and the kubeconfig it looked for, and exit status 1. Any other failure (a
# read-only file system, a missing library, a panic) is a bug.
code=0
out=$(docker run --rm --read-only --cap-drop ALL --user 65532:65532 "$IMAGE" run 2>&1) || code=$?
expected='Error: failed to infer config: in-cluster: (failed to read an incluster environment variable: environment variable not found), kubeconfig: (failed to read kubeconfig from '
if [[ $code -eq 1 ]] && grep -qF "$expected" <<<"$out" && ! grep -qi "panicked" <<<"$out"; then
  ok "read-only start fails only for want of a cluster"
else
  bad "unexpected start-up (exit $code, want 1 with: $expected...): $out"
fi
