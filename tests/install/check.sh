#!/usr/bin/env bash
# Installs a built tree into a scratch prefix and builds a program against it with
# find_package(hostd), as an embedding user would: once with GoogleTest hidden (the
# library alone must not need it), once asking for the `testing` component and
# linking hostd::testing. Runs the first. Usage: check.sh <build-dir>
set -euo pipefail
build="$1"
consumer="$(dirname "$0")/consumer"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
cmake -S "$consumer" -B "$scratch/build" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" \
  -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON >/dev/null
cmake --build "$scratch/build" >/dev/null
cmake -S "$consumer" -B "$scratch/build-testing" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" \
  -DCONSUMER_USES_TESTING=ON >/dev/null
cmake --build "$scratch/build-testing" >/dev/null
"$scratch/build/consumer"
