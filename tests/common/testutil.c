/* Test helpers: see testutil.h. */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"
#include "half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ rng */

/* splitmix64: tiny, full-period, statistically fine for test data. */
static uint64_t rng_state;
static int rng_seeded;
static uint64_t rng_seed_value;

void tu_reseed(uint64_t seed)
{
    rng_state = seed;
    rng_seed_value = seed;
    rng_seeded = 1;
}

uint64_t tu_seed(void)
{
    if (rng_seeded)
        return rng_seed_value;
    const char *env = getenv("BSA_TEST_SEED");
    uint64_t seed;
    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    tu_reseed(seed);
    /* stderr is unbuffered: the seed shows even if the run crashes */
    fprintf(stderr, "[ seed ] BSA_TEST_SEED=%llu\n", (unsigned long long)seed);
    return seed;
}

uint64_t tu_next(void)
{
    if (!rng_seeded)
        tu_seed();
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_uniform(double lo, double hi)
{
    double u = (double)(tu_next() >> 11) * (1.0 / 9007199254740992.0);
    return lo + (hi - lo) * u;
}

int tu_randint(int lo, int hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int)(tu_next() % (uint64_t)(hi - lo));
}

/* --------------------------------------------------------------- dtypes */

size_t tu_dtype_size(bsa_dtype dtype)
{
    return dtype == BSA_DTYPE_F32 ? 4 : 2;
}

const tu_tol tu_cpu_tol[3] = {
    [BSA_DTYPE_F32] = {2e-6, 3e-5, 5e-7},
    [BSA_DTYPE_F16] = {1e-3, 1.2e-3, 5e-7},
    [BSA_DTYPE_BF16] = {7e-3, 1.4e-2, 5e-7},
};

const char *tu_dtype_name(bsa_dtype dtype)
{
    switch (dtype) {
    case BSA_DTYPE_F32:
        return "f32";
    case BSA_DTYPE_F16:
        return "f16";
    case BSA_DTYPE_BF16:
        return "bf16";
    }
    return "?";
}

double tu_get(bsa_dtype dtype, const void *buf, int64_t i)
{
    switch (dtype) {
    case BSA_DTYPE_F32:
        return ((const float *)buf)[i];
    case BSA_DTYPE_F16:
        return bsa_f16_to_f32(((const uint16_t *)buf)[i]);
    case BSA_DTYPE_BF16:
        return bsa_bf16_to_f32(((const uint16_t *)buf)[i]);
    }
    return NAN;
}

void tu_set(bsa_dtype dtype, void *buf, int64_t i, double v)
{
    switch (dtype) {
    case BSA_DTYPE_F32:
        ((float *)buf)[i] = (float)v;
        break;
    case BSA_DTYPE_F16:
        ((uint16_t *)buf)[i] = bsa_f32_to_f16((float)v);
        break;
    case BSA_DTYPE_BF16:
        ((uint16_t *)buf)[i] = bsa_f32_to_bf16((float)v);
        break;
    }
}

double tu_round(bsa_dtype dtype, double v)
{
    unsigned char tmp[4];
    tu_set(dtype, tmp, 0, v);
    return tu_get(dtype, tmp, 0);
}

/* ------------------------------------------------------- poison, buffers */

/* Quiet NaNs with a payload that no arithmetic produces by accident. */
static const uint32_t poison_f32 = 0x7fd5a5a5u;
static const uint16_t poison_f16 = 0x7e5au;
static const uint16_t poison_bf16 = 0x7fd5u;

void tu_poison(bsa_dtype dtype, void *buf, int64_t n)
{
    if (dtype == BSA_DTYPE_F32) {
        uint32_t *p = buf;
        for (int64_t i = 0; i < n; i++)
            p[i] = poison_f32;
    } else {
        uint16_t *p = buf;
        uint16_t v = dtype == BSA_DTYPE_F16 ? poison_f16 : poison_bf16;
        for (int64_t i = 0; i < n; i++)
            p[i] = v;
    }
}

int tu_is_poison(bsa_dtype dtype, const void *buf, int64_t i)
{
    if (dtype == BSA_DTYPE_F32)
        return ((const uint32_t *)buf)[i] == poison_f32;
    return ((const uint16_t *)buf)[i] == (dtype == BSA_DTYPE_F16 ? poison_f16 : poison_bf16);
}

void *tu_xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

void *tu_alloc(bsa_dtype dtype, int64_t n)
{
    void *p = tu_xmalloc((size_t)n * tu_dtype_size(dtype));
    tu_poison(dtype, p, n);
    return p;
}

/* ----------------------------------------------------- tensor descriptors */

int64_t tu_desc_count(const bsa_tensor_desc *d)
{
    return d->dims[0] * d->dims[1] * d->dims[2] * d->dims[3];
}

int64_t tu_desc_span(const bsa_tensor_desc *d)
{
    int64_t last = 0;
    for (int i = 0; i < 4; i++)
        last += (d->dims[i] - 1) * d->strides[i];
    return last + 1;
}

