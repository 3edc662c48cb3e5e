#!/usr/bin/python3
"""Mutation check: applies deliberate faults to cleave's core paths, one at a time, rebuilds
what they touch, runs the tests that should catch each and reports which fault survived.

Every fault is an exact text replacement in one source file; the file's bytes are put back
after each one (also on Ctrl-C or a failed build), and the touched targets are rebuilt at the
end so the build folder holds the real code again. A fault whose text is no longer in its
file is an error: the script must follow the code it breaks. A fault that does not compile is
an error too, not a catch.

Usage:  flock /tmp/cleave-build.lock scripts/mutate.py [--build build] [--only ID,...]
                                                       [--json results/mutation.json]
Exit status: 0 when every fault was caught, 1 when one survived, 2 on an error.
See docs/RELIABILITY.md, "Mutation check", for the latest table.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_TESTS = ["cleave_device_tests", "cleave_resilience_tests"]

# id, what the fault does, file, original text, faulty text, targets to build, tests to run
# (binary, GoogleTest filter).
FAULTS = [
    {
        "id": "drop-deadline-timer",
        "fault": "the device never arms the timer that abandons a late edge",
        "file": "device/src/edge_send.cc",
        "old": "  deadlines_->Schedule(\n      deadline,",
        "new": "  if ((false)) deadlines_->Schedule(\n      deadline,",
        "targets": DEVICE_TESTS,
        "tests": [("cleave_device_tests", "RuntimeTest.*"), ("cleave_resilience_tests", "*")],
    },
    {
        "id": "answer-twice",
        "fault": "the runtime calls a request's completion twice",
        "file": "device/src/call_flow.cc",
        "old": "  call->done(std::move(result));",
        "new": "  call->done(result);\n  call->done(std::move(result));",
        "targets": DEVICE_TESTS,
        "tests": [("cleave_device_tests", "RuntimeTest.*"), ("cleave_resilience_tests", "*")],
    },
    {
        "id": "pipeline-completion-order",
        "fault": "the Pipeline delivers results in the order they complete, not in frame order",
        "file": "device/src/pipeline.cc",
        "old": "  for (auto next = finished_.find(next_delivery_); next != finished_.end();\n"
               "       next = finished_.find(next_delivery_)) {",
        "new": "  for (auto next = finished_.begin(); next != finished_.end();\n"
               "       next = finished_.begin()) {",
        "targets": DEVICE_TESTS,
        "tests": [("cleave_device_tests", "PipelineTest.*"),
                  ("cleave_resilience_tests", "ResilienceTest.Pipeline*")],
    },
    {
        "id": "pipeline-drop-duplicate-check",
        "fault": "the Pipeline delivers a second result for a frame",
        "file": "device/src/pipeline.cc",
        "old": "  if (sequence < next_delivery_ || (delivering_ && sequence == next_delivery_) ||\n"
               "      !finished_.emplace(sequence, std::move(result)).second) {",
        "new": "  if (!finished_.insert_or_assign(sequence, std::move(result)).second && false) {",
        "targets": DEVICE_TESTS,
        "tests": [("cleave_device_tests", "PipelineTest.*"),
                  ("cleave_resilience_tests", "ResilienceTest.Pipeline*")],
    },
    {
        "id": "skip-hash-check",
        "fault": "a bundle file whose SHA-256 differs from the manifest's is loaded",
        "file": "common/src/bundle.cc",
        "old": "actual != ref.sha256) {",
        "new": "(false) && actual != ref.sha256) {",
        "targets": ["cleave_partitioner_tests", "cleave_integration_tests"],
        "tests": [("cleave_partitioner_tests", "BundleWriterTest.*"),
                  ("cleave_integration_tests", "CliTest.*:SplitInferenceTest.*")],
    },
    {
        "id": "ignore-memory-budget",
        "fault": "the edge admits a request whatever the in-flight memory budget has left",
        "file": "edge_server/src/admission_control.cc",
        "old": "  if (bytes > options_.max_inflight_bytes - bytes_) {",
        "new": "  if ((false) && bytes > options_.max_inflight_bytes - bytes_) {",
        "targets": ["cleave_edge_server_tests"],
        "tests": [("cleave_edge_server_tests", "*")],
    },
    {
        "id": "skip-declared-shape-check",
        "fault": "the edge admits a frame whatever batch and shape its header declares",
        "file": "edge_server/src/inference_service.cc",
        "old": "  CLEAVE_RETURN_IF_ERROR(bundle.CheckActivation(cut, declared, max_batch));",
        "new": "  (void)max_batch;",
        "targets": ["cleave_edge_server_tests"],
        "tests": [("cleave_edge_server_tests", "*")],
    },
    {
        "id": "refusal-as-success",
        "fault": "the device takes an answer carrying the edge's in-band refusal for a success",
        "file": "device/src/edge_client.cc",
        "old": "    if (absl::Status status = proto::ResponseStatus(response); !status.ok()) {",
        "new": "    if (absl::Status status = proto::ResponseStatus(response); (false) && !status.ok()) {",
        "targets": DEVICE_TESTS,
        "tests": [("cleave_device_tests", "RuntimeTest.*:EdgeClientTest.*"),
                  ("cleave_resilience_tests", "*")],
    },
    {
        "id": "accept-any-edge-output",
        "fault": "the device decodes whatever outputs an edge sends",
        "file": "device/src/call_flow.cc",
        "old": "  if (frames.size() != expected.size()) {",
        "new": "  for (size_t i = 0; i < frames.size(); ++i) {\n"
               "    CLEAVE_ASSIGN_OR_RETURN(at::Tensor any, common::DecodeFrame(frames[i]));\n"
               "    if (i + 1 == frames.size()) return std::vector<at::Tensor>{any};\n"
               "  }\n"
               "  if (frames.size() != expected.size()) {",
        "targets": DEVICE_TESTS,
        "tests": [("cleave_device_tests", "RuntimeTest.*")],
    },
    {
        "id": "split-reports-a-difference",
        "fault": "cleave split reports a difference between the segments and the model",
        "file": "partitioner/tools/split_command.cc",
        "old": "absl::StrFormat(\"%.3g\", written.max_abs_diff)",
        "new": "absl::StrFormat(\"%.3g\", written.max_abs_diff + 0.9)",
        "targets": ["cleave", "cleave_integration_tests"],
        "tests": [("cleave_integration_tests", "CliTest.*")],
    },
    {
        "id": "device-cli-predicts-wrong",
        "fault": "cleave-device reports a class other than the answer's",
        "file": "device/tools/cleave_device_main.cc",
        "old": "      tally.predictions[static_cast<size_t>(i)] = predicted;",
        "new": "      tally.predictions[static_cast<size_t>(i)] = (predicted + i % 2) % 10;",
        "targets": ["cleave-device", "cleave_integration_tests"],
        "tests": [("cleave_integration_tests", "SplitInferenceTest.*:CliTest.*")],
    },
    {
        "id": "calibration-loosens-thresholds",
        "fault": "exits calibrate writes thresholds half the ones it chose (its report unchanged)",
        "file": "partitioner/src/exit_calibration.cc",
        "old": "? std::optional<double>(report.thresholds[e]) : std::nullopt;",
        "new": "? std::optional<double>(report.thresholds[e] * 0.5) : std::nullopt;",
        "targets": ["cleave_exits_tests"],
        "tests": [("cleave_exits_tests", "ExitsTest.*")],
    },
    {
        "id": "liveness-ignores-branches",
        "fault": "cut discovery ignores uses inside an If's branches when it computes liveness",
        "file": "partitioner/src/model_graph.cc",
        "old": "      last_use = std::max(last_use, TopLevelPosition(use.user, graph, positions, count));",
        "new": "      if (use.user->owningBlock() != graph.block()) continue;\n"
               "      last_use = std::max(last_use, TopLevelPosition(use.user, graph, positions, count));",
        "targets": ["cleave_partitioner_tests"],
        "tests": [("cleave_partitioner_tests", "ModelGraphTest.*")],
    },
    {
        "id": "write-in-place",
        "fault": "files are written in place instead of to a temporary file renamed over them",
        "file": "common/src/files.cc",
        "old": "  const std::string temporary = path + \".tmp\";",
        "new": "  const std::string temporary = path;",
        "targets": ["cleave_common_tests", "cleave_crash_safety_tests", "cleave", "cleave-edge"],
        "tests": [("cleave_common_tests", "*"), ("cleave_crash_safety_tests", "*")],
    },
]


# A fault that makes a test hang (a request never answered, a destructor waiting for it) is
# caught by the tests' watchdog (tests/support/test_watchdog.cc), which fails the test by name.
WATCHDOG_S = 120


def run(command, timeout=None):
    """Runs command in its own process group; on a timeout, kills the group (edges included)."""
    started = time.monotonic()
    env = dict(os.environ, CLEAVE_TEST_WATCHDOG_S=str(WATCHDOG_S))
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output, time.monotonic() - started
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output, time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def build(build_dir, targets):
    code, output, _ = run(["cmake", "--build", build_dir, "--target", *targets])
    return code == 0, output


def run_tests(build_dir, tests):
    """Runs each (binary, filter); returns the failing test names (or a reason) per binary."""
    caught = []
    for binary, test_filter in tests:
        path = os.path.join(build_dir, "bin", binary)
        code, output, _ = run([path, f"--gtest_filter={test_filter}"], timeout=600)
        if code is None:
            caught.append(f"{binary}: timed out")
        elif code != 0:
            failed = set(re.findall(r"^\[  FAILED  \] (\S+\.\S+?)(?:,|:| \(|$)", output,
                                    re.MULTILINE))
            # A test that ended the process (AbortStuckTest, the watchdog) started and never
            # finished.
            started = re.findall(r"^\[ RUN      \] (\S+)$", output, re.MULTILINE)
            finished = set(re.findall(r"^\[(?:       OK |  FAILED  )\] (\S+) \(", output,
                                      re.MULTILINE))
            failed.update(name for name in started if name not in finished)
            failed = sorted(failed)
            caught.append(f"{binary}: " + (", ".join(failed) if failed else f"exit {code}"))
    return caught


def main():
    # SIGTERM as Ctrl-C: the faulty file is put back either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--only", default="", help="comma-separated fault ids")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    faults = [fault for fault in FAULTS if not only or fault["id"] in only]
    if only - {fault["id"] for fault in faults}:
        sys.exit(f"mutate: unknown fault ids: {', '.join(sorted(only))}")

    # Every fault's text must be where the script expects it before anything is changed.
    for fault in faults:
        with open(os.path.join(ROOT, fault["file"]), encoding="utf-8") as source:
            count = source.read().count(fault["old"])
        if count != 1:
            sys.exit(f"mutate: {fault['id']}: its text occurs {count} times in {fault['file']}")

    touched = sorted({target for fault in faults for target in fault["targets"]})
    ok, output = build(args.build, touched)
    if not ok:
        sys.exit(f"mutate: the unmodified tree does not build:\n{output[-4000:]}")

    results = []
    error = False
    for fault in faults:
        path = os.path.join(ROOT, fault["file"])
        with open(path, "rb") as source:
            original = source.read()
        started = time.monotonic()
        try:
            with open(path, "wb") as source:
                source.write(original.replace(fault["old"].encode(), fault["new"].encode(), 1))
            ok, output = build(args.build, fault["targets"])
            if not ok:
                print(f"mutate: {fault['id']} does not compile:\n{output[-3000:]}", file=sys.stderr)
                error = True
                caught = ["(did not compile)"]
            else:
                caught = run_tests(args.build, fault["tests"])
        finally:
            with open(path, "wb") as source:
                source.write(original)
        result = {"id": fault["id"], "fault": fault["fault"], "file": fault["file"],
                  "tests": [f"{binary} --gtest_filter='{test_filter}'"
                            for binary, test_filter in fault["tests"]],
                  "caught": bool(caught), "caught_by": caught,
                  "seconds": round(time.monotonic() - started)}
        results.append(result)
        verdict = "caught by " + "; ".join(caught) if caught else "SURVIVED"
        print(f"{fault['id']}: {verdict} ({result['seconds']} s)", flush=True)

    ok, output = build(args.build, touched)
    if not ok:
        print(f"mutate: rebuilding the unmodified tree failed:\n{output[-3000:]}", file=sys.stderr)
        error = True

    print()
    print(f"| fault | what it breaks | caught by | seconds |")
    print(f"|---|---|---|---|")
    for result in results:
        caught_by = "; ".join(result["caught_by"]) if result["caught"] else "**survived**"
        print(f"| `{result['id']}` | {result['fault']} | {caught_by} | {result['seconds']} |")
    survived = [result["id"] for result in results if not result["caught"]]
    print(f"\n{len(results) - len(survived)} of {len(results)} faults caught" +
          (f"; survived: {', '.join(survived)}" if survived else ""))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"faults": results, "survived": survived}, out, indent=2)
            out.write("\n")
    if error:
        return 2
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
