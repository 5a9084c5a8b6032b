/*
 * CPU backend forward and backward through the public API against the
 * double-precision oracle (tests/common/oracle.c) on element masks from the
 * test's closed forms (tests/common/closed_masks.c, never the library's
 * layout tables), on fresh random inputs
 * rounded to the dtype (the oracle runs on the same rounded values), with
 * every output poisoned before each run.
 *
 * Thresholds (relative L2 of the library's result against the oracle):
 *   f32   2e-6 outputs, 3e-5 gradients: fp32 accumulation of <= 256-term
 *         dot products of O(1) values gives ~sqrt(n) * 6e-8 ~ 1e-6 relative;
 *         the gradients carry the dS = P (dP - delta) cancellation of rows
 *         that keep one key (measured up to 1.3e-5: tests/README.md).
 *   f16   5e-3: the outputs themselves are stored in f16 (unit roundoff
 *         4.9e-4, ~2.8e-4 relative L2 for uniform rounding); a backend may
 *         also round P or dS to f16 for its products (another ~5e-4 each),
 *         so 5e-3 leaves ~5x over the worst honest path and still catches
 *         any real bug (a wrong mask element or a lost block is >= 1e-2).
 *   bf16  3e-2: the same argument with bf16's unit roundoff 3.9e-3 (8x f16).
 *   lse is always fp32 (and computed in fp32): 1e-5 for every dtype.
 */
#include "attn_check.h"

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
static const int block_sizes[5] = {8, 16, 32, 64, 128};
static const int head_dims[5] = {8, 16, 40, 64, 128};

/* Largest error seen per dtype, printed at the end as the measured figures. */
static double worst[3][5]; /* o, lse, dq, dk, dv */
static int verbose;

static bsa_context_t new_ctx(void)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    bsa_status st = bsa_context_create(&ctx, &cp);
    if (st != BSA_SUCCESS)
        fprintf(stderr, "bsa_context_create: %s: %s\n", bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
    return ctx;
}

static void expect_ok(bsa_status st, const char *what)
{
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s: %s\n", what, bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
}

static void record(const ac_problem *p, const ac_errors *e)
{
    double v[5] = {e->o, e->lse, e->dq, e->dk, e->dv};
    for (int i = 0; i < 5; i++)
        if (v[i] > worst[p->dtype][i])
            worst[p->dtype][i] = v[i];
}

/* Every check a forward + backward result must pass. */
static void check_errors(const char *label, const ac_problem *p, const ac_errors *e,
                         int with_backward)
{
    const tu_tol *t = &tu_cpu_tol[p->dtype];
    int ok = e->o <= t->out && e->lse <= t->lse && e->unwritten == 0 && e->gaps_touched == 0 &&
             e->nonfinite == 0 && e->empty_violations == 0 && e->lse_inf_mismatch == 0;
    if (with_backward)
        ok = ok && e->dq <= t->grad && e->dk <= t->grad && e->dv <= t->grad;
    record(p, e);
    if (!ok || verbose)
        ac_print(label, p, e);
    if (!ok)
        fprintf(stderr, "  FAILED (thresholds: out %.0e grad %.0e lse %.0e)\n", t->out, t->grad,
                t->lse);
    assert_true(ok);
}

/* Builds a plan for layout, runs forward and backward, compares to the oracle. */
static void run_case(bsa_context_t ctx, bsa_layout_t lay, const cm_source *masks, const char *label,
                     bsa_dtype dt, int batch, int heads, int dim, ac_form form, float scale,
                     unsigned flags, ac_ws ws)
{
    ac_problem p;
    bsa_attn_desc d;
    expect_ok(ac_problem_init(&p, lay, masks, dt, batch, heads, dim, form, scale, &d),
              "problem init");
    d.flags = flags;
    bsa_plan_t plan = NULL;
    expect_ok(bsa_plan_create(ctx, &plan, &d, lay), label);
    ac_problem_oracle(&p);
    expect_ok(ac_forward(plan, &p, ws), label);
    expect_ok(ac_backward(plan, &p, ws), label);
    ac_errors e;
    ac_compare(&p, 1, &e);
    char full[160];
    snprintf(full, sizeof full, "%s %s%s", label, ac_form_name(form),
             flags & BSA_PLAN_FORCE_REFERENCE ? " ref" : "");
    check_errors(full, &p, &e, 1);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
}

/* ------------------------------------------------------------- presets */

static const char *const pattern_names[] = {"all", "local", "strided", "fixed"};

