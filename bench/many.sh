#!/usr/bin/env bash
# A hundred renders at once, on the local control plane with kwok nodes: RENDERS RenderJobs of
# BATCHES one-frame batches each (PARALLELISM each), submitted together, then the same work as
# RENDERS native Indexed Jobs (completions BATCHES, the same parallelism), in the same run.
# Prints each side's wall time (submit -> every render Complete) and the ratio; the operator's
# CPU seconds, peak RSS, reconciles and API writes per batch by kind; p50/p99 of each render's
# last pod -> Complete; and fairness: every SAMPLE_SECONDS each render's succeeded count, as
# min/median/max and min/mean, max/mean, with the worst after the first 30 s.
# Not a test: figures only.
#
#   bench/many.sh                              100 renders x 100 batches, parallelism 5
#   RENDERS=20 BATCHES=20 bench/many.sh        smaller
#   START_AHEAD=true bench/many.sh             spec.startAhead (default false, as bench/lib.sh: kwok's
#                                              pods do not wait, so ahead doubles the pods at once)
#   APISERVER_PROFILE=30 bench/many.sh         also profile kube-apiserver's CPU for 30 s of each
#                                              side (from 15 s after submit) and print where it goes
#   OPERATOR_PROFILE=60 bench/many.sh          also sample the operator with perf for 60 s (from 15 s after
#                                              submit; a release build with symbols) and print where
#                                              its CPU goes
#   NATIVE_POD=bare bench/many.sh              the Indexed Jobs' pods as bench/lib.sh writes them (one
#                                              container, no volumes); the default, same, gives them
#                                              the pod template of renderfarm's first batch Job
#   PLAIN_JOBS=1 bench/many.sh                 a third side: renderfarm's batch Jobs made by the least
#                                              a Job-per-batch farm must do (operator/examples/job_chain.rs:
#                                              one Job watch, one create per batch, nothing else), the
#                                              floor under any operator that makes a Job per batch
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

RENDERS=${RENDERS:-100}
BATCHES=${BATCHES:-100}
PAR=${PARALLELISM:-5}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-5}
START_AHEAD=${START_AHEAD:-}
NATIVE_POD=${NATIVE_POD:-same}
PLAIN_JOBS=${PLAIN_JOBS:-}
[[ $NATIVE_POD == same || $NATIVE_POD == bare ]] || { echo "NATIVE_POD is same or bare" >&2; exit 2; }
APISERVER_PROFILE=${APISERVER_PROFILE:-}
[[ -z $APISERVER_PROFILE || $APISERVER_PROFILE =~ ^[0-9]+$ ]] ||
  { echo "APISERVER_PROFILE is a number of seconds" >&2; exit 2; }
OPERATOR_PROFILE=${OPERATOR_PROFILE:-}
[[ -z $OPERATOR_PROFILE || $OPERATOR_PROFILE =~ ^[0-9]+$ ]] ||
  { echo "OPERATOR_PROFILE is a number of seconds" >&2; exit 2; }
if [[ -n $OPERATOR_PROFILE ]]; then
  command -v perf >/dev/null || { echo "OPERATOR_PROFILE needs perf (apt-get install linux-perf)" >&2; exit 2; }
  # perf needs the symbols the release profile strips.
  export CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
fi
[[ -z $START_AHEAD || $START_AHEAD == true || $START_AHEAD == false ]] ||
  { echo "START_AHEAD is true, false or unset" >&2; exit 2; }
bench_setup
build_stamps
[[ -z $PLAIN_JOBS ]] || build_example job_chain

