/*
 * Hopper (sm_90a) building blocks of the wgmma forward: warpgroup matrix
 * products (wgmma.mma_async), their shared-memory matrix descriptors, and
 * the 128-byte-swizzled shared tiles they read.  Compiled for sm_90a only
 * (backends/cuda/CMakeLists.txt); nothing else includes it.
 *
 * Shared tiles: a 64-row tile of DP (64 or 128) 16-bit columns is stored as
 * DP / 64 column blocks of [64 rows][64 elements] (128 bytes a row), each
 * 1024-byte-aligned group of 8 rows swizzled: the 16-byte chunk c of row r
 * sits at chunk c ^ (r % 8).  That is the canonical "128B swizzle" layout
 * of wgmma, read as
 *   K-major (Q and K: rows are M or N, columns the reduction dim): stride
 *     between 8-row groups (SBO) 1024 bytes; a k16 step inside a column
 *     block moves the start address by 32 bytes;
 *   MN-major (V as the B operand of O += P V, N = head dim): the same bytes
 *     with the rows as the reduction dim: 8-row groups 1024 bytes apart
 *     (SBO), 64-column blocks 64 * 128 bytes apart (LBO); a k16 step moves
 *     16 rows (2048 bytes).
 * The accumulator of m64nNk16 holds, in warp w of the warpgroup, rows
 * 16 w .. 16 w + 15 in the m16n8 layout of mma.sync repeated over the
 * N / 8 column groups: the tile interface's (tile_mma_sync.cuh) element
 * order, so the softmax, masks and stores of the mma.sync kernels apply.
 */
#ifndef BSA_CUDA_HOPPER_WGMMA_CUH
#define BSA_CUDA_HOPPER_WGMMA_CUH

#include "../tc_kernels.cuh"

#include <type_traits>

