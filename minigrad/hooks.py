"""The engine's one interception point: tensor hooks, observers, and the observed backward walk.

Everything that watches or changes the engine at work goes through two registries kept in
``autograd``:

- ``autograd.watched``: a ``Watch`` per tensor (a leaf) or graph node (the gradient of a
  non-leaf tensor) that carries hooks: ``Tensor.register_hook``, ``retain_grad``, and the
  barriers through which a module's full backward hook sees all of its gradients at once
  (``nn/_hooks.py``). An entry lives exactly as long as its tensor or node.
- ``autograd.observers``: ``Observer`` objects told about every op's forward (with its time),
  every node's backward (the gradient it received and those it passed on) and every gradient
  reaching a leaf. The profiler and ``viz.trace_backward`` are observers; a recorder for
  capture and replay can be one too.

While both are empty the engine runs its plain paths: ``Function.apply`` is the plain method
(``observe`` swaps it only while an observer is registered) and ``autograd.run_backward``
tests two registries once per call. Otherwise backward is ``_observed.run_observed_backward``:
the same walk, plus the hooks, the observers, barriers, and the in-place clock read afresh at
every node (a hook may change a tensor in place; the saved-tensor check must still see it).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Sequence
from time import perf_counter_ns
from typing import Any

import numpy as np

from . import autograd
from .autograd import Context, Function

_keys = itertools.count()


class RemovableHandle:
    """What every ``register_*`` returns. ``remove()`` unregisters the hook (calling it again
    does nothing); ``with handle:`` removes it when the block ends."""

    __slots__ = ("_remove",)

    def __init__(self, remove: Callable[[], None]) -> None:
        self._remove: Callable[[], None] | None = remove

    def remove(self) -> None:
        """Unregister the hook; idempotent."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


class Watch:
    """The hooks on one leaf tensor or one graph node, kept in ``autograd.watched`` under the
    object's id while the object lives (a weak reference drops the entry with it).

    ``hooks`` are the tensor hooks in registration order; ``retain`` a weak reference to the
    non-leaf tensor whose ``.grad`` this node fills (``retain_grad``); ``barrier`` a
    ``(group, position)`` pair: the walk holds the node until every node of the group that
    the loss reaches is ready, then lets ``group.release`` see and replace their gradients.
    """

    __slots__ = ("ref", "hooks", "retain", "barrier")

    def __init__(self, obj: Any) -> None:
        key = id(obj)
        # the registry bound now: at interpreter exit the module's globals may be gone first
        self.ref = weakref.ref(obj, lambda _, key=key, watched=autograd.watched:
                               watched.pop(key, None))
        self.hooks: dict[int, Callable] = {}
        self.retain: weakref.ref | None = None
        self.barrier: tuple[Any, int] | None = None

    def empty(self) -> bool:
        return not self.hooks and self.retain is None and self.barrier is None


def watch(obj: Tensor | Context) -> Watch:
    """The Watch of a tensor or node, made on first need."""
    w = autograd.watched.get(id(obj))
    if w is None or w.ref() is not obj:
        w = autograd.watched[id(obj)] = Watch(obj)
    return w


def _unwatch_if_empty(obj_id: int, w: Watch) -> None:
    if w.empty() and autograd.watched.get(obj_id) is w:
        del autograd.watched[obj_id]


