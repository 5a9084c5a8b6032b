/*
 * The compiled block layout shared by every backend (internal).
 *
 * Coordinates are in layout order.  For the strided pattern the layout is
 * built on permuted time (the seed's strided_transpose); kernels address
 * natural-order tensors through bsa_perm_row() and nothing is copied.
 *
 * Per layout head h (0 <= h < heads):
 *   row_ptr[h * (q_blocks + 1) + qb] .. row_ptr[h * (q_blocks + 1) + qb + 1]
 *       index the kept blocks of query-block row qb.  Indices are global
 *       (head h's blocks start at head_ptr[h]), sorted by key block, and the
 *       global index order is row-major (h, qb, kb): the block index of the
 *       seed's sparse weight tensor is (global index - head_ptr[h]).
 *   col_idx[i]   key block of kept block i;
 *   mask_idx[i]  BSA_BLOCK_FULL (-1): every element kept, no mask code needed;
 *                BSA_BLOCK_PRED (-2): partial through the built-in predicates
 *                alone: evaluate bsa_pred_keep() (costs no memory);
 *                >= 0: partial block with stored bits (callback layouts),
 *                bits[(mask_idx[i] * block + r) * words + w] (bit c%64 of word
 *                c/64 = keep key c of row r), the predicates already folded in.
 *   Transposed lists for the backward pass:
 *   col_ptr[h * (k_blocks + 1) + kb] .. +1 index t_block[] and t_row[]:
 *       t_block[j] = global block index, t_row[j] = its query block,
 *       sorted by query block.
 *       col_ptr[h * (k_blocks + 1)] == head_ptr[h] (the t_ arrays follow
 *       the same per-head ranges as the block arrays).
 * Blocks whose elements the predicates mask entirely are dropped.  A
 * callback block whose bits are all zero is kept (as a bits block with no
 * element set), so that block indices stay those the callback was given;
 * a callback block whose bits are all ones becomes BSA_BLOCK_FULL.  Callback
 * layouts therefore have no BSA_BLOCK_PRED blocks.  Padding bits (c >=
 * block) are zero.
 */
#ifndef BSA_LAYOUT_H
#define BSA_LAYOUT_H

#include "bsa.h"
#include "mask_predicates.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BSA_BLOCK_FULL (-1)
#define BSA_BLOCK_PRED (-2)

struct bsa_layout {
    bsa_context_t ctx;
    int block, heads, q_blocks, k_blocks;
    int seq_q, seq_k;
    bsa_pred pred;   /* built-in predicates (folded into stored bits too) */
    int stride_perm; /* 0 or the stride L: permuted row p <-> natural row */

    int64_t nnz;       /* kept blocks, all heads */
    int64_t n_partial; /* blocks with bits */
    int64_t n_masked;  /* blocks that are not BSA_BLOCK_FULL (bits or predicates) */
    int words;         /* 64-bit words per block row: (block + 63) / 64 */
    int64_t *head_ptr; /* [heads + 1] */
    int32_t *row_ptr;  /* [heads * (q_blocks + 1)], global block indices */
    int32_t *col_idx;  /* [nnz] */
    int32_t *row_of;   /* [nnz] query block of each block */
    int32_t *mask_idx; /* [nnz] */
    uint64_t *bits;    /* [n_partial * block * words] */
    int32_t *col_ptr;  /* [heads * (k_blocks + 1)] */
    int32_t *t_block;  /* [nnz] */
    int32_t *t_row;    /* [nnz] */
    int max_row_blocks, max_col_blocks;
    int64_t kept_elements;

    /* A backend's device copy of the tables (owned by that backend). */
    void *backend_data;
    void (*backend_release)(struct bsa_layout *layout);
    int live_plans; /* plans on this layout (bsa_live_*): destroying it then is refused */
};

