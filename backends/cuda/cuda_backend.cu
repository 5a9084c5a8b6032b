/*
 * The CUDA backend: device probing, per-layout table upload, plan-time
 * choice of the implementation, and the forward / backward calls.
 *
 * Implementations, best first:
 *   "cuda-wgmma-sm90a" the mma path below with kernels on Hopper's wgmma
 *                     (sm_90: H100, H200; head dims 33..128, natural key
 *                     tiles): the forward, and dQ / dK/dV on tile pairs
 *                     whose lists agree;
 *   "cuda-mma-sm80"   tensor cores through mma.sync (sm_80+: A100, H100, ...),
 *                     f16/bf16, head dim <= 256 in steps of 8, rows 16-byte aligned;
 *   "cuda-wmma-sm70"  the Volta path: wmma 16x16x16 only (V100 and newer), f16,
 *                     head dim <= 128; chosen on sm_70/sm_75 devices;
 *   "cuda-reference"  scalar fp32 kernels: accepts every valid problem (f32 too).
 * BSA_CUDA_PATH=wgmma|mma|volta|reference forces one (BSA_PLAN_FORCE_REFERENCE too),
 * so that every path is tested on newer GPUs.
 *
 * Forward and backward allocate nothing, copy nothing and never
 * synchronise: they only launch kernels on the caller's stream, so they can
 * be captured in a CUDA graph.  The backward's one scratch buffer (delta =
 * rowsum(dO * O) and the lse's exponent offset, fp32 each per query row:
 * bsa_cuda_set_workspace) is the caller's workspace.
 */
#include "cuda_internal.h"

#include <stdlib.h>
#include <string.h>

namespace
{

enum path { PATH_MMA = 0, PATH_REF = 1, PATH_VOLTA = 2 };

struct cuda_plan {
    path p;
    int dpad;
    /* BSA_K_FWD2 (128-row tiles), BSA_K_FWD or BSA_K_FWD_GATHER (64-row);
     * BSA_K_FWD_WGMMA2 / 1 (Hopper, 128 / 64 rows) */
    int fwd_kernel;
    int dq_kernel;   /* BSA_K_DQ or BSA_K_DQ_WGMMA2 (Hopper, 128 rows) */
    int dkdv_kernel; /* BSA_K_DKDV or BSA_K_DKDV_WGMMA2 (Hopper, 128 keys) */
    /* chunk-local layout: BSA_K_FWD_CHUNK / BSA_K_BWD_CHUNK take the calls
     * without key lengths or packed sequences (the kernels above the rest) */
    bool chunk;
    /* its forward on wgmma (hopper/fwd_chunk_wgmma.cuh) */
    bool chunk_wgmma;
    /* fwd_kernel BSA_K_FWD_WGMMA2 on its warp-specialised kernel alone:
     * calls it does not apply to take BSA_K_FWD */
    bool ws_only;
    /* layout with block-row lists: the block-row kernels take the calls
     * without key lengths or packed sequences (brow_kernels.cuh); brow_fwd
     * the forward alone (head dims above 64: the backward's fragments do
     * not fit in registers, the tile kernels take it) */
    bool brow, brow_fwd;
};

/* Whether every row of a (batch, head) slice of q, k, v, o (and their
 * gradients, which share the strides) lies within a 32-bit element offset
 * of the slice's first row: the block-row loaders' addressing. */
bool brow_offsets_fit(const bsa_shape &s)
{
    const int64_t lim = INT32_MAX - 256;
    const struct {
        int64_t rows, stride;
    } t[4] = {{s.seq_q, s.q_stride[2]},
              {s.seq_k, s.k_stride[2]},
              {s.seq_k, s.v_stride[2]},
              {s.seq_q, s.o_stride[2]}};
    for (const auto &x : t)
        if (x.stride < 0 || (x.rows > 0 && x.stride > lim / x.rows))
            return false;
    return true;
}

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
            cudaSetDevice(prev);
    }
};

bsa_status cuda_status(cudaError_t e, const char *what)
{
    bsa_status st = e == cudaErrorMemoryAllocation ? BSA_ERROR_OUT_OF_MEMORY : BSA_ERROR_DEVICE;
    return bsa_fail(st, "cuda backend: %s: %s (%s)", what, cudaGetErrorString(e),
                    cudaGetErrorName(e));
}

