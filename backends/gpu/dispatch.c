/* The GPU implementation list: see dispatch.h. */
#include "dispatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* An entry: its checks write the kernels of an accepted pass into *pp, or
 * return the reason it declines (static text, or written into why). */
typedef const char *(*check_fn)(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                int forced, bsa_gpu_pass_plan *pp, char *why, size_t n);

struct bsa_gpu_entry {
    const char *name;
    bsa_gpu_vendor vendor;
    unsigned passes; /* 1: forward, 2: backward */
    int tensor_core;
    int align; /* bytes every tensor pointer must be aligned to (0: the element size) */
    check_fn check;
};

/* ------------------------------------------------------------ helpers */

static const char *say(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return why;
}

static bsa_gpu_kernel kern(bsa_gpu_family f, bsa_gpu_pass p, int rows, int stages)
{
    bsa_gpu_kernel k = {(unsigned char)f, (unsigned char)p, (unsigned char)rows,
                        (unsigned char)stages};
    return k;
}

static void add(bsa_gpu_pass_plan *pp, bsa_gpu_kernel k)
{
    pp->k[pp->n++] = k;
}

/* A family's kernels of a pass, 64 rows a block: the forward, or dK/dV
 * then dQ. */
static void add_pass(bsa_gpu_pass_plan *pp, bsa_gpu_family f, int bwd)
{
    if (bwd) {
        add(pp, kern(f, BSA_PASS_DKDV, 64, 0));
        add(pp, kern(f, BSA_PASS_DQ, 64, 0));
    } else {
        add(pp, kern(f, BSA_PASS_FWD, 64, 0));
    }
}

static int amd(const bsa_gpu_profile *pf)
{
    return pf->vendor == BSA_GPU_AMD;
}

bsa_gpu_target bsa_gpu_profile_target(const bsa_gpu_profile *pf)
{
    if (!amd(pf))
        return BSA_GPU_TARGET_NVIDIA;
    return bsa_gpu_arch_matrix(pf->arch) == BSA_GPU_MATRIX_MFMA ? BSA_GPU_TARGET_AMD_MFMA
                                                                : BSA_GPU_TARGET_AMD_OTHER;
}

static int has_features(const bsa_gpu_problem *pb)
{
    return pb->varlen || pb->key_lengths || pb->kv_heads != pb->heads;
}

/* Gathered key tiles pay when they cut the tile pairs by 20% or more. */
static int gather_pays(const bsa_gpu_layout_stats *l)
{
    return l->gathered && l->tile_pairs[1] * 10 <= l->tile_pairs[0] * 8;
}

/* Gathered key tiles of a per-head layout differ between the query heads
 * of a kv group: no dK/dV thread block owns one set of key rows. */
static const char *gathered_groups(const bsa_gpu_problem *pb, int gather)
{
    if (gather && pb->lay.heads > 1 && pb->kv_heads != pb->heads)
        return "gathered key tiles of a per-head layout differ between the query heads of a kv "
               "group: no dK/dV block owns one set of key rows";
    return NULL;
}

/* Whether a pass should run on gathered key tiles: they pay, and the pass
 * can take them. */
static int prefers_gather(const bsa_gpu_problem *pb, int bwd)
{
    return gather_pays(&pb->lay) && !(bwd && gathered_groups(pb, 1));
}

/* Whether a tile entry on natural (gather = 0) or gathered key tiles takes
 * the pass: the tables exist and can serve it, and (unless forced) they
 * are the form that pays. */
static const char *key_tiles(const bsa_gpu_problem *pb, int bwd, int forced, int gather)
{
    const char *r;
    if (gather && !pb->lay.gathered)
        return "the layout has no gathered key tiles (blocks of 64 or more, or chunk-local)";
    if (bwd && (r = gathered_groups(pb, gather)))
        return r;
    if (!forced && gather != prefers_gather(pb, bwd))
        return gather ? "gathered key tiles do not cut the tile pairs by 20%"
                      : "gathered key tiles cut the tile pairs by 20% or more";
    return NULL;
}

