/*
 * Element-wise loops of the CPU backend: dtype conversion of row tiles,
 * element masks, the base-2 exponential and the softmax steps.
 */
#include "cpu_internal.h"

#include "../../api/half.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* f16 -> f32 of every bit pattern, filled from api/half.h: the branchy
 * scalar conversion does not vectorize and cost ~1 ns per element (half of
 * the f16 forward's time); a table lookup vectorizes as a gather and gives
 * the very same values. */
static float f16_table[65536];
static atomic_int f16_table_state; /* 0 empty, 1 being filled, 2 ready */

/* f32 -> f16 of a row: half.h's rounding has a data-dependent branch
 * (round up or not) that mispredicts on every other element, ~5 ns each;
 * the F16C instruction rounds the same way (to nearest even, overflow to
 * inf, subnormals exact), so where the CPU has it, it does the work and
 * half.h still decides NaNs (whose payload the instruction keeps): the
 * bits equal half.h's for every input (test_cpu_backend_smoke checks). */
#if defined(__GNUC__) && defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define BSA_HAVE_F16C_PATH 1
__attribute__((target("avx,f16c"))) static void f32_to_f16_hw(uint16_t *out, const float *in,
                                                              int64_t n)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + j), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(out + j), h);
    }
    for (; j < n; j++)
        out[j] = bsa_f32_to_f16(in[j]);
    for (j = 0; j < n; j++)
        if (in[j] != in[j])
            out[j] = bsa_f32_to_f16(in[j]);
}

static int cpu_has_f16c(void)
{
    static atomic_int known; /* 0 unknown, 1 no, 2 yes */
    int k = atomic_load(&known);
    if (!k) {
        /* CPUID leaf 1, ECX: bit 28 AVX, bit 29 F16C (clang 14's
         * __builtin_cpu_supports does not know "f16c") */
        unsigned a, b, c = 0, d;
        int ok = __get_cpuid(1, &a, &b, &c, &d) && (c >> 28 & 1u) && (c >> 29 & 1u);
        k = ok ? 2 : 1;
        atomic_store(&known, k);
    }
    return k == 2;
}
#endif

void bsa_cpu_f32_to_f16_row(uint16_t *out, const float *in, int64_t n)
{
#ifdef BSA_HAVE_F16C_PATH
    if (cpu_has_f16c()) {
        f32_to_f16_hw(out, in, n);
        return;
    }
#endif
    for (int64_t j = 0; j < n; j++)
        out[j] = bsa_f32_to_f16(in[j]);
}

void bsa_cpu_f16_table_init(void)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&f16_table_state, &expected, 1)) {
        for (uint32_t h = 0; h < 65536; h++)
            f16_table[h] = bsa_f16_to_f32((uint16_t)h);
        atomic_store(&f16_table_state, 2);
        return;
    }
    while (atomic_load(&f16_table_state) != 2)
        ; /* another thread is filling it: a few microseconds */
}

/* 2^x: round x to the nearest integer n with the 1.5 * 2^23 trick (no
 * floor/round call, so the loop vectorizes on the baseline ISA), 2^f for
 * f in [-0.5, 0.5] by its Taylor polynomial of degree 7 (truncation error
 * 0.347^8 / 8! < 2e-8), and 2^n through the exponent bits.  Inputs below
 * -126 give exactly 0, so masked logits (-inf) vanish without a branch. */
static inline float exp2_fast(float x)
{
    float xc = x < -126.0f ? -126.0f : (x > 127.0f ? 127.0f : x);
    float t = xc + 12582912.0f;
    float n = t - 12582912.0f;
    float f = xc - n;
    uint32_t tb;
    memcpy(&tb, &t, 4);
    int32_t ni = (int32_t)(tb - 0x4b400000u);
    float p = 1.5252733804059840e-05f;
    p = p * f + 1.5403530393381609e-04f;
    p = p * f + 1.3333558146428443e-03f;
    p = p * f + 9.6181291076284772e-03f;
    p = p * f + 5.5504108664821580e-02f;
    p = p * f + 2.4022650695910071e-01f;
    p = p * f + 6.9314718055994531e-01f;
    p = p * f + 1.0f;
    uint32_t eb = (uint32_t)(ni + 127) << 23;
    float e;
    memcpy(&e, &eb, 4);
    float r = e * p;
    return x < -126.0f ? 0.0f : r;
}

