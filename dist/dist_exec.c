/*
 * Context-parallel execution, written once for host memory (the CPU
 * backend over MPI or callbacks) and device memory (the CUDA backend over
 * NCCL or callbacks): the per-step work (packing, merges, sums) is the
 * plan's ops table (dist_ops.c: host loops, or kernels on the caller's
 * stream from backends/cuda/dist_kernels.cu).
 *
 * Schedule: P steps.  At step s rank i computes its queries against key
 * shard src = i - s (mod P) with the sub-plan built for that shard, if the
 * layout has any block there; the K/V shard arrives straight from its
 * owner (sent at step s to rank owner + s), and the exchange of step s + 1
 * is posted before step s computes, so the two overlap as far as the
 * engine progresses messages in the background.  Step 0 is the rank's own
 * shard.  With the all-gather exchange every shard is gathered first (by
 * the engine's all-gather; by P - 1 message steps where the engine is
 * driven from the host and the memory is the device's: the callbacks'
 * allgather takes host memory).
 *
 * Ordering with device memory: NCCL posts on the call's stream, so stream
 * order covers everything.  An engine driven from the host (the
 * callbacks) posts from the host: the stream is synchronised before each
 * post (a send then holds what the stream wrote, and no kernel still
 * reads a buffer a receive may overwrite), and its wait returns when the
 * received bytes are in place, so the kernels queued after it read them.
 *
 * Forward: the partial (O_s, lse_s) of each step is merged into running
 * double-precision accumulators in step order:
 *   lse = log(exp(lse_acc) + exp(lse_s)),
 *   O   = O_acc exp(lse_acc - lse) + O_s exp(lse_s - lse).
 * Backward: the sub-plans' backward with the merged O and lse (delta =
 * rowsum(dO O) and P = exp(S - lse) are then those of the whole row) gives
 * exact partials: dQ sums them over steps; the dK/dV partial for shard src
 * goes back to its owner, which sums the partials in step order (its own
 * first, then those of ranks owner + 1, owner + 2, ...): the same inputs
 * give the same bits, whatever the message timing.
 */
#include "dist_internal.h"
#include "../api/overlap.h"

#include <math.h>
#include <string.h>

/* Strided caller tensor t (dims of t) into a contiguous copy, same dtype. */
static bsa_status pack(const struct bsa_dist_plan *p, const bsa_tensor_desc *t, const void *src,
                       void *dst, void *stream)
{
    return p->ops->pack(dst, src, t->dims, t->strides, p->es, stream);
}

/* Contiguous double accumulator into the strided caller tensor t. */
static bsa_status unpack(const struct bsa_dist_plan *p, const bsa_tensor_desc *t, const double *acc,
                         void *dst, void *stream)
{
    return p->ops->unpack(dst, acc, t->dims, t->strides, p->dtype, stream);
}

/* Posts a batch; see the ordering note above for host_driven. */
static bsa_status post(struct bsa_dist_plan *p, const bsa_comm_op *ops, int n, int tag,
                       void *stream, bsa_comm_pending *pend)
{
    if (p->host_driven && n) {
        bsa_status st = p->ops->sync(stream);
        if (st != BSA_SUCCESS)
            return st;
    }
    return p->comm->engine->post(p->comm, ops, n, tag, stream, pend);
}

/* The K/V exchange of step s (s >= 1): receives the shard of rank me - s
 * into `into` (the ring's kv_recv[s % 2], or that shard's all-gather
 * slot), sends this rank's to rank me + s; each only if the layout needs
 * it. */
static bsa_status post_kv(struct bsa_dist_plan *p, int s, unsigned char *into, void *stream,
                          bsa_comm_pending *pend)
{
    int P = p->size, me = p->rank;
    int src = (me - s + P) % P, dst = (me + s) % P;
    bsa_comm_op ops[2];
    int n = 0;
    if (p->need[me * P + src])
        ops[n++] = (bsa_comm_op){src, 0, into, p->kv_bytes};
    if (p->need[dst * P + me])
        ops[n++] = (bsa_comm_op){dst, 1, p->kv_mine, p->kv_bytes};
    return post(p, ops, n, s, stream, pend);
}

