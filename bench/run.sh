#!/usr/bin/env bash
# Builds and runs every benchmark and prints one table: scenario, baseline, hostd,
# ratio, goal. Each hostd figure is measured next to its baseline in the same run.
#   bench/run.sh           the full run (about 2 minutes on 2 cores)
#   bench/run.sh --quick   each scenario tiny: checks the benchmarks work, not their numbers
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default --target link_bench spawn_bench forward_bench control_bench echo_client hostd hostd_test_proc \
  hostd_python >/dev/null
b=build/default/bench
echo "hostd benchmarks $(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r)"
echo "command: bench/run.sh $*; medians of repeated runs (min..max)"
echo
echo "| scenario | baseline | hostd | ratio | goal | met |"
echo "|---|---|---|---|---|---|"
for bench in link_bench spawn_bench forward_bench control_bench; do
  "$b/$bench" "$@"
done
PYTHONPATH=build/default/python/site /usr/bin/python3 bench/python_bench.py "$@"
