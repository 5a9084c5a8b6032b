/*
 * A long sequence (T = 131072) with sparse patterns on the CPU, checked on
 * sampled rows against tests/common/sampled_ref (a dense oracle would need
 * T^2 work): output, lse and dq of sampled query rows, dv of sampled key
 * rows.  It checks that nothing in the CPU path is quadratic in T or breaks
 * at long sequences (strided rows are addressed through the permutation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "sampled_ref.h"
#include "testutil.h"

enum { T = 131072, H = 2, D = 32, SAMPLES = 24 };

static void check_pattern(bsa_context_t ctx, bsa_pattern kind, int block, int L)
{
    bsa_layout_t lay;
    assert_int_equal(
        bsa_layout_create_preset(ctx, &lay, &(bsa_preset){kind, T, block, H, L, 0, 0, 0}),
        BSA_SUCCESS);
    bsa_attn_desc d = {BSA_DTYPE_F32};
    d.q = d.k = d.v = d.o = bsa_tensor_bthd(1, T, H, D);
    bsa_plan_t plan;
    assert_int_equal(bsa_plan_create(ctx, &plan, &d, lay), BSA_SUCCESS);

    int64_t n = (int64_t)T * H * D;
    float *buf[8]; /* q, k, v, dout inputs; o, dq, dk, dv outputs (poisoned) */
    for (int i = 0; i < 8; i++) {
        buf[i] = tu_alloc(BSA_DTYPE_F32, n);
        if (i < 4)
            for (int64_t j = 0; j < n; j++)
                buf[i][j] = (float)tu_uniform(-1, 1);
    }
    float *lse = tu_alloc(BSA_DTYPE_F32, (int64_t)T * H);
    assert_int_equal(
        bsa_forward(plan, &(bsa_fwd_args){buf[0], buf[1], buf[2], buf[4], lse}, NULL, 0, NULL),
        BSA_SUCCESS);
    assert_int_equal(bsa_backward(plan,
                                  &(bsa_bwd_args){buf[0], buf[1], buf[2], buf[4], lse, buf[3],
                                                  buf[5], buf[6], buf[7]},
                                  NULL, 0, NULL),
                     BSA_SUCCESS);
    for (int i = 4; i < 8; i++)
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(buf[i][j]))
                fail_msg("output %d element %lld not written or not finite", i, (long long)j);

    sr_view view[8];
    for (int i = 0; i < 8; i++)
        view[i] = (sr_view){BSA_DTYPE_F32, buf[i], (int64_t)H * D, D};
    sr_problem p = {{kind, L, T}, view[0], view[1], view[2], view[3], D, 1.0 / sqrt((double)D)};
    sr_err eo = {0}, edq = {0}, edv = {0};
    double o[D], dq[D], dv[D];
    for (int s = 0; s < SAMPLES; s++) {
        int64_t t = s == 0 ? T - 1 : (int64_t)tu_randint(0, T); /* the end always */
        int h = s % H;
        double ref_lse = sr_query_row(&p, t, h, o, dq);
        sr_acc(&eo, &view[4], t, h, o, D);
        sr_acc(&edq, &view[5], t, h, dq, D);
        assert_true(fabs(lse[(int64_t)h * T + t] - ref_lse) < 1e-4 * (1 + fabs(ref_lse)));
        sr_key_dv(&p, t, h, dv);
        sr_acc(&edv, &view[7], t, h, dv, D);
    }
    print_message("%s T=%d: sampled rows: o %.2e, dq %.2e, dv %.2e (relative L2)\n",
                  kind == BSA_PATTERN_LOCAL ? "local" : "strided", T, sr_rel(&eo), sr_rel(&edq),
                  sr_rel(&edv));
    assert_true(sr_rel(&eo) < 1e-5);
    assert_true(sr_rel(&edq) < 1e-5);
    assert_true(sr_rel(&edv) < 1e-5);

    for (int i = 0; i < 8; i++)
        free(buf[i]);
    free(lse);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
}

static void long_sparse_sequences(void **state)
{
    (void)state;
    bsa_context_t ctx;
    assert_int_equal(bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CPU, 0, 0}),
                     BSA_SUCCESS);
    check_pattern(ctx, BSA_PATTERN_LOCAL, 64, 128);
    check_pattern(ctx, BSA_PATTERN_STRIDED, 64, 1024);
    bsa_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(long_sparse_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
