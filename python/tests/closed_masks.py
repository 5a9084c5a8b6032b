"""Element masks from closed forms written here, never from the library's
layout code: the masks the float64 reference (reference.py) attends with.

- preset_mask / preset_masks: the seed's patterns in natural time order
  (README "Patterns"; shared/spec/seed-semantics.md sections 1.3 and 1.5)
  and the presets beyond the seed (bsa.h's bsa_pattern comments: sliding
  window, dilated, Longformer, BigBird, document), causal and
  bidirectional; the strided permutation is the library's business, not
  the mask's.  BigBird's random blocks follow the draw that
  tests/common/closed_masks.h specifies (bigbird_random below).
- blocks_mask: a block matrix x callback bits x the predicates of bsa.h's
  BSA_PRED_* comments (Layout.from_blocks / Layout.from_callback).

test_closed_masks.py compares Layout.element_mask with these once; every
other test builds its reference from them.
"""

import numpy as np


MASK64 = (1 << 64) - 1


def _splitmix64(state):
    """(new state, output) of splitmix64."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def bigbird_random(seq, block, random_blocks, seed, causal):
    """bool [q_blocks, k_blocks]: BigBird's random key blocks of each query
    block row qb: min(r, n) distinct blocks of [0, n), n = all blocks
    (causal: qb + 1), from a splitmix64 stream seeded with
    seed ^ ((qb + 1) * 0xD1B54A32D192ED03): rejection of repeats when
    2r <= n, else a partial Fisher-Yates shuffle of 0..n-1."""
    nb = seq // block
    out = np.zeros((nb, nb), dtype=bool)
    for qb in range(nb):
        n = qb + 1 if causal else nb
        r = min(random_blocks, n)
        st = (seed ^ ((qb + 1) * 0xD1B54A32D192ED03)) & MASK64
        if 2 * r <= n:
            for _ in range(r):
                while True:
                    st, z = _splitmix64(st)
                    j = z % n
                    if not out[qb, j]:
                        break
                out[qb, j] = True
        else:
            perm = list(range(n))
            for i in range(r):
                st, z = _splitmix64(st)
                j = i + z % (n - i)
                perm[i], perm[j] = perm[j], perm[i]
                out[qb, perm[i]] = True
    return out


def preset_mask(
    pattern,
    seq,
    block,
    ctx=0,
    num_verts=1,
    vertsize=1,
    causal=True,
    head=0,
    dilation=None,
    global_tokens=None,
    random_blocks=None,
    seed=None,
    doc_lengths=None,
):
    """bool [seq, seq]: query q sees key k, for one layout head."""
    q = np.arange(seq)[:, None]
    k = np.arange(seq)[None, :]
    w, g = ctx, global_tokens or 0
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
    elif pattern == "sliding":  # |q-k| <= w
        m = np.abs(q - k) <= w
    elif pattern == "dilated":  # |q-k| <= w*d and d divides q-k
        d = dilation or 1
        m = (np.abs(q - k) <= w * d) & ((q - k) % d == 0)
    elif pattern == "longformer":  # the window, or a global query or key
        m = (np.abs(q - k) <= w) | (q < g) | (k < g)
    elif pattern == "bigbird":  # longformer's, or one of the row's random key blocks
        rnd = bigbird_random(seq, block, random_blocks or 0, seed or 0, causal)
        m = (np.abs(q - k) <= w) | (q < g) | (k < g) | rnd[q // block, k // block]
    elif pattern == "document":  # the same document
        doc = np.repeat(np.arange(len(doc_lengths)), doc_lengths)
        m = doc[:, None] == doc[None, :]
    else:
        raise ValueError(pattern)
    if causal:
        m &= k <= q
    return np.broadcast_to(m, (seq, seq)).copy()


def preset_masks(pattern, seq, block, heads=1, ctx=0, num_verts=1, vertsize=1, causal=True, **ext):
    """bool [layout heads, seq, seq] for Layout.preset's arguments: one head,
    or ``heads`` for the fixed pattern with num_verts > 1 (a per-head layout).
    ``ext``: dilation, global_tokens, random_blocks, seed, doc_lengths."""
    lay_heads = heads if pattern == "fixed" and num_verts > 1 else 1
    return np.stack(
        [
            preset_mask(pattern, seq, block, ctx, num_verts, vertsize, causal, h, **ext)
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
