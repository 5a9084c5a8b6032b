/*
 * Tensor-core kernels (mma.sync m16n8k16, sm_80+): fused forward, dQ and
 * dK/dV, FlashAttention-2 structure over the tile-pair lists.
 *
 * One thread block of 4 warps per (64-row tile, batch * head); each warp
 * owns 16 rows of the tile and keeps its score fragments, softmax state and
 * accumulators in registers.  Operands live in shared memory with rows
 * padded by 16 bytes (conflict-free ldmatrix); the next tile's operands
 * stream in with cp.async while the current one is computed (two stages up
 * to head dim 128, one above, to fit in 99 KB).
 *
 * Register caps (__launch_bounds__ min blocks) keep 3-4 blocks per SM up to
 * head dim 128: measured on an H200, occupancy is what the 64x64 kernels
 * live on (bench/NOTES.md, v6).
 *
 * Softmax runs in base 2 with scale * log2(e) folded into one multiply;
 * masked scores are -inf, rows with no visible key give O = 0, lse = -inf,
 * zero gradients.  The backward recomputes P from Q, K and lse; dK/dV
 * iterate the key tile's column list and own their rows, dQ iterates the
 * row list: no atomics, so results are bitwise reproducible.
 */
#ifndef BSA_CUDA_TC_KERNELS_CUH
#define BSA_CUDA_TC_KERNELS_CUH

#include "device_common.cuh"

#include "../gpu/kernel_smem.h"

#include <type_traits>

namespace bsa_cuda
{

constexpr int kThreads = 4 * kWarp; /* 4 warps of 16 owner rows: a 64-row tile */

/* Register caps as minimum blocks per SM on NVIDIA; HIP's second
 * __launch_bounds__ argument means something else, so it gets none. */
#if defined(BSA_VENDOR_HIP)
#define BSA_TC_BOUNDS(blocks) __launch_bounds__(kThreads)
#else
#define BSA_TC_BOUNDS(blocks) __launch_bounds__(kThreads, blocks)
#endif

template <int DP> struct tc_cfg {
    static constexpr int srow = DP + 8; /* padded row, elements */
#if defined(BSA_VENDOR_HIP)             /* 64 KB of LDS per workgroup */
    static constexpr int stages = DP <= 64 ? 2 : 1;
#else
    static constexpr int stages = DP <= 128 ? 2 : 1;
#endif
    /* dQ at head dim 128: one K/V stage (70 KB of shared memory instead of
     * 104) lets 3 blocks share an SM, as its registers allow; measured
     * against two stages at 2 blocks in bench/NOTES.md (v10) */
    static constexpr int dq_stages = DP == 128 ? 1 : stages;
    static constexpr int tile_elems = kTile * srow;
#if defined(BSA_VENDOR_HIP)
    /* AMD at head dim 128: the backward keeps the warps' own rows of its A
     * operands (dQ: Q and dO; dK/dV: K and V) in registers, loaded once
     * through the first stage's LDS, so that their two tiles leave LDS and
     * the rest fits in 64 KB (four tiles of 128 + 8 columns would need 68) */
    static constexpr bool own_rows_in_regs = DP == 128;
#else
    static constexpr bool own_rows_in_regs = false;
#endif
};

/* Asynchronously loads rows [row0, row0 + 64) (layout order) of one
 * (batch, head) slice into a padded shared tile; rows past seq and columns
 * past dim are zero-filled. */
template <int DP, typename T>
__device__ __forceinline__ void load_tile(T *sm, const T *base, int64_t st, int row0, int seq,
                                          int dim, int perm, const int32_t *grp = nullptr,
                                          int log2b = 0)
{
    constexpr int ch = DP / 8;
    if (grp) { /* gathered key tile: rows come from the tile's key blocks */
        for (int c = threadIdx.x; c < kTile * ch; c += kThreads) {
            int r = c / ch, cc = c - r * ch;
            int rr = tile_row(grp, log2b, row0, r, seq);
            bool ok = rr < seq && cc * 8 < dim;
            const T *src = base;
            if (ok)
                src = base + (int64_t)perm_row(rr, perm, seq) * st + cc * 8;
            cp_async16(sm + r * tc_cfg<DP>::srow + cc * 8, src, ok ? 16 : 0);
        }
        return;
    }
    /* natural rows: a thread copies column chunk cc of rows r0, r0 + RS,
     * ..., so its offsets are computed once (bench/NOTES.md, v16) */
    constexpr int RS = kThreads / ch, J = kTile / RS;
    static_assert(kThreads % ch == 0 && kTile % RS == 0, "tile loader shape");
    const int cc = threadIdx.x % ch, r0 = threadIdx.x / ch;
    const bool col_ok = cc * 8 < dim;
    base += cc * 8;
    sm += r0 * tc_cfg<DP>::srow + cc * 8;
    if (!perm) { /* (the permutation tested once, not per row) */
        const int64_t step = opaque((int64_t)RS * st);
        const T *src = base + (int64_t)(row0 + r0) * st;
#pragma unroll
        for (int j = 0; j < J; ++j) {
            const bool ok = col_ok && row0 + r0 + j * RS < seq;
            cp_async16(sm + j * RS * tc_cfg<DP>::srow, ok ? src + j * step : base, ok ? 16 : 0);
        }
        return;
    }
    perm_walk pw(row0 + r0, perm, seq);
#pragma unroll
    for (int j = 0; j < J; ++j) {
        const bool ok = col_ok && row0 + r0 + j * RS < seq;
        const T *src = ok ? base + (int64_t)pw.pos() * st : base;
        cp_async16(sm + j * RS * tc_cfg<DP>::srow, src, ok ? 16 : 0);
        pw.advance(RS);
    }
}

/* K's and V's rows of key tile kt (layout order; grp: a gathered tile's
 * key blocks, or null) into the shared tiles sk and sv, asynchronously.
 * (The forward kernels still write the pair out: their SASS is the one
 * timed and verified on a GPU.) */
template <int DP, typename T>
__device__ __forceinline__ void load_kv(T *sk, T *sv, const T *k, const T *v,
                                        const bsa_cuda_params &p, int kt, int len_k,
                                        const int32_t *grp)
{
    load_tile<DP>(sk, k, p.k_s[2], kt * kTile, len_k, p.dim, p.stride_perm, grp, p.log2g);
    load_tile<DP>(sv, v, p.v_s[2], kt * kTile, len_k, p.dim_v, p.stride_perm, grp, p.log2g);
}

} // namespace bsa_cuda

#if defined(BSA_VENDOR_HIP)
#include "../hip/tile_amd.cuh"
#else
#include "tile_mma_sync.cuh"
#endif

