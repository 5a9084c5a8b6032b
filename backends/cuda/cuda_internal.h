/*
 * CUDA backend internals shared by the host glue and the kernel files.
 *
 * Kernel tiles are TILE x TILE (64 x 64) elements whatever the layout block
 * size: at layout_prepare the host turns the layout's block lists into
 * lists of tile pairs (query tile, key tile) per layout head.  A pair whose
 * sub-blocks are all present and FULL runs with no mask code; any other
 * pair ("mixed") points at a small table of the global block index of each
 * of its ns x ns sub-blocks (-1 = absent), and the kernel evaluates the
 * element mask (FULL / predicates / stored bits) from it.  This is how
 * blocks of 8..32 share one tile and how 128-blocks split into four.
 */
#ifndef BSA_CUDA_INTERNAL_H
#define BSA_CUDA_INTERNAL_H

/* first: under HIP it defines __host__ / __device__ for the headers below */
#include "vendor.h" /* the CUDA runtime, or HIP under its CUDA names */

#include "../backend.h"

#include <stdint.h>

#define BSA_CUDA_TILE 64

/* Sub-block codes of a mixed tile pair: >= 0 is the layout's bits index
 * (mask_idx) of a partial block with stored bits. */
#define BSA_CUDA_SUB_ABSENT (-1)
#define BSA_CUDA_SUB_FULL (-2)
#define BSA_CUDA_SUB_PRED (-3)

/* Device copy of a layout (layout->backend_data). */
typedef struct bsa_cuda_layout {
    int device;
    int n_qt, n_kt;    /* query / key tiles of TILE rows */
    int ns, log2g;     /* sub-blocks per tile side, log2 of their size */
    int64_t n_row_ent; /* tile pairs, all layout heads */
    int64_t n_mixed;   /* mixed pairs */
    /* over pairs of consecutive query tiles, (|A| + |B|) / (2 |A u B|): how
     * much of the merged key list the 128-row forward and dQ walk is really
     * used; col_pair_eff: the same of key tiles' query lists (dK/dV) */
    double pair_eff, col_pair_eff;
    /* every key tile of query tile qt is 2 (qt / 2) or 2 (qt / 2) + 1: each
     * 128-row chunk is a problem of its own (chunk_kernels.cuh) */
    int chunk_local;
    /* device arrays (one allocation, carved) */
    void *dev_mem;
    int32_t *row_tptr; /* [lheads * (n_qt + 1)] */
    int2 *row_tent;    /* {key tile, mixed pair or -1} sorted by key tile */
    int32_t *col_tptr; /* [lheads * (n_kt + 1)] */
    int2 *col_tent;    /* {query tile, mixed pair or -1} sorted by query tile */
    int32_t *q_order;  /* [lheads * n_qt] query tiles, heaviest first */
    int32_t *k_order;  /* [lheads * n_kt] key tiles, heaviest first */
    int32_t *sub;      /* [n_mixed * ns * ns] BSA_CUDA_SUB_* or bits index */
    /* [n_mixed] 1: the pair's mask is the layout's predicate over the
     * whole tile (natural key tiles; tiles.cu, whole_tile_pred) */
    int32_t *sub_pred;
    int pred_tiles;    /* every mixed pair is one (natural key tiles) */
    int32_t *mask_idx; /* [nnz] the layout's */
    uint64_t *bits;    /* [n_partial * block * words] */
    int32_t *row_ptr;  /* the layout's CSR, for the reference kernels */
    int32_t *col_idx;
    int32_t *col_ptr;
    int32_t *t_block;
    int32_t *t_row;
    /* gathered key tiles: [lheads][n_kt][kg] key block of each slot (-1 past
     * the end), or NULL when key tile kt is simply keys [64 kt, 64 kt + 64) */
    int32_t *kgrp;
    int kg; /* key blocks per key tile: 64 / block (1 for blocks >= 64) */
    /* Block-row lists (blocks of 32 whose 64 x 64 tile pairs would compute
     * mostly absent blocks, as random layouts'; brow_kernels.cuh), brow = 1
     * when built.  Per layout head: brow_rptr [q_blocks + 1] indexes
     * brow_rent, the query block's kept key blocks two to an entry {k0, k1
     * (-1: none), code0, code1} (BSA_CUDA_SUB_* or bits index);
     * brow_cptr [k_blocks + 1] and brow_cent the same of key blocks' query
     * blocks; brow_qord / brow_kord [(blocks + 1) / 2 * 2]: the blocks two
     * to a thread block, longest lists first (-1: none). */
    int brow;
    int32_t *brow_rptr, *brow_cptr, *brow_qord, *brow_kord;
    int4 *brow_rent, *brow_cent;
} bsa_cuda_layout;