bsa_status probe(int device)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return bsa_fail(BSA_ERROR_NO_DEVICE, "cuda backend: cudaGetDeviceCount: %s",
                        cudaGetErrorString(e));
    }
    if (n <= 0)
        return bsa_fail(BSA_ERROR_NO_DEVICE, "cuda backend: no CUDA device found");
    if (device < 0 || device >= n)
        return bsa_fail(BSA_ERROR_NO_DEVICE,
                        "cuda backend: device index %d out of range: %d device(s) present", device,
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
        cudaFree(dl->dev_mem);
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
        return cuda_status(g.err, "layout_prepare: selecting the device");
    bsa_cuda_layout *dl = static_cast<bsa_cuda_layout *>(calloc(1, sizeof(*dl)));
    if (!dl)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "layout_prepare: host memory");
    dl->device = dev;
    bsa_status st = bsa_cuda_build_tiles(l, dl);
    if (st != BSA_SUCCESS) {
        free(dl);
        return st;
    }
    l->backend_data = dl;
    l->backend_release = layout_release;
    return BSA_SUCCESS;
}

int pad_dim(int64_t d)
{
    return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : d <= 256 ? 256 : 0;
}

/* Why the mma path cannot take this plan (NULL if it can). */
const char *mma_decline(const bsa_plan *plan, int dev, int dpad)
{
    const bsa_shape &s = plan->shape;
    if (s.dtype != BSA_DTYPE_F16 && s.dtype != BSA_DTYPE_BF16)
        return "dtype is not f16/bf16";
    if (!dpad || s.head_dim % 8 || s.v_dim % 8)
        return "head dim not a multiple of 8 up to 256";
    int major = 0, smem = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (major < 8)
        return "mma.sync m16n8k16 needs compute capability 8.0 or newer";
    const int64_t *st[4] = {s.q_stride, s.k_stride, s.v_stride, s.o_stride};
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j)
            if (st[i][j] % 8)
                return "a batch/head/time stride is not a multiple of 8 elements";
    for (int k = 0; k < 3; ++k)
        if (bsa_cuda_tc_smem(k, dpad) > (size_t)smem)
            return "not enough shared memory per block on this device for this head dim";
    return nullptr;
}

/* Why the Hopper kernels cannot take a plan of this head dim on this
 * device (NULL if they can); the rest of the mma path's checks apply too.
 * They take natural and gathered key tiles alike. */
const char *wgmma_decline(int dev, int dpad)
{
    if (!bsa_cuda_wgmma_built())
        return "the library was built without sm_90 in BSA_CUDA_ARCHITECTURES";
    int major = 0, minor = 0, smem = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (major != 9 || minor != 0)
        return "wgmma (sm_90a) needs a compute capability 9.0 device (H100, H200)";
    if (dpad != 64 && dpad != 128)
        return "the wgmma forward takes head dims 33..128";
    if (bsa_cuda_wgmma_smem(BSA_K_FWD_WGMMA2, dpad) > (size_t)smem ||
        bsa_cuda_wgmma_smem(BSA_K_DKDV_WGMMA2, dpad) > (size_t)smem)
        return "not enough shared memory per block on this device";
    return nullptr;
}

/* Why the Volta (wmma) path cannot take this plan (NULL if it can). */
const char *volta_decline(const bsa_plan *plan, int dev, int dpad)
{
    const bsa_shape &s = plan->shape;
    if (s.dtype != BSA_DTYPE_F16)
        return "the Volta path takes f16 only (Volta has no bf16 Tensor Core instruction)";
    if (!dpad || dpad > 128 || s.head_dim % 8 || s.v_dim % 8)
        return "the Volta path takes head dims that are multiples of 8 up to 128";
    int major = 0, smem = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (major < 7)
        return "wmma needs compute capability 7.0 or newer";
    const int64_t *st[4] = {s.q_stride, s.k_stride, s.v_stride, s.o_stride};
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j)
            if (st[i][j] % 8)
                return "a batch/head/time stride is not a multiple of 8 elements";
    for (int k = 0; k < 3; ++k)
        if (bsa_cuda_volta_smem(k, dpad) + 256 > (size_t)smem)
            return "not enough shared memory per block on this device for this head dim";
    return nullptr;
}

