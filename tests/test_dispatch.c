/*
 * The GPU implementation list (backends/gpu/dispatch.c) on machines without
 * a GPU: the selection for the cards the README names, from device
 * profiles written here (vendor, architecture, shared memory a block, SMs,
 * wave width), over f16 / bf16, head dims 32..256, layout blocks 8..128, the
 * seed patterns and random layouts drawn fresh each run (BSA_TEST_SEED
 * replays).  The layouts' statistics come from the real table builder
 * (tile_tables.cpp) on layouts created through the public API.
 *
 * What it holds the list to is the README's promise, written out below as
 * closed rules (promise()): where the README promises tensor-core speed, a
 * tensor-core entry runs, never the reference kernels; every kernel a plan
 * runs fits the card's shared memory (sizes recomputed here from the kernels'
 * own formulas, not read from the list); forcing, declining and the
 * explanation behave as bsa.h says.
 */
#include "backends/gpu/dispatch.h"
#include "backends/gpu/tile_tables.h"
#include "bsa.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- the cards */

enum {
    SM70,
    SM75,
    SM80,
    SM86,
    SM89,
    SM90,
    SM100,
    SM120,
    GFX90A,
    GFX942,
    GFX950,
    GFX1030,
    GFX1100,
    GFX1201,
    N_CARDS
};

/* Opt-in shared memory / LDS a block (vendor data sheets and CUDA's
 * occupancy tables: 96, 64, 163, 99, 99, 227, 227, 99 KB; 64 KB of LDS a
 * workgroup on AMD, 160 KB on gfx950 / MI355X).  AMD: MI250X (gfx90a),
 * MI300X (gfx942), MI355X (gfx950), RX 6800 XT (gfx1030), RX 7900 XTX
 * (gfx1100), RX 9070 XT (gfx1201); HIP runs RDNA in wave32.  Blackwell (sm_100: B200, 148 SMs;
 * sm_120: RTX 5090, 170 SMs) as a default build sees it: the library holds the sm_90a kernels (they
 * are not for these cards) and the driver the tensor-map encoder. */
static const bsa_gpu_profile cards[N_CARDS] = {
    {BSA_GPU_NVIDIA, 70, "sm_70", 98304, 80, 32, 0},
    {BSA_GPU_NVIDIA, 75, "sm_75", 65536, 40, 32, 0},
    {BSA_GPU_NVIDIA, 80, "sm_80", 166912, 108, 32, 0},
    {BSA_GPU_NVIDIA, 86, "sm_86", 101376, 84, 32, 0},
    {BSA_GPU_NVIDIA, 89, "sm_89", 101376, 58, 32, 0},
    {BSA_GPU_NVIDIA, 90, "sm_90", 232448, 132, 32, BSA_GPU_HAS_WGMMA | BSA_GPU_HAS_TMA},
    {BSA_GPU_NVIDIA, 100, "sm_100", 232448, 148, 32, BSA_GPU_HAS_WGMMA | BSA_GPU_HAS_TMA},
    {BSA_GPU_NVIDIA, 120, "sm_120", 101376, 170, 32, BSA_GPU_HAS_WGMMA | BSA_GPU_HAS_TMA},
    {BSA_GPU_AMD, 0, "gfx90a:sramecc+:xnack-", 65536, 104, 64, 0},
    {BSA_GPU_AMD, 0, "gfx942:sramecc+:xnack-", 65536, 304, 64, 0},
    {BSA_GPU_AMD, 0, "gfx950:sramecc+:xnack-", 163840, 256, 64, 0},
    {BSA_GPU_AMD, 0, "gfx1030", 65536, 72, 32, 0},
    {BSA_GPU_AMD, 0, "gfx1100", 65536, 96, 32, 0},
    {BSA_GPU_AMD, 0, "gfx1201", 65536, 64, 32, 0},
};

static bsa_context_t ctx;

static int setup(void **state)
{
    (void)state;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 1};
    return bsa_context_create(&ctx, &cp) == BSA_SUCCESS ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    bsa_context_destroy(ctx);
    return 0;
}

/* A contiguous [batch, heads, time, dim] problem on a layout's statistics. */
static bsa_gpu_problem problem(const bsa_gpu_layout_stats *st, int seq, bsa_dtype dt, int dim,
                               int heads, int kv_heads, unsigned flags)
{
    bsa_shape s;
    memset(&s, 0, sizeof s);
    s.batch = 2;
    s.heads = heads;
    s.kv_heads = kv_heads;
    s.seq_q = s.seq_k = seq;
    s.head_dim = s.v_dim = dim;
    s.dtype = dt;
    s.scale = 0.125f;
    int64_t *t[4] = {s.q_stride, s.k_stride, s.v_stride, s.o_stride};
    for (int i = 0; i < 4; i++) {
        int64_t h = i == 1 || i == 2 ? kv_heads : heads;
        t[i][3] = 1;
        t[i][2] = dim;
        t[i][1] = (int64_t)seq * dim;
        t[i][0] = h * seq * dim;
    }
    bsa_gpu_problem pb;
    bsa_gpu_problem_init(&pb, &s, flags, st);
    return pb;
}

static bsa_gpu_layout_stats stats_of(bsa_layout_t lay)
{
    bsa_gpu_layout_stats st;
    assert_int_equal(bsa_gpu_layout_stats_of(lay, &st), BSA_SUCCESS);
    return st;
}

