/* Element masks from closed forms: see closed_masks.h. */
#include "closed_masks.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cm_source cm_of_preset(const bsa_preset *preset)
{
    cm_source s;
    memset(&s, 0, sizeof s);
    s.kind = CM_PRESET;
    s.preset = *preset;
    s.preset.doc_lengths = NULL;
    if (preset->pattern == BSA_PATTERN_DOCUMENT) {
        if (preset->num_docs < 0 || preset->num_docs > CM_MAX_DOCS || !preset->doc_lengths) {
            fprintf(stderr, "cm_of_preset: %d documents (at most %d, lengths given)\n",
                    preset->num_docs, CM_MAX_DOCS);
            abort();
        }
        memcpy(s.docs, preset->doc_lengths, (size_t)preset->num_docs * sizeof(int32_t));
    }
    return s;
}

cm_source cm_of_dense(const bsa_layout_desc *desc, const uint8_t *blocks)
{
    cm_source s;
    memset(&s, 0, sizeof s);
    s.kind = CM_DENSE;
    s.desc = *desc;
    s.blocks = blocks;
    return s;
}

cm_source cm_of_callback(const bsa_layout_desc *desc, const uint8_t *blocks,
                         bsa_mask_callback callback, void *user)
{
    cm_source s = cm_of_dense(desc, blocks);
    s.kind = CM_CALLBACK;
    s.callback = callback;
    s.user = user;
    return s;
}

int cm_heads(const cm_source *s)
{
    if (s->kind != CM_PRESET)
        return s->desc.heads;
    const bsa_preset *p = &s->preset;
    return p->pattern == BSA_PATTERN_FIXED && p->num_verts > 1 ? p->heads : 1;
}

int64_t cm_seq_q(const cm_source *s)
{
    return s->kind == CM_PRESET ? s->preset.seq : (int64_t)s->desc.q_blocks * s->desc.block;
}

int64_t cm_seq_k(const cm_source *s)
{
    return s->kind == CM_PRESET ? s->preset.seq : (int64_t)s->desc.k_blocks * s->desc.block;
}

bsa_status cm_check(const cm_source *s, const bsa_layout_info *info)
{
    if (cm_heads(s) == info->heads && cm_seq_q(s) == info->seq_q && cm_seq_k(s) == info->seq_k)
        return BSA_SUCCESS;
    fprintf(stderr,
            "closed masks: the source describes %d head(s) of %lld x %lld, the layout has %d of "
            "%d x %d\n",
            cm_heads(s), (long long)cm_seq_q(s), (long long)cm_seq_k(s), info->heads, info->seq_q,
            info->seq_k);
    return BSA_ERROR_SHAPE_MISMATCH;
}

/* ------------------------------------------------------------ presets */

static int64_t iabs(int64_t x)
{
    return x < 0 ? -x : x;
}

/* Fixed: (k's block mod S) is one of head h's summary offsets
 * V_h = {S-1-(h mod nv)*vs - t : 0 <= t < vs}, S = L / B. */
static int in_summary(const bsa_preset *p, int h, int64_t k)
{
    int64_t S = p->ctx / p->block, off = (k / p->block) % S;
    for (int t = 0; t < p->vertsize; t++)
        if (off == S - 1 - (int64_t)(h % p->num_verts) * p->vertsize - t)
            return 1;
    return 0;
}

/* BigBird's draw (closed_masks.h): splitmix64 */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Sets random[kb] = 1 for the random key blocks of query block qb. */
static void bigbird_row(const bsa_preset *p, int64_t qb, uint8_t *random)
{
    int64_t nb = p->seq / p->block, n = p->bidirectional ? nb : qb + 1;
    int64_t r = p->random_blocks < n ? p->random_blocks : n;
    memset(random, 0, (size_t)nb);
    uint64_t st = p->seed ^ ((uint64_t)(qb + 1) * 0xD1B54A32D192ED03ull);
    if (2 * r <= n) {
        for (int64_t i = 0; i < r; i++) {
            int64_t j;
            do
                j = (int64_t)(splitmix64(&st) % (uint64_t)n);
            while (random[j]);
            random[j] = 1;
        }
        return;
    }
    int64_t *perm = tu_xmalloc((size_t)n * sizeof *perm);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = 0; i < r; i++) {
        int64_t j = i + (int64_t)(splitmix64(&st) % (uint64_t)(n - i)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        random[perm[i]] = 1;
    }
    free(perm);
}

/* The bidirectional element definition; the causal cut is applied by the
 * caller.  random: BigBird's flags of q's block row; doc: document of each
 * position. */
