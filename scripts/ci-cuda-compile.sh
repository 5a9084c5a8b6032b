#!/bin/sh
# CI (no GPU): builds the CUDA backend for every NVIDIA target the README
# names, so that a compile error cannot land, and fails where a Volta
# kernel spills registers on a card that runs it.  Each build is CMake's
# own build of the shared library (target bsa: bsa_obj, and with sm_90 the
# Hopper object library bsa_cuda_hopper), so every file the build has is
# compiled and none can be missed.  The first CUDA 13 build also builds the
# GPU test programs (tests/test_cuda*.c) and the GPU timing harness: `make
# test` builds them only where a GPU is present (cmake/cuda.cmake), so this
# is where a machine without one compiles them:
#   CUDA 13 (the nvcc on the PATH or /usr/local/cuda; skipped if none):
#     sm_80, sm_89 (L4, L40, RTX 40xx), sm_90 (+ the sm_90a Hopper
#     kernels), sm_100, sm_120 (B200, RTX 50xx: the mma.sync and reference
#     kernels; the Hopper ones are sm_90a only) in build-ci-cuda, with the NCCL communicator of context
#     parallelism (NCCL from PyPI: scripts/install-nccl.sh); sm_75 (T4) in build-ci-cuda-sm75;
#   CUDA 11.8 (Debian bookworm's non-free nvidia-cuda-toolkit, unpacked
#     into a private prefix by scripts/install-cuda11.sh; host compiler
#     clang++-14 from Debian, as nvcc 11.8 takes no g++ 12): sm_70 (V100:
#     the Volta path; CUDA 13 dropped sm_70) in build-ci-cuda11-sm70, and
#     sm_80 and sm_86 (A10, RTX 30xx) (the mma.sync path) in
#     build-ci-cuda11.  A default build (cmake/cuda.cmake) runs sm_80 code
#     on sm_86 / sm_89; CI compiles each for itself once (sm_86 with CUDA
#     11.8, sm_89 with CUDA 13: one more architecture of the mma.sync set
#     costs ~150 s of CPU), so code their compilers reject cannot land.
# The spill check: ptxas's -warn-spills warnings (backends/cuda/
# CMakeLists.txt) name the kernel, not the architecture, so the two
# architectures that run the Volta path have builds of their own: no
# bsa_cuda::volta kernel may spill at sm_70, nor at sm_75 those of head
# dims 32 and 64 (at 128 they need more shared memory than a T4 block
# has, so a T4 never runs them).  Other spills are listed, not failed.
# Prints each build's wall and CPU time (user + system of the build's
# processes: steadier than wall time on a shared machine).  Exits nonzero
# on the first failure (with the last 40 lines of its log).
# Env: BSA_CI_SKIP_CUDA11=1 (or the older BSA_CI_SKIP_SM70=1) skips the
# CUDA 11.8 part, BSA_CI_SKIP_CUDA13=1 the CUDA 13 part; JOBS (default 2); BSA_CI_KEEP=1 keeps the objects of an
# earlier run (incremental: only what changed is rebuilt, and only its
# times and spill warnings are printed; the Volta kernels of the checked
# builds are always rebuilt); BSA_CI_SPILLS (default 10): how many
# spilling kernels are listed; BSA_CUDA11_PREFIX: see install-cuda11.sh.
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
clean=--clean-first
[ "${BSA_CI_KEEP:-0}" = 1 ] && clean=""
t_start=$(date +%s)

# cpu_s: sets CPU to the seconds of CPU (user + system) the script's
# finished child processes have used so far (the shell's `times`, second
# line; not in a command substitution, whose subshell has no children yet)
cpu_s() {
    times >"${TMPDIR:-/tmp}/bsa-ci-times.$$"
    CPU=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/);
                         printf "%d\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "${TMPDIR:-/tmp}/bsa-ci-times.$$")
    rm -f "${TMPDIR:-/tmp}/bsa-ci-times.$$"
}

