#!/bin/sh
# CI (no AMD GPU): builds the HIP backend through CMake, the real targets of
# backends/hip/CMakeLists.txt, so that every file the build has is compiled
# here and none can be missed:
#   - bsa_hip_objects: the library's objects, Debian's hipcc 5.2 (clang 15)
#     for gfx90a, gfx940 (CDNA, MFMA) and gfx1030 (RDNA2, the FMA tile);
#   - bsa_hip_device_check: device code only, for the targets hipcc 5.2
#     cannot build, each with a newer Debian clang against the same HIP 5.2
#     headers: gfx942 (MI300X) and gfx1100 (RDNA3) with clang-19, gfx950
#     (MI355X) and gfx1201 (RDNA4) with clang-22 (not in the library: see
#     that file).
# Then inspects the device assembly of every target (BSA_HIP_EXTRA_FLAGS=
# -save-temps=obj leaves NAME-hip-amdgcn-amd-amdhsa-ARCH.s next to each
# object).  Fails when a compile fails, or unless every tensor-core
# attention kernel of the shared CUDA source (bsa_cuda::fwd_kernel,
# dq_kernel, dkdv_kernel), forward and backward at head dims 64 and 128 at
# least,
#   - on CDNA (gfx90a, gfx94x, gfx950) contains v_mfma instructions,
#   - on RDNA3 / RDNA4 (gfx11xx, gfx12xx) contains v_wmma instructions,
#   - has zero scratch (.private_segment_fixed_size), zero spilled VGPRs
#     and zero spilled SGPRs (spills to VGPR lanes: v_writelane /
#     v_readlane around the uses).
# gfx1030's FMA tile is compiled and reported, not held to the rule.
# Prints one table per target (kernel, target, MFMA / WMMA count, VGPRs,
# AGPRs, LDS, scratch, spills) of every kernel; the scalar reference kernels
# are listed for information only (per-row arrays in scratch by design).
# Env: JOBS (default 2); BSA_HIP_ARCHS (hipcc targets, default "gfx90a
# gfx940 gfx1030"); BSA_HIP_CLANG_TARGETS (ARCH=COMPILER pairs, default
# "gfx942=clang++-19 gfx950=clang++-22 gfx1100=clang++-19
# gfx1201=clang++-22"; empty: none); BSA_CI_BUILD_HIP (build directory,
# default build-ci-hip); BSA_CI_KEEP=1 keeps the objects of an earlier run
# (incremental: only what changed is rebuilt, and its time is printed).
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
ARCHS=${BSA_HIP_ARCHS:-"gfx90a gfx940 gfx1030"}
CLANG_TARGETS=${BSA_HIP_CLANG_TARGETS-"gfx942=clang++-19 gfx950=clang++-22 gfx1100=clang++-19 gfx1201=clang++-22"}
BUILD=${BSA_CI_BUILD_HIP:-build-ci-hip}
t0=$(date +%s)
# the clang packages the device-code targets name (clang++-19: clang-19, lld-19)
pkgs=""
for t in $CLANG_TARGETS; do
    v=${t##*clang++-}
    case " $pkgs " in *" clang-$v "*) ;; *) pkgs="$pkgs clang-$v lld-$v" ;; esac
done
# shellcheck disable=SC2086 # word lists
sh scripts/install-deps.sh hipcc libamdhip64-dev rocm-device-libs $pkgs
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
# shellcheck disable=SC2086
clanglist=$(echo $CLANG_TARGETS | tr ' ' ';')
t1=$(date +%s)
if ! { cmake -S . -B "$BUILD" -DBSA_WITH_CUDA=OFF -DBSA_WITH_HIP=ON \
    -DBSA_HIP_ARCHITECTURES="$archlist" -DBSA_HIP_CLANG_TARGETS="$clanglist" \
    -DBSA_HIP_EXTRA_FLAGS=-save-temps=obj \
    -DBSA_BUILD_TESTS=OFF -DBSA_BUILD_TOOLS=OFF -DBSA_WITH_CPU_DNNL=OFF &&
    cmake --build "$BUILD" --target bsa_hip_objects bsa_hip_device_check -j "$JOBS" $clean; } \
    >"$log" 2>&1; then
    filter "$log" | tail -n 40 >&2
    echo "bsa ci: the HIP build failed (log: $log)" >&2
    exit 1
