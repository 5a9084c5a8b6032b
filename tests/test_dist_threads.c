/*
 * Context parallelism without MPI: P threads of one process are the ranks,
 * joined by a mailbox transport given to bsa_comm_create_callbacks (so the
 * default build and the sanitizer builds run the dist plan too).  P = 3
 * (a ring that is not a power of two) and P = 2; patterns all, local,
 * strided, fixed, causal and bidirectional, contiguous and zig-zag shards,
 * ring and all-gather; against the single-process library on the whole
 * sequence (f32: 1e-6 relative L2, as tests/dist/test_dist_mpi.c), outputs
 * poisoned first; and a failing transport callback, which must fail plan
 * creation on every rank with BSA_ERROR_CALLBACK.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bsa.h"
#include "dist_case.h"
#include "mailbox.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- the transport */

/* tests/common/mailbox.c moving host memory (memcpy).  An endpoint's user
 * pointer is its case's fail_allgather: when set, every all-gather fails. */

static int host_copy_in(void *user, void **payload, const void *buf, size_t bytes)
{
    (void)user;
    if (!(*payload = malloc(bytes ? bytes : 1)))
        return 1;
    memcpy(*payload, buf, bytes);
    return 0;
}

static int host_copy_out(void *user, void *buf, const void *payload, size_t bytes)
{
    (void)user;
    memcpy(buf, payload, bytes);
    return 0;
}

static int host_release(void *user, void *payload)
{
    (void)user;
    free(payload);
    return 0;
}

static int host_allgather_check(void *user, const void *in, const void *out)
{
    (void)in;
    (void)out;
    return *(const int *)user ? 5 : 0;
}

static const mb_ops host_ops = {
    NULL, NULL, host_copy_in, host_copy_out, host_release, host_allgather_check, 0,
};

/* ------------------------------------------------------------- a case */

enum {
    T = 768,
    BLOCK = 16,
    BATCH = 1,
    HEADS = 2,
    DIM = 16
}; /* T/(2PL) a block multiple, P = 2, 3 */

typedef struct dcase {
    bsa_pattern pattern;
    int bidir;
    bsa_sharding sharding;
    bsa_dist_exchange exchange;
} dcase;

typedef struct shared_case {
    mb_world *w;
    int fail_allgather; /* inject: every allgather callback fails */
    const dcase *c;
    dc_whole whole; /* f32 */
    double worst[5];
    int failures;
    pthread_mutex_t mu;
} shared_case;

typedef struct rank_arg {
    shared_case *s;
    int rank;
} rank_arg;

static bsa_preset preset_of(const dcase *c)
{
    return dc_preset(c->pattern, c->bidir, T, BLOCK, HEADS);
}

static void note(shared_case *s, const char *what, bsa_status st)
{
    pthread_mutex_lock(&s->mu);
    s->failures++;
    fprintf(stderr, "FAIL: %s: %s: %s\n", what, bsa_status_string(st), bsa_last_error());
    pthread_mutex_unlock(&s->mu);
}

/* Relative L2 of got (shard rows [bh][n][d]) against ref (whole rows at pos). */
static double rel_l2(const float *got, const double *ref, int64_t n, int64_t d, const int64_t *pos)
{
    int64_t cnt = BATCH * HEADS * n * d;
    double *x = tu_xmalloc(sizeof(double) * cnt), e[2];
    tu_f32_to_f64(got, x, cnt);
    dc_shard_err(x, ref, BATCH * HEADS, T, n, d, pos, e);
    free(x);
    return e[0];
}

