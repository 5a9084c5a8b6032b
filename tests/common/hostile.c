#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "hostile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_elem(tu_tensor *t, int64_t b, int64_t h, int64_t time, int64_t x, double v)
{
    tu_set(t->dtype, t->data, tu_desc_offset(&t->desc, b, h, time, x), v);
    int64_t H = t->desc.dims[1], T = t->desc.dims[2], D = t->desc.dims[3];
    t->val[((b * H + h) * T + time) * D + x] = v;
}

static int row_finite(const tu_tensor *o, int64_t d, int64_t b, int64_t h, int64_t t)
{
    for (int64_t x = 0; x < d; x++)
        if (!isfinite(tu_get(o->dtype, o->data, tu_desc_offset(&o->desc, b, h, t, x))))
            return 0;
    return 1;
}

static int row_all_nan(const tu_tensor *o, int64_t d, int64_t b, int64_t h, int64_t t)
{
    for (int64_t x = 0; x < d; x++)
        if (!isnan(tu_get(o->dtype, o->data, tu_desc_offset(&o->desc, b, h, t, x))))
            return 0;
    return 1;
}

static int row_zero(const tu_tensor *o, int64_t d, int64_t b, int64_t h, int64_t t)
{
    for (int64_t x = 0; x < d; x++)
        if (tu_get(o->dtype, o->data, tu_desc_offset(&o->desc, b, h, t, x)) != 0.0)
            return 0;
    return 1;
}

static int row_equal(const tu_tensor *o, const void *clean, int64_t d, int64_t b, int64_t h,
                     int64_t t)
{
    size_t es = tu_dtype_size(o->dtype);
    const char *a = (const char *)o->data + tu_desc_offset(&o->desc, b, h, t, 0) * es;
    const char *c = (const char *)clean + tu_desc_offset(&o->desc, b, h, t, 0) * es;
    return memcmp(a, c, (size_t)d * es) == 0;
}

/* Plans with r->impl forced; 0 (reported) when that implementation declines. */
static int plan_on(const hz_runner *r, bsa_plan_t *plan, const bsa_attn_desc *d, bsa_layout_t lay,
                   const char *what)
{
    if (r->impl)
        setenv("BSA_IMPL", r->impl, 1);
    bsa_status st = bsa_plan_create(r->ctx, plan, d, lay);
    if (r->impl)
        unsetenv("BSA_IMPL");
    if (st == BSA_ERROR_UNSUPPORTED && r->impl) {
        printf("%-28s %s: declined (%s)\n", r->name, what, bsa_last_error());
        return 0;
    }
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s %s: %s\n", r->name, what, bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    return 1;
}

/* The problem (2 heads, random inputs) on lay and its plan on r; 0 when
 * r's forced implementation declines (p is then freed). */
static int problem_on(const hz_runner *r, bsa_layout_t lay, const cm_source *masks, bsa_dtype dtype,
                      int64_t batch, int64_t dim, ac_form form, ac_problem *p, bsa_plan_t *plan,
                      const char *what)
{
    bsa_attn_desc desc;
    assert_int_equal(ac_problem_init(p, lay, masks, dtype, batch, 2, dim, form, 0.0f, &desc),
                     BSA_SUCCESS);
    if (plan_on(r, plan, &desc, lay, what))
        return 1;
    ac_problem_free(p);
    return 0;
}

/* problem_on for one batch of a preset's layout, created in *lay (then
 * the caller's to destroy); 0 when r's forced implementation declines (lay
 * and p then freed). */
static int preset_problem(const hz_runner *r, const bsa_preset *preset, bsa_dtype dtype,
                          int64_t dim, const char *what, bsa_layout_t *lay, ac_problem *p,
                          bsa_plan_t *plan)
{
    assert_int_equal(bsa_layout_create_preset(r->ctx, lay, preset), BSA_SUCCESS);
    cm_source masks = cm_of_preset(preset);
    if (problem_on(r, *lay, &masks, dtype, 1, dim, AC_BHTD, p, plan, what))
        return 1;
    bsa_layout_destroy(*lay);
    return 0;
}

