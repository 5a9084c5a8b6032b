#!/usr/bin/env python3
"""Writes backends/cuda/generated/: the kernel instances of every family,
one translation unit per group so that nvcc compiles them in parallel.

Each file holds instances only: a table of {key, kernel address} slots
(kernel_instances.h) that the launch code (launch.cu) searches once, at
plan creation, for the instance the implementation list chose.  The tables
below are the only list of what is compiled: keep them short (CI builds
them for several architectures on two cores).  Run after editing a table:
    python3 backends/cuda/gen_instances.py            (writes generated/)
    python3 backends/cuda/gen_instances.py --check    (fails on a stale file)
"""
import os
import sys

DTYPES = {"f16": ("__half", "BSA_DTYPE_F16"), "bf16": ("__nv_bfloat16", "BSA_DTYPE_BF16")}
ALL_DTYPES = dict(DTYPES, f32=("float", "BSA_DTYPE_F32"))


def slot(family, pas, dtype, dpad, fn, rows=64, stages=0, feat=0, pred=0, gather=0):
    return (f"    {{{family}, {pas}, {rows}, {stages}, {dtype}, {dpad}, {feat}, {pred}, "
            f"{gather}, (const void *)&{fn}}},")


# ---- the tile family (tc_kernels.cuh), per (dtype, pass) ----
# AMD compiles the same file as HIP: 64 KB of LDS per workgroup holds the
# 64-row forward and backward up to head dim 128 (the backward at 128 with
# its own-row operands in registers and one query-side stage: tc_cfg;
# larger problems take the reference kernels there); the implementation
# list never gives AMD the 128-row forward (dispatch.c), nor dK/dV with two
# query-side stages at 128, so they are not compiled
TILE_DPADS = [32, 64, 128, 256]
HIP_MAX = {"fwd": 128, "fwd128": 0, "bwd": 128, "dkdv2_128": 0}
PRED_MAX = 128  # dQ, dK/dV: a PRED instance (interval masks) up to here


def tile_slots(ctype, dt, ps):
    out = []

    def emit(lines, d, hip_max):
        if d > hip_max:
            out.append("#if !defined(BSA_VENDOR_HIP)")
        out.extend(lines)
        if d > hip_max:
            out.append("#endif")

    for d in TILE_DPADS:
        if ps == "fwd":
            lines = []
            for g in (0, 1):
                for f in (0, 1):
                    lines.append(slot("BSA_FAM_TILE", "BSA_PASS_FWD", dt, d,
                                      f"fwd_kernel<{ctype}, {d}, {'true' if g else 'false'}, "
                                      f"{'true' if f else 'false'}>", feat=f, gather=g))
            emit(lines, d, HIP_MAX["fwd"])
            if d == 128:  # the list takes 128 rows at head dim 128 alone (dispatch.c)
                emit([slot("BSA_FAM_TILE", "BSA_PASS_FWD", dt, d,
                           f"fwd2_kernel<{ctype}, {d}, {'true' if f else 'false'}>", rows=128,
                           feat=f) for f in (0, 1)], d, HIP_MAX["fwd128"])
        else:
            # default query-side stages of dK/dV: two up to head dim 128
            st = 2 if d <= 128 else 1
            stages = [st] + ([1] if d == 128 else [])  # one stage: 99 KB parts (sm_86/89)
            for kind, tmpl in (("BSA_PASS_DQ", "dq_kernel"), ("BSA_PASS_DKDV", "dkdv_kernel")):
                for s in stages if kind == "BSA_PASS_DKDV" else [0]:
                    hip_max = HIP_MAX["dkdv2_128"] if d == 128 and s == 2 else HIP_MAX["bwd"]
                    lines = []
                    variants = [(0, 0), (1, 0)] + ([(0, 1)] if d <= PRED_MAX else [])
                    for f, p in variants:
                        args = f"{ctype}, {d}, {'true' if f else 'false'}, {'true' if p else 'false'}"
                        if s:
                            args += f", {s}"
                        lines.append(slot("BSA_FAM_TILE", kind, dt, d, f"{tmpl}<{args}>",
                                          stages=s, feat=f, pred=p))
                    emit(lines, d, hip_max)
    return out