namespace bsa_cuda
{
using namespace tile;

/* The forward's largest head dim with Q's fragments in registers. */
#if defined(BSA_VENDOR_HIP)
constexpr int kFwdQRegsMax = tile::kQRegsMax;
#else
constexpr int kFwdQRegsMax = 128;
#endif

/* AMD targets without MFMA (RDNA's WMMA tile, the FMA tile) at head dim
 * 128: a lane holds twice a wave64 lane's accumulators (16 x 128 fp32 over
 * 32 lanes: 64 each, S and dP 32 each; gfx11 replicates the A operands'
 * rows over the half-waves, 64 VGPRs a 16 x 128 operand), so the backward
 * keeps one of its two own operands in registers, not both, and the other
 * in LDS: dQ holds dO's rows (Q, K, V in LDS: 51 KB); dK/dV holds V's rows
 * (K, Q, dO in LDS) and walks the key tile's list twice, dV first, then
 * dK, so that only one of the two accumulators is live: S = K Q^T is
 * computed in both walks (5 products a tile pair instead of 4). */
#if defined(BSA_VENDOR_HIP) && !BSA_HIP_MFMA
template <int DP> constexpr bool kSplitBwd = DP == 128;
#else
template <int DP> constexpr bool kSplitBwd = false;
#endif
/* On gfx11, whose WMMA operands hold each row in both half-waves, dO's
 * rows take 64 VGPRs a lane: dQ at 128 walks its row list twice, each walk
 * computing half of dQ's columns (32 accumulators; S and dP in both). */
#if defined(BSA_VENDOR_HIP) && BSA_HIP_WMMA == 11
template <int DP> constexpr int kDqParts = DP == 128 ? 2 : 1;
#else
template <int DP> constexpr int kDqParts = 1;
#endif
/* The FMA tile (no MFMA or WMMA) is not held to the no-scratch rule and
 * the list gives it the backward up to head dim 64 (gpu/dispatch.c): its
 * instances above exist (one instance table for every AMD target) but
 * trap. */
#if defined(BSA_VENDOR_HIP) && defined(__HIP_DEVICE_COMPILE__) && !BSA_HIP_MFMA && !BSA_HIP_WMMA
#define BSA_TC_AMD_BWD_GUARD(dp)                                                                   \
    if constexpr ((dp) > 64) {                                                                     \
        __builtin_trap();                                                                          \
        return;                                                                                    \
    }
#else
#define BSA_TC_AMD_BWD_GUARD(dp)
#endif

/* Sets a 16 x N result to zero (E = elems<N>()). */
template <int E> __device__ __forceinline__ void zero(float *x)
{
#pragma unroll
    for (int e = 0; e < E; ++e)
        x[e] = 0.f;
}

/* A warp's online-softmax state before its first key tile: row maxima
 * -inf, sums 0. */
__device__ __forceinline__ void start_rows(float *m, float *l)
{
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        m[r] = -CUDART_INF_F, l[r] = 0.f;
}

/* Multiplies each owner row of a 16 x N result by f[its slot]. */
template <int N> __device__ __forceinline__ void scale_rows(float *acc, const float *f)
{
#pragma unroll
    for (int e = 0; e < elems<N>(); ++e)
        acc[e] *= f[slot(e)];
}

/* acc += A B^T over a warp's 16 rows of A: from its register fragments af
 * (IN_REGS: afrag<DP>), else from shared memory at sa (the warp's first
 * row; af unused). */
template <int DP, bool IN_REGS, typename T, typename F>
__device__ __forceinline__ void gemm_abt_own(float *acc, const F &af, const T *sa, const T *sb,
                                             int lane)
{
    if constexpr (IN_REGS)
        gemm_abt_reg<DP>(acc, af, sb, lane);
    else
        gemm_abt<DP>(acc, sa, sb, lane);
}

/* |c max(s)| from which the softmax's exponents are taken from the
 * rounded products c s (softmax_step): 2^20, where fp32's spacing is
 * 1/8, far below any overflow and far above the logits of training. */
constexpr float kWideExponent = 1048576.f;

/* One online-softmax step (base 2) over a warp's 16 x 64 scores s: scales
 * them by scale_log2, updates the row maxima m and sums l, leaves the
 * unnormalised probabilities in s and in alpha the factor the output
 * accumulator's rows must be multiplied by.  A row whose max is still
 * -inf keeps mu = 0 (no (-inf) - (-inf)). */
__device__ __forceinline__ void softmax_step(float *s, float *m, float *l, float *alpha,
                                             float scale_log2)
{
    /* the scale goes into the exponent's fma: max(c s) = c max(s) for c > 0;
     * another scale (negative, zero) scales the scores first */
    float c = scale_log2;
    if (!(c > 0.f)) {
#pragma unroll
        for (int e = 0; e < elems<kTile>(); ++e)
            s[e] *= c;
        c = 1.f;
    }
    /* the row max and sum over NC independent chains per row, joined at
     * the end: one chain is a dependent instruction per element, which
     * the two warps a scheduler has on the wgmma kernels cannot hide */
    constexpr int NC = 4;
    float mx[kRows][NC], mu[kRows], ls[kRows][NC];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int i = 0; i < NC; ++i)
            mx[r][i] = -CUDART_INF_F, ls[r][i] = 0.f;
#pragma unroll
    for (int e = 0; e < elems<kTile>(); ++e)
        mx[slot(e)][(e >> 2) % NC] = fmaxf(mx[slot(e)][(e >> 2) % NC], s[e]);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        float x = fmaxf(fmaxf(mx[r][0], mx[r][1]), fmaxf(mx[r][2], mx[r][3]));
        x = row_max(x) * c;
        float mn = fmaxf(m[r], x);
        mu[r] = mn == -CUDART_INF_F ? 0.f : mn;
        alpha[r] = fast_exp2(m[r] - mu[r]);
        m[r] = mn;
    }
    /* fma(s, c, -mu) is the exact c s less the rounded c max(s): for the
     * row's largest score the residual is half an ulp of mu, which past
     * |mu| ~ 2^31 overflows 2^x.  Rows that large (logits ~1e6 and up)
     * take the rounded product instead, round(c s) <= round(c max(s)) = mu,
     * so that every exponent is <= 0; other rows keep the one fma. */
    bool wide = false;
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        wide = wide || fabsf(mu[r]) >= kWideExponent;
    if (wide && c != 1.f) {
#pragma unroll
        for (int e = 0; e < elems<kTile>(); ++e)
            s[e] *= c;
        c = 1.f;
    }