# ---------------------------------------------------------------------- tensor hooks
def register_tensor_hook(t: Tensor, fn: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
    """``Tensor.register_hook``: on a leaf the hook sees the gradient summed over the leaf's
    uses before it is added to ``.grad``; on a non-leaf, the gradient of the tensor's current
    value before it flows on (an in-place change made later does not move the hook)."""
    if not callable(fn):
        raise TypeError(f"register_hook expects a callable, got {type(fn).__name__}")
    if not t._requires_grad:
        raise RuntimeError(
            "cannot register a hook on a tensor that does not require grad (no gradient "
            "will ever be computed for it)"
        )
    target = t if t._ctx is None else t._ctx
    w, key = watch(target), next(_keys)
    w.hooks[key] = fn
    target_id = id(target)

    def remove() -> None:
        w.hooks.pop(key, None)
        _unwatch_if_empty(target_id, w)

    return RemovableHandle(remove)


def retain_grad(t: Tensor) -> None:
    """``Tensor.retain_grad``: a non-leaf tensor's ``.grad`` is filled (and accumulated) by
    backward, after its other hooks ran. No-op on a leaf."""
    if not t._requires_grad:
        raise RuntimeError("retain_grad on a tensor that does not require grad")
    if t._ctx is not None:
        watch(t._ctx).retain = weakref.ref(t)


def retains_grad(t: Tensor) -> bool:
    """Whether ``retain_grad`` was called on this non-leaf tensor."""
    if t._ctx is None:
        return False
    for w in autograd.watched.values():
        if w.retain is not None and w.retain() is t:
            return True
    return False


def follow_retains() -> None:
    """retain_grad fills ``.grad`` of the tensor's latest value: after an in-place change
    recorded a new node for it, move the request from the old node to the new one."""
    for key, w in list(autograd.watched.items()):
        t = w.retain() if w.retain is not None else None
        node = w.ref()
        if t is None or node is None or t._ctx is node or t._ctx is None:
            continue
        w.retain = None
        _unwatch_if_empty(key, w)
        watch(t._ctx).retain = weakref.ref(t)


def grad_view(g: np.ndarray) -> Tensor:
    """A gradient as a hook sees it: a Tensor over a read-only view (the array may also be
    on its way to other nodes; a hook changes a gradient by returning a new one)."""
    view = np.asarray(g).view()
    view.flags.writeable = False
    return Tensor._from_op(view, None)


def replacement(result: Any, shape: tuple, dtype: np.dtype, who: str) -> np.ndarray:
    """The array of a gradient a hook returned, checked against the one it replaces and
    copied (the caller keeps its tensor and may change it later)."""
    if not isinstance(result, Tensor):
        raise TypeError(f"{who} returned {type(result).__name__}; expected a Tensor or None")
    data = result._data
    if data.shape != shape:
        raise RuntimeError(f"{who} changed the gradient's shape from {shape} to {data.shape}")
    if data.dtype != dtype:
        raise RuntimeError(f"{who} changed the gradient's dtype from {dtype} to {data.dtype}")
    return np.array(data, copy=True)


def run_tensor_hooks(w: Watch, g: np.ndarray) -> np.ndarray:
    """Each hook in registration order may replace the gradient; then retain_grad keeps it."""
    for fn in list(w.hooks.values()):
        result = fn(grad_view(g))
        if result is not None:
            g = replacement(result, np.shape(g), np.asarray(g).dtype,
                            f"tensor hook {getattr(fn, '__name__', fn)!r}")
    if w.retain is not None:
        t = w.retain()
        if t is not None and t._ctx is w.ref():
            if t.grad is None:
                t.grad = Tensor._from_op(np.array(g, copy=True), None)
            else:
                t.grad._data = np.asarray(t.grad._data + g)
    return g


# ---------------------------------------------------------------------- observers
class Observer:
    """Base class of engine observers: override the methods you need. Times are
    ``time.perf_counter_ns()`` readings taken by the engine around the op's own work."""

    def forward(self, fn: type[Function], inputs: tuple[Tensor, ...], attrs: dict[str, Any],
                output: Tensor, start_ns: int, end_ns: int) -> None:
        """``fn.apply(*inputs, **attrs)`` returned ``output``."""

    def backward(self, node: Context, grad: np.ndarray,
                 input_grads: tuple[np.ndarray | None, ...], start_ns: int,
                 end_ns: int) -> None:
        """``node`` received ``grad`` (after its tensor hooks) and passed ``input_grads`` on,
        one per input (None where none), already summed to each input's shape and dtype."""

    def leaf(self, leaf: Tensor, grad: np.ndarray) -> None:
        """``grad`` (after the leaf's hooks) is about to be added into ``leaf.grad``."""


_plain_apply = Function.__dict__["apply"]


def _observed_apply(cls: type[Function], *inputs: Tensor, **attrs: Any) -> Tensor:
    start = perf_counter_ns()
    out = _plain_apply.__func__(cls, *inputs, **attrs)
    end = perf_counter_ns()
    for observer in tuple(autograd.observers):
        observer.forward(cls, inputs, attrs, out, start, end)
    return out


_observed_apply.__doc__ = _plain_apply.__func__.__doc__


def observe(observer: Observer) -> RemovableHandle:
    """Register an engine observer until the returned handle is removed."""
    autograd.observers.append(observer)
    Function.apply = classmethod(_observed_apply)

    def remove() -> None:
        autograd.observers[:] = [o for o in autograd.observers if o is not observer]
        if not autograd.observers:
            Function.apply = _plain_apply

    return RemovableHandle(remove)


def pack(positions: Sequence[int], grads: Sequence[np.ndarray | None],
         size: int) -> tuple[Tensor | None, ...]:
    """Gradients as hooks see them: a tuple of ``size`` entries, read-only Tensors at
    ``positions`` (None where no gradient flowed) and None elsewhere."""
    packed: list[Tensor | None] = [None] * size
    for position, g in zip(positions, grads, strict=True):
        packed[position] = None if g is None else grad_view(g)
    return tuple(packed)


# tensor.py imports autograd, which must load first; this module needs Tensor only at call time.
from .tensor import Tensor  # noqa: E402
