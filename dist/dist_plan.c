/*
 * Context-parallel plan creation: where each rank's rows sit in the
 * sequence (contiguous or zig-zag shards), which key shards each rank's
 * queries need (from the layout's blocks), one sub-layout and sub-plan per
 * needed key shard (layouts/layout_slice.c: the backend's ordinary kernels
 * run them), the exchange's buffers, and the agreement of every rank on
 * the arguments and the outcome (a failure on one rank fails all).
 */
#include "dist_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const shard_names[] = {"auto", "contiguous", "zigzag"};
static const char *const exchange_names[] = {"auto", "ring", "allgather"};

enum { allgather_max_bytes = 16 << 20 };

/* Natural position of row t of rank r's shard. */
static int64_t shard_pos(bsa_sharding sh, int r, int P, int64_t n, int64_t t)
{
    if (sh == BSA_SHARD_CONTIGUOUS)
        return r * n + t;
    int64_t c = n / 2;
    return t < c ? r * c + t : (int64_t)(2 * P - 1 - r) * c + (t - c);
}

/* Layout row of natural position p (inverse of bsa_perm_row). */
static int64_t layout_row(int64_t p, int L, int64_t T)
{
    return L ? (p % L) * (T / L) + p / L : p;
}

/* map[0 .. n/B): the global layout block of each block of rank r's
 * sub-layout rows; 0, or -1 when the shard does not cut whole blocks. */
static int block_map(const struct bsa_layout *l, bsa_sharding sh, int r, int P, int64_t n,
                     int32_t *map)
{
    int B = l->block, L = l->stride_perm;
    int64_t T = l->seq_q;
    for (int64_t qb = 0; qb < n / B; qb++) {
        int64_t r0 = -1;
        for (int t = 0; t < B; t++) {
            int64_t lr = bsa_perm_row(qb * B + t, L, n); /* local natural row */
            int64_t R = layout_row(shard_pos(sh, r, P, n, lr), L, T);
            if (t == 0) {
                if (R % B)
                    return -1;
                r0 = R;
            } else if (R != r0 + t) {
                return -1;
            }
        }
        map[qb] = (int32_t)(r0 / B);
    }
    return 0;
}

/* Why sharding sh cannot cut this layout at P ranks (NULL: it can). */
static const char *shard_problem(const struct bsa_layout *l, bsa_sharding sh, int P, int64_t n,
                                 int32_t *scratch)
{
    int64_t unit = sh == BSA_SHARD_ZIGZAG ? n / 2 : n;
    if (sh == BSA_SHARD_ZIGZAG && n % 2)
        return "T/P must be even for zig-zag shards";
    if (unit % l->block)
        return sh == BSA_SHARD_ZIGZAG ? "T/(2P) must be a multiple of the layout block"
                                      : "T/P must be a multiple of the layout block";
    if (l->stride_perm && (n % l->stride_perm || unit % l->stride_perm))
        return "with the strided pattern the shard (zig-zag: each half) must be a multiple of "
               "the stride L";
    for (int r = 0; r < P; r++)
        if (block_map(l, sh, r, P, n, scratch))
            return "with the strided pattern, T/(P*L) (zig-zag: T/(2P*L)) must be a multiple of "
                   "the layout block";
    return NULL;
}

/* need[] and load[] of sharding sh; returns the most-loaded rank's blocks. */
static int64_t work_of(const struct bsa_layout *l, bsa_sharding sh, int P, int64_t n,
                       int32_t *owner, int32_t *scratch, uint8_t *need, int64_t *load)
{
    int64_t nb = n / l->block;
    for (int r = 0; r < P; r++) {
        block_map(l, sh, r, P, n, scratch);
        for (int64_t i = 0; i < nb; i++)
            owner[scratch[i]] = r;
    }
    memset(need, 0, (size_t)P * P);
    memset(load, 0, (size_t)P * sizeof *load);
    for (int64_t i = 0; i < l->nnz; i++) {
        int a = owner[l->row_of[i]], b = owner[l->col_idx[i]];
        need[a * P + b] = 1;
        load[a]++;
    }
    int64_t mx = 0;
    for (int r = 0; r < P; r++)
        mx = load[r] > mx ? load[r] : mx;
    return mx;
}