/* Everything a kernel needs, passed by value. */
typedef struct bsa_cuda_params {
    const void *q, *k, *v, *o, *dout;
    void *o_out, *dq, *dk, *dv;
    float *lse;          /* forward output (may be NULL) */
    const float *lse_in; /* backward input */
    float *delta;        /* backward workspace [batch * heads * seq_q] */
    float *loff;         /* and the rows' lse_offset(lse_in) (bsa_cuda_set_workspace) */
    int64_t q_s[3], k_s[3], v_s[3], o_s[3]; /* batch, head, time strides (elements) */
    int dtype;                              /* bsa_dtype */
    /* seq_q / seq_k: the layout's; time_q / time_k: the tensors' (packed
     * totals with varlen, else equal).  n_seg: batch, or packed sequences
     * (then batch = 1); grids run over n_seg * heads (dK/dV: * kv_heads). */
    int batch, heads, seq_q, seq_k, dim;
    int time_q, time_k, n_seg;
    int kv_heads, group; /* group = heads / kv_heads query heads per kv head */
    int dim_v;           /* head dim of v, o (dim: of q, k) */
    /* device arrays or NULL: [n_seg] valid key counts; [n_seg + 1] offsets */
    const int32_t *klen, *cu_q, *cu_k;
    float scale, scale_log2;
    int stride_perm;
    int lheads;
    int block, words;
    bsa_pred pred;
    /* tile tables */
    int n_qt, n_kt, ns, log2g;
    const int32_t *row_tptr, *col_tptr, *q_order, *k_order, *sub, *sub_pred;
    int pred_tiles; /* bsa_cuda_layout::pred_tiles */
    const int2 *row_tent, *col_tent;
    /* layout tables */
    const int32_t *mask_idx, *row_ptr, *col_idx, *col_ptr, *t_block, *t_row;
    const uint64_t *bits;
    const int32_t *kgrp; /* see bsa_cuda_layout; NULL: natural key tiles */
    int kg;
    /* block-row lists (see bsa_cuda_layout; NULL when not built) */
    const int32_t *brow_rptr, *brow_cptr, *brow_qord, *brow_kord;
    const int4 *brow_rent, *brow_cent;
} bsa_cuda_params;

#ifdef __cplusplus
extern "C" {
#endif
/* Host: build and upload the tile tables (tiles.cu). */
bsa_status bsa_cuda_build_tiles(const struct bsa_layout *l, bsa_cuda_layout *dl);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
/* The plan's part of the parameters (params.cu); the call sets the tensors,
 * and bsa_cuda_set_segments its key lengths and packed-sequence offsets. */
bsa_cuda_params bsa_cuda_make_params(const struct bsa_plan *plan);
void bsa_cuda_set_segments(bsa_cuda_params &p, const int32_t *klen, const int32_t *cu_q,
                           const int32_t *cu_k, int num_seqs);
/* Whether a call uses a feature beyond the seed (key lengths, packed
 * sequences, kv groups): the kernels compiled with their code take it. */
static inline bool bsa_cuda_has_features(const bsa_cuda_params &p)
{
    return p.klen || p.cu_q || p.group > 1;
}
/* The backward's workspace for rows = batch * heads * seq_q query rows:
 * delta = rowsum(dO * O) and the exponent offsets -lse log2(e) (-inf for a
 * row without keys), fp32 a row each, both written by the delta pre-pass
 * so that the backward kernels copy them into shared memory asynchronously
 * (they loaded and converted the lse, waiting on it, every step). */
static inline size_t bsa_cuda_ws_part_bytes(int64_t rows)
{
    return (size_t)((rows * 4 + 255) & ~(int64_t)255);
}
static inline size_t bsa_cuda_workspace_bytes(int64_t rows)
{
    return 2 * bsa_cuda_ws_part_bytes(rows);
}
static inline void bsa_cuda_set_workspace(bsa_cuda_params &p, void *ws, int64_t rows)
{
    p.delta = static_cast<float *>(ws);
    p.loff = reinterpret_cast<float *>(static_cast<char *>(ws) + bsa_cuda_ws_part_bytes(rows));
}
/* Launchers (return cudaGetLastError() of the launch). */
/* FWD: 64-row forward on natural key tiles; FWD_GATHER: on gathered ones;
 * FWD_WGMMA2 / FWD_WGMMA1: the Hopper forward on 128- / 64-row tiles;
 * DQ_WGMMA2: the Hopper dQ on 128-row tiles. */
enum bsa_cuda_kernel {
    BSA_K_FWD = 0,
    BSA_K_DQ = 1,
    BSA_K_DKDV = 2,
    BSA_K_FWD2 = 3,
    BSA_K_FWD_GATHER = 4,
    BSA_K_FWD_WGMMA2 = 5,
    BSA_K_FWD_WGMMA1 = 6,
    BSA_K_DQ_WGMMA2 = 7,
    BSA_K_DKDV_WGMMA2 = 8,
    BSA_K_FWD_CHUNK = 9, /* chunk-local layouts: forward, and */
    BSA_K_BWD_CHUNK = 10 /* dQ, dK, dV in one kernel (chunk_kernels.cuh) */
};
/* Tensor-core path: dtype F16/BF16, padded head dim 32/64/128/256 (FWD2, the
 * 128-row forward: 32/64/128; on AMD see gen_instances.py); wave: the
 * device's warp width (blocks are 4 warps). */
cudaError_t bsa_cuda_tc_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                               cudaStream_t s, int wave = 32);
/* Shared memory the tensor-core kernel needs, and its one-time attribute set-up. */
size_t bsa_cuda_tc_smem(int kernel, int dpad);
cudaError_t bsa_cuda_tc_setup(int kernel, bsa_dtype dt, int dpad);
#if !defined(BSA_VENDOR_HIP)
/* Hopper kernels (wgmma, sm_90a; backends/cuda/hopper/): built only when
 * the architecture list holds sm_90; f16/bf16, padded head dim 64/128,
 * natural key tiles. */
