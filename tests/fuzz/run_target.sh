#!/usr/bin/env bash
# Runs one in-tree libFuzzer target for a bounded time from a fresh corpus: the given seed
# folders' files, plus the seeds the target writes itself (CLEAVE_FUZZ_SEED_DIR). A crash, a
# sanitizer report, a leak or a timeout fails the test; libFuzzer prints the input that did it.
# Usage: run_target.sh FUZZER SECONDS [SEED_DIR...]
set -euo pipefail
fuzzer="$1"
seconds="$2"
shift 2
corpus="$(mktemp -d -t cleave-fuzz-corpus.XXXXXX)"
artifacts="$(mktemp -d -t cleave-fuzz-artifacts.XXXXXX)"
trap 'rm -rf "$corpus"' EXIT
for seeds in "$@"; do cp "$seeds"/* "$corpus"/; done
CLEAVE_FUZZ_SEED_DIR="$corpus" "$fuzzer" -max_total_time="$seconds" -max_len=65536 \
  -timeout=30 -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" ||
  { echo "fuzzer failed; reproducer(s) in $artifacts:"; ls -l "$artifacts"; exit 1; }
rm -rf "$artifacts"
