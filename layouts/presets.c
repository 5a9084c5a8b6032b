/*
 * The seed's patterns (openai/sparse_attention get_blocksparse_obj +
 * get_callback), as block enumerators plus built-in predicates.  Each row
 * enumerator writes only the blocks it keeps, so a preset costs
 * O(kept blocks).  Causal forms reproduce the seed's block counts; the
 * bidirectional forms drop the causal cut.
 */
#include "layout.h"
#include "../api/internal.h"

#include <limits.h>

static const char fn[] = "bsa_layout_create_preset";

typedef struct preset_rows {
    int nb;     /* blocks per side */
    int B;      /* block size */
    int L;      /* ctx */
    int causal; /* 1 = the seed's mode */
    int chunks; /* strided: blocks per residue class */
    int S;      /* fixed: blocks per window */
    int nv, vs; /* fixed: summary columns */
} preset_rows;

static int fill_range(int32_t *kb, int lo, int hi)
{
    int n = 0;
    for (int k = lo; k <= hi; k++)
        kb[n++] = k;
    return n;
}

static int rows_all(void *self, int h, int qb, int32_t *kb)
{
    const preset_rows *p = self;
    return fill_range(kb, 0, p->causal ? qb : p->nb - 1);
}

/* Blocks that hold any key within L-1 positions of the row's queries;
 * predicates CAUSAL|WINDOW (or WINDOW) cut the elements.  With L % B == 0
 * this is the seed's e+1 diagonals (e = L/B). */
static int rows_local(void *self, int h, int qb, int32_t *kb)
{
    const preset_rows *p = self;
    int64_t reach = ((int64_t)p->L - 1 + p->B - 1) / p->B; /* ceil((L-1)/B) */
    int64_t lo = qb - reach, hi = p->causal ? qb : qb + reach;
    return fill_range(kb, lo < 0 ? 0 : (int)lo, hi >= p->nb ? p->nb - 1 : (int)hi);
}

/* In permuted order each residue class mod L is a run of `chunks` blocks. */
static int rows_strided(void *self, int h, int qb, int32_t *kb)
{
    const preset_rows *p = self;
    int lo = qb - qb % p->chunks;
    return fill_range(kb, lo, p->causal ? qb : lo + p->chunks - 1);
}

/* Head h's summary offsets within a window: S-1-(h mod nv)*vs - t, t < vs,
 * i.e. the ascending run [first, first + vs). */
static int summary_first(const preset_rows *p, int h)
{
    return p->S - (h % p->nv) * p->vs - p->vs;
}

/* Summary columns of every other window, plus the whole own window; the
 * causal form stops at qb (and CAUSAL cuts the diagonal block). */
static int rows_fixed(void *self, int h, int qb, int32_t *kb)
{
    const preset_rows *p = self;
    int S = p->S, first = summary_first(p, h), own = qb / S, n = 0;
    int last = p->causal ? qb : p->nb - 1;
    int windows = (last + S) / S; /* windows holding a block <= last */
    for (int w = 0; w < windows; w++) {
        int base = w * S;
        int lo = w == own ? base : base + first;
        int hi = w == own ? base + S - 1 : base + first + p->vs - 1;
        if (hi > last)
            hi = last;
        for (int k = lo; k <= hi; k++)
            kb[n++] = k;
    }
    return n;
}

static bsa_status check_positive(const char *name, int v)
{
    if (v < 1)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT, "%s: preset->%s = %d must be >= 1", fn, name,
                        v);
    return BSA_SUCCESS;
}

static bsa_status check_fixed(const bsa_preset *pr)
{
    bsa_status st;
    if ((st = check_positive("num_verts", pr->num_verts)) ||
        (st = check_positive("vertsize", pr->vertsize)))
        return st;
    int S = pr->ctx / pr->block, nv = pr->num_verts, vs = pr->vertsize;
    if (pr->ctx % pr->block)
        return bsa_fail(BSA_ERROR_INVALID_SHAPE,
                        "%s: fixed pattern: preset->ctx = %d must be a multiple of block %d", fn,
                        pr->ctx, pr->block);
    if (pr->heads % nv)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: fixed pattern: preset->heads = %d must be a multiple of num_verts %d",
                        fn, pr->heads, nv);
    if (vs > S)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: fixed pattern: preset->vertsize = %d exceeds ctx/block = %d blocks "
                        "per window",
                        fn, vs, S);
    if (S % vs)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: fixed pattern: ctx/block = %d blocks per window must be a multiple "
                        "of preset->vertsize = %d",
                        fn, S, vs);
    if (nv > S / vs)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: fixed pattern: preset->num_verts = %d exceeds (ctx/block)/vertsize = "
                        "%d distinct summary column sets",
                        fn, nv, S / vs);
    return BSA_SUCCESS;
}

