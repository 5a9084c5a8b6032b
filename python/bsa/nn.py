"""A Sparse Transformer attention layer (needs torch)."""

import math

from torch import nn

from . import torch_ops
from .functional import check_int, check_layout
from .layout import _preset_fields


class SparseAttention(nn.Module):
    """Multi-head self-attention over a block-sparse pattern.

    ``x`` [batch, time, embed] -> [batch, time, embed].  One fused q/k/v
    projection; q, k and v reach the kernel as strided views of its output
    (no copies).  The layout is built per sequence length on first use from
    the preset ``pattern`` with its fields, as :meth:`bsa.Layout.preset`
    takes them: "all", "local", "strided", "fixed" (``ctx`` the local
    bandwidth / strided stride / fixed window; ``num_verts``, ``vertsize``),
    "sliding", "dilated" (``dilation``), "longformer" (``global_tokens``),
    "bigbird" (``global_tokens``, ``random_blocks``, ``seed``), "document"
    (``doc_lengths``, summing to the sequence length), with ``ctx`` the
    window radius of the last four; or given directly as ``layout=`` (a
    :class:`bsa.Layout` for one sequence length).  The preset's arguments
    are checked here, when the module is made.  Tensors are float32,
    float16 or bfloat16 (the library has no float64: ``.double()`` raises
    TypeError at the first call).
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
        *,
        dilation=None,
        global_tokens=None,
        random_blocks=None,
        seed=None,
        doc_lengths=None,
    ):
        super().__init__()
        embed_dim, heads = check_int("embed_dim", embed_dim), check_int("heads", heads)
        if layout is not None:
            check_layout(layout)
            self._preset = None
        else:
            # seq is the first input's: any valid length stands in for the check
            self._preset = _preset_fields(
                pattern, 1, block, heads, ctx, num_verts, vertsize, causal,
                dilation, global_tokens, random_blocks, seed, doc_lengths,
            )  # fmt: skip
            del self._preset["seq"]
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} must be a multiple of heads {heads}")
        self.embed_dim, self.heads = embed_dim, heads
        self.head_dim = embed_dim // heads
        self.pattern, self.block, self.ctx = pattern, block, ctx
        self.num_verts = num_verts
        self.vertsize, self.causal = vertsize, causal
        self._fixed_layout = layout
        self._layouts = None if layout is not None else torch_ops.PresetLayouts(**self._preset)
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
        r = f"embed_dim={self.embed_dim}, heads={self.heads}"
        if self._preset is None:
            return r + ", layout=" + repr(self._fixed_layout)
        p = self._preset
        r += f", pattern={p['pattern']!r}, block={p['block']}"
        if p["pattern"] not in ("all", "document"):
            r += f", ctx={p['ctx']}"
        if p["pattern"] == "fixed":
            r += f", num_verts={p['num_verts']}, vertsize={p['vertsize']}"
        for k in ("dilation", "global_tokens", "random_blocks", "seed", "doc_lengths"):
            if p[k] is not None:
                r += f", {k}={p[k]!r}"
        return r + f", causal={p['causal']}"
