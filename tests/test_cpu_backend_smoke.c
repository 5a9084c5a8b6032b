/*
 * CPU backend self-consistency (the oracle tests live in test_cpu_attention):
 *  - the plain C product against a double-precision product, and oneDNN's
 *    (when built with it) against the same;
 *  - the fast exp2 against libm;
 *  - cpu-fused against cpu-reference, forward and backward, on every
 *    pattern, dtype and tensor form, with products narrow enough
 *    (BSA_CPU_CHUNK_COLS) that rows span several chunks and gathers;
 *  - the unfused ops composed (nt -> masked softmax -> nn, and the
 *    backward chain) against the fused passes;
 *  - identical bits with 1 and 2 threads (work is split per output row).
 * Fresh random inputs every run; outputs poisoned before every call.
 */
#include "attn_check.h"
#include "backends/cpu/cpu_internal.h"
#include "half.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const bsa_dtype dtypes[3] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16};
/* fused vs reference: both fp32 inside; f16/bf16 outputs may differ by one
 * rounding of the storage type (relative 4.9e-4 / 3.9e-3 per element). */
static const double tol_pair[3] = {1e-5, 2e-3, 1.5e-2};

static void ok(bsa_status st, const char *what)
{
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s: %s\n", what, bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
}

static bsa_context_t new_ctx(int threads)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, threads};
    ok(bsa_context_create(&ctx, &cp), "context");
    return ctx;
}

/* ------------------------------------------------------------ products */

static void ref_gemm(int ta, int tb, int m, int n, int k, double alpha, const float *a, int lda,
                     const float *b, int ldb, double beta, const float *c0, int ldc, double *out)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int kk = 0; kk < k; kk++)
                s += (double)(ta ? a[kk * lda + i] : a[i * lda + kk]) *
                     (double)(tb ? b[j * ldb + kk] : b[kk * ldb + j]);
            out[i * n + j] = alpha * s + (beta != 0.0 ? beta * c0[i * ldc + j] : 0.0);
        }
}

static void test_gemm(void **state)
{
    (void)state;
    for (int rep = 0; rep < 40; rep++) {
        int ta = rep & 1, tb = (rep >> 1) & 1;
        int m = tu_randint(1, 70), n = tu_randint(1, 300), k = tu_randint(1, 90);
        int lda = (ta ? m : k) + tu_randint(0, 5), ldb = (tb ? k : n) + tu_randint(0, 5);
        int ldc = n + tu_randint(0, 5);
        float alpha = (float)tu_uniform(-2, 2);
        float beta = rep % 3 == 0 ? 0.0f : (float)tu_uniform(-1, 1);
        int arows = ta ? k : m, brows = tb ? n : k;
        float *a = tu_xmalloc((size_t)arows * lda * sizeof(float));
        float *b = tu_xmalloc((size_t)brows * ldb * sizeof(float));
        float *c0 = tu_xmalloc((size_t)m * ldc * sizeof(float));
        float *c = tu_xmalloc((size_t)m * ldc * sizeof(float));
        double *ref = tu_xmalloc((size_t)m * n * sizeof(double));
        double *got = tu_xmalloc((size_t)m * n * sizeof(double));
        for (int i = 0; i < arows * lda; i++)
            a[i] = (float)tu_uniform(-1, 1);
        for (int i = 0; i < brows * ldb; i++)
            b[i] = (float)tu_uniform(-1, 1);
        for (int i = 0; i < m * ldc; i++)
            c0[i] = beta == 0.0f ? NAN : (float)tu_uniform(-1, 1); /* beta 0 must not read C */
        ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc, ref);
        for (int which = 0; which < 2; which++) {
            memcpy(c, c0, (size_t)m * ldc * sizeof(float));
            if (which)
                bsa_cpu_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            else
                bsa_cpu_gemm_c(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    got[i * n + j] = c[i * ldc + j];
            double e = tu_rel_l2(got, ref, (int64_t)m * n);
            if (!(e < 1e-6))
                fprintf(stderr, "gemm %s ta=%d tb=%d m=%d n=%d k=%d: rel err %.2e\n",
                        which ? "dispatch" : "plain C", ta, tb, m, n, k, e);
            assert_true(e < 1e-6);
        }
        free(a);
        free(b);
        free(c0);
        free(c);
        free(ref);
        free(got);
    }
}

