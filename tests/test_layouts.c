/*
 * The shared block layout: the seed's reference block counts, element masks
 * of every preset against closed forms written here, CSR/CSC consistency,
 * the full/partial split, callback and dense layouts with random inputs,
 * every bad input, out-of-memory paths and backend hooks.
 *
 * Random inputs come from a seed printed at start; BSA_TEST_SEED=<n>
 * replays a run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bsa.h"
#include "internal.h"
#include "layout.h"
#include "backends/backend.h"

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state;

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd(void)
{
    rng_state += 0x9e3779b97f4a7c15ull;
    return mix(rng_state);
}

/* Uniform in [lo, hi]. */
static int rnd_in(int lo, int hi)
{
    return lo + (int)(rnd() % (uint64_t)(hi - lo + 1));
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        fail_msg("test out of memory (%zu bytes)", n);
    return p;
}

static struct bsa_context host_ctx; /* zeroed, impl = NULL: no backend */

static int block_sizes[] = {8, 16, 32, 64, 128};

/* Natural time of layout row r under the strided permutation with stride L
 * over n positions: natural p = i*L + j sits at r = j*(n/L) + i. */
static int64_t natural(int64_t r, int L, int64_t n)
{
    if (!L)
        return r;
    int64_t bt = n / L, j = r / bt, i = r % bt;
    return i * L + j;
}

/* Element oracles in natural order. */
typedef int (*oracle_fn)(const void *self, int h, int64_t q, int64_t k);

typedef struct preset_case {
    bsa_preset p;
} preset_case;

static int in_summary(const bsa_preset *p, int h, int64_t k)
{
    int S = p->ctx / p->block;
    int64_t off = (k / p->block) % S;
    for (int t = 0; t < p->vertsize; t++)
        if (off == S - 1 - (h % p->num_verts) * p->vertsize - t)
            return 1;
    return 0;
}

/* The seed's element semantics (sparse_attention get_attn_mask and the
 * fixed pattern of spec §1.5), plus the bidirectional variants. */
static int preset_oracle(const void *self, int h, int64_t q, int64_t k)
{
    const bsa_preset *p = &((const preset_case *)self)->p;
    int causal = !p->bidirectional;
    int64_t d = q - k, L = p->ctx;
    if (causal && d < 0)
        return 0;
    switch (p->pattern) {
    case BSA_PATTERN_ALL:
        return 1;
    case BSA_PATTERN_LOCAL:
        return d < L && -d < L;
    case BSA_PATTERN_STRIDED:
        return d % L == 0;
    case BSA_PATTERN_FIXED:
        return q / L == k / L || in_summary(p, h, k);
    }
    return -1;
}

/* Plain evaluation of the built-in predicates, independent of the library. */
static int pred_holds(const bsa_layout_desc *d, int64_t q, int64_t k)
{
    if ((d->predicates & BSA_PRED_CAUSAL) && k > q)
        return 0;
    if ((d->predicates & BSA_PRED_WINDOW) && (q - k >= d->window || k - q >= d->window))
        return 0;
    if ((d->predicates & BSA_PRED_PREFIX) && !(k < d->prefix || k <= q))
        return 0;
    return 1;
}

/* Callback and dense cases: a block matrix, predicates, optional bits. */
typedef struct call_rec {
    int head, qb, kb, index;
} call_rec;

typedef struct masked_case {
    bsa_layout_desc d;
    uint8_t *blocks; /* may be NULL: every block */
    int with_bits;
    uint64_t salt;
    call_rec *calls;
    int64_t n_calls, cap_calls;
    int fail_at; /* callback call (1-based) that fails; 0 = never */
    int fail_rc;
} masked_case;

static int in_matrix(const masked_case *c, int h, int qb, int kb)
{
    return !c->blocks || c->blocks[((int64_t)h * c->d.q_blocks + qb) * c->d.k_blocks + kb] != 0;
}

/* Per block: 0 = random bits, 1 = all ones, 2 = all zeros, 3 = all ones
 * but one element (which must not come out FULL). */
static int block_kind(const masked_case *c, int h, int qb, int kb, int *hole)
{
    uint64_t z = mix(c->salt ^ mix(((uint64_t)h << 42) ^ ((uint64_t)qb << 21) ^ (uint64_t)kb));
    int r = (int)(z % 8);
    *hole = (int)((z >> 8) % ((uint64_t)c->d.block * c->d.block));
    return r < 4 ? 0 : r < 6 ? 1 : r < 7 ? 2 : 3;
}

static int cb_bit(const masked_case *c, int h, int qb, int kb, int r, int col)
{
    int hole, kind = block_kind(c, h, qb, kb, &hole);
    if (kind == 3)
        return r * c->d.block + col != hole;
    if (kind)
        return kind == 1;
    uint64_t where = ((uint64_t)h << 42) ^ ((uint64_t)qb << 28) ^ ((uint64_t)kb << 14);
    uint64_t z = mix(c->salt ^ mix(where ^ ((uint64_t)r << 7) ^ (uint64_t)col));
    return (int)(z >> 7) & 1;
}

static int masked_oracle(const void *self, int h, int64_t q, int64_t k)
{
    const masked_case *c = self;
    int B = c->d.block, qb = (int)(q / B), kb = (int)(k / B);
    if (!in_matrix(c, h, qb, kb) || !pred_holds(&c->d, q, k))
        return 0;
    return !c->with_bits || cb_bit(c, h, qb, kb, (int)(q % B), (int)(k % B));
}

/* A block survives iff it is in the matrix and the predicates keep one of
 * its elements (callback zeros do not drop it). */
static int masked_block_expected(const masked_case *c, int h, int qb, int kb)
{
    if (!in_matrix(c, h, qb, kb))
        return 0;
    int B = c->d.block;
    for (int r = 0; r < B; r++)
        for (int col = 0; col < B; col++)
            if (pred_holds(&c->d, (int64_t)qb * B + r, (int64_t)kb * B + col))
                return 1;
    return 0;
}

