"""Torch tensors: CPU and CUDA, on the current CUDA stream, through autograd.

With torch >= 2.4 attention is two ``torch.library`` custom ops,
``torch.ops.bsa.forward`` -> (o, lse) and ``torch.ops.bsa.backward`` ->
(dq, dk, dv), with fake kernels and the autograd formula registered, so
``torch.compile(..., fullgraph=True)`` traces through ``bsa.attention`` and
``bsa.nn.SparseAttention`` without a graph break, AOTAutograd traces the
backward, and CUDA graphs capture both.  Older torch gets the same eager
behaviour through a plain ``torch.autograd.Function`` (a graph break under
torch.compile).

How the op names its layout.  A Layout is a Python object over C handles,
not a tensor, and an op schema takes tensors, scalars and strings only.  The
op takes an int, the layout's process-wide id (bsa._core.register): ids are
never reused and the registry holds layouts weakly, so a graph never keeps
a layout alive and an id can never silently name a different layout (a
graph that outlives its layout fails with a clear error instead).  Tracing
``layout._handles.id`` makes dynamo guard on it, so a call with another
layout recompiles rather than reusing the wrong graph.  The plans stay where
they were, cached per layout, context and shapes (bsa._core.Handles).  The
alternatives were worse: passing the layout's tables as tensors would
rebuild the C layout (and re-upload it) on every call; torchbind/opaque
objects need a C++ extension or a newer torch than 2.4.

``bsa.nn.SparseAttention`` builds its layout per sequence length on first
use; under a trace that would be C calls dynamo cannot follow.  So its id
names a ``PresetLayouts`` (the preset's fields without the length), which
the op resolves to ``Layout.preset(seq=T, ...)`` from the tensors' time
length, inside the op where no trace looks.

CUDA graphs: an op call allocates o/lse/gradients and the workspace from
torch's caching allocator and runs on torch's current stream, with no
synchronisation; its host work is ctypes structs only.  What is not
capturable happens once, on the first call for a layout, device and shapes
(the plan is created and the layout's tables uploaded), so run one call
before capturing (torch.compile's "reduce-overhead" mode warms up itself),
and pass key_lengths / cu_seqlens as int32 tensors on the tensors' device
(host ones are copied to the device on every call).
"""

from typing import Optional, Tuple

import torch

from . import _core, _lib
from . import functional as _attention
from .functional import (
    _extras,
    _scale,
    backward_impl,
    backward_setup,
    check_int,
    check_layout,
    forward_impl,
    forward_setup,
)
from .layout import Layout

_DTYPES = {
    torch.float32: _lib.DTYPE_F32,
    torch.float16: _lib.DTYPE_F16,
    torch.bfloat16: _lib.DTYPE_BF16,
}

# torch.library.custom_op with register_fake / register_autograd: torch 2.4
HAS_CUSTOM_OP = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_fake")


def _is_fake(x):
    """A tensor without data: the fake kernels' inputs (FakeTensor, meta)."""
    if x.device.type == "meta":
        return True
    fake = getattr(getattr(torch, "_subclasses", None), "FakeTensor", None)
    return fake is not None and isinstance(x, fake)


