/*
 * Kernels for chunk-local layouts (mma.sync m16n8k16, sm_80+): layouts in
 * which every key tile of query tile qt lies in qt's own 128-row chunk
 * (key tiles 2c and 2c + 1 for query tiles 2c and 2c + 1).  The strided
 * pattern in its permuted order is one (its residue classes are chunks of
 * T / L rows), as is any block-diagonal layout with blocks of <= 128 rows.
 *
 * Such a chunk is a whole attention problem of its own, so one thread block
 * takes it all: the Q, K, V (and dO) rows of the chunk are read from memory
 * once, and the backward computes dQ, dK and dV in one kernel instead of a
 * dQ kernel and a dK/dV kernel that each read everything again.  The tile
 * kernels (tc_kernels.cuh) spend most of their time on such layouts in the
 * prologue and epilogue of 64-row tiles that have one or two key tiles each
 * (bench/NOTES.md, v31).
 *
 * Four warps per block, as in the tile kernels; each warp takes its 16 rows
 * of the chunk's first 64-row tile, then of its second.  Masks, softmax and
 * stores are the tile kernels'.  Deterministic: every output row is written
 * by one warp, its sums taken in list order.
 */
#ifndef BSA_CUDA_CHUNK_KERNELS_CUH
#define BSA_CUDA_CHUNK_KERNELS_CUH

#include "tc_kernels.cuh"