#pragma unroll
    for (int e = 0; e < elems<kTile>(); ++e) {
        s[e] = fast_exp2(fmaf(s[e], c, -mu[slot(e)]));
        ls[slot(e)][(e >> 2) % NC] += s[e];
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        l[r] = l[r] * alpha[r] + ((ls[r][0] + ls[r][1]) + (ls[r][2] + ls[r][3]));
}

/* The end of the forward's rows: sums l over the lanes and gives the
 * output's row factors 1 / l (0 for a row that saw no key). */
__device__ __forceinline__ void finish_rows(float *l, float *inv)
{
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        l[r] = row_sum(l[r]);
        inv[r] = l[r] > 0.f ? fast_rcp(l[r]) : 0.f;
    }
}

/* The lse (natural log) of a row from its base-2 max m and sum l; -inf for
 * a row that saw no key (l = 0), NaN for a row with a NaN logit (l NaN: a
 * NaN or Inf in its query or a key it sees; the max skips NaN, the sum
 * does not). */
__device__ __forceinline__ float lse_value(float m, float l)
{
    return l == 0.f ? -CUDART_INF_F : (m + fast_log2(l)) * 0.69314718055994531f;
}

/* Writes the lse (natural log) of a warp's owner rows; rows0: the layout
 * row of the warp's first row; valid: the tile is a real one. */
__device__ __forceinline__ void store_lse(const bsa_cuda_params &p, const seg_view &sv, int h,
                                          int rows0, const float *m, const float *l, int lane,
                                          bool valid = true)
{
    if (!p.lse || !row_leader(lane))
        return;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        int rr = rows0 + row(lane, r);
        if (valid && rr < sv.len_q) {
            const float v_lse = lse_value(m[r], l[r]);
            p.lse[sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q)] = v_lse;
        }
    }
}

/* GATHER: the layout's key tiles are gathered (kgrp); compiled apart so
 * that natural tiles carry none of its code (bench/NOTES.md, v8). */
template <typename T, int DP, bool GATHER, bool FEAT>
__global__ void BSA_TC_BOUNDS(DP <= 64    ? 4
                              : DP <= 128 ? 3
                                          : 1) fwd_kernel(const bsa_cuda_params pk)
{
    const bsa_cuda_params &p = pk; /* the setup's; loops and epilogue: fresh_params */
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems, ST = cfg::stages;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    T *sK = sQ + te;
    T *sV = sK + ST * te;

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    q_job job;
    if (!q_job_of<FEAT>(p, GATHER, job))
        return;
    const int h = job.h, lh = job.lh, row0 = job.row0, beg = job.beg, n = job.n;
    const seg_view &sv = job.sv;
    auto kgroup = [](const bsa_cuda_params &p, int lh, int kt) {
        return GATHER ? key_group(p, lh, kt) : nullptr;
    };
    const T *q = seg_base<const T>(p.q, p.q_s, sv, h, false);
    const T *k = seg_base<const T>(p.k, p.k_s, sv, job.kvh, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, job.kvh, true);
    T *o = seg_base<T>(p.o_out, p.o_s, sv, h, false);

    /* Q in its own group: its fragments go to registers (head dim <= 128;
     * AMD's wave32 WMMA tile: <= 64) while the first K/V tile is still in
     * flight */
    constexpr bool q_in_regs = DP <= kFwdQRegsMax;
    load_tile<DP>(sQ, q, p.q_s[2], row0, sv.len_q, p.dim, p.stride_perm);
    cp_async_commit();
    if (n > 0) {
        int kt = p.row_tent[beg].x;
        load_tile<DP>(sK, k, p.k_s[2], kt * kTile, sv.len_k, p.dim, p.stride_perm,
                      kgroup(p, lh, kt), p.log2g);
        load_tile<DP>(sV, v, p.v_s[2], kt * kTile, sv.len_k, p.dim_v, p.stride_perm,
                      kgroup(p, lh, kt), p.log2g);
    }
    cp_async_commit();
    afrag<q_in_regs ? DP : 16> qf;
    if constexpr (q_in_regs) {
        cp_async_wait<1>();
        __syncthreads();
        load_a<DP>(qf, sQ + warp * 16 * sr, lane);
    }

    float acc[elems<DP>()];
    zero<elems<DP>()>(acc);
    float m[kRows], l[kRows];
    start_rows(m, l);

    for (int it = 0; it < n; ++it) {
        const bsa_cuda_params &p = fresh_params(pk);
        const int2 e = p.row_tent[beg + it];
        if (ST == 2 && it + 1 < n) {
            int kt = p.row_tent[beg + it + 1].x;
            int s1 = (it + 1) % ST;
            load_tile<DP>(sK + s1 * te, k, p.k_s[2], kt * kTile, sv.len_k, p.dim, p.stride_perm,
                          kgroup(p, lh, kt), p.log2g);
            load_tile<DP>(sV + s1 * te, v, p.v_s[2], kt * kTile, sv.len_k, p.dim_v, p.stride_perm,
                          kgroup(p, lh, kt), p.log2g);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *ks = sK + (it % ST) * te, *vs = sV + (it % ST) * te;

        float s[elems<kTile>()];
        zero<elems<kTile>()>(s);
        gemm_abt_own<DP, q_in_regs>(s, qf, sQ + warp * 16 * sr, ks, lane);
        if (e.y >= 0)
            apply_mask<false>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, row0, e.x * kTile, warp,
                              lane, kgroup(p, lh, e.x));
        if (FEAT && tile_needs_cut(p, sv, GATHER ? p.kgrp : nullptr, e.x))
            apply_key_cut<false>(s, p, sv, kgroup(p, lh, e.x), e.x, warp, lane);

        float alpha[kRows];
        softmax_step(s, m, l, alpha, p.scale_log2);
        scale_rows<DP>(acc, alpha);
        gemm_pb<DP>(acc, s, vs, lane);
        __syncthreads();
        if (ST == 1 && it + 1 < n) {
            int kt = p.row_tent[beg + it + 1].x;
            load_tile<DP>(sK, k, p.k_s[2], kt * kTile, sv.len_k, p.dim, p.stride_perm,
                          kgroup(p, lh, kt), p.log2g);
            load_tile<DP>(sV, v, p.v_s[2], kt * kTile, sv.len_k, p.dim_v, p.stride_perm,
                          kgroup(p, lh, kt), p.log2g);
            cp_async_commit();
        }
    }
    cp_async_wait<0>();
    __syncthreads(); /* Q tile rows are reused for the output below */

    float inv[kRows];
    finish_rows(l, inv);
    const bsa_cuda_params &pe = fresh_params(pk);
    store_rows<DP>(acc, inv, sQ, o, pe.o_s[2], row0, sv.len_q, pe.dim_v, pe.stride_perm, warp,
                   lane);
    store_lse(pe, sv, h, row0 + warp * 16, m, l, lane);
}

