/*
 * Sub-layouts (layouts/layout_slice.c), the facility behind context
 * parallelism: the (query shard x key shard) sub-layout of a layout must
 * keep exactly the elements of the whole layout at the mapped positions.
 * The expected masks come from the tests' closed forms
 * (tests/common/closed_masks.c), not from the library's layout tables;
 * the block maps are random (any rows, any columns, any order), the
 * layouts presets (causal and bidirectional, per-head fixed) and dense
 * block matrices with every predicate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bsa.h"
#include "closed_masks.h"
#include "internal.h"
#include "layout.h"
#include "testutil.h"

/* n distinct random blocks of [0, nb) in random order. */
static void draw_map(int32_t *map, int n, int nb)
{
    int32_t *all = malloc(sizeof(int32_t) * nb);
    for (int i = 0; i < nb; i++)
        all[i] = i;
    for (int i = 0; i < n; i++) {
        int j = tu_randint(i, nb);
        int32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
        map[i] = all[i];
    }
    free(all);
}

static void check_slices(bsa_context_t ctx, const cm_source *src, const char *label)
{
    bsa_layout_t lay = NULL;
    assert_int_equal(cm_create(ctx, src, &lay), BSA_SUCCESS);
    uint8_t *want = cm_masks(src);
    assert_non_null(want);
    const struct bsa_layout *l = lay;
    int B = l->block, heads = l->heads;
    int64_t T = l->seq_q, S = l->seq_k;
    for (int rep = 0; rep < 6; rep++) {
        int nq = tu_randint(1, l->q_blocks + 1), nk = tu_randint(1, l->k_blocks + 1);
        int32_t *qmap = malloc(sizeof(int32_t) * nq), *kmap = malloc(sizeof(int32_t) * nk);
        draw_map(qmap, nq, l->q_blocks);
        draw_map(kmap, nk, l->k_blocks);
        bsa_layout_t sub = NULL;
        bsa_status st = bsa_layout_slice(l, nq, qmap, nk, kmap, 0, "test", &sub);
        if (st != BSA_SUCCESS)
            fprintf(stderr, "%s: %s\n", label, bsa_last_error());
        assert_int_equal(st, BSA_SUCCESS);
        int64_t sq = (int64_t)nq * B, sk = (int64_t)nk * B;
        uint8_t *got = malloc((size_t)(sq * sk));
        int64_t kept = 0;
        for (int h = 0; h < heads; h++) {
            memset(got, 0x5a, (size_t)(sq * sk)); /* poison */
            assert_int_equal(bsa_layout_element_mask(sub, h, got), BSA_SUCCESS);
            for (int64_t r = 0; r < sq; r++)
                for (int64_t c = 0; c < sk; c++) {
                    int64_t gq = (int64_t)qmap[r / B] * B + r % B;
                    int64_t gk = (int64_t)kmap[c / B] * B + c % B;
                    int w = want[((int64_t)h * T + gq) * S + gk] != 0;
                    if ((got[r * sk + c] != 0) != w || got[r * sk + c] > 1) {
                        fprintf(stderr,
                                "%s: head %d, sub element (%lld, %lld) = global (%lld, %lld): "
                                "got %d, want %d\n",
                                label, h, (long long)r, (long long)c, (long long)gq, (long long)gk,
                                got[r * sk + c], w);
                        fail();
                    }
                    kept += w;
                }
        }
        bsa_layout_info info;
        assert_int_equal(bsa_layout_get_info(sub, &info), BSA_SUCCESS);
        assert_int_equal(info.kept_elements, kept);
        assert_int_equal(info.heads, heads);
        assert_int_equal(bsa_layout_destroy(sub), BSA_SUCCESS);
        free(got);
        free(qmap);
        free(kmap);
    }
    free(want);
    assert_int_equal(bsa_layout_destroy(lay), BSA_SUCCESS);
}

