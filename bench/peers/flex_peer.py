#!/usr/bin/env python3
"""Peer timings for bench/gpu/run.sh: PyTorch FlexAttention (BlockMask built
from the same element mask as bsa's layout, its default block size 128) and
scaled_dot_product_attention (its flash backend, FlashAttention-2, and its
cuDNN backend, each alone) for dense/causal, fp16,
batch * time = 65536 tokens, same shapes as bench/gpu/gpu_bench.c.

One JSON line per (config, peer) on stdout.  Give one config name as the
argument to run only it (bench/gpu/run.sh runs one process per config, so
that memory held by one config's compiled kernels cannot starve the next).  PyTorch exists only on the GPU
machine; the library never depends on it.

Element masks (natural time order; the closed forms of the seed patterns,
which tests/test_layouts.c checks bsa's layouts against):
  all      k <= q
  local    0 <= q - k < L
  strided  k <= q and (q - k) % L == 0
  fixed    k <= q and (q // L == k // L or (k // B) % S == S - 1 - h % nv)
           (vertsize 1, S = L / B)
"strided-permuted" gives FlexAttention the permuted tensors and the mask
in permuted order (its best case: the mask is then block-structured);
the permutation itself is not timed.

Beyond the seed: "gqa-all-d128" (causal, 16 query heads over 4 kv heads:
FlexAttention and SDPA with enable_gqa) and "varlen-all-d128" (14 packed
sequences of VARLEN_LENGTHS, causal within each: FlexAttention on one
65536-token row with the document-causal mask, the usual way to run packed
sequences through it).
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from triton.testing import do_bench

TOKENS = 65536
# bench/gpu/gpu_bench.c's varlen_lengths
VARLEN_LENGTHS = [8192, 1000, 4096, 537, 6144, 2048, 3000, 7168, 5000, 8192, 1500, 4659, 8000,
                  6000]
flex = torch.compile(flex_attention, dynamic=False)
dev = torch.cuda.get_device_name(0)


def bench(fn, grads):
    """median ms of fwd, and of fwd+bwd"""
    with torch.no_grad():  # the peer's best case: nothing saved for backward
        fwd = do_bench(fn, warmup=25, rep=100, return_mode="median")

    def fb():
        out = fn()
        out.backward(grads)

    both = do_bench(fb, warmup=25, rep=100, return_mode="median", grad_to_none=None)
    return fwd, both


def inputs(b, h, t, d, hkv=None):
    mk = lambda hh: (torch.rand(b, hh, t, d, device="cuda", dtype=torch.float16) * 2 - 1)
    hkv = hkv or h
    q, k, v = (mk(hh).requires_grad_(True) for hh in (h, hkv, hkv))
    return q, k, v, mk(h)


def emit(name, peer, fwd, both, extra=None):
    row = {"device": dev, "name": name, "peer": peer, "fwd_ms": round(fwd, 4),
           "fwdbwd_ms": round(both, 4)}
    if extra:
        row.update(extra)
    print(json.dumps(row), flush=True)


def block_mask(mask_mod, h, t, per_head, bs=128):
    """FlexAttention's BlockMask of an element mask, as create_block_mask
    builds it (partial blocks run mask_mod, full blocks skip it, empty
    blocks are skipped), evaluated one 128-row strip at a time: the eager
    create_block_mask asked for 64 GiB on the per-head fixed mask at
    T=16384 and the compiled one took over 150 s."""
    nb = t // bs
    hh = h if per_head else 1
    idx = torch.arange(t, device="cuda")
    heads = torch.arange(hh, device="cuda")[:, None, None]
    full = torch.zeros(hh, nb, nb, dtype=torch.bool, device="cuda")
    part = torch.zeros_like(full)
    for qb in range(nb):
        m = mask_mod(None, heads, idx[qb * bs:(qb + 1) * bs][None, :, None], idx[None, None, :])
        m = m.expand(hh, bs, t).reshape(hh, bs, nb, bs)
        anyk = m.any(dim=3).any(dim=1)
        allk = m.all(dim=3).all(dim=1)
        full[:, qb] = allk
        part[:, qb] = anyk & ~allk

    def lists(sel):
        num = sel.sum(-1).to(torch.int32)[None]
        order = torch.argsort((~sel).to(torch.int8), dim=-1, stable=True).to(torch.int32)[None]
        return num, order

    kv_num, kv_idx = lists(part)
    full_num, full_idx = lists(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=bs,
                                    mask_mod=mask_mod)


def run_flex(name, mask_mod, h, t, d, per_head, permute=None, hkv=None):
    b = TOKENS // t
    q, k, v, do = inputs(b, h, t, d, hkv)
    bm = block_mask(mask_mod, h, t, per_head)
    gqa = hkv is not None and hkv != h
    fn = lambda: flex(q, k, v, block_mask=bm, enable_gqa=gqa)
    fwd, both = bench(fn, do)
    emit(name, "flex" if permute is None else "flex-permuted", fwd, both,
         {"flex_block_sparsity": round(float(bm.sparsity()), 2)})
    del q, k, v, do, bm
    torch.cuda.empty_cache()


SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


def run_sdpa(name, h, t, d, causal, hkv=None, backend="flash"):
    """SDPA on one backend alone: "flash" (FlashAttention-2) or "cudnn"
    (cuDNN's fused attention, the fastest dense kernel on Hopper)."""
    b = TOKENS // t
    q, k, v, do = inputs(b, h, t, d, hkv)
    gqa = hkv is not None and hkv != h
    with sdpa_kernel([SDPA_BACKENDS[backend]]):
        fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
        fwd, both = bench(fn, do)
    emit(name, f"sdpa-{backend}" + ("-causal" if causal else "-dense"), fwd, both)
    del q, k, v, do
    torch.cuda.empty_cache()


def guarded(fn, *a, **k):
    """one failing peer config (e.g. out of memory) must not stop the others"""
    try:
        fn(*a, **k)
    except Exception as e:  # noqa: BLE001
        print(f"peer {a[0]} failed: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
        torch.cuda.empty_cache()


def main():
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    causal = lambda b, h, q, k: q >= k

    # one configuration by its exact name ("all-d128" is not also
    # "gqa-all-d128"), or every one when none is named
    def want(n):
        return not only or only == n

    for name, h, d in (("all-d128", 8, 128), ("all-d64", 16, 64)):
        if want(name):
            guarded(run_flex, name, causal, h, 8192, d, False)
            for backend in SDPA_BACKENDS:
                guarded(run_sdpa, name, h, 8192, d, True, backend=backend)
                guarded(run_sdpa, name, h, 8192, d, False, backend=backend)
    # causal at T = 16384 (batch 4): only when named, not in the run of every
    # configuration
    for name, h, d in (("all-d128-t16k", 8, 128), ("all-d64-t16k", 16, 64)):
        if only == name:
            guarded(run_flex, name, causal, h, 16384, d, False)
            for backend in SDPA_BACKENDS:
                guarded(run_sdpa, name, h, 16384, d, True, backend=backend)

    if want("strided-L128-b32"):
        L, t = 128, 16384
        bt = t // L

        def strided(b, h, q, k):
            return (q >= k) & ((q - k) % L == 0)

        def nat(r):
            return (r % bt) * L + r // bt

        def strided_perm(b, h, q, k):
            return strided(b, h, nat(q), nat(k))

        guarded(run_flex, "strided-L128-b32", strided, 16, t, 64, False)
        guarded(run_flex, "strided-L128-b32", strided_perm, 16, t, 64, False, permute=True)

    if want("fixed-L128-b32"):
        L, B, nv, t = 128, 32, 4, 16384
        S = L // B

        def fixed(b, h, q, k):
            return (k <= q) & ((q // L == k // L) | ((k // B) % S == S - 1 - h % nv))

        guarded(run_flex, "fixed-L128-b32", fixed, 16, t, 64, True)

    if want("gqa-all-d128"):
        guarded(run_flex, "gqa-all-d128", causal, 16, 8192, 128, False, hkv=4)
        for backend in SDPA_BACKENDS:
            guarded(run_sdpa, "gqa-all-d128", 16, 8192, 128, True, hkv=4, backend=backend)

    if want("varlen-all-d128"):
        assert sum(VARLEN_LENGTHS) == TOKENS
        doc = torch.repeat_interleave(
            torch.arange(len(VARLEN_LENGTHS), device="cuda"),
            torch.tensor(VARLEN_LENGTHS, device="cuda"))

        def doc_causal(b, h, q, k):
            return (doc[q] == doc[k]) & (q >= k)

        guarded(run_flex, "varlen-all-d128", doc_causal, 8, TOKENS, 128, False)

    if want("local-L256-b64"):
        def local(b, h, q, k):
            return (q >= k) & (q - k < 256)

        guarded(run_flex, "local-L256-b64", local, 16, 8192, 64, False)


if __name__ == "__main__":
    main()
