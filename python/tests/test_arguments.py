"""Arguments the binding checks itself: each bad one raises a Python
exception (TypeError / ValueError) that names it, before the C library is
called at all (the library would read a short key_lengths array past its
end, take a float head count as a truncated int, ...)."""

import numpy as np
import pytest

import bsa
from bsa import _lib, functional


class _Recorder:
    """Stands in for the loaded library: records every function the binding
    looks up on it, then hands out the real one."""

    def __init__(self, real):
        self._real = real
        self.calls = []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self._real, name)


@pytest.fixture
def library_calls(monkeypatch):
    """A recorder of the library functions called while the test runs."""
    rec = _Recorder(_lib.lib)
    monkeypatch.setattr(_lib, "lib", rec)
    return rec


@pytest.fixture
def problem(rng):
    lay = bsa.Layout.preset("all", seq=32, block=16, causal=False)
    q = rng.standard_normal((2, 2, 32, 16)).astype(np.float32)
    return lay, q


def _refused(rec, exc, *words):
    """pytest.raises(exc) whose message holds every word, and no library
    call made meanwhile (releases of garbage-collected layouts and plans
    aside)."""

    class _Check:
        def __enter__(self):
            self.start = len(rec.calls)
            self.cm = pytest.raises(exc)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *a):
            handled = self.cm.__exit__(*a)
            for w in words:
                assert w in str(self.info.value), (w, str(self.info.value))
            made = [c for c in rec.calls[self.start :] if not c.endswith("_destroy")]
            assert made == [], f"the library was called: {made}"
            return handled

    return _Check()


def _all_entry_points(lay, q, **kw):
    """forward, attention and backward with the same arguments."""
    yield lambda: bsa.forward(q, q, q, lay, **kw)
    yield lambda: bsa.attention(q, q, q, lay, **kw)
    o = np.zeros_like(q)
    lse = np.zeros(q.shape[:3], np.float32)
    yield lambda: bsa.backward(q, q, q, o, lse, o, lay, **kw)


# ------------------------------------------------------------ key_lengths


@pytest.mark.parametrize(
    "key_lengths, words",
    [
        ([32], ("key_lengths has 1 entries", "batch = 2")),  # shorter: read past its end
        ([32, 32, 32], ("key_lengths has 3 entries", "batch = 2")),
        (np.array([], dtype=np.int32), ("key_lengths has 0 entries",)),
        ([], ("key_lengths has 0 entries",)),
    ],
)
def test_key_lengths_count(problem, library_calls, key_lengths, words):
    lay, q = problem
    for call in _all_entry_points(lay, q, key_lengths=key_lengths):
        with _refused(library_calls, ValueError, *words):
            call()


@pytest.mark.parametrize(
    "key_lengths, exc, words",
    [
        (np.array([32.0, 5.0]), TypeError, ("key_lengths", "integers", "float64")),
        ([32.0, 5.0], TypeError, ("key_lengths", "integers")),
        (np.array([True, False]), TypeError, ("key_lengths", "integers", "bool")),
        (["32", "5"], TypeError, ("key_lengths", "integers")),
        ([[32], [5, 6]], TypeError, ("key_lengths", "integers")),  # ragged
        (np.array([[32, 5]]), ValueError, ("key_lengths", "1-D")),
        (7, ValueError, ("key_lengths", "1-D")),
        (np.array([2**31, 5]), ValueError, ("key_lengths", "int32")),
    ],
)
def test_key_lengths_dtype(problem, library_calls, key_lengths, exc, words):
    lay, q = problem
    for call in _all_entry_points(lay, q, key_lengths=key_lengths):
        with _refused(library_calls, exc, *words):
            call()


def test_key_lengths_packed(rng, library_calls):
    """With packed sequences key_lengths has one entry per sequence."""
    lay = bsa.Layout.preset("all", seq=32, block=16, causal=False)
    q = rng.standard_normal((1, 2, 48, 16)).astype(np.float32)
    cu = np.array([0, 32, 48], dtype=np.int32)
    kw = dict(cu_seqlens_q=cu, cu_seqlens_k=cu)
    for kl in ([32], [32, 16, 16]):
        for call in _all_entry_points(lay, q, key_lengths=kl, **kw):
            with _refused(library_calls, ValueError, f"key_lengths has {len(kl)}", "num_seqs = 2"):
                call()


