#!/usr/bin/env bash
# Sets up a Debian 12 machine for cleave and builds it: installs exactly the Debian packages
# the project needs (apt-get update runs once, and only when something is missing), then
# configures and builds into build/. Safe to run again: it only does what is left to do.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache
  libtorch-dev                                   # LibTorch 1.13 (TorchScript)
  libgrpc++-dev protobuf-compiler-grpc           # gRPC 1.51
  libprotobuf-dev protobuf-compiler              # Protocol Buffers 3.21
  libabsl-dev                                    # absl::Status
  libboost-dev                                   # Asio / Beast
  libzstd-dev zlib1g-dev libssl-dev              # compression, CRC-32, SHA-256
  libcli11-dev nlohmann-json3-dev                # command lines, JSON
  libgtest-dev libgmock-dev libbenchmark-dev     # tests and benchmarks
  clang libclang-rt-14-dev                       # libFuzzer, ASan, UBSan for the frame fuzzer
  prometheus-cpp-dev                             # metrics registry and exposition
  prometheus                                     # promtool checks the /metrics exposition
  gnuplot-nox                                    # cleave exits calibrate --plot
  python3-grpcio python3-protobuf                # the independent Python client test
  python3-torchvision                            # real architectures exported for tests, benches
  dataset-fashion-mnist                          # the real data
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
fi

BUILD_TYPE="${CLEAVE_BUILD_TYPE:-Release}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
cmake --build build --parallel "$(nproc)"
