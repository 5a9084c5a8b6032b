/*
 * Several host threads share one context and one layout, each running its
 * own plans on its own data at the same time; every result must equal, bit
 * for bit, the same problem run alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "attn_check.h"

enum { n_threads = 4, rounds = 3 };

typedef struct job {
    bsa_context_t ctx;
    bsa_layout_t layout;
    ac_problem p;
    bsa_attn_desc desc;
    /* results of the solitary run */
    void *o_alone, *dq_alone, *dk_alone, *dv_alone;
    float *lse_alone;
    bsa_status status;
    int mismatches;
} job;

static size_t bytes_of(const tu_tensor *t)
{
    return (size_t)t->span * tu_dtype_size(t->dtype);
}

static void *copy_of(const void *src, size_t n)
{
    void *d = tu_xmalloc(n);
    memcpy(d, src, n);
    return d;
}

/* One forward + backward with a plan of its own; returns the status. */
static bsa_status run_once(job *j)
{
    bsa_plan_t plan;
    bsa_status st = bsa_plan_create(j->ctx, &plan, &j->desc, j->layout);
    if (st != BSA_SUCCESS)
        return st;
    st = ac_forward(plan, &j->p, AC_WS_NULL);
    if (st == BSA_SUCCESS)
        st = ac_backward(plan, &j->p, AC_WS_NULL);
    bsa_plan_destroy(plan);
    return st;
}

static void *worker(void *arg)
{
    job *j = arg;
    for (int r = 0; r < rounds && j->status == BSA_SUCCESS; r++) {
        j->status = run_once(j);
        if (j->status != BSA_SUCCESS)
            break;
        j->mismatches += memcmp(j->p.o.data, j->o_alone, bytes_of(&j->p.o)) != 0;
        j->mismatches += memcmp(j->p.dq.data, j->dq_alone, bytes_of(&j->p.dq)) != 0;
        j->mismatches += memcmp(j->p.dk.data, j->dk_alone, bytes_of(&j->p.dk)) != 0;
        j->mismatches += memcmp(j->p.dv.data, j->dv_alone, bytes_of(&j->p.dv)) != 0;
        j->mismatches += memcmp(j->p.lse, j->lse_alone, sizeof(float) * j->p.n_lse) != 0;
    }
    return NULL;
}

static void shared_context_threads(void **state)
{
    (void)state;
    bsa_context_t ctx;
    assert_int_equal(bsa_context_create(&ctx, &(bsa_context_params){BSA_BACKEND_CPU, 0, 2}),
                     BSA_SUCCESS);
    bsa_layout_t layout;
    bsa_preset preset = {BSA_PATTERN_FIXED, 256, 16, 4, 64, 2, 1, 0};
    assert_int_equal(bsa_layout_create_preset(ctx, &layout, &preset), BSA_SUCCESS);
    cm_source masks = cm_of_preset(&preset);

    static const bsa_dtype dtypes[n_threads] = {BSA_DTYPE_F32, BSA_DTYPE_F16, BSA_DTYPE_BF16,
                                                BSA_DTYPE_F32};
    job jobs[n_threads];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < n_threads; i++) {
        job *j = &jobs[i];
        j->ctx = ctx;
        j->layout = layout;
        assert_int_equal(ac_problem_init(&j->p, layout, &masks, dtypes[i], 2, 4, 8 * (i + 4),
                                         (ac_form)(i % 3), 0.0f, &j->desc),
                         BSA_SUCCESS);
        /* alone: nothing else runs */
        assert_int_equal(run_once(j), BSA_SUCCESS);
        j->o_alone = copy_of(j->p.o.data, bytes_of(&j->p.o));
        j->dq_alone = copy_of(j->p.dq.data, bytes_of(&j->p.dq));
        j->dk_alone = copy_of(j->p.dk.data, bytes_of(&j->p.dk));
        j->dv_alone = copy_of(j->p.dv.data, bytes_of(&j->p.dv));
        j->lse_alone = copy_of(j->p.lse, sizeof(float) * j->p.n_lse);
        /* and the solitary result is right, so equality below means something */
        ac_problem_oracle(&j->p);
        ac_errors e;
        ac_compare(&j->p, 1, &e);
        assert_true(e.o < 3e-2 && e.dq < 3e-2 && e.dk < 3e-2 && e.dv < 3e-2);
    }
    pthread_t tid[n_threads];
    for (int i = 0; i < n_threads; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, worker, &jobs[i]), 0);
    for (int i = 0; i < n_threads; i++)
        pthread_join(tid[i], NULL);
    for (int i = 0; i < n_threads; i++) {
        job *j = &jobs[i];
        if (j->status != BSA_SUCCESS)
            print_error("thread %d: %s: %s\n", i, bsa_status_string(j->status), bsa_last_error());
        assert_int_equal(j->status, BSA_SUCCESS);
        assert_int_equal(j->mismatches, 0);
        free(j->o_alone), free(j->dq_alone), free(j->dk_alone), free(j->dv_alone);
        free(j->lse_alone);
        ac_problem_free(&j->p);
    }
    bsa_layout_destroy(layout);
    bsa_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shared_context_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
