"""Block-sparse layouts: the seed's patterns, dense block matrices and mask callbacks."""

import ctypes

try:
    import numpy as np
except ImportError:  # presets and torch tensors work without numpy
    np = None

from . import _core, _lib
from ._lib import BsaError, call


class LayoutInfo:
    """Counts of a compiled layout (bsa_layout_info)."""

    __slots__ = [name for name, _ in _lib.LayoutInfo._fields_]

    def __init__(self, c_info):
        for name in self.__slots__:
            setattr(self, name, getattr(c_info, name))

    @property
    def block_density(self):
        """Kept blocks over all blocks of the (q_blocks x k_blocks) grid, per layout head."""
        return self.blocks_total / float(self.heads * self.q_blocks * self.k_blocks)

    @property
    def element_density(self):
        """Kept (q, k) pairs over all pairs (seq_q x seq_k), per layout head."""
        return self.kept_elements / float(self.heads * self.seq_q * self.seq_k)

    @property
    def density(self):
        """Deprecated: the block density; say block_density or element_density."""
        import warnings

        warnings.warn(
            "LayoutInfo.density is ambiguous and deprecated: use block_density (kept blocks / "
            "all) or element_density (kept (q, k) pairs / all)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.block_density

    def __repr__(self):
        fields = ", ".join(f"{n}={getattr(self, n)}" for n in self.__slots__)
        return f"LayoutInfo({fields})"


def _predicates(causal, window, prefix):
    flags = _lib.PRED_CAUSAL if causal else 0
    if window is not None:
        flags |= _lib.PRED_WINDOW
    if prefix is not None:
        flags |= _lib.PRED_PREFIX
    return flags, int(window or 0), int(prefix or 0)


def _need_numpy(what):
    if np is None:
        raise ImportError(f"{what} needs numpy (pip install numpy)")


def _block_matrix(blocks):
    """A 0/1 block matrix as contiguous uint8 [heads, q_blocks, k_blocks]."""
    _need_numpy("a block matrix")
    m = np.asarray(blocks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(
            f"blocks must be 2-D [q_blocks, k_blocks] or 3-D [heads, q_blocks, k_blocks], "
            f"got shape {m.shape}"
        )
    return np.ascontiguousarray(m != 0, dtype=np.uint8)


class Layout:
    """A compiled sparsity pattern, reusable across calls, layers and devices.

    Build one with :meth:`preset`, :meth:`from_blocks` or :meth:`from_callback`.
    ``layout.info`` gives its counts, :meth:`element_mask` the element mask in
    natural time order, :meth:`to_png` / :meth:`plot` a picture of it.
    """

    def __init__(self, build, description):
        # build(ctx) -> new C layout handle; validated now on the CPU, so a bad
        # argument fails here rather than at the first attention call.
        self._handles = _core.Handles(self, build)
        self.description = description
        info = _lib.LayoutInfo()
        call("bsa_layout_get_info", self._handles.layout(_core.cpu_context()), ctypes.byref(info))
        self.info = LayoutInfo(info)

    # ------------------------------------------------------------ creation

    @classmethod
    def preset(
        cls,
        pattern,
        seq,
        block,
        heads=1,
        ctx=0,
        num_verts=1,
        vertsize=1,
        causal=True,
    ):
        """One of the seed's patterns ("all", "local", "strided", "fixed").

        ``ctx`` is the local bandwidth, the strided stride or the fixed window
        (in elements); ``num_verts``/``vertsize`` are the fixed pattern's
        summary columns (vertsize in blocks).  With ``causal=False`` the
        bidirectional form.  The fixed pattern with ``num_verts > 1`` makes a
        per-head layout, so ``heads`` must be the attention's heads.
        """
        if pattern not in _lib.PATTERNS:
            raise ValueError(f"pattern must be one of {sorted(_lib.PATTERNS)}, got {pattern!r}")
        preset = _lib.Preset(
            _lib.PATTERNS[pattern],
            int(seq),
            int(block),
            int(heads),
            int(ctx or 0),
            int(num_verts),
            int(vertsize),
            0 if causal else 1,
        )

        def build(c):
            handle = ctypes.c_void_p()
            call("bsa_layout_create_preset", c, ctypes.byref(handle), ctypes.byref(preset))
            return handle.value

        desc = dict(
            kind="preset",
            pattern=pattern,
            seq=seq,
            block=block,
            heads=heads,
            ctx=ctx,
            num_verts=num_verts,
            vertsize=vertsize,
            causal=causal,
        )
        return cls(build, desc)

    @classmethod
    def from_blocks(cls, blocks, block, causal=False, window=None, prefix=None):
        """A dense 0/1 block matrix, 2-D [q_blocks, k_blocks] (shared by all heads)
        or 3-D [heads, q_blocks, k_blocks] (nonzero = kept), with optional
        element predicates: ``causal`` (k <= q), ``window`` (|q - k| < window,
        with causal 0 <= q - k < window) and ``prefix`` (the seed's
        autoregress_at_key: keys below it are always visible)."""
        m = _block_matrix(blocks)
        flags, win, pre = _predicates(causal, window, prefix)
        desc = _lib.LayoutDesc(int(block), m.shape[0], m.shape[1], m.shape[2], flags, win, pre)

        def build(c):
            handle = ctypes.c_void_p()
            call(
                "bsa_layout_create_dense",
                c,
                ctypes.byref(handle),
                ctypes.byref(desc),
                m.ctypes.data_as(ctypes.c_void_p),
            )
            return handle.value

        return cls(build, dict(kind="blocks", block=block, heads=m.shape[0]))

    @classmethod
    def from_callback(
        cls,
        callback,
        block,
        q_blocks=None,
        k_blocks=None,
        heads=1,
        blocks=None,
        causal=False,
        window=None,
        prefix=None,
    ):
        """Element masks from a Python callback with the seed's signature:

            callback(blk_shape, head_idx, qry_idx, key_idx, blk_idx) -> array[blk_shape]

        called once per kept block and layout head at creation; truthy entries
        are kept.  ``qry_idx``/``key_idx`` are block coordinates, ``blk_idx``
        the block's index within its head in row-major order.  ``blocks`` (a
        block matrix as for :meth:`from_blocks`) chooses the kept blocks;
        without it every block is a candidate (narrowed by the predicates), and
        ``q_blocks``/``k_blocks``/``heads`` give the grid.  A callback that
        raises (or returns a wrong shape) makes creation fail with a BsaError
        (BSA_ERROR_CALLBACK) whose ``__cause__`` is the original exception.
        """
        _need_numpy("from_callback")
        m = None
        if blocks is not None:
            m = _block_matrix(blocks)
            heads, q_blocks, k_blocks = m.shape
        if q_blocks is None or k_blocks is None:
            raise ValueError("from_callback needs blocks= or both q_blocks= and k_blocks=")
        flags, win, pre = _predicates(causal, window, prefix)
        desc = _lib.LayoutDesc(
            int(block), int(heads), int(q_blocks), int(k_blocks), flags, win, pre
        )
        recorded = {}  # (head, qb, kb, index) -> B*B uint8, so other contexts replay it

        def build(c):
            failure = []
            first = not recorded

            def trampoline(user, head, qb, kb, index, blk, mask):
                try:
                    key = (head, qb, kb, index)
                    if first:
                        res = np.asarray(callback((blk, blk), head, qb, kb, index))
                        if res.shape != (blk, blk):
                            raise ValueError(
                                f"mask callback returned shape {res.shape} for block "
                                f"(head {head}, q block {qb}, k block {kb}); "
                                f"expected ({blk}, {blk})"
                            )
                        bits = np.ascontiguousarray(res != 0, dtype=np.uint8).reshape(-1)
                        recorded[key] = bits
                    else:
                        bits = recorded[key]
                    ctypes.memmove(mask, bits.ctypes.data, blk * blk)
                    return 0
                except BaseException as e:  # noqa: BLE001 - must not unwind through C
                    failure.append(e)
                    return 1

            cfunc = _lib.MASK_CALLBACK(trampoline)
            handle = ctypes.c_void_p()
            status = _lib.lib.bsa_layout_create_callback(
                c,
                ctypes.byref(handle),
                ctypes.byref(desc),
                m.ctypes.data_as(ctypes.c_void_p) if m is not None else None,
                cfunc,
                None,
            )
            if status != _lib.SUCCESS:
                err = BsaError(status, _lib.last_error(), "bsa_layout_create_callback")
                if failure:
                    raise err from failure[0]
                raise err
            return handle.value

        return cls(build, dict(kind="callback", block=block, heads=heads))

    # ------------------------------------------------------------ queries

    @property
    def block(self):
        return self.info.block

    @property
    def heads(self):
        """Layout heads: 1 (shared by every attention head) or one per head."""
        return self.info.heads

    @property
    def seq_q(self):
        return self.info.seq_q

    @property
    def seq_k(self):
        return self.info.seq_k

    def _cpu(self):
        return self._handles.layout(_core.cpu_context())

    def head_blocks(self, head=0):
        """Kept blocks of one layout head."""
        n = ctypes.c_int64()
        call("bsa_layout_head_blocks", self._cpu(), int(head), ctypes.byref(n))
        return n.value

    def element_mask(self, head=0):
        """bool [seq_q, seq_k]: query q sees key k (natural time order)."""
        _need_numpy("element_mask")
        out = np.empty((self.seq_q, self.seq_k), dtype=np.uint8)
        call("bsa_layout_element_mask", self._cpu(), int(head), out.ctypes.data_as(ctypes.c_void_p))
        return out.view(np.bool_)

    def handle(self, ctx):
        """The C layout handle for a context (compiled on first use)."""
        return self._handles.layout(ctx)

    def plan(self, ctx, desc, key):
        return self._handles.plan(ctx, desc, key)

    # ------------------------------------------------------------ pictures

    def to_png(self, path=None, head=0, max_pixels=1024, grid=True):
        """A PNG picture of one head's element mask (kept = dark), with the
        block grid; returns the PNG bytes and writes them to ``path`` if given.
        Needs nothing beyond numpy."""
        from . import picture

        data = picture.layout_png(self, head=head, max_pixels=max_pixels, grid=grid)
        if path is not None:
            with open(path, "wb") as f:
                f.write(data)
        return data

    def plot(self, ax=None, head=0, title=None):
        """Draws one head's element mask with matplotlib; returns the axes."""
        from . import picture

        return picture.plot_layout(self, ax=ax, head=head, title=title)

    def __repr__(self):
        d = ", ".join(f"{k}={v!r}" for k, v in self.description.items() if k != "kind")
        i = self.info
        return (
            f"<bsa.Layout {self.description['kind']}({d}): {i.seq_q}x{i.seq_k}, "
            f"{i.blocks_total} blocks, block density {i.block_density:.3f}, "
            f"element density {i.element_density:.3f}>"
        )
