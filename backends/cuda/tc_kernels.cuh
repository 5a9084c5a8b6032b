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

namespace bsa_cuda
{

constexpr int kThreads = 128;

template <int DP> struct tc_cfg {
    static constexpr int srow = DP + 8; /* padded row, elements */
    static constexpr int stages = DP <= 128 ? 2 : 1;
    /* dQ at head dim 128: one K/V stage (70 KB of shared memory instead of
     * 104) lets 3 blocks share an SM, as its registers allow; measured
     * against two stages at 2 blocks in bench/NOTES.md (v10) */
    static constexpr int dq_stages = DP == 128 ? 1 : stages;
    static constexpr int tile_elems = kTile * srow;
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
    for (int c = threadIdx.x; c < kTile * ch; c += kThreads) {
        int r = c / ch, cc = c - r * ch;
        int rr = row0 + r;
        bool ok = rr < seq && cc * 8 < dim;
        const T *src = base;
        if (ok)
            src = base + (int64_t)perm_row(rr, perm, seq) * st + cc * 8;
        cp_async16(sm + r * tc_cfg<DP>::srow + cc * 8, src, ok ? 16 : 0);
    }
}

/* acc[16 x 64] += A[16 x DP] . B[64 x DP]^T, A rows and B rows in shared. */
template <int DP, typename T>
__device__ __forceinline__ void gemm_abt(float (*acc)[4], const T *sa, const T *sb, int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
        uint32_t a[4];
        ldmatrix_x4(a, sa + (lane & 15) * sr + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int nj = 0; nj < kTile / 16; ++nj) {
            uint32_t b[4];
            ldmatrix_x4(b, sb + (nj * 16 + (lane & 7) + (lane >> 4) * 8) * sr + kk * 16 +
                               ((lane >> 3) & 1) * 8);
            mma16816<T>(acc[2 * nj], a, b);
            mma16816<T>(acc[2 * nj + 1], a, b + 2);
        }
    }
}

/* The same with A's fragments already in registers (af[DP / 16][4]). */
template <int DP, typename T>
__device__ __forceinline__ void gemm_abt_reg(float (*acc)[4], const uint32_t (*af)[4], const T *sb,
                                             int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
#pragma unroll
        for (int nj = 0; nj < kTile / 16; ++nj) {
            uint32_t b[4];
            ldmatrix_x4(b, sb + (nj * 16 + (lane & 7) + (lane >> 4) * 8) * sr + kk * 16 +
                               ((lane >> 3) & 1) * 8);
            mma16816<T>(acc[2 * nj], af[kk], b);
            mma16816<T>(acc[2 * nj + 1], af[kk], b + 2);
        }
    }
}

/* acc[16 x DP] += P[16 x 64] . B[64 x DP]; P as f32 fragments (the layout
 * of a 16x64 accumulator), B rows in shared (read transposed). */
template <int DP, typename T>
__device__ __forceinline__ void gemm_pb(float (*acc)[4], const float (*pf)[4], const T *sb,
                                        int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
    using tr = dtype_traits<T>;
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
        uint32_t a[4];
        a[0] = tr::pack(pf[2 * kk][0], pf[2 * kk][1]);
        a[1] = tr::pack(pf[2 * kk][2], pf[2 * kk][3]);
        a[2] = tr::pack(pf[2 * kk + 1][0], pf[2 * kk + 1][1]);
        a[3] = tr::pack(pf[2 * kk + 1][2], pf[2 * kk + 1][3]);
#pragma unroll
        for (int dj = 0; dj < DP / 16; ++dj) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, sb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * sr +
                                     dj * 16 + (lane >> 4) * 8);
            mma16816<T>(acc[2 * dj], a, b);
            mma16816<T>(acc[2 * dj + 1], a, b + 2);
        }
    }
}

/* Writes a warp's 16 x DP accumulator (times mul) through its own 16 rows
 * of a shared tile, then to global rows [row0 + 16 warp, +16) with 16-byte
 * stores.  The shared rows must be private to the warp by now. */
