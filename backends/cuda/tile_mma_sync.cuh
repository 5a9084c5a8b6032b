/*
 * The warp tile of the tensor-core kernels on NVIDIA: mma.sync m16n8k16
 * (sm_80+), ldmatrix from padded shared rows.  tc_kernels.cuh is written
 * against this interface (namespace bsa_cuda::tile), so another vendor's
 * matrix tile can stand in for it (backends/hip/README.md):
 *
 *   a warp owns 16 "owner" rows of a product; a lane holds kRows of them
 *   (rows row(lane, r)) and, of a 16 x N result, elems<N>() values: element
 *   e belongs to owner row slot(e) and column col(lane, e);
 *   row_max / row_sum reduce one owner row over the lanes holding it;
 *   gemm_abt:  acc[16 x 64] += A[16 x DP] B[64 x DP]^T (A rows, B rows in
 *              shared memory; gemm_abt_reg with A's fragments in registers);
 *   gemm_pb:   acc[16 x DP] += P[16 x 64] B[64 x DP] with P the previous
 *              product's result (registers) and B rows in shared memory;
 *   store_rows, apply_mask, apply_key_cut: the result's stores and masks
 *   (store_rows_at, store_rows_direct: stores to rows at given positions,
 *   staged or straight from registers; NVIDIA only so far, for the chunk
 *   kernels of chunk_kernels.cuh).
 *
 * Here: lane = 4 g + t holds rows g and g + 8, columns 8 j + 2 t + {0, 1}
 * (the m16n8 accumulator layout), and a result feeds the next product's A
 * operand without moving.  Needs tc_cfg (tc_kernels.cuh) for the row pitch.
 */
#ifndef BSA_CUDA_TILE_MMA_SYNC_CUH
#define BSA_CUDA_TILE_MMA_SYNC_CUH

namespace bsa_cuda
{
namespace tile
{

constexpr int kRows = 2; /* owner rows per lane */

/* values per lane of a 16 x N result */
template <int N> constexpr int elems()
{
    return N / 2;
}

__device__ __forceinline__ int slot(int e)
{
    return (e & 3) >> 1;
}
__device__ __forceinline__ int col(int lane, int e)
{
    return (e >> 2) * 8 + 2 * (lane & 3) + (e & 1);
}
__device__ __forceinline__ int row(int lane, int r)
{
    return (lane >> 2) + r * 8;
}
/* the one lane per owner row that writes its per-row values */
__device__ __forceinline__ bool row_leader(int lane)
{
    return (lane & 3) == 0;
}
__device__ __forceinline__ float row_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float row_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* A operand fragments of a warp's 16 rows (sa: their first row), for
 * gemm_abt_reg: [DP / 16][4] registers.  (Through a struct's typedef: an
 * alias template of the array type itself crashes CUDA 11.8's cicc, an
 * assertion in make_bound_expr_referenceable_from_file_scope or a
 * segmentation fault.) */
template <int DP> struct afrag_of {
    typedef uint32_t type[DP / 16][4];
};
template <int DP> using afrag = typename afrag_of<DP>::type;
template <int DP, typename T>
__device__ __forceinline__ void load_a(uint32_t (*af)[4], const T *sa, int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk)
        ldmatrix_x4(af[kk], sa + (lane & 15) * sr + kk * 16 + (lane >> 4) * 8);
}

/* acc[16 x 64] += A[16 x DP] . B[64 x DP]^T, A rows and B rows in shared. */
template <int DP, typename T>
__device__ __forceinline__ void gemm_abt(float *acc, const T *sa, const T *sb, int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
        uint32_t a[4];
        ldmatrix_x4(a, sa + (lane & 15) * sr + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int nj = 0; nj < kTile / 16; ++nj) {
            uint32_t b[4];
            ldmatrix_x4(b, sb + (nj * 16 + (lane & 7) + (lane >> 4) * 8) * sr + kk * 16 +
                               ((lane >> 3) & 1) * 8);
            mma16816<T>(acc + 8 * nj, a, b);
            mma16816<T>(acc + 8 * nj + 4, a, b + 2);
        }
    }
}

/* The same with A's fragments already in registers (af[DP / 16][4]). */
template <int DP, typename T>
__device__ __forceinline__ void gemm_abt_reg(float *acc, const uint32_t (*af)[4], const T *sb,
                                             int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
#pragma unroll
        for (int nj = 0; nj < kTile / 16; ++nj) {
            uint32_t b[4];
            ldmatrix_x4(b, sb + (nj * 16 + (lane & 7) + (lane >> 4) * 8) * sr + kk * 16 +
                               ((lane >> 3) & 1) * 8);
            mma16816<T>(acc + 8 * nj, af[kk], b);
            mma16816<T>(acc + 8 * nj + 4, af[kk], b + 2);
        }
    }
}