static bsa_layout_t preset(bsa_pattern pat, int seq, int block, int heads, int c, int nv)
{
    bsa_preset ps;
    memset(&ps, 0, sizeof ps);
    ps.pattern = pat;
    ps.seq = seq;
    ps.block = block;
    ps.heads = heads;
    ps.ctx = c;
    ps.num_verts = nv;
    ps.vertsize = 1;
    bsa_layout_t lay = NULL;
    assert_int_equal(bsa_layout_create_preset(ctx, &lay, &ps), BSA_SUCCESS);
    return lay;
}

/* Random kept blocks (density d), the diagonal kept so no row is empty. */
static bsa_layout_t random_layout(int block, int nb, double d)
{
    uint8_t *blk = tu_xmalloc((size_t)nb * nb);
    for (int i = 0; i < nb * nb; i++)
        blk[i] = tu_uniform(0.0, 1.0) < d || i / nb == i % nb;
    bsa_layout_desc ld = {block, 1, nb, nb, BSA_PRED_NONE, 0, 0};
    bsa_layout_t lay = NULL;
    assert_int_equal(bsa_layout_create_dense(ctx, &lay, &ld, blk), BSA_SUCCESS);
    free(blk);
    return lay;
}

/* ------------------------------------------------------- closed forms */

static int pad(int d)
{
    return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : 256;
}

/* The kernels' shared memory, written out from their own formulas
 * (tc_kernels.cuh, brow_kernels.cuh, chunk_kernels.cuh, hopper/,
 * volta_kernels.cuh) rather than read from the list's table. */
/* target: 0 NVIDIA, 1 AMD with MFMA, 2 AMD without */
static size_t smem_expected(bsa_gpu_kernel k, int dp, int target)
{
    const size_t te = (size_t)64 * (dp + 8) * 2; /* a padded 64-row tile, bytes */
    const size_t hw = (size_t)64 * dp * 2;       /* a Hopper 64-row tile */
    const int st = target ? (dp <= 64 ? 2 : 1) : (dp <= 128 ? 2 : 1);
    /* AMD at 128: the backward's own-row tiles (Q, dO / K, V) in registers;
     * without MFMA only one of them (dO / V) */
    const size_t own = target && dp == 128 ? (target == 2 ? 1 : 0) : 2;
    switch (k.family) {
    case BSA_FAM_TILE:
        if (k.pass == BSA_PASS_FWD)
            return k.rows == 128 ? 6 * te : (1 + 2 * st) * te;
        if (k.pass == BSA_PASS_DQ)
            return (own + 2 * (dp == 128 ? 1 : st)) * te;
        return (own + 2 * (size_t)k.stages) * te + 2 * (size_t)k.stages * 64 * 4;
    case BSA_FAM_BROW:
        return k.pass == BSA_PASS_FWD ? 4 * te : k.pass == BSA_PASS_DQ ? 8 * te : 10 * te + 2048;
    case BSA_FAM_CHUNK:
        return k.pass == BSA_PASS_FWD ? 6 * te + 1024 : 8 * te + 2048;
    case BSA_FAM_WGMMA:
        return k.pass == BSA_PASS_FWD  ? 10 * hw + 1024
               : k.pass == BSA_PASS_DQ ? 10 * hw + 1024
                                       : 12 * hw + 2048 + 1024;
    case BSA_FAM_WGMMA_WS:
        return 10 * hw + 80 + 1024;
    case BSA_FAM_WGMMA_CHUNK:
        return 6 * hw + 1024 + 1024;
    case BSA_FAM_VOLTA: {
        const size_t scratch = 16 * 64 * 4 * 4;
        const size_t fwd = (te > scratch ? te : scratch) + 2 * te + (size_t)4 * 16 * dp * 4;
        /* above head dim 64 dQ's dO tile is not under the scratch */
        const size_t dq_a = (dp > 64 ? 1 : 2) * te;
        const size_t dq = (dq_a > 2 * scratch ? dq_a : 2 * scratch) + (dp > 64 ? 3 : 2) * te;
        const size_t dkdv = 4 * te + 4 * 16 * 64 * 6 + 2 * 64 * 4;
        return k.pass == BSA_PASS_FWD ? fwd : k.pass == BSA_PASS_DQ ? dq : dkdv;
    }
    default:
        return 0;
    }
}

static int entry_index(const char *name)
{
    for (int i = 0; i < bsa_gpu_entry_count(); i++)
        if (!strcmp(bsa_gpu_entry_name(i), name))
            return i;
    return -1;
}

/* What the README's Backends section promises for a card, dtype, head dim
 * and pass: 2 = a tensor-core entry; 1 = the tile kernels on scalar FMA
 * (RDNA2: no matrix instructions); 0 = the reference kernels. */
static int promise(int card, bsa_dtype dt, int dim, int bwd)
{
    const int dp = pad(dim);
    switch (card) {
    case SM70: /* the Volta path: f16 up to head dim 128 (96 KB) */
        return dt == BSA_DTYPE_F16 && dp <= 128 ? 2 : 0;
    case SM75: /* the same on 64 KB: up to head dim 64 */
        return dt == BSA_DTYPE_F16 && dp <= 64 ? 2 : 0;
    case SM80:
    case SM90:
    case SM100: /* mma.sync / wgmma: every head dim up to 256 */
        return 2;
    case SM86:
    case SM89:
    case SM120: /* 99 KB a block: forward up to 256, backward up to 128 */
        return !bwd || dp <= 128 ? 2 : 0;
    case GFX90A:
    case GFX942:
    case GFX950: /* MFMA: forward and backward up to 128 (64 KB of LDS) */
        return dp <= 128 ? 2 : 0;
    case GFX1100:
    case GFX1201: /* WMMA (wave32): forward and backward up to 128 */
        return dp <= 128 ? 2 : 0;
    default: /* gfx1030: the same tiles on FMA, backward up to 64 */
        return dp <= (bwd ? 64 : 128) ? 1 : 0;
    }
}

