/*
 * Finite-difference check of the CPU backward on tiny f32 problems.
 *
 * L(q, k, v) = sum(O * dout).  For a few random coordinates x of q, k and v:
 *  (a) dL/dx by central differences of the double oracle's loss (step 1e-4:
 *      truncation O(h^2) ~ 1e-8, roundoff ~ 1e-16 / 1e-4 = 1e-12), against
 *      the library's dq/dk/dv (fp32: relative error ~1e-6), tolerance 1e-4
 *      of the gradient's scale;
 *  (b) dL/dx by central differences of the library's own forward (fp32
 *      outputs summed in double, step 2^-7), against the same gradients:
 *      this ties the backward to the forward without the oracle at all.
 *      O's fp32 rounding (~6e-8 relative over ~10^3 terms) over a step of
 *      2^-6 gives ~1e-4 absolute; tolerance 5e-3 of the gradient's scale.
 * The gradient's scale is the RMS of the whole gradient tensor, so a near
 * zero coordinate is not judged by a relative error.
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

static void expect_ok(bsa_status st, const char *what)
{
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s: %s\n", what, bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
}

static double rms(const double *x, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += x[i] * x[i];
    return sqrt(s / (double)n);
}

/* sum(O * dout) from the library's forward on the current buffers. */
static double library_loss(bsa_plan_t plan, ac_problem *p)
{
    expect_ok(ac_forward(plan, p, AC_WS_NULL), "forward");
    double s = 0.0;
    for (int64_t i = 0; i < p->o.count; i++)
        s += p->o.val[i] * p->dout.val[i];
    return s;
}

static double worst_oracle, worst_self;

/* Checks n random coordinates of one input tensor x against grad g. */
static void check_tensor(bsa_plan_t plan, ac_problem *p, tu_tensor *x, const tu_tensor *g,
                         const double *ref, const char *name, int n)
{
    double scale = rms(g->val, g->count);
    assert_true(scale > 0.0); /* a zero gradient would make the test vacuous */
    const bsa_tensor_desc *d = &x->desc;
    for (int it = 0; it < n; it++) {
        int64_t idx = (int64_t)(tu_next() % (uint64_t)x->count);
        /* natural index -> (b, h, t, c) -> buffer offset */
        int64_t c = idx % d->dims[3], t = idx / d->dims[3] % d->dims[2];
        int64_t h = idx / (d->dims[3] * d->dims[2]) % d->dims[1];
        int64_t b = idx / (d->dims[3] * d->dims[2] * d->dims[1]);
        int64_t off = tu_desc_offset(d, b, h, t, c);
        double x0 = x->val[idx];

        /* (a) the oracle's loss, exact double perturbation */
        const double h1 = 1e-4;
        x->val[idx] = x0 + h1;
        double lp = oracle_loss(&p->op, p->q.val, p->k.val, p->v.val, p->dout.val);
        x->val[idx] = x0 - h1;
        double lm = oracle_loss(&p->op, p->q.val, p->k.val, p->v.val, p->dout.val);
        x->val[idx] = x0;
        double fd = (lp - lm) / (2.0 * h1);
        double ea = fabs(g->val[idx] - fd) / scale;
        /* the oracle's analytic backward against its own derivative */
        double eo = fabs(ref[idx] - fd) / scale;

        /* (b) the library's own forward: perturb the fp32 buffer and use
         * the step that fp32 actually represents */
        const double h2 = 1.0 / 128.0;
        tu_set(BSA_DTYPE_F32, x->data, off, x0 + h2);
        double xp = tu_get(BSA_DTYPE_F32, x->data, off);
        double sp = library_loss(plan, p);
        tu_set(BSA_DTYPE_F32, x->data, off, x0 - h2);
        double xm = tu_get(BSA_DTYPE_F32, x->data, off);
        double sm = library_loss(plan, p);
        tu_set(BSA_DTYPE_F32, x->data, off, x0);
        double fd2 = (sp - sm) / (xp - xm);
        double eb = fabs(g->val[idx] - fd2) / scale;

        if (ea > worst_oracle)
            worst_oracle = ea;
        if (eb > worst_self)
            worst_self = eb;
        if (!(ea <= 1e-4 && eb <= 5e-3 && eo <= 1e-6))
            fprintf(stderr,
                    "d%s[%lld] (b%lld h%lld t%lld c%lld): library %.8f, oracle FD %.8f, "
                    "library FD %.8f, oracle analytic %.8f (scale %.3e)\n",
                    name, (long long)idx, (long long)b, (long long)h, (long long)t, (long long)c,
                    g->val[idx], fd, fd2, ref[idx], scale);
        assert_true(ea <= 1e-4);
        assert_true(eb <= 5e-3);
        assert_true(eo <= 1e-6);
    }
}

