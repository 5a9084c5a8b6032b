/*
 * The device side of context-parallel plans (dist/): C-callable, one
 * function per entry of dist/dist_internal.h's bsa_dist_ops table, in the
 * same order and with the same meaning as its host loops (dist/dist_ops.c).
 * Kernels run on the caller's stream (a cudaStream_t passed as void *) and
 * neither allocate nor synchronise; alloc / release / sync are the only
 * calls that do.  Accumulators are double, as on the host, with the same
 * operations in the same fixed order (products and sums rounded one by
 * one: no fused multiply-add), so a result differs from the host loops'
 * only through the device's exp / log (within an ulp of double), and a
 * rerun gives the same bits.  Built with the CUDA backend only
 * (backends/cuda/CMakeLists.txt); the HIP backend does not compile it.
 */
#ifndef BSA_CUDA_DIST_KERNELS_H
#define BSA_CUDA_DIST_KERNELS_H

#include "bsa.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Makes device current (*prev: the caller's, restored by leave; -1: none). */
bsa_status bsa_cuda_dist_enter(int device, int *prev);
void bsa_cuda_dist_leave(int prev);
/* cudaMalloc on device; BSA_ERROR_OUT_OF_MEMORY with the size on failure. */
bsa_status bsa_cuda_dist_alloc(int device, size_t bytes, void **mem);
void bsa_cuda_dist_release(int device, void *mem);
/* Each non-NULL ptrs[i] is memory the device reaches (device memory of
 * dev, managed or page-locked host memory), else BSA_ERROR_INVALID_ARGUMENT
 * naming fn and names[i]: a kernel must never read pageable host memory
 * (that fault would end the process's CUDA context).  The CUDA backend's
 * own rule for every call (defined in cuda_backend.cu). */
bsa_status bsa_cuda_check_device_memory(const char *fn, const void *const *ptrs,
                                        const char *const *names, int n, int dev);
/* dst[b][h][x][e] = src[b*s0 + h*s1 + x*s2 + e] (elements of es = 2 or 4
 * bytes; dims[4], strides[4] in elements, strides[3] = 1). */
bsa_status bsa_cuda_dist_pack(void *dst, const void *src, const int64_t *dims,
                              const int64_t *strides, size_t es, void *stream);
/* The inverse, from double accumulators, rounded to dt (nearest even). */
bsa_status bsa_cuda_dist_unpack(void *dst, const double *acc, const int64_t *dims,
                                const int64_t *strides, bsa_dtype dt, void *stream);
bsa_status bsa_cuda_dist_fill(double *acc, int64_t n, double value, void *stream);
/* acc[i] += part[i] (dtype dt). */
bsa_status bsa_cuda_dist_add(double *acc, const void *part, int64_t n, bsa_dtype dt, void *stream);
/* Per row r < rows (a row with lse_part[r] = -inf is left alone):
 *   lse = m + log(exp(acc_lse - m) + exp(lse_part - m)), m = max of the two,
 *   acc_o = acc_o exp(acc_lse - lse) + o_part exp(lse_part - lse). */
bsa_status bsa_cuda_dist_merge(double *acc_o, double *acc_lse, const void *o_part,
                               const float *lse_part, int64_t rows, int64_t dv, bsa_dtype dt,
                               void *stream);
bsa_status bsa_cuda_dist_lse_out(float *lse, const double *acc_lse, int64_t rows, void *stream);
/* cudaStreamSynchronize(stream). */
bsa_status bsa_cuda_dist_sync(void *stream);

#ifdef __cplusplus
}
#endif
#endif
