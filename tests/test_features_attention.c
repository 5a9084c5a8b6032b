/*
 * Features beyond the seed on the CPU backend, forward and backward,
 * against the double oracle (oracle_ext via tests/common/feat_check.c):
 * grouped-query / multi-query heads, a value head dim different from the
 * query/key head dim, per-batch key lengths, packed variable-length
 * sequences (cu_seqlens), and their combinations, on every dtype, both CPU
 * implementations (cpu-fused, cpu-reference) and several layouts.  Fresh
 * random inputs (BSA_TEST_SEED replays), outputs poisoned before each run.
 * Tolerances as in test_cpu_attention.c (their derivation is there).
 *
 * Also: the validation of the new arguments (each failure names the
 * argument and leaves the outputs untouched) and that the grouped-query
 * backward is bitwise deterministic.
 */
#include "feat_check.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const bsa_dtype dtypes[3] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16};
static double worst[3][5];

static bsa_context_t new_ctx(void)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    assert_int_equal(bsa_context_create(&ctx, &cp), BSA_SUCCESS);
    return ctx;
}

static bsa_layout_t preset(bsa_context_t ctx, bsa_pattern pat, int seq, int block, int heads, int c,
                           int bidir)
{
    bsa_layout_t l = NULL;
    assert_int_equal(fc_preset(ctx, &l, NULL, pat, seq, block, heads, c, bidir), BSA_SUCCESS);
    return l;
}

/* Runs one problem through plan, forward, backward and the comparison. */
static void run_case(const char *label, bsa_context_t ctx, bsa_layout_t layout,
                     const cm_source *masks, const fc_spec *spec)
{
    fc_problem p;
    bsa_attn_desc desc;
    assert_int_equal(fc_problem_init(&p, layout, masks, spec, &desc), BSA_SUCCESS);
    bsa_plan_t plan = NULL;
    bsa_status st = bsa_plan_create(ctx, &plan, &desc, layout);
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: plan: %s\n", label, bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    const char *impl;
    bsa_plan_implementation(plan, &impl);
    st = fc_forward(plan, &p);
    if (st == BSA_SUCCESS)
        st = fc_backward(plan, &p);
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s\n", label, bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    fc_errors e;
    fc_compare(&p, 1, &e);
    int di = (int)spec->dtype;
    double got[5] = {e.o, e.lse, e.dq, e.dk, e.dv};
    for (int i = 0; i < 5; i++)
        worst[di][i] = got[i] > worst[di][i] ? got[i] : worst[di][i];
    int bad = !fc_within(label, impl, spec, &e, tu_cpu_tol[di].out, tu_cpu_tol[di].grad,
                         tu_cpu_tol[di].lse);
    assert_false(bad);
    bsa_plan_destroy(plan);
    fc_problem_free(&p);
}

