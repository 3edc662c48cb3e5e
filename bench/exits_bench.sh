#!/usr/bin/env bash
# Early-exit measurement on the 10k Fashion-MNIST test images: the reference model split at
# stem / layer1 / layer2, conv-pool-linear exit heads at layer1 and layer2 trained on 55k
# training images, temperatures and thresholds calibrated on the 5k held out for a 0.5 pp
# accuracy budget, then evaluated on the test set. Prints the tables and writes JSON.
#
#   bench/exits_bench.sh [RESULTS_DIR]     (default results/exits)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-results/exits}"
mkdir -p "$RESULTS"
MODEL="$(scripts/reference_model.sh)"
BUNDLE="$RESULTS/bundle"
rm -rf "$BUNDLE"
build/bin/cleave split "$MODEL" --input-shape 1,1,28,28 --cuts stem,layer1,layer2 -o "$BUNDLE" \
  --codec int8 --zstd-level 1 --calibration-data /usr/share/datasets/fashion-mnist
build/bin/cleave exits train "$BUNDLE" --cuts layer1,layer2 --head conv-pool-linear --epochs 3
build/bin/cleave exits calibrate "$BUNDLE" --max-accuracy-drop 0.5 --plot "$RESULTS/trade_off.png"
build/bin/cleave exits calibrate "$BUNDLE" --max-accuracy-drop 0.5 --json > "$RESULTS/calibration.json"
build/bin/cleave exits evaluate "$BUNDLE"
build/bin/cleave exits evaluate "$BUNDLE" --json > "$RESULTS/evaluation.json"
echo "JSON: $RESULTS/calibration.json $RESULTS/evaluation.json; plot: $RESULTS/trade_off.png"