# build NVCC ARCHS DIR [CMAKE ARGS...]: configures DIR for the ;-separated
# ARCHS with NVCC and builds target bsa, JOBS at a time; LOG is its log
build() {
    nvcc_bin=$1 archs=$2 dir=$3
    shift 3
    targets=${BUILD_TARGETS:-bsa} # the first CUDA 13 build adds the GPU test programs
    sms=$(echo "$archs" | tr ';' '\n' | sed 's/^/sm_/' | tr '\n' ' ' | sed 's/ $//')
    mkdir -p "$dir"
    LOG=$dir/ci-build.log
    cpu_s
    t0=$(date +%s) c0=$CPU
    if ! { cmake -S . -B "$dir" -DBSA_WITH_CUDA=ON -DBSA_CUDA_ARCHITECTURES="$archs" \
        -DBSA_BUILD_TESTS=OFF -DBSA_BUILD_TOOLS=OFF -DBSA_WITH_CPU_DNNL=OFF \
        -DCMAKE_CUDA_COMPILER="$nvcc_bin" "$@" &&
        cmake --build "$dir" --target $targets -j "$JOBS" $clean; } >"$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        echo "bsa ci: the CUDA build for $sms failed (log: $LOG)" >&2
        exit 1
    fi
    cpu_s
    echo "bsa ci: CUDA backend for $sms with $("$nvcc_bin" --version | tail -1):" \
        "$(($(date +%s) - t0)) s wall, $((CPU - c0)) s CPU"
    # ptxas -warn-spills: "Registers are spilled to local memory in
    # function 'NAME', S bytes spill stores, L bytes spill loads", once per
    # kernel and architecture: a count, then the kernels with the most
    # spill stores (the largest over the architectures; every line is in
    # the log)
    n=$(grep -c spill "$LOG" || true)
    spills=$(sed -n "s/.*function '\([^']*\)', \([0-9]*\) bytes spill stores, \([0-9]*\) bytes spill loads.*/\2 \3 \1/p" \
        "$LOG" | sort -k3,3 -k1,1nr | awk '!seen[$3]++' | sort -k1,1nr)
    k=$(printf '%s' "$spills" | grep -c . || true)
    echo "bsa ci: $sms: $n ptxas spill warning lines, $k kernels (log: $LOG)${spills:+; the most spill stores:}"
    printf '%s\n' "$spills" | grep . | head -n "${BSA_CI_SPILLS:-10}" | while read -r st ld fn; do
        printf '    %5s B stores %5s B loads  %s\n' "$st" "$ld" "$(echo "$fn" | $demangle)"
    done
}

