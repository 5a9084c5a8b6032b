/*
 * Reference implementation of the CPU backend ("cpu-reference"): one query
 * row at a time, element by element, libm exp, no products, no chunks.  It
 * shares nothing with the fused path but the row load/store helpers, so
 * the two check each other.  Parallel over (batch, head) only.
 */
#include "cpu_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per-thread scratch, in floats: the logits of one row, one row of q / dO
 * / o / dq (each as wide as the wider head dim), and fp32 dK/dV
 * accumulators of a whole (segment, kv head) slice. */
static int64_t ref_thread_floats(const struct bsa_plan *plan)
{
    const struct bsa_layout *l = plan->layout;
    int64_t d = bsa_cpu_dmax(&plan->shape);
    int64_t row = (int64_t)l->max_row_blocks * l->block;
    return row + 4 * d + 2 * (int64_t)l->seq_k * d + 64;
}

size_t bsa_cpu_ref_workspace(const struct bsa_plan *plan, int nthreads)
{
    return (size_t)nthreads * (size_t)ref_thread_floats(plan) * sizeof(float);
}

/* Element (b, h, t0, 0) of a tensor: the first row of a segment's slice. */
static inline const char *slice_ptr(const void *p, const int64_t *st, int64_t b, int64_t h,
                                    int64_t t0, size_t es)
{
    return p ? (const char *)p + (b * st[0] + h * st[1] + t0 * st[2]) * es : NULL;
}

static inline void load_row(float *dst, const char *base, const bsa_shape *s, const int64_t *st,
                            int64_t r, int perm, int64_t seq, int64_t d)
{
    bsa_cpu_load_rows(dst, d, base, s->dtype, st[2], r, 1, d, perm, seq, 1.0f);
}

/* Logits of layout row r (scaled, natural log, -inf where masked, by the
 * layout or the segment's key limit) over the row's kept blocks; returns
 * the number written. */
static int64_t row_logits(const struct bsa_plan *plan, int lh, const cpu_seg *sg, const char *kbase,
                          int64_t r, const float *qrow, float *logit, float *krow)
{
    const struct bsa_layout *l = plan->layout;
    const bsa_shape *s = &plan->shape;
    int bs = l->block;
    int64_t qb = r / bs, d = s->head_dim, n = 0;
    int32_t i0 = l->row_ptr[lh * (l->q_blocks + 1) + qb];
    int32_t i1 = l->row_ptr[lh * (l->q_blocks + 1) + qb + 1];
    for (int32_t i = i0; i < i1; i++) {
        int64_t k0 = (int64_t)l->col_idx[i] * bs;
        for (int c = 0; c < bs; c++, n++) {
            if (!bsa_layout_keep(l, i, (int)(r % bs), c) ||
                bsa_perm_row(k0 + c, l->stride_perm, l->seq_k) >= sg->klim) {
                logit[n] = -INFINITY;
                continue;
            }
            load_row(krow, kbase, s, s->k_stride, k0 + c, l->stride_perm, l->seq_k, d);
            float acc = 0.0f;
            for (int64_t j = 0; j < d; j++)
                acc += qrow[j] * krow[j];
            logit[n] = acc * s->scale;
        }
    }
    return n;
}

bsa_status bsa_cpu_ref_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *ws)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t d = s->head_dim, dv = s->v_dim, group = s->heads / s->kv_heads;
    size_t es = bsa_cpu_esize(s->dtype);
    int perm = l->stride_perm;
    cpu_seg *seg;
    int64_t n_seg;
    bsa_status st = bsa_cpu_segments(plan, args->key_lengths, args->cu_seqlens_q,
                                     args->cu_seqlens_k, args->num_seqs, &seg, &n_seg);
    if (st != BSA_SUCCESS)
        return st;
    int64_t sh_n = n_seg * s->heads, dm = bsa_cpu_dmax(s);

