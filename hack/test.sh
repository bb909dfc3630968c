#!/usr/bin/env bash
# All of renderfarm's tests: lint, unit and property tests, the end-to-end suite against a
# freshly started local control plane, the chart, the images, and real renders on kind (each
# cluster torn down at the end if this script started it).
#
# Every stage runs even when an earlier one failed. Each prints pass/fail, its counts and its
# time; the last line is the true total, alone on its line:
#   renderfarm: N passed, M failed
# and the exit status is non-zero when anything failed. Counted are cargo test's own result
# lines (`test result: ok. N passed; M failed; ...`), the `NAME: N passed, M failed` line a
# test script ends with, and one check for any other step (lint, cluster start-up, ...). A
# cargo test that exits non-zero without a failed test (a build error, a crash) or that ran no
# test at all counts one failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
# anyhow errors in tests read better without a backtrace each.
export RUST_LIB_BACKTRACE=0

T0=$SECONDS
WORK=$(mktemp -d)
LOGS=target/test-logs
mkdir -p "$LOGS"
PASSED=0 FAILED=0
STAGE_PASSED=0 STAGE_FAILED=0
SUMMARY=()
FINISHED='' STARTED_CLUSTER='' STARTED_KIND='' STARTED_KUEUE='' STARTED_DOCKERD='' BUILD_KIND_PID=''

# count PASSED FAILED: add to the stage's and the run's totals.
count() {
  STAGE_PASSED=$((STAGE_PASSED + $1)) STAGE_FAILED=$((STAGE_FAILED + $2))
  PASSED=$((PASSED + $1)) FAILED=$((FAILED + $2))
}

# check NAME CMD...: one check, passed when CMD exits 0. Returns CMD's status.
check() {
  local name=$1 rc t=$SECONDS
  shift
  "$@"
  rc=$?
  if ((rc == 0)); then
    count 1 0
    printf -- '--- %s: ok (%ss)\n' "$name" "$((SECONDS - t))"
  else
    count 0 1
    printf -- '--- %s: FAILED, exit %s (%ss)\n' "$name" "$rc" "$((SECONDS - t))"
  fi
  return "$rc"
}

# ctest NAME ARGS...: cargo test ARGS, counted from its own `test result:` lines.
ctest() {
  local name=$1 rc p f t=$SECONDS
  shift
  cargo test "$@" 2>&1 | tee "$WORK/ctest.out"
  rc=${PIPESTATUS[0]}
  read -r p f < <(result_lines "$WORK/ctest.out")
  if ((rc != 0 && f == 0)); then
    echo "test.sh: $name: cargo test exited $rc with no failed test counted (build error or crash)"
    f=1
  elif ((rc == 0 && p == 0 && f == 0)); then
    echo "test.sh: $name: no test ran"
    f=1
  fi
  count "$p" "$f"
  printf -- '--- %s: %s passed, %s failed (%ss)\n' "$name" "$p" "$f" "$((SECONDS - t))"
  return "$rc"
}

# result_lines FILE: "PASSED FAILED" summed over cargo test's result lines in FILE; nothing
# else in the output (a test's own --nocapture output, a script's) can look like one.
result_lines() {
  sed -nE 's/^test result: (ok|FAILED)\. ([0-9]+) passed; ([0-9]+) failed;.*/\2 \3/p' "$1" |
    awk '{p += $1; f += $2} END {print p + 0, f + 0}'
}