# Pod slots on Ready, untainted nodes. Both sides run RENDERS x PARALLELISM pods at once: add
# kwok nodes (named kwok-many-N, 110 pods each, as hack/cluster.sh registers its own) until they
# fit with room to spare. They stay registered: a later run finds them.
pod_slots() {
  kubectl get nodes -o jsonpath='{range .items[*]}{.status.allocatable.pods} {.status.conditions[?(@.type=="Ready")].status} {.spec.taints}{"\n"}{end}' |
    awk '$2 == "True" && NF == 2 {s += $1} END {print s + 0}'
}
ensure_capacity() {
  local need=$1 have i=0
  have=$(pod_slots)
  while ((have < need)); do
    kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: kwok-many-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok-many, kubernetes.io/hostname: kwok-many-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
status:
  allocatable: {cpu: "32", memory: 128Gi, pods: "110", ephemeral-storage: 1Ti}
  capacity: {cpu: "32", memory: 128Gi, pods: "110", ephemeral-storage: 1Ti}
YAML
    kubectl wait --for=condition=Ready "node/kwok-many-$i" --timeout=120s >/dev/null
    i=$((i + 1))
    have=$(pod_slots)
  done
  echo "$have"
}

# renderjobs_yaml FROM TO: RenderJobs rFROM..rTO-1; native_yaml FROM TO: Indexed Jobs nFROM...
renderjobs_yaml() {
  local r ahead="  startAhead: ${START_AHEAD:-false}"
  for ((r = $1; r < $2; r++)); do
    cat <<YAML
---
apiVersion: renderfarm.io/v1alpha1
kind: RenderJob
metadata: {name: $(printf 'r%03d' "$r")}
spec:
  blendFile: scenes/bench.blend
  frames: {start: 1, end: $BATCHES}
  batchSize: 1
  parallelism: $PAR
  storage: {claimName: render-storage}
  resources: {requests: {cpu: 10m, memory: 16Mi}}
  podMetadata: {labels: $POD_LABELS}
$ahead
YAML
  done
}

native_yaml() {
  local r
  for ((r = $1; r < $2; r++)); do
    echo ---
    if [[ $NATIVE_POD == same ]]; then
      same_pod_job "$(printf 'n%03d' "$r")"
    else
      indexed_job_yaml "$(printf 'n%03d' "$r")" "$BATCHES" "$PAR"
    fi
  done
}

# NATIVE_POD=same: the Indexed Jobs run the pod renderfarm's batches ran (its image, arguments,
# volumes, securityContext, labels and failure policy), so both sides carry the same objects
# through the API server: what a user who wrote the Indexed Jobs by hand would have to write.
# same_pod_template JOB-JSON > template (JSON); same_pod_job NAME prints one Job from it.
same_pod_template() {
  # shellcheck disable=SC2016 # $(JOB_COMPLETION_INDEX) is for the API server to expand
  python3 -c '
import json, sys
job = json.load(sys.stdin)
spec, tmpl = job["spec"], job["spec"]["template"]
labels = {k: v for k, v in tmpl["metadata"].get("labels", {}).items()
          if not k.startswith("batch.kubernetes.io/") and k not in ("controller-uid", "job-name", "renderfarm.io/batch", "renderfarm.io/frames")}
tmpl["metadata"] = {"labels": labels, "annotations": tmpl["metadata"].get("annotations", {})}
for c in tmpl["spec"]["containers"]:
    args = c.get("args", [])
    for i, a in enumerate(args[:-1]):
        if a in ("--frames", "--marker"):
            args[i + 1] = "$(JOB_COMPLETION_INDEX)"
out = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "NAME"},
       "spec": {"completionMode": "Indexed", "completions": int(sys.argv[1]), "parallelism": int(sys.argv[2]),
                "backoffLimitPerIndex": spec.get("backoffLimit", 3),
                "podFailurePolicy": spec.get("podFailurePolicy"), "podReplacementPolicy": spec.get("podReplacementPolicy"),
                "template": tmpl}}
out["spec"] = {k: v for k, v in out["spec"].items() if v is not None}
print(json.dumps(out))' "$BATCHES" "$PAR"
}
same_pod_job() { sed "s/\"NAME\"/\"$1\"/" "$NATIVE_TEMPLATE"; }

# submit NAMESPACE MAKE-YAML: creates every render, SUBMITTERS kubectl processes at once. One
# kubectl creates its objects one after the other: 100 took 27 s on a loaded machine, and the
# last render started that much after the first.
SUBMITTERS=${SUBMITTERS:-10}
submit() {
  local ns=$1 make=$2 from pids=() pid failed=0 each=$(((RENDERS + SUBMITTERS - 1) / SUBMITTERS))
  for ((from = 0; from < RENDERS; from += each)); do
    "$make" "$from" "$((from + each < RENDERS ? from + each : RENDERS))" | kubectl create -n "$ns" -f - >/dev/null &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  return "$failed"
}

