/* The GPU backends' layout tables, on the host: see tile_tables.h. */
#include "tile_tables.h"

#include "../../layouts/layout.h"

#include <algorithm>
#include <new>
#include <vector>

namespace
{

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
double pair_efficiency(const std::vector<int32_t> &ptr, const std::vector<bsa_tile_pair> &ent,
                       int heads, int n)
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
bool chunk_local(const std::vector<int32_t> &ptr, const std::vector<bsa_tile_pair> &ent, int heads,
                 int n)
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
                                     const std::vector<bsa_tile_pair> &ent,
                                     const std::vector<int32_t> &sub, int n, int ns, int g)
{
    const int ns2 = ns * ns, T = BSA_GPU_TILE;
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
                    if (code == BSA_GPU_SUB_PRED)
                        continue;
                    if (code >= 0) {
                        ok = false;
                        break;
                    }
                    /* every element, past the sequence's ends too: the
                     * interval is applied to all of them */
                    const bool keep = code == BSA_GPU_SUB_FULL;
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
    return m == BSA_BLOCK_FULL ? BSA_GPU_SUB_FULL : m == BSA_BLOCK_PRED ? BSA_GPU_SUB_PRED : m;
}

bsa_brow_side brow_lists(const struct bsa_layout *l, bool rows)
{
    const int H = l->heads, nb = rows ? l->q_blocks : l->k_blocks, np = (nb + 1) / 2;
    const int32_t *lp = rows ? l->row_ptr : l->col_ptr;
    bsa_brow_side s;
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
                bsa_block_pair e;
                e.x = other(i);
                e.y = i + 1 < i1 ? other(i + 1) : -1;
                e.z = code(i);
                e.w = i + 1 < i1 ? code(i + 1) : BSA_GPU_SUB_ABSENT;
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

/* The row lists of one key-tile form: per layout head and query tile, its
 * key tiles sorted, each with its mixed pair's sub-block codes or -1 (all
 * present and FULL).  kt_of / slot_of: a key block's tile and slot in it
 * (gathered form), or empty (natural: consecutive blocks). */
void build_rows(const struct bsa_layout *l, const std::vector<int32_t> &kt_of,
                const std::vector<int32_t> &slot_of, int n_qt, int n_kt, int ns, int g,
                bsa_tile_form &f)
{
    const int T = BSA_GPU_TILE, B = l->block, H = l->heads, ns2 = ns * ns;
    f.row_tptr.assign((size_t)H * (n_qt + 1), 0);
    std::vector<int32_t> slot(n_kt, -1), touched, tmp;
    for (int h = 0; h < H; ++h) {
        const int32_t *rp = l->row_ptr + (size_t)h * (l->q_blocks + 1);
        const int32_t *kto = kt_of.empty() ? nullptr : kt_of.data() + (size_t)h * l->k_blocks;
        const int32_t *slo = slot_of.empty() ? nullptr : slot_of.data() + (size_t)h * l->k_blocks;
        f.row_tptr[(size_t)h * (n_qt + 1)] = (int32_t)f.row_tent.size();
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
                bsa_tile_pair e = {kt, -1};
                if (!full) {
                    e.y = (int32_t)(f.sub.size() / ns2);
                    for (int j = 0; j < ns2; ++j)
                        f.sub.push_back(s[j] < 0 ? BSA_GPU_SUB_ABSENT
                                                 : sub_code(l->mask_idx[s[j]]));
                }
                f.row_tent.push_back(e);
            }
            for (int kt : touched)
                slot[kt] = -1;
            f.row_tptr[(size_t)h * (n_qt + 1) + qt + 1] = (int32_t)f.row_tent.size();
        }
    }
}

/* The transposed lists (sorted by query tile: row order visits them so),
 * the heaviest-first orders and the predicate tiles of a form whose rows
 * are built. */
