#!/usr/bin/env bash
# Start ahead on a full cluster, simulated (the local control plane, kwok): NODES kwok nodes
# (kwok-full-N, 32 CPUs each) hold exactly PARALLELISM batch pods of 32/(PARALLELISM/NODES)
# CPUs, and one render of BATCHES batches at that parallelism fills them. Its pods run
# POD_SECONDS and report as much time per frame (hack/kwok/render.yaml), so start ahead makes
# followers as it does on a real cluster, where none can be placed. Once with start ahead off,
# then on (CASES). Per case: the wall time, Jobs created per batch, the scheduler's attempts
# that found no room, and from a poll every second the pods it refused: how many, the most at
# once, pod-seconds, and how many stayed refused longer than 10 s (a cluster autoscaler's default scan interval: the pods it would have added
# a node for). Not a test.
#
#   bench/full.sh                                3 nodes, 12 slots, 48 batches of 20 s
#   CASES=on NODES=10 PARALLELISM=40 bench/full.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
POD_SECONDS=${POD_SECONDS:-20}
# shellcheck source=bench/lib.sh
source bench/lib.sh

NODES=${NODES:-3}
PAR=${PARALLELISM:-12}
BATCHES=${BATCHES:-48}
CASES=${CASES:-off on}
((PAR % NODES == 0 && 32 % (PAR / NODES) == 0)) || { echo "PARALLELISM / NODES must divide 32" >&2; exit 2; }
CPU_REQUEST=$((32 / (PAR / NODES)))

bench_setup
build_stamps
hack/cluster.sh nodes kwok-full "$NODES"
SCENARIO=full-${POD_SECONDS}s
hack/cluster.sh stage render.yaml "SCENARIO=$SCENARIO" "DELAY_MS=$((POD_SECONDS * 1000))" \
  "SECONDS_PER_FRAME=$POD_SECONDS" >/dev/null

render_yaml() { # name startAhead
  cat <<YAML
apiVersion: renderfarm.io/v1alpha1
kind: RenderJob
metadata: {name: $1}
spec:
  blendFile: scenes/bench.blend
  frames: {start: 1, end: $BATCHES}
  batchSize: 1
  parallelism: $PAR
  startAhead: $2
  preview: {enabled: false}
  storage: {claimName: render-storage}
  resources: {requests: {cpu: "$CPU_REQUEST", memory: 16Mi}}
  nodeSelector: {kwok.x-k8s.io/kwokctl-scale: kwok-full}
  podMetadata: {labels: {kwok.renderfarm.io/scenario: $SCENARIO}}
YAML
}

# refused NAMESPACE OUT: every second, the names of the namespace's pods the scheduler refused
# ("seconds name" lines), until killed.
refused() {
  local t0
  t0=$(ms)
  while :; do
    kubectl get pods -n "$1" -o jsonpath='{range .items[?(@.status.phase=="Pending")]}{.metadata.name} {.status.conditions[?(@.type=="PodScheduled")].reason}{"\n"}{end}' 2>/dev/null |
      awk -v t="$(sec $(($(ms) - t0)))" '$2 == "Unschedulable" {print t, $1}' >>"$2" || true
    sleep 1
  done
}

echo "start ahead on a full cluster: $NODES nodes, $PAR slots (pods of $CPU_REQUEST CPUs), one render of $BATCHES one-frame batches of ${POD_SECONDS} s"
echo "date: $(date -u '+%F %T') UTC  commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- operator api || echo +changes)  machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "operator: ${OPERATOR_BIN:-the release build of this checkout}"
printf '%-6s %7s %7s %9s %9s %9s %10s %11s\n' ahead wall_s jobs/b no_room refused max_once pod_s ">10s(CA)"
SCHED_PORT=$((16445 + ${RENDERFARM_PORT_OFFSET:-0}))
no_room() { metric_sum '^scheduler_schedule_attempts_total[{].*result="unschedulable"' "$(component_metrics "$SCHED_PORT")"; }
dir=$(mktemp -d)
for c in $CASES; do
  case $c in on) ahead=true ;; off) ahead=false ;; *) echo "CASES are on and off" >&2; exit 2 ;; esac
  ns=full-$c-$$
  make_namespace "$ns"
  start_operator "$ns" "$dir/$c.log"
  refused "$ns" "$dir/$c.refused" &
  WATCHES+=("$!")
  t0=$(ms) attempts=$(no_room)
  render_yaml render "$ahead" | kubectl apply -n "$ns" -f - >/dev/null
  kubectl wait --for=condition=Complete renderjob/render -n "$ns" --timeout=3600s >/dev/null
  t1=$(ms) attempts=$(($(no_room) - attempts))
  watch_stop
  operator_figures
  stop_operator
  touch "$dir/$c.refused"
  awk -v c="$c" -v wall="$(sec $((t1 - t0)))" -v jobs="$(per "$CREATES" "$BATCHES")" -v tries="$attempts" '
    {n[$2]++; at[$1]++}
    END {for (p in n) {pods++; s += n[p]; if (n[p] > 10) long++}; for (t in at) if (at[t] > m) m = at[t]
      printf "%-6s %7s %7s %9d %9d %9d %10d %11d\n", c, wall, jobs, tries, pods, m, s, long}' "$dir/$c.refused"
  cp "$dir/$c.log" "target/full-$c-operator.log"
  drop_namespace "$ns"
done
rm -rf "$dir"
