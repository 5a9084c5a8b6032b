/*
 * Context parallelism on the CUDA backend, on one GPU.  P = 2 and P = 4
 * ranks are threads of one process, each with its own CUDA context handle,
 * layout handle, communicator, stream (non-blocking) and shard buffers in
 * device memory, joined by a callbacks transport that moves device memory:
 * post copies each send into a mailbox buffer (cudaMallocAsync +
 * cudaMemcpyAsync device to device on the transport's own stream of that
 * rank, then a synchronisation of that stream), wait copies the mailbox
 * into the receive buffer the same way.  The transport's stream is not
 * the library's, as in a real transport (NCCL's or torch's): if the
 * library posted before its stream had written a send buffer, or let a
 * receive overwrite a buffer a kernel still reads, the data would be
 * stale.  To make that show, each rank's stream is held busy by a 20 ms
 * host function when the first run starts (the library's packing kernels
 * then run late), and the transport checks that every message points to
 * device memory and every all-gather (plan creation) to host memory.
 *
 * Cases: every seed pattern (all, local, strided, fixed), causal and
 * bidirectional, P = 2 and 4, contiguous and zig-zag shards, ring and
 * all-gather exchange, f32; f16 and bf16 on a subset (the tensor-core
 * paths).  Fresh random inputs per pattern; per rank padded [batch, time,
 * heads, dim] views whose gaps must stay untouched; outputs poisoned (NaN)
 * before each run, and every logical element must be written.  The shard
 * positions come from the closed forms of bsa.h (and must equal
 * bsa_dist_shard_positions).  Forward (O, lse) and backward (dQ, dK, dV)
 * over the whole sequence (every rank's shard) are compared with two
 * references on the whole sequence: the single-process CUDA plan and the
 * single-process CPU backend.  Each case runs twice on the same plans,
 * the second time with random delays in the transport: the outputs must
 * agree bit for bit (the merge and the gradient sums have a fixed order).
 * With NCCL compiled, one rank over ncclCommInitAll on device 0 (NCCL
 * refuses two ranks on one GPU) runs the NCCL engine, and a CPU context
 * over NCCL is refused.
 *
 * Tolerances (relative L2 over the whole sequence): twice the CUDA suite's
 * bounds against the double oracle (tests/test_cuda.c: about 4x the worst
 * error measured on an H100), since the dist result and each reference
 * are each within those bounds of the exact result: f32 4e-6 for O, 2e-5
 * for the gradients, 5e-7 for lse; f16 2.6e-3 / 3.6e-3, bf16 2e-2 /
 * 2.4e-2 (the partial outputs are rounded to the dtype before the merge,
 * as on the CPU: one more rounding than a single-process run).  A wrong
 * shard, a missed or stale message, a wrong merge weight or a partial
 * summed twice moves the error by orders of magnitude more than that.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#ifndef BSA_WITH_CUDA
#error "GPU test: tests/CMakeLists.txt builds it only with the CUDA backend"
#endif

#include "bsa.h"
#include "cuda_testutil.h"
#include "mailbox.h"
#include "testutil.h"

#include <cuda_runtime.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef BSA_TEST_NCCL
#include <nccl.h>
#endif

enum {
    T = 1024, /* T / (2 P L) a multiple of the block at P = 4, L = 4 */
    BLOCK = 32,
    BATCH = 2,
    HEADS = 2,
    DIM = 64,
    MAXP = 4
};

/* o, lse, dq, dk, dv */
enum { O_, LSE_, DQ_, DK_, DV_, NOUT };
static const char *const out_names[NOUT] = {"o", "lse", "dq", "dk", "dv"};

typedef struct tol {
    double out, grad, lse;
} tol;

/* Twice tests/test_cuda.c's bounds against the double oracle (see top). */
static const tol bounds[3] = {
    [BSA_DTYPE_F32] = {4e-6, 2e-5, 5e-7},
    [BSA_DTYPE_F16] = {2.6e-3, 3.6e-3, 5e-7},
    [BSA_DTYPE_BF16] = {2e-2, 2.4e-2, 5e-7},
};

static double bound_of(bsa_dtype dt, int which)
{
    return which == O_ ? bounds[dt].out : which == LSE_ ? bounds[dt].lse : bounds[dt].grad;
}

/* ------------------------------------------------- the device transport */

/* tests/common/mailbox.c with device copies; an endpoint's user pointer */
typedef struct dev_ep {
    cudaStream_t copy; /* the transport's own stream */
    int jitter;        /* random delays in post and wait */
    unsigned seed;
    int messages; /* device messages moved */
} dev_ep;

