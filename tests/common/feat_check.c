/* Problems with the features beyond the seed: see feat_check.h. */
#include "feat_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A key length for a segment of nk keys: mostly inside (partial), at
 * times 0 (every key masked) or past the end (nothing masked). */
static int32_t draw_key_length(int64_t nk)
{
    int r = tu_randint(0, 10);
    if (r == 0)
        return 0;
    if (r <= 2)
        return (int32_t)nk + tu_randint(0, 5);
    return nk > 1 ? tu_randint(1, (int)nk) : (int32_t)nk;
}

/* Packed lengths of n sequences, each <= cover; total >= 1. */
static void draw_lengths(int32_t *cu, int64_t n, int64_t cover)
{
    cu[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        /* 1 in 8 empty, 1 in 8 full, else anywhere (mostly not a block multiple) */
        int r = tu_randint(0, 8);
        int64_t len = r == 0 ? 0 : r == 1 ? cover : tu_randint(1, (int)cover + 1);
        cu[i + 1] = cu[i] + (int32_t)len;
    }
    if (cu[n] == 0)
        for (int64_t i = 1; i <= n; i++)
            cu[i] += 1; /* the first sequence gets one token */
}

bsa_status fc_problem_init(fc_problem *p, bsa_layout_t layout, const cm_source *masks,
                           const fc_spec *spec, bsa_attn_desc *desc)
{
    memset(p, 0, sizeof *p);
    p->spec = *spec;
    bsa_layout_info info;
    bsa_status st = bsa_layout_get_info(layout, &info);
    if (st != BSA_SUCCESS)
        return st;
    int64_t H = spec->heads, Hkv = spec->kv_heads, D = spec->head_dim, Dv = spec->v_dim;
    p->seq_q = info.seq_q;
    p->seq_k = info.seq_k;
    int64_t plane = p->seq_q * p->seq_k;
    if ((st = cm_check(masks, &info)) != BSA_SUCCESS)
        return st;
    uint8_t *em = cm_masks(masks);
    if (!em)
        return BSA_ERROR_CALLBACK;

    int64_t bt = spec->varlen ? 1 : spec->batch;
    p->n_seg = spec->varlen ? spec->varlen : spec->batch;
    if (spec->varlen) {
        p->cu_q = tu_xmalloc((size_t)(p->n_seg + 1) * sizeof(int32_t));
        p->cu_k = tu_xmalloc((size_t)(p->n_seg + 1) * sizeof(int32_t));
        draw_lengths(p->cu_q, p->n_seg, p->seq_q);
        if (p->seq_q == p->seq_k && tu_randint(0, 2))
            memcpy(p->cu_k, p->cu_q, (size_t)(p->n_seg + 1) * sizeof(int32_t));
        else
            draw_lengths(p->cu_k, p->n_seg, p->seq_k);
        p->time_q = p->cu_q[p->n_seg];
        p->time_k = p->cu_k[p->n_seg];
    } else {
        p->time_q = p->seq_q;
        p->time_k = p->seq_k;
    }
    if (spec->key_lengths) {
        p->klen = tu_xmalloc((size_t)p->n_seg * sizeof(int32_t));
        for (int64_t i = 0; i < p->n_seg; i++)
            p->klen[i] = draw_key_length(spec->varlen ? p->cu_k[i + 1] - p->cu_k[i] : p->seq_k);
    }

    bsa_dtype dt = spec->dtype;
    p->q = tu_tensor_new(dt, ac_desc(spec->form, bt, H, p->time_q, D));
    p->k = tu_tensor_new(dt, ac_desc(spec->form, bt, Hkv, p->time_k, D));
    p->v = tu_tensor_new(dt, ac_desc(spec->form, bt, Hkv, p->time_k, Dv));
    p->o = tu_tensor_new(dt, ac_desc(spec->form, bt, H, p->time_q, Dv));
    p->dout = tu_tensor_new(dt, p->o.desc);
    p->dq = tu_tensor_new(dt, p->q.desc);
    p->dk = tu_tensor_new(dt, p->k.desc);
    p->dv = tu_tensor_new(dt, p->v.desc);
    tu_tensor_random(&p->q, -1, 1);
    tu_tensor_random(&p->k, -1, 1);
    tu_tensor_random(&p->v, -1, 1);
    tu_tensor_random(&p->dout, -1, 1);
    p->n_lse = bt * H * p->time_q;
    p->lse = tu_xmalloc((size_t)p->n_lse * sizeof(float));
    p->scale = (float)(1.0 / sqrt((double)D));

    memset(desc, 0, sizeof *desc);
    desc->dtype = dt;
    desc->q = p->q.desc;
    desc->k = p->k.desc;
    desc->v = p->v.desc;
    desc->o = p->o.desc;
    desc->scale = 0.0f;
    desc->flags = spec->flags | (spec->varlen ? BSA_PLAN_VARLEN : 0) |
                  (spec->key_lengths ? BSA_PLAN_KEY_LENGTHS : 0);

    /* the oracle, one segment at a time (its own batch-1 problem) */
    p->ref_o = tu_xmalloc((size_t)p->o.count * sizeof(double));
    p->ref_lse = tu_xmalloc((size_t)p->n_lse * sizeof(double));
    p->ref_dq = tu_xmalloc((size_t)p->q.count * sizeof(double));
    p->ref_dk = tu_xmalloc((size_t)p->k.count * sizeof(double));
    p->ref_dv = tu_xmalloc((size_t)p->v.count * sizeof(double));
    for (int64_t s = 0; s < p->n_seg; s++) {
        int64_t b = spec->varlen ? 0 : s;
        int64_t q0 = spec->varlen ? p->cu_q[s] : 0, k0 = spec->varlen ? p->cu_k[s] : 0;
        int64_t nq = spec->varlen ? p->cu_q[s + 1] - q0 : p->seq_q;
        int64_t nk = spec->varlen ? p->cu_k[s + 1] - k0 : p->seq_k;
        int64_t klim = p->klen && p->klen[s] < nk ? p->klen[s] : nk;
        int64_t sq = nq > 0 ? nq : 1, sk = nk > 0 ? nk : 1; /* allocation sizes */
        double *qs = tu_xmalloc((size_t)(H * sq * D) * sizeof(double));
        double *dos = tu_xmalloc((size_t)(H * sq * Dv) * sizeof(double));
        double *os = tu_xmalloc((size_t)(H * sq * Dv) * sizeof(double));
        double *ls = tu_xmalloc((size_t)(H * sq) * sizeof(double));
        double *dqs = tu_xmalloc((size_t)(H * sq * D) * sizeof(double));
        double *ks = tu_xmalloc((size_t)(Hkv * sk * D) * sizeof(double));
        double *vs = tu_xmalloc((size_t)(Hkv * sk * Dv) * sizeof(double));
        double *dks = tu_xmalloc((size_t)(Hkv * sk * D) * sizeof(double));
        double *dvs = tu_xmalloc((size_t)(Hkv * sk * Dv) * sizeof(double));
        uint8_t *m = tu_xmalloc((size_t)(H * sq * sk));
        for (int64_t h = 0; h < H; h++) {
            const uint8_t *lm = em + (info.heads == 1 ? 0 : h) * plane;
            for (int64_t i = 0; i < nq; i++) {
                int64_t src = (b * H + h) * p->time_q + q0 + i;
                memcpy(qs + (h * nq + i) * D, p->q.val + src * D, (size_t)D * sizeof(double));
                memcpy(dos + (h * nq + i) * Dv, p->dout.val + src * Dv,
                       (size_t)Dv * sizeof(double));
                for (int64_t j = 0; j < nk; j++)
                    m[(h * nq + i) * nk + j] = lm[i * p->seq_k + j] && j < klim;
            }
        }
        for (int64_t h = 0; h < Hkv; h++)
            for (int64_t j = 0; j < nk; j++) {
                int64_t src = (b * Hkv + h) * p->time_k + k0 + j;
                memcpy(ks + (h * nk + j) * D, p->k.val + src * D, (size_t)D * sizeof(double));
                memcpy(vs + (h * nk + j) * Dv, p->v.val + src * Dv, (size_t)Dv * sizeof(double));
            }
        oracle_ext op = {1, H, Hkv, nq, nk, D, Dv, p->scale, m};
        oracle_ext_forward(&op, qs, ks, vs, os, ls);
        oracle_ext_backward(&op, qs, ks, vs, dos, dqs, dks, dvs);
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < nq; i++) {
                int64_t dst = (b * H + h) * p->time_q + q0 + i;
                memcpy(p->ref_o + dst * Dv, os + (h * nq + i) * Dv, (size_t)Dv * sizeof(double));
                memcpy(p->ref_dq + dst * D, dqs + (h * nq + i) * D, (size_t)D * sizeof(double));
                p->ref_lse[dst] = ls[h * nq + i];
            }
        for (int64_t h = 0; h < Hkv; h++)
            for (int64_t j = 0; j < nk; j++) {
                int64_t dst = (b * Hkv + h) * p->time_k + k0 + j;
                memcpy(p->ref_dk + dst * D, dks + (h * nk + j) * D, (size_t)D * sizeof(double));
                memcpy(p->ref_dv + dst * Dv, dvs + (h * nk + j) * Dv, (size_t)Dv * sizeof(double));
            }
        free(qs), free(dos), free(os), free(ls), free(dqs);
        free(ks), free(vs), free(dks), free(dvs), free(m);
    }
    free(em);
    return BSA_SUCCESS;
}

