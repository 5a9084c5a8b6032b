/*
 * The Volta path (sm_70+): the same tile-pair structure as the mma.sync
 * kernels, on Volta's Tensor Core instructions only (wmma 16x16x16, f16 in,
 * fp32 accumulate), with plain loads instead of cp.async and no ldmatrix.
 * wmma's accumulator layout is opaque, so scores go through a per-warp
 * shared scratch for the softmax, and the forward's output accumulator
 * lives in shared memory (rescaled there when the row max grows).
 *
 * f16 only (Volta has no bf16 Tensor Core instruction), padded head dim
 * 32/64/128 (96 KB of shared memory per block on a V100).  The entry
 * cuda-wmma-sm70 of the implementation list: chosen on sm_70 / sm_75 and
 * forced with BSA_IMPL=cuda-wmma-sm70 so that it is tested on newer GPUs.
 */
#ifndef BSA_CUDA_VOLTA_KERNELS_CUH
#define BSA_CUDA_VOLTA_KERNELS_CUH

#include "device_common.cuh"

#include "../gpu/kernel_smem.h"

#include <mma.h>

namespace bsa_cuda
{
namespace volta
{

using namespace nvcuda;
constexpr int kThreads = 128;
constexpr int kWarps = 4;
/* Shared memory holds at most two blocks of any of these kernels on an SM
 * (96 KB on a V100, 64 KB on a T4), so up to 255 registers a thread cost
 * no occupancy.  Saying so (__launch_bounds__ min blocks 2) keeps ptxas
 * from capping the forward and dQ at 128 or 168 registers, where it
 * spilled on sm_75 and newer.  dK/dV takes no hint: with it ptxas used all
 * 255 registers at head dim 64 and spilled (sm_75, sm_80). */
constexpr int kMinBlocks = 2;

template <int DP> struct cfg {
    static constexpr int sr = DP + 8; /* padded row; 16-row steps stay 32-byte aligned */
    static constexpr int tile_bytes = kTile * sr * 2;
    static constexpr int scratch_bytes = 16 * kTile * 4; /* one warp's 16 x 64 floats */
    /* dQ at head dim 128: the Q, dO and dQ fragments (3 x 64 registers)
     * spill at sm_70, so the dO tile keeps shared memory of its own (no
     * longer under the scratch) and its fragments are read from there in
     * every step instead of being held in registers */
    static constexpr bool dq_do_smem = DP > 64;
};

using frag_a = wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major>;
using frag_bc = wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major>;
using frag_br = wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major>;
using frag_c = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

/* Synchronous tile load (no cp.async on Volta); zero rows past seq and
 * columns past dim. */
template <int DP>
__device__ __forceinline__ void load_tile(__half *sm, const __half *base, int64_t st, int row0,
                                          int seq, int dim, int perm, const int32_t *grp = nullptr,
                                          int log2b = 0)
{
    constexpr int ch = DP / 8;
    for (int c = threadIdx.x; c < kTile * ch; c += kThreads) {
        int r = c / ch, cc = c - r * ch;
        int rr = tile_row(grp, log2b, row0, r, seq);
        uint4 v = make_uint4(0, 0, 0, 0);
        if (rr < seq && cc * 8 < dim)
            v = *reinterpret_cast<const uint4 *>(base + (int64_t)perm_row(rr, perm, seq) * st +
                                                 cc * 8);
        *reinterpret_cast<uint4 *>(sm + r * cfg<DP>::sr + cc * 8) = v;
    }
}

/* Keep test of element (row, col) of a warp's 16 x 64 fragment in a mixed
 * pair (transposed: rows are keys, columns queries). */
template <bool transposed>
__device__ __forceinline__ bool keep_at(const bsa_cuda_params &p, const int32_t *sub, int row,
                                        int col, int row0, int col0, const int32_t *kgrp)
{
    int code = transposed ? __ldg(sub + (col >> p.log2g) * p.ns + (row >> p.log2g))
                          : __ldg(sub + (row >> p.log2g) * p.ns + (col >> p.log2g));
    if (code == BSA_CUDA_SUB_FULL)
        return true;
    /* the key side may be a gathered tile (kgrp) */
    return transposed ? keep_code(p, code, col0 + col, tile_row(kgrp, p.log2g, row0, row, p.seq_k))
                      : keep_code(p, code, row0 + row, tile_row(kgrp, p.log2g, col0, col, p.seq_k));
}

/* Writes 16 rows x DP floats (ld DP) of a warp, times mul[row], to global. */
template <int DP>
__device__ __forceinline__ void
store_rows(const float *o, const float *mul, __half *base, int64_t st, int row0, int roff, int seq,
           int dim, int perm, int lane, const int32_t *grp = nullptr, int log2b = 0)
{
    for (int i = lane; i < 16 * (DP / 2); i += kWarp) {
        int r = i / (DP / 2), c = (i - r * (DP / 2)) * 2;
        int rr = tile_row(grp, log2b, row0, roff + r, seq);
        if (rr < seq && c < dim) {
            __half2 h = __floats2half2_rn(o[r * DP + c] * mul[r], o[r * DP + c + 1] * mul[r]);
            *reinterpret_cast<__half2 *>(base + (int64_t)perm_row(rr, perm, seq) * st + c) = h;
        }
    }
}

template <int DP>
__global__ void __launch_bounds__(kThreads, kMinBlocks) fwd_kernel(const bsa_cuda_params p)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    constexpr int sr = cfg<DP>::sr;
    constexpr int a_bytes = cfg<DP>::tile_bytes > kWarps * cfg<DP>::scratch_bytes
                                ? cfg<DP>::tile_bytes
                                : kWarps * cfg<DP>::scratch_bytes;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half *sQ = reinterpret_cast<__half *>(smem_raw); /* then the warps' scratch */
    __half *sK = reinterpret_cast<__half *>(smem_raw + a_bytes);
    __half *sV = sK + kTile * sr;
    float *sO = reinterpret_cast<float *>(sV + kTile * sr); /* [4][16][DP] */
    __shared__ float s_mul[kWarps][16];

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    q_job job;
    if (!q_job_of<true>(p, p.kgrp != nullptr, job))
        return;
    const int h = job.h, lh = job.lh, kvh = job.kvh, row0 = job.row0, beg = job.beg, n = job.n;
    const seg_view &sv = job.sv;
    const __half *q = seg_base<const __half>(p.q, p.q_s, sv, h, false);
    const __half *k = seg_base<const __half>(p.k, p.k_s, sv, kvh, true);
    const __half *v = seg_base<const __half>(p.v, p.v_s, sv, kvh, true);
    __half *o = seg_base<__half>(p.o_out, p.o_s, sv, h, false);

