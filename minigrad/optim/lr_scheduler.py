"""Learning-rate schedulers: set each param group's ``lr`` from a closed form of the epoch.

Usage follows PyTorch: make the scheduler after the optimizer (that sets the lr of epoch 0)
and call ``scheduler.step()`` once per epoch, after ``optimizer.step()``. The closed forms
give PyTorch's sequences; unlike PyTorch's chained forms they ignore manual lr edits, and
a scheduler whose step would erase another scheduler's change of the lr raises instead.
This module holds the base class, the closed forms of one epoch count (StepLR, ExponentialLR,
CosineAnnealingLR, LambdaLR, LinearLR) and SequentialLR, which hands the epochs from one
scheduler to the next; OneCycleLR (``_one_cycle.py``) and ReduceLROnPlateau, driven by a
metric (``_plateau.py``), live beside it and are re-exported here.
"""

from __future__ import annotations

import bisect
import math
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .optimizer import Optimizer, check_number

# The scheduler that last set each optimizer's lr: schedulers do not compose (each writes its
# own formula), so one that finds another's change since its own last step refuses to erase it.
# Weak both ways: a scheduler holds its optimizer, so a strong value would keep both alive.
_LAST_WRITER: weakref.WeakKeyDictionary[Optimizer, weakref.ref] = weakref.WeakKeyDictionary()


def _mark_writer(scheduler: Any) -> None:
    """Record ``scheduler`` as the last to set its optimizer's lr."""
    _LAST_WRITER[scheduler.optimizer] = weakref.ref(scheduler)


def _check_alone(scheduler: Any, mine: list[float]) -> None:
    """Raise if another scheduler changed the lr ``scheduler`` set last (``mine``)."""
    ref = _LAST_WRITER.get(scheduler.optimizer)
    writer = ref() if ref is not None else None
    if writer is None or writer is scheduler or not mine:
        return
    current = [group["lr"] for group in scheduler.optimizer.param_groups]
    if current != mine:
        raise RuntimeError(
            f"{type(scheduler).__name__}.step: the lr it set was changed by "
            f"{type(writer).__name__}, which steps the same optimizer. minigrad's schedulers "
            f"do not compose (each sets the lr from its own formula; PyTorch multiplies its "
            f"chainable ones), so this step would silently undo that change. Run them one "
            f"after another with SequentialLR, or fold the factors into one LambdaLR")


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
        if self.last_epoch >= 0:  # not a (re)start at epoch 0, when it writes first
            _check_alone(self, self._last_lr)
        self.last_epoch += 1
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr
        _mark_writer(self)

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
        self._check_state(state_dict, ("base_lrs",))
        for key, value in state_dict.items():
            setattr(self, key, list(value) if key in ("base_lrs", "_last_lr") else value)

    def _check_state(self, state_dict: Any, per_group: tuple[str, ...]) -> None:
        """Raise unless ``state_dict`` is a dict with exactly this scheduler's keys whose
        ``per_group`` entries hold one value per param group; then forget which scheduler
        set the optimizer's lr last (see ``_check_alone``)."""
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
        for key in per_group:
            if len(state_dict[key]) != groups:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: {len(state_dict[key])} "
                    f"{key} for an optimizer with {groups} param groups"
                )
        # a restored state is a fresh start: the lr it remembers need not be the optimizer's
        _LAST_WRITER.pop(self.optimizer, None)

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


