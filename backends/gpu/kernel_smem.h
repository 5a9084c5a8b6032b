/*
 * Kernel identities (family x pass x variant) and the dynamic shared memory
 * each kernel asks for, in plain C: the implementation list reads them on a
 * machine without a GPU, and every kernel file static_asserts that its own
 * template's size equals the macro here (so the two cannot drift).
 */
#ifndef BSA_GPU_KERNEL_SMEM_H
#define BSA_GPU_KERNEL_SMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kernel families (one source file set each). */
typedef enum bsa_gpu_family {
    BSA_FAM_TILE = 0,    /* 64-row tiles on mma.sync / the AMD tile: tc_kernels.cuh */
    BSA_FAM_BROW,        /* 32-row block rows: brow_kernels.cuh */
    BSA_FAM_CHUNK,       /* chunk-local layouts: chunk_kernels.cuh */
    BSA_FAM_WGMMA,       /* Hopper, cp.async + wgmma: hopper/ */
    BSA_FAM_WGMMA_WS,    /* Hopper warp-specialised forward (TMA): hopper/fwd_ws_wgmma.cuh */
    BSA_FAM_WGMMA_CHUNK, /* Hopper forward of chunk-local layouts: hopper/fwd_chunk_wgmma.cuh */
    BSA_FAM_VOLTA,       /* wmma 16x16x16: volta_kernels.cuh */
    BSA_FAM_REF,         /* scalar fp32 reference: ref_kernels.cuh */
    BSA_FAM_COUNT
} bsa_gpu_family;

/* What a kernel computes. */
typedef enum bsa_gpu_pass {
    BSA_PASS_FWD = 0, /* O, lse */
    BSA_PASS_DQ,      /* dQ */
    BSA_PASS_DKDV,    /* dK, dV */
    BSA_PASS_BWD      /* dQ, dK, dV in one kernel */
} bsa_gpu_pass;

typedef struct bsa_gpu_kernel {
    unsigned char family; /* bsa_gpu_family */
    unsigned char pass;   /* bsa_gpu_pass */
    unsigned char rows;   /* query rows (dK/dV: key rows) a thread block owns: 64 or 128 */
    unsigned char stages; /* query-side pipeline stages of the tile dK/dV: 2, or 1 (small smem) */
} bsa_gpu_kernel;

/* The target a kernel's size is for: its code differs between them (the
 * AMD kernels are compiled as HIP; on AMD targets without MFMA the tile
 * backward at head dim 128 keeps one own operand in registers, not two:
 * tc_kernels.cuh, kSplitBwd). */
typedef enum bsa_gpu_target {
    BSA_GPU_TARGET_NVIDIA = 0,
    BSA_GPU_TARGET_AMD_MFMA,  /* CDNA: gfx90a, gfx94x, gfx950 */
    BSA_GPU_TARGET_AMD_OTHER, /* RDNA's WMMA tile, the FMA tile */
} bsa_gpu_target;

/* ---- the sizes (bytes), by family; dp = padded head dim; t: a
 * bsa_gpu_target ---- */

/* Tile family: rows of dp + 8 elements (padding against bank conflicts). */
#define BSA_SMEM_TILE_ELEMS(dp) (64 * ((dp) + 8))
/* K/V stages of the tile kernels: CUDA keeps two up to head dim 128; AMD's
 * 64 KB of LDS two up to 64 */
#define BSA_SMEM_TILE_STAGES(dp, t)                                                                \
    ((t) != BSA_GPU_TARGET_NVIDIA ? ((dp) <= 64 ? 2 : 1) : ((dp) <= 128 ? 2 : 1))
/* dQ at head dim 128: one stage (3 blocks an SM; bench/NOTES.md v10) */
#define BSA_SMEM_TILE_DQ_STAGES(dp, t) ((dp) == 128 ? 1 : BSA_SMEM_TILE_STAGES(dp, t))
/* AMD at head dim 128: the backward's own-row operands (dQ: Q, dO; dK/dV:
 * K, V) live in registers, their two tiles not in LDS (tc_cfg::
 * own_rows_in_regs): 2 tiles fewer, so that dQ and dK/dV fit 64 KB; without
 * MFMA only dO's (dQ) and V's (dK/dV) rows: 1 tile fewer */
#define BSA_SMEM_TILE_OWN_TILES(dp, t)                                                             \
    (((t) != BSA_GPU_TARGET_NVIDIA && (dp) == 128) ? ((t) == BSA_GPU_TARGET_AMD_OTHER ? 1 : 0) : 2)
#define BSA_SMEM_TILE_FWD(dp, t)                                                                   \
    ((size_t)(1 + 2 * BSA_SMEM_TILE_STAGES(dp, t)) * BSA_SMEM_TILE_ELEMS(dp) * 2)
