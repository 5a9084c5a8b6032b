/*
 * Subcommands of the bsa command-line tool.  Each takes its own argv with
 * argv[0] = the subcommand's name and returns the process exit status
 * (0 ok, 1 failure, 2 bad command line).
 */
#ifndef BSA_CLI_COMMANDS_H
#define BSA_CLI_COMMANDS_H

int bsa_cmd_demo(int argc, char **argv);   /* tools/demo.c */
int bsa_cmd_layout(int argc, char **argv); /* tools/layout_cmd.c */
int bsa_cmd_bench(int argc, char **argv);  /* tools/bench.c */

#endif
