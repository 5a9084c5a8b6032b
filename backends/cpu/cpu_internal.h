/*
 * Shared pieces of the OpenMP CPU backend (internal to backends/cpu/).
 *
 * Every kernel works on fp32 tiles in layout order: rows of q/k/v/o are
 * converted (and, for the strided pattern, permuted) when they are loaded
 * and converted back when they are stored, so the products and the softmax
 * never see the storage dtype or the natural time order.
 */
#ifndef BSA_CPU_INTERNAL_H
#define BSA_CPU_INTERNAL_H

#include "../backend.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Runtime-dispatched clones of the hot loops: the library is built for the
 * baseline ISA, but the exp/softmax loops and the plain C products are worth
 * 2-4x with AVX2/AVX-512, so GCC emits one clone per ISA and picks at load.
 * The resolver of an "arch=x86-64-vN" clone tests the ISA level (GCC >= 12),
 * not the CPU model as "arch=skylake-avx512" would (that one never matched
 * this Sapphire Rapids machine and left everything on the SSE2 clone). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) &&           \
    defined(__linux__)
#define BSA_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BSA_CPU_CLONES
#endif

#define BSA_LOG2E 1.4426950408889634f
#define BSA_LN2 0.6931471805599453f

/* Per-plan data of the CPU backend. */
typedef struct cpu_plan {
    int nthreads;         /* threads of every parallel region */
    int chunk_blocks;     /* layout blocks per product (the tile width / block) */
    int preconvert;       /* convert f16/bf16 q/k/v/dO to fp32 once per call */
    int group;            /* forward query tile = group consecutive blocks (1 = off) */
    int n_groups;         /* ceil(q_blocks / group) */
    int32_t *group_order; /* groups, largest key union first */
    int32_t *row_order;   /* query blocks, longest row first (layout head 0) */
    int32_t *col_order;   /* key blocks, longest column first (layout head 0) */
    size_t ws_fused;      /* workspace of the fused forward/backward */
    size_t ws_ref;        /* workspace of the reference implementation */
} cpu_plan;

/* ---------------------------------------------------------- cpu_gemm.c */

/* Row-major C = alpha * op(A) . op(B) + beta * C with op = transpose when
 * ta / tb is nonzero; oneDNN's sgemm when built with it (single-threaded
 * inside a parallel region), else a blocked plain C product.  beta == 0
 * overwrites C without reading it. */
