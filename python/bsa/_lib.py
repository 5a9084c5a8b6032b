"""ctypes view of the C library (api/bsa.h): loading, structs, prototypes, errors.

ABI mode only: every declaration here mirrors api/bsa.h by hand, so a change
to that header must be mirrored here (tests/test_api.py checks the enum
values and struct sizes that can be checked from Python).
"""

import ctypes
import ctypes.util
import glob
import os
import sys

# ------------------------------------------------------------------ status

STATUS_NAMES = (
    "BSA_SUCCESS",
    "BSA_ERROR_NULL_POINTER",
    "BSA_ERROR_INVALID_ARGUMENT",
    "BSA_ERROR_INVALID_SHAPE",
    "BSA_ERROR_SHAPE_MISMATCH",
    "BSA_ERROR_UNSUPPORTED",
    "BSA_ERROR_INVALID_DTYPE",
    "BSA_ERROR_OVERFLOW",
    "BSA_ERROR_OUT_OF_MEMORY",
    "BSA_ERROR_BACKEND_UNAVAILABLE",
    "BSA_ERROR_NO_DEVICE",
    "BSA_ERROR_DEVICE",
    "BSA_ERROR_WORKSPACE",
    "BSA_ERROR_CONTEXT_MISMATCH",
    "BSA_ERROR_CALLBACK",
    "BSA_ERROR_INTERNAL",
)
SUCCESS = 0
ERROR_CALLBACK = STATUS_NAMES.index("BSA_ERROR_CALLBACK")

DTYPE_F32, DTYPE_F16, DTYPE_BF16 = 0, 1, 2
BACKEND_AUTO, BACKEND_CPU, BACKEND_CUDA, BACKEND_HIP = 0, 1, 2, 3
PRED_NONE, PRED_CAUSAL, PRED_WINDOW, PRED_PREFIX = 0, 1, 2, 4
# bsa_pattern; the names are the CLI's (bsa layout --pattern)
PATTERNS = {
    "all": 0,
    "local": 1,
    "strided": 2,
    "fixed": 3,
    "sliding": 4,  # BSA_PATTERN_SLIDING_WINDOW
    "dilated": 5,
    "longformer": 6,
    "bigbird": 7,
    "document": 8,
}
PLAN_FORCE_REFERENCE = 1
PLAN_VARLEN = 2
PLAN_KEY_LENGTHS = 4  # calls may pass key_lengths (required then)


class BsaError(RuntimeError):
    """A bsa call failed.

    ``status`` is the bsa_status value, ``status_name`` its name (e.g.
    ``"BSA_ERROR_INVALID_SHAPE"``) and ``detail`` the library's
    bsa_last_error() message, which names the argument and the limit.
    """

    def __init__(self, status, detail, function=None):
        self.status = int(status)
        self.status_name = status_name(status)
        self.detail = detail
        self.function = function
        super().__init__(f"{self.status_name}: {detail}" if detail else self.status_name)


# ------------------------------------------------------------------ structs

c_int64_4 = ctypes.c_int64 * 4


class ContextParams(ctypes.Structure):
    _fields_ = [("backend", ctypes.c_int), ("device", ctypes.c_int), ("num_threads", ctypes.c_int)]


class LayoutDesc(ctypes.Structure):
    _fields_ = [
        ("block", ctypes.c_int),
        ("heads", ctypes.c_int),
        ("q_blocks", ctypes.c_int),
        ("k_blocks", ctypes.c_int),
        ("predicates", ctypes.c_uint),
        ("window", ctypes.c_int),
        ("prefix", ctypes.c_int),
    ]