/* Every dtype x both implementations x forms for one spec template. */
static void run_all(const char *label, bsa_context_t ctx, bsa_layout_t layout,
                    const cm_source *masks, fc_spec spec)
{
    for (int di = 0; di < 3; di++)
        for (int ref = 0; ref < 2; ref++) {
            spec.dtype = dtypes[di];
            spec.form = (ac_form)tu_randint(0, 3);
            spec.flags = ref ? BSA_PLAN_FORCE_REFERENCE : 0;
            run_case(label, ctx, layout, masks, &spec);
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
    static const fc_case cases[] = {
        {"gqa local 4/2", BSA_PATTERN_LOCAL, 128, 16, 1, 40, 0, 2, 4, 2, 32, 32, 0, 0},
        {"mqa local 4/1", BSA_PATTERN_LOCAL, 128, 16, 1, 40, 0, 1, 4, 1, 16, 16, 0, 0},
        {"gqa all 6/3", BSA_PATTERN_ALL, 128, 32, 1, 0, 1, 1, 6, 3, 24, 24, 0, 0},
        {"gqa fixed per-head 4/2", BSA_PATTERN_FIXED, 128, 16, 4, 64, 0, 2, 4, 2, 16, 16, 0, 0},
        {"mqa strided 4/1", BSA_PATTERN_STRIDED, 128, 16, 1, 4, 0, 1, 4, 1, 16, 16, 0, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 1);
}

static void test_value_dim(void **state)
{
    (void)state;
    static const fc_case cases[] = {
        {"dv > d", BSA_PATTERN_LOCAL, 96, 16, 1, 32, 1, 2, 2, 2, 16, 48, 0, 0},
        {"dv < d", BSA_PATTERN_LOCAL, 96, 16, 1, 32, 1, 1, 3, 3, 64, 8, 0, 0},
        {"dv 128 d 32", BSA_PATTERN_ALL, 128, 64, 1, 0, 0, 1, 2, 2, 32, 128, 0, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 1);
}

static void test_key_lengths(void **state)
{
    (void)state;
    static const fc_case cases[] = {
        {"keylen all bidir", BSA_PATTERN_ALL, 128, 16, 1, 0, 1, 4, 2, 2, 16, 16, 1, 0},
        {"keylen causal", BSA_PATTERN_ALL, 96, 32, 1, 0, 0, 3, 2, 2, 32, 32, 1, 0},
        {"keylen strided", BSA_PATTERN_STRIDED, 128, 8, 1, 8, 1, 3, 1, 1, 16, 16, 1, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 2);
}

static void test_varlen(void **state)
{
    (void)state;
    static const fc_case cases[] = {
        {"varlen causal", BSA_PATTERN_ALL, 128, 16, 1, 0, 0, 1, 2, 2, 16, 16, 0, 4},
        {"varlen local bidir", BSA_PATTERN_LOCAL, 96, 32, 1, 40, 1, 1, 1, 1, 32, 32, 0, 3},
        {"varlen fixed per-head", BSA_PATTERN_FIXED, 128, 16, 2, 32, 0, 1, 2, 2, 16, 16, 0, 5},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 2);
}

/* varlen + GQA + a preset (+ key lengths, + value dim) */
static void test_combinations(void **state)
{
    (void)state;
    static const fc_case cases[] = {
        {"varlen+gqa local", BSA_PATTERN_LOCAL, 128, 16, 1, 48, 0, 1, 4, 2, 16, 16, 0, 4},
        {"varlen+gqa+keylen+dv local", BSA_PATTERN_LOCAL, 128, 16, 1, 48, 0, 1, 4, 1, 16, 32, 1, 3},
        {"varlen+gqa+dv fixed per-head", BSA_PATTERN_FIXED, 128, 32, 4, 64, 1, 1, 4, 2, 32, 16, 1,
         3},
        {"gqa+keylen+dv all (preconvert)", BSA_PATTERN_ALL, 256, 16, 1, 0, 1, 2, 4, 2, 16, 24, 1,
         0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof *cases), 1);
}

/* The grouped-query backward sums each kv head's query heads in a fixed
 * order: two runs (several threads) give the same bits. */
static void test_gqa_deterministic(void **state)
{
    (void)state;
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 4};
    assert_int_equal(bsa_context_create(&ctx, &cp), BSA_SUCCESS);
    bsa_layout_t all = NULL;
    cm_source masks;
    assert_int_equal(fc_preset(ctx, &all, &masks, BSA_PATTERN_ALL, 256, 32, 1, 0, 0), BSA_SUCCESS);
    fc_spec spec = fc_spec_of(2, 8, 2, 32, 32, 1, 0);
    spec.dtype = BSA_DTYPE_F32;
    fc_problem p;
    bsa_attn_desc desc;
    assert_int_equal(fc_problem_init(&p, all, &masks, &spec, &desc), BSA_SUCCESS);
    bsa_plan_t plan;
    assert_int_equal(bsa_plan_create(ctx, &plan, &desc, all), BSA_SUCCESS);
    assert_int_equal(fc_forward(plan, &p), BSA_SUCCESS);
    assert_int_equal(fc_backward(plan, &p), BSA_SUCCESS);
    size_t bytes = (size_t)p.dk.span * 4;
    void *dk1 = tu_xmalloc(bytes), *dv1 = tu_xmalloc(bytes);
    memcpy(dk1, p.dk.data, bytes);
    memcpy(dv1, p.dv.data, bytes);
    for (int rep = 0; rep < 3; rep++) {
        assert_int_equal(fc_backward(plan, &p), BSA_SUCCESS);
        assert_memory_equal(dk1, p.dk.data, bytes);
        assert_memory_equal(dv1, p.dv.data, bytes);
    }
    free(dk1);
    free(dv1);
    bsa_plan_destroy(plan);
    fc_problem_free(&p);
    bsa_layout_destroy(all);
    bsa_context_destroy(ctx);
}

/* ---------------------------------------------------------------- errors */

static void expect(bsa_status got, bsa_status want, const char *needle)
{
    if (got != want || !strstr(bsa_last_error(), needle))
        fprintf(stderr, "got %s '%s', want %s with '%s'\n", bsa_status_string(got),
                bsa_last_error(), bsa_status_string(want), needle);
    assert_int_equal(got, want);
    assert_non_null(strstr(bsa_last_error(), needle));
}

static void test_plan_errors(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    bsa_layout_t l = preset(ctx, BSA_PATTERN_ALL, 64, 16, 1, 0, 0);
    bsa_layout_t strided = preset(ctx, BSA_PATTERN_STRIDED, 64, 8, 1, 4, 0);
    bsa_plan_t plan = NULL;
    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = BSA_DTYPE_F32;
    d.q = d.o = bsa_tensor_bhtd(2, 4, 64, 16);
    d.k = d.v = bsa_tensor_bhtd(2, 3, 64, 16);
    expect(bsa_plan_create(ctx, &plan, &d, l), BSA_ERROR_SHAPE_MISMATCH, "must divide");
    d.k = bsa_tensor_bhtd(2, 2, 64, 16);
    d.v = bsa_tensor_bhtd(2, 4, 64, 16);
    expect(bsa_plan_create(ctx, &plan, &d, l), BSA_ERROR_SHAPE_MISMATCH, "heads");
    d.k = d.v = bsa_tensor_bhtd(2, 2, 64, 16);
    d.v = bsa_tensor_bhtd(2, 2, 64, 12);
    d.o = bsa_tensor_bhtd(2, 4, 64, 12);
    expect(bsa_plan_create(ctx, &plan, &d, l), BSA_ERROR_UNSUPPORTED, "v.dims[3] = 12");
    d.v = bsa_tensor_bhtd(2, 2, 64, 24);
    d.o = bsa_tensor_bhtd(2, 4, 64, 16);
    expect(bsa_plan_create(ctx, &plan, &d, l), BSA_ERROR_SHAPE_MISMATCH, "o.dims[3]");
    d.o = bsa_tensor_bhtd(2, 4, 64, 24);
    assert_int_equal(bsa_plan_create(ctx, &plan, &d, l), BSA_SUCCESS);
    /* the seed's unfused ops decline such a plan */
    int64_t n;
    assert_int_equal(bsa_sparse_weight_elems(plan, &n), BSA_SUCCESS);
    float *w = tu_xmalloc((size_t)n * 4);
    void *q = tu_xmalloc(2 * 4 * 64 * 24 * 4);
    expect(bsa_sparse_nt(plan, q, q, w, NULL), BSA_ERROR_UNSUPPORTED, "grouped-query");
    free(w);
    free(q);
    bsa_plan_destroy(plan);

    /* varlen: batch 1, any packed time, no strided layout */
    d.flags = BSA_PLAN_VARLEN;
    d.q = d.k = d.v = d.o = bsa_tensor_bhtd(2, 1, 100, 16);
    expect(bsa_plan_create(ctx, &plan, &d, l), BSA_ERROR_INVALID_SHAPE, "batch dim must be 1");
    d.q = d.k = d.v = d.o = bsa_tensor_bhtd(1, 1, 100, 16);
    expect(bsa_plan_create(ctx, &plan, &d, strided), BSA_ERROR_UNSUPPORTED, "strided");
    d.flags = 1u << 7;
    expect(bsa_plan_create(ctx, &plan, &d, l), BSA_ERROR_INVALID_ARGUMENT, "flags");
    bsa_layout_destroy(l);
    bsa_layout_destroy(strided);
    bsa_context_destroy(ctx);
}

static void test_call_errors(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    bsa_layout_t l = preset(ctx, BSA_PATTERN_ALL, 64, 16, 1, 0, 0);
    float *buf = tu_xmalloc(200 * 16 * 4 * 4);
    float lse[200];
    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = BSA_DTYPE_F32;
    d.q = d.k = d.v = d.o = bsa_tensor_bhtd(1, 1, 100, 16);
    d.flags = BSA_PLAN_VARLEN | BSA_PLAN_KEY_LENGTHS; /* the calls pass key_lengths */
    bsa_plan_t plan;
    assert_int_equal(bsa_plan_create(ctx, &plan, &d, l), BSA_SUCCESS);
    float *o = buf + 100 * 16;
    bsa_fwd_args a;
    memset(&a, 0, sizeof a);
    a.q = a.k = a.v = buf;
    a.o = o;
    a.lse = lse;
    tu_poison(BSA_DTYPE_F32, o, 100 * 16);
    expect(bsa_forward(plan, &a, NULL, 0, NULL), BSA_ERROR_NULL_POINTER, "cu_seqlens_q");
    int32_t cu[4] = {0, 30, 70, 100}, bad_last[4] = {0, 30, 70, 99}, desc_[4] = {0, 50, 40, 100};
    int32_t too_long[3] = {0, 65, 100};
    a.cu_seqlens_q = a.cu_seqlens_k = cu;
    a.num_seqs = 0;
    expect(bsa_forward(plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "num_seqs");
    a.num_seqs = 3;
    a.cu_seqlens_k = bad_last;
    expect(bsa_forward(plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "cu_seqlens_k");
    a.cu_seqlens_k = desc_;
    expect(bsa_forward(plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "length -10");
    a.cu_seqlens_k = too_long;
    a.cu_seqlens_q = too_long;
    a.num_seqs = 2;
    expect(bsa_forward(plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "length 65");
    a.cu_seqlens_q = a.cu_seqlens_k = cu;
    a.num_seqs = 3;
    int32_t kl[3] = {5, -1, 3};
    a.key_lengths = kl;
    expect(bsa_forward(plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "key_lengths[1]");
    for (int i = 0; i < 100 * 16; i++)
        assert_true(tu_is_poison(BSA_DTYPE_F32, o, i)); /* untouched by the failures */
    kl[1] = 0;
    assert_int_equal(bsa_forward(plan, &a, NULL, 0, NULL), BSA_SUCCESS);
    bsa_plan_destroy(plan);

    /* offsets on a plan without BSA_PLAN_VARLEN */
    d.flags = 0;
    d.q = d.k = d.v = d.o = bsa_tensor_bhtd(1, 1, 64, 16);
    assert_int_equal(bsa_plan_create(ctx, &plan, &d, l), BSA_SUCCESS);
    a.key_lengths = NULL;
    expect(bsa_forward(plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "BSA_PLAN_VARLEN");
    bsa_bwd_args b;
    memset(&b, 0, sizeof b);
    b.q = b.k = b.v = b.o = b.dout = buf;
    b.lse = lse;
    b.dq = o; /* three disjoint outputs (bsa.h's aliasing rule) */
    b.dk = o + 64 * 16;
    b.dv = o + 2 * 64 * 16;
    b.key_lengths = kl;
    kl[0] = -3;
    expect(bsa_backward(plan, &b, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "key_lengths[0]");
    bsa_plan_destroy(plan);
    free(buf);
    bsa_layout_destroy(l);
    bsa_context_destroy(ctx);
}

/* GPU backends that do not (yet) implement a feature must decline it by
 * name at plan creation, never run it wrongly; one that implements it
 * accepts the plan (its results are then the GPU suite's to check).  Runs
 * only where a GPU backend is compiled and finds a device. */
static void test_gpu_backends_decline_or_accept(void **state)
{
    (void)state;
    const bsa_backend gpus[2] = {BSA_BACKEND_CUDA, BSA_BACKEND_HIP};
    for (int i = 0; i < 2; i++) {
        bsa_context_t g = NULL;
        bsa_context_params cp = {gpus[i], 0, 0};
        if (!bsa_backend_compiled(gpus[i]) || bsa_context_create(&g, &cp) != BSA_SUCCESS)
            continue;
        bsa_layout_t l = preset(g, BSA_PATTERN_ALL, 128, 64, 1, 0, 0);
        bsa_attn_desc d[3];
        memset(d, 0, sizeof d);
        for (int j = 0; j < 3; j++) {
            d[j].dtype = BSA_DTYPE_F16;
            d[j].q = d[j].k = d[j].v = d[j].o = bsa_tensor_bhtd(1, 4, 128, 64);
        }
        d[0].k = d[0].v = bsa_tensor_bhtd(1, 2, 128, 64); /* grouped-query */
        d[1].v = d[1].o = bsa_tensor_bhtd(1, 4, 128, 32); /* value dim */
        d[2].flags = BSA_PLAN_VARLEN;                     /* packed sequences */
        for (int j = 0; j < 3; j++) {
            bsa_plan_t plan = NULL;
            bsa_status st = bsa_plan_create(g, &plan, &d[j], l);
            printf("%s feature %d: %s %s\n", bsa_backend_name(gpus[i]), j, bsa_status_string(st),
                   st ? bsa_last_error() : "");
            if (st == BSA_SUCCESS) {
                bsa_plan_destroy(plan);
                continue;
            }
            assert_int_equal(st, BSA_ERROR_UNSUPPORTED);
            assert_non_null(strstr(bsa_last_error(), bsa_backend_name(gpus[i])));
        }
        bsa_layout_destroy(l);
        bsa_context_destroy(g);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_errors),
        cmocka_unit_test(test_call_errors),
        cmocka_unit_test(test_gqa),
        cmocka_unit_test(test_value_dim),
        cmocka_unit_test(test_key_lengths),
        cmocka_unit_test(test_varlen),
        cmocka_unit_test(test_combinations),
        cmocka_unit_test(test_gqa_deterministic),
        cmocka_unit_test(test_gpu_backends_decline_or_accept),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    static const char *const names[5] = {"o", "lse", "dq", "dk", "dv"};
    for (int di = 0; di < 3; di++) {
        printf("worst relative L2 %-5s:", tu_dtype_name(dtypes[di]));
        for (int i = 0; i < 5; i++)
            printf(" %s %.2e", names[i], worst[di][i]);
        printf("\n");
    }
    return rc;
}
