"""Shared by the torch.compile and BlockMask tests: skips that say why, and
the float64 oracle of python/tests/reference.py (masks from closed forms,
never from the library) for torch tensors."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # python/tests: reference.py, closed_masks.py
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # python/: the bsa package

import numpy as np  # noqa: E402

import reference  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

SKIP = unittest.SkipTest


def torch_version():
    v = torch.__version__.split("+")[0].split(".")
    return tuple(int("".join(c for c in x if c.isdigit()) or 0) for x in v[:2])


def need_op():
    """torch >= 2.4: bsa attention is a torch.library custom op."""
    if torch is None:
        raise SKIP("torch is not installed")
    from bsa import torch_ops

    if not torch_ops.HAS_CUSTOM_OP:
        raise SKIP(f"torch {torch.__version__} < 2.4: no torch.library.custom_op (eager only)")


def need_flex():
    need_op()
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        raise SKIP(f"torch {torch.__version__} has no FlexAttention") from None


def need_cuda():
    if torch is None or not torch.cuda.is_available():
        raise SKIP("no CUDA device")
    import bsa

    if "cuda" not in bsa.backends() and "hip" not in bsa.backends():
        raise SKIP(f"libbsa ({bsa.library_path}) was built without a GPU backend")


def generator():
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"  seed {seed}")
    return torch.Generator(device="cpu").manual_seed(seed)


def randn(g, shape, dtype=None, device="cpu"):
    dtype = dtype or torch.float32
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)


def np64(x):
    return x.detach().float().cpu().numpy()


def oracle(q, k, v, mask, scale, dout=None):
    """float64 numpy (o, lse[, dq, dk, dv]) of [b, h, t, d] torch tensors;
    mask bool [1 or h, t, s] (numpy).  k/v heads are repeated to q's."""
    q, k, v = np64(q), np64(k), np64(v)
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat(rep, axis=1), v.repeat(rep, axis=1)
    o, lse, _ = reference.forward(q, k, v, mask, scale)
    if dout is None:
        return o, lse
    dq, dk, dv = reference.backward(q, k, v, mask, scale, np64(dout))
    if rep > 1:  # gradients of the shared k/v heads sum over their q heads
        b, h, s, _ = dk.shape
        dk = dk.reshape(b, h // rep, rep, s, -1).sum(axis=2)
        dv = dv.reshape(b, h // rep, rep, s, -1).sum(axis=2)
    return o, lse, dq, dk, dv


def rel_err(got, want):
    return reference.rel_err(np64(got) if torch.is_tensor(got) else got, want)


def tol(dtype, device="cpu"):
    name = str(dtype).replace("torch.", "")
    if name == "float32" and device == "cuda":
        return 1e-3  # TF32-free fp32 products on the GPU still sum in another order
    return reference.TOL[name]


def lse_err(got, want):
    """Largest |lse difference| over the finite entries; -inf where want is."""
    got = np64(got).astype(np.float64)
    fin = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), fin), "lse is -inf (or finite) in other places"
    return float(np.abs(got[fin] - want[fin]).max()) if fin.any() else 0.0
