/*
 * Every bad input returns its specific status, bsa_last_error() names the
 * argument (or the limit), and the outputs are untouched: out-parameters
 * keep a sentinel, output tensors keep their poison bytes.
 */
#define _POSIX_C_SOURCE 200809L /* setenv, strdup */
#include "attn_check.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static int ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* needle occurs in hay as a whole word (case-insensitive): "k" matches
 * "args->k is NULL" or "k.dims[0]" but not "block". */
static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n && (h == hay || !ident_char(h[-1])) && !ident_char(h[n]))
            return 1;
    }
    return n == 0;
}

/* got must be want, and the detail message must mention keyword. */
static void expect_status(bsa_status got, bsa_status want, const char *call, const char *keyword)
{
    const char *msg = bsa_last_error();
    assert_non_null(msg);
    int ok = got == want && contains_nocase(msg, keyword);
    if (!ok)
        fprintf(stderr, "%s: expected %s mentioning '%s', got %s: \"%s\"\n", call,
                bsa_status_string(want), keyword, bsa_status_string(got), msg);
    assert_int_equal(got, want);
    assert_true(contains_nocase(msg, keyword));
}

static void expect_ok(bsa_status st, const char *what)
{
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s: %s\n", what, bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
}

/* A recognisable non-NULL handle value that no call may overwrite on failure. */
#define SENTINEL ((void *)(uintptr_t)0x5e57)

static bsa_context_t cpu_ctx(void)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    expect_ok(bsa_context_create(&ctx, &cp), "context");
    return ctx;
}

/* A valid small problem: layout (all, causal, B=16, T=64, 2 heads shared),
 * desc for bthd tensors, plan and buffers. */
typedef struct fixture {
    bsa_context_t ctx;
    bsa_layout_t lay;
    bsa_attn_desc desc;
    bsa_plan_t plan;
    ac_problem p;
    float *w;
    int64_t w_elems;
} fixture;

static void fixture_init(fixture *f, bsa_dtype dt)
{
    memset(f, 0, sizeof *f);
    f->ctx = cpu_ctx();
    bsa_preset ps = {BSA_PATTERN_ALL, 64, 16, 2, 0, 0, 0, 0};
    expect_ok(bsa_layout_create_preset(f->ctx, &f->lay, &ps), "preset");
    cm_source masks = cm_of_preset(&ps);
    expect_ok(ac_problem_init(&f->p, f->lay, &masks, dt, 2, 2, 32, AC_BTHD, 0.0f, &f->desc),
              "init");
    expect_ok(bsa_plan_create(f->ctx, &f->plan, &f->desc, f->lay), "plan");
    expect_ok(bsa_sparse_weight_elems(f->plan, &f->w_elems), "weight elems");
    f->w = tu_alloc(BSA_DTYPE_F32, f->w_elems);
}

static void fixture_free(fixture *f)
{
    free(f->w);
    bsa_plan_destroy(f->plan);
    ac_problem_free(&f->p);
    bsa_layout_destroy(f->lay);
    bsa_context_destroy(f->ctx);
}

/* Copy of a buffer to compare bytes after a failing call. */
typedef struct snap {
    const void *at;
    void *copy;
    size_t bytes;
} snap;

static snap take(const void *at, size_t bytes)
{
    snap s = {at, tu_xmalloc(bytes), bytes};
    memcpy(s.copy, at, bytes);
    return s;
}

static void expect_untouched(snap *s, const char *what)
{
    int same = memcmp(s->at, s->copy, s->bytes) == 0;
    if (!same)
        fprintf(stderr, "%s: output changed by a failing call\n", what);
    assert_true(same);
    free(s->copy);
    s->copy = NULL;
}

static size_t tbytes(const tu_tensor *t)
{
    return (size_t)t->span * tu_dtype_size(t->dtype);
}

/* ------------------------------------------------------------ status strings */

