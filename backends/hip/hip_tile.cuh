/*
 * The AMD matrix tile: C(16x16, f32) += A(16x16) . B(16x16) for f16 / bf16
 * operands in shared memory (LDS), one wavefront per tile.  It is the AMD
 * counterpart of the mma.sync wrappers in ../cuda/device_common.cuh: the
 * kernels only see the fragment layout below, never the instruction.
 *
 *   CDNA (gfx90a, gfx940..942): one v_mfma_f32_16x16x16{f16,bf16_1k};
 *   anything else (gfx1030 and other RDNA, older GCN): the same product with
 *   scalar FMAs over LDS, so every target compiles and runs the same kernel.
 *
 * Accumulator layout (both paths): with W = BSA_WAVE lanes and R = 256 / W
 * floats per lane, lane l holds C[(l / 16) * R + i][l % 16], i < R.  For
 * W = 64 that is exactly the MFMA 16x16x16 result layout; for W = 32 each
 * lane holds 8 rows.  Row reductions therefore stay inside groups of 16
 * consecutive lanes (xor shuffles 1..8), whatever the wave width.
 */
#ifndef BSA_HIP_TILE_CUH
#define BSA_HIP_TILE_CUH

#include "../cuda/device_common.cuh"

#include <stdint.h>

#if defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__)
#define BSA_HIP_MFMA 1
#else
#define BSA_HIP_MFMA 0
#endif

namespace bsa_hip
{

constexpr int kWave = BSA_WAVE;
static_assert(kWave == 32 || kWave == 64, "wave width must be 32 or 64");
constexpr int kCR = 256 / kWave; /* accumulator floats per lane of one 16x16 tile */

/* Element bits <-> float; BF selects bf16 (else f16). */
template <bool BF> __device__ __forceinline__ float to_f(uint16_t x)
{
    if constexpr (BF) {
        return __uint_as_float((uint32_t)x << 16);
    } else {
        _Float16 h = __builtin_bit_cast(_Float16, x);
        return (float)h;
    }
}
template <bool BF> __device__ __forceinline__ uint16_t from_f(float x)
{
    if constexpr (BF) {
        /* round to nearest even; NaN stays NaN (quiet bit kept) */
        uint32_t u = __float_as_uint(x);
        if ((u & 0x7fffffffu) > 0x7f800000u)
            return (uint16_t)((u >> 16) | 0x40u);
        u += 0x7fffu + ((u >> 16) & 1u);
        return (uint16_t)(u >> 16);
    } else {
        return __builtin_bit_cast(uint16_t, (_Float16)x);
    }
}

/* c (this lane's R floats of a 16x16 tile) += A . B with
 *   A(m, k) = a[m * am + k]          (rows of A contiguous in k),
 *   B(k, n) = b[k * bk + n * bn],    m, n, k < 16. */
template <bool BF>
__device__ __forceinline__ void mma16(float *c, const uint16_t *a, int am, const uint16_t *b,
                                      int bk, int bn, int lane)
{
#if BSA_HIP_MFMA
    typedef short s4 __attribute__((ext_vector_type(4)));
    typedef _Float16 h4 __attribute__((ext_vector_type(4)));
    typedef float f4 __attribute__((ext_vector_type(4)));
    /* MFMA 16x16x16 operands: lane l holds A(l % 16, 4 (l / 16) + j) and
     * B(4 (l / 16) + j, l % 16), j < 4 */
    const int r = lane & 15, k0 = (lane >> 4) * 4;
    s4 av, bv;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        av[j] = (short)a[r * am + k0 + j];
        bv[j] = (short)b[(k0 + j) * bk + r * bn];
    }
    f4 cv = {c[0], c[1], c[2], c[3]};
    if constexpr (BF)
        cv = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(av, bv, cv, 0, 0, 0);
    else
        cv = __builtin_amdgcn_mfma_f32_16x16x16f16(__builtin_bit_cast(h4, av),
                                                   __builtin_bit_cast(h4, bv), cv, 0, 0, 0);
    c[0] = cv[0];
    c[1] = cv[1];
    c[2] = cv[2];
    c[3] = cv[3];
#else
    const int n = lane & 15, m0 = (lane >> 4) * kCR;
#pragma unroll 2 /* full unrolling spills on wave32 (R = 8 rows per lane) */
    for (int k = 0; k < 16; ++k) {
        float bkn = to_f<BF>(b[k * bk + n * bn]);
#pragma unroll
        for (int i = 0; i < kCR; ++i)
            c[i] = fmaf(to_f<BF>(a[(m0 + i) * am + k]), bkn, c[i]);
    }
#endif
}

/* Max / sum over the 16 lanes that hold one accumulator row. */
__device__ __forceinline__ float row_max16(float x)
{
#pragma unroll
    for (int off = 1; off < 16; off *= 2)
        x = fmaxf(x, __shfl_xor(x, off));
    return x;
}
__device__ __forceinline__ float row_sum16(float x)
{
#pragma unroll
    for (int off = 1; off < 16; off *= 2)
        x += __shfl_xor(x, off);
    return x;
}

} // namespace bsa_hip

#endif
