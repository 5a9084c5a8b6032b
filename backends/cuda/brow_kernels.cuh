/*
 * Block-row kernels (mma.sync, NVIDIA): layouts of 32-wide blocks whose
 * 64 x 64 tile pairs would compute mostly absent blocks.  A random layout
 * of 10% density touches a third of the 64 x 64 tiles, so the tile
 * kernels compute 3.4 times its kept area (bench/NOTES.md, random).
 *
 * Here each 32-row block of one side walks its own kept blocks of the
 * other side, two to a 32 x 64 kernel tile gathered from the tensors
 * (tiles.cu, brow_lists): the computed area is the kept one, but for the
 * last half tile of a row with an odd count.  A thread block of 4 warps
 * holds two such blocks ("lanes": warps 0-1 and 2-3, 16 rows each), picked
 * with lists of about the same length; each lane runs its own pipeline on
 * its own 64 threads and named barrier (v36), so neither waits for the
 * other.  A warp computes exactly as in tc_kernels.cuh, on its lane's
 * 64-row half of each stage.  Calls without key lengths, packed sequences
 * or kv groups; head dims up to 64 (the fragments of Q, and of dO in dQ,
 * stay in registers), the forward alone up to 128; a (batch, head) slice's
 * rows within 32-bit offsets.
 */
#ifndef BSA_CUDA_BROW_KERNELS_CUH
#define BSA_CUDA_BROW_KERNELS_CUH

#include "tc_kernels.cuh"

