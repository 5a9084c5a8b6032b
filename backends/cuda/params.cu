/*
 * Kernel parameters of a plan and call, shared by the CUDA and HIP hosts
 * (both launch the same kernels with the same bsa_cuda_params): the plan's
 * shapes and the tables of the key-tile form its kernels read.
 */
#include "cuda_internal.h"

#include <string.h>

bsa_cuda_params bsa_cuda_make_params(const struct bsa_plan *plan, int gather)
{
    const bsa_shape &s = plan->shape;
    const bsa_layout *l = plan->layout;
    const bsa_cuda_layout *dl = static_cast<const bsa_cuda_layout *>(l->backend_data);
    bsa_cuda_params p;
    memset(&p, 0, sizeof(p));
    for (int i = 0; i < 3; ++i) {
        p.q_s[i] = s.q_stride[i];
        p.k_s[i] = s.k_stride[i];
        p.v_s[i] = s.v_stride[i];
        p.o_s[i] = s.o_stride[i];
    }
    p.dtype = s.dtype;
    p.batch = (int)s.batch;
    p.heads = (int)s.heads;
    p.seq_q = (int)l->seq_q;
    p.seq_k = (int)l->seq_k;
    p.time_q = (int)s.seq_q;
    p.time_k = (int)s.seq_k;
    p.n_seg = (int)s.batch; /* varlen: set per call */
    p.kv_heads = (int)s.kv_heads;
    p.group = (int)(s.heads / s.kv_heads);
    p.dim = (int)s.head_dim;
    p.dim_v = (int)s.v_dim;
    p.scale = s.scale;
    p.scale_log2 = s.scale * 1.4426950408889634f;
    p.stride_perm = l->stride_perm;
    p.lheads = l->heads;
    p.block = l->block;
    p.words = l->words;
    p.pred = l->pred;
    p.n_qt = dl->n_qt;
    p.n_kt = dl->n_kt;
    p.ns = dl->ns;
    p.log2g = dl->log2g;
    const bsa_cuda_tiles &f = dl->form[gather ? 1 : 0];
    p.row_tptr = f.row_tptr;
    p.col_tptr = f.col_tptr;
    p.q_order = f.q_order;
    p.k_order = f.k_order;
    p.sub = f.sub;
    p.sub_pred = f.sub_pred;
    p.pred_tiles = f.pred_tiles;
    p.row_tent = f.row_tent;
    p.col_tent = f.col_tent;
    p.mask_idx = dl->mask_idx;
    p.row_ptr = dl->row_ptr;
    p.col_idx = dl->col_idx;
    p.col_ptr = dl->col_ptr;
    p.t_block = dl->t_block;
    p.t_row = dl->t_row;
    p.bits = dl->bits;
    p.kgrp = f.kgrp;
    p.kg = dl->kg;
    p.brow_rptr = dl->brow_rptr;
    p.brow_cptr = dl->brow_cptr;
    p.brow_qord = dl->brow_qord;
    p.brow_kord = dl->brow_kord;
    p.brow_rent = dl->brow_rent;
    p.brow_cent = dl->brow_cent;
    return p;
}

/* The call's key lengths and packed-sequence offsets: device arrays (bsa.h). */
void bsa_cuda_set_segments(bsa_cuda_params &p, const int32_t *klen, const int32_t *cu_q,
                           const int32_t *cu_k, int num_seqs)
{
    p.klen = klen;
    p.cu_q = cu_q;
    p.cu_k = cu_k;
    if (cu_q)
        p.n_seg = num_seqs;
}
