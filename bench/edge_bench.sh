#!/usr/bin/env bash
# Edge server throughput and latency (docs/PERFORMANCE.md, "Edge server throughput and
# latency"). For the reference model (trained, split after the stem) and ResNet-18 (random
# weights, split after layer2) it starts two cleave-edge processes serving the bundle —
# batching on (--max-batch-size 32) and off (--max-batch-size 1) — and runs edge_load_bench
# against both at low load (1 stream, 1 request in flight) and high load (16 and 64 streams),
# next to a plain in-process forward of the same back segments measured in the same run.
# Prints one table per model and writes JSON. Hold the build lock so nothing compiles meanwhile:
#
#   flock /tmp/cleave-build.lock bench/edge_bench.sh [RESULTS_DIR]     (default results/edge)
#
#   EDGE_BENCH_MODELS   models to measure (default "reference resnet18")
#   EDGE_BENCH_LOADS    edge_load_bench --loads (default 1x1,16x1,64x1)
#   EDGE_BENCH_ZSTD     zstd level of the int8 frames (default 1; 0: plain int8)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="$(mkdir -p "${1:-results/edge}" && cd "${1:-results/edge}" && pwd)"
MODELS="${EDGE_BENCH_MODELS:-reference resnet18}"
LOADS="${EDGE_BENCH_LOADS:-1x1,16x1,64x1}"
ZSTD="${EDGE_BENCH_ZSTD:-1}"
WORKERS=2          # cleave-edge --workers; the plain forward uses as many threads
MAX_BATCH_SIZE=32  # the batching edge
BIN="$PWD/build/bin"
# shellcheck source=scripts/edge_process.sh
source scripts/edge_process.sh

PIDS=()
stop_all() { for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; }
trap stop_all EXIT

# start_configured_edge NAME BUNDLES FLAGS...: start_edge with extra cleave-edge flags, logging
# into its own folder; sets EDGE_PID and EDGE_PORT.
start_configured_edge() {
  local name="$1" bundles="$2"
  shift 2
  local dir="$RESULTS/edge-$name"
  mkdir -p "$dir"
  start_edge "$BIN" "$bundles" "$dir" "$@"
  PIDS+=("$EDGE_PID")
}

# measure NAME BUNDLE_DIR EDGE_LOAD_BENCH_FLAGS...
measure() {
  local name="$1" bundle="$2"
  shift 2
  local common=(--workers "$WORKERS" --intra-op-threads 1 --watch-interval-ms 0)
  start_configured_edge "$name-batching" "$(dirname "$bundle")" "${common[@]}" \
    --max-batch-size "$MAX_BATCH_SIZE"
  local on_pid="$EDGE_PID" on_port="$EDGE_PORT"
  start_configured_edge "$name-unbatched" "$(dirname "$bundle")" "${common[@]}" \
    --max-batch-size 1
  local off_pid="$EDGE_PID" off_port="$EDGE_PORT"
  echo "== $name: edges on ports $on_port (batching, max $MAX_BATCH_SIZE) and $off_port" \
    "(batching off), $WORKERS workers each"
  "$BIN/edge_load_bench" --bundle "$bundle" --edge "127.0.0.1:$on_port" \
    --edge-unbatched "127.0.0.1:$off_port" --loads "$LOADS" --forward-threads "$WORKERS" \
    --intra-op-threads 1 --forward-batch-sizes "1,8,$MAX_BATCH_SIZE" \
    --json "$RESULTS/$name.json" "$@"
  EDGE_PID="$on_pid" && stop_edge
  EDGE_PID="$off_pid" && stop_edge
  PIDS=()
}

for model in $MODELS; do
  case "$model" in
    reference)
      MODEL="$(scripts/reference_model.sh)"
      BUNDLE="$RESULTS/reference/bundles/fashion"
      mkdir -p "$RESULTS/reference"
      build/bin/cleave split "$MODEL" --input-shape 1,1,28,28 --cuts stem -o "$BUNDLE" \
        --name fashion --codec int8 --zstd-level "$ZSTD" \
        --calibration-data /usr/share/datasets/fashion-mnist > "$RESULTS/reference/split.log"
      measure reference "$BUNDLE" --inputs fashion-mnist --frames 256 --duration-s 5 \
        --warmup-s 1 --forward-s 2
      ;;
    resnet18)
      mkdir -p "$RESULTS/resnet18"
      # Real architecture, random weights: only shapes and timings matter here.
      /usr/bin/python3 bench/export_torchvision.py resnet18 "$RESULTS/resnet18/resnet18.pt"
      CUT=layer2  # the end of stage layer2
      BUNDLE="$RESULTS/resnet18/bundles/resnet18"
      build/bin/cleave split "$RESULTS/resnet18/resnet18.pt" --input-shape 1,3,224,224 \
        --cuts "$CUT" -o "$BUNDLE" --name resnet18 --codec int8 --zstd-level "$ZSTD" \
        > "$RESULTS/resnet18/split.log"
      measure resnet18 "$BUNDLE" --inputs random --frames 32 --duration-s 10 --warmup-s 3 \
        --forward-s 4
      ;;
    *)
      echo "unknown model '$model' (expected reference or resnet18)" >&2
      exit 1
      ;;
  esac
done
echo "JSON: $RESULTS/*.json; edge logs: $RESULTS/edge-*/edge.log"