def test_key_lengths_accepted(problem):
    """int32 and int64 arrays and lists of ints of the right length work
    (with the same result)."""
    lay, q = problem
    want = bsa.attention(q, q, q, lay, key_lengths=np.array([32, 7], np.int32))
    for kl in (np.array([32, 7], np.int64), [32, 7], (32, 7), np.array([32, 7], np.uint16)):
        np.testing.assert_array_equal(bsa.attention(q, q, q, lay, key_lengths=kl), want)


# ------------------------------------------------------------ cu_seqlens


@pytest.mark.parametrize(
    "cu_q, cu_k, exc, words",
    [
        ([0, 32, 48], [0, 48], ValueError, ("cu_seqlens_q has 3", "cu_seqlens_k 2", "num_seqs + 1")),
        ([0], [0], ValueError, ("num_seqs + 1 (>= 2)",)),
        ([], [], ValueError, ("num_seqs + 1 (>= 2)",)),
        (np.array([0.0, 48.0]), [0, 48], TypeError, ("cu_seqlens_q", "integers", "float64")),
        ([0, 48], np.array([0.0, 48.0]), TypeError, ("cu_seqlens_k", "integers")),
        (np.array([[0, 48]]), [0, 48], ValueError, ("cu_seqlens_q", "1-D")),
        ([0, 48], [0, 48, None], TypeError, ("cu_seqlens_k", "integers")),
        ([0, 2**32 + 48], [0, 48], ValueError, ("cu_seqlens_q", "int32")),
    ],
)
def test_cu_seqlens(rng, library_calls, cu_q, cu_k, exc, words):
    lay = bsa.Layout.preset("all", seq=32, block=16, causal=False)
    q = rng.standard_normal((1, 2, 48, 16)).astype(np.float32)
    for call in _all_entry_points(lay, q, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k):
        with _refused(library_calls, exc, *words):
            call()


# ------------------------------------------------------------ heads


@pytest.mark.parametrize(
    "heads, exc, words",
    [
        (2.0, TypeError, ("heads must be an int", "float")),
        ("2", TypeError, ("heads must be an int", "str")),
        (np.float32(2), TypeError, ("heads must be an int",)),
        (True, TypeError, ("heads must be an int", "bool")),
        (0, ValueError, ("heads must be >= 1",)),
        (-2, ValueError, ("heads must be >= 1",)),
        (3, ValueError, ("heads=3", "2 heads")),  # 4-D q carries its own count
    ],
)
def test_heads(problem, library_calls, heads, exc, words):
    lay, q = problem
    for call in _all_entry_points(lay, q, heads=heads):
        with _refused(library_calls, exc, *words):
            call()
    with _refused(library_calls, exc, *words):
        bsa.plan_implementation(lay, q, heads=heads)


def test_heads_3d(problem, library_calls):
    """3-D tensors take their head count from heads=: a float would divide
    the last dim into float head dims."""
    lay, q = problem
    q3 = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).reshape(2, 32, 32)
    for call in _all_entry_points(lay, q3, heads=2.0):
        with _refused(library_calls, TypeError, "heads must be an int"):
            call()
    with _refused(library_calls, TypeError, "kv_heads must be an int"):
        bsa.attention(q3, q3, q3, lay, heads=2, kv_heads=1.5)
    with _refused(library_calls, ValueError, "kv_heads=2", "4-D k has 1 heads"):
        bsa.attention(q, q[:, :1], q[:, :1], lay, kv_heads=2)
    # numpy integers are integers
    o = bsa.attention(q3, q3, q3, lay, heads=np.int64(2))
    np.testing.assert_array_equal(o, bsa.attention(q3, q3, q3, lay, heads=2))


# ------------------------------------------------------------ layout


