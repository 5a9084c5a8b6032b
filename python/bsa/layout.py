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


# Layout.preset's fields beyond the seed: which patterns use each one
_PATTERN_FIELDS = {
    "dilation": ("dilated",),
    "global_tokens": ("longformer", "bigbird"),
    "random_blocks": ("bigbird",),
    "seed": ("bigbird",),
    "doc_lengths": ("document",),
}


def _int(name, value, minimum):
    from .functional import check_int  # functional imports this module

    return check_int(name, value, minimum)


def _doc_lengths(value):
    """A 1-D sequence of ints (list, tuple, numpy array, torch tensor)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(
            f"doc_lengths must be a sequence of ints (one length per document), got "
            f"{type(value).__name__} {value!r}"
        )
    if hasattr(value, "tolist"):  # numpy / torch: floats and bools refused below
        dtype = str(getattr(value, "dtype", ""))
        if "float" in dtype or "bool" in dtype or "complex" in dtype:
            raise TypeError(f"doc_lengths must hold integers, got dtype {dtype}")
        if len(getattr(value, "shape", (0,))) != 1:
            raise ValueError(f"doc_lengths must be 1-D, got shape {tuple(value.shape)}")
        value = value.tolist()
    out = []
    for i, x in enumerate(value):
        try:
            out.append(_int(f"doc_lengths[{i}]", x, 1))
        except TypeError:
            raise TypeError(
                f"doc_lengths must hold ints, got {type(x).__name__} {x!r} at index {i}"
            ) from None
        if out[-1] > 2**31 - 1:
            raise ValueError(f"doc_lengths[{i}] = {out[-1]} exceeds int32")
    if not out:
        raise ValueError("doc_lengths is empty: the document pattern needs one length per document")
    return out


def _preset_fields(
    pattern, seq, block, heads, ctx, num_verts, vertsize, causal,
    dilation, global_tokens, random_blocks, seed, doc_lengths,
):  # fmt: skip
    """Layout.preset's arguments checked for type (and for belonging to the
    pattern); returns them as a dict of plain ints / bool / list (None where
    not given).  Shared with bsa.nn.SparseAttention, which checks them when
    it is made, long before its first layout is built."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, got {type(pattern).__name__} {pattern!r}")
    if pattern not in _lib.PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(_lib.PATTERNS)}; got {pattern!r}")
    if not isinstance(causal, bool) and not (np is not None and isinstance(causal, np.bool_)):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__} {causal!r}")
    f = dict(
        pattern=pattern,
        seq=_int("seq", seq, 1),
        block=_int("block", block, 1),
        heads=_int("heads", heads, 1),
        ctx=_int("ctx", 0 if ctx is None else ctx, 0),
        num_verts=_int("num_verts", num_verts, 1),
        vertsize=_int("vertsize", vertsize, 1),
        causal=bool(causal),
        dilation=None if dilation is None else _int("dilation", dilation, 1),
        global_tokens=None if global_tokens is None else _int("global_tokens", global_tokens, 0),
        random_blocks=None if random_blocks is None else _int("random_blocks", random_blocks, 0),
        seed=None if seed is None else _int("seed", seed, 0),
        doc_lengths=None if doc_lengths is None else _doc_lengths(doc_lengths),
    )
    for name in ("seq", "block", "heads", "ctx", "num_verts", "vertsize", "dilation",
                 "global_tokens", "random_blocks"):  # fmt: skip
        if f[name] is not None and f[name] > 2**31 - 1:
            raise ValueError(f"{name} = {f[name]} exceeds the library's int (2^31 - 1)")
    if f["seed"] is not None and f["seed"] > 2**64 - 1:
        raise ValueError(f"seed = {f['seed']} exceeds 64 bits")
    for name, patterns in _PATTERN_FIELDS.items():
        if f[name] is not None and pattern not in patterns:
            raise ValueError(
                f"{name} belongs to the {' and '.join(patterns)} pattern"
                f"{'s' if len(patterns) > 1 else ''}, not to {pattern!r}"
            )
    if pattern != "fixed" and (f["num_verts"] != 1 or f["vertsize"] != 1):
        raise ValueError(f"num_verts and vertsize belong to the fixed pattern, not to {pattern!r}")
    if pattern == "document" and f["doc_lengths"] is None:
        raise ValueError("the document pattern needs doc_lengths (lengths >= 1 summing to seq)")
    return f


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
        *,
        dilation=None,
        global_tokens=None,
        random_blocks=None,
        seed=None,
        doc_lengths=None,
    ):
        """A preset pattern (bsa.h's bsa_pattern), by the CLI's names:

        * the seed's "all", "local", "strided", "fixed": ``ctx`` is the local
          bandwidth, the strided stride or the fixed window (in elements);
          ``num_verts``/``vertsize`` are the fixed pattern's summary columns
          (vertsize in blocks); the fixed pattern with ``num_verts > 1`` makes
          a per-head layout, so ``heads`` must be the attention's heads;
        * "sliding" (|q-k| <= ctx), "dilated" (|q-k| <= ctx * dilation and
          dilation divides q-k), "longformer" (the sliding window, or
          q < global_tokens, or k < global_tokens), "bigbird" (longformer's,
          or one of ``random_blocks`` random key blocks of each query block
          row, drawn from ``seed``: the same seed gives the same layout) and
          "document" (q and k in the same document; ``doc_lengths``, lengths
          >= 1 summing to ``seq``).

        With ``causal=False`` the bidirectional form (the causal one keeps the
        same elements with k <= q).  ``ctx`` is ignored by "all" and
        "document"; the keyword-only fields belong to the patterns named above
        and raise ValueError with any other.  Types are checked here (an int
        is an int: no bool, float or str); value ranges by the library, whose
        message the BsaError carries.
        """
        f = _preset_fields(
            pattern, seq, block, heads, ctx, num_verts, vertsize, causal,
            dilation, global_tokens, random_blocks, seed, doc_lengths,
        )  # fmt: skip
        docs = None
        if f["doc_lengths"] is not None:
            docs = (ctypes.c_int32 * len(f["doc_lengths"]))(*f["doc_lengths"])
        preset = _lib.Preset(
            _lib.PATTERNS[pattern],
            f["seq"],
            f["block"],
            f["heads"],
            f["ctx"],
            f["num_verts"],
            f["vertsize"],
            0 if f["causal"] else 1,
            f["dilation"] or 0,
            f["global_tokens"] or 0,
            f["random_blocks"] or 0,
            f["seed"] or 0,
            ctypes.cast(docs, ctypes.c_void_p) if docs is not None else None,
            len(docs) if docs is not None else 0,
        )

        def build(c):
            # docs stays alive with this closure: a context compiled later
            # (a GPU) reads the lengths again
            handle = ctypes.c_void_p()
            call("bsa_layout_create_preset", c, ctypes.byref(handle), ctypes.byref(preset))
            return handle.value

        desc = dict(kind="preset")
        desc.update((k, v) for k, v in f.items() if v is not None)
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

    @classmethod
    def from_block_mask(cls, block_mask, heads=None, batch=None):
        """A FlexAttention ``BlockMask`` (same block size for queries and keys)
        as the layout that masks exactly as it does: full blocks full, partial
        blocks with ``mask_mod`` evaluated on them, so a Flex user switches in
        one line.  What a layout cannot say raises (different block sizes,
        lengths not multiples of the block, masks that differ across the
        batch); ``heads`` / ``batch`` (the attention's) are needed only when
        ``mask_mod`` reads h / b of a mask broadcast over them.  Needs torch
        with flex_attention; see bsa/flex.py."""
        from . import flex

        return flex.layout_from_block_mask(block_mask, heads=heads, batch=batch)

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
