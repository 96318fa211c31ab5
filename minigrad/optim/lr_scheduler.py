"""Learning-rate schedulers: set each param group's ``lr`` from a closed form of the epoch.

Usage follows PyTorch: make the scheduler after the optimizer (that sets the lr of epoch 0)
and call ``scheduler.step()`` once per epoch, after ``optimizer.step()``. The closed forms
give PyTorch's sequences; unlike PyTorch's chained forms they ignore manual lr edits.
"""

from __future__ import annotations

import math
from typing import Any

from .optimizer import Optimizer, check_number


class LRScheduler:
    """Base class: ``lr_at(base_lr, epoch)`` defines a schedule.

    Args:
        optimizer: the optimizer whose groups' ``lr`` is set.
        last_epoch: the epoch to resume after; -1 starts fresh (the groups' current lr become
            their ``initial_lr``). To resume, each group must hold ``initial_lr``.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"expected an Optimizer, got {type(optimizer).__name__}")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"last_epoch must be an int >= -1, got {last_epoch!r}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(
                    f"param group {i} has no 'initial_lr'; it is needed to resume at "
                    f"last_epoch={last_epoch}"
                )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list[float] = []
        self.step()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """The learning rate of a group whose initial lr is ``base_lr``, at ``epoch``."""
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        """The learning rates of the current epoch (``last_epoch``), one per group."""
        return [self.lr_at(base_lr, self.last_epoch) for base_lr in self.base_lrs]

    def step(self) -> None:
        """Advance one epoch and write the new learning rates into the param groups."""
        self.last_epoch += 1
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()``, one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer: ``last_epoch``, ``base_lrs`` and the options."""
        return {key: value for key, value in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state saved by ``state_dict`` (the optimizer's lr is restored by it).

        Raises:
            TypeError: state_dict is not a dict.
            KeyError: its keys are not exactly this scheduler's (another scheduler's state).
            ValueError: it holds a learning rate per group for a different number of groups.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"{type(self).__name__}.load_state_dict expects a dict, got "
                f"{type(state_dict).__name__}"
            )
        # setattr on arbitrary keys could overwrite any attribute (even the optimizer)
        expected = set(self.state_dict())
        if set(state_dict) != expected:
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: missing keys "
                f"{sorted(expected - set(state_dict))}, unexpected keys "
                f"{sorted(map(str, set(state_dict) - expected))}"
            )
        groups = len(self.optimizer.param_groups)
        if len(state_dict["base_lrs"]) != groups:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: {len(state_dict['base_lrs'])} "
                f"base_lrs for an optimizer with {groups} param groups"
            )
        for key, value in state_dict.items():
            setattr(self, key, list(value) if key in ("base_lrs", "_last_lr") else value)

    def __repr__(self) -> str:
        options = ", ".join(
            f"{key}={value}"
            for key, value in vars(self).items()
            if key not in ("optimizer", "base_lrs", "_last_lr")
        )
        return f"{type(self).__name__}({options})"


class StepLR(LRScheduler):
    """Decay by ``gamma`` every ``step_size`` epochs: lr = base * gamma ** (epoch // step_size).

    Example:
        >>> scheduler = StepLR(opt, step_size=30, gamma=0.1)
    """

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size must be a positive int, got {step_size!r}")
        check_number("gamma", gamma)
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """Decay by ``gamma`` every epoch: lr = base * gamma ** epoch.

    Example:
        >>> scheduler = ExponentialLR(opt, gamma=0.95)
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1):
        check_number("gamma", gamma)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    """Cosine from the base lr down to ``eta_min`` over ``T_max`` epochs:
    lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2.

    Past ``T_max`` the cosine continues (it rises again), as in PyTorch.

    Example:
        >>> scheduler = CosineAnnealingLR(opt, T_max=100, eta_min=1e-5)
    """

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ):
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"T_max must be a positive int, got {T_max!r}")
        check_number("eta_min", eta_min)
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        cosine = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return self.eta_min + (base_lr - self.eta_min) * cosine
