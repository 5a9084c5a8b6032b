/*
 * Helpers of the CUDA test programs (include after cmocka.h, in a
 * BSA_WITH_CUDA build): device presence, skipping without one, CUDA call
 * checks, library status checks that print the reason, and test tensors'
 * device copies.
 */
#ifndef BSA_CUDA_TESTUTIL_H
#define BSA_CUDA_TESTUTIL_H

#include "bsa.h"
#include "testutil.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

static inline int have_device(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n > 0;
}

/* ctest's skip code (tests/CMakeLists.txt sets SKIP_RETURN_CODE 77): a GPU
 * program on a machine without a device reports "Skipped", not "Passed". */
#define BSA_TEST_SKIPPED 77
static inline void exit_skipped_without_gpu(const char *program)
{
    if (!have_device()) {
        printf("%s: no CUDA device: every test skipped (exit %d)\n", program, BSA_TEST_SKIPPED);
        exit(BSA_TEST_SKIPPED);
    }
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

/* Bytes of a test tensor's buffer (its whole span, gaps included). */
static inline size_t tensor_bytes(const tu_tensor *t)
{
    return (size_t)t->span * tu_dtype_size(t->dtype);
}

/* A device copy of bytes at host (NULL for a NULL host pointer). */
static inline void *dev_upload(const void *host, size_t bytes)
{
    void *d = NULL;
    if (!host)
        return NULL;
    CU(cudaMalloc(&d, bytes ? bytes : 1));
    CU(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    return d;
}

static inline void *dev_upload_tensor(const tu_tensor *t)
{
    return dev_upload(t->data, tensor_bytes(t));
}

/* Poisons the device buffer (whole span, gaps included) from the host's. */
static inline void dev_poison(void *dev, tu_tensor *t)
{
    tu_tensor_poison(t);
    CU(cudaMemcpy(dev, t->data, tensor_bytes(t), cudaMemcpyHostToDevice));
}

/* Copies the device buffer back and reads it into t's values. */
static inline void dev_download(tu_tensor *t, const void *dev)
{
    CU(cudaMemcpy(t->data, dev, tensor_bytes(t), cudaMemcpyDeviceToHost));
    tu_tensor_read(t);
}

static inline void expect_ok(bsa_status st, const char *what)
{
    if (st != BSA_SUCCESS)
        fprintf(stderr, "%s: %s: %s\n", what, bsa_status_string(st), bsa_last_error());
    assert_int_equal(st, BSA_SUCCESS);
}

#endif
