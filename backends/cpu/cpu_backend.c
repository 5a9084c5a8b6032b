/*
 * The OpenMP CPU backend: its vtable, plan set-up and the workspace rule
 * (a NULL workspace makes the call allocate its own).
 *
 * Implementations, best first: "cpu-fused" (flash-style forward, two-pass
 * deterministic backward, oneDNN products) and "cpu-reference" (row by
 * row, element by element; forced by BSA_PLAN_FORCE_REFERENCE or the
 * environment variable BSA_CPU_IMPL=reference).  Both accept every valid
 * problem.  Tuning knobs for measurements: BSA_CPU_CHUNK_COLS (default
 * 512) sets the product width; BSA_CPU_PRECONVERT=0/1 overrides the
 * choice of converting f16/bf16 operands once per call (bench/NOTES.md).
 */
#include "cpu_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CPU_DEFAULT_CHUNK_COLS 512

static bsa_status cpu_probe(int device)
{
    (void)device;
    return BSA_SUCCESS;
}

/* Orders the blocks of one dimension by decreasing list length (ties by
 * index), so dynamic scheduling starts the longest items first. */
static void order_by_length(const int32_t *ptr, int n, int32_t *order)
{
    int maxlen = 0;
    for (int i = 0; i < n; i++)
        if (ptr[i + 1] - ptr[i] > maxlen)
            maxlen = ptr[i + 1] - ptr[i];
    int pos = 0;
    for (int len = maxlen; len >= 0; len--)
        for (int i = 0; i < n; i++)
            if (ptr[i + 1] - ptr[i] == len)
                order[pos++] = i;
}

/* Small layout blocks make short products (a 16-row query tile); the
 * forward can instead take 64 / block consecutive query blocks as one tile
 * over the union of their key lists.  Worth it when the union adds at most
 * 10% masked blocks to what the rows keep: `all` (~2%) and `fixed` gain
 * 1.3-1.5x at block 16; a local band of 5 blocks grouped by 2 (+20%) was
 * measured 17% slower (bench/NOTES.md).  BSA_CPU_GROUP=0/1 overrides. */
static bsa_status choose_groups(bsa_plan_t plan, cpu_plan *cp)
{
    const struct bsa_layout *l = plan->layout;
    cp->group = 1;
    cp->n_groups = l->q_blocks;
    int gs = l->block < 64 ? 64 / l->block : 1;
    gs = gs > 8 ? 8 : gs;
    gs = gs > l->q_blocks ? l->q_blocks : gs;
    const char *env = getenv("BSA_CPU_GROUP");
    if (gs < 2 || (env && atoi(env) == 0))
        return BSA_SUCCESS;
    int n_groups = (l->q_blocks + gs - 1) / gs;
    int64_t computed = 0;
    for (int h = 0; h < l->heads; h++)
        for (int gi = 0; gi < n_groups; gi++) {
            int ng = l->q_blocks - gi * gs < gs ? l->q_blocks - gi * gs : gs;
            computed += (int64_t)ng * bsa_cpu_group_union(l, h, gi * gs, ng, gs, NULL, NULL);
        }
    if (!(env && atoi(env) == 1) && (double)computed > 1.1 * (double)l->nnz)
        return BSA_SUCCESS;
    cp->group_order = (int32_t *)malloc((size_t)n_groups * sizeof(int32_t));
    int32_t *len = (int32_t *)malloc(((size_t)n_groups + 1) * sizeof(int32_t));
    if (!cp->group_order || !len) {
        free(len);
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY,
                        "cpu backend: cannot allocate the order of %d query groups", n_groups);
    }
    /* as a fake "row pointer" so order_by_length sorts by union size */
    len[0] = 0;
    for (int gi = 0; gi < n_groups; gi++) {
        int ng = l->q_blocks - gi * gs < gs ? l->q_blocks - gi * gs : gs;
        len[gi + 1] = len[gi] + bsa_cpu_group_union(l, 0, gi * gs, ng, gs, NULL, NULL);
    }
    order_by_length(len, n_groups, cp->group_order);
    free(len);
    cp->group = gs;
    cp->n_groups = n_groups;
    return BSA_SUCCESS;
}