/* What every rank must agree on (strides may differ between ranks). */
typedef struct agreement {
    int32_t status;
    int32_t dtype, flags, sharding, exchange, size;
    int64_t dims[4][4];
    float scale;
    uint64_t layout_hash;
} agreement;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t layout_hash(const struct bsa_layout *l)
{
    uint64_t h = 0xcbf29ce484222325ull;
    int hdr[8] = {l->block,       l->heads,           l->q_blocks,    l->k_blocks,
                  l->stride_perm, (int)l->pred.flags, l->pred.window, l->pred.prefix};
    h = fnv(h, hdr, sizeof hdr);
    h = fnv(h, l->row_ptr, (size_t)l->heads * (l->q_blocks + 1) * sizeof *l->row_ptr);
    h = fnv(h, l->col_idx, (size_t)l->nnz * sizeof *l->col_idx);
    for (int64_t i = 0; i < l->nnz; i++) {
        int32_t m = l->mask_idx[i];
        if (m >= 0)
            h = fnv(h, l->bits + (int64_t)m * l->block * l->words,
                    (size_t)l->block * l->words * sizeof *l->bits);
        else
            h = fnv(h, &m, sizeof m);
    }
    return h;
}

static void free_plan(struct bsa_dist_plan *p)
{
    if (!p)
        return;
    for (int j = 0; p->sub_plan && j < p->size; j++)
        bsa_plan_destroy(p->sub_plan[j]);
    for (int j = 0; p->sub_layout && j < p->size; j++)
        bsa_layout_destroy(p->sub_layout[j]);
    free(p->sub_plan);
    free(p->sub_layout);
    free(p->need);
    free(p->load);
    if (p->mem)
        p->ops->release(p->ctx->device, p->mem);
    free(p);
}

/* The next buffer of `bytes` at *at from base (NULL: only counts), each
 * aligned to 256 bytes (the device kernels and tensor-core paths read 16). */
static unsigned char *carve(unsigned char *base, size_t *at, size_t bytes)
{
    if (!bytes)
        return NULL;
    unsigned char *m = base ? base + *at : NULL;
    *at += (bytes + 255) / 256 * 256;
    return m;
}

/* The exchange buffers in one allocation from base (NULL: sizes them). */
static void place_buffers(struct bsa_dist_plan *p, unsigned char *base)
{
    size_t at = 0, es = p->es, o_bytes = (size_t)p->o_elems * es, q_bytes = (size_t)p->q_elems * es;
    int ring = p->exchange != BSA_EXCHANGE_ALLGATHER;
    p->kv_mine = carve(base, &at, p->kv_bytes);
    p->kv_all = carve(base, &at, ring ? 0 : p->kv_bytes * p->size);
    for (int i = 0; i < 2; i++)
        p->kv_recv[i] = carve(base, &at, ring ? p->kv_bytes : 0);
    p->q_c = carve(base, &at, q_bytes);
    p->o_c = carve(base, &at, o_bytes);
    p->do_c = carve(base, &at, o_bytes);
    p->o_part = carve(base, &at, o_bytes);
    p->dq_part = carve(base, &at, q_bytes);
    for (int i = 0; i < 2; i++) {
        p->dkv_send[i] = carve(base, &at, p->kv_bytes);
        p->dkv_recv[i] = carve(base, &at, p->kv_bytes);
    }
    p->lse_part = (float *)carve(base, &at, (size_t)p->rows * sizeof(float));
    p->acc_o = (double *)carve(base, &at, (size_t)p->o_elems * sizeof(double));
    p->acc_lse = (double *)carve(base, &at, (size_t)p->rows * sizeof(double));
    p->acc_dq = (double *)carve(base, &at, (size_t)p->q_elems * sizeof(double));
    p->acc_dkv = (double *)carve(base, &at, (size_t)(p->k_elems + p->v_elems) * sizeof(double));
    p->ws = carve(base, &at, p->ws_bytes);
    p->buffer_bytes = at;
}

static bsa_status alloc_buffers(struct bsa_dist_plan *p)
{
    p->kv_bytes = (size_t)(p->k_elems + p->v_elems) * p->es;
    place_buffers(p, NULL);
    bsa_status st = p->ops->alloc(p->ctx->device, p->buffer_bytes, &p->mem);
    if (st == BSA_SUCCESS)
        place_buffers(p, p->mem);
    return st;
}

