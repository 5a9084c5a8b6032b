/*
 * The warp tile of the tensor-core kernels (backends/cuda/tc_kernels.cuh)
 * on AMD GPUs: the interface of backends/cuda/tile_mma_sync.cuh, here with
 *   CDNA (gfx90a, gfx940..942, gfx950): v_mfma_f32_16x16x16{f16,bf16_1k} on
 *     a wave64, computing every product transposed: C^T = B A^T puts owner
 *     row lane % 16 in each lane (one owner row per lane) and columns
 *     16 j + 4 (lane / 16) + i, which is exactly the B operand of the next
 *     product taken as (P B)^T = B^T P^T, so scores feed the P.V product
 *     from registers as on NVIDIA;
 *   RDNA3 / RDNA4 (gfx11, gfx12): v_wmma_f32_16x16x16_{f16,bf16} on a
 *     wave32, the same transposed products.  The two generations lay the
 *     operands out differently: gfx11 wants each lane's 16 K values of its
 *     row / column (both half-waves the same) and gives lane l the result
 *     rows 2 i + l / 16 (columns 16 j + 2 i + l / 16 of the owner row); gfx12
 *     splits K over the half-waves (lanes 16..31 hold K 8..15) and gives
 *     rows 8 (l / 16) + i (columns 16 j + 8 (l / 16) + i, as the FMA tile);
 *   anything else (gfx1030 and other RDNA2 / GCN): the same layout and
 *     products with scalar FMAs over LDS, for any wave width.
 * A warp (wave) owns 16 owner rows; row reductions stay in-lane plus xor
 * shuffles over the lanes holding the same row (offsets 16, 32).
 * Needs tc_cfg (tc_kernels.cuh) for the row pitch.
 */
#ifndef BSA_HIP_TILE_AMD_CUH
#define BSA_HIP_TILE_AMD_CUH

#include <type_traits>

#if defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__) ||    \
    defined(__gfx950__)
#define BSA_HIP_MFMA 1
#else
#define BSA_HIP_MFMA 0
#endif
/* the WMMA generation: 11 (RDNA3), 12 (RDNA4), 0 none */
#if defined(__GFX11__)
#define BSA_HIP_WMMA 11
#elif defined(__GFX12__)
#define BSA_HIP_WMMA 12
#else
#define BSA_HIP_WMMA 0
#endif

