#include "png_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BSA_WITH_PNG
#include <png.h>

int cli_png_available(void)
{
    return 1;
}

/* libpng reports errors by longjmp; the message is kept for the caller. */
typedef struct png_err {
    char *buf;
    size_t len;
} png_err;

static void on_error(png_structp png, png_const_charp msg)
{
    png_err *e = (png_err *)png_get_error_ptr(png);
    snprintf(e->buf, e->len, "libpng: %s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

int cli_png_write_gray(const char *path, int width, int height, cli_png_row_fn row, void *user,
                       char *err, size_t err_len)
{
    png_err e = {err, err_len};
    FILE *volatile f = NULL;
    uint8_t *volatile pixels = NULL;
    png_structp png = NULL;
    png_infop info = NULL;
    volatile int ok = 0;

    f = fopen(path, "wb");
    if (!f) {
        snprintf(err, err_len, "cannot open '%s' for writing", path);
        return -1;
    }
    pixels = malloc((size_t)width);
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &e, on_error, on_warning);
    if (png)
        info = png_create_info_struct(png);
    if (!pixels || !png || !info) {
        snprintf(err, err_len, "out of memory for a %d x %d picture", width, height);
        goto done;
    }
    if (setjmp(png_jmpbuf(png)))
        goto done;
    png_init_io(png, f);
    /* Masks are long runs of equal bytes: zlib alone compresses them well,
     * and unfiltered rows keep the file simple to check. */
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_NONE);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) {
        row(user, y, pixels);
        png_write_row(png, pixels);
    }
    png_write_end(png, NULL);
    ok = 1;
done:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    free(pixels);
    if (fclose(f) != 0 && ok) {
        snprintf(err, err_len, "error writing '%s'", path);
        ok = 0;
    }
    if (!ok)
        remove(path);
    return ok ? 0 : -1;
}

#else

int cli_png_available(void)
{
    return 0;
}

int cli_png_write_gray(const char *path, int width, int height, cli_png_row_fn row, void *user,
                       char *err, size_t err_len)
{
    (void)path, (void)width, (void)height, (void)row, (void)user;
    snprintf(err, err_len, "this build has no PNG support (libpng was not found)");
    return -1;
}

#endif
