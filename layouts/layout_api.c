/*
 * Public layout entry points: dense and callback creation, queries,
 * element masks, destruction.  Presets live in presets.c, the compiler in
 * layout_build.c.
 */
#include "layout.h"
#include "block_class.h"
#include "../api/internal.h"

#include <stdint.h>
#include <string.h>

static bsa_status check_desc(const char *fn, const bsa_layout_desc *d)
{
    int B = d->block;
    if (B != 8 && B != 16 && B != 32 && B != 64 && B != 128)
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "%s: desc->block = %d; supported block sizes are 8, 16, 32, 64 and 128", fn,
                        B);
    const char *name = d->heads < 1      ? "heads"
                       : d->q_blocks < 1 ? "q_blocks"
                       : d->k_blocks < 1 ? "k_blocks"
                                         : NULL;
    if (name)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT, "%s: desc->%s = %d must be >= 1", fn, name,
                        d->heads < 1      ? d->heads
                        : d->q_blocks < 1 ? d->q_blocks
                                          : d->k_blocks);
    unsigned known = BSA_PRED_CAUSAL | BSA_PRED_WINDOW | BSA_PRED_PREFIX;
    if (d->predicates & ~known)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: desc->predicates = 0x%x has unknown bits 0x%x (known: CAUSAL 0x1, "
                        "WINDOW 0x2, PREFIX 0x4)",
                        fn, d->predicates, d->predicates & ~known);
    if ((d->predicates & BSA_PRED_WINDOW) && d->window < 1)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: desc->window = %d must be >= 1 when BSA_PRED_WINDOW is set", fn,
                        d->window);
    if ((d->predicates & BSA_PRED_PREFIX) && d->prefix < 0)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: desc->prefix = %d must be >= 0 when BSA_PRED_PREFIX is set", fn,
                        d->prefix);
    return BSA_SUCCESS;
}

/* A dense block matrix (or every block, when blocks is NULL, narrowed to
 * the key range the predicates can reach so that causal or windowed
 * all-block callback layouts do not scan every row end to end). */
typedef struct dense_rows {
    const bsa_layout_desc *desc;
    const uint8_t *blocks;
    bsa_mask_callback callback;
    void *user;
} dense_rows;

static int rows_dense(void *self, int h, int qb, int32_t *kb)
{
    const dense_rows *s = self;
    int Kb = s->desc->k_blocks, lo = 0, hi = Kb - 1, n = 0;
    if (!s->blocks) {
        bsa_pred p = {s->desc->predicates, s->desc->window, s->desc->prefix};
        bsa_block_key_range(&p, qb, s->desc->block, Kb, &lo, &hi);
        for (int k = lo; k <= hi; k++)
            kb[n++] = k;
        return n;
    }
    const uint8_t *row = s->blocks + ((int64_t)h * s->desc->q_blocks + qb) * Kb;
    for (int k = 0; k < Kb; k++)
        if (row[k])
            kb[n++] = k;
    return n;
}

static int fill_callback(void *self, int h, int qb, int kb, int block_index, uint8_t *mask)
{
    const dense_rows *s = self;
    return s->callback(s->user, h, qb, kb, block_index, s->desc->block, mask);
}

BSA_API bsa_status bsa_layout_create_dense(bsa_context_t ctx, bsa_layout_t *layout,
                                           const bsa_layout_desc *desc, const uint8_t *blocks)
{
    static const char fn[] = "bsa_layout_create_dense";
    if (!ctx || !layout || !desc || !blocks)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "%s: %s is NULL", fn,
                        !ctx      ? "ctx"
                        : !layout ? "layout"
                        : !desc   ? "desc"
                                  : "blocks");
    bsa_status st = check_desc(fn, desc);
    if (st)
        return st;
    dense_rows s = {desc, blocks, NULL, NULL};
    bsa_layout_source src = {&s, rows_dense, NULL};
    return bsa_layout_build(ctx, desc, 0, &src, fn, layout);
}