    load_tile<DP>(sQ, q, p.q_s[2], row0, sv.len_q, p.dim, p.stride_perm);
    float *ow = sO + warp * 16 * DP;
    for (int i = lane; i < 16 * DP; i += kWarp)
        ow[i] = 0.f;
    __syncthreads();
    frag_a qf[DP / 16];
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk)
        wmma::load_matrix_sync(qf[kk], sQ + warp * 16 * sr + kk * 16, sr);
    float *S = reinterpret_cast<float *>(smem_raw + warp * cfg<DP>::scratch_bytes);
    __half *P = reinterpret_cast<__half *>(S);

    /* lane owns half (32 columns) of row r */
    const int r = lane >> 1, hc = (lane & 1) * 32;
    float m = -CUDART_INF_F, l = 0.f;
    for (int it = 0; it < n; ++it) {
        const int2 e = p.row_tent[beg + it];
        __syncthreads(); /* Q fragments read / previous tiles used */
        load_tile<DP>(sK, k, p.k_s[2], e.x * kTile, sv.len_k, p.dim, p.stride_perm,
                      key_group(p, lh, e.x), p.log2g);
        load_tile<DP>(sV, v, p.v_s[2], e.x * kTile, sv.len_k, p.dim_v, p.stride_perm,
                      key_group(p, lh, e.x), p.log2g);
        __syncthreads();
#pragma unroll
        for (int nj = 0; nj < kTile / 16; ++nj) {
            frag_c acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < DP / 16; ++kk) {
                frag_bc bf;
                wmma::load_matrix_sync(bf, sK + nj * 16 * sr + kk * 16, sr);
                wmma::mma_sync(acc, qf[kk], bf, acc);
            }
            wmma::store_matrix_sync(S + nj * 16, acc, kTile, wmma::mem_row_major);
        }
        __syncwarp();
        float x[32];
        float mx = -CUDART_INF_F;
        const int32_t *sub = e.y >= 0 ? p.sub + (int64_t)e.y * p.ns * p.ns : nullptr;
        const bool cut = tile_needs_cut(p, sv, p.kgrp, e.x);
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            x[i] = S[r * kTile + hc + i] * p.scale_log2;
            if ((sub && !keep_at<false>(p, sub, warp * 16 + r, hc + i, row0, e.x * kTile,
                                        key_group(p, lh, e.x))) ||
                (cut && key_cut(p, sv, key_group(p, lh, e.x), e.x, hc + i)))
                x[i] = -CUDART_INF_F;
            mx = fmaxf(mx, x[i]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mn = fmaxf(m, mx);
        float mu = mn == -CUDART_INF_F ? 0.f : mn;
        float alpha = exp2f(m - mu), sum = 0.f;
        m = mn;
        __syncwarp(); /* every S read before P overwrites it */
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            float pr = exp2f(x[i] - mu);
            sum += pr;
            P[r * kTile + hc + i] = __float2half_rn(pr);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * alpha + sum;
        for (int i = 0; i < DP / 2; ++i)
            ow[r * DP + (lane & 1) * (DP / 2) + i] *= alpha;
        __syncwarp();
#pragma unroll
        for (int dj = 0; dj < DP / 16; ++dj) {
            frag_c acc;
            wmma::load_matrix_sync(acc, ow + dj * 16, DP, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < kTile / 16; ++kk) {
                frag_a af;
                frag_br bf;
                wmma::load_matrix_sync(af, P + kk * 16, kTile);
                wmma::load_matrix_sync(bf, sV + kk * 16 * sr + dj * 16, sr);
                wmma::mma_sync(acc, af, bf, acc);
            }
            wmma::store_matrix_sync(ow + dj * 16, acc, DP, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if ((lane & 1) == 0)
        s_mul[warp][r] = l > 0.f ? 1.f / l : 0.f;
    __syncwarp();
    store_rows<DP>(ow, s_mul[warp], o, p.o_s[2], row0, warp * 16, sv.len_q, p.dim_v, p.stride_perm,
                   lane);
    int rr = row0 + warp * 16 + r;
    if (p.lse && (lane & 1) == 0 && rr < sv.len_q)
        p.lse[sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q)] =
            l == 0.f ? -CUDART_INF_F : (m + log2f(l)) * 0.69314718055994531f;
#endif
}

/* Where the half dS (or P) value of element (row, col) of a warp's 16 x 64
 * tile goes when it is written over the fp32 scratch it is computed from
 * (row stride 64 floats = 128 halves): column block kk = col / 16 at halves
 * [32 kk, 32 kk + 16) of the row, i.e. bytes [64 kk, 64 kk + 32) -- inside
 * the floats of that same column block, at or before col's own float.  So
 * a lane that reads its fp32 elements in ascending column order overwrites
 * only floats it has already read, never another lane's: no buffer and no
 * __syncwarp between the reads and the writes.  wmma reads column block kk
 * at ds_at(0, 16 kk) with leading dimension 128. */
__device__ __forceinline__ int ds_at(int row, int col)
{
    return row * 2 * kTile + 2 * col - (col & 15);
}

__device__ __forceinline__ float prob(float s, float scale_log2, float lse_log2)
{
    /* at most 1: see tc_kernels.cuh's prob() */
    return lse_log2 == -CUDART_INF_F ? 0.f : exp2f(fminf(s * scale_log2 - lse_log2, 0.f));
}

template <int DP>
__global__ void __launch_bounds__(kThreads, kMinBlocks) dq_kernel(const bsa_cuda_params p)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    constexpr int sr = cfg<DP>::sr;
    constexpr float log2e = 1.4426950408889634f;
    constexpr bool do_smem = cfg<DP>::dq_do_smem;
    /* region A: the Q tile (and the dO tile unless do_smem), then each
     * warp's two 16 x 64 float scratches (also the 16 x DP dQ staging at
     * the end); then K, V (and dO where do_smem) */
    constexpr int a_tiles = (do_smem ? 1 : 2) * cfg<DP>::tile_bytes;
    constexpr int a_bytes = a_tiles > kWarps * 2 * cfg<DP>::scratch_bytes
                                ? a_tiles
                                : kWarps * 2 * cfg<DP>::scratch_bytes;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half *sQ = reinterpret_cast<__half *>(smem_raw);
    __half *sK = reinterpret_cast<__half *>(smem_raw + a_bytes);
    __half *sV = sK + kTile * sr;
    __half *sO = do_smem ? sV + kTile * sr : sQ + kTile * sr;
    __shared__ float s_mul[kWarps][16];

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    q_job job;
    if (!q_job_of<true>(p, p.kgrp != nullptr, job))
        return;
    const int h = job.h, lh = job.lh, kvh = job.kvh, row0 = job.row0, beg = job.beg, n = job.n;
    const seg_view &sv = job.sv;
    const __half *q = seg_base<const __half>(p.q, p.q_s, sv, h, false);
    const __half *k = seg_base<const __half>(p.k, p.k_s, sv, kvh, true);
    const __half *v = seg_base<const __half>(p.v, p.v_s, sv, kvh, true);
    const __half *dout = seg_base<const __half>(p.dout, p.o_s, sv, h, false);
    __half *dq = seg_base<__half>(p.dq, p.q_s, sv, h, false);

    load_tile<DP>(sQ, q, p.q_s[2], row0, sv.len_q, p.dim, p.stride_perm);
    load_tile<DP>(sO, dout, p.o_s[2], row0, sv.len_q, p.dim_v, p.stride_perm);
    __syncthreads();
    frag_a qf[DP / 16], of[do_smem ? 1 : DP / 16];
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
        wmma::load_matrix_sync(qf[kk], sQ + warp * 16 * sr + kk * 16, sr);
        if (!do_smem)
            wmma::load_matrix_sync(of[kk], sO + warp * 16 * sr + kk * 16, sr);
    }
    frag_c acc[DP / 16];
#pragma unroll
    for (int dj = 0; dj < DP / 16; ++dj)
        wmma::fill_fragment(acc[dj], 0.f);
    float *S = reinterpret_cast<float *>(smem_raw + warp * 2 * cfg<DP>::scratch_bytes);
    float *Dp = S + 16 * kTile;
    __half *dS = reinterpret_cast<__half *>(S);

