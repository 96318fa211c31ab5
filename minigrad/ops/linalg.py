"""Matrix products: matmul (with NumPy's batching and 1-D rules) and the fused linear layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Function
from . import as_tensor


class MatMul(Function):
    """y = a @ b (NumPy semantics);  da = g @ b^T, db = a^T @ g, batch dims summed back."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        # Treat 1-D operands as matrices (a row for a, a column for b), as matmul does.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = grad
        if b.ndim == 1:
            g2 = g2[..., None]
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = np.matmul(g2, np.swapaxes(b2, -1, -2))
            da = _sum_to(da, a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            db = np.matmul(np.swapaxes(a2, -1, -2), g2)
            db = _sum_to(db, b2.shape).reshape(b.shape)
        return da, db


def _sum_to(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum broadcast batch dimensions of a matmul gradient back to ``shape``."""
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    stretched = tuple(i for i, n in enumerate(shape[:-2]) if n == 1 and x.shape[i] != 1)
    return x.sum(axis=stretched, keepdims=True) if stretched else x


class Linear(Function):
    """y = x @ W^T + b for x of shape (..., in), W (out, in), b (out,).

    dx = g @ W, dW = g^T x (over all leading dims), db = sum of g. One node, two matmuls
    in backward, no transposed copies.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        y = x @ weight.T
        if bias is not None:
            y = y + bias if bias.dtype != y.dtype else np.add(y, bias, out=y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved
        needs = ctx.needs_input_grad
        dx = grad @ weight if needs[0] else None
        dw = db = None
        if needs[1]:
            dw = grad.reshape(-1, grad.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        if len(needs) > 2 and needs[2]:
            db = grad.reshape(-1, grad.shape[-1]).sum(axis=0)
        return dx, dw, db


def matmul(a: Any, b: Any):
    """Matrix product with NumPy's rules (batched, broadcasting, 1-D vectors)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul needs at least 1-D operands, got shapes {a.shape} and {b.shape}"
        )
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if inner_a != inner_b:
        raise ValueError(
            f"matmul shape mismatch: {a.shape} @ {b.shape} (inner dimensions {inner_a} and "
            f"{inner_b} differ)"
        )
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul batch dimensions do not broadcast: {a.shape} @ {b.shape}"
        ) from None
    return MatMul.apply(a, b)


def linear(x: Any, weight: Any, bias: Any = None):
    """y = x @ weight.T + bias, the affine map of ``nn.Linear``.

    Shape: x (..., in_features), weight (out_features, in_features), bias (out_features,).
    """
    x, weight = as_tensor(x), as_tensor(weight)
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            f"(expected input (..., {weight.shape[-1] if weight.ndim else '?'}))"
        )
    if bias is None:
        return Linear.apply(x, weight)
    bias = as_tensor(bias)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias shape {bias.shape}, expected ({weight.shape[0]},)")
    return Linear.apply(x, weight, bias)
