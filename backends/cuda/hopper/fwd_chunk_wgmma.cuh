/*
 * The Hopper forward of chunk-local layouts (sm_90a): chunk_kernels.cuh's
 * forward with its products on wgmma.  One warpgroup per 128-row chunk
 * reads the chunk's Q, K and V once into 128-byte-swizzled shared tiles
 * (rows at the positions chunk_positions works out: the strided pattern's
 * rows are addressed through its permutation, nothing is copied), then
 * walks the list of each of its two 64-row query tiles: S = Q K^T
 * (m64n64k16), masks and the online softmax in registers, O += P V
 * (m64nDk16, P from registers).
 *
 * Why: the mma.sync chunk forward spends ~3300 instructions a warp on a
 * chunk of the strided pattern (three 64 x 64 key tiles a warp) and is
 * issue- and latency-bound at 16 warps an SM (bench/NOTES.md, v31); a
 * warpgroup's m64n64k16 does the work of 32 mma.sync and the fragments'
 * shared-memory reads go with it.
 *
 * Two commit groups: Q and K, then V, so the first S product starts while
 * V is still arriving.  Where the chunk's rows are evenly spaced in time
 * and all present (natural order, or the strided permutation with T / L a
 * multiple of 128: a chunk is then one residue class), loads and stores
 * step a pointer instead of reading each row's position and multiplying
 * it by the row stride (18 instructions a 16-byte copy, a sixth of the
 * kernel's).  A diagonal pair whose mask is the predicate over the whole
 * tile (tiles.cu, whole_tile_pred) takes one interval a row instead of the
 * sub-block codes.  The output of a query tile is staged through the
 * tile's own swizzled Q rows (no product reads them any more) and leaves in
 * 16-byte stores.  Deterministic: every output row is written by one warp,
 * its sums taken in list order.  Head dims 64 and 128, f16 and bf16.
 */
#ifndef BSA_CUDA_HOPPER_FWD_CHUNK_WGMMA_CUH
#define BSA_CUDA_HOPPER_FWD_CHUNK_WGMMA_CUH

#include "../chunk_kernels.cuh"
#include "wgmma.cuh"

