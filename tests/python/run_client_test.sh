#!/usr/bin/env bash
# Checks cleave-edge from an independent client: Debian's python3-grpcio with stubs generated
# from proto/cleave/v1/inference.proto, frames coded from docs/FRAME_FORMAT.md alone.
# Usage: run_client_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin="$1"
source_dir="$2"
work="$(mktemp -d -t cleave-python.XXXXXX)"
source "$source_dir/scripts/edge_process.sh"
trap 'kill_edge; rm -rf "$work"' EXIT

mkdir -p "$work/stubs"
protoc --proto_path="$source_dir/proto" --python_out="$work/stubs" --grpc_out="$work/stubs" \
  --plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" \
  "$source_dir/proto/cleave/v1/inference.proto"
touch "$work/stubs/cleave/__init__.py" "$work/stubs/cleave/v1/__init__.py"

# A small, briefly trained reference model is enough: the client checks agreement.
"$bin/cleave" train-reference --limit 256 --epochs 1 -o "$work/model.pt" > /dev/null
"$bin/cleave" split "$work/model.pt" --input-shape 1,1,28,28 --cuts stem \
  -o "$work/bundles/fashion/1" > /dev/null

start_edge "$bin" "$work/bundles" "$work"
/usr/bin/python3 "$source_dir/tests/python/client_test.py" "$work/stubs" "127.0.0.1:$EDGE_PORT" \
  "$work/bundles/fashion/1"
stop_edge
