#!/bin/bash
# Per-kernel GPU times of bsa_gpu_bench configs, from ncu (gpu__time_duration;
# ncu locks clocks to base, so times run ~1.3x above the bench's: compare
# kernels with each other, in one run).
#   bench/gpu/kernel_times.sh BUILD_DIR CONFIG...   (bsa_gpu_bench --only
#   filters: a substring, so all-d128 also times gqa-all-d128 and
#   varlen-all-d128; =all-d128 times that configuration alone)
set -u
build=$1
shift
for c in "$@"; do
    echo "### $build $c"
    ncu --metrics gpu__time_duration.sum --csv "./$build/bsa_gpu_bench" --only "$c" --iters 1 \
        --warmup 0 2>/dev/null | python3 -c '
import collections, csv, sys
rows, head, t = list(csv.reader(sys.stdin)), None, collections.defaultdict(list)
for r in rows:
    if "Kernel Name" in r:
        head = r
    elif head and len(r) == len(head):
        name = r[head.index("Kernel Name")].split("(")[0]
        t[name].append(float(r[head.index("Metric Value")].replace(",", "")))
for k, v in t.items():
    print(f"{k[:64]:64s} n={len(v):3d} mean={sum(v) / len(v) / 1e6:8.3f} ms")
'
done
