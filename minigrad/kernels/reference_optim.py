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
    if momentum_buffer is None and momentum != 0:
        raise ValueError("rmsprop_step: momentum != 0 needs a momentum_buffer")
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