/* A preset that satisfies the seed's constraints for this block size while
 * keeping the sequence short (<= 256, fixed with block 128: 512). */
static bsa_preset make_preset(bsa_pattern pat, int block, int heads, int bidir)
{
    bsa_preset ps;
    memset(&ps, 0, sizeof ps);
    ps.pattern = pat;
    ps.block = block;
    ps.heads = heads;
    ps.bidirectional = bidir;
    int nb = block <= 32 ? 4 : block == 64 ? 3 : 2;
    ps.seq = nb * block;
    switch (pat) {
    case BSA_PATTERN_ALL:
        break;
    case BSA_PATTERN_LOCAL:
        ps.ctx = block <= 32 ? 2 * block : block; /* L % B == 0 */
        break;
    case BSA_PATTERN_STRIDED:
        /* seq / L must be a multiple of the block */
        ps.ctx = block <= 16 ? 4 : block == 32 ? 4 : 2;
        ps.seq = ps.ctx * block * (block <= 16 ? 2 : 1);
        break;
    case BSA_PATTERN_FIXED:
        /* S = L / B blocks per window, nv <= S / vs, heads % nv == 0 */
        ps.ctx = (block <= 32 ? 4 : 2) * block;
        ps.num_verts = heads % 2 == 0 ? 2 : 1;
        ps.vertsize = 1;
        ps.seq = 2 * ps.ctx;
        break;
    }
    return ps;
}

/* Every pattern x causal/bidirectional x dtype x block size x head dim;
 * the tensor form, batch and workspace mode rotate. */
static void test_patterns(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    int n = 0;
    for (int pat = 0; pat < 4; pat++)
        for (int bidir = 0; bidir < 2; bidir++)
            for (int bi = 0; bi < 5; bi++) {
                int block = block_sizes[bi];
                int heads = 2;
                bsa_preset ps = make_preset((bsa_pattern)pat, block, heads, bidir);
                bsa_layout_t lay = NULL;
                char label[96];
                snprintf(label, sizeof label, "%s%s B=%d seq=%d ctx=%d", pattern_names[pat],
                         bidir ? "-bidir" : "", block, ps.seq, ps.ctx);
                expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), label);
                cm_source src = cm_of_preset(&ps);
                for (int di = 0; di < 3; di++)
                    for (int hi = 0; hi < 5; hi++, n++) {
                        ac_form form = (ac_form)(n % 3);
                        int batch = 1 + (n % 2);
                        run_case(ctx, lay, &src, label, dtypes[di], batch, heads, head_dims[hi],
                                 form, 0.0f, BSA_PLAN_DEFAULT,
                                 n % 4 == 3 ? AC_WS_NULL : AC_WS_EXACT);
                    }
                bsa_layout_destroy(lay);
            }
    bsa_context_destroy(ctx);
}

/* Every head dim with every dtype on one pattern, and an explicit scale. */
static void test_head_dims(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    bsa_preset ps = make_preset(BSA_PATTERN_LOCAL, 16, 3, 0);
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "local preset");
    cm_source src = cm_of_preset(&ps);
    for (int di = 0; di < 3; di++)
        for (int hi = 0; hi < 5; hi++) {
            char label[64];
            snprintf(label, sizeof label, "local B=16 D=%d", head_dims[hi]);
            /* explicit scales, one negative (nothing forbids it) */
            float scale = hi == 2 ? 0.37f : hi == 4 ? -0.2f : 0.0f;
            run_case(ctx, lay, &src, label, dtypes[di], 1, 3, head_dims[hi], (ac_form)(hi % 3),
                     scale, BSA_PLAN_DEFAULT, AC_WS_EXACT);
        }
    /* the largest supported head dim */
    run_case(ctx, lay, &src, "local B=16 D=256", BSA_DTYPE_F32, 1, 1, 256, AC_BTHD, 0.0f,
             BSA_PLAN_DEFAULT, AC_WS_EXACT);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

/* --------------------------------------------------- random layouts */

/* Random 0/1 block matrix with density in [lo, hi); row 0 of head 0 kept
 * empty when empty_row is set. */
static uint8_t *random_blocks(int heads, int qb, int kb, double density, int empty_row)
{
    uint8_t *m = tu_xmalloc((size_t)heads * qb * kb);
    for (int64_t i = 0; i < (int64_t)heads * qb * kb; i++)
        m[i] = tu_uniform(0.0, 1.0) < density;
    if (empty_row)
        memset(m + (qb > 1 ? 1 : 0) * kb, 0, (size_t)kb);
    return m;
}

