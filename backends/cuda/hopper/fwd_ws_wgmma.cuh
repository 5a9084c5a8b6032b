/*
 * The warp-specialised Hopper forward (sm_90a): fwd_wgmma_kernel's two
 * warpgroups of 64 query rows (the merged key lists of two query tiles),
 * with the K/V tiles brought in by a producer warpgroup through TMA loads,
 * at head dims 64 and 128, for problems without key lengths or packed
 * sequences (grouped-query heads are fine) on natural key tiles without the
 * strided permutation: the plans that the implementation list's entry
 * cuda-wgmma-sm90a-ws (backends/gpu/dispatch.c) accepts.
 *
 * In fwd_wgmma_kernel every thread issues its share of each tile's cp.async
 * loads and a block barrier a tile makes them visible, so both warpgroups
 * run in lockstep: their softmaxes coincide and so do their products.
 * Here one thread of a third warpgroup brings both Q tiles, walks the same
 * merged list and issues each tile's K and V boxes (TMA, zero-filled past
 * the keys) into a free stage, announced on that stage's `full` barrier;
 * each consumer thread waits on `full`, and arrives on the stage's `empty`
 * barrier once the products that read the stage have completed.  The
 * warpgroups no longer meet per tile and carry no load code (H200:
 * all-d128 forward 3.32 -> 2.46 ms; bench/NOTES.md, v29); their output
 * leaves by TMA stores too (v34).
 *
 * PRED: every mixed pair of the layout is its predicate over the whole
 * tile (tiles.cu, whole_tile_pred: causal and windowed layouts at blocks
 * of 64 and more), so masks are one interval a row (apply_pred_tile) and
 * the kernel carries none of apply_mask's code reads, which at head dim 64
 * also cost registers (local windows: forward -17%; v33).
 */
#ifndef BSA_CUDA_HOPPER_FWD_WS_WGMMA_CUH
#define BSA_CUDA_HOPPER_FWD_WS_WGMMA_CUH

#include "tma.cuh"
#include "wgmma.cuh"

namespace bsa_cuda
{
namespace hopper
{

/* K/V stages: the tile computed, the previous one (at head dim 128 its
 * P V product runs during this tile's softmax) and two the producer fills
 * ahead */
constexpr int kWsStages = 4;
/* Two consumer warpgroups and a producer warpgroup, which hands its
 * registers to the consumers (setmaxnreg; a lone producer warp would cap
 * every thread at 168 at head dim 128, and at 64 its ninth warp puts five
 * warps on a scheduler: 96 registers).  Head dim 128: one block per SM,
 * consumers at 240 registers.  Head dim 64: two blocks (one lost to the
 * two-block cp.async kernel: bench/NOTES.md, v29), consumers at 104. */
constexpr int kWsThreads = 3 * kWarpgroup;
template <int DP> constexpr int ws_min_blocks()
{
    return DP <= 64 ? 2 : 1;
}
template <int DP> constexpr int ws_consumer_regs()
{
    return DP <= 64 ? 104 : 240;
}
/* The P V product of a key tile issued behind the next tile's S product,
 * running during its softmax (FlashAttention-3's intra-warpgroup overlap),
 * at head dim 128.  At 64 the 104 registers do not hold a second tile's
 * fragments (ptxas serialises every wgmma: C7512): each tile's products
 * run in turn, and the SM's three other consumer warpgroups keep the
 * tensor cores busy meanwhile. */
template <int DP> constexpr bool ws_overlap()
{
    return DP > 64;
}

/* The output leaves as TMA stores of each warp's 16 rows (its share of
 * the warpgroup's accumulator), staged in its rows of the warpgroup's Q
 * tile: no barrier with another warp, and the copy loop's address work
 * (~100 instructions a warp) and row checks (the box is clipped at the
 * tensor's end) are the TMA unit's. */
constexpr int kWsStoreRows = 16;

template <int DP> constexpr size_t ws_smem_bytes()
{
    /* Q (two tiles), the K and V stages, the full and empty barriers and
     * the Q tiles' two, + slack to align to 1024 bytes */
    return (size_t)(2 + 2 * kWsStages) * kTile * DP * 2 + (2 * kWsStages + 2) * sizeof(uint64_t) +
           1024;
}

template <typename T, int DP, bool PRED>
__global__ void __launch_bounds__(kWsThreads, ws_min_blocks<DP>())
    fwd_ws_wgmma_kernel(const bsa_cuda_params p, const __grid_constant__ CUtensorMap tq,
                        const __grid_constant__ CUtensorMap tk,
                        const __grid_constant__ CUtensorMap tv,
                        const __grid_constant__ CUtensorMap to)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int NWG = 2, TE = kTile * DP, ST = kWsStages, NC = NWG * kWarpgroup;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = aligned_smem<T>(smem_raw);
    T *sK = sQ + NWG * TE; /* ST stages */
    T *sV = sK + ST * TE;
    uint64_t *full = reinterpret_cast<uint64_t *>(sV + ST * TE), *empty = full + ST;
    uint64_t *qfull = empty + ST; /* per warpgroup: its Q tile has landed */

