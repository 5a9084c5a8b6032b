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
#include <stdio.h>
static void cuda_backend_not_built(void **state)
{
    (void)state;
    fprintf(stderr, "CUDA backend not built: skipped\n");
    skip();
}
int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(cuda_backend_not_built)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else

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

enum { PATH_MMA, PATH_REF, PATH_VOLTA, N_PATHS };
static const char *const path_env[N_PATHS] = {"mma", "reference", "volta"};
static double worst[N_PATHS][3][5];
static int cases_run[N_PATHS];

static bsa_context_t new_ctx(void)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CUDA, 0, 0};
    expect_ok(bsa_context_create(&ctx, &cp), "context");
    return ctx;
}

/* A preset: pattern, seq, block, layout heads, ctx (window / stride), bidir. */
static bsa_layout_t preset(bsa_context_t ctx, bsa_pattern pat, int seq, int block, int heads, int c,
                           int bidir)
{
    bsa_preset pr;
    memset(&pr, 0, sizeof pr);
    pr.pattern = pat;
    pr.seq = seq;
    pr.block = block;
    pr.heads = heads;
    pr.ctx = c;
    pr.num_verts = pat == BSA_PATTERN_FIXED ? 2 : 0;
    pr.vertsize = pat == BSA_PATTERN_FIXED ? 1 : 0;
    pr.bidirectional = bidir;
    pr.dilation = pat == BSA_PATTERN_DILATED ? 3 : 0;
    pr.global_tokens = pat == BSA_PATTERN_LONGFORMER || pat == BSA_PATTERN_BIGBIRD ? 5 : 0;
    pr.random_blocks = pat == BSA_PATTERN_BIGBIRD ? 2 : 0;
    pr.seed = 1234;
    int32_t docs[3] = {seq / 4 + 3, seq / 2, seq - (seq / 4 + 3) - seq / 2};
    if (pat == BSA_PATTERN_DOCUMENT) {
        pr.doc_lengths = docs;
        pr.num_docs = 3;
    }
    bsa_layout_t l = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &l, &pr), "preset");
    return l;
}

static size_t tbytes(const tu_tensor *t)
{
    return (size_t)t->span * tu_dtype_size(t->dtype);
}