static void test_exp2(void **state)
{
    (void)state;
    double worst = 0;
    for (int i = 0; i < 200000; i++) {
        float x = (float)tu_uniform(-126, 20);
        double r = exp2((double)x), g = bsa_cpu_exp2(x);
        double e = fabs(g - r) / r;
        if (e > worst)
            worst = e;
    }
    printf("fast exp2: worst relative error %.2e on [-126, 20)\n", worst);
    assert_true(worst < 3e-7);
    assert_true(bsa_cpu_exp2(-INFINITY) == 0.0f);
    assert_true(bsa_cpu_exp2(-127.5f) == 0.0f);
    assert_true(bsa_cpu_exp2(0.0f) == 1.0f);
}

/* The row conversion (F16C where present) must give half.h's bits. */
static void test_f16_store_bits(void **state)
{
    (void)state;
    enum { N = 1 << 16 };
    float *in = tu_xmalloc(N * sizeof(float));
    uint16_t *got = tu_xmalloc(N * sizeof(uint16_t));
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)tu_next();
        switch (i % 4) {
        case 0: /* anything, NaN and inf included */
            break;
        case 1: /* around the f16 range: normals, subnormals, overflow */
            u = (u & 0x80000000u) | ((uint32_t)tu_randint(0x30000000, 0x47ffffff) & 0x7fffffffu);
            break;
        case 2: /* exact ties of f16 rounding (low 13 bits = 0x1000) */
            u = (u & 0xbfffe000u) | 0x1000u;
            break;
        default: /* f16 subnormal range */
            u = (u & 0x80000000u) | ((uint32_t)tu_randint(0x33000000, 0x38800000));
            break;
        }
        memcpy(&in[i], &u, 4);
    }
    for (int n = 1; n <= 19; n += 6) /* row tails */
        bsa_cpu_f32_to_f16_row(got, in, n);
    bsa_cpu_f32_to_f16_row(got, in, N);
    int64_t bad = 0;
    for (int i = 0; i < N; i++)
        if (got[i] != bsa_f32_to_f16(in[i]) && bad++ < 5)
            fprintf(stderr, "f16 of %a: got %04x, half.h %04x\n", in[i], got[i],
                    bsa_f32_to_f16(in[i]));
    assert_int_equal(bad, 0);
    free(in);
    free(got);
}

/* ------------------------------------------------------ fused vs others */

typedef struct layout_case {
    const char *name;
    bsa_preset ps;  /* used unless dense */
    int dense;      /* random block matrix with gaps, 2 layout heads */
    unsigned preds; /* dense: predicates (they take the interval fast path) */
    int window, prefix;
} layout_case;

/* The same layout in ctx and, if ctx2 is not NULL, in ctx2 (*lay2). */
static bsa_layout_t make_layout2(bsa_context_t ctx, bsa_context_t ctx2, const layout_case *c,
                                 int heads, bsa_layout_t *lay2)
{
    bsa_layout_t lay = NULL;
    if (!c->dense) {
        bsa_preset ps = c->ps;
        ps.heads = heads;
        ok(bsa_layout_create_preset(ctx, &lay, &ps), c->name);
        if (ctx2)
            ok(bsa_layout_create_preset(ctx2, lay2, &ps), c->name);
        return lay;
    }
    bsa_layout_desc d;
    memset(&d, 0, sizeof d);
    d.block = 16;
    d.heads = heads;
    d.q_blocks = 12;
    d.k_blocks = 10;
    d.predicates = c->preds;
    d.window = c->window;
    d.prefix = c->prefix;
    uint8_t *m = tu_xmalloc((size_t)heads * 12 * 10);
    for (int i = 0; i < heads * 120; i++)
        m[i] = tu_uniform(0, 1) < 0.45;
    m[5 * 10 + 3] = 0; /* keep at least an empty spot and a gap */
    ok(bsa_layout_create_dense(ctx, &lay, &d, m), c->name);
    if (ctx2)
        ok(bsa_layout_create_dense(ctx2, lay2, &d, m), c->name);
    free(m);
    return lay;
}

static bsa_layout_t make_layout(bsa_context_t ctx, const layout_case *c, int heads)
{
    return make_layout2(ctx, NULL, c, heads, NULL);
}

