#!/bin/sh
# CI (no GPU): compiles the CUDA backend so that a compile error cannot land.
#   sm_80, sm_90: with the CUDA 13 nvcc on the PATH or /usr/local/cuda (skipped if none);
#   sm_70 (V100): CUDA 13 dropped it, so a CUDA 12 nvcc comes from the
#   nvidia-cuda-nvcc-cu12 + nvidia-cuda-runtime-cu12 Python wheels, installed
#   under $BSA_CI_CUDA12 (default ~/.cache/bsa-ci-cuda12, reused when present).
# Prints each compile's wall time.  Exits nonzero on the first failure.
# Env: BSA_CI_SKIP_SM70=1 skips the CUDA 12 part; JOBS (default 2).
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
SRC="backends/cuda/cuda_backend.cu backends/cuda/tiles.cu backends/cuda/params.cu backends/cuda/tc_launch.cu
backends/cuda/ref_kernels.cu backends/cuda/volta_kernels.cu backends/cuda/generated/tc_f16_fwd.cu
backends/cuda/generated/tc_f16_bwd.cu backends/cuda/generated/tc_bf16_fwd.cu
backends/cuda/generated/tc_bf16_bwd.cu"
OBJ=${TMPDIR:-/tmp}/bsa-ci-cuda.$$
mkdir -p "$OBJ"
trap 'rm -rf "$OBJ"' EXIT

# compile NVCC ARCHS...: every source for the given sm_XX list, JOBS at a time
compile() {
    nvcc_bin=$1
    shift
    gencode=""
    for a in "$@"; do gencode="$gencode -gencode=arch=compute_$a,code=sm_$a"; done
    # the Hopper kernels (wgmma) are built for sm_90a alone, as CMake does,
    # one line per file: the longest compiles go first
    hopper="backends/cuda/hopper/wgmma_absent.cu $gencode"
    case " $* " in *" 90 "*)
        hopper=""
        for h in fwd dkdv dq launch; do
            hopper="$hopper${hopper:+
}backends/cuda/hopper/wgmma_$h.cu -gencode=arch=compute_90a,code=sm_90a"
        done ;;
    esac
    t0=$(date +%s)
    # one line per compile: the source, then its architecture flags
    { echo "$hopper"; for s in $SRC; do echo "$s $gencode"; done; } |
        xargs -P "$JOBS" -L 1 sh -c 'src=$1; shift; "'"$nvcc_bin"'" -std=c++17 -O3 \
            --expt-relaxed-constexpr "$@" -Iapi -Ilayouts -Ibackends -c "$src" \
            -o "'"$OBJ"'/$(basename "$src").o" || exit 255' sh
    echo "bsa ci: CUDA backend for sm_$* with $("$nvcc_bin" --version | tail -1): $(($(date +%s) - t0)) s"
}

NVCC13=$(command -v nvcc || true)
[ -z "$NVCC13" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC13=/usr/local/cuda/bin/nvcc
if [ -n "$NVCC13" ]; then
    compile "$NVCC13" 80 90
else
    echo "bsa ci: no nvcc found: sm_80/sm_90 compile skipped"
fi

[ "${BSA_CI_SKIP_SM70:-0}" = 1 ] && exit 0
C12=${BSA_CI_CUDA12:-${XDG_CACHE_HOME:-$HOME/.cache}/bsa-ci-cuda12}
N12=$C12/nvidia/cuda_nvcc
R12=$C12/nvidia/cuda_runtime
if [ ! -d "$N12" ]; then
    t0=$(date +%s)
    python3 -m pip install -q --target "$C12" "nvidia-cuda-nvcc-cu12>=12.4,<13" \
        "nvidia-cuda-runtime-cu12>=12.4,<13" ||
        echo "bsa ci: pip could not install the CUDA 12 compiler wheels" >&2
    echo "bsa ci: CUDA 12 wheels installed in $(($(date +%s) - t0)) s"
fi
# Seen 2026-11 with nvidia-cuda-nvcc-cu12 12.9.86: the wheel carries only
# ptxas, libnvvm, libdevice and the crt headers: no nvcc driver, cudafe++,
# cicc, fatbinary or nvlink, so it cannot compile CUDA C++.  Then sm_70 is
# replaced by the lowest architecture CUDA 13 accepts (sm_75), as the
# issue allows; a V100 build needs a full CUDA 12.x toolkit (README).
missing=""
for tool in nvcc cudafe++ cicc fatbinary nvlink ptxas; do
    [ -x "$N12/bin/$tool" ] || [ -x "$N12/nvvm/bin/$tool" ] || missing="$missing $tool"
done
if [ -z "$missing" ]; then
    NVCC12="$OBJ/nvcc12"
    printf '#!/bin/sh\nexec "%s" -I"%s" -I"%s" "$@"\n' "$N12/bin/nvcc" "$N12/include" \
        "$R12/include" >"$NVCC12"
    chmod +x "$NVCC12"
    compile "$NVCC12" 70
elif [ -n "$NVCC13" ]; then
    echo "bsa ci: the CUDA 12 wheels lack:$missing; compiling sm_75 with CUDA 13 instead of sm_70"
    compile "$NVCC13" 75
else
    echo "bsa ci: no compiler for the V100 path (CUDA 12 wheels lack:$missing)" >&2
    exit 1
fi
