"""NumPy twins of the compiled softmax family in ``_softmax.pyx``: softmax, log_softmax, their
backward passes, and softmax cross-entropy forward and backward.

Read them beside the kernels: per row (the softmax axis) the same passes, the max, then the
float64 sum of exp(x - max), then the write pass; here as whole-array NumPy calls. Argument
checks are the shared memory-safety ones of ``_checks``.
"""

from __future__ import annotations

import numpy as np

from ._checks import class_target_count as class_target_count  # the twin: NumPy reductions
from ._checks import cross_entropy_args, float_array, same_as, single_axis, stats_array


# exercise: softmax_forward
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x) along one axis (all -inf gives NaN)."""
    x = float_array("softmax", "x", x)
    axis = single_axis(x.ndim, axis)
    if x.size == 0:
        return np.empty_like(x)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        e /= np.sum(e, axis=axis, keepdims=True, dtype=np.float64).astype(x.dtype)
    return e


# exercise: log_softmax_forward
def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """y_i = x_i - max x - log(sum_j exp(x_j - max x)) along one axis (all -inf gives NaN)."""
    x = float_array("log_softmax", "x", x)
    axis = single_axis(x.ndim, axis)
    if x.size == 0:
        return np.empty_like(x)
    with np.errstate(invalid="ignore"):
        shifted = x - np.max(x, axis=axis, keepdims=True)
        s = np.sum(np.exp(shifted), axis=axis, keepdims=True, dtype=np.float64)
        shifted -= np.log(s).astype(x.dtype)
    return shifted


def _backward_args(fn: str, y: object, grad_out: object, axis: object) -> tuple:
    """y and grad_out must be float arrays of one dtype and shape."""
    y = float_array(fn, "y", y)
    same_as(fn, "grad_out", grad_out, y, y.shape, "the shape of y")
    return y, grad_out, single_axis(y.ndim, axis)


# exercise: softmax_backward
def softmax_backward(y: np.ndarray, grad_out: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient of softmax from its output y: dx = y * (g - sum_j g_j * y_j)."""
    y, grad_out, axis = _backward_args("softmax_backward", y, grad_out, axis)
    dot = np.sum(grad_out * y, axis=axis, keepdims=True, dtype=np.float64).astype(y.dtype)
    return y * (grad_out - dot)