namespace bsa_cuda
{
namespace hopper
{

constexpr int kWarpgroup = 4 * kWarp;

/* Element offset of 16-byte chunk c (0 .. DP / 8 - 1) of row r (0 .. 63) in
 * a swizzled 64-row tile. */
__device__ __forceinline__ int sw_offset(int r, int c)
{
    return ((c >> 3) * kTile + r) * 64 + (((c & 7) ^ (r & 7)) << 3);
}

/* Writes a warp's 16 x DP accumulator (times mul) into its own 16 rows of
 * a swizzled 64-row tile (the 8 rows of a lane quad's group land in 8
 * different 16-byte chunks of the 32 banks: no conflicts), for a copy to
 * global memory after. */
template <int DP, typename T>
__device__ __forceinline__ void stage_rows_sw(const float *acc, const float *mul, T *tile, int warp,
                                              int lane)
{
    using tr = dtype_traits<T>;
    const int g = lane >> 2, t = lane & 3, r0 = warp * 16;
#pragma unroll
    for (int j = 0; j < DP / 8; ++j) {
        *reinterpret_cast<uint32_t *>(tile + sw_offset(r0 + g, j) + 2 * t) =
            tr::pack(acc[4 * j + 0] * mul[0], acc[4 * j + 1] * mul[0]);
        *reinterpret_cast<uint32_t *>(tile + sw_offset(r0 + g + 8, j) + 2 * t) =
            tr::pack(acc[4 * j + 2] * mul[1], acc[4 * j + 3] * mul[1]);
    }
    __syncwarp();
}

/* Asynchronous loads of 64-row tiles into swizzled shared tiles by NT
 * threads.  A thread always copies the same 16-byte column chunk c of the
 * rows r0, r0 + RS, ...: its shared offsets are fixed (RS is a multiple of
 * the swizzle's 8 rows) and are computed once, so a chunk costs an address
 * and a copy (the loads' integer work was a third of the forward's issue
 * slots; bench/NOTES.md, v15). */
template <int DP, int NT> struct sw_loader {
    static constexpr int ch = DP / 8, RS = NT / ch, J = kTile / RS;
    static_assert(NT % ch == 0 && RS % 8 == 0 && kTile % RS == 0, "loader shape");
    int c, r0, soff;
    __device__ __forceinline__ explicit sw_loader(int tid)
        : c(tid % ch), r0(tid / ch), soff(sw_offset(tid / ch, tid % ch))
    {
    }
    /* rows [row0, row0 + 64) (layout order, addressed through the strided
     * permutation) of one (segment, head) slice, or the rows of a gathered
     * key tile (grp: its key blocks of 1 << log2g rows; a null grp, known
     * at compile time in the natural-tile kernels, folds away); rows past
     * seq and columns past dim are zero-filled */
    template <typename T>
    __device__ __forceinline__ void load(T *sm, const T *base, int64_t st, int row0, int seq,
                                         int dim, int perm, const int32_t *grp = nullptr,
                                         int log2g = 0) const
    {
        const bool col_ok = c * 8 < dim;
        base += c * 8;
        /* the permutation tested once per tile, not per row (a branch and
         * its divergence bookkeeping each) */
        if (!perm && !grp) {
            /* natural rows: the first row's address and the step between a
             * thread's rows, once per load (per row, the stride was read
             * from the constant bank again and multiplied: a tenth of the
             * forward's stall samples under ncu) */
            const int64_t step = opaque((int64_t)RS * st);
            const T *src = base + (int64_t)(row0 + r0) * st;
#pragma unroll
            for (int j = 0; j < J; ++j) {
                const bool ok = col_ok && row0 + r0 + j * RS < seq;
                cp_async16(sm + soff + j * RS * 64, ok ? src + j * step : base, ok ? 16 : 0);
            }
        } else if (!perm) {
#pragma unroll
            for (int j = 0; j < J; ++j) {
                const int rr = tile_row(grp, log2g, row0, r0 + j * RS, seq);
                const bool ok = col_ok && rr < seq;
                cp_async16(sm + soff + j * RS * 64, ok ? base + (int64_t)rr * st : base,
                           ok ? 16 : 0);
            }
        } else if (!grp) {
            perm_walk pw(row0 + r0, perm, seq);
#pragma unroll
            for (int j = 0; j < J; ++j) {
                const bool ok = col_ok && row0 + r0 + j * RS < seq;
                cp_async16(sm + soff + j * RS * 64, ok ? base + (int64_t)pw.pos() * st : base,
                           ok ? 16 : 0);
                pw.advance(RS);
            }
        } else {
#pragma unroll
            for (int j = 0; j < J; ++j) {
                const int rr = tile_row(grp, log2g, row0, r0 + j * RS, seq);
                const bool ok = col_ok && rr < seq;
                const T *src = ok ? base + (int64_t)perm_row(rr, perm, seq) * st : base;
                cp_async16(sm + soff + j * RS * 64, src, ok ? 16 : 0);
            }
        }
    }
};

/* Matrix descriptor: start address, leading and stride byte offsets (all
 * in 16-byte units), 128-byte swizzle (layout type 1 in bits 62-63). */
__device__ __forceinline__ uint64_t sw128_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((saddr & 0x3ffff) >> 4) | (uint64_t)((lbo >> 4) & 0x3fff) << 16 |
           (uint64_t)((sbo >> 4) & 0x3fff) << 32 | (uint64_t)1 << 62;
}

/* Descriptors as a shared base plus byte offsets: a kernel keeps the base's
 * two words and forms each product's descriptor with one add (the low word
 * holds address / 16 in 14 bits: shared offsets never carry out of it),
 * instead of holding a 64-bit descriptor per k-step and tile in registers. */
struct desc_base {
    uint32_t lo, hi;
    __device__ __forceinline__ desc_base(const void *sm, uint32_t lbo)
    {
        const uint64_t d = sw128_desc(smem_u32(sm), lbo, 1024);
        lo = (uint32_t)d;
        hi = (uint32_t)(d >> 32);
    }
    /* the descriptor of the tile `bytes` past the base */
    __device__ __forceinline__ uint64_t at(uint32_t bytes) const
    {
        uint64_t d;
        asm volatile("{\n.reg .b32 t;\nadd.u32 t, %1, %3;\nmov.b64 %0, {t, %2};\n}\n"
                     : "=l"(d)
                     : "r"(lo), "r"(hi), "r"(bytes >> 4));
        return d;
    }
    /* K-major operand tile at byte offset off, k16 step kk of the head dim */
    __device__ __forceinline__ uint64_t kmajor(uint32_t off, int kk) const
    {
        return at(off + (kk >> 2) * kTile * 128 + (kk & 3) * 32);
    }
    /* MN-major B operand tile at byte offset off, k16 step kk of the rows */
    __device__ __forceinline__ uint64_t mnmajor(uint32_t off, int kk) const
    {
        return at(off + kk * 16 * 128);
    }
};

/* K/V stages of the row-side kernels: one for the tile being computed, one
 * for the previous tile (its second product runs during the current
 * iteration), the rest for tiles in flight: two ahead with two warpgroups
 * (one block per SM, whose loads nothing else covers), one with one */
template <int NWG> constexpr int stages()
{
    return NWG == 2 ? 4 : 3;
}

/* The 1024-byte-aligned start of the dynamic shared memory (the swizzle
 * pattern repeats every 1024 bytes; the kernels ask for 1024 bytes more). */
template <typename T> __device__ __forceinline__ T *aligned_smem(unsigned char *raw)
{
    return reinterpret_cast<T *>(raw + ((1024u - (smem_u32(raw) & 1023u)) & 1023u));
}

/* The rows of a row-side block of NWG warpgroups (bh: its segment and
 * query head): the query, layout and kv heads, and its query tiles qa and
 * qb (qb = n_qt: none; two warpgroups take consecutive tiles, heavy ones
 * first).  The segment's view stays with the caller: held in this struct
 * it cost the forward 10 registers and tripled its head dim 64 spills. */
struct row_job {
    int h, lh, kvh, qa, qb;
};
template <int NWG, bool FEAT>
__device__ __forceinline__ row_job row_job_of(const bsa_cuda_params &p, int bh)
{
    row_job j;
    j.h = bh % p.heads;
    j.lh = p.lheads == 1 ? 0 : j.h;
    j.kvh = FEAT ? j.h / p.group : j.h;
    if constexpr (NWG == 2) { /* causal-like layouts: heavy tiles first */
        j.qa = 2 * ((p.n_qt + 1) / 2 - 1 - (int)blockIdx.x);
        j.qb = j.qa + 1;
    } else {
        j.qa = p.q_order[j.lh * p.n_qt + blockIdx.x];
        j.qb = p.n_qt;
    }
    return j;
}

/* A key tile of a merged walk: its index and both lists' entry codes. */
struct walk_step {
    int kt, ya, yb;
    bool ok;
};
__device__ __forceinline__ walk_step take_step(merged_lists &w)
{
    walk_step t{0, kNone, kNone, w.more()};
    if (t.ok)
        w.next(t.kt, t.ya, t.yb);
    return t;
}

__device__ __forceinline__ void wgmma_fence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Shared memory written through the generic proxy (cp.async, plain stores)
 * is read next by wgmma (the async proxy). */
__device__ __forceinline__ void fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
/* Pins registers an asynchronous product reads or writes to this point of
 * the program: the compiler may neither read them early nor reuse them. */
template <int N> __device__ __forceinline__ void pin(float *x)
{
#pragma unroll
    for (int i = 0; i < N; ++i)
        asm volatile("" : "+f"(x[i])::"memory");
}
template <int N> __device__ __forceinline__ void pin(uint32_t *x)
{
#pragma unroll
    for (int i = 0; i < N; ++i)
        asm volatile("" : "+r"(x[i])::"memory");
}

/* Zeroes N packed A-fragment registers (P or dS waiting for a product that
 * runs before the first tile gives them values). */
template <int N> __device__ __forceinline__ void zero_frags(uint32_t *x)
{
#pragma unroll
    for (int i = 0; i < N; ++i)
        x[i] = 0u;
}

#define BSA_WGMMA_R32                                                                              \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                      \
    "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
#define BSA_WGMMA_R64                                                                              \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                      \
    "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"                             \
    "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"                             \
    "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#define BSA_WGMMA_D8(i)                                                                            \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]),    \
        "+f"(d[i + 6]), "+f"(d[i + 7])
#define BSA_WGMMA_D32 BSA_WGMMA_D8(0), BSA_WGMMA_D8(8), BSA_WGMMA_D8(16), BSA_WGMMA_D8(24)
#define BSA_WGMMA_D64                                                                              \
    BSA_WGMMA_D32, BSA_WGMMA_D8(32), BSA_WGMMA_D8(40), BSA_WGMMA_D8(48), BSA_WGMMA_D8(56)

/* d[64 x 64] (+)= A B^T, A and B K-major in shared memory (descriptors);
 * scale_d = 0 overwrites d. */
#define BSA_WGMMA_SS_N64(TY)                                                                       \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                      \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " BSA_WGMMA_R32         \
                 ", %32, %33, p, 1, 1, 0, 0;\n}\n"                                                 \
                 : BSA_WGMMA_D32                                                                   \
                 : "l"(da), "l"(db), "r"(scale_d))
