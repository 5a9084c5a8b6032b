/*
 * The seed's unfused ops on the CPU: sparse_nt, (masked) softmax and its
 * gradient, sparse_nn and sparse_tn over the fp32 block-sparse weight
 * tensor [batch, heads, blocks_h, B, B] (see bsa.h).  Parallel over
 * (batch, head, block row) - or block column for tn, which walks the
 * transposed list so that each output row has one writer.
 */
#include "cpu_internal.h"

#include <math.h>
#include <stdlib.h>

/* Weight tile of global block i for (b, h). */
static inline int64_t wtile(const struct bsa_plan *plan, int64_t b, int64_t h, int64_t i)
{
    const struct bsa_layout *l = plan->layout;
    int lh = bsa_layout_head(l, h);
    return bsa_weight_offset(plan, b, h) + (i - l->head_ptr[lh]) * l->block * l->block;
}

static inline const char *slice(const void *p, const int64_t *st, int64_t b, int64_t h, size_t es)
{
    return (const char *)p + (b * st[0] + h * st[1]) * es;
}

/* Two block x dim fp32 tiles per thread, allocated up front so that a
 * failure is reported before any output is touched. */
static float *tiles_alloc(const struct bsa_plan *plan, int nthreads)
{
    size_t per = (size_t)2 * plan->layout->block * plan->shape.head_dim;
    return (float *)malloc((size_t)nthreads * per * sizeof(float));
}

static int threads_of(const struct bsa_plan *plan)
{
    return ((const cpu_plan *)plan->backend_data)->nthreads;
}

#define OOM_MSG "cpu backend: cannot allocate %zu bytes of tiles for %s"

/* The seed's ops know one head dim and one head per kv head. */
static bsa_status check_plain(const struct bsa_plan *plan, const char *fn)
{
    const bsa_shape *s = &plan->shape;
    if (s->kv_heads != s->heads || s->v_dim != s->head_dim || s->varlen)
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "%s: the unfused ops do not support grouped-query, value-dim or "
                        "BSA_PLAN_VARLEN plans (cpu backend)",
                        fn);
    return BSA_SUCCESS;
}

bsa_status bsa_cpu_sparse_nt(bsa_plan_t plan, const void *a, const void *bm, float *w, void *stream)
{
    if (check_plain(plan, "bsa_sparse_nt") != BSA_SUCCESS)
        return BSA_ERROR_UNSUPPORTED;
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    int nt = threads_of(plan);
    int64_t bs = l->block, d = s->head_dim, bh_n = s->batch * s->heads;
    size_t es = bsa_cpu_esize(s->dtype);
    float *tiles = tiles_alloc(plan, nt);
    if (!tiles)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, OOM_MSG, (size_t)nt * 2 * bs * d * sizeof(float),
                        "sparse_nt");
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
        bsa_cpu_enter_region();
        float *ta = tiles + (int64_t)bsa_cpu_thread_id() * 2 * bs * d, *tb = ta + bs * d;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
        for (int64_t it = 0; it < bh_n * l->q_blocks; it++) {
            int64_t bh = it / l->q_blocks, qb = it % l->q_blocks;
            int64_t b = bh / s->heads, h = bh % s->heads;
            int lh = bsa_layout_head(l, h);
            bsa_cpu_load_rows(ta, d, slice(a, s->q_stride, b, h, es), s->dtype, s->q_stride[2],
                              qb * bs, bs, d, l->stride_perm, s->seq_q, 1.0f);
            const int32_t *rp = l->row_ptr + lh * (l->q_blocks + 1);
            for (int64_t i = rp[qb]; i < rp[qb + 1]; i++) {
                bsa_cpu_load_rows(tb, d, slice(bm, s->k_stride, b, h, es), s->dtype, s->k_stride[2],
                                  (int64_t)l->col_idx[i] * bs, bs, d, l->stride_perm, s->seq_k,
                                  1.0f);
                bsa_cpu_gemm(0, 1, bs, bs, d, 1.0f, ta, d, tb, d, 0.0f, w + wtile(plan, b, h, i),
                             bs);
            }
        }
    }
    free(tiles);
    return BSA_SUCCESS;
}

bsa_status bsa_cpu_sparse_softmax(bsa_plan_t plan, const float *w, float *p, float scale,
                                  int masked, void *stream)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    int64_t bs = l->block, bh_n = s->batch * s->heads;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads_of(plan))
#endif
    for (int64_t it = 0; it < bh_n * l->q_blocks; it++) {
        int64_t bh = it / l->q_blocks, qb = it % l->q_blocks;
        int64_t b = bh / s->heads, h = bh % s->heads;
        int lh = bsa_layout_head(l, h);
        const int32_t *rp = l->row_ptr + lh * (l->q_blocks + 1);
        for (int r = 0; r < bs; r++) {
            float mx = -INFINITY;
            for (int64_t i = rp[qb]; i < rp[qb + 1]; i++) {
                const float *x = w + wtile(plan, b, h, i) + r * bs;
                for (int c = 0; c < bs; c++)
                    if (!masked || bsa_layout_keep(l, i, r, c))
                        /* a NaN logit makes the row NaN: the max takes it */
                        mx = scale * x[c] > mx || x[c] != x[c] ? scale * x[c] : mx;
            }
            float sum = 0.0f;
            for (int64_t i = rp[qb]; i < rp[qb + 1]; i++) {
                const float *x = w + wtile(plan, b, h, i) + r * bs;
                float *y = p + wtile(plan, b, h, i) + r * bs;
                for (int c = 0; c < bs; c++) {
                    int keep = mx != -INFINITY && (!masked || bsa_layout_keep(l, i, r, c));
                    y[c] = keep ? expf(scale * x[c] - mx) : 0.0f;
                    sum += y[c];
                }
            }
            float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            for (int64_t i = rp[qb]; i < rp[qb + 1]; i++) {
                float *y = p + wtile(plan, b, h, i) + r * bs;
                for (int c = 0; c < bs; c++)
                    y[c] *= inv;
            }
        }
    }
    return BSA_SUCCESS;
}

