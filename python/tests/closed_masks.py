"""Element masks from closed forms written here, never from the library's
layout code: the masks the float64 reference (reference.py) attends with.

- preset_mask / preset_masks: the seed's patterns in natural time order
  (README "Patterns"; shared/spec/seed-semantics.md sections 1.3 and 1.5),
  causal and bidirectional; the strided permutation is the library's
  business, not the mask's.
- blocks_mask: a block matrix x callback bits x the predicates of bsa.h's
  BSA_PRED_* comments (Layout.from_blocks / Layout.from_callback).

test_closed_masks.py compares Layout.element_mask with these once; every
other test builds its reference from them.
"""

import numpy as np


def preset_mask(pattern, seq, block, ctx=0, num_verts=1, vertsize=1, causal=True, head=0):
    """bool [seq, seq]: query q sees key k, for one layout head."""
    q = np.arange(seq)[:, None]
    k = np.arange(seq)[None, :]
    if pattern == "all":
        m = np.ones((seq, seq), dtype=bool)
    elif pattern == "local":
        m = np.abs(q - k) < ctx
    elif pattern == "strided":
        m = (q - k) % ctx == 0
    elif pattern == "fixed":
        S = ctx // block
        verts = {S - 1 - (head % num_verts) * vertsize - t for t in range(vertsize)}
        in_verts = np.isin((k // block) % S, sorted(verts))
        m = (q // ctx == k // ctx) | in_verts
    else:
        raise ValueError(pattern)
    if causal:
        m &= k <= q
    return np.broadcast_to(m, (seq, seq)).copy()


def preset_masks(pattern, seq, block, heads=1, ctx=0, num_verts=1, vertsize=1, causal=True):
    """bool [layout heads, seq, seq] for Layout.preset's arguments: one head,
    or ``heads`` for the fixed pattern with num_verts > 1 (a per-head layout)."""
    lay_heads = heads if pattern == "fixed" and num_verts > 1 else 1
    return np.stack(
        [
            preset_mask(pattern, seq, block, ctx, num_verts, vertsize, causal, head=h)
            for h in range(lay_heads)
        ]
    )


def predicates(seq_q, seq_k, causal=False, window=None, prefix=None):
    """bool [seq_q, seq_k]: the built-in predicates (absolute positions)."""
    q = np.arange(seq_q)[:, None]
    k = np.arange(seq_k)[None, :]
    m = np.ones((seq_q, seq_k), dtype=bool)
    if causal:
        m &= k <= q
    if window is not None:
        m &= np.abs(q - k) < window
    if prefix is not None:
        m &= (k < prefix) | (k <= q)
    return m


def blocks_mask(blocks, block, causal=False, window=None, prefix=None, callback=None):
    """bool [heads, Qb*B, Kb*B] of a block matrix (2-D shared or 3-D per
    head; nonzero = kept) under the predicates, AND the callback's bits.

    ``callback(blk_shape, head, qb, kb, blk_idx)`` has the seed's signature
    and is called, like the library calls it, once per kept block of each
    head in row-major order with ``blk_idx`` its index within the head; a
    block where the predicates leave no element is not kept."""
    m = np.asarray(blocks) != 0
    if m.ndim == 2:
        m = m[None]
    heads, nq, nk = m.shape
    pred = predicates(nq * block, nk * block, causal, window, prefix)
    out = np.zeros((heads, nq * block, nk * block), dtype=bool)
    for h in range(heads):
        index = 0
        for qb in range(nq):
            for kb in range(nk):
                rows = slice(qb * block, (qb + 1) * block)
                cols = slice(kb * block, (kb + 1) * block)
                p = pred[rows, cols]
                if not m[h, qb, kb] or not p.any():
                    continue
                bits = True
                if callback is not None:
                    bits = np.asarray(callback((block, block), h, qb, kb, index)) != 0
                index += 1
                out[h, rows, cols] = p & bits
    return out
