"""torch tests: CPU always (where torch exists), CUDA where a GPU and the CUDA
backend exist.  bsa against torch's scaled_dot_product_attention in float64
with the equivalent boolean mask, gradients through autograd, the current
CUDA stream, and the nn.Module in a training step whose loss decreases.

No fixtures and no pytest decorators, so `python3 test_torch.py` runs them
without pytest too; skips raise unittest.SkipTest, which pytest also honours.
"""

import os
import sys
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # python/
sys.path.insert(0, os.path.dirname(HERE))  # python/tests/ (closed_masks)

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - the CPU CI machine has no torch
    torch = None

if torch is None:
    try:
        import pytest

        pytest.skip("torch is not installed", allow_module_level=True)
    except ImportError:
        pass

import bsa  # noqa: E402
import closed_masks  # noqa: E402  (python/tests/)
import bsa.functional  # noqa: E402

SKIP = unittest.SkipTest
TOL = {"float32": 2e-5, "float16": 5e-3, "bfloat16": 3e-2}
CUDA_TOL32 = 1e-3  # TF32-free fp32 products on the GPU still sum in another order


class MachineLacks(unittest.SkipTest):
    """A skip for hardware no single-GPU machine has (a second GPU): a skip
    even where BSA_REQUIRE_GPU makes every other skip a failure
    (run_all.py)."""

    machine_lacks = True


def devices():
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    return out


def need(device):
    if torch is None:
        raise SKIP("torch is not installed")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SKIP("no CUDA device")
        if "cuda" not in bsa.backends() and "hip" not in bsa.backends():
            raise SKIP(f"libbsa ({bsa.library_path}) was built without a GPU backend")


def gen(device):
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"  seed {seed}")
    return torch.Generator(device="cpu").manual_seed(seed)


def randn(g, shape, dtype, device):
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)


def preset_and_mask(device, pattern, heads=1, **p):
    """Layout.preset(pattern, heads=heads, **p) and its bool element mask
    [layout heads, T, T] on device, from the closed forms of
    python/tests/closed_masks.py (never the library's own element mask)."""
    lay = bsa.Layout.preset(pattern, heads=heads, **p)
    m = closed_masks.preset_masks(pattern, heads=heads, **p)
    assert m.shape == (lay.heads, lay.seq_q, lay.seq_k)
    return lay, torch.from_numpy(m).to(device)


