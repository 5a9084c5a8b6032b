/*
 * The Hopper forward of chunk-local layouts (fwd_chunk_wgmma.cuh): its
 * instances (f16 / bf16, padded head dims 64 and 128, calls without the
 * features beyond the seed), shared-memory limit and launch.  One
 * warpgroup per (128-row chunk, batch * head), as the chunk kernels.
 */
#include "fwd_chunk_wgmma.cuh"
#include "wgmma_instances.h"

using namespace bsa_cuda;

static const void *chunk_fwd_kernel(bsa_dtype dt, int dpad)
{
    return hopper::by_shape(dt, dpad, [](auto t, auto d) -> const void * {
        return (const void *)&hopper::fwd_chunk_wgmma_kernel<typename decltype(t)::type,
                                                             decltype(d)::value>;
    });
}

size_t bsa_cuda_wgmma_chunk_smem(int dpad)
{
    return dpad == 64    ? hopper::chunk_fwd_wgmma_smem<64>()
           : dpad == 128 ? hopper::chunk_fwd_wgmma_smem<128>()
                         : 0;
}

cudaError_t bsa_cuda_wgmma_chunk_setup(bsa_dtype dt, int dpad)
{
    const void *fn = chunk_fwd_kernel(dt, dpad);
    if (!fn)
        return cudaErrorInvalidDeviceFunction;
    return cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)bsa_cuda_wgmma_chunk_smem(dpad));
}

cudaError_t bsa_cuda_wgmma_chunk_launch(bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                        cudaStream_t s)
{
    const void *fn = chunk_fwd_kernel(dt, dpad);
    if (!fn)
        return cudaErrorInvalidDeviceFunction;
    const int n_tiles = p.n_qt > p.n_kt ? p.n_qt : p.n_kt;
    dim3 grid = bsa_cuda_grid((n_tiles + 1) / 2, (int64_t)p.n_seg * p.heads);
    void *args[] = {const_cast<bsa_cuda_params *>(&p)};
    cudaError_t e = cudaLaunchKernel(fn, grid, dim3(hopper::kWarpgroup), args,
                                     bsa_cuda_wgmma_chunk_smem(dpad), s);
    return e != cudaSuccess ? e : cudaGetLastError();
}