# sample NAMESPACE KIND JSONPATH-OF-SUCCEEDED OUT T0: every SAMPLE_SECONDS, "seconds count..."
# (one count per render, 0 before its first status) into OUT, until killed.
sample() {
  local ns=$1 kind=$2 field=$3 out=$4 t0=$5
  while :; do
    kubectl get "$kind" -n "$ns" -o "jsonpath={range .items[*]}{$field}{\"=\"}{end}" 2>/dev/null |
      awk -v t="$(($(ms) - t0))" -v n="$RENDERS" -F= '
        {for (i = 1; i < NF; i++) c[++k] = $i + 0}
        END {printf "%.1f", t / 1000; for (i = 1; i <= n; i++) printf " %d", c[i] + 0; print ""}' >>"$out" || true
    sleep "$SAMPLE_SECONDS"
  done
}

# pod_samples PODS T0 T1 PREFIX: the same lines from a Succeeded-pods watch ("stamp pod render"),
# counted at every SAMPLE_SECONDS from T0 to T1 (ms) for renders PREFIX000...: what the renders
# really did, whatever their status says yet.
pod_samples() {
  awk -v t0="$2" -v t1="$3" -v step="$SAMPLE_SECONDS" -v n="$RENDERS" -v prefix="$4" '
    !($2 in seen) { seen[$2] = 1; at[++k] = ($1 / 1000 - t0) / 1000; who[k] = $3 }
    END {
      for (t = step; t < (t1 - t0) / 1000 + step; t += step) {
        delete c
        for (i = 1; i <= k; i++) if (at[i] <= t) c[who[i]]++
        printf "%.1f", t
        for (r = 0; r < n; r++) printf " %d", c[sprintf("%s%03d", prefix, r)] + 0
        print ""
      }
    }' "$1"
}

# fairness SAMPLES LABEL: a line per sample, then the worst spread after the first 30 s (while
# some render is not finished and the mean is above 0).
fairness() {
  awk -v label="$2" -v total="$BATCHES" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
      n = NF - 1; s = 0; lo = 1e18; hi = -1; done = 0
      for (i = 2; i <= NF; i++) { v[i - 1] = $i; s += $i; if ($i < lo) lo = $i; if ($i > hi) hi = $i; if ($i >= total) done++ }
      mean = s / n
      printf "%-10s %6.1f %5d %5d %7.1f %5d %7.1f %8.2f %8.2f\n", label, $1, done, lo, median(v, n), hi, mean,
        mean ? lo / mean : 0, mean ? hi / mean : 0
      if ($1 >= 30 && done < n && mean > 0) {
        if (!seen || lo / mean < wlo) { wlo = lo / mean; wlo_t = $1 }
        if (!seen || hi / mean > whi) { whi = hi / mean; whi_t = $1 }
        seen = 1
      }
    }
    END {
      if (seen) printf "%-10s worst after 30 s: min/mean %.2f (at %.0f s), max/mean %.2f (at %.0f s)\n", label, wlo, wlo_t, whi, whi_t > "/dev/stderr"
      else printf "%-10s worst after 30 s: no sample after 30 s with a render unfinished\n", label > "/dev/stderr"
    }' "$1"
}