class LambdaLR(LRScheduler):
    """lr = base * lr_lambda(epoch), with one function for all groups or one per group.

    ``state_dict`` keeps the state of callable objects (their ``__dict__``) but not plain
    functions or lambdas, which cannot be saved (as in PyTorch): pass the same functions again
    when resuming.

    Example:
        >>> scheduler = LambdaLR(opt, lr_lambda=lambda epoch: 0.95 ** epoch)
    """

    def __init__(self, optimizer: Optimizer,
                 lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1):
        groups = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 0
        if isinstance(lr_lambda, list | tuple):
            if len(lr_lambda) != groups:
                raise ValueError(f"LambdaLR: expected {groups} lr_lambdas (one per param "
                                 f"group), got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * groups
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"LambdaLR: lr_lambda must be callable, got {fn!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lrs = []
        for base_lr, fn in zip(self.base_lrs, self.lr_lambdas, strict=True):
            factor = fn(self.last_epoch)
            # a NaN or a string would become the lr and fail (or worse, not) much later
            check_number(f"LambdaLR: lr_lambda({self.last_epoch})", factor, -math.inf)
            lrs.append(base_lr * factor)
        return lrs

    def state_dict(self) -> dict[str, Any]:
        state = {key: value for key, value in vars(self).items()
                 if key not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else dict(vars(fn))
                               for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._check_state(state_dict, ("base_lrs", "lr_lambdas"))
        for key, value in state_dict.items():
            if key == "lr_lambdas":
                for fn, saved in zip(self.lr_lambdas, value, strict=True):
                    if saved is not None:
                        vars(fn).update(saved)
            else:
                setattr(self, key, list(value) if key in ("base_lrs", "_last_lr") else value)


class LinearLR(LRScheduler):
    """Scale the lr linearly from ``start_factor`` to ``end_factor`` over ``total_iters``
    epochs, then hold it (a warm-up with the defaults):
    lr = base * (start + (end - start) * min(epoch, total_iters) / total_iters).

    Example:
        >>> warmup = LinearLR(opt, start_factor=0.1, total_iters=5)
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5, last_epoch: int = -1):
        check_number("start_factor", start_factor, 0.0, 1.0)
        if start_factor == 0:  # PyTorch's rule: 0 < start_factor <= 1
            raise ValueError("invalid start_factor: 0 (expected > 0 and <= 1)")
        check_number("end_factor", end_factor, 0.0, 1.0)
        if isinstance(total_iters, bool) or not isinstance(total_iters, int) or total_iters < 1:
            raise ValueError(f"total_iters must be a positive int, got {total_iters!r}")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        progress = min(epoch, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at the epochs in ``milestones``; each
    starts from its own epoch 0 when its turn comes (PyTorch's SequentialLR).

    Args:
        optimizer: the optimizer every scheduler was made for.
        schedulers: the schedulers, in order (closed forms: not ReduceLROnPlateau).
        milestones: ``len(schedulers) - 1`` increasing epochs at which the next one takes over.

    Example:
        >>> warmup = LinearLR(opt, start_factor=0.1, total_iters=5)
        >>> decay = CosineAnnealingLR(opt, T_max=95)
        >>> scheduler = SequentialLR(opt, [warmup, decay], milestones=[5])
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int], last_epoch: int = -1):
        _check_sequence(optimizer, schedulers, milestones)
        if last_epoch != -1:
            raise ValueError("SequentialLR resumes through load_state_dict, not last_epoch; "
                             f"got last_epoch={last_epoch!r}")
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = 0
        # The schedulers' constructors each wrote their own epoch 0: rewind and start the first.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self._restart(self._schedulers[0])

    @staticmethod
    def _restart(scheduler: LRScheduler) -> None:
        """Put ``scheduler`` at its own epoch 0. A nested SequentialLR starts its first
        scheduler there too (stepping it would run its first scheduler's epoch 1)."""
        if isinstance(scheduler, SequentialLR):
            scheduler.last_epoch = 0
            SequentialLR._restart(scheduler._schedulers[0])
        else:
            scheduler.last_epoch = -1
            scheduler.step()

    def step(self) -> None:
        """Advance one epoch: the scheduler whose turn it is steps (or restarts at epoch 0 on
        its milestone)."""
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            self._restart(scheduler)
        else:
            scheduler.step()

    def get_last_lr(self) -> list[float]:
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        return self._schedulers[index].get_last_lr()

    def get_lr(self) -> list[float]:
        return self.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """``last_epoch``, the milestones and each scheduler's own state dict."""
        return {"last_epoch": self.last_epoch, "_milestones": list(self._milestones),
                "_schedulers": [s.state_dict() for s in self._schedulers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._check_state(state_dict, ())
        saved = state_dict["_schedulers"]
        if len(saved) != len(self._schedulers):
            raise ValueError(f"SequentialLR.load_state_dict: {len(saved)} scheduler states for "
                             f"{len(self._schedulers)} schedulers")
        for scheduler, state in zip(self._schedulers, saved, strict=True):
            scheduler.load_state_dict(state)
        self.last_epoch = state_dict["last_epoch"]
        self._milestones = list(state_dict["_milestones"])


def _check_sequence(optimizer: Any, schedulers: Any, milestones: Any) -> None:
    """SequentialLR's arguments: schedulers of this optimizer, one milestone fewer, increasing."""
    if not isinstance(schedulers, list | tuple) or not schedulers:
        raise ValueError(f"SequentialLR expects a non-empty list of schedulers, got "
                         f"{schedulers!r}")
    for i, scheduler in enumerate(schedulers):
        if isinstance(scheduler, ReduceLROnPlateau) or not isinstance(scheduler, LRScheduler):
            raise TypeError(f"SequentialLR: schedulers[{i}] must be an epoch-driven scheduler, "
                            f"got {type(scheduler).__name__}")
        if scheduler.optimizer is not optimizer:
            raise ValueError(f"SequentialLR: schedulers[{i}] belongs to another optimizer")
    if not isinstance(milestones, list | tuple) or len(milestones) != len(schedulers) - 1:
        raise ValueError(f"SequentialLR: expected {len(schedulers) - 1} milestones for "
                         f"{len(schedulers)} schedulers, got {milestones!r}")
    ints = all(isinstance(m, int) and not isinstance(m, bool) for m in milestones)
    if not ints or list(milestones) != sorted(set(milestones)) or min(milestones, default=1) < 1:
        raise ValueError(f"SequentialLR: milestones must be increasing positive ints, got "
                         f"{list(milestones)}")


# Defined beside this module (each needs LRScheduler above) and importable from here, where
# PyTorch users look for them.
from ._one_cycle import OneCycleLR  # noqa: E402
from ._plateau import ReduceLROnPlateau  # noqa: E402

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR",
           "LinearLR", "SequentialLR", "OneCycleLR", "ReduceLROnPlateau"]