def brow_slots():
    out = []
    for ctype, dt in DTYPES.values():
        for d in (32, 64, 128):
            out.append(slot("BSA_FAM_BROW", "BSA_PASS_FWD", dt, d, f"brow_fwd_kernel<{ctype}, {d}>"))
            if d <= 64:  # the backward keeps Q and dO fragments in registers
                out.append(slot("BSA_FAM_BROW", "BSA_PASS_DQ", dt, d,
                                f"brow_dq_kernel<{ctype}, {d}>"))
                out.append(slot("BSA_FAM_BROW", "BSA_PASS_DKDV", dt, d,
                                f"brow_dkdv_kernel<{ctype}, {d}>"))
    return out


def chunk_slots():
    out = []
    for ctype, dt in DTYPES.values():
        for d in (32, 64, 128):
            out.append(slot("BSA_FAM_CHUNK", "BSA_PASS_FWD", dt, d,
                            f"fwd_chunk_kernel<{ctype}, {d}>", rows=128))
            out.append(slot("BSA_FAM_CHUNK", "BSA_PASS_BWD", dt, d,
                            f"bwd_chunk_kernel<{ctype}, {d}>", rows=128))
    return out


def volta_slots():
    out = []
    for d in (32, 64, 128):
        for kind, tmpl in (("BSA_PASS_FWD", "fwd_kernel"), ("BSA_PASS_DQ", "dq_kernel"),
                           ("BSA_PASS_DKDV", "dkdv_kernel")):
            out.append(slot("BSA_FAM_VOLTA", kind, "BSA_DTYPE_F16", d, f"volta::{tmpl}<{d}>"))
    return out


def ref_slots():
    out = []
    for ctype, dt in ALL_DTYPES.values():
        for kind, tmpl in (("BSA_PASS_FWD", "ref_fwd"), ("BSA_PASS_DQ", "ref_dq"),
                           ("BSA_PASS_DKDV", "ref_dkdv")):
            out.append(slot("BSA_FAM_REF", kind, dt, 0, f"{tmpl}<{ctype}>"))
        # the backward's pre-pass; rows = lanes a row: 8 (16-byte chunks) or a warp
        out.append(slot("BSA_FAM_REF", "BSA_PASS_DELTA", dt, 0, f"delta_kernel<{ctype}, true>",
                        rows=8))
        out.append(slot("BSA_FAM_REF", "BSA_PASS_DELTA", dt, 0, f"delta_kernel<{ctype}, false>",
                        rows=32))
    return out


def hopper_slots(part):
    out = []
    for ctype, dt in DTYPES.values():
        for d in (64, 128):
            if part == "fwd":
                for g in (0, 1):
                    for f in (0, 1):
                        out.append(slot("BSA_FAM_WGMMA", "BSA_PASS_FWD", dt, d,
                                        f"hopper::fwd_wgmma_kernel<{ctype}, {d}, 2, "
                                        f"{'true' if f else 'false'}, {'true' if g else 'false'}>",
                                        rows=128, feat=f, gather=g))
                for p in (0, 1):
                    out.append(slot("BSA_FAM_WGMMA_WS", "BSA_PASS_FWD", dt, d,
                                    f"hopper::fwd_ws_wgmma_kernel<{ctype}, {d}, "
                                    f"{'true' if p else 'false'}>", rows=128, pred=p))
            elif part == "chunk":
                out.append(slot("BSA_FAM_WGMMA_CHUNK", "BSA_PASS_FWD", dt, d,
                                f"hopper::fwd_chunk_wgmma_kernel<{ctype}, {d}>", rows=128))
            else:
                tmpl = "dq_wgmma_kernel" if part == "dq" else "dkdv_wgmma_kernel"
                kind = "BSA_PASS_DQ" if part == "dq" else "BSA_PASS_DKDV"
                for g in (0, 1):
                    for f in (0, 1):
                        args = f"{ctype}, {d}, " + ("2, " if part == "dq" else "")
                        args += f"{'true' if f else 'false'}, {'true' if g else 'false'}"
                        out.append(slot("BSA_FAM_WGMMA", kind, dt, d, f"hopper::{tmpl}<{args}>",
                                        rows=128, feat=f, gather=g))
    return out


# (file, header it needs, table name, slots); hopper files go to the sm_90a
# object library (backends/cuda/CMakeLists.txt)
FILES = []
for name, (ctype, dt) in DTYPES.items():
    for ps in ("fwd", "bwd"):
        FILES.append((f"tile_{name}_{ps}.cu", "../tc_kernels.cuh", f"tile_{name}_{ps}",
                      tile_slots(ctype, dt, ps)))
