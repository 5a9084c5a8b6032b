/*
 * The Hopper forward (sm_90a): the tensor-core forward of tc_kernels.cuh
 * with its products on wgmma, one warpgroup (4 warps) per 64-row query
 * tile.  NWG = 2 warpgroups share the K/V tiles of two consecutive query
 * tiles, walking the merge of their key lists (as fwd2_kernel does); NWG = 1
 * is the 64-row kernel for sparse rows.
 *
 * Per key tile and warpgroup: S = Q K^T (m64n64k16, Q and K from swizzled
 * shared tiles), masks and the online softmax in registers (the tile
 * interface's helpers: the wgmma accumulator has the same element order),
 * then O += P V (m64nDk16, P from registers, V read MN-major).  The P V
 * product of one key tile is issued behind the next tile's S product and
 * runs during its softmax (FlashAttention-3's intra-warpgroup overlap);
 * K/V tiles stream in with cp.async, issued behind the products, one or two
 * tiles ahead; one barrier a tile.
 * GATHER: the layout's key tiles are gathered (several non-adjacent key
 * blocks, bsa_cuda_layout::kgrp), compiled apart so that natural tiles
 * carry none of its code; head dims 64 and 128; f16 and bf16.
 */
#ifndef BSA_CUDA_HOPPER_FWD_WGMMA_CUH
#define BSA_CUDA_HOPPER_FWD_WGMMA_CUH

#include "wgmma.cuh"