static void *upload(const void *host, size_t bytes)
{
    void *d = NULL;
    if (!host)
        return NULL;
    CU(cudaMalloc(&d, bytes ? bytes : 1));
    CU(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    return d;
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
        *dst[i] = upload(t[i]->data, tbytes(t[i]));
    CU(cudaMalloc((void **)&d->lse, (size_t)p->n_lse * sizeof(float)));
    size_t nseg = (size_t)p->n_seg;
    d->klen = upload(p->klen, nseg * sizeof(int32_t));
    d->cu_q = upload(p->cu_q, (nseg + 1) * sizeof(int32_t));
    d->cu_k = upload(p->cu_k, (nseg + 1) * sizeof(int32_t));
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

static void poison_to(void *dev, tu_tensor *t)
{
    tu_tensor_poison(t);
    CU(cudaMemcpy(dev, t->data, tbytes(t), cudaMemcpyHostToDevice));
}

static void download(tu_tensor *t, const void *dev)
{
    CU(cudaMemcpy(t->data, dev, tbytes(t), cudaMemcpyDeviceToHost));
    tu_tensor_read(t);
}

static bsa_status gpu_forward(bsa_plan_t plan, fc_problem *p, dev_feat *d)
{
    poison_to(d->o, &p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    CU(cudaMemcpy(d->lse, p->lse, (size_t)p->n_lse * 4, cudaMemcpyHostToDevice));
    bsa_fwd_args a = fc_fwd_args(p);
    a.q = d->q, a.k = d->k, a.v = d->v, a.o = d->o, a.lse = d->lse;
    a.key_lengths = d->klen, a.cu_seqlens_q = d->cu_q, a.cu_seqlens_k = d->cu_k;
    bsa_status st = bsa_forward(plan, &a, d->ws, d->ws_bytes, NULL);
    CU(cudaDeviceSynchronize());
    download(&p->o, d->o);
    CU(cudaMemcpy(p->lse, d->lse, (size_t)p->n_lse * 4, cudaMemcpyDeviceToHost));
    return st;
}

static bsa_status gpu_backward(bsa_plan_t plan, fc_problem *p, dev_feat *d)
{
    poison_to(d->dq, &p->dq);
    poison_to(d->dk, &p->dk);
    poison_to(d->dv, &p->dv);
    bsa_bwd_args a = fc_bwd_args(p);
    a.q = d->q, a.k = d->k, a.v = d->v, a.o = d->o, a.lse = d->lse, a.dout = d->dout;
    a.dq = d->dq, a.dk = d->dk, a.dv = d->dv;
    a.key_lengths = d->klen, a.cu_seqlens_q = d->cu_q, a.cu_seqlens_k = d->cu_k;
    bsa_status st = bsa_backward(plan, &a, d->ws, d->ws_bytes, NULL);
    CU(cudaDeviceSynchronize());
    download(&p->dq, d->dq);
    download(&p->dk, d->dk);
    download(&p->dv, d->dv);
    return st;
}

/* Whether a path takes this dtype / head dims (else it is not run). */
static int path_takes(int path, const fc_spec *s)
{
    int64_t dmax = s->head_dim > s->v_dim ? s->head_dim : s->v_dim;
    if (path == PATH_MMA)
        return s->dtype != BSA_DTYPE_F32;
    if (path == PATH_VOLTA)
        return s->dtype == BSA_DTYPE_F16 && dmax <= 128;
    return 1;
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
    setenv("BSA_CUDA_PATH", path_env[path], 1);
    bsa_plan_t plan = NULL;
    bsa_status st = bsa_plan_create(ctx, &plan, &desc, layout);
    unsetenv("BSA_CUDA_PATH");
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s [%s]: plan: %s\n", label, path_env[path], bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    dev_feat d;
    dev_init(&d, &p, plan);
    st = gpu_forward(plan, &p, &d);
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
    double to = tol_out[di], tg = tol_grad[di];
    int bad = !(e.o <= to && e.lse <= tol_lse && e.dq <= tg && e.dk <= tg && e.dv <= tg) ||
              e.unwritten || e.gaps_touched || e.lse_inf_mismatch || e.nonfinite;
    if (bad || getenv("BSA_TEST_VERBOSE"))
        fprintf(stderr,
                "%s [%s %s %s H=%lld Hkv=%lld D=%lld Dv=%lld kl=%d varlen=%d] o %.2e lse %.2e dq "
                "%.2e dk %.2e dv %.2e unwritten %lld gaps %lld lse-inf %lld nonfinite %lld\n",
                label, path_env[path], tu_dtype_name(spec->dtype), ac_form_name(spec->form),
                (long long)spec->heads, (long long)spec->kv_heads, (long long)spec->head_dim,
                (long long)spec->v_dim, spec->key_lengths, spec->varlen, e.o, e.lse, e.dq, e.dk,
                e.dv, (long long)e.unwritten, (long long)e.gaps_touched,
                (long long)e.lse_inf_mismatch, (long long)e.nonfinite);
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

static fc_spec spec_of(int64_t batch, int64_t heads, int64_t kv_heads, int64_t d, int64_t dv,
                       int key_lengths, int varlen)
{
    fc_spec s;
    memset(&s, 0, sizeof s);
    s.batch = batch;
    s.heads = heads;
    s.kv_heads = kv_heads;
    s.head_dim = d;
    s.v_dim = dv;
    s.key_lengths = key_lengths;
    s.varlen = varlen;
    return s;
}

static void test_gqa(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_layout_t local = preset(ctx, BSA_PATTERN_LOCAL, 256, 16, 1, 80, 0);
    bsa_layout_t all = preset(ctx, BSA_PATTERN_ALL, 192, 64, 1, 0, 1);
    bsa_layout_t causal128 = preset(ctx, BSA_PATTERN_ALL, 512, 128, 1, 0, 0);
    /* per-head layout with small blocks: gathered key tiles, so its dK/dV
     * takes the reference kernel (cuda_backend.cu) */
    bsa_layout_t fixed = preset(ctx, BSA_PATTERN_FIXED, 256, 16, 4, 64, 0);
    bsa_layout_t strided = preset(ctx, BSA_PATTERN_STRIDED, 256, 16, 1, 8, 0);
    run_all("gqa local 4/2", ctx, local, spec_of(2, 4, 2, 32, 32, 0, 0));
    run_all("mqa local 4/1", ctx, local, spec_of(1, 4, 1, 64, 64, 0, 0));
    run_all("gqa all 6/3", ctx, all, spec_of(1, 6, 3, 128, 128, 0, 0));
    run_all("gqa causal b128 8/2", ctx, causal128, spec_of(1, 8, 2, 64, 64, 0, 0));
    run_all("gqa fixed per-head 4/2", ctx, fixed, spec_of(2, 4, 2, 32, 32, 0, 0));
    run_all("mqa strided 4/1", ctx, strided, spec_of(1, 4, 1, 64, 64, 0, 0));
    bsa_layout_destroy(local);
    bsa_layout_destroy(all);
    bsa_layout_destroy(causal128);
    bsa_layout_destroy(fixed);
    bsa_layout_destroy(strided);
    bsa_context_destroy(ctx);
}

static void test_value_dim(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_layout_t local = preset(ctx, BSA_PATTERN_LOCAL, 192, 32, 1, 64, 1);
    bsa_layout_t all = preset(ctx, BSA_PATTERN_ALL, 256, 64, 1, 0, 0);
    run_all("dv > d", ctx, local, spec_of(2, 2, 2, 16, 48, 0, 0));
    run_all("dv < d", ctx, local, spec_of(1, 3, 3, 64, 8, 0, 0));
    run_all("dv 128 d 32", ctx, all, spec_of(1, 2, 2, 32, 128, 0, 0));
    run_all("dv 256 d 64", ctx, all, spec_of(1, 2, 2, 64, 256, 0, 0));
    bsa_layout_destroy(local);
    bsa_layout_destroy(all);
    bsa_context_destroy(ctx);
}

static void test_key_lengths(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_layout_t all = preset(ctx, BSA_PATTERN_ALL, 256, 16, 1, 0, 1);
    bsa_layout_t causal = preset(ctx, BSA_PATTERN_ALL, 320, 64, 1, 0, 0);
    bsa_layout_t strided = preset(ctx, BSA_PATTERN_STRIDED, 256, 8, 1, 16, 1);
    bsa_layout_t fixed = preset(ctx, BSA_PATTERN_FIXED, 256, 32, 2, 64, 0); /* gathered */
    for (int rep = 0; rep < 2; rep++) {
        run_all("keylen all bidir", ctx, all, spec_of(4, 2, 2, 32, 32, 1, 0));
        run_all("keylen causal", ctx, causal, spec_of(3, 2, 2, 64, 64, 1, 0));
        run_all("keylen strided", ctx, strided, spec_of(3, 1, 1, 32, 32, 1, 0));
        run_all("keylen fixed", ctx, fixed, spec_of(3, 2, 2, 32, 32, 1, 0));
    }
    bsa_layout_destroy(all);
    bsa_layout_destroy(causal);
    bsa_layout_destroy(strided);
    bsa_layout_destroy(fixed);
    bsa_context_destroy(ctx);
}

static void test_varlen(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_layout_t causal = preset(ctx, BSA_PATTERN_ALL, 256, 16, 1, 0, 0);
    bsa_layout_t local = preset(ctx, BSA_PATTERN_LOCAL, 192, 32, 1, 80, 1);
    bsa_layout_t fixed = preset(ctx, BSA_PATTERN_FIXED, 256, 16, 2, 64, 0);
    bsa_layout_t big = preset(ctx, BSA_PATTERN_ALL, 384, 128, 1, 0, 0);
    for (int rep = 0; rep < 2; rep++) {
        run_all("varlen causal", ctx, causal, spec_of(1, 2, 2, 32, 32, 0, 4));
        run_all("varlen local bidir", ctx, local, spec_of(1, 1, 1, 64, 64, 0, 3));
        run_all("varlen fixed per-head", ctx, fixed, spec_of(1, 2, 2, 32, 32, 0, 5));
        run_all("varlen causal b128", ctx, big, spec_of(1, 2, 2, 128, 128, 0, 3));
    }
    bsa_layout_destroy(causal);
    bsa_layout_destroy(local);
    bsa_layout_destroy(fixed);
    bsa_layout_destroy(big);
    bsa_context_destroy(ctx);
}

/* varlen + GQA + a preset (+ key lengths, + value dim) */
static void test_combinations(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_layout_t local = preset(ctx, BSA_PATTERN_LOCAL, 256, 16, 1, 96, 0);
    bsa_layout_t fixed = preset(ctx, BSA_PATTERN_FIXED, 256, 32, 4, 64, 1);
    bsa_layout_t all = preset(ctx, BSA_PATTERN_ALL, 256, 64, 1, 0, 1);
    run_all("varlen+gqa local", ctx, local, spec_of(1, 4, 2, 32, 32, 0, 4));
    run_all("varlen+gqa+keylen+dv local", ctx, local, spec_of(1, 4, 1, 32, 64, 1, 3));
    run_all("varlen+gqa+dv fixed per-head", ctx, fixed, spec_of(1, 4, 2, 64, 32, 1, 3));
    run_all("gqa+keylen+dv all", ctx, all, spec_of(2, 4, 2, 32, 48, 1, 0));
    bsa_layout_destroy(local);
    bsa_layout_destroy(fixed);
    bsa_layout_destroy(all);
    bsa_context_destroy(ctx);
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
            run_all(label, ctx, l, spec_of(2, 4, 2, 64, 64, 0, 0));
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
    fc_spec spec = spec_of(2, 8, 2, 64, 64, 1, 0);
    spec.dtype = BSA_DTYPE_F16;
    spec.form = AC_BTHD;
    for (int path = 0; path < N_PATHS; path++) {
        fc_problem p;
        bsa_attn_desc desc;
        assert_int_equal(fc_problem_init(&p, l, &spec, &desc), BSA_SUCCESS);
        setenv("BSA_CUDA_PATH", path_env[path], 1);
        bsa_plan_t plan = NULL;
        expect_ok(bsa_plan_create(ctx, &plan, &desc, l), "plan");
        unsetenv("BSA_CUDA_PATH");
        dev_feat d;
        dev_init(&d, &p, plan);
        expect_ok(gpu_forward(plan, &p, &d), "forward");
        size_t nk = tbytes(&p.dk), nv = tbytes(&p.dv);
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
    fc_spec spec = spec_of(1, 8, 1, 8, 8, 0, 8200); /* 65600 (sequence, query head) pairs */
    spec.dtype = BSA_DTYPE_BF16;
    spec.form = AC_BTHD;
    run_case("65600 sequence-heads", ctx, l, &spec, PATH_MMA);
    bsa_layout_destroy(l);
    bsa_context_destroy(ctx);
}

static int print_summary(void **state)
{
    (void)state;
    const char *cols[5] = {"o", "lse", "dq", "dk", "dv"};
    for (int path = 0; path < N_PATHS; path++) {
        if (!cases_run[path])
            continue;
        fprintf(stderr, "worst relative L2 vs oracle, %s path (%d cases):\n", path_env[path],
                cases_run[path]);
        for (int di = 0; di < 3; di++) {
            fprintf(stderr, "  %-5s", tu_dtype_name(dtypes[di]));
            for (int i = 0; i < 5; i++)
                fprintf(stderr, " %s %.2e", cols[i], worst[path][di][i]);
            fprintf(stderr, "\n");
        }
    }
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
#endif /* BSA_WITH_CUDA */
