#!/bin/sh
# CI (no AMD GPU): builds the HIP backend for gfx90a, gfx940 (CDNA, MFMA)
# and gfx1030 (RDNA, no MFMA) with Debian's hipcc, through CMake: the real
# target bsa_hip_objects (backends/hip/CMakeLists.txt), so that every file the
# build has is compiled here and none can be missed.  Then inspects the device
# assembly of the CDNA code objects (BSA_HIP_EXTRA_FLAGS=-save-temps=obj leaves
# NAME-hip-amdgcn-amd-amdhsa-ARCH.s next to each object).  Fails when a compile
# fails, or unless every tensor-core attention kernel of the shared CUDA
# source (bsa_cuda::fwd_kernel, fwd2_kernel, dq_kernel, dkdv_kernel) of
# gfx90a and gfx940
#   - contains v_mfma instructions,
#   - has zero scratch (.private_segment_fixed_size) and zero spilled VGPRs.
# Prints the per-kernel resource report (all kernels, all targets; the scalar
# reference kernels are listed for information only: they keep per-row arrays
# in scratch by design and never use MFMA).
# Env: JOBS (default 2); BSA_HIP_ARCHS (default "gfx90a gfx940 gfx1030");
# BSA_CI_BUILD_HIP (build directory, default build-ci-hip); BSA_CI_KEEP=1
# keeps the objects of an earlier run (incremental: only what changed is
# rebuilt, and its time is what is printed).
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
ARCHS=${BSA_HIP_ARCHS:-"gfx90a gfx940 gfx1030"}
BUILD=${BSA_CI_BUILD_HIP:-build-ci-hip}
t0=$(date +%s)
sh scripts/install-deps.sh hipcc libamdhip64-dev
command -v cmake >/dev/null || sh scripts/install-deps.sh cmake
HIPCC=$(command -v hipcc || true)
if [ -z "$HIPCC" ]; then
    echo "bsa ci: hipcc not found after installing it" >&2
    exit 1
fi

# hipcc 5.2 prints a harmless rocm_agent_enumerator traceback when it looks
# for a local GPU (on every compile, targets explicit or not): dropped from
# what is shown, from its "Traceback" line to its closing "...Error:" line.
filter() {
    awk '/^Traceback \(most recent call last\)/ { tb = 1; next }
         tb { if (/^[A-Za-z_.]*Error: /) tb = 0; next }
         /rocm_agent_enumerator/ { next }
         { print }' "$@"
}

# Every source of bsa_hip_objects for every target, JOBS at a time.
mkdir -p "$BUILD"
log=$BUILD/ci-build.log
obj=$BUILD/backends/hip
clean=--clean-first
if [ "${BSA_CI_KEEP:-0}" = 1 ]; then clean=""; else rm -f "$obj"/*-hip-amdgcn-amd-amdhsa-*.s; fi
# shellcheck disable=SC2086 # ARCHS is a word list
archlist=$(echo $ARCHS | tr ' ' ';')
t1=$(date +%s)
if ! { cmake -S . -B "$BUILD" -DBSA_WITH_CUDA=OFF -DBSA_WITH_HIP=ON \
    -DBSA_HIP_ARCHITECTURES="$archlist" -DBSA_HIP_EXTRA_FLAGS=-save-temps=obj \
    -DBSA_BUILD_TESTS=OFF -DBSA_BUILD_TOOLS=OFF -DBSA_WITH_CPU_DNNL=OFF &&
    cmake --build "$BUILD" --target bsa_hip_objects -j "$JOBS" $clean; } >"$log" 2>&1; then
    filter "$log" | tail -n 40 >&2
    echo "bsa ci: the HIP build failed (log: $log)" >&2
    exit 1
fi
echo "bsa ci: HIP backend for $ARCHS with $("$HIPCC" --version 2>/dev/null | grep -i 'clang version' | head -1): $(($(date +%s) - t1)) s"
warn=$(filter "$log" | grep -c 'warning:' || true)
echo "bsa ci: $warn compiler warning lines in $log"

# report FILE: one line per kernel: name, v_mfma count, scratch bytes,
# SGPR / VGPR spills, VGPRs, AGPRs, LDS bytes, wave size.
report() {
    awk '
    /^_Z[^ ]*:/ { fn = $1; sub(/:.*/, "", fn); mf[fn] = 0; next }
    /^\.Lfunc_end/ { fn = ""; next }
    fn != "" && /v_mfma/ { mf[fn]++; next }
    /^  - \./ { flush(); }
    /^      - |^        / { next }  # argument lists
    /^ *(- )?\.[a-z_]+:/ {
        line = $0; sub(/^ *(- )?/, "", line); split(line, kv, /: */)
        rec[kv[1]] = kv[2]
    }
    /^amdhsa\.target|^\.\.\./ { flush() }
    function flush() {
        if (rec[".name"] != "" && rec[".name"] in mf)
            printf "%s mfma=%d scratch=%s sgpr_spill=%s vgpr_spill=%s vgpr=%s agpr=%s lds=%s wave=%s\n",
                rec[".name"], mf[rec[".name"]], rec[".private_segment_fixed_size"],
                rec[".sgpr_spill_count"], rec[".vgpr_spill_count"], rec[".vgpr_count"],
                rec[".agpr_count"] == "" ? 0 : rec[".agpr_count"],
                rec[".group_segment_fixed_size"], rec[".wavefront_size"]
        delete rec
    }
    END { flush() }' "$1"
}

fail=0
for a in $ARCHS; do
    echo "bsa ci: $a kernels (name mfma scratch spills registers lds wave):"
    rep="$BUILD/report-$a.txt"
    : >"$rep"
    for s in "$obj"/*-hip-amdgcn-amd-amdhsa-"$a".s; do
        if [ ! -f "$s" ]; then
            echo "bsa ci: FAIL: no $a assembly in $obj (-save-temps=obj)" >&2
            fail=1
            continue
        fi
        report "$s" >>"$rep"
    done
    sed 's/^/    /' "$rep"
    echo "bsa ci: $a: $(($(wc -l <"$rep"))) kernels"
    case $a in gfx90a | gfx94*) ;; *) continue ;; esac
    # the tensor-core kernels shared with CUDA (tc_kernels.cuh: forward,
    # 128-row forward, dQ, dK/dV, whatever their template parameters):
    # v_mfma, no scratch memory, no VGPR spills (SGPR spills go to VGPR
    # lanes, not memory: reported above, not failed)
    tk='^_ZN8bsa_cuda([0-9]+fwd_kernel|[0-9]+fwd2_kernel|9dq_kernel|11dkdv_kernel)I'
    n=$(grep -cE "$tk" "$rep" || true)
    if [ "$n" -eq 0 ]; then
        echo "bsa ci: FAIL: no tensor-core attention kernel found in the $a code object" >&2
        fail=1
        continue
    fi
    bad=$(grep -E "$tk" "$rep" | grep -vE ' mfma=[1-9][0-9]* scratch=0 sgpr_spill=[0-9]+ vgpr_spill=0 ' || true)
    if [ -n "$bad" ]; then
        echo "bsa ci: FAIL on $a: attention kernels without MFMA, or with scratch / VGPR spills:" >&2
        echo "$bad" >&2
        fail=1
    else
        echo "bsa ci: $a: $n tensor-core attention kernels checked (the CUDA source), all with v_mfma, no scratch, no VGPR spills"
    fi
done
echo "bsa ci: HIP compile and code-object check: $(($(date +%s) - t0)) s"
exit $fail
