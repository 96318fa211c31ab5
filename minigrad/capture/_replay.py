"""A replay: the recorded steps turned into one straight-line Python function, and the guards
that decide whether it may run.

``Replay.run`` is the point of the whole package: a generated function with one line per
kernel-level call (``forward``/``backward`` of each Function on plain arrays, the sums of the
backward pass, leaf accumulation, the repeated optimizer calls), locals for the arrays, and
nothing else: no Tensor, Context or Function.apply per op, no graph, no topological sort.
Each op's forward and backward are the very functions eager code calls, with the same
arrays in the same order (or a fused call that computes the same operations, ``_fuse``), so
the results are the same bits. Every op allocates its outputs as in eager mode, so an array
handed to the caller is never overwritten by a later call.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np

from .. import random
from ..autograd import _accumulate_leaf, _fit, _ForwardOnly
from ..autograd import watched as _watched
from ..tensor import Tensor
from ._fuse import fuse
from ._sources import (
    EMPTY,
    MODULE_HOOKS,
    TENSOR_HOOKS,
    Arg,
    ClosureGuard,
    Constant,
    External,
    Generator,
    Slot,
    TensorGuard,
    Unreplayable,
    same_setting,
    same_value,
    watched_among,
)

# The hook slots the Tensor class has at all: looking up names it cannot have would cost a
# failed lookup per tensor per call.
_TENSOR_HOOKS = tuple(n for n in TENSOR_HOOKS if hasattr(Tensor, n))


class ReplayContext:
    """The context one op's forward and backward share during replays: the same attributes
    a Context offers a Function (``needs_input_grad``, ``inputs`` for their count,
    ``saved``), made once per recorded op and reused by every replay."""

    __slots__ = ("fn", "inputs", "needs_input_grad", "saved", "__dict__")

    def __init__(self, fn: type, needs_input_grad: tuple[bool, ...]):
        self.fn = fn
        self.inputs = (None,) * len(needs_input_grad)
        self.needs_input_grad = needs_input_grad
        self.saved: Any = ()

    def save_for_backward(self, *arrays: Any) -> None:
        self.saved = arrays

    def __repr__(self) -> str:
        return f"<{self.fn.__name__} replay node>"


class _Writer:
    """Source lines and the names they use, for one generated function."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"ndarray": np.ndarray, "asarray": np.asarray,
                                      "empty": np.empty, "array": np.array,
                                      "_random": random, "_fit": _fit,
                                      "_acc": _accumulate_leaf, "_NOCTX": _ForwardOnly(),
                                      "same_setting": same_setting, "_same": same_value}

    def bind(self, name: str, value: Any) -> str:
        self.names[name] = value
        return name

    def add(self, line: str) -> None:
        self.lines.append("    " + line)


def _expr(source: Any, tensor: bool = False) -> str:
    """The Python expression that yields a source's array (or, with ``tensor``, the
    Tensor object itself: leaves receive gradients as tensors)."""
    if isinstance(source, Slot):
        return f"s{source.index}"
    if isinstance(source, Arg):
        return f"a{source.index}" + ("._data" if source.data and not tensor else "")
    if isinstance(source, External):
        return f"e{source.index}" + ("" if tensor else "._data")
    if isinstance(source, Constant):
        return f"k{source.index}"
    if isinstance(source, Generator):
        return "_random._generator"
    raise TypeError(f"unknown source {source!r}")


def _forward(w: _Writer, k: int, step: tuple) -> None:
    _, cls, sources, attrs, needs, zero_d, out = step
    w.bind(f"F{k}", cls.forward)
    ctx = "_NOCTX" if needs is None else w.bind(f"c{k}", ReplayContext(cls, needs))
    if needs is not None:  # start from an empty context, as a fresh Context would
        w.add(f"{ctx}.__dict__.clear(); {ctx}.saved = ()")
    args = [ctx] + [_expr(s) for s in sources] + [f"{n}={_expr(s)}" for n, s in attrs.items()]
    w.add(f"s{out.index} = F{k}({', '.join(args)})  # {cls.__name__}")
    if zero_d:  # NumPy returns scalars from 0-d arithmetic; Function.apply wraps them
        w.add(f"if s{out.index}.__class__ is not ndarray: s{out.index} = asarray(s{out.index})")


