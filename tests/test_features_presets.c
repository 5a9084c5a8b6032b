/*
 * The presets beyond the seed against their element definitions (bsa.h,
 * README "Features"), written here again independently: sliding window,
 * dilated window, Longformer, BigBird and the document mask, causal and
 * bidirectional, at random sizes.  For each: the element mask matches the
 * closed form, the layout stores exactly the blocks that keep an element
 * (no empty block costs work), and kept_elements agrees.  BigBird's random
 * blocks are checked by their properties (whole blocks, at most r extra
 * blocks per row, at least min(r, n) whole blocks, the same seed gives the
 * same layout).  Bad preset fields fail with a message naming the field.
 * Then attention on these layouts: varlen + GQA + a preset and friends,
 * against the oracle (tests/common/feat_check.c) on the closed-form masks
 * (tests/common/closed_masks.c), every dtype.
 */
#include "feat_check.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bsa_context_t ctx;

static int setup(void **state)
{
    (void)state;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    return bsa_context_create(&ctx, &cp) == BSA_SUCCESS ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    bsa_context_destroy(ctx);
    return 0;
}

static int64_t iabs(int64_t x)
{
    return x < 0 ? -x : x;
}

/* The documented definitions; doc[] = document of each position. */
static int expected(const bsa_preset *p, const int *doc, int64_t q, int64_t k)
{
    if (!p->bidirectional && k > q)
        return 0;
    int64_t d = q - k, w = p->ctx, dil = p->dilation ? p->dilation : 1, g = p->global_tokens;
    switch (p->pattern) {
    case BSA_PATTERN_SLIDING_WINDOW:
        return iabs(d) <= w;
    case BSA_PATTERN_DILATED:
        return iabs(d) <= w * dil && d % dil == 0;
    case BSA_PATTERN_LONGFORMER:
    case BSA_PATTERN_BIGBIRD: /* bigbird: the deterministic part */
        return iabs(d) <= w || q < g || k < g;
    case BSA_PATTERN_DOCUMENT:
        return doc[q] == doc[k];
    default:
        fail();
        return 0;
    }
}

