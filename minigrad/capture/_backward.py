"""The backward pass of a recorded call: the engine's own walk, step for step, noting each
array it makes so that a replay repeats the same arithmetic in the same order.

``run_backward`` here is ``autograd.run_backward`` (Kahn's algorithm over the counts of
uses, ``ready.pop()`` order, pending gradients summed as they arrive, ``_fit`` where a
gradient must be summed back to its input's shape, ``_accumulate_leaf`` at the leaves), with
a record beside each array operation: the summation order decides the rounding, and a
replay that summed in another order would not be bit-identical to eager. The in-place checks
run as in the engine (only the repeated calls may have changed tensors: anything else stops
the recording); anomaly mode is never recorded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import autograd
from ..autograd import (
    _accumulate_leaf,
    _check_saved,
    _consumer_counts,
    _fit,
    _node_at,
    _raise_released,
)
from ..tensor import Tensor
from . import _record
from ._sources import Slot, Unreplayable, observed

# backward() without a gradient (the engine seeds it with ones); compared by identity, as
# an explicit gradient may be a Tensor or an array, whose == is elementwise
_ONES = object()


def install(patches: Any) -> None:
    """Route ``Tensor.backward`` (which calls ``autograd.run_backward``) through here."""
    _recording_run_backward.original = patches.put(autograd, "run_backward",
                                                   _recording_run_backward)
    _recording_backward.original = patches.put(Tensor, "backward", _recording_backward)


def _recording_backward(self, grad=None, retain_graph=False):
    rec = _record._active()
    if rec is not None:
        if retain_graph:
            rec.refuse("backward(retain_graph=True) inside the function")
        elif grad is not None:
            rec.seed = grad
        else:
            rec.seed = _ONES
    return _recording_backward.original(self, grad, retain_graph)


def _recording_run_backward(root: Tensor, grad: np.ndarray, retain_graph: bool = False):
    rec = _record._active()
    if rec is not None and autograd._clock[0] - rec.clock_at_start != rec.clock_allowed:
        rec.refuse("a tensor was changed in place before backward inside the function")
    if rec is not None and (autograd.watched or observed()):
        # the engine's hooks or observers must see this backward: let the engine run it
        rec.refuse("tensor hooks or an observer are registered; a replay does not run them")
    if rec is None or rec.problem is not None:
        return _recording_run_backward.original(root, grad, retain_graph)
    seed = rec.seed
    rec.seed = None
    rec.backward_depth += 1
    try:
        if seed is _ONES:
            slot = rec.new_slot(grad)
            rec.steps.append(("seed", grad.shape, grad.dtype, slot))
        else:
            slot = _record._guarded(rec, _seed_source, rec, seed, grad)
        _walk(rec, root, grad, slot)
    finally:
        rec.backward_depth -= 1


def _seed_source(rec: Any, seed: Any, grad: np.ndarray) -> Any:
    """The explicit gradient passed to ``backward(grad)``: it must come from the call."""
    if isinstance(seed, Tensor) and seed._data is grad:
        return rec.source_of_tensor(seed)
    if isinstance(seed, np.ndarray) and seed is grad:
        return rec.source_of_array(seed, "backward's gradient")
    raise Unreplayable("backward(grad) with a gradient converted inside the function")


def _slot(rec: Any, array: Any) -> Slot:
    index = rec.produced.get(id(array))
    return Slot(index) if index is not None else rec.new_slot(array)


def _node_backward(rec: Any, node: Any, grad_out: np.ndarray, grad_source: Any,
                   stale: bool) -> tuple:
    """One node's backward, as the engine runs it, recorded."""
    step = rec.contexts.get(id(node))
    if step is None:
        rec.refuse("backward reached a graph node made outside the function")
    if node.saved is None:
        _raise_released(node)
    if stale and node.saved:
        _check_saved(node)
    input_grads = node.fn.backward(node, grad_out)
    if type(input_grads) is not tuple:
        input_grads = (input_grads,)
    node.saved = None
    outs = tuple(None if g is None else _slot(rec, g) for g in input_grads)
    if rec.problem is None:
        rec.steps.append(("backward", step, grad_source, outs))
    return input_grads


def _walk(rec: Any, root: Tensor, grad: np.ndarray, seed: Any) -> None:
    """``autograd.run_backward`` with a record of each step (see the module docstring)."""
    steps = rec.steps
    group = len(steps)  # the arrays handed to leaves are tracked per backward call
    steps.append(("handed", group, seed))
    if root._ctx is None:
        _leaf(rec, root, grad, seed, {id(grad)}, group)
        return
    remaining_uses = _consumer_counts(root._ctx)
    pending: dict[Any, tuple[np.ndarray, Any]] = {root._ctx: (grad, seed)}
    handed_out: set[int] = {id(grad)}
    ready, clock = [root._ctx], autograd._clock[0]
    while ready:
        node = ready.pop()
        grad_out, grad_source = pending.pop(node, (None, None))
        stale = node.epoch != clock  # only the repeated calls changed tensors (checked above)
        input_grads: Any = ()
        if grad_out is not None:
            input_grads = _node_backward(rec, node, grad_out, grad_source, stale)
        n_grads = len(input_grads)
        for i, (parent, needed) in enumerate(zip(node.inputs, node.needs_input_grad,
                                                 strict=True)):
            g = input_grads[i] if needed and i < n_grads else None
            source = None if g is None else _slot(rec, g)
            if g is not None and (g.shape != parent._data.shape
                                  or g.dtype != parent._data.dtype):
                g = _fit(g, parent._data)
                fitted = _slot(rec, g)
                steps.append(("fit", source, parent._data.shape, parent._data.dtype, fitted))
                source = fitted
            parent_node = parent._ctx
            if stale and parent_node is not None and parent._counter[2] > node.epoch:
                parent_node = _node_at(parent, node.epoch)
            if parent_node is None:
                if g is not None:
                    _leaf(rec, parent, g, source, handed_out, group)
                continue
            if g is not None:
                previous = pending.get(parent_node)
                if previous is None:
                    pending[parent_node] = (g, source)
                else:
                    total = previous[0] + g
                    total_slot = _slot(rec, total)
                    steps.append(("add", previous[1], source, total_slot))
                    pending[parent_node] = (total, total_slot)
            uses = remaining_uses[parent_node] - 1
            remaining_uses[parent_node] = uses
            if uses == 0:
                ready.append(parent_node)


def _leaf(rec: Any, leaf: Tensor, g: np.ndarray, source: Any, handed_out: set[int],
          group: int) -> None:
    """Accumulate into ``leaf.grad`` as the engine does, and record it for a leaf the replay
    can reach (an argument or a tensor from outside the call)."""
    _accumulate_leaf(leaf, g, handed_out)
    if not leaf._requires_grad or rec.problem is not None:
        return
    target = _record._guarded(rec, rec.source_of_tensor, leaf)
    if target is not None and not isinstance(target, Slot):
        rec.steps.append(("leaf", target, source, group))
    elif rec.problem is None:
        rec.refuse("a gradient flows into a tensor made inside the function")
