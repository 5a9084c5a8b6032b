/*
 * Context-parallel attention over MPI on CPU ranks (run under mpirun with
 * 2 or 4 ranks; tests/CMakeLists.txt).  Every rank draws the same fresh
 * random global q, k, v, dO (the seed is rank 0's, broadcast, printed),
 * runs the single-process library on the whole sequence as the reference,
 * cuts its shard, poisons its outputs, runs bsa_dist_forward/backward and
 * compares its rows.  A second reference, independent of the library's
 * layout code and kernels, is the double-precision oracle on the tests'
 * closed-form masks (tests/common), for the causal "all" and fixed cases.
 *
 * Equality with the single-process result: not bitwise, since the dist
 * plan sums the key shards' partials in a different order (log-sum-exp
 * merge of O, sums of dQ/dK/dV partials in step order).  Each f32 output
 * shard must be within 1e-6 relative L2 of the reference's rows (the
 * project's measure), and no element further than 4e-6 of the tensor's
 * largest |value| from it (both results carry their own f32 rounding of
 * ~1e-6 relative on single elements); lse within 1e-6 relative to
 * max(1, |lse|).  Two runs of the
 * dist plan must agree bit for bit (determinism).
 *
 * Checks never abort: a failed check is counted and the rank carries on
 * with the collective calls, so one rank's failure cannot hang the others;
 * the counts are summed at the end and every rank exits 1 on any failure.
 */
#include "bsa.h"
#include "closed_masks.h"
#include "dist_case.h"
#include "oracle.h"
#include "testutil.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, nranks, failures, checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "[rank %d] FAIL %s:%d: ", rank, __FILE__, __LINE__);                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

