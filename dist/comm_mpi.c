/* The MPI engine of bsa_comm_t (CPU ranks): a duplicated communicator with
 * MPI_ERRORS_RETURN, Isend/Irecv batches, Allgather.  Built with
 * -DBSA_WITH_MPI (CMake defines BSA_HAVE_MPI). */
#include "comm.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

typedef struct mpi_state {
    MPI_Comm comm;
} mpi_state;

static MPI_Comm comm_of(bsa_comm_t c)
{
    return ((mpi_state *)c->impl)->comm;
}

static bsa_status mpi_error(const char *what, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        strcpy(msg, "unknown MPI error");
    return bsa_fail(BSA_ERROR_DEVICE, "%s failed: %s", what, msg);
}

static bsa_status mpi_post(bsa_comm_t c, const bsa_comm_op *ops, int n, int tag, void *stream,
                           bsa_comm_pending *pend)
{
    _Static_assert(sizeof(MPI_Request) * bsa_comm_max_ops <= sizeof pend->state,
                   "bsa_comm_pending holds the MPI requests");
    MPI_Request *req = (MPI_Request *)pend->state;
    for (int i = 0; i < bsa_comm_max_ops; i++)
        req[i] = MPI_REQUEST_NULL;
    pend->active = 1;
    for (int i = 0; i < n; i++) {
        const bsa_comm_op *o = &ops[i];
        /* messages above INT_MAX bytes would need derived types; the
         * plan's creation refuses shards that large */
        int rc =
            o->send ? MPI_Isend(o->buf, (int)o->bytes, MPI_BYTE, o->peer, tag, comm_of(c), &req[i])
                    : MPI_Irecv(o->buf, (int)o->bytes, MPI_BYTE, o->peer, tag, comm_of(c), &req[i]);
        if (rc != MPI_SUCCESS)
            return mpi_error(o->send ? "MPI_Isend" : "MPI_Irecv", rc);
    }
    return BSA_SUCCESS;
}

static bsa_status mpi_wait(bsa_comm_t c, bsa_comm_pending *pend)
{
    if (!pend->active)
        return BSA_SUCCESS;
    pend->active = 0;
    int rc = MPI_Waitall(bsa_comm_max_ops, (MPI_Request *)pend->state, MPI_STATUSES_IGNORE);
    return rc == MPI_SUCCESS ? BSA_SUCCESS : mpi_error("MPI_Waitall", rc);
}

static bsa_status mpi_allgather_host(bsa_comm_t c, const void *in, size_t bytes, void *out)
{
    int rc = MPI_Allgather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, comm_of(c));
    return rc == MPI_SUCCESS ? BSA_SUCCESS : mpi_error("MPI_Allgather", rc);
}

static bsa_status mpi_allgather(bsa_comm_t c, const void *in, size_t bytes, void *out, void *stream)
{
    return mpi_allgather_host(c, in, bytes, out);
}

static void mpi_fini(bsa_comm_t c)
{
    mpi_state *s = c->impl;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
        MPI_Comm_free(&s->comm);
    free(s);
}

static const bsa_comm_engine mpi_engine = {
    "mpi", BSA_COMM_MPI, mpi_post, mpi_wait, mpi_allgather_host, mpi_allgather, mpi_fini,
};

bsa_status bsa_comm_mpi_init(struct bsa_comm *c, const void *mpi_comm)
{
    int init = 0, finalized = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&finalized);
    if (!init || finalized)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_comm_create_mpi: MPI is %s (call MPI_Init first)",
                        finalized ? "finalized" : "not initialised");
    MPI_Comm user = *(const MPI_Comm *)mpi_comm;
    if (user == MPI_COMM_NULL)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT, "bsa_comm_create_mpi: *mpi_comm is "
                                                    "MPI_COMM_NULL");
    int inter = 0;
    if (MPI_Comm_test_inter(user, &inter) == MPI_SUCCESS && inter)
        return bsa_fail(BSA_ERROR_UNSUPPORTED,
                        "bsa_comm_create_mpi: an inter-communicator; pass an intra-communicator");
    mpi_state *s = calloc(1, sizeof *s);
    if (!s)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_comm_create_mpi: out of host memory");
    int rc = MPI_Comm_dup(user, &s->comm);
    if (rc != MPI_SUCCESS) {
        free(s);
        return mpi_error("bsa_comm_create_mpi: MPI_Comm_dup", rc);
    }
    MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(s->comm, &c->rank);
    MPI_Comm_size(s->comm, &c->size);
    c->engine = &mpi_engine;
    c->impl = s;
    return BSA_SUCCESS;
}
