"""Selection: ``where(cond, a, b)``, differentiable in a and b, with broadcasting."""

from __future__ import annotations

import numpy as np

from ..autograd import Function


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
