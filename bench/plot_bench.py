#!/usr/bin/env python3
"""Benchmark charts: time and block-FLOP/s against sequence length and against
density, per pattern, bsa against its peers, with the device in the title.

    plot_bench.py RESULTS.jsonl [MORE.jsonl ...] [--out PREFIX] [--dtype f16]

Reads JSON lines of three kinds (other lines are ignored):
  * `bsa bench --json` (tools/bench.c): pattern, pass, seq, element_density
    (older records: density), time_ms,
    block_gflops, impl;
  * bench/gpu/gpu_bench: name (e.g. "fixed-L128-b32"), impl, seq, density,
    fwd_ms / fwdbwd_ms, fwd_block_tflops / fwdbwd_block_tflops;
  * peers (bench/peers/flex_peer.py, bench/plot_readme_chart.py): peer,
    fwd_ms / fwdbwd_ms, and a gpu_bench config name or pattern + seq + dtype.
    A peer's rate is bsa's block FLOPs of the same problem over the peer's
    time, so rates compare as the times do (higher = faster).
bsa bench's separate fwd and bwd rows also give a fwd+bwd row (their sum).
Writes PREFIX_seq.png and PREFIX_density.png (default PREFIX: bench) and,
from gpu_bench rows and their peers, PREFIX_configs.png: per benchmark
configuration, each one's fwd and fwd+bwd time as bars, the median of its
repeated rows with a min-max whisker (bench/gpu/run.sh's REPS runs).
"""

import argparse
import collections
import json
import math
import sys


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    return rows


def pattern_of(name):
    """'fixed-L128-b32' -> 'fixed'; 'random10-b32' -> 'random'."""
    head = name.split("-")[0]
    return head.rstrip("0123456789") or head


def _rec(r, series, pattern, pass_, time_ms, gflops):
    return dict(
        device=r.get("device", "?"),
        config=r.get("name"),
        series=series,
        pattern=pattern,
        pass_=pass_,
        seq=r.get("seq"),
        # element density: `bsa bench --json` names it so; gpu_bench and
        # records written before it did call it "density"
        density=r.get("element_density", r.get("density")),
        dtype=r.get("dtype"),
        threads=r.get("threads"),
        time_ms=time_ms,
        gflops=gflops,
    )


def normalise(rows):
    """Records: device, series, pattern, pass_, seq, density, dtype, time_ms,
    gflops (block GFLOP/s, or None)."""
    out, gpu_by_name = [], {}
    split = collections.defaultdict(dict)  # bsa bench rows by problem: fwd and bwd
    for r in rows:
        if "time_ms" in r and "pattern" in r:  # bsa bench --json
            series = f"bsa {r.get('impl', r.get('backend', ''))}".strip()
            rec = _rec(
                r, series, r["pattern"], r.get("pass", "fwd"), r["time_ms"], r.get("block_gflops")
            )
            out.append(rec)
            key = (
                rec["device"],
                series,
                rec["pattern"],
                rec["seq"],
                rec["dtype"],
                r.get("heads"),
                r.get("dim"),
            )
            split[key][rec["pass_"]] = rec
        elif "fwd_ms" in r and "impl" in r and "peer" not in r:  # bench/gpu/gpu_bench
            gpu_by_name[(r.get("device"), r["name"])] = r
            for p, key, tf in (
                ("fwd", "fwd_ms", "fwd_block_tflops"),
                ("fwd+bwd", "fwdbwd_ms", "fwdbwd_block_tflops"),
            ):
                if key in r:
                    g = r[tf] * 1e3 if tf in r else None
                    out.append(_rec(r, f"bsa {r['impl']}", pattern_of(r["name"]), p, r[key], g))
    # bsa bench times fwd and bwd apart: their sum is the training step the peers time
    for parts in split.values():
        f, b = parts.get("fwd"), parts.get("bwd")
        if f and b:
            t = f["time_ms"] + b["time_ms"]
            g = None
            if f["gflops"] and b["gflops"]:
                g = (f["gflops"] * f["time_ms"] + b["gflops"] * b["time_ms"]) / t
            out.append(dict(f, pass_="fwd+bwd", time_ms=t, gflops=g))
    ours = {(r["device"], r["pattern"], r["seq"], r["dtype"], r["pass_"]): r for r in out}
    for r in rows:
        if "peer" not in r:  # bench/peers/*: joined by config name or by problem
            continue
        gpu = gpu_by_name.get((r.get("device"), r.get("name")))
        pattern = r.get("pattern") or pattern_of(r.get("name", "?"))
        base = dict(r)
        for k in ("seq", "density", "dtype"):
            if base.get(k) is None and gpu:
                base[k] = gpu.get(k)
        for p, key in (("fwd", "fwd_ms"), ("fwd+bwd", "fwdbwd_ms")):
            if key not in r:
                continue
            mine = ours.get(
                (base.get("device", "?"), pattern, base.get("seq"), base.get("dtype"), p)
            )
            # a peer's rate: bsa's block work for the same problem over the peer's time
            g = mine["gflops"] * mine["time_ms"] / r[key] if mine and mine["gflops"] else None
            out.append(_rec(base, r["peer"], pattern, p, r[key], g))
    return out