/* The shared-memory check of every kernel a pass runs. */
static const char *fits(const bsa_gpu_pass_plan *pp, const bsa_gpu_problem *pb,
                        const bsa_gpu_profile *pf, char *why, size_t n)
{
    for (int i = 0; i < pp->n; i++) {
        size_t need = bsa_gpu_kernel_smem(pp->k[i], pb->dpad, bsa_gpu_profile_target(pf));
        /* the Volta kernels' own static arrays come on top */
        if (need && pp->k[i].family == BSA_FAM_VOLTA)
            need += 256;
        if (!need || need > (size_t)pf->smem_optin)
            return say(why, n,
                       "needs %zu bytes of shared memory per block at padded head dim %d; "
                       "the device allows %d",
                       need, pb->dpad, pf->smem_optin);
    }
    return NULL;
}

/* Tensor-core operands: f16 / bf16 rows loaded 16 bytes at a time. */
static const char *tc_operands(const bsa_gpu_problem *pb)
{
    if (pb->dtype != BSA_DTYPE_F16 && pb->dtype != BSA_DTYPE_BF16)
        return "the tensor-core kernels take f16 / bf16 (f32 runs on the reference kernels)";
    if (!pb->strides8)
        return "a batch / head / time stride is not a positive multiple of 8 elements "
               "(rows are loaded 16 bytes at a time)";
    return NULL;
}

static const char *need_cc(const bsa_gpu_profile *pf, int lo, const char *what, char *why, size_t n)
{
    if (pf->vendor != BSA_GPU_NVIDIA || pf->cc < lo)
        return say(why, n, "%s needs compute capability %d.%d or newer; the device is %s", what,
                   lo / 10, lo % 10, pf->arch);
    return NULL;
}

static const char *need_sm90(const bsa_gpu_profile *pf, char *why, size_t n)
{
    if (pf->vendor != BSA_GPU_NVIDIA || pf->cc != 90)
        return say(why, n, "wgmma (sm_90a) needs a compute capability 9.0 device; the device is %s",
                   pf->arch);
    if (!(pf->has & BSA_GPU_HAS_WGMMA))
        return "the library was built without sm_90 in BSA_CUDA_ARCHITECTURES";
    return NULL;
}

/* The tile family's dK/dV: two query-side stages where they fit, else one
 * (sm_86 / sm_89 / sm_120 at head dim 128: 99 KB a block). */
static bsa_gpu_kernel tile_dkdv(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf)
{
    const bsa_gpu_target t = bsa_gpu_profile_target(pf);
    int st = BSA_SMEM_TILE_STAGES(pb->dpad, t);
    if (st == 2 && pb->dpad == 128 && t == BSA_GPU_TARGET_NVIDIA &&
        BSA_SMEM_TILE_DKDV(128, 2, t) > (size_t)pf->smem_optin)
        st = 1;
    return kern(BSA_FAM_TILE, BSA_PASS_DKDV, 64, st);
}

/* ------------------------------------------------------------ entries */

static const char *check_blockrow(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                  int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r;
    const bsa_gpu_layout_stats *l = &pb->lay;
    if ((r = need_cc(pf, 80, "mma.sync m16n8k16", why, n)) || (r = tc_operands(pb)))
        return r;
    if (!l->brow)
        return l->stride_perm ? "the block-row kernels address natural rows: the layout uses "
                                "the strided permutation"
                              : say(why, n,
                                    "the block-row kernels take blocks of 32; the layout's "
                                    "are %d",
                                    l->block);
    if (has_features(pb))
        return "the block-row kernels take no kv groups, key lengths or packed sequences";
    if (!pb->offsets32)
        return "a (batch, head) slice spans more than 2^31 elements (32-bit row offsets)";
    if (pb->dpad > (bwd ? 64 : 128))
        return bwd ? "the block-row backward keeps Q and dO fragments in registers: head dims "
                     "up to 64"
                   : "the block-row forward keeps Q fragments in registers: head dims up to 128";
    if (!forced) {
        if (l->chunk_local)
            return "the layout is chunk-local: the chunk kernels read each chunk once";
        int g = prefers_gather(pb, bwd);
        /* 32 x 64 block-row tiles against 64 x 64 tile pairs: the rows pay
         * from 1.5x the area (bench/NOTES.md, v34) */
        if (l->brow_tiles * 3 > l->tile_pairs[g] * 4)
            return say(why, n,
                       "the %s tile pairs compute %.2fx the block rows' area (the block rows "
                       "pay from 1.5x)",
                       g ? "gathered" : "natural",
                       l->brow_tiles ? 2.0 * l->tile_pairs[g] / l->brow_tiles : 0.0);
    }
    add_pass(pp, BSA_FAM_BROW, bwd);
    return fits(pp, pb, pf, why, n);
}

