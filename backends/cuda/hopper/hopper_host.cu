/*
 * Host side of the Hopper kernels (sm_90a; backends/cuda/CMakeLists.txt
 * builds the hopper/ files for that target alone, hopper_absent.cu stands
 * in without sm_90): their instance tables (generated/hopper_*.cu), the
 * driver's tensor-map encoder, and the tensor maps of the warp-specialised
 * forward's call.
 */
#include "dkdv_wgmma.cuh"
#include "dq_wgmma.cuh"
#include "fwd_chunk_wgmma.cuh"
#include "fwd_wgmma.cuh"
#include "fwd_ws_wgmma.cuh"

#include "../generated/instance_tables.h"
#include "hopper_host.h"

#include <cudaTypedefs.h>

namespace bsa_cuda
{
namespace hopper
{

/* the implementation list's table (gpu/kernel_smem.h) */
#define BSA_HOPPER_SMEM_CHECK(dp)                                                                  \
    static_assert(smem_bytes<dp, 2>() == BSA_SMEM_WGMMA_FWD(dp), "smem table");                    \
    static_assert(dq_smem_bytes<dp, 2>() == BSA_SMEM_WGMMA_DQ(dp), "smem table");                  \
    static_assert(dkdv_smem_bytes<dp>() == BSA_SMEM_WGMMA_DKDV(dp), "smem table");                 \
    static_assert(ws_smem_bytes<dp>() == BSA_SMEM_WGMMA_WS(dp), "smem table");                     \
    static_assert(chunk_fwd_wgmma_smem<dp>() == BSA_SMEM_WGMMA_CHUNK(dp), "smem table");
BSA_HOPPER_SMEM_CHECK(64)
BSA_HOPPER_SMEM_CHECK(128)
#undef BSA_HOPPER_SMEM_CHECK
static_assert(sizeof(CUtensorMap) == BSA_CUDA_TMAP_BYTES, "tensor map storage");

/* cuTensorMapEncodeTiled, through the runtime (the library links no
 * libcuda); null where the driver lacks it */
static PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder()
{
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void *f = nullptr;
        cudaDriverEntryPointQueryResult q;
#if CUDART_VERSION >= 12050
        const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                               cudaEnableDefault, &q);
#else
        const cudaError_t e =
            cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &q);
#endif
        if (e != cudaSuccess || q != cudaDriverEntryPointSuccess)
            f = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
    }();
    return fn;
}

/* The tensor map of Q, K, V or O (dim columns): [batch][rows][heads][dim]
 * with the call's strides, in boxes of 64 columns x box_rows rows in
 * wgmma's 128-byte swizzle, zeros read (nothing written) past every edge.
 * False where TMA cannot address the tensor (the plan's checks and the
 * call's alignment check leave only a driver failure). */
static bool tile_tensor_map(CUtensorMap *map, const void *base, const int64_t *st, int dim,
                            int rows, int heads, int box_rows, const bsa_cuda_params &p)
{
    const PFN_cuTensorMapEncodeTiled_v12000 enc = tensor_map_encoder();
    if (!enc || (uintptr_t)base % 16 != 0)
        return false;
    for (int i = 0; i < 3; ++i)
        if (st[i] <= 0 || st[i] % 8 != 0)
            return false;
    const cuuint64_t gdim[4] = {(cuuint64_t)dim, (cuuint64_t)rows, (cuuint64_t)heads,
                                (cuuint64_t)p.batch};
    const cuuint64_t gstride[3] = {(cuuint64_t)st[2] * 2, (cuuint64_t)st[1] * 2,
                                   (cuuint64_t)st[0] * 2};
    const cuuint32_t box[4] = {64, (cuuint32_t)box_rows, 1, 1}, estride[4] = {1, 1, 1, 1};
    return enc(map,
               p.dtype == BSA_DTYPE_F16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                        : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
               4, const_cast<void *>(base), gdim, gstride, box, estride,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

} // namespace hopper

static const instance_table hopper_tables[] = {BSA_CUDA_TABLES_HOPPER};

} // namespace bsa_cuda

using namespace bsa_cuda;

const instance_table *bsa_cuda_hopper_tables(int *n)
{
    *n = (int)(sizeof hopper_tables / sizeof hopper_tables[0]);
    return hopper_tables;
}

bool bsa_cuda_tma_encoder()
{
    return hopper::tensor_map_encoder() != nullptr;
}

bool bsa_cuda_ws_tensor_maps(const bsa_cuda_params &p, unsigned char (*maps)[BSA_CUDA_TMAP_BYTES])
{
    using hopper::kWsStoreRows;
    CUtensorMap *m = reinterpret_cast<CUtensorMap *>(maps);
    return hopper::tile_tensor_map(&m[0], p.q, p.q_s, p.dim, p.seq_q, p.heads, kTile, p) &&
           hopper::tile_tensor_map(&m[1], p.k, p.k_s, p.dim, p.seq_k, p.kv_heads, kTile, p) &&
           hopper::tile_tensor_map(&m[2], p.v, p.v_s, p.dim_v, p.seq_k, p.kv_heads, kTile, p) &&
           hopper::tile_tensor_map(&m[3], p.o_out, p.o_s, p.dim_v, p.seq_q, p.heads, kWsStoreRows,
                                   p);
}
