#include "dense_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void axpy(double a, const double *x, double *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* One (batch, head) pair.  Each query row is finished (forward and its
 * share of the backward) before the next, so only one row of
 * probabilities exists at a time. */
static int one_head(const dense_problem *p, int64_t b, int64_t h, double *o, double *lse,
                    double *dq, double *dk, double *dv)
{
    const int64_t T = p->seq, D = p->dim, ld = p->heads * D;
    const int64_t base = b * T * ld + h * D;
    const uint8_t *mask = p->masks + (p->mask_heads == 1 ? 0 : h) * T * T;
    double *prob = malloc((size_t)T * sizeof *prob);
    int64_t *keys = malloc((size_t)T * sizeof *keys);
    if (!prob || !keys) {
        free(prob);
        free(keys);
        return -1;
    }
    for (int64_t t = 0; t < T; t++) {
        memset(dk + base + t * ld, 0, (size_t)D * sizeof(double));
        memset(dv + base + t * ld, 0, (size_t)D * sizeof(double));
    }
    for (int64_t qi = 0; qi < T; qi++) {
        const double *qr = p->q + base + qi * ld;
        const double *dor = p->dout + base + qi * ld;
        double *orow = o + base + qi * ld, *dqr = dq + base + qi * ld;
        const uint8_t *mrow = mask + qi * T;
        int64_t n = 0;
        double mx = -INFINITY;
        for (int64_t ki = 0; ki < T; ki++) {
            if (!mrow[ki])
                continue;
            double s = p->scale * dot(qr, p->k + base + ki * ld, D);
            keys[n] = ki;
            prob[n++] = s;
            if (s > mx)
                mx = s;
        }
        memset(orow, 0, (size_t)D * sizeof(double));
        memset(dqr, 0, (size_t)D * sizeof(double));
        lse[(b * p->heads + h) * T + qi] = -INFINITY;
        if (n == 0)
            continue;
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++)
            sum += (prob[j] = exp(prob[j] - mx));
        for (int64_t j = 0; j < n; j++) {
            prob[j] /= sum;
            axpy(prob[j], p->v + base + keys[j] * ld, orow, D);
        }
        lse[(b * p->heads + h) * T + qi] = mx + log(sum);
        /* dS = P (dP - rowsum(dO . O)), dP = dO V^T */
        double delta = dot(dor, orow, D);
        for (int64_t j = 0; j < n; j++) {
            const int64_t kr = base + keys[j] * ld;
            double ds = prob[j] * (dot(dor, p->v + kr, D) - delta) * p->scale;
            axpy(ds, p->k + kr, dqr, D);
            axpy(ds, qr, dk + kr, D);
            axpy(prob[j], dor, dv + kr, D);
        }
    }
    free(prob);
    free(keys);
    return 0;
}

int dense_ref_attention(const dense_problem *p, double *o, double *lse, double *dq, double *dk,
                        double *dv)
{
    const int64_t pairs = p->batch * p->heads;
    int failed = 0;
    /* Pairs own disjoint rows of every output: no races, no reductions. */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
#endif
    for (int64_t i = 0; i < pairs; i++)
        failed |= one_head(p, i / p->heads, i % p->heads, o, lse, dq, dk, dv) != 0;
    return failed ? -1 : 0;
}
