/*
 * The seed's unfused ops (bsa_sparse_nt, bsa_sparse_softmax plain and
 * masked, bsa_sparse_softmax_backward, bsa_sparse_nn, bsa_sparse_tn) on the
 * CPU against double computations, and their compositions against the
 * fused forward and backward.
 *
 * The test derives the sparse weight tensor's structure itself: the
 * layout's element mask from the closed forms (tests/common/closed_masks.c,
 * natural order) is moved to layout order through the seed's
 * strided_transpose (natural p = i*L + j <-> layout r = j*(n/L) + i), a block
 * is kept iff it holds a kept element, blocks are numbered row-major per
 * layout head, and (batch b, head h) starts at
 *   shared layout:   (b * H + h) * nnz * B^2
 *   per-head layout: (b * sum_h nnz_h + sum_{h' < h} nnz_h') * B^2.
 *
 * Tolerances: w, p and dw are fp32 outputs of fp32 arithmetic on exact
 * inputs (1e-5 relative L2 for every dtype); y of nn/tn is rounded to the
 * plan's dtype, so it takes the fused suite's per-dtype thresholds
 * (f32 1e-5, f16 5e-3, bf16 3e-2; see test_cpu_attention.c).
 */
#include "attn_check.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double dense_tol[3] = {1e-5, 5e-3, 3e-2};
static const double w_tol = 1e-5;
static const bsa_dtype dtypes[3] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16};
static double worst_w, worst_y[3], worst_fused[3];

static void expect_ok(bsa_status st, const char *what)
{
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s: %s\n", what, bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
}

/* ------------------------------------------------ the weight structure */

typedef struct wstruct {
    int block, lheads, heads, batch, stride;
    int64_t seq_q, seq_k;
    uint8_t *lmask;    /* [lheads][seq_q][seq_k] in layout order */
    int64_t *head_ptr; /* [lheads + 1] */
    int32_t *bq, *bk;  /* query / key block of each kept block */
    int64_t total, elems;
} wstruct;

static int64_t perm(int64_t r, int stride, int64_t n)
{
    if (!stride)
        return r;
    int64_t bt = n / stride;
    return (r % bt) * stride + r / bt;
}

static void wstruct_init(wstruct *s, bsa_layout_t lay, const ac_problem *p)
{
    bsa_layout_info info;
    expect_ok(bsa_layout_get_info(lay, &info), "layout info");
    memset(s, 0, sizeof *s);
    s->block = info.block;
    s->lheads = info.heads;
    s->heads = (int)p->heads;
    s->batch = (int)p->batch;
    s->stride = info.stride_permutation;
    s->seq_q = info.seq_q;
    s->seq_k = info.seq_k;
    int64_t plane = s->seq_q * s->seq_k;
    s->lmask = tu_xmalloc((size_t)(plane * s->lheads));
    for (int h = 0; h < s->lheads; h++)
        for (int64_t r = 0; r < s->seq_q; r++)
            for (int64_t c = 0; c < s->seq_k; c++)
                s->lmask[h * plane + r * s->seq_k + c] =
                    p->mask[h * plane + perm(r, s->stride, s->seq_q) * s->seq_k +
                            perm(c, s->stride, s->seq_k)];
    int B = s->block, qb = info.q_blocks, kb = info.k_blocks;
    s->head_ptr = tu_xmalloc((size_t)(s->lheads + 1) * sizeof(int64_t));
    s->bq = tu_xmalloc((size_t)s->lheads * qb * kb * sizeof(int32_t));
    s->bk = tu_xmalloc((size_t)s->lheads * qb * kb * sizeof(int32_t));
    for (int h = 0; h < s->lheads; h++) {
        s->head_ptr[h] = s->total;
        for (int i = 0; i < qb; i++)
            for (int j = 0; j < kb; j++) {
                int any = 0;
                for (int r = 0; r < B && !any; r++)
                    for (int c = 0; c < B && !any; c++)
                        any = s->lmask[h * plane + ((int64_t)i * B + r) * s->seq_k + j * B + c];
                if (any) {
                    s->bq[s->total] = i;
                    s->bk[s->total] = j;
                    s->total++;
                }
            }
        int64_t count = -1;
        expect_ok(bsa_layout_head_blocks(lay, h, &count), "head blocks");
        if (count != s->total - s->head_ptr[h])
            fprintf(stderr, "layout head %d: bsa_layout_head_blocks %lld, element mask has %lld\n",
                    h, (long long)count, (long long)(s->total - s->head_ptr[h]));
        assert_int_equal(count, s->total - s->head_ptr[h]);
    }
    s->head_ptr[s->lheads] = s->total;
    int64_t per_batch = s->lheads == 1 ? s->heads * s->total : s->total;
    s->elems = s->batch * per_batch * B * B;
}

