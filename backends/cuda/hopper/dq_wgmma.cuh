/*
 * The Hopper dQ kernel (sm_90a): the mma.sync dq_kernel's work on wgmma,
 * with the forward's block structure (fwd_wgmma.cuh): NWG warpgroups of 64
 * query rows walk the merged key lists of their tiles.
 *
 * Per key tile and warpgroup: S = Q K^T and dP = dO V^T (m64n64k16, all
 * four operands from swizzled shared tiles, one commit group), then
 * P = exp2(S scale log2(e) - lse log2(e)) and dS = P (dP - delta) in
 * registers, then dQ += dS K (m64nDk16, dS from registers, K read
 * MN-major).  As in the forward, the dS K product of a tile runs during the
 * next tile's element-wise work, so its K stage is held one iteration more.
 * dQ is scaled once at the end.  Deterministic: each block owns its rows.
 * GATHER: gathered key tiles, as in the forward.
 */
#ifndef BSA_CUDA_HOPPER_DQ_WGMMA_CUH
#define BSA_CUDA_HOPPER_DQ_WGMMA_CUH

#include "wgmma.cuh"

namespace bsa_cuda
{
namespace hopper
{

/* K/V stages of dQ: Q and dO tiles take the room of the fourth */
constexpr int kDqStages = 3;

template <int DP, int NWG> constexpr size_t dq_smem_bytes()
{
    /* Q and dO (NWG tiles each) + the K and V stages, + alignment slack */
    return (size_t)(2 * NWG + 2 * kDqStages) * kTile * DP * 2 + 1024;
}

template <typename T, int DP, int NWG, bool FEAT, bool GATHER>
__global__ void __launch_bounds__(NWG *kWarpgroup, 1) dq_wgmma_kernel(const bsa_cuda_params p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int TE = kTile * DP, NT = NWG * kWarpgroup;
    constexpr int ST = kDqStages;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = aligned_smem<T>(smem_raw);
    T *sO = sQ + NWG * TE; /* dO */
    T *sK = sO + NWG * TE; /* ST stages */
    T *sV = sK + ST * TE;

    const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
    const int wg = warp / 4, vw = warp & 3;
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
    const T *dout = seg_base<const T>(p.dout, p.o_s, sv, h, false);
    T *dq = seg_base<T>(p.dq, p.q_s, sv, h, false);
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
    for (int w = 0; w < NWG; ++w) {
        ld.load(sQ + w * TE, q, p.q_s[2], (qa + w) * kTile, sv.len_q, p.dim, p.stride_perm);
        ld.load(sO + w * TE, dout, p.o_s[2], (qa + w) * kTile, sv.len_q, p.dim_v, p.stride_perm);
    }
    /* an empty walk still fills stage 0 (zeros): the last dS K product
     * reads it with dS = 0 */
    walk_step cur = take_step(walk);
    /* (one call with selected arguments: two calls cost the natural-tile
     * kernels 2-3 registers) */
    load_kv(0, cur.ok ? cur.kt : (sv.len_k + kTile - 1) / kTile, cur.ok ? kgroup(cur.kt) : nullptr);
    cp_async_commit();

    const int qt = wg ? qb : qa;
    float loff[kRows], dl[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int rr = qt * kTile + vw * 16 + row(lane, r);
        loff[r] = -CUDART_INF_F;
        dl[r] = 0.f;
        if (qt < p.n_qt && rr < sv.len_q) {
            int64_t idx = sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q);
            loff[r] = p.loff[idx];
            dl[r] = p.delta[idx];
        }
    }

    float acc[elems<DP>()], s[elems<kTile>()], dp[elems<kTile>()];
    zero<elems<DP>()>(acc);
    zero<elems<kTile>()>(s);
    zero<elems<kTile>()>(dp);
    uint32_t pa[kTile / 16][4]; /* dS of the previous tile, A fragments */
    zero_frags<kTile / 4>(&pa[0][0]);
    int pend_stage = 0;
    /* descriptors: byte offsets from the tiles' base (one add each) */
    constexpr uint32_t TB = TE * 2;
    const desc_base dkm(sQ, 16), dmn(sQ, kTile * 128);
    const uint32_t off_q = wg * TB, off_o = (NWG + wg) * TB, off_k = 2 * NWG * TB,
                   off_v = (2 * NWG + ST) * TB;
    auto issue_dq = [&](int stage) {
        pin<elems<DP>()>(acc);
        pin<kTile / 4>(&pa[0][0]);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
            wgmma_rs<T, DP>(acc, pa[kk], dmn.mnmajor(off_k + stage * TB, kk));
        wgmma_commit();
    };

    for (int it = 0; cur.ok; ++it) {
        const int kt = cur.kt, y = wg ? cur.yb : cur.ya, stage = it % ST;
        /* tile it has landed; every warp is past iteration it - 1, so the
         * stage of tile it - 2 is free for tile it + 1 */
        cp_async_wait<0>();
        fence_proxy_async();
        __syncthreads();
        pin<elems<kTile>()>(s);
        pin<elems<kTile>()>(dp);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < DP / 16; ++kk)
            wgmma_ss_n64<T>(s, dkm.kmajor(off_q, kk), dkm.kmajor(off_k + stage * TB, kk), kk);
#pragma unroll
        for (int kk = 0; kk < DP / 16; ++kk)
            wgmma_ss_n64<T>(dp, dkm.kmajor(off_o, kk), dkm.kmajor(off_v + stage * TB, kk), kk);
        wgmma_commit();
        issue_dq(pend_stage);
        const walk_step nx = take_step(walk);
        if (nx.ok)
            load_kv((it + 1) % ST, nx.kt, kgroup(nx.kt));
        cp_async_commit();
        wgmma_wait<1>(); /* S and dP are done, dQ may still run */
        pin<elems<kTile>()>(s);
        pin<elems<kTile>()>(dp);
        const bool comp = NWG == 1 || y != kNone;
        if (comp) {
            if (y >= 0)
                apply_mask<false>(s, p, p.sub + (int64_t)y * p.ns * p.ns, qt * kTile, kt * kTile,
                                  vw, lane, kgroup(kt));
            if (FEAT && tile_needs_cut(p, sv, kgroup(kt), kt))
                apply_key_cut<false>(s, p, sv, kgroup(kt), kt, vw, lane);
#pragma unroll
            for (int e = 0; e < elems<kTile>(); ++e)
                s[e] = prob(s[e], p.scale_log2, loff[slot(e)]) * (dp[e] - dl[slot(e)]);
        }
        wgmma_wait<0>();
        pin<elems<DP>()>(acc);
        pin<kTile / 4>(&pa[0][0]);
        using tr = dtype_traits<T>;
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                pa[kk][i] = comp ? tr::pack(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]) : 0u;
        pend_stage = stage;
        cur = nx;
    }
    cp_async_wait<0>(); /* (an empty walk's zero tile) */
    fence_proxy_async();
    __syncthreads();
    issue_dq(pend_stage);
    wgmma_wait<0>();
    pin<elems<DP>()>(acc);
    __syncthreads(); /* the K/V stages are reused for the output below */

    float mul[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        mul[r] = p.scale;
    if (qt < p.n_qt)
        store_rows<DP>(acc, mul, wg ? sV : sK, dq, p.q_s[2], qt * kTile, sv.len_q, p.dim,
                       p.stride_perm, vw, lane);
#endif
}

} // namespace hopper
} // namespace bsa_cuda

#endif
