"""Test set-up: import bsa from this checkout (python/) and poison outputs."""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # python/, where the bsa package is

import bsa  # noqa: E402
import bsa.functional  # noqa: E402


@pytest.fixture(autouse=True)
def poison_outputs():
    bsa.functional.set_poison(True)
    yield
    bsa.functional.set_poison(False)


@pytest.fixture
def rng(request):
    # fresh inputs on every run; the seed is printed on failure to reproduce
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"rng seed {seed} for {request.node.name}")
    return np.random.default_rng(seed)
