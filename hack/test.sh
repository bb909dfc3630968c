#!/usr/bin/env bash
# All of renderfarm's tests: lint, unit and property tests, then the end-to-end suite against a
# freshly started local control plane (torn down at the end). Prints each stage's time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# anyhow errors in tests read better without a backtrace each.
export RUST_LIB_BACKTRACE=0

T0=$(date +%s)
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
stage() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; STAGE_T=$(date +%s); }
done_stage() { printf '=== %s took %ss\n' "$1" "$(($(date +%s) - STAGE_T))"; }
# cargo test, keeping its summary lines for the total at the end.
ctest() { cargo test "$@" 2>&1 | tee -a "$RESULTS"; return "${PIPESTATUS[0]}"; }

stage deps
# Blender for render-node's tests (Debian's 3.4, CPU only); PyYAML for kubeconform's CRD script.
hack/deps.sh blender python3-yaml
done_stage deps

stage lint
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
shellcheck hack/*.sh hack/kind/*.sh node-image/*.sh bench/*.sh .ci/run
done_stage lint

stage "unit and property tests"
ctest --workspace --locked
done_stage "unit and property tests"

stage "local cluster"
# From scratch every time: no objects left from an earlier run.
hack/cluster.sh down --purge >/dev/null 2>&1 || true
hack/cluster.sh up
cleanup() {
  hack/cluster.sh down --purge >/dev/null 2>&1 || true
  if [[ -n ${STARTED_KIND:-} ]]; then hack/kind.sh down >/dev/null 2>&1 || true; fi
  if [[ -n ${STARTED_DOCKERD:-} ]]; then hack/docker.sh down >/dev/null 2>&1 || true; fi
  rm -f "$RESULTS"
}
trap cleanup EXIT
eval "$(hack/cluster.sh env)"
kubectl version
# The cluster's own checks: Jobs complete, injected failures reach pods, scheduling, eviction.
hack/cluster.sh selftest 2>&1 | tee -a "$RESULTS"
done_stage "local cluster"

stage "end-to-end suite (real API server, kwok nodes)"
./target/debug/renderfarm-operator crd | kubectl apply --dry-run=client -f -
ctest -p renderfarm --test e2e --locked -- --ignored --test-threads 4 --nocapture --skip restart::
# Restarting the API server and etcd disturbs every other test: this one runs alone.
ctest -p renderfarm --test e2e --locked -- --ignored --nocapture restart::
done_stage "end-to-end suite (real API server, kwok nodes)"

stage "helm chart"
hack/chart-test.sh
done_stage "helm chart"

stage "images (docker build, docker run)"
docker info >/dev/null 2>&1 || STARTED_DOCKERD=1
hack/docker.sh up
# The debug binaries the tests built go into the images: a release build would add ~15 minutes.
export IMAGE_PROFILE=debug
hack/operator-image-test.sh
node-image/test-image.sh
done_stage "images (docker build, docker run)"

stage "kind: real pods render real frames"
# From scratch, like the local cluster: the README's first command, then the real-render test.
hack/kind.sh down >/dev/null 2>&1 || true
STARTED_KIND=1
hack/demo.sh 2>&1 | grep -v '^Image: '
eval "$(hack/kind.sh env)"
ctest -p renderfarm --test kind --locked -- --ignored --nocapture
# The e2e tests that need no kwok Stages and no operator of their own run here too; the rest
# inject failures through kwok and stay on the local control plane.
ctest -p renderfarm --test e2e --locked -- --ignored --nocapture validation::
done_stage "kind: real pods render real frames"

passed=$(grep -o '[0-9]* passed' "$RESULTS" | awk '{s += $1} END {print s + 0}')
failed=$(grep -o '[0-9]* failed' "$RESULTS" | awk '{s += $1} END {print s + 0}')
printf '\nall stages took %ss\n' "$(($(date +%s) - T0))"
printf 'renderfarm: %s passed, %s failed\n' "$passed" "$failed"
