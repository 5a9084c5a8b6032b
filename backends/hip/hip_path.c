/* See hip_path.h. */
#include "hip_path.h"

#include <string.h>

int bsa_hip_arch_mfma(const char *arch)
{
    static const char *const names[] = {"gfx90a", "gfx940", "gfx941", "gfx942"};
    if (!arch)
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
        size_t n = strlen(names[i]);
        /* the name may carry target features: "gfx90a:sramecc+:xnack-" */
        if (!strncmp(arch, names[i], n) && (arch[n] == '\0' || arch[n] == ':'))
            return 1;
    }
    return 0;
}

int bsa_hip_pad_dim(int64_t d)
{
    return d <= 0 ? 0 : d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : d <= 256 ? 256 : 0;
}

/* Rows of 16-byte loads: every batch/head/time stride a multiple of 8. */
static int strides_ok(const bsa_shape *s)
{
    const int64_t *st[4] = {s->q_stride, s->k_stride, s->v_stride, s->o_stride};
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j)
            if (st[i][j] % 8)
                return 0;
    return 1;
}

const char *bsa_hip_tile_decline(const bsa_shape *s, int wave)
{
    if (s->dtype != BSA_DTYPE_F16 && s->dtype != BSA_DTYPE_BF16)
        return "dtype is not f16/bf16";
    if (s->head_dim % 8 || s->v_dim % 8)
        return "head dim not a multiple of 8";
    if (s->head_dim > 128 || s->v_dim > 128)
        return "head dim above 128 (the tile forward's 64-row tiles fill the 64 KB of LDS)";
    if (wave != 32 && wave != 64)
        return "device wave width is neither 32 nor 64";
    if (!strides_ok(s))
        return "a batch/head/time stride is not a multiple of 8 elements";
    return NULL;
}

const char *bsa_hip_tile_bwd_decline(const bsa_shape *s)
{
    if (s->head_dim > 64 || s->v_dim > 64)
        return "head dim above 64 (the tile backward's tiles fill the 64 KB of LDS)";
    return NULL;
}

const char *bsa_hip_impl_name(int tile, int mfma)
{
    return !tile ? "hip-reference" : mfma ? "hip-mfma" : "hip-tile-fma";
}