/* The all-gather exchange as P - 1 message steps (host-driven engine,
 * device memory), each waited before the next: the shards the layout
 * needs, into their slots of kv_all. */
static bsa_status gather_by_messages(struct bsa_dist_plan *p, void *stream)
{
    for (int s = 1; s < p->size; s++) {
        int src = (p->rank - s + p->size) % p->size;
        bsa_comm_pending pend;
        memset(&pend, 0, sizeof pend);
        bsa_status st = post_kv(p, s, p->kv_all + (size_t)src * p->kv_bytes, stream, &pend);
        bsa_status wt = p->comm->engine->wait(p->comm, &pend);
        if (st != BSA_SUCCESS || wt != BSA_SUCCESS)
            return st != BSA_SUCCESS ? st : wt;
    }
    return BSA_SUCCESS;
}

/* The K/V shard of step s, after step_top(s). */
static const unsigned char *kv_of(const struct bsa_dist_plan *p, int s)
{
    int src = (p->rank - s + p->size) % p->size;
    if (s == 0)
        return p->kv_mine;
    if (p->exchange == BSA_EXCHANGE_ALLGATHER)
        return p->kv_all + (size_t)src * p->kv_bytes;
    return p->kv_recv[s % 2];
}

/* Before any step: packs this rank's shard (Q into q_c, K/V into
 * kv_mine); all-gathers K/V or posts the ring's step 1. */
static bsa_status start(struct bsa_dist_plan *p, const void *q, const void *k, const void *v,
                        void *stream, bsa_comm_pending *pend)
{
    bsa_status st;
    if ((st = pack(p, &p->q, q, p->q_c, stream)) || (st = pack(p, &p->k, k, p->kv_mine, stream)) ||
        (st = pack(p, &p->v, v, p->kv_mine + (size_t)p->k_elems * p->es, stream)))
        return st;
    if (p->exchange == BSA_EXCHANGE_ALLGATHER)
        return p->host_driven ? gather_by_messages(p, stream)
                              : p->comm->engine->allgather(p->comm, p->kv_mine, p->kv_bytes,
                                                           p->kv_all, stream);
    return p->size > 1 ? post_kv(p, 1, p->kv_recv[1], stream, &pend[1]) : BSA_SUCCESS;
}

/* The key shard a step computes with: its owner and its packed K and V. */
typedef struct shard {
    int src;
    const void *k, *v;
} shard;

/* At the top of step s: step 0 starts (start(), on the caller's q, k, v);
 * at s >= 1 the shard of step s has arrived and step s + 1's is posted
 * (into the buffer step s - 1 used, whose compute is done).  *sh: step s's
 * shard. */
static bsa_status step_top(struct bsa_dist_plan *p, int s, const void *q, const void *k,
                           const void *v, void *stream, bsa_comm_pending *pend, shard *sh)
{
    const unsigned char *kv = kv_of(p, s);
    sh->src = (p->rank - s + p->size) % p->size;
    sh->k = kv;
    sh->v = kv + (size_t)p->k_elems * p->es;
    if (s == 0)
        return start(p, q, k, v, stream, pend);
    if (p->exchange == BSA_EXCHANGE_ALLGATHER)
        return BSA_SUCCESS;
    bsa_status st = p->comm->engine->wait(p->comm, &pend[s % 2]);
    if (st != BSA_SUCCESS)
        return st;
    if (s + 1 < p->size)
        return post_kv(p, s + 1, p->kv_recv[(s + 1) % 2], stream, &pend[(s + 1) % 2]);
    return BSA_SUCCESS;
}

/* Waits for everything posted, after a failure (so that no buffer is
 * still being written when the call returns). */
