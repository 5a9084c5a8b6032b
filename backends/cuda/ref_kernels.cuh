/*
 * The CUDA backend's reference path: scalar fp32 kernels, one thread per
 * row, straight from the layout's CSR and transposed lists.  It accepts
 * every problem (f32 inputs, any head dim <= 256, any alignment), so every
 * valid plan runs somewhere; it is slow and meant for f32, odd shapes and
 * for cross-checking the tensor-core path on the device.
 *
 * Also the delta pre-pass of the backward (every path): delta = rowsum(dO * O).
 */
#ifndef BSA_CUDA_REF_KERNELS_CUH
#define BSA_CUDA_REF_KERNELS_CUH

#include "device_common.cuh"

namespace bsa_cuda
{

constexpr int kMaxDim = 256;

__device__ __forceinline__ float ld(const float *p)
{
    return *p;
}
__device__ __forceinline__ float ld(const __half *p)
{
    return __half2float(*p);
}
__device__ __forceinline__ float ld(const __nv_bfloat16 *p)
{
    return __bfloat162float(*p);
}
__device__ __forceinline__ void st(float *p, float x)
{
    *p = x;
}
__device__ __forceinline__ void st(__half *p, float x)
{
    *p = __float2half_rn(x);
}
__device__ __forceinline__ void st(__nv_bfloat16 *p, float x)
{
    *p = __float2bfloat16_rn(x);
}

/* Keep test of element (r, c) of global block i (layout.h's bsa_layout_keep). */
__device__ __forceinline__ bool ref_keep(const bsa_cuda_params &p, int i, int qb, int kb, int r,
                                         int c)
{
    int m = p.mask_idx[i];
    if (m == BSA_BLOCK_FULL)
        return true;
    if (m == BSA_BLOCK_PRED)
        return bsa_pred_keep(&p.pred, (int64_t)qb * p.block + r, (int64_t)kb * p.block + c);
    uint64_t w = p.bits[((int64_t)m * p.block + r) * p.words + (c >> 6)];
    return (w >> (c & 63)) & 1u;
}

/* Key of layout position kn (layout order) is visible to segment v: inside
 * it and at a natural position below its key limit. */
__device__ __forceinline__ bool ref_key_in(const bsa_cuda_params &p, const seg_view &v, int kn)
{
    return kn < v.len_k && perm_row(kn, p.stride_perm, p.seq_k) < v.klim;
}

/* One thread per (segment, query head, query row). */
template <typename T> __global__ void ref_fwd(const bsa_cuda_params p)
{
    int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (int64_t)p.n_seg * p.heads * p.seq_q)
        return;
    int r = (int)(gid % p.seq_q);
    int bh = (int)(gid / p.seq_q), sg = bh / p.heads, h = bh % p.heads;
    int lh = p.lheads == 1 ? 0 : h, kvh = h / p.group;
    const seg_view sv = seg_of(p, sg);
    if (r >= sv.len_q)
        return;
    int qb = r / p.block, nqb = p.seq_q / p.block;
    int qn = perm_row(r, p.stride_perm, p.seq_q);
    const T *q = seg_base<const T>(p.q, p.q_s, sv, h, false) + qn * p.q_s[2];
    const T *k = seg_base<const T>(p.k, p.k_s, sv, kvh, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, kvh, true);
    T *o = seg_base<T>(p.o_out, p.o_s, sv, h, false) + qn * p.o_s[2];
    float acc[kMaxDim], qf[kMaxDim];
    for (int d = 0; d < p.dim; ++d)
        qf[d] = ld(q + d);
    for (int d = 0; d < p.dim_v; ++d)
        acc[d] = 0.f;
    float m = -CUDART_INF_F, l = 0.f;
    for (int i = p.row_ptr[lh * (nqb + 1) + qb]; i < p.row_ptr[lh * (nqb + 1) + qb + 1]; ++i) {
        int kb = p.col_idx[i];
        for (int c = 0; c < p.block; ++c) {
            if (!ref_key_in(p, sv, kb * p.block + c) || !ref_keep(p, i, qb, kb, r % p.block, c))
                continue;
            int kn = perm_row(kb * p.block + c, p.stride_perm, p.seq_k);
            const T *kr = k + kn * p.k_s[2], *vr = v + kn * p.v_s[2];
            float s = 0.f;
            for (int d = 0; d < p.dim; ++d)
                s += qf[d] * ld(kr + d);
            s *= p.scale;
            /* a logit of -inf (an Inf in q or k) is probability 0: skipped,
             * as if masked; the update below would give (-inf) - (-inf) */
            if (s == -CUDART_INF_F)
                continue;
            float mn = fmaxf(m, s);
            float alpha = expf(m - mn), e = expf(s - mn);
            l = l * alpha + e;
            for (int d = 0; d < p.dim_v; ++d)
                acc[d] = acc[d] * alpha + e * ld(vr + d);
            m = mn;
        }
    }
    float inv = l > 0.f ? 1.f / l : 0.f;
    for (int d = 0; d < p.dim_v; ++d)
        st(o + d, acc[d] * inv);
    if (p.lse)
        p.lse[sv.lse0 + (int64_t)h * p.time_q + qn] = l == 0.f ? -CUDART_INF_F : m + logf(l);
}