bsa_status bsa_cpu_sparse_softmax_bwd(bsa_plan_t plan, const float *p, const float *dp, float *dw,
                                      float scale, void *stream)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    int64_t bs = l->block, bh_n = s->batch * s->heads;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads_of(plan))
#endif
    for (int64_t it = 0; it < bh_n * l->q_blocks; it++) {
        int64_t bh = it / l->q_blocks, qb = it % l->q_blocks;
        int64_t b = bh / s->heads, h = bh % s->heads;
        int lh = bsa_layout_head(l, h);
        const int32_t *rp = l->row_ptr + lh * (l->q_blocks + 1);
        for (int r = 0; r < bs; r++) {
            float dot = 0.0f;
            for (int64_t i = rp[qb]; i < rp[qb + 1]; i++) {
                int64_t o = wtile(plan, b, h, i) + r * bs;
                for (int c = 0; c < bs; c++)
                    dot += p[o + c] * dp[o + c];
            }
            for (int64_t i = rp[qb]; i < rp[qb + 1]; i++) {
                int64_t o = wtile(plan, b, h, i) + r * bs;
                for (int c = 0; c < bs; c++)
                    dw[o + c] = (dp[o + c] - dot) * p[o + c] * scale;
            }
        }
    }
    return BSA_SUCCESS;
}

/* The block-sparse product with a dense operand, by output block:
 * nn (transposed = 0): y (like q) row block qb = sum over row qb's blocks
 *   of W . x (x like k);
 * tn (transposed = 1): y (like k) row block kb = sum over column kb's
 *   blocks of W^T . x (x like q).
 * The two walk mirrored tables (rows / transposed columns); each output
 * block is summed by one thread in a fixed order. */
static bsa_status sparse_product(bsa_plan_t plan, const float *w, const void *x, void *y,
                                 int transposed, const char *fn)
{
    if (check_plain(plan, fn) != BSA_SUCCESS)
        return BSA_ERROR_UNSUPPORTED;
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    int nt = threads_of(plan);
    int64_t bs = l->block, d = s->head_dim, bh_n = s->batch * s->heads;
    size_t es = bsa_cpu_esize(s->dtype);
    /* output side (y) and input side (x) of the product */
    int64_t n_out = transposed ? l->k_blocks : l->q_blocks;
    const int64_t *y_stride = transposed ? s->k_stride : s->q_stride;
    const int64_t *x_stride = transposed ? s->q_stride : s->k_stride;
    int64_t y_seq = transposed ? s->seq_k : s->seq_q, x_seq = transposed ? s->seq_q : s->seq_k;
    float *tiles = tiles_alloc(plan, nt);
    if (!tiles)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, OOM_MSG, (size_t)nt * 2 * bs * d * sizeof(float),
                        fn);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
        bsa_cpu_enter_region();
        float *acc = tiles + (int64_t)bsa_cpu_thread_id() * 2 * bs * d, *tx = acc + bs * d;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4)
#endif
        for (int64_t it = 0; it < bh_n * n_out; it++) {
            int64_t bh = it / n_out, ob = it % n_out;
            int64_t b = bh / s->heads, h = bh % s->heads;
            int lh = bsa_layout_head(l, h);
            const int32_t *ptr = transposed ? l->col_ptr + lh * (l->k_blocks + 1)
                                            : l->row_ptr + lh * (l->q_blocks + 1);
            for (int64_t e = 0; e < bs * d; e++)
                acc[e] = 0.0f;
            for (int64_t j = ptr[ob]; j < ptr[ob + 1]; j++) {
                int64_t blk = transposed ? l->t_block[j] : j;
                int64_t other = transposed ? l->t_row[j] : l->col_idx[j];
                bsa_cpu_load_rows(tx, d, slice(x, x_stride, b, h, es), s->dtype, x_stride[2],
                                  other * bs, bs, d, l->stride_perm, x_seq, 1.0f);
                bsa_cpu_gemm(transposed, 0, bs, d, bs, 1.0f, w + wtile(plan, b, h, blk), bs, tx, d,
                             1.0f, acc, d);
            }
            bsa_cpu_store_rows((char *)slice(y, y_stride, b, h, es), s->dtype, y_stride[2], ob * bs,
                               bs, d, l->stride_perm, y_seq, acc, d);
        }
    }
    free(tiles);
    return BSA_SUCCESS;
}

bsa_status bsa_cpu_sparse_nn(bsa_plan_t plan, const float *w, const void *x, void *y, void *stream)
{
    return sparse_product(plan, w, x, y, 0, "bsa_sparse_nn");
}

bsa_status bsa_cpu_sparse_tn(bsa_plan_t plan, const float *w, const void *x, void *y, void *stream)
{
    return sparse_product(plan, w, x, y, 1, "bsa_sparse_tn");
}
