/*
 * bsa: the command-line entry point.  Dispatches to the subcommands of
 * commands.h from one table, so adding a command is one line.
 */
#include "bsa.h"
#include "cli_build.h"
#include "cli_util.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"demo", bsa_cmd_demo,
     "run the seed's four patterns forward + backward, checked against a dense reference"},
    {"layout", bsa_cmd_layout, "print a pattern's element mask (text, png) or its numbers"},
    {"bench", bsa_cmd_bench, "time forward and backward passes"},
};

static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *f)
{
    fprintf(f, "usage: bsa COMMAND [options]\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-8s %s\n", "help", "this text; 'bsa help COMMAND' shows a command's options");
    fprintf(f, "\n  bsa --version    version, git commit and compiled backends\n");
}

static void version(void)
{
    int major = 0, minor = 0, patch = 0;
    bsa_version(&major, &minor, &patch);
    printf("bsa %d.%d.%d (git %s; header %s)\nbackends:", major, minor, patch, BSA_GIT_HASH,
           BSA_VERSION_STRING);
    static const bsa_backend all[] = {BSA_BACKEND_CPU, BSA_BACKEND_CUDA, BSA_BACKEND_HIP};
    for (int i = 0; i < 3; i++)
        if (bsa_backend_compiled(all[i]))
            printf(" %s", bsa_backend_name(all[i]));
    printf("\n");
}

static const command *find(const char *name)
{
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        version();
        return CLI_EXIT_OK;
    }
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        if (argc > 2) {
            const command *c = find(argv[2]);
            if (!c) {
                fprintf(stderr, "bsa: unknown command '%s'\n", argv[2]);
                usage(stderr);
                return CLI_EXIT_USAGE;
            }
            char *sub[] = {argv[2], "--help", NULL};
            return c->run(2, sub);
        }
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const command *c = find(name);
    if (!c) {
        fprintf(stderr, "bsa: unknown command '%s'\n", name);
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
