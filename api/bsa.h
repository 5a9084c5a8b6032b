/*
 * bsa — block-sparse attention.  The only public header.
 *
 * Conventions (see README.md):
 *   - every function returns a bsa_status; results come back through
 *     out-parameters; bsa_last_error() (thread-local) says why a call failed;
 *   - a failing call leaves its outputs untouched;
 *   - tensors are described by dims and strides in the logical order
 *     [batch, heads, time, dim], so both [batch, time, heads*dim] (the seed's)
 *     and [batch, heads, time, dim] work without copies;
 *   - nothing in the library aborts on user input.
 */
#ifndef BSA_H
#define BSA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define BSA_API __declspec(dllexport)
#elif defined(__GNUC__)
#define BSA_API __attribute__((visibility("default")))
#else
#define BSA_API
#endif

/* BSA_VERSION_MAJOR, _MINOR, _PATCH, BSA_VERSION_STRING and BSA_VERSION
 * (10000 * major + 100 * minor + patch): the header that CMake generates
 * from the project version, installed beside this one. */
#include "bsa_version.h"

/* ------------------------------------------------------------------ status */

typedef enum bsa_status {
    BSA_SUCCESS = 0,
    BSA_ERROR_NULL_POINTER,        /* a required pointer argument is NULL */
    BSA_ERROR_INVALID_ARGUMENT,    /* a value is out of its allowed range */
    BSA_ERROR_INVALID_SHAPE,       /* a length is not a multiple of the block size, ... */
    BSA_ERROR_SHAPE_MISMATCH,      /* q, k, v, o (or the layout) disagree */
    BSA_ERROR_UNSUPPORTED,         /* valid, but not supported (block size, head dim, stride) */
    BSA_ERROR_INVALID_DTYPE,       /* unknown dtype */
    BSA_ERROR_OVERFLOW,            /* a size product overflows 64-bit arithmetic */
    BSA_ERROR_OUT_OF_MEMORY,       /* host or device allocation failed */
    BSA_ERROR_BACKEND_UNAVAILABLE, /* backend not compiled into this build */
    BSA_ERROR_NO_DEVICE,           /* backend compiled, but no usable device */
    BSA_ERROR_DEVICE,              /* the device runtime reported an error */
    BSA_ERROR_WORKSPACE,           /* workspace missing or too small */
    BSA_ERROR_CONTEXT_MISMATCH,    /* handles from different contexts mixed */
    BSA_ERROR_CALLBACK,            /* a user callback reported failure */
    BSA_ERROR_INTERNAL             /* a bug in bsa: please report */
} bsa_status;

/* Never NULL; a static string such as "BSA_ERROR_INVALID_SHAPE". */
BSA_API const char *bsa_status_string(bsa_status status);

/* Detail message of the last failing call on this thread ("" if none). */
BSA_API const char *bsa_last_error(void);

/* The loaded library's version (compare with the BSA_VERSION_* macros the
 * caller was compiled against); NULL pointers are skipped. */
BSA_API void bsa_version(int *major, int *minor, int *patch);

/* ------------------------------------------------------------------ enums */

typedef enum bsa_dtype { BSA_DTYPE_F32 = 0, BSA_DTYPE_F16 = 1, BSA_DTYPE_BF16 = 2 } bsa_dtype;

typedef enum bsa_backend {
    BSA_BACKEND_AUTO = 0, /* first compiled backend with a device: CUDA, HIP, CPU */
    BSA_BACKEND_CPU = 1,
    BSA_BACKEND_CUDA = 2,
    BSA_BACKEND_HIP = 3
} bsa_backend;

BSA_API const char *bsa_backend_name(bsa_backend backend);
/* 1 if the backend was compiled into this library. */
BSA_API int bsa_backend_compiled(bsa_backend backend);

/* ---------------------------------------------------------------- context */

typedef struct bsa_context *bsa_context_t;

typedef struct bsa_context_params {
    bsa_backend backend; /* AUTO by default; env BSA_BACKEND=cpu|cuda|hip overrides AUTO */
    int device;          /* device index for GPU backends */
    int num_threads;     /* CPU threads; 0 = OpenMP default */
} bsa_context_params;

