/*
 * Memory estimates of the bsa command-line tool: what a run will allocate,
 * worked out from its options before anything large is allocated, and what
 * the machine has.  A run whose estimate exceeds what is available is
 * refused up front (exit 2) instead of growing until the OOM killer or the
 * swap ends it.
 *
 * The layout figures follow layouts/layout_build.c: per kept block five
 * int32 entries (col_idx, row_of, mask_idx, t_block, t_row), the first
 * three grown geometrically (up to 2x slack while building), plus one
 * B x ceil(B/64) x 8-byte bitmask per partial block with stored bits; the
 * kept blocks come from each preset's closed form (an upper bound where
 * the exact count needs the layout itself).
 */
#ifndef BSA_CLI_MEM_H
#define BSA_CLI_MEM_H

#include "bsa.h"

#include <stddef.h>
#include <stdio.h>

/* Bytes of host memory available: MemAvailable of /proc/meminfo, else
 * physical pages x page size (sysconf), or the process's address-space
 * limit (RLIMIT_AS) or its cgroup v2 room (memory.max - memory.current)
 * where smaller; *source says which.  0 if none is known. */
double cli_mem_available(const char **source);

/* "12.3 GiB", "456.0 MiB", "789 KiB", "12 B" into buf. */
const char *cli_mem_format(double bytes, char *buf, size_t len);

/* Upper bound of the kept blocks of a preset over all its layout heads
 * (bsa_layout_create_preset's), and in *partial those that store element
 * bits.  0 for fields the library would refuse. */
double cli_preset_blocks(const bsa_preset *preset, double *partial);

/* Layout heads of a preset (the fixed pattern with num_verts > 1: one per
 * attention head; else 1). */
int cli_preset_layout_heads(const bsa_preset *preset);

/* Peak host bytes of building a layout of that many kept / partial blocks
 * (layout_build.c's tables, growth slack included) and of the preset's own
 * scratch (bigbird's shuffle, the document map). */
double cli_layout_bytes(const bsa_preset *preset, double blocks, double partial);

/* Refuses a run that needs more than the limit: prints "bsa CMD: memory
 * estimate NEED (DETAIL) exceeds the LIMIT available (WHERE)" and a hint
 * to stderr and returns CLI_EXIT_USAGE; returns CLI_EXIT_OK when it fits
 * (or when the limit is unknown, limit <= 0). */
int cli_mem_refuse(const char *cmd, double need, const char *detail, double limit,
                   const char *where, const char *hint);

#endif
