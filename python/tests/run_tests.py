#!/usr/bin/env python3
"""ctest entry for the Python binding: run_tests.py [path/to/libbsa.so] [pytest args].

Runs every test under python/tests (torch ones skip without torch).  Exits 77
(ctest's skip code, SKIP_RETURN_CODE) when numpy or pytest is missing, and 1
when pytest collects no test, so that a run which tested nothing never
passes silently.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    if argv and not argv[0].startswith("-") and os.path.isfile(argv[0]):  # libbsa.so.0.1.0 too
        os.environ["BSA_LIBRARY"] = os.path.abspath(argv.pop(0))
    try:
        import numpy  # noqa: F401
        import pytest
    except ImportError as e:
        print(f"bsa python tests skipped: {e} (run scripts/install-python-deps.sh)")
        return 77
    sys.dont_write_bytecode = True  # keep the source tree clean
    rc = pytest.main(["-q", "-rs", "-p", "no:cacheprovider", HERE] + argv)
    if rc == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("bsa python tests: no test collected")
        return 1
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
