#!/usr/bin/env bash
# The envelope of one Job per batch on a big cluster, simulated: a control plane of its own
# (hack/cluster.sh, RENDERFARM_PORT_OFFSET 700) with NODES kwok nodes, once per controller
# manager QPS in QPS_PROFILES ("20/30 200/400": upstream's --kube-api-qps/--kube-api-burst, as
# a managed control plane such as AKS's keeps them, then what hack/cluster.sh sets). Per profile:
#   fill     RENDERS RenderJobs of BATCHES one-frame batches, PARALLELISM each, whose pods run
#            until the end of the run: how long until RENDERS x PARALLELISM pods run at once;
#   sustain  beside them, RENDERS more whose pods run POD_SECONDS (10): batches a second once
#            the stream is going (SUSTAIN_SECONDS from WARMUP_SECONDS after submit).
# For each: the Job controller's requests per batch, its work queue and how long its client
# waited for its own rate limiter, the scheduler's queue, the operator's CPU, peak RSS, reconcile
# p99 and writes per batch, each control-plane process's CPU and the machine's. Not a test.
#
#   bench/envelope.sh                         1,000 nodes, 50 x 200 batches at parallelism 100
#   QPS_PROFILES=20/30 bench/envelope.sh      one profile
#   NODES=50 RENDERS=5 BATCHES=20 PARALLELISM=10 SUSTAIN_SECONDS=30 bench/envelope.sh   a quick look
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
POD_SECONDS=${POD_SECONDS:-10}
# shellcheck source=bench/lib.sh
source bench/lib.sh

NODES=${NODES:-1000}
RENDERS=${RENDERS:-50}
BATCHES=${BATCHES:-200}
PAR=${PARALLELISM:-100}
WARMUP_SECONDS=${WARMUP_SECONDS:-60}
SUSTAIN_SECONDS=${SUSTAIN_SECONDS:-180}
FILL_TIMEOUT=${FILL_TIMEOUT:-1800}
QPS_PROFILES=${QPS_PROFILES:-20/30 200/400}
SAMPLE_SECONDS=5
export RENDERFARM_PORT_OFFSET=${ENVELOPE_PORT_OFFSET:-700}
export RENDERFARM_CLUSTER_DIR=${ENVELOPE_CLUSTER_DIR:-$HOME/.cache/renderfarm/envelope}
KCM_PORT=$((16444 + RENDERFARM_PORT_OFFSET))
SCHED_PORT=$((16445 + RENDERFARM_PORT_OFFSET))
NS=envelope
HOLD=envelope-hold SHORT=envelope-${POD_SECONDS}s
PROFILE=release
trap 'bench_cleanup; hack/cluster.sh down >/dev/null 2>&1 || true' EXIT

# The figures of the controller manager and scheduler a phase reads twice: the Job work queue's
# adds and summed wait, the summed wait of every client on its rate limiter and its count.
control_figures() {
  local kcm
  kcm=$(component_metrics "$KCM_PORT")
  echo "$(metric_sum '^workqueue_adds_total[{]name="job"' "$kcm")" \
    "$(metric_sum '^workqueue_queue_duration_seconds_sum[{]name="job"' "$kcm")" \
    "$(metric_sum '^rest_client_rate_limiter_duration_seconds_sum' "$kcm")" \
    "$(metric_sum '^rest_client_rate_limiter_duration_seconds_count' "$kcm")"
}

# renderjobs FROM-PREFIX SCENARIO: RENDERS RenderJobs PREFIX000..., their pods labelled for the
# kwok Stage of SCENARIO.
renderjobs() {
  local r
  for ((r = 0; r < RENDERS; r++)); do
    cat <<YAML
---
apiVersion: renderfarm.io/v1alpha1
kind: RenderJob
metadata: {name: $(printf '%s%03d' "$1" "$r")}
spec:
  blendFile: scenes/bench.blend
  frames: {start: 1, end: $BATCHES}
  batchSize: 1
  parallelism: $PAR
  startAhead: false
  storage: {claimName: render-storage}
  resources: {requests: {cpu: 10m, memory: 16Mi}}
  podMetadata: {labels: {kwok.renderfarm.io/scenario: $2}}
YAML
  done
}

# sampler OUT T0: every SAMPLE_SECONDS, "seconds pods-running job-queue scheduler-pending
# operator-rss-MiB" into OUT, until killed. Running pods are counted from the pods watch.
sampler() {
  local kcm sched
  while :; do
    kcm=$(component_metrics "$KCM_PORT" 2>/dev/null) || true
    sched=$(component_metrics "$SCHED_PORT" 2>/dev/null) || true
    printf '%s %s %s %s %s\n' "$(sec $(($(ms) - $2)))" \
      "$(awk '{p[$2] = $3} END {for (k in p) n += p[k] == "Running"; print n + 0}' "$DIR/pods")" \
      "$(metric_sum '^workqueue_depth[{]name="job"' "$kcm")" \
      "$(metric_sum '^scheduler_pending_pods' "$sched")" "$(rss_mib "$OP" VmRSS)" >>"$1"
    sleep "$SAMPLE_SECONDS"
  done
}

