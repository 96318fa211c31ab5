"""Optimizer base class: parameter groups, per-parameter state, step() and PyTorch's state_dict.

The state is kept as PyTorch keeps it: ``optimizer.state[p]`` is a dict of the parameter's
arrays (``"exp_avg"``, ``"momentum_buffer"``...) and, for the rules that need it, its
``"step"`` count. ``step()`` collects, per group, the list of parameters that have a gradient,
their gradients and their state dicts, and hands them to the subclass, whose ``_update``
makes ONE kernel call for the whole group (one per dtype when a group mixes float32 and
float64). The update rules themselves live in sgd.py, adam.py and rmsprop.py.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..kernels._checks import FLOAT_DTYPES
from ..versions import mark_all_changed
from ._state import load_state, save_state


class _Batch:
    """The parameters of one group and dtype that take a step now, with what the kernel needs;
    ``fresh`` holds (param, state) pairs made for this step, stored once the kernel succeeded."""

    __slots__ = ("tensors", "params", "grads", "states", "fresh")

    def __init__(self) -> None:
        self.tensors: list[Any] = []
        self.params: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        self.states: list[dict[str, Any]] = []
        self.fresh: list[tuple[Any, dict[str, Any]]] = []


class _State(dict):
    """``optimizer.state``: a plain dict (parameter -> its state dict) that counts how often
    entries were set or removed, so that ``step()`` knows when its per-group cache is stale."""

    __slots__ = ("changes",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changes = 0

    def _changed(method):  # noqa: N805 -- wraps the dict methods below
        def wrapper(self, *args, **kwargs):
            self.changes += 1
            return method(self, *args, **kwargs)
        wrapper.__name__ = method.__name__
        return wrapper

    __setitem__ = _changed(dict.__setitem__)
    __delitem__ = _changed(dict.__delitem__)
    pop = _changed(dict.pop)
    popitem = _changed(dict.popitem)
    clear = _changed(dict.clear)
    update = _changed(dict.update)
    setdefault = _changed(dict.setdefault)
    __ior__ = _changed(dict.__ior__)
    del _changed


class _GroupCache:
    """What ``step()`` looked up for one group last time: each parameter's state dict (None
    where it has none yet or lacks an array the options need). Valid while the group holds
    the same parameters and options and ``optimizer.state`` had no entry set or removed."""

    __slots__ = ("group", "params", "names", "state", "changes", "states", "found")

    def __init__(self, opt: Optimizer, group: dict[str, Any], names: tuple[str, ...]):
        self.group, self.params, self.names = group, list(group["params"]), names
        self.state, self.changes = opt.state, getattr(opt.state, "changes", None)
        needed = frozenset(names)
        self.found = [opt.state.get(p) for p in self.params]
        self.states = [s if s is not None and s.keys() >= needed else None for s in self.found]

    def valid(self, opt: Optimizer, group: dict[str, Any], names: tuple[str, ...]) -> bool:
        params = group["params"]
        return (
            self.changes is not None
            and opt.state is self.state
            and opt.state.changes == self.changes
            and self.group is group
            and names == self.names
            and len(params) == len(self.params)
            and all(map(operator.is_, params, self.params))
        )


class Optimizer:
    """Base class of the optimizers: holds ``param_groups`` and ``state``, runs ``step()``.

    Args:
        params: an iterable of parameters (Tensors with ``.data`` and ``.grad``), or of dicts
            each holding ``"params"`` and per-group options that override ``defaults``.
        defaults: every hyperparameter with its default value.

    A subclass defines ``_check_options(group)`` (its hyperparameter rules, used by the
    constructor, by every ``step()`` after an option changed and by ``load_state_dict``),
    ``_state_arrays(group)`` (the zero-initialised arrays its rule keeps per parameter) and
    ``_update(group, batch)`` (one kernel call). ``_counts_steps`` says whether the state
    holds a ``"step"`` count.

    Overlapping parameters (two views of one array) are updated one after the other, in group
    order, as PyTorch's per-parameter loop does: each receives its own update.
    """

    _counts_steps = True

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        if hasattr(params, "data") and hasattr(params, "grad"):
            raise TypeError(
                "params must be an iterable of Tensors or of dicts, got a single "
                f"{type(params).__name__}; wrap it in a list"
            )
        self.defaults = dict(defaults)
        self.state: dict[Any, dict[str, Any]] = _State()
        self._caches: dict[int, _GroupCache] = {}
        self.param_groups: list[dict[str, Any]] = []
        # id(group) -> (group, option values last validated): step() re-checks on a change
        self._validated: dict[int, tuple[dict[str, Any], list[Any]]] = {}
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
            if data.dtype not in FLOAT_DTYPES:
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
        self._validate(group)
        self.param_groups.append(group)

    def _validate(self, group: dict[str, Any]) -> None:
        """Check a group's options unless they are the very objects checked last time."""
        values = [group[name] for name in self.defaults]
        seen = self._validated.get(id(group))
        if seen is not None and seen[0] is group and all(map(_same, values, seen[1])):
            return
        self._check_options(group)
        self._validated[id(group)] = (group, [group[name] for name in self.defaults])

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
        """Update every parameter that has a gradient: one kernel call per group (and dtype).

        Each updated parameter's ``_version`` goes up by one (a graph that saved it for
        backward then refuses to use the changed value).

        Args:
            closure: optional function that recomputes the loss (and the gradients); it is
                called first and its result returned.
        """
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            self._validate(group)
            for batch in self._collect(group):
                try:
                    self._update(group, batch)
                except (TypeError, ValueError) as exc:
                    _explain(group, batch, exc)
                    raise
                for p, state in batch.fresh:
                    if state:
                        self.state[p] = state
                mark_all_changed(batch.tensors)
        return loss

    def _collect(self, group: dict[str, Any]) -> list[_Batch]:
        """The group's parameters that have a gradient, with their state, one batch per dtype."""
        names = self._state_arrays(group)
        cache = self._caches.get(id(group))
        if cache is None or not cache.valid(self, group, names):
            cache = self._caches[id(group)] = _GroupCache(self, group, names)
        batch = _Batch()
        tensors, params, grads, states = batch.tensors, batch.params, batch.grads, batch.states
        dtype, mixed = None, False
        counts = self._counts_steps
        for p, state, found in zip(group["params"], cache.states, cache.found, strict=True):
            grad = p.grad
            if grad is None:
                continue
            data = p.data
            if state is None:  # no state yet, or an array the options now need is missing
                state = _completed(found, names, data, counts) if names or counts else {}
                batch.fresh.append((p, state))
            if data.dtype is not dtype:
                mixed = mixed or (dtype is not None and data.dtype != dtype)
                dtype = dtype or data.dtype
            tensors.append(p)
            params.append(data)
            grads.append(grad if type(grad) is np.ndarray else grad.data)
            states.append(state)
        if dtype is None:
            return []
        return _split_by_dtype(batch) if mixed else [batch]

    # ----------------------------------------------------------------- subclass hooks
    def _check_options(self, group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (raise ValueError or TypeError)."""
        check_number("learning rate", group["lr"])

    def _state_arrays(self, group: dict[str, Any]) -> tuple[str, ...]:
        """Names of the per-parameter arrays the rule needs with these options (zeros at first)."""
        return ()

    def _update(self, group: dict[str, Any], batch: _Batch) -> None:
        """Update ``batch`` (params, grads and state dicts of one group and dtype)."""
        raise NotImplementedError

    def _state_names(self) -> frozenset[str]:
        """Every key a parameter's state may hold with any options (for load_state_dict)."""
        return frozenset()

    def _torch_only_options(self) -> dict[str, Any]:
        """PyTorch options this optimizer lacks, each with the only value it can load."""
        return {}

    # ----------------------------------------------------------------- state dict
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state in PyTorch's layout (``mg.save`` can write it).

        ``{"state": {index: {"step": int, "<name>": ndarray, ...}}, "param_groups":
        [{options..., "params": [index, ...]}]}``, parameters numbered across groups in order
        and only those with state appearing in ``"state"``. Arrays are copies.
        """
        return save_state(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and state saved by ``state_dict`` (also PyTorch's, same parameters).

        Everything is checked before anything changes: a bad entry raises ValueError or
        TypeError naming its key (and parameter index) and leaves the optimizer as it was.
        """
        state, groups = load_state(self, state_dict)
        self.state = _State(state)
        for group, options in zip(self.param_groups, groups, strict=True):
            group.update(options)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"  group {i}: {len(group['params'])} params")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _same(a: Any, b: Any) -> bool:
    return a is b


