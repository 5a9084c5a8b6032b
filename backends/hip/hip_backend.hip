/*
 * The HIP backend (AMD GPUs): device probing, per-layout table upload,
 * plan-time choice of the implementation, forward / backward launches.
 *
 * The kernels are the CUDA backend's, compiled as HIP (../cuda/vendor.h):
 * the tensor-core kernels of tc_kernels.cuh on the AMD warp tile
 * (tile_amd.cuh: MFMA on CDNA, scalar FMA elsewhere) and the reference
 * kernels.  Implementations (bsa_plan_implementation names the one used):
 *   "hip-mfma"       the tile kernels on MFMA: CDNA gfx90a / gfx940-942;
 *   "hip-tile-fma"   the same kernels where the tile is scalar FMAs (RDNA
 *                    gfx1030 and other targets without MFMA);
 *   "hip-reference"  the scalar fp32 reference kernels: every dtype, head
 *                    dim <= 256.
 * The tile forward takes f16/bf16 up to head dim 128, the tile backward up
 * to 64 (64 KB of LDS per workgroup); the rest runs on the reference
 * kernels.  BSA_HIP_PATH=tile|reference (or BSA_PLAN_FORCE_REFERENCE)
 * forces one.
 *
 * Like the CUDA backend, forward and backward allocate nothing, copy
 * nothing and never synchronise: they launch on the caller's stream.  HIP
 * runtime errors become BSA_ERROR_DEVICE (or OUT_OF_MEMORY) with the HIP
 * error string.
 */
#include "hip_internal.h"

#include <stdlib.h>
#include <string.h>

namespace
{

struct hip_plan {
    bool tile;     /* tile forward, else reference */
    bool tile_bwd; /* tile backward, else reference */
    int dpad;
    int wave;
    int fwd_kernel; /* BSA_K_FWD or BSA_K_FWD_GATHER */
};

/* Makes ctx's device current for the scope of a call, restoring the
 * caller's afterwards. */
struct device_guard {
    int prev = -1;
    hipError_t err = hipSuccess;
    explicit device_guard(int dev)
    {
        err = hipGetDevice(&prev);
        if (err == hipSuccess && prev != dev)
            err = hipSetDevice(dev);
        else
            prev = -1;
    }
    ~device_guard()
    {
        if (prev >= 0)
            (void)hipSetDevice(prev);
    }
};

bsa_status hip_status(hipError_t e, const char *what)
{
    bsa_status st = e == hipErrorOutOfMemory ? BSA_ERROR_OUT_OF_MEMORY : BSA_ERROR_DEVICE;
    return bsa_fail(st, "hip backend: %s: %s (%s)", what, hipGetErrorString(e), hipGetErrorName(e));
}

bsa_status probe(int device)
{
    int n = 0;
    hipError_t e = hipGetDeviceCount(&n);
    if (e != hipSuccess) {
        (void)hipGetLastError();
        return bsa_fail(BSA_ERROR_NO_DEVICE, "hip backend: hipGetDeviceCount: %s",
                        hipGetErrorString(e));
    }
    if (n <= 0)
        return bsa_fail(BSA_ERROR_NO_DEVICE, "hip backend: no HIP device found");
    if (device < 0 || device >= n)
        return bsa_fail(BSA_ERROR_NO_DEVICE,
                        "hip backend: device index %d out of range: %d device(s) present", device,
                        n);
    return BSA_SUCCESS;
}

void layout_release(struct bsa_layout *l)
{
    bsa_cuda_layout *dl = static_cast<bsa_cuda_layout *>(l->backend_data);
    if (!dl)
        return;
    {
        device_guard g(dl->device);
        (void)hipFree(dl->dev_mem);
    }
    free(dl);
    l->backend_data = nullptr;
}

bsa_status layout_prepare(bsa_layout_t l)
{
    if (l->backend_data)
        return BSA_SUCCESS;
    int dev = l->ctx ? l->ctx->device : 0;
    device_guard g(dev);
    if (g.err != hipSuccess)
        return hip_status(g.err, "layout_prepare: selecting the device");
    bsa_cuda_layout *dl = static_cast<bsa_cuda_layout *>(calloc(1, sizeof(*dl)));
    if (!dl)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "layout_prepare: host memory");
    dl->device = dev;
    /* the CUDA backend's tile tables, uploaded through the HIP runtime */
    bsa_status st = bsa_cuda_build_tiles(l, dl);
    if (st != BSA_SUCCESS) {
        free(dl);
        return st;
    }
    l->backend_data = dl;
    l->backend_release = layout_release;
    return BSA_SUCCESS;
}

