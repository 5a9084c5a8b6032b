/*
 * bsa layout: shows what a seed pattern keeps.  The mask comes from
 * bsa_layout_element_mask (natural time order, the strided permutation
 * undone), so the picture is what attention sees, not the block storage.
 */
#include "bsa.h"
#include "cli_mem.h"
#include "cli_util.h"
#include "commands.h"
#include "png_write.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const cmd = "layout";

/* An element mask costs seq^2 bytes: 16384^2 = 256 MiB is the most we ask
 * of the host. */
#define MASK_MAX_SEQ 16384
/* Wider pictures are unusable in common viewers. */
#define PNG_MAX_SIDE 32768

/* Grey levels: kept elements dark, masked light; the grid tints both but
 * keeps them on their side of mid-grey so the picture stays readable. */
enum { PX_KEPT = 0x1a, PX_MASKED = 0xf5, PX_KEPT_GRID = 0x50, PX_MASKED_GRID = 0xc8 };

/* In bsa_pattern order (write_info indexes by value). */
static const char *const pattern_names[] = {
    "all", "local", "strided", "fixed", "sliding", "dilated", "longformer", "bigbird", "document"};
static const bsa_pattern pattern_values[] = {
    BSA_PATTERN_ALL,        BSA_PATTERN_LOCAL,          BSA_PATTERN_STRIDED,
    BSA_PATTERN_FIXED,      BSA_PATTERN_SLIDING_WINDOW, BSA_PATTERN_DILATED,
    BSA_PATTERN_LONGFORMER, BSA_PATTERN_BIGBIRD,        BSA_PATTERN_DOCUMENT};
enum { n_patterns = (int)(sizeof pattern_names / sizeof pattern_names[0]) };

/* "12,40,3" -> lengths; returns the count or -1 (bad list). */
static int parse_lengths(const char *s, int32_t *out, int cap)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > (1L << 30) || n == cap)
            return -1;
        out[n++] = (int32_t)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n;
}
static const char *const format_names[] = {"text", "png", "info"};
enum { FMT_TEXT, FMT_PNG, FMT_INFO };

typedef struct picture {
    const uint8_t *mask;
    int seq, scale, block, grid;
} picture;

static void picture_row(void *user, int y, uint8_t *px)
{
    const picture *p = user;
    const uint8_t *row = p->mask + (size_t)(y / p->scale) * (size_t)p->seq;
    int cell = p->block * p->scale;
    int grid_row = p->grid && y % cell == 0;
    int width = p->seq * p->scale;
    for (int x = 0; x < width; x++) {
        int kept = row[x / p->scale] != 0;
        int grid = grid_row || (p->grid && x % cell == 0);
        px[x] = grid ? (kept ? PX_KEPT_GRID : PX_MASKED_GRID) : (kept ? PX_KEPT : PX_MASKED);
    }
}

static int write_text(FILE *out, const uint8_t *mask, int seq)
{
    char *line = malloc((size_t)seq + 1);
    if (!line) {
        fprintf(stderr, "bsa %s: out of memory\n", cmd);
        return CLI_EXIT_FAIL;
    }
    line[seq] = '\n';
    for (int q = 0; q < seq; q++) {
        const uint8_t *row = mask + (size_t)q * (size_t)seq;
        for (int k = 0; k < seq; k++)
            line[k] = row[k] ? '1' : '0';
        if (fwrite(line, 1, (size_t)seq + 1, out) != (size_t)seq + 1) {
            free(line);
            fprintf(stderr, "bsa %s: write error\n", cmd);
            return CLI_EXIT_FAIL;
        }
    }
    free(line);
    return CLI_EXIT_OK;
}

