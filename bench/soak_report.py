#!/usr/bin/python3
"""Reads what bench/soak.sh recorded and judges it (docs/RELIABILITY.md, "Soak").

Checks: every request answered exactly once (nothing lost, nothing twice, nothing failed),
none later than its deadline plus the margin, every soak_device process exited 0, every
process's resident memory grew less than 5% (or by less than 1 MiB) over the second half of
its life against its high mark in the first half, and after
each restart of edge A (and each repair of link A) the devices were answering from edge A
again within the bound: the circuit breaker's open time plus its jitter plus a second. Prints
a table, writes soak_report.json, exits 1 if a check failed.

Usage: soak_report.py RESULTS_DIR --device-exit STATUS
"""
import argparse
import glob
import json
import os
import statistics
import sys

# EdgeClientOptions defaults: open_for 3 s (+-20% jitter on backoffs); the answers are binned
# by whole seconds, hence one more second.
RETURN_BOUND_S = 3.0 * 1.2 + 1.0 + 1.0
MEMORY_GROWTH_LIMIT = 0.05
# Below this a process has not grown, whatever the ratio (a 5 MiB link emulator's allocator
# moves by a few hundred KiB).
MEMORY_GROWTH_FLOOR_BYTES = 1 << 20


def load_lines(path):
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def memory_growth(samples):
    """Growth over the second half of a process's life: the median of its last 10% of samples
    against the highest sample of its first half, as a share (0 when it grew by less than
    MEMORY_GROWTH_FLOOR_BYTES). The first half is the warm-up because cleave-edge keeps freed
    memory at its high mark by design (docs/EDGE_SERVER.md, "Memory"): its resident size rises
    in steps with each new peak of load (a restart's burst, a partition's failover, a bundle
    swap) and stays there; a leak is growth that goes on, and shows in the second half."""
    rss = [sample["rss"] for sample in samples]
    if len(rss) < 30:
        return None
    tail = max(3, len(rss) // 10)
    high_mark = max(rss[:len(rss) // 2])
    at_end = statistics.median(rss[-tail:])
    if at_end - high_mark < MEMORY_GROWTH_FLOOR_BYTES:
        return 0.0
    return (at_end - high_mark) / high_mark


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--device-exit", type=int, default=0)
    args = parser.parse_args()
    devices = [json.load(open(path, encoding="utf-8"))
               for path in sorted(glob.glob(os.path.join(args.results, "devices", "*.json")))]
    events = load_lines(os.path.join(args.results, "events.jsonl"))
    memory = load_lines(os.path.join(args.results, "memory.jsonl"))
    link_a = "127.0.0.1:" + open(os.path.join(args.results, "link-a", "port")).read().strip()

    totals = {key: sum(device[key] for device in devices)
              for key in ("submitted", "answered", "failed", "late", "lost", "duplicates",
                          "refused_by_pipeline")}
    placements = {}
    for device in devices:
        for where, count in device["placements"].items():
            placements[where] = placements.get(where, 0) + count
    runtimes = sum(device["runtimes"] for device in devices)

    # Answers from edge A per Unix second, over every device.
    from_a = {}
    for device in devices:
        for bucket in device["timeline"]:
            count = bucket["answers"].get(link_a, 0)
            if count:
                from_a[bucket["second"]] = from_a.get(bucket["second"], 0) + count
    returns = []
    for event in events:
        if event["event"] not in ("edge a restarted", "link a: partition off",
                                  "link a: bandwidth 50mbit"):
            continue
        # Answers are counted per whole second: the return is rounded up to the middle of the
        # first second with one, and 0 when edge A answered in the event's own second.
        later = [second for second in from_a if second >= int(event["t"])]
        back = max(0.0, min(later) + 0.5 - event["t"]) if later else None
        returns.append({"after": event["event"], "seconds": back})

    # Late answers by phase: each phase runs from one event of soak.sh to the next.
    late_by_second = {}
    for device in devices:
        for bucket in device["timeline"]:
            late_by_second[bucket["second"]] = (late_by_second.get(bucket["second"], 0) +
                                                bucket.get("late", 0))
    late_by_phase = []
    for index, event in enumerate(events):
        end = events[index + 1]["t"] if index + 1 < len(events) else float("inf")
        count = sum(late for second, late in late_by_second.items()
                    if event["t"] <= second + 0.5 < end)
        if count:
            late_by_phase.append({"after": event["event"], "late": count})

    by_process = {}
    for sample in memory:
        by_process.setdefault((sample["process"], sample["pid"]), []).append(sample)
    growth = []
    for (process, pid), samples in sorted(by_process.items()):
        value = memory_growth(samples)
        growth.append({"process": process, "pid": pid, "samples": len(samples),
                       "first_mb": samples[0]["rss"] / 2**20, "last_mb": samples[-1]["rss"] / 2**20,
                       "growth": value})

    checks = {
        "every request answered exactly once":
            totals["lost"] == 0 and totals["duplicates"] == 0 and
            totals["answered"] == totals["submitted"] - totals["refused_by_pipeline"],
        "no request failed": totals["failed"] == 0,
        "none later than deadline + margin": totals["late"] == 0,
        "no process crashed (device processes exited 0, edges and links stopped cleanly)":
            args.device_exit == 0 and len(devices) > 0,
        "resident memory flat over the second half of each process (< 5%)":
            all(g["growth"] is None or g["growth"] < MEMORY_GROWTH_LIMIT for g in growth),
        f"back on edge A within {RETURN_BOUND_S:.1f} s after each repair":
            all(r["seconds"] is not None and r["seconds"] <= RETURN_BOUND_S for r in returns),
    }

    print(f"soak: {runtimes} runtimes in {len(devices)} processes, deadline "
          f"{devices[0]['deadline_ms'] if devices else '?'} ms + margin "
          f"{devices[0]['margin_ms'] if devices else '?'} ms")
    print(f"{'requests':<28}{totals['submitted']}")
    for key in ("answered", "failed", "late", "lost", "duplicates", "refused_by_pipeline"):
        print(f"  {key:<26}{totals[key]}")
    for where, count in sorted(placements.items()):
        print(f"  ran on {where:<19}{count}")
    for entry in late_by_phase:
        print(f"  late after '{entry['after']}': {entry['late']}")
    for entry in returns:
        seconds = "never" if entry["seconds"] is None else f"{entry['seconds']:.1f} s"
        print(f"back on edge A after '{entry['after']}': {seconds}")
    for entry in growth:
        value = "n/a (too few samples)" if entry["growth"] is None else f"{100 * entry['growth']:+.1f}%"
        print(f"memory {entry['process']} (pid {entry['pid']}): {entry['first_mb']:.0f} -> "
              f"{entry['last_mb']:.0f} MiB over {entry['samples']} s, second half {value}")
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    report = {"totals": totals, "placements": placements, "runtimes": runtimes,
              "late_by_phase": late_by_phase, "returns": returns, "memory": growth, "checks": checks, "events": events}
    with open(os.path.join(args.results, "soak_report.json"), "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2)
    print(f"JSON: {os.path.join(args.results, 'soak_report.json')}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