def _style(series_names):
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {s: colors[i % len(colors)] for i, s in enumerate(sorted(series_names))}


def _title(recs, what):
    devices = sorted({r["device"] for r in recs})
    notes = sorted({r["dtype"] for r in recs if r.get("dtype")})
    threads = sorted({r["threads"] for r in recs if r.get("threads")})
    if threads:
        notes.append(f"{'/'.join(map(str, threads))} CPU thread" + ("s" if threads != [1] else ""))
    return f"{what} on {', '.join(devices)}" + (f" ({', '.join(notes)})" if notes else "")


def plot_vs_seq(recs, path):
    import matplotlib.pyplot as plt

    recs = [r for r in recs if r["seq"]]
    patterns = sorted({r["pattern"] for r in recs})
    if not patterns:
        return False
    color = _style({r["series"] for r in recs})
    fig, axes = plt.subplots(2, len(patterns), figsize=(4.2 * len(patterns), 7.5), squeeze=False)
    dashes = {"fwd": "-", "fwd+bwd": "--", "bwd": ":"}
    for j, pat in enumerate(patterns):
        lines = collections.defaultdict(list)
        for r in recs:
            if r["pattern"] == pat:
                lines[(r["series"], r["pass_"])].append(r)
        for (series, pas), pts in sorted(lines.items()):
            pts.sort(key=lambda r: r["seq"])
            kw = dict(
                color=color[series],
                linestyle=dashes.get(pas, "-"),
                marker="o",
                ms=4,
                label=f"{series} {pas}",
            )
            axes[0][j].plot([r["seq"] for r in pts], [r["time_ms"] for r in pts], **kw)
            g = [(r["seq"], r["gflops"]) for r in pts if r["gflops"]]
            if g:
                axes[1][j].plot(*zip(*g), **kw)
        axes[0][j].set_title(pat)
        for i, lab in enumerate(("time (ms)", "block GFLOP/s")):
            ax = axes[i][j]
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length")
            ax.grid(True, which="both", alpha=0.3)
            if j == 0:
                ax.set_ylabel(lab)
        axes[0][j].legend(fontsize=7)
    fig.suptitle(_title(recs, "block-sparse attention vs sequence length"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_vs_density(recs, path):
    """One line per (series, sequence length) through its patterns' densities:
    colour = who, marker = pattern, darker = longer sequence."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    recs = [r for r in recs if r["density"]]
    if not recs:
        return False
    color = _style({r["series"] for r in recs})
    markers = dict(zip(sorted({r["pattern"] for r in recs}), "osD^v<>ph*"))
    seqs = sorted({r["seq"] for r in recs if r["seq"]})
    shade = {t: 0.35 + 0.65 * (i + 1) / len(seqs) for i, t in enumerate(seqs)}
    passes = sorted({r["pass_"] for r in recs})
    fig, axes = plt.subplots(2, len(passes), figsize=(5.5 * len(passes), 7.5), squeeze=False)
    for j, pas in enumerate(passes):
        groups = collections.defaultdict(list)
        for r in recs:
            if r["pass_"] == pas:
                groups[(r["series"], r["seq"])].append(r)
        for (series, seq), pts in groups.items():
            pts.sort(key=lambda r: r["density"])
            alpha = shade.get(seq, 1.0)
            for i, key in enumerate(("time_ms", "gflops")):
                xy = [(r["density"], r[key], r["pattern"]) for r in pts if r[key]]
                if not xy:
                    continue
                ax = axes[i][j]
                ax.plot(
                    [p[0] for p in xy], [p[1] for p in xy], color=color[series], alpha=alpha, lw=1
                )
                for x, y, pat in xy:
                    ax.plot([x], [y], marker=markers[pat], color=color[series], alpha=alpha, ms=5)
        for i, lab in enumerate(("time (ms)", "block GFLOP/s")):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("density (kept elements / all)")
            ax.set_ylabel(lab)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][j].set_title(pas)
    handles = [Line2D([], [], color=c, lw=2, label=s) for s, c in sorted(color.items())]
    handles += [Line2D([], [], color="k", marker=m, ls="none", label=p) for p, m in markers.items()]
    axes[0][0].legend(handles=handles, fontsize=7)
    span = (
        f"T = {seqs[0]}..{seqs[-1]}, darker = longer"
        if len(seqs) > 1
        else f"T = {seqs[0]}"
        if seqs
        else ""
    )
    fig.suptitle(
        _title(recs, "block-sparse attention vs density")
        + (f"\none line per sequence length ({span})" if span else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


PEER_LABELS = {
    "flex": "Flex",
    "flex-permuted": "Flex (permuted)",
    "sdpa-cudnn-causal": "cuDNN causal",
    "sdpa-cudnn-dense": "cuDNN dense",
    "sdpa-flash-causal": "FA2 causal",
    "sdpa-flash-dense": "FA2 dense",
}


def _who(series):
    """'bsa cuda-wgmma-sm90a' -> 'bsa' (the implementation varies by config)."""
    return "bsa" if series.startswith("bsa") else PEER_LABELS.get(series, series)


def plot_by_config(recs, path):
    """Grouped bars: per gpu_bench configuration, bsa and every peer timed on
    it, fwd above and fwd+bwd below; median of the repeated rows, whiskers
    from min to max."""
    import matplotlib.pyplot as plt

    recs = [r for r in recs if r.get("config") and r["pass_"] in ("fwd", "fwd+bwd")]
    configs = sorted({r["config"] for r in recs if r["series"].startswith("bsa")})
    recs = [r for r in recs if r["config"] in configs]
    if not configs:
        return False
    whos = sorted({_who(r["series"]) for r in recs}, key=lambda w: (w != "bsa", w))
    color = _style(whos)
    color["bsa"] = "black"
    times = collections.defaultdict(list)
    for r in recs:
        times[(r["config"], _who(r["series"]), r["pass_"])].append(r["time_ms"])
    width = 0.8 / len(whos)
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 1.3 * len(configs) * len(whos) / 3), 8))
    for ax, pas in zip(axes, ("fwd", "fwd+bwd")):
        for i, who in enumerate(whos):
            xs, med, lo, hi = [], [], [], []
            for j, cfg in enumerate(configs):
                t = sorted(times.get((cfg, who, pas), []))
                if not t:
                    continue
                m = t[len(t) // 2] if len(t) % 2 else 0.5 * (t[len(t) // 2 - 1] + t[len(t) // 2])
                xs.append(j + (i - (len(whos) - 1) / 2) * width)
                med.append(m)
                lo.append(m - t[0])
                hi.append(t[-1] - m)
            if xs:
                ax.bar(xs, med, width, color=color[who], label=who, yerr=[lo, hi], capsize=2)
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels(configs, rotation=20, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(f"{pas} time (ms, lower is faster)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=min(4, len(whos)))
    reps = max(len(v) for (c, w, p), v in times.items() if w == "bsa")
    fig.suptitle(
        _title(recs, "bsa against its peers per configuration")
        + f"\nbsa: median of {reps} runs, whiskers min-max"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="JSON-lines files")
    ap.add_argument("--out", default="bench", help="output prefix (default bench)")
    ap.add_argument("--dtype", help="keep only rows of this dtype (f32, f16, bf16)")
    ap.add_argument(
        "--pass",
        dest="passes",
        action="append",
        help="keep only this pass (fwd, bwd, fwd+bwd); repeatable",
    )
    a = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    recs = normalise(load(a.results))
    if a.dtype:
        recs = [r for r in recs if r.get("dtype") in (a.dtype, None)]
    if a.passes:
        recs = [r for r in recs if r["pass_"] in a.passes]
    recs = [r for r in recs if r["time_ms"] and math.isfinite(r["time_ms"]) and r["time_ms"] > 0]
    if not recs:
        print("plot_bench: no benchmark rows found", file=sys.stderr)
        return 1
    wrote = []
    for suffix, fn in (
        ("seq", plot_vs_seq),
        ("density", plot_vs_density),
        ("configs", plot_by_config),
    ):
        path = f"{a.out}_{suffix}.png"
        if fn(recs, path):
            wrote.append(path)
    print("wrote " + " ".join(wrote))
    return 0


if __name__ == "__main__":
    sys.exit(main())