class Preset(ctypes.Structure):
    _fields_ = [
        ("pattern", ctypes.c_int),
        ("seq", ctypes.c_int),
        ("block", ctypes.c_int),
        ("heads", ctypes.c_int),
        ("ctx", ctypes.c_int),
        ("num_verts", ctypes.c_int),
        ("vertsize", ctypes.c_int),
        ("bidirectional", ctypes.c_int),
        # appended in bsa.h (presets beyond the seed): zero = default
        ("dilation", ctypes.c_int),
        ("global_tokens", ctypes.c_int),
        ("random_blocks", ctypes.c_int),
        ("seed", ctypes.c_uint64),
        ("doc_lengths", ctypes.c_void_p),
        ("num_docs", ctypes.c_int),
    ]


class LayoutInfo(ctypes.Structure):
    _fields_ = [
        ("block", ctypes.c_int),
        ("heads", ctypes.c_int),
        ("q_blocks", ctypes.c_int),
        ("k_blocks", ctypes.c_int),
        ("seq_q", ctypes.c_int),
        ("seq_k", ctypes.c_int),
        ("stride_permutation", ctypes.c_int),
        ("blocks_total", ctypes.c_int64),
        ("partial_blocks", ctypes.c_int64),
        ("max_row_blocks", ctypes.c_int),
        ("max_col_blocks", ctypes.c_int),
        ("kept_elements", ctypes.c_int64),
    ]


class TensorDesc(ctypes.Structure):
    _fields_ = [("dims", c_int64_4), ("strides", c_int64_4)]


class AttnDesc(ctypes.Structure):
    _fields_ = [
        ("dtype", ctypes.c_int),
        ("q", TensorDesc),
        ("k", TensorDesc),
        ("v", TensorDesc),
        ("o", TensorDesc),
        ("scale", ctypes.c_float),
        ("flags", ctypes.c_uint),
    ]


# appended to bsa_fwd_args and bsa_bwd_args in bsa.h (key padding, packed
# sequences): zero = off
_CALL_EXTRAS = [
    ("key_lengths", ctypes.c_void_p),
    ("cu_seqlens_q", ctypes.c_void_p),
    ("cu_seqlens_k", ctypes.c_void_p),
    ("num_seqs", ctypes.c_int),
]


class FwdArgs(ctypes.Structure):
    _fields_ = [
        ("q", ctypes.c_void_p),
        ("k", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("o", ctypes.c_void_p),
        ("lse", ctypes.c_void_p),
    ] + _CALL_EXTRAS


class BwdArgs(ctypes.Structure):
    _fields_ = [
        ("q", ctypes.c_void_p),
        ("k", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("o", ctypes.c_void_p),
        ("lse", ctypes.c_void_p),
        ("dout", ctypes.c_void_p),
        ("dq", ctypes.c_void_p),
        ("dk", ctypes.c_void_p),
        ("dv", ctypes.c_void_p),
    ] + _CALL_EXTRAS


# int (*)(void *user, int head, int q_block, int k_block, int block_index, int block, uint8_t *mask)
MASK_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_uint8),
)

# ------------------------------------------------------------------ loading


def _candidates():
    """Where libbsa may be, most specific first."""
    env = os.environ.get("BSA_LIBRARY")
    if env:
        return [env]  # an explicit choice is never silently replaced
    here = os.path.dirname(os.path.abspath(__file__))
    found = []
    # the copy that `pip install` ships inside the package
    for sub in ("lib", "lib64", ""):
        found += sorted(glob.glob(os.path.join(here, sub, "libbsa.so*")))
        found += sorted(glob.glob(os.path.join(here, sub, "libbsa*.dylib")))
        found += sorted(glob.glob(os.path.join(here, sub, "bsa.dll")))
    # an editable install (pip install -e): the package runs from the source
    # tree while CMake installed the library into site-packages/bsa/lib
    for entry in sys.path:
        if entry and os.path.abspath(entry) != os.path.dirname(here):
            found += sorted(glob.glob(os.path.join(entry, "bsa", "lib", "libbsa.so*")))
    # a source checkout: python/bsa/ -> the repository's build folders
    root = os.path.dirname(os.path.dirname(here))
    build = os.environ.get("BSA_BUILD_DIR")
    if build:
        found.append(os.path.join(build, "libbsa.so"))
    found.append(os.path.join(root, "build", "libbsa.so"))
    system = ctypes.util.find_library("bsa")
    if system:
        found.append(system)
    return found