namespace bsa_cuda
{

/* The (segment, head, chunk) of a thread block; false when it has none. */
struct chunk_job {
    int h, lh, c, row0;
    seg_view sv;
};

__device__ __forceinline__ bool chunk_job_of(const bsa_cuda_params &p, chunk_job &j)
{
    const int bh = grid_bh(), sg = bh / p.heads;
    if (sg >= p.n_seg)
        return false;
    j.h = bh - sg * p.heads;
    j.c = blockIdx.x;
    j.lh = p.lheads == 1 ? 0 : j.h;
    j.row0 = 2 * kTile * j.c;
    j.sv = seg_at<false>(p, sg);
    return j.row0 < j.sv.len_q || j.row0 < j.sv.len_k;
}

/* The chunk's (segment, head) slices of q, k, v and the output. */
template <typename T> struct chunk_tensors {
    const T *q, *k, *v;
    T *o;
};
template <typename T>
__device__ __forceinline__ chunk_tensors<T> chunk_tensors_of(const bsa_cuda_params &p,
                                                             const chunk_job &j)
{
    return {seg_base<const T>(p.q, p.q_s, j.sv, j.h, false),
            seg_base<const T>(p.k, p.k_s, j.sv, j.h, true),
            seg_base<const T>(p.v, p.v_s, j.sv, j.h, true),
            seg_base<T>(p.o_out, p.o_s, j.sv, j.h, false)};
}

/* The log-sum-exp of a warp's 16 query rows at time positions pos[0..16)
 * (< 0: not stored), from the row leaders. */
__device__ __forceinline__ void store_chunk_lse(const bsa_cuda_params &p, const chunk_job &j,
                                                const int *pos, const float *m, const float *l,
                                                int lane)
{
    if (p.lse && row_leader(lane))
#pragma unroll
        for (int r = 0; r < kRows; ++r)
            if (pos[row(lane, r)] >= 0)
                p.lse[j.sv.lse0 + (int64_t)j.h * p.time_q + pos[row(lane, r)]] =
                    lse_value(m[r], l[r]);
}

/* Entries [beg, end) of tile qt's list in ptr / ent (none past n_tiles). */
__device__ __forceinline__ void list_of(const int32_t *tptr, int lh, int n_tiles, int t, int &beg,
                                        int &end)
{
    beg = end = 0;
    if (t < n_tiles) {
        const int32_t *tp = tptr + lh * (n_tiles + 1);
        beg = tp[t];
        end = tp[t + 1];
    }
}

/* The time positions of the chunk's rows (pos[0..128): query rows,
 * pos[128..256): key rows; -1 past the segment's rows), worked out once per
 * thread block: the strided permutation costs two divisions a row, which
 * per load and store made up half of the kernels' instructions
 * (bench/NOTES.md, v31).  Followed by a barrier. */
__device__ __forceinline__ void chunk_positions(const bsa_cuda_params &p, const chunk_job &j,
                                                int *pos)
{
    for (int i = threadIdx.x; i < 4 * kTile; i += kThreads) {
        const bool key = i >= 2 * kTile;
        const int r = j.row0 + (i & (2 * kTile - 1));
        const int n = key ? j.sv.len_k : j.sv.len_q;
        pos[i] = r < n ? perm_row(r, p.stride_perm, key ? p.seq_k : p.seq_q) : -1;
    }
    __syncthreads();
}

/* Asynchronously loads the chunk's 128 rows of one tensor (row i at time
 * position pos[i], zeros where pos[i] < 0 or past dim) into a padded
 * shared tile of 128 rows. */
template <int DP, typename T>
__device__ __forceinline__ void load_chunk(T *sm, const T *base, int64_t st, const int *pos,
                                           int dim)
{
    constexpr int sr = tc_cfg<DP>::srow, ch = DP / 8, RS = kThreads / ch, J = 2 * kTile / RS;
    static_assert(kThreads % ch == 0 && (2 * kTile) % RS == 0, "chunk loader shape");
    const int cc = threadIdx.x % ch, r0 = threadIdx.x / ch;
    const bool col_ok = cc * 8 < dim;
    base += cc * 8;
    sm += r0 * sr + cc * 8;
#pragma unroll
    for (int j = 0; j < J; ++j) {
        const int ps = pos[r0 + j * RS];
        const bool ok = col_ok && ps >= 0;
        cp_async16(sm + j * RS * sr, ok ? base + (int64_t)ps * st : base, ok ? 16 : 0);
    }
}

template <int DP> constexpr size_t chunk_fwd_smem()
{
    /* Q, K, V: 128 rows each; the rows' positions */
    return (size_t)6 * tc_cfg<DP>::tile_elems * 2 + 4 * kTile * sizeof(int);
}
template <int DP> constexpr size_t chunk_bwd_smem()
{
    /* Q, dO, K, V: 128 rows each; lse offsets and delta of the 128 query
     * rows; the rows' positions */
    return (size_t)8 * tc_cfg<DP>::tile_elems * 2 + 2 * 2 * kTile * sizeof(float) +
           4 * kTile * sizeof(int);
}
/* the implementation list's table (gpu/kernel_smem.h) */
static_assert(chunk_fwd_smem<32>() == BSA_SMEM_CHUNK_FWD(32), "smem table");
static_assert(chunk_fwd_smem<128>() == BSA_SMEM_CHUNK_FWD(128), "smem table");
static_assert(chunk_bwd_smem<64>() == BSA_SMEM_CHUNK_BWD(64), "smem table");
static_assert(chunk_bwd_smem<128>() == BSA_SMEM_CHUNK_BWD(128), "smem table");

template <typename T, int DP>
__global__ void __launch_bounds__(kThreads) fwd_chunk_kernel(const bsa_cuda_params p)
{
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw); /* tile t of the chunk at t * te */
    T *sK = sQ + 2 * te;
    T *sV = sK + 2 * te;
    int *sP = reinterpret_cast<int *>(sV + 2 * te); /* [256] row positions */

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    chunk_job job;
    if (!chunk_job_of(p, job))
        return;
    const chunk_tensors<T> x = chunk_tensors_of<T>(p, job);