template <int DP, typename T>
__device__ __forceinline__ void
store_rows(const float (*acc)[4], const float *mul, T *sm, T *base, int64_t st, int row0, int seq,
           int dim, int perm, int warp, int lane, const int32_t *grp = nullptr, int log2b = 0)
{
    constexpr int sr = tc_cfg<DP>::srow;
    using tr = dtype_traits<T>;
    int g = lane >> 2, t = lane & 3;
    T *w = sm + warp * 16 * sr;
#pragma unroll
    for (int j = 0; j < DP / 8; ++j) {
        *reinterpret_cast<uint32_t *>(w + g * sr + j * 8 + 2 * t) =
            tr::pack(acc[j][0] * mul[0], acc[j][1] * mul[0]);
        *reinterpret_cast<uint32_t *>(w + (g + 8) * sr + j * 8 + 2 * t) =
            tr::pack(acc[j][2] * mul[1], acc[j][3] * mul[1]);
    }
    __syncwarp();
    constexpr int ch = DP / 8;
    for (int c = lane; c < 16 * ch; c += kWarp) {
        int r = c / ch, cc = c - r * ch;
        int rr = tile_row(grp, log2b, row0, warp * 16 + r, seq);
        if (rr < seq && cc * 8 < dim)
            *reinterpret_cast<uint4 *>(base + (int64_t)perm_row(rr, perm, seq) * st + cc * 8) =
                *reinterpret_cast<const uint4 *>(w + r * sr + cc * 8);
    }
}

/* Sets masked elements of a 16 x 64 score fragment to -inf.  transposed:
 * fragment rows are keys and columns queries (the dK/dV kernel).  A
 * thread's two elements of an 8-column group share one sub-block (sub-blocks
 * are >= 8 wide), so the code is read once per (row, group) and FULL
 * sub-blocks cost nothing more. */
template <bool transposed>
__device__ __forceinline__ void apply_mask(float (*s)[4], const bsa_cuda_params &p,
                                           const int32_t *sub, int row_tile0, int col_tile0,
                                           int warp, int lane, const int32_t *kgrp)
{
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        int row = warp * 16 + g + r * 8;
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j) {
            int col = j * 8;
            int code = transposed ? __ldg(sub + (col >> p.log2g) * p.ns + (row >> p.log2g))
                                  : __ldg(sub + (row >> p.log2g) * p.ns + (col >> p.log2g));
            if (code == BSA_CUDA_SUB_FULL)
                continue;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                int cl = col + 2 * t + e;
                /* query / key positions in layout order; a gathered key tile
                 * (kgrp) only matters to the predicates: block-relative
                 * offsets are the same either way (tiles hold whole blocks) */
                int q = transposed ? col_tile0 + cl : row_tile0 + row;
                int kn = transposed ? row_tile0 + row : col_tile0 + cl;
                bool keep;
                if (code == BSA_CUDA_SUB_ABSENT) {
                    keep = false;
                } else if (code == BSA_CUDA_SUB_PRED) {
                    int k = kgrp ? tile_row(kgrp, p.log2g, 0,
                                            kn - (transposed ? row_tile0 : col_tile0), p.seq_k)
                                 : kn;
                    keep = bsa_pred_keep(&p.pred, q, k) != 0;
                } else {
                    keep = keep_code(p, code, q, kn);
                }
                if (!keep)
                    s[j][2 * r + e] = -CUDART_INF_F;
            }
        }
    }
}

/* Sets the scores of keys cut off by the segment's key limit to -inf
 * (key_cut; transposed as in apply_mask). */
template <bool transposed>
__device__ __forceinline__ void apply_key_cut(float (*s)[4], const bsa_cuda_params &p,
                                              const seg_view &v, const int32_t *kgrp, int kt,
                                              int warp, int lane)
{
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            int kr = transposed ? warp * 16 + g + (c >> 1) * 8 : j * 8 + 2 * t + (c & 1);
            if (key_cut(p, v, kgrp, kt, kr))
                s[j][c] = -CUDART_INF_F;
        }
    }
}

