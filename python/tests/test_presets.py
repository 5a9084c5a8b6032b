"""Every preset (causal and bidirectional): forward and backward against the
float64 reference on the closed-form masks (closed_masks.py; their
comparison with Layout.element_mask is in test_closed_masks.py), and the
seed's block counts."""

import numpy as np
import pytest

import bsa
import closed_masks as cm
import reference as ref

PRESETS = [
    dict(pattern="all", seq=64, block=16),
    dict(pattern="local", seq=128, block=16, ctx=32),
    dict(pattern="local", seq=96, block=8, ctx=20),  # bandwidth not a block multiple
    dict(pattern="strided", seq=128, block=8, ctx=8),
    dict(pattern="strided", seq=128, block=16, ctx=4),
    dict(pattern="fixed", seq=128, block=8, ctx=32, num_verts=1, vertsize=2),
    dict(pattern="fixed", seq=128, block=16, ctx=64, num_verts=2, vertsize=1),
]
SEED_PRESETS = list(PRESETS)
# beyond the seed (bsa.h's bsa_pattern), with every field of Layout.preset
PRESETS += [
    dict(pattern="sliding", seq=128, block=16, ctx=24),
    dict(pattern="sliding", seq=64, block=8, ctx=1),  # three keys a row
    dict(pattern="dilated", seq=128, block=8, ctx=4, dilation=6),
    dict(pattern="dilated", seq=96, block=16, ctx=7),  # dilation 1: sliding
    dict(pattern="longformer", seq=128, block=16, ctx=16, global_tokens=8),
    dict(pattern="longformer", seq=64, block=8, ctx=3, global_tokens=0),
    dict(pattern="bigbird", seq=256, block=16, ctx=16, global_tokens=8, random_blocks=2, seed=7),
    # more random blocks than half a causal row: the draw's shuffle branch
    dict(pattern="bigbird", seq=128, block=16, ctx=8, random_blocks=5, seed=2**63 + 3),
    dict(pattern="document", seq=128, block=16, doc_lengths=[40, 50, 6, 32]),
    dict(pattern="document", seq=64, block=8, doc_lengths=[64]),
]


def _id(p):
    return "-".join(str(v).replace(" ", "") for v in p.values())


def _masks(p, heads, causal):
    """[layout heads, seq, seq] closed-form masks."""
    return cm.preset_masks(heads=heads, causal=causal, **p)


def test_seed_block_counts():
    # reference counts from shared/spec/seed-semantics.md section 1.5
    assert bsa.Layout.preset("all", seq=1024, block=32).info.blocks_total == 528
    assert bsa.Layout.preset("all", seq=1024, block=32).info.max_row_blocks == 32
    assert bsa.Layout.preset("local", seq=1024, block=32, ctx=32).info.blocks_total == 63
    assert bsa.Layout.preset("strided", seq=1024, block=32, ctx=32).info.blocks_total == 32
    fixed = bsa.Layout.preset("fixed", seq=1024, block=32, heads=4, ctx=128, num_verts=4)
    assert [fixed.head_blocks(h) for h in range(4)] == [192] * 4
    # the seed's nn_max 11 / tn_max 29 are head 0's; head 3's summary column
    # (key block 0) is seen by all 32 query blocks, so over all heads it is 32
    blocks = np.stack(
        [
            cm.preset_mask("fixed", 1024, 32, 128, 4, 1, True, h)
            .reshape(32, 32, 32, 32)
            .any((1, 3))
            for h in range(4)
        ]
    )
    assert blocks[0].sum(0).max() == 29 and blocks[0].sum(1).max() == 11
    assert fixed.info.max_row_blocks == blocks.sum(2).max() == 11
    assert fixed.info.max_col_blocks == blocks.sum(1).max() == 32
    assert bsa.Layout.preset("local", seq=256, block=8, ctx=16).info.blocks_total == 93
    assert bsa.Layout.preset("strided", seq=256, block=8, ctx=16).info.blocks_total == 48
    f2 = bsa.Layout.preset("fixed", seq=256, block=8, ctx=32, num_verts=1, vertsize=2)
    assert f2.info.blocks_total == 304


def _check_attention(lay, masks, rng, dtype, batch, heads, dim, scale=None, reference=False):
    seq = lay.seq_q
    q, k, v, do = (ref.randn(rng, (batch, heads, seq, dim), dtype) for _ in range(4))
    o, lse = bsa.forward(q, k, v, lay, scale, force_reference=reference)
    assert o.dtype == q.dtype and o.shape == q.shape and lse.dtype == np.float32
    s = 1.0 / np.sqrt(dim) if scale is None else scale
    want_o, want_lse, _ = ref.forward(q, k, v, masks, s)
    name = np.dtype(dtype).name
    err = ref.rel_err(o, want_o)
    assert err < ref.CPU_TOL[name], f"o: relative error {err:.3g}"
    err = ref.rel_err(lse, want_lse)
    assert err < ref.CPU_LSE_TOL, f"lse (fp32 for every dtype): relative error {err:.3g}"
    dq, dk, dv = bsa.backward(q, k, v, o, lse, do, lay, scale, force_reference=reference)
    want = ref.backward(q, k, v, masks, s, do)
    for g, got, w in zip("qkv", (dq, dk, dv), want):
        assert got.dtype == q.dtype
        err = ref.rel_err(got, w)
        assert err < ref.CPU_GRAD_TOL[name], f"d{g}: relative error {err:.3g}"


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidir"])
@pytest.mark.parametrize("p", PRESETS, ids=_id)
def test_preset_attention_f32(p, causal, rng):
    heads = 4
    lay = bsa.Layout.preset(heads=heads, causal=causal, **p)
    _check_attention(lay, _masks(p, heads, causal), rng, np.float32, 2, heads, 16)


@pytest.mark.parametrize("p", PRESETS[::2], ids=_id)
def test_preset_attention_f16(p, rng):
    heads = 2
    lay = bsa.Layout.preset(heads=heads, **p) if p.get("num_verts", 1) <= heads else None
    if lay is None:
        pytest.skip("needs more heads")
    _check_attention(lay, _masks(p, heads, True), rng, np.float16, 1, heads, 32)


def test_preset_attention_bf16(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for p in (SEED_PRESETS[-1], PRESETS[-1]):
        lay = bsa.Layout.preset(heads=2, **p)
        _check_attention(lay, _masks(p, 2, True), rng, ml_dtypes.bfloat16, 1, 2, 16)


def test_reference_implementation_and_scale(rng):
    p = PRESETS[5]
    lay = bsa.Layout.preset(heads=2, **p)
    masks = _masks(p, 2, True)
    _check_attention(lay, masks, rng, np.float32, 1, 2, 24, scale=0.37, reference=True)
    _check_attention(lay, masks, rng, np.float32, 1, 2, 24, scale=0.37)
    q = np.zeros((1, 2, p["seq"], 8), np.float32)
    assert bsa.plan_implementation(lay, q, force_reference=True) == "cpu-reference"