namespace bsa_cuda
{
namespace hopper
{

static_assert(kThreads == kWarpgroup, "chunk_positions fills the positions with one warpgroup");

/* The time positions of a chunk's rows.  fast: all 128 query and key
 * rows are present and evenly spaced, row i of the chunk at q0 + i d
 * (keys: k0 + i d), and the head dims need no zero columns. */
struct chunk_rows {
    int q0, k0, d;
    bool fast;
};

/* One side's first position (first) and whether its 128 rows are one run
 * of the permutation (natural order: always) and inside the segment. */
__device__ __forceinline__ bool chunk_run(int row0, int stride, int seq, int len, int &first)
{
    if (!stride) {
        first = row0;
        return row0 + 2 * kTile <= len;
    }
    const int bt = seq / stride, b = row0 / bt, a = row0 - b * bt;
    first = a * stride + b;
    return a + 2 * kTile <= bt && row0 + 2 * kTile <= len;
}

/* Fills pos[0..256) as chunk_positions does (query rows, then key rows;
 * -1 past the segment), from the run where there is one; followed by a
 * barrier. */
template <int DP>
__device__ __forceinline__ chunk_rows chunk_rows_of(const bsa_cuda_params &p, const chunk_job &j,
                                                    int *pos)
{
    chunk_rows cr;
    const int st = p.stride_perm;
    cr.d = st ? st : 1;
    bool fq = chunk_run(j.row0, st, p.seq_q, j.sv.len_q, cr.q0);
    bool fk = p.seq_k == p.seq_q && j.sv.len_k == j.sv.len_q
                  ? (cr.k0 = cr.q0, fq)
                  : chunk_run(j.row0, st, p.seq_k, j.sv.len_k, cr.k0);
    cr.fast = fq && fk && p.dim == DP && p.dim_v == DP;
    const int i = threadIdx.x, r = j.row0 + i;
    if (cr.fast) {
        pos[i] = cr.q0 + i * cr.d;
        pos[2 * kTile + i] = cr.k0 + i * cr.d;
    } else {
        const int pq = r < j.sv.len_q ? perm_row(r, st, p.seq_q) : -1;
        pos[i] = pq;
        pos[2 * kTile + i] = r >= j.sv.len_k                        ? -1
                             : p.seq_k == p.seq_q && r < j.sv.len_q ? pq
                                                                    : perm_row(r, st, p.seq_k);
    }
    __syncthreads();
    return cr;
}

/* Asynchronous loads of a chunk's 128 rows (row i at time position pos[i];
 * zeros where pos[i] < 0 or past dim) into two swizzled 64-row tiles.  As
 * in sw_loader a thread copies one 16-byte column chunk of rows r0, r0 +
 * RS, ...: its swizzle phase and shared offsets are fixed. */
template <int DP> struct chunk_sw_loader {
    static constexpr int ch = DP / 8, RS = kWarpgroup / ch, J = 2 * kTile / RS;
    static_assert(RS % 8 == 0 && kTile % RS == 0, "chunk loader shape");
    int c, r0, soff;
    __device__ __forceinline__ explicit chunk_sw_loader(int tid)
        : c(tid % ch), r0(tid / ch), soff(sw_offset(tid / ch, tid % ch))
    {
    }
    /* the shared offset (elements) of the thread's j-th row: r0 + j RS is
     * in tile (j RS) / 64 since r0 < RS and RS divides 64 */
    static __device__ __forceinline__ int row_off(int j)
    {
        return (j * RS / kTile) * kTile * DP + (j * RS % kTile) * 64;
    }
    /* first: the position of the chunk's row 0 (fast rows) */
    template <typename T>
    __device__ __forceinline__ void load(T *sm, const T *base, int64_t st, const int *pos, int dim,
                                         const chunk_rows &cr, int first) const
    {
        base += c * 8;
        if (cr.fast) {
            const int64_t rs = (int64_t)cr.d * st; /* between the chunk's rows */
            const T *src = base + (int64_t)first * st + r0 * rs;
            const int64_t step = opaque(RS * rs);
#pragma unroll
            for (int j = 0; j < J; ++j)
                cp_async16(sm + soff + row_off(j), src + j * step, 16);
            return;
        }
        const bool col_ok = c * 8 < dim;
#pragma unroll
        for (int j = 0; j < J; ++j) {
            const int ps = pos[r0 + j * RS];
            const bool ok = col_ok && ps >= 0;
            cp_async16(sm + soff + row_off(j), ok ? base + (int64_t)ps * st : base, ok ? 16 : 0);
        }
    }
};

/* Writes a warp's 16 x DP accumulator (times mul) through its own 16 rows
 * of a swizzled 64-row tile (stage_rows_sw) to global rows at time
 * positions pos[0..16) (< 0: not stored) with 16-byte stores; fast rows:
 * pos[0] + i d. */
template <int DP, typename T>
__device__ __forceinline__ void store_rows_sw(const float *acc, const float *mul, T *tile, T *base,
                                              int64_t st, const int *pos, int dim,
                                              const chunk_rows &cr, int warp, int lane)
{
    const int r0 = warp * 16;
    stage_rows_sw<DP>(acc, mul, tile, warp, lane);
    constexpr int ch = DP / 8, RL = kWarp / ch; /* a lane's rows are RL apart */
    if (cr.fast) {
        const int rl = lane / ch, cc = lane % ch;
        const int64_t rs = (int64_t)cr.d * st;
        T *dst = base + (int64_t)pos[0] * st + rl * rs + cc * 8;
        const int64_t step = opaque(RL * rs);
#pragma unroll
        for (int k = 0; k < 16 / RL; ++k)
            *reinterpret_cast<uint4 *>(dst + k * step) =
                *reinterpret_cast<const uint4 *>(tile + sw_offset(r0 + rl + k * RL, cc));
        return;
    }
#pragma unroll
    for (int c = lane; c < 16 * ch; c += kWarp) {
        const int r = c / ch, cc = c - r * ch, ps = pos[r];
        if (ps >= 0 && cc * 8 < dim)
            *reinterpret_cast<uint4 *>(base + (int64_t)ps * st + cc * 8) =
                *reinterpret_cast<const uint4 *>(tile + sw_offset(r0 + r, cc));
    }
}

template <int DP> constexpr size_t chunk_fwd_wgmma_smem()
{
    /* Q, K, V: two 64-row tiles each; the rows' positions; slack to align
     * the tiles to 1024 bytes */
    return (size_t)6 * kTile * DP * 2 + 4 * kTile * sizeof(int) + 1024;
}

template <typename T, int DP>
__global__ void __launch_bounds__(kWarpgroup, DP <= 64 ? 4 : 2)
    fwd_chunk_wgmma_kernel(const bsa_cuda_params p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int TE = kTile * DP;
    constexpr uint32_t TB = TE * 2;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sQ = aligned_smem<T>(smem_raw); /* tile t of the chunk at t * TE */
    T *sK = sQ + 2 * TE;
    T *sV = sK + 2 * TE;
    int *sP = reinterpret_cast<int *>(sV + 2 * TE); /* [256] row positions */

    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    chunk_job job;
    if (!chunk_job_of(p, job))
        return;
    const chunk_tensors<T> x = chunk_tensors_of<T>(p, job);

    const chunk_rows cr = chunk_rows_of<DP>(p, job, sP);
    const chunk_sw_loader<DP> ld(threadIdx.x);
    ld.load(sQ, x.q, p.q_s[2], sP, p.dim, cr, cr.q0);
    ld.load(sK, x.k, p.k_s[2], sP + 2 * kTile, p.dim, cr, cr.k0);
    cp_async_commit();
    ld.load(sV, x.v, p.v_s[2], sP + 2 * kTile, p.dim_v, cr, cr.k0);
    cp_async_commit();
    cp_async_wait<1>(); /* Q and K */
    fence_proxy_async();
    __syncthreads();
    bool v_ready = false;

    /* descriptors: byte offsets from the tiles' base (one add each) */
    const desc_base dkm(sQ, 16), dmn(sQ, kTile * 128);
    constexpr uint32_t off_k = 2 * TB, off_v = 4 * TB;
    float s[elems<kTile>()];
    zero<elems<kTile>()>(s);
    for (int t = 0; t < 2; ++t) {
        const int qt = 2 * job.c + t;
        int beg, end;
        list_of(p.row_tptr, job.lh, p.n_qt, qt, beg, end);
        float acc[elems<DP>()];
        zero<elems<DP>()>(acc);
        float m[kRows], l[kRows];
        start_rows(m, l);
        for (int i = beg; i < end; ++i) {
            const int2 e = p.row_tent[i];
            const uint32_t ks = (e.x & 1) * TB; /* the key tile's place in the chunk */
            pin<elems<kTile>()>(s);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < DP / 16; ++kk)
                wgmma_ss_n64<T>(s, dkm.kmajor(t * TB, kk), dkm.kmajor(off_k + ks, kk), kk);
            wgmma_commit();
            wgmma_wait<0>();
            pin<elems<kTile>()>(s);
            if (e.y >= 0) {
                if (__ldg(p.sub_pred + e.y))
                    apply_pred_tile(s, p.pred, qt * kTile, e.x * kTile, warp, lane);
                else
                    apply_mask<false>(s, p, p.sub + (int64_t)e.y * p.ns * p.ns, qt * kTile,
                                      e.x * kTile, warp, lane, nullptr);
            }
            float alpha[kRows];
            softmax_step(s, m, l, alpha, p.scale_log2);
            scale_rows<DP>(acc, alpha);
            uint32_t pa[kTile / 16][4]; /* P's fragments are the A operand as they lie */
            using tr = dtype_traits<T>;
#pragma unroll
            for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
                for (int x = 0; x < 4; ++x)
                    pa[kk][x] = tr::pack(s[8 * kk + 2 * x], s[8 * kk + 2 * x + 1]);
            if (!v_ready) { /* (uniform: every thread walks the same lists) */
                cp_async_wait<0>();
                fence_proxy_async();
                __syncthreads();
                v_ready = true;
            }
            pin<elems<DP>()>(acc);
            pin<kTile / 4>(&pa[0][0]);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < kTile / 16; ++kk)
                wgmma_rs<T, DP>(acc, pa[kk], dmn.mnmajor(off_v + ks, kk));
            wgmma_commit();
            wgmma_wait<0>();
            pin<elems<DP>()>(acc);
        }
        float inv[kRows];
        finish_rows(l, inv);
        /* every warp's products that read Q tile t are done: its rows
         * stage the output */
        __syncthreads();
        const int *pw = sP + t * kTile + warp * 16; /* the warp's rows' positions */
        store_rows_sw<DP>(acc, inv, sQ + t * TE, x.o, p.o_s[2], pw, p.dim_v, cr, warp, lane);
        store_chunk_lse(p, job, pw, m, l, lane);
    }
    cp_async_wait<0>(); /* (V, when no list had an entry) */
#endif
}

} // namespace hopper
} // namespace bsa_cuda

#endif
