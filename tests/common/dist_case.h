/*
 * Context-parallel cases, shared by tests/test_dist_threads.c (ranks as
 * threads over the callback transport) and tests/dist/test_dist_mpi.c (MPI
 * ranks): a case's layout, the whole sequence every rank draws with its
 * single-process reference, and a rank's shard of rows cut from it and
 * compared with it.
 */
#ifndef BSA_TEST_DIST_CASE_H
#define BSA_TEST_DIST_CASE_H

#include "testutil.h"

/* The preset of a case: pattern on seq tokens, causal unless bidir; local
 * a band of 32 tokens, strided stride 4, fixed per head (ctx 64, two
 * verticals of size 1).  For 2 to 4 ranks, seq and block as the tests
 * take them (seq / (8 P) a multiple of block). */
bsa_preset dc_preset(bsa_pattern pattern, int bidir, int seq, int block, int heads);

/* The whole sequence: random inputs and the single-process result. */
typedef struct dc_whole {
    tu_tensor q, k, v, g;    /* ~U(-1, 1), drawn in this order; g = dO */
    tu_tensor o, dq, dk, dv; /* the reference, val read back */
    float *lse;              /* [batch * heads * seq] */
    double *lse_val;         /* the same as doubles */
} dc_whole;

/* Draws the inputs (bhtd tensors of dtype dt; k, v with kv_heads) and runs
 * the library on the whole sequence with layout lay, forward then
 * backward: the reference every rank's shard is compared with.  Returns
 * the first failure's status; w is complete either way (dc_whole_free). */
bsa_status dc_whole_init(dc_whole *w, bsa_context_t ctx, bsa_layout_t lay, bsa_dtype dt,
                         int64_t batch, int64_t heads, int64_t kv_heads, int64_t seq, int64_t dim);
void dc_whole_free(dc_whole *w);

/* A rank's shard of a whole-sequence array [bh][seq][d] (elements of es
 * bytes): rows pos[0 .. n) of each of the bh slices, into [bh][n][d]. */
void dc_gather_rows(void *shard, const void *whole, size_t es, int64_t bh, int64_t seq, int64_t n,
                    int64_t d, const int64_t *pos);

/* got (a shard, [bh][n][d]) against ref (the whole [bh][seq][d]) at
 * positions pos: e[0] = relative L2 (tu_rel_l2), e[1] = largest
 * |difference| over the largest |ref| of the whole tensor.  A NaN or Inf
 * in got gives +inf for both. */
void dc_shard_err(const double *got, const double *ref, int64_t bh, int64_t seq, int64_t n,
                  int64_t d, const int64_t *pos, double e[2]);

#endif