# exercise: log_softmax_backward
def log_softmax_backward(y: np.ndarray, grad_out: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient of log_softmax from its output y: dx = g - exp(y) * sum_j g_j."""
    y, grad_out, axis = _backward_args("log_softmax_backward", y, grad_out, axis)
    total = np.sum(grad_out, axis=axis, keepdims=True, dtype=np.float64).astype(y.dtype)
    return grad_out - np.exp(y) * total


# exercise: cross_entropy_forward
def cross_entropy_forward(
    logits: np.ndarray, target: np.ndarray, label_smoothing: float = 0.0, ignore_index: int = -100
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row softmax cross-entropy and the parts of the row log-sum-exp.

    loss_i = lse_i - (1 - ls) * logits[i, t_i] - ls / C * sum_j logits[i, j], with
    lse_i = logsumexp_j logits[i, j]; rows whose target is ``ignore_index`` get loss 0.
    Shapes: logits (N, C), target (N,) integers -> ``(loss, lse_parts)``: loss (N,) in logits'
    dtype; lse_parts (N, 2) float64, the row max m (0 in a row whose max is not finite or that
    holds NaN) and log(sum_j exp(logits[i, j] - m)), whose sum is lse_i, kept apart for the
    backward (for logits of 1e17, m + 1.1 is m again even in float64).

    Per row, as the kernel: s = sum exp(x - m) in float64; the loss is formed in float64 from
    the shifted parts, log(s) + (1 - ls) (m - x_t) + ls mean_j (m - x_j), so a large common
    offset of the logits cancels exactly instead of through a rounded lse.
    """
    logits, target, ignored = cross_entropy_args("cross_entropy_forward", logits, target,
                                                 ignore_index)
    ls = float(label_smoothing)
    n, c = logits.shape
    m = np.max(logits, axis=1)
    m = np.where(np.isfinite(m), m, 0).astype(np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        s = np.sum(np.exp(logits - m[:, None].astype(logits.dtype)), axis=1, dtype=np.float64)
        log_s = np.log(s)
        picked = logits[np.arange(n), np.where(ignored, 0, target)].astype(np.float64)
        loss = log_s + (1.0 - ls) * (m - picked)
        if ls:  # skipped at 0 so that an inf logit does not make 0 * inf = NaN
            loss += ls * np.mean(m[:, None] - logits.astype(np.float64), axis=1)
    loss[ignored] = 0.0
    return loss.astype(logits.dtype), np.stack([m, log_s], axis=1)


# exercise: cross_entropy_backward
def cross_entropy_backward(
    grad_loss: np.ndarray,
    logits: np.ndarray,
    target: np.ndarray,
    lse_parts: np.ndarray,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> np.ndarray:
    """Gradient of the per-row cross-entropy with respect to the logits.

    dlogits[i, j] = grad_loss[i] * (exp(logits[i, j] - lse_i) - (1 - ls) * [j == t_i] - ls / C),
    zero rows where the target is ``ignore_index``. ``grad_loss`` is (N,) or a scalar;
    ``lse_parts`` is (N, 2), the (m, log s) of cross_entropy_forward.
    """
    fn = "cross_entropy_backward"
    logits, target, ignored = cross_entropy_args(fn, logits, target, ignore_index)
    ls = float(label_smoothing)
    n, c = logits.shape
    parts = stats_array(fn, "lse_parts", lse_parts, (n, 2), logits)
    grad_loss = float_array(fn, "grad_loss", grad_loss)
    if grad_loss.shape not in ((), (n,)):
        raise ValueError(f"{fn}: grad_loss must have shape () or ({n},), "
                         f"got shape {grad_loss.shape}")
    kept = ~ignored
    # exp((x - hi) - lo), as the kernel: hi the lse in the logits' dtype, lo = (m - hi) + log s
    # in float64, so x - hi is exact near the log-sum-exp, and for logits of 1e17 (m + log s
    # rounds to m) hi is m and lo log s itself
    with np.errstate(invalid="ignore"):
        hi = (parts[:, 0] + parts[:, 1]).astype(logits.dtype)
        lo = ((parts[:, 0] - hi) + parts[:, 1]).astype(logits.dtype)
        dlogits = np.exp((logits - hi[:, None]) - lo[:, None])
    if ls:
        dlogits -= logits.dtype.type(ls / c)
    dlogits[kept, target[kept]] -= logits.dtype.type(1.0 - ls)
    dlogits *= np.broadcast_to(grad_loss, (n,)).astype(logits.dtype)[:, None]
    dlogits[ignored] = 0.0
    return dlogits


def cross_entropy_fused(
    logits: np.ndarray, target: np.ndarray, label_smoothing: float = 0.0, ignore_index: int = -100
) -> tuple[np.ndarray, int, np.ndarray]:
    """The mean cross-entropy's forward and backward in one call: ``(loss, count, dlogits)``,
    loss as ``cross_entropy_forward`` gives it, ``count`` the rows not ignored, dlogits as
    ``cross_entropy_backward`` gives it for the gradient 1 / max(count, 1) of every row."""
    logits, owned, ignored = cross_entropy_args("cross_entropy_fused", logits, target,
                                                ignore_index)
    count = logits.shape[0] - int(np.count_nonzero(ignored))
    loss, parts = cross_entropy_forward(logits, target, label_smoothing, ignore_index)
    grad = np.ones((), logits.dtype) / logits.dtype.type(max(count, 1))
    dlogits = cross_entropy_backward(np.full(logits.shape[0], grad, logits.dtype), logits,
                                     target, parts, label_smoothing, ignore_index)
    return loss, count, dlogits
