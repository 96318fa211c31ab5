"""NumPy twins of the optimizer kernels in ``_optim.pyx``: one update rule per function.

Each twin walks the tensors in list order and updates parameter ``i`` and its state arrays
(``exp_avgs[i]``...) in place with ordinary NumPy expressions, as PyTorch's per-parameter
loop does. These loops are the benchmark baseline and the test oracle of the compiled
kernels. Hyperparameter terms (``1 - beta2``, ``lr / (1 - beta1**t)``) are Python floats,
so they are formed in float64 and rounded once when they meet a float32 array.
"""

from __future__ import annotations

import numpy as np

from ._checks import flag_list, real, step_list, tensor_lists


# exercise: sgd_step
def sgd_step(
    params: list[np.ndarray],
    grads: list[np.ndarray],
    momentum_buffers: list[np.ndarray] | None,
    first: list[bool] | None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> None:
    """SGD: d = g + wd*p; b = mu*b + (1-dampening)*d (b = d where first[i]);
    p -= lr * (d + mu*b if nesterov else b); without buffers (None) p -= lr * d."""
    lr, momentum, dampening = real(lr), real(momentum), real(dampening)
    nesterov, weight_decay = bool(nesterov), real(weight_decay)
    tensor_lists("sgd_step", params, grads, momentum_buffers=momentum_buffers)
    if momentum_buffers is not None:
        flag_list("sgd_step", "first", first, len(params))
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        d = g + weight_decay * p if weight_decay != 0 else g
        if momentum_buffers is not None:
            b = momentum_buffers[i]
            if first[i]:
                b[...] = d
            else:
                b *= momentum
                b += (1 - dampening) * d
            d = d + momentum * b if nesterov else b
        p -= lr * d


# exercise: adam_step
def adam_step(
    params: list[np.ndarray],
    grads: list[np.ndarray],
    exp_avgs: list[np.ndarray],
    exp_avg_sqs: list[np.ndarray],
    max_exp_avg_sqs: list[np.ndarray] | None,
    steps: list[int],
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> None:
    """Adam / AdamW, tensor i at step t = steps[i]: m = b1*m + (1-b1)*d;
    v = b2*v + (1-b2)*d^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps), where
    d = g + wd*p (Adam) or d = g after p *= 1 - lr*wd (AdamW, ``decoupled``). AMSGrad (max
    buffers given) uses vmax = max(vmax, v) in the denominator."""
    lr, beta1, beta2, eps = real(lr), real(beta1), real(beta2), real(eps)
    weight_decay, decoupled = real(weight_decay), bool(decoupled)
    if exp_avgs is None or exp_avg_sqs is None:
        raise TypeError("adam_step: exp_avgs and exp_avg_sqs are required")
    tensor_lists("adam_step", params, grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs,
                 max_exp_avg_sqs=max_exp_avg_sqs)
    step_list("adam_step", "steps", steps, len(params))
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        m, v = exp_avgs[i], exp_avg_sqs[i]
        if weight_decay != 0:
            if decoupled:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        if max_exp_avg_sqs is not None:
            v = np.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
        step_size, root_bc2 = _bias_corrections(lr, beta1, beta2, steps[i])
        denom = np.sqrt(v) / root_bc2 + eps
        p -= step_size * (m / denom)


# exercise: adam_bias_corrections
def _bias_corrections(lr: float, beta1: float, beta2: float, t: int) -> tuple[float, float]:
    """lr / (1 - beta1**t) and sqrt(1 - beta2**t) as Python floats (float64), computed with
    NumPy scalars so that a beta of 1 gives inf or NaN, as the compiled loop does, instead of
    a ZeroDivisionError (the optimizer never passes one)."""
    with np.errstate(all="ignore"):
        step_size = lr / (1 - np.float64(beta1) ** t)
        root_bc2 = np.sqrt(1 - np.float64(beta2) ** t)
    return float(step_size), float(root_bc2)


def rmsprop_step(
    params: list[np.ndarray],
    grads: list[np.ndarray],
    square_avgs: list[np.ndarray],
    grad_avgs: list[np.ndarray] | None,
    momentum_buffers: list[np.ndarray] | None,
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
) -> None:
    """RMSprop: d = g + wd*p; s = alpha*s + (1-alpha)*d^2; centered (grad_avgs given):
    a = alpha*a + (1-alpha)*d, s~ = s - a^2; u = d / (sqrt(s~) + eps); with momentum
    buffers b = mu*b + u, p -= lr*b; else p -= lr*u."""
    lr, alpha, eps = real(lr), real(alpha), real(eps)
    weight_decay, momentum = real(weight_decay), real(momentum)
    if square_avgs is None:
        raise TypeError("rmsprop_step: square_avgs is required")
    tensor_lists("rmsprop_step", params, grads, square_avgs=square_avgs, grad_avgs=grad_avgs,
                 momentum_buffers=momentum_buffers)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        d = g + weight_decay * p if weight_decay != 0 else g
        s = square_avgs[i]
        s *= alpha
        s += (1 - alpha) * d * d
        if grad_avgs is not None:
            a = grad_avgs[i]
            a *= alpha
            a += (1 - alpha) * d
            avg = np.sqrt(s - a * a) + eps
        else:
            avg = np.sqrt(s) + eps
        if momentum_buffers is not None:
            b = momentum_buffers[i]
            b *= momentum
            b += d / avg
            p -= lr * b
        else:
            p -= lr * d / avg