# last_pod_to_complete PODS DONE WANT: per render, the last pod seen Succeeded -> the render
# seen complete (DONE lines: "stamp name value", the first with value WANT, "+" any); prints
# "p50 p99 max" in ms. PODS lines: "stamp pod render".
last_pod_to_complete() {
  awk -v want="$3" '
    FNR == NR { if (!($2 in pod)) { pod[$2] = 1; if ($1 > last[$3]) last[$3] = $1 } next }
    (want == "+" && $3 != "") || $3 == want { if (!($2 in done)) done[$2] = $1 }
    END {
      n = 0
      for (r in done) if (r in last) d[++n] = (done[r] - last[r]) / 1000
      for (i = 2; i <= n; i++) { t = d[i]; for (j = i - 1; j >= 1 && d[j] > t; j--) d[j + 1] = d[j]; d[j + 1] = t }
      if (!n) { print "- - -"; exit }
      p50 = d[int((n - 1) * 0.50) + 1]; p99 = d[int((n - 1) * 0.99 + 0.5) + 1]
      printf "%.0f %.0f %.0f\n", p50, p99, d[n]
    }' "$1" "$2"
}

# status_lag PODS STATUS: how far each render's status is behind its pods: for the k-th batch
# of a render seen Succeeded (PODS: "stamp pod render"), the time until its status first
# counted k succeeded (STATUS: "stamp render succeeded"); prints "p50 p99 max" in seconds.
status_lag() {
  awk 'FNR == NR { if (!($2 in pod)) { pod[$2] = 1; t[$3, ++n[$3]] = $1 } next }
    $3 + 0 > seen[$2] { for (k = seen[$2] + 1; k <= $3 + 0; k++) if (($2, k) in t) print ($1 - t[$2, k]) / 1e6; seen[$2] = $3 + 0 }' "$1" "$2" |
    sort -g | awk '{d[NR] = $1} END {
      if (!NR) { print "- - -"; exit }
      printf "%.1f %.1f %.1f\n", d[int((NR - 1) * 0.50) + 1], d[int((NR - 1) * 0.99 + 0.5) + 1], d[NR] }'
}

# run_side NAMESPACE START WAIT KIND SUCCEEDED-FIELD DIR: START NAMESPACE DIR submits every
# render, WAIT NAMESPACE DIR returns once all are done; meanwhile KIND's SUCCEEDED-FIELD is sampled
# into DIR/samples (KIND -: not sampled). SIDE=(start_ms end_ms submit_ms), and SIDE_CPU the CPU
# seconds of each of COMPONENTS, the operator (OP), the machine's busy and all meanwhile
# (cpu_delta).
OPERATOR_PROFILER=
run_side() {
  local ns=$1 start=$2 until_done=$3 kind=$4 field=$5 dir=$6 cpu0 kwok0 t0 t1 submitted sampler='' profiler=''
  cpu0=$(cpu_line) kwok0=$(kwok_failures)
  t0=$(ms)
  "$start" "$ns" "$dir"
  submitted=$(($(ms) - t0))
  if [[ -n $OPERATOR_PROFILE && -n $OP ]]; then
    { sleep 15; perf record -q -F 199 -p "$OP" -o "$dir/operator.perf" -- sleep "$OPERATOR_PROFILE" 2>/dev/null; } &
    OPERATOR_PROFILER=$!
  fi
  if [[ -n $APISERVER_PROFILE ]]; then
    { sleep 15; kubectl get --raw "/debug/pprof/profile?seconds=$APISERVER_PROFILE" >"$dir/apiserver.prof"; } &
    profiler=$!
  fi
  if [[ $kind != - ]]; then
    sample "$ns" "$kind" "$field" "$dir/samples" "$t0" &
    sampler=$!
    WATCHES+=("$sampler")
  fi
  "$until_done" "$ns" "$dir"
  t1=$(ms)
  SIDE_CPU=$(cpu_delta "$cpu0" "$(cpu_line)") SIDE_KWOK=$(($(kwok_failures) - kwok0))
  if [[ -n $sampler ]]; then
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
  fi
  [[ -z $profiler ]] || wait "$profiler" || echo "the API server profile of $ns failed" >&2
  SIDE=("$t0" "$t1" "$submitted")
}
submit_renderjobs() { submit "$1" renderjobs_yaml; }
submit_native() { submit "$1" native_yaml; }
all_renderjobs_complete() { kubectl wait --for=condition=Complete renderjobs --all -n "$1" --timeout=7200s >/dev/null; }
all_jobs_complete() { kubectl wait --for=condition=Complete jobs --all -n "$1" --timeout=7200s >/dev/null; }

