"""The observed backward walk: ``autograd.run_backward`` as it runs while a hook or an
engine observer is registered (see ``minigrad.hooks`` for the registries).

It is the plain walk (Kahn's algorithm over the uses of each node) plus: the tensor hooks and
``retain_grad`` of each node's output before its backward; leaves with hooks counted like
nodes so their hooks see the gradient summed over all uses; barrier groups held until all
their reachable members are ready; the observers told about every node and leaf; and the
in-place clock read afresh at every node. ``tests/test_hooks.py`` checks that it gives the
plain walk's gradients bit for bit.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

import numpy as np

from . import autograd
from .autograd import (
    Context,
    _accumulate_leaf,
    _check_saved,
    _fit,
    _node_at,
    _raise_released,
)
from .grad_mode import _check_finite, _modes
from .hooks import Watch, follow_retains, run_tensor_hooks
from .tensor import Tensor
from .versions import _clock


def run_observed_backward(root: Tensor, grad: np.ndarray, retain_graph: bool) -> None:
    """``autograd.run_backward`` with hooks, observers and barriers (see the module doc)."""
    follow_retains()
    walk = _Walk(tuple(autograd.observers), retain_graph, {id(grad)})
    if root._ctx is None:
        walk.deliver(root, grad)
    else:
        walk.run(root._ctx, grad)


class _Walk:
    """One observed backward pass: Kahn's algorithm over the nodes, as the plain walk, where
    leaves with hooks are counted like nodes (their hooks see the summed gradient)."""

    def __init__(self, observers: tuple, retain_graph: bool, handed_out: set[int]) -> None:
        self.observers, self.retain_graph, self.handed_out = observers, retain_graph, handed_out
        self.pending: dict[Any, np.ndarray] = {}
        self.parked: dict[Any, list[tuple[Context, int]]] = {}
        self.released: set[Any] = set()
        self.hooked: set[Any] = set()  # barrier nodes whose tensor hooks already ran

    def run(self, root: Context, grad: np.ndarray) -> None:
        self.uses, self.group_sizes = _count_uses(root)
        self.pending[root] = grad
        ready = [root]
        while ready:
            while ready:
                node = ready.pop()
                w = autograd.watched.get(id(node))
                grad_out = self.pending.pop(node, None)
                if w is not None and node not in self.hooked:
                    # tensor hooks first, as PyTorch: a module's backward hook sees their result
                    if grad_out is not None:
                        grad_out = run_tensor_hooks(w, grad_out)
                    if w.barrier is not None:
                        self.hooked.add(node)  # it comes back once its group is released
                        if grad_out is not None:
                            self.pending[node] = grad_out
                        if self.park(node, w, ready):
                            continue
                        grad_out = self.pending.pop(node, None)
                self.pass_on(node, self.run_node(node, grad_out), ready)
            for group in list(self.parked):  # cannot happen for module hooks; never drop grads
                if group not in self.released:
                    self.release(group, ready)
                    break

    def run_node(self, node: Context, grad_out: np.ndarray | None) -> tuple:
        """The node's backward (after the checks of the plain walk), fitted to its inputs."""
        if grad_out is None:
            return ()
        if node.saved is None:
            _raise_released(node)
        if node.epoch != _clock[0] and node.saved:  # the clock now: hooks may have moved it
            _check_saved(node)
        start = perf_counter_ns()
        grads = node.fn.backward(node, grad_out)
        if type(grads) is not tuple:
            grads = (grads,)
        if _modes.anomaly:
            _check_finite(node.fn, grads, node.inputs, "backward")
        if not self.retain_graph:
            node.saved = None
        # as the plain walk: fewer gradients than inputs means the trailing ones are None
        grads = tuple(_fitted(g, t._data) if needed else None for g, t, needed
                      in zip(grads, node.inputs, node.needs_input_grad, strict=False))
        grads += (None,) * (len(node.inputs) - len(grads))
        end = perf_counter_ns()
        for observer in self.observers:
            observer.backward(node, grad_out, grads, start, end)
        return grads

    def pass_on(self, node: Context, grads: tuple, ready: list) -> None:
        stale = node.epoch != _clock[0]
        for i, parent in enumerate(node.inputs):
            g = grads[i] if grads else None
            parent_node = parent._ctx
            if stale and parent_node is not None and parent._counter[2] > node.epoch:
                parent_node = _node_at(parent, node.epoch)
            if parent_node is None:
                if parent in self.uses:  # a leaf with hooks: deliver the sum once
                    self.gather(parent, g)
                elif g is not None:
                    self.deliver(parent, g)
                continue
            if g is not None:
                previous = self.pending.get(parent_node)
                self.pending[parent_node] = g if previous is None else previous + g
            uses = self.uses[parent_node] - 1
            self.uses[parent_node] = uses
            if uses == 0:
                ready.append(parent_node)

    def gather(self, leaf: Tensor, g: np.ndarray | None) -> None:
        if g is not None:
            previous = self.pending.get(leaf)
            self.pending[leaf] = g if previous is None else previous + g
        self.uses[leaf] -= 1
        if self.uses[leaf] == 0 and leaf in self.pending:
            self.deliver(leaf, self.pending.pop(leaf))

    def deliver(self, leaf: Tensor, g: np.ndarray) -> None:
        """A leaf's gradient: its hooks, the observers, then ``.grad``."""
        if not leaf._requires_grad:
            return
        w = autograd.watched.get(id(leaf))
        if w is not None and w.ref() is leaf and w.hooks:
            g = run_tensor_hooks(w, g)
        for observer in self.observers:
            observer.leaf(leaf, g)
        _accumulate_leaf(leaf, g, self.handed_out)

    def park(self, node: Context, w: Watch, ready: list) -> bool:
        """Hold a barrier node until its whole group is ready; True if it was held."""
        group, position = w.barrier
        if group in self.released:
            return False
        waiting = self.parked.setdefault(group, [])
        waiting.append((node, position))
        if len(waiting) == self.group_sizes[group]:
            self.release(group, ready)
        return True

    def release(self, group: Any, ready: list) -> None:
        waiting = self.parked[group]
        grads = [self.pending.pop(node, None) for node, _ in waiting]
        new = group.release([position for _, position in waiting], grads)
        for (node, _), g in zip(waiting, new, strict=True):
            if g is not None:
                self.pending[node] = g
        self.released.add(group)
        ready.extend(node for node, _ in waiting)


