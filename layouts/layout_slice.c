/*
 * Sub-layouts: the layout of one (query shard x key shard) sub-problem of a
 * larger layout, for context parallelism (dist/).  Any backend runs a
 * sub-layout with its ordinary kernels: the elements of the big layout at
 * the mapped global positions (predicates, callback bits) are stored as
 * the sub-layout's bits, so no kernel needs to know the offsets.
 */
#include "layout.h"
#include "../api/internal.h"

#include <stdlib.h>

typedef struct slice_src {
    const struct bsa_layout *l;
    const int32_t *qmap, *kmap;
    int32_t *kinv; /* global key block -> sub-layout key block, or -1 */
} slice_src;

static int slice_rows(void *self, int h, int qb, int32_t *kb)
{
    const slice_src *s = self;
    const struct bsa_layout *l = s->l;
    const int32_t *rp = l->row_ptr + (int64_t)h * (l->q_blocks + 1);
    int g = s->qmap[qb], n = 0;
    for (int32_t i = rp[g]; i < rp[g + 1]; i++) {
        int32_t k = s->kinv[l->col_idx[i]];
        if (k < 0)
            continue;
        int j = n++; /* insertion: kmap may be any order */
        while (j > 0 && kb[j - 1] > k) {
            kb[j] = kb[j - 1];
            j--;
        }
        kb[j] = k;
    }
    return n;
}

static int slice_mask(void *self, int h, int qb, int kb, int block_index, uint8_t *mask)
{
    const slice_src *s = self;
    const struct bsa_layout *l = s->l;
    const int32_t *rp = l->row_ptr + (int64_t)h * (l->q_blocks + 1);
    int g = s->qmap[qb], gk = s->kmap[kb];
    int32_t lo = rp[g], hi = rp[g + 1] - 1;
    while (lo < hi) { /* the row's blocks are sorted by key block */
        int32_t mid = lo + (hi - lo) / 2;
        if (l->col_idx[mid] < gk)
            lo = mid + 1;
        else
            hi = mid;
    }
    BSA_ASSERT(l->col_idx[lo] == gk);
    int B = l->block;
    for (int r = 0; r < B; r++)
        for (int c = 0; c < B; c++)
            mask[r * B + c] = (uint8_t)bsa_layout_keep(l, lo, r, c);
    return 0;
}

bsa_status bsa_layout_slice(const struct bsa_layout *l, int nq, const int32_t *qmap, int nk,
                            const int32_t *kmap, int stride_perm, const char *fn, bsa_layout_t *out)
{
    slice_src s = {l, qmap, kmap, malloc((size_t)l->k_blocks * sizeof(int32_t))};
    if (!s.kinv)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    for (int i = 0; i < l->k_blocks; i++)
        s.kinv[i] = -1;
    for (int i = 0; i < nk; i++)
        s.kinv[kmap[i]] = i;
    bsa_layout_desc d = {l->block, l->heads, nq, nk, 0, 0, 0};
    bsa_layout_source src = {&s, slice_rows, slice_mask};
    bsa_status st = bsa_layout_build(l->ctx, &d, stride_perm, &src, fn, out);
    free(s.kinv);
    return st;
}