    const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
    const int bh = grid_bh(), sg = bh / p.heads;
    if (sg >= p.n_seg)
        return;
    const row_job job = row_job_of<NWG, false>(p, bh);
    const int kvh = job.h / p.group; /* grouped-query heads share K/V */
    const seg_view sv = seg_at<false>(p, sg);
    if (job.qa * kTile >= sv.len_q)
        return;
    merged_lists walk = merged_lists_of<false, false>(p, sv, job.lh, job.qa, job.qb);
    if (tid == 0) {
#pragma unroll
        for (int s = 0; s < ST; ++s) {
            mbar_init(full + s, 1);
            mbar_init(empty + s, NC);
        }
        mbar_init(qfull, 1);
        mbar_init(qfull + 1, 1);
        mbar_init_fence();
    }
    __syncthreads(); /* the last block-wide barrier: the producer leaves below */

    if (warp >= 2 * 4) {
        setmaxnreg_dec<24>();
        /* the producer: tile it into stage it % ST once its previous tile
         * there (it - ST) is released; an empty walk still fills stage 0
         * with a zero tile (past the keys), which the last P V product
         * reads with P = 0 */
        if (warp == 2 * 4 && lane == 0) {
            /* each warpgroup's Q tile first (zeros past the sequence):
             * the consumers carry no load code at all */
#pragma unroll
            for (int w = 0; w < NWG; ++w) {
                mbar_arrive_tx(qfull + w, TE * (unsigned)sizeof(T));
#pragma unroll
                for (int cb = 0; cb < DP / 64; ++cb)
                    tma_load_4d(sQ + w * TE + cb * kTile * 64, &tq, qfull + w, cb * 64,
                                (w ? job.qb : job.qa) * kTile, job.h, sg);
            }
            const int kt_zero = (sv.len_k + kTile - 1) / kTile;
            for (int it = 0;; ++it) {
                const walk_step t = take_step(walk);
                if (!t.ok && it > 0)
                    break;
                const int s = it % ST;
                if (it >= ST)
                    mbar_wait(empty + s, (it / ST - 1) & 1);
                mbar_arrive_tx(full + s, 2 * TE * (unsigned)sizeof(T));
                const int row = (t.ok ? t.kt : kt_zero) * kTile;
#pragma unroll
                for (int cb = 0; cb < DP / 64; ++cb) {
                    tma_load_4d(sK + s * TE + cb * kTile * 64, &tk, full + s, cb * 64, row, kvh,
                                sg);
                    tma_load_4d(sV + s * TE + cb * kTile * 64, &tv, full + s, cb * 64, row, kvh,
                                sg);
                }
                if (!t.ok)
                    break;
            }
        }
        return;
    }

    setmaxnreg_inc<ws_consumer_regs<DP>()>();
    const int wg = warp / 4, vw = warp & 3; /* warpgroup; warp within it: its 16 rows */
    const int qt = wg ? job.qb : job.qa;
    mbar_wait(qfull + wg, 0);
    /* (not needed for the data: without this barrier ptxas hoists the
     * loop's parameter loads above the wait, and at head dim 64 spills
     * 4-220 bytes) */
    named_sync(1 + wg, kWarpgroup);

