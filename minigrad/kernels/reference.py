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
from numbers import Real

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

# the optimizer twins live beside their compiled module (_optim.pyx)
from ._optim_twin import adam_step, rmsprop_step, sgd_step  # noqa: F401

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


# ==============================================================================================
# BatchNorm and LayerNorm
#
# NumPy twins of the fused BatchNorm and LayerNorm kernels, and the argument checks both share.
#
# The twins have the names, signatures and return values of the compiled kernels in ``_norm.pyx``
# and are written as plain NumPy, line by line the formulas of docs/normalization.md: they are the
# test oracle and the benchmark baseline. Conventions shared with the compiled kernels:
#
# * ``mean`` and ``rstd`` (``1 / sqrt(var + eps)``) are returned as float64 arrays whatever the data
#   dtype: the statistics are accumulated in float64 (a float32 sum of squares of data whose mean
#   is 1e4 times its spread is useless) and the backward reuses them at full precision.
# * ``y``, ``dx``, ``dgamma`` and ``dbeta`` have the data's dtype; ``gamma``, ``beta`` and the
#   running buffers must have it too. ``gamma=None`` means 1 and ``beta=None`` means 0.
# * Every reduction accumulates in float64; the elementwise work runs in the data's dtype.
#
# The ``check_*`` functions validate a call before any work is done; the compiled kernels call the
# same functions, so both backends reject a bad call with the same exception and message.
# ==============================================================================================



# ----------------------------------------------------------------------------- argument checks


def _check_data(fn: str, name: str, a: object) -> None:
    """Raise TypeError unless ``a`` is a float32 or float64 ndarray."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {a.dtype}")


def _check_like(fn: str, name: str, a: object, shape: tuple, x: np.ndarray, what: str) -> None:
    """Raise unless ``a`` is an ndarray of x's dtype with the given shape."""
    if not isinstance(a, np.ndarray) or a.dtype is not x.dtype:
        _check_data(fn, name, a)
        if a.dtype != x.dtype:
            raise TypeError(f"{fn}: {name} has dtype {a.dtype} but x has dtype {x.dtype}")
    if a.shape != shape:
        raise ValueError(
            f"{fn}: {name} must have shape {shape} ({what}) for x of shape {x.shape}, "
            f"got shape {a.shape}"
        )


def _check_number(fn: str, name: str, value: object, minimum: float | None = None,
                  maximum: float | None = None) -> None:
    """Raise unless ``value`` is a finite real number (not a bool) in [minimum, maximum]."""
    if type(value) is not float:  # the common case skips the slower abstract-class check
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{fn}: {name} must be a finite real number, got {value!r}")
    if not math.isfinite(value):
        raise TypeError(f"{fn}: {name} must be a finite real number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{fn}: {name} must be <= {maximum}, got {value!r}")


def _check_stats(fn: str, name: str, a: object, shape: tuple, x: np.ndarray) -> None:
    """Raise unless ``a`` (a saved mean or rstd) is a float ndarray of the given shape."""
    _check_data(fn, name, a)
    if a.shape != shape:
        raise ValueError(
            f"{fn}: {name} must have shape {shape} for x of shape {x.shape}, got shape {a.shape}"
        )


def _batchnorm_shape(fn: str, x: object) -> tuple[int, int]:
    """Check x for a BatchNorm kernel; return (C, M): channels and values per channel."""
    _check_data(fn, "x", x)
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"{fn}: x must have shape (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}"
        )
    channels = x.shape[1]
    per_channel = x.shape[0] * math.prod(x.shape[2:])
    return channels, per_channel


def check_batchnorm_forward(
    x, gamma, beta, running_mean, running_var, momentum, eps, training
) -> None:
    """Validate the arguments of ``batchnorm_forward``; raise TypeError or ValueError."""
    fn = "batchnorm_forward"
    channels, per_channel = _batchnorm_shape(fn, x)
    shape = (channels,)
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None:
            _check_like(fn, name, a, shape, x, "one per channel")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{fn}: running_mean and running_var must both be arrays or both None")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{fn}: training must be a bool, got {training!r}")
    _check_number(fn, "eps", eps, minimum=0.0)
    # outside [0, 1] the running variance can turn negative (and rstd NaN in eval)
    _check_number(fn, "momentum", momentum, minimum=0.0, maximum=1.0)
    if running_mean is not None:
        for name, a in (("running_mean", running_mean), ("running_var", running_var)):
            _check_like(fn, name, a, shape, x, "one per channel")
            if training and not a.flags.writeable:
                raise ValueError(f"{fn}: {name} is updated in place but is read-only")
    if training and per_channel <= 1:
        raise ValueError(
            f"expected more than 1 value per channel when training, got input of shape {x.shape}"
        )
    if not training and running_mean is None:
        raise ValueError(
            f"{fn}: training=False needs running_mean and running_var (without running "
            "statistics, normalise with the batch statistics: training=True)"
        )