static void cpu_plan_fini(bsa_plan_t plan)
{
    cpu_plan *cp = (cpu_plan *)plan->backend_data;
    if (!cp)
        return;
    free(cp->row_order);
    free(cp->col_order);
    free(cp->group_order);
    free(cp);
    plan->backend_data = NULL;
}

static bsa_status cpu_plan_init(bsa_plan_t plan)
{
    const struct bsa_layout *l = plan->layout;
    const bsa_shape *s = &plan->shape;
    cpu_plan *cp = (cpu_plan *)calloc(1, sizeof(*cp));
    if (!cp)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "cpu backend: cannot allocate the plan data");
    plan->backend_data = cp;
    cp->row_order = (int32_t *)malloc((size_t)l->q_blocks * sizeof(int32_t));
    cp->col_order = (int32_t *)malloc((size_t)l->k_blocks * sizeof(int32_t));
    if (!cp->row_order || !cp->col_order) {
        cpu_plan_fini(plan);
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY,
                        "cpu backend: cannot allocate the row orders of %d x %d blocks",
                        l->q_blocks, l->k_blocks);
    }
    if (s->dtype == BSA_DTYPE_F16)
        bsa_cpu_f16_table_init();
    order_by_length(l->row_ptr, l->q_blocks, cp->row_order);
    order_by_length(l->col_ptr, l->k_blocks, cp->col_order);

    cp->nthreads = plan->ctx && plan->ctx->num_threads > 0 ? plan->ctx->num_threads : 1;
#ifdef _OPENMP
    if (!(plan->ctx && plan->ctx->num_threads > 0))
        cp->nthreads = omp_get_max_threads();
#endif
    int cols = CPU_DEFAULT_CHUNK_COLS;
    const char *env = getenv("BSA_CPU_CHUNK_COLS");
    if (env && atoi(env) > 0)
        cols = atoi(env);
    cp->chunk_blocks = cols / l->block > 0 ? cols / l->block : 1;
    /* no tile wider than the longest row or column list */
    int longest = l->max_row_blocks > l->max_col_blocks ? l->max_row_blocks : l->max_col_blocks;
    if (cp->chunk_blocks > longest)
        cp->chunk_blocks = longest > 0 ? longest : 1;

    /* Tensors are already known to fit in memory; the workspace is a few
     * copies of them, so only guard against a product beyond 2^62 bytes. */
    double est = 4.0 * (double)(s->batch * s->heads) * (double)(s->seq_q + s->seq_k) *
                     (double)(s->head_dim + 1) * 4.0 +
                 (double)cp->nthreads * 4.0 * (double)s->seq_k * (double)s->head_dim * 4.0;
    if (est > 4.6e18) {
        cpu_plan_fini(plan);
        return bsa_fail(BSA_ERROR_OVERFLOW,
                        "cpu backend: workspace of about %.3g bytes exceeds 2^62", est);
    }
    /* f16/bf16 rows are converted where they are used, so a key block is
     * converted once per query block that sees it: when that is more than
     * a few times on average, one conversion per call into fp32 images
     * (2 x the inputs' size in workspace) is cheaper.  Env
     * BSA_CPU_PRECONVERT=0/1 overrides (for measurements). */
    int64_t per_head = l->nnz / l->heads;
    cp->preconvert =
        s->dtype != BSA_DTYPE_F32 &&
        per_head >= 4 * (int64_t)(l->q_blocks > l->k_blocks ? l->q_blocks : l->k_blocks);
    const char *pc = getenv("BSA_CPU_PRECONVERT");
    if (pc && s->dtype != BSA_DTYPE_F32)
        cp->preconvert = atoi(pc) != 0;
    /* packed sequences do not start on block boundaries of the tensor */
    if (s->varlen)
        cp->preconvert = 0;
    bsa_status st = choose_groups(plan, cp);
    if (st != BSA_SUCCESS) {
        cpu_plan_fini(plan);
        return st;
    }
    cp->ws_fused = bsa_cpu_fused_workspace(plan, cp->nthreads);
    cp->ws_ref = bsa_cpu_ref_workspace(plan, cp->nthreads);

    const char *impl = getenv("BSA_CPU_IMPL");
    /* + 64: any caller pointer is rounded up to a cache line */
    if ((plan->flags & BSA_PLAN_FORCE_REFERENCE) || (impl && !strcmp(impl, "reference"))) {
        plan->impl_name = "cpu-reference";
        plan->workspace_bytes = cp->ws_ref + 64;
    } else {
        plan->impl_name = "cpu-fused";
        plan->workspace_bytes = cp->ws_fused + 64;
    }
    return BSA_SUCCESS;
}

