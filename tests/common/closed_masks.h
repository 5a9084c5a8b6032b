/*
 * Element masks from closed forms written in the tests, never from the
 * library's layout code: the oracle's masks.  A cm_source describes how a
 * test made its layout, in the test's own terms:
 *   - a preset: the element definitions of README "Patterns" (all, local,
 *     strided, fixed; seed-semantics §1.3/§1.5) and of bsa.h's bsa_pattern
 *     comments (sliding window, dilated, Longformer, BigBird, document),
 *     causal and bidirectional, in natural time order (the strided
 *     pattern's permutation is the library's business, not the mask's);
 *   - a dense or callback layout: the test's block matrix x the test's own
 *     callback bits x the predicates of bsa.h's BSA_PRED_* comments.
 * The attention suites give these masks to the double oracle, so a bug in
 * the layout compiler fails them; test_closed_masks.c compares the
 * library's bsa_layout_element_mask with them, once.
 *
 * BigBird's random key blocks: bsa.h says only "r random key blocks of q's
 * block row, drawn from seed (causal: among blocks <= q's)".  The draw is
 * specified in layouts/presets_ext.c (random_blocks) and reimplemented
 * here from that specification: row qb draws min(r, n) distinct blocks of
 * [0, n), n = blocks (causal: qb + 1), from a splitmix64 stream seeded
 * with seed ^ ((qb + 1) * 0xD1B54A32D192ED03): rejection of repeats when
 * 2r <= n, else a partial Fisher-Yates shuffle of 0..n-1.  A random block
 * is kept whole (then cut by causality).  test_features_presets.c checks
 * the draw's properties (whole blocks, at most r per row) without it.
 *
 * A callback is called once per kept block of each layout head, as the
 * library calls it, with the seed's blk_idx: the block's index within its
 * head in row-major order (a block of the matrix where the predicates leave
 * no element is not kept).  It runs again for every mask, so its bits must
 * depend on its arguments only (and on user state that stays the same).
 */
#ifndef BSA_CLOSED_MASKS_H
#define BSA_CLOSED_MASKS_H

#include "bsa.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cm_kind { CM_PRESET = 0, CM_DENSE = 1, CM_CALLBACK = 2 } cm_kind;

enum { CM_MAX_DOCS = 256 }; /* document presets: lengths held in the source */

typedef struct cm_source {
    cm_kind kind;
    bsa_preset preset;          /* CM_PRESET; doc_lengths left NULL: docs[] holds them */
    int32_t docs[CM_MAX_DOCS];  /* the document preset's lengths */
    bsa_layout_desc desc;       /* CM_DENSE, CM_CALLBACK */
    const uint8_t *blocks;      /* [desc.heads][q_blocks][k_blocks], borrowed; NULL: every
                                   block (callback layouts only) */
    bsa_mask_callback callback; /* CM_CALLBACK */
    void *user;                 /* borrowed: must live as long as the source is used */
} cm_source;

/* Sources.  The preset's document lengths are copied (at most CM_MAX_DOCS);
 * blocks and user are borrowed. */
cm_source cm_of_preset(const bsa_preset *preset);
cm_source cm_of_dense(const bsa_layout_desc *desc, const uint8_t *blocks);
cm_source cm_of_callback(const bsa_layout_desc *desc, const uint8_t *blocks,
                         bsa_mask_callback callback, void *user);

/* Layout heads (1, or H for the fixed pattern with num_verts > 1 and for
 * per-head matrices) and lengths the source describes. */
int cm_heads(const cm_source *s);
int64_t cm_seq_q(const cm_source *s);
int64_t cm_seq_k(const cm_source *s);

/* BSA_SUCCESS if s describes a layout of info's heads and lengths; else
 * prints both and returns BSA_ERROR_SHAPE_MISMATCH. */
bsa_status cm_check(const cm_source *s, const bsa_layout_info *info);

/* mask[q * seq_k + k] = 1 if query q sees key k (natural order), for one
 * layout head.  Returns 0, or the callback's nonzero return. */
int cm_head_mask(const cm_source *s, int head, uint8_t *mask);

/* Every layout head: [heads][seq_q][seq_k], malloc'd (free it); NULL when
 * a callback failed. */
uint8_t *cm_masks(const cm_source *s);

/* Creates the layout the source describes (the same arguments the test
 * would pass: bsa_layout_create_preset / _dense / _callback). */
bsa_status cm_create(bsa_context_t ctx, const cm_source *s, bsa_layout_t *layout);

#ifdef __cplusplus
}
#endif
#endif