static void delay(void *user)
{
    dev_ep *e = user;
    if (e->jitter)
        usleep((useconds_t)(rand_r(&e->seed) % 400));
}

static int is_device(const void *p)
{
    struct cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return at.type == cudaMemoryTypeDevice;
}

static int is_host(const void *p)
{
    struct cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return at.type == cudaMemoryTypeUnregistered;
}

static int dev_check(void *user, const bsa_comm_message *m)
{
    dev_ep *e = user;
    if (!is_device(m->buf))
        return 4; /* bsa.h: with a CUDA context, messages are device memory */
    e->messages++;
    return 0;
}

/* the mailbox copy: cudaMallocAsync + a device to device copy on the
 * transport's stream, synchronised */
static int dev_copy_in(void *user, void **payload, const void *buf, size_t bytes)
{
    dev_ep *e = user;
    if (cudaMallocAsync(payload, bytes ? bytes : 1, e->copy) != cudaSuccess ||
        cudaMemcpyAsync(*payload, buf, bytes, cudaMemcpyDeviceToDevice, e->copy) != cudaSuccess ||
        cudaStreamSynchronize(e->copy) != cudaSuccess)
        return 7;
    return 0;
}

static int dev_copy_out(void *user, void *buf, const void *payload, size_t bytes)
{
    dev_ep *e = user;
    return cudaMemcpyAsync(buf, payload, bytes, cudaMemcpyDeviceToDevice, e->copy) != cudaSuccess
               ? 7
               : 0;
}

static int dev_release(void *user, void *payload)
{
    dev_ep *e = user;
    return cudaFreeAsync(payload, e->copy) != cudaSuccess ||
                   cudaStreamSynchronize(e->copy) != cudaSuccess
               ? 7
               : 0;
}

static int dev_allgather_check(void *user, const void *in, const void *out)
{
    (void)user;
    return is_host(in) && is_host(out) ? 0 : 6; /* bsa.h: the all-gather is host memory */
}

/* a peer that failed never sends: after a minute, a wait fails this rank's
 * call too (BSA_ERROR_CALLBACK) instead of hanging the test */
static const mb_ops dev_ops = {
    delay, dev_check, dev_copy_in, dev_copy_out, dev_release, dev_allgather_check, 60,
};

static void world_init(mb_world *w, int P)
{
    mb_world_init(w, P, &dev_ops);
}

static void world_fini(mb_world *w)
{
    mb_world_print_left(w);
    assert_null(w->head); /* every message was received */
    mb_world_fini(w);
}

/* ------------------------------------------- a problem and its references */

typedef struct problem {
    bsa_pattern pattern;
    int bidir;
    bsa_dtype dtype;
    tu_tensor q, k, v, g; /* [B, H, T, D], values rounded to the dtype */
    /* natural order [b][h][t][d] (lse: [b][h][t]) */
    double *cuda[NOUT], *cpu[NOUT];
} problem;

static bsa_preset preset_of(bsa_pattern pat, int bidir)
{
    bsa_preset p;
    memset(&p, 0, sizeof p);
    p.pattern = pat;
    p.seq = T;
    p.block = BLOCK;
    p.heads = HEADS;
    p.bidirectional = bidir;
    /* local: a band that is not a block multiple (partial blocks at shard
     * edges); fixed with two summary columns: a per-head layout */
    p.ctx = pat == BSA_PATTERN_LOCAL     ? 48
            : pat == BSA_PATTERN_STRIDED ? 4
            : pat == BSA_PATTERN_FIXED   ? 128
                                         : 0;
    if (pat == BSA_PATTERN_FIXED) {
        p.num_verts = 2;
        p.vertsize = 1;
    }
    return p;
}

static const char *pattern_name(bsa_pattern p)
{
    static const char *const n[] = {"all", "local", "strided", "fixed"};
    return n[p];
}

