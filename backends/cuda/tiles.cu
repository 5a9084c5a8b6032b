/*
 * Upload of a layout's tables to the device (CUDA or HIP: the same text):
 * the host builds them (backends/gpu/tile_tables.cpp: tile-pair lists of
 * both key-tile forms, block-row lists, statistics), this puts them with
 * the layout's own tables in one device allocation.  Once per layout.
 */
#include "cuda_internal.h"

#include "../gpu/tile_tables.h"

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

} // namespace

bsa_status bsa_cuda_upload_layout(const struct bsa_layout *l, bsa_cuda_layout *dl)
{
    const int H = l->heads;
    try {
        bsa_tile_tables t;
        bsa_status st = bsa_tile_tables_build(l, &t);
        if (st != BSA_SUCCESS)
            return st;
        const bsa_brow_side &brow_r = t.brow_r, &brow_c = t.brow_c;
        int64_t nnz = l->nnz;
        int64_t nbits = l->n_partial * l->block * l->words;
        carve c;
        struct form_at {
            size_t rtp, rte, ctp, cte, qo, ko, sub, sp, grp;
        } fa[2];
        for (int f = 0; f < 2; ++f) {
            const bsa_tile_form &x = t.form[f];
            fa[f].rtp = c.add<int32_t>(x.row_tptr.size());
            fa[f].rte = c.add<int2>(x.row_tent.size());
            fa[f].ctp = c.add<int32_t>(x.col_tptr.size());
            fa[f].cte = c.add<int2>(x.col_tent.size());
            fa[f].qo = c.add<int32_t>(x.q_order.size());
            fa[f].ko = c.add<int32_t>(x.k_order.size());
            fa[f].sub = c.add<int32_t>(x.sub.size());
            fa[f].sp = c.add<int32_t>(x.sub_pred.size());
            fa[f].grp = c.add<int32_t>(x.grp.size());
        }
        size_t o_mi = c.add<int32_t>(nnz);
        size_t o_bits = c.add<uint64_t>(nbits);
        size_t o_rp = c.add<int32_t>((size_t)H * (l->q_blocks + 1));
        size_t o_ci = c.add<int32_t>(nnz);
        size_t o_cp = c.add<int32_t>((size_t)H * (l->k_blocks + 1));
        size_t o_tb = c.add<int32_t>(nnz), o_tr = c.add<int32_t>(nnz);
        size_t o_brp = c.add<int32_t>(brow_r.ptr.size()), o_bre = c.add<int4>(brow_r.ent.size());
        size_t o_bro = c.add<int32_t>(brow_r.ord.size());
        size_t o_bcp = c.add<int32_t>(brow_c.ptr.size()), o_bce = c.add<int4>(brow_c.ent.size());
        size_t o_bco = c.add<int32_t>(brow_c.ord.size());

        void *mem = nullptr;
        cudaError_t e = cudaMalloc(&mem, c.off ? c.off : 256);
        if (e != cudaSuccess)
            return bsa_fail(BSA_ERROR_OUT_OF_MEMORY,
                            "layout_prepare: device allocation of %zu bytes for the layout "
                            "tables: %s",
                            c.off, cudaGetErrorString(e));
        char *base = static_cast<char *>(mem);
        struct up {
            size_t off;
            const void *src;
            size_t bytes;
        };
        std::vector<up> ups = {
            {o_mi, l->mask_idx, (size_t)nnz * 4},
            {o_bits, l->bits, (size_t)nbits * 8},
            {o_rp, l->row_ptr, (size_t)H * (l->q_blocks + 1) * 4},
            {o_ci, l->col_idx, (size_t)nnz * 4},
            {o_cp, l->col_ptr, (size_t)H * (l->k_blocks + 1) * 4},
            {o_tb, l->t_block, (size_t)nnz * 4},
            {o_tr, l->t_row, (size_t)nnz * 4},
            {o_brp, brow_r.ptr.data(), brow_r.ptr.size() * 4},
            {o_bre, brow_r.ent.data(), brow_r.ent.size() * sizeof(int4)},
            {o_bro, brow_r.ord.data(), brow_r.ord.size() * 4},
            {o_bcp, brow_c.ptr.data(), brow_c.ptr.size() * 4},
            {o_bce, brow_c.ent.data(), brow_c.ent.size() * sizeof(int4)},
            {o_bco, brow_c.ord.data(), brow_c.ord.size() * 4},
        };
        for (int f = 0; f < 2; ++f) {
            const bsa_tile_form &x = t.form[f];
            ups.push_back({fa[f].rtp, x.row_tptr.data(), x.row_tptr.size() * 4});
            ups.push_back({fa[f].rte, x.row_tent.data(), x.row_tent.size() * sizeof(int2)});
            ups.push_back({fa[f].ctp, x.col_tptr.data(), x.col_tptr.size() * 4});
            ups.push_back({fa[f].cte, x.col_tent.data(), x.col_tent.size() * sizeof(int2)});
            ups.push_back({fa[f].qo, x.q_order.data(), x.q_order.size() * 4});
            ups.push_back({fa[f].ko, x.k_order.data(), x.k_order.size() * 4});
            ups.push_back({fa[f].sub, x.sub.data(), x.sub.size() * 4});
            ups.push_back({fa[f].sp, x.sub_pred.data(), x.sub_pred.size() * 4});
            ups.push_back({fa[f].grp, x.grp.data(), x.grp.size() * 4});
        }
        for (const up &u : ups) {
            if (!u.bytes || !u.src)
                continue;
            e = cudaMemcpy(base + u.off, u.src, u.bytes, cudaMemcpyHostToDevice);
            if (e != cudaSuccess) {
                (void)cudaFree(mem); /* already failing: its own status adds nothing */
                return bsa_fail(BSA_ERROR_DEVICE, "layout_prepare: upload of the tables: %s",
                                cudaGetErrorString(e));
            }
        }
        dl->n_qt = t.n_qt;
        dl->n_kt = t.n_kt;
        dl->ns = t.ns;
        dl->log2g = t.log2g;
        dl->kg = t.kg;
        dl->stats = t.stats;
        dl->dev_mem = mem;
        for (int f = 0; f < 2; ++f) {
            bsa_cuda_tiles &d = dl->form[f];
            d.row_tptr = reinterpret_cast<int32_t *>(base + fa[f].rtp);
            d.row_tent = reinterpret_cast<int2 *>(base + fa[f].rte);
            d.col_tptr = reinterpret_cast<int32_t *>(base + fa[f].ctp);
            d.col_tent = reinterpret_cast<int2 *>(base + fa[f].cte);
            d.q_order = reinterpret_cast<int32_t *>(base + fa[f].qo);
            d.k_order = reinterpret_cast<int32_t *>(base + fa[f].ko);
            d.sub = reinterpret_cast<int32_t *>(base + fa[f].sub);
            d.sub_pred = reinterpret_cast<int32_t *>(base + fa[f].sp);
            d.pred_tiles = t.form[f].pred_tiles;
            d.kgrp = f ? reinterpret_cast<int32_t *>(base + fa[f].grp) : nullptr;
        }
        dl->mask_idx = reinterpret_cast<int32_t *>(base + o_mi);
        dl->bits = reinterpret_cast<uint64_t *>(base + o_bits);
        dl->row_ptr = reinterpret_cast<int32_t *>(base + o_rp);
        dl->col_idx = reinterpret_cast<int32_t *>(base + o_ci);
        dl->col_ptr = reinterpret_cast<int32_t *>(base + o_cp);
        dl->t_block = reinterpret_cast<int32_t *>(base + o_tb);
        dl->t_row = reinterpret_cast<int32_t *>(base + o_tr);
        if (t.stats.brow) {
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