void bsa_cpu_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* The plain C product, always available (tests compare the two). */
void bsa_cpu_gemm_c(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* ---------------------------------------------------------- cpu_math.c */

/* Storage element size of a dtype in bytes. */
static inline size_t bsa_cpu_esize(bsa_dtype dt)
{
    return dt == BSA_DTYPE_F32 ? 4 : 2;
}

/* out[j] = bsa_f32_to_f16(in[j]) for j < n, bit for bit (F16C if present). */
void bsa_cpu_f32_to_f16_row(uint16_t *out, const float *in, int64_t n);
/* Fills the f16 conversion table that bsa_cpu_load_rows uses; every plan
 * with f16 storage calls it first (thread-safe, idempotent). */
void bsa_cpu_f16_table_init(void);
/* Loads rows [r0, r0 + n) (layout order) of one (batch, head) slice into
 * dst[n][ld] as fp32 times mul.  base points at element (b, h, 0, 0); rows
 * are tstride elements apart in natural time; perm/seq give the strided
 * permutation (perm 0 = identity). */
void bsa_cpu_load_rows(float *dst, int64_t ld, const void *base, bsa_dtype dt, int64_t tstride,
                       int64_t r0, int64_t n, int64_t d, int perm, int64_t seq, float mul);
/* The inverse: stores src[n][ld] into rows [r0, r0 + n) converted to dt. */
void bsa_cpu_store_rows(void *base, bsa_dtype dt, int64_t tstride, int64_t r0, int64_t n, int64_t d,
                        int perm, int64_t seq, const float *src, int64_t ld);

/* Sets the elements of block i (tile at s, leading dimension lds, B x B)
 * that the layout masks to -inf.  A full block is left alone. */
void bsa_cpu_mask_block(float *s, int64_t lds, const struct bsa_layout *l, int64_t i);

/* Online softmax step of the forward pass over one product tile s[rows][w]
 * (base-2 logits): updates the running max m and sum l, writes the
 * probabilities 2^(s - m_new) into s and the rescale factor of the old
 * accumulator into alpha.  Rows that have seen no key stay at m = -inf,
 * l = 0 with zero probabilities; a row with a NaN visible logit gets m, l
 * and probabilities NaN from then on. */
void bsa_cpu_softmax_step(float *s, int64_t rows, int64_t w, int64_t lds, float *m, float *l,
                          float *alpha);
/* p = 2^(s - lse2[row]) in place (base-2 logits and log-sum-exp); a row
 * whose lse2 is -inf (it saw no key) becomes 0. */
void bsa_cpu_exp_rows(float *s, int64_t rows, int64_t w, int64_t lds, const float *lse2);
/* ds = p * (dp - delta[row]) into dp. */
void bsa_cpu_dsoftmax_rows(const float *p, float *dp, int64_t rows, int64_t w, int64_t ld,
                           const float *delta);
/* acc[r][:] *= alpha[r] */
void bsa_cpu_scale_rows(float *acc, int64_t rows, int64_t d, int64_t ld, const float *alpha);
/* 2^x for x <= 128 (x = -inf gives 0); relative error < 2e-7. */
float bsa_cpu_exp2(float x);

/* ------------------------------------------------------- per-thread helpers */

static inline int bsa_cpu_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Keeps oneDNN's sgemm single-threaded inside our parallel regions, also
 * when the region has one thread (then omp_in_parallel() is false and
 * oneDNN would otherwise start a team of its own). */
static inline void bsa_cpu_enter_region(void)
{
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
}

/* Bump allocator over a workspace: 64-byte aligned float arrays. */
typedef struct cpu_arena {
    char *p;
    size_t used;
} cpu_arena;

static inline float *bsa_cpu_take(cpu_arena *a, int64_t floats)
{
    float *r = a->p ? (float *)(a->p + a->used) : NULL;
    a->used += ((size_t)floats * sizeof(float) + 63) & ~(size_t)63;
    return r;
}

/* ------------------------------------------------------------ segments */

/* One independent attention problem of a call: a batch entry, or with
 * BSA_PLAN_VARLEN one packed sequence.  Positions inside it count from its
 * start (q0 / k0 in the tensors' time dims), so the layout's top-left
 * corner applies.  Queries past nq have no rows (nothing is read or
 * written there); keys at or past klim (<= nk) are masked. */
typedef struct cpu_seg {
    int64_t b;      /* batch index of the tensors (0 with varlen) */
    int64_t q0, k0; /* first query / key time step */
    int64_t nq, nk; /* queries / keys that exist */
    int64_t klim;   /* keys visible: min(nk, key length) */
} cpu_seg;

/* The segments of a call (malloc'd into *out, *n of them). */
bsa_status bsa_cpu_segments(const struct bsa_plan *plan, const int32_t *key_lengths,
                            const int32_t *cu_q, const int32_t *cu_k, int num_seqs, cpu_seg **out,
                            int64_t *n);

/* Masks (-inf) the columns of key block kb (tile s, rows x block, leading
 * dimension lds) whose natural key position is at or past klim; seq_k is
 * the layout's key length (for the strided permutation). */
static inline void bsa_cpu_key_limit(float *s, int64_t lds, int64_t rows,
                                     const struct bsa_layout *l, int32_t kb, int64_t klim)
{
    int64_t bs = l->block, k0 = (int64_t)kb * bs;
    int perm = l->stride_perm;
    if (klim >= l->seq_k || (!perm && k0 + bs <= klim))
        return;
    for (int64_t c = 0; c < bs; c++) {
        if (bsa_perm_row(k0 + c, perm, l->seq_k) < klim)
            continue;
        for (int64_t r = 0; r < rows; r++)
            s[r * lds + c] = -INFINITY;
    }
}

/* Largest of the query/key and value head dims (tile widths). */
static inline int64_t bsa_cpu_dmax(const bsa_shape *s)
{
    return s->head_dim > s->v_dim ? s->head_dim : s->v_dim;
}

/* ------------------------------------------------------ the implementations */

bsa_status bsa_cpu_fused_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *ws);
/* Sorted union of the key-block lists of query blocks [qb0, qb0 + ng) of
 * layout head lh; returns its length.  If ucol is not NULL it receives the
 * key blocks, and umap[x * g + j] the global block index of union entry x
 * in row qb0 + j (-1 where that row does not keep it).  ng <= g <= 8. */
int bsa_cpu_group_union(const struct bsa_layout *l, int lh, int qb0, int ng, int g, int32_t *ucol,
                        int32_t *umap);
bsa_status bsa_cpu_fused_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *ws);
size_t bsa_cpu_fused_workspace(const struct bsa_plan *plan, int nthreads);

bsa_status bsa_cpu_ref_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *ws);
bsa_status bsa_cpu_ref_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *ws);
size_t bsa_cpu_ref_workspace(const struct bsa_plan *plan, int nthreads);

bsa_status bsa_cpu_sparse_nt(bsa_plan_t plan, const void *a, const void *b, float *w, void *stream);
bsa_status bsa_cpu_sparse_softmax(bsa_plan_t plan, const float *w, float *p, float scale,
                                  int masked, void *stream);
bsa_status bsa_cpu_sparse_softmax_bwd(bsa_plan_t plan, const float *p, const float *dp, float *dw,
                                      float scale, void *stream);
bsa_status bsa_cpu_sparse_nn(bsa_plan_t plan, const float *w, const void *x, void *y, void *stream);
bsa_status bsa_cpu_sparse_tn(bsa_plan_t plan, const float *w, const void *x, void *y, void *stream);

#endif