void finish_form(const struct bsa_layout *l, int n_qt, int n_kt, int ns, int g, bool gathered,
                 bsa_tile_form &f)
{
    const int H = l->heads;
    f.col_tptr.assign((size_t)H * (n_kt + 1), 0);
    f.col_tent.resize(f.row_tent.size());
    for (int h = 0; h < H; ++h) {
        int32_t *cp = f.col_tptr.data() + (size_t)h * (n_kt + 1);
        const int32_t *rp = f.row_tptr.data() + (size_t)h * (n_qt + 1);
        for (int32_t j = rp[0]; j < rp[n_qt]; ++j)
            cp[f.row_tent[j].x + 1]++;
        cp[0] = rp[0];
        for (int kt = 0; kt < n_kt; ++kt)
            cp[kt + 1] += cp[kt];
        std::vector<int32_t> fill(cp, cp + n_kt);
        for (int qt = 0; qt < n_qt; ++qt)
            for (int32_t j = rp[qt]; j < rp[qt + 1]; ++j)
                f.col_tent[fill[f.row_tent[j].x]++] = bsa_tile_pair{qt, f.row_tent[j].y};
    }
    f.sub_pred = gathered ? std::vector<int32_t>(f.sub.size() / (ns * ns), 0)
                          : whole_tile_pred(l, f.row_tptr, f.row_tent, f.sub, n_qt, ns, g);
    f.pred_tiles = !gathered && std::all_of(f.sub_pred.begin(), f.sub_pred.end(),
                                            [](int32_t x) { return x != 0; });
    f.q_order = heavy_first(f.row_tptr, H, n_qt);
    f.k_order = heavy_first(f.col_tptr, H, n_kt);
}

} // namespace

bsa_status bsa_tile_tables_build(const struct bsa_layout *l, bsa_tile_tables *t)
{
    const int T = BSA_GPU_TILE, B = l->block, H = l->heads;
    const int n_qt = (l->seq_q + T - 1) / T, n_kt = (l->seq_k + T - 1) / T;
    const int g = B < T ? B : T, ns = T / g;
    int log2g = 0;
    while ((1 << log2g) < g)
        ++log2g;
    /* key blocks per gathered key tile */
    const int G = B < T ? T / B : 1;
    try {
        t->n_qt = n_qt;
        t->n_kt = n_kt;
        t->ns = ns;
        t->log2g = log2g;
        t->kg = G;
        bsa_gpu_layout_stats &st = t->stats;
        st = bsa_gpu_layout_stats();
        st.block = B;
        st.heads = H;
        st.stride_perm = l->stride_perm;

        bsa_tile_form &nat = t->form[0];
        build_rows(l, {}, {}, n_qt, n_kt, ns, g, nat);
        st.chunk_local = chunk_local(nat.row_tptr, nat.row_tent, H, n_qt);
        /* Gathered key tiles (blocks < 64; KERNELS.md option (b)): key
         * blocks sorted by column length, longest first, so that blocks seen
         * by the same query rows share a tile (the fixed pattern's summary
         * columns).  Not for chunk-local layouts: the chunk kernels read each
         * chunk once, which no gathering beats. */
        st.gathered = G > 1 && !st.chunk_local;
        if (st.gathered) {
            bsa_tile_form &gat = t->form[1];
            std::vector<int32_t> kt_gat((size_t)H * l->k_blocks), slot_gat((size_t)H * l->k_blocks);
            gat.grp.assign((size_t)H * n_kt * G, -1);
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
                    gat.grp[((size_t)h * n_kt + i / G) * G + i % G] = kb;
                }
            }
            build_rows(l, kt_gat, slot_gat, n_qt, n_kt, ns, g, gat);
            finish_form(l, n_qt, n_kt, ns, g, true, gat);
        }
        finish_form(l, n_qt, n_kt, ns, g, false, nat);
        for (int f = 0; f < 1 + st.gathered; ++f) {
            const bsa_tile_form &x = t->form[f];
            st.tile_pairs[f] = (int64_t)x.row_tent.size();
            st.pair_eff[f] = pair_efficiency(x.row_tptr, x.row_tent, H, n_qt);
            st.col_pair_eff[f] = pair_efficiency(x.col_tptr, x.col_tent, H, n_kt);
            st.pred_tiles[f] = x.pred_tiles;
        }
        /* Block-row lists: blocks of 32, natural rows (the kernels keep
         * the strided permutation's code out) */
        st.brow = B == 32 && !l->stride_perm;
        if (st.brow) {
            t->brow_r = brow_lists(l, true);
            t->brow_c = brow_lists(l, false);
            for (int64_t r = 0; r < (int64_t)H * l->q_blocks; ++r) {
                const int h = (int)(r / l->q_blocks), qb = (int)(r % l->q_blocks);
                const int32_t *rp = l->row_ptr + (size_t)h * (l->q_blocks + 1);
                st.brow_tiles += (rp[qb + 1] - rp[qb] + 1) / 2; /* 32 x 64 tiles */
            }
        }
        return BSA_SUCCESS;
    } catch (const std::bad_alloc &) {
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "layout tables: host memory for the tile lists");
    }
}

extern "C" bsa_status bsa_gpu_layout_stats_of(const struct bsa_layout *l, bsa_gpu_layout_stats *out)
{
    bsa_tile_tables t;
    bsa_status st = bsa_tile_tables_build(l, &t);
    if (st == BSA_SUCCESS)
        *out = t.stats;
    return st;
}
