/* Block classification against the built-in predicates.  Every predicate
 * is a condition on d = q - k (CAUSAL: d >= 0, WINDOW: |d| < w), except
 * PREFIX, which also lets d < 0 through when k < prefix.  Inside a block,
 * d takes every value of [q0 - k1, q1 - k0], so interval tests on d are
 * exact. */
#include "block_class.h"

#define FAR_AWAY ((int64_t)1 << 50) /* beyond any position: int32 lengths */

/* The d-interval [lo, hi] allowed by CAUSAL and WINDOW. */
static void d_range(const bsa_pred *p, int64_t *lo, int64_t *hi)
{
    *lo = -FAR_AWAY;
    *hi = FAR_AWAY;
    if (p->flags & BSA_PRED_BIT_CAUSAL)
        *lo = 0;
    if (p->flags & BSA_PRED_BIT_WINDOW) {
        if (*lo < -(int64_t)(p->window - 1))
            *lo = -(int64_t)(p->window - 1);
        *hi = p->window - 1;
    }
}

/* PREFIX restricts anything only where CAUSAL does not already. */
static int prefix_bites(const bsa_pred *p)
{
    return (p->flags & BSA_PRED_BIT_PREFIX) && !(p->flags & BSA_PRED_BIT_CAUSAL);
}

static int meets(int64_t a0, int64_t a1, int64_t b0, int64_t b1)
{
    return a0 <= a1 && b0 <= b1 && a0 <= b1 && b0 <= a1;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

bsa_block_class bsa_block_classify(const bsa_pred *p, int64_t q0, int64_t k0, int block)
{
    int64_t q1 = q0 + block - 1, k1 = k0 + block - 1;
    int64_t dmin = q0 - k1, dmax = q1 - k0, lo, hi;
    d_range(p, &lo, &hi);
    if (!prefix_bites(p)) {
        if (dmin >= lo && dmax <= hi)
            return BSA_CLASS_FULL;
        return meets(dmin, dmax, lo, hi) ? BSA_CLASS_PARTIAL : BSA_CLASS_EMPTY;
    }
    int64_t pre = p->prefix;
    /* Elements with d < 0 exist iff dmin < 0, and the largest key among
     * them is k1 (reached at q = q0 < k1). */
    if (dmin >= lo && dmax <= hi && (dmin >= 0 || k1 < pre))
        return BSA_CLASS_FULL;
    if (meets(dmin, dmax, max64(lo, 0), hi))
        return BSA_CLASS_PARTIAL;
    /* d < 0 elements with k < prefix: k in [k0, min(k1, pre - 1)]. */
    int64_t kk = min64(k1, pre - 1);
    if (k0 <= kk && meets(q0 - kk, q1 - k0, lo, min64(hi, -1)))
        return BSA_CLASS_PARTIAL;
    return BSA_CLASS_EMPTY;
}

static int64_t span(int64_t a, int64_t b)
{
    return b >= a ? b - a + 1 : 0;
}

int64_t bsa_block_kept(const bsa_pred *p, int64_t q0, int64_t k0, int block)
{
    int64_t k1 = k0 + block - 1, lo, hi, n = 0;
    d_range(p, &lo, &hi);
    int bites = prefix_bites(p);
    for (int64_t q = q0; q < q0 + block; q++) {
        if (!bites) {
            n += span(max64(k0, q - hi), min64(k1, q - lo));
            continue;
        }
        /* d >= 0, then d < 0 with k < prefix: disjoint key ranges. */
        n += span(max64(k0, q - hi), min64(k1, q - max64(lo, 0)));
        n += span(max64(k0, q - min64(hi, -1)), min64(min64(k1, q - lo), (int64_t)p->prefix - 1));
    }
    return n;
}

void bsa_block_key_range(const bsa_pred *p, int qb, int block, int k_blocks, int *lo, int *hi)
{
    int64_t dlo, dhi;
    /* PREFIX only removes elements, so the d-interval bounds hold. */
    d_range(p, &dlo, &dhi);
    int64_t q0 = (int64_t)qb * block, q1 = q0 + block - 1;
    int64_t kmin = max64(0, q0 - dhi), kmax = min64((int64_t)k_blocks * block - 1, q1 - dlo);
    *lo = (int)(kmin / block);
    *hi = kmax < kmin ? *lo - 1 : (int)(kmax / block);
}