# PLAIN_JOBS: job_chain makes the chains and stays up once done (its CPU is read as the
# operator's, from /proc), writing a "stamp cNNN Complete" line per chain into DIR/done.
start_chains() {
  "target/$PROFILE/examples/job_chain" -n "$1" --template "$PLAIN_TEMPLATE" --renders "$RENDERS" \
    --batches "$BATCHES" --parallelism "$PAR" >"$2/done" 2>"$2/chain.err" &
  OP=$!
}
all_chains_done() {
  until (($(wc -l <"$2/done") >= RENDERS)); do
    kill -0 "$OP" 2>/dev/null || { echo "job_chain stopped: $(tail -n 3 "$2/chain.err")" >&2; return 1; }
    sleep 0.2
  done
}
# plain_template: a batch Job of renderfarm's (JSON on stdin) as job_chain copies it: what the
# API server filled in (selector, its labels, owner, status) taken out.
plain_template() {
  python3 -c '
import json, sys
job = json.load(sys.stdin)
meta, spec = job["metadata"], job["spec"]
tmpl = spec["template"]
drop = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name", "controller-uid", "job-name")
tmpl["metadata"]["labels"] = {k: v for k, v in tmpl["metadata"].get("labels", {}).items() if k not in drop}
spec.pop("selector", None)
print(json.dumps({"apiVersion": "batch/v1", "kind": "Job",
                  "metadata": {"labels": meta.get("labels", {}), "annotations": meta.get("annotations", {})},
                  "spec": spec}))'
}

# An earlier run's namespaces (20,000 objects each) keep the control plane busy while they go.
for old in $(kubectl get namespaces -o name | grep '^namespace/many-' || true); do
  kubectl wait --for=delete "$old" --timeout=3600s >/dev/null 2>&1 || true
done
ns=many-$$
native_ns=$ns-native
# An earlier run's last namespace is deleted as it ends, without waiting: the garbage collector
# deleting its 10,000 Jobs and pods would share the machine with this run's first side.
for gone in $(kubectl get namespaces -o name | grep '^namespace/many-' || true); do
  echo "waiting for $gone, an earlier run's, to be deleted" >&2
  kubectl wait --for=delete "$gone" --timeout=3600s >/dev/null
done
dir=$(mktemp -d)
# ADD_NODES=0: run on the nodes there are (pods beyond their slots wait for the scheduler).
ahead=1
[[ $START_AHEAD != true ]] || ahead=2
if [[ ${ADD_NODES:-1} == 0 ]]; then slots=$(pod_slots); else slots=$(ensure_capacity $((ahead * RENDERS * PAR * 11 / 10))); fi
total=$((RENDERS * BATCHES))

echo "many renders at once: $RENDERS x $BATCHES one-frame batches, parallelism $PAR ($PROFILE build, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- operator || echo '+changes'), kwok pods complete $POD_SECONDS s after start, $slots pod slots, startAhead ${START_AHEAD:-false}, Indexed Jobs' pods: $NATIVE_POD)"

# ---- renderfarm
make_namespace "$ns"
start_operator "$ns" "target/many-operator.log"
mkdir -p "$dir/rf" "$dir/native"
watch_stamps "$dir/rf/done" -n "$ns" renderjobs /metadata/name /status/phase
watch_stamps "$dir/rf/status" -n "$ns" renderjobs /metadata/name /status/batches/succeeded
watch_stamps "$dir/rf/pods" -n "$ns" pods --field-selector status.phase=Succeeded \
  -l app.kubernetes.io/managed-by=renderfarm-operator,renderfarm.io/batch /metadata/name /metadata/labels/renderfarm.io~1renderjob
run_side "$ns" submit_renderjobs all_renderjobs_complete renderjobs .status.batches.succeeded "$dir/rf"
rf=("${SIDE[@]}") rf_cpu=$SIDE_CPU rf_kwok=$SIDE_KWOK
operator_figures
watch_stop
stop_operator
rf_latency=$(last_pod_to_complete "$dir/rf/pods" "$dir/rf/done" Succeeded)
rf_lag=$(status_lag "$dir/rf/pods" "$dir/rf/status")

