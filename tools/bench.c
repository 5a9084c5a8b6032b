/*
 * bsa bench: times forward and backward passes of one or more patterns in
 * one run (so ratios between them share the machine's state), and the
 * rate of a large single-precision GEMM as the yardstick the performance
 * targets are stated against.
 *
 * Figures (DESIGN.md, Benchmarks):
 *   block FLOP = 4 * batch * heads * dim * (computed blocks * block^2),
 *                x2.5 for the backward (its five products incl. the
 *                recomputed QK^T, counted as in the GPU literature);
 *   useful FLOP = the same over kept (q, k) elements only;
 *   time = median over --iters timed calls after --warmup calls;
 *   peak RSS = getrusage() ru_maxrss of the whole process (inputs,
 *              outputs, workspace, everything), host memory only;
 *   element density = kept (q, k) pairs / all pairs, block density = kept
 *              blocks / all blocks of the grid, per layout head.
 * The header comes first, then a progress line per pattern set up and per
 * pattern and round timed (cli_progress: stderr, live on a terminal), then
 * the table.
 */
#define _POSIX_C_SOURCE 200809L
#include "bsa.h"
#include "cli_device.h"
#include "cli_mem.h"
#include "cli_util.h"
#include "commands.h"
#include "half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#ifdef BSA_WITH_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

static const char *const pattern_names[] = {"all",          "local",   "strided",    "fixed",
                                            "dense-random", "sliding", "longformer", "bigbird"};
enum { n_pattern_names = (int)(sizeof pattern_names / sizeof pattern_names[0]) };
/* bench pattern index 5.. -> the presets beyond the seed */
static const bsa_pattern ext_patterns[] = {BSA_PATTERN_SLIDING_WINDOW, BSA_PATTERN_LONGFORMER,
                                           BSA_PATTERN_BIGBIRD};
static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const backend_names[] = {"auto", "cpu", "cuda", "hip"};
static const char *const pass_names[] = {"fwd", "bwd", "both"};

typedef struct bench_cfg {
    int seq, dim, heads, batch, block, ctx, verts, vertsize, iters, warmup, threads, bidir, json;
    int sgemm_n, rounds;
    int kv_heads;         /* k/v heads (grouped-query); 0 = heads */
    int key_length;       /* every batch entry's valid keys; 0 = all */
    int varlen;           /* packed sequences (BSA_PLAN_VARLEN); 0 = off */
    int global, random;   /* longformer / bigbird */
    double block_density; /* dense-random: kept block fraction */
    bsa_dtype dtype;
    bsa_backend backend;
    int pass; /* 0 fwd, 1 bwd, 2 both */
} bench_cfg;

static int bench_threads(const bench_cfg *c)
{
    if (c->threads > 0)
        return c->threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static double peak_rss_mib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return NAN;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            const char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ')
                    c++;
                snprintf(buf, len, "%s", c);
                buf[strcspn(buf, "\n")] = 0;
            }
            break;
        }
    }
    fclose(f);
}

/* Rate of an n^3 SGEMM through oneDNN, all threads; 0 when unavailable. */
static double sgemm_gflops(int n, int iters)
{
#ifdef BSA_WITH_DNNL
    size_t e = (size_t)n * n;
    float *a = malloc(e * sizeof(float)), *b = malloc(e * sizeof(float));
    float *c = malloc(e * sizeof(float));
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0;
    }
    cli_rng r;
    cli_rng_seed(&r, cli_fresh_seed());
    for (size_t i = 0; i < e; i++) {
        a[i] = (float)cli_rng_uniform(&r) - 0.5f;
        b[i] = (float)cli_rng_uniform(&r) - 0.5f;
    }
    double *t = malloc((size_t)iters * sizeof(double));
    dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up, JIT */
    for (int i = 0; i < iters; i++) {
        double t0 = cli_now();
        dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[i] = cli_now() - t0;
    }
    double med = cli_median(t, iters);
    free(t);
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / med * 1e-9;
#else
    (void)n;
    (void)iters;
    return 0;
#endif
}

/* The preset of bench pattern pat (0..3 the seed's, 5.. beyond; not 4). */
static void bench_preset(const bench_cfg *c, int pat, bsa_preset *ps)
{
    memset(ps, 0, sizeof *ps);
    ps->pattern = pat >= 5 ? ext_patterns[pat - 5] : (bsa_pattern)pat;
    ps->global_tokens = c->global;
    ps->random_blocks = c->random;
    ps->seed = 1;
    ps->seq = c->seq;
    ps->block = c->block;
    ps->heads = c->heads;
    ps->num_verts = c->verts;
    ps->vertsize = c->vertsize;
    ps->bidirectional = c->bidir;
    ps->ctx = c->ctx > 0                   ? c->ctx
              : pat == BSA_PATTERN_STRIDED ? c->seq / c->block
              : pat >= 5                   ? 2 * c->block /* window radius */
                                           : 4 * c->block;
}

