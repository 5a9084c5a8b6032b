"""Layouts from a Python mask callback (the seed's signature) and from dense
block matrices, against the float64 reference."""

import ctypes

import numpy as np
import pytest

import bsa
import closed_masks as cm
import reference as ref
from bsa import _core, _lib


def _random_block_masks(rng, heads, nq, nk, density=0.6):
    blocks = rng.random((heads, nq, nk)) < density
    blocks[:, np.arange(nq), np.arange(nq) % nk] = True  # every row keeps a block
    return blocks


def _expected(blocks, bits, block):
    """[heads, T, S] element mask from kept blocks and per-block bits."""
    heads, nq, nk = blocks.shape
    out = np.zeros((heads, nq * block, nk * block), dtype=bool)
    for (h, qb, kb), m in bits.items():
        out[h, qb * block : (qb + 1) * block, kb * block : (kb + 1) * block] = m
    return out


@pytest.mark.parametrize("heads", [1, 2])
def test_callback_layout_attention(heads, rng):
    block, nq, nk, batch, dim = 8, 6, 5, 2, 16  # cross-attention: seq_q != seq_k
    blocks = _random_block_masks(rng, heads, nq, nk)
    bits, calls = {}, []

    def callback(blk_shape, head_idx, qry_idx, key_idx, blk_idx):
        calls.append((blk_shape, head_idx, qry_idx, key_idx, blk_idx))
        m = rng.random(blk_shape) < 0.7
        m[0, 0] = True  # no block entirely empty, so none is dropped
        bits[(head_idx, qry_idx, key_idx)] = m
        return m.astype(np.int32) * 3  # truthy, not only 0/1

    lay = bsa.Layout.from_callback(callback, block, blocks=blocks)
    # once per kept block and layout head, in row-major order, with the seed's
    # blk_idx (the block's index within its head)
    want_calls = []
    for h in range(heads):
        kept = [(qb, kb) for qb in range(nq) for kb in range(nk) if blocks[h, qb, kb]]
        want_calls += [((block, block), h, qb, kb, i) for i, (qb, kb) in enumerate(kept)]
    assert calls == want_calls
    masks = _expected(blocks, bits, block)
    for h in range(heads):
        np.testing.assert_array_equal(lay.element_mask(h), masks[h])
    assert lay.info.kept_elements == masks.sum()
    assert (lay.seq_q, lay.seq_k) == (nq * block, nk * block)

    H = 2
    q = ref.randn(rng, (batch, H, nq * block, dim), np.float32)
    k, v = (ref.randn(rng, (batch, H, nk * block, dim), np.float32) for _ in range(2))
    do = ref.randn(rng, q.shape, np.float32)
    o, lse = bsa.forward(q, k, v, lay)
    want_o, want_lse, _ = ref.forward(q, k, v, masks, 1 / np.sqrt(dim))
    assert ref.rel_err(o, want_o) < ref.TOL["float32"]
    assert ref.rel_err(lse, want_lse) < ref.TOL["float32"]
    grads = bsa.backward(q, k, v, o, lse, do, lay)
    for got, want in zip(grads, ref.backward(q, k, v, masks, 1 / np.sqrt(dim), do)):
        assert ref.rel_err(got, want) < 4 * ref.TOL["float32"]

    # another context replays the recorded masks instead of calling again
    n_calls = len(calls)
    other = ctypes.c_void_p()
    _lib.call("bsa_context_create", ctypes.byref(other), None)
    try:
        handle = lay._handles._build(other.value)
        assert len(calls) == n_calls
        out = np.empty((lay.seq_q, lay.seq_k), np.uint8)
        _lib.call("bsa_layout_element_mask", handle, heads - 1, out.ctypes.data_as(ctypes.c_void_p))
        np.testing.assert_array_equal(out.view(bool), masks[heads - 1])
        _lib.lib.bsa_layout_destroy(handle)
    finally:
        _lib.lib.bsa_context_destroy(other)
    assert _core.cpu_context() != other.value