static void wstruct_free(wstruct *s)
{
    free(s->lmask);
    free(s->head_ptr);
    free(s->bq);
    free(s->bk);
}

/* First weight element and block range of (b, h). */
static int64_t w_base(const wstruct *s, int b, int h, int64_t *first, int64_t *last)
{
    int lh = s->lheads == 1 ? 0 : h;
    *first = s->head_ptr[lh];
    *last = s->head_ptr[lh + 1];
    int64_t bb = (int64_t)s->block * s->block;
    int64_t per_batch = s->lheads == 1 ? s->heads * s->total : s->total;
    int64_t head_off = s->lheads == 1 ? h * s->total : s->head_ptr[h];
    return (b * per_batch + head_off) * bb;
}

/* ------------------------------------------------ double references */

/* w = a . b^T on kept blocks; a has seq_q rows, b seq_k rows (natural). */
static void ref_nt(const wstruct *s, int64_t dim, const double *a, const double *bm, double *w)
{
    int B = s->block;
    for (int b = 0; b < s->batch; b++)
        for (int h = 0; h < s->heads; h++) {
            int64_t first, last, base = w_base(s, b, h, &first, &last);
            const double *ah = a + ((int64_t)b * s->heads + h) * s->seq_q * dim;
            const double *bh = bm + ((int64_t)b * s->heads + h) * s->seq_k * dim;
            for (int64_t i = first; i < last; i++)
                for (int r = 0; r < B; r++)
                    for (int c = 0; c < B; c++) {
                        int64_t qn = perm((int64_t)s->bq[i] * B + r, s->stride, s->seq_q);
                        int64_t kn = perm((int64_t)s->bk[i] * B + c, s->stride, s->seq_k);
                        double acc = 0.0;
                        for (int64_t x = 0; x < dim; x++)
                            acc += ah[qn * dim + x] * bh[kn * dim + x];
                        w[base + ((i - first) * B + r) * B + c] = acc;
                    }
        }
}

/* Visits every (block, row) of (b, h) grouped by query row: calls fn for
 * each layout query row with the list of its blocks. */
typedef void (*row_fn)(const wstruct *s, int lh, int64_t row, const int64_t *elem, const int *keep,
                       int n, void *ctx);

static void for_rows(const wstruct *s, row_fn fn, void *ctx)
{
    int B = s->block;
    int64_t max_n = s->seq_k;
    int64_t *elem = tu_xmalloc((size_t)max_n * sizeof(int64_t));
    int *keep = tu_xmalloc((size_t)max_n * sizeof(int));
    int64_t plane = s->seq_q * s->seq_k;
    for (int b = 0; b < s->batch; b++)
        for (int h = 0; h < s->heads; h++) {
            int lh = s->lheads == 1 ? 0 : h;
            int64_t first, last, base = w_base(s, b, h, &first, &last);
            for (int64_t row = 0; row < s->seq_q; row++) {
                int n = 0;
                for (int64_t i = first; i < last; i++) {
                    if (s->bq[i] != row / B)
                        continue;
                    for (int c = 0; c < B; c++) {
                        elem[n] = base + ((i - first) * B + row % B) * B + c;
                        keep[n] = s->lmask[lh * plane + row * s->seq_k + (int64_t)s->bk[i] * B + c];
                        n++;
                    }
                }
                fn(s, lh, row, elem, keep, n, ctx);
            }
        }
    free(elem);
    free(keep);
}

typedef struct sm_ctx {
    const double *in, *in2;
    double *out;
    double scale;
    int masked;
} sm_ctx;

