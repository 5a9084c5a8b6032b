"""The oracle for the Python tests: a float64 dense masked attention (forward
and backward), written independently of the library.  Its masks come from
closed_masks.py."""

import numpy as np


def as64(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def forward(q, k, v, mask, scale):
    """q [b,h,t,d], k/v [b,h,s,d], mask [h or 1, t, s] -> (o, lse), float64.
    Rows that see no key give o = 0 and lse = -inf."""
    q, k, v = as64(q), as64(k), as64(v)
    s = scale * np.einsum("bhtd,bhsd->bhts", q, k)
    s = np.where(mask[None], s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    empty = ~np.isfinite(m)
    m = np.where(empty, 0.0, m)
    e = np.exp(s - m)
    z = e.sum(axis=-1, keepdims=True)
    p = np.where(empty, 0.0, e / np.where(empty, 1.0, z))
    with np.errstate(divide="ignore"):
        lse = np.where(empty, -np.inf, m + np.log(np.where(empty, 1.0, z)))[..., 0]
    return np.einsum("bhts,bhsd->bhtd", p, v), lse, p


def backward(q, k, v, mask, scale, dout):
    """float64 (dq, dk, dv) of sum(o * dout)."""
    q, k, v, dout = as64(q), as64(k), as64(v), as64(dout)
    o, _, p = forward(q, k, v, mask, scale)
    dv = np.einsum("bhts,bhtd->bhsd", p, dout)
    dp = np.einsum("bhtd,bhsd->bhts", dout, v)
    delta = (dout * o).sum(axis=-1, keepdims=True)
    ds = p * (dp - delta)
    dq = scale * np.einsum("bhts,bhsd->bhtd", ds, k)
    dk = scale * np.einsum("bhts,bhtd->bhsd", ds, q)
    return dq, dk, dv


def rel_err(got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.isfinite(got)), "non-finite values (an unwritten, NaN-poisoned element?)"
    den = np.linalg.norm(want.ravel())
    return np.linalg.norm((got - want).ravel()) / (den if den > 0 else 1.0)


# relative L2 thresholds per dtype (FlashAttention's rule of thumb, tightened
# for fp32 where the CPU backend accumulates in fp32 too); the GPU tests and
# the feature tests use these
TOL = {"float32": 2e-5, "float16": 5e-3, "bfloat16": 3e-2}

# The CPU backend's bounds for the preset suite (test_presets.py): about 4x
# the worst error measured over its presets and dtypes with standard-normal
# inputs (tests/README.md, "Tolerances"): output, gradients, lse (fp32)
CPU_TOL = {"float32": 1e-6, "float16": 1e-3, "bfloat16": 7e-3}
CPU_GRAD_TOL = {"float32": 2e-6, "float16": 1.2e-3, "bfloat16": 1e-2}
CPU_LSE_TOL = 2e-7


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(np.float32).astype(dtype)