/* params may be NULL (all defaults). */
BSA_API bsa_status bsa_context_create(bsa_context_t *ctx, const bsa_context_params *params);
/* Destroying NULL is a no-op.  Destroy plans and layouts first. */
/* Refused (BSA_ERROR_INVALID_ARGUMENT, with the counts) while layouts or
 * plans created with the context are alive: destroy plans, then layouts,
 * then the context.  NULL is accepted and does nothing. */
BSA_API bsa_status bsa_context_destroy(bsa_context_t ctx);
BSA_API bsa_status bsa_context_backend(bsa_context_t ctx, bsa_backend *backend);

/* ----------------------------------------------------------------- layout */

typedef struct bsa_layout *bsa_layout_t;

/* Built-in element predicates, evaluated on the fly, costing no memory.
 * Coordinates are absolute positions in layout order (for the strided
 * pattern: permuted order).  An element is kept iff its block is in the
 * layout, its callback bit (if any) is set, and every predicate holds. */
enum {
    BSA_PRED_NONE = 0,
    BSA_PRED_CAUSAL = 1 << 0, /* k <= q */
    BSA_PRED_WINDOW = 1 << 1, /* |q - k| < window (with CAUSAL: 0 <= q-k < window) */
    BSA_PRED_PREFIX = 1 << 2  /* the seed's autoregress_at_key: k < prefix || k <= q */
};

typedef struct bsa_layout_desc {
    int block;           /* 8, 16, 32, 64 or 128 */
    int heads;           /* 1 (shared by all heads) or H */
    int q_blocks;        /* query length = q_blocks * block */
    int k_blocks;        /* key length = k_blocks * block */
    unsigned predicates; /* BSA_PRED_* flags */
    int window;          /* for BSA_PRED_WINDOW */
    int prefix;          /* for BSA_PRED_PREFIX */
} bsa_layout_desc;

/* Dense 0/1 block matrix [heads][q_blocks][k_blocks] (row-major, nonzero = kept). */
BSA_API bsa_status bsa_layout_create_dense(bsa_context_t ctx, bsa_layout_t *layout,
                                           const bsa_layout_desc *desc, const uint8_t *blocks);

typedef enum bsa_pattern {
    BSA_PATTERN_ALL = 0,     /* causal: k <= q;               bidirectional: every pair */
    BSA_PATTERN_LOCAL = 1,   /* causal: 0 <= q-k < ctx;        bidirectional: |q-k| < ctx */
    BSA_PATTERN_STRIDED = 2, /* causal: k<=q, (q-k)%ctx == 0;  bidirectional: (q-k)%ctx == 0 */
    BSA_PATTERN_FIXED = 3,   /* see README: window of ctx plus per-head summary columns */
    /* Beyond the seed.  Element definitions, bidirectional; the causal form
     * (bidirectional = 0) keeps the same elements with k <= q.  w = ctx. */
    BSA_PATTERN_SLIDING_WINDOW = 4, /* |q-k| <= w (2w+1 keys; w >= 0) */
    BSA_PATTERN_DILATED = 5,        /* |q-k| <= w*d and (q-k) % d == 0, d = dilation */
    BSA_PATTERN_LONGFORMER = 6,     /* |q-k| <= w, or q < g, or k < g: g = global_tokens */
    BSA_PATTERN_BIGBIRD = 7,        /* longformer's, or k's block is one of the r random
                                       key blocks of q's block row (r = random_blocks,
                                       drawn from seed; causal: among blocks <= q's) */
    BSA_PATTERN_DOCUMENT = 8        /* q and k in the same document (doc_lengths) */
} bsa_pattern;

