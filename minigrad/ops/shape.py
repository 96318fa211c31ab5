"""Shape ops: reshape (and flatten/squeeze/unsqueeze, which are reshapes), permute (and
transpose / .T), indexing, concat and stack. Forwards return NumPy views where NumPy does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from .. import autograd
from ..autograd import Function
from . import as_tensor, normalize_axis


class Reshape(Function):
    """y = x viewed with a new shape;  dx = g reshaped back to x's shape."""

    @staticmethod
    def forward(ctx, x, *, shape):
        ctx.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}"
            ) from None

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.in_shape)


class Permute(Function):
    """y = x with axes reordered;  dx = g with the inverse order."""

    @staticmethod
    def forward(ctx, x, *, axes):
        ctx.axes = axes
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, grad):
        return np.transpose(grad, np.argsort(ctx.axes))


class GetItem(Function):
    """y = x[index] (basic slicing and integer-array indexing);  dx = scatter-add of g.

    Repeated integer indices receive the sum of their gradients (``np.add.at``).
    """

    @staticmethod
    def forward(ctx, x, *, index):
        ctx.index, ctx.shape = index, x.shape
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        dx = np.zeros(ctx.shape, dtype=grad.dtype)
        if _is_basic(ctx.index):
            dx[ctx.index] = grad  # a basic index selects each element at most once
        else:
            np.add.at(dx, ctx.index, grad)
        return dx


class Concat(Function):
    """y = concatenation of the inputs along axis;  each dx is its slice of g."""

    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        ctx.bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.split(grad, ctx.bounds, axis=ctx.axis))


class Stack(Function):
    """y = the inputs stacked along a new axis;  each dx is g indexed along that axis."""

    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        return np.stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.moveaxis(grad, ctx.axis, 0))


class Cast(Function):
    """y = x converted to another dtype;  dx = g converted back."""

    @staticmethod
    def forward(ctx, x, *, dtype):
        ctx.in_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.astype(ctx.in_dtype)


def _is_basic(index: Any) -> bool:
    """True when an index uses only ints, slices, None and Ellipsis (no arrays or lists)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(
        isinstance(p, int | slice | np.integer) or p is None or p is Ellipsis for p in parts
    )


# ----------------------------------------------------------------------------- Tensor level


def reshape(x: Any, shape: Sequence[int]):
    """x with a new shape (one entry may be -1)."""
    return Reshape.apply(as_tensor(x), shape=tuple(int(s) for s in shape))


def permute(x: Any, axes: Sequence[int]):
    """x with its axes reordered; ``axes`` is a permutation of range(x.ndim)."""
    x = as_tensor(x)
    axes = tuple(int(a) for a in axes)
    if len(axes) != x.ndim or sorted(normalize_axis_tuple(axes, x.ndim)) != list(range(x.ndim)):
        raise ValueError(f"permute needs a permutation of {x.ndim} axes, got {axes}")
    return Permute.apply(x, axes=normalize_axis_tuple(axes, x.ndim))


def transpose(x: Any, axis0: int = -2, axis1: int = -1):
    """x with two axes swapped."""
    x = as_tensor(x)
    order = list(range(x.ndim))
    a, b = normalize_axis(axis0, x.ndim), normalize_axis(axis1, x.ndim)
    order[a], order[b] = order[b], order[a]
    return Permute.apply(x, axes=tuple(order))


def flatten(x: Any, start_dim: int = 0, end_dim: int = -1):
    """Merge axes start_dim..end_dim (inclusive) into one."""
    x = as_tensor(x)
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = normalize_axis(start_dim, x.ndim), normalize_axis(end_dim, x.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:start] + (-1,) + x.shape[end + 1 :]
    if x.size == 0:
        shape = x.shape[:start] + (int(np.prod(x.shape[start : end + 1])),) + x.shape[end + 1 :]
    return reshape(x, shape)


def squeeze(x: Any, axis: int | Sequence[int] | None = None):
    """Drop size-1 axes: all of them, or those in ``axis`` (which must have size 1)."""
    x = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        axes = normalize_axis_tuple(axis, x.ndim)
        wrong = [a for a in axes if x.shape[a] != 1]
        if wrong:
            raise ValueError(f"cannot squeeze axis {wrong[0]} of size {x.shape[wrong[0]]}")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


def unsqueeze(x: Any, axis: int):
    """Insert a size-1 axis so that it becomes axis ``axis`` of the result."""
    x = as_tensor(x)
    if axis is None:
        raise TypeError("unsqueeze needs an axis")
    position = normalize_axis(axis, x.ndim + 1)
    return reshape(x, x.shape[:position] + (1,) + x.shape[position:])


def getitem(x: Any, index: Any):
    """x[index]; Tensors inside the index are used as integer or boolean arrays."""
    Tensor = autograd.Tensor
    x = as_tensor(x)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    elif isinstance(index, list):
        index = np.asarray(index)
    return GetItem.apply(x, index=index)


def concat(tensors: Sequence[Any], axis: int = 0):
    """Join tensors along an existing axis (their other dims must match)."""
    tensors = _sequence(tensors, "concat")
    axis = normalize_axis(axis, tensors[0].ndim)
    _check_same_shapes(tensors, skip_axis=axis, op="concat")
    return Concat.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Any], axis: int = 0):
    """Join same-shaped tensors along a new axis."""
    tensors = _sequence(tensors, "stack")
    axis = normalize_axis(axis, tensors[0].ndim + 1)
    _check_same_shapes(tensors, skip_axis=None, op="stack")
    return Stack.apply(*tensors, axis=axis)


def _sequence(tensors: Sequence[Any], op: str) -> list:
    if len(tensors) == 0:
        raise ValueError(f"{op} needs at least one tensor")
    tensors = [as_tensor(t) for t in tensors]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        dtype = np.result_type(*dtypes)
        tensors = [cast(t, dtype) for t in tensors]
    return tensors


def cast(x: Any, dtype: Any):
    """x converted to ``dtype`` (differentiable between float dtypes)."""
    x = as_tensor(x)
    dtype = np.dtype(dtype)
    return x if x.dtype == dtype else Cast.apply(x, dtype=dtype)


def _check_same_shapes(tensors: list, skip_axis: int | None, op: str) -> None:
    def key(t):
        return tuple(n for i, n in enumerate(t.shape) if i != skip_axis), t.ndim

    first = key(tensors[0])
    for t in tensors[1:]:
        if key(t) != first:
            shapes = [t.shape for t in tensors]
            where = "" if skip_axis is None else f" except along axis {skip_axis}"
            raise ValueError(f"{op}: shapes must match{where}, got {shapes}")