/* Cross attention: seq_q != seq_k, a dense random block layout, shared and
 * per-head, every dtype, some rows without blocks. */
static void test_cross_attention(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    int n = 0;
    for (int di = 0; di < 3; di++)
        for (int lh = 0; lh < 2; lh++) {
            int block = block_sizes[tu_randint(0, 3)]; /* 8..32 */
            int qb = tu_randint(2, 6), kb = tu_randint(2, 7);
            if (qb == kb)
                kb++;
            int heads = 2;
            int lheads = lh ? heads : 1;
            uint8_t *blocks = random_blocks(lheads, qb, kb, 0.6, 1);
            bsa_layout_desc ld = {block, lheads, qb, kb, BSA_PRED_NONE, 0, 0};
            bsa_layout_t lay = NULL;
            char label[96];
            snprintf(label, sizeof label, "cross B=%d Qb=%d Kb=%d lheads=%d", block, qb, kb,
                     lheads);
            expect_ok(bsa_layout_create_dense(ctx, &lay, &ld, blocks), label);
            cm_source src = cm_of_dense(&ld, blocks);
            int hd = head_dims[n % 5];
            n++;
            run_case(ctx, lay, &src, label, dtypes[di], 2, heads, hd, (ac_form)(n % 3), 0.0f,
                     BSA_PLAN_DEFAULT, AC_WS_EXACT);
            bsa_layout_destroy(lay);
            free(blocks);
        }
    bsa_context_destroy(ctx);
}

/* Random square layouts with random predicates (causal, window, prefix). */
static void test_random_layouts(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    for (int it = 0; it < 48; it++) {
        int block = block_sizes[tu_randint(0, 4)];
        int nb = block >= 64 ? tu_randint(2, 4) : tu_randint(2, 7);
        int heads = tu_randint(1, 4);
        int lheads = tu_randint(0, 2) ? heads : 1;
        uint8_t *blocks = random_blocks(lheads, nb, nb, tu_uniform(0.2, 0.9), it % 3 == 0);
        bsa_layout_desc ld = {block, lheads, nb, nb, BSA_PRED_NONE, 0, 0};
        ld.predicates = (unsigned)tu_randint(0, 8);
        ld.window = tu_randint(1, nb * block);
        ld.prefix = tu_randint(0, nb * block);
        bsa_layout_t lay = NULL;
        char label[128];
        snprintf(label, sizeof label, "dense B=%d nb=%d lheads=%d pred=%u w=%d p=%d", block, nb,
                 lheads, ld.predicates, ld.window, ld.prefix);
        expect_ok(bsa_layout_create_dense(ctx, &lay, &ld, blocks), label);
        cm_source src = cm_of_dense(&ld, blocks);
        /* any multiple of 8 up to 136, sometimes the 256 limit */
        int dim = it % 16 == 5 ? 256 : 8 * tu_randint(1, 18);
        run_case(ctx, lay, &src, label, dtypes[it % 3], tu_randint(1, 3), heads, dim,
                 (ac_form)tu_randint(0, 3), 0.0f, BSA_PLAN_DEFAULT, AC_WS_EXACT);
        bsa_layout_destroy(lay);
        free(blocks);
    }
    bsa_context_destroy(ctx);
}

/* A callback mask drawn from a hash of (salt, head, absolute q, absolute k),
 * so the test knows every element independently of the library. */
typedef struct cb_state {
    uint64_t salt;
    double density;
    int dead_row; /* absolute query row masked entirely, or -1 */
    int calls, fail_at;
} cb_state;

static int cb_keep(const cb_state *s, int head, int q, int k)
{
    if (q == s->dead_row)
        return 0;
    uint64_t z = s->salt ^ ((uint64_t)head << 48) ^ ((uint64_t)q << 24) ^ (uint64_t)k;
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
    z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
    z ^= z >> 33;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0) < s->density;
}

static int random_callback(void *user, int head, int q_block, int k_block, int block_index,
                           int block, uint8_t *mask)
{
    cb_state *s = user;
    (void)block_index;
    s->calls++;
    for (int r = 0; r < block; r++)
        for (int c = 0; c < block; c++)
            mask[r * block + c] =
                (uint8_t)cb_keep(s, head, q_block * block + r, k_block * block + c);
    return 0;
}

/* Random callback masks on random block layouts; also checks the element
 * mask the library reports against the test's own expectation. */