static void test_presets(void **state)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    assert_int_equal(bsa_context_create(&ctx, &cp), BSA_SUCCESS);
    const bsa_pattern pats[] = {BSA_PATTERN_ALL, BSA_PATTERN_LOCAL, BSA_PATTERN_FIXED,
                                BSA_PATTERN_SLIDING_WINDOW, BSA_PATTERN_LONGFORMER};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        for (int bidir = 0; bidir < 2; bidir++) {
            bsa_preset p;
            memset(&p, 0, sizeof p);
            p.pattern = pats[i];
            p.seq = 256;
            p.block = 16;
            p.heads = 2;
            p.bidirectional = bidir;
            p.ctx = pats[i] == BSA_PATTERN_FIXED ? 64 : 40;
            if (pats[i] == BSA_PATTERN_FIXED) {
                p.num_verts = 2;
                p.vertsize = 1;
            }
            if (pats[i] == BSA_PATTERN_LONGFORMER)
                p.global_tokens = 8;
            cm_source src = cm_of_preset(&p);
            char label[64];
            snprintf(label, sizeof label, "preset %d %s", (int)p.pattern,
                     bidir ? "bidirectional" : "causal");
            check_slices(ctx, &src, label);
        }
    assert_int_equal(bsa_context_destroy(ctx), BSA_SUCCESS);
}

static void test_dense_predicates(void **state)
{
    bsa_context_t ctx = NULL;
    bsa_context_params cp = {BSA_BACKEND_CPU, 0, 0};
    assert_int_equal(bsa_context_create(&ctx, &cp), BSA_SUCCESS);
    const unsigned preds[] = {0, BSA_PRED_CAUSAL, BSA_PRED_WINDOW,
                              BSA_PRED_CAUSAL | BSA_PRED_WINDOW, BSA_PRED_PREFIX};
    for (size_t i = 0; i < sizeof preds / sizeof preds[0]; i++) {
        bsa_layout_desc d = {8, 2, 12, 10, preds[i], 13, 20};
        uint8_t *blocks = malloc((size_t)d.heads * d.q_blocks * d.k_blocks);
        for (int j = 0; j < d.heads * d.q_blocks * d.k_blocks; j++)
            blocks[j] = tu_randint(0, 3) != 0;
        cm_source src = cm_of_dense(&d, blocks);
        char label[64];
        snprintf(label, sizeof label, "dense, predicates 0x%x", preds[i]);
        check_slices(ctx, &src, label);
        free(blocks);
    }
    assert_int_equal(bsa_context_destroy(ctx), BSA_SUCCESS);
}

/* Without an engine compiled (the default build) the communicators say
 * so; the dist calls check their arguments. */
static void test_dist_unavailable(void **state)
{
    bsa_comm_t comm = NULL;
    int dummy = 0;
    if (!bsa_comm_compiled(BSA_COMM_MPI)) {
        assert_int_equal(bsa_comm_create_mpi(&comm, &dummy), BSA_ERROR_BACKEND_UNAVAILABLE);
        assert_non_null(strstr(bsa_last_error(), "without MPI"));
        assert_null(comm);
    }
    assert_int_equal(bsa_comm_create_mpi(NULL, &dummy), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_comm_create_mpi(&comm, NULL), BSA_ERROR_NULL_POINTER);
    if (!bsa_comm_compiled(BSA_COMM_NCCL)) {
        assert_int_equal(bsa_comm_create_nccl(&comm, &dummy, 0, 2), BSA_ERROR_BACKEND_UNAVAILABLE);
        assert_non_null(strstr(bsa_last_error(), "without NCCL"));
    }
    assert_int_equal(bsa_comm_create_nccl(&comm, &dummy, 2, 2), BSA_ERROR_INVALID_ARGUMENT);
    assert_null(comm);
    assert_int_equal(bsa_comm_destroy(NULL), BSA_SUCCESS);
    assert_int_equal(bsa_dist_plan_destroy(NULL), BSA_SUCCESS);
    assert_int_equal(bsa_comm_rank(NULL, NULL, NULL), BSA_ERROR_NULL_POINTER);
    bsa_dist_plan_t dp = NULL;
    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    assert_int_equal(bsa_dist_plan_create(NULL, &dp, &d, NULL, NULL, NULL), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_dist_forward(NULL, NULL, NULL), BSA_ERROR_NULL_POINTER);
    assert_int_equal(bsa_dist_backward(NULL, NULL, NULL), BSA_ERROR_NULL_POINTER);
    const char *name = NULL;
    assert_int_equal(bsa_dist_plan_implementation(NULL, &name), BSA_ERROR_NULL_POINTER);
    bsa_dist_info info;
    assert_int_equal(bsa_dist_plan_info(NULL, &info), BSA_ERROR_NULL_POINTER);
    int64_t pos;
    assert_int_equal(bsa_dist_shard_positions(NULL, 0, &pos), BSA_ERROR_NULL_POINTER);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_dense_predicates),
        cmocka_unit_test(test_dist_unavailable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
