/*
 * The Hopper forward's entry points in a build whose architecture list has
 * no sm_90 (backends/cuda/CMakeLists.txt): the plan never picks it.
 */
#include "../cuda_internal.h"

bool bsa_cuda_wgmma_built()
{
    return false;
}

size_t bsa_cuda_wgmma_smem(int, int)
{
    return 0;
}

cudaError_t bsa_cuda_wgmma_setup(int, bsa_dtype, int)
{
    return cudaErrorInvalidDeviceFunction;
}

cudaError_t bsa_cuda_wgmma_launch(int, bsa_dtype, int, const bsa_cuda_params &, cudaStream_t)
{
    return cudaErrorInvalidDeviceFunction;
}

bool bsa_cuda_ws_launch(bsa_dtype, int, const bsa_cuda_params &, cudaStream_t, cudaError_t *)
{
    return false;
}

size_t bsa_cuda_wgmma_chunk_smem(int)
{
    return 0;
}

cudaError_t bsa_cuda_wgmma_chunk_setup(bsa_dtype, int)
{
    return cudaErrorInvalidDeviceFunction;
}

cudaError_t bsa_cuda_wgmma_chunk_launch(bsa_dtype, int, const bsa_cuda_params &, cudaStream_t)
{
    return cudaErrorInvalidDeviceFunction;
}