/* acc[16 x DP] += P[16 x 64] . B[64 x DP]; P as f32 fragments (the layout
 * of a 16x64 accumulator), B rows in shared (read transposed) in a tile of
 * head dim SDP (its row pitch). */
template <int DP, int SDP = DP, typename T>
__device__ __forceinline__ void gemm_pb(float *acc, const float *pf, const T *sb, int lane)
{
    constexpr int sr = tc_cfg<SDP>::srow;
    using tr = dtype_traits<T>;
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
        uint32_t a[4];
        a[0] = tr::pack(pf[8 * kk + 0], pf[8 * kk + 1]);
        a[1] = tr::pack(pf[8 * kk + 2], pf[8 * kk + 3]);
        a[2] = tr::pack(pf[8 * kk + 4], pf[8 * kk + 5]);
        a[3] = tr::pack(pf[8 * kk + 6], pf[8 * kk + 7]);
#pragma unroll
        for (int dj = 0; dj < DP / 16; ++dj) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, sb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * sr +
                                     dj * 16 + (lane >> 4) * 8);
            mma16816<T>(acc + 8 * dj, a, b);
            mma16816<T>(acc + 8 * dj + 4, a, b + 2);
        }
    }
}

/* Writes a warp's 16 x DP accumulator (times mul) into its own 16 rows of
 * a shared tile (w: the first), for a copy to global memory after. */
template <int DP, typename T>
__device__ __forceinline__ void stage_rows(const float *acc, const float *mul, T *w, int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
    using tr = dtype_traits<T>;
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < DP / 8; ++j) {
        *reinterpret_cast<uint32_t *>(w + g * sr + j * 8 + 2 * t) =
            tr::pack(acc[4 * j + 0] * mul[0], acc[4 * j + 1] * mul[0]);
        *reinterpret_cast<uint32_t *>(w + (g + 8) * sr + j * 8 + 2 * t) =
            tr::pack(acc[4 * j + 2] * mul[1], acc[4 * j + 3] * mul[1]);
    }
    __syncwarp();
}

/* Writes a warp's 16 x DP accumulator (times mul) through its own 16 rows
 * of a shared tile, then to global rows [row0 + 16 warp, +16) with 16-byte
 * stores.  The shared rows must be private to the warp by now. */
template <int DP, typename T>
__device__ __forceinline__ void
store_rows(const float *acc, const float *mul, T *sm, T *base, int64_t st, int row0, int seq,
           int dim, int perm, int warp, int lane, const int32_t *grp = nullptr, int log2b = 0)
{
    constexpr int sr = tc_cfg<DP>::srow;
    T *w = sm + warp * 16 * sr;
    stage_rows<DP>(acc, mul, w, lane);
    constexpr int ch = DP / 8;
    for (int c = lane; c < 16 * ch; c += kWarp) {
        int r = c / ch, cc = c - r * ch;
        int rr = tile_row(grp, log2b, row0, warp * 16 + r, seq);
        if (rr < seq && cc * 8 < dim)
            *reinterpret_cast<uint4 *>(base + (int64_t)perm_row(rr, perm, seq) * st + cc * 8) =
                *reinterpret_cast<const uint4 *>(w + r * sr + cc * 8);
    }
}

/* store_rows with the warp's rows at time positions pos[0..16) (< 0: not
 * stored), worked out once per thread block (chunk_kernels.cuh). */
template <int DP, typename T>
__device__ __forceinline__ void store_rows_at(const float *acc, const float *mul, T *sm, T *base,
                                              int64_t st, const int *pos, int dim, int warp,
                                              int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
    T *w = sm + warp * 16 * sr;
    stage_rows<DP>(acc, mul, w, lane);
    constexpr int ch = DP / 8;
    for (int c = lane; c < 16 * ch; c += kWarp) {
        int r = c / ch, cc = c - r * ch;
        int ps = pos[r];
        if (ps >= 0 && cc * 8 < dim)
            *reinterpret_cast<uint4 *>(base + (int64_t)ps * st + cc * 8) =
                *reinterpret_cast<const uint4 *>(w + r * sr + cc * 8);
    }
}

/* Writes a warp's 16 x DP accumulator (times mul) straight to global rows
 * at time positions pos[0..16) (< 0: not stored) with 4-byte stores, for a
 * kernel whose shared rows are all still in use (chunk_kernels.cuh); the
 * lanes of a row fill its sectors together, so the L2 merges them. */
template <int DP, typename T>
__device__ __forceinline__ void store_rows_direct(const float *acc, float mul, T *base, int64_t st,
                                                  const int *pos, int dim, int lane)
{
    using tr = dtype_traits<T>;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int ps = pos[g + 8 * r];
        if (ps < 0)
            continue;
        T *dst = base + (int64_t)ps * st + 2 * t;
#pragma unroll
        for (int j = 0; j < DP / 8; ++j)
            if (j * 8 < dim)
                *reinterpret_cast<uint32_t *>(dst + j * 8) =
                    tr::pack(acc[4 * j + 2 * r] * mul, acc[4 * j + 2 * r + 1] * mul);
    }
}

