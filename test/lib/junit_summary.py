#!/usr/bin/python3
"""Counts of a pytest run from its JUnit XML (pytest --junitxml), for test/run_all.sh.

    junit_summary.py FILE EXPECTED_SKIPS_REGEX

Prints the skipped tests (name and reason), each marked "expected" when its
name (classname::name) matches EXPECTED_SKIPS_REGEX (empty: none is), and
ends with one line:

    RESULT <passed> <failed> <unexpected skips> <expected skips>

A missing or unreadable file gives "RESULT 0 0 0 0" (the stage ran nothing).
"""
import re
import sys
import xml.etree.ElementTree as ET


def main():
    path, expected = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print("no JUnit report (%s)" % e)
        print("RESULT 0 0 0 0")
        return
    passed = failed = unexpected = allowed = 0
    for case in root.iter("testcase"):
        name = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed += 1
        elif "skipped" in kinds:
            skip = case.find("skipped")
            reason = (skip.get("message") or skip.text or "").strip().splitlines()[0:1]
            ok = bool(expected) and re.search(expected, name) is not None
            allowed += ok
            unexpected += not ok
            print("SKIPPED (%s) %s: %s" % ("expected" if ok else "unexpected", name, reason[0] if reason else ""))
        else:
            passed += 1
    print("RESULT %d %d %d %d" % (passed, failed, unexpected, allowed))


if __name__ == "__main__":
    main()
