/*
 * Buffers where a backend wants its tensors: host memory for the CPU
 * backend, device memory for CUDA and HIP (when the tool was built with
 * that runtime).  The public API takes raw pointers and leaves allocation
 * to the caller, so the tool needs this small layer of its own.
 */
#ifndef BSA_CLI_DEVICE_H
#define BSA_CLI_DEVICE_H

#include "bsa.h"

#include <stddef.h>

/* Selects the device of a GPU backend (no-op on the CPU).  Returns 0, or
 * -1 after printing why. */
int cli_dev_select(bsa_backend backend, int device);

/* NULL after printing why (or for bytes == 0). */
void *cli_dev_alloc(bsa_backend backend, size_t bytes);
void cli_dev_free(bsa_backend backend, void *p);

/* A copy of bytes at host where the backend wants it (NULL after printing
 * why, or for bytes == 0). */
void *cli_dev_copy_of(bsa_backend backend, const void *host, size_t bytes);

/* Copies; return 0, or -1 after printing why. */
int cli_dev_upload(bsa_backend backend, void *dst, const void *src, size_t bytes);
int cli_dev_download(bsa_backend backend, void *dst, const void *src, size_t bytes);

/* Waits for all work queued on the device (the NULL stream). */
int cli_dev_sync(bsa_backend backend);

/* Free memory of the selected device of a GPU backend (cudaMemGetInfo /
 * hipMemGetInfo): 0 and *bytes, or -1 (the CPU, or not reachable). */
int cli_dev_mem_free(bsa_backend backend, double *bytes);

/* A short device description for reports, e.g. "NVIDIA H100 80GB HBM3". */
void cli_dev_name(bsa_backend backend, char *buf, size_t len);

#endif
