"""attention(): forward and backward on numpy arrays and torch tensors.

Tensors reach the C library as pointers plus dims/strides in the logical
order [batch, heads, time, dim], so the accepted memory layouts cost no copy:

* 4-D ``[batch, heads, time, dim]`` (``order="bhtd"``, the default) or
  ``[batch, time, heads, dim]`` (``order="bthd"``), any positive strides with
  a unit stride on dim;
* 3-D ``[batch, time, heads*dim]`` (the seed's layout; ``heads=`` given or
  taken from a per-head layout), e.g. q/k/v slices of one fused qkv tensor.

Anything else (negative or zero strides, a non-unit dim stride) is copied
to a contiguous array first.

Dtypes: float32, float16 and bfloat16 (numpy's through ml_dtypes), the C
API's; float64 raises TypeError saying why (check_dtype).

Beyond the seed (``bsa.h``): k and v may have fewer heads than q
(grouped-query / multi-query attention; 3-D k/v take ``kv_heads=``), v a
head dim of its own (o gets v's), ``key_lengths`` masks keys at or past
each batch entry's length, and ``cu_seqlens_q``/``cu_seqlens_k`` (both,
``num_seqs + 1`` offsets) pack variable-length sequences into batch 1.
The index arrays are int32 on the tensors' device (converted if needed).
"""

import ctypes
import operator

try:
    import numpy as np
except ImportError:  # torch-only use needs no numpy
    np = None

from . import _core, _lib
from ._lib import call
from .layout import Layout

_DTYPE_NAMES = {_lib.DTYPE_F32: "float32", _lib.DTYPE_F16: "float16", _lib.DTYPE_BF16: "bfloat16"}


# Tests set this (bsa.attention.set_poison(True)) so that every output and
# gradient buffer the binding allocates starts as NaN: an element the library
# failed to write then shows up instead of hiding behind stale memory.
POISON = False


def set_poison(flag):
    global POISON
    POISON = bool(flag)


def _poisoned(x):
    if POISON:
        x[...] = float("nan")
    return x


def _is_torch(x):
    return type(x).__module__.startswith("torch")


# ------------------------------------------------------------------ views


def logical(shape, strides, order, heads):
    """(dims, strides) in [batch, heads, time, dim] order for a user tensor,
    or None when the shape/strides cannot be described without a copy."""
    if len(shape) == 4:
        if order == "bhtd":
            return tuple(shape), tuple(strides)
        if order == "bthd":
            p = (0, 2, 1, 3)
            return tuple(shape[i] for i in p), tuple(strides[i] for i in p)
        raise ValueError(f"order must be 'bhtd' or 'bthd', got {order!r}")
    if len(shape) == 3:
        b, t, e = shape
        if not heads or e % heads:
            raise ValueError(
                f"a 3-D [batch, time, heads*dim] tensor of last dim {e} needs heads= dividing it "
                f"(got heads={heads})"
            )
        d = e // heads
        if strides[2] != 1 and heads > 1:
            return None
        return (b, heads, t, d), (strides[0], d * strides[2], strides[1], strides[2])
    raise ValueError(
        f"tensors must be 4-D [batch, heads, time, dim] / [batch, time, heads, dim] or 3-D "
        f"[batch, time, heads*dim]; got {len(shape)}-D of shape {tuple(shape)}"
    )


def supported(dims, strides):
    """The library's stride rule: unit dim stride, positive strides elsewhere."""
    if dims[3] > 1 and strides[3] != 1:
        return False
    return all(d == 1 or s >= 1 for d, s in zip(dims[:3], strides[:3]))


def tensor_desc(dims, strides):
    d = _lib.TensorDesc()
    for i in range(4):
        d.dims[i] = int(dims[i])
        d.strides[i] = int(strides[i]) if dims[i] > 1 or i == 3 else 0
    if d.dims[3] == 1:
        d.strides[3] = 1
    return d