typedef struct bsa_preset {
    bsa_pattern pattern;
    int seq;       /* sequence length (queries = keys) */
    int block;     /* layout block size */
    int heads;     /* heads of the attention; fixed with num_verts > 1 makes a per-head layout */
    int ctx;       /* local: bandwidth L; strided: stride L; fixed: window L */
    int num_verts; /* fixed only */
    int vertsize;  /* fixed only, in blocks */
    int bidirectional; /* 0 = causal (the seed's only mode) */
    /* --- beyond the seed (appended; zero = default) --- */
    int dilation;               /* dilated: key spacing d (0 = 1) */
    int global_tokens;          /* longformer, bigbird: tokens 0..g-1 are global */
    int random_blocks;          /* bigbird: random key blocks per query-block row */
    uint64_t seed;              /* bigbird: the same seed gives the same layout */
    const int32_t *doc_lengths; /* document: num_docs lengths >= 1 summing to seq */
    int num_docs;               /* document */
} bsa_preset;

BSA_API bsa_status bsa_layout_create_preset(bsa_context_t ctx, bsa_layout_t *layout,
                                            const bsa_preset *preset);

/* The seed's mask callback: called once per kept block at creation, for
 * every layout head.  Fill mask[q * block + k] (q, k < block) with nonzero
 * to keep element (q, k) of the block.  Return 0 on success; nonzero makes
 * layout creation fail with BSA_ERROR_CALLBACK. */
typedef int (*bsa_mask_callback)(void *user, int head, int q_block, int k_block, int block_index,
                                 int block, uint8_t *mask);

/* blocks may be NULL (every block kept). */
BSA_API bsa_status bsa_layout_create_callback(bsa_context_t ctx, bsa_layout_t *layout,
                                              const bsa_layout_desc *desc, const uint8_t *blocks,
                                              bsa_mask_callback callback, void *user);

/* Refused (BSA_ERROR_INVALID_ARGUMENT, with the count) while plans created
 * on the layout are alive. */
BSA_API bsa_status bsa_layout_destroy(bsa_layout_t layout);

typedef struct bsa_layout_info {
    int block, heads, q_blocks, k_blocks;
    int seq_q, seq_k;
    int stride_permutation; /* 0, or L of the strided pattern (rows addressed through it) */
    int64_t blocks_total;   /* kept blocks summed over layout heads */
    int64_t partial_blocks; /* kept blocks that need an element mask */
    int max_row_blocks;     /* the seed's nn_max */
    int max_col_blocks;     /* the seed's tn_max */
    int64_t kept_elements;  /* kept (q, k) pairs summed over layout heads */
} bsa_layout_info;

BSA_API bsa_status bsa_layout_get_info(bsa_layout_t layout, bsa_layout_info *info);

/* Kept blocks of one layout head, in row-major (q_block, k_block) order:
 * this order defines the block index of the sparse weight tensor. */
BSA_API bsa_status bsa_layout_head_blocks(bsa_layout_t layout, int head, int64_t *count);

/* Element mask of one layout head in natural time order (the strided
 * permutation undone): mask[q * seq_k + k] = 1 if query q sees key k.
 * mask must hold seq_q * seq_k bytes.  For tests, debugging and pictures. */
BSA_API bsa_status bsa_layout_element_mask(bsa_layout_t layout, int head, uint8_t *mask);

/* ---------------------------------------------------------------- tensors */

/* Logical order [batch, heads, time, dim]; strides in elements.  The dim
 * stride must be 1. */
typedef struct bsa_tensor_desc {
    int64_t dims[4];
    int64_t strides[4];
} bsa_tensor_desc;

/* Seed layout [batch, time, heads * dim]. */
BSA_API bsa_tensor_desc bsa_tensor_bthd(int64_t batch, int64_t time, int64_t heads, int64_t dim);
/* [batch, heads, time, dim]. */
BSA_API bsa_tensor_desc bsa_tensor_bhtd(int64_t batch, int64_t heads, int64_t time, int64_t dim);

