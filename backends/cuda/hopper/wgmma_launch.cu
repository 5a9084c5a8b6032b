/*
 * The Hopper kernels' launches (sm_90a; backends/cuda/CMakeLists.txt builds
 * the hopper/ files for that target alone): the wgmma forward on 128- and
 * 64-row tiles, dQ on 128-row tiles and dK/dV on 128-key tiles.  Their
 * instances live in wgmma_fwd.cu, wgmma_dq.cu and wgmma_dkdv.cu.
 */
#include "dkdv_wgmma.cuh"
#include "dq_wgmma.cuh"
#include "fwd_wgmma.cuh"
#include "wgmma_instances.h"

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
    return cudaSuccess;
}

cudaError_t bsa_cuda_wgmma_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                  cudaStream_t s)
{
    const bool feat = p.klen || p.cu_q || p.group > 1;
    const void *fn = hopper::kernel_of(kernel, dt, dpad, feat, p.kgrp != nullptr);
    if (!fn)
        return cudaErrorInvalidDeviceFunction;
    const bool two = kernel != BSA_K_FWD_WGMMA1;
    /* row-side kernels: a block per query tile (pair) and query head;
     * dK/dV: per key tile pair and kv head */
    dim3 grid = kernel == BSA_K_DKDV_WGMMA2
                    ? bsa_cuda_grid((p.n_kt + 1) / 2, (int64_t)p.n_seg * p.kv_heads)
                    : bsa_cuda_grid(two ? (p.n_qt + 1) / 2 : p.n_qt, (int64_t)p.n_seg * p.heads);
    void *args[] = {const_cast<bsa_cuda_params *>(&p)};
    cudaError_t e = cudaLaunchKernel(fn, grid, dim3((two ? 2 : 1) * hopper::kWarpgroup), args,
                                     bsa_cuda_wgmma_smem(kernel, dpad), s);
    return e != cudaSuccess ? e : cudaGetLastError();
}