namespace bsa_cuda
{
namespace tile
{

constexpr int kGroups = kWarp / 16; /* lanes holding one owner row */
constexpr int kEPB = 16 / kGroups;  /* a lane's values per 16-column block */
static_assert(kWarp == 32 || kWarp == 64, "wave width must be 32 or 64");
static_assert(!BSA_HIP_MFMA || kWarp == 64, "the MFMA tile is a wave64 one");
static_assert(!BSA_HIP_WMMA || kWarp == 32, "the WMMA tile is a wave32 one");
/* gfx11's result columns of a lane interleave (2 i + lane / 16): a lane's
 * neighbouring values are not neighbouring columns */
constexpr bool kInterleaved = BSA_HIP_WMMA == 11;

constexpr int kRows = 1;
/* The forward holds Q's fragments in registers up to this head dim: a
 * wave32 WMMA lane holds twice a wave64 lane's accumulators and scores,
 * and with Q's 128 columns too they spilled (gfx1100, gfx1201) */
constexpr int kQRegsMax = BSA_HIP_WMMA == 11 ? 32 : BSA_HIP_WMMA ? 64 : 128;

template <int N> constexpr int elems()
{
    return N / 16 * kEPB;
}
__device__ __forceinline__ int slot(int)
{
    return 0;
}
__device__ __forceinline__ int col(int lane, int e)
{
    if constexpr (kInterleaved)
        return (e / kEPB) * 16 + 2 * (e % kEPB) + (lane >> 4);
    return (e / kEPB) * 16 + (lane >> 4) * kEPB + e % kEPB;
}
__device__ __forceinline__ int row(int lane, int)
{
    return lane & 15;
}
__device__ __forceinline__ bool row_leader(int lane)
{
    return lane < 16;
}
__device__ __forceinline__ float row_max(float x)
{
#pragma unroll
    for (int off = 16; off < kWarp; off *= 2)
        x = fmaxf(x, __shfl_xor(x, off));
    return x;
}
__device__ __forceinline__ float row_sum(float x)
{
#pragma unroll
    for (int off = 16; off < kWarp; off *= 2)
        x += __shfl_xor(x, off);
    return x;
}

/* Orders a wave's LDS writes before its lanes read each other's. */
__device__ __forceinline__ void wave_sync()
{
    __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
    __builtin_amdgcn_wave_barrier();
    __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
}

template <typename T> constexpr bool is_bf16()
{
    return !std::is_same<T, __half>::value;
}
template <typename T> __device__ __forceinline__ float to_f(T x)
{
    return dtype_traits<T>::to_float(x);
}

/* Owner-row operand of a warp (16-column chunks of its own row), in 32-bit
 * words: MFMA, the lane's 4 values of each chunk (K 4 (lane / 16) + i);
 * gfx12 WMMA, its 8 (K 8 (lane / 16) + i); gfx11 WMMA and FMA, all 16. */
constexpr int kAW = BSA_HIP_MFMA ? 2 : BSA_HIP_WMMA == 12 ? 4 : 8;
template <int DP> using afrag = uint32_t[DP / 16][kAW];
/* the first K of a chunk a lane holds */
__device__ __forceinline__ int k_first(int lane)
{
    return kAW == 8 ? 0 : 2 * kAW * (lane >> 4);
}

template <int DP, typename T>
__device__ __forceinline__ void load_a(uint32_t (*af)[kAW], const T *sa, int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
    const T *r = sa + (lane & 15) * sr;
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
        const uint32_t *src = reinterpret_cast<const uint32_t *>(r + kk * 16 + k_first(lane));
#pragma unroll
        for (int i = 0; i < kAW; ++i)
            af[kk][i] = src[i];
    }
}

#if BSA_HIP_MFMA
typedef short bsa_s4 __attribute__((ext_vector_type(4)));
typedef _Float16 bsa_h4 __attribute__((ext_vector_type(4)));
typedef float bsa_f4 __attribute__((ext_vector_type(4)));

/* c[4] += A B^T of one 16 x 16 x 16 block: a holds A(lane % 16, 4 (lane /
 * 16) + i), b holds B(4 (lane / 16) + i, lane % 16). */
template <typename T> __device__ __forceinline__ void mfma(float *c, bsa_s4 a, bsa_s4 b)
{
    bsa_f4 cv = {c[0], c[1], c[2], c[3]};
    if constexpr (is_bf16<T>())
        cv = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a, b, cv, 0, 0, 0);
    else
        cv = __builtin_amdgcn_mfma_f32_16x16x16f16(__builtin_bit_cast(bsa_h4, a),
                                                   __builtin_bit_cast(bsa_h4, b), cv, 0, 0, 0);
    c[0] = cv[0];
    c[1] = cv[1];
    c[2] = cv[2];
    c[3] = cv[3];
}
template <typename T> __device__ __forceinline__ bsa_s4 load4(const T *p)
{
    return *reinterpret_cast<const bsa_s4 *>(p);
}
__device__ __forceinline__ bsa_s4 frag4(const uint32_t *f)
{
    uint32_t two[2] = {f[0], f[1]};
    return __builtin_bit_cast(bsa_s4, two);
}
#endif

#if BSA_HIP_WMMA
/* A WMMA operand: a lane's K values of one row / column, as 16-bit words
 * (gfx11: 16, gfx12: 8). */
constexpr int kOW = BSA_HIP_WMMA == 11 ? 16 : 8;
typedef short bsa_wop __attribute__((ext_vector_type(kOW)));
typedef _Float16 bsa_whop __attribute__((ext_vector_type(kOW)));
typedef float bsa_f8 __attribute__((ext_vector_type(8)));
typedef uint32_t bsa_u4 __attribute__((ext_vector_type(4)));
struct bsa_w4 {
    bsa_u4 w[kOW / 8];
};

