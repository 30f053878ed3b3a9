#!/usr/bin/env bash
# Builds hostd and runs every test (the default preset: RelWithDebInfo, g++).
# Installs what it needs first. Other presets: scripts/test.sh asan | thread-safety
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
if [[ "$preset" == "thread-safety" ]]; then
  scripts/install-deps.sh --clang
else
  scripts/install-deps.sh
fi
cmake --workflow --preset "$preset"
