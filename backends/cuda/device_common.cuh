/*
 * Device helpers of the CUDA backend: dtype traits, mma.sync / ldmatrix /
 * cp.async wrappers (sm_80+), row addressing through the strided
 * permutation, and the element keep test of a mixed tile pair.
 */
#ifndef BSA_CUDA_DEVICE_COMMON_CUH
#define BSA_CUDA_DEVICE_COMMON_CUH

#include "cuda_internal.h"

#include "vendor_device.cuh"

#include <limits.h>
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
/* 4-byte asynchronous copy (a row's lse offset or delta), zero-filled
 * likewise. */
__device__ __forceinline__ void cp_async4(void *dst, const void *src, int src_bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
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

#else /* AMD: no asynchronous copy; the copy completes before the barrier                          \
       * that follows it in the kernels, so commit / wait are no-ops */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes)
{
    uint4 v = make_uint4(0, 0, 0, 0);
    if (src_bytes)
        v = *static_cast<const uint4 *>(src);
    *static_cast<uint4 *>(dst) = v;
}
__device__ __forceinline__ void cp_async4(void *dst, const void *src, int src_bytes)
{
    *static_cast<float *>(dst) = src_bytes ? *static_cast<const float *>(src) : 0.f;
}
__device__ __forceinline__ void cp_async_commit()
{
}
template <int N> __device__ __forceinline__ void cp_async_wait()
{
}
#endif

/* The special-function unit's approximations (NVIDIA; elsewhere the
 * library calls). */
enum class sfu_op { ex2, lg2, rcp };
template <sfu_op OP> __device__ __forceinline__ float sfu(float x)
{
#if !defined(BSA_VENDOR_HIP) && defined(__CUDA_ARCH__)
    float y;
    if constexpr (OP == sfu_op::ex2)
        asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    else if constexpr (OP == sfu_op::lg2)
        asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    else
        asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return OP == sfu_op::ex2 ? exp2f(x) : OP == sfu_op::lg2 ? log2f(x) : 1.f / x;
#endif
}

/* 2^x (relative error ~2^-22, +0 for -inf, subnormal results flushed):
 * exp2f adds range handling around it that the softmax's probabilities,
 * all in [0, 1], do not need. */
__device__ __forceinline__ float fast_exp2(float x)
{
    return sfu<sfu_op::ex2>(x);
}

/* log2(x) (relative error ~2^-22) for the log-sum-exp's row sums, which
 * are >= 1 (the row max contributes 2^0): log2f adds subnormal and range
 * handling, ~20 instructions a row in the forward's epilogue. */
__device__ __forceinline__ float fast_log2(float x)
{
    return sfu<sfu_op::lg2>(x);
}

/* 1 / x (within 1 ulp) for the forward's row sums (>= 1): the IEEE
 * division adds a Newton step and a slow-path call. */
__device__ __forceinline__ float fast_rcp(float x)
{
    return sfu<sfu_op::rcp>(x);
}

/* The backward's exponent offset of a query row, -lse log2(e), from its
 * natural-log lse; -inf for a row that saw no key (lse -inf), so that
 * prob() gives 0 for all of its entries without a test per entry. */
__device__ __forceinline__ float lse_offset(float lse)
{
    constexpr float log2e = 1.4426950408889634f;
    return lse == -CUDART_INF_F ? -CUDART_INF_F : -lse * log2e;
}

/* (segment, head) index of this thread block: grids put it in y and, past
 * 65535, in z too (bsa_cuda_grid); blocks past the end have no work. */
__device__ __forceinline__ int grid_bh()
{
    return (int)(blockIdx.z * gridDim.y + blockIdx.y);
}

/* x, as a value the compiler cannot see through: it keeps an address
 * step as a step instead of re-deriving each address from the stride
 * (which it reloads from the constant bank under register pressure). */
__device__ __forceinline__ int64_t opaque(int64_t x)
{
#if defined(__CUDA_ARCH__)
    asm("" : "+l"(x));
#endif
    return x;
}

/* A pointer the compiler cannot see through: it stays one 64-bit base,
 * so that an address is one widening multiply-add of a 32-bit offset
 * instead of the base's parts re-added to every offset. */
template <typename T> __device__ __forceinline__ T *opaque_ptr(T *x)
{
#if defined(__CUDA_ARCH__)
    asm("" : "+l"(x));
#endif
    return x;
}

/* The kernel's parameters, read afresh where this is called: on AMD a
 * kernel's loop-invariant parameter reads are hoisted into scalar
 * registers, and the tile kernels' parameters outnumber the 102 SGPRs a
 * wave has (the rest spill to VGPR lanes).  Read through the kernarg
 * pointer made opaque at the call, they stay scalar loads (from the
 * scalar cache) at their uses.  p must be the kernel's one argument (the
 * start of its kernarg segment).  NVIDIA: p itself. */
