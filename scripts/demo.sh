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
source scripts/edge_process.sh
trap 'kill_edge; rm -rf "$WORK"' EXIT

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
start_edge "$BIN" "$WORK/bundles" "$WORK"
echo "cleave-edge serving on 127.0.0.1:$EDGE_PORT (log: event=bundle_loaded, event=serving)"

# 5. The device: the stem runs locally, the activation after the stem goes to the edge.
echo; echo "== cleave-device over $IMAGES Fashion-MNIST test images"
"$BIN/cleave-device" --bundle "$BUNDLE" --edge "127.0.0.1:$EDGE_PORT" --cut stem --limit "$IMAGES" \
  --reference "$MODEL" --no-fallback --show 8 | tee "$WORK/summary.txt"

# 6. Orderly shutdown: SIGTERM drains the edge, which exits 0.
stop_edge
grep -q "agreement with unsplit model *100.00%" "$WORK/summary.txt" || {
  echo "demo: FAILED: the split model disagrees with the unsplit model" >&2
  exit 1
}
echo; echo "demo: OK — split execution agrees with the unsplit model on every image"