static int make_layout(const bench_cfg *c, int pat, bsa_context_t ctx, bsa_layout_t *lay)
{
    if (pat == 4) {
        /* Random blocks at --block-density, causal at block granularity (the
         * diagonal is always kept, so every row sees at least itself). */
        int nb = c->seq / c->block;
        uint8_t *m = malloc((size_t)nb * nb);
        if (!m)
            return cli_report("bench", "layout", BSA_ERROR_OUT_OF_MEMORY);
        cli_rng r;
        cli_rng_seed(&r, cli_fresh_seed());
        for (int i = 0; i < nb; i++)
            for (int j = 0; j < nb; j++)
                m[i * nb + j] =
                    (j == i) || ((c->bidir || j < i) && cli_rng_uniform(&r) < c->block_density);
        bsa_layout_desc d;
        memset(&d, 0, sizeof d);
        d.block = c->block;
        d.heads = 1;
        d.q_blocks = nb;
        d.k_blocks = nb;
        d.predicates = c->bidir ? BSA_PRED_NONE : BSA_PRED_CAUSAL;
        bsa_status st = bsa_layout_create_dense(ctx, lay, &d, m);
        free(m);
        return st == BSA_SUCCESS ? 0 : cli_report("bench", "bsa_layout_create_dense", st);
    }
    bsa_preset ps;
    bench_preset(c, pat, &ps);
    bsa_status st = bsa_layout_create_preset(ctx, lay, &ps);
    return st == BSA_SUCCESS ? 0 : cli_report("bench", "bsa_layout_create_preset", st);
}

/* Host buffer of n elements ~U(-1, 1) in dtype, copied to where the
 * backend wants it. */
static void *random_tensor(const bench_cfg *c, bsa_backend be, size_t n, cli_rng *r)
{
    size_t es = c->dtype == BSA_DTYPE_F32 ? 4 : 2;
    void *h = malloc(n * es);
    if (!h)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        float x = (float)(2.0 * cli_rng_uniform(r) - 1.0);
        if (c->dtype == BSA_DTYPE_F32)
            ((float *)h)[i] = x;
        else if (c->dtype == BSA_DTYPE_F16)
            ((uint16_t *)h)[i] = bsa_f32_to_f16(x);
        else
            ((uint16_t *)h)[i] = bsa_f32_to_bf16(x);
    }
    void *d = cli_dev_copy_of(be, h, n * es);
    free(h);
    return d;
}

/* The memory budget of a run: what the estimate says it needs where the
 * tensors live (host for the CPU backend, else the device), the host
 * memory it needs beside them, and the limits; plan workspaces are added
 * as the plans are made. */
typedef struct mem_budget {
    double need, limit;           /* where the tensors live */
    double host_need, host_limit; /* GPU backends: the host side */
    const char *where;
} mem_budget;

typedef struct bench_bufs {
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *ws;
    float *lse;
    int32_t *klen, *cu;         /* host: key lengths, packed offsets (or NULL) */
    int32_t *klen_dev, *cu_dev; /* their copies where the backend reads them */
} bench_bufs;

/* One pattern, set up once and timed in every round. */
typedef struct bench_case {
    int pat;
    bsa_layout_t lay;
    bsa_plan_t plan;
    bench_bufs b;
    size_t wsb;
    const char *impl;
    double blocks, fwd_block, fwd_useful, element_density, block_density;
    double *med[2]; /* per-round medians, fwd and bwd */
} bench_case;

static void free_case(bsa_backend be, bench_case *k)
{
    void *all[] = {k->b.q,  k->b.k,  k->b.v,  k->b.o,   k->b.dout,     k->b.dq,
                   k->b.dk, k->b.dv, k->b.ws, k->b.lse, k->b.klen_dev, k->b.cu_dev};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            cli_dev_free(be, all[i]);
    free(k->b.klen);
    free(k->b.cu);
    bsa_plan_destroy(k->plan);
    bsa_layout_destroy(k->lay);
    free(k->med[0]);
    free(k->med[1]);
}