static int preset_keep(const bsa_preset *p, int h, int64_t q, int64_t k, const uint8_t *random,
                       const int32_t *doc)
{
    int64_t d = q - k, L = p->ctx, w = p->ctx, g = p->global_tokens;
    int64_t dil = p->dilation ? p->dilation : 1;
    switch (p->pattern) {
    case BSA_PATTERN_ALL:
        return 1;
    case BSA_PATTERN_LOCAL:
        return iabs(d) < L;
    case BSA_PATTERN_STRIDED:
        return d % L == 0;
    case BSA_PATTERN_FIXED:
        return q / L == k / L || in_summary(p, h, k);
    case BSA_PATTERN_SLIDING_WINDOW:
        return iabs(d) <= w;
    case BSA_PATTERN_DILATED:
        return iabs(d) <= w * dil && d % dil == 0;
    case BSA_PATTERN_LONGFORMER:
        return iabs(d) <= w || q < g || k < g;
    case BSA_PATTERN_BIGBIRD:
        return iabs(d) <= w || q < g || k < g || random[k / p->block];
    case BSA_PATTERN_DOCUMENT:
        return doc[q] == doc[k];
    }
    fprintf(stderr, "closed masks: unknown pattern %d\n", (int)p->pattern);
    abort();
}

static void preset_mask(const cm_source *s, int h, uint8_t *mask)
{
    const bsa_preset *p = &s->preset;
    int64_t n = p->seq, B = p->block;
    uint8_t *random = NULL;
    int32_t *doc = NULL;
    if (p->pattern == BSA_PATTERN_BIGBIRD)
        random = tu_xmalloc((size_t)(n / B));
    if (p->pattern == BSA_PATTERN_DOCUMENT) {
        doc = tu_xmalloc((size_t)n * sizeof *doc);
        int64_t t = 0;
        for (int i = 0; i < p->num_docs; i++)
            for (int32_t j = 0; j < s->docs[i] && t < n; j++)
                doc[t++] = i;
        while (t < n)
            doc[t++] = -1; /* lengths short of seq: the library refuses those */
    }
    for (int64_t q = 0; q < n; q++) {
        if (random && q % B == 0)
            bigbird_row(p, q / B, random);
        for (int64_t k = 0; k < n; k++)
            mask[q * n + k] =
                (uint8_t)((p->bidirectional || k <= q) && preset_keep(p, h, q, k, random, doc));
    }
    free(random);
    free(doc);
}

/* ---------------------------------------------- dense and callback */

static int pred_keep(const bsa_layout_desc *d, int64_t q, int64_t k)
{
    if ((d->predicates & BSA_PRED_CAUSAL) && !(k <= q))
        return 0;
    if ((d->predicates & BSA_PRED_WINDOW) && !(iabs(q - k) < d->window))
        return 0;
    if ((d->predicates & BSA_PRED_PREFIX) && !(k < d->prefix || k <= q))
        return 0;
    return 1;
}

static int blocks_mask(const cm_source *s, int h, uint8_t *mask)
{
    const bsa_layout_desc *d = &s->desc;
    int B = d->block;
    int64_t sk = cm_seq_k(s);
    memset(mask, 0, (size_t)(cm_seq_q(s) * sk));
    uint8_t *pred = tu_xmalloc((size_t)B * B), *bits = tu_xmalloc((size_t)B * B);
    int index = 0, rc = 0;
    for (int qb = 0; qb < d->q_blocks && !rc; qb++)
        for (int kb = 0; kb < d->k_blocks && !rc; kb++) {
            if (s->blocks && !s->blocks[((int64_t)h * d->q_blocks + qb) * d->k_blocks + kb])
                continue;
            int any = 0;
            for (int r = 0; r < B; r++)
                for (int c = 0; c < B; c++)
                    any |= pred[r * B + c] =
                        (uint8_t)pred_keep(d, (int64_t)qb * B + r, (int64_t)kb * B + c);
            if (!any)
                continue; /* no element survives: the block is not kept */
            memset(bits, 1, (size_t)B * B);
            if (s->kind == CM_CALLBACK) {
                memset(bits, 0, (size_t)B * B);
                rc = s->callback(s->user, h, qb, kb, index, B, bits);
            }
            index++;
            for (int r = 0; r < B; r++)
                for (int c = 0; c < B; c++)
                    mask[((int64_t)qb * B + r) * sk + (int64_t)kb * B + c] =
                        (uint8_t)(pred[r * B + c] && bits[r * B + c]);
        }
    free(pred);
    free(bits);
    return rc;
}

int cm_head_mask(const cm_source *s, int head, uint8_t *mask)
{
    if (s->kind == CM_PRESET) {
        preset_mask(s, head, mask);
        return 0;
    }
    return blocks_mask(s, head, mask);
}

uint8_t *cm_masks(const cm_source *s)
{
    int64_t plane = cm_seq_q(s) * cm_seq_k(s);
    uint8_t *m = tu_xmalloc((size_t)(plane * cm_heads(s)));
    for (int h = 0; h < cm_heads(s); h++)
        if (cm_head_mask(s, h, m + h * plane)) {
            free(m);
            return NULL;
        }
    return m;
}

bsa_status cm_create(bsa_context_t ctx, const cm_source *s, bsa_layout_t *layout)
{
    if (s->kind == CM_PRESET) {
        bsa_preset p = s->preset;
        if (p.pattern == BSA_PATTERN_DOCUMENT)
            p.doc_lengths = s->docs;
        return bsa_layout_create_preset(ctx, layout, &p);
    }
    if (s->kind == CM_DENSE)
        return bsa_layout_create_dense(ctx, layout, &s->desc, s->blocks);
    return bsa_layout_create_callback(ctx, layout, &s->desc, s->blocks, s->callback, s->user);
}