class TorchOps:
    """How the generic code in functional.py reads and makes torch tensors."""

    @staticmethod
    def dtype_code(x):
        code = _DTYPES.get(x.dtype)
        if code is None:
            raise TypeError(f"bsa supports float32, float16 and bfloat16 tensors, got {x.dtype}")
        return code

    @staticmethod
    def dtype_name(x):
        return str(x.dtype).replace("torch.", "")

    @staticmethod
    def strides(x):
        return tuple(x.stride())

    @staticmethod
    def contiguous(x):
        return x.contiguous()

    @staticmethod
    def is_contiguous(x):
        return x.is_contiguous()

    @staticmethod
    def ptr(x):
        return x.data_ptr() or None

    @staticmethod
    def empty(shape, like, dtype=None):
        x = torch.empty(tuple(shape), dtype=dtype or like.dtype, device=like.device)
        return x.fill_(float("nan")) if _attention.POISON else x

    @staticmethod
    def empty_f32(shape, like):
        x = torch.empty(tuple(shape), dtype=torch.float32, device=like.device)
        return x.fill_(float("nan")) if _attention.POISON else x

    @staticmethod
    def empty_strided(like):
        # empty_strided allocates the strides' span, gaps included
        x = torch.empty_strided(like.shape, like.stride(), dtype=like.dtype, device=like.device)
        return x.fill_(float("nan")) if _attention.POISON else x

    @staticmethod
    def int32_array(x, like, name):
        # the library reads key lengths / offsets where the tensors are
        try:
            t = torch.as_tensor(x)  # keeps the dtype (and device) it has, to check it
        except (TypeError, ValueError, RuntimeError) as e:  # strings, ragged lists
            raise TypeError(f"{name} must be a 1-D array or list of integers: {e}") from None
        if t.numel() == 0 and not isinstance(x, torch.Tensor):
            t = t.to(torch.int32)  # [] is float32 to torch; its length is checked later
        d = t.dtype
        integer = not (d.is_floating_point or d.is_complex or d == torch.bool)
        _attention.check_index_array(name, integer, str(d).replace("torch.", ""), tuple(t.shape))
        # host values only: reading device ones would synchronise (and a fake
        # kernel's have none)
        if t.device.type == "cpu" and t.numel() and not _is_fake(t):
            lo, hi = int(t.min()), int(t.max())
            if lo < -(2**31) or hi > 2**31 - 1:
                raise ValueError(
                    f"{name} holds values outside int32 ({lo}..{hi}); the library takes int32"
                )
        return t.to(device=like.device, dtype=torch.int32).contiguous()

    @staticmethod
    def copy_into(dst, src):
        return dst.copy_(src)

    @staticmethod
    def device(x):
        return x.device

    @staticmethod
    def context(x):
        if x.device.type == "cuda":
            if torch.version.hip:
                return _core.context(_lib.BACKEND_HIP, x.device.index or 0)
            return _core.context(_lib.BACKEND_CUDA, x.device.index or 0)
        if x.device.type == "cpu":
            return _core.cpu_context()
        raise ValueError(f"bsa runs on CPU and CUDA tensors, not on {x.device}")

    @staticmethod
    def workspace(nbytes, like):
        if like.device.type == "cpu" or nbytes == 0:
            return None, 0
        # From torch's caching allocator, on the current stream: freed memory
        # is reused only after the stream's queued work (torch's rule); in a
        # CUDA-graph capture, from the graph's private pool.
        return torch.empty(nbytes, dtype=torch.uint8, device=like.device), nbytes

    @staticmethod
    def stream(x):
        if x.device.type != "cuda":
            return None
        return torch.cuda.current_stream(x.device).cuda_stream or None


# ------------------------------------------------------------------ layouts


class PresetLayouts:
    """``Layout.preset(seq=T, **fields)`` for each sequence length T, made on
    first use: the layout source of ``bsa.nn.SparseAttention``.  Its ``id``
    is what the op receives; copies (deepcopy, pickle) register anew."""

    def __init__(self, **fields):
        self.fields = dict(fields)
        self._layouts = {}
        self.id = _core.register(self)

    def layout(self, seq):
        seq = int(seq)
        with _core._lock:
            lay = self._layouts.get(seq)
            if lay is None:
                lay = self._layouts[seq] = Layout.preset(seq=seq, **self.fields)
            return lay

    def __getstate__(self):
        return {"fields": self.fields}  # Layouts hold C handles: rebuilt on use

    def __setstate__(self, state):
        self.__init__(**state["fields"])

    def __repr__(self):
        return f"PresetLayouts({self.fields!r}, id={self.id})"


def source_id(layout):
    """The registry id the op gets for a Layout or a PresetLayouts."""
    if isinstance(layout, PresetLayouts):
        return layout.id
    check_layout(layout)
    return layout._handles.id


