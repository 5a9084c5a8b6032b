/*
 * Context-parallel plans on the device (dist_kernels.h): the shard packing,
 * the log-sum-exp merge, the gradient sums and the unpacking of
 * dist/dist_ops.c's host loops as kernels on the caller's stream.  They
 * are memory-bound and few (a handful per ring step), so they are written
 * for clarity: grid-stride loops, one element (or, for the merge, one
 * warp-wide row) per thread.  Every element is computed by one thread in
 * the host loops' order, with no atomics: the same inputs give the same
 * bits, run after run.
 */
#include "dist_kernels.h"

#include "../../api/internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include <type_traits>

namespace
{

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20; /* grid-stride beyond this */

unsigned blocks_for(int64_t items)
{
    int64_t b = (items + kThreads - 1) / kThreads;
    return (unsigned)(b < 1 ? 1 : b > kMaxBlocks ? kMaxBlocks : b);
}

__device__ __forceinline__ int64_t thread_index()
{
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t thread_count()
{
    return (int64_t)gridDim.x * blockDim.x;
}

bsa_status device_error(cudaError_t e, const char *what)
{
    bsa_status st = e == cudaErrorMemoryAllocation ? BSA_ERROR_OUT_OF_MEMORY : BSA_ERROR_DEVICE;
    return bsa_fail(st, "bsa dist (cuda): %s: %s (%s)", what, cudaGetErrorString(e),
                    cudaGetErrorName(e));
}

bsa_status launched(const char *what)
{
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? BSA_SUCCESS : device_error(e, what);
}

/* dtype codes as template arguments (bsa_dtype's values) */
template <int DT> __device__ __forceinline__ double load(const void *b, int64_t i);
template <> __device__ __forceinline__ double load<BSA_DTYPE_F32>(const void *b, int64_t i)
{
    return static_cast<const float *>(b)[i];
}
template <> __device__ __forceinline__ double load<BSA_DTYPE_F16>(const void *b, int64_t i)
{
    return __half2float(static_cast<const __half *>(b)[i]);
}
template <> __device__ __forceinline__ double load<BSA_DTYPE_BF16>(const void *b, int64_t i)
{
    return __bfloat162float(static_cast<const __nv_bfloat16 *>(b)[i]);
}

/* double -> float -> dtype, each to nearest even: api/half.h's rounding */
template <int DT> __device__ __forceinline__ void store(void *b, int64_t i, double v);
template <> __device__ __forceinline__ void store<BSA_DTYPE_F32>(void *b, int64_t i, double v)
{
    static_cast<float *>(b)[i] = (float)v;
}
template <> __device__ __forceinline__ void store<BSA_DTYPE_F16>(void *b, int64_t i, double v)
{
    static_cast<__half *>(b)[i] = __float2half_rn((float)v);
}
template <> __device__ __forceinline__ void store<BSA_DTYPE_BF16>(void *b, int64_t i, double v)
{
    static_cast<__nv_bfloat16 *>(b)[i] = __float2bfloat16_rn((float)v);
}

/* Strided [d0, d1, d2, d3] (strides s0, s1, s2, 1) <-> contiguous. */
struct shape4 {
    int64_t d1, d2, d3, s0, s1, s2;
};

__device__ __forceinline__ int64_t strided_offset(const shape4 &s, int64_t i)
{
    int64_t e = i % s.d3, r = i / s.d3;
    int64_t x = r % s.d2;
    r /= s.d2;
    return (r / s.d1) * s.s0 + (r % s.d1) * s.s1 + x * s.s2 + e;
}

/* Bit copies (T: an unsigned integer of the element's size). */
template <typename T> __global__ void pack_kernel(T *dst, const T *src, shape4 s, int64_t n)
{
    for (int64_t i = thread_index(); i < n; i += thread_count())
        dst[i] = src[strided_offset(s, i)];
}

template <int DT> __global__ void unpack_kernel(void *dst, const double *acc, shape4 s, int64_t n)
{
    for (int64_t i = thread_index(); i < n; i += thread_count())
        store<DT>(dst, strided_offset(s, i), acc[i]);
}

__global__ void fill_kernel(double *acc, int64_t n, double value)
{
    for (int64_t i = thread_index(); i < n; i += thread_count())
        acc[i] = value;
}

template <int DT> __global__ void add_kernel(double *acc, const void *part, int64_t n)
{
    for (int64_t i = thread_index(); i < n; i += thread_count())
        acc[i] = __dadd_rn(acc[i], load<DT>(part, i));
}

/* One warp per row: every lane reads the row's two lse values, computes the
 * weights (the same in every lane), scales its columns; lane 0 stores the
 * new lse once every lane has read the old one. */
template <int DT>
__global__ void merge_kernel(double *acc_o, double *acc_lse, const void *o_part,
                             const float *lse_part, int64_t rows, int64_t dv)
{
    const int lane = threadIdx.x & 31;
    for (int64_t r = thread_index() >> 5; r < rows; r += thread_count() >> 5) {
        double ls = lse_part[r], la = acc_lse[r];
        if (ls == -INFINITY)
            continue;                 /* no visible key in this shard: O_s = 0 */
        double m = la > ls ? la : ls; /* a NaN ls propagates (m = ls) */
        double lse = __dadd_rn(m, log(__dadd_rn(exp(la - m), exp(ls - m))));
        double wa = exp(la - lse), ws = exp(ls - lse);
        double *o = acc_o + r * dv;
        for (int64_t e = lane; e < dv; e += 32)
            o[e] = __dadd_rn(__dmul_rn(o[e], wa), __dmul_rn(ws, load<DT>(o_part, r * dv + e)));
        __syncwarp();
        if (lane == 0)
            acc_lse[r] = lse;
    }
}

__global__ void lse_out_kernel(float *lse, const double *acc_lse, int64_t rows)
{
    for (int64_t i = thread_index(); i < rows; i += thread_count())
        lse[i] = (float)acc_lse[i];
}

shape4 shape_of(const int64_t *dims, const int64_t *strides)
{
    return shape4{dims[1], dims[2], dims[3], strides[0], strides[1], strides[2]};
}

int64_t count_of(const int64_t *dims)
{
    return dims[0] * dims[1] * dims[2] * dims[3];
}

/* launch(dtype tag) with dt as a template argument (decltype(tag)::value),
 * then the launch's status under `what`. */
template <typename Launch> bsa_status by_dtype(bsa_dtype dt, const char *what, Launch &&launch)
{
    if (dt == BSA_DTYPE_F32)
        launch(std::integral_constant<int, BSA_DTYPE_F32>{});
    else if (dt == BSA_DTYPE_F16)
        launch(std::integral_constant<int, BSA_DTYPE_F16>{});
    else
        launch(std::integral_constant<int, BSA_DTYPE_BF16>{});
    return launched(what);
}

} // namespace

extern "C" bsa_status bsa_cuda_dist_enter(int device, int *prev)
{
    *prev = -1;
    int cur = -1;
    cudaError_t e = cudaGetDevice(&cur);
    if (e == cudaSuccess && cur != device) {
        e = cudaSetDevice(device);
        if (e == cudaSuccess)
            *prev = cur;
    }
    return e == cudaSuccess ? BSA_SUCCESS : device_error(e, "selecting the context's device");
}

extern "C" void bsa_cuda_dist_leave(int prev)
{
    if (prev >= 0)
        (void)cudaSetDevice(prev);
}

extern "C" bsa_status bsa_cuda_dist_alloc(int device, size_t bytes, void **mem)
{
    *mem = nullptr;
    int prev;
    bsa_status st = bsa_cuda_dist_enter(device, &prev);
    if (st != BSA_SUCCESS)
        return st;
    cudaError_t e = cudaMalloc(mem, bytes ? bytes : 1);
    bsa_cuda_dist_leave(prev);
    if (e == cudaSuccess)
        return BSA_SUCCESS;
    (void)cudaGetLastError();
    *mem = nullptr;
    if (e == cudaErrorMemoryAllocation)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY,
                        "bsa_dist_plan_create: out of device memory for the exchange buffers "
                        "(%zu bytes on device %d)",
                        bytes, device);
    return device_error(e, "cudaMalloc of the exchange buffers");
}

