#!/usr/bin/python3
"""scripts/check_skips.py fails a run with a skipped test unless the allow-list names it."""
import pathlib
import subprocess
import sys
import tempfile
import unittest

CHECK = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "check_skips.py"
JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="(empty)" tests="3" failures="0" disabled="0" skipped="1">
  <testcase name="Passes" classname="Passes" time="0.1" status="run"><system-out/></testcase>
  <testcase name="ExitsTest.Heads" classname="ExitsTest.Heads" time="0.1" status="notrun">
    <skipped message="SKIP_REGULAR_EXPRESSION_MATCHED"/><system-out/>
  </testcase>
  <testcase name="Needs" classname="Needs" time="0" status="notrun">
    <skipped message="Fixture dependency failed"/><system-out/>
  </testcase>
</testsuite>
"""


class CheckSkipsTest(unittest.TestCase):
    def run_check(self, allowlist):
        with tempfile.TemporaryDirectory() as folder:
            junit = pathlib.Path(folder, "junit.xml")
            junit.write_text(JUNIT)
            allowed = pathlib.Path(folder, "allow.txt")
            allowed.write_text(allowlist)
            return subprocess.run([sys.executable, CHECK, junit, allowed],
                                  capture_output=True, text=True)

    def test_a_skip_not_on_the_list_fails_naming_it_and_its_reason(self):
        result = self.run_check("# nothing may skip\n")
        self.assertEqual(result.returncode, 1)
        self.assertIn("ExitsTest.Heads was skipped (SKIP_REGULAR_EXPRESSION_MATCHED)",
                      result.stdout)
        self.assertIn("Needs was skipped (Fixture dependency failed)", result.stdout)
        self.assertNotIn("Passes", result.stdout)

    def test_skips_on_the_list_pass(self):
        result = self.run_check("ExitsTest.Heads  # reason\nNeeds # reason\n")
        self.assertEqual(result.returncode, 0, result.stdout)


if __name__ == "__main__":
    unittest.main()