bsa_status plan_init(bsa_plan_t plan)
{
    bsa_layout_t l = plan->layout;
    int dev = plan->ctx->device;
    device_guard g(dev);
    if (g.err != cudaSuccess)
        return cuda_status(g.err, "plan_init: selecting the device");
    if (!l->backend_data) {
        bsa_status st = layout_prepare(l);
        if (st != BSA_SUCCESS)
            return st;
    }
    const bsa_shape &s = plan->shape;
    /* one padded width serves q/k and v/o: the narrower side's columns
     * are zero-filled, so they add nothing to the products */
    int64_t dmax = s.head_dim > s.v_dim ? s.head_dim : s.v_dim;
    int dpad = pad_dim(dmax);
    if (dmax > 256)
        return bsa_fail(BSA_ERROR_UNSUPPORTED, "cuda backend: head dim %lld above 256",
                        (long long)dmax);

    const char *env = getenv("BSA_CUDA_PATH");
    bool force_ref = (plan->flags & BSA_PLAN_FORCE_REFERENCE) != 0;
    int forced = -1;
    bool want_wgmma = false, no_wgmma = false;
    if (env && *env) {
        if (!strcmp(env, "reference"))
            force_ref = true;
        else if (!strcmp(env, "wgmma"))
            forced = PATH_MMA, want_wgmma = true;
        else if (!strcmp(env, "mma"))
            forced = PATH_MMA, no_wgmma = true;
        else if (!strcmp(env, "volta"))
            forced = PATH_VOLTA;
        else
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "cuda backend: BSA_CUDA_PATH=%s: known paths are 'wgmma', 'mma', "
                            "'volta' and 'reference'",
                            env);
    }
    const char *why_mma = mma_decline(plan, dev, dpad);
    const char *why_volta = volta_decline(plan, dev, dpad);
    if (forced == PATH_MMA && why_mma)
        return bsa_fail(BSA_ERROR_UNSUPPORTED, "cuda backend: BSA_CUDA_PATH=%s declined: %s", env,
                        why_mma);
    const char *why_wgmma = why_mma ? why_mma : wgmma_decline(dev, dpad);
    if (want_wgmma && why_wgmma)
        return bsa_fail(BSA_ERROR_UNSUPPORTED, "cuda backend: BSA_CUDA_PATH=wgmma declined: %s",
                        why_wgmma);
    if (forced == PATH_VOLTA && why_volta)
        return bsa_fail(BSA_ERROR_UNSUPPORTED, "cuda backend: BSA_CUDA_PATH=volta declined: %s",
                        why_volta);

    cuda_plan *cp = static_cast<cuda_plan *>(calloc(1, sizeof(*cp)));
    if (!cp)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "plan_init: host memory");
    if (force_ref)
        cp->p = PATH_REF;
    else if (forced >= 0)
        cp->p = (path)forced;
    else
        cp->p = !why_mma ? PATH_MMA : !why_volta ? PATH_VOLTA : PATH_REF;
    cp->dpad = dpad;
    /* The 128-row forward halves the shared-memory reads per product but
     * needs twice the accumulators: measured on an H200 (bench/NOTES.md) it
     * wins at head dim 128 (same occupancy) when both halves of a tile pair
     * walk nearly the same key list (causal), and loses at 64 (half the
     * occupancy) and on sparse layouts.  On Hopper the forward runs on wgmma
     * (accumulators in a warpgroup's registers, Q not in registers), where
     * 128 rows win at head dims 64 and 128 alike when the lists agree,
     * on natural and gathered key tiles (the mma.sync 128-row kernel takes
     * natural ones only).  BSA_CUDA_FWD=64|128 forces the rows of either
     * family. */
    const char *fenv = getenv("BSA_CUDA_FWD");
    const bsa_cuda_layout *dl = static_cast<const bsa_cuda_layout *>(l->backend_data);
    const bool pairs = dl->pair_eff >= 0.9;
    /* the 64-row wgmma kernel (sparse rows) lost to the mma.sync one on
     * an H200 (bench/NOTES.md, v14): it runs only when forced */
    const bool f64 = fenv && !strcmp(fenv, "64");
    /* Tile pairs whose rows agree less (local windows: 0.8 of the merged
     * walk used) lose on the cp.async wgmma forward but win on the
     * warp-specialised one (H200, bench/NOTES.md v32: local 0.549 ms on the
     * 64-row mma.sync kernel, 0.616 on cp.async wgmma, 0.451 warp-
     * specialised): they take it where it applies to the call, the 64-row
     * kernel elsewhere. */
    const bool ws_pairs = !pairs && !want_wgmma && !f64 && dl->pair_eff >= 0.75 && !dl->kgrp &&
                          (dpad == 64 || dpad == 128);
    const bool wgmma =
        cp->p == PATH_MMA && !no_wgmma && !why_wgmma && (pairs || want_wgmma || ws_pairs);
    cp->ws_only = wgmma && ws_pairs;
    bool rows128 = (pairs || cp->ws_only) && (wgmma || (dpad == 128 && !dl->kgrp));
    if (f64)
        rows128 = false;
    else if (fenv && !strcmp(fenv, "128"))
        rows128 = dpad <= 128 && (wgmma || !dl->kgrp);
    cp->fwd_kernel = wgmma      ? (rows128 ? BSA_K_FWD_WGMMA2 : BSA_K_FWD_WGMMA1)
                     : rows128  ? BSA_K_FWD2
                     : dl->kgrp ? BSA_K_FWD_GATHER
                                : BSA_K_FWD;
    /* The Hopper backward takes tile pairs: dQ walks the merged key lists of
     * two query tiles, dK/dV the merged query lists of two key tiles; each
     * runs where its pairs agree (or wgmma is forced, which tests them on
     * every layout).  dK/dV on wgmma wins at head dim 128, and at 64 on
     * natural key tiles since its element-wise work lost a test and a
     * branch per entry (bench/NOTES.md, v27: all-d64 fwd+bwd -9%); at 64 on
     * gathered key tiles (fixed) mma.sync stays ahead (v27: -2%). */
    const bool wgmma_ok = cp->p == PATH_MMA && !no_wgmma && !why_wgmma;
    cp->dq_kernel = wgmma_ok && (dl->pair_eff >= 0.9 || want_wgmma) ? BSA_K_DQ_WGMMA2 : BSA_K_DQ;
    cp->dkdv_kernel =
        wgmma_ok && (((dpad == 128 || !dl->kgrp) && dl->col_pair_eff >= 0.9) || want_wgmma)
            ? BSA_K_DKDV_WGMMA2
            : BSA_K_DKDV;
    /* Chunk-local layouts (each 128-row chunk a problem of its own: the
     * strided pattern in permuted order, block-diagonal layouts) on the
     * chunk kernels: one thread block reads a chunk once and the backward
     * is one kernel (bench/NOTES.md, v31).  Not with kv groups, nor when
     * wgmma is forced (that path tests the Hopper kernels on every layout);
     * BSA_CUDA_CHUNK=0 keeps the tile kernels. */
    const char *cenv = getenv("BSA_CUDA_CHUNK");
    int smem_max = 0;
    cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    cp->chunk = cp->p == PATH_MMA && dl->chunk_local && !want_wgmma && dpad <= 128 &&
                s.kv_heads == s.heads && !(cenv && !strcmp(cenv, "0")) &&
                bsa_cuda_chunk_smem(BSA_K_BWD_CHUNK, dpad) <= (size_t)smem_max;
    /* On Hopper the chunk forward runs on wgmma (head dims 64 and 128):
     * one warpgroup's m64n64k16 replaces 32 mma.sync and their fragment
     * loads (bench/NOTES.md, v33); BSA_CUDA_PATH=mma keeps mma.sync. */
    cp->chunk_wgmma = cp->chunk && wgmma_ok && (dpad == 64 || dpad == 128);
    /* Layouts of 32-wide blocks whose tile pairs would compute mostly
     * absent blocks (random ones: tiles.cu, want_brow) on the block-row
     * kernels, which compute kept blocks only: head dims up to 64, not
     * with kv groups nor when wgmma is forced; BSA_CUDA_BROW=0 (read at
     * layout_prepare) keeps the tile kernels.  Their loaders address a
     * (batch, head) slice's rows with 32-bit offsets. */
    const bool brow_ok = cp->p == PATH_MMA && dl->brow && !want_wgmma && s.kv_heads == s.heads &&
                         brow_offsets_fit(s);
    cp->brow_fwd = brow_ok && dpad <= 128;
    cp->brow = brow_ok && dpad <= 64;
    if (cp->brow_fwd) {
        cudaError_t e = bsa_cuda_brow_setup(s.dtype, dpad);
        if (e != cudaSuccess) {
            free(cp);
            return cuda_status(e, "plan_init: block-row kernel attributes");
        }
    }
    if (cp->chunk) {
        cudaError_t e = bsa_cuda_chunk_setup(s.dtype, dpad);
        if (e == cudaSuccess && cp->chunk_wgmma)
            e = bsa_cuda_wgmma_chunk_setup(s.dtype, dpad);
        if (e != cudaSuccess) {
            free(cp);
            return cuda_status(e, "plan_init: chunk kernel attributes");
        }
    }
    if (cp->p == PATH_MMA) {
        cudaError_t e = cudaSuccess;
        if (cp->fwd_kernel != BSA_K_FWD)
            e = wgmma ? bsa_cuda_wgmma_setup(cp->fwd_kernel, s.dtype, dpad)
                      : bsa_cuda_tc_setup(cp->fwd_kernel, s.dtype, dpad);
        for (int k : {cp->dq_kernel, cp->dkdv_kernel})
            if (e == cudaSuccess && k >= BSA_K_FWD_WGMMA2)
                e = bsa_cuda_wgmma_setup(k, s.dtype, dpad);
        if (e != cudaSuccess) {
            free(cp);
            return cuda_status(e, "plan_init: kernel attributes");
        }
    }
    for (int k = 0; k < 3 && cp->p != PATH_REF; ++k) {
        cudaError_t e =
            cp->p == PATH_MMA ? bsa_cuda_tc_setup(k, s.dtype, dpad) : bsa_cuda_volta_setup(k, dpad);
        if (e != cudaSuccess) {
            free(cp);
            return cuda_status(e, "plan_init: kernel attributes");
        }
    }
    int64_t rows = s.batch * s.heads * s.seq_q;
    plan->workspace_bytes = bsa_cuda_workspace_bytes(rows);
    const bool any_wgmma = wgmma || cp->dq_kernel != BSA_K_DQ || cp->dkdv_kernel != BSA_K_DKDV;
    plan->impl_name = cp->brow              ? "cuda-mma-sm80-blockrow"
                      : cp->brow_fwd        ? "cuda-mma-sm80-blockrow-fwd"
                      : cp->chunk_wgmma     ? "cuda-wgmma-sm90a-chunk"
                      : cp->chunk           ? "cuda-mma-sm80-chunk"
                      : any_wgmma           ? "cuda-wgmma-sm90a"
                      : cp->p == PATH_MMA   ? "cuda-mma-sm80"
                      : cp->p == PATH_VOLTA ? "cuda-wmma-sm70"
                                            : "cuda-reference";
    plan->backend_data = cp;
    return BSA_SUCCESS;
}

