/*
 * Workspace and row views of the fused CPU implementation (internal to
 * backends/cpu/).
 *
 * Nothing of size time x dim is copied.  A product reads its operand rows
 * through a view (pointer + leading dimension): in place when the storage
 * is fp32 and the rows are equally spaced in memory (always true for the
 * adjacent blocks of the `all`/`local` runs, and for the strided pattern
 * within a residue class), else converted / gathered into a per-thread
 * tile.  The workspace holds, per query row, lse2 (base-2 log-sum-exp) and
 * delta = rowsum(dO * O) for the backward, O(batch * heads * time), then
 * one region of tiles per thread (cw = chunk_blocks * block is the widest
 * product, tr = group * block the tallest query tile).
 */
#ifndef BSA_CPU_FUSED_H
#define BSA_CPU_FUSED_H

#include "cpu_internal.h"

#include <string.h>

typedef struct fused_global {
    float *lse2, *delta; /* [batch * heads][seq_q], layout order */
    /* f16/bf16 plans whose blocks are reused often (cpu_plan.preconvert):
     * fp32 images [batch * heads][seq][dim] in layout order, else NULL */
    float *kf, *vf, *qf, *dof;
} fused_global;

typedef struct fused_thread {
    float *q, *acc;            /* query tile and accumulator, tr x dim */
    float *o2, *dk, *dv;       /* block x dim tiles */
    float *m, *l, *alpha;      /* per query row of the tile, tr */
    float *s;                  /* scores, tr x cw (forward) or cw x block */
    float *dp;                 /* cw x block */
    float *kg, *vg, *qg, *dog; /* operand tiles, cw x dim */
    float *lg, *dg;            /* gathered lse2 / delta, cw */
    int32_t *ucol, *umap;      /* grouped forward: key union and its row map */
} fused_thread;

static inline fused_global fused_carve_global(cpu_arena *a, const struct bsa_plan *plan)
{
    const bsa_shape *s = &plan->shape;
    int64_t rows = s->batch * s->heads * s->seq_q;
    fused_global g;
    g.lse2 = bsa_cpu_take(a, rows);
    g.delta = bsa_cpu_take(a, rows);
    g.kf = g.vf = g.qf = g.dof = NULL;
    if (((const cpu_plan *)plan->backend_data)->preconvert) {
        int64_t kn = s->batch * s->kv_heads * s->seq_k;
        g.kf = bsa_cpu_take(a, kn * s->head_dim);
        g.vf = bsa_cpu_take(a, kn * s->v_dim);
        g.qf = bsa_cpu_take(a, rows * s->head_dim);
        g.dof = bsa_cpu_take(a, rows * s->v_dim);
    }
    return g;
}

static inline fused_thread fused_carve_thread(cpu_arena *a, const struct bsa_plan *plan)
{
    const cpu_plan *cp = (const cpu_plan *)plan->backend_data;
    /* every tile as wide as the wider of the two head dims (value dim) */
    int64_t bs = plan->layout->block, d = bsa_cpu_dmax(&plan->shape);
    int64_t cw = (int64_t)cp->chunk_blocks * bs, tr = (int64_t)cp->group * bs;
    int64_t kb = plan->layout->k_blocks;
    fused_thread t;
    t.q = bsa_cpu_take(a, tr * d);
    t.o2 = bsa_cpu_take(a, bs * d);
    t.acc = bsa_cpu_take(a, tr * d);
    t.dk = bsa_cpu_take(a, bs * d);
    t.dv = bsa_cpu_take(a, bs * d);
    t.m = bsa_cpu_take(a, tr);
    t.l = bsa_cpu_take(a, tr);
    t.alpha = bsa_cpu_take(a, tr);
    t.s = bsa_cpu_take(a, cw * tr);
    t.dp = bsa_cpu_take(a, cw * bs);
    t.kg = bsa_cpu_take(a, cw * d);
    t.vg = bsa_cpu_take(a, cw * d);
    t.qg = bsa_cpu_take(a, cw * d);
    t.dog = bsa_cpu_take(a, cw * d);
    t.lg = bsa_cpu_take(a, cw);
    t.dg = bsa_cpu_take(a, cw);
    /* int32 arrays carved as floats (same size) */
    t.ucol = (int32_t *)bsa_cpu_take(a, cp->group > 1 ? kb : 0);
    t.umap = (int32_t *)bsa_cpu_take(a, cp->group > 1 ? kb * cp->group : 0);
    return t;
}

