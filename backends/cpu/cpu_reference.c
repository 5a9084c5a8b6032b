/*
 * Reference implementation of the CPU backend ("cpu-reference"): one query
 * row at a time, element by element, libm exp, no products, no chunks.  It
 * shares nothing with the fused path but the row load/store helpers, so
 * the two check each other.  Parallel over (batch, head) only.
 */
#include "cpu_internal.h"

#include <math.h>
#include <string.h>

/* Per-thread scratch, in floats: the logits of one row, one row of q / dO
 * / o / dq, and fp32 dK/dV accumulators of a whole (batch, head) slice. */
static int64_t ref_thread_floats(const struct bsa_plan *plan)
{
    const struct bsa_layout *l = plan->layout;
    int64_t d = plan->shape.head_dim;
    int64_t row = (int64_t)l->max_row_blocks * l->block;
    return row + 4 * d + 2 * plan->shape.seq_k * d + 64;
}

size_t bsa_cpu_ref_workspace(const struct bsa_plan *plan, int nthreads)
{
    return (size_t)nthreads * (size_t)ref_thread_floats(plan) * sizeof(float);
}

typedef struct ref_slice {
    const char *q, *k, *v, *o, *dout;
    char *dq, *dk, *dv;
} ref_slice;

static inline const char *slice_ptr(const void *p, const int64_t *st, int64_t b, int64_t h,
                                    size_t es)
{
    return p ? (const char *)p + (b * st[0] + h * st[1]) * es : NULL;
}

static inline void load_row(float *dst, const char *base, const bsa_shape *s, const int64_t *st,
                            int64_t r, int perm, int64_t seq)
{
    bsa_cpu_load_rows(dst, s->head_dim, base, s->dtype, st[2], r, 1, s->head_dim, perm, seq, 1.0f);
}

/* Logits of layout row r (scaled, natural log, -inf where masked) over the
 * row's kept blocks; returns the number written. */
static int64_t row_logits(const struct bsa_plan *plan, int lh, const char *kbase, int64_t r,
                          const float *qrow, float *logit, float *krow)
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
            if (!bsa_layout_keep(l, i, (int)(r % bs), c)) {
                logit[n] = -INFINITY;
                continue;
            }
            load_row(krow, kbase, s, s->k_stride, k0 + c, l->stride_perm, s->seq_k);
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
    int64_t bh_n = s->batch * s->heads, d = s->head_dim;
    size_t es = bsa_cpu_esize(s->dtype);
    int perm = l->stride_perm;

#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(cp->nthreads)
#endif
    for (int64_t bh = 0; bh < bh_n; bh++) {
        int64_t b = bh / s->heads, h = bh % s->heads;
        int lh = bsa_layout_head(l, h);
        float *logit = (float *)ws + bsa_cpu_thread_id() * ref_thread_floats(plan);
        float *qrow = logit + (int64_t)l->max_row_blocks * l->block;
        float *krow = qrow + d, *orow = krow + d;
        const char *qb = slice_ptr(args->q, s->q_stride, b, h, es);
        const char *kb = slice_ptr(args->k, s->k_stride, b, h, es);
        const char *vb = slice_ptr(args->v, s->v_stride, b, h, es);
        char *ob = (char *)slice_ptr(args->o, s->o_stride, b, h, es);
        for (int64_t r = 0; r < s->seq_q; r++) {
            load_row(qrow, qb, s, s->q_stride, r, perm, s->seq_q);
            int64_t n = row_logits(plan, lh, kb, r, qrow, logit, krow);
            float mx = -INFINITY;
            for (int64_t x = 0; x < n; x++)
                mx = logit[x] > mx ? logit[x] : mx;
            memset(orow, 0, (size_t)d * sizeof(float));
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
                    load_row(krow, vb, s, s->v_stride, key, perm, s->seq_k);
                    for (int64_t j = 0; j < d; j++)
                        orow[j] += p * krow[j];
                }
                for (int64_t j = 0; j < d; j++)
                    orow[j] /= sum;
            }
            bsa_cpu_store_rows(ob, s->dtype, s->o_stride[2], r, 1, d, perm, s->seq_q, orow, d);
            if (args->lse)
                args->lse[bh * s->seq_q + bsa_perm_row(r, perm, s->seq_q)] =
                    mx == -INFINITY ? -INFINITY : mx + logf(sum);
        }
    }
    return BSA_SUCCESS;
}