static void test_status_strings(void **state)
{
    (void)state;
    static const struct {
        bsa_status s;
        const char *name;
    } known[] = {
        {BSA_SUCCESS, "BSA_SUCCESS"},
        {BSA_ERROR_NULL_POINTER, "BSA_ERROR_NULL_POINTER"},
        {BSA_ERROR_INVALID_ARGUMENT, "BSA_ERROR_INVALID_ARGUMENT"},
        {BSA_ERROR_INVALID_SHAPE, "BSA_ERROR_INVALID_SHAPE"},
        {BSA_ERROR_SHAPE_MISMATCH, "BSA_ERROR_SHAPE_MISMATCH"},
        {BSA_ERROR_UNSUPPORTED, "BSA_ERROR_UNSUPPORTED"},
        {BSA_ERROR_INVALID_DTYPE, "BSA_ERROR_INVALID_DTYPE"},
        {BSA_ERROR_OVERFLOW, "BSA_ERROR_OVERFLOW"},
        {BSA_ERROR_OUT_OF_MEMORY, "BSA_ERROR_OUT_OF_MEMORY"},
        {BSA_ERROR_BACKEND_UNAVAILABLE, "BSA_ERROR_BACKEND_UNAVAILABLE"},
        {BSA_ERROR_NO_DEVICE, "BSA_ERROR_NO_DEVICE"},
        {BSA_ERROR_DEVICE, "BSA_ERROR_DEVICE"},
        {BSA_ERROR_WORKSPACE, "BSA_ERROR_WORKSPACE"},
        {BSA_ERROR_CONTEXT_MISMATCH, "BSA_ERROR_CONTEXT_MISMATCH"},
        {BSA_ERROR_CALLBACK, "BSA_ERROR_CALLBACK"},
        {BSA_ERROR_INTERNAL, "BSA_ERROR_INTERNAL"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        const char *s = bsa_status_string(known[i].s);
        assert_non_null(s);
        assert_string_equal(s, known[i].name);
    }
    /* out of range, including negative and extreme values: never NULL,
     * never the name of a real status */
    int odd[] = {-1, -100, BSA_ERROR_INTERNAL + 1, BSA_ERROR_INTERNAL + 1000, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *s = bsa_status_string((bsa_status)odd[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        for (size_t j = 0; j < sizeof known / sizeof known[0]; j++)
            assert_string_not_equal(s, known[j].name);
    }
    for (int i = -1000; i < 1000; i++)
        assert_non_null(bsa_status_string((bsa_status)i));
    assert_non_null(bsa_last_error());
    assert_non_null(bsa_backend_name((bsa_backend)77));
}

/* ------------------------------------------------------------ contexts */

static void test_context_errors(void **state)
{
    (void)state;
    expect_status(bsa_context_create(NULL, NULL), BSA_ERROR_NULL_POINTER, "context_create", "ctx");
    bsa_context_t ctx = SENTINEL;
    bsa_context_params bad = {(bsa_backend)9, 0, 0};
    expect_status(bsa_context_create(&ctx, &bad), BSA_ERROR_INVALID_ARGUMENT,
                  "context_create backend 9", "backend");
    assert_ptr_equal(ctx, SENTINEL);
    bsa_context_params dev = {BSA_BACKEND_CPU, -1, 0};
    expect_status(bsa_context_create(&ctx, &dev), BSA_ERROR_INVALID_ARGUMENT,
                  "context_create device -1", "device");
    assert_ptr_equal(ctx, SENTINEL);
    bsa_context_params thr = {BSA_BACKEND_CPU, 0, -2};
    expect_status(bsa_context_create(&ctx, &thr), BSA_ERROR_INVALID_ARGUMENT,
                  "context_create threads -2", "num_threads");
    assert_ptr_equal(ctx, SENTINEL);

    /* BSA_BACKEND overrides AUTO; an unknown name is an error naming it */
    const char *saved = getenv("BSA_BACKEND");
    char *copy = saved ? strdup(saved) : NULL;
    setenv("BSA_BACKEND", "tpu", 1);
    bsa_context_params autop = {BSA_BACKEND_AUTO, 0, 0};
    expect_status(bsa_context_create(&ctx, &autop), BSA_ERROR_INVALID_ARGUMENT,
                  "context_create BSA_BACKEND=tpu", "BSA_BACKEND");
    assert_ptr_equal(ctx, SENTINEL);
    if (copy)
        setenv("BSA_BACKEND", copy, 1);
    else
        unsetenv("BSA_BACKEND");
    free(copy);

    /* backends not compiled into this build */
    bsa_backend gpus[] = {BSA_BACKEND_HIP, BSA_BACKEND_CUDA};
    int tested = 0;
    for (int i = 0; i < 2; i++) {
        if (bsa_backend_compiled(gpus[i]))
            continue;
        bsa_context_params gp = {gpus[i], 0, 0};
        expect_status(bsa_context_create(&ctx, &gp), BSA_ERROR_BACKEND_UNAVAILABLE,
                      "context_create uncompiled backend", bsa_backend_name(gpus[i]));
        assert_ptr_equal(ctx, SENTINEL);
        tested++;
    }
    if (!tested)
        fprintf(stderr, "note: every backend is compiled; BACKEND_UNAVAILABLE not exercised\n");
    assert_true(bsa_backend_compiled(BSA_BACKEND_CPU));

    bsa_backend be = (bsa_backend)42;
    expect_status(bsa_context_backend(NULL, &be), BSA_ERROR_NULL_POINTER, "context_backend", "ctx");
    assert_int_equal(be, 42);
    bsa_context_t c = cpu_ctx();
    expect_status(bsa_context_backend(c, NULL), BSA_ERROR_NULL_POINTER, "context_backend",
                  "backend");
    expect_ok(bsa_context_backend(c, &be), "context_backend");
    assert_int_equal(be, BSA_BACKEND_CPU);
    /* destroy functions accept NULL like free() */
    assert_int_equal(bsa_context_destroy(NULL), BSA_SUCCESS);
    assert_int_equal(bsa_layout_destroy(NULL), BSA_SUCCESS);
    assert_int_equal(bsa_plan_destroy(NULL), BSA_SUCCESS);
    bsa_context_destroy(c);
}

/* ------------------------------------------------------------ layouts */

static int ok_callback(void *user, int head, int qb, int kb, int bi, int block, uint8_t *mask)
{
    (void)user;
    (void)head;
    (void)qb;
    (void)kb;
    (void)bi;
    memset(mask, 1, (size_t)block * block);
    return 0;
}

static int failing_callback(void *user, int head, int qb, int kb, int bi, int block, uint8_t *mask)
{
    int *calls = user;
    (void)head;
    (void)qb;
    (void)kb;
    (void)bi;
    memset(mask, 1, (size_t)block * block);
    return ++*calls == 3; /* fail on the third block */
}

static void test_layout_errors(void **state)
{
    (void)state;
    bsa_context_t ctx = cpu_ctx();
    bsa_layout_t lay = SENTINEL;
    uint8_t blocks[4 * 4];
    memset(blocks, 1, sizeof blocks);
    bsa_layout_desc d = {16, 1, 4, 4, BSA_PRED_NONE, 0, 0};

    /* NULL pointers */
    expect_status(bsa_layout_create_dense(NULL, &lay, &d, blocks), BSA_ERROR_NULL_POINTER,
                  "create_dense", "ctx");
    expect_status(bsa_layout_create_dense(ctx, NULL, &d, blocks), BSA_ERROR_NULL_POINTER,
                  "create_dense", "layout");
    expect_status(bsa_layout_create_dense(ctx, &lay, NULL, blocks), BSA_ERROR_NULL_POINTER,
                  "create_dense", "desc");
    expect_status(bsa_layout_create_dense(ctx, &lay, &d, NULL), BSA_ERROR_NULL_POINTER,
                  "create_dense", "blocks");
    expect_status(bsa_layout_create_callback(NULL, &lay, &d, NULL, ok_callback, NULL),
                  BSA_ERROR_NULL_POINTER, "create_callback", "ctx");
    expect_status(bsa_layout_create_callback(ctx, NULL, &d, NULL, ok_callback, NULL),
                  BSA_ERROR_NULL_POINTER, "create_callback", "layout");
    expect_status(bsa_layout_create_callback(ctx, &lay, NULL, NULL, ok_callback, NULL),
                  BSA_ERROR_NULL_POINTER, "create_callback", "desc");
    expect_status(bsa_layout_create_callback(ctx, &lay, &d, NULL, NULL, NULL),
                  BSA_ERROR_NULL_POINTER, "create_callback", "callback");
    bsa_preset ps = {BSA_PATTERN_LOCAL, 64, 16, 2, 32, 0, 0, 0};
    expect_status(bsa_layout_create_preset(NULL, &lay, &ps), BSA_ERROR_NULL_POINTER,
                  "create_preset", "ctx");
    expect_status(bsa_layout_create_preset(ctx, NULL, &ps), BSA_ERROR_NULL_POINTER, "create_preset",
                  "layout");
    expect_status(bsa_layout_create_preset(ctx, &lay, NULL), BSA_ERROR_NULL_POINTER,
                  "create_preset", "preset");
    assert_ptr_equal(lay, SENTINEL);

    /* unsupported block sizes, in every creation path */
    int bad_blocks[] = {24, 256, 4};
    for (size_t i = 0; i < sizeof bad_blocks / sizeof bad_blocks[0]; i++) {
        bsa_layout_desc bd = d;
        bd.block = bad_blocks[i];
        expect_status(bsa_layout_create_dense(ctx, &lay, &bd, blocks), BSA_ERROR_UNSUPPORTED,
                      "create_dense block", "block");
        expect_status(bsa_layout_create_callback(ctx, &lay, &bd, NULL, ok_callback, NULL),
                      BSA_ERROR_UNSUPPORTED, "create_callback block", "block");
        bsa_preset bp = ps;
        bp.block = bad_blocks[i];
        bp.seq = 768; /* a multiple of 24 and 256 */
        expect_status(bsa_layout_create_preset(ctx, &lay, &bp), BSA_ERROR_UNSUPPORTED,
                      "create_preset block", "block");
    }
    assert_ptr_equal(lay, SENTINEL);
    /* block 0 must not divide by zero: unsupported or invalid, never a crash */
    bsa_layout_desc zd = d;
    zd.block = 0;
    bsa_status zst = bsa_layout_create_dense(ctx, &lay, &zd, blocks);
    assert_true(zst == BSA_ERROR_UNSUPPORTED || zst == BSA_ERROR_INVALID_ARGUMENT);
    bsa_preset zp = ps;
    zp.block = 0;
    zst = bsa_layout_create_preset(ctx, &lay, &zp);
    assert_true(zst == BSA_ERROR_UNSUPPORTED || zst == BSA_ERROR_INVALID_ARGUMENT);
    assert_ptr_equal(lay, SENTINEL);

    /* seq not a multiple of the block */
    bsa_preset np = ps;
    np.seq = 100;
    expect_status(bsa_layout_create_preset(ctx, &lay, &np), BSA_ERROR_INVALID_SHAPE,
                  "preset seq 100 block 16", "seq");
    /* strided: seq / L must be whole blocks */
    bsa_preset sp = {BSA_PATTERN_STRIDED, 64, 16, 1, 8, 0, 0, 0};
    expect_status(bsa_layout_create_preset(ctx, &lay, &sp), BSA_ERROR_INVALID_SHAPE,
                  "strided seq/ctx not whole blocks", "ctx");
    /* fixed: heads % num_verts, num_verts <= S / vertsize */
    bsa_preset fp = {BSA_PATTERN_FIXED, 128, 16, 3, 64, 2, 1, 0};
    expect_status(bsa_layout_create_preset(ctx, &lay, &fp), BSA_ERROR_INVALID_ARGUMENT,
                  "fixed heads % num_verts", "num_verts");
    bsa_preset fp2 = {BSA_PATTERN_FIXED, 128, 16, 4, 32, 4, 1, 0};
    expect_status(bsa_layout_create_preset(ctx, &lay, &fp2), BSA_ERROR_INVALID_ARGUMENT,
                  "fixed num_verts > S", "num_verts");
    bsa_preset pp = ps;
    pp.pattern = (bsa_pattern)17;
    expect_status(bsa_layout_create_preset(ctx, &lay, &pp), BSA_ERROR_INVALID_ARGUMENT,
                  "preset pattern 17", "pattern");
    bsa_preset lp = ps;
    lp.ctx = 0;
    expect_status(bsa_layout_create_preset(ctx, &lay, &lp), BSA_ERROR_INVALID_ARGUMENT,
                  "local ctx 0", "ctx");
    bsa_preset hp = ps;
    hp.heads = 0;
    expect_status(bsa_layout_create_preset(ctx, &lay, &hp), BSA_ERROR_INVALID_ARGUMENT,
                  "preset heads 0", "heads");

    /* desc values */
    bsa_layout_desc qd = d;
    qd.q_blocks = 0;
    expect_status(bsa_layout_create_dense(ctx, &lay, &qd, blocks), BSA_ERROR_INVALID_ARGUMENT,
                  "q_blocks 0", "q_blocks");
    bsa_layout_desc hd = d;
    hd.heads = -1;
    expect_status(bsa_layout_create_dense(ctx, &lay, &hd, blocks), BSA_ERROR_INVALID_ARGUMENT,
                  "heads -1", "heads");
    bsa_layout_desc pd = d;
    pd.predicates = 0x80;
    expect_status(bsa_layout_create_dense(ctx, &lay, &pd, blocks), BSA_ERROR_INVALID_ARGUMENT,
                  "predicates 0x80", "predicates");
    bsa_layout_desc wd = d;
    wd.predicates = BSA_PRED_WINDOW;
    wd.window = 0;
    expect_status(bsa_layout_create_dense(ctx, &lay, &wd, blocks), BSA_ERROR_INVALID_ARGUMENT,
                  "window 0", "window");
    bsa_layout_desc xd = d;
    xd.predicates = BSA_PRED_PREFIX;
    xd.prefix = -3;
    expect_status(bsa_layout_create_dense(ctx, &lay, &xd, blocks), BSA_ERROR_INVALID_ARGUMENT,
                  "prefix -3", "prefix");

    /* a callback that reports failure */
    int calls = 0;
    expect_status(bsa_layout_create_callback(ctx, &lay, &d, NULL, failing_callback, &calls),
                  BSA_ERROR_CALLBACK, "failing callback", "callback");
    assert_int_equal(calls, 3);
    assert_ptr_equal(lay, SENTINEL);

    /* queries on a valid layout */
    bsa_layout_t good = NULL;
    expect_ok(bsa_layout_create_dense(ctx, &good, &d, blocks), "dense");
    bsa_layout_info info;
    memset(&info, 0x5a, sizeof info);
    snap si = take(&info, sizeof info);
    expect_status(bsa_layout_get_info(NULL, &info), BSA_ERROR_NULL_POINTER, "get_info", "layout");
    expect_untouched(&si, "layout info");
    expect_status(bsa_layout_get_info(good, NULL), BSA_ERROR_NULL_POINTER, "get_info", "info");
    int64_t count = -7;
    expect_status(bsa_layout_head_blocks(NULL, 0, &count), BSA_ERROR_NULL_POINTER, "head_blocks",
                  "layout");
    expect_status(bsa_layout_head_blocks(good, 0, NULL), BSA_ERROR_NULL_POINTER, "head_blocks",
                  "count");
    expect_status(bsa_layout_head_blocks(good, 1, &count), BSA_ERROR_INVALID_ARGUMENT,
                  "head_blocks head 1 of 1", "head");
    expect_status(bsa_layout_head_blocks(good, -1, &count), BSA_ERROR_INVALID_ARGUMENT,
                  "head_blocks head -1", "head");
    assert_int_equal(count, -7);
    uint8_t *mask = tu_xmalloc(64 * 64);
    memset(mask, 0xA5, 64 * 64);
    snap sm = take(mask, 64 * 64);
    expect_status(bsa_layout_element_mask(NULL, 0, mask), BSA_ERROR_NULL_POINTER, "element_mask",
                  "layout");
    expect_status(bsa_layout_element_mask(good, 0, NULL), BSA_ERROR_NULL_POINTER, "element_mask",
                  "mask");
    expect_status(bsa_layout_element_mask(good, 2, mask), BSA_ERROR_INVALID_ARGUMENT,
                  "element_mask head 2", "head");
    expect_untouched(&sm, "element mask");
    free(mask);
    bsa_layout_destroy(good);
    bsa_context_destroy(ctx);
}

/* ------------------------------------------------------------ plans */

/* Plan creation must fail with want and leave *plan alone. */
static void plan_fails(fixture *f, const bsa_attn_desc *d, bsa_layout_t lay, bsa_status want,
                       const char *what, const char *keyword)
{
    bsa_plan_t plan = SENTINEL;
    expect_status(bsa_plan_create(f->ctx, &plan, d, lay), want, what, keyword);
    assert_ptr_equal(plan, SENTINEL);
}

static void test_plan_errors(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_F16);
    bsa_attn_desc d;
    bsa_plan_t plan = SENTINEL;

    expect_status(bsa_plan_create(NULL, &plan, &f.desc, f.lay), BSA_ERROR_NULL_POINTER,
                  "plan_create", "ctx");
    expect_status(bsa_plan_create(f.ctx, NULL, &f.desc, f.lay), BSA_ERROR_NULL_POINTER,
                  "plan_create", "plan");
    expect_status(bsa_plan_create(f.ctx, &plan, NULL, f.lay), BSA_ERROR_NULL_POINTER, "plan_create",
                  "desc");
    expect_status(bsa_plan_create(f.ctx, &plan, &f.desc, NULL), BSA_ERROR_NULL_POINTER,
                  "plan_create", "layout");
    assert_ptr_equal(plan, SENTINEL);

    /* dtype */
    int bad_dtypes[] = {3, -1, 100};
    for (int i = 0; i < 3; i++) {
        d = f.desc;
        d.dtype = (bsa_dtype)bad_dtypes[i];
        plan_fails(&f, &d, f.lay, BSA_ERROR_INVALID_DTYPE, "dtype", "dtype");
    }

    /* head dim: not a multiple of 8, or above 256 */
    int bad_dims[] = {12, 4, 260, 264, 512};
    for (int i = 0; i < 5; i++) {
        d = f.desc;
        d.q = d.o = bsa_tensor_bthd(2, 64, 2, bad_dims[i]);
        d.k = d.v = bsa_tensor_bthd(2, 64, 2, bad_dims[i]);
        plan_fails(&f, &d, f.lay, BSA_ERROR_UNSUPPORTED, "head dim", "dim");
    }

    /* dim stride != 1 */
    d = f.desc;
    d.v.strides[3] = 2;
    plan_fails(&f, &d, f.lay, BSA_ERROR_UNSUPPORTED, "v dim stride 2", "v.strides");
    d = f.desc;
    d.q.strides[3] = 0;
    plan_fails(&f, &d, f.lay, BSA_ERROR_UNSUPPORTED, "q dim stride 0", "q.strides");
    /* negative strides are not supported */
    d = f.desc;
    d.k.strides[2] = -d.k.strides[2];
    plan_fails(&f, &d, f.lay, BSA_ERROR_UNSUPPORTED, "negative k time stride", "k.strides");

    /* dims < 1 */
    d = f.desc;
    d.o.dims[0] = 0;
    plan_fails(&f, &d, f.lay, BSA_ERROR_INVALID_ARGUMENT, "o batch 0", "o.dims");
    d = f.desc;
    d.q.dims[3] = -8;
    plan_fails(&f, &d, f.lay, BSA_ERROR_INVALID_ARGUMENT, "q dim -8", "q.dims");

    /* shape mismatches among q, k, v, o */
    struct {
        int tensor, dim;
        int64_t value;
        const char *what, *keyword;
    } mism[] = {
        {1, 0, 3, "k batch", "k.dims"}, {2, 1, 1, "v heads", "v.dims"},
        {2, 2, 48, "v time", "v.dims"}, {3, 2, 48, "o time", "o.dims"},
        {1, 3, 16, "k dim", "k.dims"},  {3, 3, 64, "o dim", "o.dims"},
        {3, 1, 1, "o heads", "o.dims"}, {3, 0, 1, "o batch", "o.dims"},
    };
    for (size_t i = 0; i < sizeof mism / sizeof mism[0]; i++) {
        d = f.desc;
        bsa_tensor_desc *t[4] = {&d.q, &d.k, &d.v, &d.o};
        t[mism[i].tensor]->dims[mism[i].dim] = mism[i].value;
        plan_fails(&f, &d, f.lay, BSA_ERROR_SHAPE_MISMATCH, mism[i].what, mism[i].keyword);
    }

    /* layout heads not 1 or H */
    bsa_layout_t lay3 = NULL;
    uint8_t blocks3[3 * 4 * 4];
    memset(blocks3, 1, sizeof blocks3);
    bsa_layout_desc ld3 = {16, 3, 4, 4, BSA_PRED_NONE, 0, 0};
    expect_ok(bsa_layout_create_dense(f.ctx, &lay3, &ld3, blocks3), "3-head layout");
    plan_fails(&f, &f.desc, lay3, BSA_ERROR_SHAPE_MISMATCH, "layout heads 3 vs 2", "heads");
    bsa_layout_destroy(lay3);

    /* layout lengths not matching the tensors */
    bsa_layout_t lay_q = NULL, lay_k = NULL;
    bsa_layout_desc lq = {16, 1, 5, 4, BSA_PRED_NONE, 0, 0};
    bsa_layout_desc lk = {16, 1, 4, 3, BSA_PRED_NONE, 0, 0};
    uint8_t ones[5 * 4];
    memset(ones, 1, sizeof ones);
    expect_ok(bsa_layout_create_dense(f.ctx, &lay_q, &lq, ones), "layout 80x64");
    expect_ok(bsa_layout_create_dense(f.ctx, &lay_k, &lk, ones), "layout 64x48");
    plan_fails(&f, &f.desc, lay_q, BSA_ERROR_SHAPE_MISMATCH, "layout seq_q 80 vs 64", "layout");
    plan_fails(&f, &f.desc, lay_k, BSA_ERROR_SHAPE_MISMATCH, "layout seq_k 48 vs 64", "layout");
    bsa_layout_destroy(lay_q);
    bsa_layout_destroy(lay_k);

    /* a layout from another context */
    bsa_context_t other = cpu_ctx();
    bsa_layout_t foreign = NULL;
    bsa_preset ps = {BSA_PATTERN_ALL, 64, 16, 2, 0, 0, 0, 0};
    expect_ok(bsa_layout_create_preset(other, &foreign, &ps), "foreign layout");
    plan_fails(&f, &f.desc, foreign, BSA_ERROR_CONTEXT_MISMATCH, "foreign layout", "context");
    bsa_layout_destroy(foreign);
    bsa_context_destroy(other);

    /* scale and flags */
    d = f.desc;
    d.scale = NAN;
    plan_fails(&f, &d, f.lay, BSA_ERROR_INVALID_ARGUMENT, "scale NaN", "scale");
    d.scale = INFINITY;
    plan_fails(&f, &d, f.lay, BSA_ERROR_INVALID_ARGUMENT, "scale inf", "scale");
    d = f.desc;
    d.flags = 0x100;
    plan_fails(&f, &d, f.lay, BSA_ERROR_INVALID_ARGUMENT, "flags 0x100", "flags");

    /* int64 overflow: spans and element counts beyond 2^63 */
    d = f.desc;
    d.q = d.o = bsa_tensor_bthd((int64_t)1 << 50, 64, 1024, 32);
    d.k = d.v = d.q;
    plan_fails(&f, &d, f.lay, BSA_ERROR_OVERFLOW, "q span 2^50 * 2^21", "desc->q");
    d = f.desc;
    d.q.dims[0] = d.k.dims[0] = d.v.dims[0] = d.o.dims[0] = 4;
    d.k.strides[0] = INT64_MAX / 2;
    plan_fails(&f, &d, f.lay, BSA_ERROR_OVERFLOW, "k batch stride 2^62", "desc->k");
    /* overlapping unit strides keep the span small while the element
     * count (2^40 * 2^20 * 64 * 32 = 2^71) overflows */
    d = f.desc;
    {
        bsa_tensor_desc *t[4] = {&d.q, &d.k, &d.v, &d.o};
        for (int i = 0; i < 4; i++) {
            t[i]->dims[0] = (int64_t)1 << 40;
            t[i]->dims[1] = (int64_t)1 << 20;
            t[i]->strides[0] = t[i]->strides[1] = 1;
        }
    }
    plan_fails(&f, &d, f.lay, BSA_ERROR_OVERFLOW, "2^71 elements", "desc->q");

    /* plan queries */
    size_t ws = 12345;
    const char *name = SENTINEL;
    expect_status(bsa_plan_workspace_size(NULL, &ws), BSA_ERROR_NULL_POINTER, "workspace_size",
                  "plan");
    expect_status(bsa_plan_workspace_size(f.plan, NULL), BSA_ERROR_NULL_POINTER, "workspace_size",
                  "bytes");
    assert_int_equal(ws, 12345);
    expect_status(bsa_plan_implementation(NULL, &name), BSA_ERROR_NULL_POINTER, "implementation",
                  "plan");
    expect_status(bsa_plan_implementation(f.plan, NULL), BSA_ERROR_NULL_POINTER, "implementation",
                  "name");
    assert_ptr_equal(name, SENTINEL);
    int64_t elems = -3;
    expect_status(bsa_sparse_weight_elems(NULL, &elems), BSA_ERROR_NULL_POINTER, "weight_elems",
                  "plan");
    expect_status(bsa_sparse_weight_elems(f.plan, NULL), BSA_ERROR_NULL_POINTER, "weight_elems",
                  "elems");
    assert_int_equal(elems, -3);
    fixture_free(&f);
}

/* ------------------------------------------------------------ execution */

static void test_forward_errors(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_F32);
    ac_problem *p = &f.p;
    tu_tensor_poison(&p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    snap so = take(p->o.data, tbytes(&p->o)), sl = take(p->lse, (size_t)p->n_lse * 4);
    bsa_fwd_args a = {p->q.data, p->k.data, p->v.data, p->o.data, p->lse};

    expect_status(bsa_forward(NULL, &a, NULL, 0, NULL), BSA_ERROR_NULL_POINTER, "forward", "plan");
    expect_status(bsa_forward(f.plan, NULL, NULL, 0, NULL), BSA_ERROR_NULL_POINTER, "forward",
                  "args");
    const char *names[] = {"q", "k", "v", "o"};
    for (int i = 0; i < 4; i++) {
        bsa_fwd_args b = a;
        const void **slot[] = {&b.q, &b.k, &b.v, (const void **)&b.o};
        *slot[i] = NULL;
        char what[32];
        snprintf(what, sizeof what, "forward args->%s", names[i]);
        expect_status(bsa_forward(f.plan, &b, NULL, 0, NULL), BSA_ERROR_NULL_POINTER, what,
                      names[i]);
    }

    /* workspace given but too small */
    size_t need = 0;
    expect_ok(bsa_plan_workspace_size(f.plan, &need), "workspace size");
    if (need > 0) {
        void *ws = tu_xmalloc(need);
        expect_status(bsa_forward(f.plan, &a, ws, need - 1, NULL), BSA_ERROR_WORKSPACE,
                      "forward workspace - 1", "workspace_bytes");
        expect_status(bsa_forward(f.plan, &a, ws, 0, NULL), BSA_ERROR_WORKSPACE,
                      "forward workspace 0 bytes", "workspace_bytes");
        free(ws);
    } else {
        fprintf(stderr, "note: plan needs no workspace; WORKSPACE not exercised on forward\n");
    }
    expect_untouched(&so, "o");
    expect_untouched(&sl, "lse");
    fixture_free(&f);
}

static void test_backward_errors(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_BF16);
    ac_problem *p = &f.p;
    expect_ok(ac_forward(f.plan, p, AC_WS_NULL), "forward");
    tu_tensor_poison(&p->dq);
    tu_tensor_poison(&p->dk);
    tu_tensor_poison(&p->dv);
    snap sq = take(p->dq.data, tbytes(&p->dq)), sk = take(p->dk.data, tbytes(&p->dk)),
         sv = take(p->dv.data, tbytes(&p->dv));
    bsa_bwd_args a = {p->q.data,    p->k.data,  p->v.data,  p->o.data, p->lse,
                      p->dout.data, p->dq.data, p->dk.data, p->dv.data};
    expect_status(bsa_backward(NULL, &a, NULL, 0, NULL), BSA_ERROR_NULL_POINTER, "backward",
                  "plan");
    expect_status(bsa_backward(f.plan, NULL, NULL, 0, NULL), BSA_ERROR_NULL_POINTER, "backward",
                  "args");
    const char *names[] = {"q", "k", "v", "o", "lse", "dout", "dq", "dk", "dv"};
    for (int i = 0; i < 9; i++) {
        bsa_bwd_args b = a;
        const void **slot[] = {&b.q,
                               &b.k,
                               &b.v,
                               &b.o,
                               (const void **)&b.lse,
                               &b.dout,
                               (const void **)&b.dq,
                               (const void **)&b.dk,
                               (const void **)&b.dv};
        *slot[i] = NULL;
        char what[32];
        snprintf(what, sizeof what, "backward args->%s", names[i]);
        expect_status(bsa_backward(f.plan, &b, NULL, 0, NULL), BSA_ERROR_NULL_POINTER, what,
                      names[i]);
    }
    size_t need = 0;
    expect_ok(bsa_plan_workspace_size(f.plan, &need), "workspace size");
    if (need > 0) {
        void *ws = tu_xmalloc(need);
        expect_status(bsa_backward(f.plan, &a, ws, need / 2, NULL), BSA_ERROR_WORKSPACE,
                      "backward workspace / 2", "workspace_bytes");
        free(ws);
    } else {
        fprintf(stderr, "note: plan needs no workspace; WORKSPACE not exercised on backward\n");
    }
    expect_untouched(&sq, "dq");
    expect_untouched(&sk, "dk");
    expect_untouched(&sv, "dv");
    fixture_free(&f);
}

static void test_unfused_errors(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_F16);
    ac_problem *p = &f.p;
    int64_t n = f.w_elems;
    float *w = tu_alloc(BSA_DTYPE_F32, n), *w2 = tu_alloc(BSA_DTYPE_F32, n);
    for (int64_t i = 0; i < n; i++)
        w2[i] = (float)tu_uniform(-1.0, 1.0);
    snap sw = take(w, (size_t)n * 4);
    tu_tensor_poison(&p->o);
    snap so = take(p->o.data, tbytes(&p->o));

    /* nt */
    expect_status(bsa_sparse_nt(NULL, p->q.data, p->k.data, w, NULL), BSA_ERROR_NULL_POINTER, "nt",
                  "plan");
    expect_status(bsa_sparse_nt(f.plan, NULL, p->k.data, w, NULL), BSA_ERROR_NULL_POINTER, "nt",
                  "a");
    expect_status(bsa_sparse_nt(f.plan, p->q.data, NULL, w, NULL), BSA_ERROR_NULL_POINTER, "nt",
                  "b");
    expect_status(bsa_sparse_nt(f.plan, p->q.data, p->k.data, NULL, NULL), BSA_ERROR_NULL_POINTER,
                  "nt", "w");
    /* softmax */
    expect_status(bsa_sparse_softmax(NULL, w2, w, 1.0f, 1, NULL), BSA_ERROR_NULL_POINTER, "softmax",
                  "plan");
    expect_status(bsa_sparse_softmax(f.plan, NULL, w, 1.0f, 1, NULL), BSA_ERROR_NULL_POINTER,
                  "softmax", "w");
    expect_status(bsa_sparse_softmax(f.plan, w2, NULL, 1.0f, 1, NULL), BSA_ERROR_NULL_POINTER,
                  "softmax", "p");
    expect_status(bsa_sparse_softmax(f.plan, w2, w, NAN, 1, NULL), BSA_ERROR_INVALID_ARGUMENT,
                  "softmax scale NaN", "scale");
    /* softmax backward */
    expect_status(bsa_sparse_softmax_backward(NULL, w2, w2, w, 1.0f, NULL), BSA_ERROR_NULL_POINTER,
                  "softmax_backward", "plan");
    expect_status(bsa_sparse_softmax_backward(f.plan, NULL, w2, w, 1.0f, NULL),
                  BSA_ERROR_NULL_POINTER, "softmax_backward", "p");
    expect_status(bsa_sparse_softmax_backward(f.plan, w2, NULL, w, 1.0f, NULL),
                  BSA_ERROR_NULL_POINTER, "softmax_backward", "dp");
    expect_status(bsa_sparse_softmax_backward(f.plan, w2, w2, NULL, 1.0f, NULL),
                  BSA_ERROR_NULL_POINTER, "softmax_backward", "dw");
    expect_status(bsa_sparse_softmax_backward(f.plan, w2, w2, w, INFINITY, NULL),
                  BSA_ERROR_INVALID_ARGUMENT, "softmax_backward scale inf", "scale");
    /* nn, tn */
    expect_status(bsa_sparse_nn(NULL, w2, p->v.data, p->o.data, NULL), BSA_ERROR_NULL_POINTER, "nn",
                  "plan");
    expect_status(bsa_sparse_nn(f.plan, NULL, p->v.data, p->o.data, NULL), BSA_ERROR_NULL_POINTER,
                  "nn", "w");
    expect_status(bsa_sparse_nn(f.plan, w2, NULL, p->o.data, NULL), BSA_ERROR_NULL_POINTER, "nn",
                  "x");
    expect_status(bsa_sparse_nn(f.plan, w2, p->v.data, NULL, NULL), BSA_ERROR_NULL_POINTER, "nn",
                  "y");
    expect_status(bsa_sparse_tn(NULL, w2, p->q.data, p->o.data, NULL), BSA_ERROR_NULL_POINTER, "tn",
                  "plan");
    expect_status(bsa_sparse_tn(f.plan, NULL, p->q.data, p->o.data, NULL), BSA_ERROR_NULL_POINTER,
                  "tn", "w");
    expect_status(bsa_sparse_tn(f.plan, w2, NULL, p->o.data, NULL), BSA_ERROR_NULL_POINTER, "tn",
                  "x");
    expect_status(bsa_sparse_tn(f.plan, w2, p->q.data, NULL, NULL), BSA_ERROR_NULL_POINTER, "tn",
                  "y");
    expect_untouched(&sw, "w");
    expect_untouched(&so, "y");
    free(w);
    free(w2);
    fixture_free(&f);
}