#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(cp->nthreads)
#endif
    for (int64_t sh = 0; sh < sh_n; sh++) {
        const cpu_seg *sg = &seg[sh / s->heads];
        int64_t b = sg->b, h = sh % s->heads, kvh = h / group;
        int lh = bsa_layout_head(l, h);
        float *logit = (float *)ws + bsa_cpu_thread_id() * ref_thread_floats(plan);
        float *qrow = logit + (int64_t)l->max_row_blocks * l->block;
        float *krow = qrow + dm, *orow = krow + dm;
        const char *qb = slice_ptr(args->q, s->q_stride, b, h, sg->q0, es);
        const char *kb = slice_ptr(args->k, s->k_stride, b, kvh, sg->k0, es);
        const char *vb = slice_ptr(args->v, s->v_stride, b, kvh, sg->k0, es);
        char *ob = (char *)slice_ptr(args->o, s->o_stride, b, h, sg->q0, es);
        /* layout rows; with varlen (no permutation) row r is time r */
        for (int64_t r = 0; r < sg->nq; r++) {
            load_row(qrow, qb, s, s->q_stride, r, perm, l->seq_q, d);
            int64_t n = row_logits(plan, lh, sg, kb, r, qrow, logit, krow);
            /* a NaN logit (NaN or Inf in the query or a key) makes the
             * row NaN: the max takes it */
            float mx = -INFINITY;
            for (int64_t x = 0; x < n; x++)
                mx = logit[x] > mx || logit[x] != logit[x] ? logit[x] : mx;
            memset(orow, 0, (size_t)dv * sizeof(float));
            float sum = 0.0f;
            if (mx != -INFINITY) {
                int64_t qblk = r / l->block;
                int32_t i0 = l->row_ptr[lh * (l->q_blocks + 1) + qblk];
                for (int64_t x = 0; x < n; x++) {
                    if (logit[x] == -INFINITY)
                        continue;
                    float p = expf(logit[x] - mx);
                    sum += p;
                    int64_t key = (int64_t)l->col_idx[i0 + x / l->block] * l->block + x % l->block;
                    load_row(krow, vb, s, s->v_stride, key, perm, l->seq_k, dv);
                    for (int64_t j = 0; j < dv; j++)
                        orow[j] += p * krow[j];
                }
                for (int64_t j = 0; j < dv; j++)
                    orow[j] /= sum;
            }
            bsa_cpu_store_rows(ob, s->dtype, s->o_stride[2], r, 1, dv, perm, l->seq_q, orow, dv);
            if (args->lse)
                args->lse[(b * s->heads + h) * s->seq_q + sg->q0 +
                          bsa_perm_row(r, perm, l->seq_q)] =
                    mx == -INFINITY ? -INFINITY : mx + logf(sum);
        }
    }
    free(seg);
    return BSA_SUCCESS;
}

bsa_status bsa_cpu_ref_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *ws)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t d = s->head_dim, dv = s->v_dim, group = s->heads / s->kv_heads;
    size_t es = bsa_cpu_esize(s->dtype);
    int perm = l->stride_perm;
    cpu_seg *seg;
    int64_t n_seg;
    bsa_status st = bsa_cpu_segments(plan, args->key_lengths, args->cu_seqlens_q,
                                     args->cu_seqlens_k, args->num_seqs, &seg, &n_seg);
    if (st != BSA_SUCCESS)
        return st;
    int64_t skv_n = n_seg * s->kv_heads, dm = bsa_cpu_dmax(s);

    /* one item per (segment, kv head): it owns that slice's dK/dV and the
     * dQ of its query heads, summed in ascending head order */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(cp->nthreads)
