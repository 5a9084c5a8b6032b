#!/usr/bin/env python3
"""Regenerates the README's pictures in docs/img/:

* layouts.png: the four seed patterns (all, local, strided, fixed), drawn by
  the Python binding from the library's element masks;
* bench-cpu_seq.png / bench-cpu_density.png: `bsa bench --json` over a sweep
  of sequence lengths (CPU), against torch's scaled_dot_product_attention on
  the CPU with the same boolean mask when torch is importable (the peer);
  the raw rows go to bench-cpu.jsonl next to them.

    python3 bench/plot_readme_chart.py [--bsa build/bsa] [--out docs/img] [--rows-only]
Needs numpy and matplotlib (--rows-only: numpy only, the rows without the
pictures, e.g. on a GPU machine's host); BSA_LIBRARY (or an installed bsa)
for the binding.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import plot_bench  # noqa: E402


def layouts_picture(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import bsa

    seq, block = 256, 16
    cases = [
        ("all (causal)", bsa.Layout.preset("all", seq, block), 0),
        ("local, ctx 48", bsa.Layout.preset("local", seq, block, ctx=48), 0),
        ("strided, stride 16", bsa.Layout.preset("strided", seq, block, ctx=16), 0),
        (
            "fixed, window 64, head 1 of 4",
            bsa.Layout.preset("fixed", seq, block, heads=4, ctx=64, num_verts=4),
            1,
        ),
    ]
    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 4.3))
    for ax, (title, lay, head) in zip(axes, cases):
        lay.plot(
            ax=ax,
            head=head,
            title=f"{title}\n{lay.info.kept_elements / lay.heads / seq**2:.1%} of the {seq}x{seq} scores, block {block}",
        )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bench_rows(exe, seqs, heads, dim, block, iters, threads):
    rows = []
    for seq in seqs:
        for pattern, ctx in (
            ("all", 0),
            ("local", 4 * block),
            ("strided", seq // block),
            ("fixed", 4 * block),
        ):
            cmd = [
                exe,
                "bench",
                "--json",
                "--pattern",
                pattern,
                "--seq",
                str(seq),
                "--heads",
                str(heads),
                "--dim",
                str(dim),
                "--block",
                str(block),
                "--iters",
                str(iters),
                "--sgemm",
                "0",
                "--threads",
                str(threads),
                "--backend",
                "cpu",  # the chart is the CPU's: auto would take a GPU where one is
            ]
            if ctx:
                cmd += ["--ctx", str(ctx)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    r["ctx"] = ctx
                    rows.append(r)
    return rows


def peer_rows(rows, iters, threads):
    """torch SDPA (CPU, float32) with each bsa row's boolean mask, same shapes
    and thread count."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch not importable: no peer rows")
        return []
    torch.set_num_threads(threads)
    import bsa

    out, done = [], set()
    for r in rows:
        key = (r["pattern"], r["seq"])
        if key in done or r["dtype"] != "f32":
            continue
        done.add(key)
        seq, h, d, block = r["seq"], r["heads"], r["dim"], r["block"]
        lay = bsa.Layout.preset(r["pattern"], seq, block, heads=h, ctx=r["ctx"])
        mask = torch.from_numpy(lay.element_mask(0).copy())
        q, k, v, do = (torch.randn(r["batch"], h, seq, d) for _ in range(4))
        q.requires_grad_(), k.requires_grad_(), v.requires_grad_()

        def fwd(q=q, k=k, v=v, mask=mask):
            with torch.no_grad():
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        def both(q=q, k=k, v=v, mask=mask, do=do):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask).backward(do)

        def median_ms(fn):
            fn()
            ts = []
            for _ in range(iters):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
            return statistics.median(ts)

        out.append(
            dict(
                device=r["device"],
                peer="torch sdpa (dense + mask)",
                pattern=r["pattern"],
                seq=seq,
                dtype="f32",
                threads=threads,
                density=r.get("element_density", r.get("density")),
                fwd_ms=median_ms(fwd),
                fwdbwd_ms=median_ms(both),
            )
        )
    return out


def main():
    ap = argparse.ArgumentParser(description="regenerate docs/img pictures")
    ap.add_argument("--bsa", default=os.path.join(ROOT, "build", "bsa"), help="the bsa CLI")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "img"))
    ap.add_argument("--seqs", default="512,1024,2048,4096")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--iters", type=int, default=5)
    # one thread by default: on a shared 2-core machine, OpenMP barriers of
    # bsa (and torch) stall for a whole scheduler slice when a core is taken
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows-only", action="store_true", help="bench-cpu.jsonl, no pictures")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if not a.rows_only:
        layouts_picture(os.path.join(a.out, "layouts.png"))
    rows = bench_rows(
        a.bsa, [int(s) for s in a.seqs.split(",")], a.heads, a.dim, a.block, a.iters, a.threads
    )
    rows += peer_rows(rows, a.iters, a.threads)
    raw = os.path.join(a.out, "bench-cpu.jsonl")
    with open(raw, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    if a.rows_only:
        return 0
    return plot_bench.main(
        [raw, "--out", os.path.join(a.out, "bench-cpu"), "--pass", "fwd", "--pass", "fwd+bwd"]
    )


if __name__ == "__main__":
    sys.exit(main())
