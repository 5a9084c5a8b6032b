#!/usr/bin/env python3
"""Joins bsa's GPU bench rows (gpu_bench JSON lines) with the peers' rows
(bench/peers/flex_peer.py) and prints the issue's targets as measured:
speed ratio = peer time / bsa time (> 1: bsa faster).

    summarize.py BSA_JSONL PEERS_JSONL [MARKDOWN_OUT [BASE_JSONL]]
"""
import json
import sys


def load(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    except FileNotFoundError:
        pass
    return rows


def reduce(rows):
    """Rows of repeated runs by config name: each timing's median, with
    its min and max kept as KEY_min / KEY_max and the run count as runs."""
    by = {}
    for r in rows:
        by.setdefault(r["name"], []).append(r)
    out = {}
    for n, rs in by.items():
        m = dict(rs[0])
        for k in ("fwd_ms", "fwdbwd_ms", "fwd_block_tflops", "fwdbwd_block_tflops"):
            v = sorted(x[k] for x in rs)
            m[k] = v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
            m[k + "_min"], m[k + "_max"] = v[0], v[-1]
        m["runs"] = len(rs)
        out[n] = m
    return out


def spread(r, k):
    return f"{r[k]:.3f} [{r[k + '_min']:.3f}-{r[k + '_max']:.3f}]"


ours = reduce(load(sys.argv[1]))
peers = {}
for r in load(sys.argv[2]) if len(sys.argv) > 2 else []:
    peers[(r["name"], r["peer"])] = r
out = []
dev = next(iter(ours.values()))["device"] if ours else "?"
out.append(f"device: {dev}")
out.append("")
out.append("| config | impl | runs | bsa fwd ms median [min-max] | bsa fwd+bwd ms | fwd TFLOP/s (block) | fwd+bwd TFLOP/s | peak dev MiB (lib+tensors) |")
out.append("|---|---|---|---|---|---|---|---|")
for n, r in ours.items():
    out.append(f"| {n} | {r['impl']} | {r['runs']} | {spread(r, 'fwd_ms')} | {spread(r, 'fwdbwd_ms')} | "
               f"{r['fwd_block_tflops']:.1f} | {r['fwdbwd_block_tflops']:.1f} | "
               f"{r['peak_dev_mib']:.0f} ({r['tensors_mib']:.0f} tensors) |")
out.append("")
out.append("| config | peer | peer fwd ms | peer fwd+bwd ms | speed ratio fwd | speed ratio fwd+bwd |")
out.append("|---|---|---|---|---|---|")
for (n, p), r in peers.items():
    o = ours.get(n)
    if not o:
        continue
    out.append(f"| {n} | {p} | {r['fwd_ms']:.3f} | {r['fwdbwd_ms']:.3f} | "
               f"{r['fwd_ms'] / o['fwd_ms']:.2f}x | {r['fwdbwd_ms'] / o['fwdbwd_ms']:.2f}x |")
out.append("")
out.append("targets (speed ratio = peer ms / bsa ms):")


class Val(float):
    """A measured ratio (the medians') with its worst case over bsa's runs
    (lo): a target is met only when lo meets it too (its margin exceeds
    the run-to-run spread)."""

    def __new__(cls, v, lo=None):
        x = float.__new__(cls, v)
        x.lo = v if lo is None else lo
        return x

    def __truediv__(self, other):
        if isinstance(other, Val):
            return Val(float(self) / float(other), self.lo / max(float(other), other.hi))
        return Val(float(self) / other, self.lo / other)


def ratio(n, p, k):
    r, o = peers.get((n, p)), ours.get(n)
    if not (r and o):
        return Val(float("nan"))
    return Val(r[k] / o[k], r[k] / o[k + "_max"])


def rate(n, k):
    o = ours.get(n)
    if not o:
        return Val(float("nan"))
    v = Val(o[k], o[k + "_min"])
    v.hi = o[k + "_max"]
    return v


def line(label, val, goal):
    lo = getattr(val, "lo", val)
    if val != val:
        ok = "not measured"
    elif lo >= goal:
        ok = "MET"
    elif val >= goal:
        ok = "within the spread (median meets it, the worst run does not)"
    else:
        ok = "MISSED"
    out.append(f"  {label}: {val:.2f} (worst run {lo:.2f}; target >= {goal}) {ok}")


for n in ("all-d128", "all-d64"):
    line(f"{n} fwd vs flex", ratio(n, "flex", "fwd_ms"), 0.9)
    line(f"{n} fwd+bwd vs flex", ratio(n, "flex", "fwdbwd_ms"), 0.8)
for k, lab in (("fwd_ms", "fwd"), ("fwdbwd_ms", "fwd+bwd")):
    line(f"strided {lab} vs flex (natural)", ratio("strided-L128-b32", "flex", k), 10)
    line(f"strided {lab} vs flex (permuted)", ratio("strided-L128-b32", "flex-permuted", k), 1.5)
line("fixed fwd vs flex", ratio("fixed-L128-b32", "flex", "fwd_ms"), 3)
line("fixed fwd+bwd vs flex", ratio("fixed-L128-b32", "flex", "fwdbwd_ms"), 3)
for k in ("fwd_block_tflops", "fwdbwd_block_tflops"):
    base = rate("all-d64", k)
    line(f"local L256 b64 {k} / all (d64, b128)", rate("local-L256-b64", k) / base, 0.7)
    line(f"random 10% b32 {k} / all (d64, b128)", rate("random10-b32", k) / base, 0.5)
out.append("")
out.append("issue 24 (Hopper training speed), speed ratio = peer ms / bsa ms:")
for n in ("all-d128", "all-d64", "all-d128-t16k", "all-d64-t16k"):
    for k, lab in (("fwd_ms", "fwd"), ("fwdbwd_ms", "fwd+bwd")):
        line(f"{n} {lab} vs cuDNN", ratio(n, "sdpa-cudnn-causal", k), 1.0)
for k in ("fwd_block_tflops", "fwdbwd_block_tflops"):
    line(f"local L256 b64 {k} / all (d64, b128)",
         rate("local-L256-b64", k) / rate("all-d64", k), 0.8)
line("random 10% b32 d128 fwdbwd_block_tflops / all (d128)",
     rate("random10-b32-d128", "fwdbwd_block_tflops") / rate("all-d128", "fwdbwd_block_tflops"), 0.5)
out.append("")
out.append("beyond the seed (issue 7), speed ratio = peer ms / bsa ms:")
for n, p in (("gqa-all-d128", "flex"), ("gqa-all-d128", "sdpa-flash-causal"),
             ("varlen-all-d128", "flex")):
    out.append(f"  {n} vs {p}: fwd {ratio(n, p, 'fwd_ms'):.2f}x, "
               f"fwd+bwd {ratio(n, p, 'fwdbwd_ms'):.2f}x")
if len(sys.argv) > 4:  # the earlier version's rows (run.sh BASE=...)
    base = reduce(load(sys.argv[4]))
    out.append("")
    out.append("this version against the base (same card, runs alternating; ratio = this / base "
               "median; within: |ratio - 1| <= 3%):")
    out.append("")
    out.append("| config | base impl | this impl | base fwd ms | this fwd ms | fwd ratio | "
               "base fwd+bwd ms | this fwd+bwd ms | fwd+bwd ratio | within 3% |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for n, b in base.items():
        o = ours.get(n)
        if not o:
            continue
        rf, rb = o["fwd_ms"] / b["fwd_ms"], o["fwdbwd_ms"] / b["fwdbwd_ms"]
        ok = "yes" if abs(rf - 1) <= 0.03 and abs(rb - 1) <= 0.03 else "NO"
        out.append(f"| {n} | {b['impl']} | {o['impl']} | {spread(b, 'fwd_ms')} | "
                   f"{spread(o, 'fwd_ms')} | {rf:.3f} | {spread(b, 'fwdbwd_ms')} | "
                   f"{spread(o, 'fwdbwd_ms')} | {rb:.3f} | {ok} |")
text = "\n".join(out)
print(text)
if len(sys.argv) > 3:
    with open(sys.argv[3], "w") as f:
        f.write(text + "\n")