/* One single-process run on the whole sequence; out[i] natural order. */
static void reference(problem *pb, bsa_backend backend, double **out)
{
    bsa_dtype dt = pb->dtype;
    int gpu = backend == BSA_BACKEND_CUDA;
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {backend, 0, 0};
    expect_ok(bsa_context_create(&ctx, &cp), "reference context");
    bsa_layout_t lay = NULL;
    bsa_preset ps = preset_of(pb->pattern, pb->bidir);
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "reference layout");
    bsa_tensor_desc t = bsa_tensor_bhtd(BATCH, HEADS, T, DIM);
    bsa_attn_desc d = {dt, t, t, t, t, 0.0f, 0};
    bsa_plan_t plan = NULL;
    expect_ok(bsa_plan_create(ctx, &plan, &d, lay), "reference plan");
    size_t wsb = 0;
    expect_ok(bsa_plan_workspace_size(plan, &wsb), "workspace size");
    int64_t m = (int64_t)BATCH * HEADS * T * DIM, rows = (int64_t)BATCH * HEADS * T;
    tu_tensor o = tu_tensor_new(dt, t), dq = tu_tensor_new(dt, t), dk = tu_tensor_new(dt, t),
              dv = tu_tensor_new(dt, t);
    float *lse = tu_alloc(BSA_DTYPE_F32, rows);
    tu_tensor *outs[4] = {&o, &dq, &dk, &dv};
    void *ws = NULL, *in[4], *res[4], *dlse = NULL;
    const tu_tensor *ins[4] = {&pb->q, &pb->k, &pb->v, &pb->g};
    for (int i = 0; i < 4; i++) {
        in[i] = gpu ? dev_upload_tensor(ins[i]) : ins[i]->data;
        res[i] = gpu ? dev_upload_tensor(outs[i]) : outs[i]->data; /* poisoned */
    }
    if (gpu) {
        dlse = dev_upload(lse, (size_t)rows * sizeof(float));
        if (wsb)
            CU(cudaMalloc(&ws, wsb));
    } else {
        dlse = lse;
        ws = wsb ? malloc(wsb) : NULL;
    }
    bsa_fwd_args fa = {in[0], in[1], in[2], res[0], dlse};
    bsa_bwd_args ba = {in[0], in[1], in[2], res[0], dlse, in[3], res[1], res[2], res[3]};
    expect_ok(bsa_forward(plan, &fa, ws, wsb, NULL), "reference forward");
    expect_ok(bsa_backward(plan, &ba, ws, wsb, NULL), "reference backward");
    if (gpu) {
        CU(cudaDeviceSynchronize());
        for (int i = 0; i < 4; i++) {
            dev_download(outs[i], res[i]);
            CU(cudaFree(in[i]));
            CU(cudaFree(res[i]));
        }
        CU(cudaMemcpy(lse, dlse, (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
        CU(cudaFree(dlse));
        CU(cudaFree(ws));
    } else {
        for (int i = 0; i < 4; i++)
            tu_tensor_read(outs[i]);
        free(ws);
    }
    int map[4] = {O_, DQ_, DK_, DV_};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tu_tensor_unwritten(outs[i]), 0);
        out[map[i]] = tu_xmalloc((size_t)m * sizeof(double));
        memcpy(out[map[i]], outs[i]->val, (size_t)m * sizeof(double));
        tu_tensor_free(outs[i]);
    }
    out[LSE_] = tu_xmalloc((size_t)rows * sizeof(double));
    tu_f32_to_f64(lse, out[LSE_], rows);
    free(lse);
    bsa_plan_destroy(plan);
    bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
}

static void problem_init(problem *pb, bsa_pattern pat, int bidir, bsa_dtype dt)
{
    memset(pb, 0, sizeof *pb);
    pb->pattern = pat;
    pb->bidir = bidir;
    pb->dtype = dt;
    bsa_tensor_desc t = bsa_tensor_bhtd(BATCH, HEADS, T, DIM);
    tu_tensor *in[4] = {&pb->q, &pb->k, &pb->v, &pb->g};
    for (int i = 0; i < 4; i++) {
        *in[i] = tu_tensor_new(dt, t);
        tu_tensor_random(in[i], -1, 1);
    }
    reference(pb, BSA_BACKEND_CUDA, pb->cuda);
    reference(pb, BSA_BACKEND_CPU, pb->cpu);
}

static void problem_fini(problem *pb)
{
    tu_tensor *in[4] = {&pb->q, &pb->k, &pb->v, &pb->g};
    for (int i = 0; i < 4; i++)
        tu_tensor_free(in[i]);
    for (int i = 0; i < NOUT; i++) {
        free(pb->cuda[i]);
        free(pb->cpu[i]);
    }
}

/* --------------------------------------------------------- the ranks */

/* bsa.h's closed forms: contiguous, rank r holds [r n, (r + 1) n); zig-zag,
 * chunks r and 2P - 1 - r of n / 2. */
static int64_t position(bsa_sharding sh, int r, int P, int64_t n, int64_t t)
{
    if (sh == BSA_SHARD_CONTIGUOUS)
        return r * n + t;
    int64_t c = n / 2;
    return t < c ? r * c + t : (2 * P - 1 - r) * c + (t - c);
}