static int write_info(FILE *out, bsa_layout_t lay, const bsa_preset *pr)
{
    bsa_layout_info in;
    bsa_status st = bsa_layout_get_info(lay, &in);
    if (st != BSA_SUCCESS)
        return cli_report(cmd, "bsa_layout_get_info", st);
    double cells = (double)in.heads * in.seq_q * (double)in.seq_k;
    double block_cells = (double)in.heads * in.q_blocks * (double)in.k_blocks;
    fprintf(out, "pattern        %s (%s)\n", pattern_names[pr->pattern],
            pr->bidirectional ? "bidirectional" : "causal");
    fprintf(out, "seq            %d x %d\n", in.seq_q, in.seq_k);
    fprintf(out, "block          %d\n", in.block);
    fprintf(out, "layout_heads   %d (of %d attention heads)\n", in.heads, pr->heads);
    fprintf(out, "q_blocks       %d\n", in.q_blocks);
    fprintf(out, "k_blocks       %d\n", in.k_blocks);
    fprintf(out, "stride_perm    %d\n", in.stride_permutation);
    fprintf(out, "blocks         %lld\n", (long long)in.blocks_total);
    fprintf(out, "head_blocks   ");
    for (int h = 0; h < in.heads; h++) {
        int64_t count = 0;
        st = bsa_layout_head_blocks(lay, h, &count);
        if (st != BSA_SUCCESS)
            return cli_report(cmd, "bsa_layout_head_blocks", st);
        fprintf(out, " %lld", (long long)count);
    }
    fprintf(out, "\n");
    fprintf(out, "partial_blocks %lld\n", (long long)in.partial_blocks);
    fprintf(out, "nn_max         %d\n", in.max_row_blocks);
    fprintf(out, "tn_max         %d\n", in.max_col_blocks);
    fprintf(out, "kept_elements  %lld\n", (long long)in.kept_elements);
    fprintf(out, "element_density %.6f\n", cells > 0 ? (double)in.kept_elements / cells : 0.0);
    fprintf(out, "block_density   %.6f\n",
            block_cells > 0 ? (double)in.blocks_total / block_cells : 0.0);
    return CLI_EXIT_OK;
}

static void usage(FILE *f, const cli_opt *opts, int n)
{
    fprintf(f, "usage: bsa layout --pattern P --seq N [--block B] [--ctx L] [options]\n"
               "Shows the element mask of a preset pattern: one line per query, '1' where\n"
               "the key is kept (text), a picture (png, kept = dark), or its numbers (info).\n"
               "The memory the layout (and mask) will take is estimated first and printed to\n"
               "stderr (always for info, else from 1 GiB); a run that needs more than the\n"
               "machine has available (MemAvailable) is refused.\n"
               "\noptions:\n");
    cli_print_options(f, opts, n);
}

