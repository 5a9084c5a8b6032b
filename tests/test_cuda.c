/*
 * CUDA backend through the public API against the double-precision oracle
 * (tests/common/oracle.c), on fresh random inputs rounded to the dtype,
 * with every output (and the gaps of padded tensors) poisoned on the
 * device before each run.  Skips cleanly when no CUDA device is present.
 *
 * Each case runs on every path in turn (BSA_IMPL=<entry>, read at plan
 * creation, forces an entry of the CUDA implementation list for the passes
 * it serves): the default choice (the list's own: block rows, chunk
 * kernels, the Hopper kernels on sm_90, the mma.sync tile kernels), the
 * scalar reference path (cuda-reference), for f16 with head dim <= 128 the
 * Volta wmma path (cuda-wmma-sm70) and, for f16/bf16, every tensor-core
 * entry forced: the mma.sync tile kernels on natural key tiles
 * (cuda-mma-sm80) and on gathered ones (cuda-mma-sm80-gather), the chunk
 * kernels (cuda-mma-sm80-chunk), the block-row kernels
 * (cuda-mma-sm80-blockrow) and, on an sm_90 device, every Hopper kernel
 * (cuda-wgmma-sm90a, cuda-wgmma-sm90a-gather and the warp-specialised
 * forward cuda-wgmma-sm90a-ws), on every layout each takes.  A forced
 * entry that declines the device or the problem (no sm_90, a head dim
 * outside 33..128, a layout without gathered tables, not chunk-local,
 * not of 32-wide blocks, ...) is counted as skipped (print_summary).
 *
 * Thresholds (relative L2 against the oracle): about 4x the worst error
 * measured on an H100 over every path and case (tests/README.md,
 * "Tolerances", has the measurements).  f16/bf16 outputs are stored in
 * the dtype (f16: ~2.8e-4 relative L2 from rounding alone); the tensor-core
 * paths also round P and dS to the dtype for their products, as
 * FlashAttention does.  lse is fp32 for every dtype.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "attn_check.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#ifndef BSA_WITH_CUDA
#error "GPU test: tests/CMakeLists.txt builds it only with the CUDA backend"
#endif

#include "cuda_testutil.h"
#include "sampled_ref.h"
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tol {
    double out, grad, lse;
} tol;

/* About 4x the worst relative L2 error measured on an H100 over every path
 * (tests/README.md, "Tolerances"); lse is fp32 for every dtype. */
static const tol tolerances[3] = {
    [BSA_DTYPE_F32] = {2e-6, 1e-5, 2.5e-7},
    [BSA_DTYPE_F16] = {1.3e-3, 1.8e-3, 2.5e-7},
    [BSA_DTYPE_BF16] = {1e-2, 1.2e-2, 2.5e-7},
};
static const bsa_dtype dtypes[3] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16};
/* The paths a case runs on; impl: the BSA_IMPL entry forced (NULL: the
 * list's own choice); may_decline: the entry declines some devices or
 * problems, where the case is skipped on that path; fwd_only: the entry
 * serves the forward pass alone (the backward is the list's choice). */
enum {
    P_DEFAULT,
    P_REF,
    P_VOLTA,
    P_MMA,
    P_MMA_GATHER,
    P_MMA_CHUNK,
    P_BLOCKROW,
    P_WGMMA,
    P_WGMMA_GATHER,
    P_WGMMA_WS,
    N_PATHS
};
static const struct path_info {
    const char *name, *impl;
    int may_decline, fwd_only;
} paths_[N_PATHS] = {
    [P_DEFAULT] = {"default", NULL, 0, 0},
    [P_REF] = {"reference", "cuda-reference", 0, 0},
    [P_VOLTA] = {"volta", "cuda-wmma-sm70", 0, 0},
    [P_MMA] = {"mma", "cuda-mma-sm80", 0, 0},
    [P_MMA_GATHER] = {"mma-gather", "cuda-mma-sm80-gather", 1, 0},
    [P_MMA_CHUNK] = {"mma-chunk", "cuda-mma-sm80-chunk", 1, 0},
    [P_BLOCKROW] = {"blockrow", "cuda-mma-sm80-blockrow", 1, 0},
    [P_WGMMA] = {"wgmma", "cuda-wgmma-sm90a", 1, 0},
    [P_WGMMA_GATHER] = {"wgmma-gather", "cuda-wgmma-sm90a-gather", 1, 0},
    [P_WGMMA_WS] = {"wgmma-ws", "cuda-wgmma-sm90a-ws", 1, 1},
};
static double worst[N_PATHS][3][5]; /* [path][dtype][o, lse, dq, dk, dv] */
static int cases_run[N_PATHS], cases_skipped[N_PATHS];
static int wgmma_chunk_runs; /* cases whose plan named cuda-wgmma-sm90a-chunk */

/* Plans with BSA_IMPL set to impl (NULL: unset) around bsa_plan_create. */
static bsa_status plan_forced(bsa_context_t ctx, bsa_plan_t *plan, const bsa_attn_desc *d,
                              bsa_layout_t lay, const char *impl)
{
    if (impl)
        setenv("BSA_IMPL", impl, 1);
    else
        unsetenv("BSA_IMPL");
    bsa_status st = bsa_plan_create(ctx, plan, d, lay);
    unsetenv("BSA_IMPL");
    return st;
}

/* Whether a plan name is the forced entry's: the entry itself, or for a
 * forward-only entry "fwd <entry>, bwd <the list's backward>". */
static int names_entry(const char *impl, const struct path_info *pi)
{
    if (!pi->fwd_only)
        return !strcmp(impl, pi->impl);
    char want[96];
    snprintf(want, sizeof want, "fwd %s, bwd ", pi->impl);
    return !strncmp(impl, want, strlen(want)) && impl[strlen(want)] != '\0';
}

/* Whether every entry a plan name lists ("A" or "fwd A, bwd B") is a
 * tensor-core entry of the mma.sync / wgmma families. */
static int tensor_core_name(const char *impl)
{
    const char *parts[2] = {impl, NULL};
    const char *bwd = strstr(impl, ", bwd ");
    if (!strncmp(impl, "fwd ", 4) && bwd) {
        parts[0] = impl + 4;
        parts[1] = bwd + 6;
    }
    for (int i = 0; i < 2 && parts[i]; i++)
        if (strncmp(parts[i], "cuda-mma-sm80", 13) && strncmp(parts[i], "cuda-wgmma-sm90a", 16))
            return 0;
    return 1;
}

static int is_sm90(void)
{
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    return prop.major == 9 && prop.minor == 0;
}

static bsa_context_t new_ctx(void)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CUDA, 0, 0};
    expect_ok(bsa_context_create(&ctx, &cp), "cuda context");
    return ctx;
}

/* ------------------------------------------------- device mirrors */

typedef struct dev_problem {
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *ws;
    float *lse;
    size_t ws_bytes;
} dev_problem;

static void dev_init(dev_problem *d, const ac_problem *p, bsa_plan_t plan)
{
    memset(d, 0, sizeof *d);
    d->q = dev_upload_tensor(&p->q);
    d->k = dev_upload_tensor(&p->k);
    d->v = dev_upload_tensor(&p->v);
    d->dout = dev_upload_tensor(&p->dout);
    d->o = dev_upload_tensor(&p->o);
    d->dq = dev_upload_tensor(&p->dq);
    d->dk = dev_upload_tensor(&p->dk);
    d->dv = dev_upload_tensor(&p->dv);
    CU(cudaMalloc((void **)&d->lse, (size_t)p->n_lse * sizeof(float)));
    expect_ok(bsa_plan_workspace_size(plan, &d->ws_bytes), "workspace size");
    CU(cudaMalloc(&d->ws, d->ws_bytes ? d->ws_bytes : 1));
}

static void dev_free(dev_problem *d)
{
    void *ps[] = {d->q, d->k, d->v, d->o, d->dout, d->dq, d->dk, d->dv, d->ws, d->lse};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        cudaFree(ps[i]);
}

static bsa_status gpu_forward(bsa_plan_t plan, ac_problem *p, dev_problem *d, cudaStream_t stream)
{
    dev_poison(d->o, &p->o);
    tu_poison(BSA_DTYPE_F32, p->lse, p->n_lse);
    CU(cudaMemcpy(d->lse, p->lse, (size_t)p->n_lse * 4, cudaMemcpyHostToDevice));
    bsa_fwd_args a = {d->q, d->k, d->v, d->o, d->lse};
    bsa_status st = bsa_forward(plan, &a, d->ws, d->ws_bytes, stream);
    CU(cudaStreamSynchronize(stream));
    CU(cudaGetLastError());
    dev_download(&p->o, d->o);
    CU(cudaMemcpy(p->lse, d->lse, (size_t)p->n_lse * 4, cudaMemcpyDeviceToHost));
    tu_f32_to_f64(p->lse, p->lse_val, p->n_lse);
    return st;
}