static int test_callback(void *user, int head, int q_block, int k_block, int block_index, int block,
                         uint8_t *mask)
{
    masked_case *c = user;
    if (block != c->d.block)
        return 99;
    if (c->n_calls == c->cap_calls) {
        c->cap_calls = c->cap_calls ? 2 * c->cap_calls : 256;
        c->calls = realloc(c->calls, (size_t)c->cap_calls * sizeof *c->calls);
        if (!c->calls)
            return 98;
    }
    c->calls[c->n_calls++] = (call_rec){head, q_block, k_block, block_index};
    if (c->fail_at && c->n_calls == c->fail_at)
        return c->fail_rc;
    for (int r = 0; r < block; r++)
        for (int col = 0; col < block; col++)
            /* Any nonzero byte means keep: use values other than 1. */
            mask[r * block + col] =
                cb_bit(c, head, q_block, k_block, r, col) ? (uint8_t)(r + 2) : 0;
    return 0;
}

/* ----------------------------------------------------- the verifier */

enum { CHECK_ELEMENTS = 1 };

/* Structural checks of every table, then (CHECK_ELEMENTS) the element mask
 * against the oracle, the block set against expected(), and the full /
 * partial split against the oracle's count in each block. */
static void verify_layout(bsa_layout_t lay, oracle_fn oracle, const void *self,
                          int (*expected)(const void *self, int h, int qb, int kb), int mode)
{
    const struct bsa_layout *l = lay;
    bsa_layout_info info;
    memset(&info, 0x5a, sizeof info);
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    int H = l->heads, Qb = l->q_blocks, Kb = l->k_blocks, B = l->block, W = l->words;
    assert_int_equal(info.block, B);
    assert_int_equal(info.heads, H);
    assert_int_equal(info.q_blocks, Qb);
    assert_int_equal(info.k_blocks, Kb);
    assert_int_equal(info.seq_q, Qb * B);
    assert_int_equal(info.seq_k, Kb * B);
    assert_int_equal(info.stride_permutation, l->stride_perm);
    assert_int_equal(W, (B + 63) / 64);
    int64_t nnz = l->nnz;
    assert_int_equal(info.blocks_total, nnz);
    assert_int_equal(l->head_ptr[0], 0);
    assert_int_equal(l->head_ptr[H], nnz);

    /* Rows: CSR, sorted, row_of consistent. */
    int max_row = 0, max_col = 0;
    int64_t masked = 0, with_bits = 0;
    uint8_t *bit_seen = l->n_partial ? xmalloc((size_t)l->n_partial) : NULL;
    if (bit_seen)
        memset(bit_seen, 0, (size_t)l->n_partial);
    for (int h = 0; h < H; h++) {
        const int32_t *rp = l->row_ptr + (int64_t)h * (Qb + 1);
        assert_int_equal(rp[0], l->head_ptr[h]);
        assert_int_equal(rp[Qb], l->head_ptr[h + 1]);
        int64_t count = -1;
        assert_int_equal(bsa_layout_head_blocks(lay, h, &count), BSA_SUCCESS);
        assert_int_equal(count, l->head_ptr[h + 1] - l->head_ptr[h]);
        for (int qb = 0; qb < Qb; qb++) {
            assert_true(rp[qb] <= rp[qb + 1]);
            if (rp[qb + 1] - rp[qb] > max_row)
                max_row = rp[qb + 1] - rp[qb];
            for (int32_t i = rp[qb]; i < rp[qb + 1]; i++) {
                assert_int_equal(l->row_of[i], qb);
                assert_true(l->col_idx[i] >= 0 && l->col_idx[i] < Kb);
                if (i > rp[qb])
                    assert_true(l->col_idx[i - 1] < l->col_idx[i]);
                int32_t m = l->mask_idx[i];
                assert_true(m >= BSA_BLOCK_PRED);
                if (m != BSA_BLOCK_FULL)
                    masked++;
                if (m >= 0) {
                    assert_true(m < l->n_partial);
                    assert_int_equal(bit_seen[m], 0);
                    bit_seen[m] = 1;
                    with_bits++;
                    /* Padding bits above the block width stay clear. */
                    for (int r = 0; r < B; r++)
                        for (int c = B; c < 64 * W; c++)
                            assert_int_equal(
                                (l->bits[((int64_t)m * B + r) * W + c / 64] >> (c % 64)) & 1, 0);
                }
            }
        }
    }
    free(bit_seen);
    assert_int_equal(with_bits, l->n_partial);
    assert_int_equal(masked, l->n_masked);
    assert_int_equal(info.partial_blocks, masked);
    assert_int_equal(info.max_row_blocks, max_row);

    /* Columns: every block once, sorted by query block. */
    uint8_t *seen = xmalloc((size_t)(nnz ? nnz : 1));
    memset(seen, 0, (size_t)(nnz ? nnz : 1));
    for (int h = 0; h < H; h++) {
        const int32_t *cp = l->col_ptr + (int64_t)h * (Kb + 1);
        assert_int_equal(cp[0], l->head_ptr[h]);
        assert_int_equal(cp[Kb], l->head_ptr[h + 1]);
        for (int kb = 0; kb < Kb; kb++) {
            assert_true(cp[kb] <= cp[kb + 1]);
            if (cp[kb + 1] - cp[kb] > max_col)
                max_col = cp[kb + 1] - cp[kb];
            for (int32_t j = cp[kb]; j < cp[kb + 1]; j++) {
                int32_t i = l->t_block[j];
                assert_true(i >= l->head_ptr[h] && i < l->head_ptr[h + 1]);
                assert_int_equal(l->col_idx[i], kb);
                assert_int_equal(l->t_row[j], l->row_of[i]);
                if (j > cp[kb])
                    assert_true(l->t_row[j - 1] < l->t_row[j]);
                assert_int_equal(seen[i], 0);
                seen[i] = 1;
            }
        }
    }
    for (int64_t i = 0; i < nnz; i++)
        assert_int_equal(seen[i], 1);
    free(seen);
    assert_int_equal(info.max_col_blocks, max_col);

    if (!(mode & CHECK_ELEMENTS))
        return;

    /* Elements: the natural-order mask equals the oracle everywhere. */
    int64_t n_q = (int64_t)Qb * B, n_k = (int64_t)Kb * B, kept_total = 0;
    int L = l->stride_perm;
    uint8_t *mask = xmalloc((size_t)(n_q * n_k));
    uint8_t *present = xmalloc((size_t)Qb * Kb);
    for (int h = 0; h < H; h++) {
        memset(mask, 0xcd, (size_t)(n_q * n_k)); /* poison: must be overwritten */
        assert_int_equal(bsa_layout_element_mask(lay, h, mask), BSA_SUCCESS);
        for (int64_t q = 0; q < n_q; q++)
            for (int64_t k = 0; k < n_k; k++) {
                int want = oracle(self, h, q, k);
                if (mask[q * n_k + k] != want)
                    fail_msg("head %d: element (q %lld, k %lld) is %d, expected %d", h,
                             (long long)q, (long long)k, mask[q * n_k + k], want);
                kept_total += want;
            }
        /* Blocks, in layout order: the set, and the split. */
        memset(present, 0, (size_t)Qb * Kb);
        for (int64_t i = l->head_ptr[h]; i < l->head_ptr[h + 1]; i++) {
            int qb = l->row_of[i], kb = l->col_idx[i];
            present[(int64_t)qb * Kb + kb] = 1;
            int64_t cnt = 0;
            for (int r = 0; r < B; r++)
                for (int c = 0; c < B; c++)
                    cnt += oracle(self, h, natural((int64_t)qb * B + r, L, n_q),
                                  natural((int64_t)kb * B + c, L, n_k));
            int32_t m = l->mask_idx[i];
            if (m == BSA_BLOCK_FULL)
                assert_int_equal(cnt, (int64_t)B * B);
            else if (m == BSA_BLOCK_PRED)
                assert_true(cnt > 0 && cnt < (int64_t)B * B);
            else
                assert_true(cnt < (int64_t)B * B);
        }
        for (int qb = 0; qb < Qb; qb++)
            for (int kb = 0; kb < Kb; kb++) {
                int want;
                if (expected) {
                    want = expected(self, h, qb, kb);
                } else { /* presets: exactly the blocks with a kept element */
                    want = 0;
                    for (int r = 0; r < B && !want; r++)
                        for (int c = 0; c < B && !want; c++)
                            want = oracle(self, h, natural((int64_t)qb * B + r, L, n_q),
                                          natural((int64_t)kb * B + c, L, n_k));
                }
                if (present[(int64_t)qb * Kb + kb] != want)
                    fail_msg("head %d: block (%d, %d) present %d, expected %d", h, qb, kb,
                             present[(int64_t)qb * Kb + kb], want);
            }
    }
    free(present);
    free(mask);
    assert_int_equal(info.kept_elements, kept_total);
}