static const char *chunk_common(const bsa_gpu_problem *pb)
{
    if (!pb->lay.chunk_local)
        return "the layout is not chunk-local (a 64-row tile's keys outside its 128-row chunk)";
    if (has_features(pb))
        return "the chunk kernels take no kv groups, key lengths or packed sequences";
    return NULL;
}

static const char *check_wgmma_chunk(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                     int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r;
    if ((r = need_sm90(pf, why, n)) || (r = tc_operands(pb)) || (r = chunk_common(pb)))
        return r;
    if (pb->dpad != 64 && pb->dpad != 128)
        return "the wgmma chunk forward takes head dims 33..128";
    add(pp, kern(BSA_FAM_WGMMA_CHUNK, BSA_PASS_FWD, 128, 0));
    return fits(pp, pb, pf, why, n);
}

static const char *check_chunk(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                               int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r;
    if ((r = need_cc(pf, 80, "mma.sync m16n8k16", why, n)) || (r = tc_operands(pb)) ||
        (r = chunk_common(pb)))
        return r;
    if (pb->dpad > 128)
        return "the chunk kernels take head dims up to 128";
    add(pp, kern(BSA_FAM_CHUNK, bwd ? BSA_PASS_BWD : BSA_PASS_FWD, 128, 0));
    return fits(pp, pb, pf, why, n);
}

static const char *check_wgmma_ws(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                  int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r;
    const bsa_gpu_layout_stats *l = &pb->lay;
    if ((r = need_sm90(pf, why, n)) || (r = tc_operands(pb)))
        return r;
    if (!(pf->has & BSA_GPU_HAS_TMA))
        return "the driver has no tensor-map encoder (cuTensorMapEncodeTiled)";
    if (pb->dpad != 64 && pb->dpad != 128)
        return "the warp-specialised forward takes head dims 33..128";
    if (l->stride_perm)
        return "TMA boxes address natural rows: the layout uses the strided permutation";
    if (pb->varlen || pb->key_lengths)
        return "the warp-specialised forward takes no key lengths or packed sequences";
    if (!forced) {
        if (prefers_gather(pb, 0))
            return "gathered key tiles pay on this layout; TMA boxes are natural key tiles";
        /* from 0.75 of the merged walk used (local windows) it beats the
         * 64-row kernels (bench/NOTES.md, v32) */
        if (l->pair_eff[0] < 0.75)
            return say(why, n,
                       "consecutive query tiles share %.2f of their key tiles (it pays from "
                       "0.75)",
                       l->pair_eff[0]);
    }
    add(pp, kern(BSA_FAM_WGMMA_WS, BSA_PASS_FWD, 128, 0));
    return fits(pp, pb, pf, why, n);
}

/* The Hopper tile kernels on natural (gather = 0) or gathered key tiles:
 * the 128-row forward, and dQ / dK/dV on tile pairs whose lists agree (the
 * other of the two on mma.sync). */
