"""Layout.from_block_mask: FlexAttention BlockMasks (torch with flex) as bsa
layouts.  Element masks against closed forms written here (not against
mask_mod, not against the library), block counts (full / partial) against
the same closed forms, attention against flex_attention's own o and lse
(eager flex runs forward on the CPU; on a GPU backward too) and against the
float64 oracle, and every refusal with its reason.

No fixtures, no pytest decorators: run_all.py runs them without pytest.
"""

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from torch_reference import (  # noqa: E402
    SKIP,
    generator,
    lse_err,
    need_cuda,
    need_flex,
    oracle,
    randn,
    rel_err,
    tol,
    torch,
)

if torch is None:
    try:
        import pytest

        pytest.skip("torch is not installed", allow_module_level=True)
    except ImportError:
        pass

import numpy as np  # noqa: E402

import bsa  # noqa: E402
import bsa.functional  # noqa: E402

T = 256


def _flex():
    from torch.nn.attention import flex_attention as fa

    return fa


def _grid(t=T, s=T):
    return np.arange(t)[:, None], np.arange(s)[None, :]


# Each case: mask_mod, its closed form (numpy, per head h), BlockMask heads.
def _doc_ids(t=T):
    bounds = [0, 40, 41, 130, 200, t]  # documents of 40, 1, 89, 70 and 56 tokens
    ids = np.zeros(t, dtype=np.int64)
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        ids[a:b] = i
    return ids


def _cases(device="cpu"):
    doc = _doc_ids()
    doc_t = torch.tensor(doc, device=device)
    q, k = _grid()
    return {
        "causal window": (
            lambda b, h, qi, ki: (qi >= ki) & (qi - ki < 80),
            lambda h: (q >= k) & (q - k < 80),
            1,
        ),
        "document causal": (
            lambda b, h, qi, ki: (doc_t[qi] == doc_t[ki]) & (qi >= ki),
            lambda h: (doc[q] == doc[k]) & (q >= k),
            1,
        ),
        "prefix LM": (
            lambda b, h, qi, ki: (ki < 72) | (qi >= ki),
            lambda h: (k < 72) | (q >= k),
            1,
        ),
        "per-head dilation (H=4)": (
            lambda b, h, qi, ki: (qi >= ki) & ((qi - ki) % (h + 2) == 0),
            lambda h: (q >= k) & ((q - k) % (h + 2) == 0),
            4,
        ),
    }