def check_batchnorm_backward(grad_out, x, gamma, mean, rstd, training) -> None:
    """Validate the arguments of ``batchnorm_backward``; raise TypeError or ValueError."""
    fn = "batchnorm_backward"
    channels, _ = _batchnorm_shape(fn, x)
    _check_like(fn, "grad_out", grad_out, x.shape, x, "the shape of x")
    if gamma is not None:
        _check_like(fn, "gamma", gamma, (channels,), x, "one per channel")
    _check_stats(fn, "mean", mean, (channels,), x)
    _check_stats(fn, "rstd", rstd, (channels,), x)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{fn}: training must be a bool, got {training!r}")


def check_layernorm_forward(x, gamma, beta, eps, normalized_ndim) -> None:
    """Validate the arguments of ``layernorm_forward``; raise TypeError or ValueError."""
    fn = "layernorm_forward"
    _check_data(fn, "x", x)
    if isinstance(normalized_ndim, bool) or not isinstance(normalized_ndim, (int, np.integer)):
        raise TypeError(f"{fn}: normalized_ndim must be an int, got {normalized_ndim!r}")
    if not 1 <= normalized_ndim <= x.ndim:
        raise ValueError(
            f"{fn}: normalized_ndim must be in [1, x.ndim] = [1, {x.ndim}] for x of shape "
            f"{x.shape}, got {normalized_ndim}"
        )
    normalized_shape = x.shape[x.ndim - normalized_ndim :]
    if math.prod(normalized_shape) == 0:
        raise ValueError(f"{fn}: cannot normalise over an empty shape {normalized_shape}")
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None:
            _check_like(fn, name, a, normalized_shape, x, "the normalized shape")
    _check_number(fn, "eps", eps, minimum=0.0)


def check_layernorm_backward(grad_out, x, gamma, mean, rstd) -> None:
    """Validate the arguments of ``layernorm_backward``; raise TypeError or ValueError."""
    fn = "layernorm_backward"
    _check_data(fn, "x", x)
    _check_like(fn, "grad_out", grad_out, x.shape, x, "the shape of x")
    _check_data(fn, "mean", mean)
    if mean.ndim >= x.ndim or mean.shape != x.shape[: mean.ndim]:
        raise ValueError(
            f"{fn}: mean must have the leading (unnormalized) shape of x of shape {x.shape}, "
            f"got shape {mean.shape}"
        )
    _check_stats(fn, "rstd", rstd, mean.shape, x)
    normalized_shape = x.shape[mean.ndim :]
    if math.prod(normalized_shape) == 0:
        raise ValueError(f"{fn}: cannot normalise over an empty shape {normalized_shape}")
    if gamma is not None:
        _check_like(fn, "gamma", gamma, normalized_shape, x, "the normalized shape")


# ----------------------------------------------------------------------------- BatchNorm twins


def _per_channel(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A (C,) vector as x's dtype, shaped (1, C, 1, ...) to broadcast against x."""
    return np.asarray(v, dtype=x.dtype).reshape((1, -1) + (1,) * (x.ndim - 2))


def _centre(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """x - mean in x's dtype, for a float64 mean shaped to broadcast against x.

    Computed as (x - hi) - lo with hi the mean rounded to x's dtype and lo the rounding error:
    x - hi is exact for x near the mean, so the float32 centred values keep their precision
    even when |mean| >> std (plain x - float32(mean) loses |mean| / std units in the last
    place). The compiled kernels centre the same way.
    """
    hi = mean.astype(x.dtype)
    lo = (mean - hi).astype(x.dtype)
    return (x - hi) - lo


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    """(1, C, 1, ...): the shape that broadcasts a per-channel vector against x."""
    return (1, -1) + (1,) * (x.ndim - 2)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training):
    """BatchNorm forward: y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel (axis 1).

    Training uses the batch mean and biased variance over every axis but 1 and, when running
    buffers are given, updates them in place: running = running * momentum + batch * (1 - momentum)
    (with the unbiased variance for running_var). Eval (training=False) uses the running buffers.

    Returns:
        (y, mean, rstd): y like x; mean and rstd = 1 / sqrt(var + eps) as float64 (C,) arrays.
    """
    check_batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training)
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        mean = x.mean(axis=axes, dtype=np.float64)
        xc = _centre(x, mean.reshape(_channel_shape(x)))
        var = np.mean(xc * xc, axis=axes, dtype=np.float64)
        rstd = 1.0 / np.sqrt(var + eps)
        if running_mean is not None:
            count = x.shape[0] * math.prod(x.shape[2:])  # not x.size // C: C may be 0
            running_mean[...] = running_mean * momentum + mean * (1 - momentum)
            running_var[...] = running_var * momentum + var * count / (count - 1) * (1 - momentum)
    else:
        mean = running_mean.astype(np.float64)
        rstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
        xc = _centre(x, mean.reshape(_channel_shape(x)))
    y = xc * _per_channel(rstd, x)
    if gamma is not None:
        y *= _per_channel(gamma, x)
    if beta is not None:
        y += _per_channel(beta, x)
    return y, mean, rstd


