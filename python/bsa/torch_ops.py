"""Torch tensors: CPU and CUDA, on the current CUDA stream, through autograd."""

import torch

from . import _core, _lib
from . import functional as _attention
from .functional import backward_impl, forward_impl

_DTYPES = {
    torch.float32: _lib.DTYPE_F32,
    torch.float16: _lib.DTYPE_F16,
    torch.bfloat16: _lib.DTYPE_BF16,
}


class TorchOps:
    """How the generic code in attention.py reads and makes torch tensors."""

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
        if t.device.type == "cpu" and t.numel():  # device arrays: no sync to check
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
        # is reused only after the stream's queued work (torch's rule).
        return torch.empty(nbytes, dtype=torch.uint8, device=like.device), nbytes

    @staticmethod
    def stream(x):
        if x.device.type != "cuda":
            return None
        return torch.cuda.current_stream(x.device).cuda_stream or None


class _Attention(torch.autograd.Function):
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


def attention(q, k, v, layout, scale, heads, order, return_lse, flags, extras=None):
    o, lse = _Attention.apply(q, k, v, layout, scale, heads, order, flags, extras)
    return (o, lse) if return_lse else o