/* The tensor-core entry an AMD card's promise means (NULL: NVIDIA). */
static const char *amd_entry(int card)
{
    return card == GFX90A || card == GFX942 || card == GFX950 ? "hip-mfma"
           : card == GFX1100 || card == GFX1201               ? "hip-wmma"
                                                              : NULL;
}

static const char *const pass_name[2] = {"forward", "backward"};

/* Selects and checks one problem on one card against the promise. */
static void check_choice(int card, const bsa_gpu_problem *pb, int dim, const char *label)
{
    const bsa_gpu_profile *pf = &cards[card];
    bsa_gpu_choice ch;
    char explain[16384];
    bsa_status st = bsa_gpu_select(pb, pf, NULL, 0, &ch, explain, sizeof explain);
    if (st != BSA_SUCCESS)
        fail_msg("%s on %s: %s", label, pf->arch, bsa_last_error());
    for (int bwd = 0; bwd < 2; bwd++) {
        const bsa_gpu_pass_plan *pp = bwd ? &ch.bwd : &ch.fwd;
        const char *name = NULL;
        const char *n = ch.name;
        /* the entry's name: the whole name, or its half of "fwd A, bwd B" */
        char buf[128];
        if (!strncmp(n, "fwd ", 4)) {
            const char *comma = strstr(n, ", bwd ");
            assert_non_null(comma);
            if (bwd) {
                name = comma + 6;
            } else {
                snprintf(buf, sizeof buf, "%.*s", (int)(comma - n - 4), n + 4);
                name = buf;
            }
        } else {
            name = n;
        }
        const int e = entry_index(name);
        if (e < 0)
            fail_msg("%s on %s: no entry named '%s' (%s)", label, pf->arch, name, n);
        assert_int_equal(bsa_gpu_entry_vendor(e), pf->vendor);
        assert_true(bsa_gpu_entry_serves(e, bwd));
        const int want = promise(card, pb->dtype, dim, bwd);
        const int ref = !strcmp(name, "cuda-reference") || !strcmp(name, "hip-reference");
        if (want == 2 && !bsa_gpu_entry_tensor_core(e))
            fail_msg("%s on %s, %s head dim %d: the README promises tensor cores, the list "
                     "chose %s\n%s",
                     label, pf->arch, pass_name[bwd], dim, name, explain);
        if (want == 2 && amd_entry(card) && strcmp(name, amd_entry(card)))
            fail_msg("%s on %s, %s head dim %d: the README promises %s, the list chose %s\n%s",
                     label, pf->arch, pass_name[bwd], dim, amd_entry(card), name, explain);
        if (want == 1 && strcmp(name, "hip-tile-fma"))
            fail_msg("%s on %s: %s chose %s, not the FMA tile\n%s", label, pf->arch, pass_name[bwd],
                     name, explain);
        if (want == 0 && !ref)
            fail_msg("%s on %s, %s head dim %d: past the README's promise the reference "
                     "kernels run, the list chose %s\n%s",
                     label, pf->arch, pass_name[bwd], dim, name, explain);
        /* every kernel fits the card (recomputed) */
        assert_true(pp->n >= 1 && pp->n <= 2);
        for (int i = 0; i < pp->n; i++) {
            if (pp->k[i].family == BSA_FAM_REF)
                continue;
            const int target = pf->vendor != BSA_GPU_AMD                            ? 0
                               : card == GFX90A || card == GFX942 || card == GFX950 ? 1
                                                                                    : 2;
            assert_int_equal(bsa_gpu_profile_target(pf), target);
            size_t need = smem_expected(pp->k[i], pb->dpad, target);
            assert_int_equal(need,
                             bsa_gpu_kernel_smem(pp->k[i], pb->dpad, bsa_gpu_profile_target(pf)));
            if (pp->k[i].family == BSA_FAM_VOLTA)
                need += 256; /* its static arrays */
            if (need > (size_t)pf->smem_optin)
                fail_msg("%s on %s: kernel family %d pass %d needs %zu bytes, the card has %d",
                         label, pf->arch, pp->k[i].family, pp->k[i].pass, need, pf->smem_optin);
        }
        /* the explanation names the chosen entry of each pass */
        assert_non_null(strstr(explain, pass_name[bwd]));
        assert_non_null(strstr(explain, name));
    }
    /* tensor-core kernels load rows 16 bytes at a time; the reference
     * kernels need the element size */
    const int all_ref = !strcmp(ch.name, "cuda-reference") || !strcmp(ch.name, "hip-reference");
    assert_int_equal(ch.align, all_ref ? 2 : 16);
}

/* ------------------------------------------------------------- tests */

