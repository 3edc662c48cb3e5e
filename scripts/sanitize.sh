#!/usr/bin/env bash
# Builds the project under sanitizers in a build folder of its own and runs tests there
# (docs/RELIABILITY.md, "Sanitizers"). Run ./scripts/setup.sh first (it installs clang).
#
#   scripts/sanitize.sh address [CTEST_REGEX]   ASan + UBSan, clang, build-asan/; also builds
#                                                and runs the in-tree fuzz targets (Fuzz.*)
#   scripts/sanitize.sh thread  [CTEST_REGEX]   TSan, clang, build-tsan/
#
# CTEST_REGEX selects tests (ctest -R); default: all. Reports from LibTorch's and gRPC's own
# code are suppressed in tests/sanitizers/*.supp (each entry says why); ours never are.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:?usage: scripts/sanitize.sh address|thread [CTEST_REGEX]}"
regex="${2:-}"
case "$kind" in
  address) build=build-asan ;;
  thread) build=build-tsan ;;
  *) echo "sanitize.sh: unknown sanitizer '$kind' (address or thread)" >&2; exit 2 ;;
esac
supp="$PWD/tests/sanitizers"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCLEAVE_SANITIZE="$kind" -DCLEAVE_FUZZ=OFF -DCLEAVE_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build "$build" --parallel "$(nproc)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
export TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1"
args=(--test-dir "$build" --output-on-failure --parallel "$(nproc)" --timeout 1800)
if [[ -n "$regex" ]]; then args+=(-R "$regex"); fi
ctest "${args[@]}"