__device__ __forceinline__ const bsa_cuda_params &fresh_params(const bsa_cuda_params &p)
{
#if defined(BSA_VENDOR_HIP) && defined(__HIP_DEVICE_COMPILE__)
    auto kp = __builtin_amdgcn_kernarg_segment_ptr();
    asm volatile("" : "+s"(kp));
    return *(const bsa_cuda_params *)kp;
#else
    return p;
#endif
}

/* Natural time position of layout-order row r (bsa_perm_row on the device). */
__device__ __forceinline__ int perm_row(int r, int stride, int n)
{
    if (!stride)
        return r;
    int bt = n / stride;
    return (r % bt) * stride + r / bt;
}

/* perm_row over the rows r, r + step, r + 2 step, ... of a tile: one
 * division for the first, a carry per step after it, instead of two
 * divisions by a run-time value per row (measured with v30's mask change,
 * bench/NOTES.md). */
struct perm_walk {
    int a, b, bt, stride; /* row = b bt + a; natural position a stride + b */
    __device__ __forceinline__ perm_walk(int r, int stride_, int n)
        : bt(n / stride_), stride(stride_)
    {
        b = r / bt;
        a = r - b * bt;
    }
    __device__ __forceinline__ int pos() const
    {
        return a * stride + b;
    }
    __device__ __forceinline__ void advance(int step)
    {
        a += step;
        while (a >= bt) {
            a -= bt;
            ++b;
        }
    }
};

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

/* Where one (segment, head) of a call lives.  A segment is a batch entry,
 * or one packed sequence (varlen: cu_q / cu_k give its first tensor rows).
 * Positions inside a segment are the layout's; its rows past len_q / len_k
 * are not its own (another sequence's, or past the tensor) and are neither
 * read nor written; keys at natural positions >= klim are masked.  Offsets
 * and lengths from device arrays are clamped into the tensors, so bad
 * values cannot address memory outside them. */
struct seg_view {
    int b;            /* tensor batch index */
    int len_q, len_k; /* rows of the segment, <= the layout's */
    int klim;         /* keys at natural positions >= klim are masked */
    int64_t q0, k0;   /* first tensor row of the segment */
    int64_t lse0;     /* lse / delta index of (head 0, row 0); + h * time_q per head */
};

__device__ __forceinline__ seg_view seg_of(const bsa_cuda_params &p, int s)
{
    seg_view v;
    if (p.cu_q) {
        int a = min(max(__ldg(p.cu_q + s), 0), p.time_q);
        int e = min(max(__ldg(p.cu_q + s + 1), a), p.time_q);
        v.q0 = a;
        v.len_q = min(e - a, p.seq_q);
        a = min(max(__ldg(p.cu_k + s), 0), p.time_k);
        e = min(max(__ldg(p.cu_k + s + 1), a), p.time_k);
        v.k0 = a;
        v.len_k = min(e - a, p.seq_k);
        v.b = 0;
    } else {
        v.q0 = v.k0 = 0;
        v.len_q = p.seq_q;
        v.len_k = p.seq_k;
        v.b = s;
    }
    v.lse0 = (int64_t)v.b * p.heads * p.time_q + v.q0;
    v.klim = p.klen ? min(max(__ldg(p.klen + s), 0), v.len_k) : v.len_k;
    return v;
}

/* seg_of, or (FEAT false: no key lengths, packed sequences or kv groups in
 * the call) the batch entry itself, known without a load. */
template <bool FEAT> __device__ __forceinline__ seg_view seg_at(const bsa_cuda_params &p, int s)
{
    if (FEAT)
        return seg_of(p, s);
    seg_view v;
    v.b = s;
    v.len_q = p.seq_q;
    v.len_k = v.klim = p.seq_k;
    v.q0 = v.k0 = 0;
    v.lse0 = (int64_t)s * p.heads * p.time_q;
    return v;
}

/* Base of (segment, head) in a tensor: row 0 of the segment. */
template <typename T, typename P>
__device__ __forceinline__ T *seg_base(P *ptr, const int64_t *st, const seg_view &v, int head,
                                       bool key_side)
{
    return static_cast<T *>(ptr) + v.b * st[0] + head * st[1] + (key_side ? v.k0 : v.q0) * st[2];
}

/* Whether a key tile may hold keys at or past the segment's key limit (so
 * that key_cut must be tested).  Natural tiles: only the tile holding klim;
 * gathered or permuted ones: any tile, once the limit is below the layout's. */
__device__ __forceinline__ bool tile_needs_cut(const bsa_cuda_params &p, const seg_view &v,
                                               const int32_t *kgrp, int kt)
{
    if (kgrp || p.stride_perm)
        return v.klim < p.seq_k;
    return (kt + 1) * kTile > v.klim;
}

/* Key at row kr of key tile kt (kgrp: its gathered blocks) is cut off: past
 * the segment or at a natural position >= klim. */