def _grad_array(param: Any) -> np.ndarray:
    grad = param.grad
    return grad if isinstance(grad, np.ndarray) else grad.data


def _split_by_dtype(batch: _Batch) -> list[_Batch]:
    """A batch mixing float32 and float64 parameters as one batch per dtype (a kernel call
    takes one dtype)."""
    parts: dict[np.dtype, _Batch] = {}
    fresh = {id(p) for p, _ in batch.fresh}
    for p, data, g, state in zip(batch.tensors, batch.params, batch.grads, batch.states,
                                 strict=True):
        part = parts.setdefault(data.dtype, _Batch())
        part.tensors.append(p)
        part.params.append(data)
        part.grads.append(g)
        part.states.append(state)
        if id(p) in fresh:
            part.fresh.append((p, state))
    return list(parts.values())


def _completed(state: dict[str, Any] | None, names: tuple[str, ...], like: np.ndarray,
               counts: bool) -> dict[str, Any]:
    """A new state dict: ``state``'s entries plus zero arrays for the missing ``names``
    (PyTorch's initial state), with ``"step": 0`` when the rule counts steps."""
    new = dict(state) if state is not None else ({"step": 0} if counts else {})
    for name in names:
        if name not in new:
            new[name] = np.zeros(like.shape, like.dtype)
    return new


