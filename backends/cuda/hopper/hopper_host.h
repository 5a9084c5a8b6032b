/*
 * What the shared host code (launch.cu) asks of the Hopper kernels: their
 * instance tables, whether the driver encodes tensor maps, and the tensor
 * maps of a warp-specialised forward call.  hopper_host.cu answers in a
 * build with sm_90, hopper_absent.cu in one without.  CUDA only.
 */
#ifndef BSA_CUDA_HOPPER_HOST_H
#define BSA_CUDA_HOPPER_HOST_H

#include "../cuda_internal.h"
#include "../kernel_instances.h"

/* bytes (and alignment) of a CUtensorMap */
#define BSA_CUDA_TMAP_BYTES 128

/* The Hopper instance tables, *n of them (none without sm_90). */
const bsa_cuda::instance_table *bsa_cuda_hopper_tables(int *n);
/* The driver's cuTensorMapEncodeTiled is there (false without sm_90). */
bool bsa_cuda_tma_encoder();
/* The tensor maps of Q, K, V and O of a warp-specialised forward call;
 * false where the driver cannot encode one. */
bool bsa_cuda_ws_tensor_maps(const bsa_cuda_params &p, unsigned char (*maps)[BSA_CUDA_TMAP_BYTES]);

#endif
