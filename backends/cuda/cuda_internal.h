/*
 * CUDA backend internals shared by the host glue and the kernel files; the
 * same text compiles as HIP (vendor.h).  The layout's tables are built on
 * the host by backends/gpu/tile_tables.cpp (64 x 64 tile pairs in natural
 * and gathered key-tile forms, block-row lists) and uploaded here once; the
 * implementation list (backends/gpu/dispatch.c) picks the kernels at plan
 * creation.
 */
#ifndef BSA_CUDA_INTERNAL_H
#define BSA_CUDA_INTERNAL_H

/* first: under HIP it defines __host__ / __device__ for the headers below */
#include "vendor.h" /* the CUDA runtime, or HIP under its CUDA names */

#include "../backend.h"
#include "../gpu/dispatch.h"

#include <stdint.h>

#define BSA_CUDA_TILE 64 /* = BSA_GPU_TILE (tile_tables.h) */

/* Sub-block codes of a mixed tile pair (= BSA_GPU_SUB_*): >= 0 is the
 * layout's bits index (mask_idx) of a partial block with stored bits. */
#define BSA_CUDA_SUB_ABSENT (-1)
#define BSA_CUDA_SUB_FULL (-2)
#define BSA_CUDA_SUB_PRED (-3)

/* One key-tile form's device tables (see tile_tables.h). */
typedef struct bsa_cuda_tiles {
    int32_t *row_tptr; /* [lheads * (n_qt + 1)] */
    int2 *row_tent;    /* {key tile, mixed pair or -1} sorted by key tile */
    int32_t *col_tptr; /* [lheads * (n_kt + 1)] */
    int2 *col_tent;    /* {query tile, mixed pair or -1} sorted by query tile */
    int32_t *q_order;  /* [lheads * n_qt] query tiles, heaviest first */
    int32_t *k_order;  /* [lheads * n_kt] key tiles, heaviest first */
    int32_t *sub;      /* [mixed * ns * ns] BSA_CUDA_SUB_* or bits index */
    int32_t *sub_pred; /* [mixed] 1: the layout's predicate over the whole tile */
    int pred_tiles;    /* every mixed pair is one */
    /* gathered: [lheads][n_kt][kg] key block of each slot (-1 past the
     * end); NULL in the natural form (key tile kt = keys [64 kt, 64 kt + 64)) */
    int32_t *kgrp;
} bsa_cuda_tiles;

/* Device copy of a layout (layout->backend_data). */
typedef struct bsa_cuda_layout {
    int device;
    int n_qt, n_kt;             /* query / key tiles of TILE rows */
    int ns, log2g;              /* sub-blocks per tile side, log2 of their size */
    int kg;                     /* key blocks per gathered key tile */
    bsa_gpu_layout_stats stats; /* what the implementation list reads */
    void *dev_mem;              /* one allocation, carved */
    bsa_cuda_tiles form[2];     /* natural, gathered (stats.gathered) */
    int32_t *mask_idx;          /* [nnz] the layout's */
    uint64_t *bits;             /* [n_partial * block * words] */
    int32_t *row_ptr;           /* the layout's CSR, for the reference kernels */
    int32_t *col_idx;
    int32_t *col_ptr;
    int32_t *t_block;
    int32_t *t_row;
    /* Block-row lists (stats.brow; brow_kernels.cuh).  Per layout head:
     * brow_rptr [q_blocks + 1] indexes brow_rent, the query block's kept
     * key blocks two to an entry {k0, k1 (-1: none), code0, code1}
     * (BSA_CUDA_SUB_* or bits index); brow_cptr [k_blocks + 1] and brow_cent
     * the same of key blocks' query blocks; brow_qord / brow_kord
     * [(blocks + 1) / 2 * 2]: the blocks two to a thread block, longest
     * lists first (-1: none). */
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
/* Builds the layout's tables and uploads them (tiles.cu). */
bsa_status bsa_cuda_upload_layout(const struct bsa_layout *l, bsa_cuda_layout *dl);

/* The plan's part of the parameters (params.cu) on key-tile form `gather`;
 * the call sets the tensors, and bsa_cuda_set_segments its key lengths and
 * packed-sequence offsets. */
bsa_cuda_params bsa_cuda_make_params(const struct bsa_plan *plan, int gather);
void bsa_cuda_set_segments(bsa_cuda_params &p, const int32_t *klen, const int32_t *cu_q,
                           const int32_t *cu_k, int num_seqs);
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

/* One kernel instance, resolved at plan creation: its launch handle (null
 * where this build has none), threads per block and dynamic shared memory. */
struct bsa_cuda_instance {
    bsa_gpu_kernel k;
    const void *fn;
    unsigned threads;
    size_t smem;
};
/* Instance variants: feat: the code of the features beyond the seed (kv
 * groups, key lengths, packed sequences); pred: the layout's mixed tile
 * pairs are all predicate tiles (interval masks); gather: gathered key
 * tiles.  Each family's table of instances (launch.cu, kernel_instances.h)
 * answers null for a combination it does not compile. */
bsa_cuda_instance bsa_cuda_instance_of(bsa_gpu_kernel k, bsa_dtype dt, int dpad, bool feat,
                                       bool pred, bool gather, int wave, bsa_gpu_target target);
/* Sets the instance's shared-memory limit (once, at plan creation,
 * outside any stream capture). */
cudaError_t bsa_cuda_instance_setup(const bsa_cuda_instance &in);
/* The one launch of every family: the instance's grid for the call's
 * parameters, on the caller's stream; cudaGetLastError() of the launch. */
cudaError_t bsa_cuda_launch(const bsa_cuda_instance &in, const bsa_cuda_params &p, cudaStream_t s);
/* The backward's pre-pass, delta = rowsum(dO * O) in natural order, fp32,
 * and the lse offsets: its instance for a plan (16-byte chunks where every
 * row of o / dout is 16-byte aligned: align >= 16, strides and dim_v in
 * whole chunks), and its launch. */
bsa_cuda_instance bsa_cuda_delta_instance(bsa_dtype dt, int dim_v, const int64_t *o_strides,
                                          size_t align);
cudaError_t bsa_cuda_delta_launch(const bsa_cuda_instance &in, const bsa_cuda_params &p,
                                  cudaStream_t s);

/* Grid of x blocks per (segment, head) pair, nbh pairs over y (and z past
 * 65535: see grid_bh in device_common.cuh). */
static inline dim3 bsa_cuda_grid(unsigned x, int64_t nbh)
{
    unsigned y = nbh < 65535 ? (unsigned)(nbh > 0 ? nbh : 1) : 65535u;
    return dim3(x, y, (unsigned)((nbh + y - 1) / y));
}
#endif

#endif
