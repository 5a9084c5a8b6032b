/*
 * The one launch path of every kernel family, compiled as CUDA and as HIP:
 * the instance of a chosen kernel looked up in the generated tables (once,
 * at plan creation), its shared-memory limit set, and its launch with the
 * grid of its family and pass on the caller's stream.
 */
#include "cuda_internal.h"
#include "generated/instance_tables.h"
#include "kernel_instances.h"
#if !defined(BSA_VENDOR_HIP)
#include "hopper/hopper_host.h"
#endif

using namespace bsa_cuda;

namespace
{

const instance_table base_tables[] = {BSA_CUDA_TABLES_BOTH
#if !defined(BSA_VENDOR_HIP)
                                          BSA_CUDA_TABLES_CUDA
#endif
};

const void *find(const instance_table *t, int n, const instance_slot &key)
{
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < *t[i].count; ++j) {
            const instance_slot &s = t[i].slots[j];
            if (s.family == key.family && s.pass == key.pass && s.rows == key.rows &&
                s.stages == key.stages && s.dtype == key.dtype && s.dpad == key.dpad &&
                s.feat == key.feat && s.pred == key.pred && s.gather == key.gather)
                return s.fn;
        }
    return nullptr;
}

/* Threads a block of each family. */
unsigned threads_of(const bsa_gpu_kernel &k, int wave)
{
    switch (k.family) {
    case BSA_FAM_TILE:
        return 4u * (unsigned)wave; /* 4 warps of 16 owner rows */
    case BSA_FAM_WGMMA:
        return 256; /* two warpgroups */
    case BSA_FAM_WGMMA_WS:
        return 384; /* a producer and two consumer warpgroups */
    case BSA_FAM_REF:
        return k.pass == BSA_PASS_DELTA ? 256 : 64; /* reference: a large stack per thread */
    default:
        return 128; /* block rows, chunks, the Hopper chunk forward, Volta */
    }
}

} // namespace

bsa_cuda_instance bsa_cuda_instance_of(bsa_gpu_kernel k, bsa_dtype dt, int dpad, bool feat,
                                       bool pred, bool gather, int wave, bsa_gpu_target target)
{
    /* the key as the generated tables write it: 0 where the family has no
     * such template parameter */
    instance_slot key = {k.family, k.pass, k.rows, k.stages, dt, dpad, 0, 0, 0, nullptr};
    switch (k.family) {
    case BSA_FAM_TILE:
        key.feat = feat;
        if (k.pass == BSA_PASS_FWD)
            key.gather = gather && k.rows == 64;
        else /* interval-mask instances of dQ and dK/dV, for calls without the features */
            key.pred = pred && !feat && dpad <= 128;
        if (k.pass != BSA_PASS_DKDV)
            key.stages = 0;
        break;
    case BSA_FAM_WGMMA:
        key.feat = feat;
        key.gather = gather;
        break;
    case BSA_FAM_WGMMA_WS:
        key.pred = pred;
        break;
    case BSA_FAM_REF:
        key.dpad = 0;
        break;
    default:
        break;
    }
    if (k.family != BSA_FAM_TILE)
        key.stages = 0;
    bsa_cuda_instance in = {k, nullptr, threads_of(k, wave), bsa_gpu_kernel_smem(k, dpad, target)};
    if (k.family == BSA_FAM_REF)
        in.smem = 0;
    in.fn = find(base_tables, (int)(sizeof base_tables / sizeof base_tables[0]), key);
#if !defined(BSA_VENDOR_HIP)
    if (!in.fn) {
        int n = 0;
        const instance_table *h = bsa_cuda_hopper_tables(&n);
        in.fn = find(h, n, key);
    }
#endif
    return in;
}

cudaError_t bsa_cuda_instance_setup(const bsa_cuda_instance &in)
{
    if (!in.fn)
        return cudaErrorInvalidDeviceFunction;
    if (!in.smem)
        return cudaSuccess;
    return cudaFuncSetAttribute(in.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)in.smem);
}