/* GATHER: the layout's key tiles are gathered (kgrp); compiled apart so
 * that natural tiles carry none of its code (bench/NOTES.md, v8). */
template <typename T, int DP, bool GATHER, bool FEAT>
__global__ void __launch_bounds__(kThreads, DP <= 64    ? 4
                                            : DP <= 128 ? 3
                                                        : 1) fwd_kernel(const bsa_cuda_params p)
{
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems, ST = cfg::stages;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    T *sK = sQ + te;
    T *sV = sK + ST * te;

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int g = lane >> 2, t = lane & 3;
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

    /* Q in its own group: its fragments go to registers (head dim <= 128)
     * while the first K/V tile is still in flight */
    constexpr bool q_in_regs = DP <= 128;
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
    uint32_t qf[q_in_regs ? DP / 16 : 1][4];
    if (q_in_regs) {
        cp_async_wait<1>();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < (q_in_regs ? DP / 16 : 1); ++kk)
            ldmatrix_x4(qf[kk], sQ + (warp * 16 + (lane & 15)) * sr + kk * 16 + (lane >> 4) * 8);
    }

    float acc[DP / 8][4];
#pragma unroll
    for (int j = 0; j < DP / 8; ++j)
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    float m[2] = {-CUDART_INF_F, -CUDART_INF_F}, l[2] = {0.f, 0.f};

    for (int it = 0; it < n; ++it) {
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

        float s[kTile / 8][4];
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
        if constexpr (q_in_regs)
            gemm_abt_reg<DP>(s, qf, ks, lane);
        else
            gemm_abt<DP>(s, sQ + warp * 16 * sr, ks, lane);
        if (e.y >= 0)
            apply_mask<false>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, row0, e.x * kTile, warp,
                              lane, kgroup(p, lh, e.x));
        if (FEAT && tile_needs_cut(p, sv, GATHER ? p.kgrp : nullptr, e.x))
            apply_key_cut<false>(s, p, sv, kgroup(p, lh, e.x), e.x, warp, lane);

        /* online softmax, base 2 */
        float mx[2] = {-CUDART_INF_F, -CUDART_INF_F};
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                s[j][c] *= p.scale_log2;
                mx[c >> 1] = fmaxf(mx[c >> 1], s[j][c]);
            }
        }
        float alpha[2], mu[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            float mn = fmaxf(m[r], mx[r]);
            mu[r] = mn == -CUDART_INF_F ? 0.f : mn; /* no (-inf) - (-inf) */
            alpha[r] = exp2f(m[r] - mu[r]);
            m[r] = mn;
            l[r] *= alpha[r];
        }
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                s[j][c] = exp2f(s[j][c] - mu[c >> 1]);
                l[c >> 1] += s[j][c];
            }
        }
#pragma unroll
        for (int j = 0; j < DP / 8; ++j) {
            acc[j][0] *= alpha[0];
            acc[j][1] *= alpha[0];
            acc[j][2] *= alpha[1];
            acc[j][3] *= alpha[1];
        }
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

    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;
    }
    store_rows<DP>(acc, inv, sQ, o, p.o_s[2], row0, sv.len_q, p.dim_v, p.stride_perm, warp, lane);
    if (p.lse && t == 0) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            int rr = row0 + warp * 16 + g + r * 8;
            if (rr < sv.len_q) {
                float v_lse =
                    l[r] > 0.f ? (m[r] + log2f(l[r])) * 0.69314718055994531f : -CUDART_INF_F;
                p.lse[sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q)] =
                    v_lse;
            }
        }
    }
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

