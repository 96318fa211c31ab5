"""Shape functions on Tensors: reshape, permute, transpose, flatten, squeeze, unsqueeze,
indexing, concat, stack and cast; each checks its axes, then calls one Function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from .. import tensor as _tensor  # read at call time: see _convert
from ..ops import shape as ops
from ._convert import as_tensor
from ._rules import normalize_axis


def reshape(x: Any, shape: Sequence[int]):
    """x with a new shape (one entry may be -1)."""
    return ops.Reshape.apply(as_tensor(x), shape=tuple(int(s) for s in shape))


def permute(x: Any, axes: Sequence[int]):
    """x with its axes reordered; ``axes`` is a permutation of range(x.ndim)."""
    x = as_tensor(x)
    axes = tuple(int(a) for a in axes)
    if len(axes) != x.ndim or sorted(normalize_axis_tuple(axes, x.ndim)) != list(range(x.ndim)):
        raise ValueError(f"permute needs a permutation of {x.ndim} axes, got {axes}")
    return ops.Permute.apply(x, axes=normalize_axis_tuple(axes, x.ndim))


def transpose(x: Any, axis0: int = -2, axis1: int = -1):
    """x with two axes swapped."""
    x = as_tensor(x)
    order = list(range(x.ndim))
    a, b = normalize_axis(axis0, x.ndim), normalize_axis(axis1, x.ndim)
    order[a], order[b] = order[b], order[a]
    return ops.Permute.apply(x, axes=tuple(order))


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
    """x[index]; Tensors inside the index are used as integer or boolean arrays.

    Index arrays are copied: backward scatters through them, so a caller who reuses the array
    after the forward must not change the gradient.
    """
    Tensor = _tensor.Tensor
    x = as_tensor(x)
    if isinstance(index, tuple):
        index = tuple(_owned(i, Tensor) for i in index)
    else:
        index = _owned(index, Tensor)
    return ops.GetItem.apply(x, index=index)


def _owned(part: Any, Tensor: type) -> Any:
    """One part of an index, with arrays (and lists, and Tensors) as a private copy."""
    if isinstance(part, Tensor):
        return part.data.copy()
    if isinstance(part, np.ndarray | list):
        return np.array(part)
    return part


def concat(tensors: Sequence[Any], axis: int = 0):
    """Join tensors along an existing axis (their other dims must match)."""
    tensors = _sequence(tensors, "concat")
    axis = normalize_axis(axis, tensors[0].ndim)
    _check_same_shapes(tensors, skip_axis=axis, op="concat")
    return ops.Concat.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Any], axis: int = 0):
    """Join same-shaped tensors along a new axis."""
    tensors = _sequence(tensors, "stack")
    axis = normalize_axis(axis, tensors[0].ndim + 1)
    _check_same_shapes(tensors, skip_axis=None, op="stack")
    return ops.Stack.apply(*tensors, axis=axis)


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
    return x if x.dtype == dtype else ops.Cast.apply(x, dtype=dtype)


def _check_same_shapes(tensors: list, skip_axis: int | None, op: str) -> None:
    def key(t):
        return tuple(n for i, n in enumerate(t.shape) if i != skip_axis), t.ndim

    first = key(tensors[0])
    for t in tensors[1:]:
        if key(t) != first:
            shapes = [t.shape for t in tensors]
            where = "" if skip_axis is None else f" except along axis {skip_axis}"
            raise ValueError(f"{op}: shapes must match{where}, got {shapes}")
