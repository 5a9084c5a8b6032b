/*
 * Compiles a block source into the shared layout: CSR rows, the full /
 * predicate / bits split, packed bits for callback masks, and the
 * transposed column lists.  One pass over the kept blocks; the tables grow
 * geometrically because presets know their blocks only row by row.
 */
#include "layout.h"
#include "block_class.h"
#include "../api/internal.h"
#include "../backends/backend.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

int bsa_layout_fail_alloc_at = 0;

/* Every host allocation of the build goes through here, so the test hook
 * can fail any one of them. */
static void *xrealloc(void *p, int64_t count, size_t elem)
{
    if (bsa_layout_fail_alloc_at > 0 && --bsa_layout_fail_alloc_at == 0)
        return NULL;
    if (count < 1)
        count = 1; /* an empty layout still gets real (freeable) tables */
    if ((uint64_t)count > SIZE_MAX / elem)
        return NULL;
    return realloc(p, (size_t)count * elem);
}

void bsa_layout_free(struct bsa_layout *l)
{
    if (!l)
        return;
    free(l->head_ptr);
    free(l->row_ptr);
    free(l->col_idx);
    free(l->row_of);
    free(l->mask_idx);
    free(l->bits);
    free(l->col_ptr);
    free(l->t_block);
    free(l->t_row);
    free(l);
}

/* Build state beyond the layout itself. */
typedef struct builder {
    struct bsa_layout *l;
    int64_t cap;      /* blocks the per-block tables hold */
    int64_t bits_cap; /* blocks the bits table holds */
    const char *fn;
} builder;

static bsa_status oom(const builder *b, const char *what, int64_t count)
{
    return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "%s: out of host memory allocating %s (%lld entries)",
                    b->fn, what, (long long)count);
}

static bsa_status grow_blocks(builder *b)
{
    struct bsa_layout *l = b->l;
    int64_t cap = b->cap < 64 ? 64 : b->cap * 2;
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    int32_t *p;
    if (!(p = xrealloc(l->col_idx, cap, sizeof *p)))
        return oom(b, "the block list", cap);
    l->col_idx = p;
    if (!(p = xrealloc(l->row_of, cap, sizeof *p)))
        return oom(b, "the block list", cap);
    l->row_of = p;
    if (!(p = xrealloc(l->mask_idx, cap, sizeof *p)))
        return oom(b, "the block list", cap);
    l->mask_idx = p;
    b->cap = cap;
    return BSA_SUCCESS;
}

static bsa_status grow_bits(builder *b)
{
    struct bsa_layout *l = b->l;
    int64_t cap = b->bits_cap < 16 ? 16 : b->bits_cap * 2, words;
    if (!bsa_mul_ok(cap, (int64_t)l->block * l->words, &words))
        return bsa_fail(BSA_ERROR_OVERFLOW, "%s: the element bitmask table overflows", b->fn);
    uint64_t *p = xrealloc(l->bits, words, sizeof *p);
    if (!p)
        return oom(b, "element bitmasks", words);
    l->bits = p;
    b->bits_cap = cap;
    return BSA_SUCCESS;
}

/* Runs the callback on block (h, qb, kb), folds the predicates in, and
 * stores the bits unless every element survived.  Sets *mask_idx and adds
 * the kept elements to the layout's count. */
static bsa_status masked_block(builder *b, const bsa_layout_source *src, uint8_t *mask, int h,
                               int qb, int kb, int block_index, bsa_block_class cls,
                               int32_t *mask_idx)
{
    struct bsa_layout *l = b->l;
    int B = l->block, W = l->words;
    /* Entries the callback leaves alone read as dropped, not as garbage. */
    memset(mask, 0, (size_t)B * B);
    int rc = src->fill_mask(src->self, h, qb, kb, block_index, mask);
    if (rc)
        return bsa_fail(BSA_ERROR_CALLBACK,
                        "%s: the mask callback returned %d for head %d, query block %d, key "
                        "block %d (block_index %d)",
                        b->fn, rc, h, qb, kb, block_index);
    if (l->n_partial == b->bits_cap) {
        bsa_status st = grow_bits(b);
        if (st)
            return st;
    }
    uint64_t *row = l->bits + l->n_partial * B * W;
    int64_t kept = 0;
    memset(row, 0, (size_t)B * W * sizeof *row);
    for (int r = 0; r < B; r++) {
        int64_t q = (int64_t)qb * B + r;
        for (int c = 0; c < B; c++) {
            int keep = mask[r * B + c] != 0;
            if (keep && cls != BSA_CLASS_FULL)
                keep = bsa_pred_keep(&l->pred, q, (int64_t)kb * B + c);
            if (keep) {
                row[r * W + (c >> 6)] |= (uint64_t)1 << (c & 63);
                kept++;
            }
        }
    }
    l->kept_elements += kept;
    if (kept == (int64_t)B * B) {
        *mask_idx = BSA_BLOCK_FULL; /* the slot is reused by the next block */
        return BSA_SUCCESS;
    }
    /* An all-zero block stays: block indices must be those the callback saw. */
    *mask_idx = (int32_t)l->n_partial++;
    return BSA_SUCCESS;
}