template <typename T, int DP, bool FEAT>
__global__ void __launch_bounds__(kThreads, DP <= 64 ? 3 : 1) fwd2_kernel(const bsa_cuda_params p)
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
    const int g = lane >> 2, t = lane & 3;
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
    const int32_t *tp = p.row_tptr + lh * (p.n_qt + 1);
    const int a0 = tp[qa],
              a1 = !FEAT ? tp[qa + 1]
                         : a0 + trim_key_list(p, sv, false, p.row_tent + a0, tp[qa + 1] - a0);
    const int b0 = qb < p.n_qt ? tp[qb] : 0,
              b1 = qb >= p.n_qt ? 0
                   : !FEAT      ? tp[qb + 1]
                           : b0 + trim_key_list(p, sv, false, p.row_tent + b0, tp[qb + 1] - b0);

    /* merge cursor over the two sorted lists */
    int ia = a0, ib = b0;
    auto next = [&](int &kt, int &ya, int &yb) {
        int ka = ia < a1 ? p.row_tent[ia].x : 0x7fffffff;
        int kb = ib < b1 ? p.row_tent[ib].x : 0x7fffffff;
        kt = ka < kb ? ka : kb;
        ya = yb = kNone;
        if (ka == kt)
            ya = p.row_tent[ia++].y;
        if (kb == kt)
            yb = p.row_tent[ib++].y;
    };
    const int n_iter_max = (a1 - a0) + (b1 - b0);

    load_tile<DP>(sQ, q, p.q_s[2], row0, sv.len_q, p.dim, p.stride_perm);
    load_tile<DP>(sQ + te, q, p.q_s[2], row0 + kTile, sv.len_q, p.dim, p.stride_perm);
    cp_async_commit();
    int kt_cur = 0, ya_cur = kNone, yb_cur = kNone;
    if (n_iter_max > 0) {
        next(kt_cur, ya_cur, yb_cur);
        load_tile<DP>(sK, k, p.k_s[2], kt_cur * kTile, sv.len_k, p.dim, p.stride_perm, nullptr,
                      p.log2g);
        load_tile<DP>(sV, v, p.v_s[2], kt_cur * kTile, sv.len_k, p.dim_v, p.stride_perm, nullptr,
                      p.log2g);
    }
    cp_async_commit();
    /* rows of this warp: 64-tile `half`, virtual 16-row warps vw = 2 (warp & 1) + mt */
    const T *sQw = sQ + half * te;
    uint32_t qf[q_in_regs ? MT : 1][q_in_regs ? DP / 16 : 1][4];
    if (q_in_regs) {
        cp_async_wait<1>();
        __syncthreads();
#pragma unroll
        for (int mt = 0; mt < (q_in_regs ? MT : 1); ++mt)
#pragma unroll
            for (int kk = 0; kk < (q_in_regs ? DP / 16 : 1); ++kk)
                ldmatrix_x4(qf[mt][kk], sQw + (((warp & 1) * 2 + mt) * 16 + (lane & 15)) * sr +
                                            kk * 16 + (lane >> 4) * 8);
    }

    float acc[MT][DP / 8][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < DP / 8; ++j)
            acc[mt][j][0] = acc[mt][j][1] = acc[mt][j][2] = acc[mt][j][3] = 0.f;
        m[mt][0] = m[mt][1] = -CUDART_INF_F;
        l[mt][0] = l[mt][1] = 0.f;
    }

    bool have = n_iter_max > 0;
    for (int it = 0; have; ++it) {
        const int kt = kt_cur, ya = ya_cur, yb = yb_cur;
        const bool more = ia < a1 || ib < b1;
        if (more) {
            next(kt_cur, ya_cur, yb_cur);
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
            float s[MT][kTile / 8][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int j = 0; j < kTile / 8; ++j)
                    s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < DP / 16; ++kk) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    if constexpr (q_in_regs) {
#pragma unroll
                        for (int i = 0; i < 4; ++i)
                            a[mt][i] = qf[q_in_regs ? mt : 0][q_in_regs ? kk : 0][i];
                    } else {
                        ldmatrix_x4(a[mt], sQw + (((warp & 1) * 2 + mt) * 16 + (lane & 15)) * sr +
                                               kk * 16 + (lane >> 4) * 8);
                    }
                }
