/*
 * Hostile values on every CUDA implementation: the README's numerics
 * guarantees (tests/common/hostile.h lists them), each implementation
 * forced with BSA_IMPL; one that declines a case is reported and counted,
 * and the test fails if an implementation never ran.  Exits 77 without a
 * device.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cuda_testutil.h"
#include "hostile.h"

/* The CUDA entries of the implementation list (backends/gpu/dispatch.c),
 * NULL the default choice.  GPU kernels work on tiles of at most 128 rows
 * and keys (../shared/KERNELS.md). */
static const char *const impls[] = {NULL,
                                    "cuda-reference",
                                    "cuda-wmma-sm70",
                                    "cuda-mma-sm80",
                                    "cuda-mma-sm80-gather",
                                    "cuda-mma-sm80-chunk",
                                    "cuda-mma-sm80-blockrow",
                                    "cuda-wgmma-sm90a",
                                    "cuda-wgmma-sm90a-gather",
                                    "cuda-wgmma-sm90a-chunk",
                                    "cuda-wgmma-sm90a-ws"};
enum { N_IMPLS = sizeof impls / sizeof *impls, GPU_TILE = 128 };
static int ran[N_IMPLS];
static bsa_context_t ctx;

/* The plan's workspace on the device (freed by the caller). */
static void *dev_workspace(bsa_plan_t plan, size_t *bytes)
{
    void *ws = NULL;
    expect_ok(bsa_plan_workspace_size(plan, bytes), "workspace size");
    CU(cudaMalloc(&ws, *bytes ? *bytes : 1));
    return ws;
}

/* Device copies of the inputs per call (small problems): poisoned outputs,
 * the call on the default stream, the outputs read back. */
static bsa_status gpu_forward(bsa_plan_t plan, ac_problem *p)
{
    void *q = dev_upload_tensor(&p->q), *k = dev_upload_tensor(&p->k),
         *v = dev_upload_tensor(&p->v), *o = dev_upload_tensor(&p->o);
    dev_poison(o, &p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    float *lse = dev_upload(p->lse, (size_t)p->n_lse * sizeof(float));
    size_t bytes;
    void *ws = dev_workspace(plan, &bytes);
    bsa_fwd_args a = {q, k, v, o, lse};
    bsa_status st = bsa_forward(plan, &a, ws, bytes, NULL);
    CU(cudaDeviceSynchronize());
    dev_download(&p->o, o);
    CU(cudaMemcpy(p->lse, lse, (size_t)p->n_lse * sizeof(float), cudaMemcpyDeviceToHost));
    tu_f32_to_f64(p->lse, p->lse_val, p->n_lse);
    void *all[] = {q, k, v, o, lse, ws};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        CU(cudaFree(all[i]));
    return st;
}

static bsa_status gpu_backward(bsa_plan_t plan, ac_problem *p)
{
    void *q = dev_upload_tensor(&p->q), *k = dev_upload_tensor(&p->k),
         *v = dev_upload_tensor(&p->v), *o = dev_upload_tensor(&p->o),
         *dout = dev_upload_tensor(&p->dout), *dq = dev_upload_tensor(&p->dq),
         *dk = dev_upload_tensor(&p->dk), *dv = dev_upload_tensor(&p->dv);
    float *lse = dev_upload(p->lse, (size_t)p->n_lse * sizeof(float));
    dev_poison(dq, &p->dq);
    dev_poison(dk, &p->dk);
    dev_poison(dv, &p->dv);
    size_t bytes;
    void *ws = dev_workspace(plan, &bytes);
    bsa_bwd_args a = {q, k, v, o, lse, dout, dq, dk, dv};
    bsa_status st = bsa_backward(plan, &a, ws, bytes, NULL);
    CU(cudaDeviceSynchronize());
    dev_download(&p->dq, dq);
    dev_download(&p->dk, dk);
    dev_download(&p->dv, dv);
    void *all[] = {q, k, v, o, lse, dout, dq, dk, dv, ws};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        CU(cudaFree(all[i]));
    return st;
}

static hz_runner runner(int i)
{
    hz_runner r = {
        impls[i] ? impls[i] : "cuda (default)", ctx, impls[i], GPU_TILE, gpu_forward, gpu_backward};
    return r;
}

static int setup(void **state)
{
    (void)state;
    return bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CUDA, 0, 0}) != BSA_SUCCESS;
}

static int teardown(void **state)
{
    (void)state;
    return bsa_context_destroy(ctx) != BSA_SUCCESS;
}

