/*
 * The Hopper kernels' host entry points in a build whose architecture list
 * has no sm_90 (backends/cuda/CMakeLists.txt): no instances, so the
 * implementation list's wgmma entries decline ("built without sm_90").
 */
#include "hopper_host.h"

const bsa_cuda::instance_table *bsa_cuda_hopper_tables(int *n)
{
    *n = 0;
    return nullptr;
}

bool bsa_cuda_tma_encoder()
{
    return false;
}

bool bsa_cuda_ws_tensor_maps(const bsa_cuda_params &, unsigned char (*)[BSA_CUDA_TMAP_BYTES])
{
    return false;
}
