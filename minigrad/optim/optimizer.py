"""Optimizer base class: parameter groups, flat per-group state, state_dict; no update rules.

Layout of the state (why a step is one compiled pass): the parameters of a group are split by
dtype into *buckets*; a bucket keeps each kind of state (``exp_avg``, ``momentum_buffer``...)
in ONE flat buffer, parameter ``k`` owning ``buffer[offsets[k] : offsets[k] + size_k]``, plus
one int64 step counter per parameter. ``step()`` hands the kernel the list of (param, grad)
arrays and the flat buffers, and the kernel updates everything in one pass. Nothing is
re-homed: a parameter's ``.data`` stays the user's array, so rebinding ``p.data`` to a new
array of the same size and dtype is harmless.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import kernels

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _grad_array(param: Any) -> np.ndarray | None:
    """The gradient of a parameter as an ndarray (a Tensor's ``.data``), or None."""
    grad = param.grad
    if grad is None or isinstance(grad, np.ndarray):
        return grad
    return grad.data


class _Bucket:
    """The parameters of one group that share a dtype, and their flat state."""

    def __init__(self, positions: list[int], params: list[Any], dtype: np.dtype):
        self.positions = positions  # index of each parameter in its group's "params" list
        self.params = params
        self.dtype = dtype
        self.sizes = [p.data.size for p in params]
        self.offsets = np.zeros(len(params), dtype=np.int64)
        np.cumsum(self.sizes[:-1], out=self.offsets[1:])
        self.total = int(sum(self.sizes))
        self.steps = np.zeros(len(params), dtype=np.int64)
        self.buffers: dict[str, np.ndarray] = {}

    def buffer(self, name: str) -> np.ndarray:
        """The flat state buffer ``name``, created as zeros on first use."""
        if name not in self.buffers:
            self.buffers[name] = np.zeros(self.total, dtype=self.dtype)
        return self.buffers[name]

    def view(self, name: str, k: int) -> np.ndarray:
        """Parameter k's slice of buffer ``name``, shaped like the parameter."""
        start = int(self.offsets[k])
        return self.buffers[name][start : start + self.sizes[k]].reshape(self.params[k].shape)


class Optimizer:
    """Base class of the optimizers: holds ``param_groups`` and the state, runs ``step()``.

    Args:
        params: an iterable of parameters (Tensors with ``.data`` and ``.grad``), or of dicts
            each holding ``"params"`` and per-group options that override ``defaults``.
        defaults: every hyperparameter with its default value.

    Subclasses define ``_check(group)`` (validate hyperparameters, raising ValueError),
    ``_state_names(group)`` (the flat buffers the rule needs) and ``_update(group, bucket,
    params, grads, offsets, steps)`` (one kernel call).
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        if hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError(
                "params must be an iterable of Tensors or of dicts, got a single "
                f"{type(params).__name__}; wrap it in a list"
            )
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self._buckets: list[list[_Bucket]] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ----------------------------------------------------------------- groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (others take the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("a param group needs a 'params' entry")
        params = [params] if hasattr(params, "data") and hasattr(params, "grad") else list(params)
        if not params:
            raise ValueError("a param group got an empty parameter list")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            data = getattr(p, "data", None)
            if not isinstance(data, np.ndarray) or not hasattr(p, "grad"):
                raise TypeError(
                    f"optimizer params must be Tensors (with .data and .grad), got "
                    f"{type(p).__name__} at index {i}"
                )
            if data.dtype not in _FLOAT_DTYPES:
                raise TypeError(
                    f"optimizer params must be float32 or float64, got {data.dtype} at index {i}"
                )
            if id(p) in seen:
                raise ValueError(f"parameter at index {i} appears in more than one place")
            seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"unknown options in param group: {sorted(unknown)}")
        for name, value in self.defaults.items():
            group.setdefault(name, value)
        group["params"] = params
        self._check(group)

        buckets = []
        for dtype in _FLOAT_DTYPES:
            positions = [k for k, p in enumerate(params) if p.data.dtype == dtype]
            if positions:
                buckets.append(_Bucket(positions, [params[k] for k in positions], dtype))
        self.param_groups.append(group)
        self._buckets.append(buckets)

    # ----------------------------------------------------------------- stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``p.grad = None`` (or fill them with zeros in place)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    _grad_array(p)[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; one kernel call per group and dtype.

        Args:
            closure: optional function that recomputes the loss (and the gradients); it is
                called first and its result returned.
        """
        loss = closure() if closure is not None else None
        for group, buckets in zip(self.param_groups, self._buckets, strict=True):
            for bucket in buckets:
                self._step_bucket(group, bucket)
        return loss

    def _step_bucket(self, group: dict[str, Any], bucket: _Bucket) -> None:
        params, grads, active = [], [], []
        sizes, dtype = bucket.sizes, bucket.dtype
        for k, p in enumerate(bucket.params):
            grad = _grad_array(p)
            if grad is None:
                continue
            data = p.data
            # One combined test on the hot path; the precise message only when it fails.
            if (grad.shape != data.shape or grad.dtype != dtype or data.dtype != dtype
                    or data.size != sizes[k]):
                _raise_mismatch(bucket, k, data, grad)
            params.append(data)
            grads.append(grad)
            active.append(k)
        if not active:
            return
        # The kernels take the step counts including this step; they are stored only after
        # the kernel succeeded, so a failed step leaves the counters as they were.
        increment = 1 if self._counts_step(group) else 0
        if len(active) == len(bucket.params):
            index = slice(None)
            offsets = bucket.offsets
        else:
            index = np.array(active, dtype=np.intp)
            offsets = bucket.offsets[index]
        steps = bucket.steps[index] + increment
        for name in self._state_names(group):
            bucket.buffer(name)
        self._update(group, bucket, params, grads, offsets, steps)
        bucket.steps[index] = steps

    # ----------------------------------------------------------------- subclass hooks
    def _check(self, group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (raise ValueError)."""
        _check_lr(group["lr"])

    def _state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        """Names of the flat state buffers the update rule needs with these options."""
        return ()

    def _counts_step(self, group: dict[str, Any]) -> bool:
        """Whether a step with a gradient advances the per-parameter step counter."""
        return True

    def _kernel(self, name: str) -> Callable[..., None]:
        """The kernel ``name`` of the backend in use (looked up at every step)."""
        return getattr(kernels.impl, name)

    def _update(
        self,
        group: dict[str, Any],
        bucket: _Bucket,
        params: list[np.ndarray],
        grads: list[np.ndarray],
        offsets: np.ndarray,
        steps: np.ndarray,
    ) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- state dict
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as nested dicts of arrays and scalars (``mg.save`` can write it).

        ``{"state": {"<index>": {"step": int, "<buffer>": ndarray, ...}}, "param_groups":
        [{hyperparameters..., "params": [index, ...]}]}``, parameters being numbered across
        groups in order (as PyTorch does) and only those that have taken a step appearing in
        ``"state"``. Arrays are copies.
        """
        state: dict[str, dict[str, Any]] = {}
        groups = []
        start = 0
        for group, buckets in zip(self.param_groups, self._buckets, strict=True):
            for bucket in buckets:
                for k, position in enumerate(bucket.positions):
                    if bucket.steps[k] == 0:
                        continue
                    entry: dict[str, Any] = {"step": int(bucket.steps[k])}
                    for name in sorted(bucket.buffers):
                        entry[name] = bucket.view(name, k).copy()
                    state[str(start + position)] = entry
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            groups.append(saved)
            start += len(group["params"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by ``state_dict`` (possibly via mg.load).

        The groups must have the same sizes and the arrays the parameters' shapes; anything
        else raises ValueError before the optimizer is changed.
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(
                "an optimizer state dict has exactly the keys 'state' and 'param_groups'"
            )
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state dict has {len(saved_groups)} param groups, optimizer has "
                f"{len(self.param_groups)}"
            )
        sizes = [len(g["params"]) for g in self.param_groups]
        saved_sizes = [len(g["params"]) for g in saved_groups]
        if sizes != saved_sizes:
            raise ValueError(
                f"param group sizes differ: state dict {saved_sizes}, optimizer {sizes}"
            )
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            candidate = dict(group)
            for key, value in saved.items():
                if key != "params":
                    candidate[key] = tuple(value) if isinstance(value, list) else value
            self._check(candidate)
            new_groups.append(candidate)
        try:
            entries = {int(key): value for key, value in state_dict["state"].items()}
        except (TypeError, ValueError) as exc:
            raise ValueError("optimizer state keys must be parameter indices") from exc
        # Check everything first so that a bad state dict leaves the optimizer untouched.
        plan = []
        start = 0
        for group, buckets in zip(new_groups, self._buckets, strict=True):
            allowed = set(self._state_names(group))
            for bucket in buckets:
                for k, position in enumerate(bucket.positions):
                    entry = entries.pop(start + position, None)
                    if entry is None:
                        continue
                    step = entry.get("step", 0)
                    integer = isinstance(step, (int, np.integer)) and not isinstance(step, bool)
                    if not integer or step < 0:
                        raise ValueError(
                            f"step of parameter {start + position} must be an int >= 0, "
                            f"got {step!r}"
                        )
                    arrays = {}
                    for name, value in entry.items():
                        if name == "step":
                            continue
                        if name not in allowed:
                            raise ValueError(
                                f"unexpected state {name!r} for parameter {start + position}; "
                                f"{type(self).__name__} with these options keeps "
                                f"{sorted(allowed)}"
                            )
                        array = np.asarray(value)
                        if array.shape != bucket.params[k].shape:
                            raise ValueError(
                                f"state {name!r} of parameter {start + position} has shape "
                                f"{array.shape}, the parameter has {bucket.params[k].shape}"
                            )
                        arrays[name] = array
                    plan.append((bucket, k, int(step), arrays))
            start += len(group["params"])
        if entries:
            raise ValueError(f"state dict has state for unknown parameters {sorted(entries)}")

        for buckets in self._buckets:
            for bucket in buckets:
                bucket.steps[:] = 0
                bucket.buffers = {}
        for bucket, k, step, arrays in plan:
            bucket.steps[k] = step
            for name, array in arrays.items():
                bucket.buffer(name)
                bucket.view(name, k)[...] = array
        for group, candidate in zip(self.param_groups, new_groups, strict=True):
            group.update(candidate)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"  group {i}: {len(group['params'])} params")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _raise_mismatch(bucket: _Bucket, k: int, data: np.ndarray, grad: np.ndarray) -> None:
    """Explain why parameter k of a bucket cannot be stepped (its array or gradient changed)."""
    if data.dtype != bucket.dtype or data.size != bucket.sizes[k]:
        raise ValueError(
            f"parameter {bucket.positions[k]} of a group changed from "
            f"{bucket.dtype} with {bucket.sizes[k]} elements to {data.dtype} with "
            f"{data.size} since the optimizer was created; make a new optimizer"
        )
    if grad.shape != data.shape:
        raise ValueError(
            f"parameter {bucket.positions[k]} of a group has shape {data.shape} but "
            f"its gradient has shape {grad.shape}"
        )
    raise TypeError(
        f"parameter {bucket.positions[k]} of a group is {data.dtype} but its "
        f"gradient is {grad.dtype}"
    )


# --------------------------------------------------------------------- shared checks
def _check_number(
    name: str, value: Any, low: float = 0.0, high: float | None = None, high_open: bool = False
) -> None:
    """Raise ValueError unless ``low <= value`` (and ``value <(=) high``), value a real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    ok = math.isfinite(value) and value >= low
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        bound = "" if high is None else (f" and < {high}" if high_open else f" and <= {high}")
        raise ValueError(f"invalid {name}: {value!r} (expected >= {low}{bound})")


def _check_lr(lr: Any) -> None:
    _check_number("learning rate", lr)
