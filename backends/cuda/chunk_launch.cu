/*
 * Launch glue of the chunk-local kernels (chunk_kernels.cuh): their
 * instances (f16 / bf16, padded head dim 32 / 64 / 128, calls without the
 * features beyond the seed), shared-memory limits set once at plan time,
 * launches on the caller's stream.  One thread block per (128-row chunk,
 * batch * head).
 */
#include "chunk_kernels.cuh"

using namespace bsa_cuda;

template <typename T> static const void *chunk_kernel_of(int kernel, int dpad)
{
    const bool fwd = kernel == BSA_K_FWD_CHUNK;
    switch (dpad) {
    case 32:
        return fwd ? (const void *)&fwd_chunk_kernel<T, 32>
                   : (const void *)&bwd_chunk_kernel<T, 32>;
    case 64:
        return fwd ? (const void *)&fwd_chunk_kernel<T, 64>
                   : (const void *)&bwd_chunk_kernel<T, 64>;
    case 128:
        return fwd ? (const void *)&fwd_chunk_kernel<T, 128>
                   : (const void *)&bwd_chunk_kernel<T, 128>;
    default:
        return nullptr;
    }
}

static const void *chunk_kernel(int kernel, bsa_dtype dt, int dpad)
{
    return dt == BSA_DTYPE_F16    ? chunk_kernel_of<__half>(kernel, dpad)
           : dt == BSA_DTYPE_BF16 ? chunk_kernel_of<__nv_bfloat16>(kernel, dpad)
                                  : nullptr;
}

size_t bsa_cuda_chunk_smem(int kernel, int dpad)
{
    const bool fwd = kernel == BSA_K_FWD_CHUNK;
    switch (dpad) {
    case 32:
        return fwd ? chunk_fwd_smem<32>() : chunk_bwd_smem<32>();
    case 64:
        return fwd ? chunk_fwd_smem<64>() : chunk_bwd_smem<64>();
    case 128:
        return fwd ? chunk_fwd_smem<128>() : chunk_bwd_smem<128>();
    default:
        return 0;
    }
}

cudaError_t bsa_cuda_chunk_setup(bsa_dtype dt, int dpad)
{
    for (int kernel : {BSA_K_FWD_CHUNK, BSA_K_BWD_CHUNK}) {
        const void *fn = chunk_kernel(kernel, dt, dpad);
        if (!fn)
            return cudaErrorInvalidDeviceFunction;
        cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)bsa_cuda_chunk_smem(kernel, dpad));
        if (e != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

cudaError_t bsa_cuda_chunk_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                  cudaStream_t s)
{
    const void *fn = chunk_kernel(kernel, dt, dpad);
    if (!fn)
        return cudaErrorInvalidDeviceFunction;
    const int n_tiles = p.n_qt > p.n_kt ? p.n_qt : p.n_kt;
    dim3 grid = bsa_cuda_grid((n_tiles + 1) / 2, (int64_t)p.n_seg * p.heads);
    void *args[] = {const_cast<bsa_cuda_params *>(&p)};
    cudaError_t e =
        cudaLaunchKernel(fn, grid, dim3(kThreads), args, bsa_cuda_chunk_smem(kernel, dpad), s);
    return e != cudaSuccess ? e : cudaGetLastError();
}
