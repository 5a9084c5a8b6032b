/*
 * HIP backend internals.  The backend reuses the CUDA backend's
 * architecture-neutral sources compiled as HIP (../cuda/vendor.h): the
 * tile-pair tables (tiles.cu), the parameter block and the reference and
 * delta kernels (ref_kernels.cu); the AMD-only matrix tile and the forward
 * written on it live here.
 */
#ifndef BSA_HIP_INTERNAL_H
#define BSA_HIP_INTERNAL_H

#include "../cuda/cuda_internal.h"
#include "hip_path.h"

/* Matrix-tile forward (hip_fwd.hip): dtype F16/BF16, dpad 32/64/128, wave
 * the device's wavefront width (the block is 4 waves). */
hipError_t bsa_hip_tile_fwd_launch(bsa_dtype dt, int dpad, int wave, const bsa_cuda_params &p,
                                   hipStream_t s);

#endif