static void *rank_main(void *arg)
{
    rank_arg *a = arg;
    shared_case *s = a->s;
    int P = s->w->P, rank = a->rank;
    mb_endpoint ep = {s->w, rank, &s->fail_allgather};
    bsa_comm_callbacks cb = {mb_post, mb_wait, mb_allgather};
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 1};
    bsa_status st;
    if ((st = bsa_context_create(&ctx, &cp))) {
        note(s, "context", st);
        return NULL;
    }
    bsa_comm_t comm = NULL;
    bsa_layout_t lay = NULL;
    bsa_preset ps = preset_of(s->c);
    if ((st = bsa_comm_create_callbacks(&comm, rank, P, &cb, &ep)) ||
        (st = bsa_layout_create_preset(ctx, &lay, &ps))) {
        note(s, "comm/layout", st);
        return NULL;
    }
    int64_t n = T / P, rows = BATCH * HEADS * n, m = rows * DIM;
    bsa_tensor_desc t = bsa_tensor_bhtd(BATCH, HEADS, n, DIM);
    bsa_attn_desc d = {BSA_DTYPE_F32, t, t, t, t, 0.0f, 0};
    bsa_dist_params prm = {s->c->sharding, s->c->exchange};
    bsa_dist_plan_t dp = NULL;
    st = bsa_dist_plan_create(ctx, &dp, &d, lay, comm, &prm);
    if (s->fail_allgather) {
        if (st != BSA_ERROR_CALLBACK || dp)
            note(s, "a failing allgather callback must give BSA_ERROR_CALLBACK", st);
    } else if (st) {
        note(s, "bsa_dist_plan_create", st);
    } else {
        int64_t *pos = malloc(sizeof(int64_t) * n);
        float *buf = malloc(sizeof(float) * (9 * m + rows));
        float *q = buf, *k = q + m, *v = k + m, *g = v + m, *o = g + m, *dq = o + m, *dk = dq + m,
              *dv = dk + m, *lse = dv + m;
        bsa_dist_shard_positions(dp, rank, pos);
        const dc_whole *wh = &s->whole;
        const void *src[4] = {wh->q.data, wh->k.data, wh->v.data, wh->g.data};
        float *dst[4] = {q, k, v, g};
        for (int i = 0; i < 4; i++)
            dc_gather_rows(dst[i], src[i], sizeof(float), BATCH * HEADS, T, n, DIM, pos);
        tu_poison(BSA_DTYPE_F32, o, 4 * m + rows);
        bsa_fwd_args fa = {q, k, v, o, lse};
        bsa_bwd_args ba = {q, k, v, o, lse, g, dq, dk, dv};
        if ((st = bsa_dist_forward(dp, &fa, NULL)) || (st = bsa_dist_backward(dp, &ba, NULL)))
            note(s, "dist forward/backward", st);
        double e[5] = {rel_l2(o, wh->o.val, n, DIM, pos), rel_l2(lse, wh->lse_val, n, 1, pos),
                       rel_l2(dq, wh->dq.val, n, DIM, pos), rel_l2(dk, wh->dk.val, n, DIM, pos),
                       rel_l2(dv, wh->dv.val, n, DIM, pos)};
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < 5; i++)
            s->worst[i] = e[i] > s->worst[i] || isnan(e[i]) ? e[i] : s->worst[i];
        pthread_mutex_unlock(&s->mu);
        free(buf);
        free(pos);
        bsa_dist_plan_destroy(dp);
    }
    bsa_layout_destroy(lay);
    bsa_comm_destroy(comm);
    bsa_context_destroy(ctx);
    return NULL;
}

