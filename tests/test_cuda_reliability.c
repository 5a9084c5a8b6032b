/*
 * CUDA backend reliability (issue: sanitizers, concurrency, huge shapes):
 *   - several streams on one GPU, each running its own plan on its own data
 *     at the same time, give results equal bit for bit to the same problems
 *     run one after another on one stream;
 *   - a tensor of more than 2^31 elements (batch*heads*time*dim) with a long
 *     sparse sequence, checked on sampled rows (tests/common/sampled_ref)
 *     including rows whose offsets lie beyond 2^31 elements;
 *   - resource failures: an invalid device index; a caller's failed device
 *     allocation leaves the library usable; with the card's memory
 *     exhausted, the layout upload (the library's only device allocation;
 *     calls allocate nothing) fails with a status and works again later.
 * Skips cleanly without a CUDA device.
 */
#include "attn_check.h"
#include "sampled_ref.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#ifndef BSA_WITH_CUDA
#error "GPU test: tests/CMakeLists.txt builds it only with the CUDA backend"
#endif

#include "cuda_testutil.h"
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ streams */

enum { n_streams = 4 };

typedef struct dev_job {
    ac_problem p;
    bsa_attn_desc desc;
    bsa_plan_t plan;
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *ws;
    float *lse;
    size_t ws_bytes, bq, bk, bo;
    cudaStream_t stream;
    void *h_out[5]; /* o, dq, dk, dv, lse after the serial run */
} dev_job;

static void job_run(dev_job *j, cudaStream_t s)
{
    /* poison (0xFF bytes: NaN in every dtype) so that stale results show */
    CU(cudaMemsetAsync(j->o, 0xFF, j->bo, s));
    CU(cudaMemsetAsync(j->dq, 0xFF, j->bq, s));
    CU(cudaMemsetAsync(j->dk, 0xFF, j->bk, s));
    CU(cudaMemsetAsync(j->dv, 0xFF, j->bk, s));
    expect_ok(bsa_forward(j->plan, &(bsa_fwd_args){j->q, j->k, j->v, j->o, j->lse}, j->ws,
                          j->ws_bytes, s),
              "forward");
    expect_ok(
        bsa_backward(j->plan,
                     &(bsa_bwd_args){j->q, j->k, j->v, j->o, j->lse, j->dout, j->dq, j->dk, j->dv},
                     j->ws, j->ws_bytes, s),
        "backward");
}

static int job_matches(dev_job *j)
{
    size_t sizes[5] = {j->bo, j->bq, j->bk, j->bk, sizeof(float) * (size_t)j->p.n_lse};
    void *dev[5] = {j->o, j->dq, j->dk, j->dv, j->lse};
    int same = 1;
    for (int i = 0; i < 5; i++) {
        void *h = tu_xmalloc(sizes[i]);
        CU(cudaMemcpy(h, dev[i], sizes[i], cudaMemcpyDeviceToHost));
        same &= memcmp(h, j->h_out[i], sizes[i]) == 0;
        free(h);
    }
    return same;
}