void fc_problem_free(fc_problem *p)
{
    tu_tensor *t[] = {&p->q, &p->k, &p->v, &p->o, &p->dout, &p->dq, &p->dk, &p->dv};
    for (int i = 0; i < 8; i++)
        tu_tensor_free(t[i]);
    free(p->lse), free(p->klen), free(p->cu_q), free(p->cu_k);
    free(p->ref_o), free(p->ref_lse), free(p->ref_dq), free(p->ref_dk), free(p->ref_dv);
    memset(p, 0, sizeof *p);
}

bsa_fwd_args fc_fwd_args(fc_problem *p)
{
    bsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.q = p->q.data;
    a.k = p->k.data;
    a.v = p->v.data;
    a.o = p->o.data;
    a.lse = p->lse;
    a.key_lengths = p->klen;
    a.cu_seqlens_q = p->cu_q;
    a.cu_seqlens_k = p->cu_k;
    a.num_seqs = p->spec.varlen;
    return a;
}

bsa_bwd_args fc_bwd_args(fc_problem *p)
{
    bsa_bwd_args a;
    memset(&a, 0, sizeof a);
    a.q = p->q.data;
    a.k = p->k.data;
    a.v = p->v.data;
    a.o = p->o.data;
    a.lse = p->lse;
    a.dout = p->dout.data;
    a.dq = p->dq.data;
    a.dk = p->dk.data;
    a.dv = p->dv.data;
    a.key_lengths = p->klen;
    a.cu_seqlens_q = p->cu_q;
    a.cu_seqlens_k = p->cu_k;
    a.num_seqs = p->spec.varlen;
    return a;
}