static bsa_status gpu_backward(bsa_plan_t plan, ac_problem *p, dev_problem *d, cudaStream_t stream)
{
    dev_poison(d->dq, &p->dq);
    dev_poison(d->dk, &p->dk);
    dev_poison(d->dv, &p->dv);
    bsa_bwd_args a = {d->q, d->k, d->v, d->o, d->lse, d->dout, d->dq, d->dk, d->dv};
    bsa_status st = bsa_backward(plan, &a, d->ws, d->ws_bytes, stream);
    CU(cudaStreamSynchronize(stream));
    CU(cudaGetLastError());
    dev_download(&p->dq, d->dq);
    dev_download(&p->dk, d->dk);
    dev_download(&p->dv, d->dv);
    return st;
}

/* ------------------------------------------------- one case */

static void check_errors(const char *label, int path, const ac_problem *p, const ac_errors *e)
{
    const tol *t = &tolerances[p->dtype];
    int ok = e->o <= t->out && e->lse <= t->lse && e->unwritten == 0 && e->gaps_touched == 0 &&
             e->nonfinite == 0 && e->empty_violations == 0 && e->lse_inf_mismatch == 0 &&
             e->dq <= t->grad && e->dk <= t->grad && e->dv <= t->grad;
    double v[5] = {e->o, e->lse, e->dq, e->dk, e->dv};
    for (int i = 0; i < 5; i++)
        if (v[i] > worst[path][p->dtype][i])
            worst[path][p->dtype][i] = v[i];
    cases_run[path]++;
    if (!ok) {
        char full[200];
        snprintf(full, sizeof full, "%s [%s]", label, paths_[path].name);
        ac_print(full, p, e);
        fprintf(stderr, "  FAILED (thresholds: out %.0e grad %.0e lse %.0e)\n", t->out, t->grad,
                t->lse);
    }
    assert_true(ok);
}

/* Plans and runs one path on a problem whose oracle is computed (see
 * paths_); a forced entry that may decline and does (BSA_ERROR_UNSUPPORTED
 * at plan creation) is counted as skipped. */
static void run_path(bsa_context_t ctx, bsa_layout_t lay, const char *label, ac_problem *p,
                     bsa_attn_desc *d, ac_form form, int path)
{
    const struct path_info *pi = &paths_[path];
    bsa_plan_t plan = NULL;
    bsa_status st = plan_forced(ctx, &plan, d, lay, pi->impl);
    if (pi->may_decline && st == BSA_ERROR_UNSUPPORTED) {
        cases_skipped[path]++;
        return;
    }
    expect_ok(st, label);
    const char *impl = NULL;
    expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
    if (pi->impl) {
        if (!names_entry(impl, pi))
            fprintf(stderr, "%s [%s]: the plan names %s\n", label, pi->name, impl);
        assert_true(names_entry(impl, pi));
    } else if (p->dtype == BSA_DTYPE_F32 || form == AC_PADDED) {
        /* f32, or strides not multiples of 8: the tensor-core entries decline */
        assert_string_equal(impl, "cuda-reference");
    } else {
        if (!tensor_core_name(impl))
            fprintf(stderr, "%s [default]: the plan names %s\n", label, impl);
        assert_true(tensor_core_name(impl));
    }
    dev_problem dp;
    dev_init(&dp, p, plan);
    expect_ok(gpu_forward(plan, p, &dp, 0), label);
    expect_ok(gpu_backward(plan, p, &dp, 0), label);
    ac_errors e;
    ac_compare(p, 1, &e);
    char full[180];
    snprintf(full, sizeof full, "%s %s %s D=%lld", label, tu_dtype_name(p->dtype),
             ac_form_name(form), (long long)p->head_dim);
    check_errors(full, path, p, &e);
    dev_free(&dp);
    bsa_plan_destroy(plan);
}

/* One problem, the oracle once, every path that takes its dtype and form
 * (the tensor-core entries need f16/bf16 and strides multiples of 8). */
static void run_case(bsa_context_t ctx, bsa_layout_t lay, const cm_source *masks, const char *label,
                     bsa_dtype dt, int batch, int heads, int dim, ac_form form, float scale)
{
    ac_problem p;
    bsa_attn_desc d;
    expect_ok(ac_problem_init(&p, lay, masks, dt, batch, heads, dim, form, scale, &d),
              "problem init");
    ac_problem_oracle(&p);
    run_path(ctx, lay, label, &p, &d, form, P_DEFAULT);
    run_path(ctx, lay, label, &p, &d, form, P_REF);
    if (dt == BSA_DTYPE_F16 && dim <= 128 && form != AC_PADDED)
        run_path(ctx, lay, label, &p, &d, form, P_VOLTA);
    if (dt != BSA_DTYPE_F32 && form != AC_PADDED)
        for (int path = P_MMA; path < N_PATHS; path++)
            run_path(ctx, lay, label, &p, &d, form, path);
    ac_problem_free(&p);
}

/* Asserts the implementation a default plan picks for a problem: want
 * exactly, or where want ends in "bwd " ("fwd A, bwd "), a name starting
 * with it (the backward entry varies with the device). */
static void expect_impl(bsa_context_t ctx, bsa_layout_t lay, const char *label, bsa_dtype dt,
                        int dim, ac_form form, const char *want)
{
    ac_problem p;
    bsa_attn_desc d;
    expect_ok(ac_problem_init(&p, lay, NULL, dt, 2, 2, dim, form, 0.0f, &d), label); /* shapes */
    bsa_plan_t plan = NULL;
    expect_ok(plan_forced(ctx, &plan, &d, lay, NULL), label);
    const char *impl = NULL;
    expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
    const size_t n = strlen(want);
    if (n >= 4 && !strcmp(want + n - 4, "bwd ")) {
        if (strncmp(impl, want, n) || !impl[n])
            fprintf(stderr, "%s: the plan names %s, wanted %s...\n", label, impl, want);
        assert_true(!strncmp(impl, want, n) && impl[n]);
    } else {
        assert_string_equal(impl, want);
    }
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
}

/* ------------------------------------------------- presets */

static const char *const pattern_names[] = {"all", "local", "strided", "fixed"};

/* Sequences long enough to span several 64-row kernel tiles. */
static bsa_preset make_preset(bsa_pattern pat, int block, int heads, int bidir)
{
    bsa_preset ps;
    memset(&ps, 0, sizeof ps);
    ps.pattern = pat;
    ps.block = block;
    ps.heads = heads;
    ps.bidirectional = bidir;
    ps.seq = block <= 32 ? 256 : 2 * 128 + (block == 64 ? 64 : 128);
    switch (pat) {
    case BSA_PATTERN_ALL:
        break;
    case BSA_PATTERN_LOCAL:
        ps.ctx = 2 * block; /* L % B == 0 */
        break;
    case BSA_PATTERN_STRIDED:
        /* seq / L must be a multiple of the block */
        ps.ctx = block <= 32 ? 4 : 2;
        ps.seq = ps.ctx * block * (block <= 32 ? 2 : 1) * (block <= 16 ? 2 : 1);
        break;
    case BSA_PATTERN_FIXED:
        ps.ctx = (block <= 32 ? 4 : 2) * block;
        ps.num_verts = heads % 2 == 0 ? 2 : 1;
        ps.vertsize = 1;
        ps.seq = 2 * ps.ctx;
        break;
    }
    return ps;
}

static const int block_sizes[5] = {8, 16, 32, 64, 128};
static const int head_dims[6] = {32, 64, 128, 40, 96, 256};

/* Every pattern x causal/bidirectional x block size x dtype, head dims and
 * tensor forms rotating. */
static void test_patterns(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    int n = 0;
    for (int pat = 0; pat < 4; pat++)
        for (int bidir = 0; bidir < 2; bidir++)
            for (int bi = 0; bi < 5; bi++) {
                int block = block_sizes[bi];
                bsa_preset ps = make_preset((bsa_pattern)pat, block, 2, bidir);
                bsa_layout_t lay = NULL;
                char label[96];
                snprintf(label, sizeof label, "%s%s B=%d seq=%d ctx=%d", pattern_names[pat],
                         bidir ? "-bidir" : "", block, ps.seq, ps.ctx);
                expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), label);
                cm_source masks = cm_of_preset(&ps);
                for (int di = 0; di < 3; di++, n++) {
                    int dim = head_dims[n % 4]; /* 32, 64, 128, 40 */
                    ac_form form = (ac_form)(n % 2);
                    run_case(ctx, lay, &masks, label, dtypes[di], 1 + n % 2, 2, dim, form, 0.0f);
                }
                bsa_layout_destroy(lay);
            }
    bsa_context_destroy(ctx);
}