BSA_API bsa_status bsa_layout_create_callback(bsa_context_t ctx, bsa_layout_t *layout,
                                              const bsa_layout_desc *desc, const uint8_t *blocks,
                                              bsa_mask_callback callback, void *user)
{
    static const char fn[] = "bsa_layout_create_callback";
    if (!ctx || !layout || !desc || !callback)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "%s: %s is NULL", fn,
                        !ctx      ? "ctx"
                        : !layout ? "layout"
                        : !desc   ? "desc"
                                  : "callback");
    bsa_status st = check_desc(fn, desc);
    if (st)
        return st;
    dense_rows s = {desc, blocks, callback, user};
    bsa_layout_source src = {&s, rows_dense, fill_callback};
    return bsa_layout_build(ctx, desc, 0, &src, fn, layout);
}

/* Destroying NULL is a no-op, as free(NULL) is. */
BSA_API bsa_status bsa_layout_destroy(bsa_layout_t layout)
{
    if (!layout)
        return BSA_SUCCESS;
    int plans = bsa_live_get(&layout->live_plans);
    if (plans > 0)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_layout_destroy: %d plan(s) still use the layout; destroy them first",
                        plans);
    if (layout->ctx)
        bsa_live_add(&layout->ctx->live_layouts, -1);
    if (layout->backend_release)
        layout->backend_release(layout);
    bsa_layout_free(layout);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_layout_get_info(bsa_layout_t layout, bsa_layout_info *info)
{
    bsa_status st = bsa_check_nonnull2("bsa_layout_get_info", layout, "layout", info, "info");
    if (st != BSA_SUCCESS)
        return st;
    const struct bsa_layout *l = layout;
    bsa_layout_info r;
    memset(&r, 0, sizeof r);
    r.block = l->block;
    r.heads = l->heads;
    r.q_blocks = l->q_blocks;
    r.k_blocks = l->k_blocks;
    r.seq_q = l->seq_q;
    r.seq_k = l->seq_k;
    r.stride_permutation = l->stride_perm;
    r.blocks_total = l->nnz;
    r.partial_blocks = l->n_masked;
    r.max_row_blocks = l->max_row_blocks;
    r.max_col_blocks = l->max_col_blocks;
    r.kept_elements = l->kept_elements;
    *info = r;
    return BSA_SUCCESS;
}

static bsa_status check_head(const char *fn, const struct bsa_layout *l, int head)
{
    if (head < 0 || head >= l->heads)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: head = %d is outside the layout's %d head(s) [0, %d)", fn, head,
                        l->heads, l->heads);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_layout_head_blocks(bsa_layout_t layout, int head, int64_t *count)
{
    static const char fn[] = "bsa_layout_head_blocks";
    bsa_status st = bsa_check_nonnull2(fn, layout, "layout", count, "count");
    if (st != BSA_SUCCESS)
        return st;
    st = check_head(fn, layout, head);
    if (st)
        return st;
    *count = layout->head_ptr[head + 1] - layout->head_ptr[head];
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_layout_element_mask(bsa_layout_t layout, int head, uint8_t *mask)
{
    static const char fn[] = "bsa_layout_element_mask";
    bsa_status st = bsa_check_nonnull2(fn, layout, "layout", mask, "mask");
    if (st != BSA_SUCCESS)
        return st;
    const struct bsa_layout *l = layout;
    st = check_head(fn, l, head);
    if (st)
        return st;
    int64_t bytes;
    if (!bsa_mul_ok(l->seq_q, l->seq_k, &bytes) || (uint64_t)bytes > SIZE_MAX)
        return bsa_fail(BSA_ERROR_OVERFLOW, "%s: %d x %d mask bytes overflow size_t", fn, l->seq_q,
                        l->seq_k);
    memset(mask, 0, (size_t)bytes);
    int B = l->block, sp = l->stride_perm;
    for (int64_t i = l->head_ptr[head]; i < l->head_ptr[head + 1]; i++) {
        int64_t q0 = (int64_t)l->row_of[i] * B, k0 = (int64_t)l->col_idx[i] * B;
        for (int r = 0; r < B; r++) {
            uint8_t *row = mask + bsa_perm_row(q0 + r, sp, l->seq_q) * l->seq_k;
            for (int c = 0; c < B; c++)
                if (bsa_layout_keep(l, i, r, c))
                    row[bsa_perm_row(k0 + c, sp, l->seq_k)] = 1;
        }
    }
    return BSA_SUCCESS;
}