static void check_preset(const bsa_preset *p, const int *doc)
{
    bsa_layout_t lay = NULL;
    bsa_status st = bsa_layout_create_preset(ctx, &lay, p);
    if (st != BSA_SUCCESS)
        fprintf(stderr, "pattern %d: %s\n", (int)p->pattern, bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    int64_t n = p->seq, B = p->block, nb = n / B;
    uint8_t *m = tu_xmalloc((size_t)(n * n));
    assert_int_equal(bsa_layout_element_mask(lay, 0, m), BSA_SUCCESS);
    bsa_layout_info info;
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    int64_t kept = 0, blocks = 0;
    for (int64_t qb = 0; qb < nb; qb++) {
        int whole = 0, extra_blocks = 0;
        for (int64_t kb = 0; kb < nb; kb++) {
            int64_t in_block = 0, extra = 0, allowed = 0;
            for (int64_t q = qb * B; q < qb * B + B; q++)
                for (int64_t k = kb * B; k < kb * B + B; k++) {
                    int got = m[q * n + k], want = expected(p, doc, q, k);
                    in_block += got;
                    allowed += p->bidirectional || k <= q;
                    if (p->pattern == BSA_PATTERN_BIGBIRD && got && !want) {
                        extra++;
                        continue;
                    }
                    if (got != want) {
                        fprintf(stderr,
                                "pattern %d bidir %d seq %d B %d ctx %d: (%lld, %lld) = %d\n",
                                (int)p->pattern, p->bidirectional, p->seq, p->block, p->ctx,
                                (long long)q, (long long)k, got);
                        fail();
                    }
                }
            kept += in_block;
            blocks += in_block > 0;
            if (p->pattern == BSA_PATTERN_BIGBIRD) {
                /* a random block is kept whole (within the causal cut) */
                if (extra > 0) {
                    assert_int_equal(in_block, allowed);
                    extra_blocks++;
                }
                whole += in_block == allowed && allowed == B * B;
            }
        }
        if (p->pattern == BSA_PATTERN_BIGBIRD) {
            int avail = p->bidirectional ? (int)nb : (int)qb + 1;
            int r = p->random_blocks < avail ? p->random_blocks : avail;
            assert_true(extra_blocks <= r);
            /* random blocks below the diagonal (or anywhere, bidirectional) are whole */
            if (p->bidirectional)
                assert_true(whole >= r);
        }
    }
    assert_int_equal(info.kept_elements, kept);
    assert_int_equal(info.blocks_total, blocks); /* no block without a kept element */
    free(m);
    bsa_layout_destroy(lay);
}

static const int blocks[4] = {8, 16, 32, 64};

static void test_window_presets(void **state)
{
    (void)state;
    for (int rep = 0; rep < 12; rep++) {
        int B = blocks[tu_randint(0, 3)];
        int seq = B * tu_randint(1, 10), bidir = rep & 1;
        int w = tu_randint(0, seq / 2 + 2);
        bsa_preset p = tu_preset(BSA_PATTERN_SLIDING_WINDOW, seq, B, w, bidir);
        check_preset(&p, NULL);
        p = tu_preset(BSA_PATTERN_DILATED, seq, B, tu_randint(0, 6), bidir);
        p.dilation = tu_randint(0, 2 * B); /* below, at and past the block */
        check_preset(&p, NULL);
        p = tu_preset(BSA_PATTERN_LONGFORMER, seq, B, tu_randint(0, B + 3), bidir);
        p.global_tokens = tu_randint(0, seq / 2 + 1);
        check_preset(&p, NULL);
    }
}

static void test_bigbird(void **state)
{
    (void)state;
    for (int rep = 0; rep < 12; rep++) {
        int B = blocks[tu_randint(0, 3)];
        int seq = B * tu_randint(1, 12);
        bsa_preset p = tu_preset(BSA_PATTERN_BIGBIRD, seq, B, tu_randint(0, B + 2), rep & 1);
        p.global_tokens = tu_randint(0, B + 1);
        p.random_blocks = tu_randint(0, 5);
        p.seed = tu_next();
        check_preset(&p, NULL);
        /* the same seed reproduces the layout */
        bsa_layout_t a, b;
        assert_int_equal(bsa_layout_create_preset(ctx, &a, &p), BSA_SUCCESS);
        assert_int_equal(bsa_layout_create_preset(ctx, &b, &p), BSA_SUCCESS);
        uint8_t *ma = tu_xmalloc((size_t)seq * seq), *mb = tu_xmalloc((size_t)seq * seq);
        assert_int_equal(bsa_layout_element_mask(a, 0, ma), BSA_SUCCESS);
        assert_int_equal(bsa_layout_element_mask(b, 0, mb), BSA_SUCCESS);
        assert_memory_equal(ma, mb, (size_t)seq * seq);
        free(ma);
        free(mb);
        bsa_layout_destroy(a);
        bsa_layout_destroy(b);
    }
    /* different seeds give different random blocks (64 rows x 2 of 64 blocks:
     * equal by chance with probability ~ 0) */
    bsa_preset p = tu_preset(BSA_PATTERN_BIGBIRD, 512, 8, 0, 1);
    p.random_blocks = 2;
    int64_t elems[2];
    uint8_t *m[2];
    for (int i = 0; i < 2; i++) {
        p.seed = 1000 + (uint64_t)i;
        bsa_layout_t l;
        assert_int_equal(bsa_layout_create_preset(ctx, &l, &p), BSA_SUCCESS);
        bsa_layout_info in;
        bsa_layout_get_info(l, &in);
        elems[i] = in.kept_elements;
        m[i] = tu_xmalloc(512 * 512);
        bsa_layout_element_mask(l, 0, m[i]);
        bsa_layout_destroy(l);
    }
    assert_true(memcmp(m[0], m[1], 512 * 512) != 0);
    (void)elems;
    free(m[0]);
    free(m[1]);
}

static void test_document(void **state)
{
    (void)state;
    for (int rep = 0; rep < 16; rep++) {
        int B = blocks[tu_randint(0, 3)];
        int seq = B * tu_randint(1, 10);
        int32_t len[64];
        int n = 0, left = seq;
        while (left > 0 && n < 63) {
            int l = tu_randint(1, left < 3 * B ? left + 1 : 3 * B);
            len[n++] = l;
            left -= l;
        }
        if (left > 0)
            len[n++] = left;
        int *doc = tu_xmalloc((size_t)seq * sizeof(int));
        for (int i = 0, t = 0; i < n; i++)
            for (int j = 0; j < len[i]; j++)
                doc[t++] = i;
        bsa_preset p = tu_preset(BSA_PATTERN_DOCUMENT, seq, B, 0, rep & 1);
        p.doc_lengths = len;
        p.num_docs = n;
        check_preset(&p, doc);
        free(doc);
    }
}

static void expect_bad(const bsa_preset *p, bsa_status want, const char *needle)
{
    bsa_layout_t lay = (bsa_layout_t)(uintptr_t)0x1;
    bsa_status st = bsa_layout_create_preset(ctx, &lay, p);
    if (st != want || !strstr(bsa_last_error(), needle))
        fprintf(stderr, "got %s '%s', want %s '%s'\n", bsa_status_string(st), bsa_last_error(),
                bsa_status_string(want), needle);
    assert_int_equal(st, want);
    assert_non_null(strstr(bsa_last_error(), needle));
    assert_ptr_equal(lay, (bsa_layout_t)(uintptr_t)0x1); /* untouched */
}

static void test_bad_fields(void **state)
{
    (void)state;
    bsa_preset p = tu_preset(BSA_PATTERN_DILATED, 64, 16, 2, 1);
    p.dilation = -1;
    expect_bad(&p, BSA_ERROR_INVALID_ARGUMENT, "dilation");
    p = tu_preset(BSA_PATTERN_LONGFORMER, 64, 16, -1, 1);
    expect_bad(&p, BSA_ERROR_INVALID_ARGUMENT, "ctx");
    p = tu_preset(BSA_PATTERN_LONGFORMER, 64, 16, 2, 1);
    p.global_tokens = 65;
    expect_bad(&p, BSA_ERROR_INVALID_ARGUMENT, "global_tokens");
    p = tu_preset(BSA_PATTERN_BIGBIRD, 64, 16, 2, 1);
    p.random_blocks = -2;
    expect_bad(&p, BSA_ERROR_INVALID_ARGUMENT, "random_blocks");
    p = tu_preset(BSA_PATTERN_DOCUMENT, 64, 16, 0, 1);
    expect_bad(&p, BSA_ERROR_NULL_POINTER, "doc_lengths");
    int32_t len[3] = {10, 20, 30};
    p.doc_lengths = len;
    p.num_docs = 3;
    expect_bad(&p, BSA_ERROR_INVALID_ARGUMENT, "sum to 60");
    len[1] = 0;
    expect_bad(&p, BSA_ERROR_INVALID_ARGUMENT, "doc_lengths[1]");
    p.num_docs = 0;
    expect_bad(&p, BSA_ERROR_INVALID_ARGUMENT, "num_docs");
    p = tu_preset(BSA_PATTERN_SLIDING_WINDOW, 60, 16, 2, 1);
    expect_bad(&p, BSA_ERROR_INVALID_SHAPE, "multiple of block");
}

/* ------------------------------------------------- attention on them */

static void run(const char *label, bsa_layout_t layout, const cm_source *masks, fc_spec spec)
{
    static const double tol[3] = {1e-5, 5e-3, 3e-2};
    for (int di = 0; di < 3; di++)
        for (int ref = 0; ref < 2; ref++) {
            spec.dtype = (bsa_dtype)di;
            spec.form = (ac_form)tu_randint(0, 3);
            spec.flags = ref ? BSA_PLAN_FORCE_REFERENCE : 0;
            fc_problem p;
            bsa_attn_desc desc;
            assert_int_equal(fc_problem_init(&p, layout, masks, &spec, &desc), BSA_SUCCESS);
            bsa_plan_t plan;
            bsa_status st = bsa_plan_create(ctx, &plan, &desc, layout);
            if (st == BSA_SUCCESS && (st = fc_forward(plan, &p)) == BSA_SUCCESS)
                st = fc_backward(plan, &p);
            if (st != BSA_SUCCESS)
                fprintf(stderr, "%s: %s\n", label, bsa_last_error());
            assert_int_equal(st, BSA_SUCCESS);
            fc_errors e;
            fc_compare(&p, 1, &e);
            double t = tol[di];
            int bad = !(e.o <= t && e.lse <= 1e-5 && e.dq <= t && e.dk <= t && e.dv <= t) ||
                      e.unwritten || e.gaps_touched || e.lse_inf_mismatch || e.nonfinite;
            if (bad || getenv("BSA_TEST_VERBOSE"))
                fprintf(stderr,
                        "%s [%s ref=%d] o %.2e lse %.2e dq %.2e dk %.2e dv %.2e unwritten %lld "
                        "gaps %lld lse-inf %lld nonfinite %lld\n",
                        label, tu_dtype_name(spec.dtype), ref, e.o, e.lse, e.dq, e.dk, e.dv,
                        (long long)e.unwritten, (long long)e.gaps_touched,
                        (long long)e.lse_inf_mismatch, (long long)e.nonfinite);
            assert_false(bad);
            bsa_plan_destroy(plan);
            fc_problem_free(&p);
        }
}

static fc_spec spec(int64_t batch, int64_t h, int64_t hkv, int64_t d, int64_t dv, int kl, int vl)
{
    fc_spec s;
    memset(&s, 0, sizeof s);
    s.batch = batch;
    s.heads = h;
    s.kv_heads = hkv;
    s.head_dim = d;
    s.v_dim = dv;
    s.key_lengths = kl;
    s.varlen = vl;
    return s;
}

static void test_attention_on_presets(void **state)
{
    (void)state;
    bsa_preset p[5];
    p[0] = tu_preset(BSA_PATTERN_SLIDING_WINDOW, 128, 16, 20, 1);
    p[1] = tu_preset(BSA_PATTERN_DILATED, 128, 16, 4, 0);
    p[1].dilation = 5;
    p[2] = tu_preset(BSA_PATTERN_LONGFORMER, 128, 32, 24, 1);
    p[2].global_tokens = 5;
    p[3] = tu_preset(BSA_PATTERN_BIGBIRD, 128, 16, 10, 0);
    p[3].global_tokens = 3;
    p[3].random_blocks = 2;
    p[3].seed = 42;
    int32_t docs[4] = {37, 50, 1, 40};
    p[4] = tu_preset(BSA_PATTERN_DOCUMENT, 128, 16, 0, 0);
    p[4].doc_lengths = docs;
    p[4].num_docs = 4;
    bsa_layout_t l[5];
    cm_source m[5];
    for (int i = 0; i < 5; i++) {
        m[i] = cm_of_preset(&p[i]);
        assert_int_equal(cm_create(ctx, &m[i], &l[i]), BSA_SUCCESS);
    }

    run("sliding bidir + gqa", l[0], &m[0], spec(2, 4, 2, 16, 16, 0, 0));
    run("dilated causal + keylen", l[1], &m[1], spec(2, 2, 2, 16, 16, 1, 0));
    run("longformer + varlen + gqa", l[2], &m[2], spec(1, 4, 2, 32, 32, 0, 3));
    run("bigbird + varlen + mqa + dv", l[3], &m[3], spec(1, 4, 1, 16, 32, 1, 4));
    run("document + gqa + keylen", l[4], &m[4], spec(2, 6, 3, 16, 16, 1, 0));
    for (int i = 0; i < 5; i++)
        bsa_layout_destroy(l[i]);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_presets),
        cmocka_unit_test(test_bigbird),
        cmocka_unit_test(test_document),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_attention_on_presets),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
