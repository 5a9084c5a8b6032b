/*
 * Features beyond the seed on the CUDA backend, forward and backward,
 * against the double oracle (tests/common/feat_check.c, the same problems
 * as the CPU's test_features_attention.c): grouped-query / multi-query
 * heads, a value head dim different from the query/key head dim, per-batch
 * key lengths, packed variable-length sequences, their combinations, and
 * the presets beyond the seed (sliding window, dilated, Longformer,
 * BigBird, document), on each path and dtype it takes: the list's own
 * choice and every entry forced with BSA_IMPL=<entry> at plan creation
 * (mma.sync on natural and gathered key tiles, Volta, reference and, on
 * sm_90, the wgmma kernels on natural and gathered key tiles and the
 * warp-specialised forward; an entry that declines the device or the
 * problem is skipped and counted).  The key lengths and sequence offsets
 * go to the device, as the API asks of GPU backends.  Fresh random inputs (BSA_TEST_SEED replays),
 * every output poisoned on the device before each call; also: the
 * grouped-query backward is bitwise deterministic, and a call with
 * num_seqs * heads above 65535 runs (grid y/z split).  Skips without a GPU.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
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

/* Relative L2 thresholds as test_cuda.c's (f32: reference path only):
 * about 4x the worst error measured (tests/README.md, "Tolerances"). */
static const double tol_out[3] = {2e-6, 1.3e-3, 1e-2};
static const double tol_grad[3] = {1e-5, 1.8e-3, 1.2e-2};
static const double tol_lse = 2.5e-7;
static const bsa_dtype dtypes[3] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16};

/* The paths: the list's own choice (PATH_DEFAULT) and entries forced with
 * BSA_IMPL.  wgmma: every Hopper kernel forced (forward, dQ, dK/dV) on
 * natural key tiles, wgmma-gather on gathered ones, wgmma-ws the
 * warp-specialised forward (the backward the list's choice); they run
 * where the device and the problem allow them (sm_90, head dims 33..128;
 * wgmma-ws: no key lengths or packed sequences, natural rows) and are
 * skipped elsewhere.  The gathered entries need layouts of blocks below 64
 * that are not chunk-local, and decline the backward of a per-head layout
 * with kv groups (gathered key tiles differ between the query heads of a
 * group): skipped there.  Volta reads gathered key tiles where they pay,
 * so it may decline such a backward too (skipped there only). */
enum {
    PATH_DEFAULT,
    PATH_MMA,
    PATH_MMA_GATHER,
    PATH_REF,
    PATH_VOLTA,
    PATH_WGMMA,
    PATH_WGMMA_GATHER,
    PATH_WGMMA_WS,
    N_PATHS
};
static const struct path_info {
    const char *name, *impl; /* impl: the BSA_IMPL entry (NULL: the list's choice) */
    /* may_decline: skipped wherever the entry declines; groups_decline:
     * only on a per-head layout with kv groups */
    int may_decline, groups_decline, fwd_only, gather;
} paths_[N_PATHS] = {
    [PATH_DEFAULT] = {"default", NULL, 0, 0, 0, 0},
    [PATH_MMA] = {"mma", "cuda-mma-sm80", 0, 0, 0, 0},
    [PATH_MMA_GATHER] = {"mma-gather", "cuda-mma-sm80-gather", 1, 0, 0, 1},
    [PATH_REF] = {"reference", "cuda-reference", 0, 0, 0, 0},
    [PATH_VOLTA] = {"volta", "cuda-wmma-sm70", 0, 1, 0, 0},
    [PATH_WGMMA] = {"wgmma", "cuda-wgmma-sm90a", 1, 0, 0, 0},
    [PATH_WGMMA_GATHER] = {"wgmma-gather", "cuda-wgmma-sm90a-gather", 1, 0, 0, 1},
    [PATH_WGMMA_WS] = {"wgmma-ws", "cuda-wgmma-sm90a-ws", 1, 0, 1, 0},
};
static double worst[N_PATHS][3][5];
static int cases_run[N_PATHS], cases_skipped[N_PATHS];

static bsa_context_t new_ctx(void)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CUDA, 0, 0};
    expect_ok(bsa_context_create(&ctx, &cp), "context");
    return ctx;
}

/* A preset layout (fc_preset) and its mask source. */
static bsa_layout_t preset(bsa_context_t ctx, cm_source *masks, bsa_pattern pat, int seq, int block,
                           int heads, int c, int bidir)
{
    bsa_layout_t l = NULL;
    expect_ok(fc_preset(ctx, &l, masks, pat, seq, block, heads, c, bidir), "preset");
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
    if (path == PATH_DEFAULT || path == PATH_REF)
        return 1;
    if (path == PATH_VOLTA)
        return s->dtype == BSA_DTYPE_F16 && dmax <= 128;
    return s->dtype != BSA_DTYPE_F32; /* the tensor-core entries */
}

/* Whether a forced plan's name is its entry's: the entry itself; for a
 * forward-only entry "fwd <entry>, bwd <the list's backward>"; for a
 * gathered entry also "fwd <entry>, bwd cuda-reference" (a per-head layout
 * with kv groups: no gathered dK/dV). */
static int names_entry(const char *impl, const struct path_info *pi)
{
    if (!strcmp(impl, pi->impl))
        return !pi->fwd_only;
    char want[96];
    snprintf(want, sizeof want, "fwd %s, bwd ", pi->impl);
    const size_t n = strlen(want);
    if (strncmp(impl, want, n) || !impl[n])
        return 0;
    return pi->fwd_only || (pi->gather && !strcmp(impl + n, "cuda-reference"));
}

/* Whether the layout is per head (layout heads > 1) and the problem has
 * kv groups (kv heads != heads). */
