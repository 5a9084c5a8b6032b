#!/bin/bash
# GPU check and benchmark of the CUDA backend, in one go, on a machine with
# an NVIDIA GPU and nvcc:
#   1. builds with CUDA (build-gpu/, its wall time printed),
#   2. runs the GPU test suite (tests/test_cuda.c) and, with RUN_ALL_TESTS=1, every ctest,
#   3. times bsa (bench/gpu/gpu_bench.c) and the peers (bench/peers/flex_peer.py)
#      in the same run on the same GPU,
#   4. runs the reduced GPU suite under compute-sanitizer memcheck, racecheck and initcheck,
#   5. prints the summary table last.
# STAGES=build,test,bench,peers,sanitize selects steps; logs go to $OUT (or bench/gpu/out).
# CMAKE_PREFIX_PATH may point at a cmocka install (tests need it).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/gpu/out}
mkdir -p "$OUT"
STAGES=${STAGES:-build,test,bench,peers,sanitize}
ARCHS=${BSA_CUDA_ARCHITECTURES:-90}
BUILD=${BUILD:-build-gpu}
has() { [[ ",$STAGES," == *",$1,"* ]]; }
summary=()
note() { summary+=("$1"); echo "== $1"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/device.txt"
nvcc --version | tail -2

if has build; then
    t0=$(date +%s)
    cmake -S . -B "$BUILD" -DBSA_WITH_CUDA=ON -DBSA_CUDA_ARCHITECTURES="$ARCHS" \
        -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
        cmake --build "$BUILD" -j "$(nproc)" --target ${BUILD_TARGETS:-test_cuda bsa_gpu_bench} \
            >>"$OUT/build.log" 2>&1
    rc=$?
    t1=$(date +%s)
    note "build (archs $ARCHS, $(nproc) cores): rc=$rc, $((t1 - t0)) s"
    [ $rc -ne 0 ] && { tail -40 "$OUT/build.log"; exit 1; }
fi

if has test; then
    t0=$(date +%s)
    (cd "$BUILD" && ./tests/test_cuda) >"$OUT/test_cuda.log" 2>&1
    rc=$?
    note "test_cuda: rc=$rc ($(($(date +%s) - t0)) s); $(grep -c '\[       OK \]' "$OUT/test_cuda.log") ok, $(grep -c '\[  FAILED  \]' "$OUT/test_cuda.log") failed lines"
    grep -E "FAILED|rel L2|worst|^  (f32|f16|bf16)" "$OUT/test_cuda.log" | head -40
    if [ "${RUN_ALL_TESTS:-0}" = 1 ]; then
        cmake --build "$BUILD" -j "$(nproc)" >>"$OUT/build.log" 2>&1
        (cd "$BUILD" && ctest --output-on-failure -j 8) >"$OUT/ctest.log" 2>&1
        note "ctest (all): rc=$? $(grep 'tests passed' "$OUT/ctest.log")"
    fi
fi

if has bench; then
    "./$BUILD/bsa_gpu_bench" ${BENCH_ARGS:-} >"$OUT/bsa_bench.jsonl" 2>"$OUT/bsa_bench.err"
    note "bsa_gpu_bench: rc=$? ($(wc -l <"$OUT/bsa_bench.jsonl") rows)"
    # the previous forward (64-row tiles) on the same card, for bench/NOTES.md
    BSA_CUDA_FWD=64 "./$BUILD/bsa_gpu_bench" --only all >"$OUT/bsa_bench_fwd64.jsonl" \
        2>>"$OUT/bsa_bench.err"
    # natural (not gathered) key tiles, for the same comparison
    BSA_CUDA_GATHER=0 "./$BUILD/bsa_gpu_bench" >"$OUT/bsa_bench_nogather.jsonl" \
        2>>"$OUT/bsa_bench.err"
    cat "$OUT/bsa_bench.err" | tail -5
fi

if has peers; then
    : >"$OUT/peers.jsonl"
    : >"$OUT/peers.err"
    for cfg in ${PEER_CONFIGS:-all-d128 all-d64 strided-L128-b32 fixed-L128-b32 local-L256-b64}; do
        PYTHONUNBUFFERED=1 timeout ${PEER_TIMEOUT:-150} python3 bench/peers/flex_peer.py "$cfg" \
            >>"$OUT/peers.jsonl" 2>>"$OUT/peers.err" || echo "peer $cfg: rc=$?" >>"$OUT/peers.err"
    done
    note "peers: $(wc -l <"$OUT/peers.jsonl") rows"
    grep -E "failed|rc=" "$OUT/peers.err" | head
    tail -5 "$OUT/peers.err"
fi

if has sanitize; then
    for tool in memcheck racecheck initcheck; do
        t0=$(date +%s)
        (cd "$BUILD" && BSA_CUDA_TEST_QUICK=1 timeout ${SAN_TIMEOUT:-150} compute-sanitizer --tool $tool \
            --error-exitcode 9 ./tests/test_cuda) >"$OUT/sanitize_$tool.log" 2>&1
        rc=$?
        note "compute-sanitizer $tool (reduced set): rc=$rc ($(($(date +%s) - t0)) s) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize_$tool.log" | tail -1)"
    done
fi

echo
echo "================ summary"
for s in "${summary[@]}"; do echo "$s"; done
if [ -s "$OUT/bsa_bench.jsonl" ]; then
    python3 bench/gpu/summarize.py "$OUT/bsa_bench.jsonl" "$OUT/peers.jsonl" "$OUT/summary.md"
fi
# at most 8 files come back from the device machine: fold the logs into one
for f in device.txt build.log test_cuda.log ctest.log sanitize_memcheck.log sanitize_racecheck.log sanitize_initcheck.log \
    bsa_bench.err peers.err; do
    [ -f "$OUT/$f" ] && { echo "######## $f"; cat "$OUT/$f"; rm -f "$OUT/$f"; }
done >"$OUT/logs.txt"