typedef struct rank_state {
    mb_world *w;
    const problem *pb;
    int rank, P;
    bsa_comm_t comm; /* NULL: the callbacks transport of w (made by the thread) */
    bsa_sharding sharding;
    bsa_dist_exchange exchange;
    int64_t n, pos[T];
    /* host: shard tensors (inputs hold values; outputs the poison image) */
    tu_tensor in[4], out[4]; /* q k v g; o dq dk dv */
    float *lse_poison;
    /* device */
    void *d_in[4], *d_out[4], *d_keep[4];
    float *d_lse, *d_lse_keep;
    int runs; /* forward + backward calls made (2 when all went well) */
    int messages;
    char failure[512];
} rank_state;

static void fail_rank(rank_state *r, const char *what, bsa_status st)
{
    if (!r->failure[0])
        snprintf(r->failure, sizeof r->failure, "rank %d: %s: %s: %s", r->rank, what,
                 bsa_status_string(st), st ? bsa_last_error() : "");
}

static void fail_cuda(rank_state *r, const char *what, cudaError_t e)
{
    if (!r->failure[0])
        snprintf(r->failure, sizeof r->failure, "rank %d: %s: %s", r->rank, what,
                 cudaGetErrorString(e));
}

static void CUDART_CB slow_start(void *arg)
{
    (void)arg;
    usleep(20000);
}

static size_t span_bytes(const tu_tensor *t)
{
    return (size_t)t->span * tu_dtype_size(t->dtype);
}

static void *rank_main(void *arg)
{
    rank_state *r = arg;
    const problem *pb = r->pb;
    int64_t rows = (int64_t)BATCH * HEADS * r->n;
    dev_ep de = {NULL, 0, 1234u + (unsigned)r->rank, 0};
    mb_endpoint ep = {r->w, r->rank, &de};
    cudaStream_t stream = NULL;
    bsa_context_t ctx = NULL;
    bsa_comm_t comm = r->comm;
    bsa_layout_t lay = NULL;
    bsa_dist_plan_t dp = NULL;
    bsa_status st;
    cudaError_t ce;
    if ((ce = cudaSetDevice(0)) ||
        (ce = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) ||
        (ce = cudaStreamCreateWithFlags(&de.copy, cudaStreamNonBlocking))) {
        fail_cuda(r, "streams", ce);
        goto done;
    }
    bsa_context_params cp = {BSA_BACKEND_CUDA, 0, 0};
    bsa_comm_callbacks cb = {mb_post, mb_wait, mb_allgather};
    bsa_preset ps = preset_of(pb->pattern, pb->bidir);
    if ((st = bsa_context_create(&ctx, &cp)) ||
        (!comm && (st = bsa_comm_create_callbacks(&comm, r->rank, r->P, &cb, &ep))) ||
        (st = bsa_layout_create_preset(ctx, &lay, &ps))) {
        fail_rank(r, "context / communicator / layout", st);
        goto done;
    }
    bsa_tensor_desc t = r->in[0].desc;
    bsa_attn_desc d = {pb->dtype, t, t, t, t, 0.0f, 0};
    bsa_dist_params prm = {r->sharding, r->exchange};
    if ((st = bsa_dist_plan_create(ctx, &dp, &d, lay, comm, &prm))) {
        fail_rank(r, "bsa_dist_plan_create", st);
        goto done;
    }
    const char *impl = NULL;
    bsa_dist_info info;
    int64_t pos[T];
    if ((st = bsa_dist_plan_implementation(dp, &impl)) || (st = bsa_dist_plan_info(dp, &info)) ||
        (st = bsa_dist_shard_positions(dp, r->rank, pos))) {
        fail_rank(r, "plan queries", st);
        goto done;
    }
    if (!strstr(impl, " over ") || !strstr(strstr(impl, " over "), "cuda-") ||
        info.sharding != r->sharding || info.exchange != r->exchange || info.shard_len != r->n ||
        memcmp(pos, r->pos, (size_t)r->n * sizeof *pos)) {
        snprintf(r->failure, sizeof r->failure,
                 "rank %d: plan '%s' (sharding %d, exchange %d, shard %lld) or its positions "
                 "differ from what was asked (sharding %d, exchange %d, shard %lld)",
                 r->rank, impl, (int)info.sharding, (int)info.exchange, (long long)info.shard_len,
                 (int)r->sharding, (int)r->exchange, (long long)r->n);
        goto done;
    }
    if (r->rank == 0)
        printf("    %s\n", impl);
    for (int run = 0; run < 2; run++) {
        if (run == 0 && (ce = cudaLaunchHostFunc(stream, slow_start, NULL))) {
            fail_cuda(r, "cudaLaunchHostFunc", ce);
            goto done;
        }
        de.jitter = run == 1;
        bsa_fwd_args fa = {r->d_in[0], r->d_in[1], r->d_in[2], r->d_out[0], r->d_lse};
        bsa_bwd_args ba = {r->d_in[0], r->d_in[1],  r->d_in[2],  r->d_out[0], r->d_lse,
                           r->d_in[3], r->d_out[1], r->d_out[2], r->d_out[3]};
        if ((st = bsa_dist_forward(dp, &fa, stream))) {
            fail_rank(r, "bsa_dist_forward", st);
            goto done;
        }
        if ((st = bsa_dist_backward(dp, &ba, stream))) {
            fail_rank(r, "bsa_dist_backward", st);
            goto done;
        }
        r->runs++;
        if (run == 1)
            break;
        /* keep run 0's outputs; poison the outputs again for run 1 */
        for (int i = 0; i < 4 && !ce; i++)
            if (!(ce = cudaMemcpyAsync(r->d_keep[i], r->d_out[i], span_bytes(&r->out[i]),
                                       cudaMemcpyDeviceToDevice, stream)))
                ce = cudaMemcpyAsync(r->d_out[i], r->out[i].data, span_bytes(&r->out[i]),
                                     cudaMemcpyHostToDevice, stream);
        if (!ce)
            ce = cudaMemcpyAsync(r->d_lse_keep, r->d_lse, (size_t)rows * sizeof(float),
                                 cudaMemcpyDeviceToDevice, stream);
        if (!ce)
            ce = cudaMemcpyAsync(r->d_lse, r->lse_poison, (size_t)rows * sizeof(float),
                                 cudaMemcpyHostToDevice, stream);
        if (!ce)
            ce = cudaStreamSynchronize(stream);
        if (ce) {
            fail_cuda(r, "keeping run 0's outputs", ce);
            goto done;
        }
    }
    if ((ce = cudaStreamSynchronize(stream)))
        fail_cuda(r, "cudaStreamSynchronize after the runs", ce);
done:
    r->messages = de.messages;
    bsa_dist_plan_destroy(dp);
    bsa_layout_destroy(lay);
    if (comm != r->comm)
        bsa_comm_destroy(comm);
    bsa_context_destroy(ctx);
    if (stream)
        cudaStreamDestroy(stream);
    if (de.copy)
        cudaStreamDestroy(de.copy);
    return NULL;
}

