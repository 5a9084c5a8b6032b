/*
 * bsa demo: the seed's four patterns (all, local, strided, fixed) forward
 * and backward on the best backend present, each checked against a dense
 * double-precision oracle built from the layout's element mask, with
 * timings and block-FLOP/s.  Exits non-zero if any check fails.
 */
#include "bsa.h"
#include "cli_device.h"
#include "cli_mem.h"
#include "cli_util.h"
#include "commands.h"
#include "dense_ref.h"
#include "half.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const cmd = "demo";

static const char *const pattern_names[] = {"all", "local", "strided", "fixed"};
static const bsa_pattern pattern_values[] = {BSA_PATTERN_ALL, BSA_PATTERN_LOCAL,
                                             BSA_PATTERN_STRIDED, BSA_PATTERN_FIXED};
enum { N_PATTERNS = 4 };

static const char *const backend_names[] = {"auto", "cpu", "cuda", "hip"};
static const bsa_backend backend_values[] = {BSA_BACKEND_AUTO, BSA_BACKEND_CPU, BSA_BACKEND_CUDA,
                                             BSA_BACKEND_HIP};
static const char *const dtype_names[] = {"auto", "f32", "f16", "bf16"};

/* Relative L2 limits of the output and of the gradients, and the absolute
 * limit of the log-sum-exp, per input dtype.  The oracle sees the inputs
 * already rounded to the dtype, so what is left is accumulation error and
 * the rounding of outputs (and of P and dS inside a half-precision kernel).
 * Measured 2026-11 at the default problem (out / grad): f32 CPU 3e-7 / 6e-7;
 * f16 CPU 2e-4 / 2.6e-4, H200 2.6e-4 / 3.4e-4; bf16 CPU 1.7e-3 / 2.1e-3,
 * H200 2e-3 / 2.7e-3.  The limits leave 10x or more; a mask rule applied
 * wrongly, a lost block or a missing rescale costs far more than that. */
typedef struct tolerance {
    double out_rel, grad_rel, lse_abs;
} tolerance;

static const tolerance tolerances[] = {
    [BSA_DTYPE_F32] = {1e-4, 1e-4, 1e-4},
    [BSA_DTYPE_F16] = {5e-3, 1e-2, 5e-3},
    [BSA_DTYPE_BF16] = {3e-2, 5e-2, 3e-2},
};

static size_t dtype_size(bsa_dtype t)
{
    return t == BSA_DTYPE_F32 ? 4 : 2;
}

static const char *dtype_name(bsa_dtype t)
{
    return dtype_names[1 + (int)t];
}

/* Stores x in dtype t at element i of buf; returns the stored value. */
static double store(bsa_dtype t, void *buf, size_t i, double x)
{
    if (t == BSA_DTYPE_F32) {
        float f = (float)x;
        ((float *)buf)[i] = f;
        return f;
    }
    uint16_t h = t == BSA_DTYPE_F16 ? bsa_f32_to_f16((float)x) : bsa_f32_to_bf16((float)x);
    ((uint16_t *)buf)[i] = h;
    return t == BSA_DTYPE_F16 ? bsa_f16_to_f32(h) : bsa_bf16_to_f32(h);
}

static double load(bsa_dtype t, const void *buf, size_t i)
{
    if (t == BSA_DTYPE_F32)
        return ((const float *)buf)[i];
    uint16_t h = ((const uint16_t *)buf)[i];
    return t == BSA_DTYPE_F16 ? bsa_f16_to_f32(h) : bsa_bf16_to_f32(h);
}

/* NaN in dtype t: an output a kernel forgot to write cannot pass. */
static void poison(bsa_dtype t, void *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store(t, buf, i, NAN);
}

typedef struct error_stats {
    double max_abs, rel_l2;
} error_stats;

/* Any non-finite value makes both figures infinite. */
static error_stats compare(const double *got, const double *ref, size_t n)
{
    double diff2 = 0.0, ref2 = 0.0, max_abs = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(ref[i]) && got[i] == ref[i])
            continue; /* lse of an empty row: -inf on both sides */
        double d = fabs(got[i] - ref[i]);
        if (!isfinite(d))
            return (error_stats){INFINITY, INFINITY};
        diff2 += d * d;
        ref2 += ref[i] * ref[i];
        if (d > max_abs)
            max_abs = d;
    }
    return (error_stats){max_abs, ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2)};
}

