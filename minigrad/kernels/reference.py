"""NumPy twins of the compiled kernels: same names, signatures and return values.

Each function here is the idiomatic NumPy spelling of one compiled kernel. The twins are the
test oracle and the benchmark baseline, so they favour plain, readable NumPy over speed tricks.
float32 inputs accumulate in float64 (``dtype=np.float64`` in the reductions) and the result is
cast back, so twin and compiled kernel agree tightly and both beat NumPy's float32 sums.
Every reduction returns an ndarray, a 0-d array for a full reduction, never a NumPy scalar.
"""

from __future__ import annotations

import builtins
import math

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

Axis = int | tuple[int, ...] | None

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------------------------
# validation helpers (shared in spirit with the compiled wrappers: same errors, same messages)


def check_float(x, name: str = "x") -> np.ndarray:
    """Return ``x`` as an ndarray, raising TypeError unless its dtype is float32 or float64."""
    x = np.asarray(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    return x


def check_keepdims(keepdims) -> None:
    """``keepdims`` must be a bool: anything else is a mistake, not a truth value."""
    if keepdims is not True and keepdims is not False and not isinstance(keepdims, np.bool_):
        raise TypeError(f"keepdims must be a bool, got {keepdims!r}")


def reduced_axes(ndim: int, axis: Axis) -> tuple[int, ...]:
    """Normalise ``axis`` (None, int or tuple; negatives allowed) to a sorted tuple of axes.

    Raises numpy's AxisError for an out-of-range axis and ValueError for a repeated one.
    """
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(normalize_axis_tuple(axis, ndim)))


def _count(x: np.ndarray, axes: tuple[int, ...]) -> int:
    """Number of elements reduced into each output."""
    return math.prod(x.shape[a] for a in axes)


def _check_same(y: np.ndarray, grad_out: np.ndarray) -> None:
    """A backward kernel's two inputs must agree in shape and dtype."""
    if y.shape != grad_out.shape:
        raise ValueError(f"grad_out shape {grad_out.shape} does not match y shape {y.shape}")
    if y.dtype != grad_out.dtype:
        raise TypeError(f"grad_out dtype {grad_out.dtype} does not match y dtype {y.dtype}")


def _single_axis(ndim: int, axis: int) -> int:
    """Softmax-style kernels take exactly one int axis."""
    if isinstance(axis, tuple) or axis is None:
        raise TypeError(f"axis must be a single int, got {axis!r}")
    return normalize_axis_tuple(axis, ndim)[0]


# ----------------------------------------------------------------------------------------------
# reductions


