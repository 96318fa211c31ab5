"""RMSprop, plain or centered, with optional momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import kernels
from ..functional._rules import check_flag
from .optimizer import Optimizer, _Batch, check_number


class RMSprop(Optimizer):
    """RMSprop, PyTorch's rule.

    Per step, with g the gradient::

        g = g + weight_decay * p
        s = alpha * s + (1 - alpha) * g**2
        a = alpha * a + (1 - alpha) * g;  s~ = s - a**2   (centered; else s~ = s)
        u = g / (sqrt(s~) + eps)
        b = momentum * b + u;  p = p - lr * b            (momentum > 0)
        p = p - lr * u                                   (otherwise)

    State per parameter: ``"step"``, ``"square_avg"`` (s), ``"momentum_buffer"`` (b, when
    momentum > 0) and ``"grad_avg"`` (a, when centered).

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

    def _check_options(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        check_number("alpha", group["alpha"], 0.0, 1.0)
        check_number("eps", group["eps"])
        check_number("weight_decay", group["weight_decay"])
        check_number("momentum", group["momentum"])
        check_flag(group["centered"], "centered")

    def _state_arrays(self, group: dict[str, Any]) -> tuple[str, ...]:
        names = ("square_avg",)
        if group["momentum"] != 0:
            names += ("momentum_buffer",)
        if group["centered"]:
            names += ("grad_avg",)
        return names

    def _state_names(self) -> frozenset[str]:
        return frozenset({"step", "square_avg", "momentum_buffer", "grad_avg"})

    def _update(self, group: dict[str, Any], batch: _Batch) -> None:
        states = batch.states
        kernels.impl.rmsprop_step(
            batch.params,
            batch.grads,
            [s["square_avg"] for s in states],
            [s["grad_avg"] for s in states] if group["centered"] else None,
            [s["momentum_buffer"] for s in states] if group["momentum"] != 0 else None,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
        )
        for s in states:
            s["step"] += 1