    const int r = lane >> 1, hc = (lane & 1) * 32;
    const int rr = row0 + warp * 16 + r;
    float lse2 = -CUDART_INF_F, dl = 0.f;
    if (rr < sv.len_q) {
        int64_t idx = sv.lse0 + (int64_t)h * p.time_q + perm_row(rr, p.stride_perm, p.seq_q);
        lse2 = p.lse_in[idx] * log2e;
        dl = p.delta[idx];
    }
    for (int it = 0; it < n; ++it) {
        const int2 e = p.row_tent[beg + it];
        __syncthreads();
        load_tile<DP>(sK, k, p.k_s[2], e.x * kTile, sv.len_k, p.dim, p.stride_perm,
                      key_group(p, lh, e.x), p.log2g);
        load_tile<DP>(sV, v, p.v_s[2], e.x * kTile, sv.len_k, p.dim_v, p.stride_perm,
                      key_group(p, lh, e.x), p.log2g);
        __syncthreads();
#pragma unroll
        for (int nj = 0; nj < kTile / 16; ++nj) {
            frag_c cs, cd;
            wmma::fill_fragment(cs, 0.f);
            wmma::fill_fragment(cd, 0.f);
#pragma unroll
            for (int kk = 0; kk < DP / 16; ++kk) {
                frag_bc bk, bv;
                wmma::load_matrix_sync(bk, sK + nj * 16 * sr + kk * 16, sr);
                wmma::load_matrix_sync(bv, sV + nj * 16 * sr + kk * 16, sr);
                wmma::mma_sync(cs, qf[kk], bk, cs);
                if (do_smem) {
                    wmma::load_matrix_sync(of[0], sO + warp * 16 * sr + kk * 16, sr);
                    wmma::mma_sync(cd, of[0], bv, cd);
                } else {
                    wmma::mma_sync(cd, of[kk], bv, cd);
                }
            }
            wmma::store_matrix_sync(S + nj * 16, cs, kTile, wmma::mem_row_major);
            wmma::store_matrix_sync(Dp + nj * 16, cd, kTile, wmma::mem_row_major);
        }
        __syncwarp();
        const int32_t *sub = e.y >= 0 ? p.sub + (int64_t)e.y * p.ns * p.ns : nullptr;
        const bool cut = tile_needs_cut(p, sv, p.kgrp, e.x);
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            float pr = prob(S[r * kTile + hc + i], p.scale_log2, lse2);
            if ((sub && !keep_at<false>(p, sub, warp * 16 + r, hc + i, row0, e.x * kTile,
                                        key_group(p, lh, e.x))) ||
                (cut && key_cut(p, sv, key_group(p, lh, e.x), e.x, hc + i)))
                pr = 0.f;
            dS[ds_at(r, hc + i)] = __float2half_rn(pr * (Dp[r * kTile + hc + i] - dl));
        }
        __syncwarp();
#pragma unroll
        for (int dj = 0; dj < DP / 16; ++dj) {
#pragma unroll
            for (int kk = 0; kk < kTile / 16; ++kk) {
                frag_a af;
                frag_br bf;
                wmma::load_matrix_sync(af, dS + ds_at(0, kk * 16), 2 * kTile);
                wmma::load_matrix_sync(bf, sK + kk * 16 * sr + dj * 16, sr);
                wmma::mma_sync(acc[dj], af, bf, acc[dj]);
            }
        }
        __syncwarp();
    }
    /* the scratch aliases the Q tile (and the dO tile unless do_smem) that
     * other warps may still be reading their fragments from when the list
     * is empty */
    __syncthreads();
    /* stage 16 x DP floats in this warp's scratch (2 x 16 x 64 >= 16 x DP) */