static const char *wgmma_tiles(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                               int forced, int gather, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r;
    const bsa_gpu_layout_stats *l = &pb->lay;
    if ((r = need_sm90(pf, why, n)) || (r = tc_operands(pb)))
        return r;
    if (pb->dpad != 64 && pb->dpad != 128)
        return "the wgmma kernels take head dims 33..128";
    if ((r = key_tiles(pb, bwd, forced, gather)))
        return r;
    pp->gather = gather;
    const double eff = l->pair_eff[gather], ceff = l->col_pair_eff[gather];
    if (!bwd) {
        /* the 128-row forward wins where consecutive tiles agree (v12-v14) */
        if (!forced && eff < 0.9)
            return say(why, n,
                       "consecutive query tiles share %.2f of their key tiles (the 128-row "
                       "forward pays from 0.9)",
                       eff);
        add(pp, kern(BSA_FAM_WGMMA, BSA_PASS_FWD, 128, 0));
        return fits(pp, pb, pf, why, n);
    }
    /* dK/dV on wgmma wins at head dim 128, and at 64 on natural key tiles;
     * on gathered ones at 64 mma.sync stays ahead (bench/NOTES.md, v27) */
    const int dkdv = forced || (ceff >= 0.9 && (pb->dpad == 128 || !gather));
    const int dq = forced || eff >= 0.9;
    if (!dkdv && !dq)
        return say(why, n,
                   "neither dQ's query-tile pairs (%.2f) nor dK/dV's key-tile pairs (%.2f) "
                   "agree to 0.9",
                   eff, ceff);
    add(pp, dkdv ? kern(BSA_FAM_WGMMA, BSA_PASS_DKDV, 128, 0) : tile_dkdv(pb, pf));
    add(pp, dq ? kern(BSA_FAM_WGMMA, BSA_PASS_DQ, 128, 0) : kern(BSA_FAM_TILE, BSA_PASS_DQ, 64, 0));
    return fits(pp, pb, pf, why, n);
}

static const char *check_wgmma(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                               int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    return wgmma_tiles(pb, pf, bwd, forced, 0, pp, why, n);
}

static const char *check_wgmma_gather(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                      int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    return wgmma_tiles(pb, pf, bwd, forced, 1, pp, why, n);
}

/* The 64-row tile kernels (mma.sync; on AMD the MFMA or FMA tile). */
static const char *tiles(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd, int forced,
                         int gather, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r;
    const bsa_gpu_layout_stats *l = &pb->lay;
    if ((r = tc_operands(pb)))
        return r;
    if (amd(pf)) {
        if (pf->wave != 32 && pf->wave != 64)
            return say(why, n, "the device's wave width %d is neither 32 nor 64", pf->wave);
        /* the instances compiled for AMD (gen_instances.py): up to head dim
         * 128 in 64 KB of LDS, the backward at 128 with own-row operands in
         * registers (tc_kernels.cuh, kSplitBwd where there is no MFMA); the
         * FMA tile's backward up to 64 */
        const bsa_gpu_matrix mx = bsa_gpu_arch_matrix(pf->arch);
        if (pb->dpad > 128)
            return bwd ? "the tile backward takes head dims up to 128 on AMD"
                       : "the tile forward's tiles fill 64 KB of LDS above head dim 128";
        if (bwd && pb->dpad > 64 && mx == BSA_GPU_MATRIX_NONE)
            return "the FMA tile backward takes head dims up to 64 (above, it is not held to "
                   "the no-scratch rule)";
    }
    if ((r = key_tiles(pb, bwd, forced, gather)))
        return r;
    pp->gather = gather;
    if (!bwd) {
        /* the 128-row forward halves the shared-memory reads per product
         * but needs twice the accumulators: it wins at head dim 128 when
         * both halves walk nearly the same key list (bench/NOTES.md, v4) */
        const int rows128 = !amd(pf) && !gather && pb->dpad == 128 && l->pair_eff[0] >= 0.9 &&
                            BSA_SMEM_TILE_FWD128(128) <= (size_t)pf->smem_optin;
        add(pp, kern(BSA_FAM_TILE, BSA_PASS_FWD, rows128 ? 128 : 64, 0));
        return fits(pp, pb, pf, why, n);
    }
    add(pp, tile_dkdv(pb, pf));
    add(pp, kern(BSA_FAM_TILE, BSA_PASS_DQ, 64, 0));
    return fits(pp, pb, pf, why, n);
}

static const char *check_mma_gather(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                    int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r = need_cc(pf, 80, "mma.sync m16n8k16", why, n);
    return r ? r : tiles(pb, pf, bwd, forced, 1, pp, why, n);
}

static const char *check_mma(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                             int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r = need_cc(pf, 80, "mma.sync m16n8k16", why, n);
    return r ? r : tiles(pb, pf, bwd, forced, 0, pp, why, n);
}