#pragma unroll
                for (int nj = 0; nj < kTile / 16; ++nj) {
                    uint32_t bb[4];
                    ldmatrix_x4(bb, ks + (nj * 16 + (lane & 7) + (lane >> 4) * 8) * sr + kk * 16 +
                                        ((lane >> 3) & 1) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        mma16816<T>(s[mt][2 * nj], a[mt], bb);
                        mma16816<T>(s[mt][2 * nj + 1], a[mt], bb + 2);
                    }
                }
            }
            const int qt = 2 * st + half;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if (y >= 0)
                    apply_mask<false>(s[mt], p, p.sub + (int64_t)y * p.ns * p.ns, qt * kTile,
                                      kt * kTile, (warp & 1) * 2 + mt, lane, nullptr);
                if (FEAT && tile_needs_cut(p, sv, nullptr, kt))
                    apply_key_cut<false>(s[mt], p, sv, nullptr, kt, (warp & 1) * 2 + mt, lane);
                float mx[2] = {-CUDART_INF_F, -CUDART_INF_F};
#pragma unroll
                for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        s[mt][j][c] *= p.scale_log2;
                        mx[c >> 1] = fmaxf(mx[c >> 1], s[mt][j][c]);
                    }
                }
                float alpha[2], mu[2];
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                    float mn = fmaxf(m[mt][r], mx[r]);
                    mu[r] = mn == -CUDART_INF_F ? 0.f : mn;
                    alpha[r] = exp2f(m[mt][r] - mu[r]);
                    m[mt][r] = mn;
                    l[mt][r] *= alpha[r];
                }
#pragma unroll
                for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        s[mt][j][c] = exp2f(s[mt][j][c] - mu[c >> 1]);
                        l[mt][c >> 1] += s[mt][j][c];
                    }
                }
#pragma unroll
                for (int j = 0; j < DP / 8; ++j) {
                    acc[mt][j][0] *= alpha[0];
                    acc[mt][j][1] *= alpha[0];
                    acc[mt][j][2] *= alpha[1];
                    acc[mt][j][3] *= alpha[1];
                }
            }
            /* O += P V: each V fragment feeds both m-tiles */
            using tr = dtype_traits<T>;
#pragma unroll
            for (int kk = 0; kk < kTile / 16; ++kk) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    a[mt][0] = tr::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    a[mt][1] = tr::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    a[mt][2] = tr::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    a[mt][3] = tr::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dj = 0; dj < DP / 16; ++dj) {
                    uint32_t bb[4];
                    ldmatrix_x4_trans(bb, vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * sr +
                                              dj * 16 + (lane >> 4) * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        mma16816<T>(acc[mt][2 * dj], a[mt], bb);
                        mma16816<T>(acc[mt][2 * dj + 1], a[mt], bb + 2);
                    }
                }
            }
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
        float inv[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 1);
            l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 2);
            inv[r] = l[mt][r] > 0.f ? 1.f / l[mt][r] : 0.f;
        }
        if (qt < p.n_qt)
            store_rows<DP>(acc[mt], inv, sQ + half * te, o, p.o_s[2], qt * kTile, sv.len_q, p.dim_v,
                           p.stride_perm, vw, lane);
        if (p.lse && t == 0) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                int rr = qt * kTile + vw * 16 + g + r * 8;
                if (qt < p.n_qt && rr < sv.len_q) {
                    float v_lse = l[mt][r] > 0.f
                                      ? (m[mt][r] + log2f(l[mt][r])) * 0.69314718055994531f
                                      : -CUDART_INF_F;
                    p.lse[sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q)] =
                        v_lse;
                }
            }
        }
    }
}

/* P = exp2(s * scale_log2 - lse_log2), 0 where the row saw no key. */
__device__ __forceinline__ float prob(float s, float scale_log2, float lse_log2)
{
    return lse_log2 == -CUDART_INF_F ? 0.f : exp2f(s * scale_log2 - lse_log2);
}