static layout_case cases[] = {
    {"all", {BSA_PATTERN_ALL, 256, 16, 2, 0, 0, 0, 0}, 0},
    {"all-bidir", {BSA_PATTERN_ALL, 128, 32, 2, 0, 0, 0, 1}, 0},
    {"local", {BSA_PATTERN_LOCAL, 256, 16, 2, 48, 0, 0, 0}, 0},
    {"strided", {BSA_PATTERN_STRIDED, 256, 16, 2, 4, 0, 0, 0}, 0},
    {"fixed", {BSA_PATTERN_FIXED, 256, 16, 2, 64, 2, 1, 0}, 0},
    {"dense-random", {0}, 1, 0, 0, 0},
    {"dense-causal-window", {0}, 1, BSA_PRED_CAUSAL | BSA_PRED_WINDOW, 21, 0},
    {"dense-window", {0}, 1, BSA_PRED_WINDOW, 37, 0},
    {"dense-prefix", {0}, 1, BSA_PRED_PREFIX, 0, 45},
    {"dense-causal-prefix", {0}, 1, BSA_PRED_CAUSAL | BSA_PRED_PREFIX, 0, 29},
};

static void fill_tensors(ac_problem *p)
{
    tu_tensor_random(&p->q, -1, 1);
    tu_tensor_random(&p->k, -1, 1);
    tu_tensor_random(&p->v, -1, 1);
    tu_tensor_random(&p->dout, -1, 1);
}

typedef struct run_out {
    double *o, *dq, *dk, *dv, *lse;
} run_out;

static void snap(const tu_tensor *t, double **dst)
{
    *dst = tu_xmalloc((size_t)t->count * sizeof(double));
    memcpy(*dst, t->val, (size_t)t->count * sizeof(double));
}

static run_out run_both(bsa_plan_t plan, ac_problem *p, ac_ws ws)
{
    run_out r;
    ok(ac_forward(plan, p, ws), "forward");
    ok(ac_backward(plan, p, ws), "backward");
    assert_int_equal(tu_tensor_unwritten(&p->o), 0);
    assert_int_equal(tu_tensor_unwritten(&p->dq), 0);
    assert_int_equal(tu_tensor_unwritten(&p->dk), 0);
    assert_int_equal(tu_tensor_unwritten(&p->dv), 0);
    assert_int_equal(tu_tensor_gaps_touched(&p->o), 0);
    snap(&p->o, &r.o);
    snap(&p->dq, &r.dq);
    snap(&p->dk, &r.dk);
    snap(&p->dv, &r.dv);
    r.lse = tu_xmalloc((size_t)p->n_lse * sizeof(double));
    tu_f32_to_f64(p->lse, r.lse, p->n_lse);
    return r;
}

static void free_out(run_out *r)
{
    free(r->o);
    free(r->dq);
    free(r->dk);
    free(r->dv);
    free(r->lse);
}

/* lse rows may be -inf in both: compare the finite ones. */
static double lse_err(const double *a, const double *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isinf(a[i]) || isinf(b[i])) {
            if (a[i] != b[i])
                return INFINITY;
            continue;
        }
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_fused_vs_reference(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx(0);
    setenv("BSA_CPU_CHUNK_COLS", "48", 1); /* several chunks per row */
    for (int grouped = 0; grouped < 2; grouped++)
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
            for (int di = 0; di < 3; di++) {
                /* forward query tiles of one block, or of 64 / block blocks */
                setenv("BSA_CPU_GROUP", grouped ? "1" : "0", 1);
                int heads = 2;
                /* f16/bf16: both the per-use conversion and the fp32 images */
                setenv("BSA_CPU_PRECONVERT", (ci + di) % 2 ? "1" : "0", 1);
                bsa_layout_t lay = make_layout(ctx, &cases[ci], heads);
                ac_problem p;
                bsa_attn_desc d;
                ac_form form = (ac_form)((ci + di) % 3);
                /* implementations against each other: no oracle, no mask source */
                ok(ac_problem_init(&p, lay, NULL, dtypes[di], 2, heads, 24 + 8 * di, form, 0.0f,
                                   &d),
                   "init");
                fill_tensors(&p);
                bsa_plan_t fused = NULL, ref = NULL;
                ok(bsa_plan_create(ctx, &fused, &d, lay), "plan fused");
                d.flags = BSA_PLAN_FORCE_REFERENCE;
                ok(bsa_plan_create(ctx, &ref, &d, lay), "plan reference");
                const char *nf = NULL, *nr = NULL;
                ok(bsa_plan_implementation(fused, &nf), "impl");
                ok(bsa_plan_implementation(ref, &nr), "impl");
                assert_string_equal(nf, "cpu-fused");
                assert_string_equal(nr, "cpu-reference");

                run_out a = run_both(fused, &p, AC_WS_EXACT);
                run_out b = run_both(ref, &p, AC_WS_NULL);
                double e[5] = {tu_rel_l2(a.o, b.o, p.o.count), lse_err(a.lse, b.lse, p.n_lse),
                               tu_rel_l2(a.dq, b.dq, p.dq.count), tu_rel_l2(a.dk, b.dk, p.dk.count),
                               tu_rel_l2(a.dv, b.dv, p.dv.count)};
                int bad = 0;
                for (int i = 0; i < 5; i++)
                    bad |= !(e[i] < (i == 1 ? 1e-5 : tol_pair[di]));
                if (bad)
                    fprintf(stderr,
                            "%s %s %s grouped=%d: o %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n",
                            cases[ci].name, tu_dtype_name(dtypes[di]), ac_form_name(form), grouped,
                            e[0], e[1], e[2], e[3], e[4]);
                assert_false(bad);
                free_out(&a);
                free_out(&b);
                bsa_plan_destroy(fused);
                bsa_plan_destroy(ref);
                ac_problem_free(&p);
                bsa_layout_destroy(lay);
            }
    unsetenv("BSA_CPU_CHUNK_COLS");
    unsetenv("BSA_CPU_PRECONVERT");
    unsetenv("BSA_CPU_GROUP");
    bsa_context_destroy(ctx);
}

