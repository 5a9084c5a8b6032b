"""Concurrent calls from Python threads, with plans evicted from the cache
while other threads use them; layouts release their C handles when collected."""

import gc
import threading

import numpy as np

import bsa
import closed_masks as cm
import reference as ref
from bsa import _core


def test_threads_with_plan_eviction(rng, monkeypatch):
    monkeypatch.setattr(_core.Handles, "max_plans", 2)
    lay = bsa.Layout.preset("local", seq=64, block=8, ctx=16)
    mask = cm.preset_masks("local", 64, 8, ctx=16)
    cases = []
    for i in range(12):  # distinct shapes: distinct plans, evicted all the time
        b, h, d = 1 + i % 2, 1 + i % 3, 8 * (1 + i % 4)
        q, k, v = (ref.randn(rng, (b, h, 64, d), np.float32) for _ in range(3))
        cases.append((q, k, v, ref.forward(q, k, v, mask, d**-0.5)[0]))
    errors = []

    def work(offset):
        try:
            for j in range(24):
                q, k, v, want = cases[(offset + j) % len(cases)]
                assert ref.rel_err(bsa.attention(q, k, v, lay), want) < ref.TOL["float32"]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(lay._handles._state["plans"]) <= 2


def test_layout_release():
    lay = bsa.Layout.preset("all", seq=64, block=16)
    q = np.ones((1, 1, 64, 8), np.float32)
    bsa.attention(q, q, q, lay)
    state = lay._handles._state
    assert state["layouts"] and state["plans"]
    del lay
    gc.collect()
    assert not state["layouts"] and not state["plans"]
