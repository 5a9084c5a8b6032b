/* The seed's unfused ops: argument checks, then the backend's optional slot. */
#include "internal.h"
#include "../backends/backend.h"

#include <math.h>

static bsa_status need(bsa_plan_t plan, const char *fn, const void *slot)
{
    if (!slot)
        return bsa_fail(BSA_ERROR_UNSUPPORTED, "%s: the %s backend does not provide this op", fn,
                        bsa_backend_name(plan->ctx->backend));
    return BSA_SUCCESS;
}

#define CHECK_PTRS(fn, a, an, b, bn, c, cn)                                                        \
    do {                                                                                           \
        if (!plan)                                                                                 \
            return bsa_fail(BSA_ERROR_NULL_POINTER, fn ": plan is NULL");                          \
        if (!(a) || !(b) || !(c))                                                                  \
            return bsa_fail(BSA_ERROR_NULL_POINTER, fn ": %s is NULL",                             \
                            !(a)   ? an                                                            \
                            : !(b) ? bn                                                            \
                                   : cn);                                                          \
    } while (0)

BSA_API bsa_status bsa_sparse_weight_elems(bsa_plan_t plan, int64_t *elems)
{
    bsa_status st = bsa_check_nonnull2("bsa_sparse_weight_elems", plan, "plan", elems, "elems");
    if (st != BSA_SUCCESS)
        return st;
    *elems = bsa_weight_offset(plan, plan->shape.batch, 0);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_sparse_nt(bsa_plan_t plan, const void *a, const void *b, float *w,
                                 void *stream)
{
    CHECK_PTRS("bsa_sparse_nt", a, "a", b, "b", w, "w");
    bsa_status st = need(plan, "bsa_sparse_nt", (const void *)plan->ctx->impl->sparse_nt);
    return st ? st : plan->ctx->impl->sparse_nt(plan, a, b, w, stream);
}

BSA_API bsa_status bsa_sparse_softmax(bsa_plan_t plan, const float *w, float *p, float scale,
                                      int masked, void *stream)
{
    CHECK_PTRS("bsa_sparse_softmax", w, "w", p, "p", plan, "plan");
    if (!isfinite(scale))
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT, "bsa_sparse_softmax: scale is not finite");
    bsa_status st = need(plan, "bsa_sparse_softmax", (const void *)plan->ctx->impl->sparse_softmax);
    return st ? st : plan->ctx->impl->sparse_softmax(plan, w, p, scale, masked != 0, stream);
}

BSA_API bsa_status bsa_sparse_softmax_backward(bsa_plan_t plan, const float *p, const float *dp,
                                               float *dw, float scale, void *stream)
{
    CHECK_PTRS("bsa_sparse_softmax_backward", p, "p", dp, "dp", dw, "dw");
    if (!isfinite(scale))
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_sparse_softmax_backward: scale is not finite");
    bsa_status st = need(plan, "bsa_sparse_softmax_backward",
                         (const void *)plan->ctx->impl->sparse_softmax_bwd);
    return st ? st : plan->ctx->impl->sparse_softmax_bwd(plan, p, dp, dw, scale, stream);
}

BSA_API bsa_status bsa_sparse_nn(bsa_plan_t plan, const float *w, const void *x, void *y,
                                 void *stream)
{
    CHECK_PTRS("bsa_sparse_nn", w, "w", x, "x", y, "y");
    bsa_status st = need(plan, "bsa_sparse_nn", (const void *)plan->ctx->impl->sparse_nn);
    return st ? st : plan->ctx->impl->sparse_nn(plan, w, x, y, stream);
}

BSA_API bsa_status bsa_sparse_tn(bsa_plan_t plan, const float *w, const void *x, void *y,
                                 void *stream)
{
    CHECK_PTRS("bsa_sparse_tn", w, "w", x, "x", y, "y");
    bsa_status st = need(plan, "bsa_sparse_tn", (const void *)plan->ctx->impl->sparse_tn);
    return st ? st : plan->ctx->impl->sparse_tn(plan, w, x, y, stream);
}