namespace bsa_cuda
{

constexpr int kLaneRows = 32; /* the layout block of this path */
constexpr int kLaneLog2 = 5;  /* its log2 */

/* The work of a block-row thread block: its (batch, head), layout head,
 * the blocks of its two lanes (rows: query blocks, else key blocks; -1:
 * none) and each lane's entries [beg, beg + n) of the lists. */
struct brow_job {
    int h, lh;
    int blk[2], beg[2], n[2];
    seg_view sv;
};

__device__ __forceinline__ bool brow_job_of(const bsa_cuda_params &p, bool rows, brow_job &j)
{
    const int bh = grid_bh(), sg = bh / p.heads;
    j.h = bh - sg * p.heads;
    if (sg >= p.n_seg)
        return false;
    j.lh = p.lheads == 1 ? 0 : j.h;
    const int nb = (rows ? p.seq_q : p.seq_k) >> kLaneLog2, np = (nb + 1) / 2;
    const int32_t *lane_blk =
        (rows ? p.brow_qord : p.brow_kord) + ((int64_t)j.lh * np + blockIdx.x) * 2;
    const int32_t *ptr = (rows ? p.brow_rptr : p.brow_cptr) + (int64_t)j.lh * (nb + 1);
#pragma unroll
    for (int l = 0; l < 2; ++l) {
        const int b = lane_blk[l];
        j.blk[l] = b;
        j.beg[l] = b >= 0 ? ptr[b] : 0;
        j.n[l] = b >= 0 ? ptr[b + 1] - j.beg[l] : 0;
    }
    j.sv = seg_at<false>(p, sg);
    return true;
}

/* x[ln] of a two-lane array with ln known at run time only, as a select
 * (an indexed access would put the array in local memory). */
__device__ __forceinline__ int of_lane(const int (&x)[2], int ln)
{
    return ln ? x[1] : x[0];
}

/* An entry's two blocks (a gathered tile's group) and its two codes. */
__device__ __forceinline__ const int32_t *entry_blocks(const int4 *e)
{
    return reinterpret_cast<const int32_t *>(e);
}
__device__ __forceinline__ const int32_t *entry_codes(const int4 *e)
{
    return reinterpret_cast<const int32_t *>(e) + 2;
}
/* How an entry's tile is masked: not at all (both blocks whole), its
 * second half only (a list's odd last block: every row of a random layout
 * with an odd count, cut in a few instructions), or by apply_mask. */
enum entry_mask { MASK_NONE = 0, MASK_UPPER = 1, MASK_CODES = 2 };
__device__ __forceinline__ int entry_mask_of(const int4 &e)
{
    return e.z != BSA_CUDA_SUB_FULL     ? MASK_CODES
           : e.w == BSA_CUDA_SUB_FULL   ? MASK_NONE
           : e.w == BSA_CUDA_SUB_ABSENT ? MASK_UPPER
                                        : MASK_CODES;
}

/* The mask of an entry (kind: entry_mask_of) over a warp's 16 x 64 scores
 * (transposed: rows are keys, columns the entry's queries).  The upper
 * half's clearing is a select on every path: a branch around it left the
 * compiler merging two copies of 16 scores (36 moves a step, v36). */
template <bool transposed>
__device__ __forceinline__ void mask_entry(float *s, int kind, const bsa_cuda_params &p,
                                           const int4 *e, int row0, int wl, int lane)
{
    if (kind == MASK_CODES) {
        if constexpr (transposed)
            apply_mask<true, true>(s, p, entry_codes(e), row0, 0, wl, lane, nullptr,
                                   entry_blocks(e));
        else
            apply_mask<false>(s, p, entry_codes(e), row0, 0, wl, lane, entry_blocks(e));
    }
    const bool upper = kind == MASK_UPPER;
#pragma unroll
    for (int x = elems<kTile>() / 2; x < elems<kTile>(); ++x) /* columns 32..63 */
        s[x] = upper ? -CUDART_INF_F : s[x];
}

/* The entry i of a lane's list, or none (-1 blocks) past its end. */
__device__ __forceinline__ int4 entry_at(const int4 *ent, int n, int i)
{
    return i < n ? __ldg(ent + i) : make_int4(-1, -1, BSA_CUDA_SUB_ABSENT, BSA_CUDA_SUB_ABSENT);
}

/* Asynchronously loads the 64 rows of two 32-row blocks b0, b1 (-1: none,
 * zero-filled) of one (batch, head) slice into a padded shared tile (NB =
 * 1: b0's 32 rows alone), with NT threads (tid: this one's index among
 * them); st is the slice's row stride.  A thread copies column chunk cc of fixed rows
 * of each block, so it forms one offset per block.  Offsets within the
 * slice are 32-bit (the plan takes this path only where they fit,
 * cuda_backend.cu): an address costs a multiply-add and a widening add
 * instead of 64-bit arithmetic (v36: ~250 of ~640 instructions a warp and
 * forward step went to the loads' addresses).  Layout order is natural
 * order here: the plan takes no permuted layout on this path. */
template <int DP, int NT = kThreads, int NB = 2, typename T>
__device__ __forceinline__ void load_pair(T *sm, const T *base, int st, int b0, int b1, int dim,
                                          int tid = threadIdx.x)
{
    constexpr int sr = tc_cfg<DP>::srow, ch = DP / 8, RS = NT / ch, J = kLaneRows / RS;
    static_assert(NT % ch == 0 && J >= 1 && kLaneRows % RS == 0, "pair loader shape");
    const int cc = tid % ch, r0 = tid / ch;
    const bool col_ok = cc * 8 < dim;
    sm += r0 * sr + cc * 8;
    const int toff = r0 * st + cc * 8;
#pragma unroll
    for (int b = 0; b < NB; ++b) {
        const int blk = b ? b1 : b0;
        const bool ok = col_ok && blk >= 0;
        /* an absent block's copies read nothing; their address stays in the slice */
        const int off = max(blk, 0) * (kLaneRows * st) + toff;
#pragma unroll
        for (int j = 0; j < J; ++j)
            cp_async16(sm + (b * kLaneRows + j * RS) * sr, base + (off + j * RS * st), ok ? 16 : 0);
    }
}

/* A barrier among the 64 threads of lane ln (ids 1, 2; 0 is
 * __syncthreads'): the forward's lanes do not wait for each other. */
__device__ __forceinline__ void lane_sync(int ln)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(1 + ln), "n"(2 * kWarp) : "memory");
}

/* A lane's entries of this step and the next two, in registers: the
 * two-stage kernels (dQ, dK/dV) issue the next step's loads at a step's
 * top (issue(stage, entry)) and read the entries after it meanwhile. */