static void *copy_of(const tu_tensor *t)
{
    size_t bytes = (size_t)t->span * tu_dtype_size(t->dtype);
    void *c = tu_xmalloc(bytes);
    memcpy(c, t->data, bytes);
    return c;
}

/* Whether block (query block of row t, key block kb) keeps a visible element
 * (presets keep exactly such blocks; test_layouts checks that). */
static int block_kept(const ac_problem *p, int64_t B, int64_t t, int64_t kb)
{
    for (int64_t q = t / B * B; q < (t / B + 1) * B && q < p->seq_q; q++)
        for (int64_t k = kb * B; k < (kb + 1) * B && k < p->seq_k; k++)
            if (p->mask[q * p->seq_k + k])
                return 1;
    return 0;
}

/* Rows an Inf in value row `key` may poison besides those that see it: see
 * hostile.h.  may[t] for t < seq_q. */
static void value_spread(const hz_runner *r, const ac_problem *p, int64_t B, int64_t key,
                         uint8_t *may)
{
    int64_t kb0 = key / B;
    memset(may, 0, (size_t)p->seq_q);
    if (!r->tile) {
        for (int64_t t = 0; t < p->seq_q; t++)
            may[t] = (uint8_t)block_kept(p, B, t, kb0);
        return;
    }
    int64_t tile = r->tile, nkb = (p->seq_k + B - 1) / B;
    uint8_t *near = tu_xmalloc((size_t)p->seq_q);
    for (int64_t t = 0; t < p->seq_q; t++) {
        near[t] = 0;
        for (int64_t kb = 0; kb < nkb && !near[t]; kb++)
            if (llabs(kb * B - key) < tile + B && block_kept(p, B, t, kb))
                near[t] = 1;
    }
    for (int64_t t = 0; t < p->seq_q; t++)
        for (int64_t u = t - tile + 1; u < t + tile && !may[t]; u++)
            if (u >= 0 && u < p->seq_q && near[u])
                may[t] = 1;
    free(near);
}

int hz_poison_key(const hz_runner *r, bsa_dtype dtype, int in_value, double bad)
{
    char what[96];
    snprintf(what, sizeof what, "%s %s in a %s", tu_dtype_name(dtype), isnan(bad) ? "NaN" : "Inf",
             in_value ? "value" : "key");
    bsa_layout_t lay;
    bsa_preset preset = {BSA_PATTERN_LOCAL, 512, 16, 2, 32, 0, 0, 0};
    assert_int_equal(bsa_layout_create_preset(r->ctx, &lay, &preset), BSA_SUCCESS);
    cm_source masks = cm_of_preset(&preset);
    ac_problem p;
    bsa_plan_t plan;
    if (!problem_on(r, lay, &masks, dtype, 2, 64, AC_BTHD, &p, &plan, what)) {
        bsa_layout_destroy(lay);
        return 0;
    }
    assert_int_equal(r->forward(plan, &p), BSA_SUCCESS);
    void *clean = copy_of(&p.o);

    const int64_t bb = 1, hh = 0, key = 200;
    uint8_t *may = tu_xmalloc((size_t)p.seq_q);
    value_spread(r, &p, preset.block, key, may);
    set_elem(in_value ? &p.v : &p.k, bb, hh, key, 3, bad);
    assert_int_equal(r->forward(plan, &p), BSA_SUCCESS);
    int64_t seen = 0, spread = 0;
    for (int64_t b = 0; b < p.batch; b++)
        for (int64_t h = 0; h < p.heads; h++)
            for (int64_t t = 0; t < p.seq_q; t++) {
                int sees = b == bb && h == hh && p.mask[t * p.seq_k + key];
                /* an Inf key entry gives a logit of +-inf (NaN where the
                 * query entry is 0): -inf is probability 0, as in any
                 * softmax, and leaves the row as it was */
                double qx = p.q.val[((b * p.heads + h) * p.seq_q + t) * p.head_dim + 3];
                int ignored = !in_value && isinf(bad) && qx * bad < 0.0;
                if (sees && !ignored) {
                    seen++;
                    /* a NaN key, a +inf logit (inf - inf) and an Inf value
                     * (that output column): poisoned */
                    if (row_finite(&p.o, p.head_dim, b, h, t))
                        print_error("%s %s: row t%lld sees key %lld but is finite\n", r->name, what,
                                    (long long)t, (long long)key);
                    assert_false(row_finite(&p.o, p.head_dim, b, h, t));
                } else if (sees) {
                    /* logit -inf: the key drops out, the row stays finite */
                    assert_true(row_finite(&p.o, p.head_dim, b, h, t));
                } else if (in_value && b == bb && h == hh && may[t]) {
                    spread += !row_equal(&p.o, clean, p.head_dim, b, h, t);
                } else if (!row_equal(&p.o, clean, p.head_dim, b, h, t)) {
                    print_error("%s %s: row b%lld h%lld t%lld changed although it does not see "
                                "key %lld\n",
                                r->name, what, (long long)b, (long long)h, (long long)t,
                                (long long)key);
                    fail();
                }
            }
    int64_t expect_seen = 0; /* local L=32: queries 200..231 see key 200 */
    for (int64_t t = 200; t < 232; t++) {
        double qx = p.q.val[((bb * p.heads + hh) * p.seq_q + t) * p.head_dim + 3];
        expect_seen += in_value || !isinf(bad) || qx * bad >= 0.0;
    }
    assert_int_equal(seen, expect_seen);
    printf("%-28s %s: %lld rows that see it poisoned, %lld more rows of its tiles changed\n",
           r->name, what, (long long)seen, (long long)spread);
    free(may);
    free(clean);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
    return 1;
}