    chunk_positions(p, job, sP);
    load_chunk<DP>(sQ, x.q, p.q_s[2], sP, p.dim);
    load_chunk<DP>(sK, x.k, p.k_s[2], sP + 2 * kTile, p.dim);
    load_chunk<DP>(sV, x.v, p.v_s[2], sP + 2 * kTile, p.dim_v);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    for (int t = 0; t < 2; ++t) {
        const int qt = 2 * job.c + t;
        int beg, end;
        list_of(p.row_tptr, job.lh, p.n_qt, qt, beg, end);
        afrag<DP> qf;
        load_a<DP>(qf, sQ + t * te + warp * 16 * sr, lane);
        float acc[elems<DP>()];
        zero<elems<DP>()>(acc);
        float m[kRows], l[kRows];
        start_rows(m, l);
        for (int i = beg; i < end; ++i) {
            const int2 e = p.row_tent[i];
            const int ks = e.x & 1; /* the key tile's place in the chunk */
            float s[elems<kTile>()];
            zero<elems<kTile>()>(s);
            gemm_abt_reg<DP>(s, qf, sK + ks * te, lane);
            if (e.y >= 0)
                apply_mask<false>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, qt * kTile, e.x * kTile,
                                  warp, lane, nullptr);
            float alpha[kRows];
            softmax_step(s, m, l, alpha, p.scale_log2);
            scale_rows<DP>(acc, alpha);
            gemm_pb<DP>(acc, s, sV + ks * te, lane);
        }
        float inv[kRows];
        finish_rows(l, inv);
        /* the warp's own Q rows (in its registers now) stage its output,
         * once all of its lanes are past their reads of them */
        __syncwarp();
        const int *pw = sP + t * kTile + warp * 16; /* the warp's rows' positions */
        store_rows_at<DP>(acc, inv, sQ + t * te, x.o, p.o_s[2], pw, p.dim_v, warp, lane);
        store_chunk_lse(p, job, pw, m, l, lane);
    }
}

/* dQ, dK and dV of one chunk.  First the key side: each warp owns 16 key
 * rows and walks its key tile's column list (dV += P^T dO, dK += dS^T Q),
 * writing dK, dV straight from its registers; then, after a barrier, the
 * query side: each warp owns 16 query rows and walks the row list (dQ +=
 * dS K), staging dQ through its own Q rows, which no warp reads any more.
 * P and dP are computed twice (once a side), which costs products but no
 * memory traffic: the chunk is read once. */