template <typename T, int DP, bool FEAT>
__global__ void __launch_bounds__(kThreads, DP <= 128 ? 3 : 1) dq_kernel(const bsa_cuda_params p)
{
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems, ST = cfg::dq_stages;
    constexpr float log2e = 1.4426950408889634f;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    T *sO = sQ + te; /* dO */
    T *sK = sO + te;
    T *sV = sK + ST * te;

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int g = lane >> 2;
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

    load_tile<DP>(sQ, q, p.q_s[2], row0, sv.len_q, p.dim, p.stride_perm);
    load_tile<DP>(sO, dout, p.o_s[2], row0, sv.len_q, p.dim_v, p.stride_perm);
    if (n > 0) {
        int kt = p.row_tent[beg].x;
        load_tile<DP>(sK, k, p.k_s[2], kt * kTile, sv.len_k, p.dim, p.stride_perm,
                      key_group(p, lh, kt), p.log2g);
        load_tile<DP>(sV, v, p.v_s[2], kt * kTile, sv.len_k, p.dim_v, p.stride_perm,
                      key_group(p, lh, kt), p.log2g);
    }
    cp_async_commit();

    float lse2[2], dl[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        int rr = row0 + warp * 16 + g + r * 8;
        lse2[r] = -CUDART_INF_F;
        dl[r] = 0.f;
        if (rr < sv.len_q) {
            int64_t idx = sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q);
            lse2[r] = p.lse_in[idx] * log2e;
            dl[r] = p.delta[idx];
        }
    }

    float acc[DP / 8][4];
#pragma unroll
    for (int j = 0; j < DP / 8; ++j)
        acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

    for (int it = 0; it < n; ++it) {
        const int2 e = p.row_tent[beg + it];
        if (ST == 2 && it + 1 < n) {
            int kt = p.row_tent[beg + it + 1].x;
            int s1 = (it + 1) % ST;
            load_tile<DP>(sK + s1 * te, k, p.k_s[2], kt * kTile, sv.len_k, p.dim, p.stride_perm,
                          key_group(p, lh, kt), p.log2g);
            load_tile<DP>(sV + s1 * te, v, p.v_s[2], kt * kTile, sv.len_k, p.dim_v, p.stride_perm,
                          key_group(p, lh, kt), p.log2g);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *ks = sK + (it % ST) * te, *vs = sV + (it % ST) * te;

        float s[kTile / 8][4], dp[kTile / 8][4];
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = dp[j][0] = dp[j][1] = dp[j][2] = dp[j][3] = 0.f;
        gemm_abt<DP>(s, sQ + warp * 16 * sr, ks, lane);
        if (e.y >= 0)
            apply_mask<false>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, row0, e.x * kTile, warp,
                              lane, key_group(p, lh, e.x));
        if (FEAT && tile_needs_cut(p, sv, p.kgrp, e.x))
            apply_key_cut<false>(s, p, sv, key_group(p, lh, e.x), e.x, warp, lane);
        gemm_abt<DP>(dp, sO + warp * 16 * sr, vs, lane);
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                float pr = prob(s[j][c], p.scale_log2, lse2[c >> 1]);
                s[j][c] = pr * (dp[j][c] - dl[c >> 1]);
            }
        }
        gemm_pb<DP>(acc, s, ks, lane);
        __syncthreads();
        if (ST == 1 && it + 1 < n) {
            int kt = p.row_tent[beg + it + 1].x;
            load_tile<DP>(sK, k, p.k_s[2], kt * kTile, sv.len_k, p.dim, p.stride_perm,
                          key_group(p, lh, kt), p.log2g);
            load_tile<DP>(sV, v, p.v_s[2], kt * kTile, sv.len_k, p.dim_v, p.stride_perm,
                          key_group(p, lh, kt), p.log2g);
            cp_async_commit();
        }
    }
    cp_async_wait<0>();
    __syncthreads();
    float mul[2] = {p.scale, p.scale};
    store_rows<DP>(acc, mul, sQ, dq, p.q_s[2], row0, sv.len_q, p.dim, p.stride_perm, warp, lane);
}