#define BSA_SMEM_TILE_FWD128(dp) ((size_t)6 * BSA_SMEM_TILE_ELEMS(dp) * 2)
#define BSA_SMEM_TILE_DQ(dp, t)                                                                    \
    ((size_t)(BSA_SMEM_TILE_OWN_TILES(dp, t) + 2 * BSA_SMEM_TILE_DQ_STAGES(dp, t)) *               \
     BSA_SMEM_TILE_ELEMS(dp) * 2)
#define BSA_SMEM_TILE_DKDV(dp, st, t)                                                              \
    ((size_t)(BSA_SMEM_TILE_OWN_TILES(dp, t) + 2 * (st)) * BSA_SMEM_TILE_ELEMS(dp) * 2 +           \
     (size_t)2 * (st)*64 * 4)

/* Block rows: two lanes' tiles. */
#define BSA_SMEM_BROW_FWD(dp) ((size_t)4 * BSA_SMEM_TILE_ELEMS(dp) * 2)
#define BSA_SMEM_BROW_DQ(dp) ((size_t)8 * BSA_SMEM_TILE_ELEMS(dp) * 2)
#define BSA_SMEM_BROW_DKDV(dp)                                                                     \
    ((size_t)10 * BSA_SMEM_TILE_ELEMS(dp) * 2 + (size_t)2 * 2 * 2 * 64 * 4)

/* Chunk-local: 128-row Q, K, V (and dO), the rows' positions. */
#define BSA_SMEM_CHUNK_FWD(dp) ((size_t)6 * BSA_SMEM_TILE_ELEMS(dp) * 2 + 4 * 64 * 4)
#define BSA_SMEM_CHUNK_BWD(dp)                                                                     \
    ((size_t)8 * BSA_SMEM_TILE_ELEMS(dp) * 2 + 2 * 2 * 64 * 4 + 4 * 64 * 4)

/* Hopper (unpadded swizzled tiles, + 1024 bytes to align them). */
#define BSA_SMEM_WGMMA_FWD(dp) ((size_t)(2 + 2 * 4) * 64 * (dp)*2 + 1024)
#define BSA_SMEM_WGMMA_DQ(dp) ((size_t)(2 * 2 + 2 * 3) * 64 * (dp)*2 + 1024)
#define BSA_SMEM_WGMMA_DKDV(dp) ((size_t)(4 + 2 * 4) * 64 * (dp)*2 + (size_t)2 * 4 * 64 * 4 + 1024)
#define BSA_SMEM_WGMMA_WS(dp) ((size_t)(2 + 2 * 4) * 64 * (dp)*2 + (2 * 4 + 2) * 8 + 1024)
#define BSA_SMEM_WGMMA_CHUNK(dp) ((size_t)6 * 64 * (dp)*2 + 4 * 64 * 4 + 1024)

/* Volta: a 64-row tile of dp + 8 elements, each warp's 16 x 64 fp32 scratch. */
#define BSA_SMEM_VOLTA_TILE(dp) (64 * ((dp) + 8) * 2)
#define BSA_SMEM_VOLTA_MAX(a, b) ((a) > (b) ? (a) : (b))
#define BSA_SMEM_VOLTA_FWD(dp)                                                                     \
    ((size_t)BSA_SMEM_VOLTA_MAX(BSA_SMEM_VOLTA_TILE(dp), 4 * 16 * 64 * 4) +                        \
     2 * BSA_SMEM_VOLTA_TILE(dp) + (size_t)4 * 16 * (dp)*4)
/* above head dim 64 the dQ kernel's dO tile has its own space (dq_do_smem) */
#define BSA_SMEM_VOLTA_DQ(dp)                                                                      \
    ((size_t)BSA_SMEM_VOLTA_MAX(((dp) > 64 ? 1 : 2) * BSA_SMEM_VOLTA_TILE(dp),                     \
                                4 * 2 * 16 * 64 * 4) +                                             \
     ((dp) > 64 ? 3 : 2) * BSA_SMEM_VOLTA_TILE(dp))
#define BSA_SMEM_VOLTA_DKDV(dp)                                                                    \
    ((size_t)4 * BSA_SMEM_VOLTA_TILE(dp) + 4 * (16 * 64 * 6) + 2 * 64 * 4)

/* Bytes of dynamic shared memory kernel k asks for at padded head dim dp
 * on target t; 0 for a kernel that does not exist, 1 for the reference
 * kernels (none).  The Volta kernels use 256 bytes of static shared memory
 * on top. */
size_t bsa_gpu_kernel_smem(bsa_gpu_kernel k, int dp, bsa_gpu_target t);

#ifdef __cplusplus
}
#endif
#endif
