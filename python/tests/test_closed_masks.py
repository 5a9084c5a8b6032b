"""Layout.element_mask (the library's bsa_layout_element_mask) against the
closed forms every other test attends with (closed_masks.py), once: every
preset causal and bidirectional (fixed shared and per head), at listed and
random parameters, and block matrices / callbacks under random predicates."""

import numpy as np
import pytest

import bsa
import closed_masks as cm
from test_presets import PRESETS, _id


def _check(lay, want):
    assert lay.heads == want.shape[0]
    for h in range(lay.heads):
        got = lay.element_mask(h)
        assert got.dtype == np.bool_ and got.shape == want.shape[1:]
        np.testing.assert_array_equal(got, want[h], err_msg=f"head {h}")
    assert lay.info.kept_elements == int(want.sum())


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidir"])
@pytest.mark.parametrize("p", PRESETS, ids=_id)
def test_presets(p, causal):
    lay = bsa.Layout.preset(heads=4, causal=causal, **p)
    _check(lay, cm.preset_masks(heads=4, causal=causal, **p))
    if p["pattern"] == "strided":
        assert lay.info.stride_permutation == p["ctx"]


def _random_preset(rng):
    block = int(rng.choice([8, 16, 32, 64, 128]))
    nb = 640 // block if block >= 64 else 12
    pattern = str(rng.choice(["all", "local", "strided", "fixed"]))
    p = dict(pattern=pattern, block=block, seq=block * int(rng.integers(1, nb + 1)))
    if pattern == "local":
        p["ctx"] = int(rng.integers(1, p["seq"] + 2))
    elif pattern == "strided":  # seq / L a multiple of the block
        p["ctx"] = int(rng.integers(1, 5 if block >= 64 else 9))
        p["seq"] = p["ctx"] * block * int(rng.integers(1, 2 if block >= 64 else 3))
    elif pattern == "fixed":  # vs | S, nv <= S / vs, heads % nv == 0
        S = int(rng.integers(1, 5 if block >= 64 else 7))
        vs = int(rng.choice([v for v in range(1, S + 1) if S % v == 0]))
        p.update(ctx=S * block, vertsize=vs, num_verts=int(rng.integers(1, S // vs + 1)))
        p["heads"] = p["num_verts"] * int(rng.integers(1, 3))
    return p


def _random_ext_preset(rng):
    """A preset beyond the seed with random fields (causal or not)."""
    block = int(rng.choice([8, 16, 32]))
    seq = block * int(rng.integers(1, 13))
    pattern = str(rng.choice(["sliding", "dilated", "longformer", "bigbird", "document"]))
    p = dict(pattern=pattern, block=block, seq=seq)
    if pattern != "document":
        p["ctx"] = int(rng.integers(0, seq + 2))
    if pattern == "dilated":
        p["dilation"] = int(rng.integers(1, 9))
        p["ctx"] //= p["dilation"]
    if pattern in ("longformer", "bigbird"):
        p["global_tokens"] = int(rng.integers(0, seq + 1))
    if pattern == "bigbird":
        p["ctx"] = int(rng.integers(0, 2 * block))
        p["global_tokens"] //= 4
        p.update(random_blocks=int(rng.integers(0, seq // block + 2)), seed=int(rng.integers(0, 2**63)))
    if pattern == "document":
        cuts = np.sort(rng.choice(np.arange(1, seq), size=int(rng.integers(0, min(seq - 1, 9) + 1)),
                                  replace=False))
        p["doc_lengths"] = np.diff(np.concatenate([[0], cuts, [seq]])).tolist()
    return p


def test_random_presets(rng):
    for _ in range(40):
        p = _random_ext_preset(rng)
        causal = bool(rng.integers(0, 2))
        _check(bsa.Layout.preset(causal=causal, **p), cm.preset_masks(causal=causal, **p))
    for _ in range(40):
        p = _random_preset(rng)
        causal = bool(rng.integers(0, 2))
        _check(bsa.Layout.preset(causal=causal, **p), cm.preset_masks(causal=causal, **p))


def _hash_bits(salt, density):
    """A callback whose bits are a hash of (salt, head, absolute q, k): a
    pure function, so the closed form may call it again."""

    def callback(shape, head, qb, kb, index):
        q = np.arange(shape[0], dtype=np.uint64)[:, None] + np.uint64(qb * shape[0])
        k = np.arange(shape[1], dtype=np.uint64)[None, :] + np.uint64(kb * shape[1])
        z = np.uint64(salt) ^ (np.uint64(head) << np.uint64(48)) ^ (q << np.uint64(24)) ^ k
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
        z = (z ^ (z >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
        z ^= z >> np.uint64(33)
        return (z >> np.uint64(11)).astype(np.float64) / 2.0**53 < density

    return callback


def test_blocks_and_callbacks(rng):
    for it in range(48):
        block = int(rng.choice([8, 16, 32, 64, 128]))
        nb = 640 // block if block >= 64 else 8
        nq = int(rng.integers(1, nb + 1))
        nk = nq if it % 3 else int(rng.integers(1, nb + 1))
        heads = int(rng.integers(1, 4))
        preds = dict(
            causal=bool(it & 1),
            window=int(rng.integers(1, nk * block + 2)) if it & 2 else None,
            prefix=int(rng.integers(0, nk * block + 2)) if it & 4 else None,
        )
        blocks = rng.random((heads, nq, nk)) < rng.random()
        if it % 2 == 0:
            lay = bsa.Layout.from_blocks(blocks, block, **preds)
            want = cm.blocks_mask(blocks, block, **preds)
        else:
            cb = _hash_bits(int(rng.integers(0, 2**63)), 0.0 if it % 8 == 3 else rng.random())
            if it % 4 == 1:  # no block matrix: every block a candidate
                lay = bsa.Layout.from_callback(
                    cb, block, q_blocks=nq, k_blocks=nk, heads=heads, **preds
                )
                blocks = np.ones((heads, nq, nk), dtype=bool)
            else:
                lay = bsa.Layout.from_callback(cb, block, blocks=blocks, **preds)
            want = cm.blocks_mask(blocks, block, callback=cb, **preds)
        _check(lay, want)