class NumpyOps:
    """How the generic code below reads and makes numpy arrays."""

    @staticmethod
    def dtype_code(x):
        name = x.dtype.name
        if name == "float32":
            return _lib.DTYPE_F32
        if name == "float16":
            return _lib.DTYPE_F16
        if name == "bfloat16":  # ml_dtypes
            return _lib.DTYPE_BF16
        raise TypeError(
            f"bsa supports float32, float16 and bfloat16 tensors, got {x.dtype} "
            f"(cast with .astype(np.float32))"
        )

    @staticmethod
    def dtype_name(x):
        return x.dtype.name

    @staticmethod
    def strides(x):
        if any(s % x.itemsize for s in x.strides):
            return None
        return tuple(s // x.itemsize for s in x.strides)

    @staticmethod
    def contiguous(x):
        return np.ascontiguousarray(x)

    @staticmethod
    def is_contiguous(x):
        return x.flags.c_contiguous

    @staticmethod
    def ptr(x):
        return x.ctypes.data

    @staticmethod
    def empty(shape, like, dtype=None):
        return _poisoned(np.empty(shape, dtype=dtype or like.dtype))

    @staticmethod
    def empty_f32(shape, like):
        return _poisoned(np.empty(shape, dtype=np.float32))

    @staticmethod
    def empty_strided(like):
        """An array of like's shape and (element) strides: the library writes
        gradients with the strides of their tensor."""
        shape, st = like.shape, like.strides
        span = 1 + sum((n - 1) * s for n, s in zip(shape, st) if n > 1) // like.itemsize
        # For strides with gaps (a slice of a fused qkv tensor) the span is
        # larger than the size: the gaps are allocated, never written.
        buf = _poisoned(np.empty(max(span, 1), dtype=like.dtype))
        return np.lib.stride_tricks.as_strided(buf, shape=shape, strides=st)

    @staticmethod
    def int32_array(x, like, name):
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as e:  # ragged lists and such
            raise TypeError(f"{name} must be a 1-D array or list of integers: {e}") from None
        if a.size == 0 and not isinstance(x, np.ndarray):
            a = a.astype(np.int32)  # [] is float64 to numpy; its length is checked later
        check_index_array(name, a.dtype.kind in "iu", a.dtype, a.shape)
        if a.size and (int(a.min()) < -(2**31) or int(a.max()) > 2**31 - 1):
            raise ValueError(
                f"{name} holds values outside int32 ({int(a.min())}..{int(a.max())}); "
                f"the library takes int32"
            )
        return np.ascontiguousarray(a, dtype=np.int32)

    @staticmethod
    def copy_into(dst, src):
        np.copyto(dst, src)
        return dst

    @staticmethod
    def context(x):
        return _core.cpu_context()

    @staticmethod
    def device(x):
        return "cpu"

    @staticmethod
    def workspace(nbytes, like):
        return None, 0  # the CPU backend allocates its own when given none

    @staticmethod
    def stream(x):
        return None


class Prepared:
    """One tensor's C view: the (possibly copied) tensor, dims and strides."""

    __slots__ = ("x", "dims", "strides")

    def __init__(self, ops, x, order, heads, name):
        st = ops.strides(x)
        view = logical(x.shape, st, order, heads) if st is not None else None
        if view is None or not supported(*view):
            x = ops.contiguous(x)
            view = logical(x.shape, ops.strides(x), order, heads)
        self.x = x
        dims, strides = view
        self.dims = tuple(dims)
        # a length-1 dim's stride is never used: 0, so equal layouts compare equal
        self.strides = tuple(s if n > 1 else 0 for n, s in zip(dims, strides))


# float64: the C API has no such dtype (bsa.h: f32, f16, bf16, all computed
# with fp32 accumulation and softmax), and a float64 path that rounded to
# float32 inside would make torch.autograd.gradcheck fail or, with loose
# tolerances, pass without checking much.  So it is refused, saying why.
_FLOAT64_HINT = (
    "bsa computes in float32 at best (bsa.h has float32, float16 and bfloat16 inputs, with "
    "fp32 accumulation and softmax; no float64), so float64 tensors are refused rather "
    "than rounded: cast them (torch: .float(); numpy: .astype(np.float32)).  "
    "torch.autograd.gradcheck wants float64: check bsa's gradients on float32 inputs with "
    "central finite differences of a float64 loss and eps ~ 1e-2 instead "
    "(python/tests/test_gradcheck.py)"
)


def check_dtype(ops, x, name):
    """A clear error for float64 (and a named one for any other dtype the
    library lacks), before the library sees the tensor."""
    dt = ops.dtype_name(x)
    if dt == "float64":
        raise TypeError(f"{name} is float64: {_FLOAT64_HINT}")
    return ops.dtype_code(x)


def _prepare(ops, tensors, names, order, heads, layout, kv_heads=None):
    """kv_heads: heads of the 3-D k and v (tensors 1 and 2); default heads."""
    heads, kv_heads = check_args(layout, heads, kv_heads)
    for t, n in zip(tensors, names):
        check_dtype(ops, t, n)
    given = heads
    if heads is None and layout.heads > 1:
        heads = layout.heads
    per = [kv_heads if kv_heads and i in (1, 2) else heads for i in range(len(tensors))]
    dtype = ops.dtype_code(tensors[0])
    dev = ops.device(tensors[0])
    for t, n in zip(tensors[1:], names[1:]):
        if ops.dtype_code(t) != dtype:
            raise TypeError(
                f"{n} has dtype {_DTYPE_NAMES[ops.dtype_code(t)]}, {names[0]} has "
                f"{_DTYPE_NAMES[dtype]}: q, k, v (and o, dout) must share one dtype"
            )
        if ops.device(t) != dev:
            raise ValueError(f"{n} is on {ops.device(t)}, {names[0]} on {dev}: use one device")
    prepared = [Prepared(ops, t, order, hh, n) for t, n, hh in zip(tensors, names, per)]
    # heads= / kv_heads= given with 4-D tensors must agree with them (3-D
    # tensors take their head count from these arguments)
    for i, (p, t, n) in enumerate(zip(prepared, tensors, names)):
        want, what = (kv_heads, "kv_heads") if i in (1, 2) else (given, "heads")
        if want is not None and len(t.shape) == 4 and p.dims[1] != want:
            raise ValueError(f"{what}={want} but the 4-D {n} has {p.dims[1]} heads")
    return dtype, prepared


def check_index_array(name, is_integer, dtype, shape):
    """key_lengths / cu_seqlens_*: a 1-D array of integers (checked before
    the int32 conversion, which would truncate floats and accept bools)."""
    if not is_integer:
        raise TypeError(
            f"{name} must hold integers (an int32 or int64 array or a list of ints), "
            f"got dtype {dtype}"
        )
    if len(shape) != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(shape)}")


