#!/usr/bin/env python3
"""The CPU-against-SDPA table of one run: bench-cpu-rep*.jsonl in DIR (rows
of bench/plot_readme_chart.py, one file a repetition), per (pattern, T) the
median [min-max] of bsa's and torch SDPA's times and of their ratio taken
within each repetition.

    python3 bench/cpu_sdpa_table.py DIR
"""

import glob
import json
import os
import statistics
import sys


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    files = sorted(glob.glob(os.path.join(argv[1], "bench-cpu-rep*.jsonl")))
    reps = [[json.loads(line) for line in open(f) if line.strip()] for f in files]
    if not reps:
        print(f"no bench-cpu-rep*.jsonl in {argv[1]}", file=sys.stderr)
        return 1
    bsa, peer, dens, threads, impls = {}, {}, {}, set(), set()
    for rows in reps:
        for x in rows:
            k = (x["pattern"], x["seq"])
            threads.add(x.get("threads"))
            if "peer" in x:
                peer.setdefault(k, {}).setdefault("fwd", []).append(x["fwd_ms"])
                peer[k].setdefault("fwd+bwd", []).append(x["fwdbwd_ms"])
            else:
                bsa.setdefault(k, {}).setdefault(x["pass"], []).append(x["time_ms"])
                impls.add(x.get("impl", "?"))
                dens[k] = x["element_density"]

    def cell(v):
        return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]" if v else "-"

    def ratio(pv, bv):
        if not pv or not bv or len(pv) != len(bv):
            return "-"
        rs = [a / c for a, c in zip(pv, bv)]
        return f"{statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f})"

    order = ["all", "local", "strided", "fixed"]
    print(f"{len(reps)} repetitions, threads {sorted(t for t in threads if t is not None)}; "
          f"device {reps[0][0].get('device', '?')}; bsa {', '.join(sorted(impls))}")
    print("| pattern | T | element density | bsa fwd ms | SDPA fwd ms | speed-up fwd (min-max) "
          "| bsa fwd+bwd ms | SDPA fwd+bwd ms | speed-up fwd+bwd (min-max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in sorted(bsa, key=lambda k: (order.index(k[0]) if k[0] in order else 9, k[1])):
        b, p = bsa[k], peer.get(k, {})
        bf = b.get("fwd", [])
        bb = [x + y for x, y in zip(b.get("fwd", []), b.get("bwd", []))]
        pf, pb = p.get("fwd", []), p.get("fwd+bwd", [])
        print(f"| {k[0]} | {k[1]} | {dens[k]:.3f} | {cell(bf)} | {cell(pf)} | {ratio(pf, bf)} "
              f"| {cell(bb)} | {cell(pb)} | {ratio(pb, bb)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