/* Sets the plan's memory side from the context's backend: the host or
 * device table of operations (p->ops) and whether the engine's transfers
 * are driven from the host (p->host_driven).  Returns NULL when the
 * engine moves the memory that backend holds, else why not. */
static const char *choose_placement(struct bsa_dist_plan *p)
{
    bsa_comm_kind kind = p->comm->engine->kind;
    switch (p->ctx->backend) {
    case BSA_BACKEND_CPU:
        p->ops = &bsa_dist_host_ops;
        return kind == BSA_COMM_NCCL ? "the NCCL communicator moves device memory: it needs a "
                                       "context on the CUDA backend (this one is on cpu)"
                                     : NULL;
    case BSA_BACKEND_CUDA:
#ifdef BSA_WITH_CUDA
        p->ops = &bsa_dist_cuda_ops;
        p->host_driven = kind == BSA_COMM_CALLBACKS;
        return kind == BSA_COMM_MPI
                   ? "the MPI communicator moves host memory and this context is on the CUDA "
                     "backend (device memory); staging through host memory is not implemented: "
                     "use bsa_comm_create_nccl, or bsa_comm_create_callbacks with callbacks that "
                     "move device memory"
                   : NULL;
#else
        return "this libbsa was built without the CUDA backend";
#endif
    default:
        return "dist plans run on the CPU backend (MPI or callbacks) and on the CUDA backend "
               "(NCCL or callbacks); the HIP backend has no build of the device-side dist "
               "kernels (backends/cuda/dist_kernels.cu) yet";
    }
}

/* Everything one rank can check and build alone; a failure leaves the
 * message in bsa_last_error.  p->size, rank, comm, ctx, layout are set. */