static void gradcheck(bsa_context_t ctx, bsa_layout_t lay, const cm_source *masks, int batch,
                      int heads, int dim, ac_form form, float scale)
{
    ac_problem p;
    bsa_attn_desc d;
    expect_ok(ac_problem_init(&p, lay, masks, BSA_DTYPE_F32, batch, heads, dim, form, scale, &d),
              "init");
    bsa_plan_t plan = NULL;
    expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
    expect_ok(ac_forward(plan, &p, AC_WS_EXACT), "forward");
    expect_ok(ac_backward(plan, &p, AC_WS_EXACT), "backward");
    /* also the oracle's own backward must match its finite differences */
    ac_problem_oracle(&p);
    ac_errors e;
    ac_compare(&p, 1, &e);
    assert_int_equal(e.nonfinite, 0);
    assert_int_equal(e.unwritten, 0);
    check_tensor(plan, &p, &p.q, &p.dq, p.ref_dq, "q", 6);
    check_tensor(plan, &p, &p.k, &p.dk, p.ref_dk, "k", 6);
    check_tensor(plan, &p, &p.v, &p.dv, p.ref_dv, "v", 6);
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

static void test_presets(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    static const bsa_pattern pats[] = {BSA_PATTERN_ALL, BSA_PATTERN_LOCAL, BSA_PATTERN_STRIDED,
                                       BSA_PATTERN_FIXED};
    for (int i = 0; i < 4; i++)
        for (int bidir = 0; bidir < 2; bidir++) {
            bsa_preset ps = {pats[i], 32, 8, 2, 0, 0, 0, bidir};
            if (pats[i] == BSA_PATTERN_LOCAL)
                ps.ctx = 16;
            if (pats[i] == BSA_PATTERN_STRIDED)
                ps.ctx = 4; /* seq / 4 = 8: one block per residue class */
            if (pats[i] == BSA_PATTERN_FIXED) {
                ps.ctx = 16;
                ps.num_verts = 2;
                ps.vertsize = 1;
            }
            bsa_layout_t lay = NULL;
            expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "preset");
            cm_source masks = cm_of_preset(&ps);
            gradcheck(ctx, lay, &masks, 1, 2, 8 + 8 * bidir, (ac_form)(i % 3), 0.0f);
            bsa_layout_destroy(lay);
        }
    bsa_context_destroy(ctx);
}

static int half_callback(void *user, int head, int qb, int kb, int bi, int block, uint8_t *mask)
{
    (void)user;
    (void)bi;
    for (int r = 0; r < block; r++)
        for (int c = 0; c < block; c++) {
            int q = qb * block + r, k = kb * block + c;
            /* query 3 sees nothing; otherwise a head-dependent checkerboard */
            mask[r * block + c] = (uint8_t)(q != 3 && ((q + k + head) % 3 != 0));
        }
    return 0;
}

/* Cross attention with a callback mask, an empty query row and an explicit scale. */
static void test_cross_callback(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    uint8_t blocks[2 * 2 * 3] = {1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1};
    bsa_layout_desc ld = {8, 2, 2, 3, BSA_PRED_NONE, 0, 0};
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_callback(ctx, &lay, &ld, blocks, half_callback, NULL), "callback");
    cm_source masks = cm_of_callback(&ld, blocks, half_callback, NULL);
    gradcheck(ctx, lay, &masks, 2, 2, 16, AC_PADDED, 0.6f);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

static int report(void **state)
{
    (void)state;
    fprintf(stderr,
            "largest |grad - FD| / rms(grad): oracle-loss FD %.2e (tol 1e-4), library-forward "
            "FD %.2e (tol 5e-3)\n",
            worst_oracle, worst_self);
    return 0;
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_cross_callback),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