struct lane_walk {
    const int4 *ent;
    int n;
    int4 cur, nxt, fut;
    __device__ __forceinline__ lane_walk(const int4 *e, int len) : ent(e), n(len)
    {
        cur = entry_at(ent, n, 0);
        nxt = entry_at(ent, n, 1);
    }
    /* The top of step it: the next step's loads issued, this step's
     * awaited, the entry two steps ahead read, the lane's barrier. */
    template <typename F> __device__ __forceinline__ void top(int it, int ln, F &&issue)
    {
        if (it + 1 < n) {
            issue((it + 1) & 1, nxt);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        fut = entry_at(ent, n, it + 2);
        lane_sync(ln);
    }
    __device__ __forceinline__ void advance()
    {
        cur = nxt;
        nxt = fut;
    }
};

/* Shared memory: the forward's K and V of two lanes (one stage: V loads
 * under the scores' products, the next K under P V); dQ's K and V, dK/dV's
 * Q and dO in 2 stages of two lanes' 64-row tiles; dK/dV adds its K and V
 * rows and the rows' lse offsets and deltas. */
template <int DP> constexpr size_t brow_smem_bytes(int pass)
{
    return pass == BSA_PASS_FWD  ? (size_t)4 * tc_cfg<DP>::tile_elems * 2
           : pass == BSA_PASS_DQ ? (size_t)8 * tc_cfg<DP>::tile_elems * 2
                                 : (size_t)10 * tc_cfg<DP>::tile_elems * 2 +
                                       (size_t)2 * 2 * 2 * kTile * sizeof(float);
}
/* the implementation list's table (gpu/kernel_smem.h) */
static_assert(brow_smem_bytes<128>(BSA_PASS_FWD) == BSA_SMEM_BROW_FWD(128), "smem table");
static_assert(brow_smem_bytes<64>(BSA_PASS_DQ) == BSA_SMEM_BROW_DQ(64), "smem table");
static_assert(brow_smem_bytes<64>(BSA_PASS_DKDV) == BSA_SMEM_BROW_DKDV(64), "smem table");
static_assert(brow_smem_bytes<32>(BSA_PASS_DKDV) == BSA_SMEM_BROW_DKDV(32), "smem table");

/* The forward: each lane runs its own pipeline on its own 64 threads
 * (loads, lane_sync barriers, its list's length), so neither lane waits for
 * the other and a thread holds one lane's entries.  Up to head dim 64, 4
 * blocks a SM (16 warps at 128 registers): 5% faster than 3 without spills
 * on an H200 (bench/NOTES.md, v35); at 128, 3 blocks (168 registers, a few
 * bytes spilled outside the loop's hot path, 70 KB of shared memory). */
template <typename T, int DP>
__global__ void __launch_bounds__(kThreads, DP <= 64 ? 4 : 3)
    brow_fwd_kernel(const bsa_cuda_params p)
{
    static_assert(DP <= 128, "Q fragments in registers");
    constexpr int sr = tc_cfg<DP>::srow, te = tc_cfg<DP>::tile_elems, LT = 2 * kWarp;
    extern __shared__ __align__(16) unsigned char smem_raw[];

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int ln = warp >> 1, wl = warp & 1, lt = threadIdx.x % LT;
    brow_job job;
    if (!brow_job_of(p, true, job))
        return;
    const int nl = of_lane(job.n, ln), blk = of_lane(job.blk, ln), row0 = blk * kLaneRows;
    if (blk < 0)
        return; /* (the other lane's barriers count its own threads only) */
    /* the lane's K and V stage (V: its Q rows until in registers) */
    T *sK = reinterpret_cast<T *>(smem_raw) + ln * te;
    T *sV = reinterpret_cast<T *>(smem_raw) + (2 + ln) * te;
    const seg_view &sv = job.sv;
    const T *q = seg_base<const T>(p.q, p.q_s, sv, job.h, false);
    const T *k = opaque_ptr(seg_base<const T>(p.k, p.k_s, sv, job.h, true));
    const T *v = opaque_ptr(seg_base<const T>(p.v, p.v_s, sv, job.h, true));
    const int4 *mine = p.brow_rent + of_lane(job.beg, ln);
    /* this step's and the next step's entries: blocks and sub-block codes */
    int4 cur = entry_at(mine, nl, 0), nxt;

    load_pair<DP, LT>(sV, q, (int)p.q_s[2], blk, -1, p.dim, lt);
    cp_async_commit();
    load_pair<DP, LT>(sK, k, (int)p.k_s[2], cur.x, cur.y, p.dim, lt);
    cp_async_commit();
    afrag<DP> qf;
    cp_async_wait<1>();
    lane_sync(ln);
    load_a<DP>(qf, sV + wl * 16 * sr, lane);

    float acc[elems<DP>()];
    zero<elems<DP>()>(acc);
    float m[kRows], l[kRows];
    start_rows(m, l);

    for (int it = 0; it < nl; ++it) {
        nxt = entry_at(mine, nl, it + 1);
        cp_async_wait<0>(); /* K of this step */
        lane_sync(ln);      /* (and both warps are done with the last step's V) */
        load_pair<DP, LT>(sV, v, (int)p.v_s[2], cur.x, cur.y, p.dim_v, lt);
        cp_async_commit();
        float s[elems<kTile>()];
        float alpha[kRows];
        zero<elems<kTile>()>(s);
        gemm_abt_reg<DP>(s, qf, sK, lane);
        mask_entry<false>(s, entry_mask_of(cur), p, mine + it, row0, wl, lane);
        softmax_step(s, m, l, alpha, p.scale_log2);
        /* once a row's maximum settles its factor is 1: the warp skips
         * the rescale when all of its rows' are */
        if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f))
            scale_rows<DP>(acc, alpha);
        cp_async_wait<0>(); /* V of this step */
        lane_sync(ln);      /* (and both warps are done with this step's K) */
        if (it + 1 < nl) {
            load_pair<DP, LT>(sK, k, (int)p.k_s[2], nxt.x, nxt.y, p.dim, lt);
            cp_async_commit();
        }
        gemm_pb<DP>(acc, s, sV, lane);
        cur = nxt;
    }
    /* every thread's copies landed before a warp stages its rows (with no
     * step at all, the loop's barriers did not see to it) */
    cp_async_wait<0>();
    lane_sync(ln);

    float inv[kRows];
    finish_rows(l, inv);
    /* staged in the warp's own rows of K (no warp reads K after the last
     * step's second barrier, and none was loaded after it) */
    T *o = seg_base<T>(p.o_out, p.o_s, sv, job.h, false);
    store_rows<DP>(acc, inv, sK, o, p.o_s[2], row0, sv.len_q, p.dim_v, 0, wl, lane);
    store_lse(p, sv, job.h, row0 + wl * 16, m, l, lane);
}

