/*
 * Fused forward pass (flash style) of the CPU backend.
 *
 * One work item = (batch, head, query-block row).  The row's kept key
 * blocks are taken up to chunk_blocks at a time: adjacent blocks (the
 * `all` and `local` runs) are read in place from the converted K/V, other
 * blocks (the `fixed` pattern's summary columns) are gathered into a
 * contiguous tile, so every product is chunk_blocks * block wide whatever
 * the pattern.  Online softmax in base 2 across chunks; nothing T x T.
 */
#include "cpu_fused.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t bsa_cpu_fused_workspace(const struct bsa_plan *plan, int nthreads)
{
    cpu_arena a = {NULL, 0};
    (void)fused_carve_global(&a, plan);
    cpu_arena t = {NULL, 0};
    (void)fused_carve_thread(&t, plan);
    return a.used + (size_t)nthreads * t.used;
}

int bsa_cpu_group_union(const struct bsa_layout *l, int lh, int qb0, int ng, int g, int32_t *ucol,
                        int32_t *umap)
{
    const int32_t *rp = l->row_ptr + (int64_t)lh * (l->q_blocks + 1) + qb0;
    int32_t pos[8], end[8];
    for (int j = 0; j < ng; j++) {
        pos[j] = rp[j];
        end[j] = rp[j + 1];
    }
    int n = 0;
    for (;;) {
        int32_t best = INT32_MAX;
        for (int j = 0; j < ng; j++)
            if (pos[j] < end[j] && l->col_idx[pos[j]] < best)
                best = l->col_idx[pos[j]];
        if (best == INT32_MAX)
            return n;
        if (ucol)
            ucol[n] = best;
        for (int j = 0; j < g; j++) {
            int hit = j < ng && pos[j] < end[j] && l->col_idx[pos[j]] == best;
            if (umap)
                umap[(int64_t)n * g + j] = hit ? pos[j] : -1;
            if (hit)
                pos[j]++;
        }
        n++;
    }
}

/* O = acc / l for rows [r0, r0 + n) (layout order) of the slice, and lse;
 * a row that saw no key keeps acc = 0 and gets lse -inf; a NaN row (l NaN)
 * stays NaN in both. */
static void store_out(const struct bsa_plan *plan, const bsa_fwd_args *args, const cpu_seg *sg,
                      int64_t h, const fused_thread *t, int64_t r0, int64_t n)
{
    const bsa_shape *s = &plan->shape;
    int64_t dv = s->v_dim;
    int perm = plan->layout->stride_perm;
    int64_t seq = plan->layout->seq_q;
    for (int64_t r = 0; r < n; r++)
        t->alpha[r] = t->l[r] == 0.0f ? 0.0f : 1.0f / t->l[r];
    bsa_cpu_scale_rows(t->acc, n, dv, dv, t->alpha);
    char *obase =
        (char *)args->o + (sg->b * s->o_stride[0] + h * s->o_stride[1] + sg->q0 * s->o_stride[2]) *
                              bsa_cpu_esize(s->dtype);
    bsa_cpu_store_rows(obase, s->dtype, s->o_stride[2], r0, n, dv, perm, seq, t->acc, dv);
    if (args->lse) {
        float *lse = args->lse + (sg->b * s->heads + h) * s->seq_q + sg->q0;
        for (int64_t r = 0; r < n; r++) {
            int64_t tq = bsa_perm_row(r0 + r, perm, seq);
            lse[tq] = t->l[r] == 0.0f ? -INFINITY : t->m[r] * BSA_LN2 + logf(t->l[r]);
        }
    }
}

/* Forward of a group of consecutive query blocks as one taller tile (small
 * layout blocks): the key list is the union of the rows' lists, a block
 * that a row does not keep is masked out for that row's sub-tile. */
