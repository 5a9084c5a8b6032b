/*
 * Hopper (sm_90a) tensor-memory-accelerator loads and the shared-memory
 * barriers (mbarrier) they complete on, for the warp-specialised forward
 * (fwd_ws_wgmma.cuh).  A TMA load copies a box of a tensor, described by a
 * tensor map (CUtensorMap, encoded on the host: hopper_host.cu), into
 * shared memory in wgmma's 128-byte swizzled layout, zero-filling what lies
 * outside the tensor, and signals the bytes' arrival on an mbarrier.
 */
#ifndef BSA_CUDA_HOPPER_TMA_CUH
#define BSA_CUDA_HOPPER_TMA_CUH

#include "../device_common.cuh"

#include <cuda.h>

namespace bsa_cuda
{
namespace hopper
{

__device__ __forceinline__ void mbar_init(uint64_t *bar, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count)
                 : "memory");
}
/* makes initialised barriers visible to the async proxy (TMA) */
__device__ __forceinline__ void mbar_init_fence()
{
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/* one arrival, announcing `bytes` that TMA loads will deliver */
__device__ __forceinline__ void mbar_arrive_tx(uint64_t *bar, unsigned bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
/* waits until the barrier's phase of the given parity has completed */
__device__ __forceinline__ void mbar_wait(uint64_t *bar, unsigned parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(smem_u32(bar)), "r"(parity)
                     : "memory");
    } while (!done);
}

/* A box of a 4-dimensional tensor at coordinates (c0 innermost .. c3) into
 * shared memory; completes on bar. */
__device__ __forceinline__ void tma_load_4d(void *dst, const CUtensorMap *map, uint64_t *bar,
                                            int c0, int c1, int c2, int c3)
{
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4, %5, %6}], [%2];\n" ::"r"(smem_u32(dst)),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1),
                 "r"(c2), "r"(c3)
                 : "memory");
}

/* A shared-memory box to a 4-dimensional tensor at coordinates (c0
 * innermost .. c3), rows and columns past the tensor's edges not written;
 * the shared writes before it must be fenced for the async proxy
 * (fence_proxy_async).  Completes with the issuing thread's bulk group. */
__device__ __forceinline__ void tma_store_4d(const CUtensorMap *map, const void *src, int c0,
                                             int c1, int c2, int c3)
{
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group"
                 " [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(reinterpret_cast<uint64_t>(map)),
                 "r"(smem_u32(src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}
/* Closes the issuing thread's bulk group and waits until its shared
 * sources have been read (the block may then end or reuse them). */
__device__ __forceinline__ void tma_store_drain()
{
    asm volatile("cp.async.bulk.commit_group;\n"
                 "cp.async.bulk.wait_group.read 0;\n" ::
                     : "memory");
}

/* Moves a warpgroup's registers per thread to N (all its warps execute it):
 * producer warps give theirs to the consumers of the same block. */
template <int N> __device__ __forceinline__ void setmaxnreg_dec()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void setmaxnreg_inc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* A barrier among `threads` threads (a multiple of 32) of the block, id 1..15
 * (0 is __syncthreads'). */
__device__ __forceinline__ void named_sync(int id, int threads)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

} // namespace hopper
} // namespace bsa_cuda

#endif