/* The grid of a family and pass for the call's parameters. */
static dim3 grid_of(const bsa_gpu_kernel &k, const bsa_cuda_params &p)
{
    const int64_t q_bh = (int64_t)p.n_seg * p.heads, kv_bh = (int64_t)p.n_seg * p.kv_heads;
    switch (k.family) {
    case BSA_FAM_TILE:
    case BSA_FAM_VOLTA:
        return k.pass == BSA_PASS_DKDV
                   ? bsa_cuda_grid(p.n_kt, kv_bh)
                   : bsa_cuda_grid(k.rows == 128 ? (p.n_qt + 1) / 2 : p.n_qt, q_bh);
    case BSA_FAM_BROW: { /* two 32-row blocks a thread block */
        const int blocks = (k.pass == BSA_PASS_DKDV ? p.seq_k : p.seq_q) / 32;
        return bsa_cuda_grid((blocks + 1) / 2, q_bh);
    }
    case BSA_FAM_CHUNK:
    case BSA_FAM_WGMMA_CHUNK: /* a 128-row chunk a thread block */
        return bsa_cuda_grid(((p.n_qt > p.n_kt ? p.n_qt : p.n_kt) + 1) / 2, q_bh);
    case BSA_FAM_WGMMA:
    case BSA_FAM_WGMMA_WS: /* tile pairs; dK/dV: key tile pairs of a kv head */
        return k.pass == BSA_PASS_DKDV ? bsa_cuda_grid((p.n_kt + 1) / 2, kv_bh)
                                       : bsa_cuda_grid((p.n_qt + 1) / 2, q_bh);
    default: { /* reference: a thread a row */
        const int64_t rows = k.pass == BSA_PASS_DKDV ? kv_bh * p.seq_k : q_bh * p.seq_q;
        return dim3((unsigned)((rows + 63) / 64));
    }
    }
}

cudaError_t bsa_cuda_launch(const bsa_cuda_instance &in, const bsa_cuda_params &p, cudaStream_t s)
{
    if (!in.fn)
        return cudaErrorInvalidDeviceFunction;
    void *args[5] = {const_cast<bsa_cuda_params *>(&p)};
#if !defined(BSA_VENDOR_HIP)
    /* the warp-specialised forward also takes the TMA tensor maps of the
     * call's Q, K, V and O */
    alignas(64) unsigned char maps[4][BSA_CUDA_TMAP_BYTES];
    if (in.k.family == BSA_FAM_WGMMA_WS) {
        if (!bsa_cuda_ws_tensor_maps(p, maps))
            return cudaErrorInvalidValue;
        for (int i = 0; i < 4; ++i)
            args[1 + i] = maps[i];
    }
#endif
    cudaError_t e = cudaLaunchKernel(in.fn, grid_of(in.k, p), dim3(in.threads), args, in.smem, s);
    return e != cudaSuccess ? e : cudaGetLastError();
}

bsa_cuda_instance bsa_cuda_delta_instance(bsa_dtype dt, int dim_v, const int64_t *o_strides,
                                          size_t align)
{
    const int per = dt == BSA_DTYPE_F32 ? 4 : 8; /* elements a 16-byte chunk */
    const bool vec = align >= 16 && dim_v % per == 0 && o_strides[0] % per == 0 &&
                     o_strides[1] % per == 0 && o_strides[2] % per == 0;
    const bsa_gpu_kernel k = {BSA_FAM_REF, (unsigned char)BSA_PASS_DELTA,
                              (unsigned char)(vec ? 8 : 32), 0};
    return bsa_cuda_instance_of(k, dt, 0, false, false, false, 32, BSA_GPU_TARGET_NVIDIA);
}

cudaError_t bsa_cuda_delta_launch(const bsa_cuda_instance &in, const bsa_cuda_params &p,
                                  cudaStream_t s)
{
    if (!in.fn)
        return cudaErrorInvalidDeviceFunction;
    /* lanes a row: 8 (16-byte chunks), or a warp (HIP's host sees the
     * widest wave: generous, the kernel bound-checks its rows) */
    const int64_t rows = (int64_t)p.batch * p.heads * p.time_q;
    const int64_t lanes = rows * (in.k.rows == 8 ? 8 : BSA_WAVE);
    void *args[] = {const_cast<bsa_cuda_params *>(&p)};
    cudaError_t e =
        cudaLaunchKernel(in.fn, dim3((unsigned)((lanes + 255) / 256)), dim3(256), args, 0, s);
    return e != cudaSuccess ? e : cudaGetLastError();
}
