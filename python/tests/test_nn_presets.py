"""bsa.nn.SparseAttention with every preset and its fields (torch; skipped
without it): the layer's output and input gradient against the float64
reference on the closed-form masks, its arguments checked when it is made."""

import numpy as np
import pytest

import closed_masks as cm
import reference as ref
from test_presets import PRESETS, _id

torch = pytest.importorskip("torch")
import bsa  # noqa: E402

FIELDS = ("ctx", "num_verts", "vertsize", "dilation", "global_tokens", "random_blocks", "seed",
          "doc_lengths")  # fmt: skip


def _layer_reference(m, x, masks, round32=True):
    """float64 [b, t, e]: the layer's projections around the reference
    (round32: q, k, v rounded to float32, as the kernel reads them)."""
    w_qkv, b_qkv = (p.detach().double().numpy() for p in (m.qkv.weight, m.qkv.bias))
    w_out, b_out = (p.detach().double().numpy() for p in (m.out.weight, m.out.bias))
    b, t, e = x.shape
    h, d = m.heads, e // m.heads
    qkv = x.detach().double().numpy() @ w_qkv.T + b_qkv
    q, k, v = (qkv[..., i * e : (i + 1) * e].reshape(b, t, h, d).transpose(0, 2, 1, 3) for i in range(3))
    if round32:
        q, k, v = (a.astype(np.float32) for a in (q, k, v))
    o, _, _ = ref.forward(q, k, v, masks, 1.0 / np.sqrt(d)) if round32 else _forward64(q, k, v, masks, d)
    return o.transpose(0, 2, 1, 3).reshape(b, t, e) @ w_out.T + b_out


def _forward64(q, k, v, masks, d):
    """The reference without its float32 input rounding (ref.as64 rounds)."""
    s = np.einsum("bhtd,bhsd->bhts", q, k) / np.sqrt(d)
    s = np.where(masks[None], s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    z = e.sum(axis=-1, keepdims=True)
    p = e / np.where(z > 0, z, 1.0)
    return np.einsum("bhts,bhsd->bhtd", p, v), None, p


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidir"])
@pytest.mark.parametrize("p", PRESETS, ids=_id)
def test_layer_on_preset(p, causal, rng):
    heads, dim = 4, 16
    kw = {f: p[f] for f in FIELDS if f in p}
    m = bsa.nn.SparseAttention(heads * dim, heads, pattern=p["pattern"], block=p["block"],
                               causal=causal, **kw)  # fmt: skip
    if "ctx" not in kw:
        assert m.layout_for(p["seq"]).description["pattern"] == p["pattern"]
    x = torch.tensor(rng.standard_normal((1, p["seq"], heads * dim)), dtype=torch.float32,
                     requires_grad=True)  # fmt: skip
    y = m(x)
    masks = cm.preset_masks(heads=heads, causal=causal, **p)
    want = _layer_reference(m, x, masks)
    assert ref.rel_err(y.detach().numpy(), want) < 1e-4
    # the input gradient of sum(y * w) by central differences of the float64
    # reference at a few elements (the layer's backward against the oracle;
    # the causal forms only, to keep the run short)
    if not causal:
        return
    w = rng.standard_normal(y.shape)
    (y * torch.tensor(w, dtype=torch.float32)).sum().backward()
    eps = 1e-3
    xs = x.detach().double()
    for _ in range(3):
        idx = tuple(int(rng.integers(0, n)) for n in x.shape)
        up, down = xs.clone(), xs.clone()
        up[idx] += eps
        down[idx] -= eps
        diff = _layer_reference(m, up, masks, False) - _layer_reference(m, down, masks, False)
        fd = (diff * w).sum() / (2 * eps)
        g = float(x.grad[idx])
        assert abs(g - fd) <= 2e-2 * max(1.0, abs(fd)), (idx, g, fd)


def test_layer_repr_and_layouts():
    m = bsa.nn.SparseAttention(64, 4, pattern="bigbird", block=16, ctx=8, global_tokens=4,
                               random_blocks=2, seed=9)  # fmt: skip
    r = repr(m)
    for w in ("pattern='bigbird'", "ctx=8", "global_tokens=4", "random_blocks=2", "seed=9"):
        assert w in r
    lay = m.layout_for(128)
    assert m.layout_for(128) is lay and lay.seq_q == 128
    want = cm.preset_masks("bigbird", 128, 16, ctx=8, global_tokens=4, random_blocks=2, seed=9)
    np.testing.assert_array_equal(lay.element_mask(), want[0])


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        (dict(pattern="diagonal"), ValueError, ("pattern must be one of",)),
        (dict(pattern="dilated", dilation=2.0), TypeError, ("dilation must be an int",)),
        (dict(pattern="local", dilation=2), ValueError, ("dilation belongs to the dilated",)),
        (dict(pattern="document"), ValueError, ("needs doc_lengths",)),
        (dict(pattern="longformer", global_tokens="4"), TypeError, ("global_tokens must be",)),
        (dict(pattern="local", block=16.0), TypeError, ("block must be an int",)),
        (dict(pattern="local", causal=None), TypeError, ("causal must be a bool",)),
    ],
)
def test_layer_arguments(kw, exc, words):
    with pytest.raises(exc) as info:
        bsa.nn.SparseAttention(64, 4, **kw)
    for w in words:
        assert w in str(info.value)


def test_layer_document_length():
    """doc_lengths must sum to the sequence the layer sees: the library says so."""
    m = bsa.nn.SparseAttention(32, 2, pattern="document", block=16, doc_lengths=[16, 48])
    assert m(torch.randn(1, 64, 32)).shape == (1, 64, 32)
    with pytest.raises(bsa.BsaError, match="must sum to seq = 32"):
        m(torch.randn(1, 32, 32))