static error_stats worst(error_stats a, error_stats b)
{
    return (error_stats){fmax(a.max_abs, b.max_abs), fmax(a.rel_l2, b.rel_l2)};
}

/* ------------------------------------------------------------ problem */

typedef struct demo_cfg {
    int batch, seq, heads, dim, block;
    int local_ctx, stride, window, verts, vertsize, bidir;
    int reps, force_reference;
    double perturb;
    bsa_dtype dtype;
    bsa_backend backend;
} demo_cfg;

/* Host inputs (in the dtype and as the exact doubles the oracle sees) and
 * the device buffers, shared by every pattern. */
typedef struct demo_data {
    size_t elems, lse_elems, bytes;
    void *q, *k, *v, *dout;       /* host, dtype */
    double *qd, *kd, *vd, *doutd; /* host, exact stored values */
    void *dev_q, *dev_k, *dev_v, *dev_o, *dev_dout, *dev_dq, *dev_dk, *dev_dv;
    float *dev_lse;
    void *host_out, *host_first[4]; /* downloads: scratch, first o/dq/dk/dv */
    float *host_lse;
    double *got, *ref_o, *ref_lse, *ref_dq, *ref_dk, *ref_dv;
} demo_data;

typedef struct result {
    double density, fwd_s, bwd_s, fwd_flops, bwd_flops;
    int64_t blocks;
    const char *impl;
    error_stats out, lse, grad;
    int deterministic, pass;
} result;

static int upload(const demo_cfg *c, void *dst, const void *src, size_t bytes)
{
    return cli_dev_upload(c->backend, dst, src, bytes);
}

static int download(const demo_cfg *c, void *dst, const void *src, size_t bytes)
{
    return cli_dev_download(c->backend, dst, src, bytes);
}

/* Converts a downloaded tensor to doubles, adding the checker self-test
 * perturbation to one element. */
static void to_double(const demo_cfg *c, const void *buf, double *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = load(c->dtype, buf, i);
    out[n / 3] += c->perturb;
}

static int poison_outputs(const demo_cfg *c, demo_data *d)
{
    poison(c->dtype, d->host_out, d->elems);
    for (size_t i = 0; i < d->lse_elems; i++)
        d->host_lse[i] = NAN;
    void *outs[] = {d->dev_o, d->dev_dq, d->dev_dk, d->dev_dv};
    for (int i = 0; i < 4; i++)
        if (upload(c, outs[i], d->host_out, d->bytes) != 0)
            return -1;
    return upload(c, d->dev_lse, d->host_lse, d->lse_elems * sizeof(float));
}

static int timed(const demo_cfg *c, bsa_plan_t plan, int backward, const bsa_fwd_args *fa,
                 const bsa_bwd_args *ba, void *ws, size_t ws_bytes, double *seconds)
{
    double *t = malloc((size_t)c->reps * sizeof *t);
    if (!t)
        return -1;
    for (int r = 0; r < c->reps; r++) {
        double t0 = cli_now();
        bsa_status st = backward ? bsa_backward(plan, ba, ws, ws_bytes, NULL)
                                 : bsa_forward(plan, fa, ws, ws_bytes, NULL);
        if (st != BSA_SUCCESS) {
            free(t);
            return cli_report(cmd, backward ? "bsa_backward" : "bsa_forward", st), -1;
        }
        if (cli_dev_sync(c->backend) != 0) {
            free(t);
            return -1;
        }
        t[r] = cli_now() - t0;
    }
    *seconds = cli_median(t, c->reps);
    free(t);
    return 0;
}

static bsa_preset demo_preset(const demo_cfg *c, int pi)
{
    const int ctx_len[] = {0, c->local_ctx, c->stride, c->window};
    bsa_preset pr = {.pattern = pattern_values[pi],
                     .seq = c->seq,
                     .block = c->block,
                     .heads = c->heads,
                     .ctx = ctx_len[pi],
                     .num_verts = c->verts,
                     .vertsize = c->vertsize,
                     .bidirectional = c->bidir};
    return pr;
}

