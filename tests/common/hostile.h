/*
 * The README's numerics guarantees (section "Numerics") as checks that run
 * on any backend: a runner says how to plan and how to run a forward and a
 * backward of an ac_problem on it (host memory for the CPU backend, device
 * copies for a GPU one).  tests/test_hostile.c runs them on the CPU backend,
 * tests/test_cuda_hostile.c on every CUDA implementation.
 *
 * Guarantees checked:
 *   - a NaN in a key poisons exactly the output rows that see that key
 *     (masked logits are selected away, never computed with); an Inf gives
 *     those rows a logit of +inf (poisoned: inf - inf) or -inf (probability
 *     0, as in any softmax: the row stays finite);
 *   - a NaN or Inf in a value row poisons the rows that see it, and may
 *     poison other rows of the tiles that compute its key: on the CPU
 *     backend the query blocks that keep its key block; on a GPU, whose
 *     kernels work on tiles of at most `tile` rows and keys, rows within
 *     `tile` of a row that keeps a key block within `tile` of the key.
 *     Every other row is bit-identical to the clean run;
 *   - a NaN or Inf in a query row makes that row's output and lse NaN (as
 *     the peers do) when the row sees a key, and dQ of the row non-finite;
 *     a row that sees no key stays exactly 0 with lse -inf; other rows are
 *     bit-identical to the clean run;
 *   - extreme logits (|x| up to 1e4 from f32 inputs; f16/bf16 inputs at the
 *     dtype's largest values) keep the softmax finite and accurate, and the
 *     gradients finite (dV accurate too at |logit| up to 1e4; dQ and dK,
 *     differences that rounding swamps at one-hot rows, finite only).
 */
#ifndef BSA_TEST_HOSTILE_H
#define BSA_TEST_HOSTILE_H

#include "attn_check.h"

typedef struct hz_runner {
    const char *name;  /* printed with each check */
    bsa_context_t ctx; /* the backend's context */
    const char *impl;  /* BSA_IMPL forced at plan creation; NULL: the default choice */
    int tile;          /* 0: poisoning spreads by layout block; else the largest kernel tile */
    bsa_status (*forward)(bsa_plan_t plan, ac_problem *p);  /* poisons, runs, reads back */
    bsa_status (*backward)(bsa_plan_t plan, ac_problem *p); /* the same for dq, dk, dv */
} hz_runner;

/* Each returns 1 when it ran, 0 when a forced implementation declined the
 * plan (reported on stdout); a failed guarantee fails the cmocka test. */
int hz_poison_key(const hz_runner *r, bsa_dtype dtype, int in_value, double bad);
int hz_poison_query(const hz_runner *r, bsa_dtype dtype, double bad);
/* entry: the magnitude of q and k entries; tol bounds o and lse, gtol dv
 * (relative L2 against the oracle; 0: no bound, for logits so large that
 * the backward's recomputed products round differently from the
 * forward's, as the README says).  dq and dk must be finite. */
int hz_extreme(const hz_runner *r, bsa_dtype dtype, double entry, double tol, double gtol);
/* A few rows (one in 37) with q entries of magnitude entry and their own
 * key (the diagonal) of kentry, among rows of 0.05 against keys of 30: o
 * and lse of every row within tol of the oracle (relative L2 of the row's
 * o; lse relative past 1, else absolute), on a 512-long layout of the
 * pattern.  The wide rows' base-2 logits must pass least (2^20: where the
 * CUDA tile kernels take a row's exponents from rounded products; 2^31:
 * where their fused exponents would overflow, so that a wide row handled
 * as an ordinary one shows). */
int hz_wide_rows(const hz_runner *r, bsa_dtype dtype, bsa_pattern pattern, double entry,
                 double kentry, double least, double tol);
/* Rows (one in 37, past the first 64) whose q has entry at dim 0 against
 * -entry in the first 64 keys and 0 in the others, the other dims
 * ordinary, on the causal 512-long layout: the rows' first key tile has
 * logits of -entry^2, their later ones ordinary ones (a tile kernel
 * whose step took the first tile's maximum as an ordinary one would
 * overflow its exponents there, and the later tiles would turn that into
 * NaN).  Every row within tol of the oracle as in hz_wide_rows. */
int hz_sunk_rows(const hz_runner *r, bsa_dtype dtype, double entry, double tol);
/* hz_wide_rows in each dtype past 2^20 and past 2^31, and on the causal
 * layout hz_sunk_rows in f16 and bf16; the cases that ran */
int hz_wide_rows_all(const hz_runner *r, bsa_pattern pattern);

#endif