int64_t tu_desc_offset(const bsa_tensor_desc *d, int64_t b, int64_t h, int64_t t, int64_t x)
{
    return b * d->strides[0] + h * d->strides[1] + t * d->strides[2] + x * d->strides[3];
}

bsa_tensor_desc tu_desc_padded(int64_t batch, int64_t heads, int64_t time, int64_t dim)
{
    /* [b][t][h][d] with 3 spare elements after each head's vector, 5 after
     * each time row and 7 after each batch item */
    int64_t sh = dim + 3, st = heads * sh + 5, sb = time * st + 7;
    bsa_tensor_desc d = {{batch, heads, time, dim}, {sb, sh, st, 1}};
    return d;
}

void tu_unpack(bsa_dtype dtype, const bsa_tensor_desc *d, const void *buf, double *out)
{
    int64_t n = 0;
    for (int64_t b = 0; b < d->dims[0]; b++)
        for (int64_t h = 0; h < d->dims[1]; h++)
            for (int64_t t = 0; t < d->dims[2]; t++)
                for (int64_t x = 0; x < d->dims[3]; x++)
                    out[n++] = tu_get(dtype, buf, tu_desc_offset(d, b, h, t, x));
}

void tu_pack(bsa_dtype dtype, const bsa_tensor_desc *d, const double *in, void *buf)
{
    int64_t n = 0;
    for (int64_t b = 0; b < d->dims[0]; b++)
        for (int64_t h = 0; h < d->dims[1]; h++)
            for (int64_t t = 0; t < d->dims[2]; t++)
                for (int64_t x = 0; x < d->dims[3]; x++)
                    tu_set(dtype, buf, tu_desc_offset(d, b, h, t, x), in[n++]);
}

tu_tensor tu_tensor_new(bsa_dtype dtype, bsa_tensor_desc desc)
{
    tu_tensor t;
    t.dtype = dtype;
    t.desc = desc;
    t.count = tu_desc_count(&desc);
    t.span = tu_desc_span(&desc);
    t.data = tu_alloc(dtype, t.span);
    t.val = tu_xmalloc((size_t)t.count * sizeof(double));
    memset(t.val, 0, (size_t)t.count * sizeof(double));
    return t;
}

void tu_tensor_random(tu_tensor *t, double lo, double hi)
{
    for (int64_t i = 0; i < t->count; i++)
        t->val[i] = tu_round(t->dtype, tu_uniform(lo, hi));
    tu_pack(t->dtype, &t->desc, t->val, t->data);
}

void tu_tensor_poison(tu_tensor *t)
{
    tu_poison(t->dtype, t->data, t->span);
}

void tu_tensor_read(tu_tensor *t)
{
    tu_unpack(t->dtype, &t->desc, t->data, t->val);
}

void tu_tensor_free(tu_tensor *t)
{
    free(t->data);
    free(t->val);
    t->data = NULL;
    t->val = NULL;
}

int64_t tu_tensor_unwritten(const tu_tensor *t)
{
    const bsa_tensor_desc *d = &t->desc;
    int64_t bad = 0;
    for (int64_t b = 0; b < d->dims[0]; b++)
        for (int64_t h = 0; h < d->dims[1]; h++)
            for (int64_t s = 0; s < d->dims[2]; s++)
                for (int64_t x = 0; x < d->dims[3]; x++)
                    bad += tu_is_poison(t->dtype, t->data, tu_desc_offset(d, b, h, s, x));
    return bad;
}

int64_t tu_tensor_gaps_touched(const tu_tensor *t)
{
    const bsa_tensor_desc *d = &t->desc;
    unsigned char *logical = tu_xmalloc((size_t)t->span);
    memset(logical, 0, (size_t)t->span);
    for (int64_t b = 0; b < d->dims[0]; b++)
        for (int64_t h = 0; h < d->dims[1]; h++)
            for (int64_t s = 0; s < d->dims[2]; s++)
                for (int64_t x = 0; x < d->dims[3]; x++)
                    logical[tu_desc_offset(d, b, h, s, x)] = 1;
    int64_t bad = 0;
    for (int64_t i = 0; i < t->span; i++)
        if (!logical[i] && !tu_is_poison(t->dtype, t->data, i))
            bad++;
    free(logical);
    return bad;
}

/* --------------------------------------------------------------- errors */

double tu_rel_l2(const double *got, const double *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        double e = got[i] - ref[i];
        num += e * e;
        den += ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double tu_max_abs_diff(const double *got, const double *ref, int64_t n)
{
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]);
        if (!(e <= m)) /* NaN wins */
            m = e;
    }
    return m;
}

int64_t tu_count_nonfinite(const double *x, int64_t n)
{
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        c += !isfinite(x[i]);
    return c;
}

void tu_f32_to_f64(const float *in, double *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = in[i];
}

bsa_preset tu_preset(bsa_pattern pat, int seq, int block, int ctx, int bidir)
{
    bsa_preset p;
    memset(&p, 0, sizeof p);
    p.pattern = pat;
    p.seq = seq;
    p.block = block;
    p.heads = 1;
    p.ctx = ctx;
    p.bidirectional = bidir;
    return p;
}
