"""Module and Parameter: registration, traversal, modes, dtype and state dicts; no math."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..hooks import RemovableHandle
from ..kernels._checks import FLOAT_DTYPES
from ..tensor import Tensor
from ..versions import mark_all_changed
from . import _hooks as module_hooks
from ._state import checked_state


class Parameter(Tensor):
    """A Tensor that a Module registers as learnable; requires grad by default.

    Example:
        >>> w = Parameter(mg.randn(3, 2).data)
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True):
        super().__init__(*_kept_dtype(data), requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model.

    Subclasses set Parameters, buffers (``register_buffer``) and sub-modules as attributes in
    ``__init__`` and define ``forward``; calling the module runs ``forward``.

    Example:
        >>> class TwoLayer(Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.hidden = Linear(4, 8)
        ...         self.out = Linear(8, 2)
        ...     def forward(self, x):
        ...         return self.out(self.hidden(x).relu())
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"assign {name!r} after calling super().__init__() in {type(self).__name__}"
            )
        if name in self._buffers:  # assigning a registered buffer keeps it a buffer
            self._buffers[name] = Tensor(*_kept_dtype(value)) if isinstance(value, np.ndarray) \
                else value
            return
        # Replacing a registered parameter (or sub-module) by something else would silently
        # drop it from parameters() and state_dict(), e.g. ``self.weight = self.weight * 2``.
        if name in self._parameters and not isinstance(value, Parameter):
            if value is None:
                self._parameters[name] = None
                return
            raise TypeError(
                f"cannot assign {type(value).__name__} to parameter {name!r} of "
                f"{type(self).__name__} (a Parameter or None expected); to change its values "
                f"in place, assign to {name}.data"
            )
        if name in self._modules and not isinstance(value, Module):
            if value is None:
                self._modules[name] = None
                return
            raise TypeError(
                f"cannot assign {type(value).__name__} to sub-module {name!r} of "
                f"{type(self).__name__} (a Module or None expected)"
            )
        # a replaced parameter or sub-module keeps its place (PyTorch's state-dict order)
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: look in the registries.
        for registry in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(registry)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: Tensor | np.ndarray | None) -> None:
        """Register non-learnable state (e.g. running statistics): saved in ``state_dict``,
        not returned by ``parameters()``."""
        if isinstance(value, np.ndarray):
            value = Tensor(*_kept_dtype(value))
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def register_parameter(self, name: str, value: Parameter | None) -> None:
        """Register a Parameter (or None, for an optional one such as a missing bias)."""
        if value is not None and not isinstance(value, Parameter):
            raise TypeError(f"{name} must be a Parameter or None, got {type(value).__name__}")
        self.__dict__.pop(name, None)
        self._parameters[name] = value

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a sub-module under ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{name} must be a Module, got {type(module).__name__}")
        self._modules[name] = module

    # ----------------------------------------------------------------- running
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the module's output; every subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # The registered hooks (nn/_hooks.ModuleHooks), set on the instance by the first
    # register_*_hook and removed with the last hook: without hooks __call__ is one test.
    _hooks: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._hooks is None:
            return self.forward(*args, **kwargs)
        return module_hooks.call_with_hooks(self, args, kwargs)

    # ----------------------------------------------------------------- hooks
    def register_forward_pre_hook(self, hook: Callable[[Module, tuple], Any]) -> RemovableHandle:
        """Call ``hook(module, args)`` before every ``forward``; a non-None result replaces
        the positional arguments (a non-tuple result becomes the only argument). Returns a
        handle whose ``remove()`` unregisters it."""
        return module_hooks.add_hook(self, "forward_pre", hook)

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]
                              ) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every ``forward``; a non-None result
        replaces the output. Returns a handle whose ``remove()`` unregisters it."""
        return module_hooks.add_hook(self, "forward", hook)

    def register_full_backward_hook(self, hook: Callable[[Module, tuple, tuple], Any]
                                    ) -> RemovableHandle:
        """Call ``hook(module, grad_input, grad_output)`` in backward, once the gradients
        with respect to all of a call's tensor arguments are known.

        ``grad_input`` has one entry per positional argument of ``forward``, ``grad_output``
        one per output (a Tensor or each element of a tuple): read-only Tensors, None for
        arguments that are not tensors requiring grad and for outputs no gradient reached. A
        non-None result (as many entries as ``grad_input``) replaces the input gradients
        before they flow on. When no argument requires grad the hook still runs, with
        ``grad_input`` all None, and must return None. The hooks that count are those
        registered when the forward ran. Returns a handle whose ``remove()`` unregisters it.
        """
        return module_hooks.add_hook(self, "backward", hook)

    # ----------------------------------------------------------------- traversal
    def children(self) -> Iterator[Module]:
        """The direct sub-modules."""
        return (m for m in self._modules.values() if m is not None)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) for the direct sub-modules."""
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def named_modules(self, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, depth first; a module
        shared by several parents comes once unless ``remove_duplicate`` is False."""
        stack = [(prefix, self)]
        seen: set[int] = set()
        while stack:
            name, module = stack.pop()
            if remove_duplicate and id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """This module and every descendant."""
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) for every parameter, each shared one once."""
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        """Every learnable parameter (what an optimizer takes)."""
        return (p for _, p in self.named_parameters())

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, buffer) for every registered buffer."""
        for module_name, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_name}.{name}" if module_name else name), b

    def buffers(self) -> Iterator[Tensor]:
        """Every registered buffer."""
        return (b for _, b in self.named_buffers())

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn(module)`` on every sub-module, then on this module; returns self.

        The order is PyTorch's: depth first, each module's children (in registration order)
        before the module itself, so ``model.apply(init_weights)`` reaches every layer. A
        child registered twice in one parent is visited once there (a layer shared by two
        parents is visited under each, as in PyTorch).

        Example:
            >>> def init_weights(m):
            ...     if isinstance(m, Linear):
            ...         init.xavier_uniform_(m.weight)
            >>> model.apply(init_weights)
        """
        if not callable(fn):
            raise TypeError(f"apply expects a function of one module, got {type(fn).__name__}")
        # a child held under two names is visited once per parent, as PyTorch's children()
        # does: an fn that scales weights must not scale a shared layer twice
        for module in {id(m): m for m in self.children()}.values():
            module.apply(fn)
        fn(self)
        return self

    # ----------------------------------------------------------------- modes and grads
    def train(self, mode: bool = True) -> Module:
        """Switch this module and all descendants to training (or, with False, eval) mode."""
        if not isinstance(mode, bool | np.bool_):  # train("eval") would mean training
            raise TypeError(f"train() expects a bool, got {mode!r}")
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Switch to evaluation mode (BatchNorm uses running statistics, Dropout is off)."""
        return self.train(False)

    def to(self, dtype: Any) -> Module:
        """Convert every float parameter, its gradient and every float buffer to ``dtype``,
        in place (the Parameter objects stay the same, so an optimizer built before still
        updates them); integer buffers are left alone. Returns the module."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"Module.to: expected float32 or float64, got {dtype}")
        for t in [*self.parameters(), *self.buffers()]:
            if t is None or t.data.dtype.kind != "f":
                continue
            t.data = t.data.astype(dtype, copy=False)
            if t.grad is not None:
                t.grad.data = t.grad.data.astype(dtype, copy=False)
        return self

    def float(self) -> Module:
        """``to(float32)``: in place, integer buffers untouched; returns self."""
        return self.to(np.float32)

    def double(self) -> Module:
        """``to(float64)``: in place, integer buffers untouched; returns self. Build the
        optimizer after converting (one that already has state refuses to step)."""
        return self.to(np.float64)

    def zero_grad(self) -> None:
        """Forget the gradients of every parameter (sets ``.grad`` to None)."""
        for p in self.parameters():
            p.grad = None

    # ----------------------------------------------------------------- state
    def _named_state(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, tensor) of every parameter and buffer in PyTorch's state-dict order:
        module by module, each module's parameters then its buffers. As in PyTorch, a shared
        module or tied parameter appears under every name it has."""
        for module_name, module in self.named_modules(remove_duplicate=False):
            prefix = f"{module_name}." if module_name else ""
            for name, t in (*module._parameters.items(), *module._buffers.items()):
                if t is not None:
                    yield prefix + name, t

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers by dotted name, as copies of their arrays, in PyTorch's key
        order (module by module: its parameters, then its buffers)."""
        return OrderedDict((name, t.data.copy()) for name, t in self._named_state())

    def _missing_state(self, state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        """Entries that ``load_state_dict`` supplies when this module's keys (``prefix`` +
        name) lack them: a layer that gained a buffer overrides it so that older state
        dicts still load. Only this module's own keys, not its sub-modules'."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> Module:
        """Copy arrays from ``state_dict`` into the parameters and buffers, in place.

        With ``strict``, missing keys, unexpected keys and mis-shaped entries are all reported
        in one ``KeyError`` (or ``ValueError`` when only shapes are wrong) before anything is
        changed. Without it, only matching keys are loaded; shapes must still agree. A
        ``TypeError`` says that ``state_dict`` is not a dict or names entries that are not
        numeric arrays (strings, objects, None). Values are cast to each target's dtype.
        Keys a layer can fill in for an older state dict (BatchNorm's
        ``num_batches_tracked``, as 0) are not missing.
        """
        targets = dict(self._named_state())
        values = checked_state(self, targets, state_dict, strict)
        for key, value in values.items():
            targets[key].data[...] = value  # in place: optimizers keep views of .data
        # an in-place change like any other: a graph that saved the old values must raise
        mark_all_changed(list({id(targets[key]): targets[key] for key in values}.values()))
        return self

    # ----------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        """The settings shown inside the parentheses of this module's repr."""
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in
                 self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _kept_dtype(data: Any) -> tuple[Any, Any]:
    """(data, dtype) for a Tensor constructor: a layer's ndarray or Tensor keeps its dtype
    (the layer chose it), anything else follows the one dtype rule."""
    if isinstance(data, Tensor):
        data = data.data
    return data, (data.dtype if isinstance(data, np.ndarray) else None)