/* Every head dim class (fast 32/64/128, padded 40/96, 256) per dtype. */
static void test_head_dims(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_preset ps = make_preset(BSA_PATTERN_LOCAL, 32, 2, 0);
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "local preset");
    cm_source masks = cm_of_preset(&ps);
    for (int di = 0; di < 3; di++)
        for (int hi = 0; hi < 6; hi++)
            run_case(ctx, lay, &masks, "local B=32", dtypes[di], 1, 2, head_dims[hi],
                     (ac_form)(hi % 2), hi == 3 ? 0.37f : 0.0f);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

/* A padded (gapped, non-multiple-of-8 strides) tensor form: the reference
 * path takes it; nothing outside the tensor may be written. */
static void test_padded(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_preset ps = make_preset(BSA_PATTERN_ALL, 16, 2, 0);
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "all preset");
    cm_source masks = cm_of_preset(&ps);
    for (int di = 0; di < 3; di++)
        run_case(ctx, lay, &masks, "all B=16 padded", dtypes[di], 2, 2, 64, AC_PADDED, 0.0f);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

/* ------------------------------------------------- random layouts */

static void random_blocks(uint8_t *blocks, int64_t n, double density)
{
    for (int64_t i = 0; i < n; i++)
        blocks[i] = tu_uniform(0.0, 1.0) < density;
}

/* Cross attention (seq_q != seq_k) on random dense block layouts. */
static void test_cross_attention(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    const int blocks_[4] = {8, 16, 32, 64};
    for (int i = 0; i < 4; i++) {
        int block = blocks_[i];
        int qb = 320 / block + (block <= 16 ? 3 : 1), kb = 192 / block + 1;
        int lheads = i % 2 ? 2 : 1;
        uint8_t *blocks = tu_xmalloc((size_t)(lheads * qb * kb));
        random_blocks(blocks, lheads * qb * kb, 0.5);
        bsa_layout_desc ld = {block, lheads, qb, kb, BSA_PRED_NONE, 0, 0};
        bsa_layout_t lay = NULL;
        char label[96];
        snprintf(label, sizeof label, "cross B=%d Qb=%d Kb=%d", block, qb, kb);
        expect_ok(bsa_layout_create_dense(ctx, &lay, &ld, blocks), label);
        cm_source masks = cm_of_dense(&ld, blocks);
        run_case(ctx, lay, &masks, label, dtypes[1 + i % 2], 2, 2, 64, (ac_form)(i % 2), 0.0f);
        bsa_layout_destroy(lay);
        free(blocks);
    }
    bsa_context_destroy(ctx);
}

/* Dense block layouts cut by every predicate combination at blocks 64 and
 * 128, whose mixed tile pairs are all predicate tiles: the kernels' interval
 * masks (forward, dQ and the transposed dK/dV form) against the oracle,
 * windows and prefixes not multiples of the block. */
static void test_predicate_tiles(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    const struct {
        unsigned preds;
        int window, prefix;
    } cuts[4] = {{BSA_PRED_CAUSAL | BSA_PRED_WINDOW, 150, 0},
                 {BSA_PRED_WINDOW, 97, 0},
                 {BSA_PRED_PREFIX, 0, 77},
                 {BSA_PRED_CAUSAL | BSA_PRED_PREFIX, 0, 141}};
    int n = 0;
    for (int bi = 0; bi < 2; bi++)
        for (int c = 0; c < 4; c++, n++) {
            const int block = bi ? 128 : 64, nb = (bi ? 640 : 448) / block;
            uint8_t *blocks = tu_xmalloc((size_t)nb * nb);
            memset(blocks, 1, (size_t)nb * nb);
            bsa_layout_desc ld = {block, 1, nb, nb, cuts[c].preds, cuts[c].window, cuts[c].prefix};
            bsa_layout_t lay = NULL;
            char label[96];
            snprintf(label, sizeof label, "dense B=%d preds=%u window=%d prefix=%d", block,
                     cuts[c].preds, cuts[c].window, cuts[c].prefix);
            expect_ok(bsa_layout_create_dense(ctx, &lay, &ld, blocks), label);
            cm_source masks = cm_of_dense(&ld, blocks);
            run_case(ctx, lay, &masks, label, dtypes[1 + n % 2], 1 + n % 2, 2, n % 3 ? 64 : 128,
                     (ac_form)(n % 2), 0.0f);
            bsa_layout_destroy(lay);
            free(blocks);
        }
    bsa_context_destroy(ctx);
}

typedef struct cb_state {
    uint64_t salt;
    double density;
    int dead_row; /* absolute query killed on every block, or -1 */
} cb_state;

static int random_callback(void *user, int head, int q_block, int k_block, int block_index,
                           int block, uint8_t *mask)
{
    const cb_state *s = user;
    (void)block_index;
    for (int r = 0; r < block; r++)
        for (int c = 0; c < block; c++) {
            uint64_t x = s->salt ^ ((uint64_t)head << 48) ^
                         ((uint64_t)(q_block * block + r) << 24) ^ (uint64_t)(k_block * block + c);
            x ^= x >> 33;
            x *= 0xff51afd7ed558ccdull;
            x ^= x >> 33;
            double u = (double)(x >> 11) / 9007199254740992.0;
            int q = q_block * block + r;
            mask[r * block + c] = u < s->density && q != s->dead_row;
        }
    return 0;
}

/* Random block layouts with random callback masks (stored bits), one
 * query row masked everywhere, and a layout row with no block. */
static void test_random_callbacks(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    const int blocks_[5] = {8, 16, 32, 64, 128};
    for (int i = 0; i < 5; i++) {
        int block = blocks_[i];
        int nb = 384 / block;
        int lheads = i % 2 ? 2 : 1;
        uint8_t *blocks = tu_xmalloc((size_t)(lheads * nb * nb));
        random_blocks(blocks, lheads * nb * nb, 0.4);
        for (int k = 0; k < nb; k++)
            blocks[1 * nb + k] = 0; /* layout row 1 of head 0: no block */
        cb_state cs = {tu_next(), 0.6, 5 + block};
        bsa_layout_desc ld = {block, lheads, nb, nb, BSA_PRED_NONE, 0, 0};
        bsa_layout_t lay = NULL;
        char label[96];
        snprintf(label, sizeof label, "callback B=%d lheads=%d", block, lheads);
        expect_ok(bsa_layout_create_callback(ctx, &lay, &ld, blocks, random_callback, &cs), label);
        cm_source masks = cm_of_callback(&ld, blocks, random_callback, &cs);
        run_case(ctx, lay, &masks, label, dtypes[1 + i % 2], 1, 2, i % 2 ? 64 : 128,
                 (ac_form)(i % 2), 0.0f);
        bsa_layout_destroy(lay);
        free(blocks);
    }
    bsa_context_destroy(ctx);
}

/* Gathered key tiles (non-adjacent key blocks in one 64-wide kernel tile)
 * on every small-block layout kind: presets, a cross-attention layout
 * whose key length is not a multiple of 64, callback bits.  Layouts of
 * blocks below 64 carry the gathered tables unless chunk-local (as the
 * strided presets here are: the chunk kernels take those); run_case forces
 * the gathered entries (cuda-mma-sm80-gather and, on sm_90,
 * cuda-wgmma-sm90a-gather) wherever they take the layout, skipped where
 * they decline: the cross callback layout must take the mma.sync one, and
 * on sm_90 the wgmma one must run somewhere (the local presets at head dim
 * 64). */
static void test_gathered_key_tiles(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    const int wgmma_before = cases_run[P_WGMMA_GATHER];
    const int blocks_[3] = {8, 16, 32};
    for (int i = 0; i < 3; i++) {
        int block = blocks_[i];
        bsa_pattern pats[3] = {BSA_PATTERN_FIXED, BSA_PATTERN_STRIDED, BSA_PATTERN_LOCAL};
        for (int pi = 0; pi < 3; pi++) {
            bsa_preset ps = make_preset(pats[pi], block, 2, 0);
            bsa_layout_t lay = NULL;
            char label[96];
            snprintf(label, sizeof label, "gathered %s B=%d seq=%d", pattern_names[pats[pi]], block,
                     ps.seq);
            expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), label);
            cm_source masks = cm_of_preset(&ps);
            run_case(ctx, lay, &masks, label, dtypes[1 + (i + pi) % 2], 1, 2, 64, (ac_form)(pi % 2),
                     0.0f);
            bsa_layout_destroy(lay);
        }
        int qb = 256 / block + 1, kb = 200 / block;
        uint8_t *blk = tu_xmalloc((size_t)(2 * qb * kb));
        random_blocks(blk, 2 * qb * kb, 0.3);
        cb_state cs = {tu_next(), 0.7, -1};
        bsa_layout_desc ld = {block, 2, qb, kb, BSA_PRED_NONE, 0, 0};
        bsa_layout_t lay = NULL;
        expect_ok(bsa_layout_create_callback(ctx, &lay, &ld, blk, random_callback, &cs),
                  "gathered callback");
        const int mma_before = cases_run[P_MMA_GATHER];
        cm_source masks = cm_of_callback(&ld, blk, random_callback, &cs);
        run_case(ctx, lay, &masks, "gathered cross callback", dtypes[1 + i % 2], 2, 2, 32, AC_BTHD,
                 0.0f);
        assert_int_equal(cases_run[P_MMA_GATHER], mma_before + 1);
        bsa_layout_destroy(lay);
        free(blk);
    }
    if (is_sm90())
        assert_true(cases_run[P_WGMMA_GATHER] > wgmma_before);
    bsa_context_destroy(ctx);
}

