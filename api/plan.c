/* Plans: shapes, dtype and layout validated and bound once (FFTW's lesson),
 * then executed many times on new pointers. */
#include "internal.h"
#include "overlap.h"
#include "../backends/backend.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (d->flags & ~(unsigned)(BSA_PLAN_FORCE_REFERENCE | BSA_PLAN_VARLEN | BSA_PLAN_KEY_LENGTHS))
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_plan_create: desc->flags = 0x%x has unknown bits", d->flags);
    const bsa_tensor_desc *t[4] = {&d->q, &d->k, &d->v, &d->o};
    for (int i = 0; i < 4; i++) {
        int64_t extent;
        if ((st = check_tensor(t[i], tensor_names[i], &extent)) != BSA_SUCCESS)
            return st;
    }
    /* k, v, o against q: batch always; k/v heads divide q heads (grouped
     * query); v's dim is o's and may differ from q/k's (value dim) */
    if ((st = same_dims(&d->q, &d->k, "q", "k", 0x9)) ||
        (st = same_dims(&d->k, &d->v, "k", "v", 0x7)) ||
        (st = same_dims(&d->q, &d->o, "q", "o", 0x7)) ||
        (st = same_dims(&d->v, &d->o, "v", "o", 0x8)))
        return st;
    /* o, and the gradients that share q's, k's and v's strides, are
     * written: two of their elements may not share memory */
    for (int i = 0; i < 4; i++)
        if (bsa_strides_self_overlap(t[i]->dims, t[i]->strides, 4))
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "bsa_plan_create: desc->%s's strides make different elements share "
                            "memory (o, dq, dk, dv are written through these strides)",
                            tensor_names[i]);
    const char *bname = ctx->impl->name;
    unsigned feat = ctx->impl->features;
    int64_t heads = d->q.dims[1], kv_heads = d->k.dims[1];
    if (kv_heads != heads) {
        if (heads % kv_heads)
            return bsa_fail(BSA_ERROR_SHAPE_MISMATCH,
                            "bsa_plan_create: k/v heads (dims[1]) = %lld must divide the q heads "
                            "%lld (grouped-query attention)",
                            (long long)kv_heads, (long long)heads);
        if (!(feat & BSA_FEATURE_GQA))
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "bsa_plan_create: the %s backend does not implement grouped-query "
                            "attention (k/v heads %lld != q heads %lld)",
                            bname, (long long)kv_heads, (long long)heads);
    }
    int64_t dim = d->q.dims[3], v_dim = d->v.dims[3];
    if (dim % 8 != 0 || dim > max_head_dim)
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "bsa_plan_create: head dim %lld must be a multiple of 8 and at most %d",
                        (long long)dim, max_head_dim);
    if (v_dim != dim) {
        if (v_dim % 8 != 0 || v_dim > max_head_dim)
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "bsa_plan_create: value head dim v.dims[3] = %lld must be a multiple "
                            "of 8 and at most %d",
                            (long long)v_dim, max_head_dim);
        if (!(feat & BSA_FEATURE_VALUE_DIM))
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "bsa_plan_create: the %s backend does not implement a value head dim "
                            "(%lld) different from the query/key head dim (%lld)",
                            bname, (long long)v_dim, (long long)dim);
    }
    if (lay->heads != 1 && lay->heads != d->q.dims[1])
        return bsa_fail(BSA_ERROR_SHAPE_MISMATCH,
                        "bsa_plan_create: the layout has %d heads; the tensors have %lld (a layout "
                        "must have 1 head or one per head)",
                        lay->heads, (long long)d->q.dims[1]);
    int varlen = (d->flags & BSA_PLAN_VARLEN) != 0;
    if (varlen) {
        if (!(feat & BSA_FEATURE_VARLEN))
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "bsa_plan_create: the %s backend does not implement packed "
                            "variable-length sequences (BSA_PLAN_VARLEN)",
                            bname);
        if (d->q.dims[0] != 1)
            return bsa_fail(BSA_ERROR_INVALID_SHAPE,
                            "bsa_plan_create: with BSA_PLAN_VARLEN the batch dim must be 1 (packed "
                            "sequences); q.dims[0] = %lld",
                            (long long)d->q.dims[0]);
        if (lay->stride_perm)
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "bsa_plan_create: BSA_PLAN_VARLEN cannot use a strided-pattern layout "
                            "(its permutation depends on the sequence length)");
    } else if (lay->seq_q != d->q.dims[2] || lay->seq_k != d->k.dims[2])
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
    out->kv_heads = kv_heads;
    out->v_dim = v_dim;
    out->varlen = varlen;
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
        free(p->explain);
        free(p);
        return st;
    }
    if (!p->align)
        p->align = shape.dtype == BSA_DTYPE_F32 ? 4 : 2; /* the element size */
    bsa_live_add(&ctx->live_plans, 1);
    bsa_live_add(&layout->live_plans, 1);
    const char *verbose = getenv("BSA_VERBOSE");
    if (verbose && *verbose && strcmp(verbose, "0"))
        fprintf(stderr, "bsa_plan_create: %s\n%s", p->impl_name ? p->impl_name : "unknown",
                p->explain ? p->explain : "");
    *plan = p;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_destroy(bsa_plan_t plan)
{
    if (!plan)
        return BSA_SUCCESS;
    if (plan->ctx->impl->plan_fini)
        plan->ctx->impl->plan_fini(plan);
    bsa_live_add(&plan->ctx->live_plans, -1);
    bsa_live_add(&plan->layout->live_plans, -1);
    free(plan->explain);
    free(plan);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_workspace_size(bsa_plan_t plan, size_t *bytes)
{
    bsa_status st = bsa_check_nonnull2("bsa_plan_workspace_size", plan, "plan", bytes, "bytes");
    if (st != BSA_SUCCESS)
        return st;
    *bytes = plan->workspace_bytes;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_implementation(bsa_plan_t plan, const char **name)
{
    bsa_status st = bsa_check_nonnull2("bsa_plan_implementation", plan, "plan", name, "name");
    if (st != BSA_SUCCESS)
        return st;
    *name = plan->impl_name ? plan->impl_name : "unknown";
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_explain(bsa_plan_t plan, char *buf, size_t len, size_t *length)
{
    if (!plan)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_plan_explain: plan is NULL");
    if (!buf && len)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_plan_explain: buf is NULL with len = %zu",
                        len);
    char name_only[160];
    const char *text = plan->explain;
    if (!text) {
        snprintf(name_only, sizeof name_only, "implementation: %s\n",
                 plan->impl_name ? plan->impl_name : "unknown");
        text = name_only;
    }
    size_t n = strlen(text);
    if (length)
        *length = n;
    if (len) {
        size_t c = n < len - 1 ? n : len - 1;
        memcpy(buf, text, c);
        buf[c] = '\0';
    }
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_plan_alignment(bsa_plan_t plan, size_t *bytes)
{
    bsa_status st = bsa_check_nonnull2("bsa_plan_alignment", plan, "plan", bytes, "bytes");
    if (st != BSA_SUCCESS)
        return st;
    *bytes = plan->align;
    return BSA_SUCCESS;
}

/* Every tensor pointer aligned as the plan's implementation needs. */
static bsa_status check_alignment(bsa_plan_t plan, const char *fn, const void *const *ptrs,
                                  const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if ((uintptr_t)ptrs[i] % plan->align)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s: args->%s = %p is not %zu-byte aligned, as the plan's "
                            "implementation %s needs of every tensor (bsa_plan_alignment)",
                            fn, names[i], ptrs[i], plan->align,
                            plan->impl_name ? plan->impl_name : "unknown");
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

/* Key lengths and packed-sequence offsets of a call (bsa.h, bsa_fwd_args). */
static bsa_status check_extras(bsa_plan_t plan, const char *fn, const int32_t *key_lengths,
                               const int32_t *cu_q, const int32_t *cu_k, int num_seqs)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const char *bname = plan->ctx->impl->name;
    unsigned feat = plan->ctx->impl->features;
    /* GPU backends take these arrays in device memory (bsa.h): only the CPU
     * can check their contents here */
    int host_arrays = plan->ctx->backend == BSA_BACKEND_CPU;
    if (!s->varlen) {
        if (cu_q || cu_k || num_seqs)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s: args->cu_seqlens_q/cu_seqlens_k/num_seqs are set but the plan "
                            "was created without BSA_PLAN_VARLEN",
                            fn);
    } else {
        if (!cu_q || !cu_k)
            return bsa_fail(BSA_ERROR_NULL_POINTER,
                            "%s: args->%s is NULL; a BSA_PLAN_VARLEN plan needs both offsets", fn,
                            !cu_q ? "cu_seqlens_q" : "cu_seqlens_k");
        if (num_seqs < 1)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT, "%s: args->num_seqs = %d must be >= 1", fn,
                            num_seqs);
        const int32_t *cu[2] = {cu_q, cu_k};
        const char *nm[2] = {"cu_seqlens_q", "cu_seqlens_k"};
        int64_t total[2] = {s->seq_q, s->seq_k}, cover[2] = {l->seq_q, l->seq_k};
        for (int x = 0; x < 2 && host_arrays; x++) {
            if (cu[x][0] != 0 || cu[x][num_seqs] != total[x])
                return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                                "%s: args->%s[0] = %d must be 0 and [num_seqs = %d] = %d must be "
                                "the packed time %lld",
                                fn, nm[x], cu[x][0], num_seqs, cu[x][num_seqs],
                                (long long)total[x]);
            for (int i = 0; i < num_seqs; i++) {
                int64_t len = (int64_t)cu[x][i + 1] - cu[x][i];
                if (len < 0 || len > cover[x])
                    return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                                    "%s: args->%s: sequence %d has length %lld; lengths must be "
                                    "in 0..%lld (the layout's %s length)",
                                    fn, nm[x], i, (long long)len, (long long)cover[x],
                                    x ? "key" : "query");
            }
        }
    }
    if (key_lengths && host_arrays) {
        int64_t n = s->varlen ? num_seqs : s->batch;
        for (int64_t i = 0; i < n; i++)
            if (key_lengths[i] < 0)
                return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                                "%s: args->key_lengths[%lld] = %d must be >= 0", fn, (long long)i,
                                key_lengths[i]);
    }
    if (key_lengths && !(plan->flags & BSA_PLAN_KEY_LENGTHS))
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: args->key_lengths is set but the plan was created without "
                        "BSA_PLAN_KEY_LENGTHS (the plan chooses kernels that take them)",
                        fn);
    if (key_lengths && !(feat & BSA_FEATURE_KEY_LENGTHS))
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "%s: the %s backend does not implement key lengths (args->key_lengths)", fn,
                        bname);
    if (s->varlen && !(feat & BSA_FEATURE_VARLEN))
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "%s: the %s backend does not implement packed variable-length sequences",
                        fn, bname);
    return BSA_SUCCESS;
}

