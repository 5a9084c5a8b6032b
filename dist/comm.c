/* bsa_comm_t: creation, destruction and queries, whichever engines were
 * compiled (BSA_HAVE_MPI, BSA_HAVE_NCCL from CMake). */
#include "comm.h"

#include <stdlib.h>

BSA_API int bsa_comm_compiled(bsa_comm_kind kind)
{
    if (kind == BSA_COMM_CALLBACKS)
        return 1;
#ifdef BSA_HAVE_MPI
    if (kind == BSA_COMM_MPI)
        return 1;
#endif
#ifdef BSA_HAVE_NCCL
    if (kind == BSA_COMM_NCCL)
        return 1;
#endif
    (void)kind;
    return 0;
}

BSA_API bsa_status bsa_comm_create_mpi(bsa_comm_t *comm, const void *mpi_comm)
{
    bsa_status st = bsa_check_nonnull2("bsa_comm_create_mpi", comm, "comm", mpi_comm, "mpi_comm");
    if (st != BSA_SUCCESS)
        return st;
#ifdef BSA_HAVE_MPI
    struct bsa_comm *c = calloc(1, sizeof *c);
    if (!c)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_comm_create_mpi: out of host memory");
    st = bsa_comm_mpi_init(c, mpi_comm);
    if (st != BSA_SUCCESS) {
        free(c);
        return st;
    }
    *comm = c;
    return BSA_SUCCESS;
#else
    return bsa_fail(BSA_ERROR_BACKEND_UNAVAILABLE,
                    "bsa_comm_create_mpi: this libbsa was built without MPI (configure with "
                    "-DBSA_WITH_MPI=ON and an MPI development package, e.g. libopenmpi-dev)");
#endif
}

BSA_API bsa_status bsa_comm_create_nccl(bsa_comm_t *comm, void *nccl_comm, int rank, int size)
{
    bsa_status st =
        bsa_check_nonnull2("bsa_comm_create_nccl", comm, "comm", nccl_comm, "nccl_comm");
    if (st != BSA_SUCCESS)
        return st;
    if (size < 1 || rank < 0 || rank >= size)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_comm_create_nccl: rank %d, size %d: need 0 <= rank < size", rank,
                        size);
#ifdef BSA_HAVE_NCCL
    struct bsa_comm *c = calloc(1, sizeof *c);
    if (!c)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_comm_create_nccl: out of host memory");
    st = bsa_comm_nccl_init(c, nccl_comm, rank, size);
    if (st != BSA_SUCCESS) {
        free(c);
        return st;
    }
    *comm = c;
    return BSA_SUCCESS;
#else
    return bsa_fail(BSA_ERROR_BACKEND_UNAVAILABLE,
                    "bsa_comm_create_nccl: this libbsa was built without NCCL (configure with "
                    "-DBSA_WITH_CUDA=ON -DBSA_WITH_NCCL=ON)");
#endif
}

BSA_API bsa_status bsa_comm_create_callbacks(bsa_comm_t *comm, int rank, int size,
                                             const bsa_comm_callbacks *callbacks, void *user)
{
    bsa_status st =
        bsa_check_nonnull2("bsa_comm_create_callbacks", comm, "comm", callbacks, "callbacks");
    if (st != BSA_SUCCESS)
        return st;
    if (!callbacks->post || !callbacks->wait || !callbacks->allgather)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_comm_create_callbacks: callbacks->%s is NULL",
                        !callbacks->post   ? "post"
                        : !callbacks->wait ? "wait"
                                           : "allgather");
    if (size < 1 || rank < 0 || rank >= size)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_comm_create_callbacks: rank %d, size %d: need 0 <= rank < size", rank,
                        size);
    struct bsa_comm *c = calloc(1, sizeof *c);
    if (!c)
        return bsa_fail(BSA_ERROR_OUT_OF_MEMORY, "bsa_comm_create_callbacks: out of host memory");
    st = bsa_comm_callbacks_init(c, rank, size, callbacks, user);
    if (st != BSA_SUCCESS) {
        free(c);
        return st;
    }
    *comm = c;
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_comm_destroy(bsa_comm_t comm)
{
    if (!comm)
        return BSA_SUCCESS;
    int n = bsa_live_get(&comm->live_plans);
    if (n)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_comm_destroy: %d dist plan(s) still use the communicator; destroy "
                        "them first",
                        n);
    if (comm->engine && comm->engine->fini)
        comm->engine->fini(comm);
    free(comm);
    return BSA_SUCCESS;
}

BSA_API bsa_status bsa_comm_rank(bsa_comm_t comm, int *rank, int *size)
{
    if (!comm)
        return bsa_fail(BSA_ERROR_NULL_POINTER, "bsa_comm_rank: comm is NULL");
    if (rank)
        *rank = comm->rank;
    if (size)
        *size = comm->size;
    return BSA_SUCCESS;
}
