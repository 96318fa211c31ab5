"""Optional JAX comparators for the "step" and "overhead" groups: the same work under
``jax.jit``, when JAX is installed (``pip install jax``).

JAX is the reference for capture and replay (``mg.compile`` records a step once and replays
it; ``jax.jit`` traces it once and runs the compiled XLA program), so its rows sit beside
minigrad's ``compiled`` rows. Each closure blocks until its result is ready, so the time is
the work and not the dispatch. XLA runs on its own CPU thread pool.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np

#: Set False to leave JAX out even when it is installed.
USE_JAX = True


def jax_or_none() -> Any:
    """Import jax lazily (it is optional), on the CPU, in float32; None when not installed."""
    if not USE_JAX or importlib.util.find_spec("jax") is None:
        return None
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    return jax


def tiny(jax, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Callable[[], object]:
    """The gradients of ``(a*b + c).sum()`` with respect to a, b and c, jitted."""
    grads = jax.jit(jax.grad(lambda a, b, c: (a * b + c).sum(), argnums=(0, 1, 2)))
    arrays = [jax.numpy.asarray(v) for v in (a, b, c)]

    def step():
        return jax.block_until_ready(grads(*arrays))

    return step


def _loss(jax, params, running, x, y, net, consts):
    """Mean cross-entropy of the MLP of ``net`` (Linear, norm, ReLU per hidden layer), and
    the running statistics after this batch (BatchNorm only; biased variance for the
    normalization, unbiased for the running estimate, as minigrad and PyTorch)."""
    jnp = jax.numpy
    eps, momentum = consts
    h, k, new_running = x, 0, []
    hidden = len(net.sizes) - 2
    for i in range(hidden + 1):
        h = h @ params[k].T + params[k + 1]
        k += 2
        if i == hidden:
            break
        axis = 0 if net.norm == "batchnorm" else 1
        mean = h.mean(axis=axis, keepdims=True)
        var = ((h - mean) ** 2).mean(axis=axis, keepdims=True)
        if net.norm == "batchnorm":
            n = h.shape[0]
            rm, rv = running[i]
            new_running.append((momentum * rm + (1 - momentum) * mean[0],
                                momentum * rv + (1 - momentum) * var[0] * (n / (n - 1))))
        h = (h - mean) / jnp.sqrt(var + eps) * params[k] + params[k + 1]
        k += 2
        h = jnp.maximum(h, 0)
    logp = jax.nn.log_softmax(h, axis=1)
    return -jnp.mean(logp[jnp.arange(y.shape[0]), y]), new_running


def mlp_step(jax, net, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray,
             hyper: dict[str, float]) -> Callable[[], object]:
    """One jitted training step of the "step" group's MLP: forward, cross-entropy, the
    gradients by ``jax.value_and_grad`` and PyTorch's Adam rule, all in one XLA program.

    ``hyper`` holds eps and momentum (normalization) and lr, beta1, beta2, adam_eps."""
    jnp = jax.numpy
    consts = (hyper["eps"], hyper["momentum"])
    lr, beta1, beta2, adam_eps = (hyper[k] for k in ("lr", "beta1", "beta2", "adam_eps"))

    def update(params, exp_avg, exp_avg_sq, t, running, x, y):
        def loss_of(params):
            return _loss(jax, params, running, x, y, net, consts)

        (loss, running), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        t = t + 1
        exp_avg = [beta1 * m + (1 - beta1) * g for m, g in zip(exp_avg, grads, strict=True)]
        exp_avg_sq = [beta2 * v + (1 - beta2) * g * g
                      for v, g in zip(exp_avg_sq, grads, strict=True)]
        step_size = lr / (1 - beta1**t)
        bias2 = 1 - beta2**t
        params = [p - step_size * m / (jnp.sqrt(v / bias2) + adam_eps)
                  for p, m, v in zip(params, exp_avg, exp_avg_sq, strict=True)]
        return params, exp_avg, exp_avg_sq, t, running, loss

    jitted = jax.jit(update)
    params = [jnp.asarray(w) for w in weights]
    zeros = [jnp.zeros_like(p) for p in params]
    running = [(jnp.zeros(n, jnp.float32), jnp.ones(n, jnp.float32)) for n in net.sizes[1:-1]]
    state = [params, zeros, list(zeros), jnp.asarray(0.0, jnp.float32), running]
    inputs = (jnp.asarray(x), jnp.asarray(y))

    def step():
        *new_state, loss = jitted(*state, *inputs)
        state[:] = new_state
        return jax.block_until_ready(loss)

    return step
