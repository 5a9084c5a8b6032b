"""Gradients by central finite differences on tiny shapes (float32 library,
float64 loss), independent of the reference's backward formulas."""

import numpy as np
import pytest

import bsa
import reference as ref


@pytest.mark.parametrize(
    "make",
    [
        lambda: bsa.Layout.preset("local", seq=16, block=8, ctx=5),
        lambda: bsa.Layout.preset("strided", seq=32, block=8, ctx=4, causal=False),
        lambda: bsa.Layout.preset("fixed", seq=32, block=8, heads=2, ctx=16, num_verts=2),
    ],
    ids=["local", "strided-bidir", "fixed-per-head"],
)
def test_finite_differences(make, rng):
    lay = make()
    shape = (1, 2, lay.seq_q, 8)
    q, k, v = (ref.randn(rng, shape, np.float32) for _ in range(3))
    w = rng.standard_normal(shape)  # loss = sum(o * w)
    o, lse = bsa.forward(q, k, v, lay)
    grads = bsa.backward(q, k, v, o, lse, w.astype(np.float32), lay)

    def loss(qq, kk, vv):
        return float((bsa.forward(qq, kk, vv, lay)[0].astype(np.float64) * w).sum())

    eps = 1e-2
    for which, g in enumerate(grads):
        picks = [tuple(rng.integers(0, n) for n in shape) for _ in range(12)]
        fd, an = [], []
        for idx in picks:
            args = [q.copy(), k.copy(), v.copy()]
            args[which][idx] += eps
            up = loss(*args)
            args[which][idx] -= 2 * eps
            down = loss(*args)
            fd.append((up - down) / (2 * eps))
            an.append(g[idx])
        fd, an = np.array(fd), np.array(an, dtype=np.float64)
        err = np.linalg.norm(fd - an) / max(np.linalg.norm(fd), 1e-3)
        assert err < 2e-2, f"d{'qkv'[which]}: finite differences {fd} vs backward {an}"