def sum(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:  # noqa: A001
    """Sum over ``axis``: y = sum_i x_i (float64 accumulation, result in x's dtype)."""
    check_keepdims(keepdims)
    x = check_float(x)
    axes = reduced_axes(x.ndim, axis)
    y = np.sum(x, axis=axes, keepdims=keepdims, dtype=np.float64)
    return np.asarray(y, dtype=x.dtype)


def mean(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Mean over ``axis``: y = sum_i x_i / n (nan for an empty reduction, without a warning)."""
    check_keepdims(keepdims)
    x = check_float(x)
    axes = reduced_axes(x.ndim, axis)
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
    """
    check_keepdims(keepdims)
    x = check_float(x)
    axes = reduced_axes(x.ndim, axis)
    n = _count(x, axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.sum(x, axis=axes, keepdims=True, dtype=np.float64) / n
        dev = x - mu  # float64, so the squares are exact enough even when |mean| >> std
        v = np.sum(dev * dev, axis=axes, keepdims=True) / builtins.max(n - correction, 0)
    if not keepdims:
        mu = np.squeeze(mu, axis=axes)
        v = np.squeeze(v, axis=axes)
    return np.asarray(v, dtype=x.dtype), np.asarray(mu, dtype=x.dtype)


def _arg_extreme(x: np.ndarray, axis: Axis, keepdims: bool, find) -> tuple[np.ndarray, np.ndarray]:
    """Shared body of max/min: value and first index over the reduced axes in C order."""
    check_keepdims(keepdims)
    x = check_float(x)
    axes = reduced_axes(x.ndim, axis)
    n = _count(x, axes)
    if n == 0:
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
    return _arg_extreme(x, axis, keepdims, np.argmax)


def min(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> tuple[np.ndarray, np.ndarray]:  # noqa: A001
    """Minimum over ``axis`` and the C-order position of its first occurrence (see ``max``)."""
    return _arg_extreme(x, axis, keepdims, np.argmin)


def logsumexp(x: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Stable y = m + log(sum_i exp(x_i - m)) with m = max_i x_i.

    All -inf gives -inf, any +inf gives inf, any NaN gives NaN, an empty reduction gives -inf.
    """
    check_keepdims(keepdims)
    x = check_float(x)
    axes = reduced_axes(x.ndim, axis)
    if _count(x, axes) == 0:
        shape = np.sum(x, axis=axes, keepdims=keepdims).shape
        return np.full(shape, -np.inf, dtype=x.dtype)
    m = np.max(x, axis=axes, keepdims=True)
    # A non-finite max cannot be subtracted (inf - inf); shifting by 0 then gives the right
    # -inf / inf / NaN from the log of the sum.
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    with np.errstate(divide="ignore", over="ignore"):
        s = np.sum(np.exp(x - m), axis=axes, keepdims=True, dtype=np.float64)
        y = np.log(s) + m
    if not keepdims:
        y = np.squeeze(y, axis=axes)
    return np.asarray(y, dtype=x.dtype)


# ----------------------------------------------------------------------------------------------
# softmax family


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x) along one axis (all -inf gives NaN)."""
    x = check_float(x)
    axis = _single_axis(x.ndim, axis)
    if x.size == 0:
        return np.empty_like(x)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        e /= np.sum(e, axis=axis, keepdims=True, dtype=np.float64).astype(x.dtype)
    return e


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """y_i = x_i - max x - log(sum_j exp(x_j - max x)) along one axis (all -inf gives NaN)."""
    x = check_float(x)
    axis = _single_axis(x.ndim, axis)
    if x.size == 0:
        return np.empty_like(x)
    with np.errstate(invalid="ignore"):
        shifted = x - np.max(x, axis=axis, keepdims=True)
        s = np.sum(np.exp(shifted), axis=axis, keepdims=True, dtype=np.float64)
        shifted -= np.log(s).astype(x.dtype)
    return shifted


def softmax_backward(y: np.ndarray, grad_out: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient of softmax from its output y: dx = y * (g - sum_j g_j * y_j)."""
    y = check_float(y, "y")
    grad_out = check_float(grad_out, "grad_out")
    _check_same(y, grad_out)
    axis = _single_axis(y.ndim, axis)
    dot = np.sum(grad_out * y, axis=axis, keepdims=True, dtype=np.float64).astype(y.dtype)
    return y * (grad_out - dot)


def log_softmax_backward(y: np.ndarray, grad_out: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient of log_softmax from its output y: dx = g - exp(y) * sum_j g_j."""
    y = check_float(y, "y")
    grad_out = check_float(grad_out, "grad_out")
    _check_same(y, grad_out)
    axis = _single_axis(y.ndim, axis)
    total = np.sum(grad_out, axis=axis, keepdims=True, dtype=np.float64).astype(y.dtype)
    return grad_out - np.exp(y) * total


# ----------------------------------------------------------------------------------------------
# softmax cross-entropy


def check_cross_entropy(
    logits, target, label_smoothing: float, ignore_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate CE inputs; return ``(logits, target as int64, mask of ignored rows)``."""
    logits = check_float(logits, "logits")
    target = np.asarray(target)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {logits.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.shape != (logits.shape[0],):
        raise ValueError(
            f"target shape {target.shape} does not match logits shape {logits.shape} (want (N,))"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if logits.shape[1] == 0:
        raise ValueError(f"logits need at least one class, got shape {logits.shape}")
    target = target.astype(np.int64, copy=False)
    ignored = target == ignore_index
    bad = (~ignored) & ((target < 0) | (target >= logits.shape[1]))
    if bad.any():
        raise ValueError(
            f"target {int(target[bad][0])} is out of range for {logits.shape[1]} classes "
            f"(ignore_index={ignore_index})"
        )
    return logits, target, ignored


def cross_entropy_forward(
    logits: np.ndarray, target: np.ndarray, label_smoothing: float = 0.0, ignore_index: int = -100
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row softmax cross-entropy and the row log-sum-exp.

    loss_i = lse_i - (1 - ls) * logits[i, t_i] - ls / C * sum_j logits[i, j], with
    lse_i = logsumexp_j logits[i, j]; rows whose target is ``ignore_index`` get loss 0.
    Shapes: logits (N, C), target (N,) integers -> ``(loss, lse)``, both (N,) in logits' dtype.
    """
    logits, target, ignored = check_cross_entropy(logits, target, label_smoothing, ignore_index)
    n, c = logits.shape
    lse = logsumexp(logits, axis=1).astype(np.float64)
    picked = logits[np.arange(n), np.where(ignored, 0, target)] if c else np.zeros(n)
    loss = lse - (1.0 - label_smoothing) * picked
    if label_smoothing:  # skipped at 0 so that an inf logit does not make 0 * inf = NaN
        loss -= label_smoothing / c * np.sum(logits, axis=1, dtype=np.float64)
    loss[ignored] = 0.0
    return loss.astype(logits.dtype), lse.astype(logits.dtype)


def cross_entropy_backward(
    grad_loss: np.ndarray,
    logits: np.ndarray,
    target: np.ndarray,
    lse: np.ndarray,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> np.ndarray:
    """Gradient of the per-row cross-entropy with respect to the logits.

    dlogits[i, j] = grad_loss[i] * (exp(logits[i, j] - lse_i) - (1 - ls) * [j == t_i] - ls / C),
    zero rows where the target is ``ignore_index``. ``grad_loss`` is (N,) or a scalar.
    """
    logits, target, ignored = check_cross_entropy(logits, target, label_smoothing, ignore_index)
    n, c = logits.shape
    lse = check_float(lse, "lse")
    if lse.shape != (n,):
        raise ValueError(f"lse shape {lse.shape} does not match logits shape {logits.shape}")
    grad_loss = check_float(grad_loss, "grad_loss")
    if grad_loss.shape not in ((), (n,)):
        raise ValueError(f"grad_loss shape {grad_loss.shape} is neither () nor ({n},)")
    kept = ~ignored
    dlogits = np.exp(logits - lse.astype(logits.dtype)[:, None])
    if label_smoothing:
        dlogits -= logits.dtype.type(label_smoothing / c)
    dlogits[kept, target[kept]] -= logits.dtype.type(1.0 - label_smoothing)
    dlogits *= np.broadcast_to(grad_loss, (n,)).astype(logits.dtype)[:, None]
    dlogits[ignored] = 0.0
    return dlogits



# ----------------------------------------------------------------------------------------------
# the normalization and optimizer twins (written beside their kernels' families)

from .reference_norm import (  # noqa: E402
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from .reference_optim import adam_step, rmsprop_step, sgd_step  # noqa: E402
