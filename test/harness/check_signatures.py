#!/usr/bin/env python3
"""Fails when the S3 front recorded a request whose signature did not verify,
other than the deliberate ones (decoy key, expect_failures blocks).

    python3 test/harness/check_signatures.py $S3_CONTROL
"""
import json
import sys
import urllib.request


def main():
    control = sys.argv[1]
    with urllib.request.urlopen(control + "/stats", timeout=10) as resp:
        stats = json.load(resp)
    failures = stats.get("signature_failures", [])
    print("requests: %d, verified: %d, deliberate failures: %d, unexpected failures: %d"
          % (stats.get("requests", 0), stats.get("verified", 0),
             len(stats.get("expected_failures", [])), len(failures)))
    for f in failures[:20]:
        print("  %s %s -> %s %s: %s" % (f.get("method"), f.get("path"), f.get("status"),
                                        f.get("code"), f.get("reason")))
    if stats.get("verified", 0) == 0:
        print("no request was verified at all")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