/* Keeps the scheduler from hoisting every LDS load of an unrolled product
 * above its first WMMA: a wave32 lane holds twice the values of a wave64
 * one, and the hoisted operands spilled (gfx1100: 60-100 VGPRs). */
#define BSA_WMMA_SCHED_FENCE() __builtin_amdgcn_sched_barrier(0)

/* c[8] += A B of one 16 x 16 x 16 block: a holds row lane % 16 of A, b
 * column lane % 16 of B, each over the lane's K values. */
template <typename T> __device__ __forceinline__ void wmma(float *c, bsa_wop a, bsa_wop b)
{
    bsa_f8 cv = {c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]};
#if BSA_HIP_WMMA == 11
    if constexpr (is_bf16<T>())
        cv = __builtin_amdgcn_wmma_f32_16x16x16_bf16_w32(a, b, cv);
    else
        cv = __builtin_amdgcn_wmma_f32_16x16x16_f16_w32(__builtin_bit_cast(bsa_whop, a),
                                                        __builtin_bit_cast(bsa_whop, b), cv);
#else
    if constexpr (is_bf16<T>())
        cv = __builtin_amdgcn_wmma_f32_16x16x16_bf16_w32_gfx12(a, b, cv);
    else
        cv = __builtin_amdgcn_wmma_f32_16x16x16_f16_w32_gfx12(__builtin_bit_cast(bsa_whop, a),
                                                              __builtin_bit_cast(bsa_whop, b), cv);
#endif
#pragma unroll
    for (int i = 0; i < 8; ++i)
        c[i] = cv[i];
}
/* kOW consecutive elements from LDS (rows are 16-byte aligned, not 32) */
template <typename T> __device__ __forceinline__ bsa_wop loadw(const T *p)
{
    bsa_w4 v;
#pragma unroll
    for (int i = 0; i < kOW / 8; ++i)
        v.w[i] = reinterpret_cast<const bsa_u4 *>(p)[i];
    return __builtin_bit_cast(bsa_wop, v);
}
__device__ __forceinline__ bsa_wop fragw(const uint32_t *f)
{
    uint32_t w[kOW / 2];
#pragma unroll
    for (int i = 0; i < kOW / 2; ++i)
        w[i] = f[i];
    return __builtin_bit_cast(bsa_wop, w);
}
#endif

/* acc[16 x 64] += A[16 x DP] B[64 x DP]^T: A the warp's owner rows (sa or
 * their fragments af), B rows in shared. */
template <int DP, typename T, bool REG>
__device__ __forceinline__ void abt(float *acc, const uint32_t (*af)[kAW], const T *sa, const T *sb,
                                    int lane)
{
    constexpr int sr = tc_cfg<DP>::srow;
    const int o = lane & 15;
#if BSA_HIP_MFMA
    const int q4 = 4 * (lane >> 4);
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
        bsa_s4 b = REG ? frag4(af[kk]) : load4(sa + o * sr + kk * 16 + q4);
#pragma unroll
        for (int jb = 0; jb < kTile / 16; ++jb)
            mfma<T>(acc + 4 * jb, load4(sb + (16 * jb + o) * sr + kk * 16 + q4), b);
    }
#elif BSA_HIP_WMMA
    const int k0 = k_first(lane);
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
        bsa_wop b = REG ? fragw(af[kk]) : loadw(sa + o * sr + kk * 16 + k0);
#pragma unroll
        for (int jb = 0; jb < kTile / 16; ++jb) {
            wmma<T>(acc + 8 * jb, loadw(sb + (16 * jb + o) * sr + kk * 16 + k0), b);
            BSA_WMMA_SCHED_FENCE();
        }
    }
#else /* rolled k loops: the element loops stay unrolled (registers) */
#pragma unroll 1
    for (int kk = 0; kk < DP / 16; ++kk) {
#pragma unroll 2
        for (int k = 0; k < 16; ++k) {
            float a;
            if constexpr (REG) {
                uint32_t w = af[kk][k >> 1];
                T h = __builtin_bit_cast(T, (uint16_t)(k & 1 ? w >> 16 : w & 0xffffu));
                a = to_f(h);
            } else {
                a = to_f(sa[o * sr + kk * 16 + k]);
            }
#pragma unroll
            for (int e = 0; e < elems<kTile>(); ++e)
                acc[e] = fmaf(a, to_f(sb[col(lane, e) * sr + kk * 16 + k]), acc[e]);
        }
    }
