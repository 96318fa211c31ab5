"""The recording versions of everything but ``Function.apply`` and the backward pass: tensor
births, ``.data`` and ``.grad``, the Python reads of values, module calls, the calls a replay
repeats as they are (optimizer and scheduler steps, ``zero_grad``) and the class targets of
the cross-entropy. Each one runs the original first or last and records beside it; each is
installed only for the duration of a recording (see ``_record``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .. import autograd
from ..functional import loss as loss_functional
from ..nn.container import ModuleList, Sequential
from ..nn.module import Module
from ..nn.normalization import _BatchNorm
from ..optim.lr_scheduler import LRScheduler
from ..optim.optimizer import Optimizer
from ..tensor import Tensor
from ._record import _VALUE_READERS, _active, _guarded, _outside_minigrad
from ._sources import Arg, Unreplayable


def install(patches: Any) -> None:
    """Put every recording wrapper of this module in place (``patches`` restores them)."""
    _births(patches)
    _data_and_grad(patches)
    for owner, names in _VALUE_READERS.items():
        for name in names:
            patches.put(owner, name, _value_reader(owner.__dict__[name], name))
    _modules(patches)
    for owner, name in ((Optimizer, "step"), (Optimizer, "zero_grad"), (Module, "zero_grad"),
                        (Tensor, "zero_grad"), (LRScheduler, "step"),
                        (_BatchNorm, "_count_batch")):
        patches.put(owner, name, _effect(owner.__dict__[name], owner, name))
    _class_targets(patches)
    for owner in (Optimizer, LRScheduler, Module):
        patches.put(owner, "__init__", _made_inside(owner.__dict__["__init__"], owner))


# --------------------------------------------------------------------- births
def _births(patches: Any) -> None:
    init = Tensor.__dict__["__init__"]
    from_op = Tensor.__dict__["_from_op"].__func__

    @functools.wraps(init)
    def recording_init(self, data, dtype=None, requires_grad=False):
        rec = _active()
        if rec is not None:
            rec.born.add(id(self))
            rec.keep.append(self)
            if isinstance(data, np.ndarray) and id(data) in rec.arg_ids:
                rec.from_arg[id(self)] = rec.arg_ids[id(data)]
        init(self, data, dtype, requires_grad)

    def recording_from_op(cls, data, ctx):
        t = from_op(cls, data, ctx)
        rec = _active()
        if rec is not None:
            rec.born.add(id(t))
            rec.keep.append(t)
        return t

    patches.put(Tensor, "__init__", recording_init)
    patches.put(Tensor, "_from_op", classmethod(recording_from_op))


# --------------------------------------------------------------------- .data and .grad
def _data_and_grad(patches: Any) -> None:
    data = Tensor.__dict__["data"]
    grad = Tensor.__dict__["grad"]
    requires_grad = Tensor.__dict__["requires_grad"]

    def get_data(self):
        rec = _active()
        if rec is not None:
            if _outside_minigrad():
                rec.value_read(".data")
            else:
                rec.reads[id(self._data)] = self
                rec.keep.append(self)
        return self._data

    def set_data(self, value):
        rec = _active()
        if rec is not None and id(self) not in rec.born:
            rec.refuse("the function assigns .data of a tensor")
        data.fset(self, value)

    def get_grad(self):
        return grad.__get__(self, Tensor)

    def set_grad(self, value):
        rec = _active()
        if rec is not None and id(self) not in rec.born and not rec.backward_depth:
            try:
                grad.__get__(self, Tensor)
            except AttributeError:  # a tensor being made (_from_op sets .grad first)
                pass
            else:
                _guarded(rec, _record_set_grad, rec, self, value)
        grad.__set__(self, value)

    def set_requires_grad(self, value):
        rec = _active()
        if rec is not None and id(self) not in rec.born:
            rec.refuse("the function changes requires_grad of a tensor")
        requires_grad.fset(self, value)

    patches.put(Tensor, "data", property(get_data, set_data, doc=data.__doc__))
    patches.put(Tensor, "grad", property(get_grad, set_grad))
    patches.put(Tensor, "requires_grad",
                property(requires_grad.fget, set_requires_grad, doc=requires_grad.__doc__))


def _record_set_grad(rec: Any, t: Tensor, value: Any) -> None:
    if value is not None:
        raise Unreplayable("the function assigns a tensor's .grad (only None can be replayed)")
    target = rec.source_of_tensor(t)
    if not isinstance(target, Arg) and type(target).__name__ != "External":
        raise Unreplayable("the function assigns .grad of a tensor made inside it")
    rec.steps.append(("clear_grad", target))


def _value_reader(original: Any, name: str) -> Any:
    @functools.wraps(original)
    def reader(self, *args, **kwargs):
        rec = _active()
        if rec is not None and (name != "__array__" or _outside_minigrad()):
            rec.value_read(f"Tensor.{name.strip('_')}")
        return original(self, *args, **kwargs)

    return reader


# --------------------------------------------------------------------- modules
def _modules(patches: Any) -> None:
    call = Module.__dict__["__call__"]
    train = Module.__dict__["train"]

    @functools.wraps(call)
    def recording_call(self, *args, **kwargs):
        rec = _active()
        if rec is not None:
            _guarded(rec, rec.note_module, self)
        return call(self, *args, **kwargs)

    @functools.wraps(train)
    def recording_train(self, mode=True):
        rec = _active()
        if rec is not None:
            rec.refuse("the function switches a module between train and eval")
        return train(self, mode)

    getattr_ = Module.__dict__["__getattr__"]

    @functools.wraps(getattr_)
    def recording_getattr(self, name):
        # parameters, buffers and sub-modules are read through here (``model.fc.weight``):
        # a module whose tensors the function reaches is guarded like a called one
        rec = _active()
        if rec is not None:
            _guarded(rec, rec.note_module, self)
        return getattr_(self, name)

    patches.put(Module, "__call__", recording_call)
    patches.put(Module, "__getattr__", recording_getattr)
    for container in (Sequential, ModuleList):  # model[0], iteration: the same reads
        for name in ("__getitem__", "__iter__"):
            patches.put(container, name, _noting(container.__dict__[name]))
    patches.put(Module, "train", recording_train)


def _noting(original: Any) -> Any:
    """A container read (``model[0]``, ``for layer in model``) notes the container."""

    @functools.wraps(original)
    def read(self, *args):
        rec = _active()
        if rec is not None:
            _guarded(rec, rec.note_module, self)
        return original(self, *args)

    return read


# --------------------------------------------------------------------- repeated calls
def _effect(original: Any, owner: type, name: str) -> Any:
    """A method a replay calls again as it is: it reads its state (learning rate, step
    counts, gradients) afresh and changes it exactly as eager code does."""

    @functools.wraps(original)
    def effect(self, *args, **kwargs):
        rec = _active()
        if rec is None:
            return original(self, *args, **kwargs)
        if getattr(type(self), name) is not effect:
            rec.refuse(f"{type(self).__name__} overrides {name}()")
            return original(self, *args, **kwargs)
        if any(callable(a) for a in (*args, *kwargs.values())):
            rec.refuse(f"{name}() with a closure")
            return original(self, *args, **kwargs)
        rec.steps.append(("call", functools.partial(original, self, *args, **kwargs)))
        rec.keep.append(self)
        clock = autograd._clock[0]
        rec.effect_depth += 1
        try:
            return original(self, *args, **kwargs)
        finally:
            rec.effect_depth -= 1
            rec.clock_allowed += autograd._clock[0] - clock
            rec.rng_drawn()

    return effect


def _made_inside(original: Any, owner: type) -> Any:
    """An optimizer, scheduler or module made inside the function would be made afresh by
    every eager call; a replay would keep using the one of the recording."""

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        rec = _active()
        if rec is not None:
            rec.refuse(f"the function makes a new {owner.__name__} ({type(self).__name__}) at "
                       "each call; make it once, outside")
        return original(self, *args, **kwargs)

    return init


def _class_targets(patches: Any) -> None:
    """The cross-entropy copies its targets: record where the copy came from, so a replay
    copies (and checks) the targets of each call."""
    original = loss_functional.__dict__["check_class_targets"]

    @functools.wraps(original)
    def recording_check(input_shape, target, ignore_index):
        owned = original(input_shape, target, ignore_index)
        rec = _active()
        if rec is not None:
            _guarded(rec, _record_targets, rec, original, input_shape, target, ignore_index,
                     owned)
        return owned

    patches.put(loss_functional, "check_class_targets", recording_check)


def _record_targets(rec, check, input_shape, target, ignore_index, owned) -> None:
    if isinstance(target, Tensor):
        source = rec.source_of_tensor(target)
    elif isinstance(target, np.ndarray):
        source = rec.held(target) if id(target) in rec.closed_over else \
            rec.source_of_array(target, "the class targets")
    else:
        raise Unreplayable("class targets given as a Python sequence inside the function")
    rec.steps.append(("targets", check, input_shape, source, ignore_index,
                      rec.new_slot(owned)))
