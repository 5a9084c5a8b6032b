"""LayoutInfo's densities, named as such: block density (kept blocks / all)
and element density (kept (q, k) pairs / all), from closed forms."""

import pytest

import bsa


@pytest.mark.parametrize("seq,block", [(256, 32), (512, 16), (128, 8)])
def test_causal_all_densities(seq, block):
    lay = bsa.Layout.preset("all", seq=seq, block=block)
    n = seq // block
    assert lay.info.block_density == pytest.approx(n * (n + 1) / 2 / n**2, abs=0)
    assert lay.info.element_density == pytest.approx(seq * (seq + 1) / 2 / seq**2, abs=0)
    r = repr(lay)
    assert f"block density {n * (n + 1) / 2 / n**2:.3f}" in r
    assert f"element density {seq * (seq + 1) / 2 / seq**2:.3f}" in r
    assert " density" not in r.replace("block density", "").replace("element density", "")


def test_local_densities_differ():
    # local L=24, causal: query q sees keys q-23..q; a block is kept when it
    # holds a kept pair (enumerated here, not taken from the library)
    seq, block, L = 128, 8, 24
    lay = bsa.Layout.preset("local", seq=seq, block=block, ctx=L)
    pairs = [(q, k) for q in range(seq) for k in range(seq) if 0 <= q - k < L]
    blocks = {(q // block, k // block) for q, k in pairs}
    n = seq // block
    assert lay.info.element_density == pytest.approx(len(pairs) / seq**2, abs=0)
    assert lay.info.block_density == pytest.approx(len(blocks) / n**2, abs=0)
    assert lay.info.element_density < lay.info.block_density


def test_density_is_deprecated():
    lay = bsa.Layout.preset("all", seq=64, block=8)
    with pytest.warns(DeprecationWarning, match="block_density"):
        assert lay.info.density == lay.info.block_density
