#!/usr/bin/env bash
# Builds and runs hostd (installing the Debian packages it needs first). With no
# arguments hostd runs on its embedded defaults: the control API on
# unix:<runtime dir>/hostd.sock, procs as processes, logs under the state dir
# (daemon/config.h). Arguments go to hostd (see --help). Ctrl-C stops it after
# terminating every proc it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default --target hostd hostctl
exec build/default/daemon/hostd "$@"
