/*
 * GPU memory through the vendor runtime when the tool is built with it
 * (BSA_WITH_CUDA / BSA_WITH_HIP from tools/CMakeLists.txt); host memory
 * otherwise.  A GPU backend reached without its runtime here is reported,
 * never handed host pointers.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli_device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(BSA_WITH_CUDA)
#include <cuda_runtime_api.h>
#define GPU_KIND BSA_BACKEND_CUDA
#define gpuError_t cudaError_t
#define gpuSuccess cudaSuccess
#define gpuGetErrorString cudaGetErrorString
#define gpuSetDevice cudaSetDevice
#define gpuMalloc cudaMalloc
#define gpuFree cudaFree
#define gpuMemcpy cudaMemcpy
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuDeviceSynchronize cudaDeviceSynchronize
#define gpuGetDevice cudaGetDevice
#define gpuDeviceProp struct cudaDeviceProp
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuMemGetInfo cudaMemGetInfo
#elif defined(BSA_WITH_HIP)
#ifndef __HIP_PLATFORM_AMD__
#define __HIP_PLATFORM_AMD__
#endif
#include <hip/hip_runtime_api.h>
#define GPU_KIND BSA_BACKEND_HIP
#define gpuError_t hipError_t
#define gpuSuccess hipSuccess
#define gpuGetErrorString hipGetErrorString
#define gpuSetDevice hipSetDevice
#define gpuMalloc hipMalloc
#define gpuFree hipFree
#define gpuMemcpy hipMemcpy
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuDeviceSynchronize hipDeviceSynchronize
#define gpuGetDevice hipGetDevice
#define gpuDeviceProp hipDeviceProp_t
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuMemGetInfo hipMemGetInfo
#endif

#ifdef GPU_KIND
static int gpu_check(gpuError_t e, const char *what)
{
    if (e == gpuSuccess)
        return 0;
    fprintf(stderr, "bsa: %s: %s\n", what, gpuGetErrorString(e));
    return -1;
}
#endif

/* 1: GPU memory through the runtime; 0: host memory; -1: unreachable. */
static int kind_of(bsa_backend backend)
{
    if (backend == BSA_BACKEND_CPU || backend == BSA_BACKEND_AUTO)
        return 0;
#ifdef GPU_KIND
    if (backend == GPU_KIND)
        return 1;
#endif
    fprintf(stderr,
            "bsa: the %s backend needs device memory, but this tool was built without "
            "that runtime\n",
            bsa_backend_name(backend));
    return -1;
}

int cli_dev_select(bsa_backend backend, int device)
{
    int k = kind_of(backend);
    if (k <= 0)
        return k;
#ifdef GPU_KIND
    return gpu_check(gpuSetDevice(device), "selecting the device");
#else
    (void)device;
    return -1;
#endif
}

void *cli_dev_alloc(bsa_backend backend, size_t bytes)
{
    int k = kind_of(backend);
    if (k < 0 || bytes == 0)
        return NULL;
    void *p = NULL;
    if (k == 0) {
        /* 64-byte alignment suits every vector width the CPU backend uses. */
        size_t rounded = (bytes + 63) / 64 * 64;
        p = aligned_alloc(64, rounded);
        if (!p)
            fprintf(stderr, "bsa: out of host memory (%zu bytes)\n", bytes);
        return p;
    }
#ifdef GPU_KIND
    if (gpu_check(gpuMalloc(&p, bytes), "device allocation") != 0)
        return NULL;
#endif
    return p;
}

void cli_dev_free(bsa_backend backend, void *p)
{
    if (!p)
        return;
    int k = kind_of(backend);
    if (k == 0)
        free(p);
#ifdef GPU_KIND
    else if (k == 1)
        gpuFree(p);
#endif
}

static int copy(bsa_backend backend, void *dst, const void *src, size_t bytes, int to_device)
{
    int k = kind_of(backend);
    if (k < 0)
        return -1;
    if (k == 0) {
        memcpy(dst, src, bytes);
        return 0;
    }
#ifdef GPU_KIND
    return gpu_check(
        gpuMemcpy(dst, src, bytes, to_device ? gpuMemcpyHostToDevice : gpuMemcpyDeviceToHost),
        to_device ? "copy to the device" : "copy from the device");
#else
    (void)to_device;
    return -1;
#endif
}

int cli_dev_upload(bsa_backend backend, void *dst, const void *src, size_t bytes)
{
    return copy(backend, dst, src, bytes, 1);
}

void *cli_dev_copy_of(bsa_backend backend, const void *host, size_t bytes)
{
    void *d = cli_dev_alloc(backend, bytes);
    if (d && cli_dev_upload(backend, d, host, bytes) != 0) {
        cli_dev_free(backend, d);
        d = NULL;
    }
    return d;
}

int cli_dev_download(bsa_backend backend, void *dst, const void *src, size_t bytes)
{
    return copy(backend, dst, src, bytes, 0);
}

int cli_dev_sync(bsa_backend backend)
{
    int k = kind_of(backend);
    if (k <= 0)
        return k;
#ifdef GPU_KIND
    return gpu_check(gpuDeviceSynchronize(), "device synchronisation");
#else
    return -1;
#endif
}

void cli_dev_name(bsa_backend backend, char *buf, size_t len)
{
    snprintf(buf, len, "host CPU, %ld cores", sysconf(_SC_NPROCESSORS_ONLN));
#ifdef GPU_KIND
    if (kind_of(backend) == 1) {
        int dev = 0;
        gpuDeviceProp prop;
        if (gpuGetDevice(&dev) == gpuSuccess && gpuGetDeviceProperties(&prop, dev) == gpuSuccess)
            snprintf(buf, len, "%s (device %d)", prop.name, dev);
    }
#else
    (void)backend;
#endif
}

int cli_dev_mem_free(bsa_backend backend, double *bytes)
{
    *bytes = 0;
    if (backend == BSA_BACKEND_CPU || backend == BSA_BACKEND_AUTO)
        return -1;
#ifdef GPU_KIND
    if (backend == GPU_KIND) {
        size_t free_b = 0, total_b = 0;
        if (gpuMemGetInfo(&free_b, &total_b) != gpuSuccess)
            return -1;
        *bytes = (double)free_b;
        return 0;
    }
#endif
    return -1;
}
