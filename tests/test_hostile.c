/*
 * Hostile values.  Documented behaviour (README, "Numerics"):
 *   - a NaN or Inf in a key poisons only the output rows that see that key:
 *     masked logits are selected away, never computed with;
 *   - a NaN or Inf in a value row poisons the rows that see it and may
 *     poison the other rows of the query blocks that compute its key block
 *     (the block product multiplies masked probabilities, exact zeros, with
 *     the value: 0 * Inf = NaN); rows of query blocks that do not compute
 *     that key block are bit-identical to the clean run;
 *   - masked logits never create NaN;
 *   - extreme logits (|x| up to 1e4 in f32 inputs; inputs at the dtype's
 *     largest values in f16/bf16) keep the softmax finite and accurate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_check.h"

static bsa_context_t ctx;

static int setup(void **state)
{
    (void)state;
    return bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CPU, 0, 0}) != BSA_SUCCESS;
}

static int teardown(void **state)
{
    (void)state;
    return bsa_context_destroy(ctx) != BSA_SUCCESS;
}

static void set_elem(tu_tensor *t, int64_t b, int64_t h, int64_t time, int64_t x, double v)
{
    tu_set(t->dtype, t->data, tu_desc_offset(&t->desc, b, h, time, x), v);
    int64_t H = t->desc.dims[1], T = t->desc.dims[2], D = t->desc.dims[3];
    t->val[((b * H + h) * T + time) * D + x] = v;
}

static int row_finite(const ac_problem *p, int64_t b, int64_t h, int64_t t)
{
    for (int64_t x = 0; x < p->head_dim; x++)
        if (!isfinite(tu_get(p->dtype, p->o.data, tu_desc_offset(&p->o.desc, b, h, t, x))))
            return 0;
    return 1;
}

static int row_equal(const ac_problem *p, const void *clean, int64_t b, int64_t h, int64_t t)
{
    size_t es = tu_dtype_size(p->dtype);
    const char *a = (const char *)p->o.data + tu_desc_offset(&p->o.desc, b, h, t, 0) * es;
    const char *c = (const char *)clean + tu_desc_offset(&p->o.desc, b, h, t, 0) * es;
    return memcmp(a, c, (size_t)p->head_dim * es) == 0;
}

/* Puts a non-finite value into one key (or value) row and checks which
 * output rows changed. */
static void check_poison_key(bsa_dtype dtype, int in_value, double bad)
{
    bsa_layout_t lay;
    bsa_preset preset = {BSA_PATTERN_LOCAL, 128, 16, 2, 32, 0, 0, 0};
    assert_int_equal(bsa_layout_create_preset(ctx, &lay, &preset), BSA_SUCCESS);
    cm_source masks = cm_of_preset(&preset);
    ac_problem p;
    bsa_attn_desc desc;
    assert_int_equal(ac_problem_init(&p, lay, &masks, dtype, 2, 2, 32, AC_BTHD, 0.0f, &desc),
                     BSA_SUCCESS);
    bsa_plan_t plan;
    assert_int_equal(bsa_plan_create(ctx, &plan, &desc, lay), BSA_SUCCESS);
    assert_int_equal(ac_forward(plan, &p, AC_WS_NULL), BSA_SUCCESS);
    size_t bytes = (size_t)p.o.span * tu_dtype_size(dtype);
    void *clean = tu_xmalloc(bytes);
    memcpy(clean, p.o.data, bytes);

    const int64_t bb = 1, hh = 0, key = 40, block = preset.block;
    /* query blocks computing key block key/B: those with any visible element
     * in it (presets keep exactly such blocks; test_layouts checks that) */
    uint8_t touched[128] = {0};
    for (int64_t t = 0; t < p.seq_q; t++)
        for (int64_t kk = key / block * block; kk < (key / block + 1) * block; kk++)
            if (p.mask[t * p.seq_k + kk])
                touched[t / block] = 1;
    set_elem(in_value ? &p.v : &p.k, bb, hh, key, 3, bad);
    assert_int_equal(ac_forward(plan, &p, AC_WS_NULL), BSA_SUCCESS);
    int64_t seen = 0;
    for (int64_t b = 0; b < p.batch; b++)
        for (int64_t h = 0; h < p.heads; h++)
            for (int64_t t = 0; t < p.seq_q; t++) {
                int sees = b == bb && h == hh && p.mask[t * p.seq_k + key];
                if (sees) {
                    seen++;
                    /* a NaN key makes the row's logit NaN; an Inf value makes
                     * that output column non-finite: either way, poisoned */
                    assert_false(row_finite(&p, b, h, t));
                } else if (in_value && b == bb && h == hh && touched[t / block]) {
                    continue; /* may or may not be poisoned: block granularity */
                } else {
                    if (!row_equal(&p, clean, b, h, t))
                        print_error("row b%lld h%lld t%lld changed although it does not see key "
                                    "%lld\n",
                                    (long long)b, (long long)h, (long long)t, (long long)key);
                    assert_true(row_equal(&p, clean, b, h, t));
                }
            }
    assert_int_equal(seen, 32); /* local L=32: queries 40..71 see key 40 */
    free(clean);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
}