/* Typed dense tensor shaped like t, poisoned. */
static tu_tensor like(const tu_tensor *t)
{
    return tu_tensor_new(t->dtype, t->desc);
}

static void test_unfused_composition(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx(0);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int di = 0; di < 2; di++) {
            int heads = 2;
            bsa_layout_t lay = make_layout(ctx, &cases[ci], heads);
            ac_problem p;
            bsa_attn_desc d;
            ok(ac_problem_init(&p, lay, NULL, dtypes[di], 2, heads, 32, AC_BHTD, 0.0f, &d), "init");
            fill_tensors(&p);
            bsa_plan_t plan = NULL;
            ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
            run_out f = run_both(plan, &p, AC_WS_NULL);

            int64_t n = 0;
            ok(bsa_sparse_weight_elems(plan, &n), "weight elems");
            float *w = tu_xmalloc((size_t)n * sizeof(float));
            float *pr = tu_xmalloc((size_t)n * sizeof(float));
            float *dp = tu_xmalloc((size_t)n * sizeof(float));
            float *ds = tu_xmalloc((size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++)
                w[i] = pr[i] = dp[i] = ds[i] = NAN;
            tu_tensor y = like(&p.o), gq = like(&p.q), gk = like(&p.k), gv = like(&p.v);
            float scale = p.scale;
            ok(bsa_sparse_nt(plan, p.q.data, p.k.data, w, NULL), "nt");
            ok(bsa_sparse_softmax(plan, w, pr, scale, 1, NULL), "softmax");
            ok(bsa_sparse_nn(plan, pr, p.v.data, y.data, NULL), "nn");
            ok(bsa_sparse_nt(plan, p.dout.data, p.v.data, dp, NULL), "nt dP");
            ok(bsa_sparse_softmax_backward(plan, pr, dp, ds, scale, NULL), "softmax bwd");
            ok(bsa_sparse_nn(plan, ds, p.k.data, gq.data, NULL), "nn dQ");
            ok(bsa_sparse_tn(plan, ds, p.q.data, gk.data, NULL), "tn dK");
            ok(bsa_sparse_tn(plan, pr, p.dout.data, gv.data, NULL), "tn dV");
            for (int64_t i = 0; i < n; i++)
                assert_false(isnan(w[i]) || isnan(pr[i]) || isnan(ds[i]));
            tu_tensor_read(&y);
            tu_tensor_read(&gq);
            tu_tensor_read(&gk);
            tu_tensor_read(&gv);
            assert_int_equal(tu_tensor_unwritten(&y), 0);
            assert_int_equal(tu_tensor_unwritten(&gk), 0);
            double e[4] = {tu_rel_l2(y.val, f.o, y.count), tu_rel_l2(gq.val, f.dq, gq.count),
                           tu_rel_l2(gk.val, f.dk, gk.count), tu_rel_l2(gv.val, f.dv, gv.count)};
            int bad = 0;
            for (int i = 0; i < 4; i++)
                bad |= !(e[i] < tol_pair[di]);
            if (bad)
                fprintf(stderr, "unfused %s %s: o %.2e dq %.2e dk %.2e dv %.2e\n", cases[ci].name,
                        tu_dtype_name(dtypes[di]), e[0], e[1], e[2], e[3]);
            assert_false(bad);
            tu_tensor_free(&y);
            tu_tensor_free(&gq);
            tu_tensor_free(&gk);
            tu_tensor_free(&gv);
            free(w);
            free(pr);
            free(dp);
            free(ds);
            free_out(&f);
            bsa_plan_destroy(plan);
            ac_problem_free(&p);
            bsa_layout_destroy(lay);
        }
    bsa_context_destroy(ctx);
}

