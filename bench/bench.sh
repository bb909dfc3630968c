#!/usr/bin/env bash
# renderfarm against a plain Indexed Job, on the local control plane with kwok nodes: the same
# one-frame batches at the same parallelism, one after the other. Prints wall time of each and
# the ratio, the operator's API writes per batch, its memory, CPU and reconciles, the API
# server's CPU, and how long after the last pod finished each render was seen complete.
# Not a test: figures only.
#
#   bench/bench.sh [BATCHES...]     default: 100 1000
#   PARALLELISM=50 bench/bench.sh 1000
#   POD_SECONDS=10 bench/bench.sh 500      pods that run 10 s instead of 1 s
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

SIZES=("$@")
((${#SIZES[@]})) || SIZES=(100 1000)
PAR=${PARALLELISM:-50}
bench_setup

PREVIOUS=
run_one() {
  local n=$1 ns="bench-$1-$$" dir
  # Deleting the last run's namespace (up to 20,000 pods and 10,000 Jobs) keeps the
  # controller-manager and kwok busy for minutes: wait for it to go first.
  [[ -z $PREVIOUS ]] || kubectl wait --for=delete "namespace/$PREVIOUS" --timeout=3600s >/dev/null 2>&1 || true
  PREVIOUS=$ns
  dir=$(mktemp -d)
  make_namespace "$ns"
  start_operator "$ns" "target/bench-operator-$n.log"
  local api api_cpu0 t0 t1 native0 native1
  api=$(apiserver_pid)
  api_cpu0=$(cpu_s "$api")

  watch_render "$ns" "$dir/rf" renderjob
  t0=$(ms)
  apply_renderjob "$ns" bench "$n" "$PAR"
  kubectl wait --for=condition=Complete rj/bench -n "$ns" --timeout=3600s >/dev/null
  t1=$(ms)
  local rf_ms=$((t1 - t0)) rf_api_cpu
  rf_api_cpu=$(awk -v a="$(cpu_s "$api")" -v b="$api_cpu0" 'BEGIN {printf "%.1f", a - b}')
  # Peak over the run, and what it holds at the end with every Job and pod in its caches.
  operator_figures
  watch_stop
  stop_operator
  # Every request of the operator, reads included, as the API server logged it.
  audit_requests "$ns" renderfarm-operator |
    awk -v n="$n" '{printf "%-7s %-7s %-20s %6s %6.2f\n", n, $1, $2, $3, $3 / n}' >>"$OPERATOR_REQUESTS"
  local pod_at job_at done_at
  pod_at=$(last_first_seen "$dir/rf/pods" Succeeded)
  job_at=$(last_first_seen "$dir/rf/jobs" +)
  done_at=$(last_first_seen "$dir/rf/done" Succeeded)

  # The same work as one native Indexed Job, in a namespace of its own so that the audit log
  # tells the two apart.
  local native_ns=$ns-native
  kubectl create namespace "$native_ns" >/dev/null
  watch_render "$native_ns" "$dir/native" native
  api_cpu0=$(cpu_s "$api")
  native0=$(ms)
  apply_native "$native_ns" native "$n" "$PAR"
  kubectl wait --for=condition=Complete job/native -n "$native_ns" --timeout=3600s >/dev/null
  native1=$(ms)
  local native_ms=$((native1 - native0)) native_api_cpu
  native_api_cpu=$(awk -v a="$(cpu_s "$api")" -v b="$api_cpu0" 'BEGIN {printf "%.1f", a - b}')
  watch_stop
  local native_pod_at native_job_at
  native_pod_at=$(last_first_seen "$dir/native/pods" Succeeded)
  native_job_at=$(last_first_seen "$dir/native/jobs" +)
  # What the control plane was asked for, per batch, by client; the bench's own kubectl and
  # the PVC's protection controller left out.
  local way space
  for way in renderfarm native; do
    space=$ns
    [[ $way == renderfarm ]] || space=$native_ns
    audit_requests "$space" | awk -v n="$n" -v way="$way" '
      $1 == "kubectl" || $1 == "pvc-protection-controller" {next}
      {t += $2; parts = parts sprintf("%s%s %.2f", parts == "" ? "" : ", ", $1, $2 / n)}
      END {printf "%-7s %-10s %6.2f = %s\n", n, way, t / n, parts}' >>"$ALL_REQUESTS"
  done
  drop_namespace "$ns"
  kubectl delete namespace "$native_ns" --wait=false >/dev/null
  rm -rf "$dir"

  printf '%-7s %-4s %9.1f %8.1f %6.2f %8.2f %6s %6s %6s %8s %7s %7s %6s %9s %6s %6s %8s %8s %8s %8s\n' \
    "$n" "$PAR" "$(awk -v m="$rf_ms" 'BEGIN {print m / 1000}')" "$(awk -v m="$native_ms" 'BEGIN {print m / 1000}')" \
    "$(awk -v a="$rf_ms" -v b="$native_ms" 'BEGIN {print a / b}')" \
    "$(awk -v w="$WRITES" -v n="$n" 'BEGIN {print w / n}')" "$CREATES" "$STATUSES" "$EVENTS" \
    "$RSS_PEAK" "$RSS_END" "$CPU" "$RECONCILES" \
    "$(awk -v s="$RECONCILE_S" -v c="$RECONCILES" 'BEGIN {printf "%.1f", c ? s * 1000 / c : 0}')" \
    "$rf_api_cpu" "$native_api_cpu" \
    "$(delta_ms "$pod_at" "$job_at")" "$(delta_ms "$job_at" "$done_at")" "$(delta_ms "$pod_at" "$done_at")" \
    "$(delta_ms "$native_pod_at" "$native_job_at")"
}

echo "renderfarm ($PROFILE build) vs a native Indexed Job ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d), kwok pods complete $POD_SECONDS s after start)"
echo "last pod -> done, as watches see it: pod->job = the batch Job's Complete, job->rj = the RenderJob's Complete, native = the Indexed Job's Complete (ms)"
printf '%-7s %-4s %9s %8s %6s %8s %6s %6s %6s %8s %7s %7s %6s %9s %6s %6s %8s %8s %8s %8s\n' \
  batches par rf_wall_s native_s ratio writes/b job_wr status event rss_peak rss_end cpu_s recs rec_ms api_rf api_nt \
  pod-job job-rj pod-rj native
OPERATOR_REQUESTS=$(mktemp)
ALL_REQUESTS=$(mktemp)
for n in "${SIZES[@]}"; do run_one "$n"; done
echo
echo "API requests per batch for the render's pods, Jobs, Events and RenderJob, by client (API server audit log):"
cat "$ALL_REQUESTS"
echo
echo "the operator's requests by verb (audit log):"
printf '%-7s %-7s %-20s %6s %6s\n' batches verb resource count per_batch
cat "$OPERATOR_REQUESTS"
rm -f "$OPERATOR_REQUESTS" "$ALL_REQUESTS"
