#!/bin/bash
# GPU check and benchmark of the CUDA backend, in one go, on a machine with
# an NVIDIA GPU and nvcc:
#   1. builds with CUDA (build-gpu/, its wall time printed),
#   2. runs the GPU test suites (tests/test_cuda.c, tests/test_cuda_features.c) and,
#      with RUN_ALL_TESTS=1, every ctest,
#   3. times bsa (bench/gpu/gpu_bench.c) and the peers (bench/peers/flex_peer.py)
#      in the same run on the same GPU; REPS (default 3) runs of the bench,
#      whose rows summarize.py reduces to median [min-max]; BASE=DIR also
#      builds (in the background, from the start) and times the source tree
#      in DIR (an earlier version, e.g. from git archive) on the same card,
#      its runs alternating with this version's, for before/after figures,
#   4. runs the reduced GPU suite under compute-sanitizer memcheck, racecheck and initcheck,
#   5. prints the summary table last.
# STAGES=build,test,torch,bench,peers,sanitize,cpu selects steps (torch: the
# python/tests/gpu suites, run beside the C suites; cpu: the CPU backend
# beside torch SDPA-CPU on all of this host's cores, REPS runs of
# bench/plot_readme_chart.py, tabled by bench/cpu_sdpa_table.py; not in the
# default) (SAN_TOOLS the sanitizer's tools);
# logs go to $OUT (or bench/gpu/out).
# CMAKE_EXTRA: more CMake flags.  A machine without cmocka (the tests need
# it) takes the one scripts/gpu-carry-cmocka.sh unpacks into .deps/cmocka,
# when the call carries it; NCCL comes from python3's nvidia.nccl wheel
# where there is one.  A commit's whole check in two device calls (each
# well within 10 minutes on an H100):
#   STAGES=build,test,torch RUN_ALL_TESTS=1 BUILD_TARGETS=all, then STAGES=sanitize
# SAN_TIMEOUT (default 300 s) limits each sanitizer run: racecheck of the
# reduced test_cuda took 143 s on an H100.
# TESTS: the suites the test stage runs (default test_cuda
# test_cuda_features test_cuda_reliability); PARALLEL=1 runs the sanitize
# stage beside the test and torch stages (one GPU; together they took
# ~300 + ~230 s on an H100, alone).  A kernel change's check in two calls
# on one warm machine (not run yet this way):
#   STAGES=build,test,bench TESTS=test_cuda_hostile BASE=.base
#     BUILD_TARGETS="test_cuda_hostile bsa_gpu_bench", then
#   STAGES=build,test,torch,sanitize PARALLEL=1
set -u
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-bench/gpu/out}
mkdir -p "$OUT"
: >"$OUT/logs.txt"
STAGES=${STAGES:-build,test,bench,peers,sanitize}
ARCHS=${BSA_CUDA_ARCHITECTURES:-90}
BUILD=${BUILD:-build-gpu}
has() { [[ ",$STAGES," == *",$1,"* ]]; }
# At most 8 files come back from the device machine: the logs are folded
# into one on every exit, also when a time limit stops the script (a run
# stopped in its peer stage once lost every test log).
fold_logs() {
    for f in device.txt build.log build_base.log test_cuda.log test_cuda_features.log test_cuda_reliability.log ctest.log torch_tests.log sanitize_memcheck.log sanitize_racecheck.log sanitize_initcheck.log \
        bsa_bench.err peers.err cpu_bench.log; do
        [ -f "$OUT/$f" ] && { echo "######## $f"; cat "$OUT/$f"; rm -f "$OUT/$f"; }
    done >>"$OUT/logs.txt"
}
trap fold_logs EXIT
trap 'exit 143' TERM INT
summary=()
note() { summary+=("$1"); echo "== $1"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/device.txt"
nvcc --version | tail -2

cm=$PWD/.deps/cmocka/usr
if [ -f "$cm/include/cmocka.h" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcmocka\.so'; then
    CMAKE_EXTRA="${CMAKE_EXTRA:-} -DCMOCKA_INCLUDE_DIR=$cm/include -DCMOCKA_LIBRARY=$cm/lib/x86_64-linux-gnu/libcmocka.so"
    export LD_LIBRARY_PATH="$cm/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "cmocka: the carried one ($cm)"
fi

# NCCL: the one of the machine's torch environment (the nvidia-nccl wheel),
# so that tests/test_cuda_dist.c has its NCCL case
if [[ "${CMAKE_EXTRA:-}" != *BSA_WITH_NCCL* ]]; then
    nccl=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null || true)
    if [ -n "$nccl" ] && [ -d "$nccl/include" ]; then
        CMAKE_EXTRA="${CMAKE_EXTRA:-} -DBSA_WITH_NCCL=ON -DBSA_NCCL_ROOT=$nccl"
        echo "NCCL: $nccl"
    fi
fi

base_pid=
if has bench && [ -n "${BASE:-}" ] && [ -d "$BASE" ]; then
    # the earlier version's bench, built beside this one's
    bash bench/gpu/base_build.sh "$BASE" "$ARCHS" "$(nproc)" >"$OUT/build_base.log" 2>&1 &
    base_pid=$!
fi

if has build; then
    t0=$(date +%s)
    cmake -S . -B "$BUILD" -DBSA_WITH_CUDA=ON -DBSA_CUDA_ARCHITECTURES="$ARCHS" ${CMAKE_EXTRA:-} \
        -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
        cmake --build "$BUILD" -j "$(nproc)" \
            --target ${BUILD_TARGETS:-test_cuda test_cuda_features test_cuda_reliability bsa_gpu_bench} \
            >>"$OUT/build.log" 2>&1
    rc=$?
    t1=$(date +%s)
    note "build (archs $ARCHS, $(nproc) cores): rc=$rc, $((t1 - t0)) s"
    [ $rc -ne 0 ] && { tail -40 "$OUT/build.log"; exit 1; }
    # the Hopper kernels must run on wgmma (HGMMA in SASS), with no local memory
    hobj=$(find "$BUILD" -path '*bsa_cuda_hopper.dir*' -name 'wgmma_*.cu.o')
    if [ -n "$hobj" ] && command -v cuobjdump >/dev/null; then
        for o in $hobj; do cuobjdump -sass "$o"; done >"$OUT/wgmma_sass.txt" 2>&1
        note "wgmma kernels SASS: $(grep -c 'HGMMA' "$OUT/wgmma_sass.txt") HGMMA, $(grep -cE 'LDL|STL' "$OUT/wgmma_sass.txt") LDL/STL, $(grep -c 'Function :' "$OUT/wgmma_sass.txt") kernels"
        grep -E 'wgmma|C75[0-9][0-9]' "$OUT/build.log" | head -5
        rm -f "$OUT/wgmma_sass.txt"
    fi
fi

# compute-sanitizer over the reduced GPU suites; its summary lines go to
# stdout (a background stage's are read back from a file)
sanitize_stage() {
    for tool in ${SAN_TOOLS:-memcheck racecheck initcheck}; do
        for t in test_cuda test_cuda_features; do
            t0=$(date +%s)
            (cd "$BUILD" && BSA_CUDA_TEST_QUICK=1 timeout ${SAN_TIMEOUT:-300} compute-sanitizer \
                --tool $tool --error-exitcode 9 "./tests/$t") >>"$OUT/sanitize_$tool.log" 2>&1
            rc=$?
            echo "compute-sanitizer $tool $t (reduced set): rc=$rc ($(($(date +%s) - t0)) s) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize_$tool.log" | tail -1)"
        done
    done
}
san_pid=
if has sanitize && [ "${PARALLEL:-0}" = 1 ]; then
    sanitize_stage >"$OUT/sanitize_notes.txt" &
    san_pid=$!
