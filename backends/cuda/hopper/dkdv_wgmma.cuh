/*
 * The Hopper dK/dV kernel (sm_90a): the mma.sync dkdv_kernel's work on
 * wgmma.  A block of two warpgroups owns two consecutive key tiles of one
 * kv head (64 keys each, K and V held in shared memory for the whole walk)
 * and walks the merge of their query-tile lists (the transposed layout),
 * for each query head of the kv head's group in ascending order: grouped-
 * query gradients are summed in a fixed order, without atomics.
 *
 * Per query tile and warpgroup (Q, dO, lse and delta of the tile in a
 * shared stage both warpgroups read):
 *   S^T = K Q^T, dP^T = V dO^T       m64n64k16, operands from swizzled
 *                                    shared tiles;
 *   P^T = exp2(S^T scale log2(e) - lse log2(e)), dS^T = P^T (dP^T - delta)
 *                                    in registers;
 *   dV += P^T dO, dK += dS^T Q       m64nDk16, P^T and dS^T from registers,
 *                                    dO and Q read MN-major.
 * The four products are software-pipelined so that each of dV and dK runs
 * during element-wise work (front / back below).  Query-side stages stream
 * in two tiles ahead with cp.async.  dK is scaled once at the end.
 * GATHER: gathered key tiles (their rows are their key blocks'; a layout
 * that gathers per head with grouped-query heads takes the reference
 * dK/dV instead, dkdv_needs_reference); head dims 64 and 128.
 */
#ifndef BSA_CUDA_HOPPER_DKDV_WGMMA_CUH
#define BSA_CUDA_HOPPER_DKDV_WGMMA_CUH

#include "wgmma.cuh"

