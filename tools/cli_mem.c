#define _POSIX_C_SOURCE 200809L
#include "cli_mem.h"
#include "cli_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The cgroup v2 limit of this process's group less its use (0: none). */
static double cgroup_room(void)
{
    unsigned long long max = 0, cur = 0;
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (!f)
        return 0.0;
    int ok = fscanf(f, "%llu", &max) == 1; /* "max": no limit */
    fclose(f);
    if (!ok)
        return 0.0;
    f = fopen("/sys/fs/cgroup/memory.current", "r");
    if (f) {
        if (fscanf(f, "%llu", &cur) != 1)
            cur = 0;
        fclose(f);
    }
    return max > cur ? (double)(max - cur) : 1.0;
}

/* *avail and *src become limit and why where limit (> 0) is smaller, or
 * where nothing is known yet */
static void take_smaller(double limit, const char *why, double *avail, const char **src)
{
    if (limit > 0.0 && (*avail <= 0.0 || limit < *avail)) {
        *avail = limit;
        *src = why;
    }
}

double cli_mem_available(const char **source)
{
    double avail = 0.0;
    const char *src = "physical memory";
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kib = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
                avail = (double)kib * 1024.0;
                src = "MemAvailable in /proc/meminfo";
                break;
            }
        fclose(f);
    }
    if (avail <= 0.0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        avail = pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
    }
    /* a smaller limit on this process wins: its address space (ulimit -v),
     * which an allocation past it fails on whatever the machine has free,
     * or its cgroup's memory */
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        take_smaller((double)rl.rlim_cur, "the address-space limit (ulimit -v)", &avail, &src);
    take_smaller(cgroup_room(), "the cgroup's memory.max less its use", &avail, &src);
    if (source)
        *source = src;
    return avail;
}

const char *cli_mem_format(double bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 6) {
        bytes /= 1024.0;
        u++;
    }
    if (u < 2)
        snprintf(buf, len, "%.0f %s", bytes, units[u]);
    else
        snprintf(buf, len, "%.1f %s", bytes, units[u]);
    return buf;
}

static double ceil_div(double a, double b)
{
    return ceil(a / b);
}

static double min2(double a, double b)
{
    return a < b ? a : b;
}

int cli_preset_layout_heads(const bsa_preset *p)
{
    return p->pattern == BSA_PATTERN_FIXED && p->num_verts > 1 && p->heads > 0 ? p->heads : 1;
}

/* Blocks of the diagonals 0..r (causal) or -r..r (bidirectional) of an
 * nb x nb block matrix: the rows' key ranges [qb - r, qb (+ r)]. */
static double band(double nb, double r, int causal)
{
    double m = min2(r, nb - 1);
    double side = m * nb - m * (m + 1) / 2; /* diagonals 1..m */
    return nb + (causal ? 1 : 2) * side;
}

