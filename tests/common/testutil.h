/*
 * Test helpers shared by the CPU and GPU suites: a seeded RNG, typed
 * buffers described by bsa_tensor_desc, NaN poisoning, pack/unpack to a
 * natural-order double array [b][h][t][d], and error measures.
 *
 * Seeding: BSA_TEST_SEED=<n> reproduces a run; otherwise the seed comes from
 * time and pid and is printed once, so any failure can be replayed.
 */
#ifndef BSA_TESTUTIL_H
#define BSA_TESTUTIL_H

#include "bsa.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ rng */

/* Seeds on first use (and prints the seed); returns it. */
uint64_t tu_seed(void);
/* Restarts the stream from an explicit seed (for replaying one case). */
void tu_reseed(uint64_t seed);
uint64_t tu_next(void);
/* Uniform in [lo, hi). */
double tu_uniform(double lo, double hi);
/* Uniform integer in [lo, hi). */
int tu_randint(int lo, int hi);

/* -------------------------------------------------------------- presets */

/* A one-head preset of pattern pat (the rest zero: defaults, causal unless
 * bidir). */
bsa_preset tu_preset(bsa_pattern pat, int seq, int block, int ctx, int bidir);

/* --------------------------------------------------------------- dtypes */

size_t tu_dtype_size(bsa_dtype dtype);
const char *tu_dtype_name(bsa_dtype dtype);

/* The CPU attention suites' bounds (test_cpu_attention,
 * test_features_attention), relative L2 against the oracle: about 4x the
 * worst error measured over every case (tests/README.md, "Tolerances");
 * lse is fp32 for every dtype.  Indexed by bsa_dtype. */
typedef struct tu_tol {
    double out, grad, lse;
} tu_tol;
extern const tu_tol tu_cpu_tol[3];
/* v rounded to dtype (round to nearest even, as api/half.h does). */
double tu_round(bsa_dtype dtype, double v);
double tu_get(bsa_dtype dtype, const void *buf, int64_t i);
void tu_set(bsa_dtype dtype, void *buf, int64_t i, double v);

/* ------------------------------------------------------- poison, buffers */

/* Writes a NaN with a distinctive payload into n elements. */
void tu_poison(bsa_dtype dtype, void *buf, int64_t n);
/* 1 if element i still holds the poison bit pattern. */
int tu_is_poison(bsa_dtype dtype, const void *buf, int64_t i);
/* malloc'd and poisoned; never returns NULL (aborts the test run instead). */
void *tu_alloc(bsa_dtype dtype, int64_t n);
void *tu_xmalloc(size_t bytes);

/* ----------------------------------------------------- tensor descriptors */

/* Logical elements: product of dims. */
int64_t tu_desc_count(const bsa_tensor_desc *d);
/* Elements a buffer must hold: 1 + largest offset. */
int64_t tu_desc_span(const bsa_tensor_desc *d);
/* Offset of logical element (b, h, t, x). */
int64_t tu_desc_offset(const bsa_tensor_desc *d, int64_t b, int64_t h, int64_t t, int64_t x);
/* A padded, non-contiguous [batch, time, heads, dim] view: every stride
 * above dim gets extra gaps, so reading or writing a gap element shows. */
bsa_tensor_desc tu_desc_padded(int64_t batch, int64_t heads, int64_t time, int64_t dim);

/* Natural-order double array [b][h][t][d] <-> typed strided buffer. */
void tu_unpack(bsa_dtype dtype, const bsa_tensor_desc *d, const void *buf, double *out);
void tu_pack(bsa_dtype dtype, const bsa_tensor_desc *d, const double *in, void *buf);

/* A typed tensor plus its natural-order double copy. */
typedef struct tu_tensor {
    bsa_dtype dtype;
    bsa_tensor_desc desc;
    int64_t count; /* logical elements */
    int64_t span;  /* buffer elements */
    void *data;    /* span elements, gaps poisoned */
    double *val;   /* count doubles, natural order */
} tu_tensor;

/* Buffer poisoned everywhere, val zeroed. */
tu_tensor tu_tensor_new(bsa_dtype dtype, bsa_tensor_desc desc);
/* Logical elements ~U(lo, hi) rounded to dtype; val gets the rounded values
 * (so the oracle sees exactly what the library sees); gaps stay poisoned. */
void tu_tensor_random(tu_tensor *t, double lo, double hi);
/* Poisons the whole buffer (before a run writes it). */
void tu_tensor_poison(tu_tensor *t);
/* val <- data. */
void tu_tensor_read(tu_tensor *t);
void tu_tensor_free(tu_tensor *t);
/* Logical elements still poisoned (not written by the library). */
int64_t tu_tensor_unwritten(const tu_tensor *t);
/* Gap elements no longer poisoned (written outside the tensor). */
int64_t tu_tensor_gaps_touched(const tu_tensor *t);

/* --------------------------------------------------------------- errors */

/* ||got - ref||_2 / ||ref||_2; if ||ref|| == 0, returns ||got||_2.  NaN in
 * got gives +inf so that a threshold test fails. */
double tu_rel_l2(const double *got, const double *ref, int64_t n);
double tu_max_abs_diff(const double *got, const double *ref, int64_t n);
int64_t tu_count_nonfinite(const double *x, int64_t n);
/* float arrays (lse) to double. */
void tu_f32_to_f64(const float *in, double *out, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
