/* Plans: shapes, dtype and layout validated and bound once (FFTW's lesson),
 * then executed many times on new pointers. */
#include "internal.h"
#include "../backends/backend.h"

#include <math.h>
#include <stdlib.h>

enum { max_head_dim = 256 };
static const char *const tensor_names[] = {"q", "k", "v", "o"};
static const char *const dim_names[] = {"batch", "heads", "time", "dim"};

/* Checks one tensor's dims and strides; *extent = elements spanned. */
static bsa_status check_tensor(const bsa_tensor_desc *t, const char *name, int64_t *extent)
{
    int64_t span = 1;
    for (int i = 0; i < 4; i++) {
        if (t->dims[i] < 1)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "bsa_plan_create: desc->%s.dims[%d] (%s) = %lld must be >= 1", name, i,
                            dim_names[i], (long long)t->dims[i]);
    }
    if (t->strides[3] != 1)
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "bsa_plan_create: desc->%s.strides[3] (dim) = %lld: the head-dim stride "
                        "must be 1",
                        name, (long long)t->strides[3]);
    for (int i = 0; i < 3; i++) {
        if (t->dims[i] > 1 && t->strides[i] < 1)
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "bsa_plan_create: desc->%s.strides[%d] (%s) = %lld: strides of dims "
                            "longer than 1 must be positive",
                            name, i, dim_names[i], (long long)t->strides[i]);
        int64_t reach;
        if (!bsa_mul_ok(t->dims[i] - 1, t->dims[i] > 1 ? t->strides[i] : 0, &reach) ||
            __builtin_add_overflow(span, reach, &span))
            return bsa_fail(BSA_ERROR_OVERFLOW,
                            "bsa_plan_create: desc->%s spans more than 2^63 elements", name);
    }
    int64_t n = 1;
    for (int i = 0; i < 4; i++)
        if (!bsa_mul_ok(n, t->dims[i], &n))
            return bsa_fail(BSA_ERROR_OVERFLOW,
                            "bsa_plan_create: desc->%s has more than 2^63 elements", name);
    if (__builtin_add_overflow(span, t->dims[3] - 1, &span))
        return bsa_fail(BSA_ERROR_OVERFLOW,
                        "bsa_plan_create: desc->%s spans more than 2^63 elements", name);
    *extent = span;
    return BSA_SUCCESS;
}

static bsa_status same_dims(const bsa_tensor_desc *a, const bsa_tensor_desc *b, const char *an,
                            const char *bn, int mask)
{
    for (int i = 0; i < 4; i++)
        if ((mask >> i & 1) && a->dims[i] != b->dims[i])
            return bsa_fail(BSA_ERROR_SHAPE_MISMATCH,
                            "bsa_plan_create: %s.dims[%d] (%s) = %lld differs from %s's %lld", bn,
                            i, dim_names[i], (long long)b->dims[i], an, (long long)a->dims[i]);
    return BSA_SUCCESS;
}