/* Sets up rank r's shard buffers (host and device) from the problem. */
static void rank_init(rank_state *r, mb_world *w, const problem *pb, int rank, int P,
                      bsa_sharding sh, bsa_dist_exchange ex)
{
    memset(r, 0, sizeof *r);
    r->w = w;
    r->pb = pb;
    r->rank = rank;
    r->P = P;
    r->sharding = sh;
    r->exchange = ex;
    r->n = T / P;
    for (int64_t t = 0; t < r->n; t++)
        r->pos[t] = position(sh, rank, P, r->n, t);
    bsa_tensor_desc d = tu_desc_padded(BATCH, HEADS, r->n, DIM);
    const tu_tensor *whole[4] = {&pb->q, &pb->k, &pb->v, &pb->g};
    for (int i = 0; i < 4; i++) {
        r->in[i] = tu_tensor_new(pb->dtype, d);
        for (int64_t x = 0; x < BATCH * HEADS; x++)
            for (int64_t t = 0; t < r->n; t++)
                memcpy(r->in[i].val + (x * r->n + t) * DIM,
                       whole[i]->val + (x * T + r->pos[t]) * DIM, DIM * sizeof(double));
        tu_pack(pb->dtype, &d, r->in[i].val, r->in[i].data);
        r->d_in[i] = dev_upload_tensor(&r->in[i]);
        r->out[i] = tu_tensor_new(pb->dtype, d); /* poisoned, gaps too */
        r->d_out[i] = dev_upload_tensor(&r->out[i]);
        CU(cudaMalloc(&r->d_keep[i], span_bytes(&r->out[i])));
    }
    int64_t rows = (int64_t)BATCH * HEADS * r->n;
    r->lse_poison = tu_alloc(BSA_DTYPE_F32, rows);
    r->d_lse = dev_upload(r->lse_poison, (size_t)rows * sizeof(float));
    CU(cudaMalloc((void **)&r->d_lse_keep, (size_t)rows * sizeof(float)));
}

static void rank_fini(rank_state *r)
{
    for (int i = 0; i < 4; i++) {
        tu_tensor_free(&r->in[i]);
        tu_tensor_free(&r->out[i]);
        CU(cudaFree(r->d_in[i]));
        CU(cudaFree(r->d_out[i]));
        CU(cudaFree(r->d_keep[i]));
    }
    free(r->lse_poison);
    CU(cudaFree(r->d_lse));
    CU(cudaFree(r->d_lse_keep));
}