/* Forward on super tiles: two consecutive 64-row tiles per thread block,
 * 4 warps of 32 rows (two m16 tiles each), walking the merge of the two
 * tiles' key lists.  Each K/V fragment read from shared memory now feeds
 * four mma instead of two, halving the shared-memory traffic per product
 * (the limit of the 16-row kernel above).  A warp whose tile has no entry
 * for a key tile skips it (it only takes part in the barriers).  Head dims
 * up to 128; Q stays in registers up to 32.  Natural key tiles only (the
 * plan never pairs it with gathered ones): the gather code folds away. */
constexpr int kNone = -2; /* list has no entry for this key tile */

/* Cursor over the merge of two query tiles' key-tile lists (row_tent
 * entries [ia, a1) and [ib, b1), each ascending; the second may be empty):
 * the thread blocks that hold both tiles walk each key tile once.  The
 * lists' next entries are read one step ahead, so that the load of a step
 * is not waited for until the step after (the tile loads that follow a
 * step depend on it). */
struct merged_lists {
    const int2 *ent;
    int ia, a1, ib, b1;
    int2 ha, hb; /* entries ia and ib, or a key tile of INT_MAX past the end */
    __device__ __forceinline__ int2 head(int i, int end) const
    {
        return i < end ? ent[i] : make_int2(0x7fffffff, kNone);
    }
    __device__ __forceinline__ void start()
    {
        ha = head(ia, a1);
        hb = head(ib, b1);
    }
    __device__ __forceinline__ bool more() const
    {
        return ia < a1 || ib < b1;
    }
    __device__ __forceinline__ int size() const
    {
        return (a1 - ia) + (b1 - ib);
    }
    /* next key tile kt, and each list's entry code for it (kNone: absent) */
    __device__ __forceinline__ void next(int &kt, int &ya, int &yb)
    {
        kt = ha.x < hb.x ? ha.x : hb.x;
        ya = yb = kNone;
        if (ha.x == kt) {
            ya = ha.y;
            ha = head(++ia, a1);
        }
        if (hb.x == kt) {
            yb = hb.y;
            hb = head(++ib, b1);
        }
    }
};

/* The lists of query tiles qa and qb (qb >= n_qt: none) of layout head lh,
 * natural key tiles wholly past the key limit dropped (FEAT; GATHER: the
 * key tiles are gathered, none is dropped). */
template <bool FEAT, bool GATHER = false>
__device__ __forceinline__ merged_lists merged_lists_of(const bsa_cuda_params &p,
                                                        const seg_view &sv, int lh, int qa, int qb)
{
    const int32_t *tp = p.row_tptr + lh * (p.n_qt + 1);
    auto end = [&](int q0) {
        return !FEAT ? tp[q0 + 1]
                     : tp[q0] +
                           trim_key_list(p, sv, GATHER, p.row_tent + tp[q0], tp[q0 + 1] - tp[q0]);
    };
    merged_lists w;
    w.ent = p.row_tent;
    w.ia = tp[qa];
    w.a1 = end(qa);
    w.ib = qb < p.n_qt ? tp[qb] : 0;
    w.b1 = qb < p.n_qt ? end(qb) : 0;
    w.start();
    return w;
}

template <typename T, int DP, bool FEAT>
__global__ void BSA_TC_BOUNDS(DP <= 64 ? 3 : 1) fwd2_kernel(const bsa_cuda_params p)
{
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems;
    constexpr int MT = 2;
    constexpr bool q_in_regs = DP <= 32; /* 64: 244 registers, 2 blocks/SM (v3) */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw); /* 128 rows */
    T *sK = sQ + 2 * te;                     /* 2 stages */
    T *sV = sK + 2 * te;

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int half = warp >> 1;
    const int bh = grid_bh(), sg = bh / p.heads, h = bh - sg * p.heads;
    if (sg >= p.n_seg)
        return;
    const int lh = p.lheads == 1 ? 0 : h, kvh = FEAT ? h / p.group : h;
    const int n_st = (p.n_qt + 1) / 2;
    const int st = n_st - 1 - blockIdx.x; /* causal-like layouts: heavy tiles first */
    const int qa = 2 * st, qb = 2 * st + 1;
    const int row0 = st * 2 * kTile;
    const seg_view sv = seg_at<FEAT>(p, sg);
    if (row0 >= sv.len_q)
        return;
    const T *q = seg_base<const T>(p.q, p.q_s, sv, h, false);
    const T *k = seg_base<const T>(p.k, p.k_s, sv, kvh, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, kvh, true);
    T *o = seg_base<T>(p.o_out, p.o_s, sv, h, false);
    merged_lists walk = merged_lists_of<FEAT>(p, sv, lh, qa, qb);
    const int n_iter_max = walk.size();

    load_tile<DP>(sQ, q, p.q_s[2], row0, sv.len_q, p.dim, p.stride_perm);
    load_tile<DP>(sQ + te, q, p.q_s[2], row0 + kTile, sv.len_q, p.dim, p.stride_perm);
    cp_async_commit();
    int kt_cur = 0, ya_cur = kNone, yb_cur = kNone;
    if (n_iter_max > 0) {
        walk.next(kt_cur, ya_cur, yb_cur);
        load_tile<DP>(sK, k, p.k_s[2], kt_cur * kTile, sv.len_k, p.dim, p.stride_perm, nullptr,
                      p.log2g);
        load_tile<DP>(sV, v, p.v_s[2], kt_cur * kTile, sv.len_k, p.dim_v, p.stride_perm, nullptr,
                      p.log2g);
    }
    cp_async_commit();
    /* rows of this warp: 64-tile `half`, virtual 16-row warps vw = 2 (warp & 1) + mt */
    const T *sQw = sQ + half * te;
    const T *sQv = sQw + (warp & 1) * 2 * 16 * sr; /* the warp's first row */
    afrag<q_in_regs ? DP : 16> qf[q_in_regs ? MT : 1];
    if constexpr (q_in_regs) {
        cp_async_wait<1>();
        __syncthreads();
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
            load_a<DP>(qf[mt], sQv + mt * 16 * sr, lane);
    }

    float acc[MT][elems<DP>()];
    float m[MT][kRows], l[MT][kRows];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        zero<elems<DP>()>(acc[mt]);
        start_rows(m[mt], l[mt]);
    }

    bool have = n_iter_max > 0;
    for (int it = 0; have; ++it) {
        const int kt = kt_cur, ya = ya_cur, yb = yb_cur;
        const bool more = walk.more();
        if (more) {
            walk.next(kt_cur, ya_cur, yb_cur);
            int s1 = (it + 1) & 1;
            load_tile<DP>(sK + s1 * te, k, p.k_s[2], kt_cur * kTile, sv.len_k, p.dim, p.stride_perm,
                          nullptr, p.log2g);
            load_tile<DP>(sV + s1 * te, v, p.v_s[2], kt_cur * kTile, sv.len_k, p.dim_v,
                          p.stride_perm, nullptr, p.log2g);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int y = half ? yb : ya;
        if (y != kNone) {
            const T *ks = sK + (it & 1) * te, *vs = sV + (it & 1) * te;
            float s[MT][elems<kTile>()];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
                zero<elems<kTile>()>(s[mt]);
            gemm_abt_mt<MT, DP, q_in_regs>(s, qf, sQv, ks, lane);
            const int qt = 2 * st + half;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if (y >= 0)
                    apply_mask<false>(s[mt], p, p.sub + (int64_t)y * p.ns * p.ns, qt * kTile,
                                      kt * kTile, (warp & 1) * 2 + mt, lane, nullptr);
                if (FEAT && tile_needs_cut(p, sv, nullptr, kt))
                    apply_key_cut<false>(s[mt], p, sv, nullptr, kt, (warp & 1) * 2 + mt, lane);
                float alpha[kRows];
                softmax_step(s[mt], m[mt], l[mt], alpha, p.scale_log2);
                scale_rows<DP>(acc[mt], alpha);
            }
            /* O += P V: each V fragment feeds both m-tiles */
            gemm_pb_mt<MT, DP>(acc, s, vs, lane);
        }
        __syncthreads();
        have = more;
    }
    cp_async_wait<0>();
    __syncthreads(); /* Q rows are reused for the output below */

    const int qt = 2 * st + half;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        const int vw = (warp & 1) * 2 + mt;
        float inv[kRows];
        finish_rows(l[mt], inv);
        if (qt < p.n_qt)
            store_rows<DP>(acc[mt], inv, sQ + half * te, o, p.o_s[2], qt * kTile, sv.len_q, p.dim_v,
                           p.stride_perm, vw, lane);
        store_lse(p, sv, h, qt * kTile + vw * 16, m[mt], l[mt], lane, qt < p.n_qt);
    }
}