bsa_status fc_forward(bsa_plan_t plan, fc_problem *p)
{
    tu_tensor_poison(&p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    bsa_fwd_args a = fc_fwd_args(p);
    bsa_status st = bsa_forward(plan, &a, NULL, 0, NULL);
    tu_tensor_read(&p->o);
    return st;
}

bsa_status fc_backward(bsa_plan_t plan, fc_problem *p)
{
    tu_tensor_poison(&p->dq);
    tu_tensor_poison(&p->dk);
    tu_tensor_poison(&p->dv);
    bsa_bwd_args a = fc_bwd_args(p);
    bsa_status st = bsa_backward(plan, &a, NULL, 0, NULL);
    tu_tensor_read(&p->dq);
    tu_tensor_read(&p->dk);
    tu_tensor_read(&p->dv);
    return st;
}

void fc_compare(const fc_problem *p, int with_backward, fc_errors *e)
{
    memset(e, 0, sizeof *e);
    e->o = tu_rel_l2(p->o.val, p->ref_o, p->o.count);
    e->unwritten = tu_tensor_unwritten(&p->o);
    e->gaps_touched = tu_tensor_gaps_touched(&p->o);
    e->nonfinite = tu_count_nonfinite(p->o.val, p->o.count);
    /* lse: -inf exactly where the oracle's is, relative L2 over the rest */
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < p->n_lse; i++) {
        double got = p->lse[i], ref = p->ref_lse[i];
        if (isinf(ref) || isinf(got) || isnan(got)) {
            if (!(isinf(ref) && got == -INFINITY))
                e->lse_inf_mismatch++;
            continue;
        }
        num += (got - ref) * (got - ref);
        den += ref * ref;
    }
    e->lse = den > 0.0 ? sqrt(num / den) : sqrt(num);
    if (!with_backward)
        return;
    e->dq = tu_rel_l2(p->dq.val, p->ref_dq, p->dq.count);
    e->dk = tu_rel_l2(p->dk.val, p->ref_dk, p->dk.count);
    e->dv = tu_rel_l2(p->dv.val, p->ref_dv, p->dv.count);
    const tu_tensor *g[3] = {&p->dq, &p->dk, &p->dv};
    for (int i = 0; i < 3; i++) {
        e->unwritten += tu_tensor_unwritten(g[i]);
        e->gaps_touched += tu_tensor_gaps_touched(g[i]);
        e->nonfinite += tu_count_nonfinite(g[i]->val, g[i]->count);
    }
}