static const char *check_volta(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                               int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    const char *r;
    if ((r = need_cc(pf, 70, "wmma", why, n)))
        return r;
    if (pb->dtype != BSA_DTYPE_F16)
        return "the Volta path takes f16 only (Volta has no bf16 Tensor Core instruction)";
    if ((r = tc_operands(pb)))
        return r;
    if (pb->dpad > 128)
        return "the Volta path takes head dims up to 128";
    pp->gather = prefers_gather(pb, bwd);
    add_pass(pp, BSA_FAM_VOLTA, bwd);
    return fits(pp, pb, pf, why, n);
}

static const char *check_amd_tile(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                  int forced, bsa_gpu_pass_plan *pp, char *why, size_t n,
                                  bsa_gpu_matrix kind)
{
    static const char *const what[] = {"no MFMA / WMMA f16 / bf16 instructions: the FMA tile",
                                       "MFMA: the tile compiles to it there",
                                       "WMMA: the tile compiles to it there"};
    if (!amd(pf))
        return "an AMD entry";
    const bsa_gpu_matrix has = bsa_gpu_arch_matrix(pf->arch);
    if (has != kind)
        return say(why, n, "%s has %s", pf->arch, what[has]);
    if (kind == BSA_GPU_MATRIX_WMMA && pf->wave != 32)
        return say(why, n, "the WMMA tile is a wave32 one; the device runs wave %d", pf->wave);
    /* the key tiles the layout's tables favour */
    return tiles(pb, pf, bwd, 1, prefers_gather(pb, bwd), pp, why, n);
}

static const char *check_mfma(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                              int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    return check_amd_tile(pb, pf, bwd, forced, pp, why, n, BSA_GPU_MATRIX_MFMA);
}

static const char *check_wmma(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                              int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    return check_amd_tile(pb, pf, bwd, forced, pp, why, n, BSA_GPU_MATRIX_WMMA);
}

static const char *check_tile_fma(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                  int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    return check_amd_tile(pb, pf, bwd, forced, pp, why, n, BSA_GPU_MATRIX_NONE);
}

/* The scalar fp32 reference kernels: every valid problem (CSR walk). */
static const char *check_reference(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, int bwd,
                                   int forced, bsa_gpu_pass_plan *pp, char *why, size_t n)
{
    add_pass(pp, BSA_FAM_REF, bwd);
    return NULL;
}

enum { FWD = 1, BWD = 2 };

static const bsa_gpu_entry entries[] = {
    {"cuda-mma-sm80-blockrow", BSA_GPU_NVIDIA, FWD | BWD, 1, 16, check_blockrow},
    {"cuda-wgmma-sm90a-chunk", BSA_GPU_NVIDIA, FWD, 1, 16, check_wgmma_chunk},
    {"cuda-mma-sm80-chunk", BSA_GPU_NVIDIA, FWD | BWD, 1, 16, check_chunk},
    {"cuda-wgmma-sm90a-ws", BSA_GPU_NVIDIA, FWD, 1, 16, check_wgmma_ws},
    {"cuda-wgmma-sm90a", BSA_GPU_NVIDIA, FWD | BWD, 1, 16, check_wgmma},
    {"cuda-wgmma-sm90a-gather", BSA_GPU_NVIDIA, FWD | BWD, 1, 16, check_wgmma_gather},
    {"cuda-mma-sm80-gather", BSA_GPU_NVIDIA, FWD | BWD, 1, 16, check_mma_gather},
    {"cuda-mma-sm80", BSA_GPU_NVIDIA, FWD | BWD, 1, 16, check_mma},
    {"cuda-wmma-sm70", BSA_GPU_NVIDIA, FWD | BWD, 1, 16, check_volta},
    {"cuda-reference", BSA_GPU_NVIDIA, FWD | BWD, 0, 0, check_reference},
    {"hip-mfma", BSA_GPU_AMD, FWD | BWD, 1, 16, check_mfma},
    {"hip-wmma", BSA_GPU_AMD, FWD | BWD, 1, 16, check_wmma},
    {"hip-tile-fma", BSA_GPU_AMD, FWD | BWD, 0, 16, check_tile_fma},
    {"hip-reference", BSA_GPU_AMD, FWD | BWD, 0, 0, check_reference},
};
enum { n_entries = (int)(sizeof entries / sizeof entries[0]) };

