/*
 * The HIP backend's registration, without an AMD device (none exists in CI
 * or on the GPU machine): in HIP builds (BSA_WITH_HIP) the backend is
 * compiled and registered as "hip"; with no device, asking for it fails
 * with NO_DEVICE and a message from the HIP runtime, and AUTO falls back to
 * another backend.  Its plan-time choices are the GPU implementation
 * list's, tested for AMD cards in test_dispatch.c.
 */
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