int hz_poison_query(const hz_runner *r, bsa_dtype dtype, double bad)
{
    char what[96];
    snprintf(what, sizeof what, "%s %s in a query", tu_dtype_name(dtype),
             isnan(bad) ? "NaN" : "Inf");
    /* random blocks within 128-row chunks (so that the chunk kernels take
     * the layout too); query block 3 keeps none (its rows see no key) */
    enum { B = 32, QB = 8, KB = 8 };
    uint8_t blocks[QB * KB];
    for (int i = 0; i < QB * KB; i++)
        blocks[i] = i / KB == 3 || i / KB / 4 != i % KB / 4
                        ? 0
                        : (i % KB == i / KB || tu_uniform(0.0, 1.0) < 0.5);
    bsa_layout_desc ld = {B, 1, QB, KB, BSA_PRED_NONE, 0, 0};
    bsa_layout_t lay;
    assert_int_equal(bsa_layout_create_dense(r->ctx, &lay, &ld, blocks), BSA_SUCCESS);
    cm_source masks = cm_of_dense(&ld, blocks);
    ac_problem p;
    bsa_plan_t plan;
    if (!problem_on(r, lay, &masks, dtype, 1, 64, AC_BHTD, &p, &plan, what)) {
        bsa_layout_destroy(lay);
        return 0;
    }
    assert_int_equal(r->forward(plan, &p), BSA_SUCCESS);
    void *clean = copy_of(&p.o);
    float *clean_lse = tu_xmalloc((size_t)p.n_lse * sizeof(float));
    memcpy(clean_lse, p.lse, (size_t)p.n_lse * sizeof(float));

    /* one entry of rows 5, 70 (they see keys) and 100 (block 3: sees none) */
    const int64_t hh = 1, rows[3] = {5, 70, 100};
    for (int i = 0; i < 3; i++)
        set_elem(&p.q, 0, hh, rows[i], 7 + i, bad);
    assert_int_equal(r->forward(plan, &p), BSA_SUCCESS);
    assert_int_equal(r->backward(plan, &p), BSA_SUCCESS);
    for (int64_t h = 0; h < p.heads; h++)
        for (int64_t t = 0; t < p.seq_q; t++) {
            int64_t li = h * p.seq_q + t;
            int poisoned = h == hh && (t == rows[0] || t == rows[1]);
            int empty = t / B == 3;
            if (poisoned) {
                if (!row_all_nan(&p.o, p.head_dim, 0, h, t) || !isnan(p.lse[li]))
                    print_error("%s %s: row t%lld: output or lse (%g) not NaN\n", r->name, what,
                                (long long)t, p.lse[li]);
                assert_true(row_all_nan(&p.o, p.head_dim, 0, h, t));
                assert_true(isnan(p.lse[li]));
                assert_false(row_finite(&p.dq, p.head_dim, 0, h, t));
            } else if (empty) {
                if (!row_zero(&p.o, p.head_dim, 0, h, t) || p.lse[li] != -INFINITY)
                    print_error("%s %s: row t%lld sees no key: output not 0 or lse %g\n", r->name,
                                what, (long long)t, p.lse[li]);
                assert_true(row_zero(&p.o, p.head_dim, 0, h, t));
                assert_true(p.lse[li] == -INFINITY);
                assert_true(row_zero(&p.dq, p.head_dim, 0, h, t));
            } else {
                if (!row_equal(&p.o, clean, p.head_dim, 0, h, t) ||
                    memcmp(&p.lse[li], &clean_lse[li], sizeof(float)) != 0)
                    print_error("%s %s: clean row h%lld t%lld changed\n", r->name, what,
                                (long long)h, (long long)t);
                assert_true(row_equal(&p.o, clean, p.head_dim, 0, h, t));
                assert_memory_equal(&p.lse[li], &clean_lse[li], sizeof(float));
            }
        }
    printf("%-28s %s: rows that see keys NaN (output, lse; dQ non-finite), the row that sees "
           "none 0, the others unchanged\n",
           r->name, what);
    free(clean_lse);
    free(clean);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
    return 1;
}

