/*
 * The oracle: a naive dense masked attention in double precision, written
 * from the textbook formulas (no online softmax, no tiling), against which
 * every backend is compared.
 *
 * Arrays are natural order [batch][heads][time][dim].  mask is
 * [layout_heads][seq_q][seq_k] (1 = query sees key), layout_heads 1 (shared)
 * or heads, as bsa_layout_element_mask returns it per head.
 *
 * A query row with no visible key: O = 0, lse = -inf, zero gradients.
 */
#ifndef BSA_ORACLE_H
#define BSA_ORACLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct oracle_problem {
    int64_t batch, heads, seq_q, seq_k, head_dim;
    double scale;
    int layout_heads;
    const uint8_t *mask;
} oracle_problem;

/* o [b][h][seq_q][d]; lse [b][h][seq_q] (natural log), may be NULL. */
void oracle_forward(const oracle_problem *p, const double *q, const double *k, const double *v,
                    double *o, double *lse);

/* Gradients of L = sum(O * dout): dq like q, dk and dv like k. */
void oracle_backward(const oracle_problem *p, const double *q, const double *k, const double *v,
                     const double *dout, double *dq, double *dk, double *dv);

/* sum(O * dout) in double, for finite differences. */
double oracle_loss(const oracle_problem *p, const double *q, const double *k, const double *v,
                   const double *dout);

/* Beyond the seed: grouped-query heads, a value dim and a mask per batch
 * entry (key padding, packed sequences: a test builds each sequence's mask
 * and runs it as its own problem).
 *   q [batch][heads][seq_q][head_dim], k [batch][kv_heads][seq_k][head_dim],
 *   v [batch][kv_heads][seq_k][v_dim], o/dout [batch][heads][seq_q][v_dim];
 *   query head h reads kv head h / (heads / kv_heads);
 *   mask [batch][heads][seq_q][seq_k] (1 = query sees key). */
typedef struct oracle_ext {
    int64_t batch, heads, kv_heads, seq_q, seq_k, head_dim, v_dim;
    double scale;
    const uint8_t *mask;
} oracle_ext;

void oracle_ext_forward(const oracle_ext *p, const double *q, const double *k, const double *v,
                        double *o, double *lse);
/* dK/dV of a kv head sum over its query heads. */
void oracle_ext_backward(const oracle_ext *p, const double *q, const double *k, const double *v,
                         const double *dout, double *dq, double *dk, double *dv);

#ifdef __cplusplus
}
#endif
#endif