/* d[64 x N] += A B, A's fragments in registers (a[4]), B MN-major in
 * shared memory (descriptor; transposed: imm-trans-b = 1). */
#define BSA_WGMMA_RS_N64(TY)                                                                       \
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " BSA_WGMMA_R32         \
                 ", {%32,%33,%34,%35}, %36, 1, 1, 1, 1;\n"                                         \
                 : BSA_WGMMA_D32                                                                   \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db))
#define BSA_WGMMA_RS_N128(TY)                                                                      \
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " BSA_WGMMA_R64        \
                 ", {%64,%65,%66,%67}, %68, 1, 1, 1, 1;\n"                                         \
                 : BSA_WGMMA_D64                                                                   \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db))

template <typename T>
__device__ __forceinline__ void wgmma_ss_n64(float *d, uint64_t da, uint64_t db, int scale_d)
{
    if constexpr (std::is_same<T, __half>::value)
        BSA_WGMMA_SS_N64("f16");
    else
        BSA_WGMMA_SS_N64("bf16");
}

/* d[64 x N] += A[64 x 16] B[16 x N], N = 64 or 128 */
template <typename T, int N>
__device__ __forceinline__ void wgmma_rs(float *d, const uint32_t *a, uint64_t db)
{
    constexpr bool f16 = std::is_same<T, __half>::value;
    if constexpr (N == 64 && f16)
        BSA_WGMMA_RS_N64("f16");
    else if constexpr (N == 64)
        BSA_WGMMA_RS_N64("bf16");
    else if constexpr (f16)
        BSA_WGMMA_RS_N128("f16");
    else
        BSA_WGMMA_RS_N128("bf16");
}

} // namespace hopper
} // namespace bsa_cuda

#endif