/* Shapes beyond the seed.  Each needs a backend feature (key_lengths below
 * needs "key-lengths"); a backend without it declines the plan or call with
 * BSA_ERROR_UNSUPPORTED naming backend and feature (the CPU has them all):
 *   grouped-query / multi-query attention (backend feature GQA): k and v may
 *     have Hkv heads (dims[1]) with H % Hkv == 0, H = q heads; query head h
 *     reads kv head h / (H / Hkv).  dK/dV of a kv head sum the gradients of
 *     its H / Hkv query heads in ascending head order (deterministic).  The
 *     layout has 1 or H heads (per query head);
 *   value head dim (feature value-dim): v.dims[3] = o.dims[3] = Dv may
 *     differ from q.dims[3] = k.dims[3] = D (both multiples of 8, <= 256);
 *   packed variable-length sequences (BSA_PLAN_VARLEN, feature varlen):
 *     batch (dims[0]) must be 1 and the time dims are the total packed
 *     tokens of q and of k/v (any lengths, no block multiple needed); every
 *     call passes cu_seqlens_q/k (see bsa_fwd_args).  The layout must not
 *     use the strided permutation. */
typedef struct bsa_attn_desc {
    bsa_dtype dtype;
    bsa_tensor_desc q, k, v, o; /* gradients share the strides of their tensor */
    float scale;                /* 0 = 1/sqrt(head_dim) */
    unsigned flags;             /* BSA_PLAN_* */
} bsa_attn_desc;

enum {
    BSA_PLAN_DEFAULT = 0,
    BSA_PLAN_FORCE_REFERENCE = 1 << 0, /* use the backend's simplest implementation */
    BSA_PLAN_VARLEN = 1 << 1,          /* packed variable-length sequences (see above) */
    /* calls may pass key_lengths (bsa_fwd_args): the plan chooses kernels
     * that take them; a call passing key_lengths to a plan created without
     * this flag fails with BSA_ERROR_INVALID_ARGUMENT */
    BSA_PLAN_KEY_LENGTHS = 1 << 2
};

/* ------------------------------------------------------------------- plan */

typedef struct bsa_plan *bsa_plan_t;

/* Binds shapes, dtype and layout once.  The layout must outlive the plan. */
BSA_API bsa_status bsa_plan_create(bsa_context_t ctx, bsa_plan_t *plan, const bsa_attn_desc *desc,
                                   bsa_layout_t layout);
BSA_API bsa_status bsa_plan_destroy(bsa_plan_t plan);
/* Bytes of workspace forward/backward want.  On the CPU a NULL workspace
 * makes the call allocate it itself; GPU backends require it. */
BSA_API bsa_status bsa_plan_workspace_size(bsa_plan_t plan, size_t *bytes);
/* Name of the implementation the plan chose (e.g. "cpu-fused"; on a GPU
 * "cuda-mma-sm80", or "fwd A, bwd B" where the two passes run different
 * entries of the backend's implementation list).  Every choice is made at
 * plan creation: a call never switches implementation.  The environment
 * variable BSA_IMPL=<entry name> forces an entry of the list (for the
 * passes it serves; the plan fails with BSA_ERROR_UNSUPPORTED and the
 * reason where it declines), and BSA_VERBOSE=1 prints bsa_plan_explain's
 * text to stderr at plan creation. */
BSA_API bsa_status bsa_plan_implementation(bsa_plan_t plan, const char **name);
/* Why the plan runs what it runs: for each pass, every entry of the
 * backend's list that was tried with the reason it declined, the chosen
 * one with its kernels, and the alignment the plan needs of every tensor
 * pointer.  Writes at most len bytes (NUL-terminated, truncated when
 * longer) to buf; *length (if not NULL) gets the full text's length
 * without the NUL, so a caller can size buf. */
BSA_API bsa_status bsa_plan_explain(bsa_plan_t plan, char *buf, size_t len, size_t *length);
/* Bytes every tensor pointer (q, k, v, o, dout, dq, dk, dv) of a call must
 * be aligned to: 16 for the GPU tensor-core kernels (rows are loaded 16
 * bytes at a time), the element size elsewhere.  A call with a misaligned
 * pointer fails with BSA_ERROR_INVALID_ARGUMENT naming the tensor; it never
 * falls back to slower kernels. */
BSA_API bsa_status bsa_plan_alignment(bsa_plan_t plan, size_t *bytes);

