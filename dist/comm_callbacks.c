/* The callbacks engine of bsa_comm_t: the caller's own transport
 * (bsa_comm_create_callbacks; the Python binding's torch.distributed
 * groups, the threads of tests/test_dist_threads.c and, moving device
 * memory, of tests/test_cuda_dist.c).  Messages are the plan's memory (host
 * or device); the allgather callback is host memory only: dist_exec.c
 * sends device memory through post / wait.  Always built. */
#include "comm.h"

#include <stdlib.h>
#include <string.h>

typedef struct cb_state {
    bsa_comm_callbacks cb;
    void *user;
} cb_state;

static bsa_status cb_post(bsa_comm_t c, const bsa_comm_op *ops, int n, int tag, void *stream,
                          bsa_comm_pending *pend)
{
    cb_state *s = c->impl;
    void *req = NULL;
    int rc = s->cb.post(s->user, ops, n, tag, &req);
    if (rc)
        return bsa_fail(BSA_ERROR_CALLBACK,
                        "bsa dist: the communicator's post callback returned %d", rc);
    memcpy(pend->state, &req, sizeof req);
    pend->active = 1;
    return BSA_SUCCESS;
}

static bsa_status cb_wait(bsa_comm_t c, bsa_comm_pending *pend)
{
    if (!pend->active)
        return BSA_SUCCESS;
    pend->active = 0;
    cb_state *s = c->impl;
    void *req;
    memcpy(&req, pend->state, sizeof req);
    int rc = s->cb.wait(s->user, req);
    return rc ? bsa_fail(BSA_ERROR_CALLBACK,
                         "bsa dist: the communicator's wait callback returned %d", rc)
              : BSA_SUCCESS;
}

static bsa_status cb_allgather_host(bsa_comm_t c, const void *in, size_t bytes, void *out)
{
    cb_state *s = c->impl;
    int rc = s->cb.allgather(s->user, in, bytes, out);
    return rc ? bsa_fail(BSA_ERROR_CALLBACK,
                         "bsa dist: the communicator's allgather callback returned %d", rc)
              : BSA_SUCCESS;
}

static bsa_status cb_allgather(bsa_comm_t c, const void *in, size_t bytes, void *out, void *stream)
{
    return cb_allgather_host(c, in, bytes, out);
}

static void cb_fini(bsa_comm_t c)
{
    free(c->impl);
}

static const bsa_comm_engine callbacks_engine = {
    "callbacks", BSA_COMM_CALLBACKS, cb_post, cb_wait, cb_allgather_host, cb_allgather, cb_fini,
};

bsa_status bsa_comm_callbacks_init(struct bsa_comm *c, int rank, int size,
                                   const bsa_comm_callbacks *cb, void *user)
{
    cb_state *s = malloc(sizeof *s);
    if (!s)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_comm_create_callbacks: out of host memory");
    s->cb = *cb;
    s->user = user;
    c->engine = &callbacks_engine;
    c->impl = s;
    c->rank = rank;
    c->size = size;
    return BSA_SUCCESS;
}
