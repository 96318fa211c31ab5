"""Recording one eager call of a compiled function as a flat list of steps.

While a call is recorded, a few class attributes are swapped for recording versions (only in
the recording thread; every other thread and every other moment runs the untouched engine):

- ``Function.apply`` records each op: its Function, where each input array comes from
  (see ``_sources``), its attributes, its output slot, and the Context it made;
- ``Tensor.backward`` runs the recording copy of the backward pass (``_backward``);
- ``Optimizer.step``, ``Optimizer.zero_grad``, ``Module.zero_grad``, ``Tensor.zero_grad``,
  ``LRScheduler.step``, BatchNorm's batch counter and ``p.grad = None`` are recorded as
  calls that a replay repeats as they are (so the learning rate, the step count and every
  state array are read afresh);
- the ways Python can read a tensor's values (``item``, ``numpy``, ``bool``, ``float``,
  comparisons, ``.data`` from outside minigrad's ops ...) mark the recording unreplayable:
  a replay would follow the recorded path whatever the values; so do in-place changes,
  random draws outside ops, and optimizers, schedulers or modules made inside the call;
- ``Module.__call__`` notes each module's mode, settings and parameters, which a replay
  checks; tensor births are noted, to tell tensors made inside from tensors from outside.

The wrappers themselves live in ``_wrappers`` and ``_backward``.

The call itself runs eagerly and returns its true result; a problem found on the way is
kept in ``problem`` and reported by the caller once the call is done.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

from .. import autograd, kernels, random
from ..autograd import Function
from ..conversion import ConversionMixin
from ..nn.module import Module
from ..tensor import Tensor
from ._sources import (
    Arg,
    ClosureGuard,
    Constant,
    External,
    Generator,
    ModuleGuard,
    Slot,
    Unreplayable,
    hook_holder,
    watched_among,
)

# Modules whose reads of ``.data`` are part of an op the replay repeats (argument rules that
# hand a buffer's array to the op, tensor creation) rather than Python looking at values.
_INTERNAL = ("minigrad.functional", "minigrad.ops", "minigrad.autograd", "minigrad.tensor",
             "minigrad.creation", "minigrad.optim", "minigrad.capture", "minigrad.inplace")

_VALUE_READERS = {
    ConversionMixin: ("item", "tolist", "__bool__", "__float__", "__int__", "__array__",
                      "_arg"),
    Tensor: ("numpy", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"),
}


class Recorder:
    """The steps of one call, and what the replay must read and check."""

    def __init__(self, fn: Any, args: tuple):
        self.fn, self.args = fn, args
        self.thread = threading.get_ident()
        self.problem: str | None = None
        self.steps: list[tuple] = []
        self.n_slots = 0
        self.produced: dict[int, int] = {}  # id(array) -> slot
        self.keep: list[Any] = []  # everything whose id is a key above stays alive
        self.externals: list[Tensor] = []
        self.external_index: dict[int, int] = {}
        self.constants: list[Any] = []
        self.born: set[int] = set()  # ids of the tensors made during the call
        self.from_arg: dict[int, int] = {}  # id(tensor made from an ndarray argument) -> index
        self.reads: dict[int, Tensor] = {}  # id(array) -> tensor whose .data gave it
        self.modules: dict[int, ModuleGuard] = {}
        self.contexts: dict[int, int] = {}  # id(Context) -> index of its forward step
        self.effect_depth = 0
        self.backward_depth = 0
        self.clock_allowed = 0
        self.seed: Any = None
        self.arg_ids = {id(a): i for i, a in enumerate(args)
                        if isinstance(a, (Tensor, np.ndarray))}
        self.arg_data = {id(a._data): i for i, a in enumerate(args) if isinstance(a, Tensor)}
        self.clock_at_start = autograd._clock[0]
        self.impl = kernels.impl
        self.closed_over = {id(v) for v in _reachable(fn) if isinstance(v, np.ndarray)}
        self._generator = random._generator
        self._rng_state = self._generator.bit_generator.state

    # ----------------------------------------------------------------- bookkeeping
    def live(self) -> bool:
        """Whether the current thread's work is being recorded right now."""
        return (self.problem is None and self.effect_depth == 0
                and threading.get_ident() == self.thread)

    def refuse(self, reason: str) -> None:
        if self.problem is None:
            self.problem = reason

    def new_slot(self, array: Any) -> Slot:
        slot = Slot(self.n_slots)
        self.n_slots += 1
        self.produced[id(array)] = slot.index
        self.keep.append(array)
        return slot

    def constant(self, value: Any) -> Constant:
        self.constants.append(value)
        return Constant(len(self.constants) - 1)

    def held(self, array: np.ndarray) -> Constant:
        """An array the function reaches through a closure cell or a global: the same object
        is read again at each replay (its current values), as eager code would."""
        return self.constant(array)

    def external(self, t: Tensor) -> External:
        index = self.external_index.get(id(t))
        if index is None:
            if t._ctx is not None and t._requires_grad:
                raise Unreplayable("the function uses a tensor from a graph built outside it")
            index = self.external_index[id(t)] = len(self.externals)
            self.externals.append(t)
        return External(index)

    def check_rng(self) -> None:
        """Random numbers drawn outside the recorded ops (``mg.randn`` inside the function)
        would be frozen into the replay."""
        gen = random._generator
        if gen is not self._generator:
            raise Unreplayable("the function reseeds minigrad's random generator")
        state = gen.bit_generator.state
        if state != self._rng_state:
            raise Unreplayable("the function draws random numbers outside minigrad's ops "
                               "(mg.rand, mg.randn ...), which a replay would freeze")

    def rng_drawn(self) -> None:
        self._rng_state = random._generator.bit_generator.state

    # ----------------------------------------------------------------- sources
    def source_of_tensor(self, t: Tensor) -> Any:
        """Where the array of an op's input tensor comes from."""
        slot = self.produced.get(id(t._data))
        if slot is not None:
            return Slot(slot)
        index = self.arg_ids.get(id(t))
        if index is not None:
            return Arg(index, True)
        if id(t) in self.born:
            return self._born_source(t)
        return self.external(t)

    def _born_source(self, t: Tensor) -> Any:
        if t._requires_grad:
            raise Unreplayable("the function makes a tensor that requires grad inside it")
        index = self.from_arg.get(id(t))
        if index is not None:
            source = self.args[index]
            again = np.array(source, dtype=t._data.dtype, copy=True, order="K")
            if again.shape == t._data.shape and np.array_equal(again, t._data, equal_nan=True):
                self.steps.append(("convert", index, t._data.dtype, self.new_slot(t._data)))
                return Slot(self.produced[id(t._data)])
        index = self.arg_ids.get(id(t._data))
        if index is not None:
            return Arg(index, False)
        if t._data.size <= 1:  # a Python number turned into a tensor by an op's wrapper
            return self.constant(t._data)
        raise Unreplayable(
            f"a {t._data.dtype} tensor of shape {t._data.shape} made inside the function "
            "from data a recording cannot trace (a NumPy array, a comparison, a creation "
            "function); pass it as an argument")

    def source_of_array(self, a: np.ndarray, what: str) -> Any:
        """Where an array handed to an op as an attribute comes from."""
        slot = self.produced.get(id(a))
        if slot is not None:
            return Slot(slot)
        index = self.arg_ids.get(id(a))
        if index is not None:
            return Arg(index, False)
        index = self.arg_data.get(id(a))
        if index is not None:
            return Arg(index, True)
        owner = self.reads.get(id(a))
        if owner is not None and id(owner) not in self.born:
            return self.external(owner)
        raise Unreplayable(f"{what}: an array made inside the function, which a replay "
                           "would freeze")

    def attr_source(self, value: Any, what: str) -> Any:
        if isinstance(value, np.ndarray):
            return self.source_of_array(value, what)
        if isinstance(value, np.random.Generator):
            return Generator() if value is random._generator else self.constant(value)
        if isinstance(value, Tensor):
            return self.source_of_tensor(value)
        if isinstance(value, (tuple, list)) and any(
                isinstance(v, (np.ndarray, Tensor, np.random.Generator)) for v in value):
            raise Unreplayable(f"{what}: a sequence holding arrays")
        return self.constant(value)

    # ----------------------------------------------------------------- steps
    def record_forward(self, cls: type, inputs: tuple, attrs: dict, result: Tensor) -> None:
        sources = tuple(self.source_of_tensor(t) for t in inputs)
        attr_sources = {k: self.attr_source(v, f"{cls.__name__}'s {k}")
                        for k, v in attrs.items()}
        ctx = result._ctx
        out = result._data
        if ctx is not None:
            self.contexts[id(ctx)] = len(self.steps)
            self.keep.append(ctx)
        self.steps.append(("forward", cls, sources, attr_sources,
                           None if ctx is None else ctx.needs_input_grad,
                           type(out) is np.ndarray and out.ndim == 0, self.new_slot(out)))

    def note_module(self, module: Module) -> None:
        if id(module) not in self.modules:
            hooks = hook_holder(module)
            if hooks is not None:
                raise Unreplayable(f"{type(module).__name__} has hooks ({hooks}); a replay "
                                   "does not run them")
            self.modules[id(module)] = ModuleGuard(module)
            self.keep.append(module)

    def value_read(self, what: str) -> None:
        self.refuse(f"the function reads tensor values in Python ({what}); a replay would "
                    "follow the recorded path whatever the values")