def _block_counts(masks, block):
    """(kept blocks, partial blocks) of element masks [H, T, S]: a block is
    kept if any element is, partial if some but not all are."""
    h, t, s = masks.shape
    tiles = masks.reshape(h, t // block, block, s // block, block).sum(axis=(2, 4))
    kept = int((tiles > 0).sum())
    return kept, int(((tiles > 0) & (tiles < block * block)).sum())


def _check_layout(lay, want, block):
    assert lay.heads == want.shape[0], (lay.heads, want.shape)
    for h in range(lay.heads):
        got = lay.element_mask(h)
        bad = np.argwhere(got != want[h])
        assert not len(bad), f"head {h}: {len(bad)} elements differ, first (q, k) {bad[0]}"
    kept, partial = _block_counts(want, block)
    assert lay.info.blocks_total == kept, (lay.info.blocks_total, kept)
    assert lay.info.partial_blocks == partial, (lay.info.partial_blocks, partial)


def _flex_fn(fa, compiled):
    """Eager flex (a dense reference that applies mask_mod everywhere and
    reads no block table: right for masks whose tables mask_mod implies, as
    create_block_mask's do) or compiled flex (its kernel, which visits the
    listed blocks only: needed where the tables say more than mask_mod)."""
    if not compiled:
        return fa.flex_attention
    torch._dynamo.reset()
    return torch.compile(fa.flex_attention, fullgraph=True)


def _flex_o_lse(fn, fa, q, k, v, bm, scale, lse=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex warns that it is unfused
        if not lse:
            return fn(q, k, v, block_mask=bm, scale=scale), None
        if hasattr(fa, "AuxRequest"):
            o, aux = fn(q, k, v, block_mask=bm, scale=scale, return_aux=fa.AuxRequest(lse=True))
            return o, aux.lse
        return fn(q, k, v, block_mask=bm, scale=scale, return_lse=True)


def _against_flex_and_oracle(
    device, dtype, bm, lay, want, heads=4, with_grad=False, compiled_flex=False
):
    fa = _flex()
    flex = _flex_fn(fa, compiled_flex)
    g = generator()
    shape = (2, heads, T, 64)
    q, k, v, do = (randn(g, shape, dtype, device) for _ in range(4))
    scale = 0.1
    # compiled flex on the CPU (torch 2.11) runs inference only, without lse
    cpu_kernel = compiled_flex and device == "cpu"
    o_f, lse_f = _flex_o_lse(flex, fa, q, k, v, bm, scale, lse=not cpu_kernel)
    leaves = [x.clone().requires_grad_(with_grad) for x in (q, k, v)]
    o, lse = bsa.attention(*leaves, lay, scale, return_lse=True)
    ref = oracle(q, k, v, want, scale, do)
    tl = tol(dtype, device)
    # flex computes in the inputs' precision too: both within the dtype's bound
    assert rel_err(o, ref[0]) < tl and rel_err(o_f, ref[0]) < tl
    assert rel_err(o, o_f.double().cpu().numpy()) < 2 * tl
    assert lse_err(lse, ref[1]) < 2e-3
    if lse_f is not None:  # flex's lse: natural log too
        assert lse_err(lse, lse_f.double().cpu().numpy()) < 2e-3
    if with_grad:
        o.backward(do)
        for a, w in zip(leaves, ref[2:]):
            assert rel_err(a.grad, w) < 4 * tl
        if device == "cpu":
            return  # flex has no backward on the CPU
        fl = [x.clone().requires_grad_() for x in (q, k, v)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flex(*fl, block_mask=bm, scale=scale).backward(do)
        for a, b in zip(leaves, fl):
            assert rel_err(a.grad, b.grad.double().cpu().numpy()) < 8 * tl


def _check_cases(device, dtype, block, with_grad):
    fa = _flex()
    for name, (mod, closed, nh) in _cases(device).items():
        print(f"  {name}, block {block}")
        bm = fa.create_block_mask(mod, 1, nh, T, T, device=device, BLOCK_SIZE=block)
        lay = bsa.Layout.from_block_mask(bm)
        want = np.stack([closed(h) for h in range(nh)])
        _check_layout(lay, want, block)
        _against_flex_and_oracle(device, dtype, bm, lay, want, with_grad=with_grad)


def test_cpu_block_masks_against_closed_forms_and_flex():
    need_flex()
    bsa.functional.set_poison(True)
    try:
        for block in (32, 64):
            _check_cases("cpu", torch.float32, block, with_grad=True)
    finally:
        bsa.functional.set_poison(False)


def test_cuda_block_masks_against_closed_forms_and_flex():
    need_flex()
    need_cuda()
    bsa.functional.set_poison(True)
    try:
        for dtype in (torch.float16, torch.bfloat16):
            _check_cases("cuda", dtype, 128 if dtype == torch.float16 else 64, with_grad=True)
    finally:
        bsa.functional.set_poison(False)


def test_cpu_from_kv_blocks():
    """BlockMask.from_kv_blocks: a random block matrix without full blocks,
    (a) with the default mask_mod (every listed block full) and (b) with a
    causal mask_mod, where the blocks above the diagonal hold no element and
    must not be kept."""
    need_flex()
    fa = _flex()
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    block, n = 32, T // 32
    blocks = rng.random((2, n, n)) < 0.4  # 2 heads
    blocks[:, np.arange(n), np.arange(n)] = True
    num = torch.tensor(blocks.sum(-1), dtype=torch.int32)[None]
    idx = torch.full((1, 2, n, n), 0, dtype=torch.int32)
    for h in range(2):
        for r in range(n):
            cols = np.flatnonzero(blocks[h, r])
            rng.shuffle(cols)  # flex does not need them sorted
            idx[0, h, r, : len(cols)] = torch.tensor(cols)
    dense = blocks.repeat(block, axis=1).repeat(block, axis=2)
    bm = fa.BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=block)
    lay = bsa.Layout.from_block_mask(bm)
    _check_layout(lay, dense, block)
    # eager flex would attend everywhere here (mask_mod is the default, all
    # true): the tables are the mask, as in flex's compiled kernel
    _against_flex_and_oracle("cpu", torch.float32, bm, lay, dense, heads=2, compiled_flex=True)

    bm = fa.BlockMask.from_kv_blocks(
        num, idx, BLOCK_SIZE=block, mask_mod=lambda b, h, q, k: q >= k
    )
    q, k = _grid()
    want = dense & (q >= k)[None]
    lay = bsa.Layout.from_block_mask(bm)
    _check_layout(lay, want, block)  # blocks_total counts only blocks with elements
    _against_flex_and_oracle("cpu", torch.float32, bm, lay, want, heads=2, compiled_flex=True)


def test_cpu_broadcast_mask_reading_h_or_b():
    """flex calls mask_mod with the real head / batch index even where the
    BlockMask broadcasts: a mask_mod that reads h needs heads=, one that
    reads b needs batch= (and must agree across it)."""
    need_flex()
    fa = _flex()
    mods = _cases()
    mod, closed, _ = mods["per-head dilation (H=4)"]
    bm = fa.create_block_mask(mod, 1, 1, T, T, device="cpu", BLOCK_SIZE=32)  # H broadcast
    try:
        bsa.Layout.from_block_mask(bm)
        raise AssertionError("a broadcast mask whose mask_mod reads h converted without heads=")
    except ValueError as e:
        assert "heads=" in str(e), e
    lay = bsa.Layout.from_block_mask(bm, heads=4)
    # the tables are head 0's (that is what flex runs with), the bits each head's
    tiles = np.stack([closed(0)]).reshape(1, T // 32, 32, T // 32, 32).any(axis=(2, 4))
    tables = tiles.repeat(32, axis=1).repeat(32, axis=2)
    want = np.stack([closed(h) for h in range(4)]) & tables
    _check_layout(lay, want, 32)
    _against_flex_and_oracle("cpu", torch.float32, bm, lay, want)

    q, k = _grid()

    def reads_b(b, h, qi, ki):
        return (qi >= ki) & ((qi - ki) < 50 + 0 * b)  # reads b, same mask for every b

    bm = fa.create_block_mask(reads_b, 1, 1, T, T, device="cpu", BLOCK_SIZE=32)
    try:
        bsa.Layout.from_block_mask(bm)
        raise AssertionError("a mask_mod that reads b converted without batch=")
    except ValueError as e:
        assert "batch=" in str(e), e
    _check_layout(bsa.Layout.from_block_mask(bm, batch=3), ((q >= k) & (q - k < 50))[None], 32)

    def differs_b(b, h, qi, ki):
        return (qi >= ki) & ((qi - ki) < 50 + 10 * b)

    bm = fa.create_block_mask(differs_b, 1, 1, T, T, device="cpu", BLOCK_SIZE=32)
    try:
        bsa.Layout.from_block_mask(bm, batch=2)
        raise AssertionError("a mask that differs across the batch converted")
    except ValueError as e:
        assert "batch entry" in str(e), e


def test_cpu_refusals():
    """What a bsa layout cannot represent raises, naming why."""
    need_flex()
    fa = _flex()

    def causal(b, h, q, k):
        return q >= k

    cases = [
        (lambda: fa.create_block_mask(causal, 1, 1, 200, 200, device="cpu", BLOCK_SIZE=32),
         "multiples of the block size"),
        (lambda: fa.create_block_mask(causal, 1, 1, T, T, device="cpu", BLOCK_SIZE=(32, 64)),
         "one block size"),
        (lambda: fa.create_block_mask(
            lambda b, h, q, k: (q >= k) & (k >= 64 * b), 2, 1, T, T, device="cpu",
            BLOCK_SIZE=32), "differs across its batch"),
    ]  # fmt: skip
    for make, why in cases:
        bm = make()
        try:
            bsa.Layout.from_block_mask(bm)
            raise AssertionError(f"converted; expected an error about {why!r}")
        except ValueError as e:
            assert why in str(e), (why, str(e))
    try:
        bsa.Layout.from_block_mask("not a block mask")
        raise AssertionError("converted a string")
    except TypeError as e:
        assert "BlockMask" in str(e)


def test_cuda_block_mask_on_device():
    """A BlockMask (and a mask_mod holding device tensors) on the GPU."""
    need_flex()
    need_cuda()
    fa = _flex()
    mod, closed, nh = _cases("cuda")["document causal"]
    bm = fa.create_block_mask(mod, 1, nh, T, T, device="cuda", BLOCK_SIZE=64)
    lay = bsa.Layout.from_block_mask(bm)
    _check_layout(lay, closed(0)[None], 64)


if __name__ == "__main__":
    from run_all import run_module

    sys.exit(run_module(sys.modules[__name__]))
