"""Gradient checking: compare autograd's gradients with central finite differences in float64."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .grad_mode import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when an analytic gradient disagrees with the numeric one."""


def gradcheck(
    fn: Callable[..., Tensor],
    *inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Check ``fn``'s gradients against central differences, in float64.

    The output is contracted with a random cotangent c, L = sum(fn(*inputs) * c), so every
    output element matters. For each input that requires grad, each element is nudged by
    +-eps and dL/dx ~ (L(x + eps) - L(x - eps)) / (2 eps) is compared with autograd's value:
    it passes where |analytic - numeric| <= atol + rtol * |numeric|.

    Args:
        fn: maps Tensors to one Tensor.
        inputs: Tensors (those with requires_grad=True are checked) or other arguments,
            passed through unchanged. Float tensors are converted to float64 first; a float64
            tensor's array is used as is, so non-contiguous layouts are checked as given.

    Returns:
        True. Raises ``GradcheckError`` naming the input, the worst element, and its analytic
        and numeric values otherwise.
    """
    if not (math.isfinite(eps) and eps > 0):  # eps = 0 divides by zero, NaN compares False
        raise ValueError(f"gradcheck: eps must be a finite number > 0, got {eps!r}")
    if not (atol >= 0 and rtol >= 0):
        raise ValueError(f"gradcheck: atol and rtol must be >= 0, got {atol!r} and {rtol!r}")
    leaves = [_float64_leaf(x) for x in inputs]
    checked = [i for i, x in enumerate(leaves) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")

    out = fn(*leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    cotangent = np.random.default_rng(seed).standard_normal(out.shape)
    (out * Tensor(cotangent, dtype=out.dtype)).sum().backward()

    def objective() -> float:
        with no_grad():
            return float(np.sum(fn(*leaves).data.astype(np.float64) * cotangent))

    for i in checked:
        x = leaves[i]
        analytic = np.zeros(x.shape) if x.grad is None else x.grad.data.astype(np.float64)
        _compare(i, x.shape, analytic, _numeric_gradient(objective, x, eps), atol, rtol)
    return True


def _numeric_gradient(objective: Callable[[], float], x: Tensor, eps: float) -> np.ndarray:
    """Central differences (L(x + eps) - L(x - eps)) / (2 eps), one element at a time."""
    numeric = np.zeros(x.shape)
    for position in np.ndindex(*x.shape):
        original = x.data[position]
        x.data[position] = original + eps
        up = objective()
        x.data[position] = original - eps
        down = objective()
        x.data[position] = original
        numeric[position] = (up - down) / (2 * eps)
    return numeric


def _compare(i: int, shape: tuple[int, ...], analytic: np.ndarray, numeric: np.ndarray,
             atol: float, rtol: float) -> None:
    """Raise GradcheckError at the worst element beyond atol + rtol |numeric| (or non-finite)."""
    error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if error.size and (np.nanmax(error) > 0 or not np.all(np.isfinite(analytic))):
        worst = np.unravel_index(np.nanargmax(np.where(np.isfinite(error), error, np.inf)),
                                 shape)
        raise GradcheckError(
            f"gradcheck failed for input {i} (shape {shape}) at element {worst}: "
            f"analytic {analytic[worst]!r}, numeric {numeric[worst]!r} "
            f"(atol={atol}, rtol={rtol})"
        )


def _float64_leaf(x: Any) -> Any:
    """A fresh float64 leaf for a float Tensor; anything else is returned unchanged."""
    if not isinstance(x, Tensor) or x.dtype.kind != "f":
        return x
    data = x.data
    if data.dtype != np.float64 or not data.flags.writeable:
        data = data.astype(np.float64)
    return Tensor(data, dtype=np.float64, requires_grad=x.requires_grad)
