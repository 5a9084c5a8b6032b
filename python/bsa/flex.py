"""FlexAttention's ``BlockMask`` as a ``bsa.Layout`` (``Layout.from_block_mask``).

A BlockMask lists, per (batch, head, query block), the key blocks to visit:
``full_kv_num_blocks``/``full_kv_indices`` those every element of which is
kept, ``kv_num_blocks``/``kv_indices`` the partial ones, where ``mask_mod``
decides element by element (without ``full_kv_*`` every listed block is
partial).  A bsa layout holds exactly that: per head, kept blocks that are
full or partial with a bitmask.  So the conversion is exact: the partial
blocks' bits come from evaluating ``mask_mod`` on them (vmapped, as flex
does), the full ones are full, the rest are masked.

What a bsa layout cannot say is refused, never approximated:

* one block size for queries and keys, sequence lengths that are multiples
  of it (flex's last partial block has no bsa equivalent);
* no batch dimension: a BlockMask whose tables or partial-block bits differ
  across its batch raises;
* flex calls ``mask_mod`` with the real batch and head indices even where
  the BlockMask broadcasts (B or H = 1).  So a ``mask_mod`` that reads ``h``
  on a head-broadcast mask needs ``heads=`` (the attention's query heads:
  every head is evaluated, giving a per-head layout), and one that reads
  ``b`` needs ``batch=`` (to check that every batch entry agrees).  Whether
  it reads them is found by tracing it once (make_fx): an input with no use
  in the graph is not read.
"""

import ctypes

import numpy as np
import torch

from . import _lib
from ._lib import BsaError
from .layout import Layout

_CHUNK = 1 << 20  # mask_mod evaluations per vmap call


def _block_size(bm):
    bs = bm.BLOCK_SIZE
    if isinstance(bs, int):
        return bs, bs
    return int(bs[0]), int(bs[1])


def _seq_lengths(bm, bq, bk):
    lengths = getattr(bm, "seq_lengths", None)
    if lengths is not None:
        return int(lengths[0]), int(lengths[1])
    return bm.kv_num_blocks.shape[-1] * bq, bm.kv_indices.shape[-1] * bk


def _tables(num, idx, nq, nk, what):
    """bool [B, H, nq, nk] of the blocks that (num, idx) list."""
    num = num[..., :nq].to("cpu", torch.int64)
    idx = idx[..., :nq, :].to("cpu", torch.int64)
    if num.shape[-1] < nq:
        raise ValueError(
            f"{what} covers {num.shape[-1]} query blocks, the BlockMask's sequence {nq}"
        )
    valid = torch.arange(idx.shape[-1]) < num[..., None]
    bad = valid & ((idx < 0) | (idx >= nk))
    if bad.any():
        raise ValueError(f"{what} lists key blocks outside 0..{nk - 1}")
    m = torch.zeros(idx.shape[:-1] + (nk + 1,), dtype=torch.bool)
    m.scatter_(-1, torch.where(valid, idx, nk), True)  # unlisted slots land in column nk
    return m[..., :nk]


