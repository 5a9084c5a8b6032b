#include "mailbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct request {
    int n;
    bsa_comm_message recv[4];
    int tag;
} request;

void mb_world_init(mb_world *w, int P, const mb_ops *ops)
{
    memset(w, 0, sizeof *w);
    w->P = P;
    w->ops = ops;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_barrier_init(&w->bar, NULL, (unsigned)P);
}

void mb_world_print_left(const mb_world *w)
{
    for (const mb_msg *x = w->head; x; x = x->next)
        fprintf(stderr, "left: %d -> %d tag %d (%zu bytes)\n", x->src, x->dst, x->tag, x->bytes);
}

void mb_world_fini(mb_world *w)
{
    free(w->ag);
    pthread_barrier_destroy(&w->bar);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

int mb_post(void *user, const bsa_comm_message *m, int n, int tag, void **out)
{
    mb_endpoint *e = user;
    mb_world *w = e->w;
    const mb_ops *ops = w->ops;
    if (ops->delay)
        ops->delay(e->user);
    request *r = calloc(1, sizeof *r);
    if (!r || n > 4)
        return 1;
    r->tag = tag;
    for (int i = 0; i < n; i++) {
        if (m[i].peer < 0 || m[i].peer >= w->P || m[i].peer == e->rank)
            return 2;
        int rc = ops->check ? ops->check(e->user, &m[i]) : 0;
        if (rc)
            return rc;
        if (!m[i].send) {
            r->recv[r->n++] = m[i];
            continue;
        }
        mb_msg *x = calloc(1, sizeof *x);
        if (!x)
            return 1;
        x->src = e->rank;
        x->dst = m[i].peer;
        x->tag = tag;
        x->bytes = m[i].bytes;
        if ((rc = ops->copy_in(e->user, &x->payload, m[i].buf, m[i].bytes)))
            return rc;
        pthread_mutex_lock(&w->mu);
        if (w->tail)
            w->tail->next = x;
        else
            w->head = x;
        w->tail = x;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    *out = r;
    return 0;
}

int mb_wait(void *user, void *req)
{
    mb_endpoint *e = user;
    mb_world *w = e->w;
    const mb_ops *ops = w->ops;
    request *r = req;
    int rc = 0;
    if (ops->delay)
        ops->delay(e->user);
    for (int i = 0; i < r->n; i++) {
        mb_msg *x = NULL;
        struct timespec until = {0, 0};
        if (ops->timeout_s) {
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += ops->timeout_s;
        }
        pthread_mutex_lock(&w->mu);
        for (;;) {
            mb_msg *prev = NULL;
            x = w->head;
            while (x && !(x->src == r->recv[i].peer && x->dst == e->rank && x->tag == r->tag)) {
                prev = x;
                x = x->next;
            }
            if (x) {
                if (prev)
                    prev->next = x->next;
                else
                    w->head = x->next;
                if (w->tail == x)
                    w->tail = prev;
                break;
            }
            if (!ops->timeout_s)
                pthread_cond_wait(&w->cv, &w->mu);
            else if (pthread_cond_timedwait(&w->cv, &w->mu, &until)) {
                pthread_mutex_unlock(&w->mu);
                free(r);
                return 8;
            }
        }
        pthread_mutex_unlock(&w->mu);
        int c = 0;
        if (x->bytes != r->recv[i].bytes)
            rc = 3;
        else if ((c = ops->copy_out(e->user, r->recv[i].buf, x->payload, x->bytes)))
            rc = c;
        if ((c = ops->release(e->user, x->payload)))
            rc = c;
        free(x);
    }
    free(r);
    return rc;
}

int mb_allgather(void *user, const void *in, size_t bytes, void *out)
{
    mb_endpoint *e = user;
    mb_world *w = e->w;
    int rc = w->ops->allgather_check ? w->ops->allgather_check(e->user, in, out) : 0;
    pthread_barrier_wait(&w->bar);
    if (e->rank == 0 && w->ag_cap < bytes * w->P) {
        free(w->ag);
        w->ag = malloc(bytes * w->P);
        w->ag_cap = w->ag ? bytes * w->P : 0;
    }
    pthread_barrier_wait(&w->bar);
    if (w->ag)
        memcpy(w->ag + bytes * e->rank, in, bytes);
    pthread_barrier_wait(&w->bar);
    if (w->ag)
        memcpy(out, w->ag, bytes * w->P);
    pthread_barrier_wait(&w->bar);
    return !w->ag ? 1 : rc;
}