void plan_fini(bsa_plan_t plan)
{
    free(plan->backend_data);
    plan->backend_data = nullptr;
}

/* Gathered key tiles of a per-head layout differ between the query heads
 * of a kv head's group, so no dK/dV thread block of the tile kernels owns
 * one set of key rows: that case takes the reference dK/dV kernel. */
bool dkdv_needs_reference(const bsa_plan *plan)
{
    const bsa_cuda_layout *dl = static_cast<const bsa_cuda_layout *>(plan->layout->backend_data);
    return dl->kgrp && plan->layout->heads > 1 && plan->shape.kv_heads != plan->shape.heads;
}

bool aligned16(const void *a)
{
    return ((uintptr_t)a & 15u) == 0;
}

cudaError_t wgmma_forward(const cuda_plan *cp, bsa_dtype dt, const bsa_cuda_params &p,
                          cudaStream_t s)
{
    if (!cp->ws_only)
        return bsa_cuda_wgmma_launch(cp->fwd_kernel, dt, cp->dpad, p, s);
    cudaError_t e = cudaSuccess;
    return bsa_cuda_ws_launch(dt, cp->dpad, p, s, &e)
               ? e
               : bsa_cuda_tc_launch(BSA_K_FWD, dt, cp->dpad, p, s);
}