int hz_extreme(const hz_runner *r, bsa_dtype dtype, double entry, double tol, double gtol)
{
    bsa_layout_t lay;
    const bsa_preset preset = {BSA_PATTERN_ALL, 64, 16, 1, 0, 0, 0, 0};
    char what[64];
    snprintf(what, sizeof what, "%s extreme logits", tu_dtype_name(dtype));
    ac_problem p;
    bsa_plan_t plan;
    if (!preset_problem(r, &preset, dtype, 16, what, &lay, &p, &plan))
        return 0;
    for (int64_t h = 0; h < p.heads; h++)
        for (int64_t t = 0; t < p.seq_q; t++)
            for (int64_t x = 0; x < p.head_dim; x++) {
                /* signs vary so that logits of both signs and ties appear */
                double sq = ((t * 7 + x) % 3) ? 1.0 : -1.0, sk = ((t * 5 + x * 3) % 4) ? 1.0 : -1.0;
                set_elem(&p.q, 0, h, t, x, tu_round(dtype, sq * entry * tu_uniform(0.5, 1.0)));
                set_elem(&p.k, 0, h, t, x, tu_round(dtype, sk * entry * tu_uniform(0.5, 1.0)));
            }
    assert_int_equal(r->forward(plan, &p), BSA_SUCCESS);
    assert_int_equal(r->backward(plan, &p), BSA_SUCCESS);
    ac_problem_oracle(&p);
    ac_errors e;
    ac_compare(&p, 1, &e);
    char label[96];
    snprintf(label, sizeof label, "%s extreme", r->name);
    ac_print(label, &p, &e);
    assert_int_equal(e.nonfinite, 0);
    for (int64_t i = 0; i < p.n_lse; i++)
        assert_true(isfinite(p.lse[i]));
    assert_true(e.o < tol);
    assert_true(e.lse < tol);
    /* dQ and dK are P * (dP - delta): with near one-hot rows their exact
     * values are tiny differences that fp32 rounding swamps, so a relative
     * bound cannot hold; they must stay finite (nonfinite above) */
    if (gtol > 0.0)
        assert_true(e.dv < gtol);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
    return 1;
}