#pragma unroll
    for (int dj = 0; dj < DP / 16; ++dj)
        wmma::store_matrix_sync(S + dj * 16, acc[dj], DP, wmma::mem_row_major);
    if (lane < 16)
        s_mul[warp][lane] = p.scale;
    __syncwarp();
    store_rows<DP>(S, s_mul[warp], dq, p.q_s[2], row0, warp * 16, sv.len_q, p.dim, p.stride_perm,
                   lane);
#endif
}

template <int DP> __global__ void __launch_bounds__(kThreads) dkdv_kernel(const bsa_cuda_params p)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    constexpr int sr = cfg<DP>::sr;
    constexpr float log2e = 1.4426950408889634f;
    constexpr int tb = cfg<DP>::tile_bytes;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half *sK = reinterpret_cast<__half *>(smem_raw);
    __half *sV = reinterpret_cast<__half *>(smem_raw + tb);
    __half *sQ = reinterpret_cast<__half *>(smem_raw + 2 * tb);
    __half *sO = reinterpret_cast<__half *>(smem_raw + 3 * tb);
    /* per warp: R1, 16 x 64 floats (S^T, then P^T, then dS^T as halves:
     * ds_at), and R2, 16 x 64 halves (P^T, then 16 x 32 floats of dP^T) */
    constexpr int wscr = 16 * kTile * 4 + 16 * kTile * 2;
    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    float *R1 = reinterpret_cast<float *>(smem_raw + 4 * tb + warp * wscr);
    __half *R2 = reinterpret_cast<__half *>(R1 + 16 * kTile);
    float *sL = reinterpret_cast<float *>(smem_raw + 4 * tb + kWarps * wscr);
    float *sD = sL + kTile;
    __shared__ float s_mul[kWarps][16];

    /* one kv head: the query heads of its group in ascending order (as the
     * mma path's dK/dV kernel, tc_kernels.cuh) */
    const int bh = grid_bh(), sg = bh / p.kv_heads, kvh = bh - sg * p.kv_heads;
    if (sg >= p.n_seg)
        return;
    const int h0 = kvh * p.group, lh0 = p.lheads == 1 ? 0 : h0;
    const int kt = p.k_order[lh0 * p.n_kt + blockIdx.x];
    const int row0 = kt * kTile;
    const seg_view sv = seg_of(p, sg);
    if (!p.kgrp && row0 >= sv.len_k)
        return;
    const __half *k = seg_base<const __half>(p.k, p.k_s, sv, kvh, true);
    const __half *v = seg_base<const __half>(p.v, p.v_s, sv, kvh, true);
    __half *dk = seg_base<__half>(p.dk, p.k_s, sv, kvh, true);
    __half *dv = seg_base<__half>(p.dv, p.v_s, sv, kvh, true);
    const bool dead = !p.kgrp && !p.stride_perm && row0 >= sv.klim;

    const int32_t *kgrp = key_group(p, lh0, kt);
    const bool cut = tile_needs_cut(p, sv, kgrp, kt);
    load_tile<DP>(sK, k, p.k_s[2], row0, sv.len_k, p.dim, p.stride_perm, kgrp, p.log2g);
    load_tile<DP>(sV, v, p.v_s[2], row0, sv.len_k, p.dim_v, p.stride_perm, kgrp, p.log2g);
    frag_c adk[DP / 16], adv[DP / 16];