/* The memory of tensor i (0..3: q, k, v, o; their gradients share it)
 * at base, and of the lse. */
static bsa_span span_of(const bsa_shape *s, int i, const void *base)
{
    const int64_t *st[4] = {s->q_stride, s->k_stride, s->v_stride, s->o_stride};
    const int64_t es = s->dtype == BSA_DTYPE_F32 ? 4 : 2;
    bsa_span r = {base, es, 4, {0}, {0}};
    r.dims[0] = s->batch;
    r.dims[1] = i == 1 || i == 2 ? s->kv_heads : s->heads;
    r.dims[2] = i == 1 || i == 2 ? s->seq_k : s->seq_q;
    r.dims[3] = i == 0 || i == 1 ? s->head_dim : s->v_dim;
    for (int k = 0; k < 4; k++)
        r.strides[k] = st[i][k] * es;
    return r;
}

static bsa_span lse_span(const bsa_shape *s, const void *base)
{
    bsa_span r = {base, 4, 1, {s->batch * s->heads * s->seq_q}, {4}};
    return r;
}

/* Outputs overlap no input and no other output (bsa.h): outs[0..n_out)
 * against every later output and every input. */
static bsa_status check_aliasing(const char *fn, const bsa_span *outs, const char *const *out_names,
                                 int n_out, const bsa_span *ins, const char *const *in_names,
                                 int n_in)
{
    for (int i = 0; i < n_out; i++) {
        for (int j = i + 1; j < n_out; j++)
            if (bsa_spans_overlap(&outs[i], &outs[j]))
                return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                                "%s: args->%s and args->%s share memory: outputs may not overlap "
                                "inputs, other outputs or themselves",
                                fn, out_names[i], out_names[j]);
        for (int j = 0; j < n_in; j++)
            if (bsa_spans_overlap(&outs[i], &ins[j]))
                return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                                "%s: args->%s shares memory with args->%s: outputs may not "
                                "overlap inputs, other outputs or themselves",
                                fn, out_names[i], in_names[j]);
    }
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *workspace,
                               size_t workspace_bytes, void *stream)
{
    bsa_status st = bsa_check_nonnull2("bsa_forward", plan, "plan", args, "args");
    if (st != BSA_SUCCESS)
        return st;
    if (!args->q || !args->k || !args->v || !args->o)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_forward: args->%s is NULL",
                        !args->q   ? "q"
                        : !args->k ? "k"
                        : !args->v ? "v"
                                   : "o");
    const void *const fptrs[] = {args->q, args->k, args->v, args->o};
    static const char *const fnames[] = {"q", "k", "v", "o"};
    st = check_alignment(plan, "bsa_forward", fptrs, fnames, 4);
    if (st != BSA_SUCCESS)
        return st;
    if ((st = check_workspace(plan, "bsa_forward", workspace, workspace_bytes)) != BSA_SUCCESS)
        return st;
    const bsa_shape *sh = &plan->shape;
    const bsa_span fout[2] = {span_of(sh, 3, args->o), lse_span(sh, args->lse)};
    const bsa_span fin[3] = {span_of(sh, 0, args->q), span_of(sh, 1, args->k),
                             span_of(sh, 2, args->v)};
    static const char *const fout_names[2] = {"o", "lse"};
    if ((st = check_aliasing("bsa_forward", fout, fout_names, 2, fin, fnames, 3)) != BSA_SUCCESS)
        return st;
    if ((st = check_extras(plan, "bsa_forward", args->key_lengths, args->cu_seqlens_q,
                           args->cu_seqlens_k, args->num_seqs)) != BSA_SUCCESS)
        return st;
    return plan->ctx->impl->forward(plan, args, workspace, workspace_bytes, stream);
}

