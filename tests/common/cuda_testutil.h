/*
 * Helpers of the CUDA test programs (include after cmocka.h, in a
 * BSA_WITH_CUDA build): device presence, skipping without one, CUDA call
 * checks and library status checks that print the reason.
 */
#ifndef BSA_CUDA_TESTUTIL_H
#define BSA_CUDA_TESTUTIL_H

#include "bsa.h"

#include <cuda_runtime.h>
#include <stdio.h>

static inline int have_device(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n > 0;
}

#define SKIP_WITHOUT_GPU()                                                                         \
    do {                                                                                           \
        if (!have_device()) {                                                                      \
            fprintf(stderr, "no CUDA device: skipped\n");                                          \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#define CU(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess)                                                                     \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
        assert_int_equal(e_, cudaSuccess);                                                         \
    } while (0)

static inline void expect_ok(bsa_status st, const char *what)
{
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s: %s\n", what, bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
}

#endif