static bsa_attn_desc demo_desc(const demo_cfg *c)
{
    bsa_attn_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.dtype = c->dtype;
    desc.q = desc.k = desc.v = desc.o = bsa_tensor_bthd(c->batch, c->seq, c->heads, c->dim);
    desc.scale = 0.0f; /* 1/sqrt(dim) */
    desc.flags = c->force_reference ? BSA_PLAN_FORCE_REFERENCE : BSA_PLAN_DEFAULT;
    return desc;
}

static int run_pattern(const demo_cfg *c, bsa_context_t ctx, demo_data *d, int pi, result *res)
{
    int rc = -1;
    bsa_layout_t lay = NULL;
    bsa_plan_t plan = NULL;
    uint8_t *masks = NULL;
    void *ws = NULL;
    bsa_status st;
    bsa_preset pr = demo_preset(c, pi);
    memset(res, 0, sizeof *res);
    res->impl = "-";

    if ((st = bsa_layout_create_preset(ctx, &lay, &pr)) != BSA_SUCCESS) {
        cli_report(cmd, "bsa_layout_create_preset", st);
        goto done;
    }
    bsa_layout_info info;
    if ((st = bsa_layout_get_info(lay, &info)) != BSA_SUCCESS) {
        cli_report(cmd, "bsa_layout_get_info", st);
        goto done;
    }
    const size_t cells = (size_t)c->seq * (size_t)c->seq;
    masks = malloc((size_t)info.heads * cells);
    if (!masks) {
        fprintf(stderr, "bsa %s: out of memory for the element masks\n", cmd);
        goto done;
    }
    for (int h = 0; h < info.heads; h++)
        if ((st = bsa_layout_element_mask(lay, h, masks + (size_t)h * cells)) != BSA_SUCCESS) {
            cli_report(cmd, "bsa_layout_element_mask", st);
            goto done;
        }
    res->density = (double)info.kept_elements / ((double)info.heads * (double)cells);
    /* Blocks computed over all attention heads: a shared layout runs once
     * per head. */
    res->blocks = info.heads == 1 ? info.blocks_total * c->heads : info.blocks_total;
    res->fwd_flops = 4.0 * c->batch * c->dim * (double)c->block * c->block * (double)res->blocks;
    res->bwd_flops = 2.5 * res->fwd_flops;

    bsa_attn_desc desc = demo_desc(c);
    if ((st = bsa_plan_create(ctx, &plan, &desc, lay)) != BSA_SUCCESS) {
        cli_report(cmd, "bsa_plan_create", st);
        goto done;
    }
    if ((st = bsa_plan_implementation(plan, &res->impl)) != BSA_SUCCESS) {
        cli_report(cmd, "bsa_plan_implementation", st);
        goto done;
    }
    size_t ws_bytes = 0;
    if ((st = bsa_plan_workspace_size(plan, &ws_bytes)) != BSA_SUCCESS) {
        cli_report(cmd, "bsa_plan_workspace_size", st);
        goto done;
    }
    if (ws_bytes && !(ws = cli_dev_alloc(c->backend, ws_bytes)))
        goto done;

    if (poison_outputs(c, d) != 0)
        goto done;
    bsa_fwd_args fa = {d->dev_q, d->dev_k, d->dev_v, d->dev_o, d->dev_lse};
    bsa_bwd_args ba = {d->dev_q,    d->dev_k,  d->dev_v,  d->dev_o, d->dev_lse,
                       d->dev_dout, d->dev_dq, d->dev_dk, d->dev_dv};
    if ((st = bsa_forward(plan, &fa, ws, ws_bytes, NULL)) != BSA_SUCCESS) {
        cli_report(cmd, "bsa_forward", st);
        goto done;
    }
    if ((st = bsa_backward(plan, &ba, ws, ws_bytes, NULL)) != BSA_SUCCESS) {
        cli_report(cmd, "bsa_backward", st);
        goto done;
    }
    if (cli_dev_sync(c->backend) != 0)
        goto done;
    void *outs[] = {d->dev_o, d->dev_dq, d->dev_dk, d->dev_dv};
    for (int i = 0; i < 4; i++)
        if (download(c, d->host_first[i], outs[i], d->bytes) != 0)
            goto done;
    if (download(c, d->host_lse, d->dev_lse, d->lse_elems * sizeof(float)) != 0)
        goto done;

    dense_problem dp = {.batch = c->batch,
                        .heads = c->heads,
                        .seq = c->seq,
                        .dim = c->dim,
                        .scale = 1.0 / sqrt((double)c->dim),
                        .q = d->qd,
                        .k = d->kd,
                        .v = d->vd,
                        .dout = d->doutd,
                        .masks = masks,
                        .mask_heads = info.heads};
    if (dense_ref_attention(&dp, d->ref_o, d->ref_lse, d->ref_dq, d->ref_dk, d->ref_dv) != 0) {
        fprintf(stderr, "bsa %s: out of memory in the reference\n", cmd);
        goto done;
    }
    to_double(c, d->host_first[0], d->got, d->elems);
    res->out = compare(d->got, d->ref_o, d->elems);
    for (size_t i = 0; i < d->lse_elems; i++)
        d->got[i] = d->host_lse[i];
    res->lse = compare(d->got, d->ref_lse, d->lse_elems);
    const double *grad_refs[] = {d->ref_dq, d->ref_dk, d->ref_dv};
    res->grad = (error_stats){0, 0};
    for (int i = 0; i < 3; i++) {
        to_double(c, d->host_first[1 + i], d->got, d->elems);
        res->grad = worst(res->grad, compare(d->got, grad_refs[i], d->elems));
    }

    if (timed(c, plan, 0, &fa, &ba, ws, ws_bytes, &res->fwd_s) != 0 ||
        timed(c, plan, 1, &fa, &ba, ws, ws_bytes, &res->bwd_s) != 0)
        goto done;

    /* Same inputs, same bits: every timed run must reproduce the first. */
    res->deterministic = 1;
    for (int i = 0; i < 4; i++) {
        if (download(c, d->host_out, outs[i], d->bytes) != 0)
            goto done;
        if (memcmp(d->host_out, d->host_first[i], d->bytes) != 0)
            res->deterministic = 0;
    }
    const tolerance *tol = &tolerances[c->dtype];
    res->pass = res->out.rel_l2 <= tol->out_rel && res->grad.rel_l2 <= tol->grad_rel &&
                res->lse.max_abs <= tol->lse_abs && res->deterministic;
    rc = 0;
done:
    cli_dev_free(c->backend, ws);
    if (plan)
        bsa_plan_destroy(plan);
    if (lay)
        bsa_layout_destroy(lay);
    free(masks);
    return rc;
}

