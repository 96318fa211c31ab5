"""Module hooks: what ``Module.__call__`` does once a hook is registered on the module.

A module without hooks has no ``ModuleHooks`` (its class attribute ``_hooks`` is None) and its
``__call__`` is the plain ``forward`` call. Forward pre-hooks and forward hooks run around
``forward`` as in PyTorch. Full backward hooks work as PyTorch's do: every tensor argument that
requires grad passes through an identity node (``ops.hooks.BackwardHook``) before ``forward``,
and every output that requires grad through another after it; the gradients reaching those
nodes are ``grad_input`` and ``grad_output``. The nodes of each side form one barrier group of
the observed backward walk (``minigrad.hooks``), so a hook sees all of a call's input gradients
at once and may replace them before any flows on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import grad_mode, hooks
from ..hooks import RemovableHandle
from ..ops.hooks import BackwardHook
from ..tensor import Tensor

KINDS = ("forward_pre", "forward", "backward")


class ModuleHooks:
    """The hooks registered on one module, by kind, each kind in registration order."""

    __slots__ = KINDS

    def __init__(self) -> None:
        for kind in KINDS:
            setattr(self, kind, {})

    def empty(self) -> bool:
        return not any(getattr(self, kind) for kind in KINDS)


def add_hook(module: Any, kind: str, fn: Callable) -> RemovableHandle:
    """Register ``fn`` as a hook of ``kind`` on ``module``; the handle removes it."""
    if not callable(fn):
        raise TypeError(f"register_{kind}_hook expects a callable, got {type(fn).__name__}")
    registry = module.__dict__.get("_hooks")
    if registry is None:
        registry = ModuleHooks()
        object.__setattr__(module, "_hooks", registry)
    key = next(hooks._keys)
    getattr(registry, kind)[key] = fn

    def remove() -> None:
        getattr(registry, kind).pop(key, None)
        if registry.empty() and module.__dict__.get("_hooks") is registry:
            del module.__dict__["_hooks"]  # back to the plain __call__

    return RemovableHandle(remove)


def call_with_hooks(module: Any, args: tuple, kwargs: dict) -> Any:
    """``module(*args, **kwargs)`` with its hooks, in PyTorch's order: forward pre-hooks,
    input side of the backward hooks, ``forward``, forward hooks, output side."""
    registry: ModuleHooks = module._hooks
    for fn in list(registry.forward_pre.values()):
        result = fn(module, args)
        if result is not None:
            args = result if isinstance(result, tuple) else (result,)
    call = None
    if registry.backward and grad_mode.is_grad_enabled():
        call = _BackwardHookCall(module, list(registry.backward.values()))
        args = call.wrap_inputs(args)
    output = module.forward(*args, **kwargs)
    for fn in list(registry.forward.values()):
        result = fn(module, args, output)
        if result is not None:
            output = result
    if call is not None:
        output = call.wrap_outputs(output)
    return output


class _Side:
    """One barrier group: the input or the output side of one module call."""

    __slots__ = ("on_release",)

    def __init__(self, on_release: Callable) -> None:
        self.on_release = on_release

    def release(self, positions: list[int], grads: list) -> list:
        return self.on_release(positions, grads)


class _BackwardHookCall:
    """The full backward hooks of one module call (those registered when it ran)."""

    def __init__(self, module: Any, user_hooks: list[Callable]) -> None:
        self.module, self.user_hooks = module, user_hooks
        self.n_inputs = self.n_outputs = 0
        self.input_like: dict[int, np.ndarray] | None = None  # position -> input array
        self.grad_outputs: tuple | None = None

    def wrap_inputs(self, args: tuple) -> tuple:
        self.n_inputs = len(args)
        wrapped = list(args)
        side = _Side(self._inputs_ready)
        for i, a in enumerate(args):
            if isinstance(a, Tensor) and a._requires_grad:
                wrapped[i] = _through_boundary(a, side, i)
                self.input_like = self.input_like or {}
                self.input_like[i] = a._data
        return tuple(wrapped)

    def wrap_outputs(self, output: Any) -> Any:
        single = isinstance(output, Tensor)
        if not single and not isinstance(output, tuple):
            return output  # other containers are passed through unwatched, as in PyTorch
        outputs = (output,) if single else output
        self.n_outputs = len(outputs)
        side = _Side(self._outputs_ready)
        wrapped = tuple(_through_boundary(o, side, i)
                        if isinstance(o, Tensor) and o._requires_grad else o
                        for i, o in enumerate(outputs))
        return wrapped[0] if single else wrapped

    def _outputs_ready(self, positions: list[int], grads: list) -> list:
        self.grad_outputs = hooks.pack(positions, grads, self.n_outputs)
        if self.input_like is None:  # no input requires grad: the hooks see only None
            grad_input = (None,) * self.n_inputs
            for fn in self.user_hooks:
                result = fn(self.module, grad_input, self.grad_outputs)
                if result is not None and (not isinstance(result, tuple | list)
                                           or any(r is not None for r in result)):
                    raise RuntimeError(
                        f"backward hook of {type(self.module).__name__}: no input of the "
                        "module requires grad, so the hook must return None (or only Nones)"
                    )
            self.grad_outputs = None
        return grads

    def _inputs_ready(self, positions: list[int], grads: list) -> list:
        if self.grad_outputs is None:  # the gradient did not come through the outputs
            return grads
        grad_input = hooks.pack(positions, grads, self.n_inputs)
        for fn in self.user_hooks:
            result = fn(self.module, grad_input, self.grad_outputs)
            if result is None:
                continue
            result = tuple(result) if isinstance(result, Sequence) else result
            if not isinstance(result, tuple) or len(result) != len(grad_input):
                raise RuntimeError(
                    f"backward hook of {type(self.module).__name__} returned "
                    f"{_describe(result)}; expected None or {len(grad_input)} gradients "
                    "(one per forward argument, None where none)"
                )
            grad_input = result
        self.grad_outputs = None
        return [self._unpack(grad_input[p], p) for p in positions]

    def _unpack(self, g: Any, position: int) -> np.ndarray | None:
        if g is None:
            return None  # the hook stopped this gradient
        like = self.input_like[position]
        who = f"backward hook of {type(self.module).__name__} (grad_input[{position}])"
        return hooks.replacement(g, like.shape, like.dtype, who)


def _through_boundary(t: Tensor, side: _Side, position: int) -> Tensor:
    out = BackwardHook.apply(t)
    hooks.watch(out._ctx).barrier = (side, position)
    return out


def _describe(result: Any) -> str:
    if isinstance(result, tuple):
        return f"{len(result)} gradients"
    return type(result).__name__