static void run(int P, const dcase *c, int fail_allgather)
{
    mb_world w;
    mb_world_init(&w, P, &host_ops);

    shared_case s;
    memset(&s, 0, sizeof s);
    s.w = &w;
    s.fail_allgather = fail_allgather;
    s.c = c;
    pthread_mutex_init(&s.mu, NULL);
    /* the inputs and the single-process reference */
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    assert_int_equal(bsa_context_create(&ctx, &cp), BSA_SUCCESS);
    bsa_layout_t lay = NULL;
    bsa_preset ps = preset_of(c);
    assert_int_equal(bsa_layout_create_preset(ctx, &lay, &ps), BSA_SUCCESS);
    assert_int_equal(dc_whole_init(&s.whole, ctx, lay, BSA_DTYPE_F32, BATCH, HEADS, HEADS, T, DIM),
                     BSA_SUCCESS);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);

    pthread_t th[8];
    rank_arg args[8];
    for (int r = 0; r < P; r++) {
        args[r] = (rank_arg){&s, r};
        assert_int_equal(pthread_create(&th[r], NULL, rank_main, &args[r]), 0);
    }
    for (int r = 0; r < P; r++)
        pthread_join(th[r], NULL);
    static const char *const names[] = {"all", "local", "strided", "fixed"};
    if (!fail_allgather)
        printf("  P=%d %-7s %-13s shards %d exchange %d: rel. L2 o %.1e lse %.1e dq %.1e dk "
               "%.1e dv %.1e\n",
               P, names[c->pattern], c->bidir ? "bidirectional" : "causal", (int)c->sharding,
               (int)c->exchange, s.worst[0], s.worst[1], s.worst[2], s.worst[3], s.worst[4]);
    assert_int_equal(s.failures, 0);
    for (int i = 0; i < 5 && !fail_allgather; i++)
        assert_true(s.worst[i] <= 1e-6);
    mb_world_print_left(&w);
    assert_null(w.head); /* every message was received */
    dc_whole_free(&s.whole);
    mb_world_fini(&w);
    pthread_mutex_destroy(&s.mu);
}

static void test_ranks(int P)
{
    for (int pat = 0; pat < 4; pat++)
        for (int bidir = 0; bidir < 2; bidir++)
            for (int sh = BSA_SHARD_CONTIGUOUS; sh <= BSA_SHARD_ZIGZAG; sh++) {
                dcase c = {(bsa_pattern)pat, bidir, (bsa_sharding)sh,
                           (pat + bidir) % 2 ? BSA_EXCHANGE_ALLGATHER : BSA_EXCHANGE_RING};
                run(P, &c, 0);
            }
}

static void test_three_ranks(void **state)
{
    test_ranks(3);
}

static void test_two_ranks(void **state)
{
    test_ranks(2);
}

/* One rank: no exchange at all, the dist plan is the single-process one. */
static void test_one_rank(void **state)
{
    dcase c = {BSA_PATTERN_FIXED, 0, BSA_SHARD_AUTO, BSA_EXCHANGE_RING};
    run(1, &c, 0);
    c.exchange = BSA_EXCHANGE_ALLGATHER;
    c.sharding = BSA_SHARD_ZIGZAG;
    run(1, &c, 0);
}

static void test_failing_transport(void **state)
{
    dcase c = {BSA_PATTERN_ALL, 0, BSA_SHARD_AUTO, BSA_EXCHANGE_AUTO};
    run(3, &c, 1);
}

static void test_bad_callbacks(void **state)
{
    bsa_comm_t comm = NULL;
    bsa_comm_callbacks cb = {mb_post, mb_wait, NULL};
    assert_int_equal(bsa_comm_create_callbacks(&comm, 0, 2, &cb, NULL), BSA_ERROR_NULL_POINTER);
    assert_non_null(strstr(bsa_last_error(), "allgather"));
    cb.allgather = mb_allgather;
    assert_int_equal(bsa_comm_create_callbacks(&comm, 2, 2, &cb, NULL), BSA_ERROR_INVALID_ARGUMENT);
    assert_int_equal(bsa_comm_create_callbacks(&comm, 0, 2, NULL, NULL), BSA_ERROR_NULL_POINTER);
    assert_null(comm);
    assert_int_equal(bsa_comm_compiled(BSA_COMM_CALLBACKS), 1);
    assert_int_equal(bsa_comm_create_callbacks(&comm, 1, 2, &cb, NULL), BSA_SUCCESS);
    int r = -1, n = -1;
    assert_int_equal(bsa_comm_rank(comm, &r, &n), BSA_SUCCESS);
    assert_true(r == 1 && n == 2);
    assert_int_equal(bsa_comm_destroy(comm), BSA_SUCCESS);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_ranks),   cmocka_unit_test(test_two_ranks),
        cmocka_unit_test(test_one_rank),      cmocka_unit_test(test_failing_transport),
        cmocka_unit_test(test_bad_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