/* Sets masked elements of a 16 x 64 score fragment to -inf.  transposed:
 * fragment rows are keys and columns queries (the dK/dV kernel).  A
 * thread's two elements of an 8-column group share one sub-block (sub-blocks
 * are >= 8 wide), so the code is read once per (row, group) and FULL
 * sub-blocks cost nothing more; the rest is worked out once per group too
 * (a gathered tile's key block, a stored bits word; with perm_walk:
 * strided forward -24%, fixed fwd+bwd -6% on an H200; bench/NOTES.md, v30),
 * and the predicates once per row as an interval (pred_range, v31). */
template <bool transposed, bool cols_gathered = false>
__device__ __forceinline__ void apply_mask(float *s, const bsa_cuda_params &p, const int32_t *sub,
                                           int row_tile0, int col_tile0, int warp, int lane,
                                           const int32_t *kgrp, const int32_t *cgrp = nullptr)
{
    /* cols_gathered (transposed only): the columns are the query blocks
     * cgrp[0..] and the codes one per block, sub[0..] (the block-row dK/dV
     * of brow_kernels.cuh: a 32-row key block against gathered queries) */
    static_assert(transposed || !cols_gathered, "gathered columns are queries");
    const int g = lane >> 2, t = lane & 3, bm = p.block - 1;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = warp * 16 + g + r * 8;
        /* a gathered key tile's row: its key block is the row's (transposed) */
        const int krow =
            transposed && kgrp ? tile_row(kgrp, p.log2g, 0, row, p.seq_k) : row_tile0 + row;
        /* the row's sub-block codes: one per sub-block column */
        const int32_t *codes = transposed ? sub + (row >> p.log2g) : sub + (row >> p.log2g) * p.ns;
        const int cstep = transposed && !cols_gathered ? p.ns : 1;
        /* the predicates over the row's columns (keys; transposed: queries) */
        const pred_range pr(p.pred, transposed ? krow : row_tile0 + row, !transposed);
        /* the row's codes read together: one load latency instead of a
         * dependent one per group */
        int code_of[kTile / 8];
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j)
            code_of[j] = __ldg(codes + ((j * 8) >> p.log2g) * cstep);
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j) {
            const int col = j * 8, cl = col + 2 * t;
            const int code = code_of[j];
            if (code == BSA_CUDA_SUB_FULL)
                continue;
            /* the thread's two elements: queries q, q + 1 and one key
             * (transposed), or one query and keys k, k + 1 (layout order) */
            const int q = !transposed     ? row_tile0 + row
                          : cols_gathered ? tile_row(cgrp, p.log2g, 0, cl, p.seq_q)
                                          : col_tile0 + cl;
            bool keep0 = false, keep1 = false;
            if (code == BSA_CUDA_SUB_PRED) {
                /* the two columns, x and x + 1 */
                const int x = transposed ? q
                              : kgrp     ? tile_row(kgrp, p.log2g, 0, cl, p.seq_k)
                                         : col_tile0 + cl;
                keep0 = pr.keeps(x);
                keep1 = pr.keeps(x + 1);
            } else if (code != BSA_CUDA_SUB_ABSENT) { /* stored bits */
                const int kn = transposed ? row_tile0 + row : col_tile0 + cl, c = kn & bm;
                const uint64_t *w =
                    p.bits + ((int64_t)code * p.block + (q & bm)) * p.words + (c >> 6);
                const uint64_t w0 = __ldg(w);
                keep0 = (w0 >> (c & 63)) & 1u;
                /* transposed: the next query's row; else the next key's bit */
                keep1 = transposed ? (__ldg(w + p.words) >> (c & 63)) & 1u
                                   : (w0 >> ((c + 1) & 63)) & 1u;
            }
            if (!keep0)
                s[4 * j + 2 * r] = -CUDART_INF_F;
            if (!keep1)
                s[4 * j + 2 * r + 1] = -CUDART_INF_F;
        }
    }
}

/* apply_mask for a pair whose mask is the layout's predicate over the whole
 * tile (bsa_cuda_params::sub_pred): per row one column interval, worked
 * out in 32 bits already clamped to the tile and relative to the thread's
 * first column, so that each element costs two compares with constants and
 * no code is read.  transposed: rows are keys and columns queries (the
 * dK/dV kernel; pred_range's fixed-key form). */