def _reads_batch_head(mask_mod, device):
    """(reads b, reads h): whether mask_mod's traced graph uses them.  Traced
    under vmap, as flex runs it (indexing a tensor with the 0-d index then
    becomes an index op instead of a data-dependent read)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    z = [torch.zeros(2, dtype=torch.int32, device=device) for _ in range(4)]
    try:
        g = make_fx(torch.vmap(mask_mod))(*z)
    except Exception:  # noqa: BLE001 - untraceable: assume it reads both
        return True, True
    ph = [n for n in g.graph.nodes if n.op == "placeholder"]
    if len(ph) != 4:
        return True, True
    return len(ph[0].users) > 0, len(ph[1].users) > 0


def _bits(mask_mod, b, h, blocks, block, device):
    """bool [P, block, block]: mask_mod on the partial blocks (qb, kb) of one
    (batch, head), evaluated element by element under vmap like flex does."""
    coords = torch.as_tensor(blocks, dtype=torch.int32, device=device).reshape(-1, 2)
    ar = torch.arange(block, dtype=torch.int32, device=device)
    q = (coords[:, 0, None, None] * block + ar[None, :, None]).expand(-1, block, block)
    k = (coords[:, 1, None, None] * block + ar[None, None, :]).expand(-1, block, block)
    q, k = q.reshape(-1), k.reshape(-1)
    fn = torch.vmap(mask_mod)
    out = []
    for s in range(0, q.numel(), _CHUNK):
        qs, ks = q[s : s + _CHUNK], k[s : s + _CHUNK]
        bs = torch.full_like(qs, b)
        hs = torch.full_like(qs, h)
        out.append(fn(bs, hs, qs, ks).to(torch.bool).cpu())
    return torch.cat(out).reshape(-1, block, block) if out else torch.zeros(0, block, block)


def layout_from_block_mask(block_mask, heads=None, batch=None):
    """The bsa.Layout that masks exactly as ``block_mask`` does (see the
    module doc); ``heads`` / ``batch``: the attention's query heads and
    batch, needed only where mask_mod reads h / b of a broadcast mask."""
    bm = block_mask
    for name in ("kv_num_blocks", "kv_indices", "BLOCK_SIZE"):
        if not hasattr(bm, name):
            raise TypeError(
                f"block_mask must be a torch.nn.attention.flex_attention.BlockMask, "
                f"got {type(bm).__name__}"
            )
    bq, bk = _block_size(bm)
    if bq != bk:
        raise ValueError(
            f"this BlockMask has query blocks of {bq} and key blocks of {bk}; a bsa layout "
            f"has one block size: build it with BLOCK_SIZE={bk} (create_block_mask(..., "
            f"BLOCK_SIZE={bk}))"
        )
    block = bq
    q_len, kv_len = _seq_lengths(bm, bq, bk)
    if q_len % block or kv_len % block:
        raise ValueError(
            f"sequence lengths {q_len} x {kv_len} are not multiples of the block size {block}: "
            f"a bsa layout covers whole blocks (pad the sequences, or build the layout with "
            f"Layout.from_callback)"
        )
    nq, nk = q_len // block, kv_len // block
    device = bm.kv_indices.device

    partial = _tables(bm.kv_num_blocks, bm.kv_indices, nq, nk, "kv_num_blocks/kv_indices")
    if bm.full_kv_num_blocks is not None:
        full = _tables(
            bm.full_kv_num_blocks, bm.full_kv_indices, nq, nk, "full_kv_num_blocks/indices"
        )
        if full.shape != partial.shape:
            raise ValueError(
                f"full_kv_* tables cover {tuple(full.shape[:2])} (batch, heads), kv_* tables "
                f"{tuple(partial.shape[:2])}"
            )
        both = (full & partial).nonzero()
        if len(both):
            b, h, qb, kb = both[0].tolist()
            raise ValueError(
                f"block (batch {b}, head {h}, query block {qb}, key block {kb}) is listed as "
                f"both full and partial: flex would attend to it twice"
            )
    else:
        full = torch.zeros_like(partial)

    mask_mod = getattr(bm, "mask_mod", None)
    from torch.nn.attention.flex_attention import noop_mask

    if mask_mod is None or mask_mod is noop_mask:
        full, partial = full | partial, torch.zeros_like(partial)  # noop: partial = full

    nb, nh = partial.shape[:2]
    if nb > 1 and not (
        bool((partial == partial[:1]).all()) and bool((full == full[:1]).all())
    ):
        raise ValueError(
            f"this BlockMask differs across its batch of {nb}; a bsa layout is the same for "
            f"every batch entry (make one layout per batch entry, or a BlockMask with B=1)"
        )
    partial, full = partial[0], full[0]  # [H, nq, nk]
    if heads is not None and nh > 1 and int(heads) != nh:
        raise ValueError(f"heads={heads}, but the BlockMask has {nh} heads")

    bits = {}  # (layout head, qb, kb) -> uint8 [block*block] of a partial block
    out_heads = nh
    if partial.any():
        reads_b, reads_h = _reads_batch_head(mask_mod, device)
        if nh == 1 and reads_h:
            if heads is None:
                raise ValueError(
                    "mask_mod reads the head index h but the BlockMask is broadcast over heads "
                    "(H=1), and flex evaluates it per query head: pass heads= (the attention's "
                    "query heads) so that every head's mask is evaluated"
                )
            out_heads = int(heads)
        batches = [0]
        if reads_b:
            n = nb if nb > 1 else batch
            if n is None:
                raise ValueError(
                    "mask_mod reads the batch index b, but a bsa layout is the same for every "
                    "batch entry: pass batch= (the attention's batch) to check that all "
                    "entries agree, or use a mask_mod that does not read b"
                )
            batches = range(int(n))
        for h in range(out_heads):
            th = h if nh > 1 else 0
            blocks = partial[th].nonzero().tolist()
            first = None
            for b in batches:
                got = _bits(mask_mod, b, h, blocks, block, device)
                if first is None:
                    first = got
                elif not torch.equal(first, got):
                    raise ValueError(
                        f"mask_mod gives head {h} a different mask for batch entry {b} than "
                        f"for batch entry {batches[0]}; a bsa layout is the same for every "
                        f"batch entry"
                    )
            for (qb, kb), m in zip(blocks, first):
                if m.any():  # an all-zero partial block is no block
                    bits[(h, qb, kb)] = np.ascontiguousarray(m.numpy(), dtype=np.uint8).ravel()

    kept = np.zeros((out_heads, nq, nk), dtype=np.uint8)
    for h in range(out_heads):
        kept[h] = full[h if nh > 1 else 0].numpy()
    for h, qb, kb in bits:
        kept[h, qb, kb] = 1
    if not bits:
        return Layout.from_blocks(kept, block)
    return _with_bits(kept, bits, block)


def _with_bits(kept, bits, block):
    """A Layout from a kept-block matrix plus the partial blocks' bits (kept
    blocks without bits are full), through bsa_layout_create_callback.  Only
    the partial blocks' bits are stored, for the other contexts' builds."""
    heads, nq, nk = kept.shape
    desc = _lib.LayoutDesc(int(block), heads, nq, nk, 0, 0, 0)
    nbytes = block * block

    def trampoline(user, head, qb, kb, index, blk, mask):
        try:
            m = bits.get((head, qb, kb))
            if m is None:
                ctypes.memset(mask, 1, nbytes)
            else:
                ctypes.memmove(mask, m.ctypes.data, nbytes)
            return 0
        except BaseException:  # noqa: BLE001 - must not unwind through C
            return 1

    def build(c):
        cfunc = _lib.MASK_CALLBACK(trampoline)
        handle = ctypes.c_void_p()
        status = _lib.lib.bsa_layout_create_callback(
            c,
            ctypes.byref(handle),
            ctypes.byref(desc),
            kept.ctypes.data_as(ctypes.c_void_p),
            cfunc,
            None,
        )
        if status != _lib.SUCCESS:
            raise BsaError(status, _lib.last_error(), "bsa_layout_create_callback")
        return handle.value

    return Layout(build, dict(kind="block_mask", block=block, heads=heads))
