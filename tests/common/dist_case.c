#include "dist_case.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bsa_preset dc_preset(bsa_pattern pattern, int bidir, int seq, int block, int heads)
{
    bsa_preset p = tu_preset(pattern, seq, block, 0, bidir);
    p.heads = heads;
    switch (pattern) {
    case BSA_PATTERN_LOCAL:
        p.ctx = 32; /* two blocks: a contiguous shard needs one neighbour at most */
        break;
    case BSA_PATTERN_STRIDED:
        p.ctx = 4; /* T/(P*L) and T/(2P*L) stay multiples of the block */
        break;
    case BSA_PATTERN_FIXED:
        p.ctx = 64;
        p.num_verts = 2; /* per-head layout */
        p.vertsize = 1;
        break;
    default:
        break;
    }
    return p;
}

bsa_status dc_whole_init(dc_whole *w, bsa_context_t ctx, bsa_layout_t lay, bsa_dtype dt,
                         int64_t batch, int64_t heads, int64_t kv_heads, int64_t seq, int64_t dim)
{
    w->q = tu_tensor_new(dt, bsa_tensor_bhtd(batch, heads, seq, dim));
    w->k = tu_tensor_new(dt, bsa_tensor_bhtd(batch, kv_heads, seq, dim));
    w->v = tu_tensor_new(dt, bsa_tensor_bhtd(batch, kv_heads, seq, dim));
    w->g = tu_tensor_new(dt, bsa_tensor_bhtd(batch, heads, seq, dim));
    tu_tensor_random(&w->q, -1, 1);
    tu_tensor_random(&w->k, -1, 1);
    tu_tensor_random(&w->v, -1, 1);
    tu_tensor_random(&w->g, -1, 1);
    w->o = tu_tensor_new(dt, w->q.desc);
    w->dq = tu_tensor_new(dt, w->q.desc);
    w->dk = tu_tensor_new(dt, w->k.desc);
    w->dv = tu_tensor_new(dt, w->v.desc);
    int64_t rows = batch * heads * seq;
    w->lse = tu_xmalloc(sizeof(float) * rows);
    w->lse_val = tu_xmalloc(sizeof(double) * rows);
    bsa_attn_desc d = {dt, w->q.desc, w->k.desc, w->v.desc, w->o.desc, 0.0f, 0};
    bsa_plan_t plan = NULL;
    bsa_status st = bsa_plan_create(ctx, &plan, &d, lay);
    if (st == BSA_SUCCESS) {
        bsa_fwd_args fa = {w->q.data, w->k.data, w->v.data, w->o.data, w->lse};
        bsa_bwd_args ba = {w->q.data, w->k.data,  w->v.data,  w->o.data, w->lse,
                           w->g.data, w->dq.data, w->dk.data, w->dv.data};
        if ((st = bsa_forward(plan, &fa, NULL, 0, NULL)) == BSA_SUCCESS)
            st = bsa_backward(plan, &ba, NULL, 0, NULL);
        bsa_plan_destroy(plan);
    }
    tu_tensor_read(&w->o);
    tu_tensor_read(&w->dq);
    tu_tensor_read(&w->dk);
    tu_tensor_read(&w->dv);
    tu_f32_to_f64(w->lse, w->lse_val, rows);
    return st;
}

void dc_whole_free(dc_whole *w)
{
    tu_tensor *all[] = {&w->q, &w->k, &w->v, &w->g, &w->o, &w->dq, &w->dk, &w->dv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tu_tensor_free(all[i]);
    free(w->lse);
    free(w->lse_val);
    w->lse = NULL;
    w->lse_val = NULL;
}

void dc_gather_rows(void *shard, const void *whole, size_t es, int64_t bh, int64_t seq, int64_t n,
                    int64_t d, const int64_t *pos)
{
    size_t row = (size_t)d * es;
    for (int64_t x = 0; x < bh; x++)
        for (int64_t t = 0; t < n; t++)
            memcpy((unsigned char *)shard + (x * n + t) * row,
                   (const unsigned char *)whole + (x * seq + pos[t]) * row, row);
}

/* Largest |x| of n values. */
static double max_abs(const double *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

void dc_shard_err(const double *got, const double *ref, int64_t bh, int64_t seq, int64_t n,
                  int64_t d, const int64_t *pos, double e[2])
{
    int64_t cnt = bh * n * d;
    double *rs = tu_xmalloc(sizeof(double) * cnt);
    dc_gather_rows(rs, ref, sizeof(double), bh, seq, n, d, pos);
    e[0] = tu_rel_l2(got, rs, cnt);
    double m = max_abs(ref, bh * seq * d);
    e[1] = tu_count_nonfinite(got, cnt) ? INFINITY : tu_max_abs_diff(got, rs, cnt) / m;
    free(rs);
}