FILES += [
    ("brow.cu", "../brow_kernels.cuh", "brow", brow_slots()),
    ("chunk.cu", "../chunk_kernels.cuh", "chunk", chunk_slots()),
    ("volta.cu", "../volta_kernels.cuh", "volta", volta_slots()),
    ("ref.cu", "../ref_kernels.cuh", "ref", ref_slots()),
    ("hopper_fwd.cu", "../hopper/fwd_wgmma.cuh\"\n#include \"../hopper/fwd_ws_wgmma.cuh",
     "hopper_fwd", hopper_slots("fwd")),
    ("hopper_dq.cu", "../hopper/dq_wgmma.cuh", "hopper_dq", hopper_slots("dq")),
    ("hopper_dkdv.cu", "../hopper/dkdv_wgmma.cuh", "hopper_dkdv", hopper_slots("dkdv")),
    ("hopper_chunk.cu", "../hopper/fwd_chunk_wgmma.cuh", "hopper_chunk", hopper_slots("chunk")),
]
# compiled as HIP too (backends/hip/CMakeLists.txt)
HIP_TABLES = ["tile_f16_fwd", "tile_f16_bwd", "tile_bf16_fwd", "tile_bf16_bwd", "ref"]

BANNER = "/* Generated by backends/cuda/gen_instances.py: do not edit. */"


def render():
    files = {}
    for fname, header, table, slots in FILES:
        files[fname] = "\n".join([
            BANNER,
            f'#include "{header}"',
            '#include "instance_tables.h"',
            "",
            "namespace bsa_cuda",
            "{",
            "",
            f"const instance_slot {table}_slots[] = {{",
            *slots,
            "};",
            f"const int {table}_count = (int)(sizeof {table}_slots / sizeof {table}_slots[0]);",
            "",
            "} // namespace bsa_cuda",
            "",
        ])
    decl = [BANNER, "/* The instance tables of the files of generated/ (kernel_instances.h). */",
            "#ifndef BSA_CUDA_GENERATED_INSTANCE_TABLES_H",
            "#define BSA_CUDA_GENERATED_INSTANCE_TABLES_H", "",
            '#include "../kernel_instances.h"', "", "namespace bsa_cuda", "{", ""]
    for _, _, table, _ in FILES:
        decl.append(f"extern const instance_slot {table}_slots[];")
        decl.append(f"extern const int {table}_count;")
    groups = {
        "BSA_CUDA_TABLES_BOTH": [t for _, _, t, _ in FILES if t in HIP_TABLES],
        "BSA_CUDA_TABLES_CUDA": [t for _, _, t, _ in FILES
                                 if t not in HIP_TABLES and not t.startswith("hopper_")],
        "BSA_CUDA_TABLES_HOPPER": [t for _, _, t, _ in FILES if t.startswith("hopper_")],
    }
    decl += ["", "/* the tables as instance_table initialisers: compiled as CUDA and HIP,",
             " * as CUDA only, and the Hopper ones (the sm_90a library) */"]
    for macro, tables in groups.items():
        decl.append(f"#define {macro} \\")
        decl += [f"    {{{t}_slots, &{t}_count}}," + (" \\" if i + 1 < len(tables) else "")
                 for i, t in enumerate(tables)]
    decl += ["", "} // namespace bsa_cuda", "", "#endif", ""]
    files["instance_tables.h"] = "\n".join(decl)
    return files


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "generated")
    check = "--check" in sys.argv[1:]
    files = render()
    stale = []
    if not check:
        os.makedirs(out, exist_ok=True)
        for old in os.listdir(out):
            if old not in files:
                os.remove(os.path.join(out, old))
    for name, text in files.items():
        path = os.path.join(out, name)
        if check:
            try:
                with open(path) as f:
                    if f.read() != text:
                        stale.append(name)
            except OSError:
                stale.append(name)
        else:
            with open(path, "w") as f:
                f.write(text)
    if check:
        extra = sorted(set(os.listdir(out)) - set(files)) if os.path.isdir(out) else []
        if stale or extra:
            print("gen_instances: stale generated files (run python3 "
                  "backends/cuda/gen_instances.py):", " ".join(stale + extra), file=sys.stderr)
            return 1
        print(f"gen_instances: {len(files)} generated files up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