static void test_random_callbacks(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    for (int it = 0; it < 36; it++) {
        int block = block_sizes[tu_randint(0, 3)];
        int qb = tu_randint(2, 6), kb = it % 3 == 2 ? tu_randint(2, 6) : qb;
        int heads = 2, lheads = it % 2 ? heads : 1;
        int use_blocks = it % 4 != 1;
        uint8_t *blocks = use_blocks ? random_blocks(lheads, qb, kb, 0.7, 0) : NULL;
        cb_state cs = {tu_next(), tu_uniform(0.3, 0.95),
                       it % 3 == 0 ? tu_randint(0, qb * block) : -1, 0, -1};
        bsa_layout_desc ld = {block, lheads, qb, kb, BSA_PRED_NONE, 0, 0};
        bsa_layout_t lay = NULL;
        char label[128];
        snprintf(label, sizeof label, "callback B=%d Qb=%d Kb=%d lheads=%d dens=%.2f dead=%d",
                 block, qb, kb, lheads, cs.density, cs.dead_row);
        expect_ok(bsa_layout_create_callback(ctx, &lay, &ld, blocks, random_callback, &cs), label);
        /* once per kept block per layout head (a random matrix may keep none) */
        int64_t nnz = (int64_t)lheads * qb * kb;
        if (blocks) {
            nnz = 0;
            for (int64_t i = 0; i < (int64_t)lheads * qb * kb; i++)
                nnz += blocks[i] != 0;
        }
        assert_int_equal(cs.calls, nnz);

        /* the element mask must be block AND callback bit */
        int64_t sq = (int64_t)qb * block, sk = (int64_t)kb * block;
        uint8_t *m = tu_xmalloc((size_t)(sq * sk));
        int64_t wrong = 0, kept = 0;
        for (int h = 0; h < lheads; h++) {
            memset(m, 0xA5, (size_t)(sq * sk));
            expect_ok(bsa_layout_element_mask(lay, h, m), "element mask");
            for (int64_t q = 0; q < sq; q++)
                for (int64_t k = 0; k < sk; k++) {
                    int inblk = !blocks || blocks[((int64_t)h * qb + q / block) * kb + k / block];
                    int want = inblk && cb_keep(&cs, h, (int)q, (int)k);
                    wrong += m[q * sk + k] != want;
                    kept += want;
                }
        }
        /* the layout's own count must agree */
        bsa_layout_info info;
        expect_ok(bsa_layout_get_info(lay, &info), "layout info");
        if (info.kept_elements != kept)
            fprintf(stderr, "%s: kept_elements %lld, expected %lld\n", label,
                    (long long)info.kept_elements, (long long)kept);
        assert_int_equal(info.kept_elements, kept);
        if (wrong)
            fprintf(stderr, "%s: %lld element-mask entries differ from block & callback\n", label,
                    (long long)wrong);
        assert_int_equal(wrong, 0);
        free(m);

        cm_source src = cm_of_callback(&ld, blocks, random_callback, &cs);
        run_case(ctx, lay, &src, label, dtypes[it % 3], tu_randint(1, 3), heads,
                 head_dims[tu_randint(0, 5)], (ac_form)(it % 3), 0.0f, BSA_PLAN_DEFAULT,
                 AC_WS_EXACT);
        bsa_layout_destroy(lay);
        free(blocks);
    }
    bsa_context_destroy(ctx);
}

/* ------------------------------------------------- fully masked rows */

/* A layout row with no block, and a callback that masks one whole query
 * row: O = 0, lse = -inf, zero gradients, no NaN, in every dtype.  Keys seen
 * by no query must get dk = dv = 0. */
