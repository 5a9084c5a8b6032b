/*
 * The library's bsa_layout_element_mask against the closed forms the
 * attention suites give the oracle (tests/common/closed_masks.c), once,
 * over random parameters: every pattern and preset (all, local, strided,
 * fixed with shared and per-head summary columns, sliding window, dilated,
 * Longformer, BigBird, document), causal and bidirectional, block sizes 8
 * to 128; dense and callback layouts (with and without a block matrix,
 * shared and per-head, cross attention) under every predicate combination.
 * Every element of every layout head must agree, and the layout's
 * kept_elements must count the closed form's elements.
 *
 * Random parameters come from the seed printed at start (BSA_TEST_SEED=<n>
 * replays a run).
 */
#include "closed_masks.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bsa_context_t ctx;
static const int block_sizes[5] = {8, 16, 32, 64, 128};
static int layouts_checked;

static int setup(void **state)
{
    (void)state;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    return bsa_context_create(&ctx, &cp) == BSA_SUCCESS ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fprintf(stderr, "test_closed_masks: %d layouts agree with the closed forms\n", layouts_checked);
    return bsa_context_destroy(ctx) == BSA_SUCCESS ? 0 : -1;
}

/* The library's mask of every layout head against the closed form. */
static void check(const cm_source *s, const char *label)
{
    bsa_layout_t lay = NULL;
    bsa_status st = cm_create(ctx, s, &lay);
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s: %s\n", label, bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    bsa_layout_info info;
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    assert_int_equal(cm_check(s, &info), BSA_SUCCESS);
    int64_t sq = info.seq_q, sk = info.seq_k, kept = 0, wrong = 0;
    uint8_t *got = tu_xmalloc((size_t)(sq * sk)), *want = tu_xmalloc((size_t)(sq * sk));
    for (int h = 0; h < info.heads; h++) {
        memset(got, 0xA5, (size_t)(sq * sk)); /* an entry left unwritten shows */
        assert_int_equal(bsa_layout_element_mask(lay, h, got), BSA_SUCCESS);
        assert_int_equal(cm_head_mask(s, h, want), 0);
        for (int64_t i = 0; i < sq * sk; i++) {
            kept += want[i];
            if (got[i] != want[i] && wrong++ == 0)
                fprintf(stderr, "%s: head %d query %lld key %lld: library %d, closed form %d\n",
                        label, h, (long long)(i / sk), (long long)(i % sk), got[i], want[i]);
        }
    }
    if (wrong || info.kept_elements != kept)
        fprintf(stderr, "%s: %lld elements differ; kept_elements %lld, closed form %lld\n", label,
                (long long)wrong, (long long)info.kept_elements, (long long)kept);
    assert_int_equal(wrong, 0);
    assert_int_equal(info.kept_elements, kept);
    layouts_checked++;
    free(got);
    free(want);
    bsa_layout_destroy(lay);
}

static void check_preset(const bsa_preset *p)
{
    char label[160];
    snprintf(label, sizeof label,
             "pattern %d%s B=%d seq=%d ctx=%d heads=%d nv=%d vs=%d dil=%d g=%d r=%d docs=%d",
             (int)p->pattern, p->bidirectional ? " bidir" : "", p->block, p->seq, p->ctx, p->heads,
             p->num_verts, p->vertsize, p->dilation, p->global_tokens, p->random_blocks,
             p->num_docs);
    cm_source s = cm_of_preset(p);
    check(&s, label);
}

/* A block size, and a block count keeping seq <= ~640 */
static int draw_block(int *nb_max)
{
    int B = block_sizes[tu_randint(0, 5)];
    *nb_max = B >= 64 ? 640 / B : 12;
    return B;
}

/* all, local (any bandwidth, not only block multiples), strided, fixed. */
static void test_seed_patterns(void **state)
{
    (void)state;
    for (int it = 0; it < 80; it++) {
        int nbm, B = draw_block(&nbm), bidir = it & 1;
        bsa_preset p =
            tu_preset((bsa_pattern)(it / 2 % 4), B * tu_randint(1, nbm + 1), B, 0, bidir);
        switch (p.pattern) {
        case BSA_PATTERN_LOCAL:
            p.ctx = tu_randint(1, p.seq + 2);
            break;
        case BSA_PATTERN_STRIDED: {
            /* seq / L a multiple of the block */
            int L = tu_randint(1, B >= 64 ? 5 : 9);
            p.ctx = L;
            p.seq = L * B * tu_randint(1, B >= 64 ? 2 : 3);
            break;
        }
        case BSA_PATTERN_FIXED: {
            /* S blocks per window, vs | S, nv <= S / vs, heads % nv == 0 */
            int S = tu_randint(1, B >= 64 ? 4 : 6), vs;
            do
                vs = tu_randint(1, S + 1);
            while (S % vs);
            p.ctx = S * B;
            p.vertsize = vs;
            p.num_verts = tu_randint(1, S / vs + 1);
            p.heads = p.num_verts * tu_randint(1, 3);
            p.seq = B * tu_randint(1, (B >= 64 ? 640 / B : 3 * S) + 1);
            break;
        }
        default:
            break;
        }
        check_preset(&p);
    }
}