# first_seen PHASE SCENARIO: every pod of SCENARIO's first stamp (ms) in PHASE, sorted.
first_seen() {
  awk -v ph="$1" -v sc="$2" '$3 == ph && $4 == sc && !($2 in s) {s[$2] = 1; printf "%.0f\n", $1 / 1000}' "$DIR/pods" | sort -n
}

# reconcile_p99 BEFORE AFTER: the bucket bound (ms) under which 99 % of the reconciles between
# two /metrics readings of the operator fell.
reconcile_p99() {
  awk 'FNR == NR && /^renderfarm_reconcile_duration_seconds_bucket/ {a[$1] = $NF; next}
    /^renderfarm_reconcile_duration_seconds_bucket/ {
      match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
      d[++n] = $NF - a[$1]; b[n] = le
    }
    END {
      total = d[n]; for (i = 1; i <= n; i++) if (d[i] >= 0.99 * total) { print (b[i] == "+Inf" ? "inf" : b[i] * 1000); exit }
    }' <(echo "$1") <(echo "$2")
}

# phase_report NAME FROM-MS TO-MS BATCHES CPU-BEFORE CONTROL-BEFORE METRICS-BEFORE: one line
# of figures for what happened between FROM and TO, BATCHES being the batches it counts.
phase_report() {
  local name=$1 from=$2 to=$3 n=$4 cpu control metrics0=$7 metrics1 jc audit
  cpu=$(cpu_delta "$5" "$(cpu_line)")
  control=$(awk -v a="$6" -v b="$(control_figures)" 'BEGIN {split(a, x); split(b, y)
    adds = y[1] - x[1]; waits = y[4] - x[4]
    printf "%d %.2f %.3f", adds, adds ? (y[2] - x[2]) / adds : 0, waits ? (y[3] - x[3]) / waits : 0}')
  metrics1=$(curl -fs "127.0.0.1:$PORT/metrics")
  audit=$(AUDIT_FROM_MS=$from AUDIT_TO_MS=$to audit_requests "$NS")
  jc=$(awk '$1 == "job-controller" {print $2}' <<<"$audit")
  awk -v name="$name" -v s="$(((to - from) / 1000))" -v n="$n" -v cpu="$cpu" -v c="$control" -v jc="${jc:-0}" \
    -v w="$(($(metric_sum '^renderfarm_api_writes_total' "$metrics1") - $(metric_sum '^renderfarm_api_writes_total' "$metrics0")))" \
    -v p99="$(reconcile_p99 "$metrics0" "$metrics1")" -v rss="$(rss_mib "$OP" VmHWM)" -v qps="$QPS" 'BEGIN {
    split(cpu, x); split(c, q)
    printf "%-8s %-8s %6d %7d %7.1f %6.2f %6.1f %7.2f %8.3f %6.2f %7s %6.1f %7.1f %5.0f%%   %s\n", name, qps, s, n, s ? n / s : 0,
      n ? jc / n : 0, s ? jc / s : 0, q[2], q[3], n ? w / n : 0, p99, x[6], rss, x[8] ? 100 * x[7] / x[8] : 0,
      sprintf("apiserver %s kcm %s etcd %s sched %s kwok %s", x[1], x[2], x[3], x[4], x[5])
  }'
}

