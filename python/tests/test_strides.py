"""Memory layouts: [b,h,t,d], [b,t,h,d], the seed's [b,t,h*d] and slices of a
fused qkv tensor all run without copies and agree with the reference."""

import numpy as np
import pytest

import bsa
import bsa.functional as F
import closed_masks as cm
import reference as ref


@pytest.fixture
def no_copies(monkeypatch):
    def refuse(x):
        raise AssertionError("the binding copied a tensor it should pass as it is")

    monkeypatch.setattr(F.NumpyOps, "contiguous", staticmethod(refuse))


def test_layouts_without_copies(rng, no_copies):
    b, h, t, d = 2, 3, 64, 16
    lay = bsa.Layout.preset("local", seq=t, block=16, ctx=24)
    mask = cm.preset_masks("local", t, 16, ctx=24)
    q, k, v, do = (ref.randn(rng, (b, h, t, d), np.float32) for _ in range(4))
    want_o, _, _ = ref.forward(q, k, v, mask, d**-0.5)
    want_g = ref.backward(q, k, v, mask, d**-0.5, do)

    # [b, t, h, d]
    tr = [np.ascontiguousarray(x.transpose(0, 2, 1, 3)) for x in (q, k, v, do)]
    o, lse = bsa.forward(*tr[:3], lay, order="bthd")
    assert o.shape == (b, t, h, d)
    assert ref.rel_err(o.transpose(0, 2, 1, 3), want_o) < ref.TOL["float32"]
    grads = bsa.backward(*tr[:3], o, lse, tr[3], lay, order="bthd")
    for g, w in zip(grads, want_g):
        assert ref.rel_err(g.transpose(0, 2, 1, 3), w) < 4 * ref.TOL["float32"]

    # the seed's [b, t, h*d], as column slices of one fused [b, t, 3*h*d] tensor
    fused = np.concatenate([x.reshape(b, t, h * d) for x in tr[:3]], axis=-1)
    e = h * d
    qs, ks, vs = fused[..., :e], fused[..., e : 2 * e], fused[..., 2 * e :]
    assert not qs.flags.c_contiguous
    o3, lse3 = bsa.forward(qs, ks, vs, lay, heads=h)
    assert o3.shape == (b, t, e)
    np.testing.assert_array_equal(o3.reshape(b, t, h, d), o)  # same math, same bits
    grads3 = bsa.backward(qs, ks, vs, o3, lse3, tr[3].reshape(b, t, e), lay, heads=h)
    for g3, g, x in zip(grads3, grads, (qs, ks, vs)):
        assert g3.shape == x.shape and g3.strides == x.strides  # like their tensor
        np.testing.assert_array_equal(g3.reshape(b, t, h, d), g)


def test_unsupported_strides_are_copied(rng):
    lay = bsa.Layout.preset("all", seq=32, block=16, causal=False)
    q, k, v = (ref.randn(rng, (1, 2, 32, 8), np.float32) for _ in range(3))
    want = bsa.attention(q, k, v, lay)
    flipped = q[:, :, ::-1][:, :, ::-1]  # negative strides twice: positive again
    np.testing.assert_array_equal(bsa.attention(flipped, k, v, lay), want)
    neg = np.ascontiguousarray(q[:, ::-1])[:, ::-1]  # a negative head stride
    assert neg.strides[1] < 0
    np.testing.assert_array_equal(bsa.attention(neg, k, v, lay), want)
    fortran = np.asfortranarray(q)  # dim stride != 1
    np.testing.assert_array_equal(bsa.attention(fortran, k, v, lay), want)


def test_deterministic(rng):
    lay = bsa.Layout.preset("fixed", seq=128, block=16, heads=2, ctx=64, num_verts=2)
    q, k, v, do = (ref.randn(rng, (2, 2, 128, 32), np.float32) for _ in range(4))
    o1, l1 = bsa.forward(q, k, v, lay)
    o2, l2 = bsa.forward(q, k, v, lay)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(l1, l2)
    g1 = bsa.backward(q, k, v, o1, l1, do, lay)
    g2 = bsa.backward(q, k, v, o1, l1, do, lay)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)


def test_dout_with_other_strides(rng):
    lay = bsa.Layout.preset("local", seq=32, block=8, ctx=8)
    q, k, v, do = (ref.randn(rng, (1, 2, 32, 8), np.float32) for _ in range(4))
    o, lse = bsa.forward(q, k, v, lay)
    want = bsa.backward(q, k, v, o, lse, do, lay)
    do_t = np.ascontiguousarray(do.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    got = bsa.backward(q, k, v, o, lse, do_t, lay)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