/* P = exp2(min(s * scale_log2 + off, 0)) with off = lse_offset(lse):
 * masked scores (-inf) and rows without keys (off -inf) give exp2(-inf) =
 * 0.  A probability is at most 1: the cap keeps the rounding of the
 * forward's lse, which at logits of ~1e6 and up exceeds 1 in the exponent,
 * from giving probabilities above 1 or infinite ones (the CPU backend
 * caps them the same way). */
__device__ __forceinline__ float prob(float s, float scale_log2, float off)
{
    return fast_exp2(fminf(fmaf(s, scale_log2, off), 0.f));
}

/* The rest of a dK/dV step once a warp's masked scores s = S^T (its 16
 * keys against a 64-query tile) are in: P^T, dV += P^T dO, dP^T = V dO^T,
 * dS^T = P^T (dP^T - delta), dK += dS^T Q.  qs, os: the tile's Q and dO
 * rows; ls, ds: its rows' lse offsets and deltas; vw: the warp's V rows.
 * s is consumed. */
template <int DP, typename T>
__device__ __forceinline__ void dkdv_products(float *s, float *adk, float *adv, const T *vw,
                                              const T *qs, const T *os, const float *ls,
                                              const float *ds, float scale_log2, int lane)
{
    float dp[elems<kTile>()];
    zero<elems<kTile>()>(dp);
#pragma unroll
    for (int x = 0; x < elems<kTile>(); ++x) /* columns are queries here */
        s[x] = prob(s[x], scale_log2, ls[col(lane, x)]);
    gemm_pb<DP>(adv, s, os, lane);  /* dV += P^T dO */
    gemm_abt<DP>(dp, vw, os, lane); /* dP^T = V dO^T */
#pragma unroll
    for (int x = 0; x < elems<kTile>(); ++x)
        s[x] = s[x] * (dp[x] - ds[col(lane, x)]);
    gemm_pb<DP>(adk, s, qs, lane); /* dK += dS^T Q */
}

/* The backward's own rows, rows [row0, row0 + 64) of its two A operands
 * (dQ: Q and dO; dK/dV: K and V, the latter with dim_v columns and grp's
 * gathered rows), into the shared tiles sa, sb.  With AR (BR) the warp's
 * 16 rows of a (b) go on to the fragments af (bf: afrag<BR ? DP : 16>),
 * after which that tile's space is free for the next loads. */
template <int DP, bool AR, bool BR, typename T, typename FA, typename FB>
__device__ __forceinline__ void
load_own_rows(FA &af, FB &bf, T *sa, const T *a, int64_t sta, T *sb, const T *b, int64_t stb,
              const bsa_cuda_params &p, int row0, int seq, const int32_t *grp, int warp, int lane)
{
    load_tile<DP>(sa, a, sta, row0, seq, p.dim, p.stride_perm, grp, p.log2g);
    load_tile<DP>(sb, b, stb, row0, seq, p.dim_v, p.stride_perm, grp, p.log2g);
    if constexpr (AR || BR) {
        constexpr int sr = tc_cfg<DP>::srow;
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        if constexpr (AR)
            load_a<DP>(af, sa + warp * 16 * sr, lane);
        if constexpr (BR)
            load_a<DP>(bf, sb + warp * 16 * sr, lane);
        __syncthreads();
    }
}

/* PRED (without FEAT): every mixed pair of the layout is a predicate tile
 * (bsa_cuda_params::pred_tiles), masked as one interval a row with no
 * sub-block code read (apply_pred_tile). */