extern "C" void bsa_cuda_dist_release(int device, void *mem)
{
    if (!mem)
        return;
    int prev;
    if (bsa_cuda_dist_enter(device, &prev) != BSA_SUCCESS)
        return;
    (void)cudaFree(mem);
    bsa_cuda_dist_leave(prev);
}

extern "C" bsa_status bsa_cuda_dist_pack(void *dst, const void *src, const int64_t *dims,
                                         const int64_t *strides, size_t es, void *stream)
{
    int64_t n = count_of(dims);
    if (n == 0)
        return BSA_SUCCESS;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    shape4 sh = shape_of(dims, strides);
    if (es == 4)
        pack_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<uint32_t *>(dst),
                                                       static_cast<const uint32_t *>(src), sh, n);
    else
        pack_kernel<<<blocks_for(n), kThreads, 0, s>>>(static_cast<uint16_t *>(dst),
                                                       static_cast<const uint16_t *>(src), sh, n);
    return launched("pack kernel launch");
}

extern "C" bsa_status bsa_cuda_dist_unpack(void *dst, const double *acc, const int64_t *dims,
                                           const int64_t *strides, bsa_dtype dt, void *stream)
{
    int64_t n = count_of(dims);
    if (n == 0)
        return BSA_SUCCESS;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    shape4 sh = shape_of(dims, strides);
    return by_dtype(dt, "unpack kernel launch", [&](auto tag) {
        unpack_kernel<decltype(tag)::value><<<blocks_for(n), kThreads, 0, s>>>(dst, acc, sh, n);
    });
}