typedef struct bsa_fwd_args {
    const void *q, *k, *v;
    void *o;
    float *lse; /* optional [batch, heads, seq_q] fp32 natural log, contiguous */
    /* --- beyond the seed (fields appended, so zero = off) ---
     * key_lengths: NULL, or (with BSA_PLAN_KEY_LENGTHS at plan creation)
     *   [batch] valid key counts (with BSA_PLAN_VARLEN:
     *   [num_seqs], counted from each sequence's first key): keys at or past
     *   the length are masked; 0 <= length (a length past the end masks
     *   nothing).  A row left with no visible key gets O = 0, lse = -inf.
     * cu_seqlens_q, cu_seqlens_k: with BSA_PLAN_VARLEN (required then, NULL
     *   otherwise): num_seqs + 1 ascending offsets into the packed time dims,
     *   [0] = 0, [num_seqs] = the tensor's time.  Sequence i has queries
     *   cu_seqlens_q[i] .. cu_seqlens_q[i+1]-1 and keys likewise; its
     *   positions count from its start and it uses the layout's top-left
     *   corner, so each length must be <= the layout's seq_q / seq_k.  A
     *   length need not be a block multiple: a partial tail block has its
     *   missing keys masked and its missing queries produce no rows.  lse
     *   is [1, heads, total queries].  No T x T mask is ever formed.
     * Memory: these arrays live where the tensors do: host memory on the
     *   CPU backend (which checks their contents and fails with
     *   BSA_ERROR_INVALID_ARGUMENT), device memory on GPU backends (read by
     *   the kernels, so a call stays asynchronous and graph-capturable; the
     *   contents are not checked there: out-of-range values are clamped so
     *   that no access leaves the tensors, and give unspecified results). */
    const int32_t *key_lengths;
    const int32_t *cu_seqlens_q, *cu_seqlens_k;
    int num_seqs;
} bsa_fwd_args;

typedef struct bsa_bwd_args {
    const void *q, *k, *v, *o;
    const float *lse; /* required: as written by bsa_forward */
    const void *dout;
    void *dq, *dk, *dv;
    /* as in bsa_fwd_args (must match the forward call) */
    const int32_t *key_lengths;
    const int32_t *cu_seqlens_q, *cu_seqlens_k;
    int num_seqs;
} bsa_bwd_args;

/* stream: cudaStream_t / hipStream_t for GPU backends, NULL on the CPU.
 * Aliasing: an output (o and lse of the forward; dq, dk, dv of the
 * backward) shares no byte with an input (q, k, v, and o, lse, dout of
 * the backward) nor with another output, and the strides of q, k, v, o
 * (which the gradients share) give every element its own memory (checked
 * at plan creation).  Inputs may overlap each other freely, and views of
 * one buffer with the same shape and strides (a fused qkv tensor and its
 * fused gradient) are told apart exactly; a call that breaks the rule
 * fails with BSA_ERROR_INVALID_ARGUMENT naming both tensors. */
BSA_API bsa_status bsa_forward(bsa_plan_t plan, const bsa_fwd_args *args, void *workspace,
                               size_t workspace_bytes, void *stream);
BSA_API bsa_status bsa_backward(bsa_plan_t plan, const bsa_bwd_args *args, void *workspace,
                                size_t workspace_bytes, void *stream);

/* ------------------------------------------------- the seed's unfused ops
 * The block-sparse weight tensor is fp32, [batch, heads, blocks_h, B, B]:
 * for head h, blocks_h = bsa_layout_head_blocks(head h or 0), and the head's
 * blocks follow those of heads 0..h-1 (per-head counts may differ).
 * Element (b, r, c) of block i = (qb, kb) is query qb*B + r, key kb*B + c
 * (layout order).  The dense operands use the plan's tensor descriptors
 * and dtype: x is shaped like q for bsa_sparse_nt's first operand and
 * bsa_sparse_tn's input, like k for the others.  Supported on the CPU. */

