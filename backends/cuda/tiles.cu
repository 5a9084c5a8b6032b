/*
 * Host side of the CUDA backend's layout preparation: turns the layout's
 * block lists into 64 x 64 tile-pair lists (rows and transposed columns),
 * orders tiles heaviest first, and uploads them with the layout's own
 * tables in one device allocation.  Runs once per layout; costs
 * O(kept blocks + tiles), never O(T^2).
 */
#include "cuda_internal.h"

#include <algorithm>
#include <stdlib.h>
#include <string.h>
#include <new>
#include <vector>

namespace
{

struct carve {
    size_t off = 0;
    template <typename T> size_t add(size_t n)
    {
        size_t at = off;
        off += (n * sizeof(T) + 255) & ~(size_t)255;
        return at;
    }
};

std::vector<int32_t> heavy_first(const std::vector<int32_t> &ptr, int heads, int n)
{
    std::vector<int32_t> order((size_t)heads * n);
    for (int h = 0; h < heads; ++h) {
        int32_t *o = order.data() + (size_t)h * n;
        const int32_t *p = ptr.data() + (size_t)h * (n + 1);
        for (int i = 0; i < n; ++i)
            o[i] = i;
        std::stable_sort(o, o + n, [p](int a, int b) { return p[a + 1] - p[a] > p[b + 1] - p[b]; });
    }
    return order;
}

/* Over pairs of consecutive tiles (2i, 2i + 1) of every head's lists:
 * (|A| + |B|) / (2 |A u B|), how much of the merged list that a kernel
 * taking the two tiles together walks is really used by each. */
double pair_efficiency(const std::vector<int32_t> &ptr, const std::vector<int2> &ent, int heads,
                       int n)
{
    double used = 0.0, walked = 0.0;
    for (int h = 0; h < heads; ++h) {
        const int32_t *tp = ptr.data() + (size_t)h * (n + 1);
        for (int t = 0; t < n; t += 2) {
            int a = tp[t], ae = tp[t + 1];
            int b = t + 1 < n ? tp[t + 1] : 0, be = t + 1 < n ? tp[t + 2] : 0;
            used += (ae - a) + (be - b);
            while (a < ae || b < be) {
                int xa = a < ae ? ent[a].x : 0x7fffffff;
                int xb = b < be ? ent[b].x : 0x7fffffff;
                int x = xa < xb ? xa : xb;
                a += xa == x;
                b += xb == x;
                walked += 2;
            }
        }
    }
    return walked > 0 ? used / walked : 1.0;
}

/* Whether every key tile of query tile qt is 2 (qt / 2) or 2 (qt / 2) + 1,
 * in every head's lists: each 128-row chunk is then a problem of its own. */
bool chunk_local(const std::vector<int32_t> &ptr, const std::vector<int2> &ent, int heads, int n)
{
    for (int h = 0; h < heads; ++h) {
        const int32_t *tp = ptr.data() + (size_t)h * (n + 1);
        for (int t = 0; t < n; ++t)
            for (int32_t j = tp[t]; j < tp[t + 1]; ++j)
                if (ent[j].x / 2 != t / 2)
                    return false;
    }
    return true;
}

/* Per mixed pair of natural tiles: 1 when its mask is the layout's
 * predicate over the whole 64 x 64 tile, that is when it has no stored
 * bits and each FULL (ABSENT) sub-block is one the predicate keeps
 * (drops) whole.  Such a tile's mask is one column interval per row,
 * worked out once per row instead of per sub-block code (the strided
 * pattern's and causal layouts' diagonal tiles; hopper/fwd_chunk_wgmma.cuh). */
std::vector<int32_t> whole_tile_pred(const struct bsa_layout *l, const std::vector<int32_t> &ptr,
                                     const std::vector<int2> &ent, const std::vector<int32_t> &sub,
                                     int n, int ns, int g)
{
    const int ns2 = ns * ns, T = BSA_CUDA_TILE;
    std::vector<int32_t> exact(sub.size() / ns2, 0);
    if (!l->pred.flags)
        return exact;
    for (int h = 0; h < l->heads; ++h) {
        const int32_t *tp = ptr.data() + (size_t)h * (n + 1);
        for (int qt = 0; qt < n; ++qt)
            for (int32_t j = tp[qt]; j < tp[qt + 1]; ++j) {
                const int y = ent[j].y, kt = ent[j].x;
                if (y < 0)
                    continue;
                bool ok = true;
                for (int b = 0; b < ns2 && ok; ++b) {
                    const int32_t code = sub[(size_t)y * ns2 + b];
                    if (code == BSA_CUDA_SUB_PRED)
                        continue;
                    if (code >= 0) {
                        ok = false;
                        break;
                    }
                    /* every element, past the sequence's ends too: the
                     * interval is applied to all of them */
                    const bool keep = code == BSA_CUDA_SUB_FULL;
                    const int64_t q0 = (int64_t)qt * T + (b / ns) * g;
                    const int64_t k0 = (int64_t)kt * T + (b % ns) * g;
                    for (int r = 0; r < g && ok; ++r)
                        for (int c = 0; c < g && ok; ++c)
                            ok = (bsa_pred_keep(&l->pred, q0 + r, k0 + c) != 0) == keep;
                }
                exact[y] = ok;
            }
    }
    return exact;
}

/* The sub-block code of a layout block's mask_idx. */
int32_t sub_code(int32_t m)
{
    return m == BSA_BLOCK_FULL ? BSA_CUDA_SUB_FULL : m == BSA_BLOCK_PRED ? BSA_CUDA_SUB_PRED : m;
}

/* One side of the block-row lists (bsa_cuda_layout::brow): rows (query
 * blocks, their key blocks) or columns (key blocks, their query blocks). */
struct brow_side {
    std::vector<int32_t> ptr, ord;
    std::vector<int4> ent;
};

brow_side brow_lists(const struct bsa_layout *l, bool rows)
{
    const int H = l->heads, nb = rows ? l->q_blocks : l->k_blocks, np = (nb + 1) / 2;
    const int32_t *lp = rows ? l->row_ptr : l->col_ptr;
    brow_side s;
    s.ptr.assign((size_t)H * (nb + 1), 0);
    s.ord.assign((size_t)H * np * 2, -1);
    std::vector<int32_t> order(nb);
    for (int h = 0; h < H; ++h) {
        int32_t *pp = s.ptr.data() + (size_t)h * (nb + 1);
        for (int b = 0; b < nb; ++b) {
            pp[b] = (int32_t)s.ent.size();
            const int32_t i0 = lp[(size_t)h * (nb + 1) + b], i1 = lp[(size_t)h * (nb + 1) + b + 1];
            for (int32_t i = i0; i < i1; i += 2) {
                /* the other side's block and the block's global index */
                auto other = [&](int32_t j) { return rows ? l->col_idx[j] : l->t_row[j]; };
                auto code = [&](int32_t j) {
                    return sub_code(l->mask_idx[rows ? j : l->t_block[j]]);
                };
                int4 e;
                e.x = other(i);
                e.y = i + 1 < i1 ? other(i + 1) : -1;
                e.z = code(i);
                e.w = i + 1 < i1 ? code(i + 1) : BSA_CUDA_SUB_ABSENT;
                s.ent.push_back(e);
            }
        }
        pp[nb] = (int32_t)s.ent.size();
        /* two blocks of about the same list length share a thread block
         * (one pipeline walks both), the longest first */
        for (int b = 0; b < nb; ++b)
            order[b] = b;
        std::stable_sort(order.begin(), order.end(),
                         [pp](int a, int b) { return pp[a + 1] - pp[a] > pp[b + 1] - pp[b]; });
        for (int b = 0; b < nb; ++b)
            s.ord[(size_t)h * np * 2 + b] = order[b];
    }
    return s;
}

/* Whether the block-row kernels pay: blocks of 32, and the tile pairs'
 * area at least 1.5 times the block rows' (32 x 64 tiles of two kept
 * blocks each).  BSA_CUDA_BROW=0|1 forces it off or on (blocks of 32;
 * never for the strided pattern's permuted layouts: the kernels address
 * natural rows only, which keeps the permutation's code out of them). */
bool want_brow(const struct bsa_layout *l, int64_t tile_pairs, bool chunks)
{
    const char *env = getenv("BSA_CUDA_BROW");
    if (l->block != 32 || l->stride_perm || (env && !strcmp(env, "0")))
        return false;
    if (env && !strcmp(env, "1"))
        return true;
    if (chunks)
        return false;
    int64_t halves = 0; /* 32 x 64 tiles */
    for (int64_t r = 0; r < (int64_t)l->heads * l->q_blocks; ++r) {
        const int h = (int)(r / l->q_blocks), qb = (int)(r % l->q_blocks);
        const int32_t *rp = l->row_ptr + (size_t)h * (l->q_blocks + 1);
        halves += (rp[qb + 1] - rp[qb] + 1) / 2;
    }
    return halves * 3 <= tile_pairs * 4; /* 2048 halves * 1.5 <= 4096 pairs */
}

} // namespace