#endif
}

template <int DP, typename T>
__device__ __forceinline__ void gemm_abt(float *acc, const T *sa, const T *sb, int lane)
{
    abt<DP, T, false>(acc, nullptr, sa, sb, lane);
}
template <int DP, typename T>
__device__ __forceinline__ void gemm_abt_reg(float *acc, const uint32_t (*af)[kAW], const T *sb,
                                             int lane)
{
    abt<DP, T, true>(acc, af, nullptr, sb, lane);
}

/* acc[16 x DP] += P[16 x 64] B[64 x DP]: P a 16 x 64 result in registers,
 * B rows in shared, in a tile of head dim SDP (its row pitch: DP columns
 * of a wider tile from sb on). */
template <int DP, int SDP = DP, typename T>
__device__ __forceinline__ void gemm_pb(float *acc, const float *pf, const T *sb, int lane)
{
    constexpr int sr = tc_cfg<SDP>::srow;
    const int o = lane & 15;
#if BSA_HIP_MFMA
    using tr = dtype_traits<T>;
    const int q4 = 4 * (lane >> 4);
#pragma unroll
    for (int kc = 0; kc < kTile / 16; ++kc) {
        uint32_t pw[2] = {tr::pack(pf[4 * kc], pf[4 * kc + 1]),
                          tr::pack(pf[4 * kc + 2], pf[4 * kc + 3])};
        bsa_s4 b = __builtin_bit_cast(bsa_s4, pw);
#pragma unroll
        for (int dj = 0; dj < DP / 16; ++dj) {
            bsa_s4 a;
#pragma unroll
            for (int i = 0; i < 4; ++i)
                a[i] = __builtin_bit_cast(short, sb[(16 * kc + q4 + i) * sr + 16 * dj + o]);
            mfma<T>(acc + 4 * dj, a, b);
        }
    }
#elif BSA_HIP_WMMA
    using tr = dtype_traits<T>;
    const int k0 = k_first(lane);
#pragma unroll
    for (int kc = 0; kc < kTile / 16; ++kc) {
        /* B operand: P(o, 16 kc + k) over the lane's K */
        uint32_t pw[kOW / 2];
        const float *pk = pf + 8 * kc;
#if BSA_HIP_WMMA == 12 /* the lane's own 8 values are its K 8 (lane / 16) + i */
#pragma unroll
        for (int i = 0; i < 4; ++i)
            pw[i] = tr::pack(pk[2 * i], pk[2 * i + 1]);
#else /* a lane holds K 2 i + lane / 16: the other half-wave has the rest */
        const bool hi = lane >= 16;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const uint32_t mine = tr::pack(pk[2 * j], pk[2 * j + 1]); /* K 4 j + h, 4 j + 2 + h */
            const uint32_t other = __shfl_xor(mine, 16);
            const uint32_t lo = hi ? other : mine, up = hi ? mine : other; /* K even, K odd */
            pw[2 * j] = (lo & 0xffffu) | (up << 16);
            pw[2 * j + 1] = (lo >> 16) | (up & 0xffff0000u);
        }
#endif
        const bsa_wop b = __builtin_bit_cast(bsa_wop, pw);
#pragma unroll
        for (int dj = 0; dj < DP / 16; ++dj) {
            /* A operand: row o of B^T, i.e. column 16 dj + o of B over K */
            bsa_wop a;
#pragma unroll
            for (int i = 0; i < kOW; ++i)
                a[i] = __builtin_bit_cast(short, sb[(16 * kc + k0 + i) * sr + 16 * dj + o]);
            wmma<T>(acc + 8 * dj, a, b);
            BSA_WMMA_SCHED_FENCE();
        }
    }
