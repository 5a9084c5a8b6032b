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

/* Forward of a group of consecutive query blocks as one taller tile (small
 * layout blocks): the key list is the union of the rows' lists, a block
 * that a row does not keep is masked out for that row's sub-tile. */
static void forward_group(const struct bsa_plan *plan, const bsa_fwd_args *args,
                          const fused_global *g, const fused_thread *t, int64_t bh, int64_t gi)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t bs = l->block, d = s->head_dim;
    int lh = bsa_layout_head(l, bh % s->heads);
    int perm = l->stride_perm, gs = cp->group;
    int qb0 = (int)gi * gs;
    int ng = l->q_blocks - qb0 < gs ? l->q_blocks - qb0 : gs;
    int64_t rows = (int64_t)ng * bs;
    int32_t qbl[8];
    for (int j = 0; j < ng; j++)
        qbl[j] = qb0 + j;
    fused_operand qo = fused_operand_of(plan, args->q, s->q_stride, bh, s->seq_q, NULL);
    fused_operand ko = fused_operand_of(plan, args->k, s->k_stride, bh, s->seq_k, g->kf);
    fused_operand vo = fused_operand_of(plan, args->v, s->v_stride, bh, s->seq_k, g->vf);
    int64_t ldq, ldk, ldv;
    const float *qt = fused_view(plan, &qo, qbl, ng, t->q, &ldq);
    float alpha = s->scale * BSA_LOG2E;
    for (int64_t r = 0; r < rows; r++) {
        t->m[r] = -INFINITY;
        t->l[r] = 0.0f;
    }
    memset(t->acc, 0, (size_t)(rows * d) * sizeof(float));

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
        bsa_cpu_softmax_step(t->s, rows, w, w, t->m, t->l, t->alpha);
        bsa_cpu_scale_rows(t->acc, rows, d, d, t->alpha);
        bsa_cpu_gemm(0, 0, rows, d, w, 1.0f, t->s, w, vp, ldv, 1.0f, t->acc, d);
        x0 += nc;
    }

    for (int64_t r = 0; r < rows; r++)
        t->alpha[r] = t->l[r] > 0.0f ? 1.0f / t->l[r] : 0.0f;
    bsa_cpu_scale_rows(t->acc, rows, d, d, t->alpha);
    int64_t b = bh / s->heads, h = bh % s->heads;
    char *obase =
        (char *)args->o + (b * s->o_stride[0] + h * s->o_stride[1]) * bsa_cpu_esize(s->dtype);
    bsa_cpu_store_rows(obase, s->dtype, s->o_stride[2], (int64_t)qb0 * bs, rows, d, perm, s->seq_q,
                       t->acc, d);
    if (args->lse) {
        float *lse = args->lse + bh * s->seq_q;
        for (int64_t r = 0; r < rows; r++) {
            int64_t tq = bsa_perm_row((int64_t)qb0 * bs + r, perm, s->seq_q);
            lse[tq] = t->l[r] > 0.0f ? t->m[r] * BSA_LN2 + logf(t->l[r]) : -INFINITY;
        }
    }
}