bsa_status bsa_cpu_ref_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *ws)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t bh_n = s->batch * s->heads, d = s->head_dim;
    size_t es = bsa_cpu_esize(s->dtype);
    int perm = l->stride_perm;

#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(cp->nthreads)
#endif
    for (int64_t bh = 0; bh < bh_n; bh++) {
        int64_t b = bh / s->heads, h = bh % s->heads;
        int lh = bsa_layout_head(l, h);
        float *logit = (float *)ws + bsa_cpu_thread_id() * ref_thread_floats(plan);
        float *qrow = logit + (int64_t)l->max_row_blocks * l->block;
        float *krow = qrow + d, *dorow = krow + d, *dqrow = dorow + d;
        float *dkacc = dqrow + d, *dvacc = dkacc + s->seq_k * d;
        const char *qb = slice_ptr(args->q, s->q_stride, b, h, es);
        const char *kb = slice_ptr(args->k, s->k_stride, b, h, es);
        const char *vb = slice_ptr(args->v, s->v_stride, b, h, es);
        const char *ob = slice_ptr(args->o, s->o_stride, b, h, es);
        const char *gb = slice_ptr(args->dout, s->o_stride, b, h, es);
        memset(dkacc, 0, (size_t)(2 * s->seq_k * d) * sizeof(float));
        for (int64_t r = 0; r < s->seq_q; r++) {
            float lse = args->lse[bh * s->seq_q + bsa_perm_row(r, perm, s->seq_q)];
            memset(dqrow, 0, (size_t)d * sizeof(float));
            if (lse != -INFINITY) {
                load_row(qrow, qb, s, s->q_stride, r, perm, s->seq_q);
                int64_t n = row_logits(plan, lh, kb, r, qrow, logit, krow);
                /* delta = rowsum(dO * O); krow holds O for the moment. */
                load_row(dorow, gb, s, s->o_stride, r, perm, s->seq_q);
                load_row(krow, ob, s, s->o_stride, r, perm, s->seq_q);
                float delta = 0.0f;
                for (int64_t j = 0; j < d; j++)
                    delta += dorow[j] * krow[j];
                int32_t i0 = l->row_ptr[lh * (l->q_blocks + 1) + r / l->block];
                for (int64_t x = 0; x < n; x++) {
                    if (logit[x] == -INFINITY)
                        continue;
                    float p = expf(logit[x] - lse);
                    int64_t key = (int64_t)l->col_idx[i0 + x / l->block] * l->block + x % l->block;
                    load_row(krow, vb, s, s->v_stride, key, perm, s->seq_k);
                    float dp = 0.0f;
                    for (int64_t j = 0; j < d; j++)
                        dp += dorow[j] * krow[j];
                    float ds = p * (dp - delta) * s->scale;
                    float *dv = dvacc + key * d, *dk = dkacc + key * d;
                    for (int64_t j = 0; j < d; j++)
                        dv[j] += p * dorow[j];
                    load_row(krow, kb, s, s->k_stride, key, perm, s->seq_k);
                    for (int64_t j = 0; j < d; j++) {
                        dqrow[j] += ds * krow[j];
                        dk[j] += ds * qrow[j];
                    }
                }
            }
            bsa_cpu_store_rows((char *)args->dq + (b * s->q_stride[0] + h * s->q_stride[1]) * es,
                               s->dtype, s->q_stride[2], r, 1, d, perm, s->seq_q, dqrow, d);
        }
        bsa_cpu_store_rows((char *)args->dk + (b * s->k_stride[0] + h * s->k_stride[1]) * es,
                           s->dtype, s->k_stride[2], 0, s->seq_k, d, perm, s->seq_k, dkacc, d);
        bsa_cpu_store_rows((char *)args->dv + (b * s->v_stride[0] + h * s->v_stride[1]) * es,
                           s->dtype, s->v_stride[2], 0, s->seq_k, d, perm, s->seq_k, dvacc, d);
    }
    return BSA_SUCCESS;
}
