#!/bin/sh
# CI (no AMD GPU): compiles the HIP backend for gfx90a, gfx940 (CDNA, MFMA)
# and gfx1030 (RDNA, no MFMA) with Debian's hipcc, then inspects the device
# assembly of the CDNA code objects.  Fails when a compile fails, or unless
# every matrix-tile attention kernel (bsa_hip::fwd_kernel<...>) of gfx90a and
# gfx940
#   - contains v_mfma instructions,
#   - has zero scratch (.private_segment_fixed_size) and zero spilled
#     SGPRs / VGPRs.
# Prints the per-kernel resource report (all kernels, all three targets;
# the scalar reference kernels are listed for information only: they keep
# per-row arrays in scratch by design and never use MFMA).
# Env: JOBS (default 2); BSA_HIP_ARCHS (default "gfx90a gfx940 gfx1030").
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
ARCHS=${BSA_HIP_ARCHS:-"gfx90a gfx940 gfx1030"}
t0=$(date +%s)
sh scripts/install-deps.sh hipcc libamdhip64-dev
HIPCC=$(command -v hipcc || true)
if [ -z "$HIPCC" ]; then
    echo "bsa ci: hipcc not found after installing it" >&2
    exit 1
fi
SRC="backends/cuda/tiles.cu backends/cuda/params.cu backends/cuda/ref_kernels.cu
backends/cuda/tc_launch.cu backends/cuda/generated/tc_f16_fwd.cu backends/cuda/generated/tc_f16_bwd.cu
backends/cuda/generated/tc_bf16_fwd.cu backends/cuda/generated/tc_bf16_bwd.cu
backends/hip/hip_backend.hip"
OBJ=${TMPDIR:-/tmp}/bsa-ci-hip.$$
mkdir -p "$OBJ"
trap 'rm -rf "$OBJ"' EXIT
offload=""
for a in $ARCHS; do offload="$offload --offload-arch=$a"; done

# Every source for every target, JOBS at a time; -save-temps=obj keeps each
# target's assembly (NAME-hip-amdgcn-amd-amdhsa-ARCH.s) for the check below.
# hipcc 5.2 prints a harmless rocm_agent_enumerator traceback when it looks
# for a local GPU: the targets are explicit, so its output is filtered.
t1=$(date +%s)
echo "$SRC" | tr ' ' '\n' | grep . | xargs -P "$JOBS" -I{} sh -c \
    "cd '$OBJ' && '$HIPCC' -x hip -std=c++17 -O3 -fPIC -Wno-unused-result -DBSA_WITH_HIP=1 \
     -I'$PWD/api' -I'$PWD/layouts' -I'$PWD/backends' $offload -save-temps=obj \
     -c '$PWD/{}' -o \$(basename {}).o >\$(basename {}).log 2>&1 ||
     { grep -v 'rocm_agent_enumerator\|^Traceback\|^  \|^FileNotFoundError\|^subprocess' \
       \$(basename {}).log >&2; echo 'bsa ci: hipcc failed on {}' >&2; exit 255; }"
echo "bsa ci: HIP backend for$offload with $("$HIPCC" --version 2>/dev/null | grep -i 'clang version' | head -1): $(($(date +%s) - t1)) s"

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
    rep="$OBJ/report-$a.txt"
    : >"$rep"
    for s in "$OBJ"/*-hip-amdgcn-amd-amdhsa-"$a".s; do report "$s" >>"$rep"; done
    sed 's/^/    /' "$rep"
    case $a in gfx90a | gfx94*) ;; *) continue ;; esac
    # the tensor-core kernels shared with CUDA (forward, 128-row forward,
    # dQ, dK/dV): v_mfma, no scratch memory, no VGPR spills (SGPR spills go
    # to VGPR lanes, not memory: reported above, not failed)
    tk='^_ZN8bsa_cuda([0-9]+fwd_kernel|[0-9]+fwd2_kernel|9dq_kernel|11dkdv_kernel)'
    n=$(grep -cE "$tk" "$rep" || true)
    if [ "$n" -eq 0 ]; then
        echo "bsa ci: FAIL: no tensor-core attention kernel found in the $a code object" >&2
        fail=1
    fi
    bad=$(grep -E "$tk" "$rep" | grep -vE ' mfma=[1-9][0-9]* scratch=0 sgpr_spill=[0-9]+ vgpr_spill=0 ' || true)
    if [ -n "$bad" ]; then
        echo "bsa ci: FAIL on $a: attention kernels without MFMA, or with scratch / VGPR spills:" >&2
        echo "$bad" >&2
        fail=1
    else
        echo "bsa ci: $a: $n tensor-core attention kernels (the CUDA source), all with v_mfma, no scratch, no VGPR spills"
    fi
done
echo "bsa ci: HIP compile and code-object check: $(($(date +%s) - t0)) s"
exit $fail
