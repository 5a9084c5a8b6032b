/*
 * Host-side parts of the HIP backend, without an AMD device (none exists in
 * CI or on the GPU machine):
 *  - the plan-time decisions of backends/hip/hip_path.c (built in every
 *    configuration): which targets are MFMA, head-dim padding, why the
 *    matrix-tile forward declines a shape, implementation names;
 *  - in HIP builds (BSA_WITH_HIP): the backend is compiled and registered
 *    as "hip"; with no device, asking for it fails with NO_DEVICE and a
 *    message from the HIP runtime, and AUTO falls back to another backend.
 * Shapes are drawn at random around each limit, so a wrong bound fails.
 */
#include "backends/hip/hip_path.h"
#include "bsa.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_arch_mfma(void **state)
{
    (void)state;
    const char *yes[] = {"gfx90a", "gfx90a:sramecc+:xnack-", "gfx940", "gfx941",
                         "gfx942", "gfx942:sramecc+:xnack-"};
    const char *no[] = {"gfx1030", "gfx1100", "gfx908", "gfx906", "gfx90",
                        "gfx9400", "gfx90ab", "",       "sm_90",  "gfx1030:xnack-"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); ++i)
        assert_int_equal(bsa_hip_arch_mfma(yes[i]), 1);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); ++i)
        assert_int_equal(bsa_hip_arch_mfma(no[i]), 0);
    assert_int_equal(bsa_hip_arch_mfma(NULL), 0);
}

static void test_pad_dim(void **state)
{
    (void)state;
    for (int64_t d = 1; d <= 300; ++d) {
        int p = bsa_hip_pad_dim(d);
        if (d > 256) {
            assert_int_equal(p, 0);
            continue;
        }
        /* the smallest of 32, 64, 128, 256 holding d */
        assert_true(p >= d);
        assert_true(p == 32 || p == 64 || p == 128 || p == 256);
        assert_true(p == 32 || p / 2 < d);
    }
    assert_int_equal(bsa_hip_pad_dim(0), 0);
    assert_int_equal(bsa_hip_pad_dim(-8), 0);
}

/* A shape the tile kernels take: f16/bf16, head dims multiples of 8 up
 * to 128, strides of a contiguous [b, h, t, d] (multiples of 8). */
static bsa_shape random_shape(void)
{
    bsa_shape s;
    memset(&s, 0, sizeof(s));
    s.batch = 1 + rand() % 4;
    s.heads = 1 + rand() % 16;
    s.seq_q = s.seq_k = 64 * (1 + rand() % 8);
    s.head_dim = 8 * (1 + rand() % 16);
    s.kv_heads = s.heads;
    s.v_dim = s.head_dim;
    s.dtype = rand() % 2 ? BSA_DTYPE_F16 : BSA_DTYPE_BF16;
    s.scale = 0.125f;
    int64_t *st[4] = {s.q_stride, s.k_stride, s.v_stride, s.o_stride};
    for (int i = 0; i < 4; ++i) {
        st[i][3] = 1;
        st[i][2] = s.head_dim;
        st[i][1] = s.seq_q * s.head_dim;
        st[i][0] = s.heads * s.seq_q * s.head_dim;
    }
    return s;
}

static void test_tile_decline(void **state)
{
    (void)state;
    for (int it = 0; it < 200; ++it) {
        bsa_shape s = random_shape();
        int wave = rand() % 2 ? 32 : 64;
        assert_null(bsa_hip_tile_decline(&s, wave));

        bsa_shape t = s;
        t.dtype = BSA_DTYPE_F32;
        const char *why = bsa_hip_tile_decline(&t, wave);
        assert_non_null(why);
        assert_non_null(strstr(why, "dtype"));

        t = s;
        *(rand() % 2 ? &t.head_dim : &t.v_dim) = 136 + 8 * (rand() % 16);
        why = bsa_hip_tile_decline(&t, wave);
        assert_non_null(why);
        assert_non_null(strstr(why, "head dim"));

        t = s;
        t.v_dim = s.head_dim + 4; /* not a multiple of 8 */
        why = bsa_hip_tile_decline(&t, wave);
        assert_non_null(why);
        assert_non_null(strstr(why, "multiple of 8"));

        t = s;
        t.k_stride[2] += 4; /* rows no longer 16-byte aligned */
        why = bsa_hip_tile_decline(&t, wave);
        assert_non_null(why);
        assert_non_null(strstr(why, "stride"));

        why = bsa_hip_tile_decline(&s, wave == 32 ? 16 : 128);
        assert_non_null(why);
        assert_non_null(strstr(why, "wave"));

        /* the features beyond the seed stay on the tile kernels */
        t = s;
        t.heads *= 2;
        t.kv_heads = 1;
        t.varlen = 1;
        assert_null(bsa_hip_tile_decline(&t, wave));

        /* the tile backward: head dims up to 64 */
        why = bsa_hip_tile_bwd_decline(&s);
        if (s.head_dim <= 64)
            assert_null(why);
        else
            assert_non_null(why), assert_non_null(strstr(why, "64"));
    }
}

static void test_impl_names(void **state)
{
    (void)state;
    assert_string_equal(bsa_hip_impl_name(1, 1), "hip-mfma");
    assert_string_equal(bsa_hip_impl_name(1, 0), "hip-tile-fma");
    assert_string_equal(bsa_hip_impl_name(0, 1), "hip-reference");
    assert_string_equal(bsa_hip_impl_name(0, 0), "hip-reference");
}

static void test_registration(void **state)
{
    (void)state;
    assert_string_equal(bsa_backend_name(BSA_BACKEND_HIP), "hip");
#ifdef BSA_WITH_HIP
    assert_int_equal(bsa_backend_compiled(BSA_BACKEND_HIP), 1);
    bsa_context_params p = {BSA_BACKEND_HIP, 0, 0};
    bsa_context_t ctx = (bsa_context_t)(uintptr_t)0x1; /* poison: must stay or become valid */
    bsa_status st = bsa_context_create(&ctx, &p);
    if (st == BSA_SUCCESS) {
        /* a machine with an AMD GPU: the backend is the one asked for */
        bsa_backend b = BSA_BACKEND_CPU;
        assert_int_equal(bsa_context_backend(ctx, &b), BSA_SUCCESS);
        assert_int_equal(b, BSA_BACKEND_HIP);
        bsa_context_destroy(ctx);
        printf("hip device present: backend selected\n");
    } else {
        assert_int_equal(st, BSA_ERROR_NO_DEVICE);
        const char *msg = bsa_last_error();
        printf("no hip device: %s\n", msg);
        assert_non_null(strstr(msg, "hip backend"));
        /* AUTO skips the missing device and lands on the CPU */
        bsa_context_params a = {BSA_BACKEND_AUTO, 0, 0};
        assert_int_equal(bsa_context_create(&ctx, &a), BSA_SUCCESS);
        bsa_backend b = BSA_BACKEND_HIP;
        assert_int_equal(bsa_context_backend(ctx, &b), BSA_SUCCESS);
        assert_int_equal(b, BSA_BACKEND_CPU);
        bsa_context_destroy(ctx);
    }
#else
    assert_int_equal(bsa_backend_compiled(BSA_BACKEND_HIP), 0);
    skip();
#endif
}

int main(void)
{
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arch_mfma),    cmocka_unit_test(test_pad_dim),
        cmocka_unit_test(test_tile_decline), cmocka_unit_test(test_impl_names),
        cmocka_unit_test(test_registration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
