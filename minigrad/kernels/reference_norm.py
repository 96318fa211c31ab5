"""NumPy twins of the fused BatchNorm and LayerNorm kernels, and the argument checks both share.

The twins have the names, signatures and return values of the compiled kernels in ``_norm.pyx``
and are written as plain NumPy, line by line the formulas of docs/normalization.md: they are the
test oracle and the benchmark baseline. Conventions shared with the compiled kernels:

* ``mean`` and ``rstd`` (``1 / sqrt(var + eps)``) are returned as float64 arrays whatever the data
  dtype: the statistics are accumulated in float64 (a float32 sum of squares of data whose mean
  is 1e4 times its spread is useless) and the backward reuses them at full precision.
* ``y``, ``dx``, ``dgamma`` and ``dbeta`` have the data's dtype; ``gamma``, ``beta`` and the
  running buffers must have it too. ``gamma=None`` means 1 and ``beta=None`` means 0.
* Every reduction accumulates in float64; the elementwise work runs in the data's dtype.

The ``check_*`` functions validate a call before any work is done; the compiled kernels call the
same functions, so both backends reject a bad call with the same exception and message.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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