/* dQ: each lane on its own 64 threads as in the forward, two stages of K
 * and V per lane. */
template <typename T, int DP>
__global__ void __launch_bounds__(kThreads, 3) brow_dq_kernel(const bsa_cuda_params p)
{
    static_assert(DP <= 64, "Q and dO fragments in registers");
    constexpr int sr = tc_cfg<DP>::srow, te = tc_cfg<DP>::tile_elems, LT = 2 * kWarp;
    extern __shared__ __align__(16) unsigned char smem_raw[];

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int ln = warp >> 1, wl = warp & 1, lt = threadIdx.x % LT;
    brow_job job;
    if (!brow_job_of(p, true, job))
        return;
    const int nl = of_lane(job.n, ln), blk = of_lane(job.blk, ln), row0 = blk * kLaneRows;
    if (blk < 0)
        return; /* (the other lane's barriers count its own threads only) */
    /* the lane's K and V of stage 0; stage 1's follow two tiles on (both
     * lanes' stages interleave: [stage][lane]); Q and dO in stage 1's
     * until in registers */
    T *sK = reinterpret_cast<T *>(smem_raw) + ln * te;
    T *sV = sK + 4 * te;
    const seg_view &sv = job.sv;
    const T *q = seg_base<const T>(p.q, p.q_s, sv, job.h, false);
    const T *k = opaque_ptr(seg_base<const T>(p.k, p.k_s, sv, job.h, true));
    const T *v = opaque_ptr(seg_base<const T>(p.v, p.v_s, sv, job.h, true));
    const T *dout = seg_base<const T>(p.dout, p.o_s, sv, job.h, false);
    const int4 *mine = p.brow_rent + of_lane(job.beg, ln);
    lane_walk w(mine, nl);
    auto load_kv = [&](int stage, const int4 &e) {
        load_pair<DP, LT>(sK + 2 * stage * te, k, (int)p.k_s[2], e.x, e.y, p.dim, lt);
        load_pair<DP, LT>(sV + 2 * stage * te, v, (int)p.v_s[2], e.x, e.y, p.dim_v, lt);
    };

    load_pair<DP, LT>(sK + 2 * te, q, (int)p.q_s[2], blk, -1, p.dim, lt);
    load_pair<DP, LT>(sV + 2 * te, dout, (int)p.o_s[2], blk, -1, p.dim_v, lt);
    cp_async_commit();
    load_kv(0, w.cur);
    cp_async_commit();

    float loff[kRows], dl[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int64_t idx = sv.lse0 + (int64_t)job.h * p.time_q + row0 + wl * 16 + row(lane, r);
        loff[r] = p.loff[idx];
        dl[r] = p.delta[idx];
    }
    afrag<DP> qf, of;
    cp_async_wait<1>();
    lane_sync(ln);
    load_a<DP>(qf, sK + 2 * te + wl * 16 * sr, lane);
    load_a<DP>(of, sV + 2 * te + wl * 16 * sr, lane);
    lane_sync(ln); /* stage 1 is free for the loads below */

    float acc[elems<DP>()];
    zero<elems<DP>()>(acc);

    for (int it = 0; it < nl; ++it) {
        w.top(it, ln, load_kv);
        const T *ks = sK + 2 * (it & 1) * te, *vs = sV + 2 * (it & 1) * te;
        float s[elems<kTile>()], dp[elems<kTile>()];
        zero<elems<kTile>()>(s);
        zero<elems<kTile>()>(dp);
        gemm_abt_reg<DP>(s, qf, ks, lane);
        mask_entry<false>(s, entry_mask_of(w.cur), p, mine + it, row0, wl, lane);
        gemm_abt_reg<DP>(dp, of, vs, lane);
#pragma unroll
        for (int x = 0; x < elems<kTile>(); ++x)
            s[x] = prob(s[x], p.scale_log2, loff[slot(x)]) * (dp[x] - dl[slot(x)]);
        gemm_pb<DP>(acc, s, ks, lane);
        lane_sync(ln); /* (both warps are done with this stage) */
        w.advance();
    }
    /* every thread's copies landed before a warp stages its rows (with no
     * step at all, the loop's barriers did not see to it) */
    cp_async_wait<0>();
    lane_sync(ln);

    float mul[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        mul[r] = p.scale;
    T *dq = seg_base<T>(p.dq, p.q_s, sv, job.h, false);
    store_rows<DP>(acc, mul, sK, dq, p.q_s[2], row0, sv.len_q, p.dim, 0, wl, lane);
}

/* dK/dV: lanes of key blocks, each walking its kept query blocks two to a
 * gathered 64-row tile of Q and dO on its own 64 threads as in dQ; every
 * key row is owned by one warp (no atomics: deterministic). */
template <typename T, int DP>
__global__ void __launch_bounds__(kThreads, 2) brow_dkdv_kernel(const bsa_cuda_params p)
{
    constexpr int sr = tc_cfg<DP>::srow, te = tc_cfg<DP>::tile_elems, LT = 2 * kWarp;
    extern __shared__ __align__(16) unsigned char smem_raw[];

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    const int ln = warp >> 1, wl = warp & 1, lt = threadIdx.x % LT;
    brow_job job;
    if (!brow_job_of(p, false, job))
        return;
    const int nl = of_lane(job.n, ln), blk = of_lane(job.blk, ln), row0 = blk * kLaneRows;
    if (blk < 0)
        return; /* (the other lane's barriers count its own threads only) */
    /* the lane's 32 key rows of K and V; its Q, dO, lse offsets and deltas
     * of stage 0, stage 1's two tiles on ([stage][lane]) */
    T *sK = reinterpret_cast<T *>(smem_raw) + ln * kLaneRows * sr;
    T *sV = sK + te;
    T *sQ = reinterpret_cast<T *>(smem_raw) + (2 + ln) * te;
    T *sO = sQ + 4 * te;
    float *sL = reinterpret_cast<float *>(reinterpret_cast<T *>(smem_raw) + 10 * te) + ln * kTile;
    float *sD = sL + 4 * kTile;
    const seg_view &sv = job.sv;
    const T *k = seg_base<const T>(p.k, p.k_s, sv, job.h, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, job.h, true);
    const T *q = opaque_ptr(seg_base<const T>(p.q, p.q_s, sv, job.h, false));
    const T *dout = opaque_ptr(seg_base<const T>(p.dout, p.o_s, sv, job.h, false));
    const int4 *mine = p.brow_cent + of_lane(job.beg, ln);
    const int64_t lse_h = sv.lse0 + (int64_t)job.h * p.time_q;
    lane_walk w(mine, nl);
    auto load_q_side = [&](int stage, const int4 &e) {
        load_pair<DP, LT>(sQ + 2 * stage * te, q, (int)p.q_s[2], e.x, e.y, p.dim, lt);
        load_pair<DP, LT>(sO + 2 * stage * te, dout, (int)p.o_s[2], e.x, e.y, p.dim_v, lt);
        /* the rows' lse offsets and deltas, a row a thread; rows of an
         * absent block are zeros, as their Q and dO rows, and masked */
        const int b = lt < kLaneRows ? e.x : e.y;
        const bool ok = b >= 0;
        const int64_t idx = lse_h + (ok ? b * kLaneRows + (lt & (kLaneRows - 1)) : 0);
        cp_async4(sL + 2 * stage * kTile + lt, p.loff + idx, ok ? 4 : 0);
        cp_async4(sD + 2 * stage * kTile + lt, p.delta + idx, ok ? 4 : 0);
    };

    load_pair<DP, LT, 1>(sK, k, (int)p.k_s[2], blk, -1, p.dim, lt);
    load_pair<DP, LT, 1>(sV, v, (int)p.v_s[2], blk, -1, p.dim_v, lt);
    load_q_side(0, w.cur);
    cp_async_commit();

    float adk[elems<DP>()], adv[elems<DP>()];
    zero<elems<DP>()>(adk);
    zero<elems<DP>()>(adv);
    const T *kw = sK + wl * 16 * sr, *vw = sV + wl * 16 * sr; /* the warp's key rows */

    for (int it = 0; it < nl; ++it) {
        w.top(it, ln, load_q_side);
        const int so = 2 * (it & 1);
        const T *qs = sQ + so * te, *os = sO + so * te;
        const float *ls = sL + so * kTile, *ds = sD + so * kTile;
        float s[elems<kTile>()];
        zero<elems<kTile>()>(s);
        gemm_abt<DP>(s, kw, qs, lane); /* S^T (keys x queries) = K Q^T */
        mask_entry<true>(s, entry_mask_of(w.cur), p, mine + it, row0, wl, lane);
        dkdv_products<DP>(s, adk, adv, vw, qs, os, ls, ds, p.scale_log2, lane);
        lane_sync(ln); /* (both warps are done with this stage) */
        w.advance();
    }
    /* every thread's copies landed before a warp stages its rows (with no
     * step at all, the loop's barriers did not see to it) */
    cp_async_wait<0>();
    lane_sync(ln);

    float one[kRows], sc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
        one[r] = 1.f, sc[r] = p.scale;
    /* staged in the warp's own K and V rows */
    T *dk = seg_base<T>(p.dk, p.k_s, sv, job.h, true);
    T *dv = seg_base<T>(p.dv, p.v_s, sv, job.h, true);
    store_rows<DP>(adv, one, sV, dv, p.v_s[2], row0, sv.len_k, p.dim_v, 0, wl, lane);
    store_rows<DP>(adk, sc, sK, dk, p.k_s[2], row0, sv.len_k, p.dim, 0, wl, lane);
}

} // namespace bsa_cuda

#endif