fi
echo "bsa ci: HIP backend for $ARCHS with $("$HIPCC" --version 2>/dev/null | grep -i 'clang version' | head -1); device code for $CLANG_TARGETS: $(($(date +%s) - t1)) s"
warn=$(filter "$log" | grep -c 'warning:' || true)
echo "bsa ci: $warn compiler warning lines in $log"

# report FILE ARCH: one line per kernel: mangled name, target, v_mfma /
# v_wmma count, VGPRs, AGPRs, LDS bytes, scratch bytes, SGPR / VGPR spills,
# wave size.
report() {
    awk -v arch="$2" '
    /^_Z[^ ]*:/ { fn = $1; sub(/:.*/, "", fn); mm[fn] = 0; next }
    /^\.Lfunc_end/ { fn = ""; next }
    fn != "" && /v_mfma|v_wmma/ { mm[fn]++; next }
    /^  - \./ { flush(); }
    /^      - |^        / { next }  # argument lists
    /^ *(- )?\.[a-z_]+:/ {
        line = $0; sub(/^ *(- )?/, "", line); split(line, kv, /: */)
        rec[kv[1]] = kv[2]
    }
    /^amdhsa\.target|^\.\.\./ { flush() }
    function flush() {
        if (rec[".name"] != "" && rec[".name"] in mm)
            printf "%s %s %d %s %s %s %s %s %s %s\n",
                rec[".name"], arch, mm[rec[".name"]], rec[".vgpr_count"],
                rec[".agpr_count"] == "" ? 0 : rec[".agpr_count"],
                rec[".group_segment_fixed_size"], rec[".private_segment_fixed_size"],
                rec[".sgpr_spill_count"], rec[".vgpr_spill_count"], rec[".wavefront_size"]
        delete rec
    }
    END { flush() }' "$1"
}

# matrix_of ARCH: the target's matrix instructions, as backends/gpu/
# dispatch.c's bsa_gpu_arch_matrix classes them: MFMA (CDNA), WMMA (RDNA3 /
# RDNA4) or NONE (the FMA tile)
matrix_of() {
    case $1 in
    gfx90a | gfx94* | gfx950) echo MFMA ;;
    gfx11* | gfx12*) echo WMMA ;;
    *) echo NONE ;;
    esac
}

# lds SHORTNAME: the dynamic LDS a tile kernel is launched with on AMD
# (backends/gpu/kernel_smem.h, AMD rows: one K/V stage above head dim 64;
# at 128 the backward's own-row operands in registers: both with MFMA, one
# without), "-" for others; $2: the target
lds_of() {
    own128=1; [ "$(matrix_of "$2")" = MFMA ] && own128=0
    set -- $(echo "$1" | sed -n 's/^\([a-z_0-9]*\)<[a-z0-9]*,\([0-9]*\),[a-z]*,[a-z]*,*[a-z]*,*\([0-9]*\)>$/\1 \2 \3/p')
    [ $# -ge 2 ] || { echo -; return; }
    te=$((64 * ($2 + 8) * 2))
    st=1; [ "$2" -le 64 ] && st=2
    own=2; [ "$2" -eq 128 ] && own=$own128
    case $1 in
    fwd_kernel) echo $(((1 + 2 * st) * te)) ;;
    dq_kernel) dst=$st; [ "$2" -eq 128 ] && dst=1; echo $(((own + 2 * dst) * te)) ;;
    dkdv_kernel) k=${3:-$st}; echo $(((own + 2 * k) * te + 2 * k * 256)) ;;
    *) echo - ;;
    esac
}

