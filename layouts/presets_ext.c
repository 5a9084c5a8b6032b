/*
 * Presets beyond the seed: sliding window, dilated window, Longformer,
 * BigBird and the block-diagonal "document" mask.  Element definitions are
 * in bsa.h (bsa_pattern); the causal forms keep the same elements with
 * k <= q, through the CAUSAL predicate (which also drops the blocks above
 * the diagonal before they are looked at).
 *
 * Each row enumerator lists only key blocks that hold at least one kept
 * element, so construction costs O(kept blocks) block decisions (plus the
 * B x B bits of each kept block for the patterns that need element bits;
 * the sliding window needs none: it is the WINDOW predicate).  No
 * T x T array exists; the document mask keeps one int32 per position.
 */
#include "layout.h"
#include "../api/internal.h"

#include <stdlib.h>
#include <string.h>

static const char fn[] = "bsa_layout_create_preset";

typedef struct ext_rows {
    bsa_pattern pattern;
    int nb, B, causal;
    int64_t w;     /* window radius (ctx) */
    int64_t dil;   /* dilated: spacing */
    int64_t g;     /* global tokens */
    int r;         /* bigbird: random blocks per row */
    uint64_t seed; /* bigbird */
    int32_t *doc;  /* document: [seq] document of each position */
    int64_t *dofs; /* document: [num_docs + 1] offsets */
    int32_t *tmp;  /* bigbird: [nb] scratch of the shuffle */
    int cache_qb;  /* bigbird: the row whose random blocks cache holds */
    int cache_n;
    int32_t cache[1024];
} ext_rows;

static inline int64_t iabs64(int64_t x)
{
    return x < 0 ? -x : x;
}

/* floor division for possibly negative a (b > 0) */
static inline int64_t fdiv(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Random key blocks of row qb (bigbird): r distinct blocks of [0, n),
 * n = nb (causal: qb + 1), drawn from (seed, qb) only, so a row's blocks
 * never depend on other rows.  Writes them unsorted into out and returns
 * min(r, n).  Few blocks (2r <= n): rejection of repeats, O(r^2); else a
 * partial Fisher-Yates shuffle over the [nb] scratch, O(n) <= O(2r). */
static int random_blocks(const ext_rows *p, int qb, int32_t *out)
{
    int n = p->causal ? qb + 1 : p->nb;
    int r = p->r < n ? p->r : n;
    uint64_t st = p->seed ^ ((uint64_t)(qb + 1) * 0xD1B54A32D192ED03ull);
    if (2 * r <= n) {
        for (int i = 0; i < r; i++) {
            for (;;) {
                int32_t j = (int32_t)(splitmix64(&st) % (uint64_t)n);
                int dup = 0;
                for (int x = 0; x < i && !dup; x++)
                    dup = out[x] == j;
                if (!dup) {
                    out[i] = j;
                    break;
                }
            }
        }
        return r;
    }
    int32_t *perm = p->tmp;
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = 0; i < r; i++) {
        int j = i + (int)(splitmix64(&st) % (uint64_t)(n - i));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        out[i] = perm[i];
    }
    return r;
}

/* The bidirectional element definition (the causal cut is the predicate). */
static int ext_keep(const ext_rows *p, int64_t q, int64_t k)
{
    int64_t d = q - k;
    switch (p->pattern) {
    case BSA_PATTERN_DILATED:
        return iabs64(d) <= p->w * p->dil && d % p->dil == 0;
    case BSA_PATTERN_LONGFORMER:
    case BSA_PATTERN_BIGBIRD:
        return iabs64(d) <= p->w || q < p->g || k < p->g;
    case BSA_PATTERN_DOCUMENT:
        return p->doc[q] == p->doc[k];
    default:
        return iabs64(d) <= p->w;
    }
}

/* Key blocks [lo, hi] clipped to the matrix (and to qb when causal). */
static void clip(const ext_rows *p, int qb, int64_t *lo, int64_t *hi)
{
    if (*lo < 0)
        *lo = 0;
    int64_t top = p->causal ? qb : p->nb - 1;
    if (*hi > top)
        *hi = top;
}

/* Window blocks: key blocks holding a key within w of some query of qb. */
static void window_range(const ext_rows *p, int qb, int64_t reach, int64_t *lo, int64_t *hi)
{
    int64_t q0 = (int64_t)qb * p->B;
    *lo = fdiv(q0 - reach, p->B);
    *hi = (q0 + p->B - 1 + reach) / p->B;
    clip(p, qb, lo, hi);
}