/* Every card x dtype x head dim x layout kind: the promise holds. */
static void promises_hold(void **state)
{
    (void)state;
    const int blocks[5] = {8, 16, 32, 64, 128};
    const int dims[8] = {32, 40, 64, 72, 96, 128, 160, 256};
    const bsa_dtype dts[2] = {BSA_DTYPE_F16, BSA_DTYPE_BF16};
    int checked = 0;
    for (int bi = 0; bi < 5; bi++) {
        const int b = blocks[bi], seq = b <= 32 ? 1024 : 2048;
        bsa_layout_t lays[5] = {
            preset(BSA_PATTERN_ALL, seq, b, 4, 0, 0),
            preset(BSA_PATTERN_LOCAL, seq, b, 4, 2 * b, 0),
            preset(BSA_PATTERN_STRIDED, seq, b, 4, seq / (2 * b) >= 1 ? 4 : 1, 0),
            preset(BSA_PATTERN_FIXED, seq, b, 4, 4 * b, 2),
            random_layout(b, seq / b, tu_uniform(0.1, 0.4)),
        };
        static const char *const kinds[5] = {"all", "local", "strided", "fixed", "random"};
        for (int li = 0; li < 5; li++) {
            bsa_gpu_layout_stats st = stats_of(lays[li]);
            for (int card = 0; card < N_CARDS; card++)
                for (int di = 0; di < 8; di++)
                    for (int ti = 0; ti < 2; ti++) {
                        bsa_gpu_problem pb = problem(&st, seq, dts[ti], dims[di], 4, 4, 0);
                        char label[96];
                        snprintf(label, sizeof label, "%s B=%d %s D=%d", kinds[li], b,
                                 ti ? "bf16" : "f16", dims[di]);
                        check_choice(card, &pb, dims[di], label);
                        checked++;
                    }
            bsa_layout_destroy(lays[li]);
        }
    }
    printf("%d selections checked against the README's promise\n", checked);
}

/* The 99 KB parts at head dim 128 (sm_86, sm_89, sm_120): the tile dK/dV
 * runs one query-side stage (two need 105,472 bytes), on both dtypes;
 * sm_80 and sm_100 keep two. */
static void ampere_consumer_head_dim_128(void **state)
{
    (void)state;
    bsa_layout_t lay = preset(BSA_PATTERN_ALL, 1024, 64, 2, 0, 0);
    bsa_gpu_layout_stats st = stats_of(lay);
    const bsa_gpu_kernel two = {BSA_FAM_TILE, BSA_PASS_DKDV, 64, 2};
    assert_int_equal(bsa_gpu_kernel_smem(two, 128, BSA_GPU_TARGET_NVIDIA), 105472);
    const int cs[5] = {SM86, SM89, SM120, SM80, SM100};
    for (int c = 0; c < 5; c++)
        for (int ti = 0; ti < 2; ti++) {
            bsa_gpu_problem pb =
                problem(&st, 1024, ti ? BSA_DTYPE_BF16 : BSA_DTYPE_F16, 128, 2, 2, 0);
            bsa_gpu_choice ch;
            assert_int_equal(bsa_gpu_select(&pb, &cards[cs[c]], NULL, 0, &ch, NULL, 0),
                             BSA_SUCCESS);
            assert_string_equal(ch.name, "cuda-mma-sm80");
            int found = 0;
            for (int i = 0; i < ch.bwd.n; i++)
                if (ch.bwd.k[i].pass == BSA_PASS_DKDV) {
                    found = 1;
                    assert_int_equal(ch.bwd.k[i].stages, cs[c] == SM80 || cs[c] == SM100 ? 2 : 1);
                }
            assert_true(found);
        }
    bsa_layout_destroy(lay);
}

/* Which entry takes which layout where the measurements say it pays. */
static void layout_choices(void **state)
{
    (void)state;
    /* random 32-wide blocks: the block rows; head dim 128: their forward */
    bsa_layout_t rnd = random_layout(32, 64, 0.1);
    bsa_gpu_layout_stats st = stats_of(rnd);
    assert_true(st.brow);
    bsa_gpu_choice ch;
    bsa_gpu_problem pb = problem(&st, 2048, BSA_DTYPE_F16, 64, 4, 4, 0);
    for (int c = SM80; c <= SM90; c++) {
        assert_int_equal(bsa_gpu_select(&pb, &cards[c], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
        assert_string_equal(ch.name, "cuda-mma-sm80-blockrow");
    }
    pb = problem(&st, 2048, BSA_DTYPE_BF16, 128, 4, 4, 0);
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM80], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
    assert_true(!strncmp(ch.name, "fwd cuda-mma-sm80-blockrow, bwd cuda-mma-sm80", 45));
    /* kv groups: the block rows decline with the reason */
    char ex[16384];
    pb = problem(&st, 2048, BSA_DTYPE_F16, 64, 4, 2, 0);
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM80], NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
    assert_non_null(strstr(ex, "cuda-mma-sm80-blockrow"));
    assert_non_null(strstr(ex, "kv groups"));
    assert_null(strstr(ch.name, "blockrow"));
    bsa_layout_destroy(rnd);

    /* the strided pattern in permuted order with T / L <= 128: chunk-local */
    bsa_layout_t strided = preset(BSA_PATTERN_STRIDED, 4096, 32, 4, 32, 0);
    st = stats_of(strided);
    assert_true(st.chunk_local);
    pb = problem(&st, 4096, BSA_DTYPE_F16, 64, 4, 4, 0);
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM90], NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
    assert_string_equal(ch.name, "fwd cuda-wgmma-sm90a-chunk, bwd cuda-mma-sm80-chunk");
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM80], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
    assert_string_equal(ch.name, "cuda-mma-sm80-chunk");
    /* key lengths: the chunk kernels decline, the plan says why */
    pb = problem(&st, 4096, BSA_DTYPE_F16, 64, 4, 4, BSA_PLAN_KEY_LENGTHS);
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM80], NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
    assert_null(strstr(ch.name, "chunk"));
    assert_non_null(strstr(ex, "key lengths"));
    bsa_layout_destroy(strided);

    /* dense causal on Hopper: the warp-specialised forward, wgmma backward */
    bsa_layout_t all = preset(BSA_PATTERN_ALL, 8192, 64, 8, 0, 0);
    st = stats_of(all);
    for (int d = 64; d <= 128; d *= 2) {
        pb = problem(&st, 8192, BSA_DTYPE_F16, d, 8, 8, 0);
        assert_int_equal(bsa_gpu_select(&pb, &cards[SM90], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
        assert_string_equal(ch.name, "fwd cuda-wgmma-sm90a-ws, bwd cuda-wgmma-sm90a");
        for (int i = 0; i < ch.bwd.n; i++)
            assert_int_equal(ch.bwd.k[i].family, BSA_FAM_WGMMA);
    }
    /* a library built without sm_90: the reason says so */
    bsa_gpu_profile no90 = cards[SM90];
    no90.has = 0;
    assert_int_equal(bsa_gpu_select(&pb, &no90, NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
    assert_string_equal(ch.name, "cuda-mma-sm80");
    assert_non_null(strstr(ex, "BSA_CUDA_ARCHITECTURES"));
    /* on Ampere, head dim 128: the 128-row forward (pairs agree) */
    pb = problem(&st, 8192, BSA_DTYPE_F16, 128, 8, 8, 0);
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM80], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
    assert_int_equal(ch.fwd.k[0].rows, 128);
    /* ... which does not fit 99 KB: the 64-row forward there */
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM86], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
    assert_int_equal(ch.fwd.k[0].rows, 64);
    bsa_layout_destroy(all);

    /* fixed with summary columns at block 16: gathered key tiles pay */
    bsa_layout_t fixed = preset(BSA_PATTERN_FIXED, 4096, 16, 4, 128, 1);
    st = stats_of(fixed);
    assert_true(st.gathered);
    assert_true(st.tile_pairs[1] * 10 <= st.tile_pairs[0] * 8);
    pb = problem(&st, 4096, BSA_DTYPE_BF16, 64, 4, 4, 0);
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM80], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
    assert_string_equal(ch.name, "cuda-mma-sm80-gather");
    assert_true(ch.fwd.gather && ch.bwd.gather);
    /* the gathered backward with a per-head layout and kv groups: no dK/dV
     * block owns one set of key rows: the reference backward */
    bsa_layout_t fixed_h = preset(BSA_PATTERN_FIXED, 4096, 16, 4, 128, 2);
    st = stats_of(fixed_h);
    assert_int_equal(st.heads, 4);
    pb = problem(&st, 4096, BSA_DTYPE_BF16, 64, 4, 2, 0);
    assert_true(st.tile_pairs[1] * 10 <= st.tile_pairs[0] * 8);
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM80], NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
    assert_non_null(strstr(ex, "kv group"));
    assert_string_equal(ch.name, "fwd cuda-mma-sm80-gather, bwd cuda-mma-sm80");
    bsa_layout_destroy(fixed);
    bsa_layout_destroy(fixed_h);
}

