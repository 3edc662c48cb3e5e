#!/usr/bin/env bash
# The end-to-end demo: a Fashion-MNIST model trained by cleave itself is split between a
# device process (cleave-device) and an edge server (cleave-edge) on loopback, and every
# answer is checked against the unsplit model.
#
#   CLEAVE_DEMO_IMAGES  test images to run (default 10000, the whole test set)
#   CLEAVE_CACHE        where the trained model is cached (default ~/.cache/cleave)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=build/bin
IMAGES="${CLEAVE_DEMO_IMAGES:-10000}"
WORK="$(mktemp -d -t cleave-demo.XXXXXX)"
EDGE_PID=""
cleanup() {
  if [[ -n "$EDGE_PID" ]] && kill -0 "$EDGE_PID" 2>/dev/null; then kill -TERM "$EDGE_PID"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. The reference model, trained by cleave itself once and cached.
MODEL="$(scripts/reference_model.sh)"
echo "== reference model $MODEL"

# 2. Where can it be cut? A graph-level analysis of the TorchScript model.
echo; echo "== cleave inspect"
"$BIN/cleave" inspect "$MODEL" --input-shape 1,1,28,28

# 3. Cut it after the stem and after layer2 into a verified bundle.
echo; echo "== cleave split"
BUNDLE="$WORK/bundles/fashion/1"
"$BIN/cleave" split "$MODEL" --input-shape 1,1,28,28 --cuts stem,layer2 -o "$BUNDLE" --name fashion

# 4. An edge server on a free loopback port.
echo; echo "== cleave-edge"
"$BIN/cleave-edge" --bundles "$WORK/bundles" --listen 127.0.0.1:0 --port-file "$WORK/port" &
EDGE_PID=$!
for _ in $(seq 1 300); do
  [[ -s "$WORK/port" ]] && break
  kill -0 "$EDGE_PID" 2>/dev/null || { echo "demo: cleave-edge failed to start" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$WORK/port" ]] || { echo "demo: cleave-edge did not report its port" >&2; exit 1; }
PORT="$(cat "$WORK/port")"

# 5. The device: the stem runs locally, the activation after the stem goes to the edge.
echo; echo "== cleave-device over $IMAGES Fashion-MNIST test images"
"$BIN/cleave-device" --bundle "$BUNDLE" --edge "127.0.0.1:$PORT" --limit "$IMAGES" \
  --reference "$MODEL" --no-fallback --show 8 | tee "$WORK/summary.txt"

# 6. Orderly shutdown: SIGTERM drains the edge, which exits 0.
kill -TERM "$EDGE_PID"
wait "$EDGE_PID"
EDGE_PID=""
grep -q "agreement with unsplit model *100.00%" "$WORK/summary.txt" || {
  echo "demo: FAILED: the split model disagrees with the unsplit model" >&2
  exit 1
}
echo; echo "demo: OK — split execution agrees with the unsplit model on every image"
