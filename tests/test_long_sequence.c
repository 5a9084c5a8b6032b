/*
 * A long sequence (T = 131072) with sparse patterns, checked on sampled
 * rows: a full dense oracle would need T^2 work, so the test recomputes, in
 * double precision and straight from the patterns' element-level definitions
 * (not from the library's layout), the output, lse and dq of sampled query
 * rows and the dv of sampled key rows.  It checks that nothing in the CPU
 * path is quadratic in T or breaks at long sequences (strided rows are
 * addressed through the permutation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { T = 131072, H = 2, D = 32, SAMPLES = 24 };

typedef struct pattern {
    bsa_pattern kind;
    int block, ctx;
} pattern;

/* Visible keys of query q by the seed's definitions (README, "Patterns"),
 * causal: local 0 <= q-k < L; strided k <= q, (q-k) mod L == 0.  Both are
 * arithmetic progressions ending at q: first key and step. */
static void keys_of(const pattern *p, int64_t q, int64_t *first, int64_t *step)
{
    if (p->kind == BSA_PATTERN_LOCAL) {
        *first = q - p->ctx + 1 > 0 ? q - p->ctx + 1 : 0;
        *step = 1;
    } else {
        *first = q % p->ctx;
        *step = p->ctx;
    }
}

/* Queries that see key k: the mirror progression, starting at k. */
static void queries_of(const pattern *p, int64_t k, int64_t *last, int64_t *step)
{
    if (p->kind == BSA_PATTERN_LOCAL) {
        *last = k + p->ctx - 1 < T - 1 ? k + p->ctx - 1 : T - 1;
        *step = 1;
    } else {
        *last = k + (T - 1 - k) / p->ctx * p->ctx;
        *step = p->ctx;
    }
}

typedef struct problem {
    float *q, *k, *v, *o, *dout, *dq, *dk, *dv, *lse;
    double scale;
} problem;

static double dot(const float *a, const float *b)
{
    double s = 0;
    for (int x = 0; x < D; x++)
        s += (double)a[x] * b[x];
    return s;
}

/* row t of head h in [batch=1, time, heads*dim] */
static float *row(float *base, int64_t t, int h)
{
    return base + (t * H + h) * D;
}

/* Double forward and dq of one query row; returns lse. */
static double ref_row(const pattern *p, const problem *pr, int64_t t, int h, double *o, double *dq)
{
    int64_t first, step;
    keys_of(p, t, &first, &step);
    double m = -INFINITY, l = 0, delta = 0;
    for (int64_t k = first; k <= t; k += step) {
        double s = dot(row(pr->q, t, h), row(pr->k, k, h)) * pr->scale;
        m = s > m ? s : m;
    }
    memset(o, 0, sizeof(double) * D);
    for (int64_t k = first; k <= t; k += step) {
        double e = exp(dot(row(pr->q, t, h), row(pr->k, k, h)) * pr->scale - m);
        l += e;
        for (int x = 0; x < D; x++)
            o[x] += e * row(pr->v, k, h)[x];
    }
    for (int x = 0; x < D; x++)
        o[x] /= l;
    double lse = m + log(l);
    if (dq) {
        memset(dq, 0, sizeof(double) * D);
        for (int64_t k = first; k <= t; k += step) {
            double pk = exp(dot(row(pr->q, t, h), row(pr->k, k, h)) * pr->scale - lse);
            delta += pk * dot(row(pr->dout, t, h), row(pr->v, k, h));
        }
        for (int64_t k = first; k <= t; k += step) {
            double pk = exp(dot(row(pr->q, t, h), row(pr->k, k, h)) * pr->scale - lse);
            double ds = pk * (dot(row(pr->dout, t, h), row(pr->v, k, h)) - delta) * pr->scale;
            for (int x = 0; x < D; x++)
                dq[x] += ds * row(pr->k, k, h)[x];
        }
    }
    return lse;
}

typedef struct errsum {
    double err, ref;
} errsum;

static void acc(errsum *e, const float *got, const double *want)
{
    for (int x = 0; x < D; x++) {
        double d = got[x] - want[x];
        e->err += d * d, e->ref += want[x] * want[x];
    }
}

static double rel(const errsum *e)
{
    return sqrt(e->err / e->ref);
}

