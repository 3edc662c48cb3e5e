#!/usr/bin/env bash
# Prints the path of the trained reference model, training it first if it is not cached.
# The cache key covers the model's source, the epochs and the seed, so a change to any of them
# retrains. Used by the demo and the benchmarks.
#
#   CLEAVE_CACHE   where trained models are cached (default ~/.cache/cleave)
set -euo pipefail
cd "$(dirname "$0")/.."

EPOCHS="${CLEAVE_REFERENCE_EPOCHS:-6}"
SEED=1
CACHE="${CLEAVE_CACHE:-$HOME/.cache/cleave}"
KEY="$(cat partitioner/src/reference_model.cc partitioner/src/script_modules.cc |
  sha256sum | cut -c1-16)-e${EPOCHS}-s${SEED}"
MODEL="$CACHE/fashion_resnet-$KEY.pt"
mkdir -p "$CACHE"
if [[ ! -f "$MODEL" ]]; then
  echo "== training the reference model ($EPOCHS epochs on the 60k Fashion-MNIST training" \
    "images; cached afterwards)" >&2
  build/bin/cleave train-reference --epochs "$EPOCHS" --seed "$SEED" -o "$MODEL" >&2
fi
echo "$MODEL"
