/* One attention problem end to end: see attn_check.h. */
#include "attn_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ac_form_name(ac_form form)
{
    static const char *const names[] = {"bthd", "bhtd", "padded"};
    return (unsigned)form < 3 ? names[form] : "?";
}

bsa_tensor_desc ac_desc(ac_form form, int64_t batch, int64_t heads, int64_t time, int64_t dim)
{
    switch (form) {
    case AC_BHTD:
        return bsa_tensor_bhtd(batch, heads, time, dim);
    case AC_PADDED:
        return tu_desc_padded(batch, heads, time, dim);
    default:
        return bsa_tensor_bthd(batch, time, heads, dim);
    }
}

bsa_status ac_problem_init(ac_problem *p, bsa_layout_t layout, const cm_source *masks,
                           bsa_dtype dtype, int64_t batch, int64_t heads, int64_t head_dim,
                           ac_form form, float scale, bsa_attn_desc *desc)
{
    memset(p, 0, sizeof *p);
    bsa_layout_info info;
    bsa_status st = bsa_layout_get_info(layout, &info);
    if (st != BSA_SUCCESS)
        return st;
    p->dtype = dtype;
    p->batch = batch;
    p->heads = heads;
    p->seq_q = info.seq_q;
    p->seq_k = info.seq_k;
    p->head_dim = head_dim;
    /* the library rounds the scale to fp32; give the oracle the same value */
    p->scale = scale != 0.0f ? scale : (float)(1.0 / sqrt((double)head_dim));
    p->layout_heads = info.heads;

    if (masks) {
        if ((st = cm_check(masks, &info)) != BSA_SUCCESS)
            return st;
        if (!(p->mask = cm_masks(masks)))
            return BSA_ERROR_CALLBACK;
    }

    bsa_tensor_desc dq = ac_desc(form, batch, heads, p->seq_q, head_dim);
    bsa_tensor_desc dk = ac_desc(form, batch, heads, p->seq_k, head_dim);
    p->q = tu_tensor_new(dtype, dq);
    p->k = tu_tensor_new(dtype, dk);
    p->v = tu_tensor_new(dtype, dk);
    p->o = tu_tensor_new(dtype, dq);
    p->dout = tu_tensor_new(dtype, dq);
    p->dq = tu_tensor_new(dtype, dq);
    p->dk = tu_tensor_new(dtype, dk);
    p->dv = tu_tensor_new(dtype, dk);
    tu_tensor_random(&p->q, -1.0, 1.0);
    tu_tensor_random(&p->k, -1.0, 1.0);
    tu_tensor_random(&p->v, -1.0, 1.0);
    tu_tensor_random(&p->dout, -1.0, 1.0);
    p->n_lse = batch * heads * p->seq_q;
    p->lse = tu_alloc(BSA_DTYPE_F32, p->n_lse);
    p->lse_val = tu_xmalloc((size_t)p->n_lse * sizeof(double));

    p->op.batch = batch;
    p->op.heads = heads;
    p->op.seq_q = p->seq_q;
    p->op.seq_k = p->seq_k;
    p->op.head_dim = head_dim;
    p->op.scale = p->scale;
    p->op.layout_heads = info.heads;
    p->op.mask = p->mask;

    if (desc) {
        memset(desc, 0, sizeof *desc);
        desc->dtype = dtype;
        desc->q = dq;
        desc->k = dk;
        desc->v = dk;
        desc->o = dq;
        desc->scale = scale;
        desc->flags = BSA_PLAN_DEFAULT;
    }
    return BSA_SUCCESS;
}

/* The oracle needs the closed-form masks (ac_problem_init's masks). */
static void need_mask(const ac_problem *p, const char *fn)
{
    if (!p->mask) {
        fprintf(stderr, "%s: the problem has no mask (ac_problem_init without a source)\n", fn);
        abort();
    }
}