def _backward(w: _Writer, k: int, step: tuple, steps: list) -> None:
    _, forward, grad, outs = step
    w.bind(f"B{k}", steps[forward][1].backward)
    w.add(f"r = B{k}(c{forward}, {_expr(grad)})  # {steps[forward][1].__name__} backward")
    w.add("if r.__class__ is not tuple: r = (r,)")
    for i, slot in enumerate(outs):
        if slot is not None:
            w.add(f"s{slot.index} = r[{i}]")
    w.add(f"c{forward}.saved = None")


def _leaf(w: _Writer, target: Any, source: Any, group: int) -> None:
    """Accumulate a gradient into a leaf (requires_grad, as the guards hold): the first
    gradient of a leaf whose ``.grad`` is None, an array nobody else holds, becomes its
    ``.grad`` inline (``_accumulate_leaf``'s common case, without the call); any other case
    calls ``_accumulate_leaf``."""
    t, g, h = _expr(target, tensor=True), _expr(source), f"h{group}"
    w.bind("_new_tensor", Tensor._from_op)
    w.add(f"if {t}.grad is None and {g}.__class__ is ndarray and {g}.base is None and "
          f"id({g}) not in {h} and {g}.flags.writeable: "
          f"{h}.add(id({g})); {t}.grad = _new_tensor({g}, None)")
    w.add(f"else: _acc({t}, {g}, {h})")


def _line(w: _Writer, k: int, step: tuple, steps: list) -> None:
    kind = step[0]
    if kind == "forward":
        _forward(w, k, step)
    elif kind == "fused":  # another step does this one's work
        pass
    elif kind == "backward":
        _backward(w, k, step, steps)
    elif kind == "fit":
        _, source, shape, dtype, out = step
        like = w.bind(f"d{k}", np.broadcast_to(np.empty((), dtype), shape))
        w.add(f"s{out.index} = _fit({_expr(source)}, {like})")
    elif kind == "add":
        _, a, b, out = step
        w.add(f"s{out.index} = {_expr(a)} + {_expr(b)}")
    elif kind == "handed":
        w.add(f"h{step[1]} = {{id({_expr(step[2])})}}")
    elif kind == "leaf":
        _leaf(w, *step[1:])
    elif kind == "seed":
        _, shape, dtype, out = step
        w.bind(f"shape{k}", shape)
        w.bind(f"dtype{k}", dtype)
        w.add(f"s{out.index} = empty(shape{k}, dtype{k}); s{out.index}.fill(1)")
    elif kind == "call":
        w.add(f"{w.bind(f'x{k}', step[1])}()")
    elif kind == "clear_grad":
        w.add(f"{_expr(step[1], tensor=True)}.grad = None")
    elif kind == "convert":
        _, index, dtype, out = step
        w.bind(f"dtype{k}", dtype)
        w.add(f"s{out.index} = array(a{index}, dtype=dtype{k}, copy=True, order='K')")
    elif kind == "targets":
        _, check, shape, source, ignore_index, out = step
        w.bind(f"T{k}", check)
        w.bind(f"shape{k}", shape)
        w.add(f"s{out.index} = T{k}(shape{k}, {_expr(source)}, {ignore_index!r})")
    else:
        raise TypeError(f"unknown step {kind!r}")


def generate(rec: Any, result: Any) -> tuple[Any, str]:
    """The replay function ``run(args)``, returning what the function returned, and its
    source."""
    w = _Writer()
    for i, t in enumerate(rec.externals):
        w.bind(f"e{i}", t)
    for i, c in enumerate(rec.constants):
        w.bind(f"k{i}", c)
    if rec.args:
        w.add(f"{', '.join(f'a{i}' for i in range(len(rec.args)))}, = args")
    returned = _returned(rec, result, w)
    steps = fuse(rec.steps, {int(i) for i in re.findall(r"\bs(\d+)\b", returned)},
                 rec.constants)
    for k, step in enumerate(steps):
        _line(w, k, step, steps)
    w.add(f"return {returned}")
    source = "def run(args):\n" + "\n".join(w.lines) + "\n"
    namespace = dict(w.names)
    exec(compile(source, "<mg.compile replay>", "exec"), namespace)  # noqa: S102
    return namespace["run"], source


# --------------------------------------------------------------------- returned values
_PLAIN = (bool, int, float, complex, str, bytes)  # returned as recorded: constants