def _time_length(q, order):
    return q.shape[2] if (q.dim() == 4 and order == "bhtd") else q.shape[1]


def resolve(sid, q, order):
    """The Layout behind an op's layout id, for these tensors.  Under
    torch.compile's dynamic shapes the id may arrive as a SymInt (dynamo makes
    an int that changed between calls symbolic): int() specialises the graph
    to this layout, so another layout recompiles instead of being taken for
    this one."""
    sid = int(sid)
    source = _core.lookup(sid)
    if source is None:
        raise RuntimeError(
            f"bsa: layout id {sid} names no live layout: the Layout (or SparseAttention "
            f"module) it was taken from has been garbage-collected while compiled code that "
            f"calls bsa still runs; keep the layout alive as long as that code"
        )
    if isinstance(source, Layout):
        return source
    return source.layout(_time_length(q, order))


def _index_tensor(x, name):
    """key_lengths / cu_seqlens as a tensor for the op's schema; the op
    converts it to int32 on the tensors' device and checks it."""
    if x is None or isinstance(x, torch.Tensor):
        return x
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:  # strings, ragged lists
        raise TypeError(f"{name} must be a 1-D array or list of integers: {e}") from None
    return t.to(torch.int32) if t.numel() == 0 else t


# ------------------------------------------------------------------ the ops


def _forward_real(q, k, v, sid, scale, heads, order, flags, kv_heads, kl, cq, ck):
    ex = _extras(TorchOps, q, kv_heads, kl, cq, ck)
    return forward_impl(TorchOps, q, k, v, resolve(sid, q, order), scale, heads, order, flags, ex)


def _forward_fake(q, k, v, sid, scale, heads, order, flags, kv_heads, kl, cq, ck):
    ex = _extras(TorchOps, q, kv_heads, kl, cq, ck)
    out = forward_setup(TorchOps, q, k, v, resolve(sid, q, order), heads, order, ex)
    return out[4], out[6]  # o, lse


def _backward_real(q, k, v, o, lse, do, sid, scale, heads, order, flags, kv_heads, kl, cq, ck):
    ex = _extras(TorchOps, q, kv_heads, kl, cq, ck)
    lay = resolve(sid, q, order)
    return backward_impl(TorchOps, q, k, v, o, lse, do, lay, scale, heads, order, flags, ex)


def _backward_fake(q, k, v, o, lse, do, sid, scale, heads, order, flags, kv_heads, kl, cq, ck):
    ex = _extras(TorchOps, q, kv_heads, kl, cq, ck)
    lay = resolve(sid, q, order)
    return backward_setup(TorchOps, q, k, v, o, lse, do, lay, heads, order, ex)[3:]


