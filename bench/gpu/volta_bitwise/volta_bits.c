#define _POSIX_C_SOURCE 200809L
/* Hashes of o, lse, dq, dk, dv of the Volta path (BSA_IMPL=cuda-wmma-sm70)
 * on fixed inputs, so two builds can be compared bit for bit. */
#include "bsa.h"
#include "half.h"
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_) {                                                                                  \
            fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));                               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define BK(x)                                                                                      \
    do {                                                                                           \
        bsa_status s_ = (x);                                                                       \
        if (s_) {                                                                                  \
            fprintf(stderr, "%s: %s\n", #x, bsa_last_error());                                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
static uint64_t rng;
static double uni(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ull;
    }
    return h;
}
static void *dev_rand(size_t n, double amp)
{
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        h[i] = bsa_f32_to_f16((float)((uni() * 2 - 1) * amp));
    void *d;
    CK(cudaMalloc(&d, n * 2));
    CK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}
static uint64_t dev_hash(const void *d, size_t bytes, double *nz)
{
    unsigned char *h = malloc(bytes);
    CK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
    uint64_t r = fnv(h, bytes);
    size_t k = 0;
    for (size_t i = 0; i < bytes; i++)
        k += h[i] != 0;
    *nz = (double)k / bytes;
    free(h);
    return r;
}
int main(void)
{
    bsa_context_t ctx;
    bsa_context_params cp = {BSA_BACKEND_CUDA, 0, 0};
    BK(bsa_context_create(&ctx, &cp));
    setenv("BSA_IMPL", "cuda-wmma-sm70", 1);
    struct {
        const char *name;
        int pat, seq, block, c, nv, bidir, heads, kvh;
    } L[] = {
        {"fixed-b32", BSA_PATTERN_FIXED, 1024, 32, 128, 2, 0, 4, 4},
        {"strided-b32", BSA_PATTERN_STRIDED, 2048, 32, 64, 0, 0, 4, 4},
        {"local-b64", BSA_PATTERN_LOCAL, 1024, 64, 192, 0, 0, 4, 4},
        {"all-b16", BSA_PATTERN_ALL, 1000 /* padded tail? */, 8, 0, 0, 0, 4, 4},
        {"bigbird-b32-gqa", BSA_PATTERN_BIGBIRD, 1024, 32, 64, 0, 1, 4, 2},
        {"all-b128-bidir", BSA_PATTERN_ALL, 512, 128, 0, 0, 1, 2, 2},
    };
    const int dims[4] = {32, 64, 128, 96};
    int bad = 0;
    for (size_t li = 0; li < sizeof L / sizeof L[0]; li++)
        for (int di = 0; di < 4; di++) {
            const int D = dims[di], B = 2, H = L[li].heads, KH = L[li].kvh;
            int T = L[li].seq;
            if (T % L[li].block)
                T = (T / L[li].block + 1) * L[li].block;
            bsa_preset ps;
            memset(&ps, 0, sizeof ps);
            ps.pattern = L[li].pat;
            ps.seq = T;
            ps.block = L[li].block;
            ps.heads = H;
            ps.ctx = L[li].c;
            ps.num_verts = L[li].nv;
            ps.vertsize = 1;
            ps.bidirectional = L[li].bidir;
            ps.global_tokens = 32;
            ps.random_blocks = 2;
            ps.seed = 7;
            bsa_layout_t lay;
            BK(bsa_layout_create_preset(ctx, &lay, &ps));
            bsa_attn_desc d;
            memset(&d, 0, sizeof d);
            d.dtype = BSA_DTYPE_F16;
            d.q = bsa_tensor_bhtd(B, H, T, D);
            d.k = bsa_tensor_bhtd(B, KH, T, D);
            d.v = bsa_tensor_bhtd(B, KH, T, D);
            d.o = bsa_tensor_bhtd(B, H, T, D);
            bsa_plan_t plan;
            bsa_status st = bsa_plan_create(ctx, &plan, &d, lay);
            if (st) {
                printf("%s D=%d: plan failed: %s\n", L[li].name, D, bsa_last_error());
                bad++;
                bsa_layout_destroy(lay);
                continue;
            }
            const char *impl;
            BK(bsa_plan_implementation(plan, &impl));
            rng = 0x9E3779B97F4A7C15ull + li * 131 + D;
            size_t nq = (size_t)B * H * T * D, nk = (size_t)B * KH * T * D;
            void *q = dev_rand(nq, 2), *k = dev_rand(nk, 2), *v = dev_rand(nk, 1),
                 *dout = dev_rand(nq, 1);
            void *o, *dq, *dk, *dv, *ws = NULL;
            float *lse;
            size_t wsb;
            CK(cudaMalloc(&o, nq * 2));
            CK(cudaMalloc(&dq, nq * 2));
            CK(cudaMalloc(&dk, nk * 2));
            CK(cudaMalloc(&dv, nk * 2));
            CK(cudaMalloc((void **)&lse, (size_t)B * H * T * 4));
            CK(cudaMemset(o, 0x7f, nq * 2));
            CK(cudaMemset(dq, 0x7f, nq * 2));
            CK(cudaMemset(dk, 0x7f, nk * 2));
            CK(cudaMemset(dv, 0x7f, nk * 2));
            BK(bsa_plan_workspace_size(plan, &wsb));
            if (wsb)
                CK(cudaMalloc(&ws, wsb));
            bsa_fwd_args fa;
            memset(&fa, 0, sizeof fa);
            fa.q = q;
            fa.k = k;
            fa.v = v;
            fa.o = o;
            fa.lse = lse;
            BK(bsa_forward(plan, &fa, ws, wsb, NULL));
            bsa_bwd_args ba;
            memset(&ba, 0, sizeof ba);
            ba.q = q;
            ba.k = k;
            ba.v = v;
            ba.o = o;
            ba.lse = lse;
            ba.dout = dout;
            ba.dq = dq;
            ba.dk = dk;
            ba.dv = dv;
            BK(bsa_backward(plan, &ba, ws, wsb, NULL));
            CK(cudaDeviceSynchronize());
            double z[5];
            uint64_t h[5] = {dev_hash(o, nq * 2, &z[0]),
                             dev_hash(lse, (size_t)B * H * T * 4, &z[1]),
                             dev_hash(dq, nq * 2, &z[2]), dev_hash(dk, nk * 2, &z[3]),
                             dev_hash(dv, nk * 2, &z[4])};
            printf("%-16s D=%3d %-16s o %016llx lse %016llx dq %016llx dk %016llx dv %016llx "
                   "nonzero %.2f %.2f %.2f %.2f %.2f\n",
                   L[li].name, D, impl, (unsigned long long)h[0], (unsigned long long)h[1],
                   (unsigned long long)h[2], (unsigned long long)h[3], (unsigned long long)h[4],
                   z[0], z[1], z[2], z[3], z[4]);
            cudaFree(q);
            cudaFree(k);
            cudaFree(v);
            cudaFree(dout);
            cudaFree(o);
            cudaFree(dq);
            cudaFree(dk);
            cudaFree(dv);
            cudaFree(lse);
            if (ws)
                cudaFree(ws);
            bsa_plan_destroy(plan);
            bsa_layout_destroy(lay);
        }
    bsa_context_destroy(ctx);
    return bad != 0;
}