/* Sliding window, dilated, Longformer, BigBird, document. */
static void test_presets_beyond_the_seed(void **state)
{
    (void)state;
    for (int it = 0; it < 100; it++) {
        int nbm, B = draw_block(&nbm), bidir = it & 1;
        int seq = B * tu_randint(1, nbm + 1);
        bsa_pattern pat = (bsa_pattern)(BSA_PATTERN_SLIDING_WINDOW + it / 2 % 5);
        bsa_preset p = tu_preset(pat, seq, B, tu_randint(0, seq / 2 + 3), bidir);
        int32_t len[CM_MAX_DOCS];
        switch (pat) {
        case BSA_PATTERN_DILATED:
            p.ctx = tu_randint(0, 9);
            p.dilation = tu_randint(0, 2 * B + 2); /* 0 = 1; below, at and past the block */
            break;
        case BSA_PATTERN_LONGFORMER:
        case BSA_PATTERN_BIGBIRD:
            p.ctx = tu_randint(0, B + 4);
            p.global_tokens = tu_randint(0, seq / 2 + 1);
            p.random_blocks = pat == BSA_PATTERN_BIGBIRD ? tu_randint(0, seq / B + 3) : 0;
            p.seed = tu_next();
            break;
        case BSA_PATTERN_DOCUMENT: {
            int n = 0, left = seq;
            while (left > 0 && n < 40) {
                int l = tu_randint(1, (left < 3 * B ? left : 3 * B) + 1);
                len[n++] = l;
                left -= l;
            }
            if (left > 0)
                len[n - 1] += left;
            p.ctx = 0;
            p.doc_lengths = len;
            p.num_docs = n;
            break;
        }
        default:
            break;
        }
        check_preset(&p);
    }
}

/* A callback whose bits are a hash of (salt, head, absolute q, k): a pure
 * function, so the closed form may call it again. */
typedef struct bits {
    uint64_t salt;
    double density;
} bits;

static int hash_bits(void *user, int head, int qb, int kb, int index, int block, uint8_t *mask)
{
    const bits *b = user;
    (void)index;
    for (int r = 0; r < block; r++)
        for (int c = 0; c < block; c++) {
            uint64_t z = b->salt ^ ((uint64_t)head << 48) ^ ((uint64_t)(qb * block + r) << 24) ^
                         (uint64_t)(kb * block + c);
            z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
            z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
            z ^= z >> 33;
            mask[r * block + c] = (double)(z >> 11) * (1.0 / 9007199254740992.0) < b->density;
        }
    return 0;
}

/* Dense and callback layouts: random block matrices (or none, for a
 * callback), shared and per-head, square and cross, every predicate
 * combination with windows and prefixes at and off block boundaries. */
static void test_dense_and_callback(void **state)
{
    (void)state;
    for (int it = 0; it < 96; it++) {
        int nbm, B = draw_block(&nbm);
        int qb = tu_randint(1, nbm + 1), kb = it % 3 ? qb : tu_randint(1, nbm + 1);
        int heads = tu_randint(1, 4), callback = it % 2, matrix = !callback || it % 4 != 1;
        bsa_layout_desc d = {B, heads, qb, kb, (unsigned)(it / 2 % 8), 0, 0};
        d.window = tu_randint(0, 2) ? B * tu_randint(1, 4) : tu_randint(1, kb * B + 2);
        d.prefix = tu_randint(0, kb * B + 2);
        uint8_t *blocks = NULL;
        if (matrix) {
            double density = tu_uniform(0.0, 1.0);
            blocks = tu_xmalloc((size_t)heads * qb * kb);
            for (int64_t i = 0; i < (int64_t)heads * qb * kb; i++)
                blocks[i] = tu_uniform(0.0, 1.0) < density;
        }
        bits b = {tu_next(), it % 8 == 3 ? 0.0 : tu_uniform(0.2, 1.0)}; /* at times none */
        cm_source s =
            callback ? cm_of_callback(&d, blocks, hash_bits, &b) : cm_of_dense(&d, blocks);
        char label[160];
        snprintf(label, sizeof label,
                 "%s B=%d Qb=%d Kb=%d heads=%d matrix=%d preds=%u window=%d prefix=%d",
                 callback ? "callback" : "dense", B, qb, kb, heads, matrix, d.predicates, d.window,
                 d.prefix);
        check(&s, label);
        free(blocks);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_patterns),
        cmocka_unit_test(test_presets_beyond_the_seed),
        cmocka_unit_test(test_dense_and_callback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
