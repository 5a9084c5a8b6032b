/*
 * The communicator behind bsa_comm_t (internal): one small table of
 * operations per engine (MPI for CPU ranks, NCCL for GPU ranks), so the
 * dist plan is written once against it.
 *
 * Point-to-point work is posted as a batch (bsa_comm_op[]) and waited on
 * as a whole: MPI posts Isend/Irecv and waits with Waitall; NCCL groups
 * ncclSend/ncclRecv on the call's stream, where the wait is stream order.
 * A batch's tag keeps the messages of one step apart from another's.
 */
#ifndef BSA_DIST_COMM_H
#define BSA_DIST_COMM_H

#include "../api/internal.h"

#include <stddef.h>
#include <stdint.h>

/* One message (bsa.h's bsa_comm_message: peer, send, buf, bytes). */
typedef bsa_comm_message bsa_comm_op;

enum { bsa_comm_max_ops = 4 };

typedef struct bsa_comm_pending {
    int active;
    _Alignas(16) unsigned char state[bsa_comm_max_ops * 16]; /* the engine's (MPI requests,
                                                                a callback's request) */
} bsa_comm_pending;

typedef struct bsa_comm_engine {
    const char *name;
    bsa_comm_kind kind;
    /* posts n <= bsa_comm_max_ops operations with tag; *pend waits for them */
    bsa_status (*post)(bsa_comm_t c, const bsa_comm_op *ops, int n, int tag, void *stream,
                       bsa_comm_pending *pend);
    bsa_status (*wait)(bsa_comm_t c, bsa_comm_pending *pend);
    /* every rank's bytes (host memory) into out[rank * bytes]: plan
     * creation's agreement, blocking */
    bsa_status (*allgather_host)(bsa_comm_t c, const void *in, size_t bytes, void *out);
    /* every rank's bytes of in (the engine's memory) into out: the
     * all-gather exchange */
    bsa_status (*allgather)(bsa_comm_t c, const void *in, size_t bytes, void *out, void *stream);
    void (*fini)(bsa_comm_t c);
} bsa_comm_engine;

struct bsa_comm {
    const bsa_comm_engine *engine;
    int rank, size;
    void *impl;     /* the engine's state (a duplicated MPI_Comm, an ncclComm_t) */
    int live_plans; /* dist plans on this communicator */
};

/* Defined where the engine is compiled (dist/comm_mpi.c, dist/comm_nccl.c). */
bsa_status bsa_comm_mpi_init(struct bsa_comm *c, const void *mpi_comm);
bsa_status bsa_comm_nccl_init(struct bsa_comm *c, void *nccl_comm, int rank, int size);
/* dist/comm_callbacks.c (always built). */
bsa_status bsa_comm_callbacks_init(struct bsa_comm *c, int rank, int size,
                                   const bsa_comm_callbacks *cb, void *user);

#endif
