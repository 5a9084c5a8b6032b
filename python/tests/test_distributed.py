"""bsa.distributed over torch.distributed: 2 processes on CPU (gloo).

Each process draws the same fresh random q, k, v and output gradient of
the whole sequence (the seed is the parent's), takes the single-process
library's output and gradients (bsa.attention under autograd) as the
reference, runs bsa.distributed.attention on its shard and backpropagates
through it, and compares its rows: relative L2 within 1e-6 (float32; the
dist plan sums the shards' partials in another order, so results are not
bitwise those of one process).  Skipped without torch or gloo, except
under BSA_REQUIRE_TORCH=1 (make test-dist-python, in CI), where that fails.
"""

import os
import tempfile

import numpy as np
import pytest

if os.environ.get("BSA_REQUIRE_TORCH") == "1":  # make test-dist-python: a skip would hide
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    assert dist.is_available() and dist.is_gloo_available(), "torch.distributed without gloo"
else:
    torch = pytest.importorskip("torch")
    dist = pytest.importorskip("torch.distributed")
    mp = pytest.importorskip("torch.multiprocessing")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

T, BATCH, HEADS, DIM = 256, 2, 2, 16

CASES = [
    # pattern, ctx, causal, sharding, exchange
    ("all", 0, True, "zigzag", "ring"),
    ("all", 0, False, "contiguous", "allgather"),
    ("local", 32, True, "auto", "auto"),
    ("fixed", 64, True, "contiguous", "ring"),
]


def rel_l2(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if not np.isfinite(got).all():
        return np.inf
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-300))


def _worker(rank, world, init, seed, out_dir):
    import bsa  # noqa: PLC0415 - in the spawned process
    import bsa.distributed  # noqa: PLC0415

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    lines = []
    try:
        rng = np.random.default_rng(seed)
        for pattern, ctx, causal, sharding, exchange in CASES:
            kw = {"num_verts": 2, "vertsize": 1} if pattern == "fixed" else {}
            layout = bsa.Layout.preset(pattern, seq=T, block=16, heads=HEADS, ctx=ctx, causal=causal, **kw)
            full = [rng.uniform(-1, 1, (BATCH, HEADS, T, DIM)).astype(np.float32) for _ in range(4)]
            # the reference: one process, the whole sequence
            q, k, v = (torch.tensor(x, requires_grad=True) for x in full[:3])
            do = torch.tensor(full[3])
            o = bsa.attention(q, k, v, layout)
            o.backward(do)
            ref = [o.detach().numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()]
            # this rank's shard
            n = T // world
            shape = (BATCH, HEADS, n, DIM)
            probe = torch.empty(shape)
            plan = bsa.distributed.plan_for(probe, probe, probe, layout, sharding=sharding, exchange=exchange)
            rows = plan.positions()
            assert len(rows) == n and len(set(rows)) == n
            qs, ks, vs = (torch.tensor(x[:, :, rows], requires_grad=True) for x in full[:3])
            os_ = bsa.distributed.attention(qs, ks, vs, layout, sharding=sharding, exchange=exchange)
            os_.backward(torch.tensor(full[3][:, :, rows]))
            got = [os_.detach().numpy(), qs.grad.numpy(), ks.grad.numpy(), vs.grad.numpy()]
            errs = [rel_l2(g, r[:, :, rows]) for g, r in zip(got, ref)]
            lines.append(f"{pattern} causal={causal} {plan.implementation}: " + " ".join(f"{e:.1e}" for e in errs))
            if max(errs) > 1e-6:
                raise AssertionError(f"rank {rank}: {lines[-1]}: above 1e-6")
    finally:
        with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        dist.destroy_process_group()


def test_two_processes_gloo():
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    with tempfile.TemporaryDirectory() as d:
        init = "file://" + os.path.join(d, "rendezvous")
        mp.spawn(_worker, args=(2, init, seed, d), nprocs=2, join=True)
        for r in range(2):
            with open(os.path.join(d, f"rank{r}.txt")) as f:
                text = f.read()
            print(text)
            assert text.count("dist-") == len(CASES)


def test_arguments():
    import bsa  # noqa: PLC0415
    import bsa.distributed  # noqa: PLC0415

    layout = bsa.Layout.preset("all", seq=64, block=16)
    with pytest.raises(TypeError):
        bsa.distributed.DistPlan(np.zeros((1, 1, 32, 16)), None, None, layout, None, None, "auto", "auto")
    with pytest.raises(ValueError):
        t = torch.zeros(1, 1, 32, 16)
        bsa.distributed.DistPlan(t, t, t, layout, None, None, "diagonal", "auto")
