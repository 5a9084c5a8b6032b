#define _POSIX_C_SOURCE 200809L
#include "cli_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const cli_opt *find_opt(const cli_opt *opts, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static int set_value(const char *cmd, const cli_opt *o, const char *text)
{
    char *end = NULL;
    errno = 0;
    if (o->kind == CLI_OPT_STR) {
        *(const char **)o->value = text;
        return 0;
    }
    if (o->kind == CLI_OPT_INT) {
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno) {
            fprintf(stderr, "bsa %s: --%s: '%s' is not an integer\n", cmd, o->name, text);
            return -1;
        }
        if ((double)v < o->min || (double)v > o->max) {
            fprintf(stderr, "bsa %s: --%s: %lld is outside [%.0f, %.0f]\n", cmd, o->name, v, o->min,
                    o->max);
            return -1;
        }
        *(int *)o->value = (int)v;
        return 0;
    }
    double v = strtod(text, &end);
    if (!*text || *end || errno || !isfinite(v)) {
        fprintf(stderr, "bsa %s: --%s: '%s' is not a number\n", cmd, o->name, text);
        return -1;
    }
    if (v < o->min || v > o->max) {
        fprintf(stderr, "bsa %s: --%s: %g is outside [%g, %g]\n", cmd, o->name, v, o->min, o->max);
        return -1;
    }
    *(double *)o->value = v;
    return 0;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return CLI_PARSE_HELP;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "bsa %s: unexpected argument '%s' (options start with --)\n", cmd, a);
            return CLI_PARSE_ERROR;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = find_opt(opts, n_opts, name, len);
        if (!o) {
            fprintf(stderr, "bsa %s: unknown option '--%.*s' (see bsa %s --help)\n", cmd, (int)len,
                    name, cmd);
            return CLI_PARSE_ERROR;
        }
        if (o->kind == CLI_OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "bsa %s: --%s takes no value\n", cmd, o->name);
                return CLI_PARSE_ERROR;
            }
            *(int *)o->value = 1;
            continue;
        }
        const char *text = eq ? eq + 1 : NULL;
        if (!text) {
            if (i + 1 >= argc) {
                fprintf(stderr, "bsa %s: --%s needs a value\n", cmd, o->name);
                return CLI_PARSE_ERROR;
            }
            text = argv[++i];
        }
        if (set_value(cmd, o, text) != 0)
            return CLI_PARSE_ERROR;
    }
    return CLI_PARSE_OK;
}

void cli_print_options(FILE *f, const cli_opt *opts, int n_opts)
{
    for (int i = 0; i < n_opts; i++) {
        const char *arg = opts[i].kind == CLI_OPT_INT     ? " N"
                          : opts[i].kind == CLI_OPT_FLOAT ? " X"
                          : opts[i].kind == CLI_OPT_STR   ? " S"
                                                          : "";
        char head[64];
        snprintf(head, sizeof head, "--%s%s", opts[i].name, arg);
        fprintf(f, "  %-18s %s\n", head, opts[i].help);
    }
}

int cli_choice(const char *cmd, const char *opt, const char *value, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(value, names[i]))
            return i;
    fprintf(stderr, "bsa %s: --%s: '%s' is not one of", cmd, opt, value);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %s", names[i]);
    fprintf(stderr, "\n");
    return -1;
}

int cli_report(const char *cmd, const char *what, bsa_status status)
{
    const char *detail = bsa_last_error();
    if (!detail)
        detail = "";
    /* The library's message usually names the call already. */
    if (!strncmp(detail, what, strlen(what)))
        fprintf(stderr, "bsa %s: %s: %s\n", cmd, bsa_status_string(status), detail);
    else
        fprintf(stderr, "bsa %s: %s: %s%s%s\n", cmd, what, bsa_status_string(status),
                *detail ? ": " : "", detail);
    return CLI_EXIT_FAIL;
}

void cli_progress_init(cli_progress *p)
{
    const char *term = getenv("TERM");
    p->live = isatty(fileno(stderr)) && !(term && !strcmp(term, "dumb"));
    p->shown = 0;
}

void cli_progress_line(cli_progress *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (p->live)
        fputs("\r\033[K", stderr); /* back to the start, erase the line */
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (!p->live)
        fputc('\n', stderr);
    p->shown = p->live;
    fflush(stderr);
}

void cli_progress_done(cli_progress *p)
{
    if (p->shown)
        fputs("\r\033[K", stderr);
    p->shown = 0;
    fflush(stderr);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cli_median(double *v, int n)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void cli_rng_seed(cli_rng *r, uint64_t seed)
{
    r->s = seed;
}

uint64_t cli_rng_next(cli_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double cli_rng_uniform(cli_rng *r)
{
    return (double)(cli_rng_next(r) >> 11) * 0x1.0p-53;
}

double cli_rng_normal(cli_rng *r)
{
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    double u = 1.0 - cli_rng_uniform(r), v = cli_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

uint64_t cli_fresh_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
           ((uint64_t)getpid() << 32);
}