static void test_fully_masked_rows(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    int block = 16, nb = 4;
    for (int di = 0; di < 3; di++) {
        /* lower-triangular blocks, block row 2 removed, key block 3 unseen */
        uint8_t blocks[16];
        for (int q = 0; q < nb; q++)
            for (int k = 0; k < nb; k++)
                blocks[q * nb + k] = (uint8_t)(k <= q && q != 2 && k != 3);
        bsa_layout_desc ld = {block, 1, nb, nb, BSA_PRED_CAUSAL, 0, 0};
        bsa_layout_t lay = NULL;
        expect_ok(bsa_layout_create_dense(ctx, &lay, &ld, blocks), "empty block row");
        cm_source src = cm_of_dense(&ld, blocks);
        ac_problem p;
        bsa_attn_desc d;
        expect_ok(ac_problem_init(&p, lay, &src, dtypes[di], 2, 2, 32, AC_BHTD, 0.0f, &d), "init");
        bsa_plan_t plan = NULL;
        expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
        ac_problem_oracle(&p);
        expect_ok(ac_forward(plan, &p, AC_WS_EXACT), "forward");
        expect_ok(ac_backward(plan, &p, AC_WS_EXACT), "backward");
        ac_errors e;
        ac_compare(&p, 1, &e);
        /* 2 batch x 2 heads x one block row of 16 queries */
        assert_int_equal(e.empty_rows, 2 * 2 * block);
        check_errors("empty block row", &p, &e, 1);
        bsa_plan_destroy(plan);
        ac_problem_free(&p);
        bsa_layout_destroy(lay);

        /* a callback that kills query 5 entirely on every block */
        cb_state cs = {tu_next(), 0.8, 5, 0, -1};
        bsa_layout_desc ld2 = {block, 2, nb, nb, BSA_PRED_NONE, 0, 0};
        expect_ok(bsa_layout_create_callback(ctx, &lay, &ld2, NULL, random_callback, &cs),
                  "dead row callback");
        src = cm_of_callback(&ld2, NULL, random_callback, &cs);
        expect_ok(ac_problem_init(&p, lay, &src, dtypes[di], 1, 2, 16, AC_PADDED, 0.0f, &d),
                  "init");
        expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
        ac_problem_oracle(&p);
        expect_ok(ac_forward(plan, &p, AC_WS_EXACT), "forward");
        expect_ok(ac_backward(plan, &p, AC_WS_EXACT), "backward");
        ac_compare(&p, 1, &e);
        assert_true(e.empty_rows >= 2);
        check_errors("callback dead row", &p, &e, 1);
        bsa_plan_destroy(plan);
        ac_problem_free(&p);
        bsa_layout_destroy(lay);
    }
    bsa_context_destroy(ctx);
}

/* -------------------------------- reference, determinism, recompute */

static int same_bytes(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

/* FORCE_REFERENCE and the default implementation both match the oracle
 * and agree with each other to twice the dtype's tolerance. */
static void test_force_reference(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    for (int pat = 0; pat < 4; pat++)
        for (int di = 0; di < 3; di++) {
            bsa_preset ps = make_preset((bsa_pattern)pat, di == 0 ? 32 : 16, 2, di == 2);
            bsa_layout_t lay = NULL;
            expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "preset");
            cm_source src = cm_of_preset(&ps);
            ac_problem p, r;
            bsa_attn_desc d;
            expect_ok(ac_problem_init(&p, lay, &src, dtypes[di], 2, 2, 64, AC_BTHD, 0.0f, &d),
                      "init");
            bsa_plan_t fast = NULL, ref = NULL;
            expect_ok(bsa_plan_create(ctx, &fast, &d, lay), "default plan");
            d.flags = BSA_PLAN_FORCE_REFERENCE;
            expect_ok(bsa_plan_create(ctx, &ref, &d, lay), "reference plan");
            const char *nf = NULL, *nr = NULL;
            expect_ok(bsa_plan_implementation(fast, &nf), "impl name");
            expect_ok(bsa_plan_implementation(ref, &nr), "impl name");
            assert_non_null(nf);
            assert_non_null(nr);
            if (verbose)
                fprintf(stderr, "%s %s: default '%s', reference '%s'\n", pattern_names[pat],
                        tu_dtype_name(dtypes[di]), nf, nr);
            ac_problem_oracle(&p);
            expect_ok(ac_forward(fast, &p, AC_WS_EXACT), "forward default");
            expect_ok(ac_backward(fast, &p, AC_WS_EXACT), "backward default");
            ac_errors e;
            ac_compare(&p, 1, &e);
            check_errors("default impl", &p, &e, 1);

            /* the same inputs through the reference: copy p's buffers */
            r = p;
            r.o = tu_tensor_new(p.dtype, p.o.desc);
            r.dq = tu_tensor_new(p.dtype, p.dq.desc);
            r.dk = tu_tensor_new(p.dtype, p.dk.desc);
            r.dv = tu_tensor_new(p.dtype, p.dv.desc);
            r.lse = tu_alloc(BSA_DTYPE_F32, p.n_lse);
            r.lse_val = tu_xmalloc((size_t)p.n_lse * sizeof(double));
            expect_ok(ac_forward(ref, &r, AC_WS_NULL), "forward reference");
            expect_ok(ac_backward(ref, &r, AC_WS_NULL), "backward reference");
            ac_compare(&r, 1, &e);
            check_errors("reference impl", &r, &e, 1);
            const tu_tol *t = &tu_cpu_tol[p.dtype];
            double dio = tu_rel_l2(r.o.val, p.o.val, p.o.count);
            double diq = tu_rel_l2(r.dq.val, p.dq.val, p.dq.count);
            double dik = tu_rel_l2(r.dk.val, p.dk.val, p.dk.count);
            double div = tu_rel_l2(r.dv.val, p.dv.val, p.dv.count);
            /* each is within t of the oracle, so within 2 t of each other */
            const double to = 2 * t->out, tg = 2 * t->grad;
            if (verbose || !(dio <= to && diq <= tg && dik <= tg && div <= tg))
                fprintf(stderr, "reference vs default %s %s: o %.2e dq %.2e dk %.2e dv %.2e\n",
                        pattern_names[pat], tu_dtype_name(p.dtype), dio, diq, dik, div);
            assert_true(dio <= to && diq <= tg && dik <= tg && div <= tg);
            tu_tensor_free(&r.o);
            tu_tensor_free(&r.dq);
            tu_tensor_free(&r.dk);
            tu_tensor_free(&r.dv);
            free(r.lse);
            free(r.lse_val);
            bsa_plan_destroy(fast);
            bsa_plan_destroy(ref);
            ac_problem_free(&p);
            bsa_layout_destroy(lay);
        }
    bsa_context_destroy(ctx);
}