template <bool transposed = false>
__device__ __forceinline__ void apply_pred_tile(float *s, const bsa_pred &pd, int row_tile0,
                                                int col_tile0, int warp, int lane)
{
    const int g = lane >> 2, t = lane & 3, c0 = col_tile0 + 2 * t;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int y = row_tile0 + warp * 16 + g + r * 8; /* the query (transposed: key) */
        int lo = c0, hi = c0 + kTile;
        if (pd.flags & BSA_PRED_BIT_CAUSAL) {
            if (transposed)
                lo = max(lo, y);
            else
                hi = min(hi, y);
        }
        if (pd.flags & BSA_PRED_BIT_WINDOW) {
            lo = max(lo, y - (pd.window - 1));
            if (hi - y > pd.window - 1) /* (y + window - 1 may not fit) */
                hi = y + pd.window - 1;
        }
        if (pd.flags & BSA_PRED_BIT_PREFIX) {
            if (!transposed)
                hi = min(hi, max(pd.prefix - 1, y));
            else if (y >= pd.prefix)
                lo = max(lo, y);
        }
        /* the kept columns [lo, hi] relative to the thread's first one as
         * a 64-bit mask: an element is then one bit test (a LOP3 into a
         * predicate) and a select, instead of two compares and a select */
        lo = max(lo - c0, 0);
        hi = min(hi - c0, 63);
        const uint64_t keep = lo > hi ? 0ull : (~0ull >> (63 - hi)) & (~0ull << lo);
        const uint32_t k0 = (uint32_t)keep, k1 = (uint32_t)(keep >> 32);
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int c = j * 8 + e;
                if (!((c < 32 ? k0 >> c : k1 >> (c - 32)) & 1u))
                    s[4 * j + 2 * r + e] = -CUDART_INF_F;
            }
    }
}

/* Sets the scores of keys cut off by the segment's key limit to -inf
 * (key_cut; transposed as in apply_mask). */
template <bool transposed>
__device__ __forceinline__ void apply_key_cut(float *s, const bsa_cuda_params &p, const seg_view &v,
                                              const int32_t *kgrp, int kt, int warp, int lane)
{
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            int kr = transposed ? warp * 16 + g + (c >> 1) * 8 : j * 8 + 2 * t + (c & 1);
            if (key_cut(p, v, kgrp, kt, kr))
                s[4 * j + c] = -CUDART_INF_F;
        }
    }
}

/* MT owner tiles at once (a warp of 16 MT rows): s[mt] += A_mt B^T with
 * A_mt the 16 rows at sa + 16 mt rows (qf[mt]: their fragments, when
 * QREG), each B fragment read once for all MT products. */
template <int MT, int DP, bool QREG, typename T>
__device__ __forceinline__ void gemm_abt_mt(float (*s)[elems<kTile>()],
                                            const afrag<QREG ? DP : 16> *qf, const T *sa,
                                            const T *sb, int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            if constexpr (QREG) {
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    a[mt][i] = qf[mt][kk][i];
            } else {
                ldmatrix_x4(a[mt], sa + (mt * 16 + (lane & 15)) * sr + kk * 16 + (lane >> 4) * 8);
            }
        }
#pragma unroll
        for (int nj = 0; nj < kTile / 16; ++nj) {
            uint32_t bb[4];
            ldmatrix_x4(bb, sb + (nj * 16 + (lane & 7) + (lane >> 4) * 8) * sr + kk * 16 +
                                ((lane >> 3) & 1) * 8);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                mma16816<T>(s[mt] + 8 * nj, a[mt], bb);
                mma16816<T>(s[mt] + 8 * nj + 4, a[mt], bb + 2);
            }
        }
    }
}

/* MT owner tiles at once: acc[mt] += P_mt B, each B fragment read once. */
template <int MT, int DP, typename T>
__device__ __forceinline__ void gemm_pb_mt(float (*acc)[elems<DP>()],
                                           const float (*pf)[elems<kTile>()], const T *sb, int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
    using tr = dtype_traits<T>;
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            a[mt][0] = tr::pack(pf[mt][8 * kk + 0], pf[mt][8 * kk + 1]);
            a[mt][1] = tr::pack(pf[mt][8 * kk + 2], pf[mt][8 * kk + 3]);
            a[mt][2] = tr::pack(pf[mt][8 * kk + 4], pf[mt][8 * kk + 5]);
            a[mt][3] = tr::pack(pf[mt][8 * kk + 6], pf[mt][8 * kk + 7]);
        }
#pragma unroll
        for (int dj = 0; dj < DP / 16; ++dj) {
            uint32_t bb[4];
            ldmatrix_x4_trans(bb, sb + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * sr +
                                      dj * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                mma16816<T>(acc[mt] + 8 * dj, a[mt], bb);
                mma16816<T>(acc[mt] + 8 * dj + 4, a[mt], bb + 2);
            }
        }
    }
}

} // namespace tile
} // namespace bsa_cuda

#endif
