/*
 * The Hopper kernels' launches (sm_90a; backends/cuda/CMakeLists.txt builds
 * the hopper/ files for that target alone): the wgmma forward on 128- and
 * 64-row tiles, dQ on 128-row tiles and dK/dV on 128-key tiles.  Their
 * instances live in wgmma_fwd.cu, wgmma_dq.cu and wgmma_dkdv.cu.
 */
#include "dkdv_wgmma.cuh"
#include "dq_wgmma.cuh"
#include "fwd_wgmma.cuh"
#include "fwd_ws_wgmma.cuh"
#include "wgmma_instances.h"

#include <cstdlib>
#include <cstring>
#include <cudaTypedefs.h>

namespace bsa_cuda
{
namespace hopper
{

/* the kernel of a kernel id for a call's shape, features and key tiles */
const void *kernel_of(int kernel, bsa_dtype dt, int dpad, bool feat, bool gather)
{
    switch (kernel) {
    case BSA_K_FWD_WGMMA2:
        return fwd_kernel_of(2, dt, dpad, feat, gather);
    case BSA_K_FWD_WGMMA1:
        return fwd_kernel_of(1, dt, dpad, feat, gather);
    case BSA_K_DQ_WGMMA2:
        return dq_kernel_of(dt, dpad, feat, gather);
    case BSA_K_DKDV_WGMMA2:
        return dkdv_kernel_of(dt, dpad, feat, gather);
    default:
        return nullptr;
    }
}

template <int DP> size_t smem_of(int kernel)
{
    return kernel == BSA_K_FWD_WGMMA2    ? smem_bytes<DP, 2>()
           : kernel == BSA_K_FWD_WGMMA1  ? smem_bytes<DP, 1>()
           : kernel == BSA_K_DQ_WGMMA2   ? dq_smem_bytes<DP, 2>()
           : kernel == BSA_K_DKDV_WGMMA2 ? dkdv_smem_bytes<DP>()
                                         : 0;
}

/* cuTensorMapEncodeTiled, through the runtime (the library links no
 * libcuda); null where the driver lacks it */
static PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder()
{
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void *f = nullptr;
        cudaDriverEntryPointQueryResult q;
#if CUDART_VERSION >= 12050
        const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                               cudaEnableDefault, &q);
#else
        const cudaError_t e =
            cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &q);
#endif
        if (e != cudaSuccess || q != cudaDriverEntryPointSuccess)
            f = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
    }();
    return fn;
}

/* The tensor map of K, V or O (dim columns): [batch][rows][heads][dim]
 * with the call's strides, in boxes of 64 columns x box_rows rows in
 * wgmma's 128-byte swizzle, zeros read (nothing written) past every edge.
 * False where TMA cannot address the tensor (rows or strides not 16-byte
 * aligned). */
static bool tile_tensor_map(CUtensorMap *map, const void *base, const int64_t *st, int dim,
                            int rows, int heads, int box_rows, const bsa_cuda_params &p,
                            bsa_dtype dt)
{
    const PFN_cuTensorMapEncodeTiled_v12000 enc = tensor_map_encoder();
    if (!enc || (uintptr_t)base % 16 != 0)
        return false;
    for (int i = 0; i < 3; ++i)
        if (st[i] <= 0 || st[i] % 8 != 0)
            return false;
    const cuuint64_t gdim[4] = {(cuuint64_t)dim, (cuuint64_t)rows, (cuuint64_t)heads,
                                (cuuint64_t)p.batch};
    const cuuint64_t gstride[3] = {(cuuint64_t)st[2] * 2, (cuuint64_t)st[1] * 2,
                                   (cuuint64_t)st[0] * 2};
    const cuuint32_t box[4] = {64, (cuuint32_t)box_rows, 1, 1}, estride[4] = {1, 1, 1, 1};
    return enc(map,
               dt == BSA_DTYPE_F16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                   : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
               4, const_cast<void *>(base), gdim, gstride, box, estride,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* The warp-specialised forward where it applies: the two-warpgroup forward
 * of a problem without key lengths or packed sequences, on natural key
 * tiles without the strided permutation, whose K and V TMA can address.
 * (At head dim 64 it first lost to the cp.async kernel on an H200, 4.21
 * against 3.95 ms, at one block per SM against two; it now runs two blocks
 * there: bench/NOTES.md, v32.)  BSA_CUDA_WS=0 keeps the cp.async kernel,
 * for comparisons.  Returns false where it does not apply, else launches
 * and sets *e. */
static bool launch_ws(const bsa_cuda_params &p, bsa_dtype dt, int dpad, dim3 grid, cudaStream_t s,
                      cudaError_t *e)
{
    const char *env = getenv("BSA_CUDA_WS");
    if ((env && !strcmp(env, "0")) || (dpad != 64 && dpad != 128) || p.klen || p.cu_q || p.kgrp ||
        p.stride_perm || p.time_k != p.seq_k || p.time_q != p.seq_q)
        return false;
    CUtensorMap tq, tk, tv, to;
    if (!tile_tensor_map(&tq, p.q, p.q_s, p.dim, p.seq_q, p.heads, kTile, p, dt) ||
        !tile_tensor_map(&tk, p.k, p.k_s, p.dim, p.seq_k, p.kv_heads, kTile, p, dt) ||
        !tile_tensor_map(&tv, p.v, p.v_s, p.dim_v, p.seq_k, p.kv_heads, kTile, p, dt) ||
        !tile_tensor_map(&to, p.o_out, p.o_s, p.dim_v, p.seq_q, p.heads, kWsStoreRows, p, dt))
        return false;
    void *args[] = {const_cast<bsa_cuda_params *>(&p), &tq, &tk, &tv, &to};
    const bool d64 = dpad == 64;
    *e = cudaLaunchKernel(fwd_ws_kernel_of(dt, dpad, p.pred_tiles != 0), grid, dim3(kWsThreads),
                          args, d64 ? ws_smem_bytes<64>() : ws_smem_bytes<128>(), s);
    if (*e == cudaSuccess)
        *e = cudaGetLastError();
    return true;
}

} // namespace hopper
} // namespace bsa_cuda