    float acc[elems<DP>()], s[elems<kTile>()];
    zero<elems<DP>()>(acc);
    zero<elems<kTile>()>(s);
    float m[kRows], l[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        m[r] = -CUDART_INF_F, l[r] = 0.f;
    constexpr bool OV = ws_overlap<DP>();
    /* P of the previous key tile, waiting for its P V product (OV; as in
     * fwd_wgmma_kernel: issued and awaited on every iteration), else of
     * this tile */
    uint32_t pa[kTile / 16][4];
    zero_frags<kTile / 4>(&pa[0][0]);
    int pend_stage = 0;
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

    walk_step cur = take_step(walk);
    const bool any = cur.ok;
    for (int it = 0; cur.ok; ++it) {
        const int kt = cur.kt, y = wg ? cur.yb : cur.ya, stage = it % ST;
        mbar_wait(full + stage, (it / ST) & 1);
        if constexpr (!OV && PRED) {
            if ((wg ? cur.yb : cur.ya) == kNone) {
                mbar_arrive(empty + stage);
                cur = take_step(walk);
                continue;
            }
        }
        /* S = Q K^T (discarded when this warpgroup's list lacks the tile) */
        pin<elems<kTile>()>(s);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < DP / 16; ++kk)
            wgmma_ss_n64<T>(s, dkm.kmajor(off_q, kk), dkm.kmajor(off_k + stage * TB, kk), kk);
        wgmma_commit();
        if constexpr (OV)
            issue_pv(pend_stage);
        const walk_step nx = take_step(walk);
        wgmma_wait<OV ? 1 : 0>(); /* S is done, P V may still run */
        pin<elems<kTile>()>(s);
        const bool comp = y != kNone;
        float alpha[kRows];
        if (comp) {
            if (y >= 0) {
                if constexpr (PRED)
                    apply_pred_tile(s, p.pred, qt * kTile, kt * kTile, vw, lane);
                else
                    apply_mask<false>(s, p, p.sub + (int64_t)y * p.ns * p.ns, qt * kTile,
                                      kt * kTile, vw, lane, nullptr);
            }
            softmax_step(s, m, l, alpha, p.scale_log2);
        }
        if constexpr (OV) {
            wgmma_wait<0>();
            pin<elems<DP>()>(acc);
            pin<kTile / 4>(&pa[0][0]);
            /* the previous tile's stage has been read by its last product */
            if (it > 0)
                mbar_arrive(empty + pend_stage);
        }
        using tr = dtype_traits<T>;
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                pa[kk][i] = comp ? tr::pack(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]) : 0u;
        if (comp)
            scale_rows<DP>(acc, alpha);
        if constexpr (!OV) {
            issue_pv(stage);
            wgmma_wait<0>();
            pin<elems<DP>()>(acc);
            mbar_arrive(empty + stage);
        }
        pend_stage = stage;
        cur = nx;
    }
    if (!any) /* the zero tile (OV: the last product reads it) has landed */
        mbar_wait(full, 0);
    if constexpr (OV) {
        issue_pv(pend_stage);
        wgmma_wait<0>();
        pin<elems<DP>()>(acc);
    }
    /* every load has landed (each was awaited); the warpgroup's last
     * product that read its Q tile is done, so each warp stages its output
     * rows in its own rows of that tile, meeting no other warp (the K/V
     * stages with a barrier of both warpgroups, before: the first to
     * finish waited for the other) */
    float inv[kRows];
    finish_rows(l, inv);
    T *stage = sQ + wg * TE;
    stage_rows_sw<DP>(acc, inv, stage, vw, lane);
    fence_proxy_async(); /* the rows, written by every lane, go to the TMA unit */
    __syncwarp();
    if (lane == 0 && qt < p.n_qt) {
#pragma unroll
        for (int cb = 0; cb < DP / 64; ++cb)
            tma_store_4d(&to, stage + cb * kTile * 64 + vw * kWsStoreRows * 64, cb * 64,
                         qt * kTile + vw * kWsStoreRows, job.h, sg);
        tma_store_drain();
    }
    store_lse(p, sv, job.h, qt * kTile + vw * 16, m, l, lane, qt < p.n_qt);
#endif
}

} // namespace hopper
} // namespace bsa_cuda

#endif
