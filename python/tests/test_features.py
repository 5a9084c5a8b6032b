"""The features beyond the seed through the binding: grouped-query heads (4-D
and 3-D with kv_heads=), a value head dim of its own, key lengths and packed
variable-length sequences, against a float64 reference written here on the
closed-form masks of closed_masks.py (each segment on its own, kv heads
repeated)."""

import numpy as np
import pytest

import bsa
import closed_masks as cm
import reference as ref


def _dense(q, k, v, dout, mask, scale):
    """One segment, [h, t, d] / [hkv, s, d] with hkv dividing h, mask [h, t, s]:
    (o, lse, dq, dk, dv) in float64, kv gradients summed over each group."""
    h, hkv = q.shape[0], k.shape[0]
    g = h // hkv
    ke, ve = np.repeat(k, g, axis=0), np.repeat(v, g, axis=0)
    o, lse, _ = ref.forward(q[None], ke[None], ve[None], mask, scale)
    dq, dk, dv = ref.backward(q[None], ke[None], ve[None], mask, scale, dout[None])
    dk = dk[0].reshape(hkv, g, *dk.shape[2:]).sum(axis=1)
    dv = dv[0].reshape(hkv, g, *dv.shape[2:]).sum(axis=1)
    return o[0], lse[0], dq[0], dk, dv


def _segments(n_seg, time_q, time_k, cu_q, cu_k):
    if cu_q is None:
        return [(b, 0, time_q, 0, time_k) for b in range(n_seg)]
    return [(0, cu_q[i], cu_q[i + 1], cu_k[i], cu_k[i + 1]) for i in range(len(cu_q) - 1)]


def _preset(**p):
    """A preset layout and its closed-form masks [layout heads, T, T]."""
    return bsa.Layout.preset(**p), cm.preset_masks(**p)


def _reference(q, k, v, dout, masks, scale, key_lengths=None, cu_q=None, cu_k=None):
    """[b, h, t, d] inputs (b = 1 with packed sequences), masks [layout
    heads, T, S]: float64 outputs."""
    h = q.shape[1]
    full = np.stack([masks[x % masks.shape[0]] for x in range(h)])
    o = np.zeros(q.shape[:3] + (v.shape[-1],))
    dq, dk, dv = np.zeros(q.shape), np.zeros(k.shape), np.zeros(v.shape)
    lse = np.full(q.shape[:3], -np.inf)
    for i, (b, q0, q1, k0, k1) in enumerate(_segments(q.shape[0], q.shape[2], k.shape[2], cu_q, cu_k)):
        mask = full[:, : q1 - q0, : k1 - k0].copy()
        if key_lengths is not None:
            mask[:, :, key_lengths[i] :] = False
        r = _dense(
            q[b, :, q0:q1], k[b, :, k0:k1], v[b, :, k0:k1], dout[b, :, q0:q1], mask, scale
        )
        o[b, :, q0:q1], lse[b, :, q0:q1], dq[b, :, q0:q1] = r[0], r[1], r[2]
        dk[b, :, k0:k1], dv[b, :, k0:k1] = r[3], r[4]
    return o, lse, dq, dk, dv


def _check(got, want, tol):
    o, lse, dq, dk, dv = got
    wo, wlse, wdq, wdk, wdv = want
    assert ref.rel_err(o, wo) < tol
    assert np.array_equal(np.isinf(lse), np.isinf(wlse))
    fin = np.isfinite(wlse)
    assert ref.rel_err(lse[fin], wlse[fin]) < 1e-5
    for g, w in ((dq, wdq), (dk, wdk), (dv, wdv)):
        assert ref.rel_err(g, w) < 4 * tol


def _run(q, k, v, dout, lay, **kw):
    o, lse = bsa.forward(q, k, v, lay, **kw)
    grads = bsa.backward(q, k, v, o, lse, dout, lay, **kw)
    return (o, lse) + tuple(grads)