def _fitted(g: Any, data: np.ndarray) -> Any:
    if g is None or (g.shape == data.shape and g.dtype == data.dtype):
        return g
    return _fit(g, data)


def _count_uses(root: Context) -> tuple[dict[Any, int], dict[Any, int]]:
    """The plain walk's counts of uses per node, plus the uses of each leaf that has hooks,
    and how many nodes of each barrier group the loss reaches."""
    counts: dict[Any, int] = {}
    sizes: dict[Any, int] = {}
    watched = autograd.watched
    _count_group(root, watched, sizes)
    stack, clock = [root], _clock[0]
    while stack:
        node = stack.pop()
        stale = node.epoch != clock
        for parent in node.inputs:
            parent_node = parent._ctx
            if stale and parent_node is not None and parent._counter[2] > node.epoch:
                parent_node = _node_at(parent, node.epoch)
            if parent_node is None:
                w = watched.get(id(parent))
                if w is not None and w.hooks and w.ref() is parent:
                    counts[parent] = counts.get(parent, 0) + 1
            elif parent_node in counts:
                counts[parent_node] += 1
            else:
                counts[parent_node] = 1
                stack.append(parent_node)
                _count_group(parent_node, watched, sizes)
    return counts, sizes


def _count_group(node: Context, watched: dict, sizes: dict) -> None:
    w = watched.get(id(node))
    if w is not None and w.barrier is not None:
        sizes[w.barrier[0]] = sizes.get(w.barrier[0], 0) + 1