void ac_problem_oracle(ac_problem *p)
{
    need_mask(p, "ac_problem_oracle");
    size_t nq = (size_t)p->q.count, nk = (size_t)p->k.count;
    if (!p->ref_o) {
        p->ref_o = tu_xmalloc(nq * sizeof(double));
        p->ref_lse = tu_xmalloc((size_t)p->n_lse * sizeof(double));
        p->ref_dq = tu_xmalloc(nq * sizeof(double));
        p->ref_dk = tu_xmalloc(nk * sizeof(double));
        p->ref_dv = tu_xmalloc(nk * sizeof(double));
    }
    oracle_forward(&p->op, p->q.val, p->k.val, p->v.val, p->ref_o, p->ref_lse);
    oracle_backward(&p->op, p->q.val, p->k.val, p->v.val, p->dout.val, p->ref_dq, p->ref_dk,
                    p->ref_dv);
}

void ac_problem_free(ac_problem *p)
{
    tu_tensor *t[] = {&p->q, &p->k, &p->v, &p->o, &p->dout, &p->dq, &p->dk, &p->dv};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        tu_tensor_free(t[i]);
    free(p->lse);
    free(p->lse_val);
    free(p->mask);
    free(p->ref_o);
    free(p->ref_lse);
    free(p->ref_dq);
    free(p->ref_dk);
    free(p->ref_dv);
    memset(p, 0, sizeof *p);
}

/* Workspace filled with garbage: a library that assumes zeroed scratch shows. */
static void *make_ws(bsa_plan_t plan, ac_ws mode, size_t *bytes)
{
    *bytes = 0;
    if (mode == AC_WS_NULL || bsa_plan_workspace_size(plan, bytes) != BSA_SUCCESS)
        return NULL;
    unsigned char *ws = tu_xmalloc(*bytes);
    memset(ws, 0xA5, *bytes);
    return ws;
}