if HAS_CUSTOM_OP:
    Tensor = torch.Tensor
    OptTensor = Optional[torch.Tensor]

    def _op_kwargs():
        # The fake kernels derive the outputs' strides from the inputs'
        # (dq/dk/dv take q/k/v's): inductor must pass the inputs as traced.
        tag = getattr(torch.Tag, "needs_exact_strides", None) or getattr(
            torch.Tag, "needs_fixed_stride_order", None
        )
        try:
            import inspect

            if tag is not None and "tags" in inspect.signature(torch.library.custom_op).parameters:
                return {"tags": (tag,)}
        except (TypeError, ValueError):
            pass
        return {}

    @torch.library.custom_op("bsa::forward", mutates_args=(), **_op_kwargs())
    def forward_op(
        q: Tensor,
        k: Tensor,
        v: Tensor,
        layout_id: int,
        scale: Optional[float],
        heads: Optional[int],
        order: str,
        flags: int,
        kv_heads: Optional[int],
        key_lengths: OptTensor,
        cu_seqlens_q: OptTensor,
        cu_seqlens_k: OptTensor,
    ) -> Tuple[Tensor, Tensor]:
        """(o, lse) of block-sparse attention; layout_id as in bsa._core.register."""
        return _forward_real(
            q, k, v, layout_id, scale, heads, order, flags, kv_heads,
            key_lengths, cu_seqlens_q, cu_seqlens_k,
        )  # fmt: skip

    @torch.library.custom_op("bsa::backward", mutates_args=(), **_op_kwargs())
    def backward_op(
        q: Tensor,
        k: Tensor,
        v: Tensor,
        o: Tensor,
        lse: Tensor,
        dout: Tensor,
        layout_id: int,
        scale: Optional[float],
        heads: Optional[int],
        order: str,
        flags: int,
        kv_heads: Optional[int],
        key_lengths: OptTensor,
        cu_seqlens_q: OptTensor,
        cu_seqlens_k: OptTensor,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """(dq, dk, dv), shaped and strided like q, k, v."""
        return _backward_real(
            q, k, v, o, lse, dout, layout_id, scale, heads, order, flags, kv_heads,
            key_lengths, cu_seqlens_q, cu_seqlens_k,
        )  # fmt: skip

    forward_op.register_fake(_forward_fake)
    backward_op.register_fake(_backward_fake)

    def _setup_context(ctx, inputs, output):
        q, k, v, sid, scale, heads, order, flags, kv_heads, kl, cq, ck = inputs
        o, lse = output
        ctx.save_for_backward(q, k, v, o, lse, kl, cq, ck)
        ctx.bsa = (sid, scale, heads, order, flags, kv_heads)
        ctx.mark_non_differentiable(lse)

    def _backward_formula(ctx, do, dlse):
        q, k, v, o, lse, kl, cq, ck = ctx.saved_tensors
        sid, scale, heads, order, flags, kv_heads = ctx.bsa
        dq, dk, dv = torch.ops.bsa.backward(
            q, k, v, o, lse, do, sid, scale, heads, order, flags, kv_heads, kl, cq, ck
        )
        return (dq, dk, dv) + (None,) * 9

    forward_op.register_autograd(_backward_formula, setup_context=_setup_context)


class _Attention(torch.autograd.Function):
    """torch < 2.4: the same computation as a plain autograd Function."""

    @staticmethod
    def forward(ctx, q, k, v, layout, scale, heads, order, flags, extras):
        o, lse = forward_impl(TorchOps, q, k, v, layout, scale, heads, order, flags, extras)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.bsa = (layout, scale, heads, order, flags, extras)
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    def backward(ctx, do, dlse):
        q, k, v, o, lse = ctx.saved_tensors
        layout, scale, heads, order, flags, extras = ctx.bsa
        if do is None:
            return (None,) * 9
        dq, dk, dv = backward_impl(
            TorchOps, q, k, v, o, lse, do, layout, scale, heads, order, flags, extras
        )
        return dq, dk, dv, None, None, None, None, None, None


def attention(
    q,
    k,
    v,
    layout,
    scale=None,
    heads=None,
    order="bhtd",
    return_lse=False,
    flags=0,
    kv_heads=None,
    key_lengths=None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
):
    """bsa.attention for torch tensors; ``layout`` a Layout or a PresetLayouts.

    Traced by torch.compile: only argument checks that need no data run
    here; the rest run in the op (eagerly) or its fake kernel (tracing)."""
    sid = source_id(layout)
    heads = None if heads is None else check_int("heads", heads)
    kv_heads = None if kv_heads is None else check_int("kv_heads", kv_heads)
    scale = None if scale is None else _scale(scale)
    kl = _index_tensor(key_lengths, "key_lengths")
    cq = _index_tensor(cu_seqlens_q, "cu_seqlens_q")
    ck = _index_tensor(cu_seqlens_k, "cu_seqlens_k")
    if HAS_CUSTOM_OP:
        o, lse = torch.ops.bsa.forward(
            q, k, v, sid, scale, heads, order, flags, kv_heads, kl, cq, ck
        )
    else:
        lay = resolve(sid, q, order)
        ex = _extras(TorchOps, q, kv_heads, kl, cq, ck)
        o, lse = _Attention.apply(q, k, v, lay, scale, heads, order, flags, ex)
    return (o, lse) if return_lse else o