/* ------------------------------------------------------------ setup */

static void free_data(const demo_cfg *c, demo_data *d)
{
    void *host[] = {d->q,       d->k,      d->v,        d->dout,     d->qd,  d->kd,
                    d->vd,      d->doutd,  d->host_out, d->host_lse, d->got, d->ref_o,
                    d->ref_lse, d->ref_dq, d->ref_dk,   d->ref_dv};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
    for (int i = 0; i < 4; i++)
        free(d->host_first[i]);
    void *dev[] = {d->dev_q,  d->dev_k,  d->dev_v,  d->dev_o,  d->dev_dout,
                   d->dev_dq, d->dev_dk, d->dev_dv, d->dev_lse};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        cli_dev_free(c->backend, dev[i]);
}

static int make_data(const demo_cfg *c, demo_data *d, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    d->elems = (size_t)c->batch * c->seq * c->heads * c->dim;
    d->lse_elems = (size_t)c->batch * c->heads * c->seq;
    d->bytes = d->elems * dtype_size(c->dtype);
    const size_t dbytes = d->elems * sizeof(double);
    void **host[] = {&d->q,
                     &d->k,
                     &d->v,
                     &d->dout,
                     &d->host_out,
                     &d->host_first[0],
                     &d->host_first[1],
                     &d->host_first[2],
                     &d->host_first[3]};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        if (!(*host[i] = malloc(d->bytes)))
            goto oom;
    double **dbl[] = {&d->qd,    &d->kd,     &d->vd,     &d->doutd,
                      &d->ref_o, &d->ref_dq, &d->ref_dk, &d->ref_dv};
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++)
        if (!(*dbl[i] = malloc(dbytes)))
            goto oom;
    /* got holds a tensor or the lse, whichever is larger */
    if (!(d->got = malloc((d->elems > d->lse_elems ? d->elems : d->lse_elems) * sizeof(double))) ||
        !(d->ref_lse = malloc(d->lse_elems * sizeof(double))) ||
        !(d->host_lse = malloc(d->lse_elems * sizeof(float))))
        goto oom;

    /* N(0,1) inputs as in the seed's demo; the oracle sees the rounded
     * values. */
    cli_rng rng;
    cli_rng_seed(&rng, seed);
    void *bufs[] = {d->q, d->k, d->v, d->dout};
    double *exact[] = {d->qd, d->kd, d->vd, d->doutd};
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < d->elems; i++)
            exact[t][i] = store(c->dtype, bufs[t], i, cli_rng_normal(&rng));

    void **dev[] = {&d->dev_q,    &d->dev_k,  &d->dev_v,  &d->dev_o,
                    &d->dev_dout, &d->dev_dq, &d->dev_dk, &d->dev_dv};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (!(*dev[i] = cli_dev_alloc(c->backend, d->bytes)))
            return -1;
    if (!(d->dev_lse = cli_dev_alloc(c->backend, d->lse_elems * sizeof(float))))
        return -1;
    void *dst[] = {d->dev_q, d->dev_k, d->dev_v, d->dev_dout};
    for (int t = 0; t < 4; t++)
        if (upload(c, dst[t], bufs[t], d->bytes) != 0)
            return -1;
    return 0;