def batchnorm_backward(grad_out, x, gamma, mean, rstd, training=True):
    """BatchNorm backward, closed form, with sums over the M values of each channel.

    dbeta = sum(dy), dgamma = sum(dy * x_hat) with x_hat = (x - mean) * rstd, and
    dx = gamma * rstd / M * (M * dy - dbeta - x_hat * dgamma) in training;
    dx = gamma * rstd * dy in eval, where mean and rstd were constants.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta (C,) arrays of x's dtype.
    """
    check_batchnorm_backward(grad_out, x, gamma, mean, rstd, training)
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1] if x.shape[1] else 0
    x_hat = _centre(x, np.asarray(mean).reshape(_channel_shape(x))) * _per_channel(rstd, x)
    dbeta = np.sum(grad_out, axis=axes, dtype=np.float64)
    dgamma = np.sum(grad_out * x_hat, axis=axes, dtype=np.float64)
    scale = rstd if gamma is None else gamma * rstd
    if training:
        dx = _per_channel(scale / count, x) * (
            count * grad_out - _per_channel(dbeta, x) - x_hat * _per_channel(dgamma, x)
        )
    else:
        dx = _per_channel(scale, x) * grad_out
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# ----------------------------------------------------------------------------- LayerNorm twins


def layernorm_forward(x, gamma, beta, eps, normalized_ndim):
    """LayerNorm forward: y = gamma * (x - mean) / sqrt(var + eps) + beta, per sample.

    mean and the biased var are taken over the trailing ``normalized_ndim`` axes of x; gamma and
    beta have the shape of those axes.

    Returns:
        (y, mean, rstd): y like x; mean and rstd float64 with shape x.shape[:-normalized_ndim].
    """
    check_layernorm_forward(x, gamma, beta, eps, normalized_ndim)
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64, keepdims=True)
    xc = _centre(x, mean)
    var = np.mean(xc * xc, axis=axes, dtype=np.float64, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = xc * rstd.astype(x.dtype)
    if gamma is not None:
        y *= gamma
    if beta is not None:
        y += beta
    lead_shape = x.shape[: x.ndim - normalized_ndim]
    return y, mean.reshape(lead_shape), rstd.reshape(lead_shape)


def layernorm_backward(grad_out, x, gamma, mean, rstd):
    """LayerNorm backward, closed form, with sums over the D normalized values of each sample.

    With g = dy * gamma and x_hat = (x - mean) * rstd:
    dx = rstd / D * (D * g - sum(g) - x_hat * sum(g * x_hat)),
    dgamma = sum over samples of dy * x_hat, dbeta = sum over samples of dy.
    The normalized axes are the trailing x.ndim - mean.ndim ones.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta with the normalized shape, x's dtype.
    """
    check_layernorm_backward(grad_out, x, gamma, mean, rstd)
    normalized_ndim = x.ndim - mean.ndim
    axes = tuple(range(mean.ndim, x.ndim))
    sample_axes = tuple(range(mean.ndim))
    count = math.prod(x.shape[mean.ndim :])
    keep = mean.shape + (1,) * normalized_ndim  # broadcasts a per-sample value against x
    rstd_k = rstd.reshape(keep).astype(x.dtype)
    x_hat = _centre(x, mean.reshape(keep)) * rstd_k
    g = grad_out if gamma is None else grad_out * gamma
    sum_g = np.sum(g, axis=axes, dtype=np.float64, keepdims=True).astype(x.dtype)
    sum_g_xhat = np.sum(g * x_hat, axis=axes, dtype=np.float64, keepdims=True).astype(x.dtype)
    dx = rstd_k / count * (count * g - sum_g - x_hat * sum_g_xhat)
    dgamma = np.sum(grad_out * x_hat, axis=sample_axes, dtype=np.float64)
    dbeta = np.sum(grad_out, axis=sample_axes, dtype=np.float64)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)
