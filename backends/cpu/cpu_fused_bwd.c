/*
 * Fused backward pass of the CPU backend: the seed's "recompute".  The
 * probabilities are rebuilt from Q, K and the saved log-sum-exp; no
 * T x T buffer exists.
 *
 *   pass 0  delta = rowsum(dO * O) and the base-2 lse of every query row;
 *   pass 1  one item per (batch, head, key block): walks the block's column
 *           list (the transposed layout), dV += P^T dO, dK += dS^T Q; the
 *           item owns its dK/dV rows, so no atomics;
 *   pass 2  one item per (batch, head, query block): walks its row list,
 *           dQ += dS K (P and dP recomputed once more).
 * Every output row is summed by one thread in a fixed order: the same
 * inputs give the same bits whatever the thread schedule.
 */
#include "cpu_fused.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* delta = rowsum(dO * O) and lse2 = lse * log2(e) of the rows of query
 * block qb that exist in the segment. */
static void row_stats(const struct bsa_plan *plan, const bsa_bwd_args *args, const fused_global *g,
                      const fused_thread *t, const cpu_seg *sg, int64_t h, int64_t qb)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    int64_t bs = l->block, dv = s->v_dim;
    int64_t nvalid = fused_rows_valid(plan, sg, qb, bs);
    if (nvalid == 0)
        return;
    int32_t qblk = (int32_t)qb;
    fused_operand oo = fused_o(plan, args->o, sg, h, NULL);
    fused_operand go = fused_o(plan, args->dout, sg, h, g->dof);
    int64_t ldo, ldg;
    const float *ot = fused_view(plan, &oo, &qblk, 1, t->o2, &ldo);
    const float *gt = fused_view(plan, &go, &qblk, 1, t->q, &ldg);
    int64_t row0 = (sg->b * s->heads + h) * s->seq_q + sg->q0;
    const float *lse = args->lse + row0;
    for (int64_t r = 0; r < nvalid; r++) {
        const float *orow = ot + r * ldo, *grow = gt + r * ldg;
        float acc = 0.0f;
        for (int64_t j = 0; j < dv; j++)
            acc += grow[j] * orow[j];
        g->delta[row0 + qb * bs + r] = acc;
        float x = lse[bsa_perm_row(qb * bs + r, l->stride_perm, l->seq_q)];
        g->lse2[row0 + qb * bs + r] = x == -INFINITY ? -INFINITY : x * BSA_LOG2E;
    }
}

/* dK, dV of key block kb of kv head kvh: for each query head of its group
 * in ascending order, walk the column list, query blocks in order. */
