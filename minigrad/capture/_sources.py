"""Where an array of a recorded call comes from, and the guards a replay checks first.

A recording names every array an op reads by its *source*: an earlier step's output (a
slot), an argument of the call, the ``_data`` of a tensor that lives outside the call (a
parameter, a buffer, a tensor the function closes over), a frozen constant, or minigrad's
random generator. A replay reads the last three afresh on every call, so nothing that eager
code would read again is frozen. No recording logic lives here, only these small records.
"""

from __future__ import annotations

import operator
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import autograd


class Unreplayable(Exception):
    """Raised while recording: the call did something a replay could not repeat."""


@dataclass(frozen=True)
class Slot:
    """The output array of an earlier step (index into the replay's locals)."""

    index: int


@dataclass(frozen=True)
class Arg:
    """Positional argument ``index`` of the call: its array (``data``) or the object itself."""

    index: int
    data: bool  # True: the argument is a Tensor and its ``_data`` is meant


@dataclass(frozen=True)
class External:
    """``tensors[index]._data`` read at replay time: a tensor that lives outside the call."""

    index: int


@dataclass(frozen=True)
class Constant:
    """``constants[index]``, frozen at recording (Python numbers turned into tensors)."""

    index: int


@dataclass(frozen=True)
class Generator:
    """minigrad's global random generator, looked up at replay time (``manual_seed`` may
    have replaced it)."""


