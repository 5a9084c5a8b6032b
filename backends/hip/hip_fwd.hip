/*
 * The HIP backend's matrix-tile forward: FlashAttention-2 structure over the
 * CUDA backend's 64x64 tile-pair lists (../cuda/tiles.cu), with the same
 * mask codes, gathered key tiles, permutation addressing and semantics as
 * the CUDA forward (../cuda/tc_kernels.cuh), written on the AMD tile of
 * hip_tile.cuh (MFMA on CDNA, scalar FMAs elsewhere).
 *
 * One block of 4 wavefronts per (64-row query tile, batch * head); each
 * wave owns 16 query rows.  Q, K, V tiles and each wave's 16x64 P go
 * through LDS as raw 16-bit elements (zero-filled past seq / head dim), so
 * any stride and alignment is accepted.  Softmax in base 2 with
 * scale * log2(e) folded in; a row with no visible key gives O = 0 and
 * lse = -inf.  Head dims up to 128 (LDS: 60 KB at 128 of the 64 KB a block
 * may use); the plan sends 256 to the reference kernels.
 */
#include "hip_internal.h"
#include "hip_tile.cuh"

namespace bsa_hip
{

using bsa_cuda::keep_code;
using bsa_cuda::key_group;
using bsa_cuda::kTile;
using bsa_cuda::perm_row;
using bsa_cuda::tile_row;

constexpr int kWaves = 4;

/* Rows [row0, row0 + 64) (layout order, or a gathered key tile) of one
 * (batch, head) slice into a padded LDS tile of DP columns. */
template <int DP>
__device__ __forceinline__ void load_tile(uint16_t *sm, int sr, const uint16_t *base, int64_t st,
                                          int row0, int seq, int dim, int perm, const int32_t *grp,
                                          int log2b)
{
    for (int c = threadIdx.x; c < kTile * DP; c += blockDim.x) {
        int r = c / DP, d = c - r * DP;
        int rr = tile_row(grp, log2b, row0, r, seq);
        uint16_t x = 0;
        if (rr < seq && d < dim)
            x = base[(int64_t)perm_row(rr, perm, seq) * st + d];
        sm[r * sr + d] = x;
    }
}

template <bool BF, int DP>
__global__ void __launch_bounds__(kWaves *kWave) fwd_kernel(const bsa_cuda_params p)
{
    constexpr int SR = DP + 8;     /* padded tile row (elements) */
    constexpr int PR = kTile + 8;  /* padded P row */
    constexpr int NK = kTile / 16; /* 16-column tiles of S */
    constexpr int ND = DP / 16;    /* 16-column tiles of O */
    __shared__ uint16_t sQ[kTile * SR], sK[kTile * SR], sV[kTile * SR];
    __shared__ uint16_t sP[kWaves * 16 * PR];

    const int wave = threadIdx.x / kWave, lane = threadIdx.x % kWave;
    const int bh = blockIdx.y, b = bh / p.heads, h = bh - b * p.heads;
    const int lh = p.lheads == 1 ? 0 : h;
    const int qt = p.q_order[lh * p.n_qt + blockIdx.x];
    const uint16_t *q = static_cast<const uint16_t *>(p.q) + b * p.q_s[0] + h * p.q_s[1];
    const uint16_t *k = static_cast<const uint16_t *>(p.k) + b * p.k_s[0] + h * p.k_s[1];
    const uint16_t *v = static_cast<const uint16_t *>(p.v) + b * p.v_s[0] + h * p.v_s[1];
    uint16_t *o = static_cast<uint16_t *>(p.o_out) + b * p.o_s[0] + h * p.o_s[1];
    const int beg = p.row_tptr[lh * (p.n_qt + 1) + qt];
    const int n = p.row_tptr[lh * (p.n_qt + 1) + qt + 1] - beg;
    const int row0 = qt * kTile;
    const int m0 = (lane >> 4) * kCR; /* first accumulator row of this lane, in the wave's 16 */
    const int col = lane & 15;
    uint16_t *pw = sP + wave * 16 * PR;

    load_tile<DP>(sQ, SR, q, p.q_s[2], row0, p.seq_q, p.dim, p.stride_perm, nullptr, 0);

    float acc[ND][kCR];
#pragma unroll
    for (int j = 0; j < ND; ++j)
#pragma unroll
        for (int i = 0; i < kCR; ++i)
            acc[j][i] = 0.f;
    float m[kCR], l[kCR];
#pragma unroll
    for (int i = 0; i < kCR; ++i) {
        m[i] = -CUDART_INF_F;
        l[i] = 0.f;
    }

    for (int it = 0; it < n; ++it) {
        const int2 e = p.row_tent[beg + it];
        const int32_t *grp = key_group(p, lh, e.x);
        __syncthreads(); /* the previous K, V and P are consumed */
        load_tile<DP>(sK, SR, k, p.k_s[2], e.x * kTile, p.seq_k, p.dim, p.stride_perm, grp,
                      p.log2g);
        load_tile<DP>(sV, SR, v, p.v_s[2], e.x * kTile, p.seq_k, p.dim, p.stride_perm, grp,
                      p.log2g);
        __syncthreads();

        /* S = Q K^T for this wave's 16 rows */
        float s[NK][kCR];
#pragma unroll
        for (int j = 0; j < NK; ++j) {
#pragma unroll
            for (int i = 0; i < kCR; ++i)
                s[j][i] = 0.f;
#pragma unroll 1 /* registers: the k steps accumulate in place */
            for (int kk = 0; kk < ND; ++kk)
                mma16<BF>(s[j], sQ + wave * 16 * SR + kk * 16, SR, sK + j * 16 * SR + kk * 16, 1,
                          SR, lane);
        }
        if (e.y >= 0) { /* mixed pair: element keep test from the sub-block codes */
            const int32_t *sub = p.sub + (int64_t)e.y * p.ns * p.ns;
#pragma unroll
            for (int i = 0; i < kCR; ++i) {
                int row = wave * 16 + m0 + i;
#pragma unroll
                for (int j = 0; j < NK; ++j) {
                    int cl = j * 16 + col;
                    int code = sub[(row >> p.log2g) * p.ns + (cl >> p.log2g)];
                    if (code == BSA_CUDA_SUB_FULL)
                        continue;
                    int qa = row0 + row, ka = e.x * kTile + cl;
                    bool keep;
                    if (code == BSA_CUDA_SUB_PRED) /* predicates need the true key position */
                        keep =
                            bsa_pred_keep(&p.pred, qa,
                                          grp ? tile_row(grp, p.log2g, 0, cl, p.seq_k) : ka) != 0;
                    else
                        keep = keep_code(p, code, qa, ka);
                    if (!keep)
                        s[j][i] = -CUDART_INF_F;
                }
            }
        }

        /* online softmax, base 2 */
        float alpha[kCR];
#pragma unroll
        for (int i = 0; i < kCR; ++i) {
            float mx = -CUDART_INF_F;
#pragma unroll
            for (int j = 0; j < NK; ++j) {
                s[j][i] *= p.scale_log2;
                mx = fmaxf(mx, s[j][i]);
            }
            mx = row_max16(mx);
            float mn = fmaxf(m[i], mx);
            float mu = mn == -CUDART_INF_F ? 0.f : mn; /* no (-inf) - (-inf) */
            alpha[i] = exp2f(m[i] - mu);
            m[i] = mn;
            l[i] *= alpha[i];
#pragma unroll
            for (int j = 0; j < NK; ++j) {
                float pr = exp2f(s[j][i] - mu);
                l[i] += pr;
                pw[(m0 + i) * PR + j * 16 + col] = from_f<BF>(pr);
            }
#pragma unroll
            for (int d = 0; d < ND; ++d)
                acc[d][i] *= alpha[i];
        }
        __syncthreads(); /* P rows written by other lanes of this wave */

        /* O += P V */
#pragma unroll
        for (int d = 0; d < ND; ++d)
#pragma unroll 1
            for (int kk = 0; kk < NK; ++kk)
                mma16<BF>(acc[d], pw + kk * 16, PR, sV + kk * 16 * SR + d * 16, SR, 1, lane);
    }

#pragma unroll
    for (int i = 0; i < kCR; ++i) {
        float li = row_sum16(l[i]);
        float inv = li > 0.f ? 1.f / li : 0.f;
        int rr = row0 + wave * 16 + m0 + i;
        if (rr >= p.seq_q)
            continue;
        int pr = perm_row(rr, p.stride_perm, p.seq_q);
#pragma unroll
        for (int d = 0; d < ND; ++d) {
            int dd = d * 16 + col;
            if (dd < p.dim)
                o[(int64_t)pr * p.o_s[2] + dd] = from_f<BF>(acc[d][i] * inv);
        }
        if (p.lse && col == 0)
            p.lse[(int64_t)bh * p.seq_q + pr] =
                li > 0.f ? (m[i] + log2f(li)) * 0.69314718055994531f : -CUDART_INF_F;
    }
}

template <bool BF, int DP>
static hipError_t launch_dp(const bsa_cuda_params &p, int wave, hipStream_t s)
{
    dim3 grid((unsigned)p.n_qt, (unsigned)(p.batch * p.heads));
    hipLaunchKernelGGL((fwd_kernel<BF, DP>), grid, dim3(kWaves * wave), 0, s, p);
    return hipGetLastError();
}

template <bool BF>
static hipError_t launch_bf(int dpad, const bsa_cuda_params &p, int wave, hipStream_t s)
{
    switch (dpad) {
    case 32:
        return launch_dp<BF, 32>(p, wave, s);
    case 64:
        return launch_dp<BF, 64>(p, wave, s);
    default:
        return launch_dp<BF, 128>(p, wave, s);
    }
}

} // namespace bsa_hip

hipError_t bsa_hip_tile_fwd_launch(bsa_dtype dt, int dpad, int wave, const bsa_cuda_params &p,
                                   hipStream_t s)
{
    if (p.n_qt == 0 || p.batch * p.heads == 0)
        return hipSuccess;
    return dt == BSA_DTYPE_BF16 ? bsa_hip::launch_bf<true>(dpad, p, wave, s)
                                : bsa_hip::launch_bf<false>(dpad, p, wave, s);
}