# ---- the same work as native Indexed Jobs, in a namespace of their own (the audit log tells
# the two apart), on a cluster as empty as the renderfarm side had: its 20,000 Jobs and pods
# would otherwise take the Indexed Jobs past the controller-manager's 12,500 terminated pods,
# and the pod garbage collector would delete them during the Indexed Jobs' run.
NATIVE_TEMPLATE=$dir/native-template.json PLAIN_TEMPLATE=$dir/plain-template.json
[[ $NATIVE_POD != same ]] || kubectl get job -n "$ns" r000-0000 -o json | same_pod_template >"$NATIVE_TEMPLATE"
[[ -z $PLAIN_JOBS ]] || kubectl get job -n "$ns" r000-0000 -o json | plain_template >"$PLAIN_TEMPLATE"
gone0=$(ms)
drop_namespace "$ns"
kubectl wait --for=delete "namespace/$ns" --timeout=3600s >/dev/null
echo "the renderfarm side's namespace deleted in $(awk -v m="$(($(ms) - gone0))" 'BEGIN {printf "%.1f", m / 1000}') s, before the Indexed Jobs" >&2
if [[ $NATIVE_POD == same ]]; then
  make_namespace "$native_ns"
else
  kubectl create namespace "$native_ns" >/dev/null
fi
watch_stamps "$dir/native/done" -n "$native_ns" jobs /metadata/name /status/completionTime
watch_stamps "$dir/native/pods" -n "$native_ns" pods --field-selector status.phase=Succeeded \
  /metadata/name /metadata/labels/batch.kubernetes.io~1job-name
run_side "$native_ns" submit_native all_jobs_complete jobs .status.succeeded "$dir/native"
native=("${SIDE[@]}") native_cpu=$SIDE_CPU native_kwok=$SIDE_KWOK
watch_stop
native_latency=$(last_pod_to_complete "$dir/native/pods" "$dir/native/done" +)

# ---- PLAIN_JOBS: renderfarm's batch Jobs made by job_chain, on a cluster emptied again.
if [[ -n $PLAIN_JOBS ]]; then
  plain_ns=$ns-plain
  mkdir -p "$dir/plain"
  drop_namespace "$native_ns"
  kubectl wait --for=delete "namespace/$native_ns" --timeout=3600s >/dev/null
  make_namespace "$plain_ns"
  watch_stamps "$dir/plain/pods" -n "$plain_ns" pods --field-selector status.phase=Succeeded \
    /metadata/name /metadata/labels/renderfarm.io~1renderjob
  run_side "$plain_ns" start_chains all_chains_done - - "$dir/plain"
  plain=("${SIDE[@]}") plain_cpu=$SIDE_CPU plain_kwok=$SIDE_KWOK
  watch_stop
  stop_operator
  plain_latency=$(last_pod_to_complete "$dir/plain/pods" "$dir/plain/done" Complete)
fi

rf_ms=$((rf[1] - rf[0])) native_ms=$((native[1] - native[0]))
echo "submit ($SUBMITTERS kubectl at once) took $(sec "${rf[2]}") s (renderfarm) / $(sec "${native[2]}") s (native); wall time from submit to every render Complete"
printf '%-10s %8s %6s %13s\n' side wall_s ratio kwok_failures
printf '%-10s %8s %6s %13s\n' renderfarm "$(sec "$rf_ms")" "$(per "$rf_ms" "$native_ms")" "$rf_kwok"
printf '%-10s %8s %6s %13s\n' native "$(sec "$native_ms")" 1.00 "$native_kwok"
if [[ -n $PLAIN_JOBS ]]; then
  plain_ms=$((plain[1] - plain[0]))
  printf '%-10s %8s %6s %13s\n' plain-jobs "$(sec "$plain_ms")" "$(per "$plain_ms" "$native_ms")" "$plain_kwok"
  echo "plain-jobs: the same batch Jobs made by job_chain (one Job watch, one create per batch, nothing else): renderfarm took $(per "$rf_ms" "$plain_ms")x its time"
