/*
 * The demo's oracle: dense masked attention in double precision, forward
 * and backward, written from the definition and sharing no code with the
 * library (only the element mask it is asked to follow).
 */
#ifndef BSA_CLI_DENSE_REF_H
#define BSA_CLI_DENSE_REF_H

#include <stdint.h>

typedef struct dense_problem {
    int64_t batch, heads, seq, dim;
    double scale;
    /* [batch, seq, heads, dim] (the seed's [batch, time, heads * dim]) */
    const double *q, *k, *v, *dout;
    /* mask_heads masks of seq * seq bytes in natural time order,
     * mask[qi * seq + ki] != 0 = query qi sees key ki; mask_heads is 1
     * (shared by all heads) or heads. */
    const uint8_t *masks;
    int64_t mask_heads;
} dense_problem;

/* o, dq, dk, dv are shaped like q; lse is [batch, heads, seq].  A query
 * with no visible key gets o = 0, lse = -inf and no gradient.  Returns 0,
 * or -1 if out of memory. */
int dense_ref_attention(const dense_problem *p, double *o, double *lse, double *dq, double *dk,
                        double *dv);

#endif
