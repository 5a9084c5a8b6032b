/*
 * The GPU implementation list, shared by the CUDA and HIP backends and
 * compiled into every build (plain C, no GPU runtime), so that selection is
 * unit-tested on machines without a GPU (tests/test_dispatch.c).
 *
 * A plan's choice is made here, once, at plan creation: for the forward and
 * for the backward pass, the first entry of the list whose check accepts
 * the problem on the device.  A check reads only two plain structs: the
 * problem (dtypes, head dims, strides, plan flags and the layout's tile
 * statistics) and the device profile (vendor, architecture, shared memory
 * per block, multiprocessors, wave width, what the library holds for it).
 * It answers with the kernels the entry runs, or a one-line reason.
 *
 * A check has two parts: what the entry can run (capability) and whether it
 * is the best choice for the layout (preference: the measured thresholds of
 * bench/NOTES.md).  A forced entry (BSA_IMPL=<name>) is held to the first
 * part only, which is how slower or narrower paths are tested on any card.
 */
#ifndef BSA_GPU_DISPATCH_H
#define BSA_GPU_DISPATCH_H

#include "../../api/internal.h"
#include "kernel_smem.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bsa_gpu_vendor { BSA_GPU_NVIDIA = 1, BSA_GPU_AMD = 2 } bsa_gpu_vendor;

/* What the library holds for a device (bsa_gpu_profile::has). */
#define BSA_GPU_HAS_WGMMA 1u /* sm_90a kernels (sm_90 in BSA_CUDA_ARCHITECTURES) */
#define BSA_GPU_HAS_TMA 2u   /* the driver's tensor-map encoder */

/* A device as the checks see it; the backend fills it from the real device,
 * tests from a table of cards. */
typedef struct bsa_gpu_profile {
    bsa_gpu_vendor vendor;
    int cc;         /* NVIDIA: compute capability as 10 major + minor (86); AMD: 0 */
    char arch[48];  /* "sm_86"; AMD: the gcnArchName, "gfx942:sramecc+:xnack-" */
    int smem_optin; /* bytes of shared memory / LDS one block may use */
    int sms;        /* multiprocessors / compute units */
    int wave;       /* warp / wavefront width */
    unsigned has;   /* BSA_GPU_HAS_* */
} bsa_gpu_profile;

/* What the entries need to know of a layout, measured when its tables are
 * built (backends/gpu/tile_tables.cpp); index [0] natural key tiles (keys
 * [64 kt, 64 kt + 64)), [1] gathered ones (key blocks sorted by column
 * length, several to a tile; blocks below 64 only). */
typedef struct bsa_gpu_layout_stats {
    int block, heads, stride_perm;
    int64_t tile_pairs[2]; /* (query tile, key tile) pairs over all layout heads */
    /* over pairs of consecutive query tiles, (|A| + |B|) / (2 |A u B|) of
     * their key lists: how much of the merged walk of a 128-row tile is
     * used; col_pair_eff: the same of key tiles' query lists (dK/dV) */
    double pair_eff[2], col_pair_eff[2];
    int pred_tiles[2];  /* every mixed tile pair is a predicate over the whole tile */
    int gathered;       /* gathered tables exist (blocks < 64, not chunk-local) */
    int chunk_local;    /* every key tile of query tile qt is 2 (qt / 2) or 2 (qt / 2) + 1 */
    int brow;           /* block-row lists exist (blocks of 32, natural rows) */
    int64_t brow_tiles; /* their 32 x 64 tiles (two kept blocks each) */
} bsa_gpu_layout_stats;

/* A plan as the checks see it. */
typedef struct bsa_gpu_problem {
    bsa_dtype dtype;
    int head_dim, v_dim;
    int dpad; /* the kernels' padded head dim (32, 64, 128, 256) of max(head_dim, v_dim) */
    int heads, kv_heads;
    int strides8;  /* every batch / head / time stride a positive multiple of 8 elements */
    int offsets32; /* every row of a (batch, head) slice within a 32-bit offset of its first */
    int varlen, key_lengths; /* BSA_PLAN_VARLEN, BSA_PLAN_KEY_LENGTHS */
    bsa_gpu_layout_stats lay;
} bsa_gpu_problem;

/* What an entry runs: up to two kernels a pass. */
typedef struct bsa_gpu_pass_plan {
    int n;
    bsa_gpu_kernel k[2]; /* launch order */
    int gather;          /* the kernels read the gathered key-tile tables */
} bsa_gpu_pass_plan;

typedef struct bsa_gpu_entry bsa_gpu_entry;

/* A plan's choice. */
typedef struct bsa_gpu_choice {
    const bsa_gpu_entry *fwd_entry, *bwd_entry;
    bsa_gpu_pass_plan fwd, bwd;
    int feat;       /* kernels compiled with the code of the features beyond the seed */
    int align;      /* bytes every tensor pointer must be aligned to */
    char name[128]; /* "cuda-mma-sm80", or "fwd A, bwd B" where the passes differ */
} bsa_gpu_choice;

/* Entries of the list, best first, for inspection (README, tests). */
int bsa_gpu_entry_count(void);
const char *bsa_gpu_entry_name(int i);
bsa_gpu_vendor bsa_gpu_entry_vendor(int i);
/* 1 if entry i runs the forward (bwd = 0) or backward (bwd = 1) pass at all. */
int bsa_gpu_entry_serves(int i, int bwd);
/* 1 if the entry's kernels are tensor-core (matrix-unit) kernels. */
int bsa_gpu_entry_tensor_core(int i);

/* The padded head dim of the kernels: 32, 64, 128, 256; 0 above 256. */
int bsa_gpu_pad_dim(int64_t head_dim);
/* The matrix instructions the AMD tile (backends/hip/tile_amd.cuh) uses on
 * a target of this gcnArchName. */
typedef enum bsa_gpu_matrix {
    BSA_GPU_MATRIX_NONE = 0, /* scalar FMA (gfx1030, other RDNA2 / GCN) */
    BSA_GPU_MATRIX_MFMA,     /* CDNA: gfx90a, gfx940-942, gfx950 */
    BSA_GPU_MATRIX_WMMA      /* RDNA3 / 3.5 / 4: gfx110x, gfx115x, gfx120x (wave32) */
} bsa_gpu_matrix;
bsa_gpu_matrix bsa_gpu_arch_matrix(const char *arch);
/* The target the device's kernels are sized for (kernel_smem.h). */
bsa_gpu_target bsa_gpu_profile_target(const bsa_gpu_profile *pf);

/* Fills the problem's plan part from a validated shape and plan flags. */
void bsa_gpu_problem_init(bsa_gpu_problem *pb, const bsa_shape *s, unsigned flags,
                          const bsa_gpu_layout_stats *lay);

/* Chooses the entries.  force: an entry name (BSA_IMPL), or NULL / "" for
 * the list's own choice; force_reference: BSA_PLAN_FORCE_REFERENCE.  The
 * explanation (every entry tried per pass, with its reason) is written to
 * explain (truncated to len, NUL-terminated) when explain is not NULL.
 * Returns BSA_SUCCESS, or BSA_ERROR_UNSUPPORTED (an unknown or declining
 * forced entry; a problem no entry takes) with bsa_last_error() set. */
bsa_status bsa_gpu_select(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, const char *force,
                          int force_reference, bsa_gpu_choice *out, char *explain, size_t len);

#ifdef __cplusplus
}
#endif
#endif
