#!/bin/bash
# The rest of a commit's GPU check in one device call after
# bench/gpu/quick_check.sh on the same machine (build-gpu/ kept): the GPU
# suites, the torch tests and compute-sanitizer memcheck / initcheck /
# racecheck of the reduced suites, as four chains running at once on the
# one GPU (alone, in sequence, they took ~300 + ~230 s on an H100: two
# calls; this one not run yet).  Logs: $OUT/chain?.txt, $OUT/logs2.txt.gz.
set -u
O=${OUT:-/tmp/out}
B=build-gpu
t0=$(date +%s)
cmake --build $B -j 16 --target test_cuda test_cuda_features test_cuda_reliability >"$O/build2.log" 2>&1 ||
    { echo "build failed"; tail -20 "$O/build2.log"; exit 1; }
echo "build $(($(date +%s) - t0)) s"
run() { # name, command...
    local n=$1; shift
    local s=$(date +%s)
    (cd $B && "$@") >"$O/$n.log" 2>&1
    echo "$n: rc=$? ($(($(date +%s) - s)) s) $(grep -c '\[       OK \]' "$O/$n.log") ok, $(grep -c '\[  FAILED  \]' "$O/$n.log") failed; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$O/$n.log" | tail -1)"
}
san() { run "san_$1_$2" env BSA_CUDA_TEST_QUICK=1 timeout ${SAN_TIMEOUT:-300} compute-sanitizer --tool $1 --error-exitcode 9 ./tests/$2; }
{ run test_cuda ./tests/test_cuda; } >"$O/chainA.txt" &
{ run test_cuda_features ./tests/test_cuda_features; run test_cuda_reliability ./tests/test_cuda_reliability; } >"$O/chainB.txt" &
{ s=$(date +%s); BSA_LIBRARY="$PWD/$B/libbsa.so" timeout 300 sh python/tests/gpu/run_torch_tests.sh >"$O/torch.log" 2>&1; echo "torch: rc=$? ($(($(date +%s) - s)) s) $(grep -E 'passed|failed' "$O/torch.log" | tail -1)"; } >"$O/chainC.txt" &
{ san memcheck test_cuda_features; san memcheck test_cuda; san initcheck test_cuda_features; san initcheck test_cuda; san racecheck test_cuda_features; san racecheck test_cuda; } >"$O/chainD.txt" &
wait
cat "$O"/chain?.txt
grep -hE "FAILED|rel L2 .* > |Error" "$O"/test_cuda*.log | head -20
for f in "$O"/*.log; do echo "######## $(basename $f)"; cat "$f"; done | gzip >"$O/logs2.txt.gz"
rm -f "$O"/*.log
echo "total $(($(date +%s) - t0)) s"
