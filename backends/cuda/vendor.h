/*
 * Vendor header: the CUDA backend's sources compile as CUDA (nvcc) or as
 * HIP (hipcc) from the same text.  Under HIP it renames only the runtime
 * calls, types and intrinsics those sources actually use; under nvcc it is
 * just the CUDA runtime header, so the CUDA build is unchanged.
 *
 * BSA_WAVE is the warp / wavefront width: 32 on NVIDIA; on AMD the
 * compiler's __AMDGCN_WAVEFRONT_SIZE in device code (64 on CDNA, 32 on
 * RDNA), or where the compiler no longer defines it (clang 20+), 64 on gfx9
 * and 32 on gfx10-12.  The host pass of a HIP build compiles for every offload target at
 * once, so it sees 64, the widest: host code may use it only to size
 * launches generously (kernels bound-check), never to index lanes.
 */
#ifndef BSA_CUDA_VENDOR_H
#define BSA_CUDA_VENDOR_H

#if defined(__HIPCC__)
#define BSA_VENDOR_HIP 1
#include <hip/hip_runtime.h>

#if defined(__HIP_DEVICE_COMPILE__) && defined(__AMDGCN_WAVEFRONT_SIZE)
#define BSA_WAVE __AMDGCN_WAVEFRONT_SIZE
#elif defined(__HIP_DEVICE_COMPILE__)
/* clang 20+ dropped __AMDGCN_WAVEFRONT_SIZE: GCN / CDNA (gfx9) run wave64,
 * RDNA (gfx10-12) wave32, HIP's default there (not -mwavefrontsize64) */
#if defined(__GFX9__)
#define BSA_WAVE 64
#else
#define BSA_WAVE 32
#endif
#else
#define BSA_WAVE 64
#endif

/* runtime */
#define cudaError_t hipError_t
#define cudaSuccess hipSuccess
#define cudaErrorMemoryAllocation hipErrorOutOfMemory
#define cudaStream_t hipStream_t
#define cudaMalloc hipMalloc
#define cudaFree hipFree
#define cudaMemcpy hipMemcpy
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaGetLastError hipGetLastError
#define cudaGetErrorString hipGetErrorString
#define cudaGetErrorName hipGetErrorName
#define cudaGetDevice hipGetDevice
#define cudaSetDevice hipSetDevice
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaFuncSetAttribute hipFuncSetAttribute
#define cudaLaunchKernel hipLaunchKernel
#define cudaErrorInvalidDeviceFunction hipErrorInvalidDeviceFunction
#define cudaFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
#define cudaDeviceProp hipDeviceProp_t
#define cudaGetDeviceProperties hipGetDeviceProperties
#define cudaErrorInvalidValue hipErrorInvalidValue

#else
#include <cuda_runtime.h>
#define BSA_WAVE 32
#endif

#endif
