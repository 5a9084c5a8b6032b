/*
 * The per-step operations of a dist plan (bsa_dist_ops, dist_internal.h):
 * packing the caller's strided shards, the log-sum-exp merge of partial
 * outputs, the sums of gradient partials and the unpacking into the
 * caller's tensors.  The host table runs them as loops over host memory
 * (the CPU backend); the CUDA table as kernels on the caller's stream over
 * device memory (backends/cuda/dist_kernels.cu).  Both accumulate in
 * double and visit elements in the same order, so the schedule in
 * dist_exec.c is written once.
 */
#include "dist_internal.h"
#include "../api/half.h"
#ifdef BSA_WITH_CUDA
#include "../backends/cuda/dist_kernels.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double get(bsa_dtype dt, const void *b, int64_t i)
{
    if (dt == BSA_DTYPE_F32)
        return ((const float *)b)[i];
    uint16_t h = ((const uint16_t *)b)[i];
    return dt == BSA_DTYPE_BF16 ? bsa_bf16_to_f32(h) : bsa_f16_to_f32(h);
}

static void set(bsa_dtype dt, void *b, int64_t i, double v)
{
    if (dt == BSA_DTYPE_F32)
        ((float *)b)[i] = (float)v;
    else if (dt == BSA_DTYPE_BF16)
        ((uint16_t *)b)[i] = bsa_f32_to_bf16((float)v);
    else
        ((uint16_t *)b)[i] = bsa_f32_to_f16((float)v);
}

static bsa_status host_enter(int device, int *prev)
{
    *prev = -1;
    return BSA_SUCCESS;
}

static void host_leave(int prev)
{
}

static bsa_status host_alloc(int device, size_t bytes, void **mem)
{
    *mem = malloc(bytes ? bytes : 1);
    return *mem ? BSA_SUCCESS
                : bsa_fail(BSA_ERROR_OUT_OF_MEMORY,
                           "bsa_dist_plan_create: out of host memory for the exchange buffers "
                           "(%zu bytes)",
                           bytes);
}

static void host_release(int device, void *mem)
{
    free(mem);
}

static bsa_status host_pack(void *dst, const void *src, const int64_t *dims, const int64_t *strides,
                            size_t es, void *stream)
{
    size_t row = (size_t)dims[3] * es;
    unsigned char *o = dst;
    for (int64_t b = 0; b < dims[0]; b++)
        for (int64_t h = 0; h < dims[1]; h++)
            for (int64_t x = 0; x < dims[2]; x++) {
                int64_t off = b * strides[0] + h * strides[1] + x * strides[2];
                memcpy(o, (const unsigned char *)src + off * (int64_t)es, row);
                o += row;
            }
    return BSA_SUCCESS;
}

static bsa_status host_unpack(void *dst, const double *acc, const int64_t *dims,
                              const int64_t *strides, bsa_dtype dt, void *stream)
{
    int64_t i = 0;
    for (int64_t b = 0; b < dims[0]; b++)
        for (int64_t h = 0; h < dims[1]; h++)
            for (int64_t x = 0; x < dims[2]; x++) {
                int64_t off = b * strides[0] + h * strides[1] + x * strides[2];
                for (int64_t e = 0; e < dims[3]; e++)
                    set(dt, dst, off + e, acc[i++]);
            }
    return BSA_SUCCESS;
}

static bsa_status host_fill(double *acc, int64_t n, double value, void *stream)
{
    for (int64_t i = 0; i < n; i++)
        acc[i] = value;
    return BSA_SUCCESS;
}

static bsa_status host_add(double *acc, const void *part, int64_t n, bsa_dtype dt, void *stream)
{
    for (int64_t i = 0; i < n; i++)
        acc[i] += get(dt, part, i);
    return BSA_SUCCESS;
}

/* lse = log(exp(lse_acc) + exp(lse_s)), O = O_acc exp(lse_acc - lse) +
 * O_s exp(lse_s - lse); backends/cuda/dist_kernels.cu has the same. */
static bsa_status host_merge(double *acc_o, double *acc_lse, const void *o_part,
                             const float *lse_part, int64_t rows, int64_t dv, bsa_dtype dt,
                             void *stream)
{
    for (int64_t r = 0; r < rows; r++) {
        double ls = lse_part[r], la = acc_lse[r];
        if (ls == -INFINITY)
            continue;                 /* no visible key in this shard: O_s = 0 */
        double m = la > ls ? la : ls; /* a NaN ls propagates (m = ls) */
        double lse = m + log(exp(la - m) + exp(ls - m));
        double wa = exp(la - lse), ws = exp(ls - lse);
        double *o = acc_o + r * dv;
        for (int64_t e = 0; e < dv; e++)
            o[e] = o[e] * wa + ws * get(dt, o_part, r * dv + e);
        acc_lse[r] = lse;
    }
    return BSA_SUCCESS;
}

static bsa_status host_lse_out(float *lse, const double *acc_lse, int64_t rows, void *stream)
{
    for (int64_t r = 0; r < rows; r++)
        lse[r] = (float)acc_lse[r];
    return BSA_SUCCESS;
}

static bsa_status host_sync(void *stream)
{
    return BSA_SUCCESS; /* the CPU backend's calls are done when they return */
}

const bsa_dist_ops bsa_dist_host_ops = {
    .enter = host_enter,
    .leave = host_leave,
    .alloc = host_alloc,
    .release = host_release,
    .check = NULL, /* a CPU context reads whatever the caller passes */
    .pack = host_pack,
    .unpack = host_unpack,
    .fill = host_fill,
    .add = host_add,
    .merge = host_merge,
    .lse_out = host_lse_out,
    .sync = host_sync,
};

#ifdef BSA_WITH_CUDA
const bsa_dist_ops bsa_dist_cuda_ops = {
    .enter = bsa_cuda_dist_enter,
    .leave = bsa_cuda_dist_leave,
    .alloc = bsa_cuda_dist_alloc,
    .release = bsa_cuda_dist_release,
    .check = bsa_cuda_check_device_memory,
    .pack = bsa_cuda_dist_pack,
    .unpack = bsa_cuda_dist_unpack,
    .fill = bsa_cuda_dist_fill,
    .add = bsa_cuda_dist_add,
    .merge = bsa_cuda_dist_merge,
    .lse_out = bsa_cuda_dist_lse_out,
    .sync = bsa_cuda_dist_sync,
};
#endif
