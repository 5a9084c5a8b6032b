/*
 * Shared helpers of the bsa command-line tool: option parsing, error
 * reporting, timing and random numbers.
 */
#ifndef BSA_CLI_UTIL_H
#define BSA_CLI_UTIL_H

#include "bsa.h"

#include <stdint.h>
#include <stdio.h>

/* Options every subcommand shares take one range and one default.  Ranges
 * are the library's (block sizes 8..128) or, for --seq, what an int holds
 * with room to spare; what a command cannot afford at a length (the demo's
 * dense reference, the layout's element mask) is refused with its reason,
 * and runs too large for the machine by the memory estimates. */
#define CLI_SEQ_MIN 8
#define CLI_SEQ_MAX (1 << 30)
#define CLI_BLOCK_MIN 8
#define CLI_BLOCK_MAX 128
#define CLI_BLOCK_DEFAULT 32

/* Exit statuses of every subcommand. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1, /* a library call failed, or a check did not pass */
    CLI_EXIT_USAGE = 2 /* bad command line */
};

typedef enum cli_opt_kind {
    CLI_OPT_INT,   /* int *value, checked against [min, max] */
    CLI_OPT_FLOAT, /* double *value, checked against [min, max] */
    CLI_OPT_STR,   /* const char **value */
    CLI_OPT_FLAG   /* int *value set to 1; takes no argument */
} cli_opt_kind;

typedef struct cli_opt {
    const char *name; /* without the leading "--" */
    cli_opt_kind kind;
    void *value;
    double min, max; /* allowed range of INT and FLOAT options */
    const char *help;
} cli_opt;

/* Result of cli_parse. */
enum { CLI_PARSE_OK = 0, CLI_PARSE_HELP = 1, CLI_PARSE_ERROR = 2 };

/* Parses "--name value", "--name=value" and "--flag" from argv[1..argc).
 * "--help" or "-h" returns CLI_PARSE_HELP.  On an error prints a message
 * naming cmd, the option and the limit to stderr and returns
 * CLI_PARSE_ERROR. */
int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts);

/* One line per option: "  --name VALUE   help". */
void cli_print_options(FILE *f, const cli_opt *opts, int n_opts);

/* Index of value in names[0..n), or -1 after printing the allowed names. */
int cli_choice(const char *cmd, const char *opt, const char *value, const char *const *names,
               int n);

/* Prints "bsa CMD: WHAT: STATUS: last error" to stderr; returns
 * CLI_EXIT_FAIL. */
int cli_report(const char *cmd, const char *what, bsa_status status);

/* Progress of a long run, on stderr (stdout keeps the results): on a
 * terminal one line rewritten in place, elsewhere (a log, a pipe) one
 * plain line per update. */
typedef struct cli_progress {
    int live;  /* stderr is a terminal */
    int shown; /* a live line is on the screen */
} cli_progress;

void cli_progress_init(cli_progress *p);
void cli_progress_line(cli_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears a live line (a no-op for plain lines). */
void cli_progress_done(cli_progress *p);

/* Monotonic wall clock in seconds. */
double cli_now(void);

/* Median of v[0..n) (reorders v). */
double cli_median(double *v, int n);

/* splitmix64: small, fast and good enough for test inputs. */
typedef struct cli_rng {
    uint64_t s;
} cli_rng;

void cli_rng_seed(cli_rng *r, uint64_t seed);
uint64_t cli_rng_next(cli_rng *r);
double cli_rng_uniform(cli_rng *r); /* [0, 1) */
double cli_rng_normal(cli_rng *r);  /* N(0, 1) */

/* Seed from the clock and process id, so every run draws fresh inputs. */
uint64_t cli_fresh_seed(void);

#endif