def _returned(rec: Any, value: Any, w: _Writer) -> str:
    """The expression that rebuilds the function's return value after a replay: its tensors
    as new tensors over this replay's arrays, the same objects for tensors from outside."""
    if isinstance(value, Tensor):
        return _returned_tensor(rec, value, w)
    if type(value) in (tuple, list):
        items = "".join(f"{_returned(rec, v, w)}, " for v in value)
        return f"({items})" if type(value) is tuple else f"[{items}]"
    if type(value) is dict:
        items = ", ".join(f"{w.bind(f'K{len(w.names)}', k)}: {_returned(rec, v, w)}"
                          for k, v in value.items())
        return f"{{{items}}}"
    if isinstance(value, np.ndarray):
        raise Unreplayable("the function returns a NumPy array (return the tensor instead)")
    if isinstance(value, (tuple, list, dict)):
        raise Unreplayable(f"the function returns a {type(value).__name__}")
    if value is not None and type(value) not in _PLAIN and not isinstance(value, np.generic):
        # any other object would be the recording's own, holding the recording's values
        raise Unreplayable(f"the function returns a {type(value).__name__} (return tensors "
                           "and numbers in a tuple, list or dict)")
    return w.bind(f"R{len(w.names)}", value)


def _returned_tensor(rec: Any, t: Tensor, w: _Writer) -> str:
    ctx = t._ctx
    if ctx is not None and ctx.saved is not None:
        raise Unreplayable("the function returns a tensor whose graph it did not run backward "
                           "through (call backward inside the function, or use no_grad)")
    # a leaf's gradient first: it may have existed before the recording (then it is no
    # tensor made inside) and be another object at a later call (zero_grad set it to None)
    for i, a in enumerate(rec.args):
        if isinstance(a, Tensor) and a.grad is t:
            return f"a{i}.grad"
    for i, leaf in enumerate(rec.externals):
        if leaf.grad is t:
            return f"e{i}.grad"
    if id(t) not in rec.born:  # a tensor from outside, returned as itself
        return w.bind(f"R{len(w.names)}", t)
    index = rec.produced.get(id(t._data))
    if index is not None:
        w.bind("_new_tensor", Tensor._from_op)
        return f"_new_tensor(s{index}, None)"
    raise Unreplayable("the function returns a tensor a recording cannot trace")


# --------------------------------------------------------------------- guards
def _closure_guards(w: _Writer, closure: ClosureGuard) -> None:
    """Lines that fail when a closure cell, a global the code names, an attribute of a
    compiled method's object or a plain attribute the code reads of an object it reaches no
    longer holds what the recording saw."""
    filled = [(c, v) for c, v in zip(closure.cells, closure.values, strict=True)
              if v is not EMPTY]
    if filled:
        w.add("try:")
        for i, (cell, value) in enumerate(filled):
            w.add(f"    x = {w.bind(f'Z{i}', cell)}.cell_contents")
            w.add(f"    if x is not {w.bind(f'W{i}', value)} and not _same(x, W{i}): "
                  "return False")
        w.add("except ValueError: return False  # a cell emptied since")
    g = w.bind("G", closure.globals)
    for i, (name, value) in enumerate(zip(closure.names, closure.global_values, strict=True)):
        w.add(f"x = {g}.get({name!r})")
        w.add(f"if x is not {w.bind(f'N{i}', value)} and not _same(x, N{i}): return False")
    if closure.settings or closure.reads or len(filled) < len(closure.cells):  # rare: Python
        w.bind("closure", closure)
        w.add("if closure.broken() is not None: return False")