static void softmax_row(const wstruct *s, int lh, int64_t row, const int64_t *elem, const int *keep,
                        int n, void *vctx)
{
    sm_ctx *c = vctx;
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j < n; j++)
        if (!c->masked || keep[j])
            mx = fmax(mx, c->scale * c->in[elem[j]]);
    for (int j = 0; j < n; j++) {
        int on = (!c->masked || keep[j]) && mx > -INFINITY;
        c->out[elem[j]] = on ? exp(c->scale * c->in[elem[j]] - mx) : 0.0;
        sum += c->out[elem[j]];
    }
    for (int j = 0; j < n; j++)
        if (sum > 0.0)
            c->out[elem[j]] /= sum;
}

static void softmax_bwd_row(const wstruct *s, int lh, int64_t row, const int64_t *elem,
                            const int *keep, int n, void *vctx)
{
    sm_ctx *c = vctx; /* in = p, in2 = dp */
    double dot = 0.0;
    for (int j = 0; j < n; j++)
        dot += c->in[elem[j]] * c->in2[elem[j]];
    for (int j = 0; j < n; j++)
        c->out[elem[j]] = (c->in2[elem[j]] - dot) * c->in[elem[j]] * c->scale;
}

/* nn: y[q] = sum W[q, k] x[k] (y has seq_q rows); tn: y[k] = sum W[q, k] x[q]. */
static void ref_xn(const wstruct *s, int64_t dim, const double *w, const double *x, double *y,
                   int transposed)
{
    int B = s->block;
    int64_t yrows = transposed ? s->seq_k : s->seq_q, xrows = transposed ? s->seq_q : s->seq_k;
    memset(y, 0, (size_t)(s->batch * s->heads * yrows * dim) * sizeof(double));
    for (int b = 0; b < s->batch; b++)
        for (int h = 0; h < s->heads; h++) {
            int64_t first, last, base = w_base(s, b, h, &first, &last);
            const double *xh = x + ((int64_t)b * s->heads + h) * xrows * dim;
            double *yh = y + ((int64_t)b * s->heads + h) * yrows * dim;
            for (int64_t i = first; i < last; i++)
                for (int r = 0; r < B; r++)
                    for (int c = 0; c < B; c++) {
                        double wv = w[base + ((i - first) * B + r) * B + c];
                        int64_t qn = perm((int64_t)s->bq[i] * B + r, s->stride, s->seq_q);
                        int64_t kn = perm((int64_t)s->bk[i] * B + c, s->stride, s->seq_k);
                        int64_t yr = transposed ? kn : qn, xr = transposed ? qn : kn;
                        for (int64_t d = 0; d < dim; d++)
                            yh[yr * dim + d] += wv * xh[xr * dim + d];
                    }
        }
}

/* ------------------------------------------------ helpers */

static float *alloc_w(int64_t n)
{
    return tu_alloc(BSA_DTYPE_F32, n);
}

static void read_w(const float *w, double *out, int64_t n)
{
    tu_f32_to_f64(w, out, n);
}

static void check_w(const char *what, const double *got, const double *ref, int64_t n)
{
    int64_t bad = tu_count_nonfinite(got, n);
    double e = tu_rel_l2(got, ref, n);
    if (e > worst_w)
        worst_w = e;
    if (bad || !(e <= w_tol))
        fprintf(stderr, "%s: rel L2 %.2e (tol %.0e), %lld non-finite/unwritten\n", what, e, w_tol,
                (long long)bad);
    assert_int_equal(bad, 0);
    assert_true(e <= w_tol);
}

static void check_dense(const char *what, const tu_tensor *t, const double *ref)
{
    int64_t unwritten = tu_tensor_unwritten(t), gaps = tu_tensor_gaps_touched(t);
    double e = tu_rel_l2(t->val, ref, t->count);
    if (e > worst_y[t->dtype])
        worst_y[t->dtype] = e;
    if (unwritten || gaps || !(e <= dense_tol[t->dtype]))
        fprintf(stderr, "%s (%s): rel L2 %.2e (tol %.0e), unwritten %lld, gaps touched %lld\n",
                what, tu_dtype_name(t->dtype), e, dense_tol[t->dtype], (long long)unwritten,
                (long long)gaps);
    assert_int_equal(unwritten, 0);
    assert_int_equal(gaps, 0);
    assert_true(e <= dense_tol[t->dtype]);
}

