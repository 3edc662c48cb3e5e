#!/usr/bin/env bash
# Builds the project under sanitizers in a build folder of its own and runs tests there
# (docs/RELIABILITY.md, "Sanitizers"). Run ./scripts/setup.sh first (it installs clang).
#
#   scripts/sanitize.sh address [CTEST_REGEX]   ASan + UBSan, clang, build-asan/; also builds
#                                                and runs the in-tree fuzz targets (Fuzz.*)
#   scripts/sanitize.sh thread  [CTEST_REGEX]   TSan, clang, build-tsan/
#   scripts/sanitize.sh thread-threaded [REGEX]  TSan, clang, build-tsan/: only the common, edge,
#                                                device and link-emulator tests (the code with
#                                                threads of its own; docs/RELIABILITY.md)
#   scripts/sanitize.sh ci      [CTEST_REGEX]   ASan + UBSan, gcc, build-asan-ci/: only the
#                                                common, edge, device and trust tests and what
#                                                they need (what CI runs: scripts/test.sh)
#
# CTEST_REGEX selects tests (ctest -R); default: all. Reports from LibTorch's and gRPC's own
# code are suppressed in tests/sanitizers/*.supp (each entry says why); ours never are.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:?usage: scripts/sanitize.sh address|thread|thread-threaded|ci [CTEST_REGEX]}"
regex="${2:-}"
compiler=clang++
targets=()
labels=""
case "$kind" in
  address) build=build-asan ;;
  thread) build=build-tsan ;;
  thread-threaded)
    build=build-tsan kind=thread
    targets=(cleave_common_tests cleave_edge_server_tests cleave_device_tests
      cleave_link_emulator_tests cleave-edge)
    labels='^cleave_(common|edge_server|device|link_emulator)_tests$'
    ;;
  ci)
    build=build-asan-ci kind=address compiler=g++
    targets=(cleave_common_tests cleave_edge_server_tests cleave_device_tests cleave_trust_tests
      cleave-edge cleave)
    labels='^cleave_(common|edge_server|device|trust)_tests$'
    ;;
  *) echo "sanitize.sh: unknown kind '$kind' (address, thread, thread-threaded or ci)" >&2; exit 2 ;;
esac
supp="$PWD/tests/sanitizers"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$compiler" \
  -DCLEAVE_SANITIZE="$kind" -DCLEAVE_FUZZ=OFF -DCLEAVE_BUILD_BENCHMARKS=OFF > /dev/null
build_args=(--build "$build" --parallel "$(nproc)")
if ((${#targets[@]})); then build_args+=(--target "${targets[@]}"); fi
cmake "${build_args[@]}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
export CLEAVE_TEST_WATCHDOG_S=1500  # slower under sanitizers (tests/support/test_watchdog.cc)
export TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1"
args=(--test-dir "$build" --output-on-failure --parallel "$(nproc)" --timeout 1800
  --output-junit ctest-junit.xml)
if [[ -n "$regex" ]]; then args+=(-R "$regex"); fi
if [[ -n "$labels" ]]; then args+=(-L "$labels"); fi
status=0
ctest "${args[@]}" || status=$?
# As in scripts/test.sh: a skipped test is a failure here too.
/usr/bin/python3 scripts/check_skips.py "$build/ctest-junit.xml" tests/skip_allowlist.txt || status=1
exit "$status"