static void streams_equal_serial(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx;
    expect_ok(bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CUDA, 0, 0}), "ctx");
    bsa_layout_t lay;
    const bsa_preset fixed = {BSA_PATTERN_FIXED, 1024, 32, 4, 128, 4, 1, 0};
    expect_ok(bsa_layout_create_preset(ctx, &lay, &fixed), "layout");
    const cm_source masks = cm_of_preset(&fixed);
    static const bsa_dtype dt[n_streams] = {BSA_DTYPE_F16, BSA_DTYPE_BF16, BSA_DTYPE_F16,
                                            BSA_DTYPE_F32};
    static const int dims[n_streams] = {64, 128, 32, 64};
    dev_job jobs[n_streams];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < n_streams; i++) {
        dev_job *j = &jobs[i];
        expect_ok(ac_problem_init(&j->p, lay, &masks, dt[i], 2, 4, dims[i], (ac_form)(i % 2), 0.0f,
                                  &j->desc),
                  "problem");
        expect_ok(bsa_plan_create(ctx, &j->plan, &j->desc, lay), "plan");
        expect_ok(bsa_plan_workspace_size(j->plan, &j->ws_bytes), "ws");
        j->bq = tensor_bytes(&j->p.q), j->bk = tensor_bytes(&j->p.k), j->bo = tensor_bytes(&j->p.o);
        void **d[] = {&j->q, &j->k, &j->v, &j->o, &j->dout, &j->dq, &j->dk, &j->dv};
        size_t b[] = {j->bq, j->bk, j->bk, j->bo, j->bo, j->bq, j->bk, j->bk};
        for (int x = 0; x < 8; x++)
            CU(cudaMalloc(d[x], b[x]));
        CU(cudaMalloc((void **)&j->lse, sizeof(float) * (size_t)j->p.n_lse));
        CU(cudaMalloc(&j->ws, j->ws_bytes ? j->ws_bytes : 1));
        CU(cudaMemcpy(j->q, j->p.q.data, j->bq, cudaMemcpyHostToDevice));
        CU(cudaMemcpy(j->k, j->p.k.data, j->bk, cudaMemcpyHostToDevice));
        CU(cudaMemcpy(j->v, j->p.v.data, j->bk, cudaMemcpyHostToDevice));
        CU(cudaMemcpy(j->dout, j->p.dout.data, j->bo, cudaMemcpyHostToDevice));
        CU(cudaStreamCreateWithFlags(&j->stream, cudaStreamNonBlocking));
    }
    /* serial: one after another on the default stream */
    for (int i = 0; i < n_streams; i++) {
        dev_job *j = &jobs[i];
        job_run(j, NULL);
        CU(cudaDeviceSynchronize());
        size_t sizes[5] = {j->bo, j->bq, j->bk, j->bk, sizeof(float) * (size_t)j->p.n_lse};
        void *dev[5] = {j->o, j->dq, j->dk, j->dv, j->lse};
        for (int x = 0; x < 5; x++) {
            j->h_out[x] = tu_xmalloc(sizes[x]);
            CU(cudaMemcpy(j->h_out[x], dev[x], sizes[x], cudaMemcpyDeviceToHost));
        }
        /* and right, so that equality below means something */
        CU(cudaMemcpy(j->p.o.data, j->o, j->bo, cudaMemcpyDeviceToHost));
        tu_tensor_read(&j->p.o);
        ac_problem_oracle(&j->p);
        ac_errors e;
        ac_compare(&j->p, 0, &e);
        assert_true(e.o < 3e-2);
    }
    /* concurrent: every job on its own stream, several rounds */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < n_streams; i++)
            job_run(&jobs[i], jobs[i].stream);
        CU(cudaDeviceSynchronize());
        for (int i = 0; i < n_streams; i++) {
            if (!job_matches(&jobs[i]))
                fprintf(stderr, "stream %d round %d differs from the serial run\n", i, round);
            assert_true(job_matches(&jobs[i]));
        }
    }
    for (int i = 0; i < n_streams; i++) {
        dev_job *j = &jobs[i];
        void *d[] = {j->q, j->k, j->v, j->o, j->dout, j->dq, j->dk, j->dv, j->lse, j->ws};
        for (int x = 0; x < 10; x++)
            cudaFree(d[x]);
        for (int x = 0; x < 5; x++)
            free(j->h_out[x]);
        cudaStreamDestroy(j->stream);
        bsa_plan_destroy(j->plan);
        ac_problem_free(&j->p);
    }
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
    print_message("%d streams x 3 rounds: bitwise equal to the serial runs\n", n_streams);
}

/* ------------------------------------------------------------ huge shape */

/* f16 [1, T, H, D] (the seed's form), T*H*D > 2^31 elements. */
enum { HT = 262144, HH = 65, HD = 128, HL = 256, HSAMPLES = 12 };

