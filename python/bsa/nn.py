"""A Sparse Transformer attention layer (needs torch)."""

import math

from torch import nn

from . import torch_ops
from .functional import check_int, check_layout


class SparseAttention(nn.Module):
    """Multi-head self-attention over a block-sparse pattern.

    ``x`` [batch, time, embed] -> [batch, time, embed].  One fused q/k/v
    projection; q, k and v reach the kernel as strided views of its output
    (no copies).  The layout is built per sequence length on first use from
    the preset ``pattern`` ("all", "local", "strided", "fixed"), with ``ctx``
    the local bandwidth / strided stride / fixed window, or given directly
    as ``layout=`` (a :class:`bsa.Layout` for one sequence length).
    ``torch.compile(model, fullgraph=True)`` traces through it (the layout
    for a new length is then built by the op itself, see bsa/torch_ops.py).
    """

    def __init__(
        self,
        embed_dim,
        heads,
        pattern="fixed",
        block=32,
        ctx=128,
        num_verts=1,
        vertsize=1,
        causal=True,
        layout=None,
        bias=True,
    ):
        super().__init__()
        embed_dim, heads = check_int("embed_dim", embed_dim), check_int("heads", heads)
        if layout is not None:
            check_layout(layout)
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} must be a multiple of heads {heads}")
        self.embed_dim, self.heads = embed_dim, heads
        self.head_dim = embed_dim // heads
        self.pattern, self.block, self.ctx = pattern, block, ctx
        self.num_verts = num_verts
        self.vertsize, self.causal = vertsize, causal
        self._fixed_layout = layout
        self._layouts = None
        if layout is None:
            self._layouts = torch_ops.PresetLayouts(
                pattern=pattern,
                block=block,
                heads=heads,
                ctx=ctx,
                num_verts=num_verts,
                vertsize=vertsize,
                causal=causal,
            )
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out = nn.Linear(embed_dim, embed_dim, bias=bias)

    def layout_for(self, seq):
        if self._fixed_layout is not None:
            return self._fixed_layout
        return self._layouts.layout(seq)

    def forward(self, x):
        b, t, e = x.shape
        qkv = self.qkv(x)  # [b, t, 3e]: q, k, v are column slices, strided views
        q, k, v = qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]
        source = self._layouts if self._fixed_layout is None else self._fixed_layout
        a = torch_ops.attention(q, k, v, source, 1.0 / math.sqrt(self.head_dim), heads=self.heads)
        return self.out(a)

    def extra_repr(self):
        return (
            f"embed_dim={self.embed_dim}, heads={self.heads}, pattern={self.pattern!r}, "
            f"block={self.block}, ctx={self.ctx}, causal={self.causal}"
        )
