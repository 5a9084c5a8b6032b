/*
 * The interface every backend fills (internal).  Slots marked optional may
 * be NULL; dispatch reports BSA_ERROR_UNSUPPORTED for a missing op.
 * All pointers given to a backend were validated by api/: shapes agree with
 * the layout, pointers are non-NULL where required, workspace is large
 * enough (or NULL on a backend that accepts NULL).
 */
#ifndef BSA_BACKEND_H
#define BSA_BACKEND_H

#include "../api/internal.h"
#include "../layouts/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bsa_backend_i {
    const char *name;
    bsa_backend kind;
    /* BSA_SUCCESS if a device is usable; else a status with bsa_fail(). */
    bsa_status (*probe)(int device);
    bsa_status (*context_init)(bsa_context_t ctx);     /* optional */
    void (*context_fini)(bsa_context_t ctx);           /* optional */
    bsa_status (*layout_prepare)(bsa_layout_t layout); /* optional: upload tables */
    /* Chooses an implementation: sets plan->impl_name, workspace_bytes,
     * backend_data; or declines with a status and a reason. */
    bsa_status (*plan_init)(bsa_plan_t plan);
    void (*plan_fini)(bsa_plan_t plan); /* optional */
    bsa_status (*forward)(bsa_plan_t plan, const bsa_fwd_args *args, void *ws, size_t ws_bytes,
                          void *stream);
    bsa_status (*backward)(bsa_plan_t plan, const bsa_bwd_args *args, void *ws, size_t ws_bytes,
                           void *stream);
    /* optional: the seed's unfused ops (see bsa.h) */
    bsa_status (*sparse_nt)(bsa_plan_t plan, const void *a, const void *b, float *w, void *stream);
    bsa_status (*sparse_softmax)(bsa_plan_t plan, const float *w, float *p, float scale, int masked,
                                 void *stream);
    bsa_status (*sparse_softmax_bwd)(bsa_plan_t plan, const float *p, const float *dp, float *dw,
                                     float scale, void *stream);
    bsa_status (*sparse_nn)(bsa_plan_t plan, const float *w, const void *x, void *y, void *stream);
    bsa_status (*sparse_tn)(bsa_plan_t plan, const float *w, const void *x, void *y, void *stream);
    /* BSA_FEATURE_* bits the forward/backward implement; api/ declines a
     * plan or call that needs a missing one (BSA_ERROR_UNSUPPORTED), so a
     * backend never sees a feature it did not announce.  Last member, so
     * positional initialisers that stop before it leave it 0. */
    unsigned features;
} bsa_backend_i;

/* Capabilities beyond the seed (see bsa.h: "Shapes beyond the seed"). */
#define BSA_FEATURE_GQA 1u         /* k/v heads dividing q heads */
#define BSA_FEATURE_KEY_LENGTHS 2u /* per-batch valid key lengths */
#define BSA_FEATURE_VARLEN 4u      /* packed sequences, cu_seqlens */
#define BSA_FEATURE_VALUE_DIM 8u   /* value head dim != q/k head dim */

/* Element offset of (batch b, head h)'s first block in the fp32 sparse
 * weight tensor [batch, heads, blocks_h, B, B] (see bsa.h). */
static inline int64_t bsa_weight_offset(const struct bsa_plan *plan, int64_t b, int64_t h)
{
    const struct bsa_layout *l = plan->layout;
    int64_t bb = (int64_t)l->block * l->block;
    int64_t per_batch = l->heads == 1 ? plan->shape.heads * l->nnz : l->nnz;
    int64_t head_off = l->heads == 1 ? h * l->nnz : l->head_ptr[h];
    return (b * per_batch + head_off) * bb;
}

/* Layout head used by attention head h. */
static inline int bsa_layout_head(const struct bsa_layout *l, int64_t h)
{
    return l->heads == 1 ? 0 : (int)h;
}

/* Defined by each compiled backend. */
extern const bsa_backend_i bsa_backend_cpu;
#ifdef BSA_WITH_CUDA
extern const bsa_backend_i bsa_backend_cuda;
#endif
#ifdef BSA_WITH_HIP
extern const bsa_backend_i bsa_backend_hip;
#endif

#ifdef __cplusplus
}
#endif
#endif