/* dK/dV of one key tile of one kv head: walks the key tile's column list
 * of each query head of the kv head's group in ascending head order (the
 * lists of one head after another, one pipeline), so grouped-query
 * gradients are summed in a fixed order without atomics.  The host never
 * sends gathered key tiles of per-head layouts here with group > 1: their
 * key tiles would differ between the heads of a group. */
template <typename T, int DP, bool FEAT>
__global__ void __launch_bounds__(kThreads, DP <= 64 ? 3 : 1) dkdv_kernel(const bsa_cuda_params p)
{
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems, ST = cfg::stages;
    constexpr float log2e = 1.4426950408889634f;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sK = reinterpret_cast<T *>(smem_raw);
    T *sV = sK + te;
    T *sQ = sV + te;                                     /* ST stages */
    T *sO = sQ + ST * te;                                /* dO, ST stages */
    float *sL = reinterpret_cast<float *>(sO + ST * te); /* [ST][64] lse * log2e */
    float *sD = sL + ST * kTile;                         /* [ST][64] delta */

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int t = lane & 3;
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
    T *dk = seg_base<T>(p.dk, p.k_s, sv, kvh, true);
    T *dv = seg_base<T>(p.dv, p.v_s, sv, kvh, true);
    const int32_t *kgrp = key_group(p, lh0, kt);
    /* a natural key tile wholly past the key limit has only zero gradients */
    const bool dead = FEAT && !p.kgrp && !p.stride_perm && row0 >= sv.klim;
    const bool cut = FEAT && tile_needs_cut(p, sv, kgrp, kt);

    /* entries [j, j_end) of group head gi's list, query tiles past the
     * segment dropped (the list is sorted by query tile) */
    auto head_range = [&](int gi, int &j, int &j_end) {
        const int lh = p.lheads == 1 ? 0 : h0 + gi;
        j = p.col_tptr[lh * (p.n_kt + 1) + kt];
        j_end = dead ? j : p.col_tptr[lh * (p.n_kt + 1) + kt + 1];
        while (FEAT && j_end > j && p.col_tent[j_end - 1].x * kTile >= sv.len_q)
            --j_end;
    };
    /* moves (gi, j) to the next entry at or after it, across heads */
    auto settle = [&](int &gi, int &j, int &j_end) {
        while (j >= j_end && ++gi < G)
            head_range(gi, j, j_end);
    };
    auto load_q_side = [&](int stage, int gi, int qt) {
        const int h = h0 + gi;
        load_tile<DP>(sQ + stage * te, seg_base<const T>(p.q, p.q_s, sv, h, false), p.q_s[2],
                      qt * kTile, sv.len_q, p.dim, p.stride_perm);
        load_tile<DP>(sO + stage * te, seg_base<const T>(p.dout, p.o_s, sv, h, false), p.o_s[2],
                      qt * kTile, sv.len_q, p.dim_v, p.stride_perm);
        if (threadIdx.x < kTile) {
            int rr = qt * kTile + threadIdx.x;
            float lv = -CUDART_INF_F, dv_ = 0.f;
            if (rr < sv.len_q) {
                int64_t idx =
                    sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q);
                lv = p.lse_in[idx] * log2e;
                dv_ = p.delta[idx];
            }
            sL[stage * kTile + threadIdx.x] = lv;
            sD[stage * kTile + threadIdx.x] = dv_;
        }
    };

    int gi = 0, j = 0, j_end = 0;
    head_range(0, j, j_end);
    settle(gi, j, j_end);
    bool have = gi < G;
    load_tile<DP>(sK, k, p.k_s[2], row0, sv.len_k, p.dim, p.stride_perm, kgrp, p.log2g);
    load_tile<DP>(sV, v, p.v_s[2], row0, sv.len_k, p.dim_v, p.stride_perm, kgrp, p.log2g);
    if (have)
        load_q_side(0, gi, p.col_tent[j].x);
    cp_async_commit();

    float adk[DP / 8][4], adv[DP / 8][4];