namespace bsa_cuda
{
namespace hopper
{

/* minimum blocks per SM (register cap) of each shape, measured on an H200
 * (bench/NOTES.md, v12-v14): two blocks of two warpgroups at head dim 64
 * (some registers spilled) beat one without spills */
template <int DP, int NWG> constexpr int min_blocks()
{
    return NWG == 2 ? (DP <= 64 ? 2 : 1) : (DP <= 64 ? 4 : 2);
}

template <int DP, int NWG> constexpr size_t smem_bytes()
{
    /* Q (NWG tiles) + the K and V stages, + slack to align to 1024 bytes */
    return (size_t)(NWG + 2 * stages<NWG>()) * kTile * DP * 2 + 1024;
}

template <typename T, int DP, int NWG, bool FEAT, bool GATHER>
__global__ void __launch_bounds__(NWG *kWarpgroup, (min_blocks<DP, NWG>()))
    fwd_wgmma_kernel(const bsa_cuda_params p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int TE = kTile * DP, NT = NWG * kWarpgroup;
    constexpr int ST = stages<NWG>(), PD = ST - 2; /* stages, tiles loading ahead */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = aligned_smem<T>(smem_raw);
    T *sK = sQ + NWG * TE; /* ST stages */
    T *sV = sK + ST * TE;

    const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
    const int wg = warp / 4, vw = warp & 3; /* warpgroup; warp within it: its 16 rows */
    const int bh = grid_bh(), sg = bh / p.heads;
    if (sg >= p.n_seg)
        return;
    const row_job job = row_job_of<NWG, FEAT>(p, bh);
    const int h = job.h, qa = job.qa, qb = job.qb;
    const seg_view sv = seg_at<FEAT>(p, sg);
    if (qa * kTile >= sv.len_q)
        return;
    const T *q = seg_base<const T>(p.q, p.q_s, sv, h, false);
    const T *k = seg_base<const T>(p.k, p.k_s, sv, job.kvh, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, job.kvh, true);
    T *o = seg_base<T>(p.o_out, p.o_s, sv, h, false);
    merged_lists walk = merged_lists_of<FEAT, GATHER>(p, sv, job.lh, qa, qb);

    const sw_loader<DP, NT> ld(tid);
    auto kgroup = [&](int kt) -> const int32_t * {
        return GATHER ? key_group(p, job.lh, kt) : nullptr;
    };
    /* grp: kgroup(kt), or null for the zero tile past the keys */
    auto load_kv = [&](int stage, int kt, const int32_t *grp) {
        ld.load(sK + stage * TE, k, p.k_s[2], kt * kTile, sv.len_k, p.dim, p.stride_perm, grp,
                p.log2g);
        ld.load(sV + stage * TE, v, p.v_s[2], kt * kTile, sv.len_k, p.dim_v, p.stride_perm, grp,
                p.log2g);
    };
#pragma unroll
    for (int w = 0; w < NWG; ++w)
        ld.load(sQ + w * TE, q, p.q_s[2], (qa + w) * kTile, sv.len_q, p.dim, p.stride_perm);
    /* tiles 0 .. PD - 1 in flight, one commit group each (Q with the first).
     * An empty walk still fills stage 0 (with zeros: a tile past the keys),
     * since the last P V product reads it, with P = 0: 0 times whatever
     * the shared memory held could be NaN. */
    walk_step cur = take_step(walk), ahead = cur;
    /* (one call with selected arguments: two calls cost the natural-tile
     * kernels 2-3 registers) */
    load_kv(0, cur.ok ? cur.kt : (sv.len_k + kTile - 1) / kTile, cur.ok ? kgroup(cur.kt) : nullptr);
    cp_async_commit();
    if constexpr (PD == 2) {
        ahead = take_step(walk);
        if (ahead.ok)
            load_kv(1, ahead.kt, kgroup(ahead.kt));
        cp_async_commit();
    }

    const int qt = wg ? qb : qa;
    float acc[elems<DP>()], s[elems<kTile>()];
    zero<elems<DP>()>(acc);
    zero<elems<kTile>()>(s);
    float m[kRows], l[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        m[r] = -CUDART_INF_F, l[r] = 0.f;

    /* P of the previous key tile (A fragments) waiting for its P V product,
     * which runs during this tile's softmax; zeros when there is none.  The
     * products are issued and awaited on every iteration, whatever the
     * warpgroup's list holds: ptxas serialises wgmma whose issue or wait
     * sits in a branch it cannot prove uniform (C7518). */
    uint32_t pa[kTile / 16][4];
    zero_frags<kTile / 4>(&pa[0][0]);
    int pend_stage = 0;
    /* descriptors: byte offsets from the tiles' base (one add each) */
    constexpr uint32_t TB = TE * 2;
    const desc_base dkm(sQ, 16), dmn(sQ, kTile * 128);
    const uint32_t off_q = wg * TB, off_k = NWG * TB, off_v = (NWG + ST) * TB;
    auto issue_pv = [&](int stage) {
        pin<elems<DP>()>(acc);
        pin<kTile / 4>(&pa[0][0]);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
            wgmma_rs<T, DP>(acc, pa[kk], dmn.mnmajor(off_v + stage * TB, kk));
        wgmma_commit();
    };

    for (int it = 0; cur.ok; ++it) {
        const int kt = cur.kt, y = wg ? cur.yb : cur.ya, stage = it % ST;
        /* tile it has landed, and every warp is past iteration it - 1, so
         * the stage of tile it - 2 is free for tile it + PD */
        cp_async_wait<PD - 1>();
        fence_proxy_async();
        __syncthreads();
        /* S = Q K^T (discarded when this warpgroup's list lacks the tile) */
        pin<elems<kTile>()>(s);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < DP / 16; ++kk)
            wgmma_ss_n64<T>(s, dkm.kmajor(off_q, kk), dkm.kmajor(off_k + stage * TB, kk), kk);
        wgmma_commit();
        issue_pv(pend_stage);
        /* while the products run: tile it + PD starts loading */
        const walk_step nx = take_step(walk);
        if (nx.ok)
            load_kv((it + PD) % ST, nx.kt, kgroup(nx.kt));
        cp_async_commit();
        wgmma_wait<1>(); /* S is done, P V may still run */
        pin<elems<kTile>()>(s);
        const bool comp = NWG == 1 || y != kNone;
        float alpha[kRows];
        if (comp) {
            if (y >= 0)
                apply_mask<false>(s, p, p.sub + (int64_t)y * p.ns * p.ns, qt * kTile, kt * kTile,
                                  vw, lane, kgroup(kt));
            if (FEAT && tile_needs_cut(p, sv, kgroup(kt), kt))
                apply_key_cut<false>(s, p, sv, kgroup(kt), kt, vw, lane);
            softmax_step(s, m, l, alpha, p.scale_log2);
        }
        wgmma_wait<0>();
        pin<elems<DP>()>(acc);
        pin<kTile / 4>(&pa[0][0]);
        using tr = dtype_traits<T>; /* P's fragments are the A operand as they lie */
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                pa[kk][i] = comp ? tr::pack(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]) : 0u;
        if (comp)
            scale_rows<DP>(acc, alpha);
        pend_stage = stage;
        if constexpr (PD == 2) {
            cur = ahead;
            ahead = nx;
        } else {
            cur = nx;
        }
    }
    cp_async_wait<0>(); /* (an empty walk's zero tile) */
    fence_proxy_async();
    __syncthreads();
    issue_pv(pend_stage);
    wgmma_wait<0>();
    pin<elems<DP>()>(acc);
    __syncthreads(); /* the K/V stages are reused for the output below */

    float inv[kRows];
    finish_rows(l, inv);
    if (qt < p.n_qt)
        store_rows<DP>(acc, inv, wg ? sV : sK, o, p.o_s[2], qt * kTile, sv.len_q, p.dim_v,
                       p.stride_perm, vw, lane);
    store_lse(p, sv, h, qt * kTile + vw * 16, m, l, lane, qt < p.n_qt);
#endif
}

} // namespace hopper
} // namespace bsa_cuda

#endif