static void drain(struct bsa_dist_plan *p, bsa_comm_pending *pend, int n)
{
    for (int i = 0; i < n; i++)
        p->comm->engine->wait(p->comm, &pend[i]);
}

static bsa_status check_args(const struct bsa_dist_plan *p, const char *fn, const void *const *ptrs,
                             const char *const *names, int n, const int32_t *kl, const int32_t *cq,
                             const int32_t *ck, int ns)
{
    for (int i = 0; i < n; i++)
        if (!ptrs[i])
            return bsa_fail(BSA_ERROR_NULL_POINTER, "%s: args->%s is NULL", fn, names[i]);
    if (kl || cq || ck || ns)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "%s: args->key_lengths, cu_seqlens_q/k and num_seqs must be NULL / 0 "
                        "(not implemented for dist plans)",
                        fn);
    size_t align = p->es;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], "lse") && (uintptr_t)ptrs[i] % align)
            return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                            "%s: args->%s = %p is not %zu-byte aligned (the element size)", fn,
                            names[i], ptrs[i], align);
    return BSA_SUCCESS;
}

static bsa_span span(const struct bsa_dist_plan *p, const bsa_tensor_desc *t, const void *base)
{
    bsa_span r = {base, (int64_t)p->es, 4, {0}, {0}};
    for (int i = 0; i < 4; i++) {
        r.dims[i] = t->dims[i];
        r.strides[i] = t->strides[i] * (int64_t)p->es;
    }
    return r;
}

static bsa_span lse_span(const struct bsa_dist_plan *p, const void *base)
{
    bsa_span r = {base, 4, 1, {p->rows}, {4}};
    return r;
}

/* outs[i] overlaps no later output and no input. */
static bsa_status check_overlap(const char *fn, const bsa_span *outs, const char *const *on, int no,
                                const bsa_span *ins, const char *const *in, int ni)
{
    for (int i = 0; i < no; i++) {
        if (!outs[i].base)
            continue;
        for (int j = i + 1; j < no; j++)
            if (outs[j].base && bsa_spans_overlap(&outs[i], &outs[j]))
                return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                                "%s: args->%s and args->%s share memory: outputs may not overlap "
                                "inputs or other outputs",
                                fn, on[i], on[j]);
        for (int j = 0; j < ni; j++)
            if (bsa_spans_overlap(&outs[i], &ins[j]))
                return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                                "%s: args->%s shares memory with args->%s: outputs may not "
                                "overlap inputs or other outputs",
                                fn, on[i], in[j]);
    }
    return BSA_SUCCESS;
}

/* The forward's steps, after the checks, with the context's device current. */
static bsa_status run_forward(struct bsa_dist_plan *p, const bsa_fwd_args *args, void *stream)
{
    const bsa_dist_ops *op = p->ops;
    bsa_comm_pending pend[2];
    memset(pend, 0, sizeof pend);
    bsa_status st;
    if ((st = op->fill(p->acc_o, p->o_elems, 0.0, stream)) ||
        (st = op->fill(p->acc_lse, p->rows, -INFINITY, stream)))
        goto fail;
    for (int s = 0; s < p->size; s++) {
        shard sh;
        if ((st = step_top(p, s, args->q, args->k, args->v, stream, pend, &sh)))
            goto fail;
        if (!p->sub_plan[sh.src])
            continue; /* the layout has no block of this shard for our queries */
        bsa_fwd_args a = {0};
        a.q = p->q_c;
        a.k = sh.k;
        a.v = sh.v;
        a.o = p->o_part;
        a.lse = p->lse_part;
        if ((st = bsa_forward(p->sub_plan[sh.src], &a, p->ws, p->ws_bytes, stream)) ||
            (st = op->merge(p->acc_o, p->acc_lse, p->o_part, p->lse_part, p->rows, p->dv, p->dtype,
                            stream)))
            goto fail;
    }
    if ((st = unpack(p, &p->o, p->acc_o, args->o, stream)) ||
        (args->lse && (st = op->lse_out(args->lse, p->acc_lse, p->rows, stream))))
        goto fail;
    return BSA_SUCCESS;
fail:
    drain(p, pend, 2);
    return st;
}