# Where a module or a tensor may keep hooks: a replay never runs Python hooks, so an object
# holding a non-empty one is not replayed. Modules keep them in their instance dict; a
# tensor in one of its slots.
MODULE_HOOKS = ("_hooks", "_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                "_full_backward_hooks")
TENSOR_HOOKS = ("_hooks", "_grad_hooks", "_backward_hooks", "_post_hooks", "_retains_grad")


def hook_holder(obj: Any) -> str | None:
    """The name of a non-empty hook collection ``obj`` holds, or None."""
    d = getattr(obj, "__dict__", None)
    if d is not None:  # a module (a dict lookup: Module.__getattr__ misses are slow)
        for name in MODULE_HOOKS:
            if d.get(name):
                return name
        return None
    for name in TENSOR_HOOKS:
        if getattr(obj, name, None):
            return name
    return None


def watched_among(objects: Any) -> bool:
    """Whether the engine's hook registry (``autograd.watched``, by id) holds any of
    ``objects``: tensor hooks or ``retain_grad``."""
    watched = autograd.watched
    return bool(watched) and any(id(o) in watched for o in objects)


def observed() -> bool:
    """Whether an observer (the profiler, a backward trace) wants to see every op."""
    return bool(autograd.observers)


def same_value(a: Any, b: Any) -> bool:
    """Identity, or equality of plain Python values (a float closure variable recomputed to
    the same value is the same input); for a list or dict, the same items."""
    if a is b:
        return True
    if type(b) is Contents:
        return b.holds(a)
    kind = type(a)
    return kind is type(b) and kind in (int, float, str, bool, complex) and a == b


_REGISTRIES = frozenset({"_parameters", "_buffers", "_modules", "training", *MODULE_HOOKS})
PLAIN = (int, float, str, bool, complex, type(None), np.generic)


class Contents:
    """A list or dict as the recording saw it: the object and what it held. Python code may
    pick tensors or modules out of it (``self.blocks[i]``, ``params[0]``), so a replay needs
    the same items, not only the same container."""

    __slots__ = ("obj", "items")

    def __init__(self, obj: Any):
        self.obj = obj
        self.items = tuple(obj.items()) if type(obj) is dict else tuple(obj)

    def holds(self, value: Any) -> bool:
        if value is not self.obj:
            return False
        now = tuple(value.items()) if type(value) is dict else tuple(value)
        return len(now) == len(self.items) and all(
            (a[0] == b[0] and a[1] is b[1]) if type(value) is dict else a is b
            for a, b in zip(now, self.items, strict=True))


def snapshot(value: Any) -> Any:
    """``value``, or its ``Contents`` for a list or dict."""
    return Contents(value) if type(value) in (list, dict) else value


def settings(obj: Any) -> dict[str, Any]:
    """An object's own attributes other than a module's registries and mode: the settings a
    recording may have read (Dropout's ``p``, BatchNorm's ``eps`` and ``momentum`` ...)."""
    return {k: v for k, v in getattr(obj, "__dict__", {}).items() if k not in _REGISTRIES}


def same_setting(value: Any, kept: Any) -> bool:
    """Identity, the same items for a list or dict, or equality for plain values and tuples
    of them."""
    if value is kept:
        return True
    if type(kept) is Contents:
        return kept.holds(value)
    if isinstance(kept, tuple) and all(isinstance(v, PLAIN) for v in kept):
        return type(value) is tuple and value == kept
    return isinstance(kept, PLAIN) and type(value) is type(kept) and bool(value == kept)


class ModuleGuard:
    """A module called during the recording: its mode, its settings and the identity of its
    parameters, buffers and sub-modules, which a replay needs unchanged."""

    __slots__ = ("module", "training", "params", "buffers", "children", "settings")

    def __init__(self, module: Any):
        self.module = module
        self.training = module.training
        self.params = tuple(module._parameters.values())
        self.buffers = tuple(module._buffers.values())
        self.children = tuple(module._modules.values())
        self.settings = {k: snapshot(v) for k, v in settings(module).items()}

    def broken(self) -> str | None:
        """Why the module no longer matches its recording, or None."""
        m = self.module
        if (m.training is self.training and _same_values(m._parameters, self.params)
                and _same_values(m._buffers, self.buffers)
                and _same_values(m._modules, self.children) and not hook_holder(m)
                and _same_settings(m, self.settings)):
            return None
        if m.training != self.training:
            mode = "training" if m.training else "eval"
            return f"{type(m).__name__} was switched to {mode} mode since the recording"
        for registry, kept, what in ((m._parameters, self.params, "parameter"),
                                     (m._buffers, self.buffers, "buffer"),
                                     (m._modules, self.children, "sub-module")):
            if len(registry) != len(kept) or not all(
                    map(operator.is_, registry.values(), kept)):
                return f"a {what} of {type(m).__name__} was replaced since the recording"
        hooks = hook_holder(m)
        if hooks is not None:
            return f"{type(m).__name__} has hooks ({hooks}); a replay does not run them"
        if not _same_settings(m, self.settings):
            return f"a setting of {type(m).__name__} changed since the recording"
        return None


def _same_settings(obj: Any, kept: dict[str, Any]) -> bool:
    now = settings(obj)
    return now.keys() == kept.keys() and all(same_setting(now[k], v) for k, v in kept.items())


def _same_values(registry: dict, kept: tuple) -> bool:
    return len(registry) == len(kept) and all(map(operator.is_, registry.values(), kept))


class TensorGuard:
    """A tensor read from outside the call: shape, dtype, requires_grad and leaf-ness."""

    __slots__ = ("tensor", "shape", "strides", "dtype", "requires_grad")

    def __init__(self, tensor: Any):
        self.tensor = tensor
        self.shape = tensor._data.shape
        self.strides = tensor._data.strides
        self.dtype = tensor._data.dtype
        self.requires_grad = tensor._requires_grad

    def broken(self) -> str | None:
        t = self.tensor
        data = t._data
        if type(data) is not np.ndarray or data.shape != self.shape or data.dtype != self.dtype:
            return (f"a tensor the function reads changed from {self.dtype} {self.shape} to "
                    f"{getattr(data, 'dtype', '?')} {getattr(data, 'shape', '?')}")
        if data.strides != self.strides:
            return "a tensor the function reads has a new memory layout"
        if t._requires_grad is not self.requires_grad:
            return "requires_grad of a tensor the function reads changed"
        if t._ctx is not None:
            return "a tensor the function reads is now the output of a graph"
        hooks = hook_holder(t)
        if hooks is not None:
            return f"a tensor the function reads has hooks ({hooks})"
        return None


class ClosureGuard:
    """The objects a plain function reaches through its closure cells and the globals its
    code names: rebinding one (``lr = 0.1`` then ``lr = 0.01``) changes what the function
    computes without changing any argument, so the replay must not be used."""

    __slots__ = ("cells", "values", "names", "globals", "global_values", "owner", "settings",
                 "reads")

    def __init__(self, fn: Any):
        self.owner = getattr(fn, "__self__", None)  # a bound method: its object's settings
        owned = settings(self.owner) if self.owner is not None else {}
        self.settings = {k: snapshot(v) for k, v in owned.items()}
        self.cells = tuple(getattr(fn, "__closure__", None) or ())
        self.values = tuple(snapshot(_cell(c)) for c in self.cells)
        code = getattr(fn, "__code__", None)
        self.globals = getattr(fn, "__globals__", {})
        self.names = tuple(n for n in (code.co_names if code else ()) if n in self.globals)
        self.global_values = tuple(snapshot(self.globals[n]) for n in self.names)
        reached = [_cell(c) for c in self.cells] + [self.globals[n] for n in self.names]
        self.reads = _attribute_reads(reached, code.co_names if code else ())

    def broken(self) -> str | None:
        for cell, value in zip(self.cells, self.values, strict=True):
            if not same_value(_cell(cell), value):
                return "a variable the function closes over was rebound"
        g = self.globals
        for name, value in zip(self.names, self.global_values, strict=True):
            if not same_value(g.get(name), value):
                return f"the global {name!r} the function reads was rebound"
        if self.settings and not _same_settings(self.owner, self.settings):
            return "an attribute of the object whose method was compiled changed"
        for obj, name, value in self.reads:
            if not same_setting(getattr(obj, "__dict__", {}).get(name, EMPTY), value):
                return f"the attribute {name!r} of an object the function reads changed"
        return None


_NOT_SETTINGS = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
                 types.MethodType)


def _attribute_reads(objects: list, names: tuple) -> tuple:
    """(object, name, value) for each plain value the code may read as an attribute of an
    object it reaches (``cfg.scale``): a number read that way is a constant of the record, so
    a changed value must record again. Modules are guarded by their own ``ModuleGuard``."""
    reads = []
    for obj in objects:
        attrs = getattr(obj, "__dict__", None)
        if type(attrs) is not dict or isinstance(obj, _NOT_SETTINGS) or "_modules" in attrs:
            continue
        reads += [(obj, n, attrs[n]) for n in names
                  if n in attrs and isinstance(attrs[n], PLAIN)]
    return tuple(reads)


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell (a variable assigned later)
        return EMPTY


EMPTY = object()