int bsa_gpu_entry_count(void)
{
    return n_entries;
}

const char *bsa_gpu_entry_name(int i)
{
    return i >= 0 && i < n_entries ? entries[i].name : NULL;
}

bsa_gpu_vendor bsa_gpu_entry_vendor(int i)
{
    return i >= 0 && i < n_entries ? entries[i].vendor : (bsa_gpu_vendor)0;
}

int bsa_gpu_entry_serves(int i, int bwd)
{
    return i >= 0 && i < n_entries && (entries[i].passes & (bwd ? BWD : FWD)) != 0;
}

int bsa_gpu_entry_tensor_core(int i)
{
    return i >= 0 && i < n_entries && entries[i].tensor_core;
}

/* ------------------------------------------------------------ sizes */

size_t bsa_gpu_kernel_smem(bsa_gpu_kernel k, int dp, bsa_gpu_target t)
{
    if (dp != 32 && dp != 64 && dp != 128 && dp != 256)
        return 0;
    switch ((bsa_gpu_family)k.family) {
    case BSA_FAM_TILE:
        switch ((bsa_gpu_pass)k.pass) {
        case BSA_PASS_FWD:
            return k.rows == 128 ? (dp <= 128 ? BSA_SMEM_TILE_FWD128(dp) : 0)
                                 : BSA_SMEM_TILE_FWD(dp, t);
        case BSA_PASS_DQ:
            return BSA_SMEM_TILE_DQ(dp, t);
        case BSA_PASS_DKDV:
            return BSA_SMEM_TILE_DKDV(dp, k.stages ? k.stages : BSA_SMEM_TILE_STAGES(dp, t), t);
        default:
            return 0;
        }
    case BSA_FAM_BROW:
        if (dp > 128 || (dp > 64 && k.pass != BSA_PASS_FWD))
            return 0;
        return k.pass == BSA_PASS_FWD  ? BSA_SMEM_BROW_FWD(dp)
               : k.pass == BSA_PASS_DQ ? BSA_SMEM_BROW_DQ(dp)
                                       : BSA_SMEM_BROW_DKDV(dp);
    case BSA_FAM_CHUNK:
        if (dp > 128)
            return 0;
        return k.pass == BSA_PASS_FWD ? BSA_SMEM_CHUNK_FWD(dp) : BSA_SMEM_CHUNK_BWD(dp);
    case BSA_FAM_WGMMA:
        if (dp != 64 && dp != 128)
            return 0;
        return k.pass == BSA_PASS_FWD  ? BSA_SMEM_WGMMA_FWD(dp)
               : k.pass == BSA_PASS_DQ ? BSA_SMEM_WGMMA_DQ(dp)
                                       : BSA_SMEM_WGMMA_DKDV(dp);
    case BSA_FAM_WGMMA_WS:
        return dp == 64 || dp == 128 ? BSA_SMEM_WGMMA_WS(dp) : 0;
    case BSA_FAM_WGMMA_CHUNK:
        return dp == 64 || dp == 128 ? BSA_SMEM_WGMMA_CHUNK(dp) : 0;
    case BSA_FAM_VOLTA:
        if (dp > 128)
            return 0;
        return k.pass == BSA_PASS_FWD  ? BSA_SMEM_VOLTA_FWD(dp)
               : k.pass == BSA_PASS_DQ ? BSA_SMEM_VOLTA_DQ(dp)
                                       : BSA_SMEM_VOLTA_DKDV(dp);
    case BSA_FAM_REF:
        return 1; /* no dynamic shared memory; 1: the kernel exists */
    default:
        return 0;
    }
}

/* ------------------------------------------------------------ selection */

int bsa_gpu_pad_dim(int64_t d)
{
    return d <= 0 ? 0 : d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : d <= 256 ? 256 : 0;
}

/* Whether arch names a processor of the list; "*" in a name matches one
 * hexadecimal digit.  The name may carry target features:
 * "gfx90a:sramecc+:xnack-". */
static int arch_in(const char *arch, const char *const *names, size_t count)
{
    if (!arch)
        return 0;
    for (size_t i = 0; i < count; i++) {
        const char *p = names[i], *a = arch;
        while (*p && (*p == '*' ? strchr("0123456789abcdef", *a) && *a : *a == *p))
            p++, a++;
        if (!*p && (*a == '\0' || *a == ':'))
            return 1;
    }
    return 0;
}

