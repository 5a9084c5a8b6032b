/*
 * The GPU backend's host side, one source for both vendors: compiled by
 * nvcc it is the CUDA backend, by hipcc (vendor.h renames the runtime) the
 * HIP backend.  Device probing, the layout's table upload, the plan's
 * choice from the implementation list (backends/gpu/dispatch.c: every
 * choice made here, at plan creation) and the forward / backward calls,
 * which launch exactly the kernels the plan chose.
 *
 * Forward and backward allocate nothing, copy nothing and never
 * synchronise: they only launch kernels on the caller's stream, so they can
 * be captured in a graph.  The backward's one scratch buffer (delta =
 * rowsum(dO * O) and the lse's exponent offset, fp32 each per query row:
 * bsa_cuda_set_workspace) is the caller's workspace.
 */
#include "cuda_internal.h"
#if !defined(BSA_VENDOR_HIP)
#include "dist_kernels.h" /* bsa_cuda_check_device_memory */
#include "hopper/hopper_host.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace
{

#if defined(BSA_VENDOR_HIP)
const char *const kVendor = "hip";
#else
const char *const kVendor = "cuda";
#endif

/* A plan's kernels, resolved once. */
struct gpu_plan {
    bsa_gpu_choice choice;
    int dpad;
    bsa_cuda_instance fwd[2], bwd[2], delta;
};

/* Makes ctx's device current for the scope of a call, restoring the
 * caller's afterwards (a library must not move the caller's device). */
struct device_guard {
    int prev = -1;
    cudaError_t err = cudaSuccess;
    explicit device_guard(int dev)
    {
        err = cudaGetDevice(&prev);
        if (err == cudaSuccess && prev != dev)
            err = cudaSetDevice(dev);
        else
            prev = -1;
    }
    ~device_guard()
    {
        if (prev >= 0)
            (void)cudaSetDevice(prev);
    }
};

bsa_status gpu_status(cudaError_t e, const char *what)
{
    bsa_status st = e == cudaErrorMemoryAllocation ? BSA_ERROR_OUT_OF_MEMORY : BSA_ERROR_DEVICE;
    return bsa_fail(st, "%s backend: %s: %s (%s)", kVendor, what, cudaGetErrorString(e),
                    cudaGetErrorName(e));
}

bsa_status probe(int device)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return bsa_fail(BSA_ERROR_NO_DEVICE, "%s backend: device count: %s", kVendor,
                        cudaGetErrorString(e));
    }
    if (n <= 0)
        return bsa_fail(BSA_ERROR_NO_DEVICE, "%s backend: no device found", kVendor);
    if (device < 0 || device >= n)
        return bsa_fail(BSA_ERROR_NO_DEVICE,
                        "%s backend: device index %d out of range: %d device(s) present", kVendor,
                        device, n);
    return BSA_SUCCESS;
}

void layout_release(struct bsa_layout *l)
{
    bsa_cuda_layout *dl = static_cast<bsa_cuda_layout *>(l->backend_data);
    if (!dl)
        return;
    {
        device_guard g(dl->device);
        (void)cudaFree(dl->dev_mem);
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
    if (g.err != cudaSuccess)
        return gpu_status(g.err, "layout_prepare: selecting the device");
    bsa_cuda_layout *dl = static_cast<bsa_cuda_layout *>(calloc(1, sizeof(*dl)));
    if (!dl)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "layout_prepare: host memory");
    dl->device = dev;
    bsa_status st = bsa_cuda_upload_layout(l, dl);
    if (st != BSA_SUCCESS) {
        free(dl);
        return st;
    }
    l->backend_data = dl;
    l->backend_release = layout_release;
    return BSA_SUCCESS;
}

/* The device as the implementation list sees it. */
bsa_status device_profile(int dev, bsa_gpu_profile *pf)
{
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, dev);
    if (e != cudaSuccess)
        return gpu_status(e, "plan_init: device properties");
    memset(pf, 0, sizeof *pf);
    pf->sms = prop.multiProcessorCount;
    pf->wave = prop.warpSize;
#if defined(BSA_VENDOR_HIP)
    pf->vendor = BSA_GPU_AMD;
    strncpy(pf->arch, prop.gcnArchName, sizeof pf->arch - 1);
    pf->smem_optin = (int)prop.sharedMemPerBlock; /* 64 KB of LDS a workgroup */
#else
    pf->vendor = BSA_GPU_NVIDIA;
    pf->cc = prop.major * 10 + prop.minor;
    snprintf(pf->arch, sizeof pf->arch, "sm_%d%d", prop.major, prop.minor);
    pf->smem_optin = (int)prop.sharedMemPerBlockOptin;
#endif
    /* BSA_DEVICE_SMEM=<bytes> lowers the shared memory the list may assume
     * a block has: a larger card then runs the configuration of a smaller
     * one (the 99 KB of sm_86 / sm_89 on an H100), so it is tested */
    const char *cap = getenv("BSA_DEVICE_SMEM");
    if (cap && *cap) {
        char *end = nullptr;
        long v = strtol(cap, &end, 10);
        if (*end || v <= 0)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s backend: BSA_DEVICE_SMEM=%s is not a positive byte count", kVendor,
                            cap);
        if (v < pf->smem_optin)
            pf->smem_optin = (int)v;
    }
