"""Shape Functions: reshape (flatten/squeeze/unsqueeze are reshapes), permute (transpose, .T),
indexing, concat, stack and cast. Forwards return NumPy views where NumPy does."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function


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

    Repeated integer indices receive the sum of their gradients (``np.add.at``). The index is
    kept for backward as given: the caller passes arrays the graph owns (``functional.getitem``
    copies the caller's).
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