double cli_preset_blocks(const bsa_preset *p, double *partial)
{
    double part = 0, blocks = 0;
    if (p->block < 1 || p->seq < 1) {
        if (partial)
            *partial = 0;
        return 0;
    }
    double B = p->block, nb = ceil_div(p->seq, B);
    int causal = !p->bidirectional;
    double all = causal ? nb * (nb + 1) / 2 : nb * nb; /* every block the cut allows */
    double ctx = p->ctx > 0 ? p->ctx : 0;
    switch (p->pattern) {
    case BSA_PATTERN_ALL:
        blocks = all;
        break;
    case BSA_PATTERN_LOCAL: /* keys within ctx - 1 of the row's queries */
        blocks = band(nb, ceil_div(ctx > 1 ? ctx - 1 : 0, B), causal);
        break;
    case BSA_PATTERN_STRIDED: { /* permuted: runs of seq / ctx / B blocks per class */
        double chunks = ctx > 0 ? floor(p->seq / ctx / B) : nb;
        if (chunks < 1)
            chunks = 1;
        blocks = causal ? nb * (chunks + 1) / 2 : nb * chunks;
        break;
    }
    case BSA_PATTERN_FIXED: { /* own window + vertsize summary blocks of each other window */
        double S = floor(ctx / B), vs = p->vertsize > 0 ? p->vertsize : 1;
        if (S < 1)
            S = 1;
        double nw = ceil_div(nb, S);
        blocks = causal ? nb * (S + 1) / 2 + vs * S * nw * (nw - 1) / 2 : nb * (S + vs * (nw - 1));
        blocks = min2(blocks, all) * cli_preset_layout_heads(p);
        break;
    }
    case BSA_PATTERN_SLIDING_WINDOW:
        blocks = band(nb, ceil_div(ctx, B), causal);
        break;
    case BSA_PATTERN_DILATED: { /* every block of the band may be striped: all store bits */
        double d = p->dilation > 0 ? p->dilation : 1;
        blocks = band(nb, ceil_div(ctx * d, B), causal);
        part = blocks;
        break;
    }
    case BSA_PATTERN_LONGFORMER:
    case BSA_PATTERN_BIGBIRD: {
        double g = ceil_div(p->global_tokens > 0 ? p->global_tokens : 0, B);
        double r = p->pattern == BSA_PATTERN_BIGBIRD && p->random_blocks > 0 ? p->random_blocks : 0;
        double rows = causal ? g * (g + 1) / 2 : g * nb; /* global query rows */
        blocks = min2(band(nb, ceil_div(ctx, B), causal) + (g + r) * nb + rows, all);
        /* bits: the window's edge blocks, a partial global row and column,
         * the diagonal: a few per row */
        part = min2(blocks, 8 * nb);
        break;
    }
    case BSA_PATTERN_DOCUMENT: {
        /* row qb spans the documents meeting it, walked once */
        if (!p->doc_lengths || p->num_docs < 1)
            break;
        double sum = 0;
        long long start = 0, end = 0; /* current document [start, end) */
        int d = 0;
        for (long long qb = 0; qb < (long long)nb; qb++) {
            long long q0 = qb * p->block, q1 = q0 + p->block - 1;
            while (d < p->num_docs && end <= q0) {
                start = end;
                end += p->doc_lengths[d] > 0 ? p->doc_lengths[d] : 1;
                d++;
            }
            long long lo = start / p->block, e = end;
            for (int x = d; e <= q1 && x < p->num_docs; x++)
                e += p->doc_lengths[x] > 0 ? p->doc_lengths[x] : 1;
            long long hi = (e - 1) / p->block;
            if (causal && hi > qb)
                hi = qb;
            if (hi >= (long long)nb)
                hi = (long long)nb - 1;
            sum += (double)(hi - lo + 1);
        }
        blocks = min2(sum, all);
        part = blocks;
        break;
    }
    default:
        break;
    }
    if (partial)
        *partial = min2(part, blocks);
    return blocks;
}

double cli_layout_bytes(const bsa_preset *p, double blocks, double partial)
{
    if (p->block < 1 || p->seq < 1)
        return 0;
    double B = p->block, nb = ceil_div(p->seq, B), words = ceil_div(B, 64);
    double bytes = 32.0 * blocks;                               /* 3 grown + 2 exact int32 tables */
    bytes += 2.0 * 4.0 * cli_preset_layout_heads(p) * (nb + 1); /* row_ptr, col_ptr */
    bytes += 2.0 * partial * B * words * 8.0;                   /* bits, grown */
    bytes += 4.0 * nb + B * B;                                  /* build scratch */
    if (p->pattern == BSA_PATTERN_BIGBIRD && p->random_blocks > 0)
        bytes += 4.0 * nb;
    if (p->pattern == BSA_PATTERN_DOCUMENT)
        bytes += 4.0 * p->seq + 8.0 * (p->num_docs + 1);
    return bytes;
}

int cli_mem_refuse(const char *cmd, double need, const char *detail, double limit,
                   const char *where, const char *hint)
{
    if (limit <= 0 || need <= limit)
        return CLI_EXIT_OK;
    char a[32], b[32];
    fprintf(stderr, "bsa %s: memory estimate %s (%s) exceeds the %s available (%s); refused%s%s\n",
            cmd, cli_mem_format(need, a, sizeof a), detail, cli_mem_format(limit, b, sizeof b),
            where, hint && *hint ? ": " : "", hint ? hint : "");
    return CLI_EXIT_USAGE;
}
