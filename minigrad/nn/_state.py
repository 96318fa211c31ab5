"""The checks of ``Module.load_state_dict``: every problem of a state dict found and named
before anything is copied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..dlpack import foreign_array
from ..tensor import Tensor


def checked_state(model: Any, targets: dict[str, Tensor], state_dict: Any,
                  strict: bool) -> dict[str, np.ndarray]:
    """The arrays of ``state_dict`` to copy into ``targets`` (``model``'s state by name), or
    the error that ``Module.load_state_dict`` documents, naming every bad entry at once."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"load_state_dict into {type(model).__name__} expects a dict of arrays (from "
            f"state_dict() or mg.load), got {type(state_dict).__name__}"
        )
    state_dict = _with_missing_state(model, state_dict)
    missing = [k for k in targets if k not in state_dict]
    unexpected = [k for k in state_dict if k not in targets]
    wrong_shape, wrong_type = [], []
    values: dict[str, np.ndarray] = {}
    for key, target in targets.items():
        if key in state_dict:
            value = _as_numeric_array(state_dict[key])
            if value is None:
                wrong_type.append(f"{key}: got {_describe(state_dict[key])}")
                continue
            values[key] = value
            if value.shape != target.shape:
                wrong_shape.append(f"{key}: expected {target.shape}, got {value.shape}")
    wrong_shape += _disagreeing_ties(targets, values)
    if wrong_type:  # strings, objects, None: copying them would raise half-way or make NaN
        raise TypeError(
            f"load_state_dict into {type(model).__name__}: entries that are not numeric "
            f"arrays [{'; '.join(wrong_type)}]"
        )
    problems = []
    if strict and missing:
        problems.append(f"missing keys {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if wrong_shape:
        problems.append(f"mis-shaped entries [{'; '.join(wrong_shape)}]")
    if problems:
        message = f"load_state_dict into {type(model).__name__}: " + ", ".join(problems)
        raise (KeyError if (strict and (missing or unexpected)) else ValueError)(message)
    return values


def _with_missing_state(model: Any, state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state_dict`` plus what each module supplies for its keys that are absent (the
    caller's dict is not changed); a shared module, whose state has a name under each of its
    paths, supplies it under each."""
    extra: dict[str, Any] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        extra.update(module._missing_state(state_dict, f"{module_name}." if module_name else ""))
    return {**state_dict, **extra} if extra else state_dict


def _disagreeing_ties(targets: dict[str, Tensor], values: dict[str, np.ndarray]) -> list[str]:
    """The entries that give one shared tensor (a tied weight, a shared module) different
    values under its different names: loading either would silently drop the other."""
    first: dict[int, str] = {}
    problems = []
    for key, value in values.items():
        other = first.setdefault(id(targets[key]), key)
        if other != key and (value.shape != values[other].shape
                             or not np.array_equal(value, values[other], equal_nan=True)):
            problems.append(f"{key}: the same tensor as {other}, but with other values")
    return problems


def _as_numeric_array(value: Any) -> np.ndarray | None:
    """The array of a state-dict entry (ndarray, Tensor, number, or another framework's CPU
    tensor, read through DLPack), or None if not numeric."""
    value = value.data if isinstance(value, Tensor) else value
    if not isinstance(value, np.ndarray | np.generic | int | float):
        if not hasattr(value, "__dlpack__"):  # a PyTorch or JAX tensor of a foreign state dict
            return None
        value = foreign_array(value)
        if isinstance(value, str):
            return None
    array = np.asarray(value)
    return array if array.dtype.kind in "biuf" else None


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of dtype {value.dtype}"
    if hasattr(value, "__dlpack__"):
        reason = foreign_array(value)
        return reason if isinstance(reason, str) else f"array of dtype {reason.dtype}"
    return type(value).__name__
