"""In-place Tensor methods (``+=``, ``x[i] = v``, ``add_`` ...) and the rules that keep them safe.

Every in-place change bumps the tensor's version, so a graph node that saved the old values
raises at backward instead of using the new ones. What the change does depends on the graph:

- grad mode off, or no tensor involved requires grad: the array is changed where it lies
  (``with mg.no_grad(): p -= lr * p.grad`` updates ``p`` itself);
- a leaf that requires grad, with grad mode on: ``RuntimeError`` (its gradient would be lost);
- otherwise (a tensor in a graph, or a value that requires grad written into a tensor): the
  change is recorded. The tensor's node becomes the out-of-place op applied to its previous
  value, so gradients flow as through ``c = c + 1``; consumers that used the tensor before
  still reach its previous node (``autograd._node_at``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import grad_mode, versions
from .functional import elementwise as ew
from .functional._convert import as_tensor, constant
from .ops import inplace as inplace_ops


class InplaceMixin:
    """The in-place half of Tensor's methods; each returns the tensor itself."""

    __slots__ = ()

    def __iadd__(self, other: Any):
        return self.add_(other)

    def __isub__(self, other: Any):
        return self.sub_(other)

    def __imul__(self, other: Any):
        return self.mul_(other)

    def __itruediv__(self, other: Any):
        return self.div_(other)

    def add_(self, other: Any):
        """self += other (broadcast to self's shape, cast to self's dtype)."""
        return _binary(self, other, np.add, ew.add, "add_")

    def sub_(self, other: Any):
        """self -= other (same broadcasting and casting as ``add_``)."""
        return _binary(self, other, np.subtract, ew.sub, "sub_")

    def mul_(self, other: Any):
        """self *= other (same broadcasting and casting as ``add_``)."""
        return _binary(self, other, np.multiply, ew.mul, "mul_")

    def div_(self, other: Any):
        """self /= other (true division: an integer tensor cannot hold the result)."""
        return _binary(self, other, np.true_divide, ew.div, "div_")

    def clamp_(self, min: float | None = None, max: float | None = None):
        """Clamp the values to [min, max] in place; the gradient passes where they were inside."""
        if min is None and max is None:
            raise ValueError("clamp_ needs at least one of min and max")
        return _change(self, (), "clamp_", lambda a: np.clip(a, min, max, out=a),
                       lambda prev: ew.clip(prev, min, max))

    def fill_(self, value: float):
        """Set every element to ``value``; no gradient flows to the old values."""
        if isinstance(value, InplaceMixin):
            value = value.item()
        return _change(self, (), "fill_", lambda a: a.fill(value),
                       lambda prev: inplace_ops.Fill.apply(prev, value=value))

    def zero_(self):
        """``fill_(0)``: no gradient flows to the old values."""
        return self.fill_(0)

    def copy_(self, src: Any):
        """Copy ``src`` (broadcast to self's shape, cast to self's dtype) into self;
        the gradient flows to src. Numbers that are not a Tensor are read at their own
        precision, so float64 data copied into a float64 tensor is not rounded to float32."""
        src = _copy_source(src)
        if src.shape != self.shape:
            _check_copy_shape(src.shape, self.shape)
        return _change(self, (src,), "copy_",
                       lambda a: np.copyto(a, src._data, casting="unsafe"),
                       lambda prev: inplace_ops.CopyFrom.apply(prev, src))

    def __setitem__(self, index: Any, value: Any) -> None:
        index = _plain_index(index)
        value = as_tensor(value, like=self)
        _change(self, (value,), "__setitem__", lambda a: a.__setitem__(index, value._data),
                lambda prev: inplace_ops.SetItem.apply(prev, value, index=_frozen(index)))


def _copy_source(src: Any):
    """``copy_``'s source as a Tensor: numeric data as is (the copy casts it to the target's
    dtype once), anything else through the one dtype rule, which names what it refuses."""
    plain = isinstance(src, np.ndarray | np.generic | int | float | list | tuple)
    if plain and np.asarray(src).dtype.kind in "biuf":
        return constant(np.asarray(src))
    return as_tensor(src)


def _check_copy_shape(source: tuple[int, ...], target: tuple[int, ...]) -> None:
    """A ``copy_`` source must broadcast to the target's shape without gaining dims, as in
    PyTorch: NumPy would also drop leading 1s of a (1, n) source for an (n,) target, and its
    gradient could not be given back in the source's shape."""
    try:
        fits = len(source) <= len(target) and np.broadcast_shapes(source, target) == target
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"copy_: a source of shape {source} does not broadcast to the shape "
                         f"{target} of the tensor it is copied into")


def _binary(t, other: Any, ufunc: np.ufunc, op: Callable, name: str):
    other = as_tensor(other, like=t)
    return _change(t, (other,), name, lambda a: ufunc(a, other._data, out=a),
                   lambda prev: op(prev, other))


def _change(t, others: tuple, name: str, in_place: Callable, recorded: Callable):
    """Apply one in-place change to ``t`` (see the module docstring) and bump its version."""
    if grad_mode._modes.grad_enabled and (
            t._requires_grad or any(o._requires_grad for o in others)):
        _record(t, name, recorded)
    else:
        in_place(t._data)
        versions.mark_changed(t)
    return t


def _record(t, name: str, recorded: Callable) -> None:
    """Make ``recorded(previous value of t)`` t's node and copy its result into t's array."""
    if t._ctx is None and t._requires_grad:
        raise RuntimeError(
            f"a leaf tensor that requires grad is being used in an in-place operation "
            f"({name}); its gradient would no longer match its values. Update it under "
            f"`with mg.no_grad():` (or through .data)"
        )
    if t._counter[1]:
        raise RuntimeError(
            f"{name}: in-place operation on a tensor of shape {t.shape} that shares its "
            "memory with another tensor (a view such as x[0:2] or x.reshape(...), or "
            "x.detach()) while recording a graph; the other tensor's gradient would be wrong. "
            "Use .clone() first"
        )
    if t._data.dtype.kind != "f":
        raise TypeError(
            f"{name}: cannot write a value that requires grad into a {t._data.dtype} tensor; "
            "only floating-point tensors can be part of a graph"
        )
    previous = type(t)._from_op(t._data.copy(), t._ctx)  # keeps t's node and old values
    result = recorded(previous)
    if result.shape != t.shape:
        raise ValueError(
            f"{name}: the result has shape {result.shape}, which does not fit in the tensor's "
            f"shape {t.shape}"
        )
    np.copyto(t._data, result._data, casting="same_kind")
    versions.mark_changed(t)
    node = result._ctx
    node.inplace_epoch = t._counter[2]  # consumers whose forward ran before skip this node
    t._ctx = node
    t._requires_grad = True


def _plain_index(index: Any) -> Any:
    """An index with Tensors replaced by their arrays and lists by arrays (as ``getitem``)."""
    if isinstance(index, tuple):
        return tuple(i._data if isinstance(i, InplaceMixin) else i for i in index)
    if isinstance(index, InplaceMixin):
        return index._data
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _frozen(index: Any) -> Any:
    """Copies of the index arrays a graph node keeps: the caller may change its own later."""
    if isinstance(index, tuple):
        return tuple(i.copy() if isinstance(i, np.ndarray) else i for i in index)
    return index.copy() if isinstance(index, np.ndarray) else index