bsa_status forward(bsa_plan_t plan, const bsa_fwd_args *a, void *ws, size_t ws_bytes, void *stream)
{
    const cuda_plan *cp = static_cast<const cuda_plan *>(plan->backend_data);
    device_guard g(plan->ctx->device);
    if (g.err != cudaSuccess)
        return cuda_status(g.err, "forward: selecting the device");
    bsa_cuda_params p = bsa_cuda_make_params(plan);
    p.q = a->q;
    p.k = a->k;
    p.v = a->v;
    p.o_out = a->o;
    p.lse = a->lse;
    bsa_cuda_set_segments(p, a->key_lengths, a->cu_seqlens_q, a->cu_seqlens_k, a->num_seqs);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    bool fast = cp->p != PATH_REF && aligned16(a->q) && aligned16(a->k) && aligned16(a->v) &&
                aligned16(a->o);
    cudaError_t e =
        !fast ? bsa_cuda_ref_launch(BSA_K_FWD, p, s)
        : cp->brow_fwd && !bsa_cuda_has_features(p)
            ? bsa_cuda_brow_launch(BSA_K_FWD, plan->shape.dtype, cp->dpad, p, s)
        : cp->chunk && !bsa_cuda_has_features(p)
            ? (cp->chunk_wgmma
                   ? bsa_cuda_wgmma_chunk_launch(plan->shape.dtype, cp->dpad, p, s)
                   : bsa_cuda_chunk_launch(BSA_K_FWD_CHUNK, plan->shape.dtype, cp->dpad, p, s))
        : cp->fwd_kernel >= BSA_K_FWD_WGMMA2 ? wgmma_forward(cp, plan->shape.dtype, p, s)
        : cp->p == PATH_MMA ? bsa_cuda_tc_launch(cp->fwd_kernel, plan->shape.dtype, cp->dpad, p, s)
                            : bsa_cuda_volta_launch(BSA_K_FWD, cp->dpad, p, s);
    if (e != cudaSuccess)
        return cuda_status(e, "forward kernel launch");
    return BSA_SUCCESS;
}