/* Blackwell, sm_100 (B200) and sm_120 (RTX 50xx): the mma.sync entries
 * (native code since CUDA 12.8 builds them by default); the wgmma entries
 * decline, sm_90a code being Hopper's alone, though a default build holds
 * it; sm_120's 99 KB a block takes the 99 KB configuration of sm_86. */
static void blackwell(void **state)
{
    (void)state;
    bsa_layout_t all = preset(BSA_PATTERN_ALL, 8192, 64, 8, 0, 0);
    bsa_gpu_layout_stats st = stats_of(all);
    bsa_gpu_choice ch;
    char ex[16384];
    const int bw[2] = {SM100, SM120};
    bsa_gpu_problem pb;
    for (int c = 0; c < 2; c++) {
        const bsa_gpu_profile *pf = &cards[bw[c]];
        for (int d = 64; d <= 128; d *= 2) {
            pb = problem(&st, 8192, BSA_DTYPE_BF16, d, 8, 8, 0);
            /* Hopper: the wgmma entries (layout_choices) */
            assert_int_equal(bsa_gpu_select(&pb, &cards[SM90], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
            assert_non_null(strstr(ch.name, "wgmma"));
            assert_int_equal(bsa_gpu_select(&pb, pf, NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
            assert_string_equal(ch.name, "cuda-mma-sm80");
            char why[96];
            snprintf(why, sizeof why, "compute capability 9.0 device; the device is %s", pf->arch);
            for (const char *at = strstr(ex, "cuda-wgmma-sm90a"); at;
                 at = strstr(at + 1, "cuda-wgmma-sm90a")) {
                const char *eol = strchr(at, '\n');
                const char *r = strstr(at, why);
                assert_true(r && (!eol || r < eol));
            }
            /* at head dim 128 the 128-row forward and the two-stage dK/dV
             * need more than 99 KB */
            const int big = pf->smem_optin > 200000;
            assert_int_equal(ch.fwd.k[0].rows, d == 128 && big ? 128 : 64);
            for (int i = 0; i < ch.bwd.n; i++)
                if (ch.bwd.k[i].pass == BSA_PASS_DKDV)
                    assert_int_equal(ch.bwd.k[i].stages, d == 128 && !big ? 1 : 2);
        }
        /* forced onto Hopper's entry: refused, with the reason */
        bsa_status s = bsa_gpu_select(&pb, pf, "cuda-wgmma-sm90a", 0, &ch, NULL, 0);
        assert_int_equal(s, BSA_ERROR_UNSUPPORTED);
        assert_non_null(strstr(bsa_last_error(), "9.0"));
        assert_non_null(strstr(bsa_last_error(), pf->arch));
        /* the Volta path runs there when forced, as on every sm_70+ card */
        pb = problem(&st, 8192, BSA_DTYPE_F16, 64, 8, 8, 0);
        assert_int_equal(bsa_gpu_select(&pb, pf, "cuda-wmma-sm70", 0, &ch, NULL, 0), BSA_SUCCESS);
        assert_string_equal(ch.name, "cuda-wmma-sm70");
    }
    bsa_layout_destroy(all);
}

/* BSA_IMPL: forcing, declining, unknown names, the reference flag. */
static void forcing(void **state)
{
    (void)state;
    bsa_layout_t lay = preset(BSA_PATTERN_LOCAL, 2048, 64, 2, 256, 0);
    bsa_gpu_layout_stats st = stats_of(lay);
    bsa_gpu_problem pb = problem(&st, 2048, BSA_DTYPE_F16, 64, 2, 2, 0);
    bsa_gpu_choice ch;
    char ex[16384];
    /* an entry forced on a pass it serves takes it without its preference */
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM90], "cuda-wgmma-sm90a", 0, &ch, ex, sizeof ex),
                     BSA_SUCCESS);
    assert_string_equal(ch.name, "cuda-wgmma-sm90a");
    assert_non_null(strstr(ex, "forced"));
    for (int i = 0; i < ch.bwd.n; i++) /* forced: dQ and dK/dV both on wgmma */
        assert_int_equal(ch.bwd.k[i].family, BSA_FAM_WGMMA);
    /* a forward-only entry forced: the backward is the list's */
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM90], "cuda-wgmma-sm90a-ws", 0, &ch, NULL, 0),
                     BSA_SUCCESS);
    assert_true(!strncmp(ch.name, "fwd cuda-wgmma-sm90a-ws, bwd ", 29));
    /* forced where it cannot run: refused, with the reason */
    bsa_status s = bsa_gpu_select(&pb, &cards[SM80], "cuda-wgmma-sm90a", 0, &ch, NULL, 0);
    assert_int_equal(s, BSA_ERROR_UNSUPPORTED);
    assert_non_null(strstr(bsa_last_error(), "BSA_IMPL=cuda-wgmma-sm90a declined"));
    assert_non_null(strstr(bsa_last_error(), "9.0"));
    pb.dtype = BSA_DTYPE_BF16;
    s = bsa_gpu_select(&pb, &cards[SM80], "cuda-wmma-sm70", 0, &ch, NULL, 0);
    assert_int_equal(s, BSA_ERROR_UNSUPPORTED);
    assert_non_null(strstr(bsa_last_error(), "f16"));
    /* an unknown name, and another vendor's entry */
    s = bsa_gpu_select(&pb, &cards[SM80], "cuda-fastest", 0, &ch, NULL, 0);
    assert_int_equal(s, BSA_ERROR_UNSUPPORTED);
    assert_non_null(strstr(bsa_last_error(), "known:"));
    assert_non_null(strstr(bsa_last_error(), "cuda-mma-sm80"));
    s = bsa_gpu_select(&pb, &cards[SM80], "hip-mfma", 0, &ch, NULL, 0);
    assert_int_equal(s, BSA_ERROR_UNSUPPORTED);
    /* BSA_PLAN_FORCE_REFERENCE: the reference kernels, element alignment */
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM90], NULL, 1, &ch, NULL, 0), BSA_SUCCESS);
    assert_string_equal(ch.name, "cuda-reference");
    assert_int_equal(ch.align, 2);
    assert_int_equal(bsa_gpu_select(&pb, &cards[GFX942], NULL, 1, &ch, NULL, 0), BSA_SUCCESS);
    assert_string_equal(ch.name, "hip-reference");
    /* f32: the reference kernels, 4-byte alignment */
    pb.dtype = BSA_DTYPE_F32;
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM90], NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
    assert_string_equal(ch.name, "cuda-reference");
    assert_int_equal(ch.align, 4);
    assert_non_null(strstr(ex, "f16 / bf16"));
    bsa_layout_destroy(lay);
}