/* Rows: every candidate of every row, classified, in row-major order. */
static bsa_status build_rows(builder *b, const bsa_layout_source *src)
{
    struct bsa_layout *l = b->l;
    int B = l->block;
    int32_t *cand = xrealloc(NULL, l->k_blocks, sizeof *cand);
    uint8_t *mask = src->fill_mask ? xrealloc(NULL, (int64_t)B * B, 1) : NULL;
    bsa_status st = BSA_SUCCESS;
    if (!cand || (src->fill_mask && !mask)) {
        st = oom(b, "scratch rows", l->k_blocks);
        goto done;
    }
    for (int h = 0; h < l->heads; h++) {
        l->head_ptr[h] = l->nnz;
        for (int qb = 0; qb < l->q_blocks; qb++) {
            int32_t *rp = l->row_ptr + (int64_t)h * (l->q_blocks + 1);
            rp[qb] = (int32_t)l->nnz;
            int n = src->row_blocks(src->self, h, qb, cand);
            for (int j = 0; j < n; j++) {
                int kb = cand[j];
                BSA_ASSERT(kb >= 0 && kb < l->k_blocks && (j == 0 || cand[j - 1] < kb));
                int64_t q0 = (int64_t)qb * B, k0 = (int64_t)kb * B;
                bsa_block_class cls =
                    l->pred.flags ? bsa_block_classify(&l->pred, q0, k0, B) : BSA_CLASS_FULL;
                if (cls == BSA_CLASS_EMPTY)
                    continue;
                if (l->nnz == INT32_MAX) {
                    st = bsa_fail(BSA_ERROR_OVERFLOW,
                                  "%s: more than %d kept blocks (the int32 block index limit)",
                                  b->fn, INT32_MAX - 1);
                    goto done;
                }
                if (l->nnz == b->cap && (st = grow_blocks(b)) != BSA_SUCCESS)
                    goto done;
                int64_t i = l->nnz;
                l->col_idx[i] = kb;
                l->row_of[i] = qb;
                if (src->fill_mask) {
                    st = masked_block(b, src, mask, h, qb, kb, (int)(i - l->head_ptr[h]), cls,
                                      &l->mask_idx[i]);
                    if (st)
                        goto done;
                } else if (cls == BSA_CLASS_FULL) {
                    l->mask_idx[i] = BSA_BLOCK_FULL;
                    l->kept_elements += (int64_t)B * B;
                } else {
                    l->mask_idx[i] = BSA_BLOCK_PRED;
                    l->kept_elements += bsa_block_kept(&l->pred, q0, k0, B);
                }
                if (l->mask_idx[i] != BSA_BLOCK_FULL)
                    l->n_masked++;
                l->nnz++;
            }
            if (l->nnz - rp[qb] > l->max_row_blocks)
                l->max_row_blocks = (int)(l->nnz - rp[qb]);
        }
        l->row_ptr[(int64_t)h * (l->q_blocks + 1) + l->q_blocks] = (int32_t)l->nnz;
    }
    l->head_ptr[l->heads] = l->nnz;
done:
    free(cand);
    free(mask);
    return st;
}

/* Columns: a counting sort by (head, key block); walking the blocks in
 * row-major order leaves each column sorted by query block. */
static bsa_status build_columns(builder *b)
{
    struct bsa_layout *l = b->l;
    int64_t kb1 = (int64_t)l->k_blocks + 1;
    if (!(l->col_ptr = xrealloc(NULL, l->heads * kb1, sizeof *l->col_ptr)) ||
        !(l->t_block = xrealloc(NULL, l->nnz, sizeof *l->t_block)) ||
        !(l->t_row = xrealloc(NULL, l->nnz, sizeof *l->t_row)))
        return oom(b, "the column lists", l->nnz);
    memset(l->col_ptr, 0, (size_t)(l->heads * kb1) * sizeof *l->col_ptr);
    for (int h = 0; h < l->heads; h++) {
        int32_t *cp = l->col_ptr + h * kb1;
        for (int64_t i = l->head_ptr[h]; i < l->head_ptr[h + 1]; i++)
            cp[l->col_idx[i] + 1]++;
        cp[0] = (int32_t)l->head_ptr[h];
        for (int kb = 0; kb < l->k_blocks; kb++) {
            if (cp[kb + 1] > l->max_col_blocks)
                l->max_col_blocks = cp[kb + 1];
            cp[kb + 1] += cp[kb];
        }
        /* cp[kb] is the next free slot of column kb while filling. */
        for (int64_t i = l->head_ptr[h]; i < l->head_ptr[h + 1]; i++) {
            int32_t j = cp[l->col_idx[i]]++;
            l->t_block[j] = (int32_t)i;
            l->t_row[j] = l->row_of[i];
        }
        for (int kb = l->k_blocks; kb > 0; kb--)
            cp[kb] = cp[kb - 1];
        cp[0] = (int32_t)l->head_ptr[h];
    }
    return BSA_SUCCESS;
}