# run_profile QPS/BURST: a fresh cluster at that controller-manager QPS, then fill and sustain.
run_profile() {
  QPS=$1
  local t0 t_fill cpu0 ctl0 m0 target running stamps n fill
  DIR=$OUT/${QPS/\//-}
  mkdir -p "$DIR"
  hack/cluster.sh down --purge >/dev/null 2>&1 || true
  RENDERFARM_KCM_QPS=${QPS%/*} RENDERFARM_KCM_BURST=${QPS#*/} hack/cluster.sh up 2>>"$DIR/cluster.log"
  eval "$(hack/cluster.sh env)"
  t0=$(ms)
  hack/cluster.sh nodes kwok-big "$NODES" 2>>"$DIR/cluster.log"
  echo "[$QPS] $NODES nodes Ready in $(sec $(($(ms) - t0))) s" >&2
  kubectl apply --server-side -f crds/renderjob.yaml >/dev/null
  kubectl wait --for=condition=Established crd/renderjobs.renderfarm.io --timeout=60s >/dev/null
  hack/cluster.sh stage slow.yaml "SCENARIO=$HOLD" DELAY_MS=86400000 >/dev/null
  hack/cluster.sh stage slow.yaml "SCENARIO=$SHORT" "DELAY_MS=$((POD_SECONDS * 1000))" >/dev/null
  make_namespace "$NS"
  start_operator "$NS" "$DIR/operator.log"
  watch_stamps "$DIR/pods" -n "$NS" pods -l renderfarm.io/batch \
    /metadata/name /status/phase /metadata/labels/kwok.renderfarm.io~1scenario
  sleep 2

  # fill: RENDERS x PAR pods that stay Running.
  target=$((RENDERS * PAR))
  cpu0=$(cpu_line) ctl0=$(control_figures) m0=$(curl -fs "127.0.0.1:$PORT/metrics")
  t0=$(ms)
  sampler "$DIR/samples" "$t0" &
  WATCHES+=("$!")
  renderjobs f "$HOLD" | kubectl create -n "$NS" -f - >/dev/null
  while :; do
    running=$(first_seen Running "$HOLD" | wc -l)
    ((running < target && $(ms) - t0 < FILL_TIMEOUT * 1000)) || break
    sleep 2
  done
  t_fill=$(ms)
  stamps=$(first_seen Running "$HOLD")
  fill=$(awk -v t0="$t0" -v n="$target" '{a[NR] = $1}
    END {for (f = 1; f <= 4; f++) { k = int(n * (f == 4 ? 1 : f == 3 ? 0.9 : f == 2 ? 0.5 : 0.1)); printf "%s ", k <= NR ? sprintf("%.1f", (a[k] - t0) / 1000) : "-" }}' <<<"$stamps")
  read -ra FILL_LINE <<<"$fill"
  FILL_REPORT=$(phase_report fill "$t0" "$t_fill" "$running" "$cpu0" "$ctl0" "$m0")
  echo "[$QPS] fill: $running of $target pods Running after $(sec $((t_fill - t0))) s" >&2

  # sustain: RENDERS more renders of POD_SECONDS pods beside the held ones.
  cpu0=$(cpu_line) ctl0=$(control_figures) m0=$(curl -fs "127.0.0.1:$PORT/metrics")
  t0=$(ms)
  renderjobs s "$SHORT" | kubectl create -n "$NS" -f - >/dev/null
  sleep "$WARMUP_SECONDS"
  cpu0=$(cpu_line) ctl0=$(control_figures) m0=$(curl -fs "127.0.0.1:$PORT/metrics")
  local w0 w1
  w0=$(ms)
  sleep "$SUSTAIN_SECONDS"
  w1=$(ms)
  n=$(first_seen Succeeded "$SHORT" | awk -v a="$w0" -v b="$w1" '$1 >= a && $1 < b' | wc -l)
  SUSTAIN_REPORT=$(phase_report sustain "$w0" "$w1" "$n" "$cpu0" "$ctl0" "$m0")
  echo "[$QPS] sustain: $n batches in $SUSTAIN_SECONDS s" >&2
  watch_stop
  cp "$DIR/samples" "$DIR/samples.txt"
  stop_operator
  hack/cluster.sh down --purge >/dev/null 2>&1 || true
}

OUT=target/envelope
rm -rf "$OUT"
mkdir -p "$OUT"
cargo build --release --locked -p renderfarm --bin renderfarm-operator >&2
build_stamps
hack/cluster.sh build >&2
echo "date: $(date -u '+%F %T') UTC  commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- operator api || echo +changes)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: NODES=$NODES RENDERS=$RENDERS BATCHES=$BATCHES PARALLELISM=$PAR POD_SECONDS=$POD_SECONDS SUSTAIN_SECONDS=$SUSTAIN_SECONDS QPS_PROFILES='$QPS_PROFILES' bench/envelope.sh"
declare -a FILLS REPORTS
for profile in $QPS_PROFILES; do
  run_profile "$profile"
  FILLS+=("$(printf '%-8s %7d %8s %8s %8s %8s' "$QPS" "$((RENDERS * PAR))" "${FILL_LINE[@]}")")
  REPORTS+=("$FILL_REPORT" "$SUSTAIN_REPORT")
  echo "samples ($QPS): seconds after fill's submit, pods Running, Job work queue, scheduler pending, operator RSS MiB (every 30 s)"
  awk 'NR % 6 == 1' "$OUT/${QPS/\//-}/samples.txt"
done
echo
echo "fill: seconds from submit until 10 %, 50 %, 90 % and all of the pods were first seen Running"
printf '%-8s %7s %8s %8s %8s %8s\n' qps pods 10% 50% 90% all
printf '%s\n' "${FILLS[@]}"
echo
echo "per phase: batches (pods started for fill, finished for sustain) and per second; the Job controller's requests"
echo "per batch and per second (audit log); its work queue's mean wait (s); its clients' mean rate-limiter wait per"
echo "request (s, every controller of the controller manager); the operator's writes per batch, reconcile p99 (ms,"
echo "bucket bound), CPU s, peak RSS MiB; the machine's busy share; CPU s of each control-plane process"
printf '%-8s %-8s %6s %7s %7s %6s %6s %7s %8s %6s %7s %6s %7s %6s\n' phase qps secs batches per_s jc/b jc/s queue_s throttle writes/b p99_ms op_cpu rss busy
printf '%s\n' "${REPORTS[@]}"
echo
echo "pods kept busy by the sustained rate: batches a second x the batch's length"
for r in "${REPORTS[@]}"; do
  awk '$1 == "sustain" {printf "%-8s %6.1f/s: %6.0f pods with 1-minute batches, %7.0f with 10-minute, %7.0f with 30-minute\n", $2, $5, $5 * 60, $5 * 600, $5 * 1800}' <<<"$r"
done