/* Converts block blk of every (batch, head) slice of a tensor of `heads`
 * heads and row width d into its fp32 image (item = bh * blocks + blk).
 * Never with BSA_PLAN_VARLEN (preconvert is off there). */
static inline void fused_convert(const struct bsa_plan *plan, const void *p, const int64_t *st,
                                 int64_t seq, int64_t heads, int64_t d, float *img, int64_t item)
{
    const bsa_shape *s = &plan->shape;
    int64_t bs = plan->layout->block, nb = seq / bs;
    int64_t bh = item / nb, blk = item % nb, b = bh / heads, h = bh % heads;
    const char *base = (const char *)p + (b * st[0] + h * st[1]) * bsa_cpu_esize(s->dtype);
    bsa_cpu_load_rows(img + (bh * seq + blk * bs) * d, d, base, s->dtype, st[2], blk * bs, bs, d,
                      plan->layout->stride_perm, seq, 1.0f);
}

/* Carves the global part, then thread tid's region. */
static inline void fused_carve(void *ws, const struct bsa_plan *plan, int tid, fused_global *g,
                               fused_thread *t)
{
    cpu_arena a = {(char *)ws, 0};
    *g = fused_carve_global(&a, plan);
    cpu_arena probe = {NULL, 0};
    (void)fused_carve_thread(&probe, plan);
    a.used += (size_t)tid * probe.used;
    *t = fused_carve_thread(&a, plan);
}

/* One operand of a (segment, head) slice: q, k, v, o or dO. */
typedef struct fused_operand {
    const float *conv; /* fp32 image of the slice in layout order, or NULL */
    const char *base;  /* element (b, h, t0, 0): the segment's first row */
    int64_t tstride;   /* elements between natural time steps */
    int64_t seq;       /* the layout's time length (for the permutation) */
    int64_t d;         /* row width: head dim, or value dim for v, o, dO */
    int64_t valid;     /* rows that exist; rows past it read as zeros */
} fused_operand;

/* Rows of the blocks blk[0..nc) (layout order, block rows of bs) as an
 * fp32 matrix of nc * bs rows: sets *ld and returns the first row. */
static inline const float *fused_view(const struct bsa_plan *plan, const fused_operand *op,
                                      const int32_t *blk, int nc, float *tile, int64_t *ld)
{
    const struct bsa_layout *l = plan->layout;
    int64_t bs = l->block, d = op->d;
    int perm = l->stride_perm;
    int64_t rows = nc * bs;
    if ((int64_t)blk[nc - 1] * bs + bs > op->valid) {
        /* a segment's partial tail (packed sequences): never read past it */
        for (int x = 0; x < nc; x++) {
            int64_t r0 = (int64_t)blk[x] * bs, n = op->valid - r0;
            n = n < 0 ? 0 : n > bs ? bs : n;
            if (n > 0)
                bsa_cpu_load_rows(tile + x * bs * d, d, op->base, plan->shape.dtype, op->tstride,
                                  r0, n, d, perm, op->seq, 1.0f);
            if (n < bs)
                memset(tile + (x * bs + n) * d, 0, (size_t)((bs - n) * d) * sizeof(float));
        }
        *ld = d;
        return tile;
    }
    if (op->conv && blk[nc - 1] - blk[0] == nc - 1) {
        *ld = d;
        return op->conv + (int64_t)blk[0] * bs * d;
    }
    if (op->conv) {
        for (int x = 0; x < nc; x++)
            memcpy(tile + x * bs * d, op->conv + (int64_t)blk[x] * bs * d,
                   (size_t)(bs * d) * sizeof(float));
        *ld = d;
        return tile;
    }
    if (plan->shape.dtype == BSA_DTYPE_F32) {
        /* In place iff row x of the chunk sits at t0 + x * step in time. */
        int64_t t0 = bsa_perm_row((int64_t)blk[0] * bs, perm, op->seq);
        int64_t step = rows > 1 ? bsa_perm_row((int64_t)blk[0] * bs + 1, perm, op->seq) - t0 : 1;
        int ok = step > 0 && step * op->tstride >= d;
        for (int x = 0; ok && x < nc; x++) {
            int64_t r0 = (int64_t)blk[x] * bs;
            /* within a block the step is uniform unless the strided
             * permutation wraps, which happens only at multiples of bt */
            if (bsa_perm_row(r0, perm, op->seq) != t0 + x * bs * step ||
                bsa_perm_row(r0 + bs - 1, perm, op->seq) != t0 + (x * bs + bs - 1) * step)
                ok = 0;
        }
        if (ok) {
            *ld = step * op->tstride;
            return (const float *)op->base + t0 * op->tstride;
        }
    }
    for (int x = 0; x < nc; x++)
        bsa_cpu_load_rows(tile + x * bs * d, d, op->base, plan->shape.dtype, op->tstride,
                          (int64_t)blk[x] * bs, bs, d, perm, op->seq, 1.0f);
    *ld = d;
    return tile;
}

