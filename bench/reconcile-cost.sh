#!/usr/bin/env bash
# What one reconcile costs as the number of batches grows, without a cluster
# (operator/examples/reconcile_cost.rs): wall time per reconcile and per batch, what the
# Job and pod caches hold, and, when valgrind is installed, instructions per reconcile and per
# batch (callgrind; the difference between 11 reconciles and 1, so building the world is not
# counted; instruction counts do not depend on the machine's load). Not a test: figures only.
#
#   bench/reconcile-cost.sh [BATCHES...]      default: 100 1000 10000
#   PROFILE=debug bench/reconcile-cost.sh     skip the release build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZES=("$@")
((${#SIZES[@]})) || SIZES=(100 1000 10000)
PROFILE=${PROFILE:-release}
if [[ $PROFILE == release ]]; then
  cargo build --release --locked -p renderfarm --example reconcile_cost >&2
else
  cargo build --locked -p renderfarm --example reconcile_cost >&2
fi
bin=target/$PROFILE/examples/reconcile_cost

echo "reconcile cost ($PROFILE build, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d))"
"$bin" "${SIZES[@]}"
command -v valgrind >/dev/null || exit 0

instructions() { # reconciles batches
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --reconciles "$1" "$2" 2>&1 |
    awk '/refs:/ {gsub(",", "", $NF); print $NF}'
}
printf '%8s %16s %14s\n' batches instr_per_rec instr_per_batch
for n in "${SIZES[@]}"; do
  one=$(instructions 1 "$n")
  eleven=$(instructions 11 "$n")
  printf '%8s %16s %14s\n' "$n" $(((eleven - one) / 10)) $(((eleven - one) / 10 / n))
done
