"""Layout pictures: the PNG decodes to the layout's element mask."""

import struct
import zlib

import numpy as np
import pytest

import bsa
from bsa import picture


def decode_png(data):
    """Minimal decoder for the 8-bit RGB, filter-0 PNGs that picture.py writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + n
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + 3 * w)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(h, w, 3)


def test_png_matches_mask(tmp_path):
    lay = bsa.Layout.preset("fixed", seq=64, block=8, heads=2, ctx=32, num_verts=2)
    path = tmp_path / "fixed.png"
    data = lay.to_png(str(path), head=1, grid=False)
    assert path.read_bytes() == data
    img = decode_png(data)
    mask = lay.element_mask(1)
    up = img.shape[0] // 64
    assert img.shape == (64 * up, 64 * up, 3) and up >= 2
    kept = np.all(img[::up, ::up] == picture.KEPT.astype(np.uint8), axis=-1)
    white = np.all(img[::up, ::up] == 255, axis=-1)
    np.testing.assert_array_equal(kept, mask)
    np.testing.assert_array_equal(white, ~mask)


def test_png_downsampled_and_grid():
    lay = bsa.Layout.preset("local", seq=2048, block=64, ctx=128)
    img = decode_png(lay.to_png(max_pixels=256))
    assert img.shape == (256, 256, 3)
    # the diagonal is dark, the far corner white, grid lines grey
    assert np.all(img[128, 120] == picture.KEPT.astype(np.uint8)) and np.all(img[0, 255] == 255)
    assert np.all(img[255, 8] == picture.GRID)  # a block boundary at 8 px, off the band


def test_matplotlib_plot(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lay = bsa.Layout.preset("strided", seq=128, block=8, ctx=16)
    ax = lay.plot()
    assert "strided" in ax.get_title()
    ax.figure.savefig(tmp_path / "p.png")
    plt.close(ax.figure)
    assert (tmp_path / "p.png").stat().st_size > 1000
