"""Functions behind in-place changes recorded in a graph: clone, fill, copy and item assignment.

An in-place op on a tensor that is part of a graph is recorded as the out-of-place Function
applied to the tensor's previous value (see ``minigrad.inplace``); these are the ones that have
no out-of-place twin among the arithmetic ops.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function


class Clone(Function):
    """y = a copy of x with its own memory;  dx = g."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


class Fill(Function):
    """y = value everywhere (``fill_``, ``zero_``);  no gradient reaches x."""

    @staticmethod
    def forward(ctx, x, *, value):
        return np.full(x.shape, value, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return None


class CopyFrom(Function):
    """y = src broadcast to x's shape and cast to x's dtype (``copy_``);  dsrc = g, dx = 0."""

    @staticmethod
    def forward(ctx, x, src):
        out = np.empty_like(x)
        np.copyto(out, src, casting="unsafe")
        return out

    @staticmethod
    def backward(ctx, grad):
        return None, grad


class SetItem(Function):
    """y = x with y[index] = v;  dx = g with the assigned positions zeroed, dv = g[index].

    With repeated integer indices NumPy keeps one of the values written to a position; only
    that element of v receives the position's gradient (``ctx.winners`` marks them).
    """

    @staticmethod
    def forward(ctx, x, v, *, index):
        out = x.copy()
        out[index] = v
        ctx.index = index
        ctx.winners = None if _is_basic(index) else _winners(x.shape, index)
        return out

    @staticmethod
    def backward(ctx, grad):
        dx = dv = None
        if ctx.needs_input_grad[0]:
            dx = grad.copy()
            dx[ctx.index] = 0
        if ctx.needs_input_grad[1]:
            dv = grad[ctx.index]
            if ctx.winners is not None:
                dv = np.where(ctx.winners, dv, 0)
            # v was broadcast to (or had leading 1s dropped for) the indexed shape: the engine
            # brings dv back to v's shape (autograd.unbroadcast)
        return dx, dv


def _winners(shape: tuple[int, ...], index) -> np.ndarray:
    """For an advanced index: True where an element of the indexed shape is the write NumPy
    kept (the last of a repeated position), found by writing element numbers the same way."""
    marker = np.full(shape, -1, dtype=np.int64)
    count = np.empty(shape, dtype=np.int8)[index].shape
    numbers = np.arange(int(np.prod(count)), dtype=np.int64).reshape(count)
    marker[index] = numbers
    return marker[index] == numbers


def _is_basic(index) -> bool:
    """True when an index uses only ints, slices, None and Ellipsis (no arrays or lists)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(
        isinstance(p, int | slice | np.integer) or p is None or p is Ellipsis for p in parts
    )
