#!/bin/sh
# Tests of the bsa command-line tool.  usage: test_cli.sh PATH/TO/bsa
#
# `bsa layout` masks are compared with the seed's closed forms (spec
# seed-semantics.md 1.3 / 1.5), computed here in Python independently of
# the library; fixed cases plus configurations drawn fresh on every run.
# PNG output is decoded and compared pixel by pixel.  Bad arguments must
# fail with a message; `bsa demo` must pass, and must fail when its checker
# is fed a perturbed result.
set -u
BSA=${1:?usage: test_cli.sh PATH/TO/bsa}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM
FAILS=0
CHECKS=0
SKIPS=0
# The mask oracle and the PNG decoder are Python; without python3 those
# checks are reported as skipped and the rest still runs.
PY=$(command -v python3 || true)
oracle() {
    if [ -z "$PY" ]; then
        SKIPS=$((SKIPS + 1))
        return 0
    fi
    "$PY" "$TMP/oracle.py" "$@"
}

ok() { CHECKS=$((CHECKS + 1)); }
fail() {
    CHECKS=$((CHECKS + 1))
    FAILS=$((FAILS + 1))
    echo "FAIL: $*"
}

cat >"$TMP/oracle.py" <<'EOF'
"""Closed-form masks of the seed's patterns, a PNG decoder and a generator
of random valid configurations, written from the spec alone."""
import random, struct, sys, zlib


def allowed(pattern, q, k, block, ctx, verts, vertsize, head, bidir):
    causal = bidir or k <= q
    if pattern == "all":
        return causal
    if pattern == "local":
        return abs(q - k) < ctx if bidir else 0 <= q - k < ctx
    if pattern == "strided":
        return causal and (q - k) % ctx == 0
    if pattern == "fixed":
        s = ctx // block
        v = {s - 1 - (head % verts) * vertsize - t for t in range(vertsize)}
        return causal and (q // ctx == k // ctx or (k // block) % s in v)
    raise ValueError(pattern)


def mask(cfg, head):
    n = cfg["seq"]
    return [[allowed(cfg["pattern"], q, k, cfg["block"], cfg["ctx"], cfg["verts"],
                     cfg["vertsize"], head, cfg["bidir"]) for k in range(n)] for q in range(n)]


def parse(argv):
    cfg = dict(zip(["pattern", "seq", "block", "ctx", "verts", "vertsize", "heads", "head",
                    "bidir"], argv))
    for key in cfg:
        if key != "pattern":
            cfg[key] = int(cfg[key])
    return cfg


def check_text(cfg, path):
    want = mask(cfg, cfg["head"])
    lines = open(path).read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != cfg["seq"]:
        return "%d lines, want %d" % (len(lines), cfg["seq"])
    bad = 0
    for q, line in enumerate(lines):
        row = "".join("1" if x else "0" for x in want[q])
        if line != row:
            if bad < 3:
                print("  row %d\n   got  %s\n   want %s" % (q, line, row))
            bad += 1
    return "%d rows differ" % bad if bad else None


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("bad PNG signature %r" % data[:8])
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) & 0xffffffff != crc:
            raise ValueError("bad CRC in chunk %r" % kind)
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    w, h, depth, color, _, _, interlace = hdr
    if depth != 8 or color != 0 or interlace != 0:
        raise ValueError("want 8-bit grey non-interlaced, got %r" % (hdr,))
    raw = zlib.decompress(idat)
    rows, prev = [], bytearray(w)
    for y in range(h):
        f = raw[y * (w + 1)]
        line = bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = line[x - 1] if x else 0
            b, c = prev[x], prev[x - 1] if x else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 255
        rows.append(line)
        prev = line
    return w, h, rows