template <typename T, int DP, bool FEAT, bool PRED = false>
__global__ void BSA_TC_BOUNDS(DP <= 128 ? 3 : 1) dq_kernel(const bsa_cuda_params pk)
{
    const bsa_cuda_params &p = pk; /* the setup's; loops and epilogue: fresh_params */
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems, ST = cfg::dq_stages;
    /* Q's, dO's rows in registers (kSplitBwd: dO's only) */
    constexpr bool QR = cfg::own_rows_in_regs && !kSplitBwd<DP>, OR = cfg::own_rows_in_regs;
    BSA_TC_AMD_BWD_GUARD(DP);
    constexpr int DC = DP / kDqParts<DP>; /* dQ's columns a walk computes */
    static_assert(kDqParts<DP> == 1 || kDqParts<DP> == 2, "dQ in one or two walks");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *const s0 = reinterpret_cast<T *>(smem_raw);
    T *sK = s0 + (QR ? 0 : te) + (OR ? 0 : te);
    T *sV = sK + ST * te;
    T *sQ = QR ? sK : s0;                  /* QR: K/V stage 0 until loaded */
    T *sO = OR ? (QR ? sV : sK) : sQ + te; /* dO; OR: K's or V's stage 0 until loaded */

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    q_job job;
    if (!q_job_of<FEAT>(p, p.kgrp != nullptr, job))
        return;
    const int h = job.h, lh = job.lh, row0 = job.row0, beg = job.beg, n = job.n;
    const seg_view &sv = job.sv;
    const T *q = seg_base<const T>(p.q, p.q_s, sv, h, false);
    const T *k = seg_base<const T>(p.k, p.k_s, sv, job.kvh, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, job.kvh, true);
    const T *dout = seg_base<const T>(p.dout, p.o_s, sv, h, false);
    T *dq = seg_base<T>(p.dq, p.q_s, sv, h, false);

    afrag<QR ? DP : 16> qf; /* (QR, OR: then sQ, sO are K/V's) */
    afrag<OR ? DP : 16> of;
    load_own_rows<DP, QR, OR>(qf, of, sQ, q, p.q_s[2], sO, dout, p.o_s[2], p, row0, sv.len_q,
                              nullptr, warp, lane);
    if (n > 0) {
        int kt = p.row_tent[beg].x;
        load_kv<DP>(sK, sV, k, v, p, kt, sv.len_k, key_group(p, lh, kt));
    }
    cp_async_commit();

    float loff[kRows], dl[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        int rr = row0 + warp * 16 + row(lane, r);
        loff[r] = -CUDART_INF_F;
        dl[r] = 0.f;
        if (rr < sv.len_q) {
            int64_t idx = sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q);
            loff[r] = p.loff[idx];
            dl[r] = p.delta[idx];
        }
    }

    /* dQ's columns [c0, c0 + DC) in one walk of the row list: all of them,
     * or (kDqParts) half of them a walk */
    auto walk_rows = [&](auto part) {
        constexpr int c0 = decltype(part)::value * DC;
        if constexpr (c0 > 0) { /* the first K/V tile again (the first walk's: above) */
            if (n > 0) {
                const bsa_cuda_params &p = fresh_params(pk);
                int kt = p.row_tent[beg].x;
                load_kv<DP>(sK, sV, k, v, p, kt, sv.len_k, key_group(p, lh, kt));
            }
            cp_async_commit();
        }
        float acc[elems<DC>()];
        zero<elems<DC>()>(acc);

        for (int it = 0; it < n; ++it) {
            const bsa_cuda_params &p = fresh_params(pk);
            const int2 e = p.row_tent[beg + it];
            if (ST == 2 && it + 1 < n) {
                int kt = p.row_tent[beg + it + 1].x;
                int s1 = (it + 1) % ST;
                load_kv<DP>(sK + s1 * te, sV + s1 * te, k, v, p, kt, sv.len_k,
                            key_group(p, lh, kt));
                cp_async_commit();
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            const T *ks = sK + (it % ST) * te, *vs = sV + (it % ST) * te;

            float s[elems<kTile>()], dp[elems<kTile>()];
            zero<elems<kTile>()>(s);
            zero<elems<kTile>()>(dp);
            gemm_abt_own<DP, QR>(s, qf, sQ + warp * 16 * sr, ks, lane);
            if (e.y >= 0) {
                if constexpr (PRED)
                    apply_pred_tile(s, p.pred, row0, e.x * kTile, warp, lane);
                else
                    apply_mask<false>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, row0, e.x * kTile,
                                      warp, lane, key_group(p, lh, e.x));
            }
            if (FEAT && tile_needs_cut(p, sv, p.kgrp, e.x))
                apply_key_cut<false>(s, p, sv, key_group(p, lh, e.x), e.x, warp, lane);
            gemm_abt_own<DP, OR>(dp, of, sO + warp * 16 * sr, vs, lane);
#pragma unroll
            for (int e = 0; e < elems<kTile>(); ++e) {
                float pr = prob(s[e], p.scale_log2, loff[slot(e)]);
                s[e] = pr * (dp[e] - dl[slot(e)]);
            }
            gemm_pb<DC, DP>(acc, s, ks + c0, lane);
            __syncthreads();
            if (ST == 1 && it + 1 < n) {
                int kt = p.row_tent[beg + it + 1].x;
                load_kv<DP>(sK, sV, k, v, p, kt, sv.len_k, key_group(p, lh, kt));
                cp_async_commit();
            }
        }
        cp_async_wait<0>();
        __syncthreads();
        const bsa_cuda_params &pe = fresh_params(pk);
        float mul[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r)
            mul[r] = pe.scale;
        /* through sQ (Q's tile or, with QR, K's first stage: free after the
         * barrier above); with parts, Q's tile is read again: through K's */
        store_rows<DC>(acc, mul, DC < DP ? sK : sQ, dq + c0, pe.q_s[2], row0, sv.len_q, pe.dim - c0,
                       pe.stride_perm, warp, lane);
        if constexpr (c0 + DC < DP)
            __syncthreads(); /* the staging read before the next walk's loads */
    };
    walk_rows(std::integral_constant<int, 0>{});
    if constexpr (DC < DP)
        walk_rows(std::integral_constant<int, 1>{});
}

/* dK/dV of one key tile of one kv head: walks the key tile's column list
 * of each query head of the kv head's group in ascending head order (the
 * lists of one head after another, one pipeline), so grouped-query
 * gradients are summed in a fixed order without atomics.  The host never
 * sends gathered key tiles of per-head layouts here with group > 1: their
 * key tiles would differ between the heads of a group. */
/* Which gradients a walk of dkdv_kernel's list accumulates. */
template <bool DV, bool DK> struct walk_kind {
    static constexpr bool dv = DV, dk = DK;
};

/* PRED: as dq_kernel's; ST: query-side stages (Q, dO, lse offsets,
 * deltas): the configuration's two, or one where a block's shared memory
 * does not hold two (head dim 128 on sm_86 / sm_89: 99 KB) */
