/*
 * Features beyond the seed on the CUDA backend, forward and backward,
 * against the double oracle (tests/common/feat_check.c, the same problems
 * as the CPU's test_features_attention.c): grouped-query / multi-query
 * heads, a value head dim different from the query/key head dim, per-batch
 * key lengths, packed variable-length sequences, their combinations, and
 * the presets beyond the seed (sliding window, dilated, Longformer,
 * BigBird, document), on each path (mma, volta, reference) and dtype it
 * takes.  The key lengths and sequence offsets go to the device, as the
 * API asks of GPU backends.  Fresh random inputs (BSA_TEST_SEED replays),
 * every output poisoned on the device before each call; also: the
 * grouped-query backward is bitwise deterministic, and a call with
 * num_seqs * heads above 65535 runs (grid y/z split).  Skips without a GPU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#ifndef BSA_WITH_CUDA
#error "GPU test: tests/CMakeLists.txt builds it only with the CUDA backend"
#endif

#include "cuda_testutil.h"
#include "feat_check.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Relative L2 thresholds as test_cuda.c's (f32: reference path only). */
static const double tol_out[3] = {3e-5, 5e-3, 3e-2};
static const double tol_grad[3] = {3e-5, 1e-2, 5e-2};
static const double tol_lse = 2e-5;
static const bsa_dtype dtypes[3] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16};

/* wgmma: every Hopper kernel forced (forward, dQ, dK/dV; a per-head
 * gathered layout with kv groups takes the reference dK/dV); it runs where
 * the device and the problem allow it (sm_90, head dims 33..128) and is
 * skipped elsewhere */
enum { PATH_MMA, PATH_REF, PATH_VOLTA, PATH_WGMMA, N_PATHS };
static const char *const path_env[N_PATHS] = {"mma", "reference", "volta", "wgmma"};
static double worst[N_PATHS][3][5];
static int cases_run[N_PATHS];

static bsa_context_t new_ctx(void)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CUDA, 0, 0};
    expect_ok(bsa_context_create(&ctx, &cp), "context");
    return ctx;
}

static bsa_layout_t preset(bsa_context_t ctx, bsa_pattern pat, int seq, int block, int heads, int c,
                           int bidir)
{
    bsa_layout_t l = NULL;
    expect_ok(fc_preset(ctx, &l, pat, seq, block, heads, c, bidir), "preset");
    return l;
}

/* Device copies of a problem's tensors and index arrays. */
typedef struct dev_feat {
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *ws;
    float *lse;
    int32_t *klen, *cu_q, *cu_k;
    size_t ws_bytes;
} dev_feat;

static void dev_init(dev_feat *d, fc_problem *p, bsa_plan_t plan)
{
    memset(d, 0, sizeof *d);
    tu_tensor *t[8] = {&p->q, &p->k, &p->v, &p->o, &p->dout, &p->dq, &p->dk, &p->dv};
    void **dst[8] = {&d->q, &d->k, &d->v, &d->o, &d->dout, &d->dq, &d->dk, &d->dv};
    for (int i = 0; i < 8; i++)
        *dst[i] = dev_upload_tensor(t[i]);
    CU(cudaMalloc((void **)&d->lse, (size_t)p->n_lse * sizeof(float)));
    size_t nseg = (size_t)p->n_seg;
    d->klen = dev_upload(p->klen, nseg * sizeof(int32_t));
    d->cu_q = dev_upload(p->cu_q, (nseg + 1) * sizeof(int32_t));
    d->cu_k = dev_upload(p->cu_k, (nseg + 1) * sizeof(int32_t));
    expect_ok(bsa_plan_workspace_size(plan, &d->ws_bytes), "workspace size");
    CU(cudaMalloc(&d->ws, d->ws_bytes ? d->ws_bytes : 1));
}

static void dev_free(dev_feat *d)
{
    void *ps[] = {d->q,  d->k,  d->v,   d->o,    d->dout, d->dq,  d->dk,
                  d->dv, d->ws, d->lse, d->klen, d->cu_q, d->cu_k};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        cudaFree(ps[i]);
}