def check_png(cfg, path, scale, grid):
    w, h, rows = read_png(path)
    n = cfg["seq"]
    if (w, h) != (n * scale, n * scale):
        return "size %dx%d, want %dx%d" % (w, h, n * scale, n * scale)
    want = mask(cfg, cfg["head"])
    bad = 0
    for y in range(h):
        for x in range(w):
            if (rows[y][x] < 128) != want[y // scale][x // scale]:
                bad += 1
    if bad:
        return "%d pixels on the wrong side of mid-grey" % bad
    levels = {v for r in rows for v in r}
    if grid and len(levels) < 3:
        return "grid requested but only grey levels %s" % sorted(levels)
    if not grid and len(levels) > 2:
        return "no grid requested but grey levels %s" % sorted(levels)
    return None


def random_configs(count):
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    out = []
    while len(out) < count:
        pattern = rnd.choice(["all", "local", "strided", "fixed"])
        block = rnd.choice([8, 16])
        bidir = rnd.randrange(2)
        ctx, verts, vertsize, heads = 0, 1, 1, 1
        if pattern == "all":
            seq = block * rnd.randint(1, 12)
        elif pattern == "local":
            ctx = block * rnd.randint(1, 4)
            seq = block * rnd.randint(1, 12)
        elif pattern == "strided":
            ctx = rnd.choice([2, 4, 8, 16])
            seq = ctx * block * rnd.randint(1, max(1, 192 // (ctx * block)))
        else:
            s = rnd.choice([2, 4, 8])
            ctx = s * block
            vertsize = rnd.choice([d for d in (1, 2, 4) if s % d == 0])
            verts = rnd.randint(1, s // vertsize)
            heads = verts * rnd.randint(1, 2)
            seq = ctx * rnd.randint(1, max(1, 192 // ctx))
        head = rnd.randrange(heads)
        out.append((pattern, seq, block, ctx, verts, vertsize, heads, head, bidir))
    print("# random configurations drawn with seed %d" % seed, file=sys.stderr)
    return out


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "random":
        for c in random_configs(int(sys.argv[2])):
            print(" ".join(str(x) for x in c))
        sys.exit(0)
    if what == "count":
        cfg = parse(sys.argv[2:11])
        print(sum(sum(r) for r in mask(cfg, cfg["head"])))
        sys.exit(0)
    cfg = parse(sys.argv[2:11])
    try:
        err = (check_text(cfg, sys.argv[11]) if what == "text" else
               check_png(cfg, sys.argv[11], int(sys.argv[12]), int(sys.argv[13])))
    except Exception as e:  # a malformed file is a failure, not a crash
        err = "cannot read: %s" % e
    if err:
        print("  " + err)
        sys.exit(1)
EOF

# layout_args PATTERN SEQ BLOCK CTX VERTS VERTSIZE HEADS HEAD BIDIR -> bsa layout options
layout_args() {
    a="--pattern $1 --seq $2 --block $3 --verts $5 --vertsize $6 --heads $7 --head $8"
    [ "$4" -gt 0 ] && a="$a --ctx $4"
    [ "$9" = 1 ] && a="$a --bidirectional"
    echo "$a"
}

check_text_case() {
    # shellcheck disable=SC2046
    if ! "$BSA" layout $(layout_args "$@") --format text >"$TMP/mask.txt" 2>"$TMP/err"; then
        fail "layout $* exited non-zero: $(cat "$TMP/err")"
        return
    fi
    if oracle text "$@" "$TMP/mask.txt"; then ok; else fail "layout text $*"; fi
}

# ------------------------------------------------------------ text masks
#                pattern  seq blk ctx nv vs H  h bidir
check_text_case all        64   8   0  1  1 1  0 0
check_text_case all        96  16   0  1  1 1  0 1
check_text_case local     128   8  16  1  1 1  0 0
check_text_case local      64   8   8  1  1 1  0 0
check_text_case local     128  16  32  1  1 1  0 1
check_text_case strided   128   8   8  1  1 1  0 0
check_text_case strided   256   8  16  1  1 1  0 0
check_text_case strided   128   8  16  1  1 1  0 1
check_text_case fixed     128   8  32  1  2 1  0 0
for h in 0 1 2 3; do
    check_text_case fixed 128   8  32  4  1 4 $h 0
done
check_text_case fixed     128  16  64  2  2 4  3 1
oracle random 12 >"$TMP/random.txt"
while read -r cfg; do
    # shellcheck disable=SC2086
    check_text_case $cfg
done <"$TMP/random.txt"

# ------------------------------------------------------------ info numbers
# info_case "LAYOUT ARGS" KEY VALUE: the seed's block counts (spec 1.5)
info_case() {
    # shellcheck disable=SC2086
    if ! "$BSA" layout $1 --format info >"$TMP/info.txt" 2>"$TMP/err"; then
        fail "layout $1 --format info exited non-zero: $(cat "$TMP/err")"
        return
    fi
    got=$(awk -v k="$2" '$1 == k { $1 = ""; sub(/^ /, ""); print }' "$TMP/info.txt")
    if [ "$got" = "$3" ]; then ok; else fail "layout $1: $2 = '$got', want '$3'"; fi
}
info_case "--pattern all --seq 1024 --block 32" blocks 528
info_case "--pattern all --seq 1024 --block 32" nn_max 32
info_case "--pattern local --seq 1024 --block 32 --ctx 32" blocks 63
info_case "--pattern strided --seq 1024 --block 32 --ctx 32" blocks 32
F="--pattern fixed --seq 1024 --block 32 --ctx 128 --verts 4 --vertsize 1 --heads 4"
info_case "$F" head_blocks "192 192 192 192"
info_case "$F" nn_max 11
# the spec lists 29, head 0's figure; heads 1..3 reach 30, 31, 32
info_case "$F" tn_max 32
info_case "--pattern local --seq 256 --block 8 --ctx 16" blocks 93
info_case "--pattern strided --seq 256 --block 8 --ctx 16" blocks 48
info_case "--pattern fixed --seq 256 --block 8 --ctx 32 --verts 1 --vertsize 2" blocks 304
# kept elements of a random-free case, counted by the oracle
want=$(oracle count local 128 8 24 1 1 1 0 0)
[ -n "$PY" ] && info_case "--pattern local --seq 128 --block 8 --ctx 24" kept_elements "$want"

# ------------------------------------------------------------ png
png_case() { # png_case SCALE GRID CONFIG...
    scale=$1 grid=$2
    shift 2
    gflag=""
    [ "$grid" = 1 ] && gflag="--grid"
    rm -f "$TMP/m.png"
    # shellcheck disable=SC2046
    if ! "$BSA" layout $(layout_args "$@") --format png --out "$TMP/m.png" --scale "$scale" \
        $gflag 2>"$TMP/err"; then
        fail "layout $* --format png exited non-zero: $(cat "$TMP/err")"
        return
    fi
    if oracle png "$@" "$TMP/m.png" "$scale" "$grid"; then
        ok
    else
        fail "png $* scale $scale grid $grid"
    fi
}
png_case 1 0 fixed 128 8 32 4 1 4 2 0
png_case 3 1 local 64 8 16 1 1 1 0 0
png_case 2 0 strided 128 8 8 1 1 1 0 1

# ------------------------------------------------------------ bad arguments
# expect STATUS PATTERN ARGS...: exit status STATUS and PATTERN on stderr
expect() {
    want=$1 pat=$2
    shift 2
    "$BSA" "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" != "$want" ]; then
        fail "bsa $*: exit $got, want $want; stderr: $(cat "$TMP/err")"
    elif ! grep -q -- "$pat" "$TMP/err"; then
        fail "bsa $*: stderr lacks '$pat': $(cat "$TMP/err")"
    else
        ok
    fi
}
expect 2 "usage"
expect 2 "unknown command" frobnicate
expect 2 "usage" frobnicate
expect 2 "'abc' is not an integer" layout --seq abc
expect 2 "outside" layout --seq 64 --block 0
expect 2 "is not one of" layout --pattern bogus --seq 64
expect 2 "is not one of" layout --seq 64 --format jpeg
expect 2 "ctx is required" layout --pattern local --seq 64 --block 8
expect 2 "needs --out" layout --seq 64 --block 8 --format png
expect 2 "must be below" layout --seq 64 --block 8 --heads 2 --head 2
expect 2 "unknown option" layout --seq 64 --block 8 --bogus 1
expect 2 "needs a value" layout --seq
expect 2 "limited to" layout --seq 32768 --block 32
expect 2 "is not one of" demo --dtype f64
expect 2 "is not one of" demo --pattern local,diagonal
# library refusals: the status name and the library's reason
expect 1 "BSA_ERROR_[A-Z_]*: ." layout --seq 100 --block 32
expect 1 "BSA_ERROR_[A-Z_]*: ." layout --pattern strided --seq 128 --block 16 --ctx 16
expect 1 "BSA_ERROR_[A-Z_]*: ." layout --pattern fixed --seq 128 --block 8 --ctx 32 --verts 5 \
    --heads 5
expect 1 "cannot open" layout --seq 64 --block 8 --format png --out "$TMP/no/such/dir/x.png"
expect 1 "cannot open" layout --seq 64 --block 8 --format text --out "$TMP"

# ------------------------------------------------------------ memory estimates
# A run larger than the machine is refused before it allocates (exit 2, the
# estimate and the limit on stderr), within seconds.  The address space is
# capped (8 GiB) so that a regression fails here instead of exhausting the
# machine, and the estimate takes that cap as its limit, so that the runs
# below are refused on a host of any size (a 124 GiB one let a 37.5 GiB
# layout through to a failed allocation); not under a sanitizer, whose
# shadow memory reserves terabytes of address space at start (the 20 s
# timeout still bounds a regression, and MemAvailable the estimate).
sanitized=0
grep -qa "__asan_init\|__tsan_init" "$BSA" && sanitized=1
refused() { # refused ARGS...
    (
        [ "$sanitized" = 1 ] || ulimit -v 8388608 2>/dev/null
        exec timeout 20 "$BSA" "$@"
    ) >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" != 2 ]; then
        fail "bsa $*: exit $got, want 2 (refused on its memory estimate); stderr: $(head -c 600 "$TMP/err")"
    elif ! grep -q "memory estimate .* exceeds the .* available" "$TMP/err"; then
        fail "bsa $*: stderr lacks the memory estimate and limit: $(head -c 600 "$TMP/err")"
    elif [ "$(grep -c "exceeds" "$TMP/err")" != 1 ]; then
        fail "bsa $*: the refusal is not printed exactly once: $(cat "$TMP/err")"
    else
        ok
    fi
}
refused bench --seq 4194304
refused bench --seq 4194304 --json
refused bench --seq 65536 --heads 4096 --dim 1024 --pattern local
refused layout --seq 1073741824 --format info
refused layout --pattern local --seq 1073741824 --block 8 --ctx 64 --format info
refused layout --pattern fixed --seq 16384 --block 8 --ctx 64 --verts 8 --heads 1073741824
refused demo --batch 65536 --heads 1024 --seq 8192
# ... and one that fits prints its estimate and runs
if "$BSA" bench --seq 256 --block 32 --pattern all,local --iters 1 --rounds 1 --warmup 0 \
    --sgemm 0 --threads 1 >"$TMP/out" 2>"$TMP/err" &&
    grep -q "^memory estimate: .* of .* available" "$TMP/out" && grep -q "^local " "$TMP/out"; then
    ok
else
    fail "bench (small): $(cat "$TMP/out" "$TMP/err")"
fi
# --json keeps stdout JSON: the estimate goes to stderr
if "$BSA" bench --seq 256 --block 32 --iters 1 --rounds 1 --warmup 0 --sgemm 0 --threads 1 \
    --json >"$TMP/out" 2>"$TMP/err" && [ -s "$TMP/out" ] && ! grep -qv "^{" "$TMP/out" &&
    grep -q "memory estimate" "$TMP/err"; then ok; else
    fail "bench --json: $(cat "$TMP/out" "$TMP/err")"
fi
if "$BSA" layout --pattern local --seq 64 --block 8 --ctx 16 --format info >"$TMP/out" \
    2>"$TMP/err" && grep -q "memory estimate .* of .* available" "$TMP/err" &&
    grep -q "^blocks " "$TMP/out"; then ok; else
    fail "layout info estimate: $(cat "$TMP/out" "$TMP/err")"
fi

# ------------------------------------------------------------ bench progress
# The header comes first, then a progress line per pattern set up and per
# pattern and round (stderr), then the table.  One file holding both streams
# shows the order they were written in; off a terminal every update is a
# plain line of its own.
B="$BSA bench --seq 256 --pattern all,local,fixed --iters 1 --rounds 2 --warmup 0 --sgemm 0"
# shellcheck disable=SC2086
if $B --threads 1 >"$TMP/both" 2>&1; then
    line_of() { grep -n "$1" "$TMP/both" | head -n 1 | cut -d: -f1; }
    hdr=$(line_of "^device: ")
    mem=$(line_of "^memory estimate: ")
    first=$(line_of "^bench: ")
    table=$(line_of "^pattern ")
    got=$(grep "^bench: " "$TMP/both" | sed 's/: fwd [0-9.]* ms bwd [0-9.]* ms$//')
    want="bench: setting up all (1 of 3 patterns)
bench: setting up local (2 of 3 patterns)
bench: setting up fixed (3 of 3 patterns)
bench: round 1 of 2: all (1 of 3)
bench: round 1 of 2: local (2 of 3)
bench: round 1 of 2: fixed (3 of 3)
bench: round 2 of 2: all (1 of 3)
bench: round 2 of 2: local (2 of 3)
bench: round 2 of 2: fixed (3 of 3)"
    if [ -z "$hdr" ] || [ -z "$mem" ] || [ -z "$first" ] || [ -z "$table" ] ||
        [ "$hdr" -gt "$mem" ] || [ "$mem" -gt "$first" ] || [ "$first" -gt "$table" ]; then
        fail "bench: header (line $hdr, estimate $mem), progress ($first), table ($table) out of order"
    elif [ "$got" != "$want" ]; then
        fail "bench progress lines: got
$got
want
$want"
    elif [ "$(grep -c "^bench: round .* fwd [0-9.]* ms bwd [0-9.]* ms$" "$TMP/both")" != 6 ] ||
        grep -q "$(printf '\r')" "$TMP/both"; then
        fail "bench progress: want 6 plain round lines with their times, no carriage return"
    else
        ok
    fi
else
    fail "bench progress run: $(cat "$TMP/both")"
fi
# on a terminal (script(1) gives it one) the updates rewrite one line in place;
# skipped where script is missing or cannot open a pseudo-terminal
if ! command -v script >/dev/null 2>&1 || ! script -qec true /dev/null >/dev/null 2>&1; then
    SKIPS=$((SKIPS + 1))
    CHECKS=$((CHECKS + 1))
    echo "skipped: bench on a terminal (no working script(1))"
else
    if TERM=xterm script -qec "$B --pattern all,local --threads 1" /dev/null >"$TMP/tty" 2>&1 &&
        [ "$(grep -o "$(printf '\r\033')\[Kbench: " "$TMP/tty" | wc -l)" = 6 ] &&
        ! grep -q "^bench: " "$TMP/tty" && grep -q "^local  *bwd " "$TMP/tty"; then ok; else
        fail "bench on a terminal: $(cat -v "$TMP/tty")"
    fi
fi

# ------------------------------------------------------------ shared options
# one --seq range, one --block range and default, backend auto everywhere
for sub in demo layout bench; do
    expect 2 "--seq: 7 is outside \[8, 1073741824\]" $sub --seq 7
    expect 2 "--seq: 1073741825 is outside \[8, 1073741824\]" $sub --seq 1073741825
    expect 2 "--block: 256 is outside \[8, 128\]" $sub --seq 256 --block 256
    expect 2 "--block: 4 is outside \[8, 128\]" $sub --seq 256 --block 4
    if "$BSA" help $sub | grep -q -- "--block N .*(default 32)"; then ok; else
        fail "help $sub: --block's default is not 32"
    fi
done
for sub in demo bench; do
    if "$BSA" help $sub | grep -q -- "--backend S .*(default auto"; then ok; else
        fail "help $sub: --backend's default is not auto"
    fi
done

# ------------------------------------------------------------ densities
# "element density" (kept pairs / all) and "block density" (kept blocks /
# all), named so wherever shown; the causal "all" pattern of seq T, block B
# keeps T(T+1)/2 of T^2 elements and n(n+1)/2 of n^2 blocks (n = T/B)
dens() { awk -v t="$1" -v b="$2" -v f="$3" 'BEGIN { n = t / b
    printf f " " f, t * (t + 1) / 2 / (t * t), n * (n + 1) / 2 / (n * n) }'; }
info_case "--pattern all --seq 1024 --block 32" element_density "$(dens 1024 32 %.6f | cut -d' ' -f1)"
info_case "--pattern all --seq 1024 --block 32" block_density "$(dens 1024 32 %.6f | cut -d' ' -f2)"
if [ -s "$TMP/both" ] &&
    [ "$(awk '$1 == "all" && $2 == "fwd" { print $5, $6 }' "$TMP/both")" = "$(dens 256 32 %.4f)" ] &&
    grep -q "^pattern .* elem-dens blk-dens " "$TMP/both"; then ok; else
    fail "bench: elem-dens / blk-dens of 'all' are not $(dens 256 32 %.4f): $(cat "$TMP/both")"
fi
if "$BSA" bench --seq 256 --iters 1 --rounds 1 --warmup 0 --sgemm 0 --threads 1 --json \
    >"$TMP/out" 2>/dev/null && grep -q "\"element_density\": $(dens 256 32 %.6f |
    sed 's/ /, "block_density": /')," "$TMP/out"; then ok; else
    fail "bench --json densities: $(cat "$TMP/out")"
fi
# no bare "density" left in what bench, demo and layout print
"$BSA" layout --pattern all --seq 64 --block 8 --format info >"$TMP/info.txt" 2>/dev/null
"$BSA" demo --quick --pattern local --reps 1 >"$TMP/demo" 2>&1
if grep -q "elem-dens" "$TMP/demo" &&
    ! cat "$TMP/both" "$TMP/info.txt" "$TMP/demo" |
    sed 's/element[ _]density//g; s/block[ _]density//g' | grep -qi "density"; then ok; else
    fail "an unqualified 'density' is shown: $(grep -i density "$TMP/both" "$TMP/info.txt" "$TMP/demo")"
fi

# ------------------------------------------------------------ demo arguments
# Bad demo arguments are refused before the header, once, with exit 2.
demo_refused() { # demo_refused PATTERN ARGS...
    pat=$1
    shift
    timeout 60 "$BSA" demo "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" != 2 ]; then
        fail "demo $*: exit $got, want 2; stderr: $(cat "$TMP/err")"
    elif [ -s "$TMP/out" ]; then
        fail "demo $*: printed before refusing: $(cat "$TMP/out")"
    elif [ "$(grep -c . "$TMP/err")" != 1 ] || ! grep -q -- "$pat" "$TMP/err"; then
        fail "demo $*: want one error line with '$pat', got: $(cat "$TMP/err")"
    else
        ok
    fi
}
demo_refused "not a multiple of --block 12" --block 12
demo_refused "block = 12" --block 12 --seq 96
demo_refused "block = 12" --block 12 --seq 96 --pattern local,strided
demo_refused "strided pattern" --quick --pattern strided --stride 5
demo_refused "fixed pattern" --quick --pattern fixed --verts 3
demo_refused "multiple of 8" --quick --dim 12

# ------------------------------------------------------------ help, version
# --version: CMakeLists.txt's project version, and the commit the build was
# configured from: an ancestor of (or) HEAD in a git checkout, else "unknown"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
want=$(sed -n 's/^project(bsa VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
if "$BSA" --version >"$TMP/out" 2>&1 && grep -q "^bsa $want (git .*; header $want)$" "$TMP/out" &&
    grep -q "backends:.*cpu" "$TMP/out"; then ok; else
    fail "--version, want $want: $(cat "$TMP/out")"
fi
hash=$(sed -n 's/^bsa [0-9.]* (git \([0-9a-z]*\);.*/\1/p' "$TMP/out")
if git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
    if echo "$hash" | grep -Eq '^[0-9a-f]{12}$' && git -C "$ROOT" merge-base --is-ancestor "$hash" HEAD; then
        ok
    else
        fail "--version: git '$hash' is not a commit of $ROOT's history"
    fi
elif [ "$hash" = unknown ]; then ok; else
    fail "--version: git '$hash' outside a git checkout (want unknown)"
fi
if "$BSA" help >"$TMP/out" 2>&1 && grep -q demo "$TMP/out" && grep -q layout "$TMP/out" &&
    grep -q bench "$TMP/out"; then ok; else fail "help: $(cat "$TMP/out")"; fi
if "$BSA" help demo >"$TMP/out" 2>&1 && grep -q -- "--quick" "$TMP/out"; then ok; else
    fail "help demo: $(cat "$TMP/out")"
fi
# text to a file equals text to stdout
if "$BSA" layout --pattern local --seq 64 --block 8 --ctx 16 --out "$TMP/a.txt" &&
    "$BSA" layout --pattern local --seq 64 --block 8 --ctx 16 >"$TMP/b.txt" &&
    cmp -s "$TMP/a.txt" "$TMP/b.txt" && [ -s "$TMP/a.txt" ]; then ok; else fail "layout --out"; fi
if "$BSA" help layout >"$TMP/out" 2>&1 && grep -q -- "--pattern" "$TMP/out"; then ok; else
    fail "help layout: $(cat "$TMP/out")"
fi

# ------------------------------------------------------------ demo
BACKEND=${BSA_TEST_BACKEND:-cpu}
if "$BSA" demo --quick --backend "$BACKEND" >"$TMP/demo" 2>&1; then
    if grep -q "^memory: estimate .* of .* available" "$TMP/demo"; then ok; else
        fail "demo: no memory estimate in the header"
    fi
    for p in all local strided fixed; do
        if grep -q "^$p .* ok$" "$TMP/demo"; then ok; else fail "demo: no passing row for $p"; fi
    done
else
    fail "demo --quick failed:"
    cat "$TMP/demo"
fi
for dt in f16 bf16; do
    if "$BSA" demo --quick --backend "$BACKEND" --dtype $dt --pattern strided,fixed --reps 1 \
        >"$TMP/demo" 2>&1; then ok; else
        fail "demo --dtype $dt failed:"
        cat "$TMP/demo"
    fi
done
if "$BSA" demo --quick --backend "$BACKEND" --bidirectional --reps 1 >"$TMP/demo" 2>&1 &&
    grep -q "bidirectional" "$TMP/demo"; then ok; else
    fail "demo --bidirectional failed:"
    cat "$TMP/demo"
fi
# The checker must be able to fail: a perturbed output has to be caught.
if "$BSA" demo --quick --backend "$BACKEND" --pattern local --reps 1 --perturb 10 \
    >"$TMP/demo" 2>&1; then
    fail "demo accepted a perturbed output"
elif grep -q "^local .*[0-9].* FAIL$" "$TMP/demo"; then ok; else
    fail "demo --perturb: no FAIL in output: $(cat "$TMP/demo")"
fi

echo "$((CHECKS - SKIPS)) checks, $FAILS failed, $SKIPS skipped (no python3, or no terminal for script)"
[ "$FAILS" = 0 ]
