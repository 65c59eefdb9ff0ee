#!/usr/bin/env bash
# Runs the benchmarks (release build with LTO; the first build takes a few minutes):
#   scripts/bench.sh            the load comparison: direct, HAProxy, NGINX, healthgate
#   scripts/bench.sh routing    criterion micro-benchmarks: pick, snapshot rebuild, /healthz parse
#   scripts/bench.sh health     health-check cost at 1000 and 5000 nodes, idle RSS
#   scripts/bench.sh scenarios  failure scenarios under load, healthgate beside HAProxy (≈10 min)
# Further arguments go to the benchmark, e.g. `scripts/bench.sh load --quick`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh --bench
what=${1:-load}
[ $# -gt 0 ] && shift
case "$what" in
  load) exec cargo bench --locked --bench load -- "$@" ;;
  routing) exec cargo bench --locked --bench routing -- "$@" ;;
  health) exec cargo bench --locked --bench health_cost -- "$@" ;;
  scenarios) exec cargo bench --locked --bench scenarios -- "$@" ;;
  *) echo "usage: scripts/bench.sh [load|routing|health|scenarios] [args…]" >&2; exit 2 ;;
esac
