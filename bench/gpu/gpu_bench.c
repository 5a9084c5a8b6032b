/*
 * GPU timing harness of the CUDA backend (bench/gpu/run.sh builds and runs
 * it): the target configurations, timed with CUDA events around
 * each call (median of --iters after --warmup), fresh random inputs, peak
 * device memory from cudaMemGetInfo, one JSON line per configuration on
 * stdout (the peer script's rows join them by name).
 *
 *   gpu_bench [--iters N] [--warmup N] [--only NAME] [--dtype f16|bf16]
 *
 * --only keeps the configurations whose name contains NAME, or, as =NAME,
 * the one named NAME ("all-d128" also matches "gqa-all-d128").
 *
 * block FLOP = 4 * batch * heads * dim * (computed blocks * block^2), x2.5
 * for the backward, so fwd+bwd = 3.5x; useful FLOP counts kept elements.
 */
#include "bsa.h"
#include "half.h"

#include <cuda_runtime.h>
#include <math.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cfg {
    const char *name;
    bsa_pattern pattern; /* or -1 for the random layout */
    int seq, block, ctx, verts, vertsize, heads, dim;
    double density;
    int kv_heads; /* 0: heads (grouped-query attention otherwise) */
    int varlen;   /* 1: the packed sequences of varlen_lengths (batch 1) */
} cfg;

/* Packed sequence lengths of the varlen rows: 65536 tokens, each <= 8192
 * (bench/peers/flex_peer.py uses the same list). */
static const int varlen_lengths[] = {8192, 1000, 4096, 537,  6144, 2048, 3000,
                                     7168, 5000, 8192, 1500, 4659, 8000, 6000};
#define N_VARLEN ((int)(sizeof varlen_lengths / sizeof *varlen_lengths))

