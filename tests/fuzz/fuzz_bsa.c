/*
 * libFuzzer target: arbitrary bytes drive layout creation (dense matrices,
 * presets with arbitrary parameters, callback masks), descriptor validation,
 * plan creation and a small CPU forward/backward.  Any crash, leak or
 * sanitizer report is a finding; a failing status is a normal outcome.
 *
 * Sizes that reach allocation are bounded (layouts up to seq 512, runs up to
 * seq 128) so that a run tests logic, not the machine's memory; raw
 * descriptor fields are not bounded, because validation must reject any
 * value before it allocates.
 */
#include "bsa.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint64_t take(reader *r, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v <<= 8;
        if (r->n) {
            v |= *r->p++;
            r->n--;
        }
    }
    return v;
}

static int take_int(reader *r, int lo, int hi) /* [lo, hi] */
{
    return lo + (int)(take(r, 2) % (uint64_t)(hi - lo + 1));
}

static int mask_cb(void *user, int head, int qb, int kb, int idx, int block, uint8_t *mask)
{
    reader *r = user;
    uint64_t bits = take(r, 8);
    for (int i = 0; i < block * block; i++)
        mask[i] = (uint8_t)((bits >> ((i * 7 + qb + kb + head) & 63)) & 1u);
    return (bits & 0xff) == 0x5a; /* occasionally report failure */
}

static void run_problem(bsa_context_t ctx, bsa_layout_t lay, reader *r)
{
    bsa_layout_info info;
    if (bsa_layout_get_info(lay, &info) != BSA_SUCCESS)
        return;
    int heads = info.heads > 1 ? info.heads : take_int(r, 1, 3);
    int dim = 8 * take_int(r, 1, 4);
    int batch = take_int(r, 1, 2);
    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = (bsa_dtype)take_int(r, 0, 3); /* 3 is invalid on purpose */
    if (take(r, 1) & 1) {
        d.q = d.o = bsa_tensor_bthd(batch, info.seq_q, heads, dim);
        d.k = d.v = bsa_tensor_bthd(batch, info.seq_k, heads, dim);
    } else {
        d.q = d.o = bsa_tensor_bhtd(batch, heads, info.seq_q, dim);
        d.k = d.v = bsa_tensor_bhtd(batch, heads, info.seq_k, dim);
    }
    if ((take(r, 1) & 7) == 0) /* corrupt one raw field: validation must catch it */
        d.q.dims[take_int(r, 0, 3)] = (int64_t)take(r, 8);
    d.scale = (take(r, 1) & 1) ? (float)take_int(r, 1, 100) / 16.0f : 0.0f;
    bsa_plan_t plan;
    if (bsa_plan_create(ctx, &plan, &d, lay) != BSA_SUCCESS)
        return;
    size_t esz = d.dtype == BSA_DTYPE_F32 ? 4 : 2;
    size_t nq = (size_t)batch * heads * info.seq_q * dim,
           nk = (size_t)batch * heads * info.seq_k * dim;
    uint8_t *q = malloc(nq * esz), *o = malloc(nq * esz), *dout = malloc(nq * esz),
            *dq = malloc(nq * esz);
    uint8_t *k = malloc(nk * esz), *v = malloc(nk * esz), *dk = malloc(nk * esz),
            *dv = malloc(nk * esz);
    float *lse = malloc(sizeof(float) * batch * heads * info.seq_q);
    if (q && o && dout && dq && k && v && dk && dv && lse) {
        /* bytes from the input as values: NaN/Inf included on purpose */
        for (size_t i = 0; i < nq * esz; i++)
            q[i] = (uint8_t)take(r, 1), dout[i] = (uint8_t)(i * 31 + 7);
        for (size_t i = 0; i < nk * esz; i++)
            k[i] = (uint8_t)(i * 13 + 1), v[i] = (uint8_t)take(r, 1);
        if (bsa_forward(plan, &(bsa_fwd_args){q, k, v, o, lse}, NULL, 0, NULL) == BSA_SUCCESS)
            bsa_backward(plan, &(bsa_bwd_args){q, k, v, o, lse, dout, dq, dk, dv}, NULL, 0, NULL);
    }
    free(q), free(o), free(dout), free(dq), free(k), free(v), free(dk), free(dv), free(lse);
    bsa_plan_destroy(plan);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    bsa_context_t ctx;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 1};
    if (bsa_context_create(&ctx, &cp) != BSA_SUCCESS)
        abort(); /* the CPU backend always exists */
    static const int blocks[] = {8, 16, 32, 64, 128, 0, 24, -8};
    bsa_layout_t lay = NULL;
    int kind = (int)take(&r, 1) % 3;
    if (kind == 0) {
        bsa_preset p;
        p.pattern = (bsa_pattern)take_int(&r, 0, 4);
        p.block = blocks[take(&r, 1) & 7];
        p.seq = take_int(&r, 0, 512);
        p.heads = take_int(&r, 0, 8);
        p.ctx = take_int(&r, -2, 300);
        p.num_verts = take_int(&r, -1, 8);
        p.vertsize = take_int(&r, -1, 8);
        p.bidirectional = (int)(take(&r, 1) & 1);
        bsa_layout_create_preset(ctx, &lay, &p);
    } else {
        bsa_layout_desc d;
        d.block = blocks[take(&r, 1) & 7];
        d.heads = take_int(&r, 0, 4);
        d.q_blocks = take_int(&r, 0, 12);
        d.k_blocks = take_int(&r, 0, 12);
        d.predicates = (unsigned)take(&r, 1) & 0xf; /* bit 3 is invalid on purpose */
        d.window = take_int(&r, -1, 200);
        d.prefix = take_int(&r, -1, 200);
        size_t n = (size_t)(d.heads > 0 ? d.heads : 1) * (d.q_blocks > 0 ? d.q_blocks : 1) *
                   (d.k_blocks > 0 ? d.k_blocks : 1);
        uint8_t *m = malloc(n);
        if (!m)
            abort();
        for (size_t i = 0; i < n; i++)
            m[i] = (uint8_t)(take(&r, 1) & 1);
        if (kind == 1)
            bsa_layout_create_dense(ctx, &lay, &d, m);
        else
            bsa_layout_create_callback(ctx, &lay, &d, (take(&r, 1) & 1) ? m : NULL, mask_cb, &r);
        free(m);
    }
    if (lay) {
        bsa_layout_info info;
        if (bsa_layout_get_info(lay, &info) == BSA_SUCCESS && info.seq_q <= 128 &&
            info.seq_k <= 128) {
            uint8_t *mask = malloc((size_t)info.seq_q * info.seq_k);
            if (mask)
                bsa_layout_element_mask(lay, 0, mask);
            free(mask);
            run_problem(ctx, lay, &r);
        }
        bsa_layout_destroy(lay);
    }
    bsa_context_destroy(ctx);
    return 0;
}