bsa_gpu_matrix bsa_gpu_arch_matrix(const char *arch)
{
    /* CDNA2 / CDNA3 / CDNA4: v_mfma_f32_16x16x16{f16,bf16_1k} (tile_amd.cuh) */
    static const char *const mfma[] = {"gfx90a", "gfx940", "gfx941", "gfx942", "gfx950"};
    /* RDNA3 / RDNA3.5 (gfx110x, gfx115x) and RDNA4 (gfx120x):
     * v_wmma_f32_16x16x16_{f16,bf16}, wave32 */
    static const char *const wmma[] = {"gfx110*", "gfx115*", "gfx120*"};
    if (arch_in(arch, mfma, sizeof mfma / sizeof mfma[0]))
        return BSA_GPU_MATRIX_MFMA;
    if (arch_in(arch, wmma, sizeof wmma / sizeof wmma[0]))
        return BSA_GPU_MATRIX_WMMA;
    return BSA_GPU_MATRIX_NONE;
}

void bsa_gpu_problem_init(bsa_gpu_problem *pb, const bsa_shape *s, unsigned flags,
                          const bsa_gpu_layout_stats *lay)
{
    memset(pb, 0, sizeof *pb);
    pb->dtype = s->dtype;
    pb->head_dim = (int)s->head_dim;
    pb->v_dim = (int)s->v_dim;
    pb->dpad = bsa_gpu_pad_dim(s->head_dim > s->v_dim ? s->head_dim : s->v_dim);
    pb->heads = (int)s->heads;
    pb->kv_heads = (int)s->kv_heads;
    pb->varlen = s->varlen;
    pb->key_lengths = (flags & BSA_PLAN_KEY_LENGTHS) != 0;
    const int64_t *st[4] = {s->q_stride, s->k_stride, s->v_stride, s->o_stride};
    const int64_t rows[4] = {s->seq_q, s->seq_k, s->seq_k, s->seq_q};
    pb->strides8 = 1;
    pb->offsets32 = 1;
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 3; j++)
            if (st[i][j] <= 0 || st[i][j] % 8)
                pb->strides8 = 0;
        /* every row of a (batch, head) slice within a 32-bit element offset
         * of its first row (the block-row loaders' addressing) */
        const int64_t lim = INT32_MAX - 256;
        if (st[i][2] < 0 || (rows[i] > 0 && st[i][2] > lim / rows[i]))
            pb->offsets32 = 0;
    }
    if (lay)
        pb->lay = *lay;
}

static const char *kernel_name(bsa_gpu_kernel k, char *buf, size_t n)
{
    static const char *const fam[] = {"tile",     "block-row",   "chunk", "wgmma",
                                      "wgmma-ws", "wgmma-chunk", "volta", "reference"};
    static const char *const pass[] = {"fwd", "dq", "dkdv", "dq+dkdv"};
    snprintf(buf, n, "%s %s x%d%s", fam[k.family], pass[k.pass], k.rows,
             k.stages == 1 ? " (one stage)" : "");
    return buf;
}

/* Appends to the explanation (bounded). */
typedef struct text {
    char *buf;
    size_t len, at;
} text;