bsa_status bsa_layout_build(bsa_context_t ctx, const bsa_layout_desc *desc, int stride_perm,
                            const bsa_layout_source *src, const char *fn, bsa_layout_t *out)
{
    int64_t rows, seq_q, seq_k, elems;
    if (!bsa_mul_ok(desc->q_blocks, desc->block, &seq_q) || seq_q > INT_MAX ||
        !bsa_mul_ok(desc->k_blocks, desc->block, &seq_k) || seq_k > INT_MAX)
        return bsa_fail(BSA_ERROR_OVERFLOW,
                        "%s: q_blocks %d or k_blocks %d times block %d exceeds %d positions", fn,
                        desc->q_blocks, desc->k_blocks, desc->block, INT_MAX);
    if (!bsa_mul_ok(desc->heads, (int64_t)desc->q_blocks + 1, &rows) || rows > INT32_MAX ||
        !bsa_mul_ok(desc->heads, (int64_t)desc->k_blocks + 1, &rows) || rows > INT32_MAX ||
        !bsa_mul_ok(seq_q, seq_k, &elems) || !bsa_mul_ok(elems, desc->heads, &elems))
        return bsa_fail(BSA_ERROR_OVERFLOW,
                        "%s: heads %d x blocks %d x %d overflows the layout's index tables", fn,
                        desc->heads, desc->q_blocks, desc->k_blocks);

    builder b = {0};
    b.fn = fn;
    struct bsa_layout *l = xrealloc(NULL, 1, sizeof *l);
    if (!l)
        return oom(&b, "the layout", 1);
    memset(l, 0, sizeof *l);
    b.l = l;
    l->ctx = ctx;
    l->block = desc->block;
    l->heads = desc->heads;
    l->q_blocks = desc->q_blocks;
    l->k_blocks = desc->k_blocks;
    l->seq_q = (int)seq_q;
    l->seq_k = (int)seq_k;
    l->pred.flags = desc->predicates;
    l->pred.window = desc->window;
    l->pred.prefix = desc->prefix;
    l->stride_perm = stride_perm;
    l->words = (desc->block + 63) / 64;

    bsa_status st;
    if (!(l->head_ptr = xrealloc(NULL, (int64_t)l->heads + 1, sizeof *l->head_ptr)) ||
        !(l->row_ptr = xrealloc(NULL, l->heads * ((int64_t)l->q_blocks + 1), sizeof *l->row_ptr))) {
        st = oom(&b, "the row lists", l->heads * ((int64_t)l->q_blocks + 1));
        goto fail;
    }
    if ((st = build_rows(&b, src)) != BSA_SUCCESS || (st = build_columns(&b)) != BSA_SUCCESS)
        goto fail;
    /* Give back the growth slack (a failed shrink keeps the larger block). */
    if (b.cap > l->nnz) {
        int32_t *p;
        if ((p = realloc(l->col_idx, (size_t)(l->nnz ? l->nnz : 1) * sizeof *p)))
            l->col_idx = p;
        if ((p = realloc(l->row_of, (size_t)(l->nnz ? l->nnz : 1) * sizeof *p)))
            l->row_of = p;
        if ((p = realloc(l->mask_idx, (size_t)(l->nnz ? l->nnz : 1) * sizeof *p)))
            l->mask_idx = p;
    }
    if (!l->col_idx) { /* no block at all: keep the tables non-NULL */
        if (!(l->col_idx = xrealloc(NULL, 1, 4)) || !(l->row_of = xrealloc(NULL, 1, 4)) ||
            !(l->mask_idx = xrealloc(NULL, 1, 4))) {
            st = oom(&b, "the block list", 1);
            goto fail;
        }
    }
    if (ctx && ctx->impl && ctx->impl->layout_prepare) {
        st = ctx->impl->layout_prepare(l);
        if (st) {
            if (l->backend_release)
                l->backend_release(l);
            goto fail;
        }
    }
    if (ctx)
        bsa_live_add(&ctx->live_layouts, 1);
    *out = l;
    return BSA_SUCCESS;
fail:
    bsa_layout_free(l);
    return st;
}
