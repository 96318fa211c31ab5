"""Adam and AdamW (decoupled weight decay), with optional AMSGrad."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import kernels
from ..functional._rules import check_flag
from .optimizer import Optimizer, _Batch, check_number


class Adam(Optimizer):
    """Adam, PyTorch's rule.

    Per step t (each parameter counts its own steps), with g the gradient::

        g = g + weight_decay * p                     (Adam; AdamW decays p instead)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        v_max = max(v_max, v)                        (AMSGrad; used below instead of v)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    State per parameter: ``"step"`` (t), ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v) and, with
    AMSGrad, ``"max_exp_avg_sq"`` (v_max).

    Args:
        params: parameters, or dicts of parameters with per-group options.
        lr: learning rate.
        betas: decay rates (beta1, beta2) of the first and second moments, each in [0, 1).
        eps: added to the denominator for numerical stability.
        weight_decay: L2 penalty added to the gradient (see AdamW for the decoupled form).
        amsgrad: use the running maximum of the second moment.

    Example:
        >>> opt = Adam(model.parameters(), lr=1e-3)
    """

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    def _check_options(self, group: dict[str, Any]) -> None:
        check_number("learning rate", group["lr"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = tuple(betas)
        check_number("beta1", betas[0], 0.0, 1.0, high_open=True)
        check_number("beta2", betas[1], 0.0, 1.0, high_open=True)
        check_number("eps", group["eps"])
        check_number("weight_decay", group["weight_decay"])
        check_flag(group["amsgrad"], "amsgrad")

    def _state_arrays(self, group: dict[str, Any]) -> tuple[str, ...]:
        if group["amsgrad"]:
            return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        return ("exp_avg", "exp_avg_sq")

    def _state_names(self) -> frozenset[str]:
        return frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})

    def _torch_only_options(self) -> dict[str, Any]:
        return {"decoupled_weight_decay": self._decoupled}

    def _update(self, group: dict[str, Any], batch: _Batch) -> None:
        states = batch.states
        beta1, beta2 = group["betas"]
        steps = [s["step"] + 1 for s in states]
        kernels.impl.adam_step(
            batch.params,
            batch.grads,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else None,
            steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled=self._decoupled,
        )
        for s, t in zip(states, steps, strict=True):
            s["step"] = t


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, PyTorch's rule.

    Per step: ``p = p * (1 - lr * weight_decay)``, then Adam's update with the plain gradient.
    Same arguments and state as Adam; weight_decay defaults to 1e-2.

    Example:
        >>> opt = AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