static int setup_case(const bench_cfg *c, int pat, bsa_context_t ctx, bsa_backend be, int rounds,
                      mem_budget *m, bench_case *k)
{
    memset(k, 0, sizeof *k);
    k->pat = pat;
    if (make_layout(c, pat, ctx, &k->lay))
        return CLI_EXIT_FAIL;
    bsa_layout_info info;
    bsa_status st = bsa_layout_get_info(k->lay, &info);
    if (st != BSA_SUCCESS)
        return cli_report("bench", "bsa_layout_get_info", st);
    /* A shared layout (1 head) is computed once per attention head.  With
     * --varlen the sequences are the batch (their FLOP counted as if each
     * had the full length: an upper bound); --key-length is not counted. */
    int n_seq = c->varlen ? c->varlen : c->batch;
    double per = (double)n_seq * (double)c->heads / (double)info.heads;
    double bs2 = (double)info.block * info.block;
    k->blocks = per * (double)info.blocks_total;
    k->fwd_block = 4.0 * c->dim * k->blocks * bs2;
    k->fwd_useful = 4.0 * c->dim * per * (double)info.kept_elements;
    k->element_density =
        (double)info.kept_elements / ((double)info.heads * info.seq_q * info.seq_k);
    k->block_density =
        (double)info.blocks_total / ((double)info.heads * info.q_blocks * info.k_blocks);

    bsa_attn_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = c->dtype;
    /* packed: sequence i has seq - i * seq / (2 * varlen) tokens (seq down to
     * about seq / 2, so most tails are partial blocks) */
    int64_t bt = c->varlen ? 1 : c->batch, time = c->seq;
    bench_bufs *b = &k->b;
    if (c->varlen) {
        b->cu = malloc(((size_t)c->varlen + 1) * sizeof(int32_t));
        if (!b->cu)
            return cli_report("bench", "allocation", BSA_ERROR_OUT_OF_MEMORY);
        b->cu[0] = 0;
        for (int i = 0; i < c->varlen; i++)
            b->cu[i + 1] = b->cu[i] + (int32_t)(c->seq - (int64_t)i * c->seq / (2 * c->varlen));
        time = b->cu[c->varlen];
        d.flags = BSA_PLAN_VARLEN;
    }
    if (c->key_length) {
        b->klen = malloc((size_t)n_seq * sizeof(int32_t));
        if (!b->klen)
            return cli_report("bench", "allocation", BSA_ERROR_OUT_OF_MEMORY);
        for (int i = 0; i < n_seq; i++)
            b->klen[i] = c->key_length;
        d.flags |= BSA_PLAN_KEY_LENGTHS; /* calls pass them */
    }
    int kvh = c->kv_heads ? c->kv_heads : c->heads;
    d.q = d.o = bsa_tensor_bthd(bt, time, c->heads, c->dim);
    d.k = d.v = bsa_tensor_bthd(bt, time, kvh, c->dim);
    if ((st = bsa_plan_create(ctx, &k->plan, &d, k->lay)) != BSA_SUCCESS)
        return cli_report("bench", "bsa_plan_create", st);
    k->impl = "?";
    bsa_plan_implementation(k->plan, &k->impl);
    bsa_plan_workspace_size(k->plan, &k->wsb);
    /* the workspace is known now, before the tensors are allocated */
    m->need += (double)k->wsb;
    if (m->limit > 0 && m->need > m->limit) {
        char w[32];
        cli_mem_format((double)k->wsb, w, sizeof w);
        char detail[96];
        snprintf(detail, sizeof detail, "with the %s workspace of the %s plan", w,
                 pattern_names[pat]);
        return cli_mem_refuse("bench", m->need, detail, m->limit, m->where,
                              "reduce --seq, --batch, --heads, --dim or the patterns");
    }

    size_t n = (size_t)bt * time * c->heads * c->dim;
    size_t nkv = (size_t)bt * time * kvh * c->dim;
    size_t es = c->dtype == BSA_DTYPE_F32 ? 4 : 2;
    cli_rng r;
    cli_rng_seed(&r, cli_fresh_seed());
    b->q = random_tensor(c, be, n, &r);
    b->k = random_tensor(c, be, nkv, &r);
    b->v = random_tensor(c, be, nkv, &r);
    b->dout = random_tensor(c, be, n, &r);
    b->o = cli_dev_alloc(be, n * es);
    b->dq = cli_dev_alloc(be, n * es);
    b->dk = cli_dev_alloc(be, nkv * es);
    b->dv = cli_dev_alloc(be, nkv * es);
    b->lse = cli_dev_alloc(be, (size_t)bt * c->heads * time * sizeof(float));
    b->ws = k->wsb ? cli_dev_alloc(be, k->wsb) : NULL;
    /* key lengths and offsets live where the tensors do (bsa.h) */
    if (b->klen && !(b->klen_dev = cli_dev_copy_of(be, b->klen, (size_t)n_seq * sizeof(int32_t))))
        return cli_report("bench", "key lengths upload", BSA_ERROR_OUT_OF_MEMORY);
    if (b->cu &&
        !(b->cu_dev = cli_dev_copy_of(be, b->cu, ((size_t)c->varlen + 1) * sizeof(int32_t))))
        return cli_report("bench", "sequence offsets upload", BSA_ERROR_OUT_OF_MEMORY);
    k->med[0] = calloc((size_t)rounds, sizeof(double));
    k->med[1] = calloc((size_t)rounds, sizeof(double));
    if (!b->q || !b->k || !b->v || !b->dout || !b->o || !b->dq || !b->dk || !b->dv || !b->lse ||
        (k->wsb && !b->ws) || !k->med[0] || !k->med[1])
        return cli_report("bench", "buffer allocation", BSA_ERROR_OUT_OF_MEMORY);
    /* The backward needs o and lse: one forward first. */
    bsa_fwd_args fa = {b->q,        b->k,      b->v,      b->o,     b->lse,
                       b->klen_dev, b->cu_dev, b->cu_dev, c->varlen};
    if ((st = bsa_forward(k->plan, &fa, b->ws, k->wsb, NULL)) != BSA_SUCCESS)
        return cli_report("bench", "bsa_forward", st);
    return CLI_EXIT_OK;
}