#endif
    for (int64_t sk = 0; sk < skv_n; sk++) {
        const cpu_seg *sg = &seg[sk / s->kv_heads];
        int64_t b = sg->b, kvh = sk % s->kv_heads;
        float *logit = (float *)ws + bsa_cpu_thread_id() * ref_thread_floats(plan);
        float *qrow = logit + (int64_t)l->max_row_blocks * l->block;
        float *krow = qrow + dm, *dorow = krow + dm, *dqrow = dorow + dm;
        float *dkacc = dqrow + dm, *dvacc = dkacc + (int64_t)l->seq_k * dm;
        const char *kb = slice_ptr(args->k, s->k_stride, b, kvh, sg->k0, es);
        const char *vb = slice_ptr(args->v, s->v_stride, b, kvh, sg->k0, es);
        memset(dkacc, 0, (size_t)(2 * (int64_t)l->seq_k * dm) * sizeof(float));
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
            int lh = bsa_layout_head(l, h);
            const char *qb = slice_ptr(args->q, s->q_stride, b, h, sg->q0, es);
            const char *ob = slice_ptr(args->o, s->o_stride, b, h, sg->q0, es);
            const char *gb = slice_ptr(args->dout, s->o_stride, b, h, sg->q0, es);
            const float *lse_h = args->lse + (b * s->heads + h) * s->seq_q + sg->q0;
            for (int64_t r = 0; r < sg->nq; r++) {
                float lse = lse_h[bsa_perm_row(r, perm, l->seq_q)];
                memset(dqrow, 0, (size_t)d * sizeof(float));
                if (lse != -INFINITY) {
                    load_row(qrow, qb, s, s->q_stride, r, perm, l->seq_q, d);
                    int64_t n = row_logits(plan, lh, sg, kb, r, qrow, logit, krow);
                    /* delta = rowsum(dO * O); krow holds O for the moment. */
                    load_row(dorow, gb, s, s->o_stride, r, perm, l->seq_q, dv);
                    load_row(krow, ob, s, s->o_stride, r, perm, l->seq_q, dv);
                    float delta = 0.0f;
                    for (int64_t j = 0; j < dv; j++)
                        delta += dorow[j] * krow[j];
                    int32_t i0 = l->row_ptr[lh * (l->q_blocks + 1) + r / l->block];
                    for (int64_t x = 0; x < n; x++) {
                        if (logit[x] == -INFINITY)
                            continue;
                        float e = logit[x] - lse; /* capped at 0: p <= 1, NaN kept */
                        float p = expf(e > 0.0f ? 0.0f : e);
                        int64_t key =
                            (int64_t)l->col_idx[i0 + x / l->block] * l->block + x % l->block;
                        load_row(krow, vb, s, s->v_stride, key, perm, l->seq_k, dv);
                        float dp = 0.0f;
                        for (int64_t j = 0; j < dv; j++)
                            dp += dorow[j] * krow[j];
                        float ds = p * (dp - delta) * s->scale;
                        float *dva = dvacc + key * dv, *dka = dkacc + key * d;
                        for (int64_t j = 0; j < dv; j++)
                            dva[j] += p * dorow[j];
                        load_row(krow, kb, s, s->k_stride, key, perm, l->seq_k, d);
                        for (int64_t j = 0; j < d; j++) {
                            dqrow[j] += ds * krow[j];
                            dka[j] += ds * qrow[j];
                        }
                    }
                }
                bsa_cpu_store_rows((char *)slice_ptr(args->dq, s->q_stride, b, h, sg->q0, es),
                                   s->dtype, s->q_stride[2], r, 1, d, perm, l->seq_q, dqrow, d);
            }
        }
        bsa_cpu_store_rows((char *)slice_ptr(args->dk, s->k_stride, b, kvh, sg->k0, es), s->dtype,
                           s->k_stride[2], 0, sg->nk, d, perm, l->seq_k, dkacc, d);
        bsa_cpu_store_rows((char *)slice_ptr(args->dv, s->v_stride, b, kvh, sg->k0, es), s->dtype,
                           s->v_stride[2], 0, sg->nk, dv, perm, l->seq_k, dvacc, dv);
    }
    free(seg);
    return BSA_SUCCESS;
}