bool bsa_cuda_wgmma_built();
size_t bsa_cuda_wgmma_smem(int kernel, int dpad);
cudaError_t bsa_cuda_wgmma_setup(int kernel, bsa_dtype dt, int dpad);
cudaError_t bsa_cuda_wgmma_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                  cudaStream_t s);
/* The warp-specialised forward alone (hopper/fwd_ws_wgmma.cuh, set up by
 * bsa_cuda_wgmma_setup(BSA_K_FWD_WGMMA2)): false, with nothing launched,
 * where it does not apply to the call (key lengths, packed sequences, the
 * strided permutation, tensors TMA cannot address); else *e. */
bool bsa_cuda_ws_launch(bsa_dtype dt, int dpad, const bsa_cuda_params &p, cudaStream_t s,
                        cudaError_t *e);
/* The Hopper forward of chunk-local layouts (hopper/fwd_chunk_wgmma.cuh):
 * f16/bf16, padded head dim 64/128, the calls the chunk kernels take. */
size_t bsa_cuda_wgmma_chunk_smem(int dpad);
cudaError_t bsa_cuda_wgmma_chunk_setup(bsa_dtype dt, int dpad);
cudaError_t bsa_cuda_wgmma_chunk_launch(bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                        cudaStream_t s);
/* Chunk-local layouts (bsa_cuda_layout.chunk_local): f16/bf16, padded
 * head dim 32/64/128, calls without key lengths, packed sequences or kv
 * groups; the backward kernel needs the delta pre-pass before it. */
size_t bsa_cuda_chunk_smem(int kernel, int dpad);
cudaError_t bsa_cuda_chunk_setup(bsa_dtype dt, int dpad);
cudaError_t bsa_cuda_chunk_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                  cudaStream_t s);
/* Block-row kernels (brow_kernels.cuh; layouts with brow lists): kernel
 * BSA_K_FWD, BSA_K_DQ or BSA_K_DKDV, f16/bf16, padded head dim 32/64,
 * calls without key lengths, packed sequences or kv groups; dQ and dK/dV
 * need the delta pre-pass before them. */
size_t bsa_cuda_brow_smem(int kernel, int dpad);
cudaError_t bsa_cuda_brow_setup(bsa_dtype dt, int dpad);
cudaError_t bsa_cuda_brow_launch(int kernel, bsa_dtype dt, int dpad, const bsa_cuda_params &p,
                                 cudaStream_t s);
#endif
/* Volta path (wmma, sm_70+): f16, padded head dim 32/64/128. */
cudaError_t bsa_cuda_volta_launch(int kernel, int dpad, const bsa_cuda_params &p, cudaStream_t s);
size_t bsa_cuda_volta_smem(int kernel, int dpad);
cudaError_t bsa_cuda_volta_setup(int kernel, int dpad);
/* Scalar fp32 reference path: any dtype, any head dim <= 256. */
cudaError_t bsa_cuda_ref_launch(int kernel, const bsa_cuda_params &p, cudaStream_t s);
/* Grid of x blocks per (segment, head) pair, nbh pairs over y (and z past
 * 65535: see grid_bh in device_common.cuh). */
static inline dim3 bsa_cuda_grid(unsigned x, int64_t nbh)
{
    unsigned y = nbh < 65535 ? (unsigned)(nbh > 0 ? nbh : 1) : 65535u;
    return dim3(x, y, (unsigned)((nbh + y - 1) / y));
}
/* delta = rowsum(dO * O), natural order, fp32. */
cudaError_t bsa_cuda_delta_launch(const bsa_cuda_params &p, cudaStream_t s);
#endif

#endif
