"""Training utilities that act on parameters' gradients: clip_grad_norm_."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def clip_grad_norm_(
    parameters: Iterable[Any] | Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale all gradients in place so that their joint norm is at most ``max_norm``.

    total = (sum over every gradient element of |g|**norm_type) ** (1 / norm_type)
    (max |g| for ``norm_type=inf``); when total > max_norm every gradient is multiplied by
    max_norm / (total + 1e-6), as PyTorch does. Parameters without a gradient are skipped.

    Args:
        parameters: an iterable of Tensors (e.g. ``model.parameters()``) or a single Tensor.
        max_norm: the largest norm allowed (>= 0).
        norm_type: p of the p-norm (> 0), or ``float("inf")``.
        error_if_nonfinite: raise RuntimeError if the total norm is nan or inf (otherwise
            the gradients are scaled by nan or 0, as in PyTorch).

    Returns:
        The total norm of the gradients before clipping, as a Python float (computed in
        float64; 0.0 when no parameter has a gradient).

    Example:
        >>> loss.backward()
        >>> total = clip_grad_norm_(model.parameters(), max_norm=1.0)
        >>> opt.step()
    """
    if hasattr(parameters, "data") and hasattr(parameters, "grad"):
        parameters = [parameters]
    norm_type = float(norm_type)
    if not (norm_type > 0):
        raise ValueError(f"norm_type must be > 0 or inf, got {norm_type}")
    if not (float(max_norm) >= 0):
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")

    grads = _gradients(parameters)
    if not grads:
        return 0.0
    total = _total_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is {total}; "
            "set error_if_nonfinite=False to clip anyway"
        )
    coef = float(max_norm) / (total + 1e-6)
    if coef < 1.0 or math.isnan(coef):
        for g in grads:
            g *= coef
    return total


def _gradients(parameters: Iterable[Any]) -> list[np.ndarray]:
    """The gradient arrays of the parameters that have one (their own memory, scaled in place)."""
    grads = []
    for i, p in enumerate(parameters):
        if not hasattr(p, "grad"):
            raise TypeError(
                f"clip_grad_norm_ expects Tensors (e.g. model.parameters()), got "
                f"{type(p).__name__} at index {i}"
            )
        grad = p.grad
        if grad is not None:
            grads.append(grad if isinstance(grad, np.ndarray) else grad.data)
    return grads


def _total_norm(grads: list[np.ndarray], norm_type: float) -> float:
    """(sum of |g|**p over every element) ** (1/p), or max |g| for p = inf."""
    # Accumulate in float64: a float32 sum of squares of many small gradients loses digits.
    if math.isinf(norm_type):
        return max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
    if norm_type == 2.0:
        return math.sqrt(sum(float(np.vdot(g64, g64)) for g64 in map(_flat64, grads)))
    powered = sum(float(np.sum(np.abs(_flat64(g)) ** norm_type)) for g in grads)
    return powered ** (1.0 / norm_type)


def _flat64(g: np.ndarray) -> np.ndarray:
    """A 1-D float64 view or copy of a gradient."""
    return np.asarray(g, dtype=np.float64).reshape(-1)
