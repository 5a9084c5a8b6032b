/*
 * The configuration of the 99 KB parts (sm_86 / sm_89: A10, L4, L40,
 * RTX 30xx/40xx) run on whatever card is present: BSA_DEVICE_SMEM=101376
 * at plan creation makes the implementation list assume a block has 99 KB
 * of shared memory, so at head dims 65..128 the plan must take the
 * mma.sync tiles with the one-stage dK/dV (its explanation says so), and
 * its results must match the CPU backend's on fresh random inputs, f16 and
 * bf16, forward and backward.  Exits 77 (skipped) without a device.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#ifndef BSA_WITH_CUDA
#error "GPU test: tests/CMakeLists.txt builds it only with the CUDA backend"
#endif

#include "cuda_testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, H = 2, T = 512, BLOCK = 64 };

static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* Host copy of a device tensor of dtype dt, as floats. */
static void to_float(bsa_dtype dt, const void *dev, float *out, size_t n)
{
    uint16_t *h = tu_xmalloc(n * 2);
    CU(cudaMemcpy(h, dev, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++)
        out[i] = (float)tu_get(dt, h, (int64_t)i);
    free(h);
}

static void small_smem_case(bsa_dtype dt, int dim)
{
    bsa_context_t gpu = NULL, cpu = NULL;
    bsa_context_params gp = {BSA_BACKEND_CUDA, 0, 0}, cp = {BSA_BACKEND_CPU, 0, 0};
    expect_ok(bsa_context_create(&gpu, &gp), "cuda context");
    expect_ok(bsa_context_create(&cpu, &cp), "cpu context");
    bsa_preset ps = {BSA_PATTERN_ALL, T, BLOCK, H, 0, 0, 0, 0};
    bsa_layout_t lg = NULL, lc = NULL;
    expect_ok(bsa_layout_create_preset(gpu, &lg, &ps), "layout");
    expect_ok(bsa_layout_create_preset(cpu, &lc, &ps), "layout");
    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = dt;
    d.q = d.k = d.v = d.o = bsa_tensor_bthd(B, T, H, dim);

    setenv("BSA_DEVICE_SMEM", "101376", 1);
    bsa_plan_t plan = NULL;
    bsa_status st = bsa_plan_create(gpu, &plan, &d, lg);
    unsetenv("BSA_DEVICE_SMEM");
    expect_ok(st, "plan under 99 KB");
    const char *impl = NULL;
    expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
    size_t len = 0;
    expect_ok(bsa_plan_explain(plan, NULL, 0, &len), "explain length");
    char *ex = tu_xmalloc(len + 1);
    expect_ok(bsa_plan_explain(plan, ex, len + 1, NULL), "explain");
    printf("%s D=%d under 99 KB: %s\n", dt == BSA_DTYPE_F16 ? "f16" : "bf16", dim, impl);
    assert_string_equal(impl, "cuda-mma-sm80");
    assert_non_null(strstr(ex, "(99 KB shared memory a block"));
    assert_non_null(strstr(ex, "tile dkdv x64 (one stage)"));
    free(ex);

    const size_t n = (size_t)B * T * H * dim, bytes = n * 2;
    uint16_t *hx[4]; /* q, k, v, dout */
    void *dx[4];
    for (int i = 0; i < 4; i++) {
        hx[i] = tu_xmalloc(bytes);
        for (size_t j = 0; j < n; j++)
            tu_set(dt, hx[i], (int64_t)j, tu_uniform(-1, 1));
        dx[i] = dev_upload(hx[i], bytes);
    }
    void *o, *dq, *dk, *dv, *ws = NULL;
    float *lse;
    CU(cudaMalloc(&o, bytes));
    CU(cudaMalloc(&dq, bytes));
    CU(cudaMalloc(&dk, bytes));
    CU(cudaMalloc(&dv, bytes));
    CU(cudaMalloc((void **)&lse, (size_t)B * H * T * 4));
    size_t wsb = 0;
    expect_ok(bsa_plan_workspace_size(plan, &wsb), "workspace");
    CU(cudaMalloc(&ws, wsb));
    bsa_fwd_args fa = {dx[0], dx[1], dx[2], o, lse};
    expect_ok(bsa_forward(plan, &fa, ws, wsb, NULL), "forward");
    bsa_bwd_args ba = {dx[0], dx[1], dx[2], o, lse, dx[3], dq, dk, dv};
    expect_ok(bsa_backward(plan, &ba, ws, wsb, NULL), "backward");
    CU(cudaDeviceSynchronize());

    /* the CPU backend on the same inputs */
    bsa_plan_t cplan = NULL;
    expect_ok(bsa_plan_create(cpu, &cplan, &d, lc), "cpu plan");
    uint16_t *co = tu_xmalloc(bytes), *cg[3];
    float *clse = tu_xmalloc((size_t)B * H * T * 4);
    for (int i = 0; i < 3; i++)
        cg[i] = tu_xmalloc(bytes);
    bsa_fwd_args cfa = {hx[0], hx[1], hx[2], co, clse};
    expect_ok(bsa_forward(cplan, &cfa, NULL, 0, NULL), "cpu forward");
    bsa_bwd_args cba = {hx[0], hx[1], hx[2], co, clse, hx[3], cg[0], cg[1], cg[2]};
    expect_ok(bsa_backward(cplan, &cba, NULL, 0, NULL), "cpu backward");

    float *got = tu_xmalloc(n * 4), *want = tu_xmalloc(n * 4);
    const void *outs[4] = {o, dq, dk, dv};
    const uint16_t *couts[4] = {co, cg[0], cg[1], cg[2]};
    static const char *const names[4] = {"o", "dq", "dk", "dv"};
    /* the GPU against the CPU, both within the dtype's rounding of the
     * exact result (test_cuda's bounds: f16 1e-2, bf16 5e-2) */
    const double tol = dt == BSA_DTYPE_F16 ? 1e-2 : 5e-2;
    for (int i = 0; i < 4; i++) {
        to_float(dt, outs[i], got, n);
        for (size_t j = 0; j < n; j++)
            want[j] = (float)tu_get(dt, couts[i], (int64_t)j);
        const double e = rel_l2(got, want, n);
        printf("  %s rel L2 vs CPU %.2e\n", names[i], e);
        assert_true(e < tol);
    }
    for (int i = 0; i < 4; i++) {
        free(hx[i]);
        cudaFree(dx[i]);
    }
    for (int i = 0; i < 3; i++)
        free(cg[i]);
    free(co);
    free(clse);
    free(got);
    free(want);
    cudaFree(o);
    cudaFree(dq);
    cudaFree(dk);
    cudaFree(dv);
    cudaFree(lse);
    cudaFree(ws);
    bsa_plan_destroy(cplan);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lc);
    bsa_layout_destroy(lg);
    bsa_context_destroy(cpu);
    bsa_context_destroy(gpu);
}

static void ampere_consumer_config(void **state)
{
    (void)state;
    const int dims[2] = {128, 96};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 2; i++)
            small_smem_case(t ? BSA_DTYPE_BF16 : BSA_DTYPE_F16, dims[i]);
}

int main(void)
{
    exit_skipped_without_gpu("test_cuda_small_smem");
    tu_seed();
    const struct CMUnitTest tests[] = {cmocka_unit_test(ampere_consumer_config)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