static void forward_row(const struct bsa_plan *plan, const bsa_fwd_args *args,
                        const fused_global *g, const fused_thread *t, int64_t bh, int64_t qb)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t bs = l->block, d = s->head_dim;
    int lh = bsa_layout_head(l, bh % s->heads);
    int perm = l->stride_perm;
    fused_operand qo = fused_operand_of(plan, args->q, s->q_stride, bh, s->seq_q, NULL);
    fused_operand ko = fused_operand_of(plan, args->k, s->k_stride, bh, s->seq_k, g->kf);
    fused_operand vo = fused_operand_of(plan, args->v, s->v_stride, bh, s->seq_k, g->vf);
    int32_t qblk = (int32_t)qb;
    int64_t ldq, ldk, ldv;
    const float *qt = fused_view(plan, &qo, &qblk, 1, t->q, &ldq);
    /* base-2 logits: scale * log2(e) rides on the product */
    float alpha = s->scale * BSA_LOG2E;
    for (int64_t r = 0; r < bs; r++) {
        t->m[r] = -INFINITY;
        t->l[r] = 0.0f;
    }
    memset(t->acc, 0, (size_t)(bs * d) * sizeof(float));

    int64_t i0 = l->row_ptr[lh * (l->q_blocks + 1) + qb];
    int64_t i1 = l->row_ptr[lh * (l->q_blocks + 1) + qb + 1];
    for (int64_t i = i0; i < i1;) {
        int nc = (int)(i1 - i < cp->chunk_blocks ? i1 - i : cp->chunk_blocks);
        int64_t w = nc * bs;
        const float *kp = fused_view(plan, &ko, l->col_idx + i, nc, t->kg, &ldk);
        const float *vp = fused_view(plan, &vo, l->col_idx + i, nc, t->vg, &ldv);
        bsa_cpu_gemm(0, 1, bs, w, d, alpha, qt, ldq, kp, ldk, 0.0f, t->s, w);
        for (int x = 0; x < nc; x++)
            bsa_cpu_mask_block(t->s + x * bs, w, l, i + x);
        bsa_cpu_softmax_step(t->s, bs, w, w, t->m, t->l, t->alpha);
        bsa_cpu_scale_rows(t->acc, bs, d, d, t->alpha);
        bsa_cpu_gemm(0, 0, bs, d, w, 1.0f, t->s, w, vp, ldv, 1.0f, t->acc, d);
        i += nc;
    }

    /* O = acc / l; a row that saw no key keeps acc = 0 and gets lse -inf. */
    for (int64_t r = 0; r < bs; r++)
        t->alpha[r] = t->l[r] > 0.0f ? 1.0f / t->l[r] : 0.0f;
    bsa_cpu_scale_rows(t->acc, bs, d, d, t->alpha);
    int64_t b = bh / s->heads, h = bh % s->heads;
    char *obase =
        (char *)args->o + (b * s->o_stride[0] + h * s->o_stride[1]) * bsa_cpu_esize(s->dtype);
    bsa_cpu_store_rows(obase, s->dtype, s->o_stride[2], qb * bs, bs, d, perm, s->seq_q, t->acc, d);
    if (args->lse) {
        float *lse = args->lse + bh * s->seq_q;
        for (int64_t r = 0; r < bs; r++) {
            int64_t tq = bsa_perm_row(qb * bs + r, perm, s->seq_q);
            lse[tq] = t->l[r] > 0.0f ? t->m[r] * BSA_LN2 + logf(t->l[r]) : -INFINITY;
        }
    }
}

bsa_status bsa_cpu_fused_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *ws)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t bh_n = s->batch * s->heads;
    int64_t nrows = bh_n * l->q_blocks, ngroups = bh_n * cp->n_groups;

#ifdef _OPENMP
#pragma omp parallel num_threads(cp->nthreads)
#endif
    {
        fused_global g;
        fused_thread t;
        fused_carve(ws, plan, bsa_cpu_thread_id(), &g, &t);
        bsa_cpu_enter_region();
        if (g.kf) {
            int64_t nk = bh_n * l->k_blocks;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t it = 0; it < 2 * nk; it++) {
                if (it < nk)
                    fused_convert(plan, args->k, s->k_stride, s->seq_k, g.kf, it);
                else
                    fused_convert(plan, args->v, s->v_stride, s->seq_k, g.vf, it - nk);
            }
        }
        /* Longest rows first, so the short ones fill the tail. */
        if (cp->group > 1) {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (int64_t it = 0; it < ngroups; it++)
                forward_group(plan, args, &g, &t, it % bh_n, cp->group_order[it / bh_n]);
        } else {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
            for (int64_t it = 0; it < nrows; it++)
                forward_row(plan, args, &g, &t, it % bh_n, cp->row_order[it / bh_n]);
        }
    }
    return BSA_SUCCESS;
}