static void key_column(const struct bsa_plan *plan, const bsa_bwd_args *args, const fused_global *g,
                       const fused_thread *t, const cpu_seg *sg, int64_t kvh, int64_t kb)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t bs = l->block, d = s->head_dim, dv = s->v_dim;
    int64_t kvalid = sg->nk - kb * bs;
    if (kvalid <= 0)
        return; /* past the end of a packed sequence */
    kvalid = kvalid > bs ? bs : kvalid;
    size_t es = bsa_cpu_esize(s->dtype);
    fused_operand ko = fused_k(plan, args->k, sg, kvh, g->kf);
    fused_operand vo = fused_v(plan, args->v, sg, kvh, g->vf);
    int32_t kblk = (int32_t)kb;
    int64_t ldk, ldv, ldq, ldg;
    const float *kt = fused_view(plan, &ko, &kblk, 1, t->kg, &ldk);
    const float *vt = fused_view(plan, &vo, &kblk, 1, t->vg, &ldv);
    float alpha = s->scale * BSA_LOG2E;
    memset(t->dk, 0, (size_t)(bs * d) * sizeof(float));
    memset(t->dv, 0, (size_t)(bs * dv) * sizeof(float));

    int64_t group = s->heads / s->kv_heads;
    for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
        int lh = bsa_layout_head(l, h);
        fused_operand qo = fused_q(plan, args->q, sg, h, g->qf);
        fused_operand go = fused_o(plan, args->dout, sg, h, g->dof);
        int64_t row0 = (sg->b * s->heads + h) * s->seq_q + sg->q0;
        const float *lbh = g->lse2 + row0, *dbh = g->delta + row0;
        int64_t j0 = l->col_ptr[lh * (l->k_blocks + 1) + kb];
        int64_t j1 = l->col_ptr[lh * (l->k_blocks + 1) + kb + 1];
        for (int64_t j = j0; j < j1;) {
            int nc = (int)(j1 - j < cp->chunk_blocks ? j1 - j : cp->chunk_blocks);
            int64_t rows = nc * bs;
            const int32_t *qbl = l->t_row + j;
            if ((int64_t)qbl[0] * bs >= sg->nq)
                break; /* this and later query blocks are past the sequence */
            const float *qp = fused_view(plan, &qo, qbl, nc, t->qg, &ldq);
            const float *gp = fused_view(plan, &go, qbl, nc, t->dog, &ldg);
            const float *lp, *dl;
            int tail = (int64_t)qbl[nc - 1] * bs + bs > sg->nq;
            if (!tail && qbl[nc - 1] - qbl[0] == nc - 1) {
                lp = lbh + (int64_t)qbl[0] * bs;
                dl = dbh + (int64_t)qbl[0] * bs;
            } else {
                /* rows past the sequence get p = 0 (lse2 -inf, delta 0) */
                for (int x = 0; x < nc; x++) {
                    int64_t n = fused_rows_valid(plan, sg, qbl[x], bs);
                    memcpy(t->lg + x * bs, lbh + (int64_t)qbl[x] * bs, (size_t)n * sizeof(float));
                    memcpy(t->dg + x * bs, dbh + (int64_t)qbl[x] * bs, (size_t)n * sizeof(float));
                    for (int64_t r = n; r < bs; r++) {
                        t->lg[x * bs + r] = -INFINITY;
                        t->dg[x * bs + r] = 0.0f;
                    }
                }
                lp = t->lg;
                dl = t->dg;
            }
            /* S (rows x bs) is used as is; the transposed products read it
             * with op = T, so S^T is never formed. */
            bsa_cpu_gemm(0, 1, rows, bs, d, alpha, qp, ldq, kt, ldk, 0.0f, t->s, bs);
            for (int x = 0; x < nc; x++)
                bsa_cpu_mask_block(t->s + x * bs * bs, bs, l, l->t_block[j + x]);
            bsa_cpu_key_limit(t->s, bs, rows, l, kblk, sg->klim);
            bsa_cpu_exp_rows(t->s, rows, bs, bs, lp);
            bsa_cpu_gemm(1, 0, bs, dv, rows, 1.0f, t->s, bs, gp, ldg, 1.0f, t->dv, dv);
            bsa_cpu_gemm(0, 1, rows, bs, dv, 1.0f, gp, ldg, vt, ldv, 0.0f, t->dp, bs);
            bsa_cpu_dsoftmax_rows(t->s, t->dp, rows, bs, bs, dl);
            bsa_cpu_gemm(1, 0, bs, d, rows, s->scale, t->dp, bs, qp, ldq, 1.0f, t->dk, d);
            j += nc;
        }
    }
    int perm = l->stride_perm;
    int64_t b = sg->b;
    char *dkb = (char *)args->dk +
                (b * s->k_stride[0] + kvh * s->k_stride[1] + sg->k0 * s->k_stride[2]) * es;
    char *dvb = (char *)args->dv +
                (b * s->v_stride[0] + kvh * s->v_stride[1] + sg->k0 * s->v_stride[2]) * es;
    bsa_cpu_store_rows(dkb, s->dtype, s->k_stride[2], kb * bs, kvalid, d, perm, l->seq_k, t->dk, d);
    bsa_cpu_store_rows(dvb, s->dtype, s->v_stride[2], kb * bs, kvalid, dv, perm, l->seq_k, t->dv,
                       dv);
}

