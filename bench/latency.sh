#!/usr/bin/env bash
# How long after its last pod finishes a render is seen Complete: RUNS small renders, one after
# the other, each as a RenderJob and as a native Indexed Job of the same size, on the local
# control plane (kwok pods complete 1 s after start). Prints each run and the p50/p99 of:
#   pod->job  last pod seen Succeeded -> its batch Job seen Complete (the Job controller)
#   job->rj   that Job seen Complete  -> the RenderJob seen Complete (the operator)
#   pod->rj   the two together
#   native    last pod seen Succeeded -> the Indexed Job seen Complete
# "Seen" is a watch's event arriving here (bench/lib.sh); p99 of 30 runs is the slowest run.
# Not a test: figures only.
#
#   bench/latency.sh [RUNS] [BATCHES]     default: 30 runs of 10 batches, parallelism 10
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

RUNS=${1:-30}
N=${2:-10}
PAR=${PARALLELISM:-$N}
bench_setup

ns="latency-$$"
dir=$(mktemp -d)
make_namespace "$ns"
start_operator "$ns" target/bench-latency-operator.log

echo "renderfarm ($PROFILE build): $RUNS renders of $N one-frame batches at parallelism $PAR ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d))"
printf '%-4s %8s %8s %8s %8s\n' run pod-job job-rj pod-rj native
for i in $(seq 1 "$RUNS"); do
  rj="r$i"
  mkdir -p "$dir/$i"
  watch_start "$dir/$i/pods" pods -n "$ns" --field-selector status.phase=Succeeded \
    -l "renderfarm.io/renderjob=$rj,renderfarm.io/batch" -o "$POD_LINE"
  watch_start "$dir/$i/jobs" jobs -n "$ns" --field-selector status.successful=1 \
    -l "renderfarm.io/renderjob=$rj,renderfarm.io/batch" -o "$JOB_LINE"
  watch_start "$dir/$i/done" renderjobs -n "$ns" --field-selector "metadata.name=$rj" \
    -o 'jsonpath={.metadata.name} {.status.phase}{"\n"}'
  apply_renderjob "$ns" "$rj" "$N" "$PAR"
  kubectl wait --for=condition=Complete "rj/$rj" -n "$ns" --timeout=600s >/dev/null
  watch_stop
  pod_at=$(last_first_seen "$dir/$i/pods" Succeeded)
  job_at=$(last_first_seen "$dir/$i/jobs" +)
  done_at=$(last_first_seen "$dir/$i/done" Succeeded)

  native="native-$i"
  watch_start "$dir/$i/npods" pods -n "$ns" --field-selector status.phase=Succeeded \
    -l "batch.kubernetes.io/job-name=$native" -o "$POD_LINE"
  watch_start "$dir/$i/njob" jobs -n "$ns" --field-selector "metadata.name=$native" -o "$JOB_LINE"
  apply_native "$ns" "$native" "$N" "$PAR"
  kubectl wait --for=condition=Complete "job/$native" -n "$ns" --timeout=600s >/dev/null
  watch_stop
  npod_at=$(last_first_seen "$dir/$i/npods" Succeeded)
  njob_at=$(last_first_seen "$dir/$i/njob" +)
  kubectl delete rj "$rj" -n "$ns" >/dev/null
  kubectl delete job "$native" -n "$ns" --cascade=background >/dev/null

  printf '%-4s %8s %8s %8s %8s\n' "$i" "$(delta_ms "$pod_at" "$job_at")" "$(delta_ms "$job_at" "$done_at")" \
    "$(delta_ms "$pod_at" "$done_at")" "$(delta_ms "$npod_at" "$njob_at")" | tee -a "$dir/runs"
done
stop_operator
drop_namespace "$ns"

# Nearest-rank percentiles of each column.
for col in 2 3 4 5; do
  sort -n -k"$col","$col" "$dir/runs" | awk -v c="$col" '{v[NR] = $c}
    END {p50 = int((NR * 50 + 99) / 100); p99 = int((NR * 99 + 99) / 100)
         printf "%s %s ", v[p50], v[p99]}'
done | awk '{printf "p50  %8s %8s %8s %8s\np99  %8s %8s %8s %8s   (ms)\n", $1, $3, $5, $7, $2, $4, $6, $8}'
rm -rf "$dir"
