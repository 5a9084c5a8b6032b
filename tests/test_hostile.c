/*
 * Hostile values on the CPU backend: the README's numerics guarantees
 * (tests/common/hostile.h lists them; tests/test_cuda_hostile.c runs the
 * same checks on every CUDA implementation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "hostile.h"

static bsa_status cpu_forward(bsa_plan_t plan, ac_problem *p)
{
    return ac_forward(plan, p, AC_WS_NULL);
}

static bsa_status cpu_backward(bsa_plan_t plan, ac_problem *p)
{
    return ac_backward(plan, p, AC_WS_NULL);
}

static hz_runner cpu = {"cpu", NULL, NULL, 0, cpu_forward, cpu_backward};

static int setup(void **state)
{
    (void)state;
    return bsa_context_create(&cpu.ctx, &(bsa_context_params){BSA_BACKEND_CPU, 0, 0}) !=
           BSA_SUCCESS;
}

static int teardown(void **state)
{
    (void)state;
    return bsa_context_destroy(cpu.ctx) != BSA_SUCCESS;
}

static void nan_key_poisons_only_its_rows(void **state)
{
    (void)state;
    hz_poison_key(&cpu, BSA_DTYPE_F32, 0, NAN);
    hz_poison_key(&cpu, BSA_DTYPE_F16, 0, NAN);
    hz_poison_key(&cpu, BSA_DTYPE_BF16, 0, -INFINITY);
}

static void inf_value_poisons_only_its_rows(void **state)
{
    (void)state;
    hz_poison_key(&cpu, BSA_DTYPE_F32, 1, INFINITY);
    hz_poison_key(&cpu, BSA_DTYPE_BF16, 1, -INFINITY);
    hz_poison_key(&cpu, BSA_DTYPE_F16, 1, NAN);
}

static void nan_query_poisons_its_row(void **state)
{
    (void)state;
    hz_poison_query(&cpu, BSA_DTYPE_F32, NAN);
    hz_poison_query(&cpu, BSA_DTYPE_F16, INFINITY);
    hz_poison_query(&cpu, BSA_DTYPE_BF16, NAN);
    hz_poison_query(&cpu, BSA_DTYPE_F32, -INFINITY);
}

static void extreme_logits_stay_finite(void **state)
{
    (void)state;
    /* D = 16, scale 1/4: entries of 50 give |q.k| * scale up to 1e4 */
    hz_extreme(&cpu, BSA_DTYPE_F32, 50.0, 1e-4, 1e-3);
    hz_extreme(&cpu, BSA_DTYPE_F16, 50.0, 1e-2, 1e-2);
    hz_extreme(&cpu, BSA_DTYPE_BF16, 50.0, 3e-2, 3e-2);
    /* inputs at f16's largest values (65504); bf16 near 1e18, logits near
     * 1e36 (fp32 logits stay finite); f32 at 1e5, logits near 1e10:
     * gradients finite only */
    hz_extreme(&cpu, BSA_DTYPE_F32, 1e5, 1e-2, 0.0);
    hz_extreme(&cpu, BSA_DTYPE_F16, 65504.0, 1e-2, 0.0);
    hz_extreme(&cpu, BSA_DTYPE_BF16, 1e18, 3e-2, 0.0);
}

/* A few rows with logits ~1e7 and ~1e10 among ordinary ones: every row right */
static void wide_rows_among_ordinary_ones(void **state)
{
    (void)state;
    const bsa_pattern pats[3] = {BSA_PATTERN_ALL, BSA_PATTERN_LOCAL, BSA_PATTERN_STRIDED};
    for (int i = 0; i < 3; i++)
        hz_wide_rows_all(&cpu, pats[i]);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nan_key_poisons_only_its_rows),
        cmocka_unit_test(inf_value_poisons_only_its_rows),
        cmocka_unit_test(nan_query_poisons_its_row),
        cmocka_unit_test(extreme_logits_stay_finite),
        cmocka_unit_test(wide_rows_among_ordinary_ones),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