#if !defined(BSA_VENDOR_HIP)
    int n = 0;
    (void)bsa_cuda_hopper_tables(&n);
    pf->has = (n > 0 ? BSA_GPU_HAS_WGMMA : 0u) | (bsa_cuda_tma_encoder() ? BSA_GPU_HAS_TMA : 0u);
#endif
    return BSA_SUCCESS;
}

/* The instances of a pass's kernels, their shared-memory limits set. */
bsa_status resolve(const bsa_gpu_pass_plan &pp, const bsa_plan *plan, const bsa_cuda_layout *dl,
                   int dpad, int feat, const bsa_gpu_profile &pf, bsa_cuda_instance *out)
{
    for (int i = 0; i < pp.n; ++i) {
        out[i] = bsa_cuda_instance_of(pp.k[i], plan->shape.dtype, dpad, feat != 0,
                                      dl->form[pp.gather].pred_tiles != 0, pp.gather != 0, pf.wave,
                                      bsa_gpu_profile_target(&pf));
        if (!out[i].fn)
            return bsa_fail(BSA_ERROR_INTERNAL,
                            "%s backend: the implementation list chose kernel family %d pass %d "
                            "at head dim %d, which this build did not compile",
                            kVendor, pp.k[i].family, pp.k[i].pass, dpad);
        cudaError_t e = bsa_cuda_instance_setup(out[i]);
        if (e != cudaSuccess)
            return gpu_status(e, "plan_init: kernel attributes");
    }
    return BSA_SUCCESS;
}

bsa_status plan_init(bsa_plan_t plan)
{
    bsa_layout_t l = plan->layout;
    int dev = plan->ctx->device;
    device_guard g(dev);
    if (g.err != cudaSuccess)
        return gpu_status(g.err, "plan_init: selecting the device");
    if (!l->backend_data) {
        bsa_status st = layout_prepare(l);
        if (st != BSA_SUCCESS)
            return st;
    }
    const bsa_cuda_layout *dl = static_cast<const bsa_cuda_layout *>(l->backend_data);
    bsa_gpu_profile pf;
    bsa_status st = device_profile(dev, &pf);
    if (st != BSA_SUCCESS)
        return st;
    bsa_gpu_problem pb;
    bsa_gpu_problem_init(&pb, &plan->shape, plan->flags, &dl->stats);

    /* room for every entry's line of both passes, trimmed below */
    const size_t explain_room = 16384;
    gpu_plan *gp = static_cast<gpu_plan *>(calloc(1, sizeof(*gp)));
    char *explain = static_cast<char *>(malloc(explain_room));
    if (!gp || !explain) {
        free(gp);
        free(explain);
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "plan_init: host memory");
    }
    st = bsa_gpu_select(&pb, &pf, getenv("BSA_IMPL"), (plan->flags & BSA_PLAN_FORCE_REFERENCE) != 0,
                        &gp->choice, explain, explain_room);
    if (st == BSA_SUCCESS)
        st = resolve(gp->choice.fwd, plan, dl, pb.dpad, gp->choice.feat, pf, gp->fwd);
    if (st == BSA_SUCCESS)
        st = resolve(gp->choice.bwd, plan, dl, pb.dpad, gp->choice.feat, pf, gp->bwd);
    if (st == BSA_SUCCESS) {
        gp->delta = bsa_cuda_delta_instance(plan->shape.dtype, pb.v_dim, plan->shape.o_stride,
                                            (size_t)gp->choice.align);
        if (!gp->delta.fn)
            st = bsa_fail(BSA_ERROR_INTERNAL, "%s backend: no delta pre-pass instance", kVendor);
    }
    if (st != BSA_SUCCESS) {
        free(gp);
        free(explain);
        return st;
    }
    gp->dpad = pb.dpad;
    plan->workspace_bytes =
        bsa_cuda_workspace_bytes(plan->shape.batch * plan->shape.heads * plan->shape.seq_q);
    plan->impl_name = gp->choice.name;
    plan->align = (size_t)gp->choice.align;
    char *trimmed = static_cast<char *>(realloc(explain, strlen(explain) + 1));
    plan->explain = trimmed ? trimmed : explain;
    plan->backend_data = gp;
    return BSA_SUCCESS;
}

void plan_fini(bsa_plan_t plan)
{
    free(plan->backend_data);
    plan->backend_data = nullptr;
}