@pytest.mark.parametrize(
    "layout, name",
    [
        (None, "NoneType"),
        ("all", "str"),
        (np.ones((2, 2)), "ndarray"),
        (object(), "object"),
    ],
)
def test_layout_type(problem, library_calls, layout, name):
    _, q = problem
    for call in _all_entry_points(layout, q):
        with _refused(library_calls, TypeError, "layout must be a bsa.Layout", name):
            call()
    with _refused(library_calls, TypeError, "layout must be a bsa.Layout", name):
        bsa.plan_implementation(layout, q)
    with _refused(library_calls, TypeError, "layout must be a bsa.Layout", name):
        bsa.plan_explain(layout, q)


def test_checks_also_reach_torch(rng):
    """The torch path shares the checks (its own int32 conversion)."""
    torch = pytest.importorskip("torch")
    lay = bsa.Layout.preset("all", seq=32, block=16, causal=False)
    q = torch.randn(2, 2, 32, 16)
    with pytest.raises(ValueError, match="key_lengths has 1 entries"):
        bsa.attention(q, q, q, lay, key_lengths=torch.tensor([32]))
    with pytest.raises(TypeError, match="key_lengths must hold integers"):
        bsa.attention(q, q, q, lay, key_lengths=torch.tensor([32.0, 3.0]))
    with pytest.raises(TypeError, match="heads must be an int"):
        bsa.attention(q, q, q, lay, heads=2.0)
    with pytest.raises(TypeError, match="layout must be a bsa.Layout"):
        bsa.attention(q, q, q, "all")
    with pytest.raises(TypeError, match="heads must be an int"):
        bsa.nn.SparseAttention(64, 4.0)
    with pytest.raises(TypeError, match="layout must be a bsa.Layout"):
        bsa.nn.SparseAttention(64, 4, layout="fixed")


def test_extras_direct(problem):
    """Extras (the feature arguments' holder) checks on its own too."""
    _, q = problem
    with pytest.raises(TypeError, match="kv_heads must be an int"):
        functional.Extras(functional.NumpyOps, q, kv_heads="1")
    ex = functional.Extras(functional.NumpyOps, q, key_lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="batch = 2"):
        ex.check(2)
    ex.check(3)


# ------------------------------------------------------------ Layout.preset

_GOOD = dict(pattern="bigbird", seq=64, block=16, ctx=8, global_tokens=4, random_blocks=1, seed=3)


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(pattern=3), TypeError, ("pattern must be a str", "int")),
        (dict(pattern="sliding_window"), ValueError, ("pattern must be one of", "document")),
        (dict(seq=64.0), TypeError, ("seq must be an int", "float")),
        (dict(seq="64"), TypeError, ("seq must be an int", "str")),
        (dict(block=True), TypeError, ("block must be an int", "bool")),
        (dict(heads=np.float32(1)), TypeError, ("heads must be an int",)),
        (dict(heads=0), ValueError, ("heads must be >= 1",)),
        (dict(ctx=8.5), TypeError, ("ctx must be an int", "float")),
        (dict(ctx=-1), ValueError, ("ctx must be >= 0",)),
        (dict(causal=1), TypeError, ("causal must be a bool", "int")),
        (dict(causal="no"), TypeError, ("causal must be a bool", "str")),
        (dict(global_tokens=4.0), TypeError, ("global_tokens must be an int",)),
        (dict(global_tokens=-1), ValueError, ("global_tokens must be >= 0",)),
        (dict(random_blocks="2"), TypeError, ("random_blocks must be an int",)),
        (dict(seed=-5), ValueError, ("seed must be >= 0",)),
        (dict(seed=2**64), ValueError, ("seed", "64 bits")),
        (dict(seed=1.5), TypeError, ("seed must be an int",)),
        (dict(seq=2**31), ValueError, ("seq", "2^31 - 1")),
        (dict(dilation=2), ValueError, ("dilation belongs to the dilated pattern", "'bigbird'")),
        (dict(doc_lengths=[64]), ValueError, ("doc_lengths belongs to the document", "'bigbird'")),
        (dict(num_verts=2), ValueError, ("num_verts and vertsize belong to the fixed",)),
        (dict(pattern="sliding"), ValueError, ("global_tokens belongs to the longformer and",)),
    ],
)
def test_preset_arguments(library_calls, change, exc, words):
    with _refused(library_calls, exc, *words):
        bsa.Layout.preset(**dict(_GOOD, **change))