float bsa_cpu_exp2(float x)
{
    return exp2_fast(x);
}

BSA_CPU_CLONES
void bsa_cpu_load_rows(float *dst, int64_t ld, const void *base, bsa_dtype dt, int64_t tstride,
                       int64_t r0, int64_t n, int64_t d, int perm, int64_t seq, float mul)
{
    for (int64_t r = 0; r < n; r++) {
        int64_t t = bsa_perm_row(r0 + r, perm, seq);
        float *out = dst + r * ld;
        if (dt == BSA_DTYPE_F32) {
            const float *in = (const float *)base + t * tstride;
            for (int64_t j = 0; j < d; j++)
                out[j] = in[j] * mul;
        } else if (dt == BSA_DTYPE_BF16) {
            const uint16_t *in = (const uint16_t *)base + t * tstride;
            for (int64_t j = 0; j < d; j++)
                out[j] = bsa_bf16_to_f32(in[j]) * mul;
        } else {
            const uint16_t *in = (const uint16_t *)base + t * tstride;
            for (int64_t j = 0; j < d; j++)
                out[j] = f16_table[in[j]] * mul;
        }
    }
}

BSA_CPU_CLONES
void bsa_cpu_store_rows(void *base, bsa_dtype dt, int64_t tstride, int64_t r0, int64_t n, int64_t d,
                        int perm, int64_t seq, const float *src, int64_t ld)
{
    for (int64_t r = 0; r < n; r++) {
        int64_t t = bsa_perm_row(r0 + r, perm, seq);
        const float *in = src + r * ld;
        if (dt == BSA_DTYPE_F32) {
            memcpy((float *)base + t * tstride, in, (size_t)d * sizeof(float));
        } else if (dt == BSA_DTYPE_BF16) {
            uint16_t *out = (uint16_t *)base + t * tstride;
            for (int64_t j = 0; j < d; j++)
                out[j] = bsa_f32_to_bf16(in[j]);
        } else {
            bsa_cpu_f32_to_f16_row((uint16_t *)base + t * tstride, in, d);
        }
    }
}

void bsa_cpu_mask_block(float *s, int64_t lds, const struct bsa_layout *l, int64_t i)
{
    int32_t mi = l->mask_idx[i];
    int bs = l->block;
    if (mi == BSA_BLOCK_FULL)
        return;
    if (mi == BSA_BLOCK_PRED) {
        /* Each predicate keeps an interval of keys for a query q: causal
         * k < q + 1, window q - w < k < q + w, prefix (k < p or k <= q)
         * k < max(q + 1, p).  So a row keeps one run [lo, hi): two fills
         * instead of a predicate call per element. */
        const bsa_pred *p = &l->pred;
        int64_t q0 = (int64_t)l->row_of[i] * bs, k0 = (int64_t)l->col_idx[i] * bs;
        for (int r = 0; r < bs; r++) {
            int64_t q = q0 + r, lo = k0, hi = k0 + bs;
            if (p->flags & BSA_PRED_BIT_CAUSAL)
                hi = hi < q + 1 ? hi : q + 1;
            if (p->flags & BSA_PRED_BIT_WINDOW) {
                lo = lo > q - p->window + 1 ? lo : q - p->window + 1;
                hi = hi < q + p->window ? hi : q + p->window;
            }
            if (p->flags & BSA_PRED_BIT_PREFIX) {
                int64_t e = q + 1 > p->prefix ? q + 1 : p->prefix;
                hi = hi < e ? hi : e;
            }
            int64_t a = lo - k0, b = hi - k0;
            if (b < a)
                a = b = bs; /* nothing kept: the first loop clears the row */
            float *row = s + r * lds;
            for (int64_t c = 0; c < a && c < bs; c++)
                row[c] = -INFINITY;
            for (int64_t c = b < 0 ? 0 : b; c < bs; c++)
                row[c] = -INFINITY;
        }
        return;
    }
    for (int r = 0; r < bs; r++) {
        const uint64_t *bits = l->bits + ((int64_t)mi * bs + r) * l->words;
        float *row = s + r * lds;
        for (int c = 0; c < bs; c++)
            if (!((bits[c >> 6] >> (c & 63)) & 1u))
                row[c] = -INFINITY;
    }
}

