"""NumPy twins of the compiled reductions in ``_reduce.pyx``: sum, mean, var (with mean),
max/min (with index) and logsumexp, with the same names, signatures and return values.

Read them beside the kernels: each twin makes the same passes over the data (one sum pass; the
shifted sums of var; the extreme pass then the sum-of-exps pass of logsumexp) with whole-array
NumPy calls where the kernel has loops. float32 data accumulates in float64 and the result is
cast back, so twin and kernel agree tightly. Every reduction returns an ndarray (0-d for a full
reduction), never a NumPy scalar. Argument checks are the shared memory-safety ones.
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from ._checks import Axis, float_array, keepdims_flag, reduced_axes


def _count(x: np.ndarray, axes: tuple[int, ...]) -> int:
    """Number of elements reduced into each output."""
    return math.prod(x.shape[a] for a in axes)


def _prepare(fn: str, x: object, axis: Axis, keepdims: object) -> tuple:
    """The checks every reduction shares: ``(x, sorted axes, keepdims)``."""
    x = float_array(fn, "x", x)
    return x, reduced_axes(x.ndim, axis), keepdims_flag(fn, keepdims)


def sum(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:  # noqa: A001
    """Sum over ``axis``: y = sum_i x_i (float64 accumulation, result in x's dtype)."""
    x, axes, keepdims = _prepare("sum", x, axis, keepdims)
    y = np.sum(x, axis=axes, keepdims=keepdims, dtype=np.float64)
    return np.asarray(y, dtype=x.dtype)


def mean(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Mean over ``axis``: y = sum_i x_i / n (nan for an empty reduction, without a warning)."""
    x, axes, keepdims = _prepare("mean", x, axis, keepdims)
    total = np.sum(x, axis=axes, keepdims=keepdims, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        y = total / _count(x, axes)
    return np.asarray(y, dtype=x.dtype)


def var(
    x: np.ndarray, axis: Axis = None, keepdims: bool = False, correction: float = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Variance and mean over ``axis``: var = sum_i (x_i - mean)^2 / (n - correction).

    ``correction=0`` is the biased estimate, 1 the unbiased one. When ``n - correction <= 0`` the
    divisor is clamped at 0 as NumPy does, giving inf (or nan for 0/0), silently.
    Returns ``(var, mean)``, both reduced the same way and in x's dtype.

    One pass of shifted sums per output, as the kernel: with c the first element of the
    reduced block, s1 = sum(x - c) and s2 = sum((x - c)^2) in float64; mean = c + s1 / n and
    var = (s2 - s1^2 / n) / (n - correction). The shift keeps float64 exact enough when
    |mean| >> std; an inf or NaN shift is replaced by 0 (it would turn an inf mean into NaN).
    """
    x, axes, keepdims = _prepare("var", x, axis, keepdims)
    n = _count(x, axes)
    dof = builtins.max(n - float(correction), 0.0)
    if n == 0:
        c = np.zeros(np.sum(x, axis=axes, keepdims=True).shape)
    else:
        c = x[tuple(slice(0, 1) if a in axes else slice(None) for a in range(x.ndim))]
        c = np.where(np.isfinite(c), c, 0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = x - c
        s1 = np.sum(d, axis=axes, keepdims=True)
        s2 = np.sum(d * d, axis=axes, keepdims=True)
        mu = c + s1 / n
        v = (s2 - s1 * s1 / n) / dof
    if not keepdims:
        mu = np.squeeze(mu, axis=axes)
        v = np.squeeze(v, axis=axes)
    return np.asarray(v, dtype=x.dtype), np.asarray(mu, dtype=x.dtype)


def _extreme(fn: str, x: object, axis: Axis, keepdims: object, find) -> tuple:
    """Shared body of max/min: value and first index over the reduced axes in C order."""
    x, axes, keepdims = _prepare(fn, x, axis, keepdims)
    n = _count(x, axes)
    if n == 0:  # NumPy's rule: no identity, even when the output is empty too
        raise ValueError(
            f"zero-size reduction over axes {axes} of an array of shape {x.shape}: "
            "max/min have no identity"
        )
    kept = [a for a in range(x.ndim) if a not in axes]
    # Reduced axes (ascending) go last and are flattened, so the index counts in C order.
    flat = np.transpose(x, kept + list(axes)).reshape([x.shape[a] for a in kept] + [n])
    index = find(flat, axis=-1)  # argmax/argmin: first extreme, first NaN when there is one
    y = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
    if keepdims:
        y = np.expand_dims(y, axes)
        index = np.expand_dims(index, axes)
    return np.asarray(y, dtype=x.dtype), np.asarray(index, dtype=np.int64)


def max(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> tuple[np.ndarray, np.ndarray]:  # noqa: A001
    """Maximum over ``axis`` and the C-order position of its first occurrence.

    y = max_i x_i; NaN wins (y is NaN and index the first NaN, like np.max / np.argmax).
    Returns ``(y, index)`` with ``index`` an int64 array of y's shape. Empty: ValueError.
    """
    return _extreme("max", x, axis, keepdims, np.argmax)


def min(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> tuple[np.ndarray, np.ndarray]:  # noqa: A001
    """Minimum over ``axis`` and the C-order position of its first occurrence (see ``max``)."""
    return _extreme("min", x, axis, keepdims, np.argmin)


# exercise: logsumexp_forward
def logsumexp(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Stable y = m + log(sum_i exp(x_i - m)) with m = max_i x_i.

    Two passes, as the kernel: the max m (replaced by 0 when it is not finite: the sum of exps
    itself then gives -inf, inf or NaN), then the float64 sum of exp(x - m).
    All -inf gives -inf, any +inf gives inf, any NaN gives NaN, an empty reduction gives -inf.
    """
    x, axes, keepdims = _prepare("logsumexp", x, axis, keepdims)
    if _count(x, axes) == 0:
        shape = np.sum(x, axis=axes, keepdims=keepdims).shape
        return np.full(shape, -np.inf, dtype=x.dtype)
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    with np.errstate(divide="ignore", over="ignore"):
        s = np.sum(np.exp(x - m), axis=axes, keepdims=True, dtype=np.float64)
        y = np.log(s) + m
    if not keepdims:
        y = np.squeeze(y, axis=axes)
    return np.asarray(y, dtype=x.dtype)