fi

torch_pid=
if has torch; then
    # the torch tests (python/tests/gpu) beside the C suites: correctness only
    BSA_LIBRARY="$PWD/$BUILD/libbsa.so" timeout ${TORCH_TIMEOUT:-400} sh python/tests/gpu/run_torch_tests.sh \
        >"$OUT/torch_tests.log" 2>&1 &
    torch_pid=$!
fi

if has test; then
    for t in ${TESTS:-test_cuda test_cuda_features test_cuda_reliability}; do
        t0=$(date +%s)
        (cd "$BUILD" && "./tests/$t") >"$OUT/$t.log" 2>&1
        rc=$?
        note "$t: rc=$rc ($(($(date +%s) - t0)) s); $(grep -c '\[       OK \]' "$OUT/$t.log") ok, $(grep -c '\[  FAILED  \]' "$OUT/$t.log") failed lines"
        grep -E "FAILED|rel L2|worst|^  (f32|f16|bf16)" "$OUT/$t.log" | head -40
    done
    if [ "${RUN_ALL_TESTS:-0}" = 1 ]; then
        cmake --build "$BUILD" -j "$(nproc)" >>"$OUT/build.log" 2>&1
        # the three suites above already ran: ctest runs the rest
        (cd "$BUILD" && ctest --output-on-failure -j 8 \
            -E '^(test_cuda|test_cuda_features|test_cuda_reliability)$') >"$OUT/ctest.log" 2>&1
        note "ctest (all): rc=$? $(grep 'tests passed' "$OUT/ctest.log")"
    fi