else
  plain_kwok=0
fi
((rf_kwok + native_kwok + plain_kwok == 0)) || echo "kwok failed pod stages during the run (kwok_failures; its log says why): the wall times measure its retries too"
echo
echo "CPU seconds meanwhile, by process (the bench's own watches and kubectl are in machine busy)"
printf '%-10s %8s %8s %8s %8s %8s %8s %8s %6s\n' side apiserver kcm etcd sched kwok operator busy "busy%"
for side in renderfarm native ${PLAIN_JOBS:+plain-jobs}; do
  case $side in renderfarm) c=$rf_cpu ;; native) c=$native_cpu ;; *) c=$plain_cpu ;; esac
  awk -v side="$side" -v c="$c" 'BEGIN {split(c, x); printf "%-10s %8s %8s %8s %8s %8s %8s %8s %5.0f%%\n", side, x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8] ? 100 * x[7] / x[8] : 0}'
done
echo
echo "operator: writes per batch (of $total) = Job applies + status writes + Events; CPU, peak RSS, full reconciles (and put off), mean wall ms of one"
printf '%-9s %7s %7s %7s %8s %8s %8s %8s %8s\n' writes/b jobs status events cpu_s rss_peak recs deferred rec_ms
printf '%-9s %7s %7s %7s %8s %8s %8s %8s %8s\n' "$(per "$WRITES" "$total")" "$CREATES" "$STATUSES" "$EVENTS" "$CPU" "$RSS_PEAK" \
  "$RECONCILES" "$DEFERRED" "$(awk -v s="$RECONCILE_S" -v c="$RECONCILES" 'BEGIN {printf "%.2f", c ? s * 1000 / c : 0}')"
