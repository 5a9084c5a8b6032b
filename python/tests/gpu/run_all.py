#!/usr/bin/env python3
"""Runs every test_*.py here without pytest (the GPU machine's entry point,
run_torch_tests.sh): each module's test_* functions, then one closing line
"N passed, N failed, N skipped" over all of them.  Skips (unittest.SkipTest)
print their reason.  With BSA_REQUIRE_GPU=1 (run_torch_tests.sh sets it where
nvidia-smi lists a GPU) a skip is a failure: on a GPU machine every test must
run, so that a missing CUDA path cannot pass as a skip.  The exception: a
skip marked machine_lacks (test_torch.MachineLacks: a second GPU), which no
setting of the library can turn into a run."""

import importlib
import os
import sys
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRE_GPU = os.environ.get("BSA_REQUIRE_GPU") == "1"
sys.path.insert(0, HERE)


def run_module(mod, totals=None):
    """Runs mod's test_* functions; returns 1 if any failed (or adds to totals)."""
    tests = [(n, f) for n, f in sorted(vars(mod).items()) if n.startswith("test_") and callable(f)]
    counts = [0, 0, 0] if totals is None else totals
    failed_before = counts[1]
    for name, fn in tests:
        try:
            fn()
            print(f"PASS {mod.__name__}.{name}", flush=True)
            counts[0] += 1
        except unittest.SkipTest as e:
            if REQUIRE_GPU and not getattr(e, "machine_lacks", False):
                print(f"FAIL {mod.__name__}.{name}: skipped on a GPU machine: {e}", flush=True)
                counts[1] += 1
            else:
                print(f"SKIP {mod.__name__}.{name}: {e}", flush=True)
                counts[2] += 1
        except Exception:  # noqa: BLE001 - report and go on
            print(f"FAIL {mod.__name__}.{name}", flush=True)
            traceback.print_exc()
            counts[1] += 1
    if totals is None:
        print(f"{counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
    return 1 if counts[1] > failed_before else 0


def main(names):
    names = names or sorted(
        f[:-3] for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py")
    )
    totals = [0, 0, 0]
    for name in names:
        try:
            mod = importlib.import_module(name)
        except unittest.SkipTest as e:
            print(f"{'FAIL' if REQUIRE_GPU else 'SKIP'} {name}: {e}")
            totals[1 if REQUIRE_GPU else 2] += 1
            continue
        except BaseException as e:  # noqa: BLE001 - pytest's module-level skip, or a broken module
            if type(e).__name__ == "Skipped":  # pytest.skip(allow_module_level=True): no torch
                print(f"{'FAIL' if REQUIRE_GPU else 'SKIP'} {name}: {e}")
                totals[1 if REQUIRE_GPU else 2] += 1
                continue
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            print(f"FAIL {name} (import)")
            traceback.print_exc()
            totals[1] += 1
            continue
        run_module(mod, totals)
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