template <typename T, int DP>
__global__ void __launch_bounds__(kThreads) bwd_chunk_kernel(const bsa_cuda_params p)
{
    using cfg = tc_cfg<DP>;
    constexpr int sr = cfg::srow, te = cfg::tile_elems;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    T *sO = sQ + 2 * te; /* dO */
    T *sK = sO + 2 * te;
    T *sV = sK + 2 * te;
    float *sL = reinterpret_cast<float *>(sV + 2 * te); /* [128] lse_offset */
    float *sD = sL + 2 * kTile;                         /* [128] delta */
    int *sP = reinterpret_cast<int *>(sD + 2 * kTile);  /* [256] row positions */

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    chunk_job job;
    if (!chunk_job_of(p, job))
        return;
    const seg_view &sv = job.sv;
    const int h = job.h;
    const T *q = seg_base<const T>(p.q, p.q_s, sv, h, false);
    const T *k = seg_base<const T>(p.k, p.k_s, sv, h, true);
    const T *v = seg_base<const T>(p.v, p.v_s, sv, h, true);
    const T *dout = seg_base<const T>(p.dout, p.o_s, sv, h, false);
    T *dq = seg_base<T>(p.dq, p.q_s, sv, h, false);
    T *dk = seg_base<T>(p.dk, p.k_s, sv, h, true);
    T *dv = seg_base<T>(p.dv, p.v_s, sv, h, true);

    chunk_positions(p, job, sP);
    load_chunk<DP>(sQ, q, p.q_s[2], sP, p.dim);
    load_chunk<DP>(sO, dout, p.o_s[2], sP, p.dim_v);
    load_chunk<DP>(sK, k, p.k_s[2], sP + 2 * kTile, p.dim);
    load_chunk<DP>(sV, v, p.v_s[2], sP + 2 * kTile, p.dim_v);
    cp_async_commit();
    for (int i = threadIdx.x; i < 2 * kTile; i += kThreads) {
        float lv = -CUDART_INF_F, dl = 0.f;
        if (sP[i] >= 0) {
            const int64_t idx = sv.lse0 + (int64_t)h * p.time_q + sP[i];
            lv = p.loff[idx];
            dl = p.delta[idx];
        }
        sL[i] = lv;
        sD[i] = dl;
    }
    cp_async_wait<0>();
    __syncthreads();

    /* key side: key rows 64 t + 16 warp of the chunk */
    for (int t = 0; t < 2; ++t) {
        const int kt = 2 * job.c + t;
        int beg, end;
        list_of(p.col_tptr, job.lh, p.n_kt, kt, beg, end); /* (none: zero rows) */
        const T *kw = sK + t * te + warp * 16 * sr, *vw = sV + t * te + warp * 16 * sr;
        float adk[elems<DP>()], adv[elems<DP>()];
        zero<elems<DP>()>(adk);
        zero<elems<DP>()>(adv);
        for (int i = beg; i < end; ++i) {
            const int2 e = p.col_tent[i];
            const int qs_ = e.x & 1; /* the query tile's place in the chunk */
            const T *qs = sQ + qs_ * te, *os = sO + qs_ * te;
            const float *ls = sL + qs_ * kTile, *ds = sD + qs_ * kTile;
            float s[elems<kTile>()];
            zero<elems<kTile>()>(s);
            gemm_abt<DP>(s, kw, qs, lane); /* S^T = K Q^T */
            if (e.y >= 0)
                apply_mask<true>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, kt * kTile, e.x * kTile,
                                 warp, lane, nullptr);
            dkdv_products<DP>(s, adk, adv, vw, qs, os, ls, ds, p.scale_log2, lane);
        }
        const int *pw = sP + 2 * kTile + t * kTile + warp * 16; /* the warp's key rows */
        store_rows_direct<DP>(adv, 1.f, dv, p.v_s[2], pw, p.dim_v, lane);
        store_rows_direct<DP>(adk, p.scale, dk, p.k_s[2], pw, p.dim, lane);
    }
    __syncthreads(); /* every warp is done with Q and dO rows it does not own */

    /* query side: query rows 64 t + 16 warp of the chunk */
    for (int t = 0; t < 2; ++t) {
        const int qt = 2 * job.c + t;
        int beg, end;
        list_of(p.row_tptr, job.lh, p.n_qt, qt, beg, end);
        const T *qw = sQ + t * te + warp * 16 * sr, *ow = sO + t * te + warp * 16 * sr;
        float loff[kRows], dl[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            loff[r] = sL[t * kTile + warp * 16 + row(lane, r)];
            dl[r] = sD[t * kTile + warp * 16 + row(lane, r)];
        }
        float acc[elems<DP>()];
        zero<elems<DP>()>(acc);
        for (int i = beg; i < end; ++i) {
            const int2 e = p.row_tent[i];
            const int ks = e.x & 1;
            float s[elems<kTile>()], dp[elems<kTile>()];
            zero<elems<kTile>()>(s);
            zero<elems<kTile>()>(dp);
            gemm_abt<DP>(s, qw, sK + ks * te, lane);
            if (e.y >= 0)
                apply_mask<false>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, qt * kTile, e.x * kTile,
                                  warp, lane, nullptr);
            gemm_abt<DP>(dp, ow, sV + ks * te, lane);
#pragma unroll
            for (int x = 0; x < elems<kTile>(); ++x)
                s[x] = prob(s[x], p.scale_log2, loff[slot(x)]) * (dp[x] - dl[slot(x)]);
            gemm_pb<DP>(acc, s, sK + ks * te, lane);
        }
        __syncwarp(); /* the warp's lanes are done reading its Q rows */
        float mul[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r)
            mul[r] = p.scale;
        store_rows_at<DP>(acc, mul, sQ + t * te, dq, p.q_s[2], sP + t * kTile + warp * 16, p.dim,
                          warp, lane);
    }
}

} // namespace bsa_cuda

#endif
