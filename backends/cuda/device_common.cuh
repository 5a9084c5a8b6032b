/*
 * Device helpers of the CUDA backend: dtype traits, mma.sync / ldmatrix /
 * cp.async wrappers (sm_80+), row addressing through the strided
 * permutation, and the element keep test of a mixed tile pair.
 */
#ifndef BSA_CUDA_DEVICE_COMMON_CUH
#define BSA_CUDA_DEVICE_COMMON_CUH

#include "cuda_internal.h"

#include "vendor_device.cuh"

#include <stdint.h>

namespace bsa_cuda
{

constexpr int kTile = BSA_CUDA_TILE;
constexpr int kWarp = BSA_WAVE; /* 32 on NVIDIA; vendor.h */

template <typename T> struct dtype_traits;
template <> struct dtype_traits<__half> {
    using pair = __half2;
    static __device__ __forceinline__ float to_float(__half x)
    {
        return __half2float(x);
    }
    static __device__ __forceinline__ uint32_t pack(float a, float b)
    {
        __half2 h = __floats2half2_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ __half from_float(float x)
    {
        return __float2half_rn(x);
    }
};
template <> struct dtype_traits<__nv_bfloat16> {
    using pair = __nv_bfloat162;
    static __device__ __forceinline__ float to_float(__nv_bfloat16 x)
    {
        return __bfloat162float(x);
    }
    static __device__ __forceinline__ uint32_t pack(float a, float b)
    {
        __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ __nv_bfloat16 from_float(float x)
    {
        return __float2bfloat16_rn(x);
    }
};

#if !defined(BSA_VENDOR_HIP) /* PTX: NVIDIA only (AMD tiles: backends/hip/) */
/* D(16x8 f32) += A(16x16) B(16x8) */
template <typename T>
__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, const uint32_t *b);
template <>
__device__ __forceinline__ void mma16816<__half>(float *c, const uint32_t *a, const uint32_t *b)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float *c, const uint32_t *a,
                                                        const uint32_t *b)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, const void *p)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t *r, const void *p)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
#endif
}

/* 16-byte asynchronous copy; src_bytes = 0 zero-fills (rows past the end,
 * head-dim padding). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

#endif

/* Natural time position of layout-order row r (bsa_perm_row on the device). */
__device__ __forceinline__ int perm_row(int r, int stride, int n)
{
    if (!stride)
        return r;
    int bt = n / stride;
    return (r % bt) * stride + r / bt;
}

/* Key block list of key tile kt when key tiles are gathered, else NULL. */
__device__ __forceinline__ const int32_t *key_group(const bsa_cuda_params &p, int lh, int kt)
{
    return p.kgrp ? p.kgrp + ((int64_t)lh * p.n_kt + kt) * p.kg : nullptr;
}

/* Layout-order row of row r of a tile starting at row0, or of a gathered
 * key tile (grp: its key blocks of 1 << log2b rows; past the end: seq). */
__device__ __forceinline__ int tile_row(const int32_t *grp, int log2b, int row0, int r, int seq)
{
    if (!grp)
        return row0 + r;
    int kb = __ldg(grp + (r >> log2b));
    return kb < 0 ? seq : (kb << log2b) + (r & ((1 << log2b) - 1));
}

/* Keep test of element (q, k) (absolute, layout order) of a sub-block of a
 * mixed tile pair whose code is not FULL. */
__device__ __forceinline__ bool keep_code(const bsa_cuda_params &p, int code, int q, int k)
{
    if (code == BSA_CUDA_SUB_ABSENT)
        return false;
    if (code == BSA_CUDA_SUB_PRED)
        return bsa_pred_keep(&p.pred, q, k) != 0;
    int r = q & (p.block - 1), c = k & (p.block - 1);
    uint64_t w = __ldg(p.bits + ((int64_t)code * p.block + r) * p.words + (c >> 6));
    return (w >> (c & 63)) & 1u;
}

} // namespace bsa_cuda

#endif
