#!/bin/bash
# A kernel change's first check in one device call (~450 s on an H100,
# estimated: not run yet): builds the library, test_cuda_hostile and the
# bench (BASE, default .base, an earlier tree from `git archive REV | tar
# -x -C .base`, built beside), runs test_cuda_hostile, then bench/gpu/run.sh's
# bench stage against BASE (REPS, default 3, alternating).  Logs under
# $OUT/a (build), $OUT/b (bench: summary.md has the ratios) and $OUT.
# bench/gpu/suites_parallel.sh is the next call on the same machine.
set -u
O=${OUT:-/tmp/out}
BASE=${BASE:-.base}
mkdir -p "$O/a" "$O/b"
bash bench/gpu/base_build.sh "$BASE" 90 6 >"$O/base_build.log" 2>&1 &
bp=$!
OUT=$O/a STAGES=build BUILD_TARGETS="test_cuda_hostile bsa_gpu_bench" bash bench/gpu/run.sh 2>&1 | tail -4
t0=$(date +%s)
(cd build-gpu && timeout 150 ./tests/test_cuda_hostile) >"$O/hostile.log" 2>&1
echo "test_cuda_hostile rc=$? $(($(date +%s) - t0)) s"
grep -E "OK|FAILED|checks ran|rel|worst" "$O/hostile.log" | tail -30
wait $bp; echo "base build rc=$?"
OUT=$O/b STAGES=bench BASE="$BASE" REPS=${REPS:-3} bash bench/gpu/run.sh 2>&1 | tail -40
gzip -f "$O/hostile.log" "$O/base_build.log"