def test_seed_local_callback(rng):
    """The seed's own local-mode callback on its block-banded layout equals
    the dense local mask (seed-semantics 1.5)."""
    n, block, L = 128, 16, 32
    nb, e = n // block, L // block
    qb, kb = np.mgrid[:nb, :nb]
    layout = (kb >= qb - e) & (kb <= qb)

    def cb(blk_shape, head_idx, qry_idx, key_idx, blk_idx):
        m = np.ones(blk_shape, dtype=bool)
        q = np.arange(blk_shape[0])[:, None] + qry_idx * blk_shape[0]
        k = np.arange(blk_shape[1])[None, :] + key_idx * blk_shape[1]
        m &= ~((k > q) | (k + L <= q))
        return m

    lay = bsa.Layout.from_callback(cb, block, blocks=layout)
    want = cm.preset_mask("local", n, block, L)
    np.testing.assert_array_equal(lay.element_mask(), want)
    q, k, v = (ref.randn(rng, (1, 3, n, 8), np.float32) for _ in range(3))
    o = bsa.attention(q, k, v, lay)
    assert ref.rel_err(o, ref.forward(q, k, v, want[None], 8**-0.5)[0]) < ref.TOL["float32"]


def test_callback_with_predicates(rng):
    # no block matrix: every block is a candidate, narrowed by the predicates
    block, nb, window = 8, 6, 11

    def cb(shape, h, qb, kb, i):
        return (np.arange(shape[1])[None, :] % 2 == 0).repeat(shape[0], 0)  # even keys

    lay = bsa.Layout.from_callback(cb, block, q_blocks=nb, k_blocks=nb, causal=True, window=window)
    q = np.arange(nb * block)[:, None]
    k = np.arange(nb * block)[None, :]
    want = (k <= q) & (q - k < window) & (k % 2 == 0)
    np.testing.assert_array_equal(lay.element_mask(), want)


def test_dense_blocks_with_empty_row(rng):
    """A query block row with no kept block: o = 0, lse = -inf, zero gradients."""
    block, nb, dim = 8, 4, 8
    blocks = np.tril(np.ones((nb, nb), dtype=np.uint8))
    blocks[2] = 0
    lay = bsa.Layout.from_blocks(blocks, block, causal=True)
    mask = np.kron(blocks, np.ones((block, block), np.uint8)).astype(bool) & np.tri(
        nb * block, dtype=bool
    )
    np.testing.assert_array_equal(lay.element_mask(), mask)
    q, k, v, do = (ref.randn(rng, (2, 2, nb * block, dim), np.float32) for _ in range(4))
    o, lse = bsa.forward(q, k, v, lay)
    rows = slice(2 * block, 3 * block)
    assert np.all(o[:, :, rows] == 0) and np.all(np.isneginf(lse[:, :, rows]))
    assert np.all(np.isfinite(lse[:, :, : 2 * block]))
    want_o, _, _ = ref.forward(q, k, v, mask[None], dim**-0.5)
    assert ref.rel_err(o, want_o) < ref.TOL["float32"]
    dq, dk, dv = bsa.backward(q, k, v, o, lse, do, lay)
    assert np.all(dq[:, :, rows] == 0)
    for got, want in zip((dq, dk, dv), ref.backward(q, k, v, mask[None], dim**-0.5, do)):
        assert ref.rel_err(got, want) < 4 * ref.TOL["float32"]


def test_per_head_dense_blocks(rng):
    block, nb, heads, dim = 16, 4, 3, 16
    blocks = _random_block_masks(rng, heads, nb, nb, 0.5)
    lay = bsa.Layout.from_blocks(blocks, block)
    assert lay.heads == heads
    masks = np.stack([np.kron(b, np.ones((block, block))).astype(bool) for b in blocks])
    for h in range(heads):
        assert lay.head_blocks(h) == blocks[h].sum()
    q, k, v = (ref.randn(rng, (1, heads, nb * block, dim), np.float32) for _ in range(3))
    o = bsa.attention(q, k, v, lay)
    assert ref.rel_err(o, ref.forward(q, k, v, masks, dim**-0.5)[0]) < ref.TOL["float32"]