/* Median time of one pass (0 fwd, 1 bwd) over iters calls after warm-up. */
static int time_pass(const bench_cfg *c, bsa_backend be, bench_case *k, int which, double *t,
                     double *median)
{
    bench_bufs *b = &k->b;
    bsa_fwd_args fa = {b->q,        b->k,      b->v,      b->o,     b->lse,
                       b->klen_dev, b->cu_dev, b->cu_dev, c->varlen};
    bsa_bwd_args ba = {b->q,  b->k,  b->v,        b->o,      b->lse,    b->dout,  b->dq,
                       b->dk, b->dv, b->klen_dev, b->cu_dev, b->cu_dev, c->varlen};
    for (int i = 0; i < c->warmup + c->iters; i++) {
        cli_dev_sync(be);
        double t0 = cli_now();
        bsa_status st = which == 0 ? bsa_forward(k->plan, &fa, b->ws, k->wsb, NULL)
                                   : bsa_backward(k->plan, &ba, b->ws, k->wsb, NULL);
        cli_dev_sync(be);
        double dt = cli_now() - t0;
        if (st != BSA_SUCCESS)
            return cli_report("bench", which == 0 ? "bsa_forward" : "bsa_backward", st);
        if (i >= c->warmup)
            t[i - c->warmup] = dt;
    }
    *median = cli_median(t, c->iters);
    return CLI_EXIT_OK;
}

/* Time of the (packed) problem: seq, or the sum of the --varlen lengths. */
static double bench_time(const bench_cfg *c)
{
    if (!c->varlen)
        return c->seq;
    double t = 0;
    for (int i = 0; i < c->varlen; i++)
        t += (double)(c->seq - (int64_t)i * c->seq / (2 * c->varlen));
    return t;
}

/* Estimates a run's memory before anything large exists, writes it into
 * line (the header prints it: text on stdout, --json on stderr) and
 * refuses (CLI_EXIT_USAGE, on stderr) what the machine cannot hold.  Per pattern: q, o, dout, dq
 * [batch, time, heads, dim] and k, v, dk, dv [.., kv_heads, ..] in the dtype, lse in fp32
 * (setup_case allocates all of them for every pattern), and the layout tables (cli_layout_bytes);
 * on the host besides: one tensor staged for upload, dense-random's seq/block squared block matrix
 * and the SGEMM yardstick's three n x n matrices (freed again: the largest counts). */
