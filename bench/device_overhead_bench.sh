#!/usr/bin/env bash
# Device runtime overhead (docs/PERFORMANCE.md, "Device runtime overhead"): the reference model
# split after the stem and after layer2 (int8 + zstd codec), a cleave-edge serving it on a free
# loopback port, and device_overhead_bench offloading at layer2 against the hand-written
# baselines. Hold the build lock so nothing compiles meanwhile:
#
#   flock /tmp/cleave-build.lock bench/device_overhead_bench.sh [RESULTS_DIR]   (default results/device)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-results/device}"
shift || true
mkdir -p "$RESULTS"
BIN=build/bin
source scripts/edge_process.sh
trap kill_edge EXIT

MODEL="$(scripts/reference_model.sh)"
rm -rf "$RESULTS/bundles"
"$BIN/cleave" split "$MODEL" --input-shape 1,1,28,28 --cuts stem,layer2 \
  -o "$RESULTS/bundles/fashion/1" --name fashion --codec int8 --zstd-level 1 \
  --calibration-data /usr/share/datasets/fashion-mnist > "$RESULTS/split.log"
# The edge shares the device's 2 cores here: its idle polling (on its own machine it costs the
# device nothing) would take a core from the device's next front compute.
start_edge "$BIN" "$RESULTS/bundles" "$RESULTS" --idle-spin-us 0
"$BIN/device_overhead_bench" --bundle "$RESULTS/bundles/fashion/1" \
  --edge "127.0.0.1:$EDGE_PORT" --cut layer2 --json "$RESULTS/device_overhead.json" "$@"
stop_edge