/* Size in elements of the weight tensor. */
BSA_API bsa_status bsa_sparse_weight_elems(bsa_plan_t plan, int64_t *elems);

/* w = a . b^T on the kept blocks: a like q, b like k (QK^T, or dP = dO V^T). */
BSA_API bsa_status bsa_sparse_nt(bsa_plan_t plan, const void *a, const void *b, float *w,
                                 void *stream);
/* Row softmax over the kept keys of every query row, of scale * w.
 * masked = 0: the seed's softmax (every element of a kept block counts);
 * masked = 1: masked_softmax (callback bits and predicates applied).
 * Rows with no visible key give zeros. */
BSA_API bsa_status bsa_sparse_softmax(bsa_plan_t plan, const float *w, float *p, float scale,
                                      int masked, void *stream);
/* dw = (dp - rowsum(dp * p)) * p * scale. */
BSA_API bsa_status bsa_sparse_softmax_backward(bsa_plan_t plan, const float *p, const float *dp,
                                               float *dw, float scale, void *stream);
/* y (like q) = W . x (x like k): the weight-value product. */
BSA_API bsa_status bsa_sparse_nn(bsa_plan_t plan, const float *w, const void *x, void *y,
                                 void *stream);
/* y (like k) = W^T . x (x like q): the transposed product (dV = P^T dO, dK = dS^T Q). */
BSA_API bsa_status bsa_sparse_tn(bsa_plan_t plan, const float *w, const void *x, void *y,
                                 void *stream);

/* ------------------------------------------ context parallelism (issue 27)
 * Sequences longer than one device: P ranks each hold a contiguous or
 * zig-zag shard of T / P positions of q, k, v ([batch, heads, T/P, dim],
 * any strides) and get their shard of O, lse, dQ, dK, dV.  The layout
 * covers the whole sequence (seq_q = seq_k = T, self-attention) and is the
 * same on every rank.  Rank i computes its queries against the key shards
 * whose slice of the layout is non-empty for its query blocks only; the
 * partial outputs are merged by log-sum-exp; the backward returns dK/dV
 * partials to their owners, summed in a fixed order (deterministic).
 *
 * Engines, optional at build time (CMake -DBSA_WITH_MPI=ON/OFF/AUTO and
 * -DBSA_WITH_NCCL=ON/OFF): the functions below always exist; without the
 * engine compiled, bsa_comm_create_mpi / _nccl return
 * BSA_ERROR_BACKEND_UNAVAILABLE with a message, and bsa_comm_compiled()
 * says 0.  The CPU backend runs over MPI or over the caller's own
 * transport (bsa_comm_create_callbacks), on host memory; the CUDA backend
 * over NCCL or the caller's own transport, on device memory (the shard
 * packing, the merge and the gradient sums are kernels on the call's
 * stream, accumulating in double as on the host).  The CUDA path is
 * compiled in CI and its test (tests/test_cuda_dist.c: 2 and 4 ranks as
 * threads on one GPU, one NCCL rank) has not run on a GPU yet; no
 * multi-GPU run was ever made.
 *
 * Every call below is collective over the communicator (each rank calls
 * it, in the same order): plan creation agrees on the result, so a
 * bad argument on one rank fails the call on every rank (the others'
 * message names that rank) instead of leaving them blocked. */

typedef enum bsa_comm_kind {
    BSA_COMM_MPI = 1,
    BSA_COMM_NCCL = 2,
    BSA_COMM_CALLBACKS = 3 /* the caller's transport (bsa_comm_create_callbacks): always built */
} bsa_comm_kind;

/* 1 if the engine was compiled into this library. */
BSA_API int bsa_comm_compiled(bsa_comm_kind kind);

typedef struct bsa_comm *bsa_comm_t;

/* Wraps the caller's MPI communicator: mpi_comm points to an MPI_Comm of
 * the MPI the library was built with (bsa.h does not include mpi.h).  MPI
 * must be initialised (MPI_THREAD_FUNNELED at least: bsa calls MPI from the
 * calling thread only).  The communicator is duplicated (bsa's messages
 * never meet the caller's) with MPI_ERRORS_RETURN on the copy, so an MPI
 * failure becomes BSA_ERROR_DEVICE with MPI's message.  Collective. */