/* Two runs on the same inputs give identical bits (forward and backward),
 * for both implementations and with and without a workspace. */
static void test_determinism(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    for (int di = 0; di < 3; di++)
        for (int ref = 0; ref < 2; ref++) {
            bsa_preset ps = make_preset(di == 1 ? BSA_PATTERN_FIXED : BSA_PATTERN_ALL, 16, 2, 0);
            bsa_layout_t lay = NULL;
            expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "preset");
            ac_problem p;
            bsa_attn_desc d;
            /* no oracle: bits against bits */
            expect_ok(ac_problem_init(&p, lay, NULL, dtypes[di], 2, 2, 40, AC_PADDED, 0.0f, &d),
                      "init");
            d.flags = ref ? BSA_PLAN_FORCE_REFERENCE : 0;
            bsa_plan_t plan = NULL;
            expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
            size_t es = tu_dtype_size(p.dtype);
            expect_ok(ac_forward(plan, &p, AC_WS_EXACT), "forward 1");
            expect_ok(ac_backward(plan, &p, AC_WS_EXACT), "backward 1");
            void *o1 = tu_xmalloc(p.o.span * es), *dq1 = tu_xmalloc(p.dq.span * es);
            void *dk1 = tu_xmalloc(p.dk.span * es), *dv1 = tu_xmalloc(p.dv.span * es);
            float *l1 = tu_xmalloc((size_t)p.n_lse * 4);
            memcpy(o1, p.o.data, p.o.span * es);
            memcpy(dq1, p.dq.data, p.dq.span * es);
            memcpy(dk1, p.dk.data, p.dk.span * es);
            memcpy(dv1, p.dv.data, p.dv.span * es);
            memcpy(l1, p.lse, (size_t)p.n_lse * 4);
            expect_ok(ac_forward(plan, &p, AC_WS_NULL), "forward 2");
            expect_ok(ac_backward(plan, &p, AC_WS_NULL), "backward 2");
            assert_true(same_bytes(o1, p.o.data, p.o.span * es));
            assert_true(same_bytes(l1, p.lse, (size_t)p.n_lse * 4));
            assert_true(same_bytes(dq1, p.dq.data, p.dq.span * es));
            assert_true(same_bytes(dk1, p.dk.data, p.dk.span * es));
            assert_true(same_bytes(dv1, p.dv.data, p.dv.span * es));
            free(o1);
            free(dq1);
            free(dk1);
            free(dv1);
            free(l1);
            bsa_plan_destroy(plan);
            ac_problem_free(&p);
            bsa_layout_destroy(lay);
        }
    bsa_context_destroy(ctx);
}

/* The backward recomputes P from q, k and the saved lse:
 *  - o/lse from a separate forward call (and a separate plan) give
 *    identical gradients;
 *  - the lse passed in is actually used: shifting it by log(2) halves every
 *    probability, which must show in dv (= P^T dO, exactly halved);
 *  - the workspace holds no T x T buffer (see test_workspace_growth). */