bsa_status backward(bsa_plan_t plan, const bsa_bwd_args *a, void *ws, size_t ws_bytes, void *stream)
{
    const cuda_plan *cp = static_cast<const cuda_plan *>(plan->backend_data);
    if (!ws || ws_bytes < plan->workspace_bytes)
        return bsa_fail(BSA_ERROR_WORKSPACE,
                        "backward: workspace of %zu bytes, the cuda backend needs %zu "
                        "(bsa_plan_workspace_size)",
                        ws ? ws_bytes : (size_t)0, plan->workspace_bytes);
    device_guard g(plan->ctx->device);
    if (g.err != cudaSuccess)
        return cuda_status(g.err, "backward: selecting the device");
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
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t e = bsa_cuda_delta_launch(p, s);
    if (e != cudaSuccess)
        return cuda_status(e, "backward: delta kernel launch");
    bool fast = cp->p != PATH_REF;
    const void *ptrs[] = {a->q, a->k, a->v, a->dout, a->dq, a->dk, a->dv};
    for (const void *x : ptrs)
        fast = fast && aligned16(x);
    if (fast && cp->brow && !bsa_cuda_has_features(p)) {
        for (int k : {BSA_K_DKDV, BSA_K_DQ}) {
            e = bsa_cuda_brow_launch(k, plan->shape.dtype, cp->dpad, p, s);
            if (e != cudaSuccess)
                return cuda_status(e, k == BSA_K_DQ ? "backward: block-row dq kernel launch"
                                                    : "backward: block-row dk/dv kernel launch");
        }
        return BSA_SUCCESS;
    }
    if (fast && cp->chunk && !bsa_cuda_has_features(p)) {
        e = bsa_cuda_chunk_launch(BSA_K_BWD_CHUNK, plan->shape.dtype, cp->dpad, p, s);
        return e != cudaSuccess ? cuda_status(e, "backward: chunk kernel launch") : BSA_SUCCESS;
    }
    const bool ref_dkdv = dkdv_needs_reference(plan);
    for (int k : {BSA_K_DKDV, BSA_K_DQ}) {
        e = !fast || (k == BSA_K_DKDV && ref_dkdv) ? bsa_cuda_ref_launch(k, p, s)
            : cp->p == PATH_MMA && (k == BSA_K_DQ ? cp->dq_kernel : cp->dkdv_kernel) != k
                ? bsa_cuda_wgmma_launch(k == BSA_K_DQ ? cp->dq_kernel : cp->dkdv_kernel,
                                        plan->shape.dtype, cp->dpad, p, s)
            : cp->p == PATH_MMA ? bsa_cuda_tc_launch(k, plan->shape.dtype, cp->dpad, p, s)
                                : bsa_cuda_volta_launch(k, cp->dpad, p, s);
        if (e != cudaSuccess)
            return cuda_status(e, k == BSA_K_DQ ? "backward: dq kernel launch"
                                                : "backward: dk/dv kernel launch");
    }
    return BSA_SUCCESS;
}

} // namespace

extern "C" const bsa_backend_i bsa_backend_cuda = {
    "cuda",
    BSA_BACKEND_CUDA,
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
