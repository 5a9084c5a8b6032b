/*
 * Host-only decisions of the HIP backend, in plain C so that they are unit
 * tested without a device (tests/test_hip_host.c): which implementation a
 * plan gets, and why a faster one declined it.
 */
#ifndef BSA_HIP_PATH_H
#define BSA_HIP_PATH_H

#include "../../api/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if a device of this gcnArchName ("gfx90a:sramecc+:xnack-", "gfx942")
 * has the MFMA f16 and bf16_1k instructions the tile uses (the targets the
 * tile compiles MFMA for), else 0. */
int bsa_hip_arch_mfma(const char *arch);

/* Head dim padded to the kernels' 32 / 64 / 128 / 256; 0 above 256. */
int bsa_hip_pad_dim(int64_t head_dim);

/* Why the tile kernels cannot take this shape on a device of wave width
 * `wave` (NULL if they can), and why the tile backward cannot (given the
 * first accepts); those plans run on the reference kernels. */
const char *bsa_hip_tile_decline(const bsa_shape *s, int wave);
const char *bsa_hip_tile_bwd_decline(const bsa_shape *s);

/* Implementation name: tile = 1 for the matrix-tile forward, mfma = 1 when
 * its tile is MFMA ("hip-mfma"; "hip-tile-fma" otherwise); tile = 0 gives
 * "hip-reference". */
const char *bsa_hip_impl_name(int tile, int mfma);

#ifdef __cplusplus
}
#endif
#endif
