/* The double-precision dense oracle: see oracle.h.
 *
 * Per (batch, head) and query row i, over visible keys j:
 *   S_ij = scale * q_i . k_j
 *   P_ij = exp(S_ij - max_j S) / sum_j exp(S_ij - max_j S)
 *   O_i  = sum_j P_ij v_j,   lse_i = max_j S + log(sum_j exp(S_ij - max_j S))
 * Backward of L = sum(O * dO):
 *   dV_j += P_ij dO_i,   dP_ij = dO_i . v_j,   D_i = sum_j P_ij dP_ij
 *   dS_ij = P_ij (dP_ij - D_i),   dQ_i += scale dS_ij k_j,   dK_j += scale dS_ij q_i
 * (the max shift is only there to keep exp finite; it changes nothing.) */
#include "oracle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t *head_mask(const oracle_problem *p, int64_t h)
{
    int64_t lh = p->layout_heads == 1 ? 0 : h;
    return p->mask + lh * p->seq_q * p->seq_k;
}

/* Probabilities of row i into prob[seq_k] (0 where masked); returns the
 * number of visible keys and writes lse (or -inf). */
static int64_t row_probs(const oracle_problem *p, const uint8_t *m, const double *q,
                         const double *k, int64_t i, double *prob, double *lse)
{
    int64_t d = p->head_dim, n = 0;
    double mx = -INFINITY;
    for (int64_t j = 0; j < p->seq_k; j++) {
        prob[j] = 0.0;
        if (!m[i * p->seq_k + j])
            continue;
        double s = 0.0;
        for (int64_t x = 0; x < d; x++)
            s += q[i * d + x] * k[j * d + x];
        s *= p->scale;
        prob[j] = s;
        if (s > mx)
            mx = s;
        n++;
    }
    if (n == 0) {
        *lse = -INFINITY;
        return 0;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < p->seq_k; j++) {
        if (!m[i * p->seq_k + j])
            continue;
        prob[j] = exp(prob[j] - mx);
        sum += prob[j];
    }
    for (int64_t j = 0; j < p->seq_k; j++)
        prob[j] /= sum;
    *lse = mx + log(sum);
    return n;
}

void oracle_forward(const oracle_problem *p, const double *q, const double *k, const double *v,
                    double *o, double *lse)
{
    int64_t d = p->head_dim;
    double *prob = malloc((size_t)p->seq_k * sizeof *prob);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads; h++) {
            int64_t bh = b * p->heads + h;
            const double *qh = q + bh * p->seq_q * d;
            const double *kh = k + bh * p->seq_k * d;
            const double *vh = v + bh * p->seq_k * d;
            double *oh = o + bh * p->seq_q * d;
            const uint8_t *m = head_mask(p, h);
            for (int64_t i = 0; i < p->seq_q; i++) {
                double l;
                row_probs(p, m, qh, kh, i, prob, &l);
                if (lse)
                    lse[bh * p->seq_q + i] = l;
                for (int64_t x = 0; x < d; x++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < p->seq_k; j++)
                        acc += prob[j] * vh[j * d + x];
                    oh[i * d + x] = acc;
                }
            }
        }
    free(prob);
}

void oracle_backward(const oracle_problem *p, const double *q, const double *k, const double *v,
                     const double *dout, double *dq, double *dk, double *dv)
{
    int64_t d = p->head_dim;
    double *prob = malloc((size_t)p->seq_k * sizeof *prob);
    double *dp = malloc((size_t)p->seq_k * sizeof *dp);
    memset(dq, 0, (size_t)(p->batch * p->heads * p->seq_q * d) * sizeof *dq);
    memset(dk, 0, (size_t)(p->batch * p->heads * p->seq_k * d) * sizeof *dk);
    memset(dv, 0, (size_t)(p->batch * p->heads * p->seq_k * d) * sizeof *dv);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads; h++) {
            int64_t bh = b * p->heads + h;
            const double *qh = q + bh * p->seq_q * d;
            const double *kh = k + bh * p->seq_k * d;
            const double *vh = v + bh * p->seq_k * d;
            const double *doh = dout + bh * p->seq_q * d;
            double *dqh = dq + bh * p->seq_q * d;
            double *dkh = dk + bh * p->seq_k * d;
            double *dvh = dv + bh * p->seq_k * d;
            const uint8_t *m = head_mask(p, h);
            for (int64_t i = 0; i < p->seq_q; i++) {
                double l;
                if (row_probs(p, m, qh, kh, i, prob, &l) == 0)
                    continue; /* no key: zero gradients */
                double delta = 0.0;
                for (int64_t j = 0; j < p->seq_k; j++) {
                    dp[j] = 0.0;
                    if (!m[i * p->seq_k + j])
                        continue;
                    for (int64_t x = 0; x < d; x++) {
                        dp[j] += doh[i * d + x] * vh[j * d + x];
                        dvh[j * d + x] += prob[j] * doh[i * d + x];
                    }
                    delta += prob[j] * dp[j];
                }
                for (int64_t j = 0; j < p->seq_k; j++) {
                    if (!m[i * p->seq_k + j])
                        continue;
                    double ds = prob[j] * (dp[j] - delta) * p->scale;
                    for (int64_t x = 0; x < d; x++) {
                        dqh[i * d + x] += ds * kh[j * d + x];
                        dkh[j * d + x] += ds * qh[i * d + x];
                    }
                }
            }
        }
    free(prob);
    free(dp);
}