def generate_guards(tensors: list[TensorGuard], modules: list[Any],
                    closure: ClosureGuard) -> Any:
    """One generated function that says whether every tensor and module a replay reads is
    as recorded: shape, dtype, requires_grad and leaf-ness of each tensor, mode and the
    identity of the parameters, buffers and sub-modules of each module, no hooks. It is the
    fast path of ``Replay.broken``; the guard objects explain a failure."""
    w = _Writer()
    for i, g in enumerate(tensors):
        t, d = w.bind(f"t{i}", g.tensor), f"d{i}"
        w.bind(f"S{i}", g.shape)
        w.bind(f"L{i}", g.strides)
        w.bind(f"D{i}", g.dtype)
        w.add(f"{d} = {t}._data")
        w.add(f"if {d}.__class__ is not ndarray or {d}.shape != S{i} or {d}.strides != L{i} or "
              f"({d}.dtype is not D{i} and {d}.dtype != D{i}) or "
              f"{t}._requires_grad is not {g.requires_grad} or {t}._ctx is not None: "
              "return False")
        for name in _TENSOR_HOOKS:
            w.add(f"if {t}.{name}: return False")
    for i, g in enumerate(modules):
        m = w.bind(f"m{i}", g.module)
        w.add(f"if {m}.training is not {g.training}: return False")
        for registry, kept in (("_parameters", g.params), ("_buffers", g.buffers),
                               ("_modules", g.children)):
            checks = [f"len(v) != {len(kept)}"]
            for j, (key, value) in enumerate(zip(getattr(g.module, registry), kept,
                                                 strict=True)):
                checks.append(f"v.get({key!r}) is not {w.bind(f'V{i}{registry}{j}', value)}")
            w.add(f"v = {m}.{registry}")
            w.add(f"if {' or '.join(checks)}: return False")
        w.add(f"h = {m}.__dict__")
        # a hook collection made since the recording changes the dict's size; one that
        # existed (empty) then is looked at
        w.add(f"if len(h) != {len(g.module.__dict__)}: return False")
        for name in MODULE_HOOKS:
            if name in g.module.__dict__:
                w.add(f"if h.get({name!r}): return False")
        for j, (key, value) in enumerate(g.settings.items()):
            kept = w.bind(f"A{i}_{j}", value)
            w.add(f"x = h.get({key!r})")
            w.add(f"if x is not {kept} and not same_setting(x, {kept}): return False")
    _closure_guards(w, closure)
    w.add("return True")
    namespace = dict(w.names)
    exec(compile("def hold():\n" + "\n".join(w.lines) + "\n", "<mg.compile guards>", "exec"),
         namespace)  # noqa: S102
    return namespace["hold"]


# --------------------------------------------------------------------- the replay
class Replay:
    """One recorded call, ready to run again: the generated function and its guards."""

    def __init__(self, rec: Any, result: Any, keep_args: tuple):
        self.run, self.source = generate(rec, result)
        self.tensors = [TensorGuard(t) for t in rec.externals]
        self.modules = list(rec.modules.values())
        self.closure = ClosureGuard(rec.fn)
        self.guards_hold = generate_guards(self.tensors, self.modules, self.closure)
        self.keep_args = keep_args  # objects whose id is part of the cache key
        self.n_steps = len(rec.steps)
        self.pinned = _pinned(rec, self.modules, self.closure)
        self.watchable = [*rec.externals, *(a for a in rec.args if isinstance(a, Tensor))]
        self.lock = threading.Lock()  # the contexts are shared: one replay at a time

    def broken(self, args: tuple) -> str | None:
        """Why this replay may not run now (something it relies on changed), or None."""
        if self.pinned:
            for i, t in self.pinned:
                if args[i] is not t:
                    return (f"argument {i} was a tensor the function also reaches from "
                            "outside (a parameter, a closed-over tensor) when recorded, and "
                            "is not now")
        if _watched and watched_among(self.watchable):  # (no hook anywhere: one test)
            return "a tensor the function reads has hooks (register_hook, retain_grad)"
        if self.guards_hold():
            return None
        for guard in (*self.tensors, *self.modules, self.closure):
            reason = guard.broken()
            if reason is not None:
                return reason
        return "a tensor or module the function reads changed"

    def __call__(self, args: tuple) -> Any:
        """The function's result, replayed; ``_BUSY`` when another thread (or a recursive
        call) is replaying it right now and the caller must run the function eagerly."""
        if not self.lock.acquire(blocking=False):
            return _BUSY
        try:
            return self.run(args)
        finally:
            self.lock.release()


_BUSY = object()


def _pinned(rec: Any, modules: list[Any], closure: ClosureGuard) -> list[tuple[int, Tensor]]:
    """Tensor arguments that are also parameters, buffers or closed-over tensors: the
    recording read them as arguments, so a replay is right only with those same objects."""
    inside = {id(v) for g in modules for v in (*g.params, *g.buffers)}
    inside.update(id(v) for v in (*closure.values, *closure.global_values))
    return [(i, a) for i, a in enumerate(rec.args)
            if isinstance(a, Tensor) and id(a) in inside]