/* dQ of query block qb: walk the row list, key blocks in order. */
static void query_row(const struct bsa_plan *plan, const bsa_bwd_args *args, const fused_global *g,
                      const fused_thread *t, const cpu_seg *sg, int64_t h, int64_t qb)
{
    const bsa_shape *s = &plan->shape;
    const struct bsa_layout *l = plan->layout;
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    int64_t bs = l->block, d = s->head_dim, dv = s->v_dim;
    int64_t nvalid = fused_rows_valid(plan, sg, qb, bs);
    if (nvalid == 0)
        return;
    int lh = bsa_layout_head(l, h);
    int64_t kvh = h / (s->heads / s->kv_heads);
    size_t es = bsa_cpu_esize(s->dtype);
    fused_operand qo = fused_q(plan, args->q, sg, h, g->qf);
    fused_operand go = fused_o(plan, args->dout, sg, h, g->dof);
    fused_operand ko = fused_k(plan, args->k, sg, kvh, g->kf);
    fused_operand vo = fused_v(plan, args->v, sg, kvh, g->vf);
    int32_t qblk = (int32_t)qb;
    int64_t ldq, ldg, ldk, ldv;
    const float *qt = fused_view(plan, &qo, &qblk, 1, t->q, &ldq);
    const float *gt = fused_view(plan, &go, &qblk, 1, t->o2, &ldg);
    int64_t row0 = (sg->b * s->heads + h) * s->seq_q + sg->q0 + qb * bs;
    const float *lp = g->lse2 + row0, *dl = g->delta + row0;
    if (nvalid < bs) {
        /* rows past the sequence: p = 0 (their lse2/delta are not ours) */
        memcpy(t->lg, lp, (size_t)nvalid * sizeof(float));
        memcpy(t->dg, dl, (size_t)nvalid * sizeof(float));
        for (int64_t r = nvalid; r < bs; r++) {
            t->lg[r] = -INFINITY;
            t->dg[r] = 0.0f;
        }
        lp = t->lg;
        dl = t->dg;
    }
    float alpha = s->scale * BSA_LOG2E;
    float *dq = t->acc;
    memset(dq, 0, (size_t)(bs * d) * sizeof(float));

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
        bsa_cpu_exp_rows(t->s, bs, w, w, lp);
        bsa_cpu_gemm(0, 1, bs, w, dv, 1.0f, gt, ldg, vp, ldv, 0.0f, t->dp, w);
        bsa_cpu_dsoftmax_rows(t->s, t->dp, bs, w, w, dl);
        bsa_cpu_gemm(0, 0, bs, d, w, s->scale, t->dp, w, kp, ldk, 1.0f, dq, d);
        i += nc;
    }
    char *dqb = (char *)args->dq +
                (sg->b * s->q_stride[0] + h * s->q_stride[1] + sg->q0 * s->q_stride[2]) * es;
    bsa_cpu_store_rows(dqb, s->dtype, s->q_stride[2], qb * bs, nvalid, d, l->stride_perm, l->seq_q,
                       dq, d);
}

bsa_status bsa_cpu_fused_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *ws)
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
    int64_t sh_n = n_seg * s->heads, skv_n = n_seg * s->kv_heads;
    int64_t nq = sh_n * l->q_blocks, nk = skv_n * l->k_blocks;
    /* images (never with varlen: then n_seg == batch) */
    int64_t iq = s->batch * s->heads * l->q_blocks, ik = s->batch * s->kv_heads * l->k_blocks;

#ifdef _OPENMP
#pragma omp parallel num_threads(cp->nthreads)
#endif
    {
        fused_global g;
        fused_thread t;
        fused_carve(ws, plan, bsa_cpu_thread_id(), &g, &t);
        bsa_cpu_enter_region();
        if (g.kf) {
            /* dO first: row_stats reads its image */
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t it = 0; it < 2 * iq + 2 * ik; it++) {
                if (it < iq)
                    fused_convert(plan, args->dout, s->o_stride, s->seq_q, s->heads, s->v_dim,
                                  g.dof, it);
                else if (it < 2 * iq)
                    fused_convert(plan, args->q, s->q_stride, s->seq_q, s->heads, s->head_dim, g.qf,
                                  it - iq);
                else if (it < 2 * iq + ik)
                    fused_convert(plan, args->k, s->k_stride, s->seq_k, s->kv_heads, s->head_dim,
                                  g.kf, it - 2 * iq);
                else
                    fused_convert(plan, args->v, s->v_stride, s->seq_k, s->kv_heads, s->v_dim, g.vf,
                                  it - 2 * iq - ik);
            }
        }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t it = 0; it < nq; it++) {
            int64_t sh = it / l->q_blocks;
            row_stats(plan, args, &g, &t, &seg[sh / s->heads], sh % s->heads, it % l->q_blocks);
        }
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t it = 0; it < nk; it++) {
            int64_t sk = it % skv_n;
            key_column(plan, args, &g, &t, &seg[sk / s->kv_heads], sk % s->kv_heads,
                       cp->col_order[it / skv_n]);
        }
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t it = 0; it < nq; it++) {
            int64_t sh = it % sh_n;
            query_row(plan, args, &g, &t, &seg[sh / s->heads], sh % s->heads,
                      cp->row_order[it / sh_n]);
        }
    }
    free(seg);
    return BSA_SUCCESS;
}