static void forward_group(const struct bsa_plan *plan, const bsa_fwd_args *args,
                          const fused_global *g, const fused_thread *t, const cpu_seg *sg,
                          int64_t h, int64_t gi)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t bs = l->block, d = s->head_dim, dv = s->v_dim;
    int lh = bsa_layout_head(l, h);
    int gs = cp->group;
    int qb0 = (int)gi * gs;
    int ng = l->q_blocks - qb0 < gs ? l->q_blocks - qb0 : gs;
    int64_t rows = (int64_t)ng * bs;
    int64_t nvalid = fused_rows_valid(plan, sg, qb0, rows);
    if (nvalid == 0)
        return; /* past the end of a packed sequence */
    int32_t qbl[8];
    for (int j = 0; j < ng; j++)
        qbl[j] = qb0 + j;
    int64_t kvh = h / (s->heads / s->kv_heads);
    fused_operand qo = fused_q(plan, args->q, sg, h, NULL);
    fused_operand ko = fused_k(plan, args->k, sg, kvh, g->kf);
    fused_operand vo = fused_v(plan, args->v, sg, kvh, g->vf);
    int64_t ldq, ldk, ldv;
    const float *qt = fused_view(plan, &qo, qbl, ng, t->q, &ldq);
    float alpha = s->scale * BSA_LOG2E;
    for (int64_t r = 0; r < rows; r++) {
        t->m[r] = -INFINITY;
        t->l[r] = 0.0f;
    }
    memset(t->acc, 0, (size_t)(rows * dv) * sizeof(float));

    int n = bsa_cpu_group_union(l, lh, qb0, ng, gs, t->ucol, t->umap);
    for (int x0 = 0; x0 < n;) {
        int nc = n - x0 < cp->chunk_blocks ? n - x0 : cp->chunk_blocks;
        int64_t w = (int64_t)nc * bs;
        const float *kp = fused_view(plan, &ko, t->ucol + x0, nc, t->kg, &ldk);
        const float *vp = fused_view(plan, &vo, t->ucol + x0, nc, t->vg, &ldv);
        bsa_cpu_gemm(0, 1, rows, w, d, alpha, qt, ldq, kp, ldk, 0.0f, t->s, w);
        for (int x = 0; x < nc; x++)
            for (int j = 0; j < ng; j++) {
                float *sub = t->s + (int64_t)j * bs * w + (int64_t)x * bs;
                int32_t i = t->umap[(int64_t)(x0 + x) * gs + j];
                if (i >= 0) {
                    bsa_cpu_mask_block(sub, w, l, i);
                    continue;
                }
                for (int64_t r = 0; r < bs; r++)
                    for (int64_t c = 0; c < bs; c++)
                        sub[r * w + c] = -INFINITY;
            }
        for (int x = 0; x < nc; x++)
            bsa_cpu_key_limit(t->s + (int64_t)x * bs, w, rows, l, t->ucol[x0 + x], sg->klim);
        bsa_cpu_softmax_step(t->s, rows, w, w, t->m, t->l, t->alpha);
        bsa_cpu_scale_rows(t->acc, rows, dv, dv, t->alpha);
        bsa_cpu_gemm(0, 0, rows, dv, w, 1.0f, t->s, w, vp, ldv, 1.0f, t->acc, dv);
        x0 += nc;
    }
    store_out(plan, args, sg, h, t, (int64_t)qb0 * bs, nvalid);
}