def _explain(group: dict[str, Any], batch: _Batch, exc: Exception) -> None:
    """Turn a kernel's refusal into a message that names the parameter (its index in the
    group), when the cause is a parameter, gradient or state array that no longer fits."""
    index = {id(p): k for k, p in enumerate(group["params"])}
    for p, data, g, state in zip(batch.tensors, batch.params, batch.grads, batch.states,
                                 strict=True):
        k = index[id(p)]
        if data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"parameter {k} of a group is {data.dtype}; optimizers update "
                            "float32 or float64 parameters") from exc
        for name, value in state.items():
            if isinstance(value, np.ndarray) and value.shape != data.shape:
                raise ValueError(
                    f"parameter {k} of a group changed from shape {value.shape} to "
                    f"{data.shape} since its state {name!r} was made; make a new optimizer"
                ) from exc
            if isinstance(value, np.ndarray) and value.dtype != data.dtype:
                raise TypeError(
                    f"parameter {k} of a group changed from {value.dtype} to {data.dtype} "
                    f"since its state {name!r} was made (model.double(), .float() or .to() "
                    f"after the optimizer's first step); build the optimizer after converting "
                    f"the model, or cast its state with opt.load_state_dict(opt.state_dict())"
                ) from exc
        if g.shape != data.shape:
            raise ValueError(f"parameter {k} of a group has shape {data.shape} but its "
                             f"gradient has shape {g.shape}") from exc
        if g.dtype != data.dtype:
            raise TypeError(f"parameter {k} of a group is {data.dtype} but its gradient is "
                            f"{g.dtype}") from exc


# --------------------------------------------------------------------- shared option rules
def check_number(
    name: str, value: Any, low: float = 0.0, high: float | None = None, high_open: bool = False
) -> None:
    """Raise unless ``value`` is a real number with ``low <= value`` (and ``value <(=) high``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"{name} must be a number, got {value!r}")
    ok = math.isfinite(value) and value >= low
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        bound = "" if high is None else (f" and < {high}" if high_open else f" and <= {high}")
        raise ValueError(f"invalid {name}: {value!r} (expected >= {low}{bound})")