static void check_pattern(bsa_context_t ctx, const pattern *p)
{
    bsa_layout_t lay;
    assert_int_equal(bsa_layout_create_preset(
                         ctx, &lay, &(bsa_preset){p->kind, T, p->block, H, p->ctx, 0, 0, 0}),
                     BSA_SUCCESS);
    bsa_attn_desc d = {BSA_DTYPE_F32};
    d.q = d.k = d.v = d.o = bsa_tensor_bthd(1, T, H, D);
    bsa_plan_t plan;
    assert_int_equal(bsa_plan_create(ctx, &plan, &d, lay), BSA_SUCCESS);

    size_t n = (size_t)T * H * D;
    problem pr = {0};
    float **bufs[] = {&pr.q, &pr.k, &pr.v, &pr.o, &pr.dout, &pr.dq, &pr.dk, &pr.dv};
    for (int i = 0; i < 8; i++) {
        *bufs[i] = tu_xmalloc(n * sizeof(float));
        if (i == 3 || i >= 5) /* outputs: o, dq, dk, dv */
            tu_poison(BSA_DTYPE_F32, *bufs[i], (int64_t)n);
        else
            for (size_t j = 0; j < n; j++)
                (*bufs[i])[j] = (float)tu_uniform(-1, 1);
    }
    pr.lse = tu_xmalloc(sizeof(float) * T * H);
    tu_poison(BSA_DTYPE_F32, pr.lse, (int64_t)T * H);
    pr.scale = 1.0 / sqrt((double)D);

    assert_int_equal(
        bsa_forward(plan, &(bsa_fwd_args){pr.q, pr.k, pr.v, pr.o, pr.lse}, NULL, 0, NULL),
        BSA_SUCCESS);
    assert_int_equal(
        bsa_backward(plan,
                     &(bsa_bwd_args){pr.q, pr.k, pr.v, pr.o, pr.lse, pr.dout, pr.dq, pr.dk, pr.dv},
                     NULL, 0, NULL),
        BSA_SUCCESS);
    for (size_t j = 0; j < n; j++)
        if (!isfinite(pr.o[j]) || !isfinite(pr.dq[j]) || !isfinite(pr.dk[j]) || !isfinite(pr.dv[j]))
            fail_msg("element %zu not written or not finite", j);

    errsum eo = {0}, edq = {0}, edv = {0};
    double o[D], dq[D];
    for (int smp = 0; smp < SAMPLES; smp++) {
        /* the very end of the sequence is always sampled */
        int64_t t = smp == 0 ? T - 1 : (int64_t)tu_randint(0, T);
        int h = smp % H;
        double lse = ref_row(p, &pr, t, h, o, dq);
        acc(&eo, row(pr.o, t, h), o);
        acc(&edq, row(pr.dq, t, h), dq);
        assert_true(fabs(pr.lse[(int64_t)h * T + t] - lse) < 1e-4 * (1 + fabs(lse)));

        /* dv of key row t: sum over the queries that see it of P * dout */
        double dv[D] = {0};
        int64_t last, step;
        queries_of(p, t, &last, &step);
        for (int64_t qq = t; qq <= last; qq += step) {
            double lq = ref_row(p, &pr, qq, h, o, NULL);
            double pq = exp(dot(row(pr.q, qq, h), row(pr.k, t, h)) * pr.scale - lq);
            for (int x = 0; x < D; x++)
                dv[x] += pq * row(pr.dout, qq, h)[x];
        }
        acc(&edv, row(pr.dv, t, h), dv);
    }
    print_message("%s T=%d: sampled rows: o %.2e, dq %.2e, dv %.2e (relative L2)\n",
                  p->kind == BSA_PATTERN_LOCAL ? "local" : "strided", T, rel(&eo), rel(&edq),
                  rel(&edv));
    assert_true(rel(&eo) < 1e-5);
    assert_true(rel(&edq) < 1e-5);
    assert_true(rel(&edv) < 1e-5);

    for (int i = 0; i < 8; i++)
        free(*bufs[i]);
    free(pr.lse);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
}

static void long_sparse_sequences(void **state)
{
    (void)state;
    bsa_context_t ctx;
    assert_int_equal(bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CPU, 0, 0}),
                     BSA_SUCCESS);
    pattern local = {BSA_PATTERN_LOCAL, 64, 128};
    pattern strided = {BSA_PATTERN_STRIDED, 64, 1024};
    check_pattern(ctx, &local);
    check_pattern(ctx, &strided);
    bsa_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(long_sparse_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