echo
echo "last pod Succeeded -> render Complete, per render, as watches see it (ms)"
# Each watch lists once as it starts; any more is a watch dropped and listed again.
restarts=$(for f in "$dir"/*/*.err; do grep -c '^listing' "$f" || true; done | awk '$1 > 1 {s += $1 - 1} END {print s + 0}')
((restarts == 0)) || echo "  not exact: a watch was dropped and listed again ($restarts times); pods it missed are stamped when listed"
printf '%-10s %6s %6s %6s\n' side p50 p99 max
read -r a b c <<<"$rf_latency"
printf '%-10s %6s %6s %6s\n' renderfarm "$a" "$b" "$c"
read -r a b c <<<"$native_latency"
printf '%-10s %6s %6s %6s\n' native "$a" "$b" "$c"
if [[ -n $PLAIN_JOBS ]]; then
  read -r a b c <<<"$plain_latency"
  printf '%-10s %6s %6s %6s\n' plain-jobs "$a" "$b" "$c"
fi
echo
read -r a b c <<<"$rf_lag"
echo "status lag: a batch's pod seen Succeeded -> its render's status.batches.succeeded counting it, p50 $a s, p99 $b s, max $c s"
echo
echo "fairness: batches succeeded per render every $SAMPLE_SECONDS s after submit, counted from the Succeeded pods watch"
printf '%-10s %6s %5s %5s %7s %5s %7s %8s %8s\n' side t_s finished min median max mean min/mean max/mean
pod_samples "$dir/rf/pods" "${rf[0]}" "${rf[1]}" r >"$dir/rf/pod-samples"
pod_samples "$dir/native/pods" "${native[0]}" "${native[1]}" n >"$dir/native/pod-samples"
fairness "$dir/rf/pod-samples" renderfarm 2>"$dir/rf/worst"
fairness "$dir/native/pod-samples" native 2>"$dir/native/worst"
if [[ -n $PLAIN_JOBS ]]; then
  pod_samples "$dir/plain/pods" "${plain[0]}" "${plain[1]}" c >"$dir/plain/pod-samples"
  fairness "$dir/plain/pod-samples" plain-jobs 2>"$dir/plain/worst"
fi
cat "$dir/rf/worst" "$dir/native/worst" ${PLAIN_JOBS:+"$dir/plain/worst"}
echo "watch restarts: $restarts"
echo "the same, as each render's status (RenderJob status.batches.succeeded, Job status.succeeded) said when sampled:"
{ fairness "$dir/rf/samples" renderfarm-status >/dev/null; } 2>&1
{ fairness "$dir/native/samples" native-status >/dev/null; } 2>&1
echo
echo "API requests per batch by client (API server audit log; the bench's kubectl left out):"
for side in renderfarm native ${PLAIN_JOBS:+plain-jobs}; do
  case $side in
    renderfarm) space=$ns window=("${rf[@]}") ;;
    native) space=$native_ns window=("${native[@]}") ;;
    *) space=$plain_ns window=("${plain[@]}") ;;
  esac
  # Each side's own run (5 s after its last Complete), not its namespace's deletion.
  AUDIT_FROM_MS=${window[0]} AUDIT_TO_MS=$((window[1] + 5000)) audit_requests "$space" | awk -v n="$total" -v side="$side" '
    $1 == "kubectl" || $1 == "pvc-protection-controller" {next}
    {t += $2; parts = parts sprintf("%s%s %.2f", parts == "" ? "" : ", ", $1, $2 / n)}
    END {printf "%-10s %6.2f = %s\n", side, t / n, parts}'
done
echo
echo "the operator's requests by verb (audit log):"
printf '%-7s %-24s %7s %9s\n' verb resource count per_batch
AUDIT_FROM_MS=${rf[0]} AUDIT_TO_MS=$((rf[1] + 5000)) audit_requests "$ns" renderfarm-operator | awk -v n="$total" '{printf "%-7s %-24s %7s %9.3f\n", $1, $2, $3, $3 / n}'
# cpu_share PROFILE FUNCTION-REGEX: the share of the profile's samples under the first function
# that matches (pprof's cumulative %).
cpu_share() {
  [[ -s $1 ]] || { echo -; return; }
  go tool pprof -top -cum -nodecount=100000 "$1" 2>/dev/null |
    awk -v re="$2" '$6 ~ re {print $5; found = 1; exit} END {if (!found) print "0%"}'
}
if [[ -n $APISERVER_PROFILE ]]; then
  echo
  echo "kube-apiserver CPU by what it did, share of its samples over $APISERVER_PROFILE s of each side (pprof):"
  printf '%-46s %10s %8s\n' "" renderfarm native
  while IFS='|' read -r what re; do
    printf '%-46s %10s %8s\n' "$what" "$(cpu_share "$dir/rf/apiserver.prof" "$re")" \
      "$(cpu_share "$dir/native/apiserver.prof" "$re")"
  done <<'ROWS'
Job status updates (the Job controller)|job/storage[.][(][*]StatusREST[)][.]Update$
pod status updates (kwok)|pod/storage[.][(][*]StatusREST[)][.]Update$
strategic-merge patches (pod finalizers, kwok)|smpPatcher[)][.]applyPatchToCurrentObject$
server-side apply (the operator's Job applies)|applyPatcher[)][.]applyPatchToCurrentObject$
JSON encoding for watches and answers|json[.][(][*]Serializer[)][.]Encode$
protobuf encoding|protobuf[.][(][*]Serializer[)][.]Encode$
Go garbage collection|runtime[.]gcBgMarkWorker$
ROWS
fi
if [[ -n $OPERATOR_PROFILE ]]; then
  wait "$OPERATOR_PROFILER" 2>/dev/null || true
  echo
  # No call graphs: the release build has no frame pointers, so perf's stacks would be noise.
  echo "the operator's CPU over $OPERATOR_PROFILE s of its side (perf, 199 Hz): by library, then by function (at least 1 %)"
  for sort in dso dso,symbol; do
    perf report -i "$dir/operator.perf" --stdio --no-children -g none --sort "$sort" --percent-limit 1 2>/dev/null |
      grep -v '^#' | grep -v '^$' | sed 's/ *- *- *$//; s/ *$//' | head -30
  done
fi
# Kept for a look at the timeline; the namespace goes.
rm -rf target/many-last
cp -r "$dir" target/many-last
drop_namespace "${plain_ns:-$native_ns}"
rm -rf "$dir"