static const bsa_dtype dtypes[3] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16};

static void nan_key_poisons_only_its_rows(void **state)
{
    (void)state;
    for (int i = 0; i < N_IMPLS; i++) {
        hz_runner r = runner(i);
        for (int d = 0; d < 3; d++) {
            ran[i] += hz_poison_key(&r, dtypes[d], 0, NAN);
            ran[i] += hz_poison_key(&r, dtypes[d], 0, d == 2 ? -INFINITY : INFINITY);
        }
    }
}

static void inf_value_poisons_only_its_tiles(void **state)
{
    (void)state;
    for (int i = 0; i < N_IMPLS; i++) {
        hz_runner r = runner(i);
        for (int d = 0; d < 3; d++)
            ran[i] += hz_poison_key(&r, dtypes[d], 1, d == 1 ? NAN : INFINITY);
    }
}

static void nan_query_poisons_its_row(void **state)
{
    (void)state;
    for (int i = 0; i < N_IMPLS; i++) {
        hz_runner r = runner(i);
        for (int d = 0; d < 3; d++) {
            ran[i] += hz_poison_query(&r, dtypes[d], NAN);
            ran[i] += hz_poison_query(&r, dtypes[d], d == 1 ? -INFINITY : INFINITY);
        }
    }
}

static void extreme_logits_stay_finite(void **state)
{
    (void)state;
    for (int i = 0; i < N_IMPLS; i++) {
        hz_runner r = runner(i);
        /* D = 16, scale 1/4: entries of 50 give |q.k| * scale up to 1e4 */
        ran[i] += hz_extreme(&r, BSA_DTYPE_F32, 50.0, 1e-4, 1e-3);
        ran[i] += hz_extreme(&r, BSA_DTYPE_F16, 50.0, 1e-2, 1e-2);
        ran[i] += hz_extreme(&r, BSA_DTYPE_BF16, 50.0, 3e-2, 3e-2);
        /* the CPU's extremes (tests/test_hostile.c): f16 inputs at 65504,
         * bf16 near 1e18 (logits near 1e36), f32 at 1e5 (logits near
         * 1e10), past |c s| ~ 2^31 where an exponent 2^(fma(s, c, -max))
         * overflowed (softmax_step's wide rows): gradients finite only */
        ran[i] += hz_extreme(&r, BSA_DTYPE_F32, 1e5, 1e-2, 0.0);
        ran[i] += hz_extreme(&r, BSA_DTYPE_F16, 65504.0, 1e-2, 0.0);
        ran[i] += hz_extreme(&r, BSA_DTYPE_BF16, 1e18, 3e-2, 0.0);
    }
}

/* A few rows with logits ~1e7 and ~1e10 among ordinary ones, on layouts
 * each kind of kernel takes (the chunk kernels' strided rows included),
 * and rows whose first key tile alone is ~-4e9 (hz_sunk_rows): such rows
 * (and the rows their threads share) take rounded products in the steps
 * that need them (softmax_step), the others keep the fused exponent, and
 * every row must be right */
static void wide_rows_among_ordinary_ones(void **state)
{
    (void)state;
    const bsa_pattern pats[3] = {BSA_PATTERN_ALL, BSA_PATTERN_LOCAL, BSA_PATTERN_STRIDED};
    for (int i = 0; i < N_IMPLS; i++) {
        hz_runner r = runner(i);
        for (int k = 0; k < 3; k++)
            ran[i] += hz_wide_rows_all(&r, pats[k]);
    }
}

/* Every implementation this device can run ran some check: an entry that
 * declined all of them would leave its kernels unchecked. */
static void every_implementation_ran(void **state)
{
    (void)state;
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    int sm90 = prop.major == 9 && prop.minor == 0;
    for (int i = 0; i < N_IMPLS; i++) {
        int hopper = impls[i] && strstr(impls[i], "wgmma") != NULL;
        printf("%-28s %d checks ran\n", impls[i] ? impls[i] : "cuda (default)", ran[i]);
        if (hopper && !sm90)
            continue;
        assert_true(ran[i] > 0);
    }
}

int main(void)
{
    exit_skipped_without_gpu("test_cuda_hostile");
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nan_key_poisons_only_its_rows),
        cmocka_unit_test(inf_value_poisons_only_its_tiles),
        cmocka_unit_test(nan_query_poisons_its_row),
        cmocka_unit_test(extreme_logits_stay_finite),
        cmocka_unit_test(wide_rows_among_ordinary_ones),
        cmocka_unit_test(every_implementation_ran),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