/* Head h (of a tensor with `heads` heads, rows of d) of segment sg; t0 /
 * valid are the segment's first row and row count in that tensor's time.
 * conv: the fp32 image of the whole tensor (or NULL, always with varlen);
 * the slice's part starts at (b * heads + h) * seq * d. */
static inline fused_operand fused_operand_of(const struct bsa_plan *plan, const void *p,
                                             const int64_t *st, const cpu_seg *sg, int64_t heads,
                                             int64_t h, int64_t t0, int64_t valid, int64_t seq,
                                             int64_t d, const float *conv)
{
    const bsa_shape *s = &plan->shape;
    int64_t b = sg->b;
    fused_operand op;
    op.conv = conv ? conv + (b * heads + h) * seq * d : NULL;
    op.base = (const char *)p + (b * st[0] + h * st[1] + t0 * st[2]) * bsa_cpu_esize(s->dtype);
    op.tstride = st[2];
    op.seq = seq;
    op.d = d;
    op.valid = valid;
    return op;
}

/* The four operand roles of a slice (query head h of segment sg). */
static inline fused_operand fused_q(const struct bsa_plan *plan, const void *p, const cpu_seg *sg,
                                    int64_t h, const float *conv)
{
    const bsa_shape *s = &plan->shape;
    return fused_operand_of(plan, p, s->q_stride, sg, s->heads, h, sg->q0, sg->nq,
                            plan->layout->seq_q, s->head_dim, conv);
}
/* o and dO: value dim, query rows */
static inline fused_operand fused_o(const struct bsa_plan *plan, const void *p, const cpu_seg *sg,
                                    int64_t h, const float *conv)
{
    const bsa_shape *s = &plan->shape;
    return fused_operand_of(plan, p, s->o_stride, sg, s->heads, h, sg->q0, sg->nq,
                            plan->layout->seq_q, s->v_dim, conv);
}
/* k and v of kv head kvh */
static inline fused_operand fused_k(const struct bsa_plan *plan, const void *p, const cpu_seg *sg,
                                    int64_t kvh, const float *conv)
{
    const bsa_shape *s = &plan->shape;
    return fused_operand_of(plan, p, s->k_stride, sg, s->kv_heads, kvh, sg->k0, sg->nk,
                            plan->layout->seq_k, s->head_dim, conv);
}
static inline fused_operand fused_v(const struct bsa_plan *plan, const void *p, const cpu_seg *sg,
                                    int64_t kvh, const float *conv)
{
    const bsa_shape *s = &plan->shape;
    return fused_operand_of(plan, p, s->v_stride, sg, s->kv_heads, kvh, sg->k0, sg->nk,
                            plan->layout->seq_k, s->v_dim, conv);
}

/* Rows of query block qb that exist in segment sg (layout order; with the
 * strided permutation there is no varlen, so every row exists). */
static inline int64_t fused_rows_valid(const struct bsa_plan *plan, const cpu_seg *sg, int64_t qb,
                                       int64_t rows)
{
    int64_t n = sg->nq - qb * plan->layout->block;
    return n < 0 ? 0 : n > rows ? rows : n;
}

#endif