/* Chunk-local layouts (every key block of a query block in its 128-row
 * chunk) on the chunk kernels: random block-diagonal layouts of chunks of
 * 32, 64 and 128 rows with random blocks and callback bits inside, a dead
 * query row, a layout row without blocks, cross attention with fewer or
 * more keys than queries; the plan must name the chunk kernels (on sm_90
 * at head dims 33..128 their wgmma forward with the mma.sync backward,
 * "fwd cuda-wgmma-sm90a-chunk, bwd cuda-mma-sm80-chunk"), and the mma.sync
 * chunk forward forced (run_case's cuda-mma-sm80-chunk path) must take
 * every one of them. */
static void test_chunk_local(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    const int sm90 = is_sm90();
    const int blocks_[4] = {16, 32, 64, 32};
    const int chunk_rows[4] = {32, 128, 128, 64};
    for (int i = 0; i < 4; i++) {
        const int block = blocks_[i], per = chunk_rows[i] / block; /* blocks per chunk */
        const int qb = 320 / block + (i == 3 ? 1 : 0);
        const int kb = i == 1 ? qb - per : i == 3 ? qb + 2 : qb;
        const int lheads = i % 2 ? 2 : 1;
        uint8_t *blk = tu_xmalloc((size_t)(lheads * qb * kb));
        for (int h = 0; h < lheads; h++)
            for (int r = 0; r < qb; r++)
                for (int c = 0; c < kb; c++)
                    blk[((size_t)h * qb + r) * kb + c] =
                        r / per == c / per && (r == c || tu_uniform(0.0, 1.0) < 0.6) && r != 2;
        cb_state cs = {tu_next(), 0.7, 3 * block + 1};
        bsa_layout_desc ld = {block, lheads, qb, kb, BSA_PRED_NONE, 0, 0};
        bsa_layout_t lay = NULL;
        char label[96];
        snprintf(label, sizeof label, "chunk-local B=%d chunk=%d Qb=%d Kb=%d", block, chunk_rows[i],
                 qb, kb);
        expect_ok(bsa_layout_create_callback(ctx, &lay, &ld, blk, random_callback, &cs), label);
        const bsa_dtype dt = dtypes[1 + i % 2];
        const int dim = i == 2 ? 128 : i == 0 ? 32 : 64;
        expect_impl(ctx, lay, label, dt, dim, (ac_form)(i % 2),
                    sm90 && dim > 32 && dim <= 128
                        ? "fwd cuda-wgmma-sm90a-chunk, bwd cuda-mma-sm80-chunk"
                        : "cuda-mma-sm80-chunk");
        const int chunk_before = cases_run[P_MMA_CHUNK];
        cm_source masks = cm_of_callback(&ld, blk, random_callback, &cs);
        run_case(ctx, lay, &masks, label, dt, 2, 2, dim, (ac_form)(i % 2), 0.0f);
        assert_int_equal(cases_run[P_MMA_CHUNK], chunk_before + 1);
        wgmma_chunk_runs += sm90 && dim > 32 && dim <= 128; /* the default path ran it */
        bsa_layout_destroy(lay);
        free(blk);
    }
    bsa_context_destroy(ctx);
}

/* Block-row kernels (layouts of 32-wide blocks whose 64 x 64 tiles would
 * compute mostly absent blocks): random sparse layouts chosen by the plan
 * itself, with callback bits (partial and empty blocks, a dead query row),
 * with predicates (causal, window, prefix: PRED blocks), a query block and
 * a key block without any block, odd block counts (a thread block's second
 * lane empty) and cross attention; and the entry forced
 * (BSA_IMPL=cuda-mma-sm80-blockrow at plan creation: run_case's blockrow
 * path, which must take them) on the local and fixed presets (predicate
 * blocks, dense rows).  The plan must name the block-row kernels at head
 * dims 32, 48 and 64, and the block-row forward alone at 96 and 128
 * ("fwd cuda-mma-sm80-blockrow, bwd <the list's choice>"). */
static void test_block_rows(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    const struct {
        int qb, kb, lheads, callback;
        unsigned preds;
        int window, prefix;
    } cases[5] = {
        {17, 17, 1, 1, BSA_PRED_NONE, 0, 0},
        {20, 13, 2, 1, BSA_PRED_NONE, 0, 0},
        {19, 19, 2, 0, BSA_PRED_CAUSAL, 0, 0},
        {16, 23, 1, 0, BSA_PRED_WINDOW, 200, 0},
        {21, 21, 1, 0, BSA_PRED_CAUSAL | BSA_PRED_PREFIX, 0, 70},
    };
    for (int i = 0; i < 5; i++) {
        const int qb = cases[i].qb, kb = cases[i].kb, lh = cases[i].lheads;
        uint8_t *blk = tu_xmalloc((size_t)(lh * qb * kb));
        random_blocks(blk, lh * qb * kb, 0.2);
        for (int c = 0; c < kb; c++)
            blk[3 * kb + c] = 0; /* query block 3 of head 0: no block */
        for (int r = 0; r < qb; r++)
            blk[(size_t)r * kb + 5] = 0; /* key block 5 of head 0: no block */
        bsa_layout_desc ld = {32, lh, qb, kb, cases[i].preds, cases[i].window, cases[i].prefix};
        bsa_layout_t lay = NULL;
        char label[120];
        snprintf(label, sizeof label, "block-row Qb=%d Kb=%d lheads=%d %s preds=%u", qb, kb, lh,
                 cases[i].callback ? "callback" : "dense", cases[i].preds);
        cb_state cs = {tu_next(), 0.7, 40 + i};
        cm_source masks = cases[i].callback ? cm_of_callback(&ld, blk, random_callback, &cs)
                                            : cm_of_dense(&ld, blk);
        expect_ok(cm_create(ctx, &masks, &lay), label);
        const bsa_dtype dt = dtypes[1 + i % 2];
        /* 48 and 96: padded head dims (64 and 128 in the kernels) */
        const int dims[5] = {32, 64, 128, 48, 96}, dim = dims[i];
        expect_impl(ctx, lay, label, dt, dim, (ac_form)(i % 2),
                    dim <= 64 ? "cuda-mma-sm80-blockrow" : "fwd cuda-mma-sm80-blockrow, bwd ");
        run_case(ctx, lay, &masks, label, dt, 2, 2, dim, (ac_form)(i % 2), 0.0f);
        bsa_layout_destroy(lay);
        free(blk);
    }
    const bsa_pattern forced[2] = {BSA_PATTERN_LOCAL, BSA_PATTERN_FIXED};
    for (int bidir = 0; bidir < 2; bidir++) {
        bsa_preset ps = make_preset(forced[bidir], 32, 2, bidir);
        bsa_layout_t lay = NULL;
        char label[96];
        snprintf(label, sizeof label, "block-row forced %s B=32 seq=%d bidir=%d",
                 pattern_names[forced[bidir]], ps.seq, bidir);
        expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), label);
        cm_source masks = cm_of_preset(&ps);
        const int brow_before = cases_run[P_BLOCKROW];
        run_case(ctx, lay, &masks, label, dtypes[1 + bidir], 1, 2, 64, (ac_form)bidir, 0.0f);
        assert_int_equal(cases_run[P_BLOCKROW], brow_before + 1);
        bsa_layout_destroy(lay);
    }
    bsa_context_destroy(ctx);
}

/* ------------------------------------------------- larger, device-only */

/* Every path against the reference path at a size the oracle would take
 * too long for: relative L2 between two GPU paths. */