static void huge_tensor_sampled(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    const int64_t n = (int64_t)HT * HH * HD;
    assert_true(n > ((int64_t)1 << 31));
    size_t bytes = (size_t)n * 2;
    size_t free_b = 0, total_b = 0;
    CU(cudaMemGetInfo(&free_b, &total_b));
    if (free_b < 8 * bytes + ((size_t)2 << 30)) {
        fprintf(stderr, "huge shape needs %.1f GiB of device memory, %.1f free: skipped\n",
                8.0 * bytes / (1 << 30), (double)free_b / (1 << 30));
        skip();
    }
    bsa_context_t ctx;
    expect_ok(bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CUDA, 0, 0}), "ctx");
    bsa_layout_t lay;
    expect_ok(bsa_layout_create_preset(ctx, &lay,
                                       &(bsa_preset){BSA_PATTERN_LOCAL, HT, 64, HH, HL, 0, 0, 0}),
              "layout");
    bsa_attn_desc d = {BSA_DTYPE_F16};
    d.q = d.k = d.v = d.o = bsa_tensor_bthd(1, HT, HH, HD);
    bsa_plan_t plan;
    expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
    size_t ws_bytes;
    expect_ok(bsa_plan_workspace_size(plan, &ws_bytes), "ws");

    /* inputs: a random pool of f16 values tiled with a period prime to the
     * row length, so rows differ (filling 4 x 2^31 values one by one would
     * take minutes on the host) */
    enum { pool_n = 1000003 };
    uint16_t *pool = tu_xmalloc(sizeof(uint16_t) * pool_n);
    uint16_t *host[8];
    void *dev[8];
    for (int i = 0; i < 8; i++) {
        host[i] = tu_xmalloc(bytes);
        CU(cudaMalloc(&dev[i], bytes));
        if (i < 4) {
            for (int x = 0; x < pool_n; x++)
                tu_set(BSA_DTYPE_F16, pool, x, tu_uniform(-1, 1));
            for (int64_t off = 0; off < n; off += pool_n)
                memcpy(host[i] + off, pool,
                       sizeof(uint16_t) * (size_t)(n - off < pool_n ? n - off : pool_n));
            CU(cudaMemcpy(dev[i], host[i], bytes, cudaMemcpyHostToDevice));
        } else {
            CU(cudaMemset(dev[i], 0xFF, bytes)); /* NaN poison */
        }
    }
    float *lse_d, *lse_h = tu_xmalloc(sizeof(float) * (size_t)HT * HH);
    void *ws;
    CU(cudaMalloc((void **)&lse_d, sizeof(float) * (size_t)HT * HH));
    CU(cudaMalloc(&ws, ws_bytes ? ws_bytes : 1));
    /* q k v dout | o dq dk dv */
    expect_ok(bsa_forward(plan, &(bsa_fwd_args){dev[0], dev[1], dev[2], dev[4], lse_d}, ws,
                          ws_bytes, NULL),
              "forward");
    expect_ok(bsa_backward(plan,
                           &(bsa_bwd_args){dev[0], dev[1], dev[2], dev[4], lse_d, dev[3], dev[5],
                                           dev[6], dev[7]},
                           ws, ws_bytes, NULL),
              "backward");
    CU(cudaDeviceSynchronize());
    int64_t unwritten = 0;
    for (int i = 4; i < 8; i++) {
        CU(cudaMemcpy(host[i], dev[i], bytes, cudaMemcpyDeviceToHost));
        for (int64_t x = 0; x < n; x++)
            unwritten += (host[i][x] & 0x7fffu) > 0x7c00u; /* NaN */
    }
    CU(cudaMemcpy(lse_h, lse_d, sizeof(float) * (size_t)HT * HH, cudaMemcpyDeviceToHost));
    assert_int_equal(unwritten, 0);

    sr_view view[8];
    for (int i = 0; i < 8; i++)
        view[i] = (sr_view){BSA_DTYPE_F16, host[i], (int64_t)HH * HD, HD};
    sr_problem p = {{BSA_PATTERN_LOCAL, HL, HT},    view[0], view[1], view[2], view[3], HD,
                    (float)(1.0 / sqrt((double)HD))};
    sr_err eo = {0}, edq = {0}, edv = {0};
    double o[HD], dq[HD], dv[HD];
    int beyond = 0;
    for (int s = 0; s < HSAMPLES; s++) {
        /* half the samples from the last rows/heads: offsets beyond 2^31 */
        int64_t t = s % 2 ? HT - 1 - tu_randint(0, 4096) : tu_randint(0, HT);
        int h = s % 2 ? HH - 1 - tu_randint(0, 4) : tu_randint(0, HH);
        beyond += ((int64_t)t * HH + h) * HD >= ((int64_t)1 << 31);
        double lse = sr_query_row(&p, t, h, o, dq);
        sr_acc(&eo, &view[4], t, h, o, HD);
        sr_acc(&edq, &view[5], t, h, dq, HD);
        assert_true(fabs(lse_h[(int64_t)h * HT + t] - lse) < 1e-3 * (1 + fabs(lse)));
        sr_key_dv(&p, t, h, dv);
        sr_acc(&edv, &view[7], t, h, dv, HD);
    }
    print_message("f16 [1, %d, %d*%d] = %lld elements (> 2^31), %d of %d sampled rows beyond "
                  "2^31: o %.2e dq %.2e dv %.2e (relative L2)\n",
                  HT, HH, HD, (long long)n, beyond, HSAMPLES, sr_rel(&eo), sr_rel(&edq),
                  sr_rel(&edv));
    assert_true(beyond > 0);
    assert_true(sr_rel(&eo) < 5e-3);
    assert_true(sr_rel(&edq) < 1e-2);
    assert_true(sr_rel(&edv) < 1e-2);
    for (int i = 0; i < 8; i++) {
        cudaFree(dev[i]);
        free(host[i]);
    }
    cudaFree(lse_d);
    cudaFree(ws);
    free(lse_h);
    free(pool);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