/* ------------------------------------------------- reference counts */

static bsa_layout_t make_preset(bsa_pattern pat, int seq, int block, int heads, int ctx, int nv,
                                int vs, int bidir)
{
    bsa_preset p = {pat, seq, block, heads, ctx, nv, vs, bidir};
    bsa_layout_t lay = NULL;
    bsa_status st = bsa_layout_create_preset(&host_ctx, &lay, &p);
    if (st != BSA_SUCCESS)
        fail_msg("preset %d seq %d block %d heads %d ctx %d nv %d vs %d bidir %d: %s (%s)",
                 (int)pat, seq, block, heads, ctx, nv, vs, bidir, bsa_status_string(st),
                 bsa_last_error());
    return lay;
}

/* Largest column count of one head, from the transposed lists. */
static int head_max_col(const struct bsa_layout *l, int h)
{
    const int32_t *cp = l->col_ptr + (int64_t)h * (l->k_blocks + 1);
    int m = 0;
    for (int kb = 0; kb < l->k_blocks; kb++)
        if (cp[kb + 1] - cp[kb] > m)
            m = cp[kb + 1] - cp[kb];
    return m;
}

static void expect_counts(bsa_layout_t lay, int heads, int64_t per_head, int nn_max)
{
    bsa_layout_info info;
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    assert_int_equal(info.heads, heads);
    for (int h = 0; h < heads; h++) {
        int64_t n = -1;
        assert_int_equal(bsa_layout_head_blocks(lay, h, &n), BSA_SUCCESS);
        assert_int_equal(n, per_head);
    }
    assert_int_equal(info.blocks_total, per_head * heads);
    if (nn_max)
        assert_int_equal(info.max_row_blocks, nn_max);
}

static void test_reference_counts(void **state)
{
    bsa_layout_t l;
    l = make_preset(BSA_PATTERN_ALL, 1024, 32, 4, 0, 0, 0, 0);
    expect_counts(l, 1, 528, 32);
    bsa_layout_destroy(l);
    l = make_preset(BSA_PATTERN_LOCAL, 1024, 32, 4, 32, 0, 0, 0);
    expect_counts(l, 1, 63, 2);
    bsa_layout_destroy(l);
    l = make_preset(BSA_PATTERN_STRIDED, 1024, 32, 4, 32, 0, 0, 0);
    expect_counts(l, 1, 32, 1);
    bsa_layout_destroy(l);

    /* Fixed, L=128, nv=4, vs=1, H=4: 192 blocks per head, nn_max 11.  The
     * spec's tn_max 29 is head 0's (summary column 3 of window 0: rows
     * 3..31); the seed's BlocksparseTransformer takes the max over heads,
     * and head 3's summary column 0 has all 32 rows. */
    l = make_preset(BSA_PATTERN_FIXED, 1024, 32, 4, 128, 4, 1, 0);
    expect_counts(l, 4, 192, 11);
    assert_int_equal(head_max_col(l, 0), 29);
    assert_int_equal(head_max_col(l, 3), 32);
    bsa_layout_info info;
    assert_int_equal(bsa_layout_get_info(l, &info), BSA_SUCCESS);
    assert_int_equal(info.max_col_blocks, 32);
    bsa_layout_destroy(l);

    l = make_preset(BSA_PATTERN_LOCAL, 256, 8, 2, 16, 0, 0, 0);
    expect_counts(l, 1, 93, 0);
    bsa_layout_destroy(l);
    l = make_preset(BSA_PATTERN_STRIDED, 256, 8, 2, 16, 0, 0, 0);
    expect_counts(l, 1, 48, 0);
    bsa_layout_destroy(l);
    l = make_preset(BSA_PATTERN_FIXED, 256, 8, 2, 32, 1, 2, 0);
    expect_counts(l, 1, 304, 0);
    bsa_layout_destroy(l);
}

/* ------------------------------------------------- preset masks */

