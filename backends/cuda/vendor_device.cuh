/*
 * Device half of the vendor header (see vendor.h): the fp16 / bf16 types
 * and conversions, the infinity constant and the warp shuffle the shared
 * kernels use, under their CUDA names.
 */
#ifndef BSA_CUDA_VENDOR_DEVICE_CUH
#define BSA_CUDA_VENDOR_DEVICE_CUH

#include "vendor.h"

#if defined(BSA_VENDOR_HIP)
#include <hip/hip_bfloat16.h>
#include <hip/hip_fp16.h>

/* ROCm 5.x has hip_bfloat16 (round-to-nearest-even from float) but not the
 * CUDA names; ROCm's __shfl_xor takes no mask (a wave never diverges on it
 * here: every caller is converged). */
typedef hip_bfloat16 __nv_bfloat16;
struct __nv_bfloat162 {
    hip_bfloat16 x, y;
};
__device__ __forceinline__ float __bfloat162float(hip_bfloat16 x)
{
    return static_cast<float>(x);
}
/* float -> bf16, round to nearest even, bit for bit hip_bfloat16(x) but
 * without its branches: per-lane branches on each converted value split
 * the tile kernels into divergent blocks, and on RDNA3 (gfx1100) the
 * values live across them spilled hundreds of VGPRs */
__device__ __forceinline__ hip_bfloat16 __float2bfloat16_rn(float x)
{
    const uint32_t u = __builtin_bit_cast(uint32_t, x);
    const uint32_t rne = u + 0x7fffu + ((u >> 16) & 1u);   /* zero, subnormal, normal */
    const uint32_t nan = (u & 0xffffu) ? u | 0x10000u : u; /* Inf, NaN: keep NaN a NaN */
    hip_bfloat16 h;
    h.data = (uint16_t)(((~u & 0x7f800000u) ? rne : nan) >> 16);
    return h;
}
__device__ __forceinline__ __nv_bfloat162 __floats2bfloat162_rn(float a, float b)
{
    return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
#define __shfl_xor_sync(mask, v, off) __shfl_xor((v), (off))
#ifndef CUDART_INF_F
#define CUDART_INF_F __builtin_huge_valf()
#endif

#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>
#endif

#endif