static void test_recompute(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    for (int di = 0; di < 3; di++) {
        bsa_preset ps = make_preset(BSA_PATTERN_LOCAL, 32, 2, 0);
        bsa_layout_t lay = NULL;
        expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "preset");
        ac_problem p;
        bsa_attn_desc d;
        expect_ok(ac_problem_init(&p, lay, NULL, dtypes[di], 1, 2, 64, AC_BTHD, 0.0f, &d), "init");
        bsa_plan_t a = NULL, b = NULL;
        expect_ok(bsa_plan_create(ctx, &a, &d, lay), "plan a");
        expect_ok(bsa_plan_create(ctx, &b, &d, lay), "plan b");
        size_t es = tu_dtype_size(p.dtype);

        expect_ok(ac_forward(a, &p, AC_WS_EXACT), "forward a");
        expect_ok(ac_backward(a, &p, AC_WS_EXACT), "backward a");
        void *dq1 = tu_xmalloc(p.dq.span * es), *dk1 = tu_xmalloc(p.dk.span * es);
        void *dv1 = tu_xmalloc(p.dv.span * es);
        memcpy(dq1, p.dq.data, p.dq.span * es);
        memcpy(dk1, p.dk.data, p.dk.span * es);
        memcpy(dv1, p.dv.data, p.dv.span * es);

        /* a second, independent forward through another plan */
        expect_ok(ac_forward(b, &p, AC_WS_NULL), "forward b");
        expect_ok(ac_backward(b, &p, AC_WS_EXACT), "backward b");
        assert_true(same_bytes(dq1, p.dq.data, p.dq.span * es));
        assert_true(same_bytes(dk1, p.dk.data, p.dk.span * es));
        assert_true(same_bytes(dv1, p.dv.data, p.dv.span * es));

        if (p.dtype == BSA_DTYPE_F32) {
            /* lse + log 2 => P/2 => dv/2 (fp32: exact to rounding) */
            for (int64_t i = 0; i < p.n_lse; i++)
                p.lse[i] += (float)log(2.0);
            bsa_bwd_args ba = {p.q.data,    p.k.data,  p.v.data,  p.o.data, p.lse,
                               p.dout.data, p.dq.data, p.dk.data, p.dv.data};
            tu_tensor_poison(&p.dv);
            expect_ok(bsa_backward(a, &ba, NULL, 0, NULL), "backward shifted lse");
            tu_tensor_read(&p.dv);
            double *half = tu_xmalloc((size_t)p.dv.count * sizeof(double));
            double *orig = tu_xmalloc((size_t)p.dv.count * sizeof(double));
            tu_unpack(p.dtype, &p.dv.desc, dv1, orig);
            for (int64_t i = 0; i < p.dv.count; i++)
                half[i] = 0.5 * orig[i];
            double e = tu_rel_l2(p.dv.val, half, p.dv.count);
            if (!(e < 1e-5))
                fprintf(stderr, "backward with lse + log 2: dv vs dv/2 rel err %.2e\n", e);
            assert_true(e < 1e-5);
            free(half);
            free(orig);
        }

        free(dq1);
        free(dk1);
        free(dv1);
        bsa_plan_destroy(a);
        bsa_plan_destroy(b);
        ac_problem_free(&p);
        bsa_layout_destroy(lay);
    }
    bsa_context_destroy(ctx);
}

static size_t local_workspace(bsa_context_t ctx, int seq)
{
    bsa_preset ps = {BSA_PATTERN_LOCAL, seq, 32, 2, 64, 0, 0, 0};
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "local preset");
    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = BSA_DTYPE_F16;
    d.q = d.k = d.v = d.o = bsa_tensor_bthd(1, seq, 2, 64);
    bsa_plan_t plan = NULL;
    expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
    size_t ws = 0;
    expect_ok(bsa_plan_workspace_size(plan, &ws), "workspace size");
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
    return ws;
}

/* No T x T buffer: with a local pattern (constant work per row) the
 * workspace may grow linearly with T, never quadratically: 8x the length
 * must cost at most 16x the workspace (quadratic would be 64x), and stay
 * below one [batch, heads, T, T] fp32 buffer. */