static bsa_status gpu_forward(bsa_plan_t plan, fc_problem *p, dev_feat *d)
{
    dev_poison(d->o, &p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    CU(cudaMemcpy(d->lse, p->lse, (size_t)p->n_lse * 4, cudaMemcpyHostToDevice));
    bsa_fwd_args a = fc_fwd_args(p);
    a.q = d->q, a.k = d->k, a.v = d->v, a.o = d->o, a.lse = d->lse;
    a.key_lengths = d->klen, a.cu_seqlens_q = d->cu_q, a.cu_seqlens_k = d->cu_k;
    bsa_status st = bsa_forward(plan, &a, d->ws, d->ws_bytes, NULL);
    CU(cudaDeviceSynchronize());
    dev_download(&p->o, d->o);
    CU(cudaMemcpy(p->lse, d->lse, (size_t)p->n_lse * 4, cudaMemcpyDeviceToHost));
    return st;
}

static bsa_status gpu_backward(bsa_plan_t plan, fc_problem *p, dev_feat *d)
{
    dev_poison(d->dq, &p->dq);
    dev_poison(d->dk, &p->dk);
    dev_poison(d->dv, &p->dv);
    bsa_bwd_args a = fc_bwd_args(p);
    a.q = d->q, a.k = d->k, a.v = d->v, a.o = d->o, a.lse = d->lse, a.dout = d->dout;
    a.dq = d->dq, a.dk = d->dk, a.dv = d->dv;
    a.key_lengths = d->klen, a.cu_seqlens_q = d->cu_q, a.cu_seqlens_k = d->cu_k;
    bsa_status st = bsa_backward(plan, &a, d->ws, d->ws_bytes, NULL);
    CU(cudaDeviceSynchronize());
    dev_download(&p->dq, d->dq);
    dev_download(&p->dk, d->dk);
    dev_download(&p->dv, d->dv);
    return st;
}

/* Whether a path takes this dtype / head dims (else it is not run). */
static int path_takes(int path, const fc_spec *s)
{
    int64_t dmax = s->head_dim > s->v_dim ? s->head_dim : s->v_dim;
    if (path == PATH_MMA || path == PATH_WGMMA)
        return s->dtype != BSA_DTYPE_F32;
    if (path == PATH_VOLTA)
        return s->dtype == BSA_DTYPE_F16 && dmax <= 128;
    return 1;
}

/* A plan on the given path (BSA_CUDA_PATH is read at plan creation);
 * NULL where the wgmma path declines the problem. */
static bsa_plan_t plan_on_path(bsa_context_t ctx, bsa_layout_t layout, const bsa_attn_desc *desc,
                               int path)
{
    setenv("BSA_CUDA_PATH", path_env[path], 1);
    bsa_plan_t plan = NULL;
    bsa_status st = bsa_plan_create(ctx, &plan, desc, layout);
    unsetenv("BSA_CUDA_PATH");
    if (path == PATH_WGMMA && st == BSA_ERROR_UNSUPPORTED)
        return NULL;
    if (st != BSA_SUCCESS)
        fprintf(stderr, "plan on the %s path: %s\n", path_env[path], bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    return plan;
}

/* One problem on one path: plan, forward, backward, the comparison. */
static void run_case(const char *label, bsa_context_t ctx, bsa_layout_t layout, const fc_spec *spec,
                     int path)
{
    if (!path_takes(path, spec))
        return;
    fc_problem p;
    bsa_attn_desc desc;
    assert_int_equal(fc_problem_init(&p, layout, spec, &desc), BSA_SUCCESS);
    bsa_plan_t plan = plan_on_path(ctx, layout, &desc, path);
    if (!plan) {
        fc_problem_free(&p);
        return;
    }
    dev_feat d;
    dev_init(&d, &p, plan);
    bsa_status st = gpu_forward(plan, &p, &d);
    if (st == BSA_SUCCESS)
        st = gpu_backward(plan, &p, &d);
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s [%s]: %s\n", label, path_env[path], bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    fc_errors e;
    fc_compare(&p, 1, &e);
    int di = (int)spec->dtype;
    double got[5] = {e.o, e.lse, e.dq, e.dk, e.dv};
    for (int i = 0; i < 5; i++)
        worst[path][di][i] = got[i] > worst[path][di][i] ? got[i] : worst[path][di][i];
    cases_run[path]++;
    int bad = !fc_within(label, path_env[path], spec, &e, tol_out[di], tol_grad[di], tol_lse);
    assert_false(bad);
    dev_free(&d);
    bsa_plan_destroy(plan);
    fc_problem_free(&p);
}

/* Every path x the dtypes it takes, a random tensor form each. */
static void run_all(const char *label, bsa_context_t ctx, bsa_layout_t layout, fc_spec spec)
{
    for (int path = 0; path < N_PATHS; path++)
        for (int di = 0; di < 3; di++) {
            spec.dtype = dtypes[di];
            /* the tile paths need 16-byte rows: padded tensors (odd
             * strides) go to the reference path */
            spec.form = (ac_form)tu_randint(0, path == PATH_REF ? 3 : 2);
            run_case(label, ctx, layout, &spec, path);
        }
}

/* The cases of a test, in a context of their own. */
static void run_cases(const fc_case *cases, int n, int reps)
{
    bsa_context_t ctx = new_ctx();
    assert_int_equal(fc_run_cases(ctx, cases, n, reps, run_all), BSA_SUCCESS);
    bsa_context_destroy(ctx);
}

static void test_gqa(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    /* "gqa fixed per-head": a per-head layout with small blocks has
     * gathered key tiles, so its dK/dV takes the reference kernel */
    static const fc_case cases[] = {
        {"gqa local 4/2", BSA_PATTERN_LOCAL, 256, 16, 1, 80, 0, 2, 4, 2, 32, 32, 0, 0},
        {"mqa local 4/1", BSA_PATTERN_LOCAL, 256, 16, 1, 80, 0, 1, 4, 1, 64, 64, 0, 0},
        {"gqa all 6/3", BSA_PATTERN_ALL, 192, 64, 1, 0, 1, 1, 6, 3, 128, 128, 0, 0},
        {"gqa causal b128 8/2", BSA_PATTERN_ALL, 512, 128, 1, 0, 0, 1, 8, 2, 64, 64, 0, 0},
        {"gqa fixed per-head 4/2", BSA_PATTERN_FIXED, 256, 16, 4, 64, 0, 2, 4, 2, 32, 32, 0, 0},
        {"mqa strided 4/1", BSA_PATTERN_STRIDED, 256, 16, 1, 8, 0, 1, 4, 1, 64, 64, 0, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 1);
}

static void test_value_dim(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const fc_case cases[] = {
        {"dv > d", BSA_PATTERN_LOCAL, 192, 32, 1, 64, 1, 2, 2, 2, 16, 48, 0, 0},
        {"dv < d", BSA_PATTERN_LOCAL, 192, 32, 1, 64, 1, 1, 3, 3, 64, 8, 0, 0},
        {"dv 128 d 32", BSA_PATTERN_ALL, 256, 64, 1, 0, 0, 1, 2, 2, 32, 128, 0, 0},
        {"dv 256 d 64", BSA_PATTERN_ALL, 256, 64, 1, 0, 0, 1, 2, 2, 64, 256, 0, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 1);
}

static void test_key_lengths(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const fc_case cases[] = {
        {"keylen all bidir", BSA_PATTERN_ALL, 256, 16, 1, 0, 1, 4, 2, 2, 32, 32, 1, 0},
        {"keylen causal", BSA_PATTERN_ALL, 320, 64, 1, 0, 0, 3, 2, 2, 64, 64, 1, 0},
        {"keylen strided", BSA_PATTERN_STRIDED, 256, 8, 1, 16, 1, 3, 1, 1, 32, 32, 1, 0},
        {"keylen fixed", BSA_PATTERN_FIXED, 256, 32, 2, 64, 0, 3, 2, 2, 32, 32, 1, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 2);
}

static void test_varlen(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const fc_case cases[] = {
        {"varlen causal", BSA_PATTERN_ALL, 256, 16, 1, 0, 0, 1, 2, 2, 32, 32, 0, 4},
        {"varlen local bidir", BSA_PATTERN_LOCAL, 192, 32, 1, 80, 1, 1, 1, 1, 64, 64, 0, 3},
        {"varlen fixed per-head", BSA_PATTERN_FIXED, 256, 16, 2, 64, 0, 1, 2, 2, 32, 32, 0, 5},
        {"varlen causal b128", BSA_PATTERN_ALL, 384, 128, 1, 0, 0, 1, 2, 2, 128, 128, 0, 3},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 2);
}

/* varlen + GQA + a preset (+ key lengths, + value dim) */
static void test_combinations(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const fc_case cases[] = {
        {"varlen+gqa local", BSA_PATTERN_LOCAL, 256, 16, 1, 96, 0, 1, 4, 2, 32, 32, 0, 4},
        {"varlen+gqa+keylen+dv local", BSA_PATTERN_LOCAL, 256, 16, 1, 96, 0, 1, 4, 1, 32, 64, 1, 3},
        {"varlen+gqa+dv fixed per-head", BSA_PATTERN_FIXED, 256, 32, 4, 64, 1, 1, 4, 2, 64, 32, 1,
         3},
        {"gqa+keylen+dv all", BSA_PATTERN_ALL, 256, 64, 1, 0, 1, 2, 4, 2, 32, 48, 1, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 1);
}

/* The presets beyond the seed, causal and bidirectional, with GQA. */
static void test_presets(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    const bsa_pattern pats[5] = {BSA_PATTERN_SLIDING_WINDOW, BSA_PATTERN_DILATED,
                                 BSA_PATTERN_LONGFORMER, BSA_PATTERN_BIGBIRD, BSA_PATTERN_DOCUMENT};
    const char *names[5] = {"sliding window", "dilated", "longformer", "bigbird", "document"};
    const int blocks[4] = {16, 32, 64, 128};
    for (int i = 0; i < 5; i++)
        for (int bidir = 0; bidir < 2; bidir++) {
            int block = blocks[tu_randint(0, 4)];
            bsa_layout_t l = preset(ctx, pats[i], 512, block, 1, 40, bidir);
            char label[96];
            snprintf(label, sizeof label, "%s %s b%d", names[i], bidir ? "bidir" : "causal", block);
            run_all(label, ctx, l, fc_spec_of(2, 4, 2, 64, 64, 0, 0));
            bsa_layout_destroy(l);
        }
    bsa_context_destroy(ctx);
}

/* Two grouped-query backward runs give the same bits, on every path. */
static void test_gqa_deterministic(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_layout_t l = preset(ctx, BSA_PATTERN_LOCAL, 512, 32, 1, 128, 0);
    fc_spec spec = fc_spec_of(2, 8, 2, 64, 64, 1, 0);
    spec.dtype = BSA_DTYPE_F16;
    spec.form = AC_BTHD;
    for (int path = 0; path < N_PATHS; path++) {
        fc_problem p;
        bsa_attn_desc desc;
        assert_int_equal(fc_problem_init(&p, l, &spec, &desc), BSA_SUCCESS);
        bsa_plan_t plan = plan_on_path(ctx, l, &desc, path);
        if (!plan) {
            fc_problem_free(&p);
            continue;
        }
        dev_feat d;
        dev_init(&d, &p, plan);
        expect_ok(gpu_forward(plan, &p, &d), "forward");
        size_t nk = tensor_bytes(&p.dk), nv = tensor_bytes(&p.dv);
        void *first = tu_xmalloc(nk + nv);
        expect_ok(gpu_backward(plan, &p, &d), "backward 1");
        CU(cudaMemcpy(first, d.dk, nk, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy((char *)first + nk, d.dv, nv, cudaMemcpyDeviceToHost));
        expect_ok(gpu_backward(plan, &p, &d), "backward 2");
        void *second = tu_xmalloc(nk + nv);
        CU(cudaMemcpy(second, d.dk, nk, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy((char *)second + nk, d.dv, nv, cudaMemcpyDeviceToHost));
        assert_memory_equal(first, second, nk + nv);
        free(first);
        free(second);
        dev_free(&d);
        bsa_plan_destroy(plan);
        fc_problem_free(&p);
    }
    bsa_layout_destroy(l);
    bsa_context_destroy(ctx);
}

/* num_seqs * heads above 65535 thread-block rows: the grid's y/z split. */
static void test_many_sequences(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_layout_t l = preset(ctx, BSA_PATTERN_ALL, 16, 16, 1, 0, 0);
    fc_spec spec = fc_spec_of(1, 8, 1, 8, 8, 0, 8200); /* 65600 (sequence, query head) pairs */
    spec.dtype = BSA_DTYPE_BF16;
    spec.form = AC_BTHD;
    run_case("65600 sequence-heads", ctx, l, &spec, PATH_MMA);
    bsa_layout_destroy(l);
    bsa_context_destroy(ctx);
}

static int print_summary(void **state)
{
    (void)state;
    for (int path = 0; path < N_PATHS; path++)
        ac_print_worst(path_env[path], cases_run[path], worst[path]);
    return 0;
}

int main(void)
{
    fprintf(stderr, "test_cuda_features: seed %llu (BSA_TEST_SEED reproduces)\n",
            (unsigned long long)tu_seed());
    /* BSA_CUDA_TEST_QUICK=1: the reduced set for compute-sanitizer */
    const char *quick = getenv("BSA_CUDA_TEST_QUICK");
    if (quick && *quick == '1') {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_combinations),
        };
        return cmocka_run_group_tests(tests, NULL, print_summary);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gqa),
        cmocka_unit_test(test_value_dim),
        cmocka_unit_test(test_key_lengths),
        cmocka_unit_test(test_varlen),
        cmocka_unit_test(test_combinations),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_gqa_deterministic),
        cmocka_unit_test(test_many_sequences),
    };
    return cmocka_run_group_tests(tests, NULL, print_summary);
}