using namespace bsa_cuda;

bool bsa_cuda_wgmma_built()
{
    return true;
}

size_t bsa_cuda_wgmma_smem(int kernel, int dpad)
{
    return dpad == 64    ? hopper::smem_of<64>(kernel)
           : dpad == 128 ? hopper::smem_of<128>(kernel)
                         : 0;
}

cudaError_t bsa_cuda_wgmma_setup(int kernel, bsa_dtype dt, int dpad)
{
    for (bool feat : {false, true})
        for (bool gather : {false, true}) {
            const void *fn = hopper::kernel_of(kernel, dt, dpad, feat, gather);
            if (!fn)
                return cudaErrorInvalidDeviceFunction;
            cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 (int)bsa_cuda_wgmma_smem(kernel, dpad));
            if (e != cudaSuccess)
                return e;
        }
    if (kernel == BSA_K_FWD_WGMMA2)
        for (bool pred : {false, true}) {
            cudaError_t e = cudaFuncSetAttribute(
                hopper::fwd_ws_kernel_of(dt, dpad, pred),
                cudaFuncAttributeMaxDynamicSharedMemorySize,
                (int)(dpad == 64 ? hopper::ws_smem_bytes<64>() : hopper::ws_smem_bytes<128>()));
            if (e != cudaSuccess)
                return e;
        }
    return cudaSuccess;
}

bool bsa_cuda_ws_launch(bsa_dtype dt, int dpad, const bsa_cuda_params &p, cudaStream_t s,
                        cudaError_t *e)
{
    return hopper::launch_ws(p, dt, dpad,
                             bsa_cuda_grid((p.n_qt + 1) / 2, (int64_t)p.n_seg * p.heads), s, e);
}

cudaError_t bsa_cuda_wgmma_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                  cudaStream_t s)
{
    const bool feat = bsa_cuda_has_features(p);
    const void *fn = hopper::kernel_of(kernel, dt, dpad, feat, p.kgrp != nullptr);
    if (!fn)
        return cudaErrorInvalidDeviceFunction;
    const bool two = kernel != BSA_K_FWD_WGMMA1;
    /* row-side kernels: a block per query tile (pair) and query head;
     * dK/dV: per key tile pair and kv head */
    dim3 grid = kernel == BSA_K_DKDV_WGMMA2
                    ? bsa_cuda_grid((p.n_kt + 1) / 2, (int64_t)p.n_seg * p.kv_heads)
                    : bsa_cuda_grid(two ? (p.n_qt + 1) / 2 : p.n_qt, (int64_t)p.n_seg * p.heads);
    cudaError_t e = cudaSuccess;
    if (kernel == BSA_K_FWD_WGMMA2 && hopper::launch_ws(p, dt, dpad, grid, s, &e))
        return e;
    void *args[] = {const_cast<bsa_cuda_params *>(&p)};
    e = cudaLaunchKernel(fn, grid, dim3((two ? 2 : 1) * hopper::kWarpgroup), args,
                         bsa_cuda_wgmma_smem(kernel, dpad), s);
    return e != cudaSuccess ? e : cudaGetLastError();
}