static void test_threads_same_bits(void **state)
{
    (void)state;
    bsa_context_t c1 = new_ctx(1), c2 = new_ctx(2);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        bsa_layout_t lay2 = NULL;
        bsa_layout_t lay = make_layout2(c1, c2, &cases[ci], 2, &lay2);
        ac_problem p;
        bsa_attn_desc d;
        ok(ac_problem_init(&p, lay, NULL, BSA_DTYPE_F32, 2, 2, 64, AC_BTHD, 0.0f, &d), "init");
        fill_tensors(&p);
        bsa_plan_t a = NULL, b = NULL;
        ok(bsa_plan_create(c1, &a, &d, lay), "plan 1 thread");
        ok(bsa_plan_create(c2, &b, &d, lay2), "plan 2 threads");
#ifdef _OPENMP
        int before = omp_get_max_threads();
#endif
        run_out x = run_both(a, &p, AC_WS_EXACT);
        run_out y = run_both(b, &p, AC_WS_EXACT);
#ifdef _OPENMP
        /* the backend keeps oneDNN single-threaded inside its regions
         * without changing the caller's thread count */
        assert_int_equal(before, omp_get_max_threads());
#endif
        assert_memory_equal(x.o, y.o, (size_t)p.o.count * sizeof(double));
        assert_memory_equal(x.lse, y.lse, (size_t)p.n_lse * sizeof(double));
        assert_memory_equal(x.dq, y.dq, (size_t)p.dq.count * sizeof(double));
        assert_memory_equal(x.dk, y.dk, (size_t)p.dk.count * sizeof(double));
        assert_memory_equal(x.dv, y.dv, (size_t)p.dv.count * sizeof(double));
        free_out(&x);
        free_out(&y);
        bsa_plan_destroy(a);
        bsa_plan_destroy(b);
        ac_problem_free(&p);
        bsa_layout_destroy(lay);
        bsa_layout_destroy(lay2);
    }
    bsa_context_destroy(c1);
    bsa_context_destroy(c2);
}

/* A workspace at an odd address (exactly the size asked for) gives the
 * same bits as one the library allocates itself. */
static void test_misaligned_workspace(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx(0);
    bsa_layout_t lay = make_layout(ctx, &cases[0], 2);
    ac_problem p;
    bsa_attn_desc d;
    ok(ac_problem_init(&p, lay, NULL, BSA_DTYPE_F16, 1, 2, 40, AC_BTHD, 0.0f, &d), "init");
    fill_tensors(&p);
    bsa_plan_t plan = NULL;
    ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
    run_out a = run_both(plan, &p, AC_WS_NULL);
    size_t bytes = 0;
    ok(bsa_plan_workspace_size(plan, &bytes), "workspace size");
    char *raw = tu_xmalloc(bytes + 1);
    memset(raw, 0xff, bytes + 1); /* NaN-ish garbage: nothing may read it first */
    tu_tensor_poison(&p.o);
    bsa_fwd_args fa = {p.q.data, p.k.data, p.v.data, p.o.data, p.lse};
    ok(bsa_forward(plan, &fa, raw + 1, bytes, NULL), "forward, odd workspace");
    tu_tensor_read(&p.o);
    assert_memory_equal(a.o, p.o.val, (size_t)p.o.count * sizeof(double));
    tu_tensor_poison(&p.dk);
    bsa_bwd_args ba = {p.q.data,    p.k.data,  p.v.data,  p.o.data, p.lse,
                       p.dout.data, p.dq.data, p.dk.data, p.dv.data};
    ok(bsa_backward(plan, &ba, raw + 1, bytes, NULL), "backward, odd workspace");
    tu_tensor_read(&p.dk);
    assert_memory_equal(a.dk, p.dk.val, (size_t)p.dk.count * sizeof(double));
    free(raw);
    free_out(&a);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_exp2),
        cmocka_unit_test(test_f16_store_bits),
        cmocka_unit_test(test_fused_vs_reference),
        cmocka_unit_test(test_unfused_composition),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_misaligned_workspace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
