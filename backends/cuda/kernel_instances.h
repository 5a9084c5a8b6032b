/*
 * The kernel instances a build holds, as tables of {key, kernel address}
 * slots written by gen_instances.py (the files of generated/): the launch code
 * (launch.cu) looks up, once at plan creation, the instance of the kernel
 * the implementation list chose.  A key field a family has no template
 * parameter for is 0.
 */
#ifndef BSA_CUDA_KERNEL_INSTANCES_H
#define BSA_CUDA_KERNEL_INSTANCES_H

#include "../gpu/kernel_smem.h"

#include "../../api/bsa.h"

namespace bsa_cuda
{

/* The delta pre-pass of the backward (ref family): delta = rowsum(dO * O). */
constexpr int BSA_PASS_DELTA = 8;

struct instance_slot {
    int family, pass; /* bsa_gpu_family, bsa_gpu_pass (or BSA_PASS_DELTA) */
    int rows, stages; /* bsa_gpu_kernel's; delta: lanes a row */
    bsa_dtype dtype;
    int dpad;               /* padded head dim; 0: any (reference kernels) */
    int feat, pred, gather; /* template flags (kernel_instances.h of cuda_internal.h) */
    const void *fn;
};

struct instance_table {
    const instance_slot *slots;
    const int *count;
};

} // namespace bsa_cuda

#endif
