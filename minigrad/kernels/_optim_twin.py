"""NumPy twins of the fused optimizer kernels in ``_optim.pyx``: same names, signatures, effects.

Each twin updates the parameters and the flat state buffers in place, one tensor at a time,
with ordinary NumPy expressions; tensor ``i`` owns ``state[offsets[i] : offsets[i] + size]``
and ``steps[i]`` is its step count including this step. These loops are the benchmark
baseline (per-tensor NumPy) and the test oracle of the compiled kernels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._checks import FLOAT_DTYPES

# ----------------------------------------------------------------------------- argument checks
# The compiled kernels take raw pointers, so they validate every array (``_Batch.fill`` in
# ``_optim.pyx``); the twins run the same rules here so that a bad call fails the same way on
# both backends instead of deep inside a NumPy expression (or, worse, not at all).


def check_hyperparameters(fn: str, **values: float) -> None:
    """Raise ValueError unless every hyperparameter is a finite number >= 0.

    Optimizers check their options when they are made, but ``group["lr"]`` can be edited
    afterwards; a NaN or negative lr would silently turn every parameter into garbage.
    """
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{fn}: {name} must be a finite number >= 0, got {value!r}")


def check_betas(fn: str, **values: float) -> None:
    """Raise ValueError unless every decay rate lies in [0, 1) (so 1 - beta**t is not 0)."""
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{fn}: {name} must be in [0, 1), got {value!r}")


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


def check_step(fn: str, params, grads, states: tuple, offsets, steps) -> None:
    """The rules of the compiled kernels' ``_Batch.fill``: raise TypeError or ValueError.

    params and grads are lists of same-shape ndarrays of one float dtype (params writeable);
    offsets and steps are 1-D int64 arrays with one entry per tensor; each state buffer (or
    None) is a writeable contiguous 1-D array of the params' dtype holding every tensor's slice.
    """
    if not isinstance(params, list) or not isinstance(grads, list):
        raise TypeError(
            f"{fn}: params and grads must be lists, got {type(params).__name__} and "
            f"{type(grads).__name__}"
        )
    for name, a in (("offsets", offsets), ("steps", steps)):
        if not isinstance(a, np.ndarray) or a.dtype != np.int64 or a.ndim != 1:
            raise TypeError(f"{fn}: {name} must be a 1-D int64 array, got {_describe(a)}")
    n = len(params)
    if len(grads) != n or offsets.shape[0] != n or steps.shape[0] != n:
        raise ValueError(
            f"{fn}: got {n} params, {len(grads)} grads, {offsets.shape[0]} offsets and "
            f"{steps.shape[0]} steps; expected one of each per tensor"
        )
    if n == 0:
        return
    if not isinstance(params[0], np.ndarray):
        raise TypeError(f"{fn}: params must be ndarrays, got {type(params[0]).__name__}")
    dtype = params[0].dtype
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{fn}: parameters must be float32 or float64, got {dtype}")
    state_size = -1
    for k, state in enumerate(states):
        if state is None:
            continue
        if (not isinstance(state, np.ndarray) or state.ndim != 1 or state.dtype != dtype
                or not state.flags.c_contiguous or not state.flags.writeable):
            raise TypeError(
                f"{fn}: state buffer {k} must be a writeable contiguous 1-D {dtype} "
                f"array like the parameters, got {_describe(state)}"
            )
        if state_size not in (-1, state.shape[0]):
            raise ValueError(
                f"{fn}: state buffers have different sizes ({state_size} and {state.shape[0]})"
            )
        state_size = state.shape[0]
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if not isinstance(p, np.ndarray) or not isinstance(g, np.ndarray):
            raise TypeError(
                f"{fn}: params and grads must be ndarrays, got {type(p).__name__} and "
                f"{type(g).__name__} at index {i}"
            )
        if p.dtype != dtype or g.dtype != dtype:
            raise TypeError(
                f"{fn}: param {i} ({p.dtype}) and its grad ({g.dtype}) must have the "
                f"dtype of param 0 ({dtype}); split mixed dtypes into separate calls"
            )
        if p.shape != g.shape:
            raise ValueError(
                f"{fn}: param {i} has shape {p.shape} but its grad has shape {g.shape}"
            )
        if not p.flags.writeable:
            raise ValueError(f"{fn}: param {i} (shape {p.shape}) is read-only")
        offset = int(offsets[i])
        if state_size >= 0 and (offset < 0 or offset > state_size - p.size):
            raise ValueError(
                f"{fn}: param {i} of size {p.size} at offset {offset} does not fit in state "
                f"buffers of size {state_size}"
            )


def _slot(state: np.ndarray | None, start: int, like: np.ndarray) -> np.ndarray | None:
    """The view of a flat state buffer that belongs to the tensor ``like``."""
    if state is None:
        return None
    return state[start : start + like.size].reshape(like.shape)


def sgd_step(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    momentum_buffer: np.ndarray | None,
    offsets: np.ndarray,
    steps: np.ndarray,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> None:
    """SGD in place: d = g + wd*p; b = mu*b + (1-dampening)*d (b = d when steps[i] == 1);
    p -= lr * (d + mu*b if nesterov else b); without momentum (buffer None) p -= lr * d."""
    check_hyperparameters("sgd_step", lr=lr, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay)
    check_step("sgd_step", params, grads, (momentum_buffer, None, None), offsets, steps)
    for p, g, start, step in zip(params, grads, offsets, steps, strict=True):
        d = g + weight_decay * p if weight_decay != 0 else g
        buf = _slot(momentum_buffer, int(start), p)
        if buf is not None:
            if step == 1:
                buf[...] = d
            else:
                buf *= momentum
                buf += (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p -= lr * d


def adam_step(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    max_exp_avg_sq: np.ndarray | None,
    offsets: np.ndarray,
    steps: np.ndarray,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> None:
    """Adam / AdamW in place, per tensor with t = steps[i]:
    m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2; p -= lr/(1-b1^t) * m / (sqrt(v/(1-b2^t)) + eps),
    where d = g + wd*p (Adam) or d = g after p *= 1 - lr*wd (AdamW, ``decoupled=True``).
    With ``max_exp_avg_sq`` (AMSGrad) the denominator uses vmax = max(vmax, v)."""
    check_hyperparameters("adam_step", lr=lr, eps=eps, weight_decay=weight_decay)
    check_betas("adam_step", beta1=beta1, beta2=beta2)
    if exp_avg is None or exp_avg_sq is None:
        raise TypeError("adam_step: exp_avg and exp_avg_sq are required state buffers")
    check_step("adam_step", params, grads, (exp_avg, exp_avg_sq, max_exp_avg_sq), offsets, steps)
    if np.any(np.asarray(steps) < 1):  # the bias corrections 1 - beta^t would be 0
        raise ValueError(f"adam_step: steps must be >= 1, got {list(steps)}")
    for p, g, start, step in zip(params, grads, offsets, steps, strict=True):
        m = _slot(exp_avg, int(start), p)
        v = _slot(exp_avg_sq, int(start), p)
        if weight_decay != 0:
            if decoupled:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        if max_exp_avg_sq is not None:
            v_max = _slot(max_exp_avg_sq, int(start), p)
            v = np.maximum(v_max, v, out=v_max)
        bias_correction1 = 1 - beta1 ** int(step)
        bias_correction2 = 1 - beta2 ** int(step)
        denom = np.sqrt(v) / math.sqrt(bias_correction2) + eps
        p -= (lr / bias_correction1) * (m / denom)


def rmsprop_step(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    square_avg: np.ndarray,
    grad_avg: np.ndarray | None,
    momentum_buffer: np.ndarray | None,
    offsets: np.ndarray,
    steps: np.ndarray,
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
) -> None:
    """RMSprop in place: d = g + wd*p; s = alpha*s + (1-alpha)*d^2; centered (grad_avg given):
    a = alpha*a + (1-alpha)*d, s~ = s - a^2; u = d / (sqrt(s~) + eps);
    with momentum (buffer given) b = mu*b + u, p -= lr*b; else p -= lr*u.
    ``steps`` does not enter the rule; it is accepted for a uniform signature."""
    check_hyperparameters("rmsprop_step", lr=lr, alpha=alpha, eps=eps,
                          weight_decay=weight_decay, momentum=momentum)
    if square_avg is None:
        raise TypeError("rmsprop_step: square_avg is a required state buffer")
    if momentum_buffer is None and momentum != 0:
        raise ValueError("rmsprop_step: momentum != 0 needs a momentum_buffer")
    check_step("rmsprop_step", params, grads, (square_avg, grad_avg, momentum_buffer), offsets,
               steps)
    for p, g, start in zip(params, grads, offsets, strict=True):
        d = g + weight_decay * p if weight_decay != 0 else g
        s = _slot(square_avg, int(start), p)
        s *= alpha
        s += (1 - alpha) * d * d
        if grad_avg is not None:
            a = _slot(grad_avg, int(start), p)
            a *= alpha
            a += (1 - alpha) * d
            avg = np.sqrt(s - a * a) + eps
        else:
            avg = np.sqrt(s) + eps
        buf = _slot(momentum_buffer, int(start), p)
        if buf is not None:
            buf *= momentum
            buf += d / avg
            p -= lr * buf
        else:
            p -= lr * d / avg