static int is_reference(const struct bsa_plan *plan)
{
    return !strcmp(plan->impl_name, "cpu-reference");
}

/* The caller's workspace, or one allocated for this call; either way
 * aligned to 64 bytes (the tiles are carved at 64-byte offsets from it). */
static bsa_status take_workspace(bsa_plan_t plan, void **ws, void **owned)
{
    *owned = NULL;
    if (*ws) {
        *ws = (void *)(((uintptr_t)*ws + 63) & ~(uintptr_t)63);
        return BSA_SUCCESS;
    }
    *owned = malloc(plan->workspace_bytes);
    if (!*owned)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY,
                        "cpu backend: cannot allocate %zu bytes of workspace (pass a workspace "
                        "of bsa_plan_workspace_size() bytes)",
                        plan->workspace_bytes);
    *ws = (void *)(((uintptr_t)*owned + 63) & ~(uintptr_t)63);
    return BSA_SUCCESS;
}

bsa_status bsa_cpu_segments(const struct bsa_plan *plan, const int32_t *key_lengths,
                            const int32_t *cu_q, const int32_t *cu_k, int num_seqs, cpu_seg **out,
                            int64_t *n)
{
    const bsa_shape *s = &plan->shape;
    int64_t ns = s->varlen ? num_seqs : s->batch;
    cpu_seg *seg = (cpu_seg *)malloc((size_t)ns * sizeof *seg);
    if (!seg)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "cpu backend: cannot allocate %lld segments",
                        (long long)ns);
    for (int64_t i = 0; i < ns; i++) {
        cpu_seg *g = &seg[i];
        if (s->varlen) {
            g->b = 0;
            g->q0 = cu_q[i];
            g->k0 = cu_k[i];
            g->nq = (int64_t)cu_q[i + 1] - cu_q[i];
            g->nk = (int64_t)cu_k[i + 1] - cu_k[i];
        } else {
            g->b = i;
            g->q0 = g->k0 = 0;
            g->nq = s->seq_q;
            g->nk = s->seq_k;
        }
        g->klim = key_lengths && key_lengths[i] < g->nk ? key_lengths[i] : g->nk;
    }
    *out = seg;
    *n = ns;
    return BSA_SUCCESS;
}

static bsa_status cpu_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *ws, size_t ws_bytes,
                              void *stream)
{
    (void)ws_bytes;
    (void)stream;
    void *owned;
    bsa_status st = take_workspace(plan, &ws, &owned);
    if (st != BSA_SUCCESS)
        return st;
    st = is_reference(plan) ? bsa_cpu_ref_forward(plan, args, ws)
                            : bsa_cpu_fused_forward(plan, args, ws);
    free(owned);
    return st;
}

static bsa_status cpu_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *ws, size_t ws_bytes,
                               void *stream)
{
    (void)ws_bytes;
    (void)stream;
    void *owned;
    bsa_status st = take_workspace(plan, &ws, &owned);
    if (st != BSA_SUCCESS)
        return st;
    st = is_reference(plan) ? bsa_cpu_ref_backward(plan, args, ws)
                            : bsa_cpu_fused_backward(plan, args, ws);
    free(owned);
    return st;
}

const bsa_backend_i bsa_backend_cpu = {
    .name = "cpu",
    .kind = BSA_BACKEND_CPU,
    .probe = cpu_probe,
    .context_init = NULL,
    .context_fini = NULL,
    .layout_prepare = NULL,
    .plan_init = cpu_plan_init,
    .plan_fini = cpu_plan_fini,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .sparse_nt = bsa_cpu_sparse_nt,
    .sparse_softmax = bsa_cpu_sparse_softmax,
    .sparse_softmax_bwd = bsa_cpu_sparse_softmax_bwd,
    .sparse_nn = bsa_cpu_sparse_nn,
    .sparse_tn = bsa_cpu_sparse_tn,
    .features =
        BSA_FEATURE_GQA | BSA_FEATURE_KEY_LENGTHS | BSA_FEATURE_VARLEN | BSA_FEATURE_VALUE_DIM,
};
