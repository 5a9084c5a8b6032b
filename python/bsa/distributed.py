"""Context parallelism: one sequence sharded over the ranks of a
``torch.distributed`` process group (CPU tensors; the gloo backend).

Each rank passes its shard of q, k, v (``[batch, heads, T/P, dim]``, the
rows given by :meth:`DistPlan.positions`) and gets its shard of the output;
the layout is the whole sequence's, the same on every rank::

    plan = bsa.distributed.plan_for(q, k, v, layout, group)   # collective
    rows = plan.positions()            # this rank's sequence positions
    o = bsa.distributed.attention(q_all[:, :, rows], k_all[:, :, rows],
                                  v_all[:, :, rows], layout, group)
    o.sum().backward()                 # differentiable: dq, dk, dv of the shard

Under it is the C library's dist plan (README "Context parallelism") over
a communicator whose sends, receives and all-gathers are the group's
(``bsa_comm_create_callbacks``): the same exchange schedule, log-sum-exp
merge and deterministic gradient sums as with MPI.  Every call is
collective: all ranks of the group call it in the same order.
"""

import ctypes
import itertools
import threading
import weakref

from . import _core, _lib
from ._lib import BsaError, call

_P = ctypes.POINTER
_vp = ctypes.c_void_p

SHARDINGS = {"auto": 0, "contiguous": 1, "zigzag": 2}
EXCHANGES = {"auto": 0, "ring": 1, "allgather": 2}


class CommMessage(ctypes.Structure):
    _fields_ = [
        ("peer", ctypes.c_int),
        ("send", ctypes.c_int),
        ("buf", _vp),
        ("bytes", ctypes.c_size_t),
    ]


POST = ctypes.CFUNCTYPE(
    ctypes.c_int, _vp, _P(CommMessage), ctypes.c_int, ctypes.c_int, _P(_vp)
)
WAIT = ctypes.CFUNCTYPE(ctypes.c_int, _vp, _vp)
ALLGATHER = ctypes.CFUNCTYPE(ctypes.c_int, _vp, _vp, ctypes.c_size_t, _vp)


class CommCallbacks(ctypes.Structure):
    _fields_ = [("post", POST), ("wait", WAIT), ("allgather", ALLGATHER)]


class DistParams(ctypes.Structure):
    _fields_ = [("sharding", ctypes.c_int), ("exchange", ctypes.c_int)]


class DistInfo(ctypes.Structure):
    _fields_ = [
        ("rank", ctypes.c_int),
        ("size", ctypes.c_int),
        ("sharding", ctypes.c_int),
        ("exchange", ctypes.c_int),
        ("shard_len", ctypes.c_int64),
        ("peers_needed", ctypes.c_int),
        ("blocks_local", ctypes.c_int64),
        ("blocks_max", ctypes.c_int64),
        ("buffer_bytes", ctypes.c_size_t),
    ]


_protos = {
    "bsa_comm_create_callbacks": (
        ctypes.c_int,
        [_P(_vp), ctypes.c_int, ctypes.c_int, _P(CommCallbacks), _vp],
    ),
    "bsa_comm_destroy": (ctypes.c_int, [_vp]),
    "bsa_dist_plan_create": (
        ctypes.c_int,
        [_vp, _P(_vp), _P(_lib.AttnDesc), _vp, _vp, _P(DistParams)],
    ),
    "bsa_dist_plan_destroy": (ctypes.c_int, [_vp]),
    "bsa_dist_plan_info": (ctypes.c_int, [_vp, _P(DistInfo)]),
    "bsa_dist_plan_implementation": (ctypes.c_int, [_vp, _P(ctypes.c_char_p)]),
    "bsa_dist_shard_positions": (ctypes.c_int, [_vp, ctypes.c_int, _vp]),
    "bsa_dist_forward": (ctypes.c_int, [_vp, _P(_lib.FwdArgs), _vp]),
    "bsa_dist_backward": (ctypes.c_int, [_vp, _P(_lib.BwdArgs), _vp]),
}
for _name, (_res, _args) in _protos.items():
    _f = getattr(_lib.lib, _name)
    _f.restype = _res
    _f.argtypes = _args


def _torch():
    import torch  # noqa: PLC0415 - optional dependency
    import torch.distributed as dist  # noqa: PLC0415

    return torch, dist