static void nan_key_poisons_only_its_rows(void **state)
{
    (void)state;
    check_poison_key(BSA_DTYPE_F32, 0, NAN);
    check_poison_key(BSA_DTYPE_F16, 0, NAN);
    check_poison_key(BSA_DTYPE_BF16, 0, NAN);
}

static void inf_value_poisons_only_its_rows(void **state)
{
    (void)state;
    check_poison_key(BSA_DTYPE_F32, 1, INFINITY);
    check_poison_key(BSA_DTYPE_BF16, 1, -INFINITY);
}

/* Logits of magnitude up to `target`: q and k entries chosen so that
 * q.k * scale spans [-target, target]; forward and backward finite and close
 * to the oracle. */
static void check_extreme(bsa_dtype dtype, double entry, double tol)
{
    bsa_layout_t lay;
    bsa_preset preset = {BSA_PATTERN_ALL, 64, 16, 1, 0, 0, 0, 0};
    assert_int_equal(bsa_layout_create_preset(ctx, &lay, &preset), BSA_SUCCESS);
    cm_source masks = cm_of_preset(&preset);
    ac_problem p;
    bsa_attn_desc desc;
    assert_int_equal(ac_problem_init(&p, lay, &masks, dtype, 1, 2, 16, AC_BHTD, 0.0f, &desc),
                     BSA_SUCCESS);
    for (int64_t h = 0; h < p.heads; h++)
        for (int64_t t = 0; t < p.seq_q; t++)
            for (int64_t x = 0; x < p.head_dim; x++) {
                /* signs vary so that logits of both signs and ties appear */
                double sq = ((t * 7 + x) % 3) ? 1.0 : -1.0, sk = ((t * 5 + x * 3) % 4) ? 1.0 : -1.0;
                set_elem(&p.q, 0, h, t, x, tu_round(dtype, sq * entry * tu_uniform(0.5, 1.0)));
                set_elem(&p.k, 0, h, t, x, tu_round(dtype, sk * entry * tu_uniform(0.5, 1.0)));
            }
    bsa_plan_t plan;
    assert_int_equal(bsa_plan_create(ctx, &plan, &desc, lay), BSA_SUCCESS);
    assert_int_equal(ac_forward(plan, &p, AC_WS_NULL), BSA_SUCCESS);
    assert_int_equal(ac_backward(plan, &p, AC_WS_NULL), BSA_SUCCESS);
    ac_problem_oracle(&p);
    ac_errors e;
    ac_compare(&p, 1, &e);
    ac_print("extreme", &p, &e);
    assert_int_equal(e.nonfinite, 0);
    for (int64_t i = 0; i < p.n_lse; i++)
        assert_true(isfinite(p.lse[i]));
    assert_true(e.o < tol);
    assert_true(e.lse < tol);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
}

static void extreme_logits_stay_finite(void **state)
{
    (void)state;
    /* f32: D = 16, scale 1/4: entry 50 gives |q.k| * scale up to 1e4 */
    check_extreme(BSA_DTYPE_F32, 50.0, 1e-4);
    /* f16: inputs at the dtype's largest values (65504) */
    check_extreme(BSA_DTYPE_F16, 65504.0, 1e-2);
    /* bf16: inputs near 1e18, logits near 1e36 (fp32 logits stay finite) */
    check_extreme(BSA_DTYPE_BF16, 1e18, 3e-2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nan_key_poisons_only_its_rows),
        cmocka_unit_test(inf_value_poisons_only_its_rows),
        cmocka_unit_test(extreme_logits_stay_finite),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