static void put(text *t, const char *fmt, ...)
{
    if (!t->buf || t->at + 1 >= t->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(t->buf + t->at, t->len - t->at, fmt, ap);
    va_end(ap);
    if (w > 0)
        t->at = t->at + (size_t)w < t->len ? t->at + (size_t)w : t->len - 1;
}

static void put_pass(text *t, const bsa_gpu_pass_plan *pp)
{
    char kb[64];
    for (int i = 0; i < pp->n; i++)
        put(t, "%s%s", i ? ", " : "", kernel_name(pp->k[i], kb, sizeof kb));
    if (pp->gather)
        put(t, " on gathered key tiles");
}

static int find_entry(const char *name, bsa_gpu_vendor v)
{
    for (int i = 0; i < n_entries; i++)
        if (entries[i].vendor == v && !strcmp(entries[i].name, name))
            return i;
    return -1;
}

bsa_status bsa_gpu_select(const bsa_gpu_problem *pb, const bsa_gpu_profile *pf, const char *force,
                          int force_reference, bsa_gpu_choice *out, char *explain, size_t len)
{
    text t = {explain, len, 0};
    if (explain && len)
        explain[0] = '\0';
    memset(out, 0, sizeof *out);
    const char *vname = pf->vendor == BSA_GPU_AMD ? "hip" : "cuda";
    int forced = -1;
    if (force_reference)
        force = pf->vendor == BSA_GPU_AMD ? "hip-reference" : "cuda-reference";
    if (force && *force) {
        forced = find_entry(force, pf->vendor);
        if (forced < 0) {
            char known[512];
            size_t at = 0;
            known[0] = '\0';
            for (int i = 0; i < n_entries; i++)
                if (entries[i].vendor == pf->vendor)
                    at += (size_t)snprintf(known + at, at < sizeof known ? sizeof known - at : 0,
                                           "%s%s", at ? ", " : "", entries[i].name);
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "%s backend: BSA_IMPL=%s names no implementation of this backend; "
                            "known: %s",
                            vname, force, known);
        }
    }
    put(&t,
        "%s %s, head dim %d (kernels %d), %d heads / %d kv heads, layout block "
        "%d, device %s (%d KB shared memory a block, %d SMs, wave %d)%s%s\n",
        vname,
        pb->dtype == BSA_DTYPE_F16    ? "f16"
        : pb->dtype == BSA_DTYPE_BF16 ? "bf16"
                                      : "f32",
        pb->head_dim > pb->v_dim ? pb->head_dim : pb->v_dim, pb->dpad, pb->heads, pb->kv_heads,
        pb->lay.block, pf->arch, pf->smem_optin / 1024, pf->sms, pf->wave,
        forced >= 0 ? ", forced: " : "", forced >= 0 ? entries[forced].name : "");
    int align = 1;
    for (int bwd = 0; bwd < 2; bwd++) {
        bsa_gpu_pass_plan *pp = bwd ? &out->bwd : &out->fwd;
        const bsa_gpu_entry **chosen = bwd ? &out->bwd_entry : &out->fwd_entry;
        put(&t, "%s:\n", bwd ? "backward" : "forward");
        for (int i = 0; i < n_entries && !*chosen; i++) {
            const bsa_gpu_entry *e = &entries[i];
            const int is_forced = forced >= 0 && entries[forced].passes & (bwd ? BWD : FWD);
            if (e->vendor != pf->vendor || !(e->passes & (bwd ? BWD : FWD)))
                continue;
            if (is_forced && i != forced)
                continue;
            char why[256];
            memset(pp, 0, sizeof *pp);
            const char *r = e->check(pb, pf, bwd, is_forced, pp, why, sizeof why);
            if (r) {
                put(&t, "  %-24s declined: %s\n", e->name, r);
                if (is_forced)
                    return bsa_fail(BSA_ERROR_UNSUPPORTED,
                                    "%s backend: BSA_IMPL=%s declined the %s pass: %s", vname,
                                    e->name, bwd ? "backward" : "forward", r);
                continue;
            }
            *chosen = e;
            put(&t, "  %-24s chosen: ", e->name);
            put_pass(&t, pp);
            put(&t, "\n");
        }
        if (!*chosen) /* (the reference entry accepts every problem) */
            return bsa_fail(BSA_ERROR_UNSUPPORTED,
                            "%s backend: no implementation takes the %s pass", vname,
                            bwd ? "backward" : "forward");
        const int a = (*chosen)->align ? (*chosen)->align : pb->dtype == BSA_DTYPE_F32 ? 4 : 2;
        if (a > align)
            align = a;
    }
    out->align = align;
    out->feat = has_features(pb);
    if (out->fwd_entry == out->bwd_entry)
        snprintf(out->name, sizeof out->name, "%s", out->fwd_entry->name);
    else
        snprintf(out->name, sizeof out->name, "fwd %s, bwd %s", out->fwd_entry->name,
                 out->bwd_entry->name);
    put(&t, "implementation: %s; every tensor pointer %d-byte aligned\n", out->name, align);
    return BSA_SUCCESS;
}