static void check_fused(const char *what, const tu_tensor *unfused, const tu_tensor *fused)
{
    double e = tu_rel_l2(unfused->val, fused->val, fused->count);
    if (e > worst_fused[fused->dtype])
        worst_fused[fused->dtype] = e;
    if (!(e <= dense_tol[fused->dtype]))
        fprintf(stderr, "%s (%s): unfused vs fused rel L2 %.2e (tol %.0e)\n", what,
                tu_dtype_name(fused->dtype), e, dense_tol[fused->dtype]);
    assert_true(e <= dense_tol[fused->dtype]);
}

/* ------------------------------------------------ one layout, all ops */

static void run_ops(bsa_context_t ctx, bsa_layout_t lay, const cm_source *masks, const char *label,
                    bsa_dtype dt, int batch, int heads, int dim, ac_form form)
{
    ac_problem p;
    bsa_attn_desc d;
    expect_ok(ac_problem_init(&p, lay, masks, dt, batch, heads, dim, form, 0.0f, &d), label);
    bsa_plan_t plan = NULL;
    expect_ok(bsa_plan_create(ctx, &plan, &d, lay), label);
    wstruct s;
    wstruct_init(&s, lay, &p);
    int64_t elems = -1;
    expect_ok(bsa_sparse_weight_elems(plan, &elems), "weight elems");
    if (elems != s.elems)
        fprintf(stderr, "%s: bsa_sparse_weight_elems %lld, expected %lld\n", label,
                (long long)elems, (long long)s.elems);
    assert_int_equal(elems, s.elems);
    double scale = p.scale;

    float *w = alloc_w(elems), *pw = alloc_w(elems), *pu = alloc_w(elems), *dpw = alloc_w(elems),
          *dw = alloc_w(elems);
    double *wd = tu_xmalloc((size_t)elems * sizeof(double));
    double *ref = tu_xmalloc((size_t)elems * sizeof(double));
    double *pd = tu_xmalloc((size_t)elems * sizeof(double));
    double *dpd = tu_xmalloc((size_t)elems * sizeof(double));
    double *dwd = tu_xmalloc((size_t)elems * sizeof(double));
    double *yq = tu_xmalloc((size_t)p.q.count * sizeof(double));
    double *yk = tu_xmalloc((size_t)p.k.count * sizeof(double));
    char what[160];

    /* nt: w = q k^T */
    expect_ok(bsa_sparse_nt(plan, p.q.data, p.k.data, w, NULL), "nt");
    read_w(w, wd, elems);
    ref_nt(&s, dim, p.q.val, p.k.val, ref);
    snprintf(what, sizeof what, "%s nt", label);
    check_w(what, wd, ref, elems);

    /* softmax, plain and masked, on the library's w */
    sm_ctx sc = {wd, NULL, ref, scale, 0};
    for (int masked = 0; masked < 2; masked++) {
        float *out = masked ? pw : pu;
        expect_ok(bsa_sparse_softmax(plan, w, out, (float)scale, masked, NULL), "softmax");
        read_w(out, pd, elems);
        sc.masked = masked;
        for_rows(&s, softmax_row, &sc);
        snprintf(what, sizeof what, "%s softmax masked=%d", label, masked);
        check_w(what, pd, ref, elems);
    }
    read_w(pw, pd, elems);

    /* softmax backward on the masked p and a random dp */
    for (int64_t i = 0; i < elems; i++)
        dpw[i] = (float)tu_uniform(-1.0, 1.0);
    read_w(dpw, dpd, elems);
    expect_ok(bsa_sparse_softmax_backward(plan, pw, dpw, dw, (float)scale, NULL), "softmax bwd");
    read_w(dw, dwd, elems);
    sm_ctx bc = {pd, dpd, ref, scale, 1};
    for_rows(&s, softmax_bwd_row, &bc);
    snprintf(what, sizeof what, "%s softmax backward", label);
    check_w(what, dwd, ref, elems);

    /* nn and tn with a random W (masked elements included: raw products) */
    float *wr = alloc_w(elems);
    for (int64_t i = 0; i < elems; i++)
        wr[i] = (float)tu_uniform(-1.0, 1.0);
    read_w(wr, wd, elems);
    tu_tensor y = tu_tensor_new(dt, p.q.desc);
    expect_ok(bsa_sparse_nn(plan, wr, p.v.data, y.data, NULL), "nn");
    tu_tensor_read(&y);
    ref_xn(&s, dim, wd, p.v.val, yq, 0);
    snprintf(what, sizeof what, "%s nn", label);
    check_dense(what, &y, yq);
    tu_tensor yt = tu_tensor_new(dt, p.k.desc);
    expect_ok(bsa_sparse_tn(plan, wr, p.q.data, yt.data, NULL), "tn");
    tu_tensor_read(&yt);
    ref_xn(&s, dim, wd, p.q.val, yk, 1);
    snprintf(what, sizeof what, "%s tn", label);
    check_dense(what, &yt, yk);
    free(wr);

    /* composition: nt -> masked softmax -> nn == fused forward */
    ac_problem_oracle(&p);
    expect_ok(ac_forward(plan, &p, AC_WS_EXACT), "fused forward");
    expect_ok(ac_backward(plan, &p, AC_WS_EXACT), "fused backward");
    tu_tensor_poison(&y);
    expect_ok(bsa_sparse_nn(plan, pw, p.v.data, y.data, NULL), "nn(p, v)");
    tu_tensor_read(&y);
    snprintf(what, sizeof what, "%s nt>softmax>nn vs oracle", label);
    check_dense(what, &y, p.ref_o);
    snprintf(what, sizeof what, "%s nt>softmax>nn", label);
    check_fused(what, &y, &p.o);

    /* gradients: dP = nt(dO, V); dS = softmax_bwd(P, dP); dQ = nn(dS, K);
     * dK = tn(dS, Q); dV = tn(P, dO) */
    expect_ok(bsa_sparse_nt(plan, p.dout.data, p.v.data, dpw, NULL), "nt(dO, V)");
    expect_ok(bsa_sparse_softmax_backward(plan, pw, dpw, dw, (float)scale, NULL), "softmax bwd");
    tu_tensor_poison(&y);
    expect_ok(bsa_sparse_nn(plan, dw, p.k.data, y.data, NULL), "nn(dS, K)");
    tu_tensor_read(&y);
    snprintf(what, sizeof what, "%s dq vs oracle", label);
    check_dense(what, &y, p.ref_dq);
    snprintf(what, sizeof what, "%s dq", label);
    check_fused(what, &y, &p.dq);
    tu_tensor_poison(&yt);
    expect_ok(bsa_sparse_tn(plan, dw, p.q.data, yt.data, NULL), "tn(dS, Q)");
    tu_tensor_read(&yt);
    snprintf(what, sizeof what, "%s dk vs oracle", label);
    check_dense(what, &yt, p.ref_dk);
    snprintf(what, sizeof what, "%s dk", label);
    check_fused(what, &yt, &p.dk);
    tu_tensor_poison(&yt);
    expect_ok(bsa_sparse_tn(plan, pw, p.dout.data, yt.data, NULL), "tn(P, dO)");
    tu_tensor_read(&yt);
    snprintf(what, sizeof what, "%s dv vs oracle", label);
    check_dense(what, &yt, p.ref_dv);
    snprintf(what, sizeof what, "%s dv", label);
    check_fused(what, &yt, &p.dv);

    tu_tensor_free(&y);
    tu_tensor_free(&yt);
    free(w);
    free(pw);
    free(pu);
    free(dpw);
    free(dw);
    free(wd);
    free(ref);
    free(pd);
    free(dpd);
    free(dwd);
    free(yq);
    free(yk);
    wstruct_free(&s);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
}

