/*
 * Launch glue of the tensor-core path: picks the generated instance for
 * (kernel, dtype, padded head dim, features in the call), sets its shared-memory limit once (at
 * plan time, outside any stream capture) and launches it on the caller's
 * stream.
 */
#include "tc_kernels.cuh"

namespace bsa_cuda
{
const void *tc_kernel_f16_fwd(int kernel, int dpad, bool feat, bool pred);
const void *tc_kernel_f16_bwd(int kernel, int dpad, bool feat, bool pred);
const void *tc_kernel_bf16_fwd(int kernel, int dpad, bool feat, bool pred);
const void *tc_kernel_bf16_bwd(int kernel, int dpad, bool feat, bool pred);
} // namespace bsa_cuda

using namespace bsa_cuda;

/* pred: the layout's mixed tile pairs are all predicate tiles (taken by
 * the backward's kernels without the features' code) */
static const void *tc_kernel(int kernel, bsa_dtype dt, int dpad, bool feat, bool pred)
{
    const bool fwd = kernel != BSA_K_DQ && kernel != BSA_K_DKDV;
    if (dt == BSA_DTYPE_F16)
        return fwd ? tc_kernel_f16_fwd(kernel, dpad, feat, pred)
                   : tc_kernel_f16_bwd(kernel, dpad, feat, pred);
    if (dt == BSA_DTYPE_BF16)
        return fwd ? tc_kernel_bf16_fwd(kernel, dpad, feat, pred)
                   : tc_kernel_bf16_bwd(kernel, dpad, feat, pred);
    return nullptr;
}

size_t bsa_cuda_tc_smem(int kernel, int dpad)
{
    if (kernel == BSA_K_FWD2)
        return dpad == 32    ? tc_smem_fwd2_bytes<32>()
               : dpad == 64  ? tc_smem_fwd2_bytes<64>()
               : dpad == 128 ? tc_smem_fwd2_bytes<128>()
                             : 0;
    switch (dpad) {
    case 32:
        return tc_smem_bytes<32>(kernel);
    case 64:
        return tc_smem_bytes<64>(kernel);
    case 128:
        return tc_smem_bytes<128>(kernel);
    case 256:
        return tc_smem_bytes<256>(kernel);
    default:
        return 0;
    }
}

cudaError_t bsa_cuda_tc_setup(int kernel, bsa_dtype dt, int dpad)
{
    for (int v = 0; v < 3; ++v) { /* plain, features, predicate tiles */
        const void *fn = tc_kernel(kernel, dt, dpad, v == 1, v == 2);
        if (!fn)
            return cudaErrorInvalidDeviceFunction;
        cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)bsa_cuda_tc_smem(kernel, dpad));
        if (e != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

cudaError_t bsa_cuda_tc_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                               cudaStream_t s, int wave)
{
    /* the instance without the features' code when the call uses none */
    const bool feat = bsa_cuda_has_features(p);
    const void *fn = tc_kernel(kernel, dt, dpad, feat, p.pred_tiles != 0);
    if (!fn)
        return cudaErrorInvalidDeviceFunction;
    dim3 grid = bsa_cuda_grid(kernel == BSA_K_DKDV   ? p.n_kt
                              : kernel == BSA_K_FWD2 ? (p.n_qt + 1) / 2
                                                     : p.n_qt,
                              (int64_t)p.n_seg * (kernel == BSA_K_DKDV ? p.kv_heads : p.heads));
    void *args[] = {const_cast<bsa_cuda_params *>(&p)};
    cudaError_t e =
        cudaLaunchKernel(fn, grid, dim3(4 * wave), args, bsa_cuda_tc_smem(kernel, dpad), s);
    return e != cudaSuccess ? e : cudaGetLastError();
}
