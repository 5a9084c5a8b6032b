/*
 * Block matrix products of the CPU backend: oneDNN's sgemm when available,
 * a register-blocked plain C product otherwise.
 */
#include "cpu_internal.h"

#include <string.h>

#ifdef BSA_WITH_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

/* The plain C product: op(B) is packed, KC x 32 at a time, into a
 * contiguous panel on the stack (this also turns B^T into rows), and a
 * 4 x 32 block of C is accumulated in a local array that the compiler keeps
 * in vector registers (2 x 4 zmm with AVX-512): per k step, 4 broadcasts of
 * A, 2 loads of the panel, 8 fused multiply-adds. */
#define GEMM_NR 32
#define GEMM_KC 256

BSA_CPU_CLONES
void bsa_cpu_gemm_c(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        float *cr = c + i * ldc;
        if (beta == 0.0f) {
            for (int64_t j = 0; j < n; j++)
                cr[j] = 0.0f;
        } else if (beta != 1.0f) {
            for (int64_t j = 0; j < n; j++)
                cr[j] *= beta;
        }
    }
    float panel[GEMM_KC * GEMM_NR];
    for (int64_t j0 = 0; j0 < n; j0 += GEMM_NR) {
        int64_t nb = n - j0 < GEMM_NR ? n - j0 : GEMM_NR;
        for (int64_t k0 = 0; k0 < k; k0 += GEMM_KC) {
            int64_t kc = k - k0 < GEMM_KC ? k - k0 : GEMM_KC;
            for (int64_t kk = 0; kk < kc; kk++) {
                float *pr = panel + kk * GEMM_NR;
                for (int64_t j = 0; j < GEMM_NR; j++)
                    pr[j] = j >= nb ? 0.0f
                            : tb    ? b[(j0 + j) * ldb + k0 + kk]
                                    : b[(k0 + kk) * ldb + j0 + j];
            }
            for (int64_t i0 = 0; i0 < m; i0 += 4) {
                int64_t rows = m - i0 < 4 ? m - i0 : 4;
                float acc[4][GEMM_NR];
                memset(acc, 0, sizeof acc);
                for (int64_t kk = 0; kk < kc; kk++) {
                    const float *pr = panel + kk * GEMM_NR;
                    float x[4];
                    for (int r = 0; r < 4; r++) {
                        int64_t i = i0 + (r < rows ? r : 0);
                        float av = ta ? a[(k0 + kk) * lda + i] : a[i * lda + k0 + kk];
                        x[r] = r < rows ? alpha * av : 0.0f;
                    }
                    for (int r = 0; r < 4; r++)
                        for (int j = 0; j < GEMM_NR; j++)
                            acc[r][j] += x[r] * pr[j];
                }
                for (int r = 0; r < rows; r++) {
                    float *cr = c + (i0 + r) * ldc + j0;
                    for (int64_t j = 0; j < nb; j++)
                        cr[j] += acc[r][j];
                }
            }
        }
    }
}

void bsa_cpu_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
#ifdef BSA_WITH_DNNL
    if (k > 0 && dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c,
                            ldc) == dnnl_success)
        return;
#endif
    bsa_cpu_gemm_c(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
