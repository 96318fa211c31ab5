"""OneCycleLR: the 1cycle policy, a closed form of the step number (lr and momentum)."""

from __future__ import annotations

import math
from typing import Any

from .lr_scheduler import LRScheduler
from .optimizer import Optimizer, check_number


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topsakal, 2018) as PyTorch defines it; step once per batch.

    The lr rises from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
    ``total_steps``, then falls to ``max_lr / div_factor / final_div_factor``; momentum (SGD's
    ``momentum`` or Adam's beta1) moves the opposite way between ``max_momentum`` and
    ``base_momentum``. With ``three_phase`` the lr comes back down to its start before the final
    fall. Within a phase running from step a to step b, at step t, pct = (t - a) / (b - a) and
    ``cos``: value = end + (start - end) * (1 + cos(pi * pct)) / 2, ``linear``: value = start +
    (end - start) * pct. Phase ends (two phases): pct_start * total - 1 and total - 1; three
    phases: pct_start * total - 1, 2 * pct_start * total - 2, total - 1.

    The group's own lr is ignored; its ``initial_lr`` becomes max_lr / div_factor. Stepping
    more than ``total_steps`` times raises ``ValueError``, and so does a ``pct_start`` that
    leaves a phase ending at or before its start (e.g. ``pct_start * total_steps < 1``).

    Args:
        optimizer: its groups get the lr (and momentum) of each step.
        max_lr: peak lr, one number or one per group.
        total_steps: steps in the cycle; or give ``epochs`` and ``steps_per_epoch``.
        pct_start: the share of the cycle spent rising.
        anneal_strategy: "cos" or "linear".
        cycle_momentum: move momentum too (needs an optimizer with ``momentum`` or ``betas``).
        base_momentum, max_momentum: the momentum range, numbers or one per group.
        div_factor: initial lr = max_lr / div_factor.
        final_div_factor: final lr = initial lr / final_div_factor.
        three_phase: rise, fall back to the initial lr, then fall to the final lr.

    Example:
        >>> scheduler = OneCycleLR(opt, max_lr=0.1, epochs=10, steps_per_epoch=len(loader))
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | list[float],
                 total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | list[float] = 0.85,
                 max_momentum: float | list[float] = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"expected an Optimizer, got {type(optimizer).__name__}")
        groups = len(optimizer.param_groups)
        self.total_steps = _total_steps(total_steps, epochs, steps_per_epoch)
        check_number("pct_start", pct_start, 0.0, 1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        check_number("div_factor", div_factor, 0.0)
        check_number("final_div_factor", final_div_factor, 0.0)
        if div_factor == 0 or final_div_factor == 0:
            raise ValueError("div_factor and final_div_factor must be > 0")
        self.anneal_strategy = anneal_strategy
        self.max_lrs = _per_group("max_lr", max_lr, groups)
        self.initial_lrs = [lr / div_factor for lr in self.max_lrs]
        self.min_lrs = [lr / final_div_factor for lr in self.initial_lrs]
        self.cycle_momentum = bool(cycle_momentum)
        self._momentum_key = _momentum_key(optimizer) if self.cycle_momentum else None
        self.base_momentums = _per_group("base_momentum", base_momentum, groups)
        self.max_momentums = _per_group("max_momentum", max_momentum, groups)
        end = float(pct_start * self.total_steps) - 1
        if three_phase:  # (end step, lr from -> to as "initial"/"max"/"min", momentum from -> to)
            self._phases = [(end, "initial", "max", "max", "base"),
                            (2 * end, "max", "initial", "base", "max"),
                            (self.total_steps - 1, "initial", "min", "max", "max")]
        else:
            self._phases = [(end, "initial", "max", "max", "base"),
                            (self.total_steps - 1, "max", "min", "base", "max")]
        starts = [0.0] + [phase[0] for phase in self._phases[:-1]]
        # a phase ending where it starts divides by zero; one ending before it starts runs
        # backwards (pct_start * total_steps < 1: no rise; three_phase with pct_start > 0.5:
        # the fall back overruns the cycle and the final anneal never comes)
        if any(phase[0] <= start for phase, start in zip(self._phases, starts, strict=True)):
            raise ValueError(f"OneCycleLR: pct_start={pct_start} with total_steps="
                             f"{self.total_steps}{' and three_phase' if three_phase else ''} "
                             f"leaves a phase with no steps; change pct_start")
        if last_epoch == -1:
            for group, lr in zip(optimizer.param_groups, self.initial_lrs, strict=True):
                group["initial_lr"] = lr
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _values(self, i: int, step: int) -> tuple[float, float]:
        """(lr, momentum) of group i at ``step``: the phase holding it, interpolated."""
        lrs = {"initial": self.initial_lrs[i], "max": self.max_lrs[i], "min": self.min_lrs[i]}
        moms = {"base": self.base_momentums[i], "max": self.max_momentums[i]}
        start_step = 0.0
        for k, (end_step, lr_a, lr_b, mom_a, mom_b) in enumerate(self._phases):
            if step <= end_step or k == len(self._phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                return (self._anneal(lrs[lr_a], lrs[lr_b], pct),
                        self._anneal(moms[mom_a], moms[mom_b], pct))
            start_step = end_step
        raise AssertionError("unreachable: the last phase always matches")

    def get_lr(self) -> list[float]:
        if self.last_epoch > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {self.last_epoch} times; the cycle "
                             f"has total_steps={self.total_steps}")
        return [self._values(i, self.last_epoch)[0] for i in range(len(self.max_lrs))]

    def step(self) -> None:
        """Advance one step: set each group's lr and, with cycle_momentum, its momentum."""
        super().step()
        if self._momentum_key is None:
            return
        for i, group in enumerate(self.optimizer.param_groups):
            momentum = self._values(i, self.last_epoch)[1]
            if self._momentum_key == "betas":
                group["betas"] = (momentum, *group["betas"][1:])
            else:
                group["momentum"] = momentum

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._check_state(state_dict, ("base_lrs", "max_lrs", "initial_lrs", "min_lrs"))
        for key, value in state_dict.items():
            setattr(self, key, list(value) if isinstance(value, list) else value)


def _total_steps(total_steps: Any, epochs: Any, steps_per_epoch: Any) -> int:
    """total_steps, or epochs * steps_per_epoch; every given count a positive int."""
    def positive(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"OneCycleLR: {name} must be a positive int, got {value!r}")
        return value

    if total_steps is not None:
        return positive("total_steps", total_steps)
    if epochs is None or steps_per_epoch is None:
        raise ValueError("OneCycleLR: give total_steps, or both epochs and steps_per_epoch")
    return positive("epochs", epochs) * positive("steps_per_epoch", steps_per_epoch)


def _per_group(name: str, value: Any, groups: int) -> list[float]:
    """One number for every group, or a list of one per group."""
    values = list(value) if isinstance(value, list | tuple) else [value] * groups
    if len(values) != groups:
        raise ValueError(f"OneCycleLR: expected {groups} values of {name} (one per param "
                         f"group), got {len(values)}")
    for v in values:
        check_number(name, v)
    return [float(v) for v in values]


def _momentum_key(optimizer: Optimizer) -> str:
    """Where the optimizer keeps the momentum OneCycleLR cycles: "betas" (beta1) or
    "momentum"."""
    if "betas" in optimizer.defaults:
        return "betas"
    if "momentum" in optimizer.defaults:
        return "momentum"
    raise ValueError(f"OneCycleLR: {type(optimizer).__name__} has no momentum to cycle; pass "
                     "cycle_momentum=False")