static bsa_context_t new_ctx(void)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    expect_ok(bsa_context_create(&ctx, &cp), "context");
    return ctx;
}

/* ------------------------------------------------ cases */

/* Fixed with num_verts > 1: a per-head layout (different summary columns
 * per head), so each head's weight offset matters. */
static void test_fixed_per_head(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    for (int di = 0; di < 3; di++)
        for (int bidir = 0; bidir < 2; bidir++) {
            int heads = bidir ? 4 : 2;
            bsa_preset ps = {BSA_PATTERN_FIXED, 128, 8, heads, 32, heads, 1, bidir};
            bsa_layout_t lay = NULL;
            expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "fixed preset");
            bsa_layout_info info;
            expect_ok(bsa_layout_get_info(lay, &info), "info");
            assert_int_equal(info.heads, heads);
            cm_source masks = cm_of_preset(&ps);
            run_ops(ctx, lay, &masks, bidir ? "fixed nv=4 bidir" : "fixed nv=2", dtypes[di], 2,
                    heads, 16, (ac_form)((di + bidir) % 3));
            bsa_layout_destroy(lay);
        }
    bsa_context_destroy(ctx);
}

/* Shared layouts (heads = 1 broadcast over H) for every preset, including
 * the strided permutation. */
static void test_presets_shared(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    static const bsa_preset presets[] = {
        {BSA_PATTERN_ALL, 64, 16, 3, 0, 0, 0, 0},     {BSA_PATTERN_LOCAL, 96, 16, 3, 32, 0, 0, 0},
        {BSA_PATTERN_STRIDED, 64, 8, 3, 4, 0, 0, 0},  {BSA_PATTERN_STRIDED, 128, 16, 3, 4, 0, 0, 1},
        {BSA_PATTERN_FIXED, 128, 16, 3, 64, 1, 2, 0},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        bsa_layout_t lay = NULL;
        expect_ok(bsa_layout_create_preset(ctx, &lay, &presets[i]), "preset");
        char label[64];
        snprintf(label, sizeof label, "preset %d%s", (int)presets[i].pattern,
                 presets[i].bidirectional ? " bidir" : "");
        cm_source masks = cm_of_preset(&presets[i]);
        run_ops(ctx, lay, &masks, label, dtypes[i % 3], 1 + (int)(i % 2), 3, 8 * (1 + (int)i),
                (ac_form)(i % 3));
        bsa_layout_destroy(lay);
    }
    bsa_context_destroy(ctx);
}

