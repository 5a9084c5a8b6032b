/*
 * HIP backend internals.  The backend runs the CUDA backend's sources
 * compiled as HIP (../cuda/vendor.h): the tile-pair tables (tiles.cu), the
 * parameter block (params.cu), the tensor-core kernels on the AMD warp
 * tile (tile_amd.cuh) and the reference and delta kernels.
 */
#ifndef BSA_HIP_INTERNAL_H
#define BSA_HIP_INTERNAL_H

#include "../cuda/cuda_internal.h"
#include "hip_path.h"

#endif