#pragma unroll
    for (int dj = 0; dj < DP / 16; ++dj) {
        wmma::fill_fragment(adk[dj], 0.f);
        wmma::fill_fragment(adv[dj], 0.f);
    }
    const int r = lane >> 1, hc = (lane & 1) * 32;
    for (int gi = 0; gi < p.group && !dead; ++gi) {
        const int h = h0 + gi, lh = p.lheads == 1 ? 0 : h;
        const __half *q = seg_base<const __half>(p.q, p.q_s, sv, h, false);
        const __half *dout = seg_base<const __half>(p.dout, p.o_s, sv, h, false);
        const int beg = p.col_tptr[lh * (p.n_kt + 1) + kt];
        const int n = p.col_tptr[lh * (p.n_kt + 1) + kt + 1] - beg;
        for (int it = 0; it < n; ++it) {
            const int2 e = p.col_tent[beg + it];
            const int q0 = e.x * kTile;
            if (q0 >= sv.len_q)
                break; /* sorted by query tile: the rest lie past the segment too */
            __syncthreads();
            load_tile<DP>(sQ, q, p.q_s[2], q0, sv.len_q, p.dim, p.stride_perm);
            load_tile<DP>(sO, dout, p.o_s[2], q0, sv.len_q, p.dim_v, p.stride_perm);
            if (threadIdx.x < kTile) {
                int qq = q0 + threadIdx.x;
                float lv = -CUDART_INF_F, dv_ = 0.f;
                if (qq < sv.len_q) {
                    int64_t idx =
                        sv.lse0 + (int64_t)h * p.time_q + perm_row(qq, p.stride_perm, p.seq_q);
                    lv = p.lse_in[idx] * log2e;
                    dv_ = p.delta[idx];
                }
                sL[threadIdx.x] = lv;
                sD[threadIdx.x] = dv_;
            }
            __syncthreads();
            /* S^T = K Q^T */
#pragma unroll
            for (int nj = 0; nj < kTile / 16; ++nj) {
                frag_c acc;
                wmma::fill_fragment(acc, 0.f);
#pragma unroll
                for (int kk = 0; kk < DP / 16; ++kk) {
                    frag_a af;
                    frag_bc bf;
                    wmma::load_matrix_sync(af, sK + warp * 16 * sr + kk * 16, sr);
                    wmma::load_matrix_sync(bf, sQ + nj * 16 * sr + kk * 16, sr);
                    wmma::mma_sync(acc, af, bf, acc);
                }
                wmma::store_matrix_sync(R1 + nj * 16, acc, kTile, wmma::mem_row_major);
            }
            __syncwarp();
            const int32_t *sub = e.y >= 0 ? p.sub + (int64_t)e.y * p.ns * p.ns : nullptr;
            /* P^T over S^T in R1 (fp32, each lane its own elements: dS reads
             * it) and as halves in R2 (dV's operand) */
#pragma unroll
            for (int i = 0; i < 32; ++i) {
                int c = hc + i;
                float pr = prob(R1[r * kTile + c], p.scale_log2, sL[c]);
                if ((sub && !keep_at<true>(p, sub, warp * 16 + r, c, row0, q0, kgrp)) ||
                    (cut && key_cut(p, sv, kgrp, kt, warp * 16 + r)))
                    pr = 0.f;
                R1[r * kTile + c] = pr;
                R2[r * kTile + c] = __float2half_rn(pr);
            }
            __syncwarp();
            /* dV += P^T dO */
#pragma unroll
            for (int dj = 0; dj < DP / 16; ++dj) {
#pragma unroll
                for (int kk = 0; kk < kTile / 16; ++kk) {
                    frag_a af;
                    frag_br bf;
                    wmma::load_matrix_sync(af, R2 + kk * 16, kTile);
                    wmma::load_matrix_sync(bf, sO + kk * 16 * sr + dj * 16, sr);
                    wmma::mma_sync(adv[dj], af, bf, adv[dj]);
                }
            }
            /* dP^T = V dO^T, 32 query columns at a time into R2 (16 x 32
             * floats, over the consumed P halves), and dS^T = P^T (dP^T -
             * delta) written as halves over R1's P (ds_at): the fp32 P never
             * has to wait in registers (at head dim 128 those 32 registers
             * beside the 128 of dK and dV spilled at sm_70).  The lane of
             * (row r, column block 2 h + (lane & 1)) is the only reader of
             * that block's P in half h. */
            float *dPh = reinterpret_cast<float *>(R2);
            __half *dS = reinterpret_cast<__half *>(R1);
            /* a loop at head dim 128 (unrolled, ptxas spilled at sm_75+) */
#pragma unroll(DP > 64 ? 1 : 2)
            for (int h = 0; h < 2; ++h) {
                __syncwarp(); /* R2 read: the P halves, or the previous half's dP^T */
#pragma unroll
                for (int nh = 0; nh < 2; ++nh) {
                    frag_c acc;
                    wmma::fill_fragment(acc, 0.f);
#pragma unroll
                    for (int kk = 0; kk < DP / 16; ++kk) {
                        frag_a af;
                        frag_bc bf;
                        wmma::load_matrix_sync(af, sV + warp * 16 * sr + kk * 16, sr);
                        wmma::load_matrix_sync(bf, sO + (2 * h + nh) * 16 * sr + kk * 16, sr);
                        wmma::mma_sync(acc, af, bf, acc);
                    }
                    wmma::store_matrix_sync(dPh + nh * 16, acc, kTile / 2, wmma::mem_row_major);
                }
                __syncwarp();
#pragma unroll
                for (int t = 0; t < 16; ++t) {
                    const int c = 32 * h + 16 * (lane & 1) + t;
                    dS[ds_at(r, c)] = __float2half_rn(R1[r * kTile + c] *
                                                      (dPh[r * (kTile / 2) + c - 32 * h] - sD[c]));
                }
            }
            __syncwarp();
            /* dK += dS^T Q */
#pragma unroll
            for (int dj = 0; dj < DP / 16; ++dj) {
#pragma unroll
                for (int kk = 0; kk < kTile / 16; ++kk) {
                    frag_a af;
                    frag_br bf;
                    wmma::load_matrix_sync(af, dS + ds_at(0, kk * 16), 2 * kTile);
                    wmma::load_matrix_sync(bf, sQ + kk * 16 * sr + dj * 16, sr);
                    wmma::mma_sync(adk[dj], af, bf, adk[dj]);
                }
            }
            __syncwarp();
        }
    }
    __syncthreads(); /* the Q / dO tiles become the output staging */
    float *st = reinterpret_cast<float *>(smem_raw + 2 * tb) + warp * 16 * DP;
    if (lane < 16)
        s_mul[warp][lane] = 1.f;