static void forward_row(const struct bsa_plan *plan, const bsa_fwd_args *args,
                        const fused_global *g, const fused_thread *t, const cpu_seg *sg, int64_t h,
                        int64_t qb)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t bs = l->block, d = s->head_dim, dv = s->v_dim;
    int64_t nvalid = fused_rows_valid(plan, sg, qb, bs);
    if (nvalid == 0)
        return; /* past the end of a packed sequence */
    int lh = bsa_layout_head(l, h);
    int64_t kvh = h / (s->heads / s->kv_heads);
    fused_operand qo = fused_q(plan, args->q, sg, h, NULL);
    fused_operand ko = fused_k(plan, args->k, sg, kvh, g->kf);
    fused_operand vo = fused_v(plan, args->v, sg, kvh, g->vf);
    int32_t qblk = (int32_t)qb;
    int64_t ldq, ldk, ldv;
    const float *qt = fused_view(plan, &qo, &qblk, 1, t->q, &ldq);
    /* base-2 logits: scale * log2(e) rides on the product */
    float alpha = s->scale * BSA_LOG2E;
    for (int64_t r = 0; r < bs; r++) {
        t->m[r] = -INFINITY;
        t->l[r] = 0.0f;
    }
    memset(t->acc, 0, (size_t)(bs * dv) * sizeof(float));

    int64_t i0 = l->row_ptr[lh * (l->q_blocks + 1) + qb];
    int64_t i1 = l->row_ptr[lh * (l->q_blocks + 1) + qb + 1];
    for (int64_t i = i0; i < i1;) {
        int nc = (int)(i1 - i < cp->chunk_blocks ? i1 - i : cp->chunk_blocks);
        int64_t w = nc * bs;
        const float *kp = fused_view(plan, &ko, l->col_idx + i, nc, t->kg, &ldk);
        const float *vp = fused_view(plan, &vo, l->col_idx + i, nc, t->vg, &ldv);
        bsa_cpu_gemm(0, 1, bs, w, d, alpha, qt, ldq, kp, ldk, 0.0f, t->s, w);
        for (int x = 0; x < nc; x++) {
            bsa_cpu_mask_block(t->s + x * bs, w, l, i + x);
            bsa_cpu_key_limit(t->s + x * bs, w, bs, l, l->col_idx[i + x], sg->klim);
        }
        bsa_cpu_softmax_step(t->s, bs, w, w, t->m, t->l, t->alpha);
        bsa_cpu_scale_rows(t->acc, bs, dv, dv, t->alpha);
        bsa_cpu_gemm(0, 0, bs, dv, w, 1.0f, t->s, w, vp, ldv, 1.0f, t->acc, dv);
        i += nc;
    }
    store_out(plan, args, sg, h, t, qb * bs, nvalid);
}

bsa_status bsa_cpu_fused_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *ws)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    cpu_seg *seg;
    int64_t n_seg;
    bsa_status st = bsa_cpu_segments(plan, args->key_lengths, args->cu_seqlens_q,
                                     args->cu_seqlens_k, args->num_seqs, &seg, &n_seg);
    if (st != BSA_SUCCESS)
        return st;
    int64_t sh_n = n_seg * s->heads;
    int64_t nrows = sh_n * l->q_blocks, ngroups = sh_n * cp->n_groups;

#ifdef _OPENMP
#pragma omp parallel num_threads(cp->nthreads)
#endif
    {
        fused_global g;
        fused_thread t;
        fused_carve(ws, plan, bsa_cpu_thread_id(), &g, &t);
        bsa_cpu_enter_region();
        if (g.kf) {
            int64_t nk = s->batch * s->kv_heads * l->k_blocks;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t it = 0; it < 2 * nk; it++) {
                if (it < nk)
                    fused_convert(plan, args->k, s->k_stride, s->seq_k, s->kv_heads, s->head_dim,
                                  g.kf, it);
                else
                    fused_convert(plan, args->v, s->v_stride, s->seq_k, s->kv_heads, s->v_dim, g.vf,
                                  it - nk);
            }
        }
        /* Longest rows first, so the short ones fill the tail. */
        if (cp->group > 1) {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (int64_t it = 0; it < ngroups; it++) {
                int64_t sh = it % sh_n;
                forward_group(plan, args, &g, &t, &seg[sh / s->heads], sh % s->heads,
                              cp->group_order[it / sh_n]);
            }
        } else {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (int64_t it = 0; it < nrows; it++) {
                int64_t sh = it % sh_n;
                forward_row(plan, args, &g, &t, &seg[sh / s->heads], sh % s->heads,
                            cp->row_order[it / sh_n]);
            }
        }
    }
    free(seg);
    return BSA_SUCCESS;
}