bsa_status forward(bsa_plan_t plan, const bsa_fwd_args *a, void *ws, size_t ws_bytes, void *stream)
{
    const gpu_plan *gp = static_cast<const gpu_plan *>(plan->backend_data);
#if !defined(BSA_VENDOR_HIP)
    const void *const ptrs[] = {
        a->q, a->k, a->v, a->o, a->lse, a->key_lengths, a->cu_seqlens_q, a->cu_seqlens_k};
    static const char *const names[] = {
        "q", "k", "v", "o", "lse", "key_lengths", "cu_seqlens_q", "cu_seqlens_k"};
    bsa_status st = bsa_cuda_check_device_memory("bsa_forward", ptrs, names, 8, plan->ctx->device);
    if (st != BSA_SUCCESS)
        return st;
#endif
    device_guard g(plan->ctx->device);
    if (g.err != cudaSuccess)
        return gpu_status(g.err, "forward: selecting the device");
    bsa_cuda_params p = bsa_cuda_make_params(plan, gp->choice.fwd.gather);
    p.q = a->q;
    p.k = a->k;
    p.v = a->v;
    p.o_out = a->o;
    p.lse = a->lse;
    bsa_cuda_set_segments(p, a->key_lengths, a->cu_seqlens_q, a->cu_seqlens_k, a->num_seqs);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    for (int i = 0; i < gp->choice.fwd.n; ++i) {
        cudaError_t e = bsa_cuda_launch(gp->fwd[i], p, s);
        if (e != cudaSuccess)
            return gpu_status(e, "forward kernel launch");
    }
    return BSA_SUCCESS;
}

bsa_status backward(bsa_plan_t plan, const bsa_bwd_args *a, void *ws, size_t ws_bytes, void *stream)
{
    const gpu_plan *gp = static_cast<const gpu_plan *>(plan->backend_data);
    if (!ws || ws_bytes < plan->workspace_bytes)
        return bsa_fail(BSA_ERROR_WORKSPACE,
                        "backward: workspace of %zu bytes, the %s backend needs %zu "
                        "(bsa_plan_workspace_size)",
                        ws ? ws_bytes : (size_t)0, kVendor, plan->workspace_bytes);
#if !defined(BSA_VENDOR_HIP)
    const void *const ptrs[] = {
        a->q,  a->k,  a->v,  a->o,           a->lse,          a->dout,
        a->dq, a->dk, a->dv, a->key_lengths, a->cu_seqlens_q, a->cu_seqlens_k,
        ws};
    static const char *const names[] = {
        "q",        "k",  "v",  "o",           "lse",          "dout",
        "dq",       "dk", "dv", "key_lengths", "cu_seqlens_q", "cu_seqlens_k",
        "workspace"};
    bsa_status st =
        bsa_cuda_check_device_memory("bsa_backward", ptrs, names, 13, plan->ctx->device);
    if (st != BSA_SUCCESS)
        return st;
#endif
    device_guard g(plan->ctx->device);
    if (g.err != cudaSuccess)
        return gpu_status(g.err, "backward: selecting the device");
    bsa_cuda_params p = bsa_cuda_make_params(plan, gp->choice.bwd.gather);
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
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t e = bsa_cuda_delta_launch(gp->delta, p, s);
    if (e != cudaSuccess)
        return gpu_status(e, "backward: delta kernel launch");
    for (int i = 0; i < gp->choice.bwd.n; ++i) {
        e = bsa_cuda_launch(gp->bwd[i], p, s);
        if (e != cudaSuccess)
            return gpu_status(e, "backward kernel launch");
    }
    return BSA_SUCCESS;
}

} // namespace

#if !defined(BSA_VENDOR_HIP)
/* Every array of a call is memory the plan's device can read: a host
 * pointer would make the kernels fault later, asynchronously, in a launch
 * that names no argument.  Device, managed and page-locked host memory
 * pass; pageable host memory and another device's memory are refused. */
extern "C" bsa_status bsa_cuda_check_device_memory(const char *fn, const void *const *ptrs,
                                                   const char *const *names, int n, int dev)
{
    for (int i = 0; i < n; ++i) {
        if (!ptrs[i])
            continue;
        cudaPointerAttributes at;
        cudaError_t e = cudaPointerGetAttributes(&at, ptrs[i]);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s: args->%s = %p: the CUDA runtime cannot place it (%s)", fn,
                            names[i], ptrs[i], cudaGetErrorString(e));
        }
        if (at.type == cudaMemoryTypeUnregistered)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s: args->%s = %p is host memory; a CUDA context takes device "
                            "memory (cudaMalloc)",
                            fn, names[i], ptrs[i]);
        if (at.type == cudaMemoryTypeDevice && at.device != dev)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s: args->%s = %p is memory of device %d; the context's device is %d",
                            fn, names[i], ptrs[i], at.device, dev);
    }
    return BSA_SUCCESS;
}
#endif

/* Host pass only: HIP's device passes would otherwise emit this table with
 * references to host code. */
#if !defined(__HIP_DEVICE_COMPILE__)
#if defined(BSA_VENDOR_HIP)
extern "C" const bsa_backend_i bsa_backend_hip = {
    "hip",
    BSA_BACKEND_HIP,
#else
extern "C" const bsa_backend_i bsa_backend_cuda = {
    "cuda",
    BSA_BACKEND_CUDA,
#endif
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