static bsa_status check_preset(const bsa_preset *pr)
{
    bsa_status st;
    if ((unsigned)pr->pattern > BSA_PATTERN_DOCUMENT)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: preset->pattern = %d is not a bsa_pattern (0..%d)", fn,
                        (int)pr->pattern, (int)BSA_PATTERN_DOCUMENT);
    int B = pr->block;
    if (B != 8 && B != 16 && B != 32 && B != 64 && B != 128)
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "%s: preset->block = %d; supported block sizes are 8, 16, 32, 64 and 128",
                        fn, B);
    if ((st = check_positive("seq", pr->seq)) || (st = check_positive("heads", pr->heads)))
        return st;
    if (pr->bidirectional != 0 && pr->bidirectional != 1)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: preset->bidirectional = %d must be 0 (causal) or 1", fn,
                        pr->bidirectional);
    if (pr->seq % B)
        return bsa_fail(BSA_ERROR_INVALID_SHAPE,
                        "%s: preset->seq = %d is not a multiple of block %d", fn, pr->seq, B);
    if (pr->pattern == BSA_PATTERN_ALL || pr->pattern > BSA_PATTERN_FIXED)
        return BSA_SUCCESS; /* the later patterns check their own fields */
    if ((st = check_positive("ctx", pr->ctx)))
        return st;
    if (pr->pattern == BSA_PATTERN_STRIDED && (pr->seq % pr->ctx || (pr->seq / pr->ctx) % B))
        return bsa_fail(BSA_ERROR_INVALID_SHAPE,
                        "%s: strided pattern: preset->seq = %d must be a multiple of ctx %d, and "
                        "seq/ctx a multiple of block %d (the permuted classes are whole blocks)",
                        fn, pr->seq, pr->ctx, B);
    if (pr->pattern == BSA_PATTERN_FIXED)
        return check_fixed(pr);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_layout_create_preset(bsa_context_t ctx, bsa_layout_t *layout,
                                            const bsa_preset *preset)
{
    if (!ctx || !layout || !preset)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "%s: %s is NULL", fn,
                        !ctx      ? "ctx"
                        : !layout ? "layout"
                                  : "preset");
    bsa_status st = check_preset(preset);
    if (st)
        return st;

    const bsa_preset *pr = preset;
    if (pr->pattern > BSA_PATTERN_FIXED)
        return bsa_layout_create_preset_ext(ctx, pr, layout);
    preset_rows rows = {0};
    rows.nb = pr->seq / pr->block;
    rows.B = pr->block;
    rows.L = pr->ctx;
    rows.causal = !pr->bidirectional;
    bsa_layout_desc d = {0};
    d.block = pr->block;
    d.heads = 1;
    d.q_blocks = d.k_blocks = rows.nb;
    d.predicates = rows.causal ? BSA_PRED_CAUSAL : BSA_PRED_NONE;
    int stride_perm = 0;
    bsa_layout_source src = {&rows, NULL, NULL};

    switch (pr->pattern) {
    case BSA_PATTERN_ALL:
        src.row_blocks = rows_all;
        break;
    case BSA_PATTERN_LOCAL:
        src.row_blocks = rows_local;
        d.predicates |= BSA_PRED_WINDOW;
        d.window = pr->ctx;
        break;
    case BSA_PATTERN_STRIDED:
        src.row_blocks = rows_strided;
        rows.chunks = pr->seq / pr->ctx / pr->block;
        /* Bidirectional: whole residue classes are whole blocks, no mask. */
        stride_perm = pr->ctx;
        break;
    case BSA_PATTERN_FIXED:
        src.row_blocks = rows_fixed;
        rows.S = pr->ctx / pr->block;
        rows.nv = pr->num_verts;
        rows.vs = pr->vertsize;
        d.heads = pr->num_verts == 1 ? 1 : pr->heads;
        break;
    default: /* the later patterns went to bsa_layout_create_preset_ext */
        break;
    }
    return bsa_layout_build(ctx, &d, stride_perm, &src, fn, layout);
}