static int sort_unique(int32_t *kb, int n)
{
    /* insertion sort: the lists are short and nearly sorted */
    for (int i = 1; i < n; i++) {
        int32_t x = kb[i];
        int j = i - 1;
        while (j >= 0 && kb[j] > x) {
            kb[j + 1] = kb[j];
            j--;
        }
        kb[j + 1] = x;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || kb[m - 1] != kb[i])
            kb[m++] = kb[i];
    return m;
}

static int rows_ext(void *self, int h, int qb, int32_t *kb)
{
    (void)h;
    ext_rows *p = self;
    int64_t B = p->B, q0 = (int64_t)qb * B, lo, hi;
    int n = 0;
    switch (p->pattern) {
    case BSA_PATTERN_SLIDING_WINDOW:
        window_range(p, qb, p->w, &lo, &hi);
        for (int64_t k = lo; k <= hi; k++)
            kb[n++] = (int32_t)k;
        return n;
    case BSA_PATTERN_DILATED:
        window_range(p, qb, p->w * p->dil, &lo, &hi);
        for (int64_t k = lo; k <= hi; k++) {
            /* differences q - k in the block: [a, b]; within the reach and
             * holding a multiple of the dilation? */
            int64_t a = q0 - (k * B + B - 1), b = q0 + B - 1 - k * B;
            int64_t wd = p->w * p->dil;
            a = a < -wd ? -wd : a;
            b = b > wd ? wd : b;
            if (a <= b && fdiv(b, p->dil) * p->dil >= a)
                kb[n++] = (int32_t)k;
        }
        return n;
    case BSA_PATTERN_LONGFORMER:
    case BSA_PATTERN_BIGBIRD: {
        if (q0 < p->g) { /* a global query row sees every key */
            lo = 0;
            hi = p->nb - 1;
            clip(p, qb, &lo, &hi);
            for (int64_t k = lo; k <= hi; k++)
                kb[n++] = (int32_t)k;
            return n;
        }
        int64_t glo = 0, ghi = (p->g + B - 1) / B - 1; /* global key columns */
        clip(p, qb, &glo, &ghi);
        for (int64_t k = glo; k <= ghi; k++)
            kb[n++] = (int32_t)k;
        window_range(p, qb, p->w, &lo, &hi);
        for (int64_t k = lo < ghi + 1 ? ghi + 1 : lo; k <= hi; k++)
            kb[n++] = (int32_t)k;
        if (p->pattern == BSA_PATTERN_BIGBIRD && p->r > 0) {
            /* kb[0..n) is ascending and distinct; add the random blocks it
             * lacks (never more than k_blocks in all), then sort */
            p->cache_n = random_blocks(p, qb, p->cache);
            p->cache_qb = qb;
            int n0 = n;
            for (int i = 0; i < p->cache_n; i++) {
                int32_t x = p->cache[i];
                int a = 0, b = n0;
                while (a < b) {
                    int m = (a + b) / 2;
                    if (kb[m] < x)
                        a = m + 1;
                    else
                        b = m;
                }
                if (a == n0 || kb[a] != x)
                    kb[n++] = x;
            }
            n = sort_unique(kb, n);
        }
        return n;
    }
    case BSA_PATTERN_DOCUMENT: {
        /* documents meeting the query block, and the keys they span */
        int32_t d0 = p->doc[q0], d1 = p->doc[q0 + B - 1];
        lo = p->dofs[d0] / B;
        hi = (p->dofs[d1 + 1] - 1) / B;
        clip(p, qb, &lo, &hi);
        for (int64_t k = lo; k <= hi; k++)
            kb[n++] = (int32_t)k;
        return n;
    }
    default:
        return 0;
    }
}

static int fill_ext(void *self, int h, int qb, int kb, int block_index, uint8_t *mask)
{
    (void)h;
    (void)block_index;
    ext_rows *p = self;
    int B = p->B;
    if (p->pattern == BSA_PATTERN_BIGBIRD && p->r > 0) {
        if (p->cache_qb != qb) { /* blocks of a row arrive together */
            p->cache_n = random_blocks(p, qb, p->cache);
            p->cache_qb = qb;
        }
        for (int i = 0; i < p->cache_n; i++)
            if (p->cache[i] == kb) {
                memset(mask, 1, (size_t)B * B); /* a random block is kept whole */
                return 0;
            }
    }
    for (int r = 0; r < B; r++)
        for (int c = 0; c < B; c++)
            mask[r * B + c] = (uint8_t)ext_keep(p, (int64_t)qb * B + r, (int64_t)kb * B + c);
    return 0;
}

