"""RMSprop, plain or centered, with optional momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import Optimizer, _Bucket, _check_lr, _check_number


class RMSprop(Optimizer):
    """RMSprop, PyTorch's rule.

    Per step, with d the gradient: ``d = d + weight_decay * p``;
    ``s = alpha * s + (1 - alpha) * d**2``; centered: ``a = alpha * a + (1 - alpha) * d`` and
    ``s~ = s - a**2`` (else ``s~ = s``); ``u = d / (sqrt(s~) + eps)``; with momentum
    ``b = momentum * b + u`` and ``p = p - lr * b``, else ``p = p - lr * u``.

    Args:
        params: parameters, or dicts of parameters with per-group options.
        lr: learning rate.
        alpha: smoothing constant of the squared-gradient average, in [0, 1].
        eps: added to the denominator for numerical stability.
        weight_decay: L2 penalty added to the gradient.
        momentum: momentum factor.
        centered: normalise by an estimate of the gradient's variance.

    Example:
        >>> opt = RMSprop(model.parameters(), lr=1e-2)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
        )
        super().__init__(params, defaults)

    def _check(self, group: dict[str, Any]) -> None:
        _check_lr(group["lr"])
        _check_number("alpha", group["alpha"], 0.0, 1.0)
        _check_number("eps", group["eps"])
        _check_number("weight_decay", group["weight_decay"])
        _check_number("momentum", group["momentum"])

    def _state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        names = ["square_avg"]
        if group["momentum"] != 0:
            names.append("momentum_buffer")
        if group["centered"]:
            names.append("grad_avg")
        return tuple(names)

    def _update(
        self,
        group: dict[str, Any],
        bucket: _Bucket,
        params: list[np.ndarray],
        grads: list[np.ndarray],
        offsets: np.ndarray,
        steps: np.ndarray,
    ) -> None:
        self._kernel("rmsprop_step")(
            params,
            grads,
            bucket.buffers["square_avg"],
            bucket.buffers["grad_avg"] if group["centered"] else None,
            bucket.buffers["momentum_buffer"] if group["momentum"] != 0 else None,
            offsets,
            steps,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
        )
