"""PyTorch's documented update rules written out in NumPy (float64, one parameter at a time),
the option sets the optimizer tests run, and helpers that make parameters and gradients."""

from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import nn, optim

SHAPES = [(4, 3), (3,), (2, 5, 2), (1,)]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


# --------------------------------------------------------------------------- the rules
# Straight transcriptions of the pseudo-code in PyTorch's documentation, one parameter at a
# time in float64; ``state`` is a dict per parameter, ``t`` the 1-based step.
def sgd_rule(p, g, state, t, lr, momentum=0, dampening=0, nesterov=False, weight_decay=0):
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if t > 1:
            state["b"] = momentum * state["b"] + (1 - dampening) * g
        else:
            state["b"] = g
        g = g + momentum * state["b"] if nesterov else state["b"]
    return p - lr * g


def adam_rule(
    p,
    g,
    state,
    t,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0,
    amsgrad=False,
    decoupled=False,
):
    beta1, beta2 = betas
    if weight_decay != 0:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    state["m"] = beta1 * state.get("m", 0) + (1 - beta1) * g
    state["v"] = beta2 * state.get("v", 0) + (1 - beta2) * g**2
    m_hat = state["m"] / (1 - beta1**t)
    if amsgrad:
        state["v_max"] = np.maximum(state.get("v_max", 0), state["v"])
        v_hat = state["v_max"] / (1 - beta2**t)
    else:
        v_hat = state["v"] / (1 - beta2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw_rule(p, g, state, t, weight_decay=1e-2, **options):
    return adam_rule(p, g, state, t, weight_decay=weight_decay, decoupled=True, **options)


def rmsprop_rule(
    p, g, state, t, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False
):
    if weight_decay != 0:
        g = g + weight_decay * p
    state["v"] = alpha * state.get("v", 0) + (1 - alpha) * g**2
    v_tilde = state["v"]
    if centered:
        state["g_ave"] = alpha * state.get("g_ave", 0) + (1 - alpha) * g
        v_tilde = v_tilde - state["g_ave"] ** 2
    if momentum > 0:
        state["b"] = momentum * state.get("b", 0) + g / (np.sqrt(v_tilde) + eps)
        return p - lr * state["b"]
    return p - lr * g / (np.sqrt(v_tilde) + eps)


CASES = [
    (optim.SGD, sgd_rule, dict(lr=0.1)),
    (optim.SGD, sgd_rule, dict(lr=0.1, weight_decay=0.1)),
    (optim.SGD, sgd_rule, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, sgd_rule, dict(lr=0.1, momentum=0.9, dampening=0.25, weight_decay=0.05)),
    (optim.SGD, sgd_rule, dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05)),
    (optim.Adam, adam_rule, dict()),
    (optim.Adam, adam_rule, dict(lr=0.05, weight_decay=0.1)),
    (optim.Adam, adam_rule, dict(lr=0.05, betas=(0.5, 0.8), eps=1e-4, amsgrad=True)),
    (optim.AdamW, adamw_rule, dict(lr=0.05)),
    (optim.AdamW, adamw_rule, dict(lr=0.05, weight_decay=0.3, amsgrad=True)),
    (optim.RMSprop, rmsprop_rule, dict()),
    (optim.RMSprop, rmsprop_rule, dict(lr=0.02, alpha=0.9, weight_decay=0.1)),
    (optim.RMSprop, rmsprop_rule, dict(lr=0.02, momentum=0.9)),
    (optim.RMSprop, rmsprop_rule, dict(lr=0.02, centered=True)),
    (optim.RMSprop, rmsprop_rule, dict(lr=0.02, centered=True, momentum=0.5, weight_decay=0.1)),
]


def case_id(case):
    cls, _, options = case
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in options.items())


def grads_for(seed, n_steps, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    # Gradients that flip sign each step keep centered RMSprop's s - a^2 away from 0, where
    # float32 would lose digits in any implementation.
    return [
        [(-1) ** t * (0.5 + np.abs(rng.standard_normal(s))) for s in shapes] for t in range(n_steps)
    ]


def make_params(seed, dtype, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def set_grads(params, grads):
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else mg.tensor(g, dtype=p.data.dtype)