static double rel_l2_dev(bsa_dtype dt, const void *a, const void *b, int64_t n)
{
    size_t es = tu_dtype_size(dt);
    void *ha = tu_xmalloc(n * es), *hb = tu_xmalloc(n * es);
    CU(cudaMemcpy(ha, a, n * es, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(hb, b, n * es, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = tu_get(dt, ha, i), y = tu_get(dt, hb, i);
        if (!isfinite(x))
            num = INFINITY;
        num += (x - y) * (x - y);
        den += y * y;
    }
    free(ha);
    free(hb);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Random values U(-1, 1) on the device; *host keeps the host copy. */
static void *dev_random(bsa_dtype dt, int64_t n, void **host)
{
    void *h = tu_alloc(dt, n), *d = NULL;
    for (int64_t i = 0; i < n; i++)
        tu_set(dt, h, i, tu_uniform(-1.0, 1.0));
    CU(cudaMalloc(&d, n * tu_dtype_size(dt)));
    CU(cudaMemcpy(d, h, n * tu_dtype_size(dt), cudaMemcpyHostToDevice));
    *host = h;
    return d;
}

/* A path's outputs against the double-precision reference of single rows
 * (sampled_ref.h: the patterns' element definitions, not the library's
 * layout) on `samples` rows of each batch entry: o, dq and lse of query
 * rows, dv of key rows (dv only where its reference is cheap: local and
 * strided).  in: host q, k, v, dout; out: device o, dq, dk, dv; form
 * [B, T, H, D].  Errors: relative L2 over the samples, lse absolute. */
typedef struct sampled_err {
    double o, dq, dv, lse;
} sampled_err;

static sampled_err sampled_vs_double(bsa_pattern pat, int ctx_len, bsa_dtype dt, int64_t B,
                                     int64_t T, int64_t H, int64_t D, void *const in[4],
                                     void *const out[4], const float *lse_dev, int samples)
{
    const int64_t n = B * T * H * D;
    const size_t es = tu_dtype_size(dt);
    void *host[4];
    for (int i = 0; i < 4; i++) {
        host[i] = tu_xmalloc((size_t)n * es);
        CU(cudaMemcpy(host[i], out[i], (size_t)n * es, cudaMemcpyDeviceToHost));
    }
    float *lse = tu_xmalloc(sizeof(float) * (size_t)(B * H * T));
    CU(cudaMemcpy(lse, lse_dev, sizeof(float) * (size_t)(B * H * T), cudaMemcpyDeviceToHost));
    sr_err eo = {0}, edq = {0}, edv = {0};
    sampled_err r = {0};
    double o[256], dq[256], dv[256];
    for (int64_t b = 0; b < B; b++) {
        const int64_t off = b * T * H * D * (int64_t)es;
        sr_view v[8];
        for (int i = 0; i < 4; i++) {
            v[i] = (sr_view){dt, (const char *)in[i] + off, H * D, D};
            v[4 + i] = (sr_view){dt, (const char *)host[i] + off, H * D, D};
        }
        sr_problem p = {
            {pat, ctx_len, T}, v[0], v[1], v[2], v[3], (int)D, (float)(1.0 / sqrt((double)D))};
        for (int sidx = 0; sidx < samples; sidx++) {
            /* a third of the samples in the last 256 rows: the longest rows */
            int64_t t = sidx % 3 ? tu_randint(0, (int)T) : T - 1 - tu_randint(0, 256);
            int h = tu_randint(0, (int)H);
            double ref_lse = sr_query_row(&p, t, h, o, dq);
            sr_acc(&eo, &v[4], t, h, o, (int)D);
            sr_acc(&edq, &v[5], t, h, dq, (int)D);
            double e = fabs(lse[(b * H + h) * T + t] - ref_lse);
            r.lse = e > r.lse || e != e ? e : r.lse;
            if (pat != BSA_PATTERN_ALL) {
                sr_key_dv(&p, t, h, dv);
                sr_acc(&edv, &v[7], t, h, dv, (int)D);
            }
        }
    }
    r.o = sr_rel(&eo);
    r.dq = sr_rel(&edq);
    r.dv = pat != BSA_PATTERN_ALL ? sr_rel(&edv) : 0.0;
    for (int i = 0; i < 4; i++)
        free(host[i]);
    free(lse);
    return r;
}

/* Bounds of the sampled comparison [f16, bf16][o, dq, dv (relative L2),
 * lse (absolute)]: about 4x the worst error measured on an H100
 * (tests/README.md, "Tolerances"); sampled_worst keeps this run's largest
 * errors. */
static const double sampled_tol[2][4] = {{1.2e-3, 2e-3, 2e-3, 6e-6}, {1e-2, 1.2e-2, 1.2e-2, 6e-6}};
/* the lse bound of the reference path: its kernels sum a row's
 * exponentials in one fp32 chain, 4.6e-6 off at T = 16384 on an H100
 * (280889d) against 1.4e-6 on the tile paths */
static const double sampled_ref_lse_tol = 2e-5;
static double sampled_worst[2][4];

static void test_large_vs_reference(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    struct {
        bsa_pattern pat;
        int seq, block, ctx_, nv;
        int dim;
        bsa_dtype dt;
    } cases[] = {
        {BSA_PATTERN_ALL, 2048, 64, 0, 0, 128, BSA_DTYPE_F16},
        {BSA_PATTERN_STRIDED, 2048, 32, 64, 0, 64, BSA_DTYPE_BF16},
        /* T / L = 128: each 128-row chunk one residue class (the chunk
         * forward's evenly spaced rows, as in the bench) */
        {BSA_PATTERN_STRIDED, 4096, 32, 32, 0, 64, BSA_DTYPE_F16},
        {BSA_PATTERN_FIXED, 2048, 32, 128, 2, 64, BSA_DTYPE_F16},
        {BSA_PATTERN_LOCAL, 2048, 64, 256, 0, 128, BSA_DTYPE_BF16},
        {BSA_PATTERN_LOCAL, 2048, 64, 256, 0, 64, BSA_DTYPE_F16},
        {BSA_PATTERN_ALL, 2048, 64, 0, 0, 64, BSA_DTYPE_BF16},
        /* long sequences: every pipeline at its full length */
        {BSA_PATTERN_LOCAL, 16384, 64, 256, 0, 128, BSA_DTYPE_F16},
        {BSA_PATTERN_STRIDED, 16384, 32, 128, 0, 64, BSA_DTYPE_BF16},
        {BSA_PATTERN_ALL, 16384, 64, 0, 0, 128, BSA_DTYPE_F16},
    };
    const int sm90 = is_sm90();
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        bsa_preset ps = {
            cases[c].pat, cases[c].seq, cases[c].block, 4, cases[c].ctx_, cases[c].nv, 1, 0};
        bsa_layout_t lay = NULL;
        expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "large preset");
        int64_t B = 2, H = 4, T = cases[c].seq, D = cases[c].dim;
        bsa_dtype dt = cases[c].dt;
        bsa_attn_desc d;
        memset(&d, 0, sizeof d);
        d.dtype = dt;
        d.q = d.k = d.v = d.o = bsa_tensor_bthd(B, T, H, D);
        int64_t n = B * H * T * D;
        void *in_host[4];
        void *q = dev_random(dt, n, &in_host[0]), *k = dev_random(dt, n, &in_host[1]),
             *v = dev_random(dt, n, &in_host[2]), *dout = dev_random(dt, n, &in_host[3]);
        void *out[N_PATHS][4];
        float *lse[N_PATHS];
        int ran[N_PATHS] = {0};
        /* every path (Volta where it applies; the forced entries that may
         * decline skipped where they do) */
        for (int path = 0; path < N_PATHS; path++) {
            if (path == P_VOLTA && !(dt == BSA_DTYPE_F16 && D <= 128))
                continue;
            bsa_plan_t plan = NULL;
            bsa_status st = plan_forced(ctx, &plan, &d, lay, paths_[path].impl);
            if (paths_[path].may_decline && st == BSA_ERROR_UNSUPPORTED) {
                fprintf(stderr, "large %s T=%lld block=%d D=%lld %s: %s skipped: %s\n",
                        pattern_names[cases[c].pat], (long long)T, cases[c].block, (long long)D,
                        tu_dtype_name(dt), paths_[path].name, bsa_last_error());
                continue;
            }
            expect_ok(st, "large plan");
            const char *impl = NULL;
            expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
            if (paths_[path].impl)
                assert_true(names_entry(impl, &paths_[path]));
            if (path == P_DEFAULT && sm90 && cases[c].pat != BSA_PATTERN_STRIDED &&
                cases[c].pat != BSA_PATTERN_FIXED) {
                /* dense and local windows take the Hopper forward (the
                 * warp-specialised one: natural tiles, plain call) */
                const char *want = "fwd cuda-wgmma-sm90a-ws, bwd ";
                if (strncmp(impl, want, strlen(want)))
                    fprintf(stderr, "large default plan: %s\n", impl);
                assert_true(!strncmp(impl, want, strlen(want)));
            }
            if (path == P_DEFAULT && sm90 && cases[c].pat == BSA_PATTERN_STRIDED)
                /* chunk-local: T / L <= 128 */
                assert_string_equal(impl, "fwd cuda-wgmma-sm90a-chunk, bwd cuda-mma-sm80-chunk");
            size_t wsb = 0;
            void *ws = NULL;
            expect_ok(bsa_plan_workspace_size(plan, &wsb), "ws");
            CU(cudaMalloc(&ws, wsb ? wsb : 1));
            for (int i = 0; i < 4; i++) {
                CU(cudaMalloc(&out[path][i], n * tu_dtype_size(dt)));
                CU(cudaMemset(out[path][i], 0xff, n * tu_dtype_size(dt))); /* NaN */
            }
            CU(cudaMalloc((void **)&lse[path], B * H * T * 4));
            ran[path] = 1;
            bsa_fwd_args fa = {q, k, v, out[path][0], lse[path]};
            expect_ok(bsa_forward(plan, &fa, ws, wsb, NULL), "large forward");
            bsa_bwd_args ba = {
                q, k, v, out[path][0], lse[path], dout, out[path][1], out[path][2], out[path][3]};
            expect_ok(bsa_backward(plan, &ba, ws, wsb, NULL), "large backward");
            CU(cudaDeviceSynchronize());
            cudaFree(ws);
            bsa_plan_destroy(plan);
        }
        assert_true(ran[P_REF]);
        /* every path, the reference kernels included, against the double
         * reference of sampled rows (the fixed pattern has none: there
         * the paths meet the reference kernels, which the oracle suites
         * check at small sizes) */
        const int sampled = cases[c].pat != BSA_PATTERN_FIXED;
        const int di = dt == BSA_DTYPE_F16 ? 0 : 1;
        for (int path = 0; path < N_PATHS && sampled; path++) {
            if (!ran[path])
                continue;
            sampled_err e = sampled_vs_double(cases[c].pat, cases[c].ctx_, dt, B, T, H, D, in_host,
                                              out[path], lse[path], 24);
            /* (all: a key row's dV needs every query's lse, O(T^2 D) on
             * the host; not sampled, printed as "-") */
            char dv_text[16] = "-";
            if (cases[c].pat != BSA_PATTERN_ALL)
                snprintf(dv_text, sizeof dv_text, "%.2e", e.dv);
            fprintf(stderr,
                    "large %s T=%lld block=%d D=%lld %s: %s vs double (24 sampled rows a batch "
                    "entry): o %.2e dq %.2e dv %s lse %.2e\n",
                    pattern_names[cases[c].pat], (long long)T, cases[c].block, (long long)D,
                    tu_dtype_name(dt), paths_[path].name, e.o, e.dq, dv_text, e.lse);
            sampled_worst[di][0] = fmax(sampled_worst[di][0], e.o);
            sampled_worst[di][1] = fmax(sampled_worst[di][1], e.dq);
            sampled_worst[di][2] = fmax(sampled_worst[di][2], e.dv);
            sampled_worst[di][3] = fmax(sampled_worst[di][3], e.lse);
            assert_true(e.o <= sampled_tol[di][0]);
            assert_true(e.dq <= sampled_tol[di][1]);
            assert_true(e.dv <= sampled_tol[di][2]);
            assert_true(e.lse <= (path == P_REF ? sampled_ref_lse_tol : sampled_tol[di][3]));
        }
        for (int i = 0; i < 4; i++)
            free(in_host[i]);
        const char *names[4] = {"o", "dq", "dk", "dv"};
        double lim = dt == BSA_DTYPE_F16 ? 1e-2 : 5e-2;
        for (int path = 0; path < N_PATHS && !sampled; path++) {
            for (int i = 0; i < 4 && ran[path] && path != P_REF; i++) {
                double e = rel_l2_dev(dt, out[path][i], out[P_REF][i], n);
                fprintf(stderr,
                        "large %s T=%lld block=%d D=%lld %s: %s vs reference %s rel L2 %.2e\n",
                        pattern_names[cases[c].pat], (long long)T, cases[c].block, (long long)D,
                        tu_dtype_name(dt), paths_[path].name, names[i], e);
                assert_true(e <= lim);
            }
        }
        for (int path = 0; path < N_PATHS; path++) {
            if (!ran[path])
                continue;
            for (int i = 0; i < 4; i++)
                cudaFree(out[path][i]);
            cudaFree(lse[path]);
        }
        cudaFree(q);
        cudaFree(k);
        cudaFree(v);
        cudaFree(dout);
        bsa_layout_destroy(lay);
    }
    bsa_context_destroy(ctx);
}

/* ------------------------------------------------- graphs, determinism */

/* Forward + backward captured in a CUDA graph on a user stream give the
 * same bits as direct calls; two direct backward runs give the same bits. */
static void test_graph_and_determinism(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    /* fixed: the list's choice, the tile kernels (forced), the block-row
     * kernels (forced) and, on sm_90, the wgmma kernels (forced); strided
     * (T / L = 32): the chunk kernels; a local window: the warp-specialised
     * forward on sm_90 (forced).  A forced entry that may decline is
     * skipped where it does. */
    const bsa_preset fixed = {BSA_PATTERN_FIXED, 1024, 32, 4, 128, 2, 1, 0};
    const struct {
        bsa_preset ps;
        const struct path_info *path;
    } runs[6] = {
        {fixed, &paths_[P_DEFAULT]},
        {fixed, &paths_[P_MMA]},
        {{BSA_PATTERN_STRIDED, 1024, 32, 4, 32, 0, 1, 0}, &paths_[P_DEFAULT]},
        {fixed, &paths_[P_BLOCKROW]},
        {fixed, &paths_[P_WGMMA]},
        {{BSA_PATTERN_LOCAL, 1024, 64, 4, 256, 0, 0, 0}, &paths_[P_WGMMA_WS]},
    };
    for (int pi = 0; pi < 6; pi++) {
        const struct path_info *path = runs[pi].path;
        bsa_layout_t lay = NULL;
        expect_ok(bsa_layout_create_preset(ctx, &lay, &runs[pi].ps), "preset");
        for (int di = 1; di < 3; di++) {
            ac_problem p;
            bsa_attn_desc d;
            expect_ok(ac_problem_init(&p, lay, NULL, dtypes[di], 2, 4, 64, AC_BTHD, 0.0f, &d),
                      "init");
            bsa_plan_t plan = NULL;
            bsa_status st = plan_forced(ctx, &plan, &d, lay, path->impl);
            /* (the block-row entry takes this layout wherever mma.sync runs) */
            if (path->may_decline && path != &paths_[P_BLOCKROW] && st == BSA_ERROR_UNSUPPORTED) {
                fprintf(stderr, "graph and determinism [%s]: skipped: %s\n", path->name,
                        bsa_last_error());
                ac_problem_free(&p);
                continue;
            }
            expect_ok(st, "plan");
            const char *impl = NULL;
            expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
            if (path->impl)
                assert_true(names_entry(impl, path));
            if (path == &paths_[P_BLOCKROW])
                assert_string_equal(impl, "cuda-mma-sm80-blockrow");
            dev_problem dp;
            dev_init(&dp, &p, plan);
            cudaStream_t s;
            CU(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
            expect_ok(gpu_forward(plan, &p, &dp, s), "forward");
            expect_ok(gpu_backward(plan, &p, &dp, s), "backward");
            size_t ob = tensor_bytes(&p.o), gb = tensor_bytes(&p.dq);
            void *ref_o = tu_xmalloc(ob), *ref_dq = tu_xmalloc(gb), *ref_dk = tu_xmalloc(gb);
            memcpy(ref_o, p.o.data, ob);
            memcpy(ref_dq, p.dq.data, gb);
            memcpy(ref_dk, p.dk.data, gb);
            /* determinism: a second direct backward */
            expect_ok(gpu_backward(plan, &p, &dp, s), "backward again");
            assert_memory_equal(ref_dq, p.dq.data, gb);
            assert_memory_equal(ref_dk, p.dk.data, gb);

            /* graph capture */
            dev_poison(dp.o, &p.o);
            dev_poison(dp.dq, &p.dq);
            dev_poison(dp.dk, &p.dk);
            cudaGraph_t graph;
            cudaGraphExec_t exec;
            CU(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
            bsa_fwd_args fa = {dp.q, dp.k, dp.v, dp.o, dp.lse};
            bsa_status st1 = bsa_forward(plan, &fa, dp.ws, dp.ws_bytes, s);
            bsa_bwd_args ba = {dp.q, dp.k, dp.v, dp.o, dp.lse, dp.dout, dp.dq, dp.dk, dp.dv};
            bsa_status st2 = bsa_backward(plan, &ba, dp.ws, dp.ws_bytes, s);
            CU(cudaStreamEndCapture(s, &graph));
            expect_ok(st1, "captured forward");
            expect_ok(st2, "captured backward");
            CU(cudaGraphInstantiateWithFlags(&exec, graph, 0)); /* CUDA 11.4+ and 12+ alike */
            for (int rep = 0; rep < 2; rep++)
                CU(cudaGraphLaunch(exec, s));
            CU(cudaStreamSynchronize(s));
            dev_download(&p.o, dp.o);
            dev_download(&p.dq, dp.dq);
            dev_download(&p.dk, dp.dk);
            assert_memory_equal(ref_o, p.o.data, ob);
            assert_memory_equal(ref_dq, p.dq.data, gb);
            assert_memory_equal(ref_dk, p.dk.data, gb);
            CU(cudaGraphExecDestroy(exec));
            CU(cudaGraphDestroy(graph));
            CU(cudaStreamDestroy(s));
            free(ref_o);
            free(ref_dq);
            free(ref_dk);
            dev_free(&dp);
            bsa_plan_destroy(plan);
            ac_problem_free(&p);
        }
        bsa_layout_destroy(lay);
    }
    bsa_context_destroy(ctx);
}

/* ------------------------------------------------- errors */

static void test_errors(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_backend be;
    expect_ok(bsa_context_backend(ctx, &be), "backend");
    assert_int_equal(be, BSA_BACKEND_CUDA);
    bsa_preset ps = {BSA_PATTERN_ALL, 256, 32, 2, 0, 0, 0, 0};
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "preset");
    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = BSA_DTYPE_F16;
    d.q = d.k = d.v = d.o = bsa_tensor_bthd(1, 256, 2, 64);
    /* an unknown forced entry is refused with the known names */
    bsa_plan_t plan = NULL;
    bsa_status st = plan_forced(ctx, &plan, &d, lay, "bogus");
    assert_int_equal(st, BSA_ERROR_UNSUPPORTED);
    assert_null(plan);
    assert_non_null(strstr(bsa_last_error(), "BSA_IMPL"));
    assert_non_null(strstr(bsa_last_error(), "known:"));
    /* forcing mma on f32 is declined with the pass and the reason */
    d.dtype = BSA_DTYPE_F32;
    st = plan_forced(ctx, &plan, &d, lay, "cuda-mma-sm80");
    assert_int_equal(st, BSA_ERROR_UNSUPPORTED);
    const char *declined = "BSA_IMPL=cuda-mma-sm80 declined the forward pass: ";
    const char *msg = strstr(bsa_last_error(), declined);
    assert_non_null(msg);
    assert_true(strlen(msg) > strlen(declined)); /* a reason follows */
    /* the chunk kernels decline a layout that is not chunk-local */
    d.dtype = BSA_DTYPE_F16;
    st = plan_forced(ctx, &plan, &d, lay, "cuda-mma-sm80-chunk");
    assert_int_equal(st, BSA_ERROR_UNSUPPORTED);
    assert_non_null(
        strstr(bsa_last_error(), "BSA_IMPL=cuda-mma-sm80-chunk declined the forward pass"));
    /* the wgmma kernels (and the warp-specialised forward) run on compute
     * capability 9.0 only, and decline elsewhere with the reason */
    const int sm90 = is_sm90();
    const struct path_info *hopper[2] = {&paths_[P_WGMMA], &paths_[P_WGMMA_WS]};
    for (int i = 0; i < 2; i++) {
        st = plan_forced(ctx, &plan, &d, lay, hopper[i]->impl);
        if (sm90) {
            expect_ok(st, "wgmma plan on sm_90");
            const char *impl = NULL;
            expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
            if (!names_entry(impl, hopper[i]))
                fprintf(stderr, "forced %s: the plan names %s\n", hopper[i]->impl, impl);
            assert_true(names_entry(impl, hopper[i]));
            bsa_plan_destroy(plan);
        } else {
            assert_int_equal(st, BSA_ERROR_UNSUPPORTED);
            assert_non_null(strstr(bsa_last_error(), "9.0"));
        }
    }
    /* the Volta path declines bf16 with the reason */
    d.dtype = BSA_DTYPE_BF16;
    st = plan_forced(ctx, &plan, &d, lay, "cuda-wmma-sm70");
    assert_int_equal(st, BSA_ERROR_UNSUPPORTED);
    assert_non_null(strstr(bsa_last_error(), "f16"));
    /* backward without workspace */
    d.dtype = BSA_DTYPE_F16;
    expect_ok(plan_forced(ctx, &plan, &d, lay, NULL), "plan");
    size_t wsb = 0;
    expect_ok(bsa_plan_workspace_size(plan, &wsb), "ws");
    assert_true(wsb >= 256 * 2 * sizeof(float));
    void *buf = NULL;
    CU(cudaMalloc(&buf, 256 * 2 * 64 * 2));
    float *lse = NULL;
    CU(cudaMalloc((void **)&lse, 256 * 2 * 4));
    bsa_bwd_args ba = {buf, buf, buf, buf, lse, buf, buf, buf, buf};
    st = bsa_backward(plan, &ba, NULL, 0, NULL);
    assert_int_equal(st, BSA_ERROR_WORKSPACE);
    cudaFree(buf);
    cudaFree(lse);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

/* ------------------------------------------------- alignment, explanation */

/* Whether msg names the tensor as a word of its own ("args->dv = ...",
 * "dv (0x...)"): name not inside a longer identifier. */
static int names_tensor(const char *msg, const char *name)
{
    const size_t n = strlen(name);
    for (const char *at = strstr(msg, name); at; at = strstr(at + 1, name)) {
        const char before = at == msg ? ' ' : at[-1], after = at[n];
        const int word_before =
            (before >= 'a' && before <= 'z') || before == '_' || (before >= '0' && before <= '9');
        const int word_after =
            (after >= 'a' && after <= 'z') || after == '_' || (after >= '0' && after <= '9');
        if (!word_before && !word_after)
            return 1;
    }
    return 0;
}

/* A device buffer of bytes + 16, holding src's bytes (device) at offset
 * 2: 2-byte aligned, never 16-byte aligned. */
static void *dev_offset_copy(void **base, const void *src, size_t bytes)
{
    CU(cudaMalloc(base, bytes + 16));
    char *at = (char *)*base + 2;
    if (src)
        CU(cudaMemcpy(at, src, bytes, cudaMemcpyDeviceToDevice));
    return at;
}

/* A tensor-core plan needs every tensor pointer 16-byte aligned: a
 * misaligned one (still 2-byte aligned) fails the call with the tensor
 * named and writes nothing; the reference kernels need the element size
 * only, and give the aligned call's bits on the same data. */
static void test_misaligned_pointers(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_preset ps = make_preset(BSA_PATTERN_LOCAL, 32, 2, 0);
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "local preset");
    ac_problem p;
    bsa_attn_desc d;
    expect_ok(ac_problem_init(&p, lay, NULL, BSA_DTYPE_F16, 2, 2, 64, AC_BTHD, 0.0f, &d), "init");
    bsa_plan_t plan = NULL;
    expect_ok(plan_forced(ctx, &plan, &d, lay, NULL), "plan");
    const char *impl = NULL;
    expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
    assert_true(tensor_core_name(impl));
    size_t align = 0;
    expect_ok(bsa_plan_alignment(plan, &align), "alignment");
    assert_int_equal(align, 16);
    dev_problem dp;
    dev_init(&dp, &p, plan);
    const size_t qb = tensor_bytes(&p.q), ob = tensor_bytes(&p.o), gb = tensor_bytes(&p.dq);
    const size_t most = ob > gb ? ob : gb;
    void *q_base = NULL, *dv_base = NULL;
    void *q_mis = dev_offset_copy(&q_base, dp.q, qb);
    void *dv_mis = dev_offset_copy(&dv_base, NULL, tensor_bytes(&p.dv));
    void *before = tu_xmalloc(most), *after = tu_xmalloc(most);

    /* forward with q misaligned: refused, o untouched */
    dev_poison(dp.o, &p.o);
    CU(cudaMemcpy(before, dp.o, ob, cudaMemcpyDeviceToHost));
    bsa_fwd_args fa = {q_mis, dp.k, dp.v, dp.o, dp.lse};
    bsa_status st = bsa_forward(plan, &fa, dp.ws, dp.ws_bytes, NULL);
    CU(cudaDeviceSynchronize());
    fprintf(stderr, "misaligned q: %s: %s\n", bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_ERROR_INVALID_ARGUMENT);
    assert_true(names_tensor(bsa_last_error(), "q"));
    assert_non_null(strstr(bsa_last_error(), "16-byte"));
    CU(cudaMemcpy(after, dp.o, ob, cudaMemcpyDeviceToHost));
    assert_memory_equal(before, after, ob);

    /* backward with dv misaligned: refused, dq untouched */
    expect_ok(gpu_forward(plan, &p, &dp, 0), "aligned forward");
    dev_poison(dp.dq, &p.dq);
    CU(cudaMemcpy(before, dp.dq, gb, cudaMemcpyDeviceToHost));
    bsa_bwd_args ba = {dp.q, dp.k, dp.v, dp.o, dp.lse, dp.dout, dp.dq, dp.dk, dv_mis};
    st = bsa_backward(plan, &ba, dp.ws, dp.ws_bytes, NULL);
    CU(cudaDeviceSynchronize());
    fprintf(stderr, "misaligned dv: %s: %s\n", bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_ERROR_INVALID_ARGUMENT);
    assert_true(names_tensor(bsa_last_error(), "dv"));
    assert_non_null(strstr(bsa_last_error(), "16-byte"));
    CU(cudaMemcpy(after, dp.dq, gb, cudaMemcpyDeviceToHost));
    assert_memory_equal(before, after, gb);
    dev_free(&dp);
    bsa_plan_destroy(plan);

    /* the reference kernels: the element size; the misaligned q runs */
    expect_ok(plan_forced(ctx, &plan, &d, lay, "cuda-reference"), "reference plan");
    expect_ok(bsa_plan_alignment(plan, &align), "alignment");
    assert_int_equal(align, 2);
    dev_init(&dp, &p, plan);
    expect_ok(gpu_forward(plan, &p, &dp, 0), "aligned reference forward");
    float *lse_ref = tu_xmalloc((size_t)p.n_lse * sizeof(float));
    CU(cudaMemcpy(before, dp.o, ob, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(lse_ref, dp.lse, (size_t)p.n_lse * sizeof(float), cudaMemcpyDeviceToHost));
    dev_poison(dp.o, &p.o);
    CU(cudaMemset(dp.lse, 0xff, (size_t)p.n_lse * sizeof(float)));
    fa.q = q_mis, fa.o = dp.o, fa.lse = dp.lse, fa.k = dp.k, fa.v = dp.v;
    expect_ok(bsa_forward(plan, &fa, dp.ws, dp.ws_bytes, NULL), "misaligned reference forward");
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(after, dp.o, ob, cudaMemcpyDeviceToHost));
    assert_memory_equal(before, after, ob);
    float *lse_mis = tu_xmalloc((size_t)p.n_lse * sizeof(float));
    CU(cudaMemcpy(lse_mis, dp.lse, (size_t)p.n_lse * sizeof(float), cudaMemcpyDeviceToHost));
    assert_memory_equal(lse_ref, lse_mis, (size_t)p.n_lse * sizeof(float));
    free(lse_ref);
    free(lse_mis);
    free(before);
    free(after);
    cudaFree(q_base);
    cudaFree(dv_base);
    dev_free(&dp);
    bsa_plan_destroy(plan);
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

/* bsa_plan_explain: both passes and the chosen name; a forced entry says
 * so; an unknown entry fails plan creation with the known names. */
static void test_explain_text(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bsa_context_t ctx = new_ctx();
    bsa_preset ps = make_preset(BSA_PATTERN_FIXED, 32, 2, 0);
    bsa_layout_t lay = NULL;
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "fixed preset");
    ac_problem p;
    bsa_attn_desc d;
    expect_ok(ac_problem_init(&p, lay, NULL, BSA_DTYPE_BF16, 1, 2, 64, AC_BHTD, 0.0f, &d), "init");
    const char *forced[2] = {NULL, "cuda-mma-sm80"};
    for (int f = 0; f < 2; f++) {
        bsa_plan_t plan = NULL;
        expect_ok(plan_forced(ctx, &plan, &d, lay, forced[f]), "plan");
        const char *impl = NULL;
        expect_ok(bsa_plan_implementation(plan, &impl), "implementation");
        size_t len = 0;
        expect_ok(bsa_plan_explain(plan, NULL, 0, &len), "explain length");
        assert_true(len > 0);
        char *text = tu_xmalloc(len + 1);
        size_t len2 = 0;
        expect_ok(bsa_plan_explain(plan, text, len + 1, &len2), "explain");
        assert_int_equal(len2, len);
        assert_int_equal(strlen(text), len);
        fprintf(stderr, "%s plan, %s:\n%s", forced[f] ? forced[f] : "default", impl, text);
        assert_non_null(strstr(text, "forward:"));
        assert_non_null(strstr(text, "backward:"));
        assert_non_null(strstr(text, impl));
        if (forced[f]) {
            assert_string_equal(impl, forced[f]);
            assert_non_null(strstr(text, "forced"));
        }
        /* a short buffer: truncated, NUL-terminated */
        char small[8];
        expect_ok(bsa_plan_explain(plan, small, sizeof small, &len2), "explain truncated");
        assert_int_equal(len2, len);
        assert_int_equal(strlen(small), sizeof small - 1);
        assert_memory_equal(small, text, sizeof small - 1);
        free(text);
        bsa_plan_destroy(plan);
    }
    bsa_plan_t plan = NULL;
    bsa_status st = plan_forced(ctx, &plan, &d, lay, "no-such-entry");
    assert_int_equal(st, BSA_ERROR_UNSUPPORTED);
    assert_null(plan);
    assert_non_null(strstr(bsa_last_error(), "known:"));
    assert_non_null(strstr(bsa_last_error(), "BSA_IMPL"));
    ac_problem_free(&p);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

/* Each entry the device can run ran at least one case against the oracle:
 * an entry that declined every case (or a list that stopped choosing it)
 * would leave its kernels unchecked while the suite passed.  The wgmma
 * entries count on sm_90 only. */
static void test_every_entry_ran(void **state)
{
    (void)state;
    const int sm90 = is_sm90();
    for (int path = 0; path < N_PATHS; path++) {
        const char *impl = paths_[path].impl;
        if (!impl || (strstr(impl, "wgmma") && !sm90))
            continue;
        if (!cases_run[path])
            fprintf(stderr, "%s (%s): no case ran\n", paths_[path].name, impl);
        assert_true(cases_run[path] > 0);
    }
    if (sm90) {
        fprintf(stderr, "cuda-wgmma-sm90a-chunk: %d cases ran\n", wgmma_chunk_runs);
        assert_true(wgmma_chunk_runs > 0);
    }
}

static int print_summary(void **state)
{
    (void)state;
    for (int di = 0; di < 2; di++)
        fprintf(stderr,
                "sampled rows vs double, worst %s: o %.2e dq %.2e dv %.2e lse %.2e (bounds %.0e "
                "%.0e %.0e %.0e)\n",
                di ? "bf16" : "f16", sampled_worst[di][0], sampled_worst[di][1],
                sampled_worst[di][2], sampled_worst[di][3], sampled_tol[di][0], sampled_tol[di][1],
                sampled_tol[di][2], sampled_tol[di][3]);
    for (int path = 0; path < N_PATHS; path++) {
        ac_print_worst(paths_[path].name, cases_run[path], worst[path]);
        if (cases_skipped[path])
            fprintf(stderr, "%s (%s): %d cases run, %d skipped (the entry declined)\n",
                    paths_[path].name, paths_[path].impl, cases_run[path], cases_skipped[path]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    exit_skipped_without_gpu("test_cuda");
    fprintf(stderr, "test_cuda: seed %llu (BSA_TEST_SEED reproduces)\n",
            (unsigned long long)tu_seed());
    /* BSA_CUDA_TEST_QUICK=1: the reduced set for compute-sanitizer */
    const char *quick = getenv("BSA_CUDA_TEST_QUICK");
    if (quick && *quick == '1') {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_random_callbacks), cmocka_unit_test(test_cross_attention),
            cmocka_unit_test(test_padded),           cmocka_unit_test(test_gathered_key_tiles),
            cmocka_unit_test(test_chunk_local),      cmocka_unit_test(test_predicate_tiles),
            cmocka_unit_test(test_block_rows),       cmocka_unit_test(test_misaligned_pointers),
        };
        return cmocka_run_group_tests(tests, NULL, print_summary);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_misaligned_pointers),
        cmocka_unit_test(test_explain_text),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_head_dims),
        cmocka_unit_test(test_padded),
        cmocka_unit_test(test_cross_attention),
        cmocka_unit_test(test_predicate_tiles),
        cmocka_unit_test(test_random_callbacks),
        cmocka_unit_test(test_gathered_key_tiles),
        cmocka_unit_test(test_chunk_local),
        cmocka_unit_test(test_block_rows),
        cmocka_unit_test(test_large_vs_reference),
        cmocka_unit_test(test_graph_and_determinism),
        cmocka_unit_test(test_every_entry_ran),
    };
    return cmocka_run_group_tests(tests, NULL, print_summary);
}