__device__ __forceinline__ bool key_cut(const bsa_cuda_params &p, const seg_view &v,
                                        const int32_t *kgrp, int kt, int kr)
{
    int k = tile_row(kgrp, p.log2g, kt * kTile, kr, v.len_k);
    return k >= v.len_k || perm_row(k, p.stride_perm, p.seq_k) >= v.klim;
}

/* Drops the tail of a row's key-tile list (ascending) that lies wholly at or
 * past the key limit: natural, unpermuted key tiles only (any others keep
 * their list and rely on key_cut). */
__device__ __forceinline__ int trim_key_list(const bsa_cuda_params &p, const seg_view &v,
                                             bool gathered, const int2 *ent, int n)
{
    if (gathered || p.stride_perm)
        return n;
    while (n > 0 && __ldg(&ent[n - 1].x) * kTile >= v.klim)
        --n;
    return n;
}

/* The work of a row-side thread block (forward, dQ): its (segment, query
 * head), layout and kv heads, query tile and the entries [beg, beg + n) of
 * row_tent it walks (key tiles wholly past the key limit dropped). */
struct q_job {
    int h, lh, kvh, row0, beg, n;
    seg_view sv;
};

/* Fills j; false when the block has none (past the last segment, or its
 * query tile lies past its sequence). */
template <bool FEAT>
__device__ __forceinline__ bool q_job_of(const bsa_cuda_params &p, bool gathered, q_job &j)
{
    const int bh = grid_bh(), sg = bh / p.heads;
    j.h = bh - sg * p.heads;
    if (sg >= p.n_seg)
        return false;
    j.lh = p.lheads == 1 ? 0 : j.h;
    j.kvh = FEAT ? j.h / p.group : j.h;
    const int qt = p.q_order[j.lh * p.n_qt + blockIdx.x];
    j.row0 = qt * kTile;
    j.sv = seg_at<FEAT>(p, sg);
    if (j.row0 >= j.sv.len_q)
        return false;
    j.beg = p.row_tptr[j.lh * (p.n_qt + 1) + qt];
    const int n_all = p.row_tptr[j.lh * (p.n_qt + 1) + qt + 1] - j.beg;
    j.n = FEAT ? trim_key_list(p, j.sv, gathered, p.row_tent + j.beg, n_all) : n_all;
    return true;
}

/* bsa_pred_keep in 32-bit arithmetic (positions and their differences fit
 * an int: sequences are < 2^31 long). */
__device__ __forceinline__ bool pred_keep(const bsa_pred &pr, int q, int k)
{
    const int d = q - k;
    bool keep = true;
    if (pr.flags & BSA_PRED_BIT_CAUSAL)
        keep = d >= 0;
    if (pr.flags & BSA_PRED_BIT_WINDOW)
        keep = keep && d < pr.window && -d < pr.window;
    if (pr.flags & BSA_PRED_BIT_PREFIX)
        keep = keep && (k < pr.prefix || d >= 0);
    return keep;
}

/* The predicates as an interval: with one coordinate y of the elements
 * fixed (a query when y_query, else a key), the other, x, passes every set
 * predicate iff lo <= x <= hi.  Causal: k <= q; window w: q - w < k < q + w;
 * prefix P: k < P or k <= q, that is k <= max(P - 1, q) for a fixed query,
 * and q >= k for a fixed key k >= P.  Worked out once per row of a masked
 * fragment, it leaves two compares per element (bench/NOTES.md, v31). */
struct pred_range {
    int lo, hi;
    __device__ __forceinline__ pred_range(const bsa_pred &pr, int y, bool y_query)
    {
        long long l = INT_MIN, h = INT_MAX;
        if (pr.flags & BSA_PRED_BIT_CAUSAL) {
            if (y_query)
                h = y;
            else
                l = y;
        }
        if (pr.flags & BSA_PRED_BIT_WINDOW) {
            l = max(l, (long long)y - pr.window + 1);
            h = min(h, (long long)y + pr.window - 1);
        }
        if (pr.flags & BSA_PRED_BIT_PREFIX) {
            if (y_query)
                h = min(h, (long long)max(pr.prefix - 1, y));
            else if (y >= pr.prefix)
                l = max(l, (long long)y);
        }
        lo = (int)l;
        hi = (int)h;
    }
    __device__ __forceinline__ bool keeps(int x) const
    {
        return x >= lo && x <= hi;
    }
};

/* Keep test of element (q, k) (absolute, layout order) of a sub-block of a
 * mixed tile pair whose code is not FULL. */
__device__ __forceinline__ bool keep_code(const bsa_cuda_params &p, int code, int q, int k)
{
    if (code == BSA_CUDA_SUB_ABSENT)
        return false;
    if (code == BSA_CUDA_SUB_PRED)
        return pred_keep(p.pred, q, k);
    int r = q & (p.block - 1), c = k & (p.block - 1);
    uint64_t w = __ldg(p.bits + ((int64_t)code * p.block + r) * p.words + (c >> 6));
    return (w >> (c & 63)) & 1u;
}

} // namespace bsa_cuda

#endif