@pytest.mark.parametrize(
    "docs, exc, words",
    [
        (None, ValueError, ("the document pattern needs doc_lengths",)),
        ([], ValueError, ("doc_lengths is empty",)),
        ("32,32", TypeError, ("doc_lengths must be a sequence of ints", "str")),
        (64, TypeError, ("doc_lengths must be a sequence of ints", "int")),
        ([32.0, 32.0], TypeError, ("doc_lengths must hold ints", "float", "index 0")),
        ([32, True], TypeError, ("doc_lengths must hold ints", "bool", "index 1")),
        (np.array([32.0, 32.0]), TypeError, ("doc_lengths must hold integers", "float64")),
        (np.array([[32, 32]]), ValueError, ("doc_lengths must be 1-D",)),
        ([32, 0, 32], ValueError, ("doc_lengths[1] must be >= 1",)),
    ],
)
def test_preset_doc_lengths(library_calls, docs, exc, words):
    with _refused(library_calls, exc, *words):
        bsa.Layout.preset("document", seq=64, block=16, doc_lengths=docs)


def test_preset_ranges_from_the_library():
    """Values of the right type but out of range: the library's own message."""
    with pytest.raises(bsa.BsaError, match="sum to 48; they must sum to seq = 64"):
        bsa.Layout.preset("document", seq=64, block=16, doc_lengths=[16, 32])
    with pytest.raises(bsa.BsaError, match="global_tokens = 65"):
        bsa.Layout.preset("longformer", seq=64, block=16, ctx=4, global_tokens=65)
    with pytest.raises(bsa.BsaError, match="random_blocks = 2000"):
        bsa.Layout.preset("bigbird", seq=64, block=16, ctx=4, random_blocks=2000)


def test_preset_accepts_numpy_and_sequences():
    """numpy integers, numpy bools and arrays / tuples of lengths are fine,
    and the same layout comes out."""
    a = bsa.Layout.preset("document", seq=64, block=16, doc_lengths=[16, 48], causal=False)
    for docs in ((16, 48), np.array([16, 48], np.int64), np.array([16, 48], np.uint8)):
        b = bsa.Layout.preset(
            "document", seq=np.int32(64), block=np.int64(16), doc_lengths=docs, causal=np.bool_(False)
        )
        np.testing.assert_array_equal(a.element_mask(), b.element_mask())


# ------------------------------------------------------------ float64


def test_float64_refused(problem, library_calls):
    """No float64 in the C API: refused with the reason and what to do (the
    cast; finite differences instead of gradcheck), for every tensor."""
    lay, q = problem
    q64 = q.astype(np.float64)
    for args in ((q64, q, q), (q, q64, q), (q, q, q64)):
        with _refused(library_calls, TypeError, "is float64", "float32", "astype", "gradcheck"):
            bsa.attention(*args, lay)
    o = np.zeros_like(q)
    lse = np.zeros(q.shape[:3], np.float32)
    with _refused(library_calls, TypeError, "dout is float64"):
        bsa.backward(q, q, q, o, lse, o.astype(np.float64), lay)


def test_float64_refused_torch(rng):
    torch = pytest.importorskip("torch")
    lay = bsa.Layout.preset("all", seq=32, block=16, causal=False)
    q = torch.randn(1, 2, 32, 16, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="q is float64.*float32.*gradcheck"):
        bsa.attention(q, q, q, lay)
    m = bsa.nn.SparseAttention(32, 2, pattern="local", block=16, ctx=16).double()
    with pytest.raises(TypeError, match="float64"):
        m(torch.randn(1, 32, 32, dtype=torch.float64))
