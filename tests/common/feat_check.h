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
#include "closed_masks.h"
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
    unsigned flags;  /* extra BSA_PLAN_* (FORCE_REFERENCE); the desc gets VARLEN
                        and KEY_LENGTHS from varlen and key_lengths */
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
 * fills *desc for bsa_plan_create and runs the oracle forward and backward
 * on the element masks of masks, the test's description of how it made
 * layout (closed forms: closed_masks.h; never bsa_layout_element_mask).
 * Returns the status of the layout query; BSA_ERROR_SHAPE_MISMATCH when
 * masks does not describe the layout, BSA_ERROR_CALLBACK when its callback
 * fails. */
bsa_status fc_problem_init(fc_problem *p, bsa_layout_t layout, const cm_source *masks,
                           const fc_spec *spec, bsa_attn_desc *desc);
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

/* A spec of the given shape (dtype, form and flags zero: the caller's). */
fc_spec fc_spec_of(int64_t batch, int64_t heads, int64_t kv_heads, int64_t d, int64_t dv,
                   int key_lengths, int varlen);

/* A preset layout: seq, block, layout heads, ctx (window / stride), bidir;
 * fixed gets 2 summary columns of 1 block, dilated d = 3, Longformer and
 * BigBird 5 global tokens (BigBird 2 random blocks, seed 1234), document
 * three documents.  *src (if not NULL) gets its mask source.  Prints the
 * library's detail on failure. */
bsa_status fc_preset(bsa_context_t ctx, bsa_layout_t *out, cm_source *src, bsa_pattern pat, int seq,
                     int block, int heads, int c, int bidir);

/* One case of a feature suite: a preset layout (see fc_preset) and the
 * problem's shape (see fc_spec_of). */
typedef struct fc_case {
    const char *label;
    bsa_pattern pattern;
    int seq, block, layout_heads, ctx, bidir;
    int64_t batch, heads, kv_heads, head_dim, v_dim;
    int key_lengths, varlen;
} fc_case;

/* Runs run(label, ctx, layout, masks, spec) on each case reps times, with
 * the case's layout (and its mask source) created before and destroyed
 * after; stops at the first layout that cannot be created and returns its
 * status. */
typedef void (*fc_runner)(const char *label, bsa_context_t ctx, bsa_layout_t layout,
                          const cm_source *masks, fc_spec spec);
bsa_status fc_run_cases(bsa_context_t ctx, const fc_case *cases, int n, int reps, fc_runner run);

/* Whether e is within the thresholds with nothing unwritten, touched,
 * mismatched or non-finite; prints the case when not (or always with
 * BSA_TEST_VERBOSE set).  impl names the implementation or path. */
int fc_within(const char *label, const char *impl, const fc_spec *spec, const fc_errors *e,
              double tol_out, double tol_grad, double tol_lse);

#ifdef __cplusplus
}
#endif
#endif