bsa_status plan_init(bsa_plan_t plan)
{
    bsa_layout_t l = plan->layout;
    int dev = plan->ctx->device;
    device_guard g(dev);
    if (g.err != hipSuccess)
        return hip_status(g.err, "plan_init: selecting the device");
    if (!l->backend_data) {
        bsa_status st = layout_prepare(l);
        if (st != BSA_SUCCESS)
            return st;
    }
    const bsa_shape &s = plan->shape;
    if (s.head_dim > 256)
        return bsa_fail(BSA_ERROR_UNSUPPORTED, "hip backend: head_dim %lld above 256",
                        (long long)s.head_dim);
    hipDeviceProp_t prop;
    hipError_t e = hipGetDeviceProperties(&prop, dev);
    if (e != hipSuccess)
        return hip_status(e, "plan_init: hipGetDeviceProperties");

    const char *env = getenv("BSA_HIP_PATH");
    bool force_ref = (plan->flags & BSA_PLAN_FORCE_REFERENCE) != 0, force_tile = false;
    if (env && *env) {
        if (!strcmp(env, "reference"))
            force_ref = true;
        else if (!strcmp(env, "tile"))
            force_tile = true;
        else
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "hip backend: BSA_HIP_PATH=%s: known paths are 'tile' and 'reference'",
                            env);
    }
    const char *why = bsa_hip_tile_decline(&s, prop.warpSize);
    if (force_tile && why)
        return bsa_fail(BSA_ERROR_UNSUPPORTED, "hip backend: BSA_HIP_PATH=tile declined: %s", why);

    hip_plan *hp = static_cast<hip_plan *>(calloc(1, sizeof(*hp)));
    if (!hp)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "plan_init: host memory");
    const bsa_cuda_layout *dl = static_cast<const bsa_cuda_layout *>(l->backend_data);
    hp->tile = !force_ref && !why;
    hp->tile_bwd = hp->tile && !bsa_hip_tile_bwd_decline(&s);
    hp->dpad = bsa_hip_pad_dim(s.head_dim > s.v_dim ? s.head_dim : s.v_dim);
    hp->wave = prop.warpSize;
    hp->fwd_kernel = dl->kgrp ? BSA_K_FWD_GATHER : BSA_K_FWD;
    /* the tile kernels' LDS limits, once, outside any stream capture */
    int kernels[3] = {hp->fwd_kernel, BSA_K_DQ, BSA_K_DKDV};
    for (int i = 0; i < (hp->tile_bwd ? 3 : hp->tile ? 1 : 0); ++i) {
        e = bsa_cuda_tc_setup(kernels[i], s.dtype, hp->dpad);
        if (e != hipSuccess) {
            free(hp);
            return hip_status(e, "plan_init: kernel attributes");
        }
    }
    int64_t rows = s.batch * s.heads * s.seq_q;
    plan->workspace_bytes = bsa_cuda_workspace_bytes(rows);
    plan->impl_name = bsa_hip_impl_name(hp->tile, bsa_hip_arch_mfma(prop.gcnArchName));
    plan->backend_data = hp;
    return BSA_SUCCESS;
}

void plan_fini(bsa_plan_t plan)
{
    free(plan->backend_data);
    plan->backend_data = nullptr;
}

