/*
 * A mailbox transport for bsa_comm_create_callbacks, shared by
 * tests/test_dist_threads.c (host memory) and tests/test_cuda_dist.c
 * (device memory): the ranks are threads of one process.  A post queues
 * each send as a message (src, dst, tag) on the world's one queue (a mutex
 * and a condition variable); a wait takes, for each receive, the first
 * message from that peer to this rank with that tag, waiting for it; the
 * all-gather goes through host slots between barriers.  Nothing here moves
 * or checks the payload itself: each test's mb_ops does (memcpy, or
 * cudaMemcpyAsync on a copy stream), so this file needs no CUDA.
 */
#ifndef BSA_TEST_MAILBOX_H
#define BSA_TEST_MAILBOX_H

#include "bsa.h"

#include <pthread.h>
#include <stddef.h>

/* What a test supplies.  user is the endpoint's.  A hook's nonzero return
 * is the callback's return (BSA_ERROR_CALLBACK in the library). */
typedef struct mb_ops {
    /* optional: at the start of every post and wait (random delays) */
    void (*delay)(void *user);
    /* optional: every message of a post (send or receive), after its peer
     * was checked */
    int (*check)(void *user, const bsa_comm_message *m);
    /* a send: *payload = a new copy of bytes at buf */
    int (*copy_in)(void *user, void **payload, const void *buf, size_t bytes);
    /* a receive of the right size: bytes of payload into buf */
    int (*copy_out)(void *user, void *buf, const void *payload, size_t bytes);
    /* every payload received (after copy_out, or a size mismatch) */
    int (*release)(void *user, void *payload);
    /* optional: every all-gather, before its first barrier; its nonzero
     * return is the all-gather's (unless the slots could not be had) */
    int (*allgather_check)(void *user, const void *in, const void *out);
    /* a wait gives up (returns 8) after this many seconds without its
     * message (a failed peer never sends); 0: waits forever */
    int timeout_s;
} mb_ops;

typedef struct mb_msg {
    int src, dst, tag;
    size_t bytes;
    void *payload; /* from copy_in */
    struct mb_msg *next;
} mb_msg;

typedef struct mb_world {
    int P;
    const mb_ops *ops;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    mb_msg *head, *tail; /* messages not yet received */
    pthread_barrier_t bar;
    unsigned char *ag; /* all-gather slots (host) */
    size_t ag_cap;
} mb_world;

/* A rank's end: the user pointer of bsa_comm_create_callbacks. */
typedef struct mb_endpoint {
    mb_world *w;
    int rank;
    void *user; /* given to the hooks */
} mb_endpoint;

void mb_world_init(mb_world *w, int P, const mb_ops *ops);
/* Prints every message left in the queue (none when all were received). */
void mb_world_print_left(const mb_world *w);
/* Frees the all-gather slots and the synchronisation (not the messages). */
void mb_world_fini(mb_world *w);

/* The callbacks; user is an mb_endpoint. */
int mb_post(void *user, const bsa_comm_message *m, int n, int tag, void **out);
int mb_wait(void *user, void *req);
int mb_allgather(void *user, const void *in, size_t bytes, void *out);

#endif