bsa_status bsa_layout_create_preset_ext(bsa_context_t ctx, const bsa_preset *pr,
                                        bsa_layout_t *layout)
{
    int B = pr->block;
    ext_rows rows;
    memset(&rows, 0, sizeof rows);
    rows.pattern = pr->pattern;
    rows.nb = pr->seq / B;
    rows.B = B;
    rows.causal = !pr->bidirectional;
    rows.w = pr->ctx;
    rows.dil = pr->dilation ? pr->dilation : 1;
    rows.g = pr->global_tokens;
    rows.r = pr->random_blocks;
    rows.seed = pr->seed;
    rows.cache_qb = -1;

    if (pr->pattern != BSA_PATTERN_DOCUMENT && pr->ctx < 0)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: preset->ctx = %d must be >= 0 (window radius)", fn, pr->ctx);
    if (pr->dilation < 0)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: preset->dilation = %d must be >= 0 (0 = 1)", fn, pr->dilation);
    if (pr->global_tokens < 0 || pr->global_tokens > pr->seq)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: preset->global_tokens = %d must be in 0..seq (%d)", fn,
                        pr->global_tokens, pr->seq);
    if (pr->random_blocks < 0 || pr->random_blocks > 1024)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: preset->random_blocks = %d must be in 0..1024", fn, pr->random_blocks);
    if ((int64_t)pr->ctx * rows.dil > INT32_MAX)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: preset->ctx * dilation = %lld exceeds 2^31 - 1", fn,
                        (long long)pr->ctx * rows.dil);

    bsa_layout_desc d;
    memset(&d, 0, sizeof d);
    d.block = B;
    d.heads = 1;
    d.q_blocks = d.k_blocks = rows.nb;
    d.predicates = rows.causal ? BSA_PRED_CAUSAL : BSA_PRED_NONE;
    bsa_layout_source src = {&rows, rows_ext, fill_ext};
    bsa_status st = BSA_SUCCESS;

    switch (pr->pattern) {
    case BSA_PATTERN_SLIDING_WINDOW:
        /* |q-k| <= w is the WINDOW predicate with window w + 1: no bits */
        if (pr->ctx >= INT32_MAX)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT, "%s: preset->ctx = %d is too large", fn,
                            pr->ctx);
        d.predicates |= BSA_PRED_WINDOW;
        d.window = pr->ctx + 1;
        src.fill_mask = NULL;
        break;
    case BSA_PATTERN_BIGBIRD:
        if (pr->random_blocks > 0) {
            rows.tmp = malloc((size_t)rows.nb * sizeof(int32_t));
            if (!rows.tmp)
                return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
        }
        break;
    case BSA_PATTERN_DOCUMENT: {
        if (!pr->doc_lengths)
            return bsa_fail(BSA_ERROR_NULL_POINTER,
                            "%s: preset->doc_lengths is NULL (the document pattern needs it)", fn);
        if (pr->num_docs < 1 || pr->num_docs > pr->seq)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s: preset->num_docs = %d must be in 1..seq (%d)", fn, pr->num_docs,
                            pr->seq);
        int64_t sum = 0;
        for (int i = 0; i < pr->num_docs; i++) {
            if (pr->doc_lengths[i] < 1)
                return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                                "%s: preset->doc_lengths[%d] = %d must be >= 1", fn, i,
                                pr->doc_lengths[i]);
            sum += pr->doc_lengths[i];
        }
        if (sum != pr->seq)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s: preset->doc_lengths sum to %lld; they must sum to seq = %d", fn,
                            (long long)sum, pr->seq);
        rows.doc = malloc((size_t)pr->seq * sizeof(int32_t));
        rows.dofs = malloc(((size_t)pr->num_docs + 1) * sizeof(int64_t));
        if (!rows.doc || !rows.dofs) {
            free(rows.doc);
            free(rows.dofs);
            return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
        }
        rows.dofs[0] = 0;
        for (int i = 0; i < pr->num_docs; i++) {
            rows.dofs[i + 1] = rows.dofs[i] + pr->doc_lengths[i];
            for (int64_t t = rows.dofs[i]; t < rows.dofs[i + 1]; t++)
                rows.doc[t] = i;
        }
        break;
    }
    default:
        break;
    }
    st = bsa_layout_build(ctx, &d, 0, &src, fn, layout);
    free(rows.tmp);
    free(rows.doc);
    free(rows.dofs);
    return st;
}
