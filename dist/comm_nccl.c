/* The NCCL engine of bsa_comm_t (GPU ranks): grouped ncclSend/ncclRecv
 * and ncclAllGather on the call's stream, for dist plans on CUDA contexts
 * (device memory; the merges are backends/cuda/dist_kernels.cu's kernels
 * on the same stream).  Built with -DBSA_WITH_NCCL=ON (CMake defines
 * BSA_HAVE_NCCL).  Compiled in CI; not run yet (tests/test_cuda_dist.c
 * runs one rank over it where a GPU is present; no multi-GPU machine was
 * available). */
#include "comm.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>

static ncclComm_t comm_of(bsa_comm_t c)
{
    return (ncclComm_t)c->impl;
}

static bsa_status nccl_error(const char *what, ncclResult_t rc)
{
    return bsa_fail(BSA_ERROR_DEVICE, "%s failed: %s", what, ncclGetErrorString(rc));
}

/* Sends and receives of one step in one group: NCCL matches them by order
 * between each pair of ranks on the stream, so no tag is needed. */
static bsa_status nccl_post(bsa_comm_t c, const bsa_comm_op *ops, int n, int tag, void *stream,
                            bsa_comm_pending *pend)
{
    cudaStream_t s = (cudaStream_t)stream;
    ncclResult_t rc = ncclGroupStart();
    if (rc != ncclSuccess)
        return nccl_error("ncclGroupStart", rc);
    for (int i = 0; i < n && rc == ncclSuccess; i++)
        rc = ops[i].send
                 ? ncclSend(ops[i].buf, ops[i].bytes, ncclUint8, ops[i].peer, comm_of(c), s)
                 : ncclRecv(ops[i].buf, ops[i].bytes, ncclUint8, ops[i].peer, comm_of(c), s);
    ncclResult_t end = ncclGroupEnd();
    if (rc != ncclSuccess)
        return nccl_error(ops[0].send ? "ncclSend" : "ncclRecv", rc);
    if (end != ncclSuccess)
        return nccl_error("ncclGroupEnd", end);
    pend->active = 0; /* completion is stream order: later work on the stream waits */
    return BSA_SUCCESS;
}

static bsa_status nccl_wait(bsa_comm_t c, bsa_comm_pending *pend)
{
    pend->active = 0;
    return BSA_SUCCESS;
}

static bsa_status nccl_allgather(bsa_comm_t c, const void *in, size_t bytes, void *out,
                                 void *stream)
{
    ncclResult_t rc = ncclAllGather(in, out, bytes, ncclUint8, comm_of(c), (cudaStream_t)stream);
    return rc == ncclSuccess ? BSA_SUCCESS : nccl_error("ncclAllGather", rc);
}

/* Host bytes through device memory (plan creation only: blocking). */
static bsa_status nccl_allgather_host(bsa_comm_t c, const void *in, size_t bytes, void *out)
{
    unsigned char *dev = NULL;
    size_t total = bytes * (size_t)c->size;
    cudaError_t ce = cudaMalloc((void **)&dev, total + bytes);
    if (ce != cudaSuccess)
        return bsa_fail(BSA_ERROR_DEVICE, "bsa dist: cudaMalloc: %s", cudaGetErrorString(ce));
    bsa_status st = BSA_SUCCESS;
    if ((ce = cudaMemcpy(dev + total, in, bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
        st = bsa_fail(BSA_ERROR_DEVICE, "bsa dist: cudaMemcpy: %s", cudaGetErrorString(ce));
    else if ((st = nccl_allgather(c, dev + total, bytes, dev, NULL)) == BSA_SUCCESS &&
             (ce = cudaMemcpy(out, dev, total, cudaMemcpyDeviceToHost)) != cudaSuccess)
        st = bsa_fail(BSA_ERROR_DEVICE, "bsa dist: cudaMemcpy: %s", cudaGetErrorString(ce));
    cudaFree(dev);
    return st;
}

static void nccl_fini(bsa_comm_t c)
{
    /* the ncclComm_t is the caller's */
}

static const bsa_comm_engine nccl_engine = {
    "nccl", BSA_COMM_NCCL, nccl_post, nccl_wait, nccl_allgather_host, nccl_allgather, nccl_fini,
};

bsa_status bsa_comm_nccl_init(struct bsa_comm *c, void *nccl_comm, int rank, int size)
{
    ncclComm_t nc = (ncclComm_t)nccl_comm;
    int r = -1, n = -1;
    ncclResult_t rc;
    if ((rc = ncclCommUserRank(nc, &r)) != ncclSuccess)
        return nccl_error("bsa_comm_create_nccl: ncclCommUserRank", rc);
    if ((rc = ncclCommCount(nc, &n)) != ncclSuccess)
        return nccl_error("bsa_comm_create_nccl: ncclCommCount", rc);
    if (r != rank || n != size)
        return bsa_fail(BSA_ERROR_INVALID_ARGUMENT,
                        "bsa_comm_create_nccl: rank %d, size %d given; the communicator says "
                        "rank %d of %d",
                        rank, size, r, n);
    c->engine = &nccl_engine;
    c->impl = nccl_comm;
    c->rank = rank;
    c->size = size;
    return BSA_SUCCESS;
}