BSA_CPU_CLONES
void bsa_cpu_softmax_step(float *s, int64_t rows, int64_t w, int64_t lds, float *m, float *l,
                          float *alpha)
{
    for (int64_t r = 0; r < rows; r++) {
        float *row = s + r * lds;
        float mx = -INFINITY;
#ifdef _OPENMP
#pragma omp simd reduction(max : mx)
#endif
        for (int64_t j = 0; j < w; j++)
            mx = row[j] > mx ? row[j] : mx;
        float m_old = m[r];
        float m_new = mx > m_old ? mx : m_old;
        if (m_new == -INFINITY) {
            /* Nothing visible yet, unless a visible logit is NaN (a NaN or
             * Inf in the query or a key): the max skips NaN, so check.  A
             * NaN row max is sticky (no comparison with it is true) and
             * makes the row's probabilities, sum and output NaN. */
            int nan = 0;
            for (int64_t j = 0; j < w; j++)
                nan |= row[j] != row[j];
            if (!nan) {
                memset(row, 0, (size_t)w * sizeof(float));
                alpha[r] = 1.0f;
                continue;
            }
            m_new = NAN;
        }
        float sum = 0.0f;
#ifdef _OPENMP
#pragma omp simd reduction(+ : sum)
#endif
        for (int64_t j = 0; j < w; j++) {
            float p = exp2_fast(row[j] - m_new);
            row[j] = p;
            sum += p;
        }
        float a = m_old == -INFINITY ? 0.0f : exp2_fast(m_old - m_new);
        alpha[r] = a;
        l[r] = l[r] * a + sum;
        m[r] = m_new;
    }
}

BSA_CPU_CLONES
void bsa_cpu_exp_rows(float *s, int64_t rows, int64_t w, int64_t lds, const float *lse2)
{
    for (int64_t r = 0; r < rows; r++) {
        float *row = s + r * lds;
        float off = lse2[r];
        if (off == -INFINITY) {
            memset(row, 0, (size_t)w * sizeof(float));
            continue;
        }
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int64_t j = 0; j < w; j++) {
            /* A probability is at most 1.  With huge logits (|s| ~ 1e10
             * from f16 inputs at their largest) a recomputed logit that
             * rounds differently from the forward's can exceed lse by
             * thousands: without the cap that is exp2(1000) = inf.  The
             * comparison keeps NaN (NaN > 0 is false). */
            float x = row[j] - off;
            row[j] = exp2_fast(x > 0.0f ? 0.0f : x);
        }
    }
}

BSA_CPU_CLONES
void bsa_cpu_dsoftmax_rows(const float *p, float *dp, int64_t rows, int64_t w, int64_t ld,
                           const float *delta)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *pr = p + r * ld;
        float *dr = dp + r * ld;
        float dl = delta[r];
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int64_t j = 0; j < w; j++)
            dr[j] = pr[j] * (dr[j] - dl);
    }
}

BSA_CPU_CLONES
void bsa_cpu_scale_rows(float *acc, int64_t rows, int64_t d, int64_t ld, const float *alpha)
{
    for (int64_t r = 0; r < rows; r++) {
        float a = alpha[r];
        if (a == 1.0f)
            continue;
        float *row = acc + r * ld;
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int64_t j = 0; j < d; j++)
            row[j] *= a;
    }
}
