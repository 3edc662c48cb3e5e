#!/usr/bin/env bash
# What signatures and encryption add to a bundle load (docs/PERFORMANCE.md, "Signed and
# encrypted bundle loads"), for the reference model (split after the stem and layer2) and
# ResNet-18 (random weights, split after layer2). Hold the build lock so nothing compiles
# meanwhile:
#
#   flock /tmp/cleave-build.lock bench/bundle_load_bench.sh [RESULTS_DIR]   (default results/trust)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="$(mkdir -p "${1:-results/trust}" && cd "${1:-results/trust}" && pwd)"
BIN="$PWD/build/bin"

MODEL="$(scripts/reference_model.sh)"
"$BIN/cleave" split "$MODEL" --input-shape 1,1,28,28 --cuts stem,layer2 -o "$RESULTS/reference" \
  --name fashion --codec int8 > "$RESULTS/reference-split.log"
echo "== reference model"
"$BIN/bundle_load_bench" --bundle "$RESULTS/reference" --work "$RESULTS/reference-work" \
  --json "$RESULTS/reference.json"

/usr/bin/python3 bench/export_torchvision.py resnet18 "$RESULTS/resnet18.pt"
"$BIN/cleave" split "$RESULTS/resnet18.pt" --input-shape 1,3,224,224 --cuts layer2 \
  -o "$RESULTS/resnet18" --name resnet18 --codec int8 > "$RESULTS/resnet18-split.log"
echo "== ResNet-18"
"$BIN/bundle_load_bench" --bundle "$RESULTS/resnet18" --work "$RESULTS/resnet18-work" --runs 7 \
  --json "$RESULTS/resnet18.json"