static void test_workspace_growth(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    size_t small = local_workspace(ctx, 512), big = local_workspace(ctx, 4096);
    size_t txt = (size_t)2 * 4096 * 4096 * sizeof(float);
    if (verbose || !(big <= 16 * small + 4096 && big < txt))
        fprintf(stderr, "workspace: T=512 %zu bytes, T=4096 %zu bytes (T x T buffer %zu)\n", small,
                big, txt);
    assert_true(big <= 16 * small + 4096);
    assert_true(big < txt);
    bsa_context_destroy(ctx);
}

/* One longer sequence, so that tiled implementations run many tiles and
 * every thread gets work; and a single-threaded context on the same
 * problem (a separate schedule) must also match the oracle. */
static void test_longer_and_threads(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    bsa_context_t one = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 1};
    expect_ok(bsa_context_create(&one, &cp), "single-thread context");
    bsa_preset ps = {BSA_PATTERN_ALL, 1024, 64, 2, 0, 0, 0, 0};
    bsa_preset ls = {BSA_PATTERN_LOCAL, 512, 32, 2, 96, 0, 0, 1};
    bsa_layout_t lay = NULL, lay1 = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "all 1024");
    cm_source src = cm_of_preset(&ps), src1 = cm_of_preset(&ls);
    run_case(ctx, lay, &src, "all seq=1024 B=64", BSA_DTYPE_F16, 1, 2, 64, AC_BTHD, 0.0f,
             BSA_PLAN_DEFAULT, AC_WS_EXACT);
    expect_ok(bsa_layout_create_preset(one, &lay1, &ls), "local 512");
    run_case(one, lay1, &src1, "local-bidir seq=512 1 thread", BSA_DTYPE_BF16, 2, 2, 32, AC_BHTD,
             0.0f, BSA_PLAN_DEFAULT, AC_WS_EXACT);
    run_case(one, lay1, &src1, "local-bidir seq=512 1 thread", BSA_DTYPE_F32, 1, 2, 32, AC_PADDED,
             0.0f, BSA_PLAN_FORCE_REFERENCE, AC_WS_NULL);
    bsa_layout_destroy(lay);
    bsa_layout_destroy(lay1);
    bsa_context_destroy(one);
    bsa_context_destroy(ctx);
}

/* Forward without lse (it is optional) writes the same o. */
static void test_forward_without_lse(void **state)
{
    (void)state;
    bsa_context_t ctx = new_ctx();
    bsa_preset ps = make_preset(BSA_PATTERN_STRIDED, 8, 2, 0);
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "preset");
    ac_problem p;
    bsa_attn_desc d;
    expect_ok(ac_problem_init(&p, lay, NULL, BSA_DTYPE_F32, 1, 2, 24, AC_BHTD, 0.0f, &d), "init");
    bsa_plan_t plan = NULL;
    expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "plan");
    expect_ok(ac_forward(plan, &p, AC_WS_EXACT), "forward");
    void *o1 = tu_xmalloc(p.o.span * 4);
    memcpy(o1, p.o.data, p.o.span * 4);
    tu_tensor_poison(&p.o);
    bsa_fwd_args fa = {p.q.data, p.k.data, p.v.data, p.o.data, NULL};
    expect_ok(bsa_forward(plan, &fa, NULL, 0, NULL), "forward without lse");
    assert_true(same_bytes(o1, p.o.data, p.o.span * 4));
    free(o1);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

static int report(void **state)
{
    (void)state;
    static const char *const names[5] = {"o", "lse", "dq", "dk", "dv"};
    fprintf(stderr, "largest relative L2 error against the oracle:\n");
    for (int d = 0; d < 3; d++) {
        fprintf(stderr, "  %-5s", tu_dtype_name((bsa_dtype)d));
        for (int i = 0; i < 5; i++)
            fprintf(stderr, " %s %.2e", names[i], worst[d][i]);
        fprintf(stderr, "\n");
    }
    return 0;
}

int main(void)
{
    tu_seed();
    verbose = getenv("BSA_TEST_VERBOSE") && atoi(getenv("BSA_TEST_VERBOSE")) > 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns),           cmocka_unit_test(test_head_dims),
        cmocka_unit_test(test_cross_attention),    cmocka_unit_test(test_random_layouts),
        cmocka_unit_test(test_random_callbacks),   cmocka_unit_test(test_fully_masked_rows),
        cmocka_unit_test(test_force_reference),    cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_recompute),          cmocka_unit_test(test_workspace_growth),
        cmocka_unit_test(test_longer_and_threads), cmocka_unit_test(test_forward_without_lse),
    };
    return cmocka_run_group_tests(tests, NULL, report);
}