/* ------------------------------------------------------------ plan flags and queries */

/* key_lengths needs BSA_PLAN_KEY_LENGTHS at plan creation: the plan chooses
 * kernels that take them, a call never switches. */
static void test_key_lengths_flag(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_F32); /* desc->flags = 0 */
    ac_problem *p = &f.p;
    int32_t kl[2] = {64, 64}; /* [batch]: every key valid */

    /* forward: refused before any output is written */
    tu_tensor_poison(&p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    snap so = take(p->o.data, tbytes(&p->o)), sl = take(p->lse, (size_t)p->n_lse * 4);
    bsa_fwd_args a = {p->q.data, p->k.data, p->v.data, p->o.data, p->lse};
    a.key_lengths = kl;
    expect_status(bsa_forward(f.plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT,
                  "forward key_lengths without the flag", "BSA_PLAN_KEY_LENGTHS");
    assert_non_null(strstr(bsa_last_error(), "key_lengths"));
    expect_untouched(&so, "o");
    expect_untouched(&sl, "lse");

    /* backward, with the o and lse of a forward without key lengths */
    expect_ok(ac_forward(f.plan, p, AC_WS_NULL), "forward without key lengths");
    tu_tensor_poison(&p->dq);
    tu_tensor_poison(&p->dk);
    tu_tensor_poison(&p->dv);
    snap sq = take(p->dq.data, tbytes(&p->dq)), sk = take(p->dk.data, tbytes(&p->dk)),
         sv = take(p->dv.data, tbytes(&p->dv));
    bsa_bwd_args b = {p->q.data,    p->k.data,  p->v.data,  p->o.data, p->lse,
                      p->dout.data, p->dq.data, p->dk.data, p->dv.data};
    b.key_lengths = kl;
    expect_status(bsa_backward(f.plan, &b, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT,
                  "backward key_lengths without the flag", "BSA_PLAN_KEY_LENGTHS");
    expect_untouched(&sq, "dq");
    expect_untouched(&sk, "dk");
    expect_untouched(&sv, "dv");

    /* the same calls on a plan created with the flag run, and right */
    bsa_attn_desc d = f.desc;
    d.flags = BSA_PLAN_KEY_LENGTHS;
    bsa_plan_t plan = NULL;
    expect_ok(bsa_plan_create(f.ctx, &plan, &d, f.lay), "plan with BSA_PLAN_KEY_LENGTHS");
    ac_problem_oracle(p);
    tu_tensor_poison(&p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    expect_ok(bsa_forward(plan, &a, NULL, 0, NULL), "forward with key lengths");
    tu_tensor_read(&p->o);
    tu_f32_to_f64(p->lse, p->lse_val, p->n_lse);
    tu_tensor_poison(&p->dq);
    tu_tensor_poison(&p->dk);
    tu_tensor_poison(&p->dv);
    expect_ok(bsa_backward(plan, &b, NULL, 0, NULL), "backward with key lengths");
    tu_tensor_read(&p->dq);
    tu_tensor_read(&p->dk);
    tu_tensor_read(&p->dv);
    ac_errors e;
    ac_compare(p, 1, &e);
    if (!(e.o < 1e-5 && e.lse < 1e-5 && e.dq < 1e-5 && e.dk < 1e-5 && e.dv < 1e-5))
        ac_print("key lengths = seq_k", p, &e);
    assert_true(e.o < 1e-5 && e.lse < 1e-5 && e.dq < 1e-5 && e.dk < 1e-5 && e.dv < 1e-5);
    assert_true(e.unwritten == 0 && e.nonfinite == 0);

    /* the flag allows key lengths, it does not require them */
    a.key_lengths = NULL;
    expect_ok(bsa_forward(plan, &a, NULL, 0, NULL), "flagged plan, no key lengths");
    /* and they are applied: no valid key leaves every row empty */
    kl[0] = kl[1] = 0;
    a.key_lengths = kl;
    expect_ok(bsa_forward(plan, &a, NULL, 0, NULL), "key lengths 0");
    tu_tensor_read(&p->o);
    for (int64_t i = 0; i < p->o.count; i++)
        assert_true(p->o.val[i] == 0.0);
    for (int64_t i = 0; i < p->n_lse; i++)
        assert_true(isinf(p->lse[i]) && p->lse[i] < 0);
    bsa_plan_destroy(plan);
    fixture_free(&f);
}

static void test_plan_explain(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_F32);
    char buf[256];
    memset(buf, 'x', sizeof buf);
    snap sb = take(buf, sizeof buf);
    size_t len = 777;

    expect_status(bsa_plan_explain(NULL, buf, sizeof buf, &len), BSA_ERROR_NULL_POINTER,
                  "explain NULL plan", "plan");
    assert_non_null(strstr(bsa_last_error(), "bsa_plan_explain"));
    expect_status(bsa_plan_explain(f.plan, NULL, 5, &len), BSA_ERROR_NULL_POINTER,
                  "explain NULL buf, len 5", "buf");
    assert_non_null(strstr(bsa_last_error(), "bsa_plan_explain"));
    assert_int_equal(len, 777);
    expect_untouched(&sb, "explain buf");

    /* the length query: NULL buf with len 0 (and no length at all) */
    size_t full = 0;
    expect_ok(bsa_plan_explain(f.plan, NULL, 0, &full), "explain length query");
    assert_true(full > 0);
    expect_ok(bsa_plan_explain(f.plan, NULL, 0, NULL), "explain, nothing asked");

    /* the whole text, sized by the query */
    char *text = tu_xmalloc(full + 1);
    len = 0;
    expect_ok(bsa_plan_explain(f.plan, text, full + 1, &len), "explain full");
    assert_int_equal(len, full);
    assert_int_equal(strlen(text), full);
    const char *name = NULL;
    expect_ok(bsa_plan_implementation(f.plan, &name), "implementation");
    if (!strstr(text, name))
        fprintf(stderr, "explain text \"%s\" does not name the implementation %s\n", text, name);
    assert_non_null(strstr(text, name));

    /* truncated: len 5 gets 4 characters and the NUL, nothing past it;
     * *length is still the full length */
    memset(buf, 'x', sizeof buf);
    len = 0;
    expect_ok(bsa_plan_explain(f.plan, buf, 5, &len), "explain len 5");
    assert_int_equal(len, full);
    assert_int_equal(strlen(buf), 4);
    assert_memory_equal(buf, text, 4);
    assert_int_equal(buf[5], 'x');
    /* one byte short of the text: all but its last character */
    char *shy = tu_xmalloc(full + 1);
    memset(shy, 'x', full + 1);
    expect_ok(bsa_plan_explain(f.plan, shy, full, NULL), "explain len = length");
    assert_int_equal(strlen(shy), full - 1);
    assert_memory_equal(shy, text, full - 1);
    assert_int_equal(shy[full], 'x');
    /* len 1: the NUL alone */
    memset(buf, 'x', sizeof buf);
    expect_ok(bsa_plan_explain(f.plan, buf, 1, &len), "explain len 1");
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'x');
    assert_int_equal(len, full);

    /* it follows the plan's choice: the reference implementation's plan
     * names that one */
    bsa_attn_desc d = f.desc;
    d.flags = BSA_PLAN_FORCE_REFERENCE;
    bsa_plan_t ref = NULL;
    expect_ok(bsa_plan_create(f.ctx, &ref, &d, f.lay), "reference plan");
    const char *ref_name = NULL;
    expect_ok(bsa_plan_implementation(ref, &ref_name), "reference implementation");
    memset(buf, 0, sizeof buf);
    expect_ok(bsa_plan_explain(ref, buf, sizeof buf, NULL), "explain reference");
    assert_non_null(strstr(buf, ref_name));
    bsa_plan_destroy(ref);
    free(shy);
    free(text);
    fixture_free(&f);
}

static void test_plan_alignment(void **state)
{
    (void)state;
    const bsa_dtype dts[3] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16};
    for (int i = 0; i < 3; i++) {
        fixture f;
        fixture_init(&f, dts[i]);
        size_t al = 99;
        expect_status(bsa_plan_alignment(NULL, &al), BSA_ERROR_NULL_POINTER, "alignment NULL plan",
                      "plan");
        expect_status(bsa_plan_alignment(f.plan, NULL), BSA_ERROR_NULL_POINTER,
                      "alignment NULL bytes", "bytes");
        assert_int_equal(al, 99);
        expect_ok(bsa_plan_alignment(f.plan, &al), "alignment");
        /* the CPU needs the element size: 4 for f32, 2 for f16 and bf16 */
        assert_int_equal(al, tu_dtype_size(dts[i]));
        fixture_free(&f);
    }
}