/* One thread per (segment, query head, query row). */
template <typename T> __global__ void ref_dq(const bsa_cuda_params p)
{
    int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (int64_t)p.n_seg * p.heads * p.seq_q)
        return;
    int r = (int)(gid % p.seq_q);
    int bh = (int)(gid / p.seq_q), sg = bh / p.heads, h = bh % p.heads;
    int lh = p.lheads == 1 ? 0 : h, kvh = h / p.group;
    const seg_view sv = seg_of(p, sg);
    if (r >= sv.len_q)
        return;
    int qb = r / p.block, nqb = p.seq_q / p.block;
    int qn = perm_row(r, p.stride_perm, p.seq_q);
    const T *q = seg_base<const T>(p.q, p.q_s, sv, h, false) + qn * p.q_s[2];
    const T *dout = seg_base<const T>(p.dout, p.o_s, sv, h, false) + qn * p.o_s[2];
    const T *k = seg_base<const T>(p.k, p.k_s, sv, kvh, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, kvh, true);
    T *dq = seg_base<T>(p.dq, p.q_s, sv, h, false) + qn * p.q_s[2];
    float acc[kMaxDim];
    for (int d = 0; d < p.dim; ++d)
        acc[d] = 0.f;
    int64_t li = sv.lse0 + (int64_t)h * p.time_q + qn;
    float lse = p.lse_in[li], dl = p.delta[li];
    if (lse != -CUDART_INF_F) {
        for (int i = p.row_ptr[lh * (nqb + 1) + qb]; i < p.row_ptr[lh * (nqb + 1) + qb + 1]; ++i) {
            int kb = p.col_idx[i];
            for (int c = 0; c < p.block; ++c) {
                if (!ref_key_in(p, sv, kb * p.block + c) || !ref_keep(p, i, qb, kb, r % p.block, c))
                    continue;
                int kn = perm_row(kb * p.block + c, p.stride_perm, p.seq_k);
                const T *kr = k + kn * p.k_s[2], *vr = v + kn * p.v_s[2];
                float s = 0.f, dp = 0.f;
                for (int d = 0; d < p.dim; ++d)
                    s += ld(q + d) * ld(kr + d);
                for (int d = 0; d < p.dim_v; ++d)
                    dp += ld(dout + d) * ld(vr + d);
                float pr = expf(fminf(s * p.scale - lse, 0.f)); /* at most 1 */
                float ds = pr * (dp - dl);
                for (int d = 0; d < p.dim; ++d)
                    acc[d] += ds * ld(kr + d);
            }
        }
    }
    for (int d = 0; d < p.dim; ++d)
        st(dq + d, acc[d] * p.scale);
}

/* One thread per (segment, kv head, key row): sums over the kv head's
 * group of query heads in ascending order. */