static bsa_status build_local(struct bsa_dist_plan *p, const bsa_attn_desc *desc,
                              const bsa_dist_params *prm)
{
    const char *fn = "bsa_dist_plan_create";
    const struct bsa_layout *l = p->layout;
    int P = p->size;
    const char *why = choose_placement(p);
    if (why)
        return bsa_fail(BSA_ERROR_UNSUPPORTED, "%s: %s", fn, why);
    if (l->ctx != p->ctx)
        return bsa_fail(BSA_ERROR_CONTEXT_MISMATCH,
                        "%s: the layout was created with another context", fn);
    if ((unsigned)prm->sharding > BSA_SHARD_ZIGZAG)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: params->sharding = %d is not AUTO (0), CONTIGUOUS (1) or ZIGZAG (2)",
                        fn, (int)prm->sharding);
    if ((unsigned)prm->exchange > BSA_EXCHANGE_ALLGATHER)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: params->exchange = %d is not AUTO (0), RING (1) or ALLGATHER (2)", fn,
                        (int)prm->exchange);
    if (desc->flags & (BSA_PLAN_VARLEN | BSA_PLAN_KEY_LENGTHS))
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "%s: desc->flags: packed sequences (BSA_PLAN_VARLEN) and key lengths "
                        "(BSA_PLAN_KEY_LENGTHS) are not implemented for dist plans",
                        fn);
    if (l->seq_q != l->seq_k)
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "%s: the layout has %d queries and %d keys; dist plans shard one sequence "
                        "(self-attention: seq_q = seq_k)",
                        fn, l->seq_q, l->seq_k);
    if (l->seq_q % P)
        return bsa_fail(BSA_ERROR_INVALID_SHAPE,
                        "%s: the layout's sequence %d is not a multiple of the %d ranks", fn,
                        l->seq_q, P);
    int64_t n = l->seq_q / P;
    if (desc->q.dims[2] != n || desc->k.dims[2] != n || desc->v.dims[2] != n ||
        desc->o.dims[2] != n)
        return bsa_fail(BSA_ERROR_SHAPE_MISMATCH,
                        "%s: each rank passes its shard of T/P = %d / %d = %lld positions; the "
                        "time dims are q %lld, k %lld, v %lld, o %lld",
                        fn, l->seq_q, P, (long long)n, (long long)desc->q.dims[2],
                        (long long)desc->k.dims[2], (long long)desc->v.dims[2],
                        (long long)desc->o.dims[2]);
    p->n = n;

    int32_t *owner = malloc((size_t)l->q_blocks * sizeof *owner);
    int32_t *scratch = malloc((size_t)(n / l->block + 1) * sizeof *scratch);
    uint8_t *need2 = malloc((size_t)P * P);
    int64_t *load2 = malloc((size_t)P * sizeof *load2);
    p->need = malloc((size_t)P * P);
    p->load = malloc((size_t)P * sizeof *p->load);
    p->sub_layout = calloc((size_t)P, sizeof *p->sub_layout);
    p->sub_plan = calloc((size_t)P, sizeof *p->sub_plan);
    bsa_status st = BSA_SUCCESS;
    if (!owner || !scratch || !need2 || !load2 || !p->need || !p->load || !p->sub_layout ||
        !p->sub_plan) {
        st = bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
        goto done;
    }
    /* sharding: the one asked for, or the one whose busiest rank has the
     * fewest blocks (contiguous on a tie: fewer peers for banded layouts) */
    const char *why_c = shard_problem(l, BSA_SHARD_CONTIGUOUS, P, n, scratch);
    const char *why_z = shard_problem(l, BSA_SHARD_ZIGZAG, P, n, scratch);
    bsa_sharding sh = prm->sharding;
    if (sh == BSA_SHARD_AUTO) {
        if (why_c && why_z) {
            st = bsa_fail(BSA_ERROR_INVALID_SHAPE,
                          "%s: no sharding cuts this layout at %d ranks: contiguous: %s; "
                          "zig-zag: %s",
                          fn, P, why_c, why_z);
            goto done;
        }
        if (why_z)
            sh = BSA_SHARD_CONTIGUOUS;
        else if (why_c)
            sh = BSA_SHARD_ZIGZAG;
        else {
            int64_t mc = work_of(l, BSA_SHARD_CONTIGUOUS, P, n, owner, scratch, need2, load2);
            int64_t mz = work_of(l, BSA_SHARD_ZIGZAG, P, n, owner, scratch, need2, load2);
            sh = mz < mc ? BSA_SHARD_ZIGZAG : BSA_SHARD_CONTIGUOUS;
        }
    } else if (sh == BSA_SHARD_CONTIGUOUS ? why_c != NULL : why_z != NULL) {
        st = bsa_fail(BSA_ERROR_INVALID_SHAPE, "%s: %s shards at %d ranks: %s", fn, shard_names[sh],
                      P, sh == BSA_SHARD_CONTIGUOUS ? why_c : why_z);
        goto done;
    }
    p->sharding = sh;
    work_of(l, sh, P, n, owner, scratch, p->need, p->load);

    p->batch = desc->q.dims[0];
    p->heads = desc->q.dims[1];
    p->kv_heads = desc->k.dims[1];
    p->d = desc->q.dims[3];
    p->dv = desc->v.dims[3];
    p->dtype = desc->dtype;
    p->es = desc->dtype == BSA_DTYPE_F32 ? 4 : 2;
    p->q = desc->q;
    p->k = desc->k;
    p->v = desc->v;
    p->o = desc->o;
    p->rows = p->batch * p->heads * n;
    p->q_elems = p->rows * p->d;
    p->o_elems = p->rows * p->dv;
    p->k_elems = p->batch * p->kv_heads * n * p->d;
    p->v_elems = p->batch * p->kv_heads * n * p->dv;
    if ((size_t)(p->k_elems + p->v_elems) * p->es > (size_t)INT32_MAX) {
        st = bsa_fail(BSA_ERROR_UNSUPPORTED,
                      "%s: a K/V shard of %lld bytes; messages above 2^31 bytes are not "
                      "implemented",
                      fn, (long long)((p->k_elems + p->v_elems) * (int64_t)p->es));
        goto done;
    }

    /* the sub-layouts: this rank's query blocks x each needed key shard */
    int32_t *qmap = malloc((size_t)(n / l->block) * sizeof *qmap);
    int32_t *kmap = malloc((size_t)(n / l->block) * sizeof *kmap);
    if (!qmap || !kmap) {
        free(qmap);
        free(kmap);
        st = bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
        goto done;
    }
    int L = l->stride_perm;
    block_map(l, sh, p->rank, P, n, qmap);
    bsa_attn_desc sd = *desc;
    sd.q = bsa_tensor_bhtd(p->batch, p->heads, n, p->d);
    sd.k = bsa_tensor_bhtd(p->batch, p->kv_heads, n, p->d);
    sd.v = bsa_tensor_bhtd(p->batch, p->kv_heads, n, p->dv);
    sd.o = bsa_tensor_bhtd(p->batch, p->heads, n, p->dv);
    sd.flags = desc->flags & BSA_PLAN_FORCE_REFERENCE;
    for (int j = 0; j < P && st == BSA_SUCCESS; j++) {
        /* the diagonal one is always built: it validates the caller's own
         * tensor descriptors (strides included) through bsa_plan_create */
        if (!p->need[p->rank * P + j] && j != p->rank)
            continue;
        block_map(l, sh, j, P, n, kmap);
        st = bsa_layout_slice(l, (int)(n / l->block), qmap, (int)(n / l->block), kmap, L, fn,
                              &p->sub_layout[j]);
        if (st)
            break;
        if (j == p->rank) {
            bsa_plan_t check = NULL;
            st = bsa_plan_create(p->ctx, &check, desc, p->sub_layout[j]);
            if (st) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", bsa_last_error());
                st = bsa_fail(st, "%s: the shard's tensors: %s", fn, msg);
                break;
            }
            bsa_plan_destroy(check);
            if (!p->need[p->rank * P + j])
                continue;
        }
        if ((st = bsa_plan_create(p->ctx, &p->sub_plan[j], &sd, p->sub_layout[j])) != BSA_SUCCESS)
            break;
        size_t ws = 0;
        bsa_plan_workspace_size(p->sub_plan[j], &ws);
        if (ws > p->ws_bytes)
            p->ws_bytes = ws;
    }
    free(qmap);
    free(kmap);
    if (st)
        goto done;

    /* exchange: one all-gather when every rank needs every shard and the
     * gathered K/V is small (one collective, latency-bound sizes); else the
     * ring, which moves only the shards the layout needs and overlaps */
    int full = 1;
    for (int i = 0; i < P * P; i++)
        full &= p->need[i];
    size_t kvb = (size_t)(p->k_elems + p->v_elems) * p->es;
    bsa_dist_exchange ex = prm->exchange;
    if (ex == BSA_EXCHANGE_AUTO)
        ex = full && kvb * P <= (size_t)allgather_max_bytes ? BSA_EXCHANGE_ALLGATHER
                                                            : BSA_EXCHANGE_RING;
    p->exchange = ex;
    if ((st = alloc_buffers(p)) != BSA_SUCCESS)
        goto done;

    int peers = 0;
    for (int j = 0; j < P; j++)
        peers += j != p->rank && p->need[p->rank * P + j];
    const char *impl = "none";
    for (int j = 0; j < P; j++)
        if (p->sub_plan[j]) {
            bsa_plan_implementation(p->sub_plan[j], &impl);
            break;
        }
    snprintf(p->name, sizeof p->name, "dist-%s(%s, %d rank%s, %d of %d peer shard%s) over %s",
             exchange_names[ex], shard_names[sh], P, P == 1 ? "" : "s", peers, P - 1,
             P - 1 == 1 ? "" : "s", impl);
