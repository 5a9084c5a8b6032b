/*
 * One attention problem end to end: random rounded inputs in a chosen
 * tensor form, poisoned outputs, the library's forward/backward through the
 * public API, the oracle on the same rounded inputs, and the comparison.
 * Host memory only (a GPU suite copies data->device around ac_forward/…).
 */
#ifndef BSA_ATTN_CHECK_H
#define BSA_ATTN_CHECK_H

#include "bsa.h"
#include "closed_masks.h"
#include "oracle.h"
#include "testutil.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ac_form {
    AC_BTHD = 0,  /* the seed's [batch, time, heads * dim] */
    AC_BHTD = 1,  /* [batch, heads, time, dim] */
    AC_PADDED = 2 /* strided with gaps (tu_desc_padded) */
} ac_form;

const char *ac_form_name(ac_form form);
bsa_tensor_desc ac_desc(ac_form form, int64_t batch, int64_t heads, int64_t time, int64_t dim);

typedef struct ac_problem {
    bsa_dtype dtype;
    int64_t batch, heads, seq_q, seq_k, head_dim;
    float scale; /* the value the library uses (0 resolved to 1/sqrt(D) in fp32) */
    tu_tensor q, k, v, o, dout, dq, dk, dv;
    float *lse; /* [batch][heads][seq_q] */
    int64_t n_lse;
    uint8_t *mask; /* [layout_heads][seq_q][seq_k] from the closed forms (closed_masks.h);
                      NULL without a mask source */
    int layout_heads;
    oracle_problem op;
    double *ref_o, *ref_lse, *ref_dq, *ref_dk, *ref_dv;
    double *lse_val; /* lse read back as double */
} ac_problem;

/* Draws inputs ~U(-1,1) (dout too), computes the oracle's element masks
 * from masks, the test's description of how it made layout (closed forms,
 * never the library's bsa_layout_element_mask), and prepares the attn desc
 * (returned in *desc for bsa_plan_create).  masks may be NULL for a problem
 * that never meets the oracle (ac_problem_oracle and ac_compare then abort).
 * Returns the status of the layout query; BSA_ERROR_SHAPE_MISMATCH when
 * masks does not describe the layout's heads and lengths, BSA_ERROR_CALLBACK
 * when its callback fails. */
bsa_status ac_problem_init(ac_problem *p, bsa_layout_t layout, const cm_source *masks,
                           bsa_dtype dtype, int64_t batch, int64_t heads, int64_t head_dim,
                           ac_form form, float scale, bsa_attn_desc *desc);
/* Runs the oracle forward and backward on the rounded inputs. */
void ac_problem_oracle(ac_problem *p);
void ac_problem_free(ac_problem *p);

/* Workspace handling of a call. */
typedef enum ac_ws { AC_WS_EXACT = 0, AC_WS_NULL = 1 } ac_ws;

/* Poisons o and lse, runs bsa_forward, reads o back into p->o.val. */
bsa_status ac_forward(bsa_plan_t plan, ac_problem *p, ac_ws ws);
/* Poisons dq, dk, dv, runs bsa_backward with p->o and p->lse, reads back. */
bsa_status ac_backward(bsa_plan_t plan, ac_problem *p, ac_ws ws);

typedef struct ac_errors {
    double o, lse, dq, dk, dv; /* relative L2 against the oracle */
    int64_t unwritten;         /* logical output elements left poisoned */
    int64_t gaps_touched;      /* gap elements written */
    int64_t lse_inf_mismatch;  /* rows where exactly one of lib/oracle is -inf */
    int64_t empty_rows;        /* query rows with no visible key (all heads, batch) */
    int64_t empty_violations;  /* such rows with O != 0, lse != -inf or dq != 0,
                                  or unseen keys with dk/dv != 0 */
    int64_t nonfinite;         /* NaN/inf in o, dq, dk, dv */
} ac_errors;

/* Compares what ac_forward/ac_backward produced with the oracle.
 * with_backward = 0 compares o and lse only. */
void ac_compare(const ac_problem *p, int with_backward, ac_errors *e);
void ac_print(const char *label, const ac_problem *p, const ac_errors *e);
/* Prints one path's worst relative L2 errors (o, lse, dq, dk, dv) per
 * dtype, worst indexed by bsa_dtype; nothing when no case ran. */
void ac_print_worst(const char *path, int cases, const double worst[3][5]);

#ifdef __cplusplus
}
#endif
#endif
