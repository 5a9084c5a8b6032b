/*
 * Internal handles, error reporting and the permutation helper shared by
 * api/, layouts/ and backends/.
 */
#ifndef BSA_INTERNAL_H
#define BSA_INTERNAL_H

#include "bsa.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bsa_backend_i;

struct bsa_context {
    bsa_backend backend;
    int device;
    int num_threads;
    const struct bsa_backend_i *impl;
    void *backend_data; /* owned by the backend */
    /* layouts and plans alive on this context (bsa_live_*): destroying it
     * while any is alive is refused */
    int live_layouts, live_plans;
};

/* Counts of live handles, changed from any thread (bsa.h: threads may share
 * a context and layout).  Plain ints under the compilers' atomic builtins,
 * so that the C++ backend sources can include this header. */
static inline void bsa_live_add(int *count, int delta)
{
    __atomic_add_fetch(count, delta, __ATOMIC_ACQ_REL);
}
static inline int bsa_live_get(const int *count)
{
    return __atomic_load_n(count, __ATOMIC_ACQUIRE);
}

/* A plan's shapes, resolved and validated once. */
typedef struct bsa_shape {
    int64_t batch, heads, seq_q, seq_k, head_dim;
    int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4]; /* [b, h, t, d]; d == 1 */
    bsa_dtype dtype;
    float scale;
    /* beyond the seed: kv heads (heads % kv_heads == 0; query head h reads
     * kv head h / (heads / kv_heads)), value head dim (v and o), and
     * BSA_PLAN_VARLEN (batch 1, seq_q / seq_k = packed totals) */
    int64_t kv_heads, v_dim;
    int varlen;
} bsa_shape;

struct bsa_plan {
    bsa_context_t ctx;
    bsa_layout_t layout;
    bsa_shape shape;
    unsigned flags;
    const char *impl_name;
    size_t workspace_bytes;
    /* bytes every tensor pointer of a call must be aligned to (0: the
     * element size) and why the backend chose impl_name (malloc'd, freed
     * with the plan; NULL: the name alone) */
    size_t align;
    char *explain;
    void *backend_data; /* owned by the backend */
};

/* Records a detail message for bsa_last_error() and returns status. */
bsa_status bsa_fail(bsa_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void bsa_clear_error(void);

/* The NULL check of two required pointers (a handle and its out-parameter
 * or argument struct), shared by the entry points: BSA_ERROR_NULL_POINTER
 * with "fn: <name> is NULL" for the first that is NULL, else BSA_SUCCESS. */
bsa_status bsa_check_nonnull2(const char *fn, const void *a, const char *a_name, const void *b,
                              const char *b_name);

/* Overflow-checked products; return 0 on overflow. */
int bsa_mul_ok(int64_t a, int64_t b, int64_t *out);

/* Natural time position of row r in layout order: identity unless the
 * strided permutation is active (stride L, seq = n): the seed's
 * strided_transpose maps natural p = i*L + j (i < n/L) to r = j*(n/L) + i. */
static inline int64_t bsa_perm_row(int64_t r, int stride, int64_t n)
{
    if (!stride)
        return r;
    int64_t bt = n / stride;
    return (r % bt) * stride + r / bt;
}

/* Debug-only internal invariant check (never on user input). */
#ifdef BSA_DEBUG
#include <assert.h>
#define BSA_ASSERT(x) assert(x)
#else
#define BSA_ASSERT(x) ((void)0)
#endif

#ifdef __cplusplus
}
#endif
#endif
