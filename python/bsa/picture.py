"""Pictures of layouts: a dependency-free PNG writer and a matplotlib helper."""

import struct
import zlib

import numpy as np

KEPT = np.array([31, 78, 140], dtype=np.float64)  # dark blue
EMPTY = np.array([255, 255, 255], dtype=np.float64)
GRID = np.array([205, 205, 205], dtype=np.uint8)


def png_bytes(rgb):
    """Encodes an [h, w, 3] uint8 array as PNG (8-bit RGB, no interlace)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, c = rgb.shape
    if c != 3:
        raise ValueError(f"expected [h, w, 3] RGB, got shape {rgb.shape}")
    raw = np.empty((h, 1 + 3 * w), dtype=np.uint8)
    raw[:, 0] = 0  # filter type None on every scanline
    raw[:, 1:] = rgb.reshape(h, 3 * w)

    def chunk(tag, data):
        body = tag + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def _coverage(mask, max_pixels):
    """Fraction of kept elements per pixel, with at most max_pixels per side,
    and the integer element->pixel factor (>= 1 means upscaled)."""
    n_q, n_k = mask.shape
    down = max(1, -(-max(n_q, n_k) // max_pixels))  # ceil
    if down > 1:
        pq, pk = -(-n_q // down), -(-n_k // down)
        padded = np.zeros((pq * down, pk * down), dtype=np.float64)
        padded[:n_q, :n_k] = mask
        return padded.reshape(pq, down, pk, down).mean(axis=(1, 3)), 1.0 / down
    up = max(1, min(max_pixels, 512) // max(n_q, n_k))
    cov = mask.astype(np.float64)
    if up > 1:
        cov = np.repeat(np.repeat(cov, up, axis=0), up, axis=1)
    return cov, float(up)


def layout_rgb(layout, head=0, max_pixels=1024, grid=True):
    """[h, w, 3] uint8 picture of one head's element mask (natural time order)."""
    mask = layout.element_mask(head)
    cov, factor = _coverage(mask, max_pixels)
    rgb = (EMPTY + (KEPT - EMPTY) * cov[..., None]).round().astype(np.uint8)
    # Block grid lines where blocks are at least 4 pixels wide; the strided
    # pattern's blocks live in permuted time, so its natural picture has none.
    step = layout.block * factor
    if grid and step >= 4 and not layout.info.stride_permutation:
        s = int(round(step))
        lines = np.arange(s, rgb.shape[0], s)
        light = cov[lines, :] == 0
        rgb[lines[:, None].repeat(rgb.shape[1], 1)[light], np.nonzero(light)[1]] = GRID
        lines = np.arange(s, rgb.shape[1], s)
        light = cov[:, lines] == 0
        rows, cols = np.nonzero(light)
        rgb[rows, lines[cols]] = GRID
    return rgb


def layout_png(layout, head=0, max_pixels=1024, grid=True):
    return png_bytes(layout_rgb(layout, head=head, max_pixels=max_pixels, grid=grid))


def plot_layout(layout, ax=None, head=0, title=None):
    """imshow of one head's mask on a matplotlib axes (created if None)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("bsa_layout", [EMPTY / 255, KEPT / 255])
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    mask = layout.element_mask(head)
    cov, _ = _coverage(mask, 1024)
    ax.imshow(
        cov,
        cmap=cmap,
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(0, mask.shape[1], mask.shape[0], 0),
    )
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    i = layout.info
    if title is None:
        d = layout.description
        name = d.get("pattern", d["kind"])
        title = (
            f"{name}: {i.seq_q}x{i.seq_k}, block {i.block}, head {head}: "
            f"{i.kept_elements / i.heads / (i.seq_q * i.seq_k):.1%} of elements"
        )
    ax.set_title(title, fontsize=9)
    return ax