template <typename T> __global__ void ref_dkdv(const bsa_cuda_params p)
{
    int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (int64_t)p.n_seg * p.kv_heads * p.seq_k)
        return;
    int c = (int)(gid % p.seq_k);
    int bh = (int)(gid / p.seq_k), sg = bh / p.kv_heads, kvh = bh % p.kv_heads;
    const seg_view sv = seg_of(p, sg);
    if (c >= sv.len_k)
        return;
    int kb = c / p.block, nkb = p.seq_k / p.block;
    int kn = perm_row(c, p.stride_perm, p.seq_k);
    const T *kr = seg_base<const T>(p.k, p.k_s, sv, kvh, true) + kn * p.k_s[2];
    const T *vr = seg_base<const T>(p.v, p.v_s, sv, kvh, true) + kn * p.v_s[2];
    T *dk = seg_base<T>(p.dk, p.k_s, sv, kvh, true) + kn * p.k_s[2];
    T *dv = seg_base<T>(p.dv, p.v_s, sv, kvh, true) + kn * p.v_s[2];
    float adk[kMaxDim], adv[kMaxDim];
    for (int d = 0; d < p.dim; ++d)
        adk[d] = 0.f;
    for (int d = 0; d < p.dim_v; ++d)
        adv[d] = 0.f;
    bool live = ref_key_in(p, sv, c);
    for (int gi = 0; gi < p.group && live; ++gi) {
        int h = kvh * p.group + gi, lh = p.lheads == 1 ? 0 : h;
        const T *q = seg_base<const T>(p.q, p.q_s, sv, h, false);
        const T *dout = seg_base<const T>(p.dout, p.o_s, sv, h, false);
        for (int j = p.col_ptr[lh * (nkb + 1) + kb]; j < p.col_ptr[lh * (nkb + 1) + kb + 1]; ++j) {
            int i = p.t_block[j], qb = p.t_row[j];
            for (int r = 0; r < p.block; ++r) {
                if (qb * p.block + r >= sv.len_q || !ref_keep(p, i, qb, kb, r, c % p.block))
                    continue;
                int qn = perm_row(qb * p.block + r, p.stride_perm, p.seq_q);
                int64_t li = sv.lse0 + (int64_t)h * p.time_q + qn;
                float lse = p.lse_in[li];
                if (lse == -CUDART_INF_F)
                    continue;
                const T *qr = q + qn * p.q_s[2], *dr = dout + qn * p.o_s[2];
                float s = 0.f, dp = 0.f;
                for (int d = 0; d < p.dim; ++d)
                    s += ld(qr + d) * ld(kr + d);
                for (int d = 0; d < p.dim_v; ++d)
                    dp += ld(dr + d) * ld(vr + d);
                float pr = expf(fminf(s * p.scale - lse, 0.f)); /* at most 1 */
                float ds = pr * (dp - p.delta[li]);
                for (int d = 0; d < p.dim_v; ++d)
                    adv[d] += pr * ld(dr + d);
                for (int d = 0; d < p.dim; ++d)
                    adk[d] += ds * ld(qr + d);
            }
        }
    }
    for (int d = 0; d < p.dim; ++d)
        st(dk + d, adk[d] * p.scale);
    for (int d = 0; d < p.dim_v; ++d)
        st(dv + d, adv[d]);
}

/* delta = sum_d dO * O in fp32 per row (natural order), and the row's
 * lse_offset for the tensor-core backward kernels.  VEC: 8 lanes a
 * row, each multiplying 16-byte chunks (rows and dim_v 16-byte aligned,
 * checked at the launch): a row's 2 x 128 bytes at head dim 64 come in one
 * coalesced load per tensor, where element loads took a warp a row and ran
 * at a third of the memory's bandwidth (bench/NOTES.md, v28).  Otherwise
 * a warp a row, one element a lane. */
template <typename T, bool VEC> __global__ void delta_kernel(const bsa_cuda_params p)
{
    constexpr int LPR = VEC ? 8 : kWarp; /* lanes per row */
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t row = gid / LPR;
    const int sub = (int)(gid % LPR);
    /* every lane stays for the shuffles, rows past the end add nothing */
    const bool live = row < (int64_t)p.batch * p.heads * p.time_q;
    float s = 0.f;
    if (live) {
        int t = (int)(row % p.time_q);
        int bh = (int)(row / p.time_q), b = bh / p.heads, h = bh % p.heads;
        const int64_t off = b * p.o_s[0] + h * p.o_s[1] + (int64_t)t * p.o_s[2];
        const T *o = (const T *)p.o + off, *d = (const T *)p.dout + off;
        if constexpr (VEC) {
            constexpr int E = 16 / sizeof(T);
            for (int i = sub * E; i < p.dim_v; i += LPR * E) {
                const uint4 a = *reinterpret_cast<const uint4 *>(o + i);
                const uint4 c = *reinterpret_cast<const uint4 *>(d + i);
                const T *x = reinterpret_cast<const T *>(&a), *y = reinterpret_cast<const T *>(&c);
#pragma unroll
                for (int e = 0; e < E; ++e)
                    s += ld(x + e) * ld(y + e);
            }
        } else {
            for (int i = sub; i < p.dim_v; i += LPR)
                s += ld(o + i) * ld(d + i);
        }
    }
#pragma unroll
    for (int w = LPR / 2; w > 0; w /= 2)
        s += __shfl_xor_sync(0xffffffffu, s, w);
    if (live && sub == 0) {
        p.delta[row] = s;
        p.loff[row] = lse_offset(p.lse_in[row]);
    }
}

} // namespace bsa_cuda

#endif
