#!/bin/sh
# On the GPU machine (OUT=$OUT sh bench/gpu/volta_bitwise/run.sh): builds the
# tree (new) and the same tree with the Volta kernel change of a6f0d80
# reversed (old) for sm_90, runs volta_bits.c on each (BSA_IMPL=cuda-wmma-sm70,
# f16, head dims 32/64/96/128, six layouts: partial blocks, the strided
# permutation, GQA, a padded tail) and compares the hashes of o, lse, dq, dk,
# dv ("BITS IDENTICAL" expected: the change keeps every value and summation
# order), then runs test_cuda and test_cuda_features of the new build.
# Written for the spill fix of issue 25; not yet run (no GPU since).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc); $NVCC --version | tail -1 | tee -a "$OUT/gpu.txt"
J=$(nproc)
rm -rf /tmp/old && mkdir -p /tmp/old && tar --exclude=./build-cpu -cf - . | tar -xf - -C /tmp/old
# the old kernels: the change reversed (volta_change.patch: f8f44da..a6f0d80)
(cd /tmp/old && patch -s -R -p1 < "$HERE/volta_change.patch") || { echo "patch -R failed"; exit 1; }
bld() { # SRC DIR TARGETS
  t0=$(date +%s)
  cmake -S "$1" -B "$2" -DBSA_WITH_CUDA=ON -DBSA_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_COMPILER=$NVCC -DBSA_WITH_CPU_DNNL=OFF >"$OUT/$(basename $2)_cfg.log" 2>&1 &&
  cmake --build "$2" -j $J --target $3 >"$OUT/$(basename $2)_build.log" 2>&1
  rc=$?; echo "build $2: rc=$rc $(($(date +%s)-t0)) s" | tee -a "$OUT/gpu.txt"; return $rc
}
bld . /tmp/bnew "bsa test_cuda test_cuda_features" &
bld /tmp/old /tmp/bold bsa &
wait
for v in new old; do
  L=$(dirname "$(find /tmp/b$v -name 'libbsa.so' | head -1)")
  gcc -O1 -o /tmp/vb_$v "$HERE/volta_bits.c" -Iapi -I/tmp/b$v/include -I$(dirname $NVCC)/../include -L$L -lbsa -L$(dirname $NVCC)/../lib64 -lcudart -Wl,-rpath,$L -Wl,-rpath,$(dirname $NVCC)/../lib64 2>&1 | tail -3
  t0=$(date +%s); /tmp/vb_$v > "$OUT/bits_$v.txt" 2>&1; echo "bits $v: rc=$? $(($(date +%s)-t0)) s" | tee -a "$OUT/gpu.txt"
done
if cmp -s "$OUT/bits_new.txt" "$OUT/bits_old.txt"; then echo "BITS IDENTICAL ($(wc -l < $OUT/bits_new.txt) configs)" | tee -a "$OUT/gpu.txt"; else echo "BITS DIFFER" | tee -a "$OUT/gpu.txt"; diff "$OUT/bits_old.txt" "$OUT/bits_new.txt" | head -40 | tee -a "$OUT/gpu.txt"; fi
for t in test_cuda test_cuda_features; do
  f=$(find /tmp/bnew -name $t -type f -perm -u+x | head -1)
  t0=$(date +%s); $f > "$OUT/$t.log" 2>&1; echo "$t: rc=$? $(($(date +%s)-t0)) s; $(grep -E 'PASSED|FAILED' $OUT/$t.log | tr '\n' ' ')" | tee -a "$OUT/gpu.txt"
done
grep -i volta "$OUT/test_cuda.log" | head -60 > "$OUT/volta_lines.txt"