BSA_API bsa_status bsa_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *workspace,
                                size_t workspace_bytes, void *stream)
{
    bsa_status st = bsa_check_nonnull2("bsa_backward", plan, "plan", args, "args");
    if (st != BSA_SUCCESS)
        return st;
    const void *ptrs[] = {args->q,    args->k,  args->v,  args->o, args->lse,
                          args->dout, args->dq, args->dk, args->dv};
    static const char *const names[] = {"q", "k", "v", "o", "lse", "dout", "dq", "dk", "dv"};
    for (int i = 0; i < 9; i++)
        if (!ptrs[i])
            return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_backward: args->%s is NULL", names[i]);
    const void *const tptrs[] = {args->q,    args->k,  args->v,  args->o,
                                 args->dout, args->dq, args->dk, args->dv};
    static const char *const tnames[] = {"q", "k", "v", "o", "dout", "dq", "dk", "dv"};
    st = check_alignment(plan, "bsa_backward", tptrs, tnames, 8);
    if (st != BSA_SUCCESS)
        return st;
    if ((st = check_workspace(plan, "bsa_backward", workspace, workspace_bytes)) != BSA_SUCCESS)
        return st;
    const bsa_shape *sh = &plan->shape;
    const bsa_span bout[3] = {span_of(sh, 0, args->dq), span_of(sh, 1, args->dk),
                              span_of(sh, 2, args->dv)};
    const bsa_span bin[6] = {span_of(sh, 0, args->q), span_of(sh, 1, args->k),
                             span_of(sh, 2, args->v), span_of(sh, 3, args->o),
                             lse_span(sh, args->lse), span_of(sh, 3, args->dout)};
    static const char *const bout_names[3] = {"dq", "dk", "dv"};
    static const char *const bin_names[6] = {"q", "k", "v", "o", "lse", "dout"};
    if ((st = check_aliasing("bsa_backward", bout, bout_names, 3, bin, bin_names, 6)) !=
        BSA_SUCCESS)
        return st;
    if ((st = check_extras(plan, "bsa_backward", args->key_lengths, args->cu_seqlens_q,
                           args->cu_seqlens_k, args->num_seqs)) != BSA_SUCCESS)
        return st;
    return plan->ctx->impl->backward(plan, args, workspace, workspace_bytes, stream);
}
