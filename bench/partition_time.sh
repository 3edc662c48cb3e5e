#!/usr/bin/env bash
# How long model engineers wait on the partitioner (docs/PERFORMANCE.md, "Partitioner time"):
# `cleave inspect` and `cleave split` (at the stage boundaries, verification included) for
# ResNet-18 and DenseNet-121 at 224x224 (torchvision architectures, seeded random weights),
# next to the baseline measured in the same run: loading the same TorchScript file and running
# one forward with the same LibTorch (from Python). Each command runs RUNS times; the table shows
# medians. Hold the build lock so nothing compiles meanwhile:
#
#   flock /tmp/cleave-build.lock bench/partition_time.sh [RESULTS_DIR]   (default results/partitioner)
#
#   PARTITION_TIME_RUNS   runs per command (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-results/partitioner}"
RUNS="${PARTITION_TIME_RUNS:-3}"
CLEAVE="$PWD/build/bin/cleave"
PYTHON=/usr/bin/python3
mkdir -p "$RESULTS"

# seconds CMD...: wall-clock seconds of one run of CMD (output discarded; fails if CMD fails).
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" > /dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

# median_seconds CMD...: median over RUNS runs.
median_seconds() {
  local times=()
  for ((run = 0; run < RUNS; ++run)); do times+=("$(seconds "$@")"); done
  printf '%s\n' "${times[@]}" | sort -g | awk '{v[NR] = $1} END {printf "%.3f", v[int((NR + 1) / 2)]}'
}

BASELINE='import sys, torch
torch.set_num_threads(2)
model = torch.jit.load(sys.argv[1])
with torch.no_grad():
    model(torch.randn(1, 3, 224, 224))'

declare -A CUTS=(
  [resnet18]=layer1,layer2,layer3,layer4
  [densenet121]=features.transition1,features.transition2,features.transition3,features
)
ROWS=()
printf '%-12s %6s %12s %10s %10s %12s %12s\n' model cuts "load+fwd s" "inspect s" "split s" \
  "inspect/base" "split/base"
for model in resnet18 densenet121; do
  file="$RESULTS/$model.pt"
  "$PYTHON" bench/export_torchvision.py "$model" "$file"
  cut_count=$("$CLEAVE" inspect "$file" --input-shape 1,3,224,224 --json |
    "$PYTHON" -c 'import json, sys; print(len(json.load(sys.stdin)["cuts"]))')
  base=$(median_seconds "$PYTHON" -c "$BASELINE" "$file")
  inspect=$(median_seconds "$CLEAVE" inspect "$file" --input-shape 1,3,224,224)
  split=$(median_seconds "$CLEAVE" split "$file" --input-shape 1,3,224,224 \
    --cuts "${CUTS[$model]}" -o "$RESULTS/$model-bundle" --codec int8 --zstd-level 1)
  inspect_ratio=$(echo "$inspect / $base" | bc -l)
  split_ratio=$(echo "$split / $base" | bc -l)
  printf '%-12s %6d %12.3f %10.3f %10.3f %11.2fx %11.2fx\n' "$model" "$cut_count" "$base" \
    "$inspect" "$split" "$inspect_ratio" "$split_ratio"
  ROWS+=("{\"model\": \"$model\", \"module_cuts\": $cut_count, \"split_cuts\": \"${CUTS[$model]}\",\
 \"load_forward_s\": $base, \"inspect_s\": $inspect, \"split_s\": $split,\
 \"inspect_vs_load_forward\": $(printf '%.3f' "$inspect_ratio"),\
 \"split_vs_load_forward\": $(printf '%.3f' "$split_ratio")}")
done
{
  printf '{"benchmark": "partition_time", "runs": %d, "date": "%s", "results": [' "$RUNS" \
    "$(date -u +%FT%TZ)"
  (IFS=,; printf '%s' "${ROWS[*]}")
  printf ']}\n'
} > "$RESULTS/partition_time.json"
echo "split verifies the bundle against the unsplit model before it exits; JSON: $RESULTS/partition_time.json"