BSA_API bsa_status bsa_dist_forward(bsa_dist_plan_t p, const bsa_fwd_args *args, void *stream)
{
    const char *fn = "bsa_dist_forward";
    bsa_status st = bsa_check_nonnull2(fn, p, "plan", args, "args");
    if (st != BSA_SUCCESS)
        return st;
    const void *ptrs[] = {args->q, args->k, args->v, args->o, args->lse};
    static const char *const names[] = {"q", "k", "v", "o", "lse"};
    st = check_args(p, fn, ptrs, names, 4, args->key_lengths, args->cu_seqlens_q,
                    args->cu_seqlens_k, args->num_seqs);
    if (st)
        return st;
    bsa_span outs[2] = {span(p, &p->o, args->o), lse_span(p, args->lse)};
    bsa_span ins[3] = {span(p, &p->q, args->q), span(p, &p->k, args->k), span(p, &p->v, args->v)};
    static const char *const on[] = {"o", "lse"};
    if ((st = check_overlap(fn, outs, on, 2, ins, names, 3)))
        return st;
    if (p->ops->check && (st = p->ops->check(fn, ptrs, names, 5, p->ctx->device)))
        return st;
    int prev;
    if ((st = p->ops->enter(p->ctx->device, &prev)))
        return st;
    st = run_forward(p, args, stream);
    p->ops->leave(prev);
    return st;
}

/* The dK/dV partial exchange of step s >= 1: this rank's partial for
 * shard src goes to src; the partial of rank dst for this rank's shard
 * arrives into dkv_recv[s % 2]. */
static bsa_status post_dkv(struct bsa_dist_plan *p, int s, void *stream, bsa_comm_pending *pend,
                           int *has_recv)
{
    int P = p->size, me = p->rank;
    int src = (me - s + P) % P, dst = (me + s) % P;
    bsa_comm_op ops[2];
    int n = 0;
    *has_recv = 0;
    if (p->need[dst * P + me]) {
        ops[n++] = (bsa_comm_op){dst, 0, p->dkv_recv[s % 2], p->kv_bytes};
        *has_recv = 1;
    }
    if (p->need[me * P + src])
        ops[n++] = (bsa_comm_op){src, 1, p->dkv_send[s % 2], p->kv_bytes};
    return post(p, ops, n, P + s, stream, pend);
}

