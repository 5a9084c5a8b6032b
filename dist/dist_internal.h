/*
 * Context-parallel plans (internal): the state behind bsa_dist_plan_t,
 * shared by dist_plan.c (creation: shards, sub-layouts, sub-plans,
 * agreement) and dist_exec.c (the exchange schedule and the merges).
 */
#ifndef BSA_DIST_INTERNAL_H
#define BSA_DIST_INTERNAL_H

#include "comm.h"
#include "../layouts/layout.h"

#include <stddef.h>
#include <stdint.h>

struct bsa_dist_plan {
    bsa_context_t ctx;
    bsa_comm_t comm;
    bsa_layout_t layout;
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

    /* buffers, allocated at creation; element counts of one shard */
    int64_t q_elems, k_elems, v_elems, o_elems, rows; /* rows = batch * heads * n */
    size_t kv_bytes;                                  /* packed K then V of one shard */
    size_t buffer_bytes;                              /* all of the below */
    unsigned char *kv_mine, *kv_recv[2], *kv_all;     /* kv_all: P slots (all-gather) */
    unsigned char *q_c, *o_c, *do_c, *o_part, *dq_part;
    unsigned char *dkv_send[2], *dkv_recv[2];
    float *lse_part, *lse_tmp;
    double *acc_o, *acc_lse, *acc_dq, *acc_dkv;
    void *ws;
    size_t ws_bytes;
};

#endif