#define OK(call)                                                                                   \
    do {                                                                                           \
        bsa_status st_ = (call);                                                                   \
        CHECK(st_ == BSA_SUCCESS, "%s: %s: %s", #call, bsa_status_string(st_), bsa_last_error());  \
    } while (0)

static const char *const pattern_names[] = {"all", "local", "strided", "fixed"};
static const char *const shard_names[] = {"auto", "contiguous", "zigzag"};
static const char *const exchange_names[] = {"auto", "ring", "allgather"};

typedef struct dcase {
    bsa_pattern pattern;
    int bidir;
    bsa_sharding sharding;
    bsa_dist_exchange exchange;
    int padded;   /* shard tensors as padded [b, t, h, d] views (gaps must stay poisoned) */
    int kv_heads; /* 0: = heads */
    int oracle;   /* also compare with the double oracle */
    bsa_dtype dtype;
} dcase;

/* Bounds on the relative L2 error of o / of the gradients for f16 and bf16,
 * against the single-process result and the oracle alike: twice
 * tests/test_cpu_attention.c's table (the dist plan rounds its partial
 * outputs and gradients to the dtype before summing them, a second
 * rounding the single-process path does not make).  f32 is held to the
 * tighter bounds of the file comment. */
static const double half_bound[3][2] = {
    [BSA_DTYPE_F16] = {2e-3, 2.4e-3},
    [BSA_DTYPE_BF16] = {1.4e-2, 2.8e-2},
};

enum { T = 512, BLOCK = 16, BATCH = 2, HEADS = 2, DIM = 16 };

static void cut(const tu_tensor *global, tu_tensor *shard, const int64_t *pos, int64_t n)
{
    int64_t bh = global->desc.dims[0] * global->desc.dims[1], d = global->desc.dims[3];
    dc_gather_rows(shard->val, global->val, sizeof(double), bh, T, n, d, pos);
    tu_pack(shard->dtype, &shard->desc, shard->val, shard->data);
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t h)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

static void run_case(bsa_context_t ctx, bsa_comm_t comm, const dcase *c)
{
    int kvh = c->kv_heads ? c->kv_heads : HEADS;
    char label[160];
    snprintf(label, sizeof label, "%s%s %s, %s/%s, %s%s%s",
             c->dtype == BSA_DTYPE_F32   ? ""
             : c->dtype == BSA_DTYPE_F16 ? "f16 "
                                         : "bf16 ",
             pattern_names[c->pattern], c->bidir ? "bidirectional" : "causal",
             shard_names[c->sharding], exchange_names[c->exchange],
             c->padded ? "padded bthd" : "bhtd", c->kv_heads ? ", GQA" : "",
             c->oracle ? ", oracle" : "");
    bsa_preset ps = dc_preset(c->pattern, c->bidir, T, BLOCK, HEADS);
    bsa_layout_t lay = NULL;
    OK(bsa_layout_create_preset(ctx, &lay, &ps));
    if (!lay)
        return;
    bsa_dtype dt = c->dtype;
    size_t es = tu_dtype_size(dt);

    /* the whole sequence, the same on every rank, and its single-process result */
    dc_whole w;
    OK(dc_whole_init(&w, ctx, lay, dt, BATCH, HEADS, kvh, T, DIM));

    /* this rank's shard */
    int64_t n = T / nranks;
    bsa_tensor_desc sq, sk, sv;
    if (c->padded) {
        sq = tu_desc_padded(BATCH, HEADS, n, DIM);
        sk = tu_desc_padded(BATCH, kvh, n, DIM);
        sv = tu_desc_padded(BATCH, kvh, n, DIM);
    } else {
        sq = bsa_tensor_bhtd(BATCH, HEADS, n, DIM);
        sk = bsa_tensor_bhtd(BATCH, kvh, n, DIM);
        sv = bsa_tensor_bhtd(BATCH, kvh, n, DIM);
    }
    bsa_attn_desc sd = {dt, sq, sk, sv, sq, 0.0f, 0};
    bsa_dist_params prm = {c->sharding, c->exchange};
    bsa_dist_plan_t dp = NULL;
    OK(bsa_dist_plan_create(ctx, &dp, &sd, lay, comm, &prm));
    if (dp) {
        bsa_dist_info info;
        OK(bsa_dist_plan_info(dp, &info));
        const char *name = "";
        OK(bsa_dist_plan_implementation(dp, &name));
        if (rank == 0)
            printf("  %-62s %s\n", label, name);
        CHECK(info.size == nranks && info.rank == rank && info.shard_len == n, "%s: info", label);
        if (c->sharding != BSA_SHARD_AUTO)
            CHECK(info.sharding == c->sharding, "%s: sharding %d", label, (int)info.sharding);
        if (c->exchange != BSA_EXCHANGE_AUTO)
            CHECK(info.exchange == c->exchange, "%s: exchange %d", label, (int)info.exchange);
        /* the causal local band (2 blocks) reaches one shard back at most:
         * a rank must not fetch the others */
        if (c->pattern == BSA_PATTERN_LOCAL && !c->bidir && info.sharding == BSA_SHARD_CONTIGUOUS)
            CHECK(info.peers_needed == (rank > 0), "%s: peers_needed %d", label, info.peers_needed);
        if (c->pattern == BSA_PATTERN_ALL && !c->bidir && info.sharding == BSA_SHARD_ZIGZAG)
            CHECK(info.blocks_local == info.blocks_max,
                  "%s: zig-zag causal load %lld of max %lld is not balanced", label,
                  (long long)info.blocks_local, (long long)info.blocks_max);

        int64_t *pos = malloc(sizeof(int64_t) * n);
        OK(bsa_dist_shard_positions(dp, rank, pos));
        tu_tensor xq = tu_tensor_new(dt, sq), xk = tu_tensor_new(dt, sk),
                  xv = tu_tensor_new(dt, sv), xg = tu_tensor_new(dt, sq);
        cut(&w.q, &xq, pos, n);
        cut(&w.k, &xk, pos, n);
        cut(&w.v, &xv, pos, n);
        cut(&w.g, &xg, pos, n);
        tu_tensor xo = tu_tensor_new(dt, sq), xdq = tu_tensor_new(dt, sq),
                  xdk = tu_tensor_new(dt, sk), xdv = tu_tensor_new(dt, sv);
        float *xlse = tu_alloc(BSA_DTYPE_F32, BATCH * HEADS * n);
        uint64_t h1 = 0, h2 = 0;
        for (int rep = 0; rep < 2; rep++) {
            tu_tensor_poison(&xo);
            tu_tensor_poison(&xdq);
            tu_tensor_poison(&xdk);
            tu_tensor_poison(&xdv);
            tu_poison(BSA_DTYPE_F32, xlse, BATCH * HEADS * n);
            bsa_fwd_args fa = {xq.data, xk.data, xv.data, xo.data, xlse};
            OK(bsa_dist_forward(dp, &fa, NULL));
            bsa_bwd_args ba = {xq.data, xk.data,  xv.data,  xo.data, xlse,
                               xg.data, xdq.data, xdk.data, xdv.data};
            OK(bsa_dist_backward(dp, &ba, NULL));
            uint64_t hs = 0xcbf29ce484222325ull;
            hs = hash_bytes(xo.data, (size_t)xo.span * es, hs);
            hs = hash_bytes(xlse, (size_t)BATCH * HEADS * n * 4, hs);
            hs = hash_bytes(xdq.data, (size_t)xdq.span * es, hs);
            hs = hash_bytes(xdk.data, (size_t)xdk.span * es, hs);
            hs = hash_bytes(xdv.data, (size_t)xdv.span * es, hs);
            *(rep ? &h2 : &h1) = hs;
        }
        CHECK(h1 == h2, "%s: two runs differ (not deterministic)", label);
        tu_tensor *outs[4] = {&xo, &xdq, &xdk, &xdv};
        const char *onames[4] = {"o", "dq", "dk", "dv"};
        for (int i = 0; i < 4; i++) {
            CHECK(tu_tensor_unwritten(outs[i]) == 0, "%s: %s: %lld elements left poisoned", label,
                  onames[i], (long long)tu_tensor_unwritten(outs[i]));
            CHECK(tu_tensor_gaps_touched(outs[i]) == 0, "%s: %s: %lld gap elements written", label,
                  onames[i], (long long)tu_tensor_gaps_touched(outs[i]));
            tu_tensor_read(outs[i]);
        }
        const tu_tensor *refs[4] = {&w.o, &w.dq, &w.dk, &w.dv};
        double errs[5], em[5] = {0};
        for (int i = 0; i < 4; i++) {
            int64_t hh = outs[i]->desc.dims[1];
            double e[2];
            dc_shard_err(outs[i]->val, refs[i]->val, BATCH * hh, T, n, DIM, pos, e);
            errs[i] = e[0];
            em[i] = e[1];
            int f32 = dt == BSA_DTYPE_F32;
            double bound = f32 ? 1e-6 : half_bound[dt][i > 0];
            CHECK(e[0] <= bound && (!f32 || e[1] <= 4e-6),
                  "%s: %s differs from the single-process result: relative L2 %.3g (bound "
                  "%.3g), largest difference %.3g of the largest value (f32 bound 4e-6)",
                  label, onames[i], e[0], bound, e[1]);
        }
        double *xl = malloc(sizeof(double) * BATCH * HEADS * n);
        tu_f32_to_f64(xlse, xl, BATCH * HEADS * n);
        errs[4] = 0;
        for (int64_t x = 0; x < BATCH * HEADS; x++)
            for (int64_t t = 0; t < n; t++) {
                double a = xl[x * n + t], r = w.lse_val[x * T + pos[t]];
                double e = a == r ? 0 : fabs(a - r) / (fabs(r) > 1 ? fabs(r) : 1);
                errs[4] = e > errs[4] || isnan(e) ? e : errs[4];
            }
        CHECK(errs[4] <= 1e-6, "%s: lse differs by %.3g", label, errs[4]);
        double worst[5], wm[5];
        MPI_Allreduce(errs, worst, 5, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(em, wm, 5, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (rank == 0)
            printf("      against single-process (rel. L2 / largest diff): o %.1e/%.1e lse "
                   "-/%.1e dq %.1e/%.1e dk %.1e/%.1e dv %.1e/%.1e\n",
                   worst[0], wm[0], worst[4], worst[1], wm[1], worst[2], wm[2], worst[3], wm[3]);

        if (c->oracle) {
            /* the double oracle on the closed-form mask of the whole
             * sequence; this rank's rows */
            cm_source src = cm_of_preset(&ps);
            uint8_t *mask = cm_masks(&src);
            oracle_ext op = {BATCH, HEADS, kvh, T, T, DIM, DIM, 1.0 / sqrt((double)DIM), NULL};
            uint8_t *full = malloc((size_t)BATCH * HEADS * T * T);
            int lh = cm_heads(&src);
            for (int b = 0; b < BATCH; b++)
                for (int h = 0; h < HEADS; h++)
                    memcpy(full + ((size_t)b * HEADS + h) * T * T,
                           mask + (size_t)(lh == 1 ? 0 : h) * T * T, (size_t)T * T);
            op.mask = full;
            int64_t nq = (int64_t)BATCH * HEADS * T * DIM, nk = (int64_t)BATCH * kvh * T * DIM;
            double *ro = malloc(sizeof(double) * nq),
                   *rl = malloc(sizeof(double) * BATCH * HEADS * T);
            double *rdq = malloc(sizeof(double) * nq), *rdk = malloc(sizeof(double) * nk),
                   *rdv = malloc(sizeof(double) * nk);
            oracle_ext_forward(&op, w.q.val, w.k.val, w.v.val, ro, rl);
            oracle_ext_backward(&op, w.q.val, w.k.val, w.v.val, w.g.val, rdq, rdk, rdv);
            /* the f32 bound of tests/test_cpu_attention.c's table: 2e-6
             * relative L2 (here over this rank's shard) */
            const double *orefs[4] = {ro, rdq, rdk, rdv};
            for (int i = 0; i < 4; i++) {
                int64_t hh = outs[i]->desc.dims[1];
                double e[2];
                dc_shard_err(outs[i]->val, orefs[i], BATCH * hh, T, n, DIM, pos, e);
                double bound = dt == BSA_DTYPE_F32 ? 2e-6 : half_bound[dt][i > 0];
                CHECK(e[0] <= bound, "%s: %s differs from the double oracle: relative L2 %.3g",
                      label, onames[i], e[0]);
            }
            free(ro);
            free(rl);
            free(rdq);
            free(rdk);
            free(rdv);
            free(full);
            free(mask);
        }
        free(xl);
        free(xlse);
        free(pos);
        tu_tensor *all[] = {&xq, &xk, &xv, &xg, &xo, &xdq, &xdk, &xdv};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            tu_tensor_free(all[i]);
        OK(bsa_dist_plan_destroy(dp));
    }
    dc_whole_free(&w);
    bsa_layout_destroy(lay);
}

/* Bad arguments: the status, a message, and (for the collective checks)
 * every rank failing together. */
static void errors(bsa_context_t ctx, bsa_comm_t comm)
{
    bsa_preset ps = tu_preset(BSA_PATTERN_ALL, T, BLOCK, 0, 0);
    bsa_layout_t lay = NULL;
    OK(bsa_layout_create_preset(ctx, &lay, &ps));
    int64_t n = T / nranks;
    bsa_tensor_desc s = bsa_tensor_bhtd(1, 1, n, DIM);
    bsa_attn_desc d = {BSA_DTYPE_F32, s, s, s, s, 0.0f, 0};
    bsa_dist_plan_t dp = NULL;

    CHECK(bsa_dist_plan_create(ctx, &dp, &d, lay, NULL, NULL) == BSA_ERROR_NULL_POINTER &&
              strstr(bsa_last_error(), "comm"),
          "NULL comm: %s", bsa_last_error());

    /* one rank passes another dtype: every rank fails, none blocks */
    bsa_attn_desc d2 = d;
    if (rank == nranks - 1)
        d2.dtype = BSA_DTYPE_F16;
    bsa_status st = bsa_dist_plan_create(ctx, &dp, &d2, lay, comm, NULL);
    CHECK(st == BSA_ERROR_INVALID_ARGUMENT && strstr(bsa_last_error(), "dtype") && !dp,
          "mismatched dtype: %s: %s", bsa_status_string(st), bsa_last_error());

    /* one rank passes a wrong shard length: it says why, the others name it */
    bsa_attn_desc d3 = d;
    if (rank == 0)
        d3.q.dims[2] = d3.o.dims[2] = n / 2;
    st = bsa_dist_plan_create(ctx, &dp, &d3, lay, comm, NULL);
    CHECK(st == BSA_ERROR_SHAPE_MISMATCH && !dp &&
              strstr(bsa_last_error(), rank == 0 ? "T/P" : "rank 0"),
          "bad shard on rank 0: %s: %s", bsa_status_string(st), bsa_last_error());

    /* unknown enum values; varlen */
    bsa_dist_params bad = {(bsa_sharding)7, BSA_EXCHANGE_AUTO};
    st = bsa_dist_plan_create(ctx, &dp, &d, lay, comm, &bad);
    CHECK(st == BSA_ERROR_INVALID_ARGUMENT && strstr(bsa_last_error(), "sharding"),
          "bad sharding: %s", bsa_last_error());
    bsa_attn_desc d4 = d;
    d4.flags = BSA_PLAN_VARLEN;
    st = bsa_dist_plan_create(ctx, &dp, &d4, lay, comm, NULL);
    CHECK(st == BSA_ERROR_UNSUPPORTED && strstr(bsa_last_error(), "VARLEN"), "varlen: %s",
          bsa_last_error());

    /* a zig-zag shard that does not cut whole blocks (T/(2P) = 8 < block) */
    bsa_preset ps2 = tu_preset(BSA_PATTERN_ALL, 16 * nranks, 16, 0, 0);
    bsa_layout_t lay2 = NULL;
    OK(bsa_layout_create_preset(ctx, &lay2, &ps2));
    bsa_tensor_desc s2 = bsa_tensor_bhtd(1, 1, 16, DIM);
    bsa_attn_desc d5 = {BSA_DTYPE_F32, s2, s2, s2, s2, 0.0f, 0};
    bsa_dist_params zz = {BSA_SHARD_ZIGZAG, BSA_EXCHANGE_AUTO};
    st = bsa_dist_plan_create(ctx, &dp, &d5, lay2, comm, &zz);
    CHECK(st == BSA_ERROR_INVALID_SHAPE && strstr(bsa_last_error(), "T/(2P)"), "zig-zag cut: %s",
          bsa_last_error());
    bsa_dist_params au = {BSA_SHARD_AUTO, BSA_EXCHANGE_AUTO};
    OK(bsa_dist_plan_create(ctx, &dp, &d5, lay2, comm, &au)); /* AUTO falls back to contiguous */
    if (dp) {
        bsa_dist_info info;
        OK(bsa_dist_plan_info(dp, &info));
        CHECK(info.sharding == BSA_SHARD_CONTIGUOUS, "AUTO sharding %d", (int)info.sharding);
        OK(bsa_dist_plan_destroy(dp));
        dp = NULL;
    }

    OK(bsa_dist_plan_create(ctx, &dp, &d, lay, comm, NULL));
    if (dp) {
        /* handles in use are not destroyed */
        CHECK(bsa_comm_destroy(comm) == BSA_ERROR_INVALID_ARGUMENT, "comm destroyed under a plan");
        CHECK(bsa_layout_destroy(lay) == BSA_ERROR_INVALID_ARGUMENT,
              "layout destroyed under a plan");
        float *buf = tu_alloc(BSA_DTYPE_F32, 4 * n * DIM + 1);
        float *q = buf, *k = buf + n * DIM, *v = buf + 2 * n * DIM, *o = buf + 3 * n * DIM;
        int32_t len = 1;
        bsa_fwd_args fa = {q, k, v, o, NULL, &len};
        st = bsa_dist_forward(dp, &fa, NULL);
        CHECK(st == BSA_ERROR_INVALID_ARGUMENT && tu_is_poison(BSA_DTYPE_F32, o, 0),
              "key_lengths: %s", bsa_last_error());
        bsa_fwd_args fb = {q, k, v, NULL, NULL};
        CHECK(bsa_dist_forward(dp, &fb, NULL) == BSA_ERROR_NULL_POINTER &&
                  strstr(bsa_last_error(), "o"),
              "NULL o: %s", bsa_last_error());
        bsa_fwd_args fc = {q, k, v, q + 1, NULL}; /* o overlaps q */
        CHECK(bsa_dist_forward(dp, &fc, NULL) == BSA_ERROR_INVALID_ARGUMENT &&
                  strstr(bsa_last_error(), "memory"),
              "o overlapping q: %s", bsa_last_error());
        bsa_bwd_args bb = {q, k, v, o, NULL, o, q, k, v};
        CHECK(bsa_dist_backward(dp, &bb, NULL) == BSA_ERROR_NULL_POINTER &&
                  strstr(bsa_last_error(), "lse"),
              "NULL lse: %s", bsa_last_error());
        int64_t pos[1];
        CHECK(bsa_dist_shard_positions(dp, nranks, pos) == BSA_ERROR_INVALID_ARGUMENT,
              "positions of rank P");
        free(buf);
        OK(bsa_dist_plan_destroy(dp));
    }
    bsa_layout_destroy(lay2);
    bsa_layout_destroy(lay);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    /* one seed for every rank: rank 0's (BSA_TEST_SEED replays a run) */
    uint64_t seed = rank == 0 ? tu_seed() : 0;
    MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    tu_reseed(seed);

    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    OK(bsa_context_create(&ctx, &cp));
    CHECK(bsa_comm_compiled(BSA_COMM_MPI) == 1, "MPI engine not compiled");
    bsa_comm_t comm = NULL;
    MPI_Comm world = MPI_COMM_WORLD;
    OK(bsa_comm_create_mpi(&comm, &world));
    int r = -1, sz = -1;
    OK(bsa_comm_rank(comm, &r, &sz));
    CHECK(r == rank && sz == nranks, "bsa_comm_rank %d/%d", r, sz);
    if (rank == 0)
        printf("test_dist_mpi: %d ranks, T = %d, block %d, batch %d, heads %d, dim %d, f32\n",
               nranks, T, BLOCK, BATCH, HEADS, DIM);

    if (comm && ctx) {
        for (int pat = 0; pat < 4; pat++)
            for (int bidir = 0; bidir < 2; bidir++)
                for (int sh = BSA_SHARD_CONTIGUOUS; sh <= BSA_SHARD_ZIGZAG; sh++) {
                    dcase c = {(bsa_pattern)pat,
                               bidir,
                               (bsa_sharding)sh,
                               BSA_EXCHANGE_RING,
                               sh == BSA_SHARD_ZIGZAG,
                               0,
                               0};
                    run_case(ctx, comm, &c);
                }
        dcase extra[] = {
            {BSA_PATTERN_ALL, 0, BSA_SHARD_ZIGZAG, BSA_EXCHANGE_RING, 0, 0, 1},
            {BSA_PATTERN_FIXED, 0, BSA_SHARD_CONTIGUOUS, BSA_EXCHANGE_ALLGATHER, 1, 0, 1},
            {BSA_PATTERN_ALL, 1, BSA_SHARD_AUTO, BSA_EXCHANGE_AUTO, 0, 0, 0},
            {BSA_PATTERN_ALL, 0, BSA_SHARD_AUTO, BSA_EXCHANGE_ALLGATHER, 1, 1, 1},
            {BSA_PATTERN_LOCAL, 0, BSA_SHARD_AUTO, BSA_EXCHANGE_AUTO, 0, 1, 0},
            {BSA_PATTERN_ALL, 0, BSA_SHARD_ZIGZAG, BSA_EXCHANGE_RING, 1, 0, 1, BSA_DTYPE_F16},
            {BSA_PATTERN_FIXED, 1, BSA_SHARD_CONTIGUOUS, BSA_EXCHANGE_RING, 0, 1, 1,
             BSA_DTYPE_BF16},
        };
        for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
            run_case(ctx, comm, &extra[i]);
        errors(ctx, comm);
    }
    OK(bsa_comm_destroy(comm));
    OK(bsa_context_destroy(ctx));

    int total = 0, total_checks = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&checks, &total_checks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("test_dist_mpi: %d ranks: %d of %d checks failed\n", nranks, total, total_checks);
    MPI_Finalize();
    return total ? 1 : 0;
}