int bsa_cmd_layout(int argc, char **argv)
{
    const char *pattern = "all", *format = "text", *out_path = NULL;
    int seq = 0, block = CLI_BLOCK_DEFAULT, ctx_len = 0, verts = 1, vertsize = 1, heads = 1,
        head = 0;
    int bidir = 0, scale = 1, grid = 0, dilation = 0, global = 0, random = 0, seed = 0;
    const char *docs = NULL;
    const cli_opt opts[] = {
        {"pattern", CLI_OPT_STR, &pattern, 0, 0,
         "all | local | strided | fixed | sliding | dilated | longformer | bigbird | document "
         "(default all)"},
        {"seq", CLI_OPT_INT, &seq, CLI_SEQ_MIN, CLI_SEQ_MAX, "sequence length (required)"},
        {"block", CLI_OPT_INT, &block, CLI_BLOCK_MIN, CLI_BLOCK_MAX,
         "layout block size (default 32)"},
        {"ctx", CLI_OPT_INT, &ctx_len, 1, 1 << 30,
         "L: local bandwidth, strided stride, fixed window"},
        {"verts", CLI_OPT_INT, &verts, 1, 1 << 30, "fixed: summary column sets (default 1)"},
        {"vertsize", CLI_OPT_INT, &vertsize, 1, 1 << 30,
         "fixed: blocks per summary set (default 1)"},
        {"heads", CLI_OPT_INT, &heads, 1, 1 << 30, "attention heads (default 1)"},
        {"head", CLI_OPT_INT, &head, 0, 1 << 30, "head to show (default 0)"},
        {"bidirectional", CLI_OPT_FLAG, &bidir, 0, 0, "no causal constraint"},
        {"dilation", CLI_OPT_INT, &dilation, 1, 1 << 30, "dilated: key spacing (default 1)"},
        {"global", CLI_OPT_INT, &global, 0, 1 << 30, "longformer, bigbird: global tokens"},
        {"random", CLI_OPT_INT, &random, 0, 1024, "bigbird: random key blocks per block row"},
        {"seed", CLI_OPT_INT, &seed, 0, 1 << 30, "bigbird: seed of the random blocks"},
        {"docs", CLI_OPT_STR, &docs, 0, 0, "document: lengths 'a,b,...' summing to --seq"},
        {"format", CLI_OPT_STR, &format, 0, 0, "text | png | info (default text)"},
        {"out", CLI_OPT_STR, &out_path, 0, 0, "output file (required for png; else stdout)"},
        {"scale", CLI_OPT_INT, &scale, 1, 64, "png: pixels per element side (default 1)"},
        {"grid", CLI_OPT_FLAG, &grid, 0, 0, "png: faint lines at block boundaries"},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);

    int pr = cli_parse(cmd, argc, argv, opts, n_opts);
    if (pr == CLI_PARSE_HELP) {
        usage(stdout, opts, n_opts);
        return CLI_EXIT_OK;
    }
    if (pr != CLI_PARSE_OK)
        return CLI_EXIT_USAGE;
    int pi = cli_choice(cmd, "pattern", pattern, pattern_names, n_patterns);
    int fi = cli_choice(cmd, "format", format, format_names, 3);
    if (pi < 0 || fi < 0)
        return CLI_EXIT_USAGE;
    if (seq == 0) {
        fprintf(stderr, "bsa %s: --seq is required\n", cmd);
        return CLI_EXIT_USAGE;
    }
    int32_t doc_len[4096];
    int n_docs = 0;
    if (pattern_values[pi] == BSA_PATTERN_DOCUMENT &&
        (!docs || (n_docs = parse_lengths(docs, doc_len, 4096)) < 1)) {
        fprintf(stderr,
                "bsa %s: the document pattern needs --docs with 1..4096 comma-separated "
                "lengths >= 1\n",
                cmd);
        return CLI_EXIT_USAGE;
    }
    if (pattern_values[pi] != BSA_PATTERN_ALL && pattern_values[pi] != BSA_PATTERN_DOCUMENT &&
        ctx_len == 0) {
        fprintf(stderr, "bsa %s: --ctx is required for the %s pattern\n", cmd, pattern);
        return CLI_EXIT_USAGE;
    }
    if (head >= heads) {
        fprintf(stderr, "bsa %s: --head %d must be below --heads %d\n", cmd, head, heads);
        return CLI_EXIT_USAGE;
    }
    if (fi == FMT_PNG && !out_path) {
        fprintf(stderr, "bsa %s: --format png needs --out FILE\n", cmd);
        return CLI_EXIT_USAGE;
    }
    if (fi == FMT_PNG && !cli_png_available()) {
        fprintf(stderr, "bsa %s: this build has no PNG support (libpng was not found)\n", cmd);
        return CLI_EXIT_FAIL;
    }
    if (fi != FMT_INFO && seq > MASK_MAX_SEQ) {
        fprintf(stderr,
                "bsa %s: --seq %d: the element mask is limited to seq <= %d (use "
                "--format info for larger layouts)\n",
                cmd, seq, MASK_MAX_SEQ);
        return CLI_EXIT_USAGE;
    }
    if (fi == FMT_PNG && (int64_t)seq * scale > PNG_MAX_SIDE) {
        fprintf(stderr, "bsa %s: --seq %d x --scale %d: the picture side is limited to %d pixels\n",
                cmd, seq, scale, PNG_MAX_SIDE);
        return CLI_EXIT_USAGE;
    }

    int rc = CLI_EXIT_FAIL;
    bsa_context_t ctx = NULL;
    bsa_layout_t lay = NULL;
    uint8_t *mask = NULL;
    FILE *out = stdout;
    /* The mask is computed on the host; a GPU context would only upload
     * tables nobody uses. */
    bsa_context_params cp = {.backend = BSA_BACKEND_CPU};
    bsa_status st = bsa_context_create(&ctx, &cp);
    if (st != BSA_SUCCESS)
        return cli_report(cmd, "bsa_context_create", st);
    bsa_preset preset = {.pattern = pattern_values[pi],
                         .seq = seq,
                         .block = block,
                         .heads = heads,
                         .ctx = ctx_len,
                         .num_verts = verts,
                         .vertsize = vertsize,
                         .bidirectional = bidir,
                         .dilation = dilation,
                         .global_tokens = global,
                         .random_blocks = random,
                         .seed = (uint64_t)seed,
                         .doc_lengths = n_docs ? doc_len : NULL,
                         .num_docs = n_docs};
    /* Before anything large exists: the layout tables (the preset's kept
     * blocks, from its closed form) and, for text and png, the element
     * mask and a row of output. */
    double partial = 0, blocks = cli_preset_blocks(&preset, &partial);
    double tables = cli_layout_bytes(&preset, blocks, partial);
    double mask_bytes = fi == FMT_INFO ? 0 : (double)seq * seq + (double)seq * scale + seq + 1;
    const char *src = "";
    double avail = cli_mem_available(&src);
    char need_s[32], tab_s[32], mask_s[32], avail_s[32], detail[160];
    snprintf(detail, sizeof detail, "layout tables %s for ~%.3g kept blocks%s%s",
             cli_mem_format(tables, tab_s, sizeof tab_s), blocks,
             mask_bytes > 0 ? ", element mask " : "",
             mask_bytes > 0 ? cli_mem_format(mask_bytes, mask_s, sizeof mask_s) : "");
    if ((rc = cli_mem_refuse(cmd, tables + mask_bytes, detail, avail, src,
                             "reduce --seq or --heads, or raise --block")) != CLI_EXIT_OK)
        goto done;
    /* --format info is where large layouts are asked for; text and png
     * (seq <= 16384) mention it only when it is large */
    if (fi == FMT_INFO || tables + mask_bytes >= 1073741824.0)
        fprintf(stderr, "bsa %s: memory estimate %s (%s) of %s available (%s)\n", cmd,
                cli_mem_format(tables + mask_bytes, need_s, sizeof need_s), detail,
                avail > 0 ? cli_mem_format(avail, avail_s, sizeof avail_s) : "?", src);
    rc = CLI_EXIT_FAIL;
    st = bsa_layout_create_preset(ctx, &lay, &preset);
    if (st != BSA_SUCCESS) {
        cli_report(cmd, "bsa_layout_create_preset", st);
        goto done;
    }
    if (fi == FMT_INFO || fi == FMT_TEXT) {
        if (out_path && !(out = fopen(out_path, "w"))) {
            fprintf(stderr, "bsa %s: cannot open '%s' for writing\n", cmd, out_path);
            out = stdout;
            goto done;
        }
    }
    if (fi == FMT_INFO) {
        rc = write_info(out, lay, &preset);
        goto done;
    }

    bsa_layout_info info;
    st = bsa_layout_get_info(lay, &info);
    if (st != BSA_SUCCESS) {
        cli_report(cmd, "bsa_layout_get_info", st);
        goto done;
    }
    /* A layout shared by all heads has one layout head. */
    int layout_head = info.heads == 1 ? 0 : head;
    mask = malloc((size_t)info.seq_q * (size_t)info.seq_k);
    if (!mask) {
        fprintf(stderr, "bsa %s: out of memory for a %d x %d mask\n", cmd, info.seq_q, info.seq_k);
        goto done;
    }
    st = bsa_layout_element_mask(lay, layout_head, mask);
    if (st != BSA_SUCCESS) {
        cli_report(cmd, "bsa_layout_element_mask", st);
        goto done;
    }
    if (fi == FMT_TEXT) {
        rc = write_text(out, mask, info.seq_k);
    } else {
        picture pic = {mask, info.seq_k, scale, info.block, grid};
        char err[256];
        if (cli_png_write_gray(out_path, info.seq_k * scale, info.seq_q * scale, picture_row, &pic,
                               err, sizeof err) != 0)
            fprintf(stderr, "bsa %s: %s\n", cmd, err);
        else
            rc = CLI_EXIT_OK;
    }

done:
    if (out != stdout && fclose(out) != 0 && rc == CLI_EXIT_OK) {
        fprintf(stderr, "bsa %s: error writing '%s'\n", cmd, out_path);
        rc = CLI_EXIT_FAIL;
    }
    free(mask);
    if (lay)
        bsa_layout_destroy(lay);
    bsa_context_destroy(ctx);
    return rc;
}