class _GroupComm:
    """A bsa communicator over a torch.distributed group (host memory)."""

    def __init__(self, group):
        torch, dist = _torch()
        self.torch, self.dist, self.group = torch, dist, group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.requests = {}
        self.ids = itertools.count(1)
        self.error = None
        # the CFUNCTYPE objects must live as long as the C communicator
        self.callbacks = CommCallbacks(POST(self._post), WAIT(self._wait), ALLGATHER(self._allgather))
        handle = _vp()
        call(
            "bsa_comm_create_callbacks",
            ctypes.byref(handle),
            self.rank,
            self.size,
            ctypes.byref(self.callbacks),
            None,
        )
        self.handle = handle.value

    def _global(self, r):
        if self.group is None:
            return r
        return self.dist.get_global_rank(self.group, r)

    def _view(self, address, nbytes):
        """The C buffer as a uint8 tensor sharing its memory."""
        if nbytes == 0:
            return self.torch.empty(0, dtype=self.torch.uint8)
        buf = (ctypes.c_uint8 * nbytes).from_address(address)
        return self.torch.frombuffer(buf, dtype=self.torch.uint8)

    def _post(self, user, messages, n, tag, request):
        try:
            works = []
            for i in range(n):
                m = messages[i]
                t = self._view(m.buf, m.bytes)
                peer = self._global(m.peer)
                op = self.dist.isend if m.send else self.dist.irecv
                works.append((op(t, peer, group=self.group, tag=tag), t))
            rid = next(self.ids)
            self.requests[rid] = works
            request[0] = rid
            return 0
        except Exception as e:  # noqa: BLE001 - reported through the status
            self.error = e
            return 1

    def _wait(self, user, rid):
        try:
            for work, _ in self.requests.pop(rid, []):
                work.wait()
            return 0
        except Exception as e:  # noqa: BLE001
            self.error = e
            return 1

    def _allgather(self, user, src, nbytes, out):
        try:
            torch = self.torch
            mine = self._view(src, nbytes).clone()
            parts = [torch.empty(nbytes, dtype=torch.uint8) for _ in range(self.size)]
            self.dist.all_gather(parts, mine, group=self.group)
            for r, part in enumerate(parts):
                ctypes.memmove(out + r * nbytes, part.data_ptr(), nbytes)
            return 0
        except Exception as e:  # noqa: BLE001
            self.error = e
            return 1

    def check(self, status, function):
        """Raises for a failing status; a failed callback's exception is the cause."""
        if status != _lib.SUCCESS:
            error, self.error = self.error, None
            raise BsaError(status, _lib.last_error(), function) from error


def _release(handles):
    plan, comm = handles
    if plan:
        _lib.lib.bsa_dist_plan_destroy(plan)
    if comm:
        _lib.lib.bsa_comm_destroy(comm)


_DTYPES = {}


def _dtype_code(torch, t):
    if not _DTYPES:
        _DTYPES.update({torch.float32: 0, torch.float16: 1, torch.bfloat16: 2})
    if t.dtype not in _DTYPES:
        raise TypeError(f"bsa.distributed: {t.dtype} tensors are not supported (float32, float16, bfloat16)")
    return _DTYPES[t.dtype]


def _desc(t):
    d = _lib.TensorDesc()
    for i in range(4):
        d.dims[i] = t.shape[i]
        d.strides[i] = t.stride(i)
    return d