/* The explanation: every entry tried before the chosen one, with its
 * reason; truncation keeps it a string. */
static void explanation(void **state)
{
    (void)state;
    bsa_layout_t lay = preset(BSA_PATTERN_ALL, 1024, 64, 2, 0, 0);
    bsa_gpu_layout_stats st = stats_of(lay);
    bsa_gpu_problem pb = problem(&st, 1024, BSA_DTYPE_F16, 64, 2, 2, 0);
    bsa_gpu_choice ch;
    char ex[16384];
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM86], NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
    /* on sm_86 every entry above cuda-mma-sm80 declines, with one line each */
    const char *fwd = strstr(ex, "forward:"), *bwd = strstr(ex, "backward:");
    assert_non_null(fwd);
    assert_non_null(bwd);
    const char *above[5] = {"cuda-mma-sm80-blockrow", "cuda-wgmma-sm90a-chunk",
                            "cuda-mma-sm80-chunk", "cuda-wgmma-sm90a-ws", "cuda-wgmma-sm90a "};
    for (int i = 0; i < 5; i++) {
        const char *at = strstr(fwd, above[i]);
        assert_non_null(at);
        assert_true(at < bwd);
        assert_non_null(strstr(at, "declined:"));
    }
    assert_non_null(strstr(ex, "cuda-mma-sm80            chosen"));
    assert_non_null(strstr(ex, "16-byte aligned"));
    /* a short buffer: truncated, terminated */
    char small[16];
    memset(small, 'x', sizeof small);
    assert_int_equal(bsa_gpu_select(&pb, &cards[SM86], NULL, 0, &ch, small, sizeof small),
                     BSA_SUCCESS);
    assert_int_equal(strlen(small), sizeof small - 1);
    bsa_layout_destroy(lay);
}

/* Inputs the tile kernels' loads cannot take: strides not multiples of 8,
 * head dims above the AMD tile's; the features stay on the tiles. */