/* hz_wide_rows' wide rows: one in 37 (a few per tile, most tiles' rows
 * ordinary) */
static int wide_row(int64_t t)
{
    return t % 37 == 5;
}

/* hz_sunk_rows' rows: wide_row's past the first key tile (64 rows) */
static int sunk_row(int64_t t)
{
    return t >= 64 && wide_row(t);
}

/* Every row's o and lse against the oracle on its own bound (a wide
 * row's lse, ~1e7 and up, would hide the others' in one norm), the rows
 * that special() names reported as kind; returns the least |lse| among
 * them. */
static double rows_match_oracle(const hz_runner *r, const char *what, ac_problem *p,
                                int (*special)(int64_t), const char *kind, double tol)
{
    const int64_t H = p->heads, T = p->seq_q, D = p->head_dim;
    ac_problem_oracle(p);
    double worst_o = 0.0, worst_lse = 0.0, least = INFINITY;
    int64_t n = 0;
    for (int64_t h = 0; h < H; h++)
        for (int64_t t = 0; t < T; t++) {
            const int64_t row = h * T + t;
            const double eo = tu_rel_l2(p->o.val + row * D, p->ref_o + row * D, D);
            const double el =
                fabs(p->lse_val[row] - p->ref_lse[row]) / fmax(1.0, fabs(p->ref_lse[row]));
            if (!(eo <= tol) || !(el <= tol))
                fprintf(stderr, "%s %s: head %lld row %lld (%s): o %.2e lse %.2e (%g vs %g)\n",
                        r->name, what, (long long)h, (long long)t, special(t) ? kind : "ordinary",
                        eo, el, p->lse_val[row], p->ref_lse[row]);
            if (special(t)) {
                least = fmin(least, fabs(p->ref_lse[row]));
                n++;
            }
            worst_o = fmax(worst_o, eo);
            worst_lse = fmax(worst_lse, el != el ? INFINITY : el);
        }
    fprintf(stderr, "%-28s %s: %lld of %lld rows %s (|lse| >= %.1e), worst row o %.2e lse %.2e\n",
            r->name, what, (long long)n, (long long)(H * T), kind, least, worst_o, worst_lse);
    assert_true(n > 0);
    assert_true(worst_o <= tol);
    assert_true(worst_lse <= tol);
    return least;
}

/* q and k entries (before rounding) of row t, dim x of a special-rows case */
typedef void (*row_fill)(int64_t t, int64_t x, double entry, double kentry, double *qv, double *kv);

/* One special-rows case: q and k from fill on a 512-long layout of the
 * pattern (the rest random), the forward, every row against the oracle
 * (rows_match_oracle); the least |lse| of the special rows, or NAN where
 * the runner declined the plan. */
static double special_rows_case(const hz_runner *r, bsa_dtype dtype, bsa_pattern pattern,
                                const char *kind, int (*special)(int64_t), row_fill fill,
                                double entry, double kentry, double tol)
{
    bsa_layout_t lay;
    const bsa_preset preset = {pattern, 512, 16, 2, 32, 0, 0, 0};
    char what[64];
    snprintf(what, sizeof what, "%s %s rows", tu_dtype_name(dtype), kind);
    ac_problem p;
    bsa_plan_t plan;
    if (!preset_problem(r, &preset, dtype, 64, what, &lay, &p, &plan))
        return NAN;
    for (int64_t h = 0; h < p.heads; h++)
        for (int64_t t = 0; t < p.seq_q; t++)
            for (int64_t x = 0; x < p.head_dim; x++) {
                double qv, kv;
                fill(t, x, entry, kentry, &qv, &kv);
                set_elem(&p.q, 0, h, t, x, tu_round(dtype, qv));
                set_elem(&p.k, 0, h, t, x, tu_round(dtype, kv));
            }
    assert_int_equal(r->forward(plan, &p), BSA_SUCCESS);
    const double least = rows_match_oracle(r, what, &p, special, kind, tol);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
    return least;
}

