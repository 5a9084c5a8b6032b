/*
 * Built-in element predicates, shared by C, CUDA and HIP code (internal).
 * They cost no memory: a kernel evaluates them from the absolute query and
 * key positions in layout order.
 */
#ifndef BSA_MASK_PREDICATES_H
#define BSA_MASK_PREDICATES_H

#include <stdint.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define BSA_HD __host__ __device__ __forceinline__
#else
#define BSA_HD static inline
#endif

typedef struct bsa_pred {
    unsigned flags; /* BSA_PRED_* of bsa.h */
    int window;
    int prefix;
} bsa_pred;

#define BSA_PRED_BIT_CAUSAL 1u
#define BSA_PRED_BIT_WINDOW 2u
#define BSA_PRED_BIT_PREFIX 4u

/* Every predicate set must hold (each can only remove elements). */
BSA_HD int bsa_pred_keep(const bsa_pred *p, int64_t q, int64_t k)
{
    unsigned f = p->flags;
    int64_t d = q - k;
    if ((f & BSA_PRED_BIT_CAUSAL) && d < 0)
        return 0;
    if ((f & BSA_PRED_BIT_WINDOW) && (d >= p->window || -d >= p->window))
        return 0;
    if ((f & BSA_PRED_BIT_PREFIX) && !(k < p->prefix || d >= 0))
        return 0;
    return 1;
}

#endif