/* Where bsa_layout_build gets its blocks from.  row_blocks writes the
 * candidate key blocks of row (h, qb) in ascending order into kb (room for
 * k_blocks entries) and returns how many: presets enumerate only the blocks
 * they keep, so building one costs O(kept blocks), never O(q_blocks *
 * k_blocks); dense matrices scan their rows.  The builder classifies each
 * candidate against the predicates of the desc (full, partial or dropped,
 * decided in O(1) from the block's corner distances).  fill_mask, if not
 * NULL, is called once per surviving block with its index within head h
 * (row-major order) and writes the block's B x B element mask (nonzero =
 * keep); the predicates are folded into the stored bits.  It returns
 * nonzero to abort the build with BSA_ERROR_CALLBACK. */
typedef struct bsa_layout_source {
    void *self;
    int (*row_blocks)(void *self, int h, int qb, int32_t *kb);
    int (*fill_mask)(void *self, int h, int qb, int kb, int block_index, uint8_t *mask);
} bsa_layout_source;

/* Compiles desc (validated by the caller: block, heads, q_blocks, k_blocks,
 * predicates, window, prefix) and src into a new layout; stride_perm is 0 or
 * the strided pattern's L.  Checks every size product (BSA_ERROR_OVERFLOW)
 * and allocation (BSA_ERROR_OUT_OF_MEMORY), then lets the context's backend
 * prepare its copy of the tables.  *out is written only on success; nothing
 * leaks on failure.  fn names the public entry point in messages. */
bsa_status bsa_layout_build(bsa_context_t ctx, const bsa_layout_desc *desc, int stride_perm,
                            const bsa_layout_source *src, const char *fn, bsa_layout_t *out);

/* The presets beyond the seed (pattern > BSA_PATTERN_FIXED; layouts/
 * presets_ext.c), called by bsa_layout_create_preset after the common
 * checks (pointers, pattern range, block, seq, heads, bidirectional). */
bsa_status bsa_layout_create_preset_ext(bsa_context_t ctx, const bsa_preset *preset,
                                        bsa_layout_t *layout);

/* The sub-layout of one (query shard x key shard) sub-problem (layouts/
 * layout_slice.c): query block rows qmap[0..nq) and key block columns
 * kmap[0..nk) of l (global block indices, distinct), as a layout of nq x nk
 * blocks with l's heads whose elements are l's at the mapped positions:
 * predicates and callback bits are evaluated at the global positions and
 * stored as bits, so the sub-layout has no predicates and any backend's
 * kernels run it unchanged.  stride_perm is the sub-layout's own (0, or the
 * strided pattern's L over the sub-problem's length; the caller checked
 * that the shards cut whole permuted blocks).  Destroy it with
 * bsa_layout_destroy. */
bsa_status bsa_layout_slice(const struct bsa_layout *l, int nq, const int32_t *qmap, int nk,
                            const int32_t *kmap, int stride_perm, const char *fn,
                            bsa_layout_t *out);

/* Frees a layout's host tables and the layout itself (no backend release). */
void bsa_layout_free(struct bsa_layout *layout);

/* Test hook: when > 0, the n-th host allocation of the next builds fails
 * (counting down across calls), so tests can walk every out-of-memory path.
 * 0 = off.  Not thread-safe; never set outside tests. */
extern int bsa_layout_fail_alloc_at;

/* Keep test for element (qi, ki), both within block i (layout order). */
static inline int bsa_layout_keep(const struct bsa_layout *l, int64_t i, int qi, int ki)
{
    int32_t m = l->mask_idx[i];
    if (m == BSA_BLOCK_FULL)
        return 1;
    if (m == BSA_BLOCK_PRED)
        return bsa_pred_keep(&l->pred, (int64_t)l->row_of[i] * l->block + qi,
                             (int64_t)l->col_idx[i] * l->block + ki);
    const uint64_t *row = l->bits + ((int64_t)m * l->block + qi) * l->words;
    return (int)((row[ki >> 6] >> (ki & 63)) & 1u);
}

#ifdef __cplusplus
}
#endif
#endif
