#!/usr/bin/env bash
# Runs the whole test suite (GoogleTest through CTest) against build/.
set -euo pipefail
cd "$(dirname "$0")/.."
ctest --test-dir build --output-on-failure --parallel "$(nproc)" --timeout 900