namespace bsa_cuda
{
namespace hopper
{

/* query-side stages: the step computed, the previous one (its Q is read
 * by the dK product that runs in this step) and two loading ahead */
constexpr int kDkdvStages = 4;

template <int DP> constexpr size_t dkdv_smem_bytes()
{
    /* K and V of both key tiles, Q and dO stages, lse and delta stages
     * (64 floats each), + alignment slack */
    return (size_t)(4 + 2 * kDkdvStages) * kTile * DP * 2 +
           (size_t)2 * kDkdvStages * kTile * sizeof(float) + 1024;
}

/* A step of the walk of a block's key tiles: the query tile, each key
 * tile's entry code for it (kNone: absent) and the group head. */
struct col_step {
    int qt, ya, yb, gi;
    bool ok;
};

/* The merged query-tile lists of key tiles ka and ka + 1 for each of the G
 * query heads of a kv head (h0 the first), one head after another.  Query
 * tiles past the segment are dropped, and with FEAT so is a natural key
 * tile wholly past the key limit (its gradients are zero). */
template <bool FEAT, bool GATHER> struct col_walk {
    const bsa_cuda_params &p;
    const seg_view &sv;
    int ka, h0, G, gi;
    merged_lists w;

    __device__ __forceinline__ col_walk(const bsa_cuda_params &p_, const seg_view &sv_, int ka_,
                                        int h0_, int G_)
        : p(p_), sv(sv_), ka(ka_), h0(h0_), G(G_), gi(0)
    {
        open();
    }
    __device__ __forceinline__ void range(const int32_t *tp, int kt, int &b, int &e) const
    {
        b = e = 0;
        if (kt >= p.n_kt || (!GATHER && kt * kTile >= sv.len_k))
            return;
        b = tp[kt];
        e = tp[kt + 1];
        if (FEAT && !GATHER && !p.stride_perm && kt * kTile >= sv.klim)
            e = b;
        while (FEAT && e > b && p.col_tent[e - 1].x * kTile >= sv.len_q)
            --e;
    }
    __device__ __forceinline__ void open()
    {
        const int lh = p.lheads == 1 ? 0 : h0 + gi;
        const int32_t *tp = p.col_tptr + lh * (p.n_kt + 1);
        w.ent = p.col_tent;
        range(tp, ka, w.ia, w.a1);
        range(tp, ka + 1, w.ib, w.b1);
        w.start();
    }
    __device__ __forceinline__ col_step take()
    {
        while (!w.more() && gi < G && ++gi < G)
            open();
        col_step t{0, kNone, kNone, gi, gi < G};
        if (t.ok)
            w.next(t.qt, t.ya, t.yb);
        return t;
    }
};

/* A float pair from shared memory (the lse or delta of a lane's two
 * adjacent query columns), as one 8-byte load and kept in program order
 * with the pins and products around it.  (Tried against a register-
 * pressure problem; it made no difference to ptxas's allocation.) */
__device__ __forceinline__ float2 lds2(const float *a)
{
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(smem_u32(a)));
    return v;
}

template <typename T, int DP, bool FEAT, bool GATHER>
__global__ void __launch_bounds__(2 * kWarpgroup, 1) dkdv_wgmma_kernel(const bsa_cuda_params p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int TE = kTile * DP, NT = 2 * kWarpgroup, ST = kDkdvStages;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sK = aligned_smem<T>(smem_raw); /* one tile per warpgroup */
    T *sV = sK + 2 * TE;
    T *sQ = sV + 2 * TE; /* ST stages */
    T *sO = sQ + ST * TE;
    float *sL = reinterpret_cast<float *>(sO + ST * TE); /* [ST][lse_offset, delta][64] */

    const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
    const int wg = warp / 4, vw = warp & 3;
    const int bh = grid_bh(), sg = bh / p.kv_heads, kvh = bh - sg * p.kv_heads;
    if (sg >= p.n_seg)
        return;
    const int G = FEAT ? p.group : 1, h0 = kvh * G;
    const int ka = 2 * blockIdx.x, kt = ka + wg; /* causal columns: heavy tiles first */
    const seg_view sv = seg_at<FEAT>(p, sg);
    if (!GATHER && ka * kTile >= sv.len_k) /* (a gathered tile's rows are its blocks') */
        return;
    const T *k = seg_base<const T>(p.k, p.k_s, sv, kvh, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, kvh, true);
    T *dk = seg_base<T>(p.dk, p.k_s, sv, kvh, true);
    T *dv = seg_base<T>(p.dv, p.v_s, sv, kvh, true);
    col_walk<FEAT, GATHER> walk(p, sv, ka, h0, G);
    /* the key blocks of key tile kt (gathered; one layout head: see above),
     * null for natural tiles and past the last tile */
    auto kgroup = [&](int t) -> const int32_t * {
        return GATHER && t < p.n_kt ? key_group(p, p.lheads == 1 ? 0 : h0, t) : nullptr;
    };

    const sw_loader<DP, NT> ld(tid);
    /* Q, dO, lse and delta of a step's query tile; rows past the segment
     * are zeros, which make P^T dO and dS^T = P^T (V 0 - 0) zero whatever
     * P is */
    auto load_q_side = [&](int stage, const col_step &t) {
        const int h = h0 + t.gi, row0 = t.qt * kTile;
        ld.load(sQ + stage * TE, seg_base<const T>(p.q, p.q_s, sv, h, false), p.q_s[2], row0,
                sv.len_q, p.dim, p.stride_perm);
        ld.load(sO + stage * TE, seg_base<const T>(p.dout, p.o_s, sv, h, false), p.o_s[2], row0,
                sv.len_q, p.dim_v, p.stride_perm);
        if (tid < 2 * kTile) {
            const int r = tid % kTile, rr = row0 + r;
            const bool ok = rr < sv.len_q;
            const int64_t idx =
                sv.lse0 + (int64_t)h * p.time_q + (ok ? perm_row(rr, p.stride_perm, p.seq_q) : 0);
            cp_async4(sL + stage * 2 * kTile + tid, (tid < kTile ? p.loff : p.delta) + idx,
                      ok ? 4 : 0);
        }
    };
#pragma unroll
    for (int w = 0; w < 2; ++w) {
        ld.load(sK + w * TE, k, p.k_s[2], (ka + w) * kTile, sv.len_k, p.dim, p.stride_perm,
                kgroup(ka + w), p.log2g);
        ld.load(sV + w * TE, v, p.v_s[2], (ka + w) * kTile, sv.len_k, p.dim_v, p.stride_perm,
                kgroup(ka + w), p.log2g);
    }
    /* A step past the walk's end loads a zero tile (a query tile past the
     * segment): the software pipeline below runs products on one step
     * past the last, and 0 times what shared memory held could be NaN. */
    const col_step none{(sv.len_q + kTile - 1) / kTile, kNone, kNone, 0, false};
    auto load_step = [&](int stage, const col_step &t) { load_q_side(stage, t.ok ? t : none); };
    /* steps 0 and 1 in flight, one commit group each (K and V with the first) */
    col_step cur = walk.take(), ahead = walk.take(), nx;
    load_step(0, cur);
    cp_async_commit();
    load_step(1, ahead);
    cp_async_commit();
    /* step j has landed and every warp is past step j - 1, whose products
     * have all completed: the stage of step j - 2 takes step j + 2 */
    auto sync_and_load = [&](int j) {
        cp_async_wait<1>();
        fence_proxy_async();
        __syncthreads();
        nx = walk.take();
        load_step((j + 2) % ST, nx);
        cp_async_commit();
    };

    const bool cut = FEAT && tile_needs_cut(p, sv, kgroup(kt), kt);
    /* descriptors: byte offsets from the tiles' base */
    constexpr uint32_t TB = TE * 2;
    const desc_base dkm(sK, 16), dmn(sK, kTile * 128);
    const uint32_t off_kw = wg * TB, off_vw = (2 + wg) * TB, off_q = 4 * TB, off_o = (4 + ST) * TB;
    const int c2 = 2 * (lane & 3); /* this lane's first column of each 8 */
    const float scale_log2 = p.scale_log2;
    float adk[elems<DP>()], adv[elems<DP>()], s[elems<kTile>()], dp[elems<kTile>()];
    zero<elems<DP>()>(adk);
    zero<elems<DP>()>(adv);
    zero<elems<kTile>()>(s);
    zero<elems<kTile>()>(dp);
    /* P^T (this step's) and dS^T (the previous step's) as A fragments */
    uint32_t pa[kTile / 16][4], da[kTile / 16][4];
    zero_frags<kTile / 4>(&pa[0][0]);
    zero_frags<kTile / 4>(&da[0][0]);
    using tr = dtype_traits<T>;

    /* The products of a step, software-pipelined so that each runs during
     * element-wise work (the forward's overlap):
     *   front(j): S^T(j) = K Q^T, then dK += dS^T(j - 1) Q(j - 1); P^T(j) is
     *             formed while dK runs;
     *   back(j):  dP^T(j) = V dO^T, then dV += P^T(j) dO; dS^T(j) is formed
     *             while dV runs (it completes in front(j + 1)).
     * A step's Q stage is thus read one step later, and every product has
     * completed at the end of front(), the loop's back edge: ptxas
     * serialises wgmma left in flight across it (C7515).  Every product
     * is issued and awaited on every step, whatever this warpgroup's list
     * holds (a tile absent from it gets P = dS = 0): ptxas serialises
     * wgmma issued or awaited in a branch it cannot prove uniform (C7518). */
    auto front = [&](int stage, int prev, int y, int qt) {
        pin<elems<kTile>()>(s);
        pin<elems<DP>()>(adk);
        pin<kTile / 4>(&da[0][0]);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < DP / 16; ++kk)
            wgmma_ss_n64<T>(s, dkm.kmajor(off_kw, kk), dkm.kmajor(off_q + stage * TB, kk), kk);
        wgmma_commit();
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
            wgmma_rs<T, DP>(adk, da[kk], dmn.mnmajor(off_q + prev * TB, kk));
        wgmma_commit();
        wgmma_wait<1>(); /* S^T (and the previous dV) are done, dK may still run */
        pin<elems<kTile>()>(s);
        pin<elems<DP>()>(adv);
        pin<kTile / 4>(&pa[0][0]);
        const bool comp = y != kNone;
        if (comp) {
            if (y >= 0)
                apply_mask<true>(s, p, p.sub + (int64_t)y * p.ns * p.ns, kt * kTile, qt * kTile, vw,
                                 lane, kgroup(kt));
            if (cut)
                apply_key_cut<true>(s, p, sv, kgroup(kt), kt, vw, lane);
        }
        /* columns are queries here: an lse per column pair, its offset
         * formed once for the pair's four entries; the absent-tile test
         * stays outside the loop (one uniform branch, not one per entry) */
        const float *ls = sL + stage * 2 * kTile;
        if (comp) {
#pragma unroll
            for (int j = 0; j < kTile / 8; ++j) {
                const float2 o2 = lds2(ls + 8 * j + c2); /* lse_offset (the delta pre-pass) */
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    s[4 * j + i] = prob(s[4 * j + i], scale_log2, i & 1 ? o2.y : o2.x);
            }
        } else {
            zero<elems<kTile>()>(s);
        }
        wgmma_wait<0>();
        pin<elems<DP>()>(adk);
        pin<kTile / 4>(&da[0][0]);
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                pa[kk][i] = tr::pack(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]);
    };
    auto back = [&](int stage) {
        pin<elems<kTile>()>(dp);
        pin<elems<DP>()>(adv);
        pin<kTile / 4>(&pa[0][0]);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < DP / 16; ++kk)
            wgmma_ss_n64<T>(dp, dkm.kmajor(off_vw, kk), dkm.kmajor(off_o + stage * TB, kk), kk);
        wgmma_commit();
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
            wgmma_rs<T, DP>(adv, pa[kk], dmn.mnmajor(off_o + stage * TB, kk));
        wgmma_commit();
        wgmma_wait<1>(); /* dP^T is done, dV may still run */
        pin<elems<kTile>()>(dp);
        const float *ds = sL + stage * 2 * kTile + kTile;
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j) {
            const float2 d2 = lds2(ds + 8 * j + c2);
#pragma unroll
            for (int i = 0; i < 4; ++i)
                dp[4 * j + i] = s[4 * j + i] * (dp[4 * j + i] - (i & 1 ? d2.y : d2.x));
        }
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                da[kk][i] = tr::pack(dp[8 * kk + 2 * i], dp[8 * kk + 2 * i + 1]);
    };

    sync_and_load(0);
    front(0, 0, wg ? cur.yb : cur.ya, cur.qt); /* (its dK adds dS = 0) */
    for (int j = 0; cur.ok; ++j) {
        back(j % ST);
        cur = ahead;
        ahead = nx;
        sync_and_load(j + 1);
        front((j + 1) % ST, j % ST, wg ? cur.yb : cur.ya, cur.qt);
    }
    cp_async_wait<0>();
    __syncthreads(); /* the query-side stages are reused for the output */

    /* each warpgroup stages its rows in its own query-side stages */
    T *stage_v = wg ? sO : sQ, *stage_k = stage_v + kTile * tc_cfg<DP>::srow;
    float one[kRows], sc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        one[r] = 1.f, sc[r] = p.scale;
    store_rows<DP>(adv, one, stage_v, dv, p.v_s[2], kt * kTile, sv.len_k, p.dim_v, p.stride_perm,
                   vw, lane, kgroup(kt), p.log2g);
    store_rows<DP>(adk, sc, stage_k, dk, p.k_s[2], kt * kTile, sv.len_k, p.dim, p.stride_perm, vw,
                   lane, kgroup(kt), p.log2g);
#endif
}

} // namespace hopper
} // namespace bsa_cuda

#endif