# table FILE: the report as a table, kernel names demangled and shortened;
# lds: static + the launch's dynamic LDS
table() {
    printf '    %-46s %-8s %4s %5s %5s %6s %7s %6s %6s %4s\n' kernel target mm vgpr agpr lds \
        scratch sspill vspill wave
    # (names of their own: the caller's loop variable is "a")
    while read -r kn ka kmm kvg kag klds kscr kss kvs kwv; do
        short=$(echo "$kn" | c++filt | sed -e 's/bsa_cuda:://g' -e 's/(bsa_cuda_params)//' \
            -e 's/__half/f16/; s/hip_bfloat16/bf16/' -e 's/, /,/g' -e 's/^void //')
        dyn=$(lds_of "$short" "$ka")
        [ "$dyn" = - ] || klds=$((klds + dyn))
        short=$(echo "$short" | sed -e 's/_kernel</</' -e 's/true/1/g; s/false/0/g')
        printf '    %-46s %-8s %4s %5s %5s %6s %7s %6s %6s %4s\n' "$short" "$ka" "$kmm" "$kvg" \
            "$kag" "$klds" "$kscr" "$kss" "$kvs" "$kwv"
    done <"$1"
}

# the tensor-core kernels shared with CUDA (tc_kernels.cuh: forward,
# 128-row forward, dQ, dK/dV, whatever their template parameters)
tk='^_ZN8bsa_cuda([0-9]+fwd_kernel|[0-9]+fwd2_kernel|9dq_kernel|11dkdv_kernel)I'

fail=0
# shellcheck disable=SC2086
all_archs="$ARCHS $(for t in $CLANG_TARGETS; do printf '%s ' "${t%%=*}"; done)"
for a in $all_archs; do
    rep="$BUILD/report-$a.txt"
    : >"$rep"
    for s in "$obj"/*-hip-amdgcn-amd-amdhsa-"$a".s; do
        if [ ! -f "$s" ]; then
            echo "bsa ci: FAIL: no $a assembly in $obj (-save-temps=obj)" >&2
            fail=1
            continue
        fi
        report "$s" "$a" >>"$rep"
    done
    echo "bsa ci: $a: $(($(wc -l <"$rep"))) kernels (mm: v_mfma / v_wmma instructions)"
    table "$rep"
    kind=$(matrix_of "$a")
    [ "$kind" = NONE ] && continue
    n=$(grep -cE "$tk" "$rep" || true)
    if [ "$n" -eq 0 ]; then
        echo "bsa ci: FAIL: no tensor-core attention kernel found in the $a code object" >&2
        fail=1
        continue
    fi
    # forward and backward at head dims 64 and 128 must be there
    for k in 10fwd_kernel 9dq_kernel 11dkdv_kernel; do
        for d in 64 128; do
            if ! grep -qE "^_ZN8bsa_cuda${k}I[0-9]+[a-z_0-9]+Li${d}E" "$rep"; then
                echo "bsa ci: FAIL on $a: no ${k#[0-9]*[0-9]} instance at head dim $d" >&2
                fail=1
            fi
        done
    done
    # the rule: matrix instructions, no scratch, no VGPR or SGPR spills
    checked=$(grep -E "$tk" "$rep")
    nc=$(echo "$checked" | grep -c . || true)
    nomm=$(echo "$checked" | awk '$3 == 0' || true)
    spill=$(echo "$checked" | awk '$7 != 0 || $8 != 0 || $9 != 0' || true)
    if [ -n "$nomm" ]; then
        echo "bsa ci: FAIL on $a: attention kernels without $kind instructions:" >&2
        echo "$nomm" >&2
        fail=1
    fi
    if [ -n "$spill" ]; then
        echo "bsa ci: FAIL on $a: attention kernels with scratch / VGPR / SGPR spills:" >&2
        echo "$spill" >&2
        fail=1
    fi
    if [ -z "$nomm" ] && [ -z "$spill" ]; then
        echo "bsa ci: $a: $nc of $n tensor-core attention kernels checked (the CUDA source), all with $kind, no scratch, no VGPR or SGPR spills"
    elif [ -z "$nomm" ]; then
        echo "bsa ci: $a: $nc of $n tensor-core attention kernels checked (the CUDA source), all with $kind"
    fi
done
echo "bsa ci: HIP compile and code-object check: $(($(date +%s) - t0)) s"
exit $fail