double oracle_loss(const oracle_problem *p, const double *q, const double *k, const double *v,
                   const double *dout)
{
    int64_t n = p->batch * p->heads * p->seq_q * p->head_dim;
    double *o = malloc((size_t)n * sizeof *o);
    oracle_forward(p, q, k, v, o, NULL);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += o[i] * dout[i];
    free(o);
    return s;
}

/* ------------------------------------------------------------ oracle_ext */

/* Probabilities of one query row over the keys of its kv head (see
 * row_probs); m is the row's mask. */
static int64_t ext_row_probs(const oracle_ext *p, const uint8_t *m, const double *qi,
                             const double *kh, double *prob, double *lse)
{
    int64_t d = p->head_dim, n = 0;
    double mx = -INFINITY;
    for (int64_t j = 0; j < p->seq_k; j++) {
        prob[j] = 0.0;
        if (!m[j])
            continue;
        double s = 0.0;
        for (int64_t x = 0; x < d; x++)
            s += qi[x] * kh[j * d + x];
        prob[j] = s * p->scale;
        mx = prob[j] > mx ? prob[j] : mx;
        n++;
    }
    if (n == 0) {
        *lse = -INFINITY;
        return 0;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < p->seq_k; j++)
        if (m[j]) {
            prob[j] = exp(prob[j] - mx);
            sum += prob[j];
        }
    for (int64_t j = 0; j < p->seq_k; j++)
        prob[j] /= sum;
    *lse = mx + log(sum);
    return n;
}

void oracle_ext_forward(const oracle_ext *p, const double *q, const double *k, const double *v,
                        double *o, double *lse)
{
    int64_t d = p->head_dim, dv = p->v_dim, g = p->heads / p->kv_heads;
    double *prob = malloc((size_t)(p->seq_k + 1) * sizeof *prob);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads; h++) {
            int64_t bh = b * p->heads + h, bkv = b * p->kv_heads + h / g;
            const double *kh = k + bkv * p->seq_k * d, *vh = v + bkv * p->seq_k * dv;
            for (int64_t i = 0; i < p->seq_q; i++) {
                double l;
                const uint8_t *m = p->mask + (bh * p->seq_q + i) * p->seq_k;
                ext_row_probs(p, m, q + (bh * p->seq_q + i) * d, kh, prob, &l);
                if (lse)
                    lse[bh * p->seq_q + i] = l;
                double *oi = o + (bh * p->seq_q + i) * dv;
                for (int64_t x = 0; x < dv; x++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < p->seq_k; j++)
                        acc += prob[j] * vh[j * dv + x];
                    oi[x] = acc;
                }
            }
        }
    free(prob);
}

void oracle_ext_backward(const oracle_ext *p, const double *q, const double *k, const double *v,
                         const double *dout, double *dq, double *dk, double *dv)
{
    int64_t d = p->head_dim, dvd = p->v_dim, g = p->heads / p->kv_heads;
    double *prob = malloc((size_t)(p->seq_k + 1) * sizeof *prob);
    double *dp = malloc((size_t)(p->seq_k + 1) * sizeof *dp);
    memset(dq, 0, (size_t)(p->batch * p->heads * p->seq_q * d) * sizeof *dq);
    memset(dk, 0, (size_t)(p->batch * p->kv_heads * p->seq_k * d) * sizeof *dk);
    memset(dv, 0, (size_t)(p->batch * p->kv_heads * p->seq_k * dvd) * sizeof *dv);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads; h++) {
            int64_t bh = b * p->heads + h, bkv = b * p->kv_heads + h / g;
            const double *kh = k + bkv * p->seq_k * d, *vh = v + bkv * p->seq_k * dvd;
            double *dkh = dk + bkv * p->seq_k * d, *dvh = dv + bkv * p->seq_k * dvd;
            for (int64_t i = 0; i < p->seq_q; i++) {
                const uint8_t *m = p->mask + (bh * p->seq_q + i) * p->seq_k;
                const double *qi = q + (bh * p->seq_q + i) * d;
                const double *doi = dout + (bh * p->seq_q + i) * dvd;
                double *dqi = dq + (bh * p->seq_q + i) * d;
                double l;
                if (ext_row_probs(p, m, qi, kh, prob, &l) == 0)
                    continue;
                double delta = 0.0;
                for (int64_t j = 0; j < p->seq_k; j++) {
                    dp[j] = 0.0;
                    if (!m[j])
                        continue;
                    for (int64_t x = 0; x < dvd; x++) {
                        dp[j] += doi[x] * vh[j * dvd + x];
                        dvh[j * dvd + x] += prob[j] * doi[x];
                    }
                    delta += prob[j] * dp[j];
                }
                for (int64_t j = 0; j < p->seq_k; j++) {
                    if (!m[j])
                        continue;
                    double ds = prob[j] * (dp[j] - delta) * p->scale;
                    for (int64_t x = 0; x < d; x++) {
                        dqi[x] += ds * kh[j * d + x];
                        dkh[j * d + x] += ds * qi[x];
                    }
                }
            }
        }
    free(prob);
    free(dp);
}