@pytest.mark.parametrize("hkv", [1, 2])
def test_grouped_query_and_value_dim(rng, hkv):
    b, h, t, d, dv = 2, 4, 64, 16, 24
    lay, masks = _preset(pattern="local", seq=t, block=16, ctx=40)
    q, do = ref.randn(rng, (b, h, t, d), np.float32), ref.randn(rng, (b, h, t, dv), np.float32)
    k, v = ref.randn(rng, (b, hkv, t, d), np.float32), ref.randn(rng, (b, hkv, t, dv), np.float32)
    got = _run(q, k, v, do, lay)
    assert got[0].shape == (b, h, t, dv)
    _check(got, _reference(q, k, v, do, masks, d**-0.5), ref.TOL["float32"])

    # the seed's 3-D layout: k/v need kv_heads=
    q3, do3 = (x.transpose(0, 2, 1, 3).reshape(b, t, -1) for x in (q, do))
    k3, v3 = (x.transpose(0, 2, 1, 3).reshape(b, t, -1) for x in (k, v))
    got3 = _run(q3, k3, v3, do3, lay, heads=h, kv_heads=hkv)
    assert got3[0].shape == (b, t, h * dv)
    np.testing.assert_array_equal(got3[0].reshape(b, t, h, dv).transpose(0, 2, 1, 3), got[0])


def test_key_lengths(rng):
    b, h, t, d = 3, 2, 64, 16
    lay, masks = _preset(pattern="all", seq=t, block=16, causal=False)
    q, k, v, do = (ref.randn(rng, (b, h, t, d), np.float32) for _ in range(4))
    kl = np.array([t, 17, 0], dtype=np.int32)  # all, a partial block, none
    got = _run(q, k, v, do, lay, key_lengths=kl)
    _check(got, _reference(q, k, v, do, masks, d**-0.5, key_lengths=kl), ref.TOL["float32"])
    assert np.all(got[0][2] == 0) and np.all(np.isneginf(got[1][2]))
    assert np.all(got[3][1, :, 17:] == 0) and np.all(got[4][1, :, 17:] == 0)


def test_key_lengths_plan_flag(rng):
    """Calls with key lengths run on plans created with BSA_PLAN_KEY_LENGTHS
    (the library refuses key_lengths on a plan without it); the plan cache
    keeps the two kinds of plan apart."""
    from bsa import _lib, functional

    q = ref.randn(rng, (2, 1, 32, 8), np.float32)
    assert _lib.PLAN_KEY_LENGTHS == 4
    ex = functional.Extras(functional.NumpyOps, q, key_lengths=[32, 5])
    assert ex.flags() == _lib.PLAN_KEY_LENGTHS
    ex = functional.Extras(functional.NumpyOps, q, key_lengths=[5], cu_q=[0, 32], cu_k=[0, 32])
    assert ex.flags() == _lib.PLAN_KEY_LENGTHS | _lib.PLAN_VARLEN
    assert functional.Extras(functional.NumpyOps, q, kv_heads=1).flags() == 0
    lay = bsa.Layout.preset("all", seq=32, block=16, causal=False)
    full = bsa.attention(q, q, q, lay)
    np.testing.assert_allclose(bsa.attention(q, q, q, lay, key_lengths=[32, 32]), full, rtol=1e-6)
    o = bsa.attention(q, q, q, lay, key_lengths=[32, 0])
    np.testing.assert_allclose(o[0], full[0], rtol=1e-6)
    assert np.all(o[1] == 0)
    np.testing.assert_allclose(bsa.attention(q, q, q, lay), full, rtol=1e-6)


