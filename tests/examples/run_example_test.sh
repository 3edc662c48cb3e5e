#!/usr/bin/env bash
# Proves cleave::device is installable: `cmake --install` into a fresh prefix, then
# examples/robot_loop — a separate CMake project using find_package(cleave) — is configured,
# built against that prefix and run over a real bundle against a real cleave-edge.
# Usage: run_example_test.sh BUILD_DIR SOURCE_DIR [CXX_COMPILER [CXX_FLAGS]]
# (a sanitizer build passes its compiler and flags: the example must be built like the library)
set -euo pipefail
build="$1"
source_dir="$2"
compiler="${3:-}"
flags="${4:-}"
bin="$build/bin"
work="$(mktemp -d -t cleave-example.XXXXXX)"
source "$source_dir/scripts/edge_process.sh"
trap 'kill_edge; rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
configure=()
if command -v ccache > /dev/null; then configure=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if [[ -n "$compiler" ]]; then configure+=(-DCMAKE_CXX_COMPILER="$compiler"); fi
if [[ -n "$flags" ]]; then configure+=(-DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags"); fi
cmake -S "$source_dir/examples/robot_loop" -B "$work/example" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" "${configure[@]}" > "$work/configure.log" ||
  { cat "$work/configure.log"; exit 1; }
cmake --build "$work/example" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

"$bin/cleave" train-reference --limit 256 --epochs 1 -o "$work/model.pt" > /dev/null
"$bin/cleave" split "$work/model.pt" --input-shape 1,1,28,28 --cuts stem,layer2 \
  -o "$work/bundles/fashion/1" > /dev/null

# Device only, then with an edge (and a dead one first in the failover order), then with the
# edge alone. On loopback the policy keeps this small model on the device; the first frame's
# probe shows the installed library reached the real edge over gRPC.
"$work/example/robot_loop" "$work/bundles/fashion/1" | tee "$work/alone.txt"
grep -q '^device: 20$' "$work/alone.txt"
start_edge "$bin" "$work/bundles" "$work"
"$work/example/robot_loop" "$work/bundles/fashion/1" 127.0.0.1:1 "127.0.0.1:$EDGE_PORT" |
  tee "$work/failover.txt"
# Every frame answered (wherever the policy put it) ...
awk '/^cleave_device_requests_total/ { n += $NF } END { exit n != 20 }' "$work/failover.txt"
"$work/example/robot_loop" "$work/bundles/fashion/1" "127.0.0.1:$EDGE_PORT" | tee "$work/edge.txt"
# ... and a probe (or, on a slow machine, more) answered by the live edge.
grep -Eq 'cleave_device_probes_total\{outcome="ok"\} [1-9]' "$work/edge.txt"
stop_edge
echo "example project built against the installed package and ran"