/* Sums of squares over the whole sequence, per output: got - ref, ref. */
typedef struct l2 {
    double num[NOUT], den[NOUT];
    int nonfinite[NOUT];
} l2;

static void accumulate(l2 *e, int which, const double *got, const double *ref, int64_t n_rows,
                       int64_t width, const int64_t *pos)
{
    for (int64_t x = 0; x < BATCH * HEADS; x++)
        for (int64_t t = 0; t < n_rows; t++)
            for (int64_t c = 0; c < width; c++) {
                double a = got[(x * n_rows + t) * width + c], b = ref[(x * T + pos[t]) * width + c];
                if (a == b) { /* equal infinities: a row with no visible key */
                    e->den[which] += isfinite(b) ? b * b : 0;
                    continue;
                }
                if (!isfinite(a) || !isfinite(b)) {
                    e->nonfinite[which]++;
                    continue;
                }
                e->num[which] += (a - b) * (a - b);
                e->den[which] += b * b;
            }
}

static double rel(const l2 *e, int which)
{
    if (e->nonfinite[which])
        return INFINITY;
    return e->den[which] > 0 ? sqrt(e->num[which] / e->den[which]) : sqrt(e->num[which]);
}

/* One dist case: P ranks as threads (comm: one communicator for P = 1,
 * NULL for the callbacks transport); checks as described at the top. */