def test_plan_explain(rng):
    """bsa.plan_explain takes plan_implementation's arguments and returns the
    library's explanation, which names the implementation chosen."""
    lay = bsa.Layout.preset("local", seq=64, block=16, ctx=32)
    q = ref.randn(rng, (1, 2, 64, 16), np.float32)
    for force in (False, True):
        name = bsa.plan_implementation(lay, q, force_reference=force)
        text = bsa.plan_explain(lay, q, force_reference=force)
        assert isinstance(text, str) and text
        assert name in text, (name, text)
    # 3-D tensors with heads= and a value head dim of its own, as plan_implementation
    q3 = ref.randn(rng, (1, 64, 2 * 16), np.float32)
    v3 = ref.randn(rng, (1, 64, 2 * 24), np.float32)
    name = bsa.plan_implementation(lay, q3, q3, v3, heads=2)
    assert name in bsa.plan_explain(lay, q3, q3, v3, heads=2)
    assert "plan_explain" in bsa.__all__


def test_verbose_prints_explanation():
    """BSA_VERBOSE=1 prints the explanation to stderr at plan creation."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, bsa\n"
        "lay = bsa.Layout.preset('all', seq=32, block=16)\n"
        "q = np.ones((1, 1, 32, 8), np.float32)\n"
        "print(bsa.plan_implementation(lay, q))\n"
    )
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(bsa.__file__)))
    env = dict(os.environ, PYTHONPATH=pkg, BSA_LIBRARY=bsa.library_path)
    for verbose in ("1", "0"):
        env["BSA_VERBOSE"] = verbose
        r = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        name = r.stdout.strip()
        assert name
        if verbose == "1":
            assert name in r.stderr, r.stderr
        else:
            assert "bsa_plan_create" not in r.stderr, r.stderr


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_packed_sequences(rng, dtype):
    h, hkv, d, seq = 4, 2, 16, 64
    lay, masks = _preset(pattern="local", seq=seq, block=16, ctx=24)
    lens_q = [64, 5, 33, 0, 20]
    lens_k = [64, 5, 40, 7, 20]
    cu_q = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    tq, tk = int(cu_q[-1]), int(cu_k[-1])
    q, do = (ref.randn(rng, (1, h, tq, d), dtype) for _ in range(2))
    k, v = (ref.randn(rng, (1, hkv, tk, d), dtype) for _ in range(2))
    kl = np.array([60, 5, 3, 7, 1], dtype=np.int32)
    kw = dict(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, key_lengths=kl)
    got = _run(q, k, v, do, lay, **kw)
    want = _reference(q, k, v, do, masks, d**-0.5, key_lengths=kl, cu_q=cu_q, cu_k=cu_k)
    _check(got, want, ref.TOL[dtype])


def test_bad_offsets_fail_cleanly(rng):
    lay = bsa.Layout.preset("all", seq=64, block=16)
    q = ref.randn(rng, (1, 2, 64, 16), np.float32)
    with pytest.raises(ValueError, match="go together"):
        bsa.forward(q, q, q, lay, cu_seqlens_q=[0, 64])
    with pytest.raises(bsa.BsaError):  # a length past the layout's
        bsa.forward(q, q, q, lay, cu_seqlens_q=[0, 64], cu_seqlens_k=[0, 65])


def test_torch_autograd_gqa_varlen(rng):
    torch = pytest.importorskip("torch")
    h, hkv, d, seq = 4, 1, 16, 64
    lay, masks = _preset(pattern="all", seq=seq, block=16)
    cu = np.array([0, 40, 64, 100], dtype=np.int32)
    q, do = (ref.randn(rng, (1, h, 100, d), np.float32) for _ in range(2))
    k, v = (ref.randn(rng, (1, hkv, 100, d), np.float32) for _ in range(2))
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    o = bsa.attention(tq, tk, tv, lay, cu_seqlens_q=cu, cu_seqlens_k=cu)
    o.backward(torch.tensor(do))
    want = _reference(q, k, v, do, masks, d**-0.5, cu_q=cu, cu_k=cu)
    tol = ref.TOL["float32"]
    assert ref.rel_err(o.detach().numpy(), want[0]) < tol
    for t, w in ((tq, want[2]), (tk, want[3]), (tv, want[4])):
        assert ref.rel_err(t.grad.numpy(), w) < 4 * tol
