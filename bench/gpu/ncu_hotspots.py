#!/usr/bin/env python3
"""Where a kernel's warps wait, from an Nsight Compute report taken with
--set full --import-source yes (one kernel launch):
  ncu_hotspots.py REPORT.ncu-rep [TOP]
prints the warp-stall reasons (cycles per issued instruction, largest first)
and the TOP SASS instructions with the most stall samples.  Runs ncu -i."""
import csv
import io
import subprocess
import sys


def ncu_csv(rep, *args):
    out = subprocess.run(["ncu", "-i", rep, "--csv", *args], capture_output=True, text=True)
    rows = list(csv.reader(io.StringIO(out.stdout)))
    return rows, out.stderr


def number(x):
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return None


def stalls(rep):
    rows, err = ncu_csv(rep, "--page", "raw")
    if len(rows) < 3:
        print("raw page: no rows", err[-300:])
        return
    head, vals = rows[0], rows[2]
    found = []
    for name, v in zip(head, vals):
        if "issue_stalled" in name and name.endswith(".ratio"):
            x = number(v)
            if x is not None and x > 0.01:
                found.append((x, name))
    for key in ("gpu__time_duration.sum", "sm__throughput.avg.pct_of_peak_sustained_elapsed",
                "smsp__issue_active.avg.pct_of_peak_sustained_active",
                "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",
                "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed"):
        if key in head:
            print(f"  {key} = {vals[head.index(key)]}")
    print("  stall reasons (warp cycles per issued instruction):")
    for x, name in sorted(found, reverse=True)[:14]:
        print(f"    {x:7.3f}  {name}")


def hot_sass(rep, top):
    rows, err = ncu_csv(rep, "--page", "source", "--print-source", "sass")
    if len(rows) < 2:
        print("source page: no rows", err[-300:])
        return
    # the table's header is the first row naming the stall samples (rows
    # before it name the kernel)
    at = next((i for i, r in enumerate(rows) if any("Stall Sampling" in h for h in r)), None)
    if at is None:
        print("source page: no stall columns; first rows:", [r[:4] for r in rows[:4]])
        return
    head = rows[at]
    col = next(i for i, h in enumerate(head) if "Stall Sampling" in h)
    src = next((i for i, h in enumerate(head) if h.strip() in ("Source", "# Source")), None)
    adr = next((i for i, h in enumerate(head) if "Address" in h), None)
    if src is None:
        print("source page columns:", head[:12])
        return
    body = [r for r in rows[at + 1:] if len(r) == len(head) and number(r[col]) is not None]
    total = sum(number(r[col]) for r in body) or 1.0
    print(f"  top {top} SASS lines by stall samples ({int(total)} samples):")
    for r in sorted(body, key=lambda r: -number(r[col]))[:top]:
        a = r[adr] if adr is not None else ""
        print(f"    {100 * number(r[col]) / total:5.1f}%  {a:>8}  {r[src].strip()[:90]}")


if __name__ == "__main__":
    rep = sys.argv[1]
    print(f"### {rep}")
    stalls(rep)
    hot_sass(rep, int(sys.argv[2]) if len(sys.argv) > 2 else 30)
