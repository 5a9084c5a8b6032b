"""Contexts, compiled-layout handles and plans: the C handles behind the API.

A C layout belongs to one context (one backend and device), and a plan to
one layout.  A Python ``Layout`` may be used on the CPU and on several GPUs,
so it compiles one C layout per context on first use and keeps the plans
that use it next to it; both are released together when the Layout is
garbage-collected.  Contexts live as long as the process: they are few
(one per backend and device) and destroying them at interpreter exit would
race with the CUDA runtime's own teardown.

Every Layout (and every other layout source, such as the per-length preset
layouts of ``bsa.nn.SparseAttention``) also gets a process-wide integer id,
never reused, by which the torch custom op names it: a traced graph can hold
an int, not a Python object (see torch_ops.py).
"""

import collections
import contextlib
import ctypes
import itertools
import threading
import weakref

from . import _lib
from ._lib import call

_lock = threading.RLock()
_contexts = {}


def context(backend, device=0):
    """The process-wide C context of (backend, device), created on first use."""
    key = (backend, device)
    with _lock:
        ctx = _contexts.get(key)
        if ctx is None:
            handle = ctypes.c_void_p()
            params = _lib.ContextParams(backend, device, 0)
            call("bsa_context_create", ctypes.byref(handle), ctypes.byref(params))
            ctx = _contexts[key] = handle.value
        return ctx


def cpu_context():
    return context(_lib.BACKEND_CPU, 0)


_sources = weakref.WeakValueDictionary()  # id -> layout source, alive while its owner is
_next_id = itertools.count(1)


def register(source):
    """A new id for a layout source, held weakly: lookup(id) gives the
    source while something else keeps it alive, then None.  Ids are never
    reused, so an id that outlives its source can never name another one."""
    with _lock:
        sid = next(_next_id)
        _sources[sid] = source
        return sid


def lookup(sid):
    return _sources.get(sid)


def _release(state):
    """Destroys the plans, then the layouts, of one Layout (finalizer)."""
    for entry in state["plans"].values():
        _lib.lib.bsa_plan_destroy(entry[0])
    state["plans"].clear()
    for handle in state["layouts"].values():
        _lib.lib.bsa_layout_destroy(handle)
    state["layouts"].clear()


class Handles:
    """The C layouts (one per context) and plans of one Python Layout.

    ``build(ctx)`` returns a new C layout handle for that context; it is
    called at most once per context.
    """

    max_plans = 64  # plans are small, but shapes can vary without bound

    def __init__(self, owner, build):
        self._build = build
        self.id = register(owner)
        self._state = {"layouts": {}, "plans": collections.OrderedDict()}
        self._finalizer = weakref.finalize(owner, _release, self._state)
        self._finalizer.atexit = False  # the process is ending: let the OS reclaim

    def layout(self, ctx):
        with _lock:
            handle = self._state["layouts"].get(ctx)
            if handle is None:
                handle = self._state["layouts"][ctx] = self._build(ctx)
            return handle

    def _entry(self, ctx, desc, key):
        plans = self._state["plans"]
        entry = plans.get((ctx, key))
        if entry is not None:
            plans.move_to_end((ctx, key))
            return entry
        layout = self.layout(ctx)
        handle = ctypes.c_void_p()
        call("bsa_plan_create", ctx, ctypes.byref(handle), ctypes.byref(desc), layout)
        ws = ctypes.c_size_t()
        _lib.check(_lib.lib.bsa_plan_workspace_size(handle, ctypes.byref(ws)))
        entry = plans[(ctx, key)] = [handle.value, ws.value, 0, False]  # users, evicted
        while len(plans) > self.max_plans:
            _, old = plans.popitem(last=False)
            if old[2]:
                old[3] = True  # in use on another thread: its last user destroys it
            else:
                _lib.lib.bsa_plan_destroy(old[0])
        return entry

    @contextlib.contextmanager
    def plan(self, ctx, desc, key):
        """A plan for desc (an AttnDesc) on ctx, cached under key, held for the
        duration of the with-block: ``with h.plan(...) as (plan, ws_bytes)``."""
        with _lock:
            entry = self._entry(ctx, desc, key)
            entry[2] += 1
        try:
            yield entry[0], entry[1]
        finally:
            with _lock:
                entry[2] -= 1
                if entry[3] and not entry[2]:
                    _lib.lib.bsa_plan_destroy(entry[0])


def plan_implementation(plan):
    name = ctypes.c_char_p()
    call("bsa_plan_implementation", plan, ctypes.byref(name))
    return name.value.decode()


def plan_explain(plan):
    """bsa_plan_explain's text: why the plan runs what it runs."""
    n = ctypes.c_size_t()
    call("bsa_plan_explain", plan, None, 0, ctypes.byref(n))  # the length
    buf = ctypes.create_string_buffer(n.value + 1)
    call("bsa_plan_explain", plan, buf, len(buf), ctypes.byref(n))
    return buf.value.decode(errors="replace")