static void operand_limits(void **state)
{
    (void)state;
    bsa_layout_t lay = random_layout(64, 16, 0.5);
    bsa_gpu_layout_stats st = stats_of(lay);
    for (int it = 0; it < 50; it++) {
        const int dim = 8 * tu_randint(1, 17);
        const int card = tu_randint(0, N_CARDS);
        bsa_gpu_problem pb =
            problem(&st, 1024, tu_randint(0, 2) ? BSA_DTYPE_F16 : BSA_DTYPE_BF16, dim, 4, 4, 0);
        bsa_gpu_choice ch;
        char ex[16384];
        pb.strides8 = 0; /* e.g. a time stride of 12 elements */
        assert_int_equal(bsa_gpu_select(&pb, &cards[card], NULL, 0, &ch, ex, sizeof ex),
                         BSA_SUCCESS);
        assert_non_null(strstr(ch.name, "reference"));
        if (card >= SM80) /* (older cards decline the dtype or architecture first) */
            assert_non_null(strstr(ex, "multiple of 8"));
        /* GQA, key lengths and packed sequences on the tile entries */
        pb = problem(&st, 1024, BSA_DTYPE_F16, dim, 4, 1, BSA_PLAN_KEY_LENGTHS);
        pb.varlen = 1;
        assert_int_equal(bsa_gpu_select(&pb, &cards[card], NULL, 0, &ch, NULL, 0), BSA_SUCCESS);
        check_choice(card, &pb, dim, "features");
        assert_int_equal(ch.feat, 1);
    }
    /* AMD: the wave width must be 32 or 64 */
    bsa_gpu_profile odd = cards[GFX942];
    odd.wave = 16;
    bsa_gpu_problem pb = problem(&st, 1024, BSA_DTYPE_F16, 64, 4, 4, 0);
    bsa_gpu_choice ch;
    char ex[16384];
    assert_int_equal(bsa_gpu_select(&pb, &odd, NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
    assert_string_equal(ch.name, "hip-reference");
    assert_non_null(strstr(ex, "wave"));
    bsa_layout_destroy(lay);
}

/* An AMD backward plan at head dim 128: dK/dV (one query-side stage) and
 * dQ, with own_tiles of their own-row operand tiles in LDS (the rest in
 * registers), within 64 KB. */
static void amd_bwd128_fits(const bsa_gpu_choice *ch, bsa_gpu_target t, int own_tiles)
{
    const int te = 64 * 136 * 2; /* a padded 64 x 128 tile, bytes */
    assert_int_equal(ch->bwd.n, 2);
    assert_int_equal(ch->bwd.k[0].pass, BSA_PASS_DKDV);
    assert_int_equal(ch->bwd.k[0].stages, 1);
    assert_int_equal(bsa_gpu_kernel_smem(ch->bwd.k[0], 128, t), (own_tiles + 2) * te + 2 * 64 * 4);
    assert_int_equal(bsa_gpu_kernel_smem(ch->bwd.k[1], 128, t), (own_tiles + 2) * te);
    assert_true(bsa_gpu_kernel_smem(ch->bwd.k[0], 128, t) <= 65536);
}

/* The AMD targets: the entry of each matrix-instruction family, the
 * backward at head dim 128 within 64 KB of LDS (one query-side stage; on
 * MFMA both own-row operands in registers, on WMMA one; the FMA tile on
 * the reference kernels); checks that name why they decline. */
static void amd_targets(void **state)
{
    (void)state;
    bsa_layout_t lay = preset(BSA_PATTERN_ALL, 1024, 64, 2, 0, 0);
    bsa_gpu_layout_stats st = stats_of(lay);
    bsa_gpu_choice ch;
    char ex[16384];
    const int cdna[3] = {GFX90A, GFX942, GFX950};
    for (int i = 0; i < 3; i++) {
        bsa_gpu_problem pb = problem(&st, 1024, BSA_DTYPE_BF16, 128, 2, 2, 0);
        assert_int_equal(bsa_gpu_select(&pb, &cards[cdna[i]], NULL, 0, &ch, ex, sizeof ex),
                         BSA_SUCCESS);
        assert_string_equal(ch.name, "hip-mfma");
        /* K, V in registers: one Q and one dO stage, their lse and delta */
        amd_bwd128_fits(&ch, BSA_GPU_TARGET_AMD_MFMA, 0);
        /* NVIDIA's sizes at 128 are unchanged (K, V and Q, dO in shared) */
        assert_int_equal(bsa_gpu_kernel_smem(ch.bwd.k[0], 128, BSA_GPU_TARGET_NVIDIA),
                         4 * 64 * 136 * 2 + 2 * 64 * 4);
        /* forced onto another family's entry: declined, with the reason */
        assert_int_equal(bsa_gpu_select(&pb, &cards[cdna[i]], "hip-wmma", 0, &ch, NULL, 0),
                         BSA_ERROR_UNSUPPORTED);
        assert_non_null(strstr(bsa_last_error(), "has MFMA"));
        assert_int_equal(bsa_gpu_select(&pb, &cards[cdna[i]], "hip-tile-fma", 0, &ch, NULL, 0),
                         BSA_ERROR_UNSUPPORTED);
    }
    const int rdna[2] = {GFX1100, GFX1201};
    for (int i = 0; i < 2; i++) {
        bsa_gpu_problem pb = problem(&st, 1024, BSA_DTYPE_F16, 64, 2, 2, 0);
        assert_int_equal(bsa_gpu_select(&pb, &cards[rdna[i]], NULL, 0, &ch, ex, sizeof ex),
                         BSA_SUCCESS);
        assert_string_equal(ch.name, "hip-wmma");
        pb = problem(&st, 1024, BSA_DTYPE_F16, 128, 2, 2, 0);
        assert_int_equal(bsa_gpu_select(&pb, &cards[rdna[i]], NULL, 0, &ch, ex, sizeof ex),
                         BSA_SUCCESS);
        assert_string_equal(ch.name, "hip-wmma");
        /* V's rows in registers: K, one Q and one dO stage, their lse and
         * delta; dQ: dO's rows in registers, Q, K, V */
        amd_bwd128_fits(&ch, BSA_GPU_TARGET_AMD_OTHER, 1);
        assert_int_equal(bsa_gpu_select(&pb, &cards[rdna[i]], "hip-mfma", 0, &ch, NULL, 0),
                         BSA_ERROR_UNSUPPORTED);
        assert_non_null(strstr(bsa_last_error(), "has WMMA"));
        /* a wave64 RDNA device (not HIP's default): the WMMA tile declines */
        bsa_gpu_profile w64 = cards[rdna[i]];
        w64.wave = 64;
        pb = problem(&st, 1024, BSA_DTYPE_F16, 64, 2, 2, 0);
        assert_int_equal(bsa_gpu_select(&pb, &w64, NULL, 0, &ch, ex, sizeof ex), BSA_SUCCESS);
        assert_string_equal(ch.name, "hip-reference");
        assert_non_null(strstr(ex, "wave32 one"));
    }
    /* gfx1030: the FMA tile, never the matrix entries */
    bsa_gpu_problem pb = problem(&st, 1024, BSA_DTYPE_F16, 64, 2, 2, 0);
    assert_int_equal(bsa_gpu_select(&pb, &cards[GFX1030], NULL, 0, &ch, ex, sizeof ex),
                     BSA_SUCCESS);
    assert_string_equal(ch.name, "hip-tile-fma");
    assert_non_null(strstr(ex, "gfx1030 has no MFMA / WMMA"));
    pb = problem(&st, 1024, BSA_DTYPE_F16, 128, 2, 2, 0);
    assert_int_equal(bsa_gpu_select(&pb, &cards[GFX1030], NULL, 0, &ch, ex, sizeof ex),
                     BSA_SUCCESS);
    assert_string_equal(ch.name, "fwd hip-tile-fma, bwd hip-reference");
    assert_non_null(strstr(ex, "FMA tile backward takes head dims up to 64"));
    bsa_layout_destroy(lay);
}

static void arch_names_and_padding(void **state)
{
    (void)state;
    const char *yes[] = {"gfx90a", "gfx90a:sramecc+:xnack-", "gfx940", "gfx941",
                         "gfx942", "gfx942:sramecc+:xnack-", "gfx950", "gfx950:xnack+"};
    const char *no[] = {"gfx1030", "gfx1100", "gfx908", "gfx906",  "gfx90",         "gfx9400",
                        "gfx90ab", "",        "sm_90",  "gfx9500", "gfx1030:xnack-"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_int_equal(bsa_gpu_arch_matrix(yes[i]), BSA_GPU_MATRIX_MFMA);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_int_not_equal(bsa_gpu_arch_matrix(no[i]), BSA_GPU_MATRIX_MFMA);
    /* RDNA3 (gfx110x), RDNA3.5 (gfx115x), RDNA4 (gfx120x): WMMA */
    const char *wmma[] = {"gfx1100", "gfx1101", "gfx1102", "gfx1103",
                          "gfx1151", "gfx1200", "gfx1201", "gfx1201:xnack-"};
    const char *none[] = {"gfx1030",  "gfx1010", "gfx906",   "gfx11",  "gfx110", "gfx11000",
                          "gfx1100x", "gfx1300", "gfx1201+", "sm_120", "gfx12",  ""};
    for (size_t i = 0; i < sizeof wmma / sizeof wmma[0]; i++)
        assert_int_equal(bsa_gpu_arch_matrix(wmma[i]), BSA_GPU_MATRIX_WMMA);
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        assert_int_equal(bsa_gpu_arch_matrix(none[i]), BSA_GPU_MATRIX_NONE);
    assert_int_equal(bsa_gpu_arch_matrix(NULL), BSA_GPU_MATRIX_NONE);
    for (int64_t d = -8; d <= 300; d++) {
        int p = bsa_gpu_pad_dim(d);
        if (d < 1 || d > 256) {
            assert_int_equal(p, 0);
            continue;
        }
        assert_true(p >= d && (p == 32 || p / 2 < d));
        assert_true(p == 32 || p == 64 || p == 128 || p == 256);
    }
    /* names are unique per vendor; each vendor's list ends with its
     * reference entry, which serves both passes */
    int last[3] = {-1, -1, -1};
    for (int i = 0; i < bsa_gpu_entry_count(); i++) {
        for (int j = 0; j < i; j++)
            assert_true(strcmp(bsa_gpu_entry_name(i), bsa_gpu_entry_name(j)) != 0);
        last[bsa_gpu_entry_vendor(i)] = i;
    }
    assert_non_null(strstr(bsa_gpu_entry_name(last[BSA_GPU_NVIDIA]), "reference"));
    assert_non_null(strstr(bsa_gpu_entry_name(last[BSA_GPU_AMD]), "reference"));
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arch_names_and_padding),
        cmocka_unit_test(promises_hold),
        cmocka_unit_test(ampere_consumer_head_dim_128),
        cmocka_unit_test(layout_choices),
        cmocka_unit_test(blackwell),
        cmocka_unit_test(forcing),
        cmocka_unit_test(explanation),
        cmocka_unit_test(operand_limits),
        cmocka_unit_test(amd_targets),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