static void check_preset(const bsa_preset *p)
{
    preset_case c = {*p};
    bsa_layout_t lay = NULL;
    bsa_status st = bsa_layout_create_preset(&host_ctx, &lay, p);
    if (st != BSA_SUCCESS)
        fail_msg("pattern %d seq %d block %d heads %d ctx %d nv %d vs %d bidir %d: %s (%s)",
                 (int)p->pattern, p->seq, p->block, p->heads, p->ctx, p->num_verts, p->vertsize,
                 p->bidirectional, bsa_status_string(st), bsa_last_error());
    const struct bsa_layout *l = lay;
    int want_heads = p->pattern == BSA_PATTERN_FIXED && p->num_verts > 1 ? p->heads : 1;
    assert_int_equal(l->heads, want_heads);
    assert_int_equal(l->stride_perm, p->pattern == BSA_PATTERN_STRIDED ? p->ctx : 0);
    verify_layout(lay, preset_oracle, &c, NULL, CHECK_ELEMENTS);
    bsa_layout_destroy(lay);
}

/* Fixed-pattern parameters that satisfy the seed's assertions. */
static void random_fixed(bsa_preset *p)
{
    int S = rnd_in(1, 8);
    int vs_opts[8], n = 0;
    for (int v = 1; v <= S; v++)
        if (S % v == 0)
            vs_opts[n++] = v;
    p->vertsize = vs_opts[rnd_in(0, n - 1)];
    p->num_verts = rnd_in(1, S / p->vertsize);
    p->heads = p->num_verts * rnd_in(1, 2);
    p->ctx = S * p->block;
}