/* a wide row's q has its own key's signs: its logit against that key
 * (every pattern keeps the diagonal) is the largest, by 10% or more: the
 * keys of the rows 4 apart have the same signs, so a wide row's key takes
 * full magnitudes, the others at most 0.9 of them (with random magnitudes
 * on both, two such logits came within fp32's rounding of each other, and
 * the row's one-hot softmax picked the other key: seed 1806203305387422) */
static void wide_fill(int64_t t, int64_t x, double entry, double kentry, double *qv, double *kv)
{
    const int w = wide_row(t);
    double sq = ((t * 7 + x) % 3) ? 1.0 : -1.0, sk = ((t * 5 + x * 3) % 4) ? 1.0 : -1.0;
    *qv = (w ? sk * entry : sq * 0.05) * tu_uniform(0.5, 1.0);
    *kv = sk * (w ? kentry : 30.0 * tu_uniform(0.5, 0.9));
}

/* dim 0: entry in a sunk row's q, -entry in the first 64 keys, 0
 * elsewhere; the other dims ordinary */
static void sunk_fill(int64_t t, int64_t x, double entry, double kentry, double *qv, double *kv)
{
    (void)kentry;
    *qv = x ? 0.05 * tu_uniform(-1.0, 1.0) : (sunk_row(t) ? entry : 0.0);
    *kv = x ? 30.0 * tu_uniform(-1.0, 1.0) : (t < 64 ? -entry : 0.0);
}

int hz_wide_rows(const hz_runner *r, bsa_dtype dtype, bsa_pattern pattern, double entry,
                 double kentry, double least, double tol)
{
    const double least_wide =
        special_rows_case(r, dtype, pattern, "wide", wide_row, wide_fill, entry, kentry, tol);
    if (least_wide != least_wide)
        return 0;
    /* the wide rows' base-2 maximum (the tile kernels' scaled one) is past least */
    assert_true(least_wide * 1.4426950408889634 > least);
    return 1;
}

int hz_sunk_rows(const hz_runner *r, bsa_dtype dtype, double entry, double tol)
{
    const double least =
        special_rows_case(r, dtype, BSA_PATTERN_ALL, "sunk", sunk_row, sunk_fill, entry, 0.0, tol);
    return least == least;
}

int hz_wide_rows_all(const hz_runner *r, bsa_pattern pattern)
{
    const double w20 = 1048576.0, w31 = 2147483648.0;
    int ran = 0;
    /* past 2^20 against ordinary keys: every row right, wide or not */
    ran += hz_wide_rows(r, BSA_DTYPE_F32, pattern, 1e5, 30.0, w20, 1e-4);
    ran += hz_wide_rows(r, BSA_DTYPE_F16, pattern, 65504.0, 30.0, w20, 1e-2);
    ran += hz_wide_rows(r, BSA_DTYPE_BF16, pattern, 1e18, 30.0, w20, 3e-2);
    /* past 2^31 (their own keys as large): a wide row taken as an ordinary
     * one would overflow */
    ran += hz_wide_rows(r, BSA_DTYPE_F32, pattern, 1e5, 1e5, w31, 1e-2);
    ran += hz_wide_rows(r, BSA_DTYPE_F16, pattern, 65504.0, 65504.0, w31, 1e-2);
    ran += hz_wide_rows(r, BSA_DTYPE_BF16, pattern, 1e6, 1e6, w31, 3e-2);
    /* a row's first key tile past 2^29 below 0, its others ordinary (the
     * causal layout, whose rows past the first tile see that tile) */
    if (pattern == BSA_PATTERN_ALL) {
        ran += hz_sunk_rows(r, BSA_DTYPE_F16, 65504.0, 1e-2);
        ran += hz_sunk_rows(r, BSA_DTYPE_BF16, 1e6, 3e-2);
    }
    return ran;
}