extern "C" bsa_status bsa_cuda_build_tiles(const struct bsa_layout *l, bsa_cuda_layout *dl)
{
    const int T = BSA_CUDA_TILE, B = l->block, H = l->heads;
    const int n_qt = (l->seq_q + T - 1) / T, n_kt = (l->seq_k + T - 1) / T;
    const int g = B < T ? B : T, ns = T / g, ns2 = ns * ns;
    int log2g = 0;
    while ((1 << log2g) < g)
        ++log2g;

    try {
        /* Key grouping: which key blocks form key tile kt (slot = position
         * in the tile).  Natural: consecutive blocks.  Gathered (blocks < 64
         * only): key blocks sorted by column length, longest first, so that
         * blocks seen by the same query rows share a tile (the fixed
         * pattern's summary columns; KERNELS.md option (b)).  Kept only if
         * it cuts the tile pairs by 20% or more. */
        const int G = B < T ? T / B : 1;
        const int64_t ng = (int64_t)H * n_kt * G;
        std::vector<int32_t> kt_nat, slot_nat, kt_gat, slot_gat, grp;
        std::vector<int32_t> row_tptr, sub;
        std::vector<int2> row_tent;
        auto build = [&](const std::vector<int32_t> &kt_of, const std::vector<int32_t> &slot_of,
                         std::vector<int32_t> &rtp, std::vector<int2> &rte,
                         std::vector<int32_t> &sb) {
            rtp.assign((size_t)H * (n_qt + 1), 0);
            rte.clear();
            sb.clear();
            std::vector<int32_t> slot(n_kt, -1), touched, tmp;
            for (int h = 0; h < H; ++h) {
                const int32_t *rp = l->row_ptr + (size_t)h * (l->q_blocks + 1);
                const int32_t *kto =
                    kt_of.empty() ? nullptr : kt_of.data() + (size_t)h * l->k_blocks;
                const int32_t *slo =
                    slot_of.empty() ? nullptr : slot_of.data() + (size_t)h * l->k_blocks;
                rtp[(size_t)h * (n_qt + 1)] = (int32_t)rte.size();
                for (int qt = 0; qt < n_qt; ++qt) {
                    touched.clear();
                    tmp.clear();
                    int qb0 = B <= T ? qt * (T / B) : qt / (B / T);
                    int qb1 = B <= T ? std::min((qt + 1) * (T / B), l->q_blocks) : qb0 + 1;
                    for (int qb = qb0; qb < qb1; ++qb) {
                        for (int32_t i = rp[qb]; i < rp[qb + 1]; ++i) {
                            int kb = l->col_idx[i];
                            int kt0 = kto ? kto[kb] : (int)((int64_t)kb * B / T);
                            int kt1 = kto ? kto[kb] : (int)(((int64_t)kb * B + B - 1) / T);
                            for (int kt = kt0; kt <= kt1; ++kt) {
                                if (slot[kt] < 0) {
                                    slot[kt] = (int32_t)touched.size();
                                    touched.push_back(kt);
                                    tmp.resize(tmp.size() + ns2, -1);
                                }
                                int sr = B <= T ? (qb * B % T) / g : 0;
                                int sc = slo ? slo[kb] : B <= T ? (kb * B % T) / g : 0;
                                tmp[(size_t)slot[kt] * ns2 + sr * ns + sc] = i;
                            }
                        }
                    }
                    std::vector<int32_t> sorted(touched);
                    std::sort(sorted.begin(), sorted.end());
                    bool rows_in = (int64_t)(qt + 1) * T <= l->seq_q;
                    for (int kt : sorted) {
                        const int32_t *s = tmp.data() + (size_t)slot[kt] * ns2;
                        /* an absent sub-block (past the end too) makes the pair mixed */
                        bool full = rows_in;
                        for (int j = 0; j < ns2 && full; ++j)
                            full = s[j] >= 0 && l->mask_idx[s[j]] == BSA_BLOCK_FULL;
                        int2 e;
                        e.x = kt;
                        e.y = -1;
                        if (!full) {
                            e.y = (int)(sb.size() / ns2);
                            for (int j = 0; j < ns2; ++j) {
                                int32_t m = s[j] < 0 ? 0 : l->mask_idx[s[j]];
                                sb.push_back(s[j] < 0              ? BSA_CUDA_SUB_ABSENT
                                             : m == BSA_BLOCK_FULL ? BSA_CUDA_SUB_FULL
                                             : m == BSA_BLOCK_PRED ? BSA_CUDA_SUB_PRED
                                                                   : m);
                            }
                        }
                        rte.push_back(e);
                    }
                    for (int kt : touched)
                        slot[kt] = -1;
                    rtp[(size_t)h * (n_qt + 1) + qt + 1] = (int32_t)rte.size();
                }
            }
        };
        build(kt_nat, slot_nat, row_tptr, row_tent, sub);
        const bool chunks = chunk_local(row_tptr, row_tent, H, n_qt);
        /* a chunk-local layout is best left in natural tiles: the chunk
         * kernels read each chunk once, which no gathering beats */
        const char *genv = getenv("BSA_CUDA_GATHER");
        bool forced = genv && !strcmp(genv, "1");
        bool try_gather = G > 1 && !(genv && !strcmp(genv, "0")) && (!chunks || forced);
        if (try_gather) {
            kt_gat.assign((size_t)H * l->k_blocks, 0);
            slot_gat.assign((size_t)H * l->k_blocks, 0);
            grp.assign((size_t)ng, -1);
            std::vector<int32_t> order(l->k_blocks);
            for (int h = 0; h < H; ++h) {
                const int32_t *cp = l->col_ptr + (size_t)h * (l->k_blocks + 1);
                for (int kb = 0; kb < l->k_blocks; ++kb)
                    order[kb] = kb;
                std::stable_sort(order.begin(), order.end(), [cp](int a, int b) {
                    return cp[a + 1] - cp[a] > cp[b + 1] - cp[b];
                });
                for (int i = 0; i < l->k_blocks; ++i) {
                    int kb = order[i];
                    kt_gat[(size_t)h * l->k_blocks + kb] = i / G;
                    slot_gat[(size_t)h * l->k_blocks + kb] = i % G;
                    grp[((size_t)h * n_kt + i / G) * G + i % G] = kb;
                }
            }
            std::vector<int32_t> rtp2, sub2;
            std::vector<int2> rte2;
            build(kt_gat, slot_gat, rtp2, rte2, sub2);
            if (forced || rte2.size() * 10 <= row_tent.size() * 8) {
                row_tptr.swap(rtp2);
                row_tent.swap(rte2);
                sub.swap(sub2);
            } else {
                grp.clear();
            }
        }
        /* transposed lists, sorted by query tile (row order visits them so) */
        std::vector<int32_t> col_tptr((size_t)H * (n_kt + 1), 0);
        std::vector<int2> col_tent(row_tent.size());
        for (int h = 0; h < H; ++h) {
            int32_t *cp = col_tptr.data() + (size_t)h * (n_kt + 1);
            const int32_t *rp = row_tptr.data() + (size_t)h * (n_qt + 1);
            for (int32_t j = rp[0]; j < rp[n_qt]; ++j)
                cp[row_tent[j].x + 1]++;
            cp[0] = rp[0];
            for (int kt = 0; kt < n_kt; ++kt)
                cp[kt + 1] += cp[kt];
            std::vector<int32_t> fill(cp, cp + n_kt);
            for (int qt = 0; qt < n_qt; ++qt)
                for (int32_t j = rp[qt]; j < rp[qt + 1]; ++j) {
                    int2 e;
                    e.x = qt;
                    e.y = row_tent[j].y;
                    col_tent[fill[row_tent[j].x]++] = e;
                }
        }
        dl->pair_eff = pair_efficiency(row_tptr, row_tent, H, n_qt);
        dl->chunk_local = chunks && grp.empty();
        dl->col_pair_eff = pair_efficiency(col_tptr, col_tent, H, n_kt);
        const std::vector<int32_t> sub_pred =
            grp.empty() ? whole_tile_pred(l, row_tptr, row_tent, sub, n_qt, ns, g)
                        : std::vector<int32_t>(sub.size() / ns2, 0);
        std::vector<int32_t> q_order = heavy_first(row_tptr, H, n_qt);
        std::vector<int32_t> k_order = heavy_first(col_tptr, H, n_kt);

        brow_side brow_r, brow_c;
        if (want_brow(l, (int64_t)row_tent.size(), chunks)) {
            brow_r = brow_lists(l, true);
            brow_c = brow_lists(l, false);
        }
        int64_t nnz = l->nnz;
        int64_t nbits = l->n_partial * l->block * l->words;
        carve c;
        size_t o_rtp = c.add<int32_t>(row_tptr.size()), o_rte = c.add<int2>(row_tent.size());
        size_t o_ctp = c.add<int32_t>(col_tptr.size()), o_cte = c.add<int2>(col_tent.size());
        size_t o_qo = c.add<int32_t>(q_order.size()), o_ko = c.add<int32_t>(k_order.size());
        size_t o_sub = c.add<int32_t>(sub.size()), o_mi = c.add<int32_t>(nnz);
        size_t o_sp = c.add<int32_t>(sub_pred.size());
        size_t o_bits = c.add<uint64_t>(nbits);
        size_t o_rp = c.add<int32_t>((size_t)H * (l->q_blocks + 1));
        size_t o_ci = c.add<int32_t>(nnz);
        size_t o_cp = c.add<int32_t>((size_t)H * (l->k_blocks + 1));
        size_t o_tb = c.add<int32_t>(nnz), o_tr = c.add<int32_t>(nnz);
        size_t o_grp = c.add<int32_t>(grp.size());
        size_t o_brp = c.add<int32_t>(brow_r.ptr.size()), o_bre = c.add<int4>(brow_r.ent.size());
        size_t o_bro = c.add<int32_t>(brow_r.ord.size());
        size_t o_bcp = c.add<int32_t>(brow_c.ptr.size()), o_bce = c.add<int4>(brow_c.ent.size());
        size_t o_bco = c.add<int32_t>(brow_c.ord.size());

        void *mem = nullptr;
        cudaError_t e = cudaMalloc(&mem, c.off);
        if (e != cudaSuccess)
            return bsa_fail(BSA_ERROR_OUT_OF_MEMORY,
                            "layout_prepare: cudaMalloc of %zu bytes for the layout tables: %s",
                            c.off, cudaGetErrorString(e));
        char *base = static_cast<char *>(mem);
        struct up {
            size_t off;
            const void *src;
            size_t bytes;
        } ups[] = {
            {o_rtp, row_tptr.data(), row_tptr.size() * 4},
            {o_rte, row_tent.data(), row_tent.size() * sizeof(int2)},
            {o_ctp, col_tptr.data(), col_tptr.size() * 4},
            {o_cte, col_tent.data(), col_tent.size() * sizeof(int2)},
            {o_qo, q_order.data(), q_order.size() * 4},
            {o_ko, k_order.data(), k_order.size() * 4},
            {o_sub, sub.data(), sub.size() * 4},
            {o_sp, sub_pred.data(), sub_pred.size() * 4},
            {o_mi, l->mask_idx, (size_t)nnz * 4},
            {o_bits, l->bits, (size_t)nbits * 8},
            {o_rp, l->row_ptr, (size_t)H * (l->q_blocks + 1) * 4},
            {o_ci, l->col_idx, (size_t)nnz * 4},
            {o_cp, l->col_ptr, (size_t)H * (l->k_blocks + 1) * 4},
            {o_tb, l->t_block, (size_t)nnz * 4},
            {o_tr, l->t_row, (size_t)nnz * 4},
            {o_grp, grp.data(), grp.size() * 4},
            {o_brp, brow_r.ptr.data(), brow_r.ptr.size() * 4},
            {o_bre, brow_r.ent.data(), brow_r.ent.size() * sizeof(int4)},
            {o_bro, brow_r.ord.data(), brow_r.ord.size() * 4},
            {o_bcp, brow_c.ptr.data(), brow_c.ptr.size() * 4},
            {o_bce, brow_c.ent.data(), brow_c.ent.size() * sizeof(int4)},
            {o_bco, brow_c.ord.data(), brow_c.ord.size() * 4},
        };
        for (const up &u : ups) {
            if (!u.bytes || !u.src)
                continue;
            e = cudaMemcpy(base + u.off, u.src, u.bytes, cudaMemcpyHostToDevice);
            if (e != cudaSuccess) {
                cudaFree(mem);
                return bsa_fail(BSA_ERROR_DEVICE, "layout_prepare: upload of the tables: %s",
                                cudaGetErrorString(e));
            }
        }
        dl->n_qt = n_qt;
        dl->n_kt = n_kt;
        dl->ns = ns;
        dl->log2g = log2g;
        dl->n_row_ent = (int64_t)row_tent.size();
        dl->n_mixed = (int64_t)(sub.size() / ns2);
        dl->dev_mem = mem;
        dl->row_tptr = reinterpret_cast<int32_t *>(base + o_rtp);
        dl->row_tent = reinterpret_cast<int2 *>(base + o_rte);
        dl->col_tptr = reinterpret_cast<int32_t *>(base + o_ctp);
        dl->col_tent = reinterpret_cast<int2 *>(base + o_cte);
        dl->q_order = reinterpret_cast<int32_t *>(base + o_qo);
        dl->k_order = reinterpret_cast<int32_t *>(base + o_ko);
        dl->sub = reinterpret_cast<int32_t *>(base + o_sub);
        dl->sub_pred = reinterpret_cast<int32_t *>(base + o_sp);
        dl->pred_tiles = grp.empty() && std::all_of(sub_pred.begin(), sub_pred.end(),
                                                    [](int32_t x) { return x != 0; });
        dl->mask_idx = reinterpret_cast<int32_t *>(base + o_mi);
        dl->bits = reinterpret_cast<uint64_t *>(base + o_bits);
        dl->row_ptr = reinterpret_cast<int32_t *>(base + o_rp);
        dl->col_idx = reinterpret_cast<int32_t *>(base + o_ci);
        dl->col_ptr = reinterpret_cast<int32_t *>(base + o_cp);
        dl->t_block = reinterpret_cast<int32_t *>(base + o_tb);
        dl->t_row = reinterpret_cast<int32_t *>(base + o_tr);
        dl->kgrp = grp.empty() ? nullptr : reinterpret_cast<int32_t *>(base + o_grp);
        dl->kg = G;
        dl->brow = !brow_r.ptr.empty();
        if (dl->brow) {
            dl->brow_rptr = reinterpret_cast<int32_t *>(base + o_brp);
            dl->brow_rent = reinterpret_cast<int4 *>(base + o_bre);
            dl->brow_qord = reinterpret_cast<int32_t *>(base + o_bro);
            dl->brow_cptr = reinterpret_cast<int32_t *>(base + o_bcp);
            dl->brow_cent = reinterpret_cast<int4 *>(base + o_bce);
            dl->brow_kord = reinterpret_cast<int32_t *>(base + o_bco);
        }
        return BSA_SUCCESS;
    } catch (const std::bad_alloc &) {
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "layout_prepare: host memory for the tile lists");
    }
}
