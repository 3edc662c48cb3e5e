#!/usr/bin/env python3
"""Runs clang's thread-safety analysis over cleave's own sources.

Usage: thread_safety.py BUILD_DIR [CLANG++]

Every first-party translation unit in BUILD_DIR/compile_commands.json that takes a lock (it
names Mutex, MutexLock, CondVar or a GUARDED_BY annotation, or includes a header that does)
is parsed by clang with -Wthread-safety -Werror=thread-safety and -fsyntax-only, with the
compile command's own defines and include paths. Any finding fails the run and is printed;
the summary line says how many units were checked. CTest runs this (ThreadSafetyAnalysis).
"""

import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys

SOURCE_DIRS = ("common/", "device/", "edge_server/", "partitioner/", "tools/", "proto/include/")
# The standard primitives carry no annotations: first-party code uses common/mutex.h instead.
UNANNOTATED = re.compile(r"std::(mutex|recursive_mutex|timed_mutex|shared_mutex|lock_guard|"
                         r"unique_lock|scoped_lock|condition_variable)\b")
LOCKING = re.compile(r"\b(Mutex|MutexLock|RecursiveMutex|CondVar)\b|ABSL_GUARDED_BY|"
                     r"ABSL_EXCLUSIVE_LOCKS_REQUIRED|cleave/common/mutex\.h")
INCLUDE = re.compile(r'#include "(cleave/[^"]+)"')


def header_path(root, include):
    for base in ("common/include", "device/include", "edge_server/include", "proto/include"):
        path = os.path.join(root, base, include)
        if os.path.exists(path):
            return path
    return None


def takes_locks(root, path, seen):
    """True when `path` or a first-party header it includes (transitively) takes a lock."""
    if path in seen:
        return False
    seen.add(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if LOCKING.search(text):
        return True
    for include in INCLUDE.findall(text):
        header = header_path(root, include)
        if header and takes_locks(root, header, seen):
            return True
    # A source's own private headers (device/src/*.h) are included by relative name.
    for include in re.findall(r'#include "([a-z_]+\.h)"', text):
        header = os.path.join(os.path.dirname(path), include)
        if os.path.exists(header) and takes_locks(root, header, seen):
            return True
    return False


def analysis_command(entry, clang):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    kept = [clang]
    skip = False
    for arg in args[1:]:
        if skip:
            skip = False
            continue
        if arg in ("-o", "-include"):  # output, and the LibTorch precompiled header
            skip = True
            continue
        if arg in ("-c", "-Winvalid-pch") or arg.startswith("-fsanitize") or arg == entry["file"]:
            continue
        kept.append(arg)
    return kept + ["-fsyntax-only", "-Wno-unknown-warning-option", "-Wthread-safety",
                   "-Werror=thread-safety", entry["file"]]


# Must fail the analysis: proves it is live (a std::mutex, say, would silently disable it).
CANARY = """
#include "cleave/common/mutex.h"
struct Counter {
  cleave::common::Mutex mutex;
  int count ABSL_GUARDED_BY(mutex) = 0;
  void Add() { ++count; }
};
"""


def canary_is_caught(root, clang):
    result = subprocess.run(
        [clang, "-std=c++17", "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
         "-I", os.path.join(root, "common/include"), "-x", "c++", "-"],
        input=CANARY, capture_output=True, text=True)
    return result.returncode != 0 and "requires holding mutex" in result.stderr


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = sys.argv[1]
    clang = sys.argv[2] if len(sys.argv) > 2 else "clang++"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(build, "compile_commands.json"), encoding="utf-8") as f:
        entries = json.load(f)
    if not canary_is_caught(root, clang):
        print("thread_safety: the analysis did not flag an unguarded access; is it enabled?")
        return 1
    unannotated = []
    for directory in SOURCE_DIRS:
        for base, _, files in os.walk(os.path.join(root, directory)):
            for name in files:
                path = os.path.join(base, name)
                if not name.endswith((".h", ".cc")) or path.endswith("cleave/common/mutex.h"):
                    continue
                with open(path, encoding="utf-8") as f:
                    for number, line in enumerate(f, 1):
                        if UNANNOTATED.search(line):
                            unannotated.append(f"{os.path.relpath(path, root)}:{number}: "
                                               f"{line.strip()}")
    for line in unannotated:
        print(f"thread_safety: unannotated standard primitive (use cleave/common/mutex.h): {line}")
    units = []
    for entry in entries:
        relative = os.path.relpath(entry["file"], root)
        if relative.startswith(SOURCE_DIRS) and takes_locks(root, entry["file"], set()):
            units.append(entry)
    units = list({entry["file"]: entry for entry in units}.values())  # one per file
    if not units:
        print("thread_safety: no unit takes a lock; is compile_commands.json from this tree?")
        return 1

    def check(entry):
        result = subprocess.run(analysis_command(entry, clang), cwd=entry["directory"],
                                capture_output=True, text=True)
        return entry["file"], result.returncode, result.stderr

    failed = 0
    jobs = max(1, min(2, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for path, code, stderr in pool.map(check, sorted(units, key=lambda e: e["file"])):
            if code != 0:
                failed += 1
                print(f"thread_safety: {os.path.relpath(path, root)}:\n{stderr}")
    print(f"thread_safety: {len(units)} units checked, {failed} with findings, "
          f"{len(unannotated)} unannotated primitives")
    return 1 if failed or unannotated else 0


if __name__ == "__main__":
    sys.exit(main())