bsa_status forward(bsa_plan_t plan, const bsa_fwd_args *a, void *ws, size_t ws_bytes, void *stream)
{
    const hip_plan *hp = static_cast<const hip_plan *>(plan->backend_data);
    device_guard g(plan->ctx->device);
    if (g.err != hipSuccess)
        return hip_status(g.err, "forward: selecting the device");
    bsa_cuda_params p = bsa_cuda_make_params(plan);
    p.q = a->q;
    p.k = a->k;
    p.v = a->v;
    p.o_out = a->o;
    p.lse = a->lse;
    bsa_cuda_set_segments(p, a->key_lengths, a->cu_seqlens_q, a->cu_seqlens_k, a->num_seqs);
    hipStream_t s = static_cast<hipStream_t>(stream);
    hipError_t e =
        hp->tile ? bsa_cuda_tc_launch(hp->fwd_kernel, plan->shape.dtype, hp->dpad, p, s, hp->wave)
                 : bsa_cuda_ref_launch(BSA_K_FWD, p, s);
    if (e != hipSuccess)
        return hip_status(e, "forward kernel launch");
    return BSA_SUCCESS;
}

bsa_status backward(bsa_plan_t plan, const bsa_bwd_args *a, void *ws, size_t ws_bytes, void *stream)
{
    if (!ws || ws_bytes < plan->workspace_bytes)
        return bsa_fail(BSA_ERROR_WORKSPACE,
                        "backward: workspace of %zu bytes, the hip backend needs %zu "
                        "(bsa_plan_workspace_size)",
                        ws ? ws_bytes : (size_t)0, plan->workspace_bytes);
    device_guard g(plan->ctx->device);
    if (g.err != hipSuccess)
        return hip_status(g.err, "backward: selecting the device");
    bsa_cuda_params p = bsa_cuda_make_params(plan);
    p.q = a->q;
    p.k = a->k;
    p.v = a->v;
    p.o = a->o;
    p.dout = a->dout;
    p.lse_in = a->lse;
    p.dq = a->dq;
    p.dk = a->dk;
    p.dv = a->dv;
    bsa_cuda_set_workspace(p, ws,
                           (int64_t)plan->shape.batch * plan->shape.heads * plan->shape.seq_q);
    bsa_cuda_set_segments(p, a->key_lengths, a->cu_seqlens_q, a->cu_seqlens_k, a->num_seqs);
    hipStream_t s = static_cast<hipStream_t>(stream);
    hipError_t e = bsa_cuda_delta_launch(p, s);
    if (e != hipSuccess)
        return hip_status(e, "backward: delta kernel launch");
    const hip_plan *hp = static_cast<const hip_plan *>(plan->backend_data);
    /* gathered key tiles of a per-head layout with kv groups: reference
     * dK/dV (as on CUDA: the group's heads have different key tiles) */
    const bool ref_dkdv = plan->layout->heads > 1 && plan->shape.kv_heads != plan->shape.heads &&
                          hp->fwd_kernel == BSA_K_FWD_GATHER;
    for (int k : {BSA_K_DKDV, BSA_K_DQ}) {
        e = hp->tile_bwd && !(k == BSA_K_DKDV && ref_dkdv)
                ? bsa_cuda_tc_launch(k, plan->shape.dtype, hp->dpad, p, s, hp->wave)
                : bsa_cuda_ref_launch(k, p, s);
        if (e != hipSuccess)
            return hip_status(e, k == BSA_K_DQ ? "backward: dq kernel launch"
                                               : "backward: dk/dv kernel launch");
    }
    return BSA_SUCCESS;
}

} // namespace

/* Every feature beyond the seed, on the reference kernels.  Host pass only:
 * the device passes would otherwise emit this table with references to
 * host code. */
#if !defined(__HIP_DEVICE_COMPILE__)
extern "C" const bsa_backend_i bsa_backend_hip = {
    "hip",
    BSA_BACKEND_HIP,
    probe,
    nullptr,
    nullptr,
    layout_prepare,
    plan_init,
    plan_fini,
    forward,
    backward,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    BSA_FEATURE_GQA | BSA_FEATURE_KEY_LENGTHS | BSA_FEATURE_VARLEN | BSA_FEATURE_VALUE_DIM,
};
#endif
