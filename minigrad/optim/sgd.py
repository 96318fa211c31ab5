"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import kernels
from ..functional._rules import check_flag
from .optimizer import Optimizer, _Batch, check_number


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule.

    Per step, with g the gradient::

        g = g + weight_decay * p
        b = g                                   (first step with momentum)
        b = momentum * b + (1 - dampening) * g  (later steps)
        g = g + momentum * b  (nesterov)   or   g = b
        p = p - lr * g

    State per parameter: ``"momentum_buffer"`` (b), only when momentum != 0.

    Args:
        params: parameters, or dicts of parameters with per-group options.
        lr: learning rate (required).
        momentum: momentum factor; 0 keeps no state.
        dampening: dampening of the gradient in the momentum buffer, in [0, 1].
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        weight_decay: L2 penalty added to the gradient.

    Example:
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> opt.zero_grad(); loss.backward(); opt.step()
    """

    _counts_steps = False  # PyTorch's SGD keeps no step count

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    def _check_options(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        check_number("momentum", group["momentum"])
        check_number("dampening", group["dampening"], 0.0, 1.0)
        check_number("weight_decay", group["weight_decay"])
        check_flag(group["nesterov"], "nesterov")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")

    def _state_names(self) -> frozenset[str]:
        return frozenset({"momentum_buffer"})

    def _update(self, group: dict[str, Any], batch: _Batch) -> None:
        buffers = first = None
        if group["momentum"] != 0:
            # a parameter's buffer starts at its first momentum step, as a copy of g
            first = ["momentum_buffer" not in s for s in batch.states]
            if any(first):
                buffers = [
                    np.zeros(p.shape, p.dtype) if new else s["momentum_buffer"]
                    for p, s, new in zip(batch.params, batch.states, first, strict=True)
                ]
            else:
                buffers = [s["momentum_buffer"] for s in batch.states]
        kernels.impl.sgd_step(
            batch.params,
            batch.grads,
            buffers,
            first,
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            weight_decay=group["weight_decay"],
        )
        if buffers is not None and any(first):
            for s, b, new in zip(batch.states, buffers, first, strict=True):
                if new:
                    s["momentum_buffer"] = b