static bsa_status validate(bsa_context_t ctx, const bsa_attn_desc *d, bsa_layout_t lay,
                           bsa_shape *out)
{
    bsa_status st;
    if (lay->ctx != ctx)
        return bsa_fail(BSA_ERROR_CONTEXT_MISMATCH,
                        "bsa_plan_create: the layout was created with another context");
    if ((unsigned)d->dtype > BSA_DTYPE_BF16)
        return bsa_fail(BSA_ERROR_INVALID_DTYPE,
                        "bsa_plan_create: desc->dtype = %d is not f32 (0), f16 (1) or bf16 (2)",
                        (int)d->dtype);
    if (d->flags & ~(unsigned)BSA_PLAN_FORCE_REFERENCE)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_plan_create: desc->flags = 0x%x has unknown bits", d->flags);
    const bsa_tensor_desc *t[4] = {&d->q, &d->k, &d->v, &d->o};
    for (int i = 0; i < 4; i++) {
        int64_t extent;
        if ((st = check_tensor(t[i], tensor_names[i], &extent)) != BSA_SUCCESS)
            return st;
    }
    /* k, v, o against q: batch, heads, dim always; time per role */
    if ((st = same_dims(&d->q, &d->k, "q", "k", 0xB)) ||
        (st = same_dims(&d->k, &d->v, "k", "v", 0xF)) ||
        (st = same_dims(&d->q, &d->o, "q", "o", 0xF)))
        return st;
    int64_t dim = d->q.dims[3];
    if (dim % 8 != 0 || dim > max_head_dim)
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "bsa_plan_create: head dim %lld must be a multiple of 8 and at most %d",
                        (long long)dim, max_head_dim);
    if (lay->heads != 1 && lay->heads != d->q.dims[1])
        return bsa_fail(BSA_ERROR_SHAPE_MISMATCH,
                        "bsa_plan_create: the layout has %d heads; the tensors have %lld (a layout "
                        "must have 1 head or one per head)",
                        lay->heads, (long long)d->q.dims[1]);
    if (lay->seq_q != d->q.dims[2] || lay->seq_k != d->k.dims[2])
        return bsa_fail(BSA_ERROR_SHAPE_MISMATCH,
                        "bsa_plan_create: the layout covers %d queries x %d keys (block %d); the "
                        "tensors have %lld queries and %lld keys",
                        lay->seq_q, lay->seq_k, lay->block, (long long)d->q.dims[2],
                        (long long)d->k.dims[2]);
    float scale = d->scale;
    if (!isfinite(scale))
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT, "bsa_plan_create: desc->scale is not finite");
    if (scale == 0.0f)
        scale = (float)(1.0 / sqrt((double)dim));
    /* lse [batch, heads, seq_q] and the weight tensor must be addressable */
    int64_t n;
    if (!bsa_mul_ok(d->q.dims[0], d->q.dims[1], &n) || !bsa_mul_ok(n, d->q.dims[2], &n) ||
        !bsa_mul_ok(n, (int64_t)lay->nnz * lay->block * lay->block, &n))
        return bsa_fail(BSA_ERROR_OVERFLOW, "bsa_plan_create: batch * heads * blocks overflows");

    out->batch = d->q.dims[0];
    out->heads = d->q.dims[1];
    out->seq_q = d->q.dims[2];
    out->seq_k = d->k.dims[2];
    out->head_dim = dim;
    for (int i = 0; i < 4; i++) {
        out->q_stride[i] = d->q.strides[i];
        out->k_stride[i] = d->k.strides[i];
        out->v_stride[i] = d->v.strides[i];
        out->o_stride[i] = d->o.strides[i];
    }
    out->dtype = d->dtype;
    out->scale = scale;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_create(bsa_context_t ctx, bsa_plan_t *plan, const bsa_attn_desc *desc,
                                   bsa_layout_t layout)
{
    if (!ctx || !plan || !desc || !layout)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_plan_create: %s is NULL",
                        !ctx    ? "ctx"
                        : !plan ? "plan"
                        : !desc ? "desc"
                                : "layout");
    bsa_shape shape;
    bsa_status st = validate(ctx, desc, layout, &shape);
    if (st != BSA_SUCCESS)
        return st;
    struct bsa_plan *p = calloc(1, sizeof *p);
    if (!p)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_plan_create: out of host memory");
    p->ctx = ctx;
    p->layout = layout;
    p->shape = shape;
    p->flags = desc->flags;
    if ((st = ctx->impl->plan_init(p)) != BSA_SUCCESS) {
        free(p);
        return st;
    }
    *plan = p;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_destroy(bsa_plan_t plan)
{
    if (!plan)
        return BSA_SUCCESS;
    if (plan->ctx->impl->plan_fini)
        plan->ctx->impl->plan_fini(plan);
    free(plan);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_workspace_size(bsa_plan_t plan, size_t *bytes)
{
    if (!plan || !bytes)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_plan_workspace_size: %s is NULL",
                        !plan ? "plan" : "bytes");
    *bytes = plan->workspace_bytes;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_implementation(bsa_plan_t plan, const char **name)
{
    if (!plan || !name)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_plan_implementation: %s is NULL",
                        !plan ? "plan" : "name");
    *name = plan->impl_name ? plan->impl_name : "unknown";
    return BSA_SUCCESS;
}

static bsa_status check_workspace(bsa_plan_t plan, const char *fn, void *ws, size_t bytes)
{
    if (ws && bytes < plan->workspace_bytes)
        return bsa_fail(BSA_ERROR_WORKSPACE, "%s: workspace_bytes = %zu, the plan needs %zu", fn,
                        bytes, plan->workspace_bytes);
    if (!ws && plan->workspace_bytes > 0 && plan->ctx->backend != BSA_BACKEND_CPU)
        return bsa_fail(BSA_ERROR_WORKSPACE,
                        "%s: workspace is NULL; the %s backend needs %zu bytes (see "
                        "bsa_plan_workspace_size)",
                        fn, bsa_backend_name(plan->ctx->backend), plan->workspace_bytes);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *workspace,
                               size_t workspace_bytes, void *stream)
{
    if (!plan || !args)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_forward: %s is NULL", !plan ? "plan" : "args");
    if (!args->q || !args->k || !args->v || !args->o)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_forward: args->%s is NULL",
                        !args->q   ? "q"
                        : !args->k ? "k"
                        : !args->v ? "v"
                                   : "o");
    bsa_status st = check_workspace(plan, "bsa_forward", workspace, workspace_bytes);
    if (st != BSA_SUCCESS)
        return st;
    return plan->ctx->impl->forward(plan, args, workspace, workspace_bytes, stream);
}

BSA_API bsa_status bsa_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *workspace,
                                size_t workspace_bytes, void *stream)
{
    if (!plan || !args)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_backward: %s is NULL",
                        !plan ? "plan" : "args");
    const void *ptrs[] = {args->q,    args->k,  args->v,  args->o, args->lse,
                          args->dout, args->dq, args->dk, args->dv};
    static const char *const names[] = {"q", "k", "v", "o", "lse", "dout", "dq", "dk", "dv"};
    for (int i = 0; i < 9; i++)
        if (!ptrs[i])
            return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_backward: args->%s is NULL", names[i]);
    bsa_status st = check_workspace(plan, "bsa_backward", workspace, workspace_bytes);
    if (st != BSA_SUCCESS)
        return st;
    return plan->ctx->impl->backward(plan, args, workspace, workspace_bytes, stream);
}
