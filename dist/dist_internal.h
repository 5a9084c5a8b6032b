/*
 * Context-parallel plans (internal): the state behind bsa_dist_plan_t,
 * shared by dist_plan.c (creation: shards, sub-layouts, sub-plans,
 * agreement) and dist_exec.c (the exchange schedule), and the table of
 * per-step operations the schedule calls (dist_ops.c): loops over host
 * memory for the CPU backend, kernels on the caller's stream over device
 * memory for the CUDA backend (backends/cuda/dist_kernels.cu).  The
 * schedule, the message order and the merge order are the same for both.
 */
#ifndef BSA_DIST_INTERNAL_H
#define BSA_DIST_INTERNAL_H

#include "comm.h"
#include "../layouts/layout.h"

#include <stddef.h>
#include <stdint.h>

/* Where a plan's buffers live and how its per-step work runs.  Tensors are
 * [batch, heads, time, dim] with the head dim contiguous (strides[3] = 1);
 * packed buffers are contiguous in that order; accumulators are double.
 * Every operation runs on `stream` in the caller's order (the host ones
 * at once); none allocates or synchronises but alloc / release and sync. */
typedef struct bsa_dist_ops {
    /* makes `device` current for a call; *prev is given back to leave */
    bsa_status (*enter)(int device, int *prev);
    void (*leave)(int prev);
    bsa_status (*alloc)(int device, size_t bytes, void **mem);
    void (*release)(int device, void *mem);
    /* the caller's tensors are memory this side reads and writes (NULL:
     * nothing to check) */
    bsa_status (*check)(const char *fn, const void *const *ptrs, const char *const *names, int n,
                        int device);
    /* strided src (dims, strides in elements of es bytes) -> contiguous dst */
    bsa_status (*pack)(void *dst, const void *src, const int64_t *dims, const int64_t *strides,
                       size_t es, void *stream);
    /* contiguous double acc -> strided dst of dtype dt */
    bsa_status (*unpack)(void *dst, const double *acc, const int64_t *dims, const int64_t *strides,
                         bsa_dtype dt, void *stream);
    bsa_status (*fill)(double *acc, int64_t n, double value, void *stream);
    /* acc[i] += part[i] (dtype dt), i < n */
    bsa_status (*add)(double *acc, const void *part, int64_t n, bsa_dtype dt, void *stream);
    /* the log-sum-exp merge of (o_part, lse_part) into (acc_o, acc_lse),
     * rows of dv */
    bsa_status (*merge)(double *acc_o, double *acc_lse, const void *o_part, const float *lse_part,
                        int64_t rows, int64_t dv, bsa_dtype dt, void *stream);
    bsa_status (*lse_out)(float *lse, const double *acc_lse, int64_t rows, void *stream);
    /* returns once the stream's work so far is done */
    bsa_status (*sync)(void *stream);
} bsa_dist_ops;

extern const bsa_dist_ops bsa_dist_host_ops;
#ifdef BSA_WITH_CUDA
extern const bsa_dist_ops bsa_dist_cuda_ops;
#endif

struct bsa_dist_plan {
    bsa_context_t ctx;
    bsa_comm_t comm;
    bsa_layout_t layout;
    const bsa_dist_ops *ops; /* host or device (dist_ops.c) */
    /* device memory over an engine driven from the host (the callbacks):
     * the stream is synchronised before each post, so that a send holds
     * the bytes the stream wrote and no kernel still reads a buffer that
     * a receive overwrites; and the all-gather exchange goes through
     * messages (the allgather callback takes host memory) */
    int host_driven;
    int rank, size;
    bsa_sharding sharding;
    bsa_dist_exchange exchange;
    int64_t n; /* shard length T / P */
    int64_t batch, heads, kv_heads, d, dv;
    bsa_dtype dtype;
    size_t es;
    bsa_tensor_desc q, k, v, o; /* the caller's shard tensors */
    uint8_t *need;              /* [P * P]: need[i * P + j] = rank i's queries see shard j */
    int64_t *load;              /* [P] kept blocks each rank computes */
    bsa_layout_t *sub_layout;   /* [P] this rank's queries x shard j, NULL if not needed */
    bsa_plan_t *sub_plan;       /* [P] */
    char name[160];

    /* buffers, carved at creation from one allocation of ops->alloc (mem);
     * element counts of one shard */
    int64_t q_elems, k_elems, v_elems, o_elems, rows; /* rows = batch * heads * n */
    size_t kv_bytes;                                  /* packed K then V of one shard */
    size_t buffer_bytes;                              /* all of the below */
    void *mem;
    unsigned char *kv_mine, *kv_recv[2], *kv_all; /* kv_all: P slots (all-gather) */
    unsigned char *q_c, *o_c, *do_c, *o_part, *dq_part;
    unsigned char *dkv_send[2], *dkv_recv[2];
    float *lse_part;
    double *acc_o, *acc_lse, *acc_dq, *acc_dkv;
    void *ws;
    size_t ws_bytes;
};

#endif