#pragma unroll
    for (int dj = 0; dj < DP / 16; ++dj)
        wmma::store_matrix_sync(st + dj * 16, adv[dj], DP, wmma::mem_row_major);
    __syncwarp();
    store_rows<DP>(st, s_mul[warp], dv, p.v_s[2], row0, warp * 16, sv.len_k, p.dim_v, p.stride_perm,
                   lane, kgrp, p.log2g);
    __syncwarp();
    if (lane < 16)
        s_mul[warp][lane] = p.scale;
#pragma unroll
    for (int dj = 0; dj < DP / 16; ++dj)
        wmma::store_matrix_sync(st + dj * 16, adk[dj], DP, wmma::mem_row_major);
    __syncwarp();
    store_rows<DP>(st, s_mul[warp], dk, p.k_s[2], row0, warp * 16, sv.len_k, p.dim, p.stride_perm,
                   lane, kgrp, p.log2g);
#endif
}

/* Dynamic shared memory of each kernel, checked against the
 * implementation list's table (gpu/kernel_smem.h, which adds the 256
 * bytes of the kernels' static arrays). */
template <int DP> constexpr size_t smem_bytes(int pass)
{
    using c = cfg<DP>;
    return pass == BSA_PASS_FWD
               ? (size_t)(c::tile_bytes > kWarps * c::scratch_bytes ? c::tile_bytes
                                                                    : kWarps * c::scratch_bytes) +
                     2 * c::tile_bytes + (size_t)kWarps * 16 * DP * 4
           : pass == BSA_PASS_DQ
               ? (size_t)((c::dq_do_smem ? 1 : 2) * c::tile_bytes > kWarps * 2 * c::scratch_bytes
                              ? (c::dq_do_smem ? 1 : 2) * c::tile_bytes
                              : kWarps * 2 * c::scratch_bytes) +
                     (c::dq_do_smem ? 3 : 2) * c::tile_bytes
               : (size_t)4 * c::tile_bytes + kWarps * (16 * kTile * 6) + 2 * kTile * 4;
}
#define BSA_VOLTA_SMEM_CHECK(dp)                                                                   \
    static_assert(smem_bytes<dp>(BSA_PASS_FWD) == BSA_SMEM_VOLTA_FWD(dp), "smem table");           \
    static_assert(smem_bytes<dp>(BSA_PASS_DQ) == BSA_SMEM_VOLTA_DQ(dp), "smem table");             \
    static_assert(smem_bytes<dp>(BSA_PASS_DKDV) == BSA_SMEM_VOLTA_DKDV(dp), "smem table");
BSA_VOLTA_SMEM_CHECK(32)
BSA_VOLTA_SMEM_CHECK(64)
BSA_VOLTA_SMEM_CHECK(128)
#undef BSA_VOLTA_SMEM_CHECK

} // namespace volta
} // namespace bsa_cuda

#endif
