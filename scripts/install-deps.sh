#!/usr/bin/env bash
# Installs the Debian packages hostd needs to build and test; does nothing (fast)
# when they are already there. Usage: scripts/install-deps.sh [--clang]
#   --clang  also the clang toolchain for the thread-safety and fuzz presets.
set -euo pipefail

packages=(
  cmake ninja-build g++          # build
  libabsl-dev                    # Status, Mutex, Time, containers
  libboost1.81-dev               # Asio (event loop, sockets)
  libssl-dev openssl             # the tls: transport and TLS gRPC; openssl makes test certificates
  libspdlog-dev libfmt-dev       # levelled logging
  nlohmann-json3-dev             # JSON log lines
  prometheus-cpp-dev             # metrics registry and text format
  libcpp-httplib-dev             # the /metrics, /healthz, /readyz endpoint
  libcli11-dev                   # command-line parsing and the config file
  nlohmann-json3-dev             # hostctl --json output
  help2man bash-completion       # hostctl's and hostd's man pages; hostctl's completion directory
  libsqlite3-dev                 # the durable proc table (<state dir>/procs.db)
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc  # the control API
  libzmq3-dev pkg-config         # the peer in bench/forward_bench
  libgtest-dev libgmock-dev      # tests
  python3 python3-grpcio python3-protobuf python3-pytest python3-venv python3-setuptools python3-pip  # the Python package and its tests
  python3-prometheus-client      # tests: the Prometheus parser that reads /metrics
  iproute2 nftables              # tests/cluster: network namespaces, link cuts, partitions, loss
  yamllint python3-kubernetes    # tests: deploy/check.py (YAML style, the Kubernetes API types)
)
if [[ "${1:-}" == "--clang" ]]; then
  packages+=(clang libclang-rt-14-dev)  # -Wthread-safety, libFuzzer runtime
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "installing: ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