template <typename T, int DP, bool FEAT, bool PRED = false, int ST = tc_cfg<DP>::stages>
__global__ void BSA_TC_BOUNDS(DP <= 64 ? 3 : 1) dkdv_kernel(const bsa_cuda_params pk)
{
    const bsa_cuda_params &p = pk; /* the setup's; loops and epilogue: fresh_params */
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems;
    /* K's, V's rows in registers; kSplitBwd: V's only, and two walks */
    constexpr bool SP = kSplitBwd<DP>;
    constexpr bool KR = cfg::own_rows_in_regs && !SP, VR = cfg::own_rows_in_regs;
    static_assert(ST == 1 || ST == 2, "one or two query-side stages");
    BSA_TC_AMD_BWD_GUARD(DP);
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *const s0 = reinterpret_cast<T *>(smem_raw);
    T *sQ = s0 + (KR ? 0 : te) + (VR ? 0 : te);          /* ST stages */
    T *sO = sQ + ST * te;                                /* dO, ST stages */
    T *sK = KR ? sQ : s0;                                /* KR: Q/dO stage 0 until loaded */
    T *sV = VR ? (KR ? sO : sQ) : sK + te;               /* VR: Q's or dO's stage 0 until loaded */
    float *sL = reinterpret_cast<float *>(sO + ST * te); /* [ST][64] lse_offset */
    float *sD = sL + ST * kTile;                         /* [ST][64] delta */

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int bh = grid_bh(), sg = bh / p.kv_heads, kvh = bh - sg * p.kv_heads;
    if (sg >= p.n_seg)
        return;
    const int G = FEAT ? p.group : 1; /* query heads per kv head */
    const int h0 = kvh * G;           /* the group's first */
    const int lh0 = p.lheads == 1 ? 0 : h0;
    const int kt = p.k_order[lh0 * p.n_kt + blockIdx.x];
    const int row0 = kt * kTile;
    const seg_view sv = seg_at<FEAT>(p, sg);
    if (!p.kgrp && row0 >= sv.len_k) /* (a gathered tile's rows are its blocks') */
        return;
    const T *k = seg_base<const T>(p.k, p.k_s, sv, kvh, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, kvh, true);
    const int32_t *kgrp = key_group(p, lh0, kt);
    /* a natural key tile wholly past the key limit has only zero gradients */
    const bool dead = FEAT && !p.kgrp && !p.stride_perm && row0 >= sv.klim;
    const bool cut = FEAT && tile_needs_cut(p, sv, kgrp, kt);

    /* entries [j, j_end) of group head gi's list, query tiles past the
     * segment dropped (the list is sorted by query tile) */
    auto head_range = [&](const bsa_cuda_params &p, int gi, int &j, int &j_end) {
        const int lh = p.lheads == 1 ? 0 : h0 + gi;
        j = p.col_tptr[lh * (p.n_kt + 1) + kt];
        j_end = dead ? j : p.col_tptr[lh * (p.n_kt + 1) + kt + 1];
        while (FEAT && j_end > j && p.col_tent[j_end - 1].x * kTile >= sv.len_q)
            --j_end;
    };
    /* moves (gi, j) to the next entry at or after it, across heads */
    auto settle = [&](const bsa_cuda_params &p, int &gi, int &j, int &j_end) {
        while (j >= j_end && ++gi < G)
            head_range(p, gi, j, j_end);
    };
    auto load_q_side = [&](const bsa_cuda_params &p, int stage, int gi, int qt) {
        const int h = h0 + gi;
        load_tile<DP>(sQ + stage * te, seg_base<const T>(p.q, p.q_s, sv, h, false), p.q_s[2],
                      qt * kTile, sv.len_q, p.dim, p.stride_perm);
        load_tile<DP>(sO + stage * te, seg_base<const T>(p.dout, p.o_s, sv, h, false), p.o_s[2],
                      qt * kTile, sv.len_q, p.dim_v, p.stride_perm);
        /* the rows' lse offsets and deltas (the delta pre-pass), copied
         * like the tiles: a plain load here held the step up on its
         * latency (bench/NOTES.md, v34).  Rows past the segment are zeros,
         * as their Q and dO rows, which make P^T dO and dS^T = P^T (V 0 -
         * 0) zero whatever P is. */
        if (threadIdx.x < 2 * kTile) {
            const int r = threadIdx.x % kTile, rr = qt * kTile + r;
            const bool ok = rr < sv.len_q;
            const int64_t idx =
                sv.lse0 + (int64_t)h * p.time_q + (ok ? perm_row(rr, p.stride_perm, p.seq_q) : 0);
            cp_async4(threadIdx.x < kTile ? sL + stage * kTile + r : sD + stage * kTile + r,
                      (threadIdx.x < kTile ? p.loff : p.delta) + idx, ok ? 4 : 0);
        }
    };

    afrag<KR ? DP : 16> kf; /* (KR, VR: then sK, sV are Q/dO's) */
    afrag<VR ? DP : 16> vf;
    float adk[elems<DP>()], adv[elems<DP>()];
    /* one walk of the list computing both gradients, or (SP) one for dV
     * and then one for dK: each walk its own code (a loop over the two
     * was left rolled on gfx11 / gfx12, both accumulators live in it) */
    auto walk_list = [&](auto kind) {
        constexpr bool with_dv = decltype(kind)::dv, with_dk = decltype(kind)::dk;
        constexpr int walk = with_dv ? 0 : 1;
        const bsa_cuda_params &pw = walk == 0 ? p : fresh_params(pk);
        int gi = 0, j = 0, j_end = 0;
        head_range(pw, 0, j, j_end);
        settle(pw, gi, j, j_end);
        bool have = gi < G;
        if (walk == 0)
            load_own_rows<DP, KR, VR>(kf, vf, sK, k, p.k_s[2], sV, v, p.v_s[2], p, row0, sv.len_k,
                                      kgrp, warp, lane);
        if (have)
            load_q_side(fresh_params(pk), 0, gi, pw.col_tent[j].x);
        cp_async_commit();

        if constexpr (with_dv)
            zero<elems<DP>()>(adv);
        if constexpr (with_dk)
            zero<elems<DP>()>(adk);

        for (int it = 0; have; ++it) {
            const bsa_cuda_params &p = fresh_params(pk);
            const int2 e = p.col_tent[j];
            int ngi = gi, nj = j + 1, nj_end = j_end;
            settle(p, ngi, nj, nj_end);
            const bool more = ngi < G;
            if (ST == 2 && more) {
                load_q_side(p, (it + 1) % ST, ngi, p.col_tent[nj].x);
                cp_async_commit();
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            const int st = it % ST;
            const T *qs = sQ + st * te, *os = sO + st * te;
            const float *ls = sL + st * kTile, *ds = sD + st * kTile;

            /* S^T (keys x queries) = K Q^T */
            float s[elems<kTile>()], dp[elems<kTile>()];
            zero<elems<kTile>()>(s);
            zero<elems<kTile>()>(dp);
            gemm_abt_own<DP, KR>(s, kf, sK + warp * 16 * sr, qs, lane);
            if (e.y >= 0) {
                if constexpr (PRED)
                    apply_pred_tile<true>(s, p.pred, row0, e.x * kTile, warp, lane);
                else
                    apply_mask<true>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, row0, e.x * kTile,
                                     warp, lane, kgrp);
            }
            if (cut)
                apply_key_cut<true>(s, p, sv, kgrp, kt, warp, lane);
#pragma unroll
            for (int e = 0; e < elems<kTile>(); ++e) /* columns are queries here */
                s[e] = prob(s[e], p.scale_log2, ls[col(lane, e)]);
            if constexpr (with_dv)
                gemm_pb<DP>(adv, s, os, lane); /* dV += P^T dO */
            if constexpr (with_dk) {
                gemm_abt_own<DP, VR>(dp, vf, sV + warp * 16 * sr, os, lane); /* dP^T = V dO^T */
#pragma unroll
                for (int e = 0; e < elems<kTile>(); ++e)
                    s[e] = s[e] * (dp[e] - ds[col(lane, e)]);
                gemm_pb<DP>(adk, s, qs, lane); /* dK += dS^T Q */
            }
            __syncthreads();
            if (ST == 1 && more) {
                load_q_side(p, 0, ngi, p.col_tent[nj].x);
                cp_async_commit();
            }
            gi = ngi;
            j = nj;
            j_end = nj_end;
            have = more;
        }
        cp_async_wait<0>();
        __syncthreads();
        if constexpr (SP && walk == 0) {
            /* dV out through Q's stage (free after the barrier above),
             * which the next walk's loads may take only after it */
            const bsa_cuda_params &pe = fresh_params(pk);
            float one[kRows];
#pragma unroll
            for (int r = 0; r < kRows; ++r)
                one[r] = 1.f;
            store_rows<DP>(adv, one, sQ, seg_base<T>(pe.dv, pe.v_s, sv, kvh, true), pe.v_s[2], row0,
                           sv.len_k, pe.dim_v, pe.stride_perm, warp, lane, kgrp, pe.log2g);
            __syncthreads();
        }
    };
    if constexpr (SP) {
        walk_list(walk_kind<true, false>{});
        walk_list(walk_kind<false, true>{});
    } else {
        walk_list(walk_kind<true, true>{});
    }
    const bsa_cuda_params &pe = fresh_params(pk);
    T *dk = seg_base<T>(pe.dk, pe.k_s, sv, kvh, true);
    T *dv = seg_base<T>(pe.dv, pe.v_s, sv, kvh, true);
    float one[kRows], sc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        one[r] = 1.f, sc[r] = pe.scale;
    /* (sK, sV: K's and V's tiles or, with KR / VR, the first Q / dO stage:
     * free after the barrier above) */
    if constexpr (!SP)
        store_rows<DP>(adv, one, sV, dv, pe.v_s[2], row0, sv.len_k, pe.dim_v, pe.stride_perm, warp,
                       lane, kgrp, pe.log2g);
    store_rows<DP>(adk, sc, sK, dk, pe.k_s[2], row0, sv.len_k, pe.dim, pe.stride_perm, warp, lane,
                   kgrp, pe.log2g);
}