def _load():
    tried = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            tried.append(f"{path} (missing)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError(
        "bsa: cannot load the C library libbsa. Install the package with "
        "`pip install ./python`, or build it (cmake -S . -B build && cmake --build build) "
        "and set BSA_LIBRARY=/path/to/libbsa.so. Tried: " + "; ".join(tried or ["nothing"])
    )


lib, library_path = _load()

_P = ctypes.POINTER
_vp = ctypes.c_void_p
_protos = {
    "bsa_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "bsa_last_error": (ctypes.c_char_p, []),
    "bsa_version": (None, [_P(ctypes.c_int)] * 3),
    "bsa_backend_name": (ctypes.c_char_p, [ctypes.c_int]),
    "bsa_backend_compiled": (ctypes.c_int, [ctypes.c_int]),
    "bsa_context_create": (ctypes.c_int, [_P(_vp), _P(ContextParams)]),
    "bsa_context_destroy": (ctypes.c_int, [_vp]),
    "bsa_context_backend": (ctypes.c_int, [_vp, _P(ctypes.c_int)]),
    "bsa_layout_create_dense": (ctypes.c_int, [_vp, _P(_vp), _P(LayoutDesc), _vp]),
    "bsa_layout_create_preset": (ctypes.c_int, [_vp, _P(_vp), _P(Preset)]),
    "bsa_layout_create_callback": (
        ctypes.c_int,
        [_vp, _P(_vp), _P(LayoutDesc), _vp, MASK_CALLBACK, _vp],
    ),
    "bsa_layout_destroy": (ctypes.c_int, [_vp]),
    "bsa_layout_get_info": (ctypes.c_int, [_vp, _P(LayoutInfo)]),
    "bsa_layout_head_blocks": (ctypes.c_int, [_vp, ctypes.c_int, _P(ctypes.c_int64)]),
    "bsa_layout_element_mask": (ctypes.c_int, [_vp, ctypes.c_int, _vp]),
    "bsa_plan_create": (ctypes.c_int, [_vp, _P(_vp), _P(AttnDesc), _vp]),
    "bsa_plan_destroy": (ctypes.c_int, [_vp]),
    "bsa_plan_workspace_size": (ctypes.c_int, [_vp, _P(ctypes.c_size_t)]),
    "bsa_plan_implementation": (ctypes.c_int, [_vp, _P(ctypes.c_char_p)]),
    "bsa_plan_explain": (
        ctypes.c_int,
        [_vp, ctypes.c_char_p, ctypes.c_size_t, _P(ctypes.c_size_t)],
    ),
    "bsa_plan_alignment": (ctypes.c_int, [_vp, _P(ctypes.c_size_t)]),
    "bsa_forward": (ctypes.c_int, [_vp, _P(FwdArgs), _vp, ctypes.c_size_t, _vp]),
    "bsa_backward": (ctypes.c_int, [_vp, _P(BwdArgs), _vp, ctypes.c_size_t, _vp]),
}
for _name, (_res, _args) in _protos.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args


def status_name(status):
    return lib.bsa_status_string(int(status)).decode()


def last_error():
    return lib.bsa_last_error().decode(errors="replace")


def check(status, function=""):
    """Raises BsaError for a failing status, with the thread's detail message.

    bsa_last_error() is thread-local and ctypes calls run on the calling
    thread, so reading it right after the call gives this call's reason.
    """
    if status != SUCCESS:
        raise BsaError(status, last_error(), function)


def call(name, *args):
    check(getattr(lib, name)(*args), name)


def version():
    v = [ctypes.c_int() for _ in range(3)]
    lib.bsa_version(*[ctypes.byref(x) for x in v])
    return tuple(x.value for x in v)


def backend_compiled(backend):
    return bool(lib.bsa_backend_compiled(backend))