/* ------------------------------------------------------- resource failures */

static void device_failures(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    int n = 0;
    CU(cudaGetDeviceCount(&n));
    bsa_context_t ctx = NULL;
    bsa_status st = bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CUDA, n + 3, 0});
    print_message("device %d of %d: %s: %s\n", n + 3, n, bsa_status_string(st), bsa_last_error());
    assert_int_not_equal(st, BSA_SUCCESS);
    assert_null(ctx);
    assert_true(strlen(bsa_last_error()) > 0);
    /* the card's memory exhausted by the caller: the library still works */
    size_t free_b = 0, total_b = 0;
    CU(cudaMemGetInfo(&free_b, &total_b));
    void *hog = NULL;
    assert_int_not_equal(cudaMalloc(&hog, total_b * 2), cudaSuccess);
    cudaGetLastError();
    expect_ok(bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CUDA, 0, 0}), "ctx");
    bsa_layout_t lay;
    expect_ok(
        bsa_layout_create_preset(ctx, &lay, &(bsa_preset){BSA_PATTERN_ALL, 256, 64, 1, 0, 0, 0, 0}),
        "layout after a failed allocation");
    bsa_layout_destroy(lay);

    /* Device memory exhausted: the layout upload (the library's only device
     * allocation) must fail with a status and a message, and succeed once
     * memory is back. */
    enum { max_chunks = 4096 };
    static void *chunks[max_chunks];
    int n_chunks = 0;
    size_t sizes[] = {(size_t)1 << 30, (size_t)64 << 20, (size_t)1 << 20};
    for (int si = 0; si < 3; si++)
        while (n_chunks < max_chunks && cudaMalloc(&chunks[n_chunks], sizes[si]) == cudaSuccess)
            n_chunks++;
    cudaGetLastError();
    bsa_preset big = {BSA_PATTERN_LOCAL, 1 << 20, 64, 1, 256, 0, 0, 0};
    lay = NULL;
    st = bsa_layout_create_preset(ctx, &lay, &big);
    print_message("layout upload with the card full (%d chunks held): %s: %s\n", n_chunks,
                  bsa_status_string(st), bsa_last_error());
    assert_true(st == BSA_ERROR_OUT_OF_MEMORY || st == BSA_ERROR_DEVICE);
    assert_null(lay);
    for (int i = 0; i < n_chunks; i++)
        cudaFree(chunks[i]);
    expect_ok(bsa_layout_create_preset(ctx, &lay, &big), "layout once memory is back");
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

