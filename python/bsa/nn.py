"""A Sparse Transformer attention layer (needs torch)."""

import math

from torch import nn

from .functional import attention, check_int, check_layout
from .layout import Layout


class SparseAttention(nn.Module):
    """Multi-head self-attention over a block-sparse pattern.

    ``x`` [batch, time, embed] -> [batch, time, embed].  One fused q/k/v
    projection; q, k and v reach the kernel as strided views of its output
    (no copies).  The layout is built per sequence length on first use from
    the preset ``pattern`` ("all", "local", "strided", "fixed"), with ``ctx``
    the local bandwidth / strided stride / fixed window, or given directly
    as ``layout=`` (a :class:`bsa.Layout` for one sequence length).
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
        self._layouts = {}
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out = nn.Linear(embed_dim, embed_dim, bias=bias)

    def layout_for(self, seq):
        if self._fixed_layout is not None:
            return self._fixed_layout
        lay = self._layouts.get(seq)
        if lay is None:
            lay = self._layouts[seq] = Layout.preset(
                self.pattern,
                seq=seq,
                block=self.block,
                heads=self.heads,
                ctx=self.ctx,
                num_verts=self.num_verts,
                vertsize=self.vertsize,
                causal=self.causal,
            )
        return lay

    def forward(self, x):
        b, t, e = x.shape
        qkv = self.qkv(x)  # [b, t, 3e]: q, k, v are column slices, strided views
        q, k, v = qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]
        a = attention(q, k, v, self.layout_for(t), 1.0 / math.sqrt(self.head_dim), heads=self.heads)
        return self.out(a)

    def extra_repr(self):
        return (
            f"embed_dim={self.embed_dim}, heads={self.heads}, pattern={self.pattern!r}, "
            f"block={self.block}, ctx={self.ctx}, causal={self.causal}"
        )
