"""Selection: ``where(cond, a, b)``, differentiable in a and b, with broadcasting."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function
from . import as_tensor
from .elementwise import _operands


class Where(Function):
    """y = a where cond else b;  da = g where cond (0 elsewhere), db = g where not cond.

    cond is an input like a and b (never differentiated) so that changing it in place after
    the forward is caught by the version check.
    """

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, grad):
        (cond,) = ctx.saved
        zero = np.zeros((), dtype=grad.dtype)
        da = np.where(cond, grad, zero) if ctx.needs_input_grad[1] else None
        db = np.where(cond, zero, grad) if ctx.needs_input_grad[2] else None
        return None, da, db


def where(cond: Any, a: Any, b: Any):
    """Elementwise ``a if cond else b``; cond must be boolean; a and b broadcast with it.

    A scalar a or b takes the other's dtype; two tensors of different float dtypes promote
    as in NumPy (float32 with float64 gives float64).
    """
    cond = as_tensor(cond)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: cond must be a boolean tensor, got dtype {cond.dtype}")
    a, b = _operands(a, b)
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: shapes {cond.shape} (cond), {a.shape} (a) and {b.shape} (b) do not "
            "broadcast together"
        ) from None
    return Where.apply(cond, a, b)
