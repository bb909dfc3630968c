#!/usr/bin/env bash
# renderfarm against a plain Indexed Job, on the local control plane with kwok nodes: the same
# one-frame batches at the same parallelism, one after the other. Prints wall time of each and
# the ratio, the operator's API writes per batch, its peak memory and CPU, and the API server's
# CPU. Not a test: figures only.
#
#   bench/bench.sh [BATCHES...]     default: 100 1000
#   PARALLELISM=50 bench/bench.sh 1000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZES=("$@")
((${#SIZES[@]})) || SIZES=(100 1000)
PAR=${PARALLELISM:-50}
PORT=18181
# release (default) measures what users run; PROFILE=debug skips the release build.
PROFILE=${PROFILE:-release}

hack/cluster.sh up >&2
eval "$(hack/cluster.sh env)"
if [[ $PROFILE == release ]]; then
  cargo build --release --locked -p renderfarm --bin renderfarm-operator >&2
else
  cargo build --locked -p renderfarm --bin renderfarm-operator >&2
fi
kubectl apply --server-side -f crds/renderjob.yaml >/dev/null
kubectl wait --for=condition=Established crd/renderjobs.renderfarm.io --timeout=60s >/dev/null

ms() { date +%s%3N; }
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
apiserver_pid() { pgrep -f 'kube-apiserver .*--secure-port' | head -n 1; }

run_one() {
  local n=$1 ns="bench-$1-$$"
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

  "./target/$PROFILE/renderfarm-operator" --namespace "$ns" --listen "127.0.0.1:$PORT" --log-format json \
    >"target/bench-operator-$n.log" 2>&1 &
  local op=$!
  until curl -fs "127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.2; done
  local api api_cpu0 t0 t1 native0 native1
  api=$(apiserver_pid)
  api_cpu0=$(cpu_s "$api")

  t0=$(ms)
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: renderfarm.io/v1alpha1
kind: RenderJob
metadata: {name: bench}
spec:
  blendFile: scenes/bench.blend
  frames: {start: 1, end: $n}
  batchSize: 1
  parallelism: $PAR
  storage: {claimName: render-storage}
  resources: {requests: {cpu: 10m, memory: 16Mi}}
YAML
  kubectl wait --for=condition=Complete rj/bench -n "$ns" --timeout=3600s >/dev/null
  t1=$(ms)
  local rf_ms=$((t1 - t0)) rf_api_cpu
  rf_api_cpu=$(awk -v a="$(cpu_s "$api")" -v b="$api_cpu0" 'BEGIN {printf "%.1f", a - b}')
  local metrics writes creates statuses events rss cpu
  metrics=$(curl -fs "127.0.0.1:$PORT/metrics")
  writes=$(awk '/^renderfarm_api_writes_total/ {s += $2} END {print s + 0}' <<<"$metrics")
  creates=$(awk '/^renderfarm_api_writes_total.*resource="jobs"/ {s += $2} END {print s + 0}' <<<"$metrics")
  statuses=$(awk '/^renderfarm_api_writes_total.*resource="renderjobs\/status"/ {s += $2} END {print s + 0}' <<<"$metrics")
  events=$(awk '/^renderfarm_api_writes_total.*resource="events"/ {s += $2} END {print s + 0}' <<<"$metrics")
  rss=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$op/status")
  cpu=$(cpu_s "$op")
  kill "$op" 2>/dev/null || true
  wait "$op" 2>/dev/null || true

  # The same work as one native Indexed Job.
  api_cpu0=$(cpu_s "$api")
  native0=$(ms)
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: native}
spec:
  completionMode: Indexed
  completions: $n
  parallelism: $PAR
  backoffLimitPerIndex: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: render
        image: renderfarm/render-node:dev
        resources: {requests: {cpu: 10m, memory: 16Mi}}
YAML
  kubectl wait --for=condition=Complete job/native -n "$ns" --timeout=3600s >/dev/null
  native1=$(ms)
  local native_ms=$((native1 - native0)) native_api_cpu
  native_api_cpu=$(awk -v a="$(cpu_s "$api")" -v b="$api_cpu0" 'BEGIN {printf "%.1f", a - b}')
  kubectl delete namespace "$ns" --wait=false >/dev/null
  kubectl delete pv "$ns" --wait=false >/dev/null

  printf '%-8s %-6s %10.1f %10.1f %7.2f %9.2f %8s %8s %8s %9s %8s %10s %12s\n' \
    "$n" "$PAR" "$(awk -v m="$rf_ms" 'BEGIN {print m / 1000}')" "$(awk -v m="$native_ms" 'BEGIN {print m / 1000}')" \
    "$(awk -v a="$rf_ms" -v b="$native_ms" 'BEGIN {print a / b}')" \
    "$(awk -v w="$writes" -v n="$n" 'BEGIN {print w / n}')" "$creates" "$statuses" "$events" "$rss" "$cpu" "$rf_api_cpu" "$native_api_cpu"
}

echo "renderfarm ($PROFILE build) vs a native Indexed Job ($(nproc) cores, $(date -u +%Y-%m-%d), kwok pods complete 1 s after start)"
printf '%-8s %-6s %10s %10s %7s %9s %8s %8s %8s %9s %8s %10s %12s\n' \
  batches par rf_wall_s native_s ratio writes/b job_wr status_wr event_wr rss_MiB cpu_s api_cpu_rf api_cpu_native
for n in "${SIZES[@]}"; do run_one "$n"; done