BSA_API bsa_status bsa_comm_create_mpi(bsa_comm_t *comm, const void *mpi_comm);
/* Wraps the caller's ncclComm_t (passed as void *), which must report this
 * rank and size.  Not duplicated: bsa's sends and receives are ordered on
 * the stream of each call.  For dist plans on a CUDA context (device
 * memory of the context's device, which must be the communicator's).
 * Compiled; not run on a GPU yet (no multi-GPU run made). */
BSA_API bsa_status bsa_comm_create_nccl(bsa_comm_t *comm, void *nccl_comm, int rank, int size);
/* A communicator over the caller's own transport: torch.distributed in the
 * Python binding, threads in tests.  With a CPU context the messages are
 * host memory; with a CUDA context every message's buf is device memory of
 * the context's device: bsa synchronises the call's stream before each
 * post (a send buffer then holds its bytes, and no kernel still reads a
 * receive buffer), and wait must return only once the batch's receives
 * are complete in device memory (e.g. after synchronising the stream the
 * transport copied on) and its send buffers are no longer read.  allgather
 * is always host memory (plan creation's agreement); on a CUDA context the
 * all-gather exchange is made of post / wait messages instead.
 * bsa posts a step's sends and receives as one batch and later waits for
 * the batch; a batch holds at most 4 messages, between this rank and the
 * peers named, with one tag (a message's tag and the pair of ranks match a
 * send with its receive; bsa never has two messages with the same tag,
 * source and destination in flight).  Each callback returns 0 on success;
 * nonzero fails the bsa call with BSA_ERROR_CALLBACK.  post must not block
 * on the messages (every rank posts its sends before it waits); it sets
 * *request to anything, which wait receives.  allgather is blocking:
 * every rank's bytes into out[rank * bytes].  callbacks is copied; user is
 * passed back unchanged and must outlive the communicator. */
typedef struct bsa_comm_message {
    int peer; /* rank in 0 .. size-1, never this rank */
    int send; /* 1: send buf, 0: receive into buf */
    void *buf;
    size_t bytes;
} bsa_comm_message;

typedef struct bsa_comm_callbacks {
    int (*post)(void *user, const bsa_comm_message *messages, int n, int tag, void **request);
    int (*wait)(void *user, void *request);
    int (*allgather)(void *user, const void *in, size_t bytes, void *out);
} bsa_comm_callbacks;

BSA_API bsa_status bsa_comm_create_callbacks(bsa_comm_t *comm, int rank, int size,
                                             const bsa_comm_callbacks *callbacks, void *user);
/* Refused while dist plans use it; NULL does nothing.  Frees bsa's copy,
 * never the caller's communicator. */
BSA_API bsa_status bsa_comm_destroy(bsa_comm_t comm);
BSA_API bsa_status bsa_comm_rank(bsa_comm_t comm, int *rank, int *size);

typedef enum bsa_sharding {
    BSA_SHARD_AUTO = 0,       /* the plan picks the one with the lower most-loaded rank */
    BSA_SHARD_CONTIGUOUS = 1, /* rank r holds positions [r*T/P, (r+1)*T/P) */
    BSA_SHARD_ZIGZAG = 2      /* 2P chunks of T/(2P): rank r holds chunks r and 2P-1-r, in
                                 that order (balanced work for causal layouts) */
} bsa_sharding;

typedef enum bsa_dist_exchange {
    BSA_EXCHANGE_AUTO = 0,     /* all-gather when every rank needs every shard and the
                                  gathered K/V is small (<= 16 MiB a rank); else ring */
    BSA_EXCHANGE_RING = 1,     /* P - 1 steps; step s receives from rank - s and sends to
                                  rank + s, only the shards the layout needs */
    BSA_EXCHANGE_ALLGATHER = 2 /* one all-gather of every K/V shard, then compute */
} bsa_dist_exchange;

