#!/usr/bin/env bash
# Builds the channel fuzzers and runs each for N seconds (default 300), one after the
# other. Usage: fuzz/run.sh [seconds] [target ...]
# Each run uses a scratch copy of fuzz/corpus/<target> under build/fuzz/fuzz-run/, so
# the committed seed corpus is never modified; crash inputs land next to it.
set -euo pipefail

secs="${1:-300}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(frame_decoder_fuzzer handshake_fuzzer channel_addr_fuzzer grpc_service_fuzzer)
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cmake --preset fuzz
cmake --build --preset fuzz

bindir="$root/build/fuzz/fuzz"
workdir="$root/build/fuzz/fuzz-run"
summary=()
failed=0

for t in "${targets[@]}"; do
  run="$workdir/$t"
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/artifacts"
  cp -R "$root/fuzz/corpus/$t/." "$run/corpus/"
  extra=()
  case "$t" in
    channel_addr_fuzzer) extra+=(-dict="$root/fuzz/channel_addr_fuzzer.dict") ;;
  esac
  echo "=== $t: ${secs}s, log $run/log" >&2
  rc=0
  nice -n 10 "$bindir/$t" -max_total_time="$secs" -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$run/artifacts/" "${extra[@]}" "$run/corpus" >"$run/log" 2>&1 || rc=$?

  # libFuzzer's last status line ("#N DONE cov: ... exec/s: ...") and its final stats.
  status_line="$(grep -E '^#[0-9]+' "$run/log" | tail -n 1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: //p' "$run/log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$run/log" | tail -n 1)"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$status_line" | tail -n 1 | cut -d' ' -f2 || true)"
  crashes=("$run"/artifacts/*)
  if [[ $rc -eq 0 && ! -e "${crashes[0]}" ]]; then
    found="no crashes"
  else
    found="CRASH (exit $rc): ${crashes[*]}"
    failed=1
  fi
  line="$t: executions=${execs:-?} exec/s=${rate:-?} cov=${cov:-?} -> $found"
  echo "$line" >&2
  echo "    last: $status_line" >&2
  summary+=("$line")
done

echo
echo "=== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