fi

if [ -n "$san_pid" ]; then
    wait "$san_pid"
    while read -r l; do note "$l"; done <"$OUT/sanitize_notes.txt"
    rm -f "$OUT/sanitize_notes.txt"
fi

if [ -n "$torch_pid" ]; then
    wait "$torch_pid"
    note "torch tests: rc=$? $(grep -E 'passed' "$OUT/torch_tests.log" | tail -1)"
    grep -E "FAIL|Error" "$OUT/torch_tests.log" | head -20
fi

if has bench; then
    : >"$OUT/bsa_bench.jsonl"
    base_ok=0
    if [ -n "$base_pid" ]; then
        wait "$base_pid" && base_ok=1
        note "base version ($BASE) build: ok=$base_ok"
        : >"$OUT/bsa_bench_base.jsonl"
    fi
    # REPS runs, alternating with the base version's: medians in summarize.py
    # (the order swaps every run, so that neither version always runs first)
    base_run() {
        [ "$base_ok" = 1 ] && ./build-base/bsa_gpu_bench ${BENCH_ARGS:-} \
            >>"$OUT/bsa_bench_base.jsonl" 2>>"$OUT/bsa_bench.err"
    }
    for rep in $(seq "${REPS:-3}"); do
        [ $((rep % 2)) = 0 ] && base_run
        "./$BUILD/bsa_gpu_bench" ${BENCH_ARGS:-} >>"$OUT/bsa_bench.jsonl" 2>>"$OUT/bsa_bench.err"
        rc=$?
        [ $((rep % 2)) = 1 ] && base_run
        note "bsa_gpu_bench run $rep: rc=$rc"
    done
    note "bsa_gpu_bench: $(wc -l <"$OUT/bsa_bench.jsonl") rows, base $(wc -l 2>/dev/null <"$OUT/bsa_bench_base.jsonl") rows"
    cat "$OUT/bsa_bench.err" | tail -5
fi

if has peers; then
    : >"$OUT/peers.jsonl"
    : >"$OUT/peers.err"
    for cfg in ${PEER_CONFIGS:-all-d128 all-d64 all-d128-t16k all-d64-t16k strided-L128-b32 fixed-L128-b32 local-L256-b64 gqa-all-d128 varlen-all-d128}; do
        PYTHONUNBUFFERED=1 timeout ${PEER_TIMEOUT:-150} python3 bench/peers/flex_peer.py "$cfg" \
            >>"$OUT/peers.jsonl" 2>>"$OUT/peers.err" || echo "peer $cfg: rc=$?" >>"$OUT/peers.err"
    done
    note "peers: $(wc -l <"$OUT/peers.jsonl") rows"
    grep -E "failed|rc=" "$OUT/peers.err" | head
    tail -5 "$OUT/peers.err"
fi

if has sanitize && [ -z "$san_pid" ]; then
    while read -r l; do note "$l"; done < <(sanitize_stage)
fi

if has cpu; then
    # the CPU bench of issue 23 beside torch SDPA-CPU, every core of this host
    cmake --build "$BUILD" -j "$(nproc)" --target bsa bsa_cli >>"$OUT/build.log" 2>&1
    for rep in $(seq "${REPS:-3}"); do
        BSA_LIBRARY="$PWD/$BUILD/libbsa.so" timeout "${CPU_TIMEOUT:-150}" python3 \
            bench/plot_readme_chart.py --bsa "$BUILD/bsa" --out "$OUT/cpu$rep" \
            --threads "$(nproc)" --rows-only >>"$OUT/cpu_bench.log" 2>&1
        note "cpu bench run $rep ($(nproc) threads): rc=$?"
        if [ -f "$OUT/cpu$rep/bench-cpu.jsonl" ]; then
            mv "$OUT/cpu$rep/bench-cpu.jsonl" "$OUT/bench-cpu-rep$rep.jsonl"
        fi
        rm -rf "$OUT/cpu$rep"
    done
    python3 bench/cpu_sdpa_table.py "$OUT" >"$OUT/cpu_table.md" 2>>"$OUT/cpu_bench.log"
fi

echo
echo "================ summary"
for s in "${summary[@]}"; do echo "$s"; done
[ -s "$OUT/cpu_table.md" ] && cat "$OUT/cpu_table.md"
if [ -s "$OUT/bsa_bench.jsonl" ]; then
    python3 bench/gpu/summarize.py "$OUT/bsa_bench.jsonl" "$OUT/peers.jsonl" "$OUT/summary.md" \
        "$OUT/bsa_bench_base.jsonl"
fi