static int bench_memory(const bench_cfg *c, const int *pats, int n_pats, bsa_backend be,
                        mem_budget *m, char *line, size_t len)
{
    double es = c->dtype == BSA_DTYPE_F32 ? 4.0 : 2.0, time = bench_time(c);
    double bt = c->varlen ? 1 : c->batch, kvh = c->kv_heads ? c->kv_heads : c->heads;
    double n = bt * time * c->heads * c->dim, nkv = bt * time * kvh * c->dim;
    double tensors = n_pats * (4.0 * (n + nkv) * es + 4.0 * bt * c->heads * time);
    double layouts = 0, blocks = 0, scratch = (n > nkv ? n : nkv) * es;
    for (int i = 0; i < n_pats; i++) {
        bsa_preset ps;
        double b, part = 0;
        if (pats[i] == 4) { /* dense-random: the block matrix, ~density of it kept */
            bench_preset(c, BSA_PATTERN_ALL, &ps);
            double nb = c->seq / c->block;
            b = nb + c->block_density * (c->bidir ? nb * nb : nb * (nb - 1) / 2);
            if (nb * nb > scratch)
                scratch = nb * nb;
        } else {
            bench_preset(c, pats[i], &ps);
            b = cli_preset_blocks(&ps, &part);
        }
        blocks += b;
        layouts += cli_layout_bytes(&ps, b, part);
    }
#ifdef BSA_WITH_DNNL
    double gemm = 3.0 * 4.0 * c->sgemm_n * (double)c->sgemm_n;
    if (be == BSA_BACKEND_CPU && gemm > scratch)
        scratch = gemm;
#endif
    const char *host_src = "";
    double host = cli_mem_available(&host_src);
    memset(m, 0, sizeof *m);
    if (be == BSA_BACKEND_CPU) {
        m->need = tensors + layouts + scratch;
        m->limit = host;
        m->where = host_src;
    } else {
        m->need = tensors + layouts; /* the backend keeps a device copy of the tables */
        m->where = "free device memory";
        m->host_need = layouts + scratch;
        m->host_limit = host;
        if (cli_dev_mem_free(be, &m->limit) != 0)
            m->limit = 0; /* unknown: not checked */
    }
    char a[32], b[32], t[32], l[32], s[32];
    char detail[256];
    snprintf(detail, sizeof detail, "tensors %s for %d pattern%s, layouts %s for ~%.3g blocks%s%s",
             cli_mem_format(tensors, t, sizeof t), n_pats, n_pats > 1 ? "s" : "",
             cli_mem_format(layouts, l, sizeof l), blocks,
             be == BSA_BACKEND_CPU ? ", host scratch " : "",
             be == BSA_BACKEND_CPU ? cli_mem_format(scratch, s, sizeof s) : "");
    int w = snprintf(line, len,
                     "memory estimate: %s (%s; plan workspaces come on top) of %s available (%s)",
                     cli_mem_format(m->need, a, sizeof a), detail,
                     m->limit > 0 ? cli_mem_format(m->limit, b, sizeof b) : "?", m->where);
    if (be != BSA_BACKEND_CPU && w >= 0 && (size_t)w < len)
        snprintf(line + w, len - (size_t)w, "\nhost memory estimate: %s of %s available (%s)",
                 cli_mem_format(m->host_need, a, sizeof a), cli_mem_format(host, b, sizeof b),
                 host_src);
    static const char hint[] = "reduce --seq, --batch, --heads, --dim or the patterns";
    int rc = cli_mem_refuse("bench", m->need, detail, m->limit, m->where, hint);
    if (rc == CLI_EXIT_OK && be != BSA_BACKEND_CPU)
        rc = cli_mem_refuse("bench", m->host_need, "host side: layouts and staging", m->host_limit,
                            host_src, hint);
    return rc;
}

static void usage(const cli_opt *opts, int n)
{
    printf("usage: bsa bench [options]\n\n"
           "Times forward/backward passes; --pattern takes a comma-separated list\n"
           "(e.g. all,local,fixed) run in this order in one process, each row also\n"
           "shows its time and block count relative to the first pattern's.\n"
           "Block FLOP/s = 4*batch*heads*dim*(computed blocks*block^2) per second\n"
           "(x2.5 backward); useful FLOP/s counts kept elements only; peak RSS is\n"
           "getrusage(RUSAGE_SELF).ru_maxrss of the whole process; element density =\n"
           "kept (q, k) pairs / all pairs, block density = kept blocks / all blocks.  The\n"
           "header (with the memory the run needs, estimated first) comes before anything\n"
           "runs, then one progress line per pattern set up and per pattern and round timed\n"
           "(stderr: rewritten in place on a terminal), then the table; with --json the\n"
           "header goes to stderr and stdout holds the JSON lines.  A run that needs more\n"
           "memory than is available (MemAvailable; free device memory on a GPU) is refused.\n"
           "\noptions:\n");
    cli_print_options(stdout, opts, n);
}

