#!/bin/bash
# Builds bsa_gpu_bench of an earlier source tree into build-base/, for
# before/after timings on the same card (bench/gpu/run.sh's BASE,
# bench/gpu/header_variants.sh's BASE):
#   base_build.sh DIR [ARCHS (default 90)] [JOBS (default nproc)]
# DIR: the tree, e.g. from `git archive REV | tar -x -C DIR`.
set -u
dir=${1:?usage: base_build.sh DIR [ARCHS] [JOBS]}
cmake -S "$dir" -B build-base -DBSA_WITH_CUDA=ON -DBSA_CUDA_ARCHITECTURES="${2:-90}" \
    -DBSA_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release &&
    cmake --build build-base -j "${3:-$(nproc)}" --target bsa_gpu_bench