extern "C" bsa_status bsa_cuda_dist_fill(double *acc, int64_t n, double value, void *stream)
{
    if (n == 0)
        return BSA_SUCCESS;
    fill_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(acc, n, value);
    return launched("fill kernel launch");
}

extern "C" bsa_status bsa_cuda_dist_add(double *acc, const void *part, int64_t n, bsa_dtype dt,
                                        void *stream)
{
    if (n == 0)
        return BSA_SUCCESS;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    return by_dtype(dt, "add kernel launch", [&](auto tag) {
        add_kernel<decltype(tag)::value><<<blocks_for(n), kThreads, 0, s>>>(acc, part, n);
    });
}

extern "C" bsa_status bsa_cuda_dist_merge(double *acc_o, double *acc_lse, const void *o_part,
                                          const float *lse_part, int64_t rows, int64_t dv,
                                          bsa_dtype dt, void *stream)
{
    if (rows == 0)
        return BSA_SUCCESS;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    unsigned b = blocks_for(rows * 32); /* a warp per row */
    return by_dtype(dt, "merge kernel launch", [&](auto tag) {
        merge_kernel<decltype(tag)::value>
            <<<b, kThreads, 0, s>>>(acc_o, acc_lse, o_part, lse_part, rows, dv);
    });
}

extern "C" bsa_status bsa_cuda_dist_lse_out(float *lse, const double *acc_lse, int64_t rows,
                                            void *stream)
{
    if (rows == 0)
        return BSA_SUCCESS;
    lse_out_kernel<<<blocks_for(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        lse, acc_lse, rows);
    return launched("lse kernel launch");
}

extern "C" bsa_status bsa_cuda_dist_sync(void *stream)
{
    cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    return e == cudaSuccess ? BSA_SUCCESS : device_error(e, "cudaStreamSynchronize");
}
