/* Single-row double reference for long sequences: see sampled_ref.h. */
#include "sampled_ref.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* Visible keys of query q: all k <= q, local 0 <= q-k < L, strided k <= q
 * and (q-k) mod L == 0; each a progression ending at q. */
static void keys_of(const sr_pattern *p, int64_t q, int64_t *first, int64_t *step)
{
    if (p->kind == BSA_PATTERN_ALL) {
        *first = 0;
        *step = 1;
    } else if (p->kind == BSA_PATTERN_LOCAL) {
        *first = q - p->ctx + 1 > 0 ? q - p->ctx + 1 : 0;
        *step = 1;
    } else {
        *first = q % p->ctx;
        *step = p->ctx;
    }
}

/* Queries that see key k: the mirror progression, starting at k. */
static void queries_of(const sr_pattern *p, int64_t k, int64_t *last, int64_t *step)
{
    if (p->kind == BSA_PATTERN_ALL) {
        *last = p->seq - 1;
        *step = 1;
    } else if (p->kind == BSA_PATTERN_LOCAL) {
        *last = k + p->ctx - 1 < p->seq - 1 ? k + p->ctx - 1 : p->seq - 1;
        *step = 1;
    } else {
        *last = k + (p->seq - 1 - k) / p->ctx * p->ctx;
        *step = p->ctx;
    }
}

static double elem(const sr_view *v, int64_t t, int h, int x)
{
    return tu_get(v->dtype, v->base, t * v->stride_t + h * v->stride_h + x);
}

static double dot(const sr_view *a, int64_t ta, const sr_view *b, int64_t tb, int h, int dim)
{
    double s = 0;
    for (int x = 0; x < dim; x++)
        s += elem(a, ta, h, x) * elem(b, tb, h, x);
    return s;
}

double sr_query_row(const sr_problem *p, int64_t t, int h, double *o, double *dq)
{
    int64_t first, step;
    keys_of(&p->pat, t, &first, &step);
    double m = -INFINITY, l = 0;
    for (int64_t k = first; k <= t; k += step) {
        double s = dot(&p->q, t, &p->k, k, h, p->dim) * p->scale;
        m = s > m ? s : m;
    }
    memset(o, 0, sizeof(double) * p->dim);
    for (int64_t k = first; k <= t; k += step) {
        double e = exp(dot(&p->q, t, &p->k, k, h, p->dim) * p->scale - m);
        l += e;
        for (int x = 0; x < p->dim; x++)
            o[x] += e * elem(&p->v, k, h, x);
    }
    for (int x = 0; x < p->dim; x++)
        o[x] /= l;
    double lse = m + log(l);
    if (dq) {
        double delta = 0;
        for (int64_t k = first; k <= t; k += step)
            delta += exp(dot(&p->q, t, &p->k, k, h, p->dim) * p->scale - lse) *
                     dot(&p->dout, t, &p->v, k, h, p->dim);
        memset(dq, 0, sizeof(double) * p->dim);
        for (int64_t k = first; k <= t; k += step) {
            double pk = exp(dot(&p->q, t, &p->k, k, h, p->dim) * p->scale - lse);
            double ds = pk * (dot(&p->dout, t, &p->v, k, h, p->dim) - delta) * p->scale;
            for (int x = 0; x < p->dim; x++)
                dq[x] += ds * elem(&p->k, k, h, x);
        }
    }
    return lse;
}

void sr_key_dv(const sr_problem *p, int64_t t, int h, double *dv)
{
    int64_t last, step;
    queries_of(&p->pat, t, &last, &step);
    double o[256];
    memset(dv, 0, sizeof(double) * p->dim);
    for (int64_t qq = t; qq <= last; qq += step) {
        double lq = sr_query_row(p, qq, h, o, NULL);
        double pq = exp(dot(&p->q, qq, &p->k, t, h, p->dim) * p->scale - lq);
        for (int x = 0; x < p->dim; x++)
            dv[x] += pq * elem(&p->dout, qq, h, x);
    }
}

void sr_acc(sr_err *e, const sr_view *got, int64_t t, int h, const double *want, int dim)
{
    for (int x = 0; x < dim; x++) {
        double d = elem(got, t, h, x) - want[x];
        e->err += d * d;
        e->ref += want[x] * want[x];
    }
}

double sr_rel(const sr_err *e)
{
    return e->ref > 0 ? sqrt(e->err / e->ref) : sqrt(e->err);
}
