"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import Optimizer, _Bucket, _check_lr, _check_number


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule.

    Per step, with d the gradient: ``d = d + weight_decay * p``; with momentum,
    ``b = momentum * b + (1 - dampening) * d`` (``b = d`` on the first step) and
    ``d = d + momentum * b`` (Nesterov) or ``d = b``; then ``p = p - lr * d``.

    Args:
        params: parameters, or dicts of parameters with per-group options.
        lr: learning rate (required).
        momentum: momentum factor; 0 keeps no state.
        dampening: dampening of the gradient in the momentum buffer.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        weight_decay: L2 penalty added to the gradient.

    Example:
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> opt.zero_grad(); loss.backward(); opt.step()
    """

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

    def _check(self, group: dict[str, Any]) -> None:
        _check_lr(group["lr"])
        _check_number("momentum", group["momentum"])
        _check_number("dampening", group["dampening"], 0.0, 1.0)
        _check_number("weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")

    def _state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _counts_step(self, group: dict[str, Any]) -> bool:
        # The counter tells the kernel when a momentum buffer starts; no momentum, no state.
        return group["momentum"] != 0

    def _update(
        self,
        group: dict[str, Any],
        bucket: _Bucket,
        params: list[np.ndarray],
        grads: list[np.ndarray],
        offsets: np.ndarray,
        steps: np.ndarray,
    ) -> None:
        buffer = bucket.buffers["momentum_buffer"] if group["momentum"] != 0 else None
        self._kernel("sgd_step")(
            params,
            grads,
            buffer,
            offsets,
            steps,
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            weight_decay=group["weight_decay"],
        )
