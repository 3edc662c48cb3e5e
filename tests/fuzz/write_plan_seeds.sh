#!/usr/bin/env bash
# Writes seeds for plan_profile_fuzzer: a real profile.json and plan.json from the CLI, each
# prefixed with the byte that selects its parser (0: profile, 1: plan).
# Usage: write_plan_seeds.sh CLEAVE MODEL.pt OUT_DIR
set -euo pipefail
cleave="$1"
model="$2"
out="$3"
rm -rf "$out"
mkdir -p "$out"
work="$(mktemp -d -t cleave-plan-seeds.XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$cleave" profile "$model" --input-shape 1,1,28,28 --runs 3 --warmup 1 --batch-sizes 1 \
  -o "$work/profile.json" > /dev/null
"$cleave" plan "$model" --input-shape 1,1,28,28 --device-profile "$work/profile.json" \
  --edge-profile "$work/profile.json" --bandwidth 5mbit,50mbit -o "$work/plan.json" > /dev/null
{ printf '\000'; cat "$work/profile.json"; } > "$out/profile"
{ printf '\001'; cat "$work/plan.json"; } > "$out/plan"