/* Dynamic shared memory of each kernel (what the kernels carve above),
 * checked against the implementation list's table (gpu/kernel_smem.h). */
template <int DP> constexpr size_t tc_smem_fwd_bytes(int rows)
{
    return rows == 128 ? (size_t)6 * tc_cfg<DP>::tile_elems * 2 /* Q 128 rows + 2 stages of K, V */
                       : (size_t)(1 + 2 * tc_cfg<DP>::stages) * tc_cfg<DP>::tile_elems * 2;
}
/* the backward's own-row tiles in shared memory: two, none where both
 * operands' rows are in registers, one with kSplitBwd */
template <int DP> constexpr int tc_own_tiles()
{
    return !tc_cfg<DP>::own_rows_in_regs ? 2 : kSplitBwd<DP> ? 1 : 0;
}
template <int DP> constexpr size_t tc_smem_dq_bytes()
{
    return (size_t)(tc_own_tiles<DP>() + 2 * tc_cfg<DP>::dq_stages) * tc_cfg<DP>::tile_elems * 2;
}
template <int DP, int ST> constexpr size_t tc_smem_dkdv_bytes()
{
    return (size_t)(tc_own_tiles<DP>() + 2 * ST) * tc_cfg<DP>::tile_elems * 2 +
           (size_t)2 * ST * kTile * sizeof(float);
}
/* the shared-memory table's target (gpu/kernel_smem.h, bsa_gpu_target) */
#if defined(BSA_VENDOR_HIP)
#define BSA_TC_TARGET (BSA_HIP_MFMA ? BSA_GPU_TARGET_AMD_MFMA : BSA_GPU_TARGET_AMD_OTHER)
#else
#define BSA_TC_TARGET BSA_GPU_TARGET_NVIDIA
#endif
#define BSA_TC_SMEM_CHECK(dp)                                                                      \
    static_assert(tc_smem_fwd_bytes<dp>(64) == BSA_SMEM_TILE_FWD(dp, BSA_TC_TARGET),               \
                  "smem table");                                                                   \
    static_assert(tc_smem_dq_bytes<dp>() == BSA_SMEM_TILE_DQ(dp, BSA_TC_TARGET), "smem table");    \
    static_assert(                                                                                 \
        tc_smem_dkdv_bytes<dp, tc_cfg<dp>::stages>() ==                                            \
            BSA_SMEM_TILE_DKDV(dp, BSA_SMEM_TILE_STAGES(dp, BSA_TC_TARGET), BSA_TC_TARGET),        \
        "smem table");                                                                             \
    static_assert(tc_smem_dkdv_bytes<dp, 1>() == BSA_SMEM_TILE_DKDV(dp, 1, BSA_TC_TARGET),         \
                  "smem table");
BSA_TC_SMEM_CHECK(32)
BSA_TC_SMEM_CHECK(64)
BSA_TC_SMEM_CHECK(128)
BSA_TC_SMEM_CHECK(256)
static_assert(tc_smem_fwd_bytes<128>(128) == BSA_SMEM_TILE_FWD128(128), "smem table");
static_assert(tc_smem_fwd_bytes<64>(128) == BSA_SMEM_TILE_FWD128(64), "smem table");
#undef BSA_TC_SMEM_CHECK

} // namespace bsa_cuda

#endif
