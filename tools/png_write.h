/*
 * 8-bit grayscale PNG output for `bsa layout --format png` (libpng).
 */
#ifndef BSA_CLI_PNG_WRITE_H
#define BSA_CLI_PNG_WRITE_H

#include <stddef.h>
#include <stdint.h>

/* Fills the width pixels of image row y. */
typedef void (*cli_png_row_fn)(void *user, int y, uint8_t *pixels);

/* Writes a width x height grayscale PNG to path, one row at a time, so a
 * large picture never exists whole in memory.  Returns 0, or -1 with a
 * reason in err.  Without libpng (BSA_WITH_PNG undefined) always fails. */
int cli_png_write_gray(const char *path, int width, int height, cli_png_row_fn row, void *user,
                       char *err, size_t err_len);

/* 1 if this build can write PNG files. */
int cli_png_available(void);

#endif