/* batch * seq = 65536 tokens in every row (the setting). */
static const cfg configs[] = {
    {"all-d128", BSA_PATTERN_ALL, 8192, 128, 0, 0, 0, 8, 128, 0},
    {"all-d64", BSA_PATTERN_ALL, 8192, 128, 0, 0, 0, 16, 64, 0},
    {"all-d64-b64", BSA_PATTERN_ALL, 8192, 64, 0, 0, 0, 16, 64, 0},
    {"all-d128-t16k", BSA_PATTERN_ALL, 16384, 128, 0, 0, 0, 8, 128, 0},
    {"all-d64-t16k", BSA_PATTERN_ALL, 16384, 128, 0, 0, 0, 16, 64, 0},
    {"strided-L128-b32", BSA_PATTERN_STRIDED, 16384, 32, 128, 0, 0, 16, 64, 0},
    {"fixed-L128-b32", BSA_PATTERN_FIXED, 16384, 32, 128, 4, 1, 16, 64, 0},
    {"local-L256-b64", BSA_PATTERN_LOCAL, 8192, 64, 256, 0, 0, 16, 64, 0},
    {"random10-b32", (bsa_pattern)-1, 8192, 32, 0, 0, 0, 16, 64, 0.10},
    {"random10-b32-d128", (bsa_pattern)-1, 8192, 32, 0, 0, 0, 8, 128, 0.10},
    {"gqa-all-d128", BSA_PATTERN_ALL, 8192, 128, 0, 0, 0, 16, 128, 0, 4},
    {"varlen-all-d128", BSA_PATTERN_ALL, 8192, 128, 0, 0, 0, 8, 128, 0, 0, 1},
};

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define BK(x)                                                                                      \
    do {                                                                                           \
        bsa_status s_ = (x);                                                                       \
        if (s_ != BSA_SUCCESS) {                                                                   \
            fprintf(stderr, "%s: %s: %s\n", #x, bsa_status_string(s_), bsa_last_error());          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double uni(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void *dev_random(size_t n, bsa_dtype dt)
{
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        float x = (float)(2.0 * uni() - 1.0);
        h[i] = dt == BSA_DTYPE_F16 ? bsa_f32_to_f16(x) : bsa_f32_to_bf16(x);
    }
    void *d;
    CK(cudaMalloc(&d, n * 2));
    CK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int iters = 20, warmup = 3;
    const char *only = NULL;
    bsa_dtype dt = BSA_DTYPE_F16;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--iters"))
            iters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--only"))
            only = argv[i + 1];
        else if (!strcmp(argv[i], "--dtype"))
            dt = !strcmp(argv[i + 1], "bf16") ? BSA_DTYPE_BF16 : BSA_DTYPE_F16;
    }
    rng ^= (uint64_t)time(NULL);
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    bsa_context_t ctx;
    bsa_context_params cp = {BSA_BACKEND_CUDA, 0, 0};
    BK(bsa_context_create(&ctx, &cp));
    float *t = malloc(sizeof(float) * (size_t)iters);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));

    for (size_t ci = 0; ci < sizeof configs / sizeof *configs; ci++) {
        const cfg *c = &configs[ci];
        if (only && (only[0] == '=' ? strcmp(c->name, only + 1) != 0 : !strstr(c->name, only)))
            continue;
        size_t free0, total;
        CK(cudaDeviceSynchronize());
        CK(cudaMemGetInfo(&free0, &total));
        size_t min_free = free0;
        int batch = c->varlen ? 1 : 65536 / c->seq;
        int time = c->varlen ? 65536 : c->seq; /* the tensors' */
        int hkv = c->kv_heads ? c->kv_heads : c->heads;
        bsa_layout_t lay;
        if ((int)c->pattern >= 0) {
            bsa_preset ps = {c->pattern, c->seq,   c->block,    c->heads,
                             c->ctx,     c->verts, c->vertsize, 0};
            BK(bsa_layout_create_preset(ctx, &lay, &ps));
        } else {
            int nb = c->seq / c->block;
            uint8_t *blocks = malloc((size_t)nb * nb);
            for (int64_t i = 0; i < (int64_t)nb * nb; i++)
                blocks[i] = uni() < c->density;
            bsa_layout_desc ld = {c->block, 1, nb, nb, BSA_PRED_NONE, 0, 0};
            BK(bsa_layout_create_dense(ctx, &lay, &ld, blocks));
            free(blocks);
        }
        bsa_layout_info info;
        BK(bsa_layout_get_info(lay, &info));
        double per = (double)batch * c->heads / info.heads;
        double blocks = per * (double)info.blocks_total;
        double fwd_flop = 4.0 * c->dim * blocks * (double)info.block * info.block;
        double useful = 4.0 * c->dim * per * (double)info.kept_elements;
        int32_t cu[N_VARLEN + 1];
        cu[0] = 0;
        if (c->varlen) { /* causal within each sequence (the only varlen row) */
            double bl = 0, el = 0;
            for (int i = 0; i < N_VARLEN; i++) {
                double L = varlen_lengths[i], nb = ceil(L / info.block);
                bl += nb * (nb + 1) / 2;
                el += L * (L + 1) / 2;
                cu[i + 1] = cu[i] + varlen_lengths[i];
            }
            fwd_flop = 4.0 * c->dim * c->heads * bl * info.block * info.block;
            useful = 4.0 * c->dim * c->heads * el;
        }
        int32_t *dcu = NULL;
        if (c->varlen) {
            CK(cudaMalloc((void **)&dcu, sizeof cu));
            CK(cudaMemcpy(dcu, cu, sizeof cu, cudaMemcpyHostToDevice));
        }

        bsa_attn_desc d;
        memset(&d, 0, sizeof d);
        d.dtype = dt;
        d.q = d.o = bsa_tensor_bthd(batch, time, c->heads, c->dim);
        d.k = d.v = bsa_tensor_bthd(batch, time, hkv, c->dim);
        d.flags = c->varlen ? BSA_PLAN_VARLEN : 0;
        bsa_plan_t plan;
        BK(bsa_plan_create(ctx, &plan, &d, lay));
        const char *impl;
        size_t wsb;
        BK(bsa_plan_implementation(plan, &impl));
        BK(bsa_plan_workspace_size(plan, &wsb));
        size_t n = (size_t)batch * time * c->heads * c->dim;
        size_t nk = (size_t)batch * time * hkv * c->dim;
        void *q = dev_random(n, dt), *k = dev_random(nk, dt), *v = dev_random(nk, dt);
        void *dout = dev_random(n, dt), *o, *dq, *dk, *dv, *ws;
        float *lse;
        CK(cudaMalloc(&o, n * 2));
        CK(cudaMalloc(&dq, n * 2));
        CK(cudaMalloc(&dk, nk * 2));
        CK(cudaMalloc(&dv, nk * 2));
        CK(cudaMalloc(&ws, wsb));
        CK(cudaMalloc((void **)&lse, (size_t)batch * c->heads * time * 4));
        bsa_fwd_args fa = {q, k, v, o, lse};
        bsa_bwd_args ba = {q, k, v, o, lse, dout, dq, dk, dv};
        if (c->varlen) {
            fa.cu_seqlens_q = fa.cu_seqlens_k = ba.cu_seqlens_q = ba.cu_seqlens_k = dcu;
            fa.num_seqs = ba.num_seqs = N_VARLEN;
        }
        double ms[2];
        for (int which = 0; which < 2; which++) {
            for (int i = 0; i < warmup + iters; i++) {
                CK(cudaEventRecord(e0, 0));
                BK(bsa_forward(plan, &fa, ws, wsb, NULL));
                if (which)
                    BK(bsa_backward(plan, &ba, ws, wsb, NULL));
                CK(cudaEventRecord(e1, 0));
                CK(cudaEventSynchronize(e1));
                if (i >= warmup)
                    CK(cudaEventElapsedTime(&t[i - warmup], e0, e1));
            }
            qsort(t, (size_t)iters, sizeof *t, cmp_f);
            ms[which] = t[iters / 2];
        }
        size_t free1;
        CK(cudaMemGetInfo(&free1, &total));
        if (free1 < min_free)
            min_free = free1;
        /* the library's own share: layout tables + workspace (no T^2 buffer) */
        double peak_mib = (double)(free0 - min_free) / 1048576.0;
        double tens_mib =
            (double)((5 * n + 4 * nk) * 2 + (size_t)batch * c->heads * time * 4) / 1048576.0;
        printf("{\"device\": \"%s\", \"name\": \"%s\", \"impl\": \"%s\", \"batch\": %d, "
               "\"seq\": %d, \"heads\": %d, \"kv_heads\": %d, \"varlen\": %d, \"dim\": %d, "
               "\"block\": %d, \"dtype\": \"%s\", "
               "\"density\": %.5f, \"fwd_ms\": %.4f, \"fwdbwd_ms\": %.4f, "
               "\"fwd_block_tflops\": %.2f, \"fwdbwd_block_tflops\": %.2f, "
               "\"fwd_useful_tflops\": %.2f, \"fwdbwd_useful_tflops\": %.2f, "
               "\"peak_dev_mib\": %.1f, \"tensors_mib\": %.1f, \"workspace_bytes\": %zu}\n",
               prop.name, c->name, impl, batch, c->seq, c->heads, hkv, c->varlen, c->dim,
               info.block, dt == BSA_DTYPE_F16 ? "f16" : "bf16",
               (double)info.kept_elements / ((double)info.heads * info.seq_q * info.seq_k), ms[0],
               ms[1], fwd_flop / ms[0] * 1e-9, 3.5 * fwd_flop / ms[1] * 1e-9, useful / ms[0] * 1e-9,
               3.5 * useful / ms[1] * 1e-9, peak_mib, tens_mib, wsb);
        fflush(stdout);
        void *all[] = {q, k, v, dout, o, dq, dk, dv, ws, lse, dcu};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
            CK(cudaFree(all[i]));
        bsa_plan_destroy(plan);
        bsa_layout_destroy(lay);
    }
    free(t);
    bsa_context_destroy(ctx);
    return 0;
}