/* Host memory handed to a CUDA context: refused at the call with the
 * tensor's name (it used to fault asynchronously in a later launch);
 * page-locked host memory, which the device can read, runs. */
static void host_pointers(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = NULL;
    expect_ok(bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CUDA, 0, 0}), "ctx");
    bsa_layout_t lay = NULL;
    expect_ok(
        bsa_layout_create_preset(ctx, &lay, &(bsa_preset){BSA_PATTERN_ALL, 256, 64, 1, 0, 0, 0, 0}),
        "layout");
    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = BSA_DTYPE_F16;
    d.q = d.k = d.v = d.o = bsa_tensor_bthd(1, 256, 1, 64);
    bsa_plan_t plan = NULL;
    expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
    const size_t bytes = 256 * 64 * 2;
    void *dev[8], *ws = NULL;
    uint16_t *host = aligned_alloc(64, bytes);
    for (size_t i = 0; i < bytes / 2; i++)
        host[i] = (uint16_t)(0x3c00u ^ (i & 0x3ffu)); /* finite f16 values */
    for (int i = 0; i < 8; i++) {
        CU(cudaMalloc(&dev[i], bytes));
        CU(cudaMemcpy(dev[i], host, bytes, cudaMemcpyHostToDevice));
    }
    float *lse = NULL;
    CU(cudaMalloc((void **)&lse, 256 * 4));
    size_t wsb = 0;
    expect_ok(bsa_plan_workspace_size(plan, &wsb), "ws");
    CU(cudaMalloc(&ws, wsb));
    CU(cudaMemset(dev[3], 0xff, bytes)); /* o poisoned */
    bsa_fwd_args fa = {host, dev[1], dev[2], dev[3], lse};
    bsa_status st = bsa_forward(plan, &fa, ws, wsb, NULL);
    print_message("host q: %s: %s\n", bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(bsa_last_error(), "args->q"));
    assert_non_null(strstr(bsa_last_error(), "host memory"));
    uint16_t *back = malloc(bytes);
    CU(cudaMemcpy(back, dev[3], bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < bytes / 2; i++)
        assert_int_equal(back[i], 0xffffu); /* untouched */
    fa.q = dev[0];
    expect_ok(bsa_forward(plan, &fa, ws, wsb, NULL), "forward on device memory");
    bsa_bwd_args ba = {dev[0], dev[1], dev[2], dev[3], lse, dev[4], dev[5], host, dev[7]};
    st = bsa_backward(plan, &ba, ws, wsb, NULL);
    assert_int_equal(st, BSA_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(bsa_last_error(), "args->dk"));
    /* page-locked host memory is readable by the device: it runs */
    void *pinned = NULL;
    CU(cudaMallocHost(&pinned, bytes));
    memcpy(pinned, host, bytes);
    fa.q = pinned;
    expect_ok(bsa_forward(plan, &fa, ws, wsb, NULL), "forward on page-locked q");
    CU(cudaDeviceSynchronize());
    CU(cudaFreeHost(pinned));
    free(back);
    free(host);
    for (int i = 0; i < 8; i++)
        cudaFree(dev[i]);
    cudaFree(lse);
    cudaFree(ws);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

int main(void)
{
    exit_skipped_without_gpu("test_cuda_reliability");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(streams_equal_serial),
        cmocka_unit_test(device_failures),
        cmocka_unit_test(host_pointers),
        cmocka_unit_test(huge_tensor_sampled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