class DistPlan:
    """A C dist plan for one set of shard shapes on one group."""

    def __init__(self, q, k, v, layout, group, scale, sharding, exchange):
        torch, _ = _torch()
        for name, t in (("q", q), ("k", k), ("v", v)):
            if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.device.type != "cpu":
                raise TypeError(f"bsa.distributed: {name} must be a 4-d CPU torch tensor [batch, heads, T/P, dim]")
        if sharding not in SHARDINGS or exchange not in EXCHANGES:
            raise ValueError(
                f"bsa.distributed: sharding must be one of {sorted(SHARDINGS)} and exchange one of "
                f"{sorted(EXCHANGES)}; got {sharding!r}, {exchange!r}"
            )
        self.layout = layout  # kept alive: the plan uses its C layout
        self.comm = _GroupComm(group)
        ctx = _core.cpu_context()
        desc = _lib.AttnDesc()
        desc.dtype = _dtype_code(torch, q)
        desc.q, desc.k, desc.v = _desc(q), _desc(k), _desc(v)
        o_shape = _lib.TensorDesc()
        n = q.shape[2]
        dv = v.shape[3]
        for i, (dim, st) in enumerate(
            zip((q.shape[0], q.shape[1], n, dv), (q.shape[1] * n * dv, n * dv, dv, 1))
        ):
            o_shape.dims[i], o_shape.strides[i] = dim, st
        desc.o = o_shape
        desc.scale = 0.0 if scale is None else float(scale)
        params = DistParams(SHARDINGS[sharding], EXCHANGES[exchange])
        handle = _vp()
        status = _lib.lib.bsa_dist_plan_create(
            ctx, ctypes.byref(handle), ctypes.byref(desc), layout.handle(ctx), self.comm.handle, ctypes.byref(params)
        )
        if status != _lib.SUCCESS:
            _lib.lib.bsa_comm_destroy(self.comm.handle)
            self.comm.check(status, "bsa_dist_plan_create")
        self.handle = handle.value
        self._finalizer = weakref.finalize(self, _release, (self.handle, self.comm.handle))
        self._finalizer.atexit = False
        info = DistInfo()
        call("bsa_dist_plan_info", self.handle, ctypes.byref(info))
        self.info = info
        name = ctypes.c_char_p()
        call("bsa_dist_plan_implementation", self.handle, ctypes.byref(name))
        self.implementation = name.value.decode()
        self.lock = threading.Lock()

    @property
    def sharding(self):
        return {v: k for k, v in SHARDINGS.items()}[self.info.sharding]

    def positions(self, rank=None):
        """The sequence positions of rank's rows (default: this rank), a list."""
        n = self.info.shard_len
        pos = (ctypes.c_int64 * n)()
        call("bsa_dist_shard_positions", self.handle, self.info.rank if rank is None else rank, pos)
        return list(pos)

    def forward(self, q, k, v, o, lse):
        args = _lib.FwdArgs(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr())
        with self.lock:
            self.comm.check(_lib.lib.bsa_dist_forward(self.handle, ctypes.byref(args), None), "bsa_dist_forward")

    def backward(self, q, k, v, o, lse, do, dq, dk, dv):
        args = _lib.BwdArgs(*(t.data_ptr() for t in (q, k, v, o, lse, do, dq, dk, dv)))
        with self.lock:
            self.comm.check(_lib.lib.bsa_dist_backward(self.handle, ctypes.byref(args), None), "bsa_dist_backward")


_plans = {}
_plans_lock = threading.Lock()


def plan_for(q, k, v, layout, group=None, *, scale=None, sharding="auto", exchange="auto"):
    """The dist plan for these shard shapes (created on first use, then cached;
    collective when it is created)."""
    key = (
        id(layout),
        id(group),
        tuple(q.shape),
        tuple(k.shape),
        tuple(v.shape),
        str(q.dtype),
        scale,
        sharding,
        exchange,
    )
    with _plans_lock:
        plan = _plans.get(key)
        if plan is None or plan.layout is not layout:
            plan = _plans[key] = DistPlan(q, k, v, layout, group, scale, sharding, exchange)
        return plan


def _function():
    torch, _ = _torch()

    class _DistAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, plan):
            q, k, v = (t.contiguous() for t in (q, k, v))
            o = torch.empty(q.shape[:3] + (v.shape[3],), dtype=q.dtype)
            lse = torch.empty(q.shape[:3], dtype=torch.float32)
            plan.forward(q, k, v, o, lse)
            ctx.save_for_backward(q, k, v, o, lse)
            ctx.plan = plan
            return o

        @staticmethod
        def backward(ctx, do):
            q, k, v, o, lse = ctx.saved_tensors
            do = do.contiguous()
            dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
            ctx.plan.backward(q, k, v, o, lse, do, dq, dk, dv)
            return dq, dk, dv, None

    return _DistAttention


_fn = []


def attention(q, k, v, layout, group=None, *, scale=None, sharding="auto", exchange="auto"):
    """This rank's shard of block-sparse attention over the whole sequence.

    q, k, v: CPU torch tensors ``[batch, heads, T/P, dim]`` holding the rows
    at ``plan_for(...).positions()`` (k/v may have fewer heads dividing q's).
    layout: a ``bsa.Layout`` of the whole sequence (T = P * T/P), the same
    on every rank.  group: a torch.distributed process group (None: the
    default one).  Returns o ``[batch, heads, T/P, dv]``; differentiable.
    Collective: every rank of the group calls it, in the same order.
    """
    if not _fn:
        _fn.append(_function())
    q, k, v = (t.contiguous() for t in (q, k, v))
    plan = plan_for(q, k, v, layout, group, scale=scale, sharding=sharding, exchange=exchange)
    return _fn[0].apply(q, k, v, plan)