/* The backward's steps, after the checks, with the context's device current. */
static bsa_status run_backward(struct bsa_dist_plan *p, const bsa_bwd_args *args, void *stream)
{
    const bsa_dist_ops *op = p->ops;
    bsa_comm_pending pend[2], gpend[2];
    int grecv[2] = {0, 0};
    memset(pend, 0, sizeof pend);
    memset(gpend, 0, sizeof gpend);
    int64_t kv_elems = p->k_elems + p->v_elems;
    bsa_status st;
    if ((st = pack(p, &p->o, args->o, p->o_c, stream)) ||
        (st = pack(p, &p->o, args->dout, p->do_c, stream)) ||
        (st = op->fill(p->acc_dq, p->q_elems, 0.0, stream)) ||
        (st = op->fill(p->acc_dkv, kv_elems, 0.0, stream)))
        goto fail;
    for (int s = 0; s < p->size; s++) {
        shard sh;
        if ((st = step_top(p, s, args->q, args->k, args->v, stream, pend, &sh)))
            goto fail;
        /* dkv_send[s % 2] and dkv_recv[s % 2] were step s - 2's: its
         * exchange must be done; its received partial is summed now (in
         * step order) */
        if ((st = p->comm->engine->wait(p->comm, &gpend[s % 2])))
            goto fail;
        if (grecv[s % 2]) {
            if ((st = op->add(p->acc_dkv, p->dkv_recv[s % 2], kv_elems, p->dtype, stream)))
                goto fail;
            grecv[s % 2] = 0;
        }
        if (p->sub_plan[sh.src]) {
            unsigned char *dkv = s == 0 ? p->dkv_send[0] : p->dkv_send[s % 2];
            bsa_bwd_args a = {0};
            a.q = p->q_c;
            a.k = sh.k;
            a.v = sh.v;
            a.o = p->o_c;
            a.lse = args->lse;
            a.dout = p->do_c;
            a.dq = p->dq_part;
            a.dk = dkv;
            a.dv = dkv + (size_t)p->k_elems * p->es;
            if ((st = bsa_backward(p->sub_plan[sh.src], &a, p->ws, p->ws_bytes, stream)) ||
                (st = op->add(p->acc_dq, p->dq_part, p->q_elems, p->dtype, stream)) ||
                (s == 0 && (st = op->add(p->acc_dkv, dkv, kv_elems, p->dtype, stream))))
                goto fail;
        }
        if (s >= 1 && (st = post_dkv(p, s, stream, &gpend[s % 2], &grecv[s % 2])))
            goto fail;
    }
    /* the last two steps' partials, in step order */
    for (int s = p->size; s < p->size + 2; s++) {
        if ((st = p->comm->engine->wait(p->comm, &gpend[s % 2])))
            goto fail;
        if (grecv[s % 2]) {
            if ((st = op->add(p->acc_dkv, p->dkv_recv[s % 2], kv_elems, p->dtype, stream)))
                goto fail;
            grecv[s % 2] = 0;
        }
    }
    if ((st = unpack(p, &p->q, p->acc_dq, args->dq, stream)) ||
        (st = unpack(p, &p->k, p->acc_dkv, args->dk, stream)) ||
        (st = unpack(p, &p->v, p->acc_dkv + p->k_elems, args->dv, stream)))
        goto fail;
    return BSA_SUCCESS;
fail:
    drain(p, pend, 2);
    drain(p, gpend, 2);
    return st;
}

BSA_API bsa_status bsa_dist_backward(bsa_dist_plan_t p, const bsa_bwd_args *args, void *stream)
{
    const char *fn = "bsa_dist_backward";
    bsa_status st = bsa_check_nonnull2(fn, p, "plan", args, "args");
    if (st != BSA_SUCCESS)
        return st;
    const void *ptrs[] = {args->q,    args->k,  args->v,  args->o, args->lse,
                          args->dout, args->dq, args->dk, args->dv};
    static const char *const names[] = {"q", "k", "v", "o", "lse", "dout", "dq", "dk", "dv"};
    st = check_args(p, fn, ptrs, names, 9, args->key_lengths, args->cu_seqlens_q,
                    args->cu_seqlens_k, args->num_seqs);
    if (st)
        return st;
    bsa_span outs[3] = {span(p, &p->q, args->dq), span(p, &p->k, args->dk),
                        span(p, &p->v, args->dv)};
    bsa_span ins[6] = {span(p, &p->q, args->q), span(p, &p->k, args->k),
                       span(p, &p->v, args->v), span(p, &p->o, args->o),
                       lse_span(p, args->lse),  span(p, &p->o, args->dout)};
    static const char *const on[] = {"dq", "dk", "dv"};
    static const char *const in[] = {"q", "k", "v", "o", "lse", "dout"};
    if ((st = check_overlap(fn, outs, on, 3, ins, in, 6)))
        return st;
    if (p->ops->check && (st = p->ops->check(fn, ptrs, names, 9, p->ctx->device)))
        return st;
    int prev;
    if ((st = p->ops->enter(p->ctx->device, &prev)))
        return st;
    st = run_backward(p, args, stream);
    p->ops->leave(prev);
    return st;
}