int bsa_cmd_bench(int argc, char **argv)
{
    bench_cfg c;
    memset(&c, 0, sizeof c);
    c.seq = 4096;
    c.dim = 64;
    c.heads = 4;
    c.batch = 1;
    c.block = CLI_BLOCK_DEFAULT;
    c.verts = 1;
    c.vertsize = 1;
    c.iters = 10;
    c.warmup = 2;
    c.block_density = 0.1;
    c.sgemm_n = 2048;
    c.rounds = 3;
    const char *pattern = "all", *dtype = "f32", *backend = "auto", *pass = "both";
    cli_opt opts[] = {
        {"pattern", CLI_OPT_STR, &pattern, 0, 0,
         "all|local|strided|fixed|dense-random|sliding|longformer|bigbird, or a comma list "
         "(default all)"},
        {"seq", CLI_OPT_INT, &c.seq, CLI_SEQ_MIN, CLI_SEQ_MAX, "sequence length (default 4096)"},
        {"dim", CLI_OPT_INT, &c.dim, 1, 1024, "head dim (default 64)"},
        {"heads", CLI_OPT_INT, &c.heads, 1, 4096, "heads (default 4)"},
        {"kv-heads", CLI_OPT_INT, &c.kv_heads, 0, 4096,
         "k/v heads, dividing --heads (grouped-query; default = heads)"},
        {"key-length", CLI_OPT_INT, &c.key_length, 0, 1 << 22,
         "valid keys of every batch entry / sequence (key padding; default all)"},
        {"varlen", CLI_OPT_INT, &c.varlen, 0, 1 << 16,
         "N packed sequences of seq down to seq/2 tokens (batch ignored; default off)"},
        {"global", CLI_OPT_INT, &c.global, 0, 1 << 22, "longformer/bigbird: global tokens"},
        {"random", CLI_OPT_INT, &c.random, 0, 1024, "bigbird: random blocks per row"},
        {"batch", CLI_OPT_INT, &c.batch, 1, 1 << 20, "batch (default 1)"},
        {"dtype", CLI_OPT_STR, &dtype, 0, 0, "f32|f16|bf16 (default f32)"},
        {"block", CLI_OPT_INT, &c.block, CLI_BLOCK_MIN, CLI_BLOCK_MAX, "layout block (default 32)"},
        {"ctx", CLI_OPT_INT, &c.ctx, 0, 1 << 22,
         "local bandwidth / strided stride / fixed window (default 4*block; strided seq/block)"},
        {"verts", CLI_OPT_INT, &c.verts, 1, 4096, "fixed: summary columns per window (1)"},
        {"vertsize", CLI_OPT_INT, &c.vertsize, 1, 4096, "fixed: blocks per summary column (1)"},
        {"block-density", CLI_OPT_FLOAT, &c.block_density, 0, 1,
         "dense-random: kept block fraction (default 0.1)"},
        {"bidirectional", CLI_OPT_FLAG, &c.bidir, 0, 0, "not causal"},
        {"backend", CLI_OPT_STR, &backend, 0, 0,
         "auto|cpu|cuda|hip (default auto: a GPU where one is, else the CPU)"},
        {"threads", CLI_OPT_INT, &c.threads, 0, 4096, "CPU threads (default 0 = OpenMP's)"},
        {"pass", CLI_OPT_STR, &pass, 0, 0, "fwd|bwd|both (default both)"},
        {"iters", CLI_OPT_INT, &c.iters, 1, 100000, "timed calls per round (default 10)"},
        {"rounds", CLI_OPT_INT, &c.rounds, 1, 1000,
         "rounds over all patterns; ratios are medians of per-round ratios (default 3)"},
        {"warmup", CLI_OPT_INT, &c.warmup, 0, 100000, "untimed calls first (default 2)"},
        {"sgemm", CLI_OPT_INT, &c.sgemm_n, 0, 16384, "SGEMM yardstick size, 0 = skip (2048)"},
        {"json", CLI_OPT_FLAG, &c.json, 0, 0, "one JSON object per line instead of a table"},
    };
    int n_opts = (int)(sizeof opts / sizeof opts[0]);
    int pr = cli_parse("bench", argc, argv, opts, n_opts);
    if (pr == CLI_PARSE_HELP) {
        usage(opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (pr != CLI_PARSE_OK)
        return CLI_EXIT_USAGE;
    int di = cli_choice("bench", "dtype", dtype, dtype_names, 3);
    int bi = cli_choice("bench", "backend", backend, backend_names, 4);
    int pi = cli_choice("bench", "pass", pass, pass_names, 3);
    if (di < 0 || bi < 0 || pi < 0)
        return CLI_EXIT_USAGE;
    c.dtype = (bsa_dtype)di;
    c.backend = (bsa_backend)bi;
    c.pass = pi;

    int pats[16], n_pats = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", pattern);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int p = cli_choice("bench", "pattern", tok, pattern_names, n_pattern_names);
        if (p < 0)
            return CLI_EXIT_USAGE;
        if (n_pats == 16) {
            fprintf(stderr, "bsa bench: --pattern: at most 16 patterns\n");
            return CLI_EXIT_USAGE;
        }
        pats[n_pats++] = p;
    }
    if (c.seq % c.block) {
        fprintf(stderr, "bsa bench: --seq %d is not a multiple of --block %d\n", c.seq, c.block);
        return CLI_EXIT_USAGE;
    }

    bsa_context_t ctx = NULL;
    bsa_context_params cp = {c.backend, 0, c.threads};
    bsa_status st = bsa_context_create(&ctx, &cp);
    if (st != BSA_SUCCESS)
        return cli_report("bench", "bsa_context_create", st);
    bsa_backend be = BSA_BACKEND_CPU;
    bsa_context_backend(ctx, &be);
    if (cli_dev_select(be, 0) != 0) {
        bsa_context_destroy(ctx);
        return CLI_EXIT_FAIL;
    }
    char dev[256];
    if (be == BSA_BACKEND_CPU)
        cpu_model(dev, sizeof dev);
    else
        cli_dev_name(be, dev, sizeof dev);

#ifdef _OPENMP
    if (c.threads > 0)
        omp_set_num_threads(c.threads); /* the SGEMM yardstick uses as many threads */
#endif
    mem_budget budget;
    char mem_line[768];
    if (bench_memory(&c, pats, n_pats, be, &budget, mem_line, sizeof mem_line) != CLI_EXIT_OK) {
        bsa_context_destroy(ctx);
        return CLI_EXIT_USAGE;
    }
    /* The header first, before anything is set up or timed (--json: on
     * stderr, so stdout stays JSON). */
    FILE *hf = c.json ? stderr : stdout;
    fprintf(hf, "device: %s, %d threads (backend %s)\n", dev, bench_threads(&c),
            bsa_backend_name(be));
    fprintf(hf,
            "problem: batch %d heads %d seq %d dim %d block %d dtype %s; %d rounds x %d "
            "iters (+%d warm-up)\n",
            c.batch, c.heads, c.seq, c.dim, c.block, dtype_names[di], c.rounds, c.iters, c.warmup);
    if (c.kv_heads || c.key_length || c.varlen)
        fprintf(hf, "features: kv_heads %d, key_length %d, varlen %d sequences\n",
                c.kv_heads ? c.kv_heads : c.heads, c.key_length, c.varlen);
    fprintf(hf, "%s\n", mem_line);
    fflush(hf);

    cli_progress prog;
    cli_progress_init(&prog);
    bench_case *cases = calloc((size_t)n_pats, sizeof *cases);
    double *gemm_r = calloc((size_t)c.rounds, sizeof(double));
    double *t = malloc((size_t)c.iters * sizeof(double));
    double *tmp = malloc((size_t)c.rounds * sizeof(double));
    int rc = CLI_EXIT_OK, set = 0;
    if (!cases || !gemm_r || !t || !tmp)
        rc = cli_report("bench", "allocation", BSA_ERROR_OUT_OF_MEMORY);
    for (; set < n_pats && rc == CLI_EXIT_OK; set++) {
        cli_progress_line(&prog, "bench: setting up %s (%d of %d patterns)",
                          pattern_names[pats[set]], set + 1, n_pats);
        rc = setup_case(&c, pats[set], ctx, be, c.rounds, &budget, &cases[set]);
    }
    /* Rounds interleave the patterns (and the SGEMM), so a change of load
     * on a shared machine hits all of them alike; ratios are taken within
     * a round, then the median over rounds is reported. */
    for (int r = 0; r < c.rounds && rc == CLI_EXIT_OK; r++) {
        if (c.sgemm_n > 0 && be == BSA_BACKEND_CPU)
            cli_progress_line(&prog, "bench: round %d of %d: SGEMM %d^3", r + 1, c.rounds,
                              c.sgemm_n);
        gemm_r[r] = c.sgemm_n > 0 && be == BSA_BACKEND_CPU ? sgemm_gflops(c.sgemm_n, 3) : 0;
        for (int i = 0; i < n_pats && rc == CLI_EXIT_OK; i++) {
            char done[96] = "";
            for (int w = 0; w < 2 && rc == CLI_EXIT_OK; w++)
                if (c.pass == 2 || c.pass == w) {
                    rc = time_pass(&c, be, &cases[i], w, t, &cases[i].med[w][r]);
                    size_t n = strlen(done);
                    snprintf(done + n, sizeof done - n, " %s %.3f ms", w ? "bwd" : "fwd",
                             cases[i].med[w][r] * 1e3);
                }
            if (rc == CLI_EXIT_OK)
                cli_progress_line(&prog, "bench: round %d of %d: %s (%d of %d):%s", r + 1, c.rounds,
                                  pattern_names[cases[i].pat], i + 1, n_pats, done);
        }
    }
    cli_progress_done(&prog);
    double rss = peak_rss_mib();
    double gemm =
        rc == CLI_EXIT_OK ? cli_median(memcpy(tmp, gemm_r, (size_t)c.rounds * 8), c.rounds) : 0;

    if (rc == CLI_EXIT_OK && !c.json)
        printf("%-13s %-4s %-14s %9s %9s %8s %9s %9s %8s %7s %7s %9s\n", "pattern", "pass", "impl",
               "blocks", "elem-dens", "blk-dens", "time ms", "blkGF/s", "usefGF/s", "%sgemm",
               "t/t0", "blk/blk0");
    for (int w = 0; w < 2 && rc == CLI_EXIT_OK; w++) {
        if (!(c.pass == 2 || c.pass == w))
            continue;
        for (int i = 0; i < n_pats; i++) {
            bench_case *k = &cases[i];
            double mult = w == 0 ? 1.0 : 2.5;
            for (int r = 0; r < c.rounds; r++)
                tmp[r] = k->med[w][r];
            double ms = cli_median(tmp, c.rounds) * 1e3;
            for (int r = 0; r < c.rounds; r++)
                tmp[r] = k->med[w][r] / cases[0].med[w][r];
            double ratio = cli_median(tmp, c.rounds);
            for (int r = 0; r < c.rounds; r++)
                tmp[r] = gemm_r[r] > 0
                             ? 100.0 * mult * k->fwd_block / k->med[w][r] * 1e-9 / gemm_r[r]
                             : 0;
            double pct = cli_median(tmp, c.rounds);
            double bgf = mult * k->fwd_block / (ms * 1e-3) * 1e-9;
            double ugf = mult * k->fwd_useful / (ms * 1e-3) * 1e-9;
            double bratio = k->blocks / cases[0].blocks;
            if (c.json) {
                printf("{\"device\": \"%s\", \"threads\": %d, \"backend\": \"%s\", \"impl\": "
                       "\"%s\", \"pattern\": \"%s\", \"pass\": \"%s\", \"dtype\": \"%s\", "
                       "\"batch\": %d, \"heads\": %d, \"kv_heads\": %d, \"key_length\": %d, "
                       "\"varlen\": %d, \"seq\": %d, \"dim\": %d, \"block\": %d, "
                       "\"blocks\": %.0f, \"element_density\": %.6f, \"block_density\": %.6f, "
                       "\"time_ms\": %.4f, "
                       "\"block_gflops\": %.3f, \"useful_gflops\": %.3f, \"sgemm_gflops\": "
                       "%.3f, \"pct_sgemm\": %.2f, \"time_ratio\": %.4f, \"block_ratio\": %.4f, "
                       "\"workspace_bytes\": %zu, \"peak_rss_mib\": %.1f, \"rounds\": %d, "
                       "\"iters\": %d}\n",
                       dev, bench_threads(&c), bsa_backend_name(be), k->impl, pattern_names[k->pat],
                       w ? "bwd" : "fwd", dtype_names[di], c.batch, c.heads,
                       c.kv_heads ? c.kv_heads : c.heads, c.key_length, c.varlen, c.seq, c.dim,
                       c.block, k->blocks, k->element_density, k->block_density, ms, bgf, ugf, gemm,
                       pct, ratio, bratio, k->wsb, rss, c.rounds, c.iters);
            } else {
                char pcts[16];
                if (gemm > 0)
                    snprintf(pcts, sizeof pcts, "%.1f", pct);
                else
                    snprintf(pcts, sizeof pcts, "n/a");
                printf("%-13s %-4s %-14s %9.0f %9.4f %8.4f %9.3f %9.1f %8.1f %7s %7.3f %9.3f\n",
                       pattern_names[k->pat], w ? "bwd" : "fwd", k->impl, k->blocks,
                       k->element_density, k->block_density, ms, bgf, ugf, pcts, ratio, bratio);
            }
        }
    }
    if (rc == CLI_EXIT_OK && !c.json) {
        if (gemm > 0)
            printf("SGEMM %d^3 (oneDNN, same threads): %.1f GFLOP/s (median of rounds)\n",
                   c.sgemm_n, gemm);
        else
            printf("SGEMM yardstick: n/a\n");
        printf("elem-dens: element density, kept (q, k) pairs / all; blk-dens: block density, "
               "kept blocks / all\nt/t0, blk/blk0: time and computed blocks relative to the "
               "first pattern (median of per-round ratios)\npeak RSS (whole process, getrusage "
               "ru_maxrss): %.1f MiB; workspace of the first plan %.2f MiB\n",
               rss, (double)cases[0].wsb / 1048576.0);
    }
    for (int i = 0; i < set; i++)
        free_case(be, &cases[i]);
    free(cases);
    free(gemm_r);
    free(t);
    free(tmp);
    bsa_context_destroy(ctx);
    return rc;
}
