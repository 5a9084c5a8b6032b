/*
 * One attention problem with the features beyond the seed: grouped-query
 * heads, a value head dim, per-batch key lengths and packed variable-length
 * sequences (cu_seqlens).  Like attn_check: random rounded inputs, poisoned
 * outputs, the library through the public API, the double oracle
 * (oracle_ext) on the same rounded inputs, and the comparison.  Host
 * memory; a GPU suite copies fc_problem's buffers to the device around
 * fc_forward / fc_backward (or calls bsa_forward itself with fc_fwd_args).
 */
#ifndef BSA_FEAT_CHECK_H
#define BSA_FEAT_CHECK_H

#include "attn_check.h"
#include "bsa.h"
#include "oracle.h"
#include "testutil.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fc_spec {
    bsa_dtype dtype;
    ac_form form;
    int64_t batch; /* ignored with varlen (the tensors have batch 1) */
    int64_t heads, kv_heads, head_dim, v_dim;
    int key_lengths; /* 1: random per-batch (per-sequence) key lengths */
    int varlen;      /* > 0: that many packed sequences of random lengths */
    unsigned flags;  /* extra BSA_PLAN_* (FORCE_REFERENCE) */
} fc_spec;

typedef struct fc_problem {
    fc_spec spec;
    int64_t seq_q, seq_k;   /* the layout's */
    int64_t time_q, time_k; /* the tensors' (packed totals with varlen) */
    int64_t n_seg;          /* batch, or sequences */
    float scale;
    tu_tensor q, k, v, o, dout, dq, dk, dv;
    float *lse; /* [batch][heads][time_q] */
    int64_t n_lse;
    int32_t *klen;        /* [n_seg] or NULL */
    int32_t *cu_q, *cu_k; /* [n_seg + 1] or NULL */
    double *ref_o, *ref_lse, *ref_dq, *ref_dk, *ref_dv;
} fc_problem;

/* Draws the problem for layout (square or not; layout heads 1 or heads),
 * fills *desc for bsa_plan_create and runs the oracle forward and backward.
 * Returns the status of the layout queries. */
bsa_status fc_problem_init(fc_problem *p, bsa_layout_t layout, const fc_spec *spec,
                           bsa_attn_desc *desc);
void fc_problem_free(fc_problem *p);

/* The call arguments (host pointers of p). */
bsa_fwd_args fc_fwd_args(fc_problem *p);
bsa_bwd_args fc_bwd_args(fc_problem *p);

/* Poison outputs, run, read back. */
bsa_status fc_forward(bsa_plan_t plan, fc_problem *p);
bsa_status fc_backward(bsa_plan_t plan, fc_problem *p);

typedef struct fc_errors {
    double o, lse, dq, dk, dv;
    int64_t unwritten, gaps_touched, lse_inf_mismatch, nonfinite;
} fc_errors;

void fc_compare(const fc_problem *p, int with_backward, fc_errors *e);

#ifdef __cplusplus
}
#endif
#endif
