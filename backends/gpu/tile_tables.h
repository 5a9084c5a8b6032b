/*
 * The GPU backends' layout tables, built on the host (no GPU runtime) once
 * per layout: the layout's block lists as lists of 64 x 64 tile pairs
 * (query tile, key tile), rows and transposed columns, in both key-tile
 * forms (natural and, for blocks below 64, gathered), the block-row lists
 * of 32-wide layouts, and the statistics the implementation list reads
 * (dispatch.h).  Building chooses nothing: every table an entry may use is
 * built, and the plan picks among them.  O(kept blocks + tiles), never
 * O(T^2).
 *
 * A pair whose sub-blocks are all present and FULL runs with no mask code;
 * any other pair ("mixed") points at a table of the code of each of its
 * ns x ns sub-blocks (BSA_GPU_SUB_*, or the index of its stored bits).
 * This is how blocks of 8..32 share one tile and how 128-blocks split in four.
 */
#ifndef BSA_GPU_TILE_TABLES_H
#define BSA_GPU_TILE_TABLES_H

#include "dispatch.h"

#define BSA_GPU_TILE 64

/* Sub-block codes of a mixed tile pair: >= 0 is the layout's bits index
 * (mask_idx) of a partial block with stored bits. */
#define BSA_GPU_SUB_ABSENT (-1)
#define BSA_GPU_SUB_FULL (-2)
#define BSA_GPU_SUB_PRED (-3)

#ifdef __cplusplus
extern "C" {
#endif
/* The statistics alone (the tables built, measured and dropped): for tests
 * and tools. */
bsa_status bsa_gpu_layout_stats_of(const struct bsa_layout *l, bsa_gpu_layout_stats *out);
#ifdef __cplusplus
}

#include <vector>

/* Layout-compatible with CUDA's int2 / int4 (the device reads them so). */
struct bsa_tile_pair {
    int32_t x, y; /* {other side's tile, mixed pair or -1} */
};
struct bsa_block_pair {
    int32_t x, y, z, w; /* {block, second block or -1, code, code} */
};

/* One key-tile form's lists, per layout head. */
struct bsa_tile_form {
    std::vector<int32_t> row_tptr;       /* [heads * (n_qt + 1)] */
    std::vector<bsa_tile_pair> row_tent; /* {key tile, mixed pair or -1} by key tile */
    std::vector<int32_t> col_tptr;       /* [heads * (n_kt + 1)] */
    std::vector<bsa_tile_pair> col_tent; /* {query tile, mixed pair or -1} by query tile */
    std::vector<int32_t> q_order;        /* [heads * n_qt] query tiles, heaviest first */
    std::vector<int32_t> k_order;        /* [heads * n_kt] key tiles, heaviest first */
    std::vector<int32_t> sub;            /* [mixed * ns * ns] sub-block codes */
    std::vector<int32_t> sub_pred;       /* [mixed] 1: the predicate over the whole tile */
    std::vector<int32_t> grp;            /* gathered: [heads][n_kt][kg] key block per slot */
    int pred_tiles = 0;                  /* every mixed pair is one */
};

/* One side of the block-row lists: rows (query blocks, their key blocks)
 * or columns (key blocks, their query blocks), two blocks to an entry;
 * ord: the blocks two to a thread block, longest lists first (-1: none). */
struct bsa_brow_side {
    std::vector<int32_t> ptr, ord;
    std::vector<bsa_block_pair> ent;
};

struct bsa_tile_tables {
    int n_qt = 0, n_kt = 0;       /* query / key tiles of 64 rows */
    int ns = 0, log2g = 0;        /* sub-blocks per tile side, log2 of their size */
    int kg = 1;                   /* key blocks per gathered key tile */
    bsa_tile_form form[2];        /* natural, gathered (empty unless stats.gathered) */
    bsa_brow_side brow_r, brow_c; /* empty unless stats.brow */
    bsa_gpu_layout_stats stats;
};

/* Builds every table; BSA_ERROR_OUT_OF_MEMORY on host memory. */
bsa_status bsa_tile_tables_build(const struct bsa_layout *l, bsa_tile_tables *t);
#endif

#endif
