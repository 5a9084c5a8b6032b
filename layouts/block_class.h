/*
 * Block-level view of the built-in predicates (internal): whether a
 * predicate keeps every, some or none of the elements of a block, and how
 * many.  Decided from interval arithmetic on the block's corners, so
 * building a layout never visits the elements of predicate-only blocks.
 */
#ifndef BSA_BLOCK_CLASS_H
#define BSA_BLOCK_CLASS_H

#include "mask_predicates.h"

#include <stdint.h>

typedef enum bsa_block_class {
    BSA_CLASS_EMPTY = 0,   /* no element kept: the block is dropped */
    BSA_CLASS_PARTIAL = 1, /* some kept */
    BSA_CLASS_FULL = 2     /* every element kept */
} bsa_block_class;

/* Class of the B x B block whose first element is (q0, k0). */
bsa_block_class bsa_block_classify(const bsa_pred *p, int64_t q0, int64_t k0, int block);

/* Elements of that block that p keeps, in O(block). */
int64_t bsa_block_kept(const bsa_pred *p, int64_t q0, int64_t k0, int block);

/* A key-block range [*lo, *hi] outside which p keeps nothing in query-block
 * row qb (an over-estimate: prefix is ignored); *lo > *hi when empty. */
void bsa_block_key_range(const bsa_pred *p, int qb, int block, int k_blocks, int *lo, int *hi);

#endif
