"""Models and optimizer states between minigrad and PyTorch: ``to_torch``, ``from_torch``,
``to_torch_state_dict`` and the optimizer state converters. torch is imported on first use
only, so minigrad never needs it."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from .. import nn
from .._optional import require
from ..dlpack import foreign_array
from ..optim import AdamW
from ..optim.adam import Adam
from ..optim.optimizer import Optimizer
from ._layers import CONTAINERS, LAYERS, constructor_args, torch_problems


class UnsupportedLayerError(TypeError):
    """A model holds layers (or layer options) with no counterpart in the other framework;
    the message names each by its path in the model and its class."""


def import_torch() -> Any:
    """The torch module, or an ImportError naming the extra that installs it."""
    return require("torch", "torch", "converting to and from PyTorch")


def to_torch(module: nn.Module) -> Any:
    """The ``torch.nn`` model equivalent to ``module``, with copies of its weights and buffers.

    ``module`` is built from minigrad's layers (Sequential, ModuleList, ModuleDict and the
    layers of ``minigrad.nn``). Every parameter, running statistic and
    ``num_batches_tracked`` is copied, each sub-module keeps its train/eval mode and each
    parameter its ``requires_grad``; BatchNorm and InstanceNorm momentum is converted to
    PyTorch's convention (0.9 here is 0.1 there); the dtype is kept. Gradients are not copied.
    A layer shared by two places stays one shared layer.

    Raises:
        UnsupportedLayerError: a layer of another class (a Module subclass of your own, even
            a subclass of a minigrad layer): the message lists each by path and class. For a
            model class of your own, build its PyTorch twin and copy the weights with
            ``twin.load_state_dict(to_torch_state_dict(model))``.

    Example:
        >>> net = to_torch(model)            # then torch.nn.parallel.DistributedDataParallel(net)
    """
    torch = import_torch()
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_torch expects a minigrad Module, got {type(module).__name__}")
    _check_tree(module, nn, "torch.nn", torch_side=False)
    memo: dict[int, tuple[Any, Any]] = {}
    built = _build(module, "", memo, lambda name: getattr(torch.nn, name),
                   lambda a: a.data.dtype, lambda dt: getattr(torch, dt.name))
    with torch.no_grad():
        for source, target in memo.values():
            for _, ours, theirs in _arrays(source, target):
                theirs.copy_(torch.from_numpy(ours.data))
    _copy_flags(module, built, lambda p, flag: p.requires_grad_(flag))
    return built


def from_torch(module: Any) -> nn.Module:
    """The minigrad model equivalent to the ``torch.nn`` model ``module`` (the reverse of
    ``to_torch``): the same layers, copies of the weights and buffers, modes and
    ``requires_grad`` flags, momentum converted to minigrad's convention. The tensors must
    be on the CPU.

    Raises:
        UnsupportedLayerError: a layer minigrad does not have (``Conv3d``, ``LSTM``, a class of
            your own) or a setting it does not implement (``GELU(approximate="tanh")``,
            ``momentum=None``, ``padding_mode="reflect"``, ...), each named by path.
    """
    torch = import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    _check_tree(module, torch.nn, "minigrad.nn", torch_side=True)
    memo: dict[int, tuple[Any, Any]] = {}
    built = _build(module, "", memo, lambda name: getattr(nn, name), _torch_np_dtype,
                   lambda dt: dt)
    for source, target in memo.values():
        for name, theirs, ours in _arrays(source, target):
            array = foreign_array(theirs)
            if isinstance(array, str):
                raise TypeError(f"from_torch: {type(source).__name__}.{name} is a {array}")
            ours.data[...] = array
    _copy_flags(module, built, _set_requires_grad)
    return built


def to_torch_state_dict(module: nn.Module) -> OrderedDict[str, Any]:
    """``module.state_dict()`` as torch tensors (copies), in PyTorch's key names and order:
    what ``load_state_dict`` of the same architecture written in PyTorch takes."""
    torch = import_torch()
    return OrderedDict((k, torch.from_numpy(v)) for k, v in module.state_dict().items())


def to_torch_optimizer_state(optimizer: Optimizer) -> dict[str, Any]:
    """The state dict of minigrad ``optimizer`` in the form PyTorch's optimizer of the same
    class loads: arrays as torch tensors, step counts as float32 scalars (as PyTorch keeps
    them), AdamW marked ``decoupled_weight_decay`` (PyTorch would otherwise default it off).

    Build the torch optimizer over the converted model's parameters in the same order (e.g.
    ``torch.optim.Adam(to_torch(model).parameters(), lr=...)``), then call its
    ``load_state_dict`` with this.
    """
    torch = import_torch()
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"to_torch_optimizer_state expects a minigrad optimizer, got "
                        f"{type(optimizer).__name__}")
    saved = optimizer.state_dict()
    state = {
        index: {name: torch.tensor(float(value), dtype=torch.float32) if name == "step"
                else torch.from_numpy(value) for name, value in entry.items()}
        for index, entry in saved["state"].items()
    }
    groups = [dict(group) for group in saved["param_groups"]]
    if isinstance(optimizer, Adam):
        for group in groups:
            group["decoupled_weight_decay"] = isinstance(optimizer, AdamW)
    return {"state": state, "param_groups": groups}


# PyTorch options that choose an implementation, not the math, and the range PyTorch's
# OneCycleLR and CyclicLR keep in the param groups (minigrad's OneCycleLR keeps it in the
# scheduler, which is made again with the same arguments): dropped on the way in.
_IMPLEMENTATION_OPTIONS = ("foreach", "fused", "capturable", "differentiable")
_SCHEDULER_ENTRIES = ("max_lr", "min_lr", "base_momentum", "max_momentum")


def from_torch_optimizer_state(state_dict: Any) -> dict[str, Any]:
    """A PyTorch optimizer's state dict (or the optimizer) as minigrad's: NumPy copies of the
    arrays, int step counts, options as Python numbers, PyTorch's implementation switches
    (foreach, fused, ...), ``maximize=False`` and the range PyTorch's OneCycleLR keeps in the
    groups (``max_lr``, ``min_lr``, ``base_momentum``, ``max_momentum``: give them to
    minigrad's OneCycleLR) left out. ``mg.save`` can write the result
    and the optimizer of the same class in minigrad loads it (minigrad's ``load_state_dict``
    refuses options it cannot honour, such as ``maximize=True``)."""
    torch = import_torch()
    if isinstance(state_dict, torch.optim.Optimizer):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"} or \
            not isinstance(state_dict["state"], dict) or \
            not isinstance(state_dict["param_groups"], list | tuple) or \
            not all(isinstance(group, dict) for group in state_dict["param_groups"]):
        raise ValueError("expected a PyTorch optimizer state dict: a dict with exactly the "
                         "keys 'state' (a dict) and 'param_groups' (a list of dicts)")
    state = {
        int(index): {name: _from_torch_value(value, name == "step")
                     for name, value in entry.items()}
        for index, entry in state_dict["state"].items()
    }
    groups = []
    for group in state_dict["param_groups"]:
        options = {key: _from_torch_value(value, False) if torch.is_tensor(value) else value
                   for key, value in group.items()
                   if key not in _IMPLEMENTATION_OPTIONS + _SCHEDULER_ENTRIES}
        if options.get("maximize") is False:
            del options["maximize"]
        groups.append(options)
    return {"state": state, "param_groups": groups}


# --------------------------------------------------------------------------- helpers
def _from_torch_value(value: Any, is_step: bool) -> Any:
    """An optimizer state entry as minigrad keeps it: ndarray copy, int step, or a number."""
    if value is None or not hasattr(value, "detach"):
        return value
    array = value.detach().cpu().numpy().copy()
    if is_step:
        return int(array)
    return array.item() if array.ndim == 0 and array.dtype.kind == "f" else array


def _torch_np_dtype(array: Any) -> np.dtype:
    """The NumPy dtype of a torch tensor. One NumPy lacks (bfloat16) maps to a non-float
    placeholder: the layer is built in float32 and copying the tensor then raises a
    TypeError naming its dtype."""
    name = str(array.dtype).removeprefix("torch.")
    try:
        return np.dtype(name)
    except TypeError:
        return np.dtype("V2")  # kind "V": not a float, so the layer's default dtype is used


def _set_requires_grad(param: Any, flag: bool) -> None:
    param.requires_grad = flag


def _kind(module: Any, namespace: Any) -> str | None:
    """The shared class name of ``module`` when it is exactly that class of ``namespace``."""
    name = type(module).__name__
    if (name in LAYERS or name in CONTAINERS) and type(module) is getattr(namespace, name, None):
        return name
    return None


def _check_tree(root: Any, namespace: Any, target: str, torch_side: bool) -> None:
    """Raise UnsupportedLayerError listing every sub-module that cannot be rebuilt."""
    problems = []
    for path, module in root.named_modules():
        where = repr(path) if path else "the model itself"
        name = _kind(module, namespace)
        if name is None:
            hint = (" (a Module class of your own: build its twin and copy the weights with "
                    "load_state_dict)" if type(module).__module__.split(".")[0] not in
                    ("minigrad", "torch") else "")
            problems.append(f"{where} ({type(module).__name__}): no counterpart in "
                            f"{target}{hint}")
        elif torch_side and name in LAYERS:
            problems += [f"{where} ({name}): {p}" for p in torch_problems(LAYERS[name], module)]
    if problems:
        raise UnsupportedLayerError("cannot convert: " + "; ".join(problems))


def _build(module: Any, path: str, memo: dict[int, tuple[Any, Any]], target_class: Any,
           array_dtype: Any, dtype_of: Any) -> Any:
    """The target-framework copy of ``module`` (at ``path``) with fresh weights; ``memo``
    maps id(source layer) to (source, copy), which also keeps a shared layer shared."""
    if id(module) in memo:
        return memo[id(module)][1]
    name = type(module).__name__
    if name in CONTAINERS:
        built = target_class(name)()
        # _modules, not named_children(): PyTorch's skips a layer held twice
        for child_name, child in module._modules.items():
            if child is None:
                continue
            child_path = f"{path}.{child_name}" if path else child_name
            built.add_module(child_name, _build(child, child_path, memo, target_class,
                                                array_dtype, dtype_of))
    else:
        where = repr(path) if path else "the model itself"
        try:
            kwargs = constructor_args(LAYERS[name], module, array_dtype, dtype_of)
            built = target_class(name)(**kwargs)
        except (TypeError, ValueError) as exc:
            raise UnsupportedLayerError(f"cannot convert {where} ({name}): {exc}") from exc
        if _array_names(module) != _array_names(built):
            raise UnsupportedLayerError(
                f"cannot convert {where} ({name}): it holds the arrays "
                f"{sorted(_array_names(module))} where a plain {name} holds "
                f"{sorted(_array_names(built))}; an array registered by hand or a "
                f"reparametrization (weight_norm, spectral_norm, pruning) has no counterpart: "
                f"remove it first (e.g. torch.nn.utils.prune.remove)")
    memo[id(module)] = (module, built)
    return built


def _array_names(layer: Any) -> set[str]:
    """The names of the parameters and buffers ``layer`` holds itself (None entries left out)."""
    return {k for registry in ("_parameters", "_buffers")
            for k, v in getattr(layer, registry).items() if v is not None}


def _arrays(source: Any, target: Any) -> list[tuple[str, Any, Any]]:
    """(name, source tensor, target tensor) for each parameter and buffer a layer holds itself
    (copied layer by layer: the two frameworks name the arrays of a shared layer differently
    in their state dicts)."""
    pairs = []
    for registry in ("_parameters", "_buffers"):
        ours = {k: v for k, v in getattr(source, registry).items() if v is not None}
        theirs = {k: v for k, v in getattr(target, registry).items() if v is not None}
        if ours.keys() != theirs.keys():  # the layer table is wrong, not the user's model
            raise RuntimeError(f"{type(source).__name__}: arrays {sorted(ours)} rebuilt as "
                               f"{sorted(theirs)}")
        pairs += [(k, v, theirs[k]) for k, v in ours.items()]
    return pairs


def _copy_flags(source: Any, target: Any, set_requires_grad: Any) -> None:
    """Each sub-module's training flag and each parameter's requires_grad, matched by name."""
    modules = dict(target.named_modules())
    for path, module in source.named_modules():
        modules[path].training = module.training
    params = dict(target.named_parameters())
    for path, param in source.named_parameters():
        set_requires_grad(params[path], param.requires_grad)
