#!/bin/bash
# Times variants of the kernel sources against each other, and against an
# earlier tree, in one run on one card (how v41's softmax variants were
# compared, bench/NOTES.md):
#   VARIANTS="O=path/O.cuh E=path/E.diff H= ..."  each named: a replacement
#            header, or a patch (.diff, applied with patch -p1 at the root
#            and reversed after), or nothing (the tree as it is)
#   HEADER   the header replacements replace (default backends/cuda/tc_kernels.cuh)
#   OBJS     the generated objects recompiled per variant (default the Hopper
#            forward and chunk ones); every other object keeps the first
#            build's code, so a variant changes only the kernels in OBJS
#   CFGS     bsa_gpu_bench --only arguments (default the v40-slowed rows)
#   BASE     optional tree built beside and timed too; the device machine
#            gets the working tree without .git, so make it here, untracked
#            (`git archive REV | tar -x -C .base`), as the patches
#            (`git diff main BRANCH > .variants/C.diff`)
#   REPS     rounds (default 3); each round runs every variant, then BASE
# One full build, then per variant OBJS recompiled and the bench relinked;
# prints median [min-max] of the rounds per configuration and variant.
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/header_variants}
mkdir -p "$OUT"
HEADER=${HEADER:-backends/cuda/tc_kernels.cuh}
OBJS=${OBJS:-hopper_fwd hopper_chunk}
CFGS=${CFGS:-=all-d64 =local-L256-b64 =varlen-all-d128 =all-d128}
REPS=${REPS:-3}
[ -n "${VARIANTS:-}" ] || { echo "VARIANTS is empty"; exit 2; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/device.txt"
orig=$(mktemp)
cp "$HEADER" "$orig"
trap 'cp "$orig" "$HEADER"' EXIT
if [ -n "${BASE:-}" ]; then
    bash bench/gpu/base_build.sh "$BASE" 90 6 >"$OUT/build_base.log" 2>&1 &
    bp=$!
fi
t0=$(date +%s)
cmake -S . -B build-var -DBSA_WITH_CUDA=ON -DBSA_CUDA_ARCHITECTURES=90 -DBSA_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
    cmake --build build-var -j 12 --target bsa_gpu_bench >>"$OUT/build.log" 2>&1 ||
    { echo "build failed"; tail -30 "$OUT/build.log"; exit 1; }
echo "full build $(($(date +%s) - t0)) s"
mkdir -p build-var/variants
names=
keep=()
for o in $OBJS; do keep+=(! -name "$o.cu.o"); done
for nv in $VARIANTS; do
    v=${nv%%=*}
    names="$names $v"
    src=${nv#*=}
    case $src in
    "") ;;
    *.diff) patch -p1 -s <"$src" || { echo "variant $v: patch failed"; exit 1; } ;;
    *) cp "$src" "$HEADER" ;;
    esac
    # the variant's objects are compiled again whichever target holds them
    # (removed: no reliance on header dependencies); every other object is
    # made newer than the changed sources, so that it keeps the first build
    for o in $OBJS; do find build-var -name "$o.cu.o" -delete; done
    find build-var -name '*.o' "${keep[@]}" -exec touch {} +
    cmake --build build-var -j "$(nproc)" --target bsa_gpu_bench >>"$OUT/build.log" 2>&1 ||
        { echo "variant $v failed"; tail -30 "$OUT/build.log"; exit 1; }
    cp build-var/bsa_gpu_bench "build-var/variants/$v"
    case $src in *.diff) patch -R -p1 -s <"$src" ;; esac
    echo "variant $v built $(($(date +%s) - t0)) s"
done
cp "$orig" "$HEADER"
if [ -n "${BASE:-}" ]; then
    wait "$bp" && [ -x build-base/bsa_gpu_bench ] && cp build-base/bsa_gpu_bench build-var/variants/base &&
        names="$names base"
    echo "base built $(($(date +%s) - t0)) s"
fi
: >"$OUT/rows.jsonl"
for rep in $(seq "$REPS"); do
    for v in $names; do
        for c in $CFGS; do
            "build-var/variants/$v" --only "$c" 2>>"$OUT/bench.err" |
                sed "s/^{/{\"variant\": \"$v\", /" >>"$OUT/rows.jsonl"
        done
    done
    echo "round $rep $(($(date +%s) - t0)) s"
done
python3 - "$OUT/rows.jsonl" <<'PY' | tee "$OUT/summary.txt"
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cfgs = sorted({r["name"] for r in rows})
vs = list(dict.fromkeys(r["variant"] for r in rows))
for key in ("fwd_ms", "fwdbwd_ms"):
    print(f"{key}: median [min-max] of the rounds")
    for c in cfgs:
        cells = []
        for v in vs:
            x = [r[key] for r in rows if r["name"] == c and r["variant"] == v]
            cells.append(f"{v} {st.median(x):.3f} [{min(x):.3f}-{max(x):.3f}]" if x else f"{v} -")
        print(f"  {c:18s} " + " | ".join(cells))
PY