static void test_preset_masks_fixed_cases(void **state)
{
    /* Seed reference configurations and their bidirectional forms. */
    bsa_preset cases[] = {
        {BSA_PATTERN_ALL, 256, 32, 1, 0, 0, 0, 0},
        {BSA_PATTERN_LOCAL, 256, 32, 1, 32, 0, 0, 0},
        {BSA_PATTERN_STRIDED, 1024, 32, 1, 32, 0, 0, 0},
        {BSA_PATTERN_FIXED, 512, 32, 4, 128, 4, 1, 0},
        {BSA_PATTERN_LOCAL, 256, 8, 1, 16, 0, 0, 0},
        {BSA_PATTERN_STRIDED, 256, 8, 1, 16, 0, 0, 0},
        {BSA_PATTERN_FIXED, 256, 8, 2, 32, 1, 2, 0},
        {BSA_PATTERN_LOCAL, 256, 16, 1, 37, 0, 0, 0},  /* L not a block multiple */
        {BSA_PATTERN_LOCAL, 128, 8, 1, 1, 0, 0, 0},    /* diagonal only */
        {BSA_PATTERN_LOCAL, 64, 16, 1, 1000, 0, 0, 0}, /* L beyond seq */
        {BSA_PATTERN_STRIDED, 256, 8, 1, 1, 0, 0, 0},  /* L = 1: plain causal */
        {BSA_PATTERN_FIXED, 200, 8, 3, 40, 3, 1, 0},   /* seq not a multiple of L */
        {BSA_PATTERN_ALL, 128, 128, 1, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_preset(&cases[i]);
        cases[i].bidirectional = 1;
        check_preset(&cases[i]);
    }
}

static void test_preset_masks_random(void **state)
{
    for (int iter = 0; iter < 60; iter++) {
        bsa_preset p = {0};
        p.pattern = (bsa_pattern)(iter % 4);
        p.bidirectional = (iter / 4) % 2;
        p.block = block_sizes[rnd_in(0, 3)];
        p.heads = rnd_in(1, 4);
        int nb = rnd_in(1, 384 / p.block);
        switch (p.pattern) {
        case BSA_PATTERN_ALL:
            break;
        case BSA_PATTERN_LOCAL:
            p.ctx = rnd_in(1, 3 * p.block);
            break;
        case BSA_PATTERN_STRIDED: {
            /* seq = L * chunks * B */
            int chunks = rnd_in(1, 4);
            p.ctx = rnd_in(1, 12);
            nb = p.ctx * chunks;
            break;
        }
        case BSA_PATTERN_FIXED:
            random_fixed(&p);
            break;
        }
        p.seq = nb * p.block;
        check_preset(&p);
    }
}

/* ------------------------------------------------- callback, dense */

static int masked_expected_cb(const void *self, int h, int qb, int kb)
{
    return masked_block_expected(self, h, qb, kb);
}

static masked_case random_masked_case(int with_bits)
{
    masked_case c;
    memset(&c, 0, sizeof c);
    c.d.block = block_sizes[rnd_in(0, 4)];
    c.d.heads = rnd_in(1, 3);
    int max_blocks = c.d.block >= 64 ? 4 : 10;
    c.d.q_blocks = rnd_in(1, max_blocks);
    c.d.k_blocks = rnd_in(1, max_blocks);
    c.d.predicates = (unsigned)rnd_in(0, 7);
    /* Window and prefix often sit at a block edge, where off-by-ones hide. */
    int B = c.d.block, span = c.d.k_blocks * B;
    c.d.window = rnd_in(1, span + B);
    c.d.prefix = rnd_in(0, span);
    if (rnd_in(0, 1))
        c.d.window = rnd_in(1, c.d.k_blocks + 1) * B + rnd_in(-1, 1);
    if (rnd_in(0, 1))
        c.d.prefix = rnd_in(0, c.d.k_blocks) * B + rnd_in(-1, 1);
    if (c.d.window < 1)
        c.d.window = 1;
    if (c.d.prefix < 0)
        c.d.prefix = 0;
    c.with_bits = with_bits;
    c.salt = rnd();
    if (rnd_in(0, 4)) { /* mostly an explicit matrix, sometimes NULL */
        size_t n = (size_t)c.d.heads * c.d.q_blocks * c.d.k_blocks;
        c.blocks = xmalloc(n);
        int density = rnd_in(1, 4);
        for (size_t i = 0; i < n; i++)
            c.blocks[i] = rnd_in(0, 4) < density ? (uint8_t)rnd_in(1, 255) : 0;
    }
    return c;
}

static void test_callback_layouts(void **state)
{
    for (int iter = 0; iter < 80; iter++) {
        masked_case c = random_masked_case(1);
        bsa_layout_t lay = NULL;
        bsa_status st =
            bsa_layout_create_callback(&host_ctx, &lay, &c.d, c.blocks, test_callback, &c);
        if (st != BSA_SUCCESS)
            fail_msg("callback layout: %s (%s)", bsa_status_string(st), bsa_last_error());
        const struct bsa_layout *l = lay;
        /* One call per kept block, per layout head, in global block order,
         * with block_index = the index within its head. */
        assert_int_equal(c.n_calls, l->nnz);
        for (int64_t i = 0; i < c.n_calls; i++) {
            int h = c.calls[i].head;
            assert_true(h >= 0 && h < l->heads);
            assert_true(i >= l->head_ptr[h] && i < l->head_ptr[h + 1]);
            assert_int_equal(c.calls[i].qb, l->row_of[i]);
            assert_int_equal(c.calls[i].kb, l->col_idx[i]);
            assert_int_equal(c.calls[i].index, i - l->head_ptr[h]);
            /* all-ones (after predicates) becomes FULL; no PRED blocks here */
            assert_true(l->mask_idx[i] != BSA_BLOCK_PRED);
        }
        verify_layout(lay, masked_oracle, &c, masked_expected_cb, CHECK_ELEMENTS);
        bsa_layout_destroy(lay);
        free(c.blocks);
        free(c.calls);
    }
}

/* A callback that returns all ones on every block, and one that returns
 * all zeros: the first layout is all FULL, the second all bits and empty. */
static int cb_ones(void *user, int head, int qb, int kb, int idx, int block, uint8_t *mask)
{
    memset(mask, 1, (size_t)block * block);
    return 0;
}

static int cb_zeros(void *user, int head, int qb, int kb, int idx, int block, uint8_t *mask)
{
    memset(mask, 0, (size_t)block * block);
    return 0;
}

static void test_callback_extremes(void **state)
{
    bsa_layout_desc d = {32, 2, 5, 7, BSA_PRED_NONE, 0, 0};
    bsa_layout_t lay = NULL;
    bsa_layout_info info;
    assert_int_equal(bsa_layout_create_callback(&host_ctx, &lay, &d, NULL, cb_ones, NULL),
                     BSA_SUCCESS);
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    assert_int_equal(info.blocks_total, 2 * 5 * 7);
    assert_int_equal(info.partial_blocks, 0);
    assert_int_equal(info.kept_elements, 2LL * 5 * 7 * 32 * 32);
    assert_int_equal(lay->n_partial, 0);
    bsa_layout_destroy(lay);

    /* Zero bits keep the blocks (block indices stay those the callback saw). */
    d.predicates = BSA_PRED_CAUSAL;
    d.q_blocks = d.k_blocks = 6;
    assert_int_equal(bsa_layout_create_callback(&host_ctx, &lay, &d, NULL, cb_zeros, NULL),
                     BSA_SUCCESS);
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    assert_int_equal(info.blocks_total, 2 * 21);
    assert_int_equal(info.partial_blocks, 2 * 21);
    assert_int_equal(info.kept_elements, 0);
    assert_int_equal(lay->n_partial, 2 * 21);
    bsa_layout_destroy(lay);
}

static void test_dense_layouts(void **state)
{
    for (int iter = 0; iter < 80; iter++) {
        masked_case c = random_masked_case(0);
        if (!c.blocks) { /* dense needs a matrix: all ones */
            size_t n = (size_t)c.d.heads * c.d.q_blocks * c.d.k_blocks;
            c.blocks = xmalloc(n);
            memset(c.blocks, 1, n);
        }
        bsa_layout_t lay = NULL;
        bsa_status st = bsa_layout_create_dense(&host_ctx, &lay, &c.d, c.blocks);
        if (st != BSA_SUCCESS)
            fail_msg("dense layout: %s (%s)", bsa_status_string(st), bsa_last_error());
        assert_int_equal(lay->n_partial, 0); /* predicates cost no memory */
        verify_layout(lay, masked_oracle, &c, masked_expected_cb, CHECK_ELEMENTS);
        bsa_layout_destroy(lay);
        free(c.blocks);
    }
}

/* Dense without predicates: exactly the nonzero blocks, all FULL. */
static void test_dense_plain(void **state)
{
    bsa_layout_desc d = {16, 3, 9, 4, 0, 0, 0};
    uint8_t blocks[3 * 9 * 4];
    int64_t want = 0;
    for (size_t i = 0; i < sizeof blocks; i++)
        blocks[i] = (uint8_t)(rnd_in(0, 2) ? 0 : rnd_in(1, 255));
    blocks[0] = 0; /* an empty head-0 row is fine */
    for (size_t i = 0; i < sizeof blocks; i++)
        want += blocks[i] != 0;
    bsa_layout_t lay = NULL;
    assert_int_equal(bsa_layout_create_dense(&host_ctx, &lay, &d, blocks), BSA_SUCCESS);
    bsa_layout_info info;
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    assert_int_equal(info.blocks_total, want);
    assert_int_equal(info.partial_blocks, 0);
    assert_int_equal(info.kept_elements, want * 16 * 16);
    bsa_layout_destroy(lay);

    /* An all-zero matrix gives an empty, valid layout. */
    memset(blocks, 0, sizeof blocks);
    assert_int_equal(bsa_layout_create_dense(&host_ctx, &lay, &d, blocks), BSA_SUCCESS);
    masked_case c;
    memset(&c, 0, sizeof c);
    c.d = d;
    c.blocks = blocks;
    verify_layout(lay, masked_oracle, &c, masked_expected_cb, CHECK_ELEMENTS);
    bsa_layout_destroy(lay);
}

/* ------------------------------------------------- large presets */

static void test_large_presets(void **state)
{
    /* seq = 2^20: building must be O(blocks); (2^14)^2 block pairs would be
     * 2.7e8 and the element count 1.1e12, so nothing here scans them. */
    const int n = 1 << 20, B = 64, L = 256;
    bsa_layout_t lay = make_preset(BSA_PATTERN_LOCAL, n, B, 8, L, 0, 0, 0);
    bsa_layout_info info;
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    int nb = n / B, reach = (L - 1 + B - 1) / B;
    int64_t blocks = (int64_t)nb * (reach + 1) - (int64_t)reach * (reach + 1) / 2;
    assert_int_equal(info.blocks_total, blocks);
    assert_int_equal(info.max_row_blocks, reach + 1);
    /* sum over q of min(q + 1, L) */
    int64_t kept = (int64_t)L * (L + 1) / 2 + (int64_t)(n - L) * L;
    assert_int_equal(info.kept_elements, kept);
    verify_layout(lay, NULL, NULL, NULL, 0);
    bsa_layout_destroy(lay);

    /* Strided, L = 1024: 16-block chunks, a causal triangle each. */
    lay = make_preset(BSA_PATTERN_STRIDED, n, B, 8, 1024, 0, 0, 0);
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    assert_int_equal(info.blocks_total, 1024LL * 16 * 17 / 2);
    int64_t bt = n / 1024;
    assert_int_equal(info.kept_elements, 1024LL * bt * (bt + 1) / 2);
    verify_layout(lay, NULL, NULL, NULL, 0);
    bsa_layout_destroy(lay);

    /* Fixed, bidirectional, per-head: O(rows x windows) blocks, so a
     * shorter sequence (2^18, 128 windows) keeps the table small. */
    const int nf = 1 << 18, Lf = 2048, S = Lf / B, nbf = nf / B, windows = nbf / S;
    lay = make_preset(BSA_PATTERN_FIXED, nf, B, 2, Lf, 2, 2, 1);
    assert_int_equal(bsa_layout_get_info(lay, &info), BSA_SUCCESS);
    /* own window S blocks + vs summary blocks in each other window */
    assert_int_equal(info.blocks_total, 2LL * nbf * (S + 2LL * (windows - 1)));
    verify_layout(lay, NULL, NULL, NULL, 0);
    bsa_layout_destroy(lay);
}

/* ------------------------------------------------- bad inputs */

#define SENTINEL ((bsa_layout_t)(uintptr_t)0x5eed)

static void expect_fail_preset(bsa_preset p, bsa_status want)
{
    bsa_layout_t lay = SENTINEL;
    bsa_status st = bsa_layout_create_preset(&host_ctx, &lay, &p);
    if (st != want)
        fail_msg("preset pattern %d seq %d block %d heads %d ctx %d nv %d vs %d bidir %d: got "
                 "%s (%s), expected %s",
                 (int)p.pattern, p.seq, p.block, p.heads, p.ctx, p.num_verts, p.vertsize,
                 p.bidirectional, bsa_status_string(st), bsa_last_error(), bsa_status_string(want));
    assert_ptr_equal(lay, SENTINEL);
    assert_true(strlen(bsa_last_error()) > 10);
    assert_non_null(strstr(bsa_last_error(), "bsa_layout_create_preset"));
}

static void test_bad_presets(void **state)
{
    const bsa_preset ok = {BSA_PATTERN_FIXED, 1024, 32, 4, 128, 4, 1, 0};
    bsa_layout_t lay = SENTINEL;
    assert_int_equal(bsa_layout_create_preset(NULL, &lay, &ok), BSA_ERROR_NULL_POINTER);
    assert_ptr_equal(lay, SENTINEL);
    assert_non_null(strstr(bsa_last_error(), "ctx"));
    assert_int_equal(bsa_layout_create_preset(&host_ctx, NULL, &ok), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_layout_create_preset(&host_ctx, &lay, NULL), BSA_ERROR_NULL_POINTER);
    assert_non_null(strstr(bsa_last_error(), "preset"));
    assert_ptr_equal(lay, SENTINEL);

    bsa_preset p;
#define BAD(field, value, status)                                                                  \
    do {                                                                                           \
        p = ok;                                                                                    \
        p.field = value;                                                                           \
        expect_fail_preset(p, status);                                                             \
    } while (0)
    BAD(pattern, (bsa_pattern)9, BSA_ERROR_INVALID_ARGUMENT);
    BAD(pattern, (bsa_pattern)-1, BSA_ERROR_INVALID_ARGUMENT);
    BAD(block, 12, BSA_ERROR_UNSUPPORTED);
    BAD(block, 256, BSA_ERROR_UNSUPPORTED);
    BAD(block, 0, BSA_ERROR_UNSUPPORTED);
    BAD(seq, 0, BSA_ERROR_INVALID_ARGUMENT);
    BAD(seq, -32, BSA_ERROR_INVALID_ARGUMENT);
    BAD(seq, 1000, BSA_ERROR_INVALID_SHAPE);
    BAD(heads, 0, BSA_ERROR_INVALID_ARGUMENT);
    BAD(bidirectional, 2, BSA_ERROR_INVALID_ARGUMENT);
    BAD(ctx, 0, BSA_ERROR_INVALID_ARGUMENT);
    /* fixed */
    BAD(ctx, 100, BSA_ERROR_INVALID_SHAPE);    /* ctx % block */
    BAD(heads, 6, BSA_ERROR_INVALID_ARGUMENT); /* heads % num_verts */
    BAD(num_verts, 0, BSA_ERROR_INVALID_ARGUMENT);
    BAD(vertsize, 0, BSA_ERROR_INVALID_ARGUMENT);
    BAD(vertsize, 8, BSA_ERROR_INVALID_ARGUMENT); /* vs > S = 4 */
    BAD(vertsize, 3, BSA_ERROR_INVALID_ARGUMENT); /* S % vs */
    p = ok;
    p.vertsize = 2; /* S / vs = 2 < num_verts 4 */
    expect_fail_preset(p, BSA_ERROR_INVALID_ARGUMENT);
    /* local */
    p = ok;
    p.pattern = BSA_PATTERN_LOCAL;
    p.ctx = -5;
    expect_fail_preset(p, BSA_ERROR_INVALID_ARGUMENT);
    /* strided: seq % L, (seq / L) % block */
    p = ok;
    p.pattern = BSA_PATTERN_STRIDED;
    p.ctx = 48;
    expect_fail_preset(p, BSA_ERROR_INVALID_SHAPE);
    p.ctx = 64; /* 1024 / 64 = 16, not a multiple of 32 */
    expect_fail_preset(p, BSA_ERROR_INVALID_SHAPE);
    p.ctx = 0;
    expect_fail_preset(p, BSA_ERROR_INVALID_ARGUMENT);
    p.ctx = 32; /* sanity: the good form succeeds */
    assert_int_equal(bsa_layout_create_preset(&host_ctx, &lay, &p), BSA_SUCCESS);
    assert_ptr_not_equal(lay, SENTINEL);
    bsa_layout_destroy(lay);
#undef BAD
}

static void expect_fail_desc(const bsa_layout_desc *d, const uint8_t *blocks, bsa_status want)
{
    bsa_layout_t lay = SENTINEL;
    bsa_status st = bsa_layout_create_dense(&host_ctx, &lay, d, blocks);
    if (st != want)
        fail_msg("dense: got %s (%s), expected %s", bsa_status_string(st), bsa_last_error(),
                 bsa_status_string(want));
    assert_ptr_equal(lay, SENTINEL);
    assert_non_null(strstr(bsa_last_error(), "bsa_layout_create_dense"));
    st = bsa_layout_create_callback(&host_ctx, &lay, d, blocks, cb_ones, NULL);
    if (st != want)
        fail_msg("callback: got %s (%s), expected %s", bsa_status_string(st), bsa_last_error(),
                 bsa_status_string(want));
    assert_ptr_equal(lay, SENTINEL);
    assert_non_null(strstr(bsa_last_error(), "bsa_layout_create_callback"));
}

static void test_bad_descs(void **state)
{
    static uint8_t blocks[4096];
    memset(blocks, 1, sizeof blocks);
    const bsa_layout_desc ok = {32, 2, 4, 4, BSA_PRED_CAUSAL, 0, 0};
    bsa_layout_t lay = SENTINEL;
    assert_int_equal(bsa_layout_create_dense(NULL, &lay, &ok, blocks), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_layout_create_dense(&host_ctx, NULL, &ok, blocks), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_layout_create_dense(&host_ctx, &lay, NULL, blocks),
                     BSA_ERROR_NULL_POINTER);
    assert_non_null(strstr(bsa_last_error(), "desc"));
    assert_int_equal(bsa_layout_create_dense(&host_ctx, &lay, &ok, NULL), BSA_ERROR_NULL_POINTER);
    assert_non_null(strstr(bsa_last_error(), "blocks"));
    assert_int_equal(bsa_layout_create_callback(&host_ctx, &lay, &ok, blocks, NULL, NULL),
                     BSA_ERROR_NULL_POINTER);
    assert_non_null(strstr(bsa_last_error(), "callback"));
    assert_int_equal(bsa_layout_create_callback(NULL, &lay, &ok, NULL, cb_ones, NULL),
                     BSA_ERROR_NULL_POINTER);
    assert_ptr_equal(lay, SENTINEL);

    bsa_layout_desc d;
#define BAD(field, value, status)                                                                  \
    do {                                                                                           \
        d = ok;                                                                                    \
        d.field = value;                                                                           \
        expect_fail_desc(&d, blocks, status);                                                      \
    } while (0)
    BAD(block, 4, BSA_ERROR_UNSUPPORTED);
    BAD(block, 48, BSA_ERROR_UNSUPPORTED);
    BAD(block, 256, BSA_ERROR_UNSUPPORTED);
    BAD(heads, 0, BSA_ERROR_INVALID_ARGUMENT);
    BAD(q_blocks, 0, BSA_ERROR_INVALID_ARGUMENT);
    BAD(k_blocks, -1, BSA_ERROR_INVALID_ARGUMENT);
    BAD(predicates, 8u, BSA_ERROR_INVALID_ARGUMENT);
    BAD(predicates, BSA_PRED_CAUSAL | 0x100u, BSA_ERROR_INVALID_ARGUMENT);
    d = ok;
    d.predicates = BSA_PRED_WINDOW;
    d.window = 0;
    expect_fail_desc(&d, blocks, BSA_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(bsa_last_error(), "window"));
    d.predicates = BSA_PRED_PREFIX;
    d.prefix = -1;
    expect_fail_desc(&d, blocks, BSA_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(bsa_last_error(), "prefix"));
    /* Positions overflow int: q_blocks * block > INT_MAX. */
    BAD(q_blocks, 1 << 26, BSA_ERROR_OVERFLOW);
#undef BAD
    /* heads x seq_q x seq_k elements overflow int64 (no matrix is read). */
    d = ok;
    d.block = 8;
    d.heads = 1 << 20;
    d.q_blocks = d.k_blocks = 1 << 20;
    lay = SENTINEL;
    assert_int_equal(bsa_layout_create_callback(&host_ctx, &lay, &d, NULL, cb_ones, NULL),
                     BSA_ERROR_OVERFLOW);
    assert_ptr_equal(lay, SENTINEL);
}

static int cb_fail_third(void *user, int head, int qb, int kb, int idx, int block, uint8_t *mask)
{
    int *calls = user;
    return ++*calls == 3 ? -7 : 0;
}

static void test_callback_failure(void **state)
{
    bsa_layout_desc d = {16, 2, 4, 4, 0, 0, 0};
    int calls = 0;
    bsa_layout_t lay = SENTINEL;
    assert_int_equal(bsa_layout_create_callback(&host_ctx, &lay, &d, NULL, cb_fail_third, &calls),
                     BSA_ERROR_CALLBACK);
    assert_int_equal(calls, 3);
    assert_ptr_equal(lay, SENTINEL);
    assert_non_null(strstr(bsa_last_error(), "-7"));
}

static void test_bad_queries(void **state)
{
    bsa_layout_t lay = make_preset(BSA_PATTERN_FIXED, 256, 16, 4, 64, 2, 2, 0);
    bsa_layout_info info;
    memset(&info, 0x77, sizeof info);
    bsa_layout_info before = info;
    assert_int_equal(bsa_layout_get_info(NULL, &info), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_layout_get_info(lay, NULL), BSA_ERROR_NULL_POINTER);
    assert_memory_equal(&info, &before, sizeof info);

    int64_t count = -42;
    assert_int_equal(bsa_layout_head_blocks(NULL, 0, &count), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_layout_head_blocks(lay, 0, NULL), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_layout_head_blocks(lay, -1, &count), BSA_ERROR_INVALID_ARGUMENT);
    assert_int_equal(bsa_layout_head_blocks(lay, 4, &count), BSA_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(bsa_last_error(), "head"));
    assert_int_equal(count, -42);
    assert_int_equal(bsa_layout_head_blocks(lay, 3, &count), BSA_SUCCESS);
    assert_true(count > 0);

    uint8_t *mask = xmalloc(256 * 256);
    memset(mask, 0xab, 256 * 256);
    assert_int_equal(bsa_layout_element_mask(NULL, 0, mask), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_layout_element_mask(lay, 0, NULL), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_layout_element_mask(lay, 4, mask), BSA_ERROR_INVALID_ARGUMENT);
    assert_int_equal(bsa_layout_element_mask(lay, -3, mask), BSA_ERROR_INVALID_ARGUMENT);
    for (int i = 0; i < 256 * 256; i++)
        assert_int_equal(mask[i], 0xab);
    free(mask);
    assert_int_equal(bsa_layout_destroy(lay), BSA_SUCCESS);
    assert_int_equal(bsa_layout_destroy(NULL), BSA_SUCCESS);
}

/* ------------------------------------------------- out of memory */

/* Fails each host allocation of a build in turn: every one must report
 * BSA_ERROR_OUT_OF_MEMORY with the output untouched (leaks show under the
 * sanitizer build), until the build needs no more and succeeds. */
static void walk_oom(bsa_status (*make)(bsa_layout_t *out, void *arg), void *arg)
{
    int n;
    for (n = 1; n < 10000; n++) {
        bsa_layout_t lay = SENTINEL;
        bsa_layout_fail_alloc_at = n;
        bsa_status st = make(&lay, arg);
        int untriggered = bsa_layout_fail_alloc_at > 0;
        bsa_layout_fail_alloc_at = 0;
        if (untriggered) {
            assert_int_equal(st, BSA_SUCCESS);
            assert_ptr_not_equal(lay, SENTINEL);
            bsa_layout_destroy(lay);
            break;
        }
        if (st != BSA_ERROR_OUT_OF_MEMORY)
            fail_msg("allocation %d failed: got %s (%s)", n, bsa_status_string(st),
                     bsa_last_error());
        assert_ptr_equal(lay, SENTINEL);
    }
    assert_true(n > 5); /* several allocation sites were exercised */
}

static bsa_status make_callback_big(bsa_layout_t *out, void *arg)
{
    masked_case *c = arg;
    c->n_calls = 0;
    return bsa_layout_create_callback(&host_ctx, out, &c->d, NULL, test_callback, c);
}

static bsa_status make_preset_fixed(bsa_layout_t *out, void *arg)
{
    bsa_preset p = {BSA_PATTERN_FIXED, 4096, 16, 4, 128, 2, 2, 0};
    return bsa_layout_create_preset(&host_ctx, out, &p);
}

static void test_out_of_memory(void **state)
{
    masked_case c;
    memset(&c, 0, sizeof c);
    /* Enough blocks and partial blocks to grow every table a few times. */
    c.d = (bsa_layout_desc){8, 2, 40, 40, BSA_PRED_CAUSAL, 0, 0};
    c.with_bits = 1;
    c.salt = rnd();
    walk_oom(make_callback_big, &c);
    free(c.calls);
    walk_oom(make_preset_fixed, NULL);
}

/* ------------------------------------------------- backend hooks */

static int prepared, released;
static bsa_status prepare_result;

static void fake_release(struct bsa_layout *l)
{
    assert_ptr_equal(l->backend_data, &prepared);
    released++;
}

static bsa_status fake_prepare(bsa_layout_t l)
{
    prepared++;
    /* The tables are complete when a backend sees them. */
    assert_true(l->nnz > 0 && l->col_idx && l->t_block && l->col_ptr);
    l->backend_data = &prepared;
    l->backend_release = fake_release;
    if (prepare_result)
        return bsa_fail(prepare_result, "fake backend: no room for the layout");
    return BSA_SUCCESS;
}

static void test_backend_prepare(void **state)
{
    static bsa_backend_i fake;
    fake.name = "fake";
    fake.layout_prepare = fake_prepare;
    struct bsa_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.impl = &fake;
    bsa_preset p = {BSA_PATTERN_LOCAL, 512, 32, 2, 64, 0, 0, 0};

    prepared = released = 0;
    prepare_result = BSA_SUCCESS;
    bsa_layout_t lay = SENTINEL;
    assert_int_equal(bsa_layout_create_preset(&ctx, &lay, &p), BSA_SUCCESS);
    assert_int_equal(prepared, 1);
    assert_ptr_equal(lay->ctx, &ctx);
    assert_int_equal(bsa_layout_destroy(lay), BSA_SUCCESS);
    assert_int_equal(released, 1);

    /* A failing upload fails the creation with its status; nothing leaks. */
    prepared = released = 0;
    prepare_result = BSA_ERROR_DEVICE;
    lay = SENTINEL;
    assert_int_equal(bsa_layout_create_preset(&ctx, &lay, &p), BSA_ERROR_DEVICE);
    assert_ptr_equal(lay, SENTINEL);
    assert_int_equal(prepared, 1);
    assert_int_equal(released, 1);
    assert_non_null(strstr(bsa_last_error(), "fake backend"));
    prepare_result = BSA_SUCCESS;
}

/* With a real context from the API, when it exists in this build. */
static void test_with_context(void **state)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    if (bsa_context_create(&ctx, &cp) != BSA_SUCCESS)
        skip();
    bsa_preset p = {BSA_PATTERN_STRIDED, 512, 16, 2, 16, 0, 0, 0};
    bsa_layout_t lay = NULL;
    assert_int_equal(bsa_layout_create_preset(ctx, &lay, &p), BSA_SUCCESS);
    preset_case c = {p};
    verify_layout(lay, preset_oracle, &c, NULL, CHECK_ELEMENTS);
    assert_int_equal(bsa_layout_destroy(lay), BSA_SUCCESS);
    bsa_context_destroy(ctx);
}

int main(void)
{
    const char *env = getenv("BSA_TEST_SEED");
    uint64_t seed =
        env ? strtoull(env, NULL, 0) : mix((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    printf("test_layouts: BSA_TEST_SEED=%llu\n", (unsigned long long)seed);
    rng_state = seed;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_counts),    cmocka_unit_test(test_preset_masks_fixed_cases),
        cmocka_unit_test(test_preset_masks_random), cmocka_unit_test(test_callback_layouts),
        cmocka_unit_test(test_callback_extremes),   cmocka_unit_test(test_dense_layouts),
        cmocka_unit_test(test_dense_plain),         cmocka_unit_test(test_large_presets),
        cmocka_unit_test(test_bad_presets),         cmocka_unit_test(test_bad_descs),
        cmocka_unit_test(test_callback_failure),    cmocka_unit_test(test_bad_queries),
        cmocka_unit_test(test_out_of_memory),       cmocka_unit_test(test_backend_prepare),
        cmocka_unit_test(test_with_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