bsa_status ac_forward(bsa_plan_t plan, ac_problem *p, ac_ws mode)
{
    tu_tensor_poison(&p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    size_t bytes;
    void *ws = make_ws(plan, mode, &bytes);
    bsa_fwd_args a = {p->q.data, p->k.data, p->v.data, p->o.data, p->lse};
    bsa_status st = bsa_forward(plan, &a, ws, bytes, NULL);
    free(ws);
    tu_tensor_read(&p->o);
    tu_f32_to_f64(p->lse, p->lse_val, p->n_lse);
    return st;
}

bsa_status ac_backward(bsa_plan_t plan, ac_problem *p, ac_ws mode)
{
    tu_tensor_poison(&p->dq);
    tu_tensor_poison(&p->dk);
    tu_tensor_poison(&p->dv);
    size_t bytes;
    void *ws = make_ws(plan, mode, &bytes);
    bsa_bwd_args a = {p->q.data,    p->k.data,  p->v.data,  p->o.data, p->lse,
                      p->dout.data, p->dq.data, p->dk.data, p->dv.data};
    bsa_status st = bsa_backward(plan, &a, ws, bytes, NULL);
    free(ws);
    tu_tensor_read(&p->dq);
    tu_tensor_read(&p->dk);
    tu_tensor_read(&p->dv);
    return st;
}

/* Relative L2 of lse over rows where the oracle is finite; counts rows
 * where exactly one side is -inf (or the library gave NaN/+inf). */
static double lse_error(const ac_problem *p, int64_t *mismatch)
{
    double num = 0.0, den = 0.0;
    *mismatch = 0;
    for (int64_t i = 0; i < p->n_lse; i++) {
        double g = p->lse_val[i], r = p->ref_lse[i];
        if (isinf(r) || isinf(g) || isnan(g)) {
            if (!(isinf(r) && r < 0 && isinf(g) && g < 0))
                (*mismatch)++;
            continue;
        }
        num += (g - r) * (g - r);
        den += r * r;
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Checks the defined result for rows with no visible key and keys seen by
 * no query: exact zeros and -inf, never NaN. */
static void empty_checks(const ac_problem *p, int with_backward, ac_errors *e)
{
    int64_t d = p->head_dim;
    int64_t plane = p->seq_q * p->seq_k;
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads; h++) {
            const uint8_t *m = p->mask + (p->layout_heads == 1 ? 0 : h) * plane;
            int64_t bh = b * p->heads + h;
            for (int64_t i = 0; i < p->seq_q; i++) {
                int any = 0;
                for (int64_t j = 0; j < p->seq_k && !any; j++)
                    any = m[i * p->seq_k + j] != 0;
                if (any)
                    continue;
                e->empty_rows++;
                int bad =
                    !(isinf(p->lse_val[bh * p->seq_q + i]) && p->lse_val[bh * p->seq_q + i] < 0);
                for (int64_t x = 0; x < d; x++) {
                    int64_t at = (bh * p->seq_q + i) * d + x;
                    bad |= p->o.val[at] != 0.0;
                    if (with_backward)
                        bad |= p->dq.val[at] != 0.0;
                }
                e->empty_violations += bad;
            }
            if (!with_backward)
                continue;
            for (int64_t j = 0; j < p->seq_k; j++) {
                int any = 0;
                for (int64_t i = 0; i < p->seq_q && !any; i++)
                    any = m[i * p->seq_k + j] != 0;
                if (any)
                    continue;
                int bad = 0;
                for (int64_t x = 0; x < d; x++) {
                    int64_t at = (bh * p->seq_k + j) * d + x;
                    bad |= p->dk.val[at] != 0.0 || p->dv.val[at] != 0.0;
                }
                e->empty_violations += bad;
            }
        }
}

void ac_compare(const ac_problem *p, int with_backward, ac_errors *e)
{
    need_mask(p, "ac_compare");
    memset(e, 0, sizeof *e);
    e->o = tu_rel_l2(p->o.val, p->ref_o, p->o.count);
    e->lse = lse_error(p, &e->lse_inf_mismatch);
    e->unwritten = tu_tensor_unwritten(&p->o);
    e->gaps_touched = tu_tensor_gaps_touched(&p->o);
    e->nonfinite = tu_count_nonfinite(p->o.val, p->o.count);
    if (with_backward) {
        e->dq = tu_rel_l2(p->dq.val, p->ref_dq, p->dq.count);
        e->dk = tu_rel_l2(p->dk.val, p->ref_dk, p->dk.count);
        e->dv = tu_rel_l2(p->dv.val, p->ref_dv, p->dv.count);
        const tu_tensor *g[] = {&p->dq, &p->dk, &p->dv};
        for (int i = 0; i < 3; i++) {
            e->unwritten += tu_tensor_unwritten(g[i]);
            e->gaps_touched += tu_tensor_gaps_touched(g[i]);
            e->nonfinite += tu_count_nonfinite(g[i]->val, g[i]->count);
        }
    }
    empty_checks(p, with_backward, e);
}

void ac_print(const char *label, const ac_problem *p, const ac_errors *e)
{
    fprintf(stderr,
            "%-44s %-4s B%lld H%lld Tq%lld Tk%lld D%-3lld  o %.2e lse %.2e dq %.2e dk %.2e dv "
            "%.2e  unwritten %lld gaps %lld nonfinite %lld empty %lld/%lld bad, lse-inf %lld\n",
            label, tu_dtype_name(p->dtype), (long long)p->batch, (long long)p->heads,
            (long long)p->seq_q, (long long)p->seq_k, (long long)p->head_dim, e->o, e->lse, e->dq,
            e->dk, e->dv, (long long)e->unwritten, (long long)e->gaps_touched,
            (long long)e->nonfinite, (long long)e->empty_violations, (long long)e->empty_rows,
            (long long)e->lse_inf_mismatch);
}

void ac_print_worst(const char *path, int cases, const double worst[3][5])
{
    static const char *const cols[5] = {"o", "lse", "dq", "dk", "dv"};
    if (!cases)
        return;
    fprintf(stderr, "worst relative L2 vs oracle, %s path (%d cases):\n", path, cases);
    for (int dt = BSA_DTYPE_F32; dt <= BSA_DTYPE_BF16; dt++) {
        fprintf(stderr, "  %-5s", tu_dtype_name((bsa_dtype)dt));
        for (int i = 0; i < 5; i++)
            fprintf(stderr, " %s %.2e", cols[i], worst[dt][i]);
        fprintf(stderr, "\n");
    }
}
