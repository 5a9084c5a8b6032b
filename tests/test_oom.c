/*
 * Allocation failure: every host allocation the library makes is made to
 * fail in turn (the test links with -Wl,--wrap=malloc,calloc,realloc, so
 * the library's own calls come here; cmocka, libgomp and oneDNN are shared
 * libraries and keep the real ones).  Each failure must give
 * BSA_ERROR_OUT_OF_MEMORY with a message -- or success, where the library
 * can do without the memory (a shrinking realloc) -- never a crash or
 * another status, and leave no allocation behind: the live count of the
 * library's blocks returns to zero after every attempt.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bsa.h"
#include "internal.h" /* bsa_clear_error */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

/* Injection state: counting only while armed (inside library calls). */
static int armed;
static long fail_at = -1; /* index of the allocation that fails; -1 = none */
static long seen;
static long live;

static int should_fail(void)
{
    if (!armed)
        return 0;
    return seen++ == fail_at;
}

void *__wrap_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __real_malloc(n);
    if (p && armed)
        live++;
    return p;
}

void *__wrap_calloc(size_t n, size_t s)
{
    if (should_fail())
        return NULL;
    void *p = __real_calloc(n, s);
    if (p && armed)
        live++;
    return p;
}

void *__wrap_realloc(void *old, size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __real_realloc(old, n);
    if (p && !old && armed)
        live++;
    return p;
}

void __wrap_free(void *p)
{
    if (p && armed)
        live--;
    __real_free(p);
}

/* One whole use of the library: context, preset layout, plan, forward,
 * backward without workspace (the CPU backend allocates it), an unfused op,
 * a callback layout, teardown.  Returns the first failing status. */
static int cb_keep_lower(void *user, int head, int qb, int kb, int idx, int block, uint8_t *m)
{
    for (int i = 0; i < block * block; i++)
        m[i] = (uint8_t)((i / block + qb) >= (i % block + kb));
    return 0;
}

enum { B = 1, H = 2, T = 128, D = 16 };
static float q[B * H * T * D], k[B * H * T * D], v[B * H * T * D], o[B * H * T * D];
static float dout[B * H * T * D], dq[B * H * T * D], dk[B * H * T * D], dv[B * H * T * D];
static float lse[B * H * T];

static bsa_status session(void)
{
    bsa_context_t ctx = NULL;
    bsa_layout_t lay = NULL, lay2 = NULL;
    bsa_plan_t plan = NULL;
    float *w = NULL;
    bsa_clear_error(); /* so that each failure must write its own message */
    bsa_status st = bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CPU, 0, 1});
    if (st)
        return st;
    st = bsa_layout_create_preset(ctx, &lay,
                                  &(bsa_preset){BSA_PATTERN_FIXED, T, 16, H, 64, 2, 1, 0});
    if (!st) {
        bsa_attn_desc d = {BSA_DTYPE_F32};
        d.q = d.k = d.v = d.o = bsa_tensor_bhtd(B, H, T, D);
        st = bsa_plan_create(ctx, &plan, &d, lay);
    }
    if (!st)
        st = bsa_forward(plan, &(bsa_fwd_args){q, k, v, o, lse}, NULL, 0, NULL);
    if (!st)
        st = bsa_backward(plan, &(bsa_bwd_args){q, k, v, o, lse, dout, dq, dk, dv}, NULL, 0, NULL);
    int64_t n = 0;
    if (!st)
        st = bsa_sparse_weight_elems(plan, &n);
    if (!st) {
        armed = 0; /* the caller's buffer, not the library's */
        w = __real_malloc(sizeof(float) * (size_t)n);
        armed = 1;
        st = w ? bsa_sparse_nt(plan, q, k, w, NULL) : BSA_ERROR_INTERNAL;
    }
    if (!st) {
        bsa_layout_desc ld = {16, 1, T / 16, T / 16, BSA_PRED_CAUSAL, 0, 0};
        st = bsa_layout_create_callback(ctx, &lay2, &ld, NULL, cb_keep_lower, NULL);
    }
    armed = 0;
    __real_free(w);
    armed = 1;
    bsa_layout_destroy(lay2);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
    return st;
}

static void every_allocation_fails_cleanly(void **state)
{
    (void)state;
    for (int i = 0; i < B * H * T * D; i++) {
        q[i] = (float)((i * 37 % 101) - 50) / 50.0f;
        k[i] = (float)((i * 53 % 97) - 48) / 48.0f;
        v[i] = (float)((i * 71 % 89) - 44) / 44.0f;
        dout[i] = (float)((i * 29 % 83) - 41) / 41.0f;
    }
    /* count the allocations of a clean session */
    armed = 1, fail_at = -1, seen = 0, live = 0;
    assert_int_equal(session(), BSA_SUCCESS);
    armed = 0;
    long total = seen;
    assert_true(total > 0);
    assert_int_equal(live, 0);
    print_message("a clean session makes %ld host allocations\n", total);

    long oom = 0;
    for (long i = 0; i < total; i++) {
        armed = 1, fail_at = i, seen = 0, live = 0;
        bsa_status st = session();
        armed = 0;
        if (st != BSA_ERROR_OUT_OF_MEMORY && st != BSA_SUCCESS)
            print_error("allocation %ld: got %s (%s)\n", i, bsa_status_string(st),
                        bsa_last_error());
        assert_true(st == BSA_ERROR_OUT_OF_MEMORY || st == BSA_SUCCESS);
        if (st == BSA_ERROR_OUT_OF_MEMORY) {
            oom++;
            assert_true(strlen(bsa_last_error()) > 0);
        }
        if (live != 0)
            print_error("allocation %ld failed: %ld blocks leaked\n", i, live);
        assert_int_equal(live, 0);
    }
    print_message("%ld of %ld injected failures reported BSA_ERROR_OUT_OF_MEMORY; the others "
                  "were tolerated\n",
                  oom, total);
    assert_true(oom > total / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_allocation_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
