"""bench/plot_bench.py: rows of the three JSON kinds become records and charts."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import plot_bench  # noqa: E402

DEV = "Test CPU 9000"


def _rows(rng):
    rows = []
    for seq in (512, 1024, 2048):
        for pat, dens in (("all", 0.5), ("local", 0.1)):
            for p in ("fwd", "bwd"):
                t = float(rng.uniform(1, 10))
                rows.append(
                    dict(
                        device=DEV,
                        backend="cpu",
                        impl="cpu-fused",
                        pattern=pat,
                        dtype="f32",
                        heads=2,
                        dim=64,
                        seq=seq,
                        density=dens,
                        time_ms=t,
                        block_gflops=float(rng.uniform(10, 100)),
                        **{"pass": p},
                    )
                )
    rows.append(
        dict(
            device=DEV,
            peer="sdpa",
            pattern="all",
            seq=1024,
            dtype="f32",
            fwd_ms=20.0,
            fwdbwd_ms=50.0,
        )
    )
    rows.append(
        dict(
            device=DEV,
            name="fixed-L128-b32",
            impl="cuda-mma",
            seq=16384,
            dtype="f16",
            density=0.05,
            fwd_ms=2.0,
            fwdbwd_ms=6.0,
            fwd_block_tflops=100.0,
            fwdbwd_block_tflops=80.0,
        )
    )
    rows.append(dict(device=DEV, name="fixed-L128-b32", peer="flex", fwd_ms=4.0, fwdbwd_ms=12.0))
    return rows


def test_normalise(rng):
    rows = _rows(rng)
    recs = plot_bench.normalise(rows)
    by = {(r["series"], r["pattern"], r["seq"], r["pass_"]): r for r in recs}
    f = by[("bsa cpu-fused", "all", 1024, "fwd")]
    b = by[("bsa cpu-fused", "all", 1024, "bwd")]
    fb = by[("bsa cpu-fused", "all", 1024, "fwd+bwd")]
    assert fb["time_ms"] == pytest.approx(f["time_ms"] + b["time_ms"])
    work = f["gflops"] * f["time_ms"] + b["gflops"] * b["time_ms"]
    assert fb["gflops"] == pytest.approx(work / fb["time_ms"])
    # a peer's rate: bsa's work for the same problem over the peer's time
    peer = by[("sdpa", "all", 1024, "fwd+bwd")]
    assert peer["time_ms"] == 50.0 and peer["gflops"] == pytest.approx(work / 50.0)
    assert by[("sdpa", "all", 1024, "fwd")]["gflops"] == pytest.approx(
        f["gflops"] * f["time_ms"] / 20.0
    )
    # gpu_bench rows and the flex peer joined by config name
    g = by[("bsa cuda-mma", "fixed", 16384, "fwd")]
    assert g["gflops"] == pytest.approx(1e5)
    flex = by[("flex", "fixed", 16384, "fwd+bwd")]
    assert flex["gflops"] == pytest.approx(80e3 * 6.0 / 12.0)
    assert flex["dtype"] == "f16" and flex["density"] == 0.05


def test_charts(tmp_path, rng):
    pytest.importorskip("matplotlib")
    path = tmp_path / "rows.jsonl"
    with open(path, "w") as f:
        f.write("device: not json, a table line\n")
        for r in _rows(rng):
            f.write(json.dumps(r) + "\n")
    assert plot_bench.main([str(path), "--out", str(tmp_path / "c"), "--dtype", "f32"]) == 0
    for suffix in ("seq", "density"):
        data = (tmp_path / f"c_{suffix}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000
    empty = tmp_path / "empty.jsonl"
    empty.write_text("nothing\n")
    assert plot_bench.main([str(empty), "--out", str(tmp_path / "e")]) == 1
