#!/usr/bin/env python3
"""Pools several device_overhead_bench runs (docs/PERFORMANCE.md, "Device runtime overhead").

Prints one table row per run (its own paired medians) and, over the rounds of all runs
together, the median of the per-round differences with a 95% bootstrap interval.

    python3 bench/device_overhead_pool.py 'results/device-*/device_overhead.json'
"""
import glob
import json
import random
import re
import statistics
import sys

PAIRS = {
    "offload vs bare sync": ("runtime offload", "bare offload"),
    "offload vs bare callback": ("runtime offload", "bare callback offload"),
    "policy offload vs bare callback": ("runtime policy offload", "bare callback offload"),
    "device only vs plain forward": ("runtime local", "whole forward"),
    "bare callback vs bare sync": ("bare callback offload", "bare offload"),
}


def main(pattern):
    # Natural order: device-2 before device-10.
    runs = sorted(glob.glob(pattern),
                  key=lambda path: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)])
    if not runs:
        sys.exit(f"no files match {pattern}")
    differences = {name: [] for name in PAIRS}
    fronts = []
    keys = ("offload", "offload_vs_callback_baseline", "policy_offload_vs_callback_baseline",
            "local")
    print("| run | front compute us | offload vs bare sync | vs bare callback "
          "| policy deciding vs bare callback | device only |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in runs:
        report = json.load(open(path))
        rounds = report["round_medians_us"]
        fronts += rounds["front forward"]
        for name, (variant, baseline) in PAIRS.items():
            if variant in rounds:  # runs from before the policy variant lack it
                differences[name] += [v - b for v, b in zip(rounds[variant], rounds[baseline])]
        us, share = report["overhead_us"], report["overhead_share_of_front_compute"]
        cells = [f"{us[k]:+.1f} us = {100 * share[k]:.2f}%" if k in us else "-" for k in keys]
        print(f"| {path} | {report['median_us']['front forward']:.1f} | " + " | ".join(cells) + " |")
    front = statistics.median(fronts)
    random.seed(1)
    print(f"\npooled over {len(fronts)} rounds, front compute {front:.1f} us:")
    for name, values in differences.items():
        if not values:
            continue
        median = statistics.median(values)
        boots = sorted(statistics.median(random.choices(values, k=len(values)))
                       for _ in range(1000))
        print(f"  {name}: {median:+.1f} us = {100 * median / front:.2f}% "
              f"(95% interval {boots[25]:+.1f} .. {boots[975]:+.1f} us)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/device-*/device_overhead.json")