def _reachable(fn: Any) -> list[Any]:
    """The values of ``fn``'s closure cells and of the globals its code names."""
    guard = ClosureGuard(fn)
    return [*guard.values, *guard.global_values]


# --------------------------------------------------------------------- the patches
_current: Recorder | None = None
_lock = threading.Lock()


def _active() -> Recorder | None:
    rec = _current
    return rec if rec is not None and rec.live() else None


def _guarded(rec: Recorder, action, *args) -> Any:
    """Run a recording action; an Unreplayable stops the recording (the call goes on)."""
    try:
        return action(*args)
    except Unreplayable as exc:
        rec.refuse(str(exc))
        return None


def _outside_minigrad(depth: int = 2) -> bool:
    name = sys._getframe(depth).f_globals.get("__name__", "")
    return not name.startswith(_INTERNAL)


class _Patches:
    """Swap the recording versions in, and the originals back."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, str, Any]] = []

    def put(self, owner: type, name: str, new: Any) -> Any:
        old = owner.__dict__[name]
        self.saved.append((owner, name, old))
        setattr(owner, name, new)
        return old

    def restore(self) -> None:
        for owner, name, old in reversed(self.saved):
            setattr(owner, name, old)
        self.saved.clear()


def _install(patches: _Patches) -> None:
    from . import _backward, _wrappers

    apply = patches.put(Function, "apply", classmethod(_recording_apply)).__func__
    _recording_apply.original = apply
    _backward.install(patches)
    _wrappers.install(patches)


def _recording_apply(cls, *inputs, **attrs):
    rec = _active()
    if rec is None:
        return _recording_apply.original(cls, *inputs, **attrs)
    if rec.backward_depth:
        rec.refuse("an op ran inside backward (a double-backward graph)")
        return _recording_apply.original(cls, *inputs, **attrs)
    if autograd._modes.anomaly:
        rec.refuse("detect_anomaly is on")
    if kernels.impl is not rec.impl:
        rec.refuse("the function switches the kernel backend (mg.set_backend)")
    _guarded(rec, rec.check_rng)
    result = _recording_apply.original(cls, *inputs, **attrs)
    if rec.problem is None:
        rec.rng_drawn()
        _guarded(rec, rec.record_forward, cls, inputs, attrs, result)
    return result


def record(fn: Any, args: tuple, kwargs: dict) -> tuple[Recorder, Any]:
    """Run ``fn(*args, **kwargs)`` eagerly while recording it; returns the recorder (whose
    ``problem`` says why it cannot be replayed, if so) and the call's result."""
    global _current
    if _current is not None:  # a compiled function called inside another one's recording
        return None, fn(*args, **kwargs)
    rec = Recorder(fn, args)
    patches = _Patches()
    with _lock:
        _current = rec
        _install(patches)
    clock = autograd._clock[0]
    try:
        result = fn(*args, **kwargs)
    finally:
        with _lock:
            patches.restore()
            _current = None
    if rec.problem is None:
        _guarded(rec, rec.check_rng)
    if rec.problem is None and kernels.impl is not rec.impl:
        rec.refuse("the function switches the kernel backend (mg.set_backend)")
    if rec.problem is None and watched_among([*rec.externals, *rec.keep]):
        rec.refuse("the function reads or makes tensors with hooks (register_hook, "
                   "retain_grad); a replay does not run them")
    if rec.problem is None and autograd._clock[0] - clock != rec.clock_allowed:
        rec.refuse("a tensor was changed in place inside the function (other than by the "
                   "optimizer's step)")
    return rec, result
