"""bsa: block-sparse attention (the Sparse Transformers primitive) from Python.

A thin ctypes binding of the C library libbsa::

    import numpy as np, bsa
    layout = bsa.Layout.preset("fixed", seq=1024, block=32, heads=4, ctx=128, num_verts=4)
    q, k, v = (np.random.randn(2, 4, 1024, 64).astype(np.float32) for _ in range(3))
    o = bsa.attention(q, k, v, layout)             # [batch, heads, time, dim]

Torch tensors (CPU or CUDA) work the same way and are differentiable;
``bsa.nn.SparseAttention`` is a Sparse Transformer attention layer.
Errors from the library raise :class:`BsaError` with ``status_name`` and the
library's ``detail`` message.
"""

from ._lib import BsaError, library_path, version as _version
from .functional import attention, backward, forward, plan_explain, plan_implementation
from .layout import Layout, LayoutInfo

__all__ = [
    "BsaError",
    "Layout",
    "LayoutInfo",
    "attention",
    "forward",
    "backward",
    "plan_implementation",
    "plan_explain",
    "library_version",
    "library_path",
    "backends",
]


def _package_version():
    """The installed distribution's version when this package is the one it
    installed; otherwise (a source checkout, an editable install) the loaded
    library's, which CMake built from the same project version.  Either way
    it comes from CMakeLists.txt's project(bsa VERSION ...)."""
    import os

    try:
        from importlib import metadata

        dist = metadata.distribution("bsa")
        here = os.path.dirname(os.path.abspath(__file__))
        if os.path.samefile(str(dist.locate_file("bsa")), here):
            return dist.version
    except Exception:  # noqa: BLE001 - not installed, or installed elsewhere
        pass
    return "%d.%d.%d" % _version()


__version__ = _package_version()


def library_version():
    """(major, minor, patch) of the loaded C library."""
    return _version()


def backends():
    """Names of the backends compiled into the loaded library."""
    from . import _lib

    names = {_lib.BACKEND_CPU: "cpu", _lib.BACKEND_CUDA: "cuda", _lib.BACKEND_HIP: "hip"}
    return [n for b, n in names.items() if _lib.backend_compiled(b)]


def __getattr__(name):
    # bsa.nn and bsa.torch_ops need torch: imported on first use, so that
    # `import bsa` works without it
    if name in ("nn", "torch_ops", "picture", "flex"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bsa' has no attribute {name!r}")
