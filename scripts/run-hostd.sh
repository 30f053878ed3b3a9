#!/usr/bin/env bash
# Builds and runs hostd. Until the daemon lands (issue 4), this runs hostd-demo: a
# link carrying messages between a listener and a sender on real sockets, with its
# delivery counters. Arguments go to the program (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default -DBUILD_TESTING=OFF >/dev/null
cmake --build --preset default --target hostd-demo
exec build/default/daemon/hostd-demo "$@"