#pragma unroll
    for (int jj = 0; jj < DP / 8; ++jj)
        adk[jj][0] = adk[jj][1] = adk[jj][2] = adk[jj][3] = adv[jj][0] = adv[jj][1] = adv[jj][2] =
            adv[jj][3] = 0.f;

    for (int it = 0; have; ++it) {
        const int2 e = p.col_tent[j];
        int ngi = gi, nj = j + 1, nj_end = j_end;
        settle(ngi, nj, nj_end);
        const bool more = ngi < G;
        if (ST == 2 && more) {
            load_q_side((it + 1) % ST, ngi, p.col_tent[nj].x);
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
        float s[kTile / 8][4], dp[kTile / 8][4];
#pragma unroll
        for (int jj = 0; jj < kTile / 8; ++jj)
            s[jj][0] = s[jj][1] = s[jj][2] = s[jj][3] = dp[jj][0] = dp[jj][1] = dp[jj][2] =
                dp[jj][3] = 0.f;
        gemm_abt<DP>(s, sK + warp * 16 * sr, qs, lane);
        if (e.y >= 0)
            apply_mask<true>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, row0, e.x * kTile, warp,
                             lane, kgrp);
        if (cut)
            apply_key_cut<true>(s, p, sv, kgrp, kt, warp, lane);
#pragma unroll
        for (int jj = 0; jj < kTile / 8; ++jj) {
#pragma unroll
            for (int c = 0; c < 4; ++c)
                s[jj][c] = prob(s[jj][c], p.scale_log2, ls[jj * 8 + 2 * t + (c & 1)]);
        }
        gemm_pb<DP>(adv, s, os, lane);                   /* dV += P^T dO */
        gemm_abt<DP>(dp, sV + warp * 16 * sr, os, lane); /* dP^T = V dO^T */
#pragma unroll
        for (int jj = 0; jj < kTile / 8; ++jj) {
#pragma unroll
            for (int c = 0; c < 4; ++c)
                s[jj][c] = s[jj][c] * (dp[jj][c] - ds[jj * 8 + 2 * t + (c & 1)]);
        }
        gemm_pb<DP>(adk, s, qs, lane); /* dK += dS^T Q */
        __syncthreads();
        if (ST == 1 && more) {
            load_q_side(0, ngi, p.col_tent[nj].x);
            cp_async_commit();
        }
        gi = ngi;
        j = nj;
        j_end = nj_end;
        have = more;
    }
    cp_async_wait<0>();
    __syncthreads();
    float one[2] = {1.f, 1.f}, sc[2] = {p.scale, p.scale};
    store_rows<DP>(adv, one, sV, dv, p.v_s[2], row0, sv.len_k, p.dim_v, p.stride_perm, warp, lane,
                   kgrp, p.log2g);
    store_rows<DP>(adk, sc, sK, dk, p.k_s[2], row0, sv.len_k, p.dim, p.stride_perm, warp, lane,
                   kgrp, p.log2g);
}

template <int DP> constexpr size_t tc_smem_fwd2_bytes()
{
    return (size_t)6 * tc_cfg<DP>::tile_elems * 2; /* Q 128 rows + 2 stages of K, V */
}

template <int DP> constexpr size_t tc_smem_bytes(int kernel)
{
    using cfg = tc_cfg<DP>;
    return kernel == BSA_K_FWD || kernel == BSA_K_FWD_GATHER
               ? (size_t)(1 + 2 * cfg::stages) * cfg::tile_elems * 2
           : kernel == BSA_K_DQ ? (size_t)(2 + 2 * cfg::dq_stages) * cfg::tile_elems * 2
                                : (size_t)(2 + 2 * cfg::stages) * cfg::tile_elems * 2 +
                                      (size_t)2 * cfg::stages * kTile * sizeof(float);
}

} // namespace bsa_cuda

#endif