#else
#pragma unroll 1
    for (int kc = 0; kc < kTile / 16; ++kc) {
#pragma unroll
        for (int i = 0; i < kEPB; ++i) {
#pragma unroll
            for (int g = 0; g < kGroups; ++g) {
                /* P(o, 16 kc + kEPB g + i) lives in lane o + 16 g */
                float pv = __shfl(pf[kc * kEPB + i], o + 16 * g);
                const T *br = sb + (16 * kc + kEPB * g + i) * sr;
#pragma unroll
                for (int e = 0; e < elems<DP>(); ++e)
                    acc[e] = fmaf(pv, to_f(br[col(lane, e)]), acc[e]);
            }
        }
    }
#endif
}

template <int MT, int DP, bool QREG, typename T>
__device__ __forceinline__ void gemm_abt_mt(float (*s)[elems<kTile>()],
                                            const afrag<QREG ? DP : 16> *qf, const T *sa,
                                            const T *sb, int lane)
{
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        if constexpr (QREG)
            gemm_abt_reg<DP>(s[mt], qf[mt], sb, lane);
        else
            gemm_abt<DP>(s[mt], sa + mt * 16 * tc_cfg<DP>::srow, sb, lane);
    }
}

template <int MT, int DP, typename T>
__device__ __forceinline__ void gemm_pb_mt(float (*acc)[elems<DP>()],
                                           const float (*pf)[elems<kTile>()], const T *sb, int lane)
{
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
        gemm_pb<DP>(acc[mt], pf[mt], sb, lane);
}

/* Writes a warp's 16 x DP result (times mul) through its own 16 rows of a
 * shared tile, then to global rows (tile_mma_sync.cuh's store_rows). */
template <int DP, typename T>
__device__ __forceinline__ void
store_rows(const float *acc, const float *mul, T *sm, T *base, int64_t st, int row0, int seq,
           int dim, int perm, int warp, int lane, const int32_t *grp = nullptr, int log2b = 0)
{
    constexpr int sr = tc_cfg<DP>::srow;
    using tr = dtype_traits<T>;
    T *w = sm + warp * 16 * sr + (lane & 15) * sr;
    if constexpr (kInterleaved) { /* neighbouring values are columns 2 apart */
#pragma unroll
        for (int e = 0; e < elems<DP>(); ++e)
            w[col(lane, e)] = tr::from_float(acc[e] * mul[0]);
    } else {
#pragma unroll
        for (int e = 0; e < elems<DP>(); e += 2) /* kEPB is even: pairs are adjacent columns */
            *reinterpret_cast<uint32_t *>(w + col(lane, e)) =
                tr::pack(acc[e] * mul[0], acc[e + 1] * mul[0]);
    }
    wave_sync();
    constexpr int ch = DP / 8;
    T *wr = sm + warp * 16 * sr;
    for (int c = lane; c < 16 * ch; c += kWarp) {
        int r = c / ch, cc = c - r * ch;
        int rr = tile_row(grp, log2b, row0, warp * 16 + r, seq);
        if (rr < seq && cc * 8 < dim)
            *reinterpret_cast<uint4 *>(base + (int64_t)perm_row(rr, perm, seq) * st + cc * 8) =
                *reinterpret_cast<const uint4 *>(wr + r * sr + cc * 8);
    }
}

/* The lane number, on gfx11 hidden from the compiler where a mask is
 * applied.  The masks' per-value columns (col(), with the in-block offsets
 * and block numbers taken from them) depend on the lane alone, so the
 * compiler hoisted them out of the key-tile loop: up to ~100 VGPRs live
 * across it, which spilled gfx1100's forward on gathered key tiles at head
 * dim 128 (8 VGPRs, 32 with the features) and cost most of its other tile
 * kernels 13-100 VGPRs.  Taken from an asm result in the loop they are
 * recomputed there, a VALU operation each.  Other targets: the lane as it
 * is (their code unchanged). */
__device__ __forceinline__ int lane_here(int lane)
{
#if BSA_HIP_WMMA == 11
    asm volatile("" : "+v"(lane));
#endif
    return lane;
}

