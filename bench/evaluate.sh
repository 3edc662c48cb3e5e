#!/usr/bin/env bash
# The whole evaluation in one command (docs/PERFORMANCE.md, "End-to-end evaluation"): for the
# reference Fashion-MNIST model (trained by cleave, with calibrated exit heads) and ResNet-18
# and MobileNetV2 at 224x224 (torchvision architectures, random weights), split at their stage
# boundaries, profiled and planned, served by one cleave-edge; then split_eval sweeps 1, 5, 20
# and 100 Mbit/s (plus 2 and 50 for ResNet-18's trace) with a 10 ms RTT through the link
# emulator, with device compute scaled K times (default 10), against all-on-device,
# all-on-edge, every fixed cut (the oracle), the planned cut and the adaptive runtime; and
# replays a 50 -> 2 -> 50 Mbit/s trace for ResNet-18. Writes RESULTS/REPORT.md, JSON and PNG
# plots. Run it on a quiet machine (hold the build lock):
#
#   flock /tmp/cleave-build.lock bench/evaluate.sh [RESULTS_DIR]     (default results/eval)
#
#   CLEAVE_EVAL_SLOWDOWN   device compute scale K (default 10)
#   CLEAVE_EVAL_MODELS     models to run (default "reference resnet18 mobilenet_v2")
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="$(mkdir -p "${1:-results/eval}" && cd "${1:-results/eval}" && pwd)"
K="${CLEAVE_EVAL_SLOWDOWN:-10}"
MODELS="${CLEAVE_EVAL_MODELS:-reference resnet18 mobilenet_v2}"
RTT=10ms
BANDWIDTHS=1mbit,5mbit,20mbit,100mbit
DATA=/usr/share/datasets/fashion-mnist
BIN="$PWD/build/bin"
source scripts/edge_process.sh
trap kill_edge EXIT
START=$(date +%s)
rm -rf "$RESULTS/bundles"
mkdir -p "$RESULTS/models" "$RESULTS/bundles"

# prepare NAME MODEL SHAPE CUTS [split flags…]: bundle at CUTS, profile, plan.
prepare() {
  local name="$1" model="$2" shape="$3" cuts="$4"
  shift 4
  local bundle="$RESULTS/bundles/$name/1"
  echo "== $name: split at $cuts, profile, plan" >&2
  "$BIN/cleave" split "$model" --input-shape "$shape" --cuts "$cuts" -o "$bundle" --name "$name" \
    --codec int8 --zstd-level 1 "$@" > "$RESULTS/$name.split.log"
  "$BIN/cleave" profile "$model" --input-shape "$shape" --batch-sizes 1 --runs 10 \
    -o "$RESULTS/$name.profile.json" > "$RESULTS/$name.profile.log" 2>&1
}

plan() {
  local name="$1" model="$2" shape="$3" cuts="$4"
  shift 4
  # This machine is both device and edge; the plan scales the device's compute like the run.
  "$BIN/cleave" plan "$model" --input-shape "$shape" --cuts "$cuts" \
    --device-profile "$RESULTS/$name.profile.json" --edge-profile "$RESULTS/$name.profile.json" \
    --device-scale "$K" --bandwidth "$BANDWIDTHS" --rtt "$RTT" --codec int8 --zstd-level 1 \
    "$@" -o "$RESULTS/$name.plan.json" > "$RESULTS/$name.plan.log"
}

for model in $MODELS; do
  case "$model" in
    reference)
      MODEL="$(scripts/reference_model.sh)"
      prepare reference "$MODEL" 1,1,28,28 stem,layer1,layer2,layer3 --calibration-data "$DATA"
      "$BIN/cleave" exits train "$RESULTS/bundles/reference/1" --cuts layer1,layer2 \
        --head conv-pool-linear --epochs 3 > "$RESULTS/reference.exits.log" 2>&1
      "$BIN/cleave" exits calibrate "$RESULTS/bundles/reference/1" --max-accuracy-drop 0.5 \
        >> "$RESULTS/reference.exits.log"
      plan reference "$MODEL" 1,1,28,28 stem,layer1,layer2,layer3 --calibration-data "$DATA" \
        --exits "$RESULTS/bundles/reference/1"
      ;;
    resnet18)
      /usr/bin/python3 bench/export_torchvision.py resnet18 "$RESULTS/models/resnet18.pt"
      prepare resnet18 "$RESULTS/models/resnet18.pt" 1,3,224,224 \
        maxpool,layer1,layer2,layer3,layer4,avgpool
      plan resnet18 "$RESULTS/models/resnet18.pt" 1,3,224,224 \
        maxpool,layer1,layer2,layer3,layer4,avgpool
      ;;
    mobilenet_v2)
      /usr/bin/python3 bench/export_torchvision.py mobilenet_v2 "$RESULTS/models/mobilenet_v2.pt"
      prepare mobilenet_v2 "$RESULTS/models/mobilenet_v2.pt" 1,3,224,224 \
        features.3,features.6,features.10,features.13,features.16,features
      plan mobilenet_v2 "$RESULTS/models/mobilenet_v2.pt" 1,3,224,224 \
        features.3,features.6,features.10,features.13,features.16,features
      ;;
    *)
      echo "unknown model '$model' (expected reference, resnet18 or mobilenet_v2)" >&2
      exit 1
      ;;
  esac
done

# Device and edge share the 2 cores: no idle polling at the edge, which would take a core from
# the device's compute (an edge on its own machine costs the device nothing).
start_edge "$BIN" "$RESULTS/bundles" "$RESULTS" --idle-spin-us 0
for model in $MODELS; do
  flags=(--inputs random)
  bandwidths="$BANDWIDTHS"
  case "$model" in
    reference) flags=(--inputs fashion-mnist --requests 100) ;;
    resnet18)
      bandwidths="1mbit,2mbit,5mbit,20mbit,50mbit,100mbit"
      flags+=(--trace 50mbit:20s,2mbit:20s,50mbit:20s)
      ;;
  esac
  "$BIN/split_eval" --bundle "$RESULTS/bundles/$model/1" --edge "127.0.0.1:$EDGE_PORT" \
    --name "$model" --plan "$RESULTS/$model.plan.json" --bandwidths "$bandwidths" --rtt "$RTT" \
    --device-slowdown "$K" --out "$RESULTS" "${flags[@]}"
done
stop_edge

{
  echo "# cleave end-to-end evaluation"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  echo "($(nproc) cores). Device and edge share this machine; the device's compute is scaled"
  echo "x$K (the runtime sleeps the extra time), the link emulator adds the bandwidth and a $RTT"
  echo "RTT. Command: \`bench/evaluate.sh\`; $(($(date +%s) - START)) s in all."
  for model in $MODELS; do
    echo
    cat "$RESULTS/$model.md"
  done
} > "$RESULTS/REPORT.md"
echo "report: $RESULTS/REPORT.md"