def rel_err(got, want):
    got, want = got.double(), want.double()
    assert torch.isfinite(got).all(), "non-finite values (an unwritten, NaN-poisoned element?)"
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def sdpa64(q, k, v, mask, scale):
    """The oracle: SDPA in float64 with the boolean mask (True = attend)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def tol(dtype, device):
    name = str(dtype).replace("torch.", "")
    return CUDA_TOL32 if (name == "float32" and device == "cuda") else TOL[name]


PRESETS = [
    dict(pattern="all", seq=128, block=16),
    dict(pattern="local", seq=256, block=32, ctx=64),
    dict(pattern="strided", seq=256, block=16, ctx=8),
    dict(pattern="fixed", seq=256, block=16, ctx=64, num_verts=2, vertsize=1),
    dict(pattern="fixed", seq=256, block=32, ctx=128, num_verts=1, vertsize=2, causal=False),
]


def _check_against_sdpa(device, dtype, p, batch=2, heads=4, dim=64):
    g = gen(device)
    lay, mask = preset_and_mask(device, heads=heads, **p)
    mask = mask[None]  # [1, Hl, T, T] broadcasts over batch (and heads)
    shape = (batch, heads, lay.seq_q, dim)
    q, k, v, do = (randn(g, shape, dtype, device) for _ in range(4))
    q64, k64, v64 = (x.double().requires_grad_() for x in (q, k, v))
    scale = dim**-0.5
    want = sdpa64(q64, k64, v64, mask, scale)
    want.backward(do.double())
    qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
    o = bsa.attention(qq, kk, vv, lay)
    assert o.dtype == dtype and o.device.type == device and o.shape == q.shape
    o.backward(do)
    t = tol(dtype, device)
    errs = [rel_err(o, want)] + [
        rel_err(a.grad, b.grad) for a, b in zip((qq, kk, vv), (q64, k64, v64))
    ]
    assert errs[0] < t and max(errs[1:]) < 4 * t, (
        f"{p} {dtype} {device}: o, dq, dk, dv errors {errs}"
    )


def test_cpu_against_sdpa():
    need("cpu")
    bsa.functional.set_poison(True)
    try:
        for p in PRESETS:
            for dtype in (torch.float32, torch.bfloat16):
                _check_against_sdpa("cpu", dtype, p, batch=1, heads=2, dim=32)
    finally:
        bsa.functional.set_poison(False)


def test_cuda_against_sdpa():
    need("cuda")
    bsa.functional.set_poison(True)
    try:
        for p in PRESETS:
            for dtype in (torch.float16, torch.bfloat16, torch.float32):
                for dim in (64, 128):
                    _check_against_sdpa("cuda", dtype, p, dim=dim)
    finally:
        bsa.functional.set_poison(False)


def _fused_qkv(device):
    """The seed's [batch, time, heads*dim] as slices of one fused projection:
    strided views, gradients through autograd into the projection."""
    g = gen(device)
    b, t, h, d = 2, 128, 4, 32
    e = h * d
    dtype = torch.float16 if device == "cuda" else torch.float32
    lay, mask = preset_and_mask(device, "fixed", seq=t, block=16, heads=h, ctx=64, num_verts=4)
    mask = mask[None]
    x = randn(g, (b, t, e), dtype, device)
    w = (randn(g, (3 * e, e), dtype, device) * e**-0.5).requires_grad_()
    w64 = w.detach().double().requires_grad_()
    qkv = x @ w.t()
    q, k, v = qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]
    assert not q.is_contiguous()
    copies = []
    real = bsa.torch_ops.TorchOps.contiguous
    bsa.torch_ops.TorchOps.contiguous = staticmethod(lambda y: copies.append(y.shape) or real(y))
    try:
        o = bsa.attention(q, k, v, lay, heads=h)
        (o.float() ** 2).sum().backward()
    finally:
        bsa.torch_ops.TorchOps.contiguous = staticmethod(real)
    assert not copies, f"the binding copied tensors of shapes {copies}"

    qkv64 = x.double() @ w64.t()
    split = [y.reshape(b, t, h, d).transpose(1, 2) for y in qkv64.split(e, dim=-1)]
    o64 = sdpa64(*split, mask, d**-0.5).transpose(1, 2).reshape(b, t, e)
    (o64**2).sum().backward()
    t_ = tol(dtype, device)
    assert rel_err(o, o64) < t_
    assert rel_err(w.grad, w64.grad) < 4 * t_


def test_cpu_fused_qkv_autograd():
    need("cpu")
    _fused_qkv("cpu")


def test_cuda_fused_qkv_autograd():
    need("cuda")
    _fused_qkv("cuda")


def test_cuda_current_stream():
    """Work queued on a side stream before the call must be seen: bsa runs on
    torch's current stream, not on the default one."""
    need("cuda")
    g = gen("cuda")
    lay, mask = preset_and_mask("cuda", "local", seq=512, block=64, ctx=128)
    shape = (1, 2, 512, 64)
    q_old, q_new, k, v = (randn(g, shape, torch.float16, "cuda") for _ in range(4))
    q = q_old.clone()
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        torch.cuda._sleep(50_000_000)  # keep the stream busy
        q.copy_(q_new)  # queued behind the sleep
        o = bsa.attention(q, k, v, lay)
    s.synchronize()
    mask = mask[None]
    want = sdpa64(q_new.double(), k.double(), v.double(), mask, 64**-0.5)
    assert rel_err(o, want) < TOL["float16"]


def test_cuda_other_device():
    need("cuda")
    if torch.cuda.device_count() < 2:
        raise MachineLacks("one GPU: the test needs two")
    g = gen("cuda")
    lay, mask = preset_and_mask("cuda:1", "all", seq=128, block=32)
    q, k, v = (randn(g, (1, 2, 128, 64), torch.float16, "cuda:1") for _ in range(3))
    o = bsa.attention(q, k, v, lay)
    assert o.device == q.device
    want = sdpa64(q.double(), k.double(), v.double(), mask[None], 0.125)
    assert rel_err(o, want) < TOL["float16"]


