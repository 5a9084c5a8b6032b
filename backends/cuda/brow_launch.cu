/*
 * Launch glue of the block-row kernels (brow_kernels.cuh): their instances
 * (f16 / bf16, padded head dim 32 / 64, and 128 for the forward alone;
 * calls without the features beyond the seed), shared-memory limits set once at plan time, launches
 * on the caller's stream.  One thread block per two 32-row blocks of one side (query blocks; dK/dV:
 * key blocks), per batch * head.
 */
#include "brow_kernels.cuh"

using namespace bsa_cuda;

template <typename T> static const void *brow_kernel_of(int kernel, int dpad)
{
    switch (dpad) {
    case 32:
        return kernel == BSA_K_FWD  ? (const void *)&brow_fwd_kernel<T, 32>
               : kernel == BSA_K_DQ ? (const void *)&brow_dq_kernel<T, 32>
                                    : (const void *)&brow_dkdv_kernel<T, 32>;
    case 64:
        return kernel == BSA_K_FWD  ? (const void *)&brow_fwd_kernel<T, 64>
               : kernel == BSA_K_DQ ? (const void *)&brow_dq_kernel<T, 64>
                                    : (const void *)&brow_dkdv_kernel<T, 64>;
    case 128:
        return kernel == BSA_K_FWD ? (const void *)&brow_fwd_kernel<T, 128> : nullptr;
    default:
        return nullptr;
    }
}

static const void *brow_kernel(int kernel, bsa_dtype dt, int dpad)
{
    if (kernel != BSA_K_FWD && kernel != BSA_K_DQ && kernel != BSA_K_DKDV)
        return nullptr;
    return dt == BSA_DTYPE_F16    ? brow_kernel_of<__half>(kernel, dpad)
           : dt == BSA_DTYPE_BF16 ? brow_kernel_of<__nv_bfloat16>(kernel, dpad)
                                  : nullptr;
}

size_t bsa_cuda_brow_smem(int kernel, int dpad)
{
    return dpad == 32    ? brow_smem_bytes<32>(kernel)
           : dpad == 64  ? brow_smem_bytes<64>(kernel)
           : dpad == 128 ? brow_smem_bytes<128>(kernel)
                         : 0;
}

cudaError_t bsa_cuda_brow_setup(bsa_dtype dt, int dpad)
{
    for (int kernel : {BSA_K_FWD, BSA_K_DQ, BSA_K_DKDV}) {
        const void *fn = brow_kernel(kernel, dt, dpad);
        if (!fn && (kernel == BSA_K_FWD || dpad <= 64))
            return cudaErrorInvalidDeviceFunction;
        if (!fn)
            continue; /* head dim 128: the forward alone */
        cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)bsa_cuda_brow_smem(kernel, dpad));
        if (e != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

cudaError_t bsa_cuda_brow_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                 cudaStream_t s)
{
    const void *fn = brow_kernel(kernel, dt, dpad);
    if (!fn)
        return cudaErrorInvalidDeviceFunction;
    const int blocks = (kernel == BSA_K_DKDV ? p.seq_k : p.seq_q) / kLaneRows;
    dim3 grid = bsa_cuda_grid((blocks + 1) / 2, (int64_t)p.n_seg * p.heads);
    void *args[] = {const_cast<bsa_cuda_params *>(&p)};
    cudaError_t e =
        cudaLaunchKernel(fn, grid, dim3(kThreads), args, bsa_cuda_brow_smem(kernel, dpad), s);
    return e != cudaSuccess ? e : cudaGetLastError();
}