static int grouped_per_head(bsa_layout_t layout, const bsa_attn_desc *desc)
{
    bsa_layout_info info;
    expect_ok(bsa_layout_get_info(layout, &info), "layout info");
    return info.heads > 1 && desc->k.dims[1] != desc->q.dims[1];
}

/* A plan on the given path (BSA_IMPL is read at plan creation); NULL where
 * a forced entry that may decline does (counted as skipped). */
static bsa_plan_t plan_on_path(bsa_context_t ctx, bsa_layout_t layout, const bsa_attn_desc *desc,
                               int path)
{
    const struct path_info *pi = &paths_[path];
    if (pi->impl)
        setenv("BSA_IMPL", pi->impl, 1);
    else
        unsetenv("BSA_IMPL");
    bsa_plan_t plan = NULL;
    bsa_status st = bsa_plan_create(ctx, &plan, desc, layout);
    unsetenv("BSA_IMPL");
    if (st == BSA_ERROR_UNSUPPORTED &&
        (pi->may_decline || (pi->groups_decline && grouped_per_head(layout, desc)))) {
        cases_skipped[path]++;
        return NULL;
    }
    if (st != BSA_SUCCESS)
        fprintf(stderr, "plan on the %s path: %s\n", pi->name, bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    const char *impl = NULL;
    expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
    int ok = 1;
    if (pi->impl)
        ok = names_entry(impl, pi);
    else if (desc->dtype == BSA_DTYPE_F32)
        ok = !strcmp(impl, "cuda-reference"); /* the tensor-core entries take f16 / bf16 */
    if (!ok)
        fprintf(stderr, "plan on the %s path names %s\n", pi->name, impl);
    assert_true(ok);
    return plan;
}

/* One problem on one path: plan, forward, backward, the comparison. */
static void run_case(const char *label, bsa_context_t ctx, bsa_layout_t layout,
                     const cm_source *masks, const fc_spec *spec, int path)
{
    if (!path_takes(path, spec))
        return;
    fc_problem p;
    bsa_attn_desc desc;
    assert_int_equal(fc_problem_init(&p, layout, masks, spec, &desc), BSA_SUCCESS);
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
        fprintf(stderr, "%s [%s]: %s\n", label, paths_[path].name, bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    fc_errors e;
    fc_compare(&p, 1, &e);
    int di = (int)spec->dtype;
    double got[5] = {e.o, e.lse, e.dq, e.dk, e.dv};
    for (int i = 0; i < 5; i++)
        worst[path][di][i] = got[i] > worst[path][di][i] ? got[i] : worst[path][di][i];
    cases_run[path]++;
    int bad = !fc_within(label, paths_[path].name, spec, &e, tol_out[di], tol_grad[di], tol_lse);
    assert_false(bad);
    dev_free(&d);
    bsa_plan_destroy(plan);
    fc_problem_free(&p);
}

/* Every path x the dtypes it takes, a random tensor form each. */
static void run_all(const char *label, bsa_context_t ctx, bsa_layout_t layout,
                    const cm_source *masks, fc_spec spec)
{
    for (int path = 0; path < N_PATHS; path++)
        for (int di = 0; di < 3; di++) {
            spec.dtype = dtypes[di];
            /* the tile paths need 16-byte rows: padded tensors (odd
             * strides) go to the reference path (the default path's
             * choice too) */
            spec.form = (ac_form)tu_randint(0, path == PATH_REF || path == PATH_DEFAULT ? 3 : 2);
            run_case(label, ctx, layout, masks, &spec, path);
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
     * gathered key tiles, whose dK/dV the gathered entries decline with kv
     * groups: the list's choice runs that backward on the reference
     * kernels, the forced gathered entries are skipped */
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
            cm_source masks;
            bsa_layout_t l = preset(ctx, &masks, pats[i], 512, block, 1, 40, bidir);
            char label[96];
            snprintf(label, sizeof label, "%s %s b%d", names[i], bidir ? "bidir" : "causal", block);
            run_all(label, ctx, l, &masks, fc_spec_of(2, 4, 2, 64, 64, 0, 0));
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
    cm_source masks;
    bsa_layout_t l = preset(ctx, &masks, BSA_PATTERN_LOCAL, 512, 32, 1, 128, 0);
    fc_spec spec = fc_spec_of(2, 8, 2, 64, 64, 1, 0);
    spec.dtype = BSA_DTYPE_F16;
    spec.form = AC_BTHD;
    for (int path = 0; path < N_PATHS; path++) {
        fc_problem p;
        bsa_attn_desc desc;
        assert_int_equal(fc_problem_init(&p, l, &masks, &spec, &desc), BSA_SUCCESS);
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
    cm_source masks;
    bsa_layout_t l = preset(ctx, &masks, BSA_PATTERN_ALL, 16, 16, 1, 0, 0);
    fc_spec spec = fc_spec_of(1, 8, 1, 8, 8, 0, 8200); /* 65600 (sequence, query head) pairs */
    spec.dtype = BSA_DTYPE_BF16;
    spec.form = AC_BTHD;
    run_case("65600 sequence-heads", ctx, l, &masks, &spec, PATH_MMA);
    bsa_layout_destroy(l);
    bsa_context_destroy(ctx);
}

static int print_summary(void **state)
{
    (void)state;
    for (int path = 0; path < N_PATHS; path++) {
        ac_print_worst(paths_[path].name, cases_run[path], worst[path]);
        if (cases_skipped[path])
            fprintf(stderr, "%s (%s): %d cases run, %d skipped (the entry declined)\n",
                    paths_[path].name, paths_[path].impl, cases_run[path], cases_skipped[path]);
    }
    return 0;
}

int main(void)
{
    exit_skipped_without_gpu("test_cuda_features");
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
