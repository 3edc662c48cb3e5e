#!/usr/bin/python3
"""Fails when CTest skipped a test that is not on the allow-list.

CTest counts a skipped test as passed: a GoogleTest suite whose SetUpTestSuite fails prints
[  SKIPPED ] for every test, and gtest_discover_tests' skip expression turns that into a pass.
This reads CTest's JUnit report and fails (exit 1) for every skipped test whose name is not
listed in the allow-list file, printing the reason CTest recorded.

Usage: check_skips.py JUNIT_XML ALLOWLIST
Allow-list: one test name per line, then '#' and the reason; blank lines and lines starting
with '#' are ignored.
"""
import sys
import xml.etree.ElementTree as ElementTree


def allowed_names(path):
    names = set()
    with open(path, encoding="utf-8") as allowlist:
        for line in allowlist:
            name = line.split("#", 1)[0].strip()
            if name:
                names.add(name)
    return names


def main(junit_path, allowlist_path):
    allowed = allowed_names(allowlist_path)
    unexpected = []
    for case in ElementTree.parse(junit_path).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if skipped is None or case.get("name") in allowed:
            continue
        unexpected.append((case.get("name"), skipped.get("message", "")))
    for name, reason in unexpected:
        print(f"check_skips: {name} was skipped ({reason}) and is not on {allowlist_path}")
    if unexpected:
        print(f"check_skips: {len(unexpected)} unexpected skip(s): a skipped test is a failure")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
