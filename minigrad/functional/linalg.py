"""Matrix products on Tensors: matmul and linear, with the shapes checked and named."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops import linalg as ops
from ._convert import as_tensor
from ._rules import check_param_dtype


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
    return ops.MatMul.apply(a, b)


def linear(x: Any, weight: Any, bias: Any = None):
    """y = x @ weight.T + bias, the affine map of ``nn.Linear``.

    Shape: x (..., in_features), weight (out_features, in_features), bias (out_features,).
    x must have the parameters' float dtype (a float64 batch meeting float32 weights is an
    error, not a silent float64 model).
    """
    x, weight = as_tensor(x), as_tensor(weight)
    if weight.ndim != 2 or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            f"(expected input (..., {weight.shape[-1] if weight.ndim else '?'}))"
        )
    if bias is None:
        check_param_dtype(x, weight)
        return ops.Linear.apply(x, weight)
    bias = as_tensor(bias)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias shape {bias.shape}, expected ({weight.shape[0]},)")
    check_param_dtype(x, weight, bias)
    return ops.Linear.apply(x, weight, bias)