def check_int(name, value, minimum=1):
    """An integer argument: int, or a numpy / torch integer scalar; never a
    bool, float or str (a float would silently become a float head count)."""
    if isinstance(value, bool) or (np is not None and isinstance(value, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_layout(layout):
    if not isinstance(layout, Layout):
        raise TypeError(
            f"layout must be a bsa.Layout (Layout.preset, Layout.from_blocks or "
            f"Layout.from_callback), got {type(layout).__name__}"
        )


def check_args(layout, heads, kv_heads=None):
    """The Python-side arguments of every call, checked before the library
    sees any of them; returns (heads, kv_heads) as ints or None."""
    check_layout(layout)
    heads = None if heads is None else check_int("heads", heads)
    kv_heads = None if kv_heads is None else check_int("kv_heads", kv_heads)
    return heads, kv_heads


class Extras:
    """The features of a call beyond the seed: kv heads of 3-D k/v, and the
    key lengths / packed-sequence offsets as int32 arrays on the tensors'
    device (kept alive for the call)."""

    __slots__ = ("kv_heads", "key_lengths", "cu_q", "cu_k", "num_seqs")

    def __init__(self, ops, like, kv_heads=None, key_lengths=None, cu_q=None, cu_k=None):
        if (cu_q is None) != (cu_k is None):
            raise ValueError("cu_seqlens_q and cu_seqlens_k go together (packed sequences)")
        self.kv_heads = None if kv_heads is None else check_int("kv_heads", kv_heads)
        self.key_lengths = None
        if key_lengths is not None:
            self.key_lengths = ops.int32_array(key_lengths, like, "key_lengths")
        self.cu_q = None if cu_q is None else ops.int32_array(cu_q, like, "cu_seqlens_q")
        self.cu_k = None if cu_k is None else ops.int32_array(cu_k, like, "cu_seqlens_k")
        self.num_seqs = 0
        if self.cu_q is not None:
            if self.cu_q.shape[0] != self.cu_k.shape[0] or self.cu_q.shape[0] < 2:
                raise ValueError(
                    f"cu_seqlens_q has {self.cu_q.shape[0]} offsets and cu_seqlens_k "
                    f"{self.cu_k.shape[0]}: both must have num_seqs + 1 (>= 2) entries"
                )
            self.num_seqs = int(self.cu_q.shape[0]) - 1

    def check(self, batch):
        """The array lengths against the tensors' batch, before the library
        reads them (it reads batch, or num_seqs, key lengths: a shorter
        array would be read past its end)."""
        if self.key_lengths is None:
            return
        n = int(self.key_lengths.shape[0])
        if self.num_seqs and n != self.num_seqs:
            raise ValueError(
                f"key_lengths has {n} entries; with packed sequences it needs one per "
                f"sequence: num_seqs = {self.num_seqs} (len(cu_seqlens_q) - 1)"
            )
        if not self.num_seqs and n != batch:
            raise ValueError(
                f"key_lengths has {n} entries; it needs one per batch entry: batch = {batch}"
            )

    def flags(self):
        """The plan flags the call's features need."""
        flags = _lib.PLAN_VARLEN if self.num_seqs else 0
        if self.key_lengths is not None:
            flags |= _lib.PLAN_KEY_LENGTHS
        return flags

    def fill(self, ops, args):
        """Sets the appended fields of FwdArgs / BwdArgs."""
        if self.key_lengths is not None:
            args.key_lengths = ops.ptr(self.key_lengths)
        if self.num_seqs:
            args.cu_seqlens_q = ops.ptr(self.cu_q)
            args.cu_seqlens_k = ops.ptr(self.cu_k)
            args.num_seqs = self.num_seqs
        return args



def _scale(scale):
    if scale is None:
        return 0.0  # the library's default, 1/sqrt(head_dim)
    scale = float(scale)
    if scale == 0.0:
        raise ValueError("scale = 0 is reserved by the C API for the default 1/sqrt(head_dim)")
    return scale


def _plan(ops, layout, dtype, q, k, v, o, scale, flags, anchor):
    desc = _lib.AttnDesc()
    desc.dtype = dtype
    desc.q = tensor_desc(q.dims, q.strides)
    desc.k = tensor_desc(k.dims, k.strides)
    desc.v = tensor_desc(v.dims, v.strides)
    desc.o = tensor_desc(o.dims, o.strides)
    desc.scale = scale
    desc.flags = flags
    key = (dtype, scale, flags) + tuple(
        tuple(t.dims) + tuple(tensor_desc(t.dims, t.strides).strides) for t in (q, k, v, o)
    )
    ctx = ops.context(anchor)
    return layout.plan(ctx, desc, key)  # a with-block: (plan, workspace bytes)


def _o_shape(q, pq, pv):
    """o's user shape: q's, with v's head dim."""
    dv = pv.dims[3]
    if len(q.shape) == 3:
        return tuple(q.shape[:2]) + (pq.dims[1] * dv,)
    return tuple(q.shape[:3]) + (dv,)


def forward_setup(ops, q, k, v, layout, heads=None, order="bhtd", extras=None):
    """The checks and C views of a forward call, and its outputs allocated:
    (dtype, pq, pk, pv, o, po, lse).  Touches no data, so the torch op's
    fake kernel runs it too: its o and lse are the real ones' shapes,
    dtypes and strides by construction."""
    kvh = extras.kv_heads if extras else None
    dtype, (pq, pk, pv) = _prepare(ops, [q, k, v], ["q", "k", "v"], order, heads, layout, kvh)
    if extras:
        extras.check(pq.dims[0])
    o = ops.empty(_o_shape(q, pq, pv), pq.x)
    po = Prepared(ops, o, order, pq.dims[1] if len(o.shape) == 3 else None, "o")
    b, h, t, _ = pq.dims
    lse = ops.empty_f32((b, h, t), pq.x)
    return dtype, pq, pk, pv, o, po, lse


def forward_impl(ops, q, k, v, layout, scale=None, heads=None, order="bhtd", flags=0, extras=None):
    """Generic forward; returns (o in q's user shape with v's head dim,
    lse [batch, heads, seq_q] fp32)."""
    dtype, pq, pk, pv, o, po, lse = forward_setup(ops, q, k, v, layout, heads, order, extras)
    flags |= extras.flags() if extras else 0
    with _plan(ops, layout, dtype, pq, pk, pv, po, _scale(scale), flags, pq.x) as (plan, wsb):
        ws, ws_len = ops.workspace(wsb, pq.x)
        args = _lib.FwdArgs(ops.ptr(pq.x), ops.ptr(pk.x), ops.ptr(pv.x), ops.ptr(o), ops.ptr(lse))
        if extras:
            extras.fill(ops, args)
        ws_ptr = ops.ptr(ws) if ws is not None else None
        call("bsa_forward", plan, ctypes.byref(args), ws_ptr, ws_len, ops.stream(pq.x))
    return o, lse


def backward_setup(ops, q, k, v, o, lse, dout, layout, heads=None, order="bhtd", extras=None):
    """The checks and C views of a backward call, and dq, dk, dv allocated
    (shaped and strided like the prepared q, k, v: the library writes each
    gradient with its tensor's strides).  Like forward_setup, runs on fake
    tensors too.  Returns (dtype, [pq, pk, pv, po, pd], lse, dq, dk, dv)."""
    kvh = extras.kv_heads if extras else None
    dtype, (pq, pk, pv, po, pd) = _prepare(
        ops, [q, k, v, o, dout], ["q", "k", "v", "o", "dout"], order, heads, layout, kvh
    )
    if extras:
        extras.check(pq.dims[0])
    if tuple(pd.dims) != tuple(po.dims):
        raise ValueError(f"dout has shape {tuple(dout.shape)}, o has {tuple(o.shape)}")
    if pd.strides != po.strides:  # the library reads dout with o's strides
        pd.x = ops.copy_into(ops.empty_strided(po.x), pd.x)
        pd.strides = po.strides
    b, h, t, _ = pq.dims
    if tuple(lse.shape) != (b, h, t):
        raise ValueError(f"lse has shape {tuple(lse.shape)}, expected {(b, h, t)}")
    if ops.device(lse) != ops.device(pq.x) or ops.dtype_name(lse) != "float32":
        raise TypeError("lse must be the float32 tensor that forward returned (same device)")
    if not ops.is_contiguous(lse):
        lse = ops.contiguous(lse)
    dq, dk, dv = (ops.empty_strided(p.x) for p in (pq, pk, pv))
    return dtype, [pq, pk, pv, po, pd], lse, dq, dk, dv


def backward_impl(
    ops, q, k, v, o, lse, dout, layout, scale=None, heads=None, order="bhtd", flags=0, extras=None
):
    """Generic backward; returns (dq, dk, dv) shaped and strided like q, k, v."""
    dtype, (pq, pk, pv, po, pd), lse, dq, dk, dv = backward_setup(
        ops, q, k, v, o, lse, dout, layout, heads, order, extras
    )
    flags |= extras.flags() if extras else 0
    ptrs = (pq.x, pk.x, pv.x, po.x, lse, pd.x, dq, dk, dv)
    args = _lib.BwdArgs(*(ops.ptr(x) for x in ptrs))
    if extras:
        extras.fill(ops, args)
    with _plan(ops, layout, dtype, pq, pk, pv, po, _scale(scale), flags, pq.x) as (plan, wsb):
        ws, ws_len = ops.workspace(wsb, pq.x)
        ws_ptr = ops.ptr(ws) if ws is not None else None
        call("bsa_backward", plan, ctypes.byref(args), ws_ptr, ws_len, ops.stream(pq.x))
    return dq, dk, dv


def _ops_for(x):
    if _is_torch(x):
        from . import torch_ops

        return torch_ops.TorchOps
    if np is None or not isinstance(x, np.ndarray):
        raise TypeError(f"q must be a numpy array or a torch tensor, got {type(x).__name__}")
    return NumpyOps


def _flags(force_reference):
    return _lib.PLAN_FORCE_REFERENCE if force_reference else 0


_FEATURE_DOC = """
    Beyond the seed: ``kv_heads`` (heads of 3-D k/v; 4-D k/v carry theirs)
    for grouped-query attention, ``key_lengths`` ([batch], or [num_seqs]
    with packed sequences) masks keys at or past each length,
    ``cu_seqlens_q``/``cu_seqlens_k`` (num_seqs + 1 offsets each; batch 1)
    pack variable-length sequences.  v may have its own head dim."""


def _extras(ops, like, kv_heads, key_lengths, cu_seqlens_q, cu_seqlens_k):
    if kv_heads is None and key_lengths is None and cu_seqlens_q is None and cu_seqlens_k is None:
        return None
    return Extras(ops, like, kv_heads, key_lengths, cu_seqlens_q, cu_seqlens_k)


def forward(
    q,
    k,
    v,
    layout,
    scale=None,
    *,
    heads=None,
    order="bhtd",
    force_reference=False,
    kv_heads=None,
    key_lengths=None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
):
    """Forward pass without autograd: returns ``(o, lse)``.

    ``o`` has q's shape (contiguous) with v's head dim; ``lse`` is the fp32
    log-sum-exp [batch, heads, seq_q] (natural log; -inf for a query that
    sees no key) that :func:`backward` needs.  Torch tensors run on their
    device, on the current CUDA stream.
    """
    ops = _ops_for(q)
    ex = _extras(ops, q, kv_heads, key_lengths, cu_seqlens_q, cu_seqlens_k)
    return forward_impl(ops, q, k, v, layout, scale, heads, order, _flags(force_reference), ex)


def backward(
    q,
    k,
    v,
    o,
    lse,
    dout,
    layout,
    scale=None,
    *,
    heads=None,
    order="bhtd",
    force_reference=False,
    kv_heads=None,
    key_lengths=None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
):
    """Backward pass: returns ``(dq, dk, dv)`` from the forward's ``o`` and ``lse``
    and the output gradient ``dout`` (probabilities are recomputed); the
    feature arguments must be the forward's."""
    ops = _ops_for(q)
    ex = _extras(ops, q, kv_heads, key_lengths, cu_seqlens_q, cu_seqlens_k)
    return backward_impl(
        ops, q, k, v, o, lse, dout, layout, scale, heads, order, _flags(force_reference), ex
    )


def attention(
    q,
    k,
    v,
    layout,
    scale=None,
    *,
    heads=None,
    order="bhtd",
    return_lse=False,
    force_reference=False,
    kv_heads=None,
    key_lengths=None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
):
    """Block-sparse attention softmax(scale * q k^T masked by layout) v.

    numpy arrays: returns ``o`` (or ``(o, lse)`` with ``return_lse``).
    torch tensors: differentiable through autograd (``loss.backward()``
    gives q/k/v gradients); runs on the tensors' device and current stream;
    with torch >= 2.4 it is the custom op ``torch.ops.bsa.forward`` (its
    backward ``bsa.backward``), so ``torch.compile(fullgraph=True)`` traces
    through it and CUDA graphs capture it (see bsa/torch_ops.py).
    ``scale`` defaults to 1/sqrt(head_dim).  See the module doc for shapes.
    """
    if _is_torch(q):
        # the index arrays go to the op as they are: it converts and checks
        # them where no trace sees it (torch_ops.py)
        from . import torch_ops

        return torch_ops.attention(
            q, k, v, layout, scale, heads, order, return_lse, _flags(force_reference),
            kv_heads, key_lengths, cu_seqlens_q, cu_seqlens_k,
        )  # fmt: skip
    ops = _ops_for(q)
    ex = _extras(ops, q, kv_heads, key_lengths, cu_seqlens_q, cu_seqlens_k)
    o, lse = forward_impl(ops, q, k, v, layout, scale, heads, order, _flags(force_reference), ex)
    return (o, lse) if return_lse else o


for _f in (forward, backward, attention):
    _f.__doc__ += _FEATURE_DOC


def _plan_query(query, layout, q, k, v, heads, order, force_reference, kv_heads):
    """query(plan) on the plan the library makes for these tensors."""
    ops = _ops_for(q)
    k = q if k is None else k
    v = k if v is None else v
    dtype, (pq, pk, pv) = _prepare(ops, [q, k, v], ["q", "k", "v"], order, heads, layout, kv_heads)
    o = Prepared(
        ops, ops.empty(_o_shape(q, pq, pv), pq.x), order, pq.dims[1] if q.ndim == 3 else None, "o"
    )
    with _plan(ops, layout, dtype, pq, pk, pv, o, 0.0, _flags(force_reference), pq.x) as (plan, _):
        return query(plan)


def plan_implementation(
    layout, q, k=None, v=None, *, heads=None, order="bhtd", force_reference=False, kv_heads=None
):
    """Name of the implementation the library picks for these tensors (e.g. "cpu-fused")."""
    return _plan_query(
        _core.plan_implementation, layout, q, k, v, heads, order, force_reference, kv_heads
    )


def plan_explain(
    layout, q, k=None, v=None, *, heads=None, order="bhtd", force_reference=False, kv_heads=None
):
    """Why the library picks that implementation for these tensors: the text of
    bsa_plan_explain (the entries tried with the reasons they declined, the
    chosen one, the alignment it needs of every tensor pointer; on the CPU
    "implementation: <name>").  BSA_VERBOSE=1 prints it at plan creation."""
    return _plan_query(_core.plan_explain, layout, q, k, v, heads, order, force_reference, kv_heads)
