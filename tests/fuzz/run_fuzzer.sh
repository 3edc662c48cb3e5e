#!/usr/bin/env bash
# Runs the frame decoder fuzzer for a bounded time from a fresh seed corpus.
# Usage: run_fuzzer.sh FUZZ_BUILD_DIR SECONDS
set -euo pipefail
build="$1"
seconds="$2"
corpus="$(mktemp -d -t cleave-fuzz-corpus.XXXXXX)"
trap 'rm -rf "$corpus"' EXIT
"$build/frame_corpus_writer" "$corpus"
"$build/frame_decode_fuzzer" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 "$corpus"