# volta_check DIMS SM: fails if a bsa_cuda::volta kernel of a head dim in
# DIMS ("32 64 128") spilled in the build whose log is LOG (one
# architecture, SM).  The build must have compiled the Volta kernels
# (volta_fresh removes their object first), so the check cannot pass on a
# log that has none of them.
volta_check() {
    if ! grep -q 'generated/volta\.cu' "$LOG"; then
        echo "bsa ci: $2: the Volta kernels were not compiled (log: $LOG)" >&2
        exit 1
    fi
    bad=$(sed -n "s/.*function '\(_ZN8bsa_cuda5volta[^']*\)', \([0-9]*\) bytes spill stores, \([0-9]*\) bytes spill loads.*/\1 \2 \3/p" \
        "$LOG" | while read -r fn st ld; do
        dp=$(echo "$fn" | sed -n 's/.*ILi\([0-9]*\)EE.*/\1/p')
        case " $1 " in *" $dp "*) printf '    %5s B stores %5s B loads  %s\n' "$st" "$ld" "$(echo "$fn" | $demangle)" ;; esac
    done)
    if [ -n "$bad" ]; then
        echo "bsa ci: FAILED: Volta kernels (head dims $1) spill registers at $2 (log: $LOG):" >&2
        echo "$bad" >&2
        exit 1
    fi
    echo "bsa ci: $2: no Volta kernel of head dims $1 spills"
}
# cpu_suite DIR SM: a library built for a GPU this machine lacks passes the
# CPU suite: DIR's every test (ctest) on the CUDA-enabled library, whose
# CUDA backend finds no device here and leaves the calls to the CPU; the
# GPU test programs (built with the CUDA backend) exit 77 without a GPU,
# which ctest counts as skipped
cpu_suite() {
    t0=$(date +%s)
    if ! { cmake --build "$1" -j "$JOBS" &&
        (cd "$1" && ctest -j "$JOBS" --output-on-failure); } >"$1/ci-cpu-suite.log" 2>&1; then
        tail -n 60 "$1/ci-cpu-suite.log" >&2
        echo "bsa ci: FAILED: the CPU suite on the $2 library (log: $1/ci-cpu-suite.log)" >&2
        exit 1
    fi
    echo "bsa ci: $2 library: the CPU suite $(grep 'tests passed' "$1/ci-cpu-suite.log")," \
        "$(grep -c '\*\*\*Skipped' "$1/ci-cpu-suite.log" || true) of them skipped (the GPU programs: no GPU here), $(($(date +%s) - t0)) s"
}
# volta_sass CUOBJDUMP DIR SM: the instruction check of the Volta kernels
# in DIR's one-architecture build (CUDA 11.8's cuobjdump; CUDA 13 here has
# none): every kernel must hold Tensor Core instructions (HMMA) and no
# local-memory loads or stores (LDL/STL: spills or local arrays); prints
# each kernel's HMMA, LDL/STL, registers and stack frame
volta_sass() {
    obj=$(find "$2" -name 'volta.cu.o' | head -n 1)
    if [ -z "$obj" ]; then
        echo "bsa ci: $3: no volta.cu.o in $2" >&2
        exit 1
    fi
    tab=$({
        "$1" -res-usage "$obj"
        "$1" -sass "$obj"
    } | awk '
        /Function _ZN8bsa_cuda5volta/ { f = $2; sub(/:$/, "", f); next }
        /Function : _ZN8bsa_cuda5volta/ { f = $3; seen[f] = 1; next }
        /Function/ { f = ""; next }
        f != "" && /REG:/ { split($1, r, ":"); split($2, t, ":"); reg[f] = r[2]; stk[f] = t[2] }
        f != "" && /HMMA/ { h[f]++ }
        f != "" && /[^A-Z](LDL|STL)[. ]/ { l[f]++ }
        END { for (f in seen) printf "%d %d %s %s %s\n", h[f], l[f], reg[f], stk[f], f }' | sort -k5)
    n=$(printf '%s\n' "$tab" | grep -c . || true)
    echo "bsa ci: $3 Volta kernels in SASS ($n; HMMA, LDL/STL, registers, stack bytes):"
    printf '%s\n' "$tab" | while read -r hm ll rg sk fn; do
        printf '    %5s HMMA %3s LDL/STL %3s regs %3s B  %s\n' "$hm" "$ll" "$rg" "$sk" "$(echo "$fn" | $demangle)"
    done
    # 3 passes x 3 head dims; each with HMMA and without local memory
    if [ "$n" -ne 9 ] || printf '%s\n' "$tab" | awk '$1 == 0 || $2 != 0 { bad = 1 } END { exit !bad }'; then
        echo "bsa ci: FAILED: $3: a Volta kernel lacks HMMA or uses local memory (or not 9 kernels)" >&2
        exit 1
    fi
}
volta_fresh() {
    [ -d "$1" ] && find "$1" -name 'volta.cu.o' -exec rm -f {} + || true
}

demangle="cat"
command -v c++filt >/dev/null && demangle=c++filt

NVCC13=$(command -v nvcc || true)
[ -z "$NVCC13" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC13=/usr/local/cuda/bin/nvcc
if [ "${BSA_CI_SKIP_CUDA13:-0}" = 1 ]; then
    echo "bsa ci: BSA_CI_SKIP_CUDA13=1: the CUDA 13 builds skipped"
elif [ -n "$NVCC13" ]; then
    sh scripts/install-deps.sh libcmocka-dev # the test programs' framework
    gpu_tests=$(ls tests/test_cuda*.c | sed 's|.*/||; s|\.c$||' | tr '\n' ' ')
    # (set and reset around the call: a shell may keep an assignment that
    # prefixes a function call)
    BUILD_TARGETS="bsa $gpu_tests bsa_gpu_bench"
    # this build also compiles the NCCL communicator (dist/comm_nccl.c)
    # against the nvidia-nccl-cu13 wheel's header and library
    t0=$(date +%s)
    NCCL_ROOT=$(sh scripts/install-nccl.sh)
    echo "bsa ci: NCCL at $NCCL_ROOT: $(($(date +%s) - t0)) s"
    build "$NVCC13" "80;89;90;100;120" build-ci-cuda -DBSA_BUILD_TESTS=ON -DBSA_BUILD_TOOLS=ON \
        -DBSA_WITH_NCCL=ON -DBSA_NCCL_ROOT="$NCCL_ROOT"
    BUILD_TARGETS=""
    # the communicator is in libbsa and its NCCL calls resolve against
    # libnccl (the GPU test programs linked against libbsa check that too)
    lib=$(ls build-ci-cuda/libbsa.so.* | head -n 1)
    if ! readelf -d "$lib" | grep -q 'NEEDED.*libnccl' ||
        ! nm -D --defined-only "$lib" | grep -q ' bsa_comm_create_nccl$' ||
        ! nm -D --undefined-only "$lib" | grep -q ' ncclSend$'; then
        echo "bsa ci: FAILED: $lib lacks the NCCL communicator or its libnccl dependency" >&2
        exit 1
    fi
    echo "bsa ci: NCCL communicator compiled into $lib (needs $(readelf -d "$lib" | sed -n 's/.*NEEDED.*\[\(libnccl[^]]*\)\].*/\1/p'))"
    # and, beside the public API, exports nothing (the CUDA objects' C++
    # functions and tables included)
    sh tests/test_exports.sh "$lib" api/bsa.h
    echo "bsa ci: GPU test programs and harness built: $gpu_tests bsa_gpu_bench"
    volta_fresh build-ci-cuda-sm75
    build "$NVCC13" 75 build-ci-cuda-sm75
    volta_check "32 64" sm_75
else
    echo "bsa ci: no CUDA 13 nvcc found: sm_75/sm_80/sm_89/sm_90/sm_100/sm_120 builds skipped"
fi

if [ "${BSA_CI_SKIP_CUDA11:-${BSA_CI_SKIP_SM70:-0}}" != 1 ]; then
    t0=$(date +%s)
    sh scripts/install-deps.sh clang-14
    NVCC11=$(sh scripts/install-cuda11.sh)
    echo "bsa ci: CUDA 11.8 at $NVCC11, clang++-14 ready: $(($(date +%s) - t0)) s"
    volta_fresh build-ci-cuda11-sm70
    # the whole library (oneDNN, the tests and the CLI as `make test` has
    # them), so that the CPU suite can run on it below
    sh scripts/install-deps.sh libdnnl-dev libcmocka-dev
    build "$NVCC11" 70 build-ci-cuda11-sm70 -DCMAKE_CUDA_HOST_COMPILER=clang++-14 \
        -DBSA_BUILD_TESTS=ON -DBSA_BUILD_TOOLS=ON -DBSA_WITH_CPU_DNNL=ON
    volta_check "32 64 128" sm_70
    volta_sass "$(dirname "$NVCC11")/cuobjdump" build-ci-cuda11-sm70 sm_70
    cpu_suite build-ci-cuda11-sm70 sm_70
    build "$NVCC11" "80;86" build-ci-cuda11 -DCMAKE_CUDA_HOST_COMPILER=clang++-14
fi
echo "bsa ci: CUDA compile check done in $(($(date +%s) - t_start)) s"
