"""Library errors arrive as BsaError carrying the status and the detail message."""

import numpy as np
import pytest

import bsa
from bsa import _lib


def _raises(status, *words):
    """Context manager: a BsaError of that status whose detail names words."""

    class _Check:
        def __enter__(self):
            self.cm = pytest.raises(bsa.BsaError)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.cm.__exit__(*exc)
            err = self.info.value
            assert err.status_name == status, err
            assert err.status == _lib.STATUS_NAMES.index(status)
            for w in words:
                assert w in err.detail, (w, err.detail)
            assert status in str(err) and err.detail in str(err)
            return handled

    return _Check()


def test_layout_errors():
    with _raises("BSA_ERROR_UNSUPPORTED", "block", "12"):
        bsa.Layout.preset("all", seq=96, block=12)
    with _raises("BSA_ERROR_INVALID_SHAPE", "seq", "100", "16"):
        bsa.Layout.preset("all", seq=100, block=16)
    with _raises("BSA_ERROR_INVALID_ARGUMENT", "num_verts"):
        bsa.Layout.preset("fixed", seq=128, block=16, heads=3, ctx=64, num_verts=2)
    with _raises("BSA_ERROR_INVALID_SHAPE", "ctx"):
        bsa.Layout.preset("strided", seq=128, block=16, ctx=3)
    with _raises("BSA_ERROR_INVALID_ARGUMENT", "window"):
        bsa.Layout.from_blocks(np.ones((2, 2)), 8, window=0)
    with _raises("BSA_ERROR_UNSUPPORTED", "block"):
        bsa.Layout.from_blocks(np.ones((2, 2)), 24)
    with pytest.raises(ValueError, match="pattern"):
        bsa.Layout.preset("diagonal", seq=64, block=16)
    with pytest.raises(ValueError, match="blocks must be"):
        bsa.Layout.from_blocks(np.ones(4), 8)
    lay = bsa.Layout.preset("all", seq=32, block=16)
    with _raises("BSA_ERROR_INVALID_ARGUMENT", "head"):
        lay.element_mask(1)


def test_callback_errors():
    class Boom(Exception):
        pass

    def raising(shape, h, qb, kb, i):
        if (qb, kb) == (1, 0):
            raise Boom("no")
        return np.ones(shape)

    with _raises("BSA_ERROR_CALLBACK") as info:
        bsa.Layout.from_callback(raising, 8, q_blocks=2, k_blocks=2)
    assert isinstance(info.value.__cause__, Boom)

    with _raises("BSA_ERROR_CALLBACK") as info:
        bsa.Layout.from_callback(lambda s, h, q, k, i: np.ones((4, 4)), 8, q_blocks=2, k_blocks=2)
    assert isinstance(info.value.__cause__, ValueError)
    assert "(8, 8)" in str(info.value.__cause__)


def test_attention_errors(rng):
    lay = bsa.Layout.preset("local", seq=64, block=16, ctx=16)
    q = rng.standard_normal((1, 2, 64, 16)).astype(np.float32)
    with _raises("BSA_ERROR_SHAPE_MISMATCH", "queries", "48"):
        bsa.attention(q[:, :, :48], q[:, :, :48], q[:, :, :48], lay)
    # k/v heads must divide q heads (1 of 2 is valid multi-query attention)
    k3 = np.concatenate([q, q[:, :1]], axis=1)
    with _raises("BSA_ERROR_SHAPE_MISMATCH", "heads"):
        bsa.attention(q, k3, k3, lay)
    with _raises("BSA_ERROR_UNSUPPORTED", "multiple of 8", "12"):
        x = q[..., :12].copy()
        bsa.attention(x, x, x, lay)
    per_head = bsa.Layout.preset("fixed", seq=64, block=16, heads=4, ctx=32, num_verts=2)
    with _raises("BSA_ERROR_SHAPE_MISMATCH", "4 heads"):
        bsa.attention(q, q, q, per_head)
    with pytest.raises(TypeError, match="float32"):
        bsa.attention(q.astype(np.float64), q, q, lay)
    with pytest.raises(TypeError, match="dtype"):
        bsa.attention(q, q.astype(np.float16), q, lay)
    with pytest.raises(ValueError, match="heads="):
        bsa.attention(q[0], q[0], q[0], lay)  # 3-D without heads
    with pytest.raises(ValueError, match="scale"):
        bsa.attention(q, q, q, lay, scale=0.0)
    o, lse = bsa.forward(q, q, q, lay)
    with pytest.raises(ValueError, match="lse"):
        bsa.backward(q, q, q, o, lse[:, :1], o, lay)


def test_status_strings():
    assert _lib.status_name(0) == "BSA_SUCCESS"
    assert _lib.status_name(999) == "BSA_ERROR_UNKNOWN_STATUS"
    for i, name in enumerate(_lib.STATUS_NAMES):
        assert _lib.status_name(i) == name  # the mirror of bsa.h is in step
    assert bsa.library_version() == (0, 1, 0)
    assert "cpu" in bsa.backends()
