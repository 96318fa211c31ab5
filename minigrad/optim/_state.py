"""An optimizer's state dict in PyTorch's layout: writing it, and checking one before loading.

``{"state": {index: {"step": int, name: array, ...}}, "param_groups": [{options...,
"params": [index, ...]}]}``, parameters numbered across groups in order. ``load_state`` checks
everything and builds the new state and options without touching the optimizer, so that the
caller's assignment is the only change and a bad state dict leaves the optimizer as it was.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .optimizer import Optimizer

# Options that PyTorch's optimizers save and minigrad's do not have. The first four choose an
# implementation, not the math, so any value loads; the others must match what minigrad does.
_ANY = object()
_TORCH_ONLY = {"foreach": _ANY, "fused": _ANY, "capturable": _ANY, "differentiable": _ANY,
               "maximize": False}


def save_state(opt: Optimizer) -> dict[str, Any]:
    """``opt``'s state dict; arrays are copies, so later steps do not change it."""
    state: dict[int, dict[str, Any]] = {}
    groups = []
    index = 0
    for group in opt.param_groups:
        for k, p in enumerate(group["params"]):
            if p in opt.state:
                state[index + k] = {
                    name: value.copy() if isinstance(value, np.ndarray) else value
                    for name, value in opt.state[p].items()
                }
        saved = {key: value for key, value in group.items() if key != "params"}
        saved["params"] = list(range(index, index + len(group["params"])))
        groups.append(saved)
        index += len(group["params"])
    return {"state": state, "param_groups": groups}


def load_state(
    opt: Optimizer, state_dict: Any
) -> tuple[dict[Any, dict[str, Any]], list[dict[str, Any]]]:
    """The state and the group options ``state_dict`` holds for ``opt``, all checked."""
    if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
        raise ValueError("an optimizer state dict has exactly the keys 'state' and 'param_groups'")
    saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved_groups, (list, tuple)) or not isinstance(saved_state, dict):
        raise TypeError("'param_groups' must be a list of dicts and 'state' a dict")
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError(f"state dict has {len(saved_groups)} param groups, optimizer has "
                         f"{len(opt.param_groups)}")
    params: dict[int, Any] = {}
    groups = []
    for i, (group, saved) in enumerate(zip(opt.param_groups, saved_groups, strict=True)):
        groups.append(_group_options(opt, i, group, saved, params))
    state = {}
    for key, entry in saved_state.items():
        index = _index(key)
        if index not in params:
            raise ValueError(f"state dict has state for unknown parameter {key!r}")
        p, group = params[index]
        state[p] = _entry(opt, index, entry, p.data, group)
    return state, groups


def _group_options(opt: Optimizer, i: int, group: dict[str, Any], saved: Any,
                   params: dict[int, Any]) -> dict[str, Any]:
    """Group i's new options, checked by the optimizer's own rules; ``params`` learns which
    parameter each saved index names (and the options that will apply to it)."""
    if not isinstance(saved, dict) or "params" not in saved:
        raise TypeError(f"param_groups[{i}] must be a dict with a 'params' entry")
    indices = saved["params"]
    if not isinstance(indices, (list, tuple)) or len(indices) != len(group["params"]):
        raise ValueError(f"param_groups[{i}]['params'] must list {len(group['params'])} "
                         f"parameter indices, got {indices!r:.80}")
    options = {k: v for k, v in group.items() if k != "params"}
    torch_only = dict(_TORCH_ONLY, **opt._torch_only_options())
    for key, value in saved.items():
        if key == "params":
            continue
        if key in torch_only:
            wanted = torch_only[key]
            if wanted is not _ANY and value != wanted:
                raise ValueError(f"param_groups[{i}][{key!r}] = {value!r}: minigrad's "
                                 f"{type(opt).__name__} only does {key}={wanted!r}")
            continue
        if key not in opt.defaults and key != "initial_lr":
            raise ValueError(f"param_groups[{i}] has unknown option {key!r}")
        options[key] = tuple(value) if isinstance(value, list) else value
    candidate = dict(options, params=group["params"])
    opt._check_options(candidate)
    options.update((k, v) for k, v in candidate.items() if k != "params")  # e.g. betas tuple
    for index, p in zip(indices, group["params"], strict=True):
        params[_index(index)] = (p, candidate)
    return options


def _index(key: Any) -> int:
    """A parameter index: an int, or its decimal string (what ``mg.load`` may give back)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return int(key)
    if isinstance(key, str) and key.isdigit():
        return int(key)
    raise ValueError(f"optimizer state keys must be parameter indices, got {key!r}")


def _entry(opt: Optimizer, index: int, entry: Any, data: np.ndarray,
           group: dict[str, Any]) -> dict[str, Any]:
    """Parameter ``index``'s new state: the saved arrays as C-contiguous copies in the
    parameter's dtype and shape, and the step count as an int."""
    if not isinstance(entry, dict):
        raise TypeError(f"state[{index}] must be a dict, got {type(entry).__name__}")
    allowed = opt._state_names()
    new: dict[str, Any] = {}
    for name, value in entry.items():
        if name not in allowed:
            raise ValueError(f"state[{index}] has unexpected key {name!r}; "
                             f"{type(opt).__name__} keeps {sorted(allowed)}")
        if name == "step":
            new["step"] = _step(index, value)
        elif value is not None:  # PyTorch's SGD may save a momentum_buffer of None
            new[name] = _array(index, name, value, data)
    required = opt._state_arrays(group)
    missing = [name for name in required if name not in new]
    if opt._counts_steps and "step" not in new:
        missing.insert(0, "step")
    if missing:
        raise ValueError(f"state[{index}] lacks {missing}, which "
                         f"{type(opt).__name__} with these options needs")
    return new


def _step(index: int, value: Any) -> int:
    """A step count (PyTorch saves it as a float tensor) as an int >= 0."""
    number = math.nan
    if not isinstance(value, (str, bytes)) and np.ndim(value) == 0:
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if not (math.isfinite(number) and number >= 0 and number.is_integer()):
        raise ValueError(f"state[{index}]['step'] must be a whole number >= 0, got {value!r}")
    return int(number)


def _array(index: int, name: str, value: Any, data: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"state[{index}][{name!r}] must hold real numbers, got dtype "
                        f"{array.dtype}")
    if array.shape != data.shape:
        raise ValueError(f"state[{index}][{name!r}] has shape {array.shape}, the parameter "
                         f"has {data.shape}")
    return np.array(array, dtype=data.dtype, order="C", copy=True)