static int cb_bits(void *user, int head, int qb, int kb, int bi, int block, uint8_t *mask)
{
    const int *dead = user;
    (void)bi;
    for (int r = 0; r < block; r++)
        for (int c = 0; c < block; c++) {
            int q = qb * block + r, k = kb * block + c;
            mask[r * block + c] = (uint8_t)(q != *dead && (q * 7 + k * 3 + head) % 5 != 0);
        }
    return 0;
}

/* Per-head random block layouts whose heads keep different block counts,
 * cross attention, and a callback with a fully masked query row. */
static void test_random_per_head(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    for (int it = 0; it < 6; it++) {
        int block = it % 2 ? 8 : 16, heads = 3, qb = tu_randint(2, 5), kb = tu_randint(2, 5);
        uint8_t *blocks = tu_xmalloc((size_t)heads * qb * kb);
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < qb * kb; i++)
                blocks[h * qb * kb + i] = tu_uniform(0.0, 1.0) < 0.3 + 0.2 * h;
        bsa_layout_desc ld = {block, heads, qb, kb, BSA_PRED_NONE, 0, 0};
        bsa_layout_t lay = NULL;
        int dead = tu_randint(0, qb * block);
        cm_source masks =
            it >= 3 ? cm_of_callback(&ld, blocks, cb_bits, &dead) : cm_of_dense(&ld, blocks);
        expect_ok(cm_create(ctx, &masks, &lay), it >= 3 ? "callback" : "dense");
        run_ops(ctx, lay, &masks, it >= 3 ? "random callback" : "random dense", dtypes[it % 3], 2,
                heads, 8 * tu_randint(1, 5), (ac_form)tu_randint(0, 3));
        bsa_layout_destroy(lay);
        free(blocks);
    }
    bsa_context_destroy(ctx);
}

static int report(void **state)
{
    (void)state;
    fprintf(stderr,
            "largest rel L2: weights (nt/softmax/softmax-bwd) %.2e; dense outputs vs double "
            "f32 %.2e f16 %.2e bf16 %.2e; unfused vs fused f32 %.2e f16 %.2e bf16 %.2e\n",
            worst_w, worst_y[0], worst_y[1], worst_y[2], worst_fused[0], worst_fused[1],
            worst_fused[2]);
    return 0;
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_per_head),
        cmocka_unit_test(test_presets_shared),
        cmocka_unit_test(test_random_per_head),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
