/* Whether strided tensors share memory: the aliasing rule of bsa.h. */
#include "overlap.h"

#include <stdlib.h>

int bsa_strides_self_overlap(const int64_t *dims, const int64_t *strides, int n)
{
    /* the dims longer than 1 by ascending stride: each stride must pass the
     * reach of the smaller ones, else two index tuples meet */
    int order[8], m = 0;
    for (int i = 0; i < n && m < 8; i++)
        if (dims[i] > 1)
            order[m++] = i;
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && strides[order[j]] < strides[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int64_t reach = 0; /* largest offset the smaller dims reach */
    for (int i = 0; i < m; i++) {
        const int64_t s = strides[order[i]];
        if (s <= reach)
            return 1;
        reach += (dims[order[i]] - 1) * s;
    }
    return 0;
}

/* Whether d (bytes) = sum delta_i s_i + r with |delta_i| < dims_i and
 * |r| < tol, searching the dims from the largest stride down: with nested
 * strides (no self-overlap) each delta is one of the two integers around
 * the remainder's quotient, so at most 2^n paths. */
static int reachable(int64_t d, const int64_t *dims, const int64_t *strides, const int *order,
                     int m, int64_t tol)
{
    if (m == 0)
        return d > -tol && d < tol;
    const int i = order[m - 1];
    const int64_t s = strides[i];
    int64_t q = d / s; /* toward zero */
    for (int64_t c = q - 1; c <= q + 1; c++)
        if (c > -dims[i] && c < dims[i] && reachable(d - c * s, dims, strides, order, m - 1, tol))
            return 1;
    return 0;
}

int bsa_spans_overlap(const bsa_span *a, const bsa_span *b)
{
    if (!a->base || !b->base)
        return 0;
    /* the byte ranges first: disjoint ranges share nothing */
    int64_t a_end = a->esize, b_end = b->esize;
    for (int i = 0; i < a->n; i++)
        a_end += (a->dims[i] - 1) * a->strides[i];
    for (int i = 0; i < b->n; i++)
        b_end += (b->dims[i] - 1) * b->strides[i];
    const uintptr_t pa = (uintptr_t)a->base, pb = (uintptr_t)b->base;
    if (pa + (uintptr_t)a_end <= pb || pb + (uintptr_t)b_end <= pa)
        return 0;
    /* interleaved views of one buffer (a fused qkv tensor): the same shape
     * and strides, so one's elements are the other's shifted by d bytes;
     * they meet iff d is within an element of a difference of two offsets */
    int same = a->n == b->n && a->esize == b->esize;
    for (int i = 0; same && i < a->n; i++)
        same = a->dims[i] == b->dims[i] && a->strides[i] == b->strides[i];
    if (!same || bsa_strides_self_overlap(a->dims, a->strides, a->n))
        return 1; /* different layouts over the same bytes: taken as shared */
    int order[8], m = 0;
    for (int i = 0; i < a->n && m < 8; i++)
        if (a->dims[i] > 1)
            order[m++] = i;
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && a->strides[order[j]] < a->strides[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    const int64_t d = (int64_t)(pb - pa);
    return reachable(d, a->dims, a->strides, order, m, a->esize);
}
