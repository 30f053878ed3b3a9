#!/usr/bin/env bash
# Builds hostd and runs every test (the default preset: RelWithDebInfo, g++).
# Installs what it needs first. Other presets: scripts/test.sh asan | thread-safety
# (thread-safety analyses every source with clang; it builds and runs nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
if [[ "$preset" == "thread-safety" ]]; then
  # The analysis is a compile-time check: every source is analysed by clang
  # (-fsyntax-only), without building or running the suite a third time.
  scripts/install-deps.sh --clang
  cmake --preset thread-safety
  cmake --build build/tsa --target hostd_proto_gen
  exec scripts/thread_safety.py build/tsa
fi
scripts/install-deps.sh
cmake --workflow --preset "$preset"
