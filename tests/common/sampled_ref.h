/*
 * A double-precision reference for single rows of very long sequences,
 * where a dense oracle (T^2) is out of reach: the output, lse and dq of one
 * query row and the dv of one key row, computed straight from the causal
 * `all`, `local` and `strided` patterns' element-level definitions (README,
 * "Patterns"), not from the library's layout.  Used by the long-sequence
 * CPU test and the huge-shape GPU test.
 */
#ifndef BSA_SAMPLED_REF_H
#define BSA_SAMPLED_REF_H

#include "bsa.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sr_pattern {
    bsa_pattern kind; /* BSA_PATTERN_ALL, _LOCAL or _STRIDED, causal */
    int ctx;          /* L */
    int64_t seq;
} sr_pattern;

/* Rows of one tensor on the host: element x of row (t, h) is at
 * base[t * stride_t + h * stride_h + x], of the given dtype. */
typedef struct sr_view {
    bsa_dtype dtype;
    const void *base;
    int64_t stride_t, stride_h;
} sr_view;

typedef struct sr_problem {
    sr_pattern pat;
    sr_view q, k, v, dout;
    int dim;
    double scale;
} sr_problem;

/* Output (o[dim]) and, if dq is not NULL, dq[dim] of query row (t, h);
 * returns the row's lse (natural log). */
double sr_query_row(const sr_problem *p, int64_t t, int h, double *o, double *dq);

/* dv[dim] of key row (t, h): the sum over the queries that see it. */
void sr_key_dv(const sr_problem *p, int64_t t, int h, double *dv);

/* Relative L2 accumulation over sampled rows. */
typedef struct sr_err {
    double err, ref;
} sr_err;
void sr_acc(sr_err *e, const sr_view *got, int64_t t, int h, const double *want, int dim);
double sr_rel(const sr_err *e);

#ifdef __cplusplus
}
#endif
#endif