/* One value's mask test under a sub-block code that is not FULL; kblk:
 * under a PRED code of a gathered key tile, the layout key block of the
 * value's key (tile_row's lookup, done once for its group). */
template <bool transposed>
__device__ __forceinline__ void mask_one(float &s, const bsa_cuda_params &p, int code,
                                         int row_tile0, int col_tile0, int rw, int cl,
                                         const int32_t *kgrp, int kblk)
{
    int q = transposed ? col_tile0 + cl : row_tile0 + rw;
    int kn = transposed ? row_tile0 + rw : col_tile0 + cl;
    bool keep;
    if (code == BSA_CUDA_SUB_ABSENT) {
        keep = false;
    } else if (code == BSA_CUDA_SUB_PRED) {
        const int r = transposed ? rw : cl; /* the key's row in its tile */
        int k = !kgrp ? kn : kblk < 0 ? p.seq_k : (kblk << p.log2g) + (r & ((1 << p.log2g) - 1));
        keep = pred_keep(p.pred, q, k);
    } else {
        keep = keep_code(p, code, q, kn);
    }
    if (!keep)
        s = -CUDART_INF_F;
}

/* Masked elements of a 16 x 64 result to -inf (transposed: owner rows are
 * keys, columns queries).  A lane's values come in groups of G within one
 * 8-column chunk of the tile, and sub-blocks are at least 8 wide (layout
 * blocks of 8 or more): one sub-block code read and one FULL test per
 * group, not per value (per-value branches cost the wave32 tiles their
 * registers). */
template <bool transposed>
__device__ __forceinline__ void apply_mask(float *s, const bsa_cuda_params &p, const int32_t *sub,
                                           int row_tile0, int col_tile0, int warp, int lane,
                                           const int32_t *kgrp)
{
    lane = lane_here(lane);
    const int rw = warp * 16 + (lane & 15);
    constexpr int G = kInterleaved ? 4 : kEPB < 8 ? kEPB : 8;
    static_assert(elems<kTile>() % G == 0, "mask groups");
#pragma unroll
    for (int e0 = 0; e0 < elems<kTile>(); e0 += G) {
        const int cl0 = col(lane, e0);
        const int code = transposed ? __ldg(sub + (cl0 >> p.log2g) * p.ns + (rw >> p.log2g))
                                    : __ldg(sub + (rw >> p.log2g) * p.ns + (cl0 >> p.log2g));
        if (code == BSA_CUDA_SUB_FULL)
            continue;
        int kblk = 0; /* the group's keys lie in one key block */
        if (kgrp && code == BSA_CUDA_SUB_PRED)
            kblk = __ldg(kgrp + ((transposed ? rw : cl0) >> p.log2g));
#pragma unroll
        for (int e = e0; e < e0 + G; ++e)
            mask_one<transposed>(s[e], p, code, row_tile0, col_tile0, rw, col(lane, e), kgrp, kblk);
    }
}

/* apply_mask for a pair whose mask is the layout's predicate over the whole
 * tile: the owner row's interval (pred_range) and no sub-block code. */
template <bool transposed = false>
__device__ __forceinline__ void apply_pred_tile(float *s, const bsa_pred &pd, int row_tile0,
                                                int col_tile0, int warp, int lane)
{
    const pred_range pr(pd, row_tile0 + warp * 16 + (lane & 15), !transposed);
#pragma unroll
    for (int e = 0; e < elems<kTile>(); ++e)
        if (!pr.keeps(col_tile0 + col(lane, e)))
            s[e] = -CUDART_INF_F;
}

template <bool transposed>
__device__ __forceinline__ void apply_key_cut(float *s, const bsa_cuda_params &p, const seg_view &v,
                                              const int32_t *kgrp, int kt, int warp, int lane)
{
    lane = lane_here(lane);
#pragma unroll
    for (int e = 0; e < elems<kTile>(); ++e) {
        int kr = transposed ? warp * 16 + (lane & 15) : col(lane, e);
        if (key_cut(p, v, kgrp, kt, kr))
            s[e] = -CUDART_INF_F;
    }
}

} // namespace tile
} // namespace bsa_cuda

#endif