# script NAME CMD...: a test script that ends with the line `NAME: N passed, M failed`;
# counted from that line, or as one check by its exit status when it printed none.
script() {
  local name=$1 rc p f line t=$SECONDS
  shift
  "$@" 2>&1 | tee "$WORK/script.out"
  rc=${PIPESTATUS[0]}
  line=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed\$" "$WORK/script.out" | tail -n 1)
  if [[ -n $line ]]; then
    read -r p f < <(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/' <<<"$line")
    if ((rc != 0 && f == 0)); then
      echo "test.sh: $name exited $rc after its result line"
      f=1
    fi
  elif ((rc == 0)); then
    p=1 f=0
  else
    p=0 f=1
  fi
  count "$p" "$f"
  printf -- '--- %s: %s passed, %s failed (%ss)\n' "$name" "$p" "$f" "$((SECONDS - t))"
  return "$rc"
}

# stage NAME FUNCTION: run one stage; it counts its own checks. A stage that returns non-zero
# without having counted a failure counts one.
stage() {
  local name=$1 fn=$2 t=$SECONDS rc verdict
  printf '\n=== %s (%s)\n' "$name" "$(date +%H:%M:%S)"
  STAGE_PASSED=0 STAGE_FAILED=0
  "$fn"
  rc=$?
  if ((rc != 0 && STAGE_FAILED == 0)); then
    echo "test.sh: stage '$name' ended with exit $rc"
    count 0 1
  fi
  verdict=ok
  ((STAGE_FAILED == 0)) || verdict=FAILED
  SUMMARY+=("$(printf '%-6s %5ss  %4s passed %3s failed  %s' "$verdict" "$((SECONDS - t))" \
    "$STAGE_PASSED" "$STAGE_FAILED" "$name")")
  printf '=== %s: %s, %s passed, %s failed, took %ss\n' "$name" "$verdict" "$STAGE_PASSED" \
    "$STAGE_FAILED" "$((SECONDS - t))"
}

# The summary, from the EXIT trap so that it prints however the script ends; its last line is
# the total. Cleans up what this script started first, so nothing prints after the total.
finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $BUILD_KIND_PID ]] && kill -0 "$BUILD_KIND_PID" 2>/dev/null; then
    kill -- "-$BUILD_KIND_PID" 2>/dev/null || true
  fi
  if [[ -n $STARTED_KUEUE ]]; then hack/kueue.sh down >/dev/null 2>&1 || true; fi
  if [[ -n $STARTED_CLUSTER ]]; then hack/cluster.sh down --purge >/dev/null 2>&1 || true; fi
  if [[ -n $STARTED_KIND ]]; then hack/kind.sh down >/dev/null 2>&1 || true; fi
  if [[ -n $STARTED_DOCKERD ]]; then hack/docker.sh down >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
  if [[ -z $FINISHED ]]; then
    echo "test.sh: stopped before the last stage (exit $rc)"
    FAILED=$((FAILED + 1))
  fi
  printf '\n=== summary\n'
  if ((${#SUMMARY[@]})); then printf '%s\n' "${SUMMARY[@]}"; fi
  printf 'all stages took %ss\n' "$((SECONDS - T0))"
  printf 'renderfarm: %s passed, %s failed\n' "$PASSED" "$FAILED"
  ((FAILED == 0)) || exit 1
  exit 0
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The Go binaries (the control plane, Kueue, then the kind lane's kubelet, kubeadm, kind, ...,
# kube-network-policies: half an hour from cold) build in the background while lint and unit
# tests run, in the order the stages need them (one build at a time: they share a lock); each
# stage waits for its own. Kueue before the kind lane: the e2e stage needs it first. At the
# lowest CPU priority: the tests running meanwhile get the CPU first, and their timing stays
# what it is on an idle machine.
start_build_kind() {
  # Its own session, so that the EXIT trap can stop the whole build (go and its children).
  setsid nice -n 19 bash -c 'hack/cluster.sh build && hack/kueue.sh build &&
    hack/cluster.sh build-kind && hack/kind/network-policies.sh binary' >"$LOGS/build-kind.log" 2>&1 &
  BUILD_KIND_PID=$!
  echo "test.sh: building the kind lane's binaries in the background (log: $LOGS/build-kind.log)"
}

wait_build_kind() {
  local t=$SECONDS rc
  wait "$BUILD_KIND_PID"
  rc=$?
  BUILD_KIND_PID=
  echo "test.sh: waited $((SECONDS - t))s for the background kind-lane build (exit $rc)"
  if ((rc != 0)); then
    echo "test.sh: the kind-lane build failed; its log ($LOGS/build-kind.log) ends:"
    tail -n 40 "$LOGS/build-kind.log"
  fi
  return "$rc"
}

# blender-asset-tracer (`bat`) for kubectl render --pack, in a venv of its own: the version
# kubectl render's hint names when bat is missing (BAT_VERSION in kubectl-render/src/pack.rs,
# whose unit test reads this line). 2.x needs Python 3.13 (bookworm has 3.11) and Blender 5.1.
install_bat() {
  local version=1.23
  local cache=${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}
  local venv=$cache/bat
  # A venv of another version is made again.
  local installed="$venv/lib/python3*/site-packages/blender_asset_tracer-$version.dist-info"
  [[ -x $venv/bin/bat ]] && compgen -G "$installed" >/dev/null || {
    rm -rf "$venv" && python3 -m venv "$venv" &&
      "$venv/bin/pip" install -q "blender-asset-tracer==$version"
  } || return
  # Only `bat` on PATH: the venv's python3 must not shadow the system's (PyYAML, ...).
  mkdir -p "$cache/bin/bat-only" && ln -sf "$venv/bin/bat" "$cache/bin/bat-only/bat" || return
  export PATH="$cache/bin/bat-only:$PATH"
}

# Debian's chromium and Playwright for the kubectl render ui browser test (hack/browser.sh
# prints the venv's python, which the test asks for itself).
install_browser() {
  hack/browser.sh >/dev/null
}

stage_deps() {
  # PyYAML for kubeconform's CRD script; tmux for kubectl render's terminal test; ffmpeg
  # (ffprobe) to read the previews the tests make; Blender 4.5 and 5.0 (PyPI's bpy, as the node
  # image has it) for render-node's tests, 5.0 to save scenes newer than the image's Blender.
  # prometheus for promtool (the chart's alert rule tests); in a container it starts no server.
  check "deps" hack/deps.sh python3-yaml tmux python3-venv ffmpeg prometheus
  check "Blender (bpy 4.5, 5.0)" hack/blender.sh 4.5 5.0
  check "blender-asset-tracer" install_bat
}

stage_lint() {
  check "cargo fmt" cargo fmt --all -- --check
  check "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
  check "shellcheck" shellcheck hack/*.sh hack/kind/*.sh node-image/*.sh bench/*.sh .ci/run
}

stage_unit() {
  # Every test binary, even after one failed: the total counts them all.
  ctest "cargo test --workspace" --workspace --locked --no-fail-fast
  # kubectl render --pack with real Blender and bat, no cluster.
  ctest "kubectl render --pack" -p kubectl-render --test pack --locked -- --ignored --nocapture
  # The Blender add-on in bpy 4.5 and 5.0, before any cluster: install, panel, its errors.
  ctest "Blender add-on (no cluster)" -p kubectl-render --test addon --locked -- --ignored \
    --nocapture local::
}

stage_local_cluster() {
  # From scratch every time: no objects left from an earlier run.
  hack/cluster.sh down --purge >/dev/null 2>&1
  STARTED_CLUSTER=1
  check "hack/cluster.sh up" hack/cluster.sh up || return
  eval "$(hack/cluster.sh env)"
  check "kubectl version" kubectl version || return
  # The cluster's own checks: Jobs complete, injected failures reach pods, scheduling, eviction.
  ctest "local cluster checks" -p renderfarm --test cluster --locked -- --ignored --nocapture
}

# kubectl render against a control plane without renderfarm's CRD: a second, bare one beside
# the first, stopped and deleted afterwards.
bare_cluster_test() {
  local bare=(env RENDERFARM_PORT_OFFSET=300 RENDERFARM_CLUSTER_DIR="$WORK/bare-cluster") kc
  check "bare cluster up" "${bare[@]}" hack/cluster.sh up || return
  # shellcheck disable=SC2016 # expanded by the inner shell
  kc=$("${bare[@]}" bash -c 'eval "$(hack/cluster.sh env)" && echo "$KUBECONFIG"')
  KUBECONFIG=$kc ctest "kubectl render without renderfarm installed" -p kubectl-render \
    --test bare --locked -- --ignored --nocapture
  KUBECONFIG=$kc ctest "Blender add-on without renderfarm installed" -p kubectl-render \
    --test addon --locked -- --ignored --nocapture on_bare::
  "${bare[@]}" hack/cluster.sh down --purge >/dev/null 2>&1
}

crd_dry_run() {
  cargo build -q --locked -p renderfarm --bin renderfarm-operator &&
    ./target/debug/renderfarm-operator crd | kubectl apply --dry-run=client -f -
}

stage_e2e() {
  check "the CRD the operator prints applies" crd_dry_run
  # Kueue for the kueue:: tests (built from its Go module the first time, a few minutes).
  STARTED_KUEUE=1
  check "hack/kueue.sh up" hack/kueue.sh up
  ctest "e2e suite" -p renderfarm --test e2e --locked -- --ignored --test-threads 4 --nocapture \
    --skip restart::
  ctest "kubectl render on the local cluster" -p kubectl-render --test kwok --locked -- \
    --ignored --nocapture
  ctest "Blender add-on on the local cluster" -p kubectl-render --test addon --locked -- \
    --ignored --nocapture on_kwok::
  bare_cluster_test
  # Restarting the API server and etcd disturbs every other test: this one runs alone.
  ctest "e2e restart::" -p renderfarm --test e2e --locked -- --ignored --nocapture restart::
}

stage_chart() {
  script chart-test hack/chart-test.sh
}

stage_images() {
  if ! docker info >/dev/null 2>&1; then STARTED_DOCKERD=1; fi
  check "hack/docker.sh up" hack/docker.sh up || return
  # The debug binaries the tests built go into the images: a release build would add ~15 minutes.
  export IMAGE_PROFILE=debug
  script operator-image-test hack/operator-image-test.sh
  script test-image node-image/test-image.sh
}

demo() {
  hack/demo.sh 2>&1 | grep -v '^Image: '
}

stage_kind() {
  check "kind lane binaries (background build)" wait_build_kind || return
  # From scratch, like the local cluster: the README's first command, then the real-render test.
  hack/kind.sh down >/dev/null 2>&1
  STARTED_KIND=1
  check "hack/demo.sh" demo || return
  eval "$(hack/kind.sh env)"
  # Kueue from the image built here, for the render queued through it (kind.rs).
  check "hack/kueue.sh kind" hack/kueue.sh kind
  ctest "kind: real frames" -p renderfarm --test kind --locked -- --ignored --nocapture \
    --skip an_operator_killed_during_the_preview --skip a_worker_with_read_only_storage
  # It makes a worker's storage read-only, then repairs it: alone, before the operator is killed.
  ctest "kind: a bad node routed around" -p renderfarm --test kind --locked -- --ignored \
    --nocapture --exact a_worker_with_read_only_storage_is_routed_around_then_unblocked
  # It kills the operator every other test relies on: alone, after them.
  ctest "kind: operator killed during the preview" -p renderfarm --test kind --locked -- \
    --ignored --nocapture --exact an_operator_killed_during_the_preview_makes_one_preview_on_kind
  ctest "kind: sandboxed batch pods" -p renderfarm --test sandbox --locked -- --ignored --nocapture
  ctest "kind: kubectl render" -p kubectl-render --test kind --locked -- --ignored --nocapture
  ctest "kind: Blender add-on" -p kubectl-render --test addon --locked -- --ignored \
    --nocapture on_kind::
  # kubectl render ui in headless chromium (hack/browser.sh installs it and Playwright).
  check "chromium and Playwright" install_browser &&
    ctest "kind: kubectl render ui in a browser" -p kubectl-render --test browser --locked -- \
      --ignored --nocapture
  # The e2e tests that need no kwok Stages and no operator of their own run here too, against
  # the CRD the chart installed; the rest inject failures through kwok and stay on the local
  # control plane. Counted under this stage's name: the same test, another cluster.
  ctest "e2e validation:: on kind" -p renderfarm --test e2e --locked -- --ignored --nocapture \
    validation::
}

# `hack/test.sh` runs every stage; `hack/test.sh e2e` (or any of the keys below) only those named,
# with what they need: deps always, and `e2e` the local cluster it runs on.
want() {
  local key
  ((${#ONLY[@]} == 0)) && return 0
  for key in "${ONLY[@]}"; do [[ $key == "$1" ]] && return 0; done
  return 1
}
ONLY=("$@")
if ((${#ONLY[@]})); then
  ONLY+=(deps)
  if want e2e; then ONLY+=(cluster); fi
fi
for key in "${ONLY[@]}"; do
  case $key in
    deps | lint | unit | cluster | e2e | chart | images | kind) ;;
    *) echo "test.sh: unknown stage '$key' (deps lint unit cluster e2e chart images kind)"; exit 2 ;;
  esac
done

want deps && stage deps stage_deps
want kind && start_build_kind
want lint && stage lint stage_lint
want unit && stage "unit and property tests" stage_unit
want cluster && stage "local cluster" stage_local_cluster
want e2e && stage "end-to-end suite (real API server, kwok nodes)" stage_e2e
want chart && stage "helm chart" stage_chart
want images && stage "images (docker build, docker run)" stage_images
want kind && stage "kind: real pods render real frames" stage_kind
FINISHED=1