fc_spec fc_spec_of(int64_t batch, int64_t heads, int64_t kv_heads, int64_t d, int64_t dv,
                   int key_lengths, int varlen)
{
    fc_spec s;
    memset(&s, 0, sizeof s);
    s.batch = batch;
    s.heads = heads;
    s.kv_heads = kv_heads;
    s.head_dim = d;
    s.v_dim = dv;
    s.key_lengths = key_lengths;
    s.varlen = varlen;
    return s;
}

bsa_status fc_preset(bsa_context_t ctx, bsa_layout_t *out, cm_source *src, bsa_pattern pat, int seq,
                     int block, int heads, int c, int bidir)
{
    bsa_preset pr;
    memset(&pr, 0, sizeof pr);
    pr.pattern = pat;
    pr.seq = seq;
    pr.block = block;
    pr.heads = heads;
    pr.ctx = c;
    pr.num_verts = pat == BSA_PATTERN_FIXED ? 2 : 0;
    pr.vertsize = pat == BSA_PATTERN_FIXED ? 1 : 0;
    pr.bidirectional = bidir;
    pr.dilation = pat == BSA_PATTERN_DILATED ? 3 : 0;
    pr.global_tokens = pat == BSA_PATTERN_LONGFORMER || pat == BSA_PATTERN_BIGBIRD ? 5 : 0;
    pr.random_blocks = pat == BSA_PATTERN_BIGBIRD ? 2 : 0;
    pr.seed = 1234;
    int32_t docs[3] = {seq / 4 + 3, seq / 2, seq - (seq / 4 + 3) - seq / 2};
    if (pat == BSA_PATTERN_DOCUMENT) {
        pr.doc_lengths = docs;
        pr.num_docs = 3;
    }
    cm_source s = cm_of_preset(&pr);
    if (src)
        *src = s;
    *out = NULL;
    bsa_status st = cm_create(ctx, &s, out);
    if (st != BSA_SUCCESS)
        fprintf(stderr, "preset: %s\n", bsa_last_error());
    return st;
}

int fc_within(const char *label, const char *impl, const fc_spec *spec, const fc_errors *e,
              double tol_out, double tol_grad, double tol_lse)
{
    int ok = e->o <= tol_out && e->lse <= tol_lse && e->dq <= tol_grad && e->dk <= tol_grad &&
             e->dv <= tol_grad && !e->unwritten && !e->gaps_touched && !e->lse_inf_mismatch &&
             !e->nonfinite;
    if (!ok || getenv("BSA_TEST_VERBOSE"))
        fprintf(stderr,
                "%s [%s %s %s H=%lld Hkv=%lld D=%lld Dv=%lld kl=%d varlen=%d] o %.2e lse %.2e dq "
                "%.2e dk %.2e dv %.2e unwritten %lld gaps %lld lse-inf %lld nonfinite %lld%s\n",
                label, impl, tu_dtype_name(spec->dtype), ac_form_name(spec->form),
                (long long)spec->heads, (long long)spec->kv_heads, (long long)spec->head_dim,
                (long long)spec->v_dim, spec->key_lengths, spec->varlen, e->o, e->lse, e->dq, e->dk,
                e->dv, (long long)e->unwritten, (long long)e->gaps_touched,
                (long long)e->lse_inf_mismatch, (long long)e->nonfinite, ok ? "" : "  FAILED");
    return ok;
}

bsa_status fc_run_cases(bsa_context_t ctx, const fc_case *cases, int n, int reps, fc_runner run)
{
    for (int i = 0; i < n; i++) {
        const fc_case *c = &cases[i];
        bsa_layout_t l = NULL;
        cm_source src;
        bsa_status st = fc_preset(ctx, &l, &src, c->pattern, c->seq, c->block, c->layout_heads,
                                  c->ctx, c->bidir);
        if (st != BSA_SUCCESS)
            return st;
        fc_spec spec = fc_spec_of(c->batch, c->heads, c->kv_heads, c->head_dim, c->v_dim,
                                  c->key_lengths, c->varlen);
        for (int r = 0; r < reps; r++)
            run(c->label, ctx, l, &src, spec);
        bsa_layout_destroy(l);
    }
    return BSA_SUCCESS;
}
