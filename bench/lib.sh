# Shared by bench.sh and latency.sh: cluster, operator build and start, per-run namespace,
# watch-observed timestamps, metrics. Sourced, not run.
# shellcheck shell=bash

# release (default) measures what users run; PROFILE=debug skips the release build.
PROFILE=${PROFILE:-release}
PORT=${PORT:-18181}
# How long a pod runs: kwok's default Stage completes pods 1 s after they start; any other
# figure applies hack/kwok/slow.yaml for pods labelled with SCENARIO.
POD_SECONDS=${POD_SECONDS:-1}
SCENARIO=
POD_LABELS='{}'

OP=
# On exit (also on an error): stop the operator and the watches this script started.
bench_cleanup() {
  [[ -z $OP ]] || kill "$OP" 2>/dev/null || true
  ((${#WATCHES[@]} == 0)) || kill "${WATCHES[@]}" 2>/dev/null || true
}

bench_setup() {
  trap bench_cleanup EXIT
  hack/cluster.sh up >&2
  eval "$(hack/cluster.sh env)"
  if [[ $PROFILE == release ]]; then
    cargo build --release --locked -p renderfarm --bin renderfarm-operator >&2
  else
    cargo build --locked -p renderfarm --bin renderfarm-operator >&2
  fi
  kubectl apply --server-side --force-conflicts -f crds/renderjob.yaml >/dev/null
  kubectl wait --for=condition=Established crd/renderjobs.renderfarm.io --timeout=60s >/dev/null
  if [[ $POD_SECONDS != 1 ]]; then
    SCENARIO=bench-${POD_SECONDS}s
    POD_LABELS="{kwok.renderfarm.io/scenario: $SCENARIO}"
    hack/cluster.sh stage slow.yaml "SCENARIO=$SCENARIO" "DELAY_MS=$((POD_SECONDS * 1000))" >/dev/null
  fi
}

ms() { date +%s%3N; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
apiserver_pid() { pgrep -f 'kube-apiserver .*--secure-port' | head -n 1; }
# Peak (VmHWM) and current (VmRSS) resident memory of a process, MiB.
rss_mib() { awk -v k="$2:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# A component of the cluster the kubeconfig points at (hack/cluster.sh keeps pid files beside it;
# pgrep could find another cluster's, or one inside a kind node).
component_pid() { cat "$(dirname "$KUBECONFIG")/pids/$1.pid"; }

# The machine's CPU time so far, in seconds: busy (all but idle and iowait) and all.
machine_cpu() { awk '$1 == "cpu" {b = $2 + $3 + $4 + $7 + $8 + $9; printf "%.1f %.1f\n", b / 100, (b + $5 + $6) / 100}' /proc/stat; }
# kwok's failed pod stages so far (a pod it could not move to Running or Succeeded is retried
# later, with a backoff, and that side waits: a run with many says more about kwok than about
# either side). Not counted: deleting a pod that is gone already (kwok's pod-delete racing the
# namespace's deletion between the sides), which nothing waits for.
kwok_failures() {
  local n
  n=$(grep 'failed to apply stage' "$(dirname "$KUBECONFIG")/logs/kwok-controller.log" 2>/dev/null |
    grep -vc '"stage":"pod-delete".*not found') || true
  echo "${n:-0}"
}
# CPU seconds of each component in COMPONENTS (and the operator, when running), one line.
COMPONENTS=(kube-apiserver kube-controller-manager etcd kube-scheduler kwok-controller)
cpu_line() {
  local c out=
  for c in "${COMPONENTS[@]}"; do out+="$(cpu_s "$(component_pid "$c")") "; done
  if [[ -n $OP ]]; then out+=$(cpu_s "$OP"); else out+=0; fi
  echo "$out $(machine_cpu)"
}
# cpu_delta BEFORE AFTER: the difference of two cpu_line outputs, field by field.
cpu_delta() { awk -v a="$1" -v b="$2" 'BEGIN {n = split(a, x); split(b, y); for (i = 1; i <= n; i++) printf "%.1f%s", y[i] - x[i], i < n ? " " : "\n"}'; }

# component_metrics PORT: a control-plane component's /metrics (the admin certificate).
component_metrics() {
  local pki
  pki=$(dirname "$KUBECONFIG")/pki
  curl -fsSk --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$1/metrics"
}
# sec MS: seconds, one decimal; per A B: A / B, two decimals (0 when B is 0).
sec() { awk -v m="$1" 'BEGIN {printf "%.1f", m / 1000}'; }
per() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a / b : 0}'; }

# A namespace with a bound claim named render-storage, as a RenderJob's pods mount it.
make_namespace() {
  local ns=$1
  kubectl create namespace "$ns" >/dev/null
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $ns}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  storageClassName: manual
  hostPath: {path: /tmp/$ns}
  claimRef: {namespace: $ns, name: render-storage}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: render-storage, namespace: $ns}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: manual
  volumeName: $ns
  resources: {requests: {storage: 1Gi}}
YAML
  kubectl wait --for=jsonpath='{.status.phase}'=Bound pvc/render-storage -n "$ns" --timeout=60s >/dev/null
}

drop_namespace() {
  kubectl delete namespace "$1" --wait=false >/dev/null
  kubectl delete pv "$1" --wait=false --ignore-not-found >/dev/null
}

# Starts the operator on namespace $1, logging to $2; sets OP to its pid. OPERATOR_BIN: another
# build of it (an older commit's, to compare).
start_operator() {
  "${OPERATOR_BIN:-./target/$PROFILE/renderfarm-operator}" --namespace "$1" --listen "127.0.0.1:$PORT" --log-format json \
    >"$2" 2>&1 &
  OP=$!
  until curl -fs "127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.2; done
}

stop_operator() {
  kill "$OP" 2>/dev/null || true
  wait "$OP" 2>/dev/null || true
  OP=
}

# kwok's pods run no Blender: a pod started ahead would not wait for the batch it follows, and
# the render would run twice as many pods at once as the Indexed Job. Off for a like-for-like
# comparison (START_AHEAD=true to see what it costs the control plane).
apply_renderjob() { # namespace name batches parallelism
  kubectl apply -n "$1" -f - >/dev/null <<YAML
apiVersion: renderfarm.io/v1alpha1
kind: RenderJob
metadata: {name: $2}
spec:
  blendFile: scenes/bench.blend
  frames: {start: 1, end: $3}
  batchSize: 1
  parallelism: $4
  startAhead: ${START_AHEAD:-false}
  storage: {claimName: render-storage}
  resources: {requests: {cpu: 10m, memory: 16Mi}}
  podMetadata: {labels: $POD_LABELS}
YAML
}

# Watch-observed times. `kubectl get --watch` prints one line per event; each line is stamped
# with this machine's clock (microseconds) when the line arrives. The three watches (pods, Jobs,
# RenderJob) reach the same API server the same way, so differences between their stamps are
# the time between the two changes as a client sees them, to a few ms; the objects' own
# timestamps (finishedAt, completionTime, lastTransitionTime) have 1 s resolution.
# (perl, not a bash read loop: bash reads a pipe a byte at a time and fell minutes behind a
# 10,000-pod watch on a loaded machine.)
stamp() {
  perl -MTime::HiRes=time -ne 'BEGIN { $| = 1 } printf "%d %s", time() * 1e6, $_'
}

# watch_start FILE KUBECTL-GET-ARGS...: starts a watch printing "name value" lines into FILE;
# appends its pid to WATCHES.
WATCHES=()
watch_start() {
  local out=$1
  shift
  kubectl get "$@" --watch > >(stamp >"$out") &
  WATCHES+=("$!")
}
# watch_stamps FILE STAMPS-ARGS...: the same, by operator/examples/stamps.rs (FILE.err gets its
# errors and a "listing" line each time it lists): a watch that keeps up with 20,000 pods, where
# a kubectl printing them on two loaded cores fell minutes behind and was dropped. Its lines
# carry the stamp already.
watch_stamps() {
  local out=$1
  shift
  "target/$PROFILE/examples/stamps" "$@" >"$out" 2>>"$out.err" &
  WATCHES+=("$!")
}
build_stamps() { build_example stamps; }
# build_example NAME: operator/examples/NAME.rs, in PROFILE.
build_example() {
  if [[ $PROFILE == release ]]; then
    cargo build --release --locked -p renderfarm --example "$1" >&2
  else
    cargo build --locked -p renderfarm --example "$1" >&2
  fi
}
# Gives the watches a moment to print the last events, then stops them.
watch_stop() {
  sleep 1
  kill "${WATCHES[@]}" 2>/dev/null || true
  wait "${WATCHES[@]}" 2>/dev/null || true
  WATCHES=()
  sleep 0.2
}

# last_first_seen FILE VALUE: for every object, the first stamp at which its value was VALUE
# (VALUE "+" means: any non-empty value); prints the latest of those, in microseconds.
last_first_seen() {
  awk -v want="$2" '
    (want == "+" && $3 != "") || $3 == want { if (!($2 in at)) at[$2] = $1 }
    END { m = 0; for (k in at) if (at[k] > m) m = at[k]; print m }' "$1"
}

# What the watches print: a pod's phase, a Job's completion time.
POD_LINE='jsonpath={.metadata.name} {.status.phase}{"\n"}'
JOB_LINE='jsonpath={.metadata.name} {.status.completionTime}{"\n"}'

# The watches one render needs: its pods' phases, its Jobs' completion times, the RenderJob's
# phase (or for a native Job, its completion time). Pods and batch Jobs are watched only once
# they succeeded (field selectors): a few events each instead of every change; only batches' (the
# renderfarm.io/batch label): the preview Job and its pod run after the render is Complete.
watch_render() { # namespace dir kind(renderjob|native)
  local ns=$1 dir=$2 pods jobs
  mkdir -p "$dir"
  if [[ $3 == renderjob ]]; then
    pods=(-l "app.kubernetes.io/managed-by=renderfarm-operator,renderfarm.io/batch")
    jobs=(--field-selector status.successful=1 -l "app.kubernetes.io/managed-by=renderfarm-operator,renderfarm.io/batch")
    watch_start "$dir/done" renderjobs -n "$ns" -o 'jsonpath={.metadata.name} {.status.phase}{"\n"}'
  else
    pods=(-l batch.kubernetes.io/job-name=native)
    jobs=(--field-selector metadata.name=native)
  fi
  watch_start "$dir/pods" pods -n "$ns" --field-selector status.phase=Succeeded "${pods[@]}" -o "$POD_LINE"
  watch_start "$dir/jobs" jobs -n "$ns" "${jobs[@]}" -o "$JOB_LINE"
}

# Milliseconds from one microsecond stamp to another.
delta_ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", (b - a) / 1000}'; }

# metric_sum REGEX METRICS: the sum of the samples on the lines of METRICS that match REGEX.
metric_sum() { awk -v re="$1" '$0 ~ re {s += $NF} END {print s + 0}' <<<"$2"; }

# operator_figures: the running operator's (OP on PORT) figures so far, into WRITES (all API
# writes), CREATES (Job applies), STATUSES (status writes), EVENTS, RECONCILES, RECONCILE_S (their
# summed seconds), DEFERRED (reconciles put off), RSS_PEAK and RSS_END (MiB), CPU (seconds).
# shellcheck disable=SC2034 # read by the scripts that source this file
operator_figures() {
  local metrics
  metrics=$(curl -fs "127.0.0.1:$PORT/metrics")
  WRITES=$(metric_sum '^renderfarm_api_writes_total' "$metrics")
  CREATES=$(metric_sum '^renderfarm_api_writes_total.*resource="jobs"' "$metrics")
  STATUSES=$(metric_sum '^renderfarm_api_writes_total.*resource="renderjobs/status"' "$metrics")
  EVENTS=$(metric_sum '^renderfarm_api_writes_total.*resource="events"' "$metrics")
  RECONCILES=$(metric_sum '^renderfarm_reconcile_duration_seconds_count' "$metrics")
  RECONCILE_S=$(metric_sum '^renderfarm_reconcile_duration_seconds_sum' "$metrics")
  DEFERRED=$(metric_sum '^renderfarm_reconcile_deferred_total' "$metrics")
  RSS_PEAK=$(rss_mib "$OP" VmHWM)
  RSS_END=$(rss_mib "$OP" VmRSS)
  CPU=$(cpu_s "$OP")
}

# The same work as a native Indexed Job: indexed_job_yaml name completions parallelism prints
# it; apply_native namespace name completions parallelism applies it.
indexed_job_yaml() {
  cat <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: $1}
spec:
  completionMode: Indexed
  completions: $2
  parallelism: $3
  backoffLimitPerIndex: 3
  template:
    metadata: {labels: $POD_LABELS}
    spec:
      restartPolicy: Never
      containers:
      - name: render
        image: renderfarm/render-node:dev
        resources: {requests: {cpu: 10m, memory: 16Mi}}
YAML
}

apply_native() {
  indexed_job_yaml "$2" "$3" "$4" | kubectl apply -n "$1" -f - >/dev/null
}

# audit_requests NAMESPACE [AGENT]: API requests for objects in the namespace, from the local
# API server's audit log (hack/cluster.sh logs every request for pods, Jobs, Events and
# RenderJobs). Without AGENT: "client count" lines, the client being the User-Agent's program
# (the operator names itself renderfarm-operator; the controller-manager's lines are split by
# controller). With AGENT: that client's "verb resource count" lines. AUDIT_FROM_MS and
# AUDIT_TO_MS (epoch ms, optional): only the requests received between them.
audit_requests() {
  local logs
  logs=$(dirname "$KUBECONFIG")/logs
  cat "$logs"/audit*.log 2>/dev/null | grep -F "\"namespace\":\"$1\"" | python3 -c '
import collections, datetime, json, os, sys
agent = sys.argv[1]
lo, hi = (float(os.environ.get(k) or 0) for k in ("AUDIT_FROM_MS", "AUDIT_TO_MS"))
n = collections.Counter()
for line in sys.stdin:
    e = json.loads(line)
    ref = e.get("objectRef", {})
    if e.get("stage") != "ResponseComplete" or ref.get("namespace") != sys.argv[2]:
        continue
    if lo or hi:
        at = datetime.datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp() * 1000
        if (lo and at < lo) or (hi and at > hi):
            continue
    ua = e.get("userAgent", "")
    who = ua.split("/")[0].split(" ")[0] or "?"
    if who == "kube-controller-manager":
        who = e["user"]["username"].rsplit(":", 1)[-1]
    if agent:
        if who == agent:
            res = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
            n[(e["verb"], res)] += 1
    else:
        n[(who,)] += 1
for key, count in sorted(n.items(), key=lambda kv: -kv[1]):
    print(*key, count)' "${2:-}" "$1"
}