/* A copy of t's bytes off bytes past a fresh allocation (malloc aligns to
 * at least 16, so 0 < off < the plan's alignment misaligns it). */
static void *shifted_copy(const tu_tensor *t, size_t off, void **base)
{
    *base = tu_xmalloc(tbytes(t) + 16);
    memcpy((char *)*base + off, t->data, tbytes(t));
    return (char *)*base + off;
}

static void test_misaligned_pointers(void **state)
{
    (void)state;
    /* forward, f32 (4-byte alignment): each tensor 1, 2 and 3 bytes off */
    fixture f;
    fixture_init(&f, BSA_DTYPE_F32);
    ac_problem *p = &f.p;
    size_t al = 0;
    expect_ok(bsa_plan_alignment(f.plan, &al), "alignment");
    assert_int_equal(al, 4);
    tu_tensor_poison(&p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    snap so = take(p->o.data, tbytes(&p->o)), sl = take(p->lse, (size_t)p->n_lse * 4);
    const char *fnames[] = {"q", "k", "v", "o"};
    const tu_tensor *ft[] = {&p->q, &p->k, &p->v, &p->o};
    for (int i = 0; i < 4; i++)
        for (size_t off = 1; off < al; off++) {
            void *base;
            void *at = shifted_copy(ft[i], off, &base);
            snap sa = take(at, tbytes(ft[i]));
            bsa_fwd_args a = {p->q.data, p->k.data, p->v.data, p->o.data, p->lse};
            const void **slot[] = {&a.q, &a.k, &a.v, (const void **)&a.o};
            *slot[i] = at;
            char what[48];
            snprintf(what, sizeof what, "forward args->%s + %zu bytes", fnames[i], off);
            expect_status(bsa_forward(f.plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, what,
                          fnames[i]);
            assert_true(contains_nocase(bsa_last_error(), "aligned"));
            expect_untouched(&sa, what);
            free(base);
        }
    expect_untouched(&so, "o");
    expect_untouched(&sl, "lse");
    /* one element off is aligned enough */
    void *base;
    bsa_fwd_args a = {shifted_copy(&p->q, al, &base), p->k.data, p->v.data, p->o.data, p->lse};
    expect_ok(bsa_forward(f.plan, &a, NULL, 0, NULL), "forward, q one element off");
    free(base);
    fixture_free(&f);

    /* backward, f16 (2-byte alignment): each of the 8 tensors a byte off */
    fixture_init(&f, BSA_DTYPE_F16);
    p = &f.p;
    expect_ok(bsa_plan_alignment(f.plan, &al), "alignment");
    assert_int_equal(al, 2);
    expect_ok(ac_forward(f.plan, p, AC_WS_NULL), "forward");
    tu_tensor_poison(&p->dq);
    tu_tensor_poison(&p->dk);
    tu_tensor_poison(&p->dv);
    snap sq = take(p->dq.data, tbytes(&p->dq)), sk = take(p->dk.data, tbytes(&p->dk)),
         sv = take(p->dv.data, tbytes(&p->dv));
    const char *bnames[] = {"q", "k", "v", "o", "dout", "dq", "dk", "dv"};
    const tu_tensor *bt[] = {&p->q, &p->k, &p->v, &p->o, &p->dout, &p->dq, &p->dk, &p->dv};
    for (int i = 0; i < 8; i++) {
        void *at = shifted_copy(bt[i], 1, &base);
        snap sa = take(at, tbytes(bt[i]));
        bsa_bwd_args b = {p->q.data,    p->k.data,  p->v.data,  p->o.data, p->lse,
                          p->dout.data, p->dq.data, p->dk.data, p->dv.data};
        const void **slot[] = {&b.q,
                               &b.k,
                               &b.v,
                               &b.o,
                               &b.dout,
                               (const void **)&b.dq,
                               (const void **)&b.dk,
                               (const void **)&b.dv};
        *slot[i] = at;
        char what[48];
        snprintf(what, sizeof what, "backward args->%s + 1 byte", bnames[i]);
        expect_status(bsa_backward(f.plan, &b, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, what,
                      bnames[i]);
        assert_true(contains_nocase(bsa_last_error(), "aligned"));
        expect_untouched(&sa, what);
        free(base);
    }
    expect_untouched(&sq, "dq");
    expect_untouched(&sk, "dk");
    expect_untouched(&sv, "dv");
    fixture_free(&f);
}

/* A failing call does not disturb a later good call on the same handles. */
static void test_recovery(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_F32);
    bsa_fwd_args bad = {NULL, f.p.k.data, f.p.v.data, f.p.o.data, f.p.lse};
    expect_status(bsa_forward(f.plan, &bad, NULL, 0, NULL), BSA_ERROR_NULL_POINTER, "forward", "q");
    ac_problem_oracle(&f.p);
    expect_ok(ac_forward(f.plan, &f.p, AC_WS_EXACT), "forward after failure");
    ac_errors e;
    ac_compare(&f.p, 0, &e);
    assert_true(e.o < 1e-5 && e.unwritten == 0);
    fixture_free(&f);
}

/* Handles outliving what they depend on: destroying a context with live
 * layouts or plans, or a layout with live plans, is refused with the
 * counts and leaves every handle usable (no use-after-free; valgrind and
 * ASan see the handles freed in order at the end). */
static void test_destroy_order(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_F32);
    bsa_plan_t second = NULL;
    expect_ok(bsa_plan_create(f.ctx, &second, &f.desc, f.lay), "second plan");
    expect_status(bsa_context_destroy(f.ctx), BSA_ERROR_INVALID_ARGUMENT, "context_destroy",
                  "2 plan(s)");
    assert_non_null(strstr(bsa_last_error(), "1 layout(s)"));
    expect_status(bsa_layout_destroy(f.lay), BSA_ERROR_INVALID_ARGUMENT, "layout_destroy",
                  "2 plan(s)");
    /* everything still works */
    ac_problem_oracle(&f.p);
    expect_ok(ac_forward(f.plan, &f.p, AC_WS_EXACT), "forward after the refusals");
    ac_errors e;
    ac_compare(&f.p, 0, &e);
    assert_true(e.o < 1e-5 && e.unwritten == 0);
    expect_ok(bsa_plan_destroy(second), "plan destroy");
    expect_status(bsa_layout_destroy(f.lay), BSA_ERROR_INVALID_ARGUMENT, "layout_destroy",
                  "1 plan(s)");
    /* a second layout on the context counts too */
    bsa_layout_t extra = NULL;
    bsa_preset ps = {BSA_PATTERN_ALL, 64, 16, 1, 0, 0, 0, 0};
    expect_ok(bsa_layout_create_preset(f.ctx, &extra, &ps), "extra layout");
    expect_status(bsa_context_destroy(f.ctx), BSA_ERROR_INVALID_ARGUMENT, "context_destroy",
                  "2 layout(s)");
    expect_ok(bsa_layout_destroy(extra), "extra layout destroy");
    fixture_free(&f); /* plan, layout, context: in order, each succeeds */
}

/* The aliasing rule (bsa.h): outputs overlap no input, no other output
 * and not themselves; interleaved views of one fused buffer are fine. */
static void test_aliasing(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f, BSA_DTYPE_F32);
    ac_problem *p = &f.p;
    /* o = q (in place) */
    bsa_fwd_args a = {p->q.data, p->k.data, p->v.data, p->q.data, p->lse};
    snap sq = take(p->q.data, tbytes(&p->q));
    expect_status(bsa_forward(f.plan, &a, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "forward",
                  "args->o shares memory with args->q");
    expect_untouched(&sq, "q");
    /* the lse inside o */
    bsa_fwd_args b = {p->q.data, p->k.data, p->v.data, p->o.data, (float *)p->o.data + 8};
    expect_status(bsa_forward(f.plan, &b, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "forward",
                  "lse");
    /* dk overlapping dv by one element, dq = dout */
    expect_ok(ac_forward(f.plan, p, AC_WS_EXACT), "forward");
    bsa_bwd_args c = {p->q.data, p->k.data,    p->v.data,  p->o.data,
                      p->lse,    p->dout.data, p->dq.data, (float *)p->dv.data + 1,
                      p->dv.data};
    expect_status(bsa_backward(f.plan, &c, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "backward",
                  "args->dk and args->dv share memory");
    bsa_bwd_args d = {p->q.data,  p->k.data,  p->v.data,  p->o.data, p->lse,
                      p->dq.data, p->dq.data, p->dk.data, p->dv.data};
    expect_status(bsa_backward(f.plan, &d, NULL, 0, NULL), BSA_ERROR_INVALID_ARGUMENT, "backward",
                  "args->dq shares memory with args->dout");
    fixture_free(&f);
    /* strides under which two elements of o share memory: refused at plan
     * creation (the time stride smaller than a row) */
    bsa_context_t ctx = cpu_ctx();
    bsa_preset ps = {BSA_PATTERN_ALL, 64, 16, 2, 0, 0, 0, 0};
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "layout");
    bsa_attn_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.dtype = BSA_DTYPE_F32;
    desc.q = desc.k = desc.v = desc.o = bsa_tensor_bhtd(1, 2, 64, 16);
    desc.o.strides[2] = 8; /* rows of 16 elements 8 apart */
    bsa_plan_t plan = SENTINEL;
    expect_status(bsa_plan_create(ctx, &plan, &desc, lay), BSA_ERROR_INVALID_ARGUMENT, "plan",
                  "desc->o's strides");
    assert_ptr_equal(plan, SENTINEL);
    /* a fused qkv buffer [batch, time, 3, heads, dim] and a fused gradient
     * buffer: interleaved views, accepted, and the results match separate
     * tensors' (the oracle) */
    const int64_t B = 1, T = 64, H = 2, D = 16, row = 3 * H * D;
    desc.q = desc.k = desc.v = desc.o = bsa_tensor_bthd(B, T, H, D);
    bsa_tensor_desc fused = {{B, H, T, D}, {T * row, D, row, 1}};
    desc.q = desc.k = desc.v = fused;
    expect_ok(bsa_plan_create(ctx, &plan, &desc, lay), "fused plan");
    float *qkv = tu_xmalloc((size_t)(B * T * row) * 4),
          *dqkv = tu_xmalloc((size_t)(B * T * row) * 4);
    float *o = tu_xmalloc((size_t)(B * T * H * D) * 4),
          *dout = tu_xmalloc((size_t)(B * T * H * D) * 4);
    float *lse = tu_xmalloc((size_t)(B * H * T) * 4);
    for (int64_t i = 0; i < B * T * row; i++)
        qkv[i] = (float)tu_uniform(-1, 1);
    for (int64_t i = 0; i < B * T * H * D; i++)
        dout[i] = (float)tu_uniform(-1, 1);
    bsa_fwd_args fa = {qkv, qkv + H * D, qkv + 2 * H * D, o, lse};
    expect_ok(bsa_forward(plan, &fa, NULL, 0, NULL), "fused forward");
    bsa_bwd_args ba = {qkv,  qkv + H * D,  qkv + 2 * H * D, o, lse, dout,
                       dqkv, dqkv + H * D, dqkv + 2 * H * D};
    expect_ok(bsa_backward(plan, &ba, NULL, 0, NULL), "fused backward");
    /* the same problem on separate tensors gives the same bits */
    bsa_attn_desc sep = desc;
    sep.q = sep.k = sep.v = bsa_tensor_bthd(B, T, H, D);
    bsa_plan_t plan2 = NULL;
    expect_ok(bsa_plan_create(ctx, &plan2, &sep, lay), "separate plan");
    const int64_t n = B * T * H * D;
    float *x[3], *dx[3], *o2 = tu_xmalloc((size_t)n * 4),
                         *lse2 = tu_xmalloc((size_t)(B * H * T) * 4);
    for (int m = 0; m < 3; m++) {
        x[m] = tu_xmalloc((size_t)n * 4);
        dx[m] = tu_xmalloc((size_t)n * 4);
        for (int64_t r = 0; r < B * T; r++)
            memcpy(x[m] + r * H * D, qkv + r * row + m * H * D, (size_t)(H * D) * 4);
    }
    bsa_fwd_args fa2 = {x[0], x[1], x[2], o2, lse2};
    expect_ok(bsa_forward(plan2, &fa2, NULL, 0, NULL), "separate forward");
    bsa_bwd_args ba2 = {x[0], x[1], x[2], o2, lse2, dout, dx[0], dx[1], dx[2]};
    expect_ok(bsa_backward(plan2, &ba2, NULL, 0, NULL), "separate backward");
    assert_memory_equal(o, o2, (size_t)n * 4);
    for (int m = 0; m < 3; m++) {
        for (int64_t r = 0; r < B * T; r++)
            assert_memory_equal(dqkv + r * row + m * H * D, dx[m] + r * H * D, (size_t)(H * D) * 4);
        free(x[m]);
        free(dx[m]);
    }
    free(o2);
    free(lse2);
    free(qkv);
    free(dqkv);
    free(o);
    free(dout);
    free(lse);
    bsa_plan_destroy(plan2);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),      cmocka_unit_test(test_context_errors),
        cmocka_unit_test(test_layout_errors),       cmocka_unit_test(test_plan_errors),
        cmocka_unit_test(test_forward_errors),      cmocka_unit_test(test_backward_errors),
        cmocka_unit_test(test_unfused_errors),      cmocka_unit_test(test_key_lengths_flag),
        cmocka_unit_test(test_plan_explain),        cmocka_unit_test(test_plan_alignment),
        cmocka_unit_test(test_misaligned_pointers), cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_destroy_order),       cmocka_unit_test(test_aliasing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
