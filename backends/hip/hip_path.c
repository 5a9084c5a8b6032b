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

const char *bsa_hip_tile_decline(const bsa_shape *s, int wave)
{
    if (s->dtype != BSA_DTYPE_F16 && s->dtype != BSA_DTYPE_BF16)
        return "dtype is not f16/bf16";
    if (s->kv_heads != s->heads || s->v_dim != s->head_dim || s->varlen)
        return "grouped-query heads, a value head dim or packed sequences (features the tile "
               "forward lacks: the reference kernels run them)";
    if (s->head_dim > 128)
        return "head dim above 128 (the tile forward's LDS holds Q, K, V tiles of 128 columns)";
    if (wave != 32 && wave != 64)
        return "device wave width is neither 32 nor 64";
    /* grid.y is batch * heads */
    if (s->batch * s->heads > 65535)
        return "batch * heads above 65535";
    return NULL;
}

const char *bsa_hip_impl_name(int tile, int mfma)
{
    return !tile ? "hip-reference" : mfma ? "hip-mfma" : "hip-tile-fma";
}