def _train(device):
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    t, e, h, vocab = 64, 64, 4, 16
    layer = bsa.nn.SparseAttention(e, h, pattern="fixed", block=16, ctx=32, num_verts=2).to(device)
    emb = torch.nn.Embedding(vocab, e).to(device)
    pos = torch.nn.Parameter(0.5 * torch.randn(t, e, device=device))  # where "previous" is
    head = torch.nn.Linear(e, vocab).to(device)
    params = list(layer.parameters()) + list(emb.parameters()) + list(head.parameters()) + [pos]
    opt = torch.optim.Adam(params, lr=1e-2)
    # task: predict the previous token (needs attention to the left neighbour)
    losses = []
    for step in range(60):
        x = torch.randint(0, vocab, (8, t), device=device)
        y = torch.roll(x, 1, dims=1)
        h = emb(x) + pos
        logits = head(layer(h) + h)
        loss = F.cross_entropy(logits[:, 1:].reshape(-1, vocab), y[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"  loss {first:.3f} -> {last:.3f}")
    assert last < 0.7 * first, f"loss did not decrease enough: {first:.3f} -> {last:.3f}"
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_cpu_module_training():
    need("cpu")
    _train("cpu")


def test_cuda_module_training():
    need("cuda")
    _train("cuda")


def test_errors():
    need("cpu")
    lay = bsa.Layout.preset("local", seq=64, block=16, ctx=16)
    q = torch.randn(1, 2, 64, 16)
    try:
        bsa.attention(q[:, :, :32], q[:, :, :32], q[:, :, :32], lay)
        raise AssertionError("no error")
    except bsa.BsaError as e:
        assert e.status_name == "BSA_ERROR_SHAPE_MISMATCH" and "queries" in e.detail
    for bad, exc in ((q.double(), TypeError), (q.half(), TypeError)):
        try:
            bsa.attention(bad, q, q, lay)
            raise AssertionError("no error")
        except exc:
            pass
    if torch.cuda.is_available():
        try:
            bsa.attention(q, q.cuda(), q, lay)
            raise AssertionError("no error")
        except ValueError as e:
            assert "device" in str(e)


def _check_features(device, dtype):
    """GQA (4 query heads over 2 kv heads), a value dim of its own, packed
    sequences with key lengths, through autograd; the oracle runs SDPA in
    float64 per sequence with the kv heads repeated."""
    g = gen(device)
    lay, mask_all = preset_and_mask(device, "local", seq=128, block=32, ctx=48)
    mask_all = mask_all[0]
    h, hkv, d, dv = 4, 2, 64, 32
    lens = [128, 7, 70, 0, 33]
    offs = [0]
    for n in lens:
        offs.append(offs[-1] + n)
    cu = torch.tensor(offs, dtype=torch.int32)
    kl = torch.tensor([100, 7, 3, 0, 40], dtype=torch.int32)
    tot = int(cu[-1])
    q, do = randn(g, (1, h, tot, d), dtype, device), randn(g, (1, h, tot, dv), dtype, device)
    k, v = randn(g, (1, hkv, tot, d), dtype, device), randn(g, (1, hkv, tot, dv), dtype, device)
    qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
    # offsets and lengths go where the tensors are (the binding moves host ones)
    o = bsa.attention(
        qq, kk, vv, lay, cu_seqlens_q=cu.to(device), cu_seqlens_k=cu, key_lengths=kl
    )
    assert o.shape == (1, h, tot, dv)
    o.backward(do)
    q64, k64, v64 = (x.double().requires_grad_() for x in (q, k, v))
    outs = []
    for i in range(len(lens)):
        a, b = int(cu[i]), int(cu[i + 1])
        if a == b:
            continue
        m = mask_all[: b - a, : b - a].clone()
        m[:, int(kl[i]) :] = False
        qs = q64[:, :, a:b]
        ks, vs = (x[:, :, a:b].repeat_interleave(h // hkv, dim=1) for x in (k64, v64))
        # a row with no visible key: 0 (SDPA would give NaN)
        live = m.any(dim=1)
        os_ = sdpa64(qs, ks, vs, m | ~live[:, None], d**-0.5) * live[None, None, :, None]
        outs.append(os_)
    want = torch.cat(outs, dim=2)
    want.backward(do.double())
    t = tol(dtype, device)
    errs = [rel_err(o, want)] + [
        rel_err(a.grad, b.grad) for a, b in zip((qq, kk, vv), (q64, k64, v64))
    ]
    assert errs[0] < t and max(errs[1:]) < 4 * t, f"{dtype} {device}: o, dq, dk, dv {errs}"


def test_cpu_features():
    need("cpu")
    _check_features("cpu", torch.float32)


def test_cuda_features():
    need("cuda")
    for dt in (torch.float16, torch.bfloat16):
        _check_features("cuda", dt)


def main():
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    passed = failed = skipped = 0
    for name, fn in tests:
        try:
            fn()
            print(f"PASS {name}")
            passed += 1
        except SKIP as e:
            print(f"SKIP {name}: {e}")
            skipped += 1
        except Exception:  # noqa: BLE001 - report and go on
            print(f"FAIL {name}")
            traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