done:
    free(owner);
    free(scratch);
    free(need2);
    free(load2);
    return st;
}

BSA_API bsa_status bsa_dist_plan_create(bsa_context_t ctx, bsa_dist_plan_t *plan,
                                        const bsa_attn_desc *desc, bsa_layout_t layout,
                                        bsa_comm_t comm, const bsa_dist_params *params)
{
    /* without a communicator there is no one to agree with: these fail on
     * this rank alone */
    if (!ctx || !plan || !desc || !layout || !comm)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_dist_plan_create: %s is NULL",
                        !ctx      ? "ctx"
                        : !plan   ? "plan"
                        : !desc   ? "desc"
                        : !layout ? "layout"
                                  : "comm");
    bsa_dist_params prm = {BSA_SHARD_AUTO, BSA_EXCHANGE_AUTO};
    if (params)
        prm = *params;
    struct bsa_dist_plan *p = calloc(1, sizeof *p);
    bsa_status st;
    if (!p)
        st = bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_dist_plan_create: out of host memory");
    else {
        p->ctx = ctx;
        p->comm = comm;
        p->layout = layout;
        p->rank = comm->rank;
        p->size = comm->size;
        st = build_local(p, desc, &prm);
    }
    char mine[512];
    snprintf(mine, sizeof mine, "%s", bsa_last_error());

    /* agreement: every rank's status and arguments, all-gathered */
    agreement a;
    memset(&a, 0, sizeof a);
    a.status = st;
    a.dtype = desc->dtype;
    a.flags = (int32_t)desc->flags;
    a.sharding = prm.sharding;
    a.exchange = prm.exchange;
    a.size = comm->size;
    const bsa_tensor_desc *t[4] = {&desc->q, &desc->k, &desc->v, &desc->o};
    for (int i = 0; i < 4; i++)
        memcpy(a.dims[i], t[i]->dims, sizeof a.dims[i]);
    a.scale = desc->scale;
    a.layout_hash = layout_hash(layout);
    agreement *all = malloc((size_t)comm->size * sizeof *all);
    if (!all) {
        free_plan(p);
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_dist_plan_create: out of host memory");
    }
    bsa_status cst = comm->engine->allgather_host(comm, &a, sizeof a, all);
    if (cst != BSA_SUCCESS) {
        free(all);
        free_plan(p);
        return cst;
    }
    if (st != BSA_SUCCESS) {
        free(all);
        free_plan(p);
        return bsa_fail(st, "%s", mine);
    }
    for (int r = 0; r < comm->size; r++) {
        const agreement *o = &all[r];
        const char *what = NULL;
        if (o->status != BSA_SUCCESS)
            st = (bsa_status)o->status;
        else if (o->dtype != a.dtype)
            what = "dtype";
        else if (o->flags != a.flags)
            what = "flags";
        else if (memcmp(o->dims, a.dims, sizeof a.dims))
            what = "tensor dims";
        else if (o->scale != a.scale && !(isnan(o->scale) && isnan(a.scale)))
            what = "scale";
        else if (o->sharding != a.sharding || o->exchange != a.exchange)
            what = "params";
        else if (o->layout_hash != a.layout_hash)
            what = "layout (its blocks or element masks differ)";
        if (st != BSA_SUCCESS) {
            free(all);
            free_plan(p);
            return bsa_fail(st,
                            "bsa_dist_plan_create: rank %d failed (%s; see its own message), so "
                            "every rank fails",
                            r, bsa_status_string(st));
        }
        if (what) {
            free(all);
            free_plan(p);
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "bsa_dist_plan_create: rank %d passed a different %s than rank %d; "
                            "every rank must pass the same",
                            r, what, comm->rank);
        }
    }
    free(all);
    bsa_live_add(&comm->live_plans, 1);
    bsa_live_add(&layout->live_plans, 1);
    *plan = p;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_dist_plan_destroy(bsa_dist_plan_t plan)
{
    if (!plan)
        return BSA_SUCCESS;
    bsa_live_add(&plan->comm->live_plans, -1);
    bsa_live_add(&plan->layout->live_plans, -1);
    free_plan(plan);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_dist_plan_info(bsa_dist_plan_t plan, bsa_dist_info *info)
{
    bsa_status st = bsa_check_nonnull2("bsa_dist_plan_info", plan, "plan", info, "info");
    if (st != BSA_SUCCESS)
        return st;
    memset(info, 0, sizeof *info);
    info->rank = plan->rank;
    info->size = plan->size;
    info->sharding = plan->sharding;
    info->exchange = plan->exchange;
    info->shard_len = plan->n;
    for (int j = 0; j < plan->size; j++) {
        info->peers_needed += j != plan->rank && plan->need[plan->rank * plan->size + j];
        if (plan->load[j] > info->blocks_max)
            info->blocks_max = plan->load[j];
    }
    info->blocks_local = plan->load[plan->rank];
    info->buffer_bytes = plan->buffer_bytes;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_dist_plan_implementation(bsa_dist_plan_t plan, const char **name)
{
    bsa_status st = bsa_check_nonnull2("bsa_dist_plan_implementation", plan, "plan", name, "name");
    if (st != BSA_SUCCESS)
        return st;
    *name = plan->name;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_dist_shard_positions(bsa_dist_plan_t plan, int rank, int64_t *positions)
{
    bsa_status st =
        bsa_check_nonnull2("bsa_dist_shard_positions", plan, "plan", positions, "positions");
    if (st != BSA_SUCCESS)
        return st;
    if (rank < 0 || rank >= plan->size)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_dist_shard_positions: rank %d is not in 0..%d", rank, plan->size - 1);
    for (int64_t t = 0; t < plan->n; t++)
        positions[t] = shard_pos(plan->sharding, rank, plan->size, plan->n, t);
    return BSA_SUCCESS;
}
