"""ReduceLROnPlateau: lower the lr when a metric stops improving (driven by the metric, not
by a closed form of the epoch)."""

from __future__ import annotations

import math
from typing import Any

from .lr_scheduler import LRScheduler, _mark_writer
from .optimizer import Optimizer, check_number


class ReduceLROnPlateau(LRScheduler):
    """Multiply every group's lr by ``factor`` once the metric given to ``step(metric)`` has
    not improved for more than ``patience`` epochs (PyTorch's rule, step by step):

    - better: mode "min" and threshold_mode "rel": metric < best * (1 - threshold);
      "min"/"abs": metric < best - threshold; "max"/"rel": metric > best * (1 + threshold);
      "max"/"abs": metric > best + threshold. A better metric becomes ``best`` and resets the
      count of bad epochs; any other adds one.
    - during ``cooldown`` epochs after a reduction, bad epochs are not counted.
    - when the count exceeds ``patience``: lr = max(lr * factor, min_lr), applied only where
      the change exceeds ``eps``; then the cooldown starts and the count resets.

    Unlike PyTorch, a NaN or infinite metric raises ``ValueError`` instead of counting as a
    bad epoch: it means the training itself went wrong.

    Example:
        >>> scheduler = ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=3)
        >>> for epoch in range(epochs):
        ...     val_loss = evaluate(model)
        ...     scheduler.step(val_loss)
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float | list[float] = 0.0, eps: float = 1e-8):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"expected an Optimizer, got {type(optimizer).__name__}")
        check_number("factor", factor, 0.0, 1.0, high_open=True)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        check_number("threshold", threshold)
        check_number("eps", eps)
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        groups = len(optimizer.param_groups)
        min_lrs = list(min_lr) if isinstance(min_lr, list | tuple) else [min_lr] * groups
        if len(min_lrs) != groups:
            raise ValueError(f"expected {groups} min_lrs (one per param group), got "
                             f"{len(min_lrs)}")
        for value in min_lrs:
            check_number("min_lr", value)
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.eps, self.min_lrs = cooldown, eps, min_lrs
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _is_better(self, metric: float) -> bool:
        if self.mode == "min":
            bar = self.best * (1 - self.threshold) if self.threshold_mode == "rel" \
                else self.best - self.threshold
            return metric < bar
        bar = self.best * (1 + self.threshold) if self.threshold_mode == "rel" \
            else self.best + self.threshold
        return metric > bar

    def step(self, metric: Any) -> None:  # type: ignore[override]
        """Record this epoch's ``metric`` (a number or a one-element Tensor) and reduce the
        lr if it has not improved for more than ``patience`` epochs."""
        try:
            value = float(metric)
        except (TypeError, ValueError) as error:
            raise TypeError(f"ReduceLROnPlateau.step expects a number (e.g. the validation "
                            f"loss), got {type(metric).__name__}") from error
        if not math.isfinite(value):
            raise ValueError(f"ReduceLROnPlateau.step: the metric is {value}")
        self.last_epoch += 1
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in the cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                new_lr = max(group["lr"] * self.factor, min_lr)
                if group["lr"] - new_lr > self.eps:
                    group["lr"] = new_lr
                    # a closed-form scheduler stepping beside this one would undo the cut
                    _mark_writer(self)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        return self.get_last_lr()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._check_state(state_dict, ("min_lrs",))
        for key, value in state_dict.items():
            setattr(self, key, list(value) if isinstance(value, list) else value)