static void run_case(const problem *pb, int P, bsa_sharding sh, bsa_dist_exchange ex,
                     bsa_comm_t comm)
{
    static const char *const shn[] = {"auto", "contiguous", "zigzag"};
    static const char *const exn[] = {"auto", "ring", "allgather"};
    printf("  P=%d %-7s %-13s %-4s %-10s %-9s\n", P, pattern_name(pb->pattern),
           pb->bidir ? "bidirectional" : "causal", tu_dtype_name(pb->dtype), shn[sh], exn[ex]);
    mb_world w;
    world_init(&w, P);
    rank_state *rs = calloc(MAXP, sizeof *rs);
    assert_non_null(rs);
    for (int r = 0; r < P; r++) {
        rank_init(&rs[r], &w, pb, r, P, sh, ex);
        rs[r].comm = comm;
    }
    pthread_t th[MAXP];
    for (int r = 0; r < P; r++)
        assert_int_equal(pthread_create(&th[r], NULL, rank_main, &rs[r]), 0);
    for (int r = 0; r < P; r++)
        pthread_join(th[r], NULL);
    int failed = 0, messages = 0;
    for (int r = 0; r < P; r++) {
        if (rs[r].failure[0]) {
            fprintf(stderr, "FAIL: %s\n", rs[r].failure);
            failed = 1;
        }
        messages += rs[r].messages;
    }
    assert_false(failed);
    for (int r = 0; r < P; r++)
        assert_int_equal(rs[r].runs, 2);
    if (!comm && P > 1)
        assert_true(messages > 0); /* the ranks did talk through the device transport */

    l2 vs_cuda, vs_cpu;
    memset(&vs_cuda, 0, sizeof vs_cuda);
    memset(&vs_cpu, 0, sizeof vs_cpu);
    int64_t differ = 0;
    for (int r = 0; r < P; r++) {
        rank_state *s = &rs[r];
        int64_t rows = (int64_t)BATCH * HEADS * s->n;
        int map[4] = {O_, DQ_, DK_, DV_};
        for (int i = 0; i < 4; i++) {
            tu_tensor *t = &s->out[i];
            size_t bytes = span_bytes(t);
            unsigned char *again = tu_xmalloc(bytes);
            CU(cudaMemcpy(again, s->d_out[i], bytes, cudaMemcpyDeviceToHost));
            dev_download(t, s->d_keep[i]); /* run 0 */
            if (memcmp(again, t->data, bytes)) {
                fprintf(stderr, "rank %d: %s: the second run differs from the first\n", r,
                        out_names[map[i]]);
                differ++;
            }
            free(again);
            int64_t unwritten = tu_tensor_unwritten(t), gaps = tu_tensor_gaps_touched(t);
            if (unwritten || gaps)
                fprintf(stderr, "rank %d: %s: %lld elements unwritten, %lld gap elements written\n",
                        r, out_names[map[i]], (long long)unwritten, (long long)gaps);
            assert_int_equal(unwritten, 0);
            assert_int_equal(gaps, 0);
            accumulate(&vs_cuda, map[i], t->val, pb->cuda[map[i]], s->n, DIM, s->pos);
            accumulate(&vs_cpu, map[i], t->val, pb->cpu[map[i]], s->n, DIM, s->pos);
        }
        float *lse = tu_xmalloc((size_t)rows * sizeof(float) * 2), *again = lse + rows;
        CU(cudaMemcpy(lse, s->d_lse_keep, (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(again, s->d_lse, (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
        if (memcmp(lse, again, (size_t)rows * sizeof(float))) {
            fprintf(stderr, "rank %d: lse: the second run differs from the first\n", r);
            differ++;
        }
        double *lsed = tu_xmalloc((size_t)rows * sizeof(double));
        tu_f32_to_f64(lse, lsed, rows);
        for (int64_t i = 0; i < rows; i++)
            assert_false(tu_is_poison(BSA_DTYPE_F32, lse, i));
        accumulate(&vs_cuda, LSE_, lsed, pb->cuda[LSE_], s->n, 1, s->pos);
        accumulate(&vs_cpu, LSE_, lsed, pb->cpu[LSE_], s->n, 1, s->pos);
        free(lsed);
        free(lse);
    }
    printf("    rel. L2 vs cuda:");
    for (int i = 0; i < NOUT; i++)
        printf(" %s %.1e", out_names[i], rel(&vs_cuda, i));
    printf("; vs cpu:");
    for (int i = 0; i < NOUT; i++)
        printf(" %s %.1e", out_names[i], rel(&vs_cpu, i));
    printf("\n");
    assert_int_equal(differ, 0);
    for (int i = 0; i < NOUT; i++) {
        double b = bound_of(pb->dtype, i);
        if (rel(&vs_cuda, i) > b || rel(&vs_cpu, i) > b)
            fprintf(stderr, "%s: above the bound %.1e\n", out_names[i], b);
        assert_true(rel(&vs_cuda, i) <= b);
        assert_true(rel(&vs_cpu, i) <= b);
    }
    for (int r = 0; r < P; r++)
        rank_fini(&rs[r]);
    free(rs);
    world_fini(&w);
}

/* ------------------------------------------------------------ the tests */

static void test_f32_every_pattern(void **state)
{
    for (int pat = 0; pat < 4; pat++)
        for (int bidir = 0; bidir < 2; bidir++) {
            problem pb;
            problem_init(&pb, (bsa_pattern)pat, bidir, BSA_DTYPE_F32);
            for (int P = 2; P <= 4; P += 2)
                for (int sh = BSA_SHARD_CONTIGUOUS; sh <= BSA_SHARD_ZIGZAG; sh++)
                    for (int ex = BSA_EXCHANGE_RING; ex <= BSA_EXCHANGE_ALLGATHER; ex++)
                        run_case(&pb, P, (bsa_sharding)sh, (bsa_dist_exchange)ex, NULL);
            problem_fini(&pb);
        }
}

/* f16 / bf16: the tensor-core paths and the dtype conversions of the
 * kernels; each pattern once (causal and bidirectional alternating), P = 4
 * zig-zag ring and P = 2 contiguous all-gather. */
static void test_half_dtypes(void **state)
{
    const bsa_dtype dts[2] = {BSA_DTYPE_F16, BSA_DTYPE_BF16};
    for (int i = 0; i < 2; i++)
        for (int pat = 0; pat < 4; pat++) {
            problem pb;
            problem_init(&pb, (bsa_pattern)pat, (pat + i) % 2, dts[i]);
            run_case(&pb, 4, BSA_SHARD_ZIGZAG, BSA_EXCHANGE_RING, NULL);
            run_case(&pb, 2, BSA_SHARD_CONTIGUOUS, BSA_EXCHANGE_ALLGATHER, NULL);
            problem_fini(&pb);
        }
}

/* Arguments a CUDA dist plan must refuse, on one rank (P = 1 callbacks). */
static void test_refusals(void **state)
{
    mb_world w;
    world_init(&w, 1);
    dev_ep de = {NULL, 0, 1u, 0};
    mb_endpoint ep = {&w, 0, &de};
    bsa_comm_callbacks cb = {mb_post, mb_wait, mb_allgather};
    bsa_comm_t comm = NULL;
    bsa_context_t ctx = NULL;
    bsa_layout_t lay = NULL;
    bsa_dist_plan_t dp = NULL;
    bsa_context_params cp = {BSA_BACKEND_CUDA, 0, 0};
    bsa_preset ps = preset_of(BSA_PATTERN_ALL, 0);
    expect_ok(bsa_context_create(&ctx, &cp), "context");
    expect_ok(bsa_comm_create_callbacks(&comm, 0, 1, &cb, &ep), "comm");
    expect_ok(bsa_layout_create_preset(ctx, &lay, &ps), "layout");
    bsa_tensor_desc t = bsa_tensor_bhtd(BATCH, HEADS, T, DIM);
    bsa_attn_desc d = {BSA_DTYPE_F32, t, t, t, t, 0.0f, 0};
    expect_ok(bsa_dist_plan_create(ctx, &dp, &d, lay, comm, NULL), "dist plan");
    /* host memory for a CUDA context: refused before any kernel reads it */
    int64_t m = (int64_t)BATCH * HEADS * T * DIM;
    float *host = tu_alloc(BSA_DTYPE_F32, 4 * m);
    float *dev = NULL;
    CU(cudaMalloc((void **)&dev, 4 * m * sizeof(float)));
    bsa_fwd_args fa = {dev, dev + m, host + 2 * m, dev + 3 * m, NULL};
    assert_int_equal(bsa_dist_forward(dp, &fa, NULL), BSA_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(bsa_last_error(), "args->v"));
    assert_non_null(strstr(bsa_last_error(), "host memory"));
    for (int64_t i = 0; i < 4 * m; i++)
        assert_true(tu_is_poison(BSA_DTYPE_F32, host, i));
    CU(cudaFree(dev));
    free(host);
    expect_ok(bsa_dist_plan_destroy(dp), "destroy");
#ifdef BSA_TEST_NCCL
    /* a CPU context over NCCL: refused, naming the mismatch */
    int device = 0;
    ncclComm_t nc;
    assert_int_equal(ncclCommInitAll(&nc, 1, &device), ncclSuccess);
    bsa_comm_t ncomm = NULL;
    expect_ok(bsa_comm_create_nccl(&ncomm, nc, 0, 1), "bsa_comm_create_nccl");
    bsa_context_t cpu = NULL;
    bsa_context_params cpp = {BSA_BACKEND_CPU, 0, 0};
    bsa_layout_t clay = NULL;
    expect_ok(bsa_context_create(&cpu, &cpp), "cpu context");
    expect_ok(bsa_layout_create_preset(cpu, &clay, &ps), "cpu layout");
    assert_int_equal(bsa_dist_plan_create(cpu, &dp, &d, clay, ncomm, NULL), BSA_ERROR_UNSUPPORTED);
    assert_non_null(strstr(bsa_last_error(), "NCCL"));
    assert_non_null(strstr(bsa_last_error(), "CUDA"));
    bsa_layout_destroy(clay);
    bsa_context_destroy(cpu);
    expect_ok(bsa_comm_destroy(ncomm), "nccl comm destroy");
    ncclCommDestroy(nc);
#endif
    bsa_layout_destroy(lay);
    expect_ok(bsa_comm_destroy(comm), "comm destroy");
    bsa_context_destroy(ctx);
    world_fini(&w);
}

#ifdef BSA_TEST_NCCL
/* The NCCL engine on one GPU: one rank (ncclCommInitAll on device 0), both
 * exchanges (the all-gather is ncclAllGather), f32 and bf16. */
static void test_nccl_one_rank(void **state)
{
    int device = 0;
    ncclComm_t nc;
    assert_int_equal(ncclCommInitAll(&nc, 1, &device), ncclSuccess);
    bsa_comm_t comm = NULL;
    expect_ok(bsa_comm_create_nccl(&comm, nc, 0, 1), "bsa_comm_create_nccl");
    const bsa_dtype dts[2] = {BSA_DTYPE_F32, BSA_DTYPE_BF16};
    for (int i = 0; i < 2; i++) {
        problem pb;
        problem_init(&pb, i ? BSA_PATTERN_LOCAL : BSA_PATTERN_FIXED, i, dts[i]);
        run_case(&pb, 1, BSA_SHARD_CONTIGUOUS, BSA_EXCHANGE_RING, comm);
        run_case(&pb, 1, BSA_SHARD_ZIGZAG, BSA_EXCHANGE_ALLGATHER, comm);
        problem_fini(&pb);
    }
    expect_ok(bsa_comm_destroy(comm), "comm destroy");
    assert_int_equal(ncclCommDestroy(nc), ncclSuccess);
}
#endif

int main(void)
{
    exit_skipped_without_gpu("test_cuda_dist");
    fprintf(stderr, "test_cuda_dist: seed %llu (BSA_TEST_SEED reproduces)\n",
            (unsigned long long)tu_seed());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_f32_every_pattern),
        cmocka_unit_test(test_half_dtypes),
#ifdef BSA_TEST_NCCL
        cmocka_unit_test(test_nccl_one_rank),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