oom:
    fprintf(stderr, "bsa %s: out of host memory\n", cmd);
    return -1;
}

/* ------------------------------------------------------------ checks */

/* Every requested pattern's layout and plan, made and dropped once before
 * anything else: a combination of options the library refuses is reported
 * here, once, as a bad command line (exit 2), not once per pattern after
 * the header.  Runs after demo_memory, which keeps it from building a
 * layout the machine cannot hold. */
static int validate(const demo_cfg *c, bsa_context_t ctx, unsigned which)
{
    for (int pi = 0; pi < N_PATTERNS; pi++) {
        if (!(which & (1u << pi)))
            continue;
        bsa_preset pr = demo_preset(c, pi);
        bsa_attn_desc desc = demo_desc(c);
        bsa_layout_t lay = NULL;
        bsa_plan_t plan = NULL;
        bsa_status st = bsa_layout_create_preset(ctx, &lay, &pr);
        if (st == BSA_SUCCESS)
            st = bsa_plan_create(ctx, &plan, &desc, lay);
        if (plan)
            bsa_plan_destroy(plan);
        if (lay)
            bsa_layout_destroy(lay);
        if (st != BSA_SUCCESS) {
            /* the library's message names the function and the field */
            char where[64];
            snprintf(where, sizeof where, "the %s pattern with these options", pattern_names[pi]);
            cli_report(cmd, where, st);
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

/* The run's memory before anything large exists: make_data's host copies
 * (the inputs and five downloads in the dtype, eight double tensors, the
 * lse) and its nine tensors where the backend keeps them; per pattern (one
 * at a time: the largest counts) the element masks of every layout head
 * (seq^2 bytes each), the layout tables and the reference's rows.  Prints
 * the estimate into line (for the header) and refuses (CLI_EXIT_USAGE,
 * on stderr) what does not fit. */
static int demo_memory(const demo_cfg *c, unsigned which, char *line, size_t len)
{
    double es = (double)dtype_size(c->dtype);
    double elems = (double)c->batch * c->seq * c->heads * c->dim;
    double lse = (double)c->batch * c->heads * c->seq;
    double host =
        9.0 * elems * es + 8.0 * elems * 8.0 + (elems > lse ? elems : lse) * 8.0 + lse * 12.0;
    double tensors = 8.0 * elems * es + 4.0 * lse;
    double pattern = 0, layout = 0;
    for (int pi = 0; pi < N_PATTERNS; pi++) {
        if (!(which & (1u << pi)))
            continue;
        bsa_preset pr = demo_preset(c, pi);
        double partial = 0, blocks = cli_preset_blocks(&pr, &partial);
        double tables = cli_layout_bytes(&pr, blocks, partial);
        double masks = (double)cli_preset_layout_heads(&pr) * c->seq * (double)c->seq;
        if (masks + tables + 16.0 * c->seq > pattern)
            pattern = masks + tables + 16.0 * c->seq;
        if (tables > layout)
            layout = tables;
    }
    const char *src = "";
    double avail = cli_mem_available(&src), need = host + pattern;
    double dev_need = 0, dev_avail = 0;
    if (c->backend == BSA_BACKEND_CPU)
        need += tensors;
    else if (cli_dev_mem_free(c->backend, &dev_avail) == 0)
        dev_need = tensors + layout;
    char a[32], b[32], t[32], p[32], detail[160];
    snprintf(detail, sizeof detail, "tensors %s, host copies and reference %s, masks and layout %s",
             cli_mem_format(tensors, t, sizeof t), cli_mem_format(host, a, sizeof a),
             cli_mem_format(pattern, p, sizeof p));
    snprintf(line, len, "memory: estimate %s (%s) of %s available (%s)",
             cli_mem_format(need, a, sizeof a), detail,
             avail > 0 ? cli_mem_format(avail, b, sizeof b) : "?", src);
    static const char hint[] = "reduce --batch, --heads, --seq or --dim";
    int rc = cli_mem_refuse(cmd, need, detail, avail, src, hint);
    if (rc == CLI_EXIT_OK && dev_need > 0)
        rc = cli_mem_refuse(cmd, dev_need, "tensors and layout on the device", dev_avail,
                            "free device memory", hint);
    return rc;
}

static void usage(FILE *f, const cli_opt *opts, int n)
{
    fprintf(f, "usage: bsa demo [options]\n"
               "Runs the seed's patterns (all, local, strided, fixed) forward and backward on\n"
               "the chosen backend, checks every result against a dense double-precision\n"
               "reference built from the layout's element mask, and prints timings.\n"
               "Exit status 1 if any check fails.\n\noptions:\n");
    cli_print_options(f, opts, n);
}

/* Parses "all,local" into a bit set of patterns; 0 on error. */
static unsigned parse_patterns(const char *list)
{
    unsigned set = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int i = cli_choice(cmd, "pattern", tok, pattern_names, N_PATTERNS);
        if (i < 0)
            return 0;
        set |= 1u << i;
    }
    return set;
}

int bsa_cmd_demo(int argc, char **argv)
{
    demo_cfg c = {.batch = 2,
                  .seq = 1024,
                  .heads = 4,
                  .dim = 64,
                  .block = CLI_BLOCK_DEFAULT,
                  .local_ctx = 32,
                  .stride = 32,
                  .window = 128,
                  .verts = 4,
                  .vertsize = 1,
                  .reps = 5};
    /* --quick only changes defaults, so explicit options still win. */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) {
            c.batch = 1;
            c.seq = 512;
            c.block = 16;
            c.reps = 2;
        }
    const char *backend = "auto", *dtype = "auto", *patterns = "all,local,strided,fixed";
    const char *seed_text = NULL;
    int device = 0, threads = 0, quick = 0;
    const cli_opt opts[] = {
        {"backend", CLI_OPT_STR, &backend, 0, 0, "auto | cpu | cuda | hip (default auto)"},
        {"device", CLI_OPT_INT, &device, 0, 1024, "GPU index (default 0)"},
        {"threads", CLI_OPT_INT, &threads, 0, 4096, "CPU threads (default 0: OpenMP's)"},
        {"dtype", CLI_OPT_STR, &dtype, 0, 0, "auto | f32 | f16 | bf16 (auto: f32 on CPU, f16 GPU)"},
        {"batch", CLI_OPT_INT, &c.batch, 1, 1 << 16, "batch (default 2)"},
        {"seq", CLI_OPT_INT, &c.seq, CLI_SEQ_MIN, CLI_SEQ_MAX,
         "sequence length (default 1024; the reference allows 8192)"},
        {"heads", CLI_OPT_INT, &c.heads, 1, 1 << 10, "heads (default 4)"},
        {"dim", CLI_OPT_INT, &c.dim, 1, 1 << 10, "head dim (default 64)"},
        {"block", CLI_OPT_INT, &c.block, CLI_BLOCK_MIN, CLI_BLOCK_MAX, "layout block (default 32)"},
        {"local", CLI_OPT_INT, &c.local_ctx, 1, 1 << 30, "local bandwidth L (default 32)"},
        {"stride", CLI_OPT_INT, &c.stride, 1, 1 << 30, "strided stride L (default 32)"},
        {"window", CLI_OPT_INT, &c.window, 1, 1 << 30, "fixed window L (default 128)"},
        {"verts", CLI_OPT_INT, &c.verts, 1, 1 << 30, "fixed summary sets (default 4)"},
        {"vertsize", CLI_OPT_INT, &c.vertsize, 1, 1 << 30, "fixed blocks per set (default 1)"},
        {"bidirectional", CLI_OPT_FLAG, &c.bidir, 0, 0, "no causal constraint"},
        {"reference", CLI_OPT_FLAG, &c.force_reference, 0, 0,
         "run the backend's reference implementation (BSA_PLAN_FORCE_REFERENCE)"},
        {"pattern", CLI_OPT_STR, &patterns, 0, 0, "comma-separated subset (default all four)"},
        {"reps", CLI_OPT_INT, &c.reps, 1, 1000, "timed runs, median reported (default 5)"},
        {"seed", CLI_OPT_STR, &seed_text, 0, 0, "input seed (default: fresh each run)"},
        {"quick", CLI_OPT_FLAG, &quick, 0, 0, "smaller defaults: batch 1, seq 512, block 16"},
        {"perturb", CLI_OPT_FLOAT, &c.perturb, -1e30, 1e30,
         "checker self-test: add X to one output and one gradient element"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    int pr = cli_parse(cmd, argc, argv, opts, n_opts);
    if (pr == CLI_PARSE_HELP) {
        usage(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (pr != CLI_PARSE_OK)
        return CLI_EXIT_USAGE;
    int bi = cli_choice(cmd, "backend", backend, backend_names, 4);
    int di = cli_choice(cmd, "dtype", dtype, dtype_names, 4);
    unsigned which = parse_patterns(patterns);
    if (bi < 0 || di < 0 || !which)
        return CLI_EXIT_USAGE;
    uint64_t seed = cli_fresh_seed();
    if (seed_text) {
        char *end = NULL;
        seed = strtoull(seed_text, &end, 0);
        if (!*seed_text || *end) {
            fprintf(stderr, "bsa %s: --seed: '%s' is not an integer\n", cmd, seed_text);
            return CLI_EXIT_USAGE;
        }
    }
    /* The oracle holds every mask of seq^2 bytes and runs in O(seq^2). */
    if (c.seq > 8192) {
        fprintf(stderr, "bsa %s: --seq %d: the dense reference is limited to seq <= 8192\n", cmd,
                c.seq);
        return CLI_EXIT_USAGE;
    }
    if (c.seq % c.block) {
        fprintf(stderr, "bsa %s: --seq %d is not a multiple of --block %d\n", cmd, c.seq, c.block);
        return CLI_EXIT_USAGE;
    }

    bsa_context_t ctx = NULL;
    bsa_context_params cp = {
        .backend = backend_values[bi], .device = device, .num_threads = threads};
    bsa_status st = bsa_context_create(&ctx, &cp);
    if (st != BSA_SUCCESS)
        return cli_report(cmd, "bsa_context_create", st);
    if ((st = bsa_context_backend(ctx, &c.backend)) != BSA_SUCCESS) {
        bsa_context_destroy(ctx);
        return cli_report(cmd, "bsa_context_backend", st);
    }
    c.dtype = di > 0 ? (bsa_dtype)(di - 1)
                     : (c.backend == BSA_BACKEND_CPU ? BSA_DTYPE_F32 : BSA_DTYPE_F16);

    int rc = CLI_EXIT_FAIL;
    demo_data d;
    memset(&d, 0, sizeof d);
    if (cli_dev_select(c.backend, device) != 0)
        goto done;
    /* Every argument is checked before the header: one message, exit 2. */
    char mem_line[512];
    if ((rc = demo_memory(&c, which, mem_line, sizeof mem_line)) != CLI_EXIT_OK ||
        (rc = validate(&c, ctx, which)) != CLI_EXIT_OK)
        goto done;

    char dev_name[256];
    cli_dev_name(c.backend, dev_name, sizeof dev_name);
    printf("bsa demo: backend %s on %s\n", bsa_backend_name(c.backend), dev_name);
    printf("problem: %s, batch %d, seq %d, heads %d, head dim %d, block %d, %s, seed 0x%016" PRIx64
           "\n",
           dtype_name(c.dtype), c.batch, c.seq, c.heads, c.dim, c.block,
           c.bidir ? "bidirectional" : "causal", seed);
    printf("patterns: local L=%d, strided L=%d, fixed L=%d verts=%d vertsize=%d\n", c.local_ctx,
           c.stride, c.window, c.verts, c.vertsize);
    printf("%s\n", mem_line);
    fflush(stdout);
    rc = CLI_EXIT_FAIL;
    if (make_data(&c, &d, seed) != 0)
        goto done;
    const tolerance *tol = &tolerances[c.dtype];
    printf("oracle: dense attention in double precision over bsa_layout_element_mask; "
           "limits: out rel %.0e, grad rel %.0e, lse %.0e\n\n",
           tol->out_rel, tol->grad_rel, tol->lse_abs);
    printf("%-8s %9s %7s %-16s %9s %9s %9s %9s %9s %9s %9s %9s %9s %4s %s\n", "pattern",
           "elem-dens", "blocks", "implementation", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s",
           "out max", "out rel", "lse max", "grad max", "grad rel", "det", "check");
    fflush(stdout);

    int failed = 0, run = 0;
    for (int pi = 0; pi < N_PATTERNS; pi++) {
        if (!(which & (1u << pi)))
            continue;
        result r;
        run++;
        if (run_pattern(&c, ctx, &d, pi, &r) != 0) {
            printf("%-8s %9s %7s %-16s  (not run: see the error above)\n", pattern_names[pi], "-",
                   "-", r.impl);
            failed++;
            continue;
        }
        printf("%-8s %9.4f %7" PRId64 " %-16s %9.3f %9.2f %9.3f %9.2f %9.2e %9.2e %9.2e %9.2e "
               "%9.2e %4s %s\n",
               pattern_names[pi], r.density, r.blocks, r.impl, 1e3 * r.fwd_s,
               r.fwd_flops / r.fwd_s * 1e-9, 1e3 * r.bwd_s, r.bwd_flops / r.bwd_s * 1e-9,
               r.out.max_abs, r.out.rel_l2, r.lse.max_abs, r.grad.max_abs, r.grad.rel_l2,
               r.deterministic ? "yes" : "NO", r.pass ? "ok" : "FAIL");
        fflush(stdout);
        failed += !r.pass;
    }
    printf("\nelem-dens: element density, kept (q, k) pairs / all; blocks: computed blocks over "
           "all heads;\nGF/s: block-FLOP/s, 4*batch*dim*block^2*blocks forward, x2.5 backward; "
           "det: timed re-runs reproduce the first run's bits;\n"
           "grad: worst of dq, dk, dv; times: median of %d runs\n",
           c.reps);
    if (failed)
        printf("FAILED: %d of %d patterns\n", failed, run);
    else
        printf("all %d patterns passed\n", run);
    rc = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
done:
    free_data(&c, &d);
    bsa_context_destroy(ctx);
    return rc;
}