typedef struct bsa_dist_params {
    bsa_sharding sharding;
    bsa_dist_exchange exchange;
} bsa_dist_params;

typedef struct bsa_dist_plan *bsa_dist_plan_t;

/* desc describes this rank's shard: q, k, v, o have time dims T/P (= the
 * layout's seq / the communicator's size); every rank passes the same
 * shapes, dtype, scale and flags (BSA_PLAN_FORCE_REFERENCE only: varlen
 * and key lengths are refused) and an equal layout (its own handle, same
 * pattern: compared by its tables).  Shards must cut whole layout blocks:
 * T/P (contiguous) or T/(2P) (zig-zag) a multiple of the block; with the
 * strided pattern also of stride L, and T/(P*L) (or T/(2P*L)) of the block.
 * params may be NULL (AUTO, AUTO).  The plan holds its exchange buffers and
 * sub-plans (one per key shard it needs), allocated here (device memory
 * on a CUDA context): the calls allocate nothing.  ctx's backend must
 * match the engine: CPU with MPI or callbacks (host memory), CUDA with
 * NCCL or callbacks (device memory); other pairs fail with
 * BSA_ERROR_UNSUPPORTED saying why (MPI with a CUDA context: no staging
 * through host memory; NCCL with a CPU context; the HIP backend, which has
 * no build of the dist kernels).
 * Collective. */
BSA_API bsa_status bsa_dist_plan_create(bsa_context_t ctx, bsa_dist_plan_t *plan,
                                        const bsa_attn_desc *desc, bsa_layout_t layout,
                                        bsa_comm_t comm, const bsa_dist_params *params);
/* Not collective; NULL does nothing. */
BSA_API bsa_status bsa_dist_plan_destroy(bsa_dist_plan_t plan);

typedef struct bsa_dist_info {
    int rank, size;
    bsa_sharding sharding;      /* resolved: never AUTO */
    bsa_dist_exchange exchange; /* resolved: never AUTO */
    int64_t shard_len;          /* T / P positions on each rank */
    int peers_needed;           /* key shards of other ranks this rank's queries need */
    int64_t blocks_local;       /* kept layout blocks this rank computes (all layout heads) */
    int64_t blocks_max;         /* the most any rank computes (balance = max / mean) */
    size_t buffer_bytes;        /* host or device memory the plan holds */
} bsa_dist_info;

BSA_API bsa_status bsa_dist_plan_info(bsa_dist_plan_t plan, bsa_dist_info *info);
/* "dist-ring(zigzag) over cpu-fused" or the like: the exchange, the
 * sharding and the single-process implementation of the sub-problems. */
BSA_API bsa_status bsa_dist_plan_implementation(bsa_dist_plan_t plan, const char **name);
/* The natural sequence positions of rank r's rows, in row order:
 * positions[0 .. shard_len) (so callers cut their shard with it). */
BSA_API bsa_status bsa_dist_shard_positions(bsa_dist_plan_t plan, int rank, int64_t *positions);

/* A dist plan holds its exchange buffers: its calls must not overlap (one
 * thread at a time per plan; plans are independent of each other).
 * This rank's shard: args as for bsa_forward (key_lengths, cu_seqlens_*
 * must be NULL); lse optional ([batch, heads, T/P], this shard's rows).
 * stream: NULL on the CPU.  On a CUDA context the tensors are device
 * memory (pageable host memory fails with BSA_ERROR_INVALID_ARGUMENT) and
 * every kernel and NCCL call goes on stream: over NCCL the call returns
 * without synchronising (results are ready in stream order); over
 * callbacks it synchronises the stream before each post, and returns with
 * the last merge and the unpacking queued.  Collective. */
BSA_API bsa_status bsa_dist_forward(bsa_dist_plan_t plan, const bsa_fwd_args *args, void *stream);
/* args->o and args->lse as bsa_dist_forward wrote them (the merged ones);
 * writes this shard's dq and its shard's dk, dv.  Collective. */
BSA_API bsa_status bsa_dist_backward(bsa_dist_plan_t plan, const bsa_bwd_args *args, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* BSA_H */
