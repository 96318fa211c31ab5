"""``trace_backward(loss)``: the backward pass step by step, as data and as a table.

Each step is one graph node running its backward (in the engine's order, from the loss down)
with the shape and norm of the gradient it received and of each gradient it passed on to its
inputs; leaf steps (``AccumulateGrad``, as PyTorch names them) close the trace with the
gradient each leaf received in this pass, summed over its uses: exactly what was added to its
``.grad``. The trace is an engine observer (``minigrad.hooks``), so it sees the gradients the
engine really moved, after any tensor hooks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import hooks
from ..autograd import Context, _node_at
from ..tensor import Tensor

LEAF_OP = "AccumulateGrad"


@dataclass(frozen=True)
class GradInfo:
    """One gradient: its shape, dtype and L2 norm over all elements (computed in float64);
    ``value`` holds a copy of the array when the trace was taken with ``keep_grads=True``."""

    shape: tuple[int, ...]
    dtype: str
    norm: float
    value: np.ndarray | None = None

    @classmethod
    def of(cls, g: Any, keep: bool) -> GradInfo:
        g = np.asarray(g)
        norm = float(np.sqrt(np.sum(np.square(g, dtype=np.float64))))
        return cls(g.shape, str(g.dtype), norm, g.copy() if keep else None)

    def __str__(self) -> str:
        return f"{self.shape} {self.dtype} |g|={self.norm:.4e}"


@dataclass(frozen=True)
class TraceStep:
    """One step of the backward pass.

    ``node`` names the node (``Linear#3``: op name and the order in which the trace first met
    it) or the leaf (its parameter name, else ``leaf#k (shape)``); ``op`` is the Function's
    name or ``AccumulateGrad``; ``received`` the gradient with respect to the node's output;
    ``passed`` one ``(input name, gradient or None)`` pair per input, in input order.
    """

    index: int
    node: str
    op: str
    received: GradInfo
    passed: tuple[tuple[str, GradInfo | None], ...]


class BackwardTrace:
    """The steps of one traced backward pass: a sequence of ``TraceStep`` (``trace[i]``,
    ``len``, iteration); ``str(trace)`` and ``trace.table()`` give it as text."""

    def __init__(self, steps: list[TraceStep]) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[TraceStep]:
        return iter(self.steps)

    def __getitem__(self, i: int) -> TraceStep:
        return self.steps[i]

    def leaves(self) -> dict[str, GradInfo]:
        """Leaf name -> the gradient it received in this pass."""
        return {s.node: s.received for s in self.steps if s.op == LEAF_OP}

    def table(self) -> str:
        """One line per gradient passed on; node and received gradient on each node's first."""
        head = f"{'step':>4}  {'node':<20} {'received':<34} {'passed to':<20} {'gradient'}"
        lines = [head, "-" * (len(head) + 24)]
        for s in self.steps:
            first = f"{s.index:>4}  {s.node:<20} {str(s.received):<34} "
            rest = " " * len(first)
            if not s.passed:  # a leaf: its gradient goes into .grad
                lines.append(first + "-> .grad")
            for j, (target, g) in enumerate(s.passed):
                tail = f"{target:<20} {g if g is not None else '- (not needed)'}"
                lines.append((first if j == 0 else rest) + tail)
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return f"<BackwardTrace of {len(self.steps)} steps>"


class _Recorder(hooks.Observer):
    """Collects the steps while the engine walks the graph."""

    def __init__(self, params: Mapping[str, Tensor] | None, keep: bool) -> None:
        self.keep = keep
        self.names: dict[int, str] = {id(t): name for name, t in (params or {}).items()}
        self.count = 0  # nodes and unnamed leaves met so far
        self.steps: list[TraceStep] = []
        self.leaf_grads: dict[int, tuple[Tensor, np.ndarray]] = {}

    def name(self, obj: Context | Tensor) -> str:
        key = id(obj)
        if key not in self.names:
            if isinstance(obj, Context):
                self.names[key] = f"{obj.fn.__name__}#{self.count}"
            else:
                self.names[key] = f"leaf#{self.count} {obj.shape}"
            self.count += 1
        return self.names[key]

    def backward(self, node: Context, grad: Any, input_grads: tuple, start_ns: int,
                 end_ns: int) -> None:
        passed = []
        for parent, g in zip(node.inputs, input_grads, strict=True):
            parent_node = _node_at(parent, node.epoch) if parent._ctx is not None else None
            target = self.name(parent_node if parent_node is not None else parent)
            passed.append((target, None if g is None else GradInfo.of(g, self.keep)))
        self.steps.append(TraceStep(len(self.steps), self.name(node), node.fn.__name__,
                                    GradInfo.of(grad, self.keep), tuple(passed)))

    def leaf(self, leaf: Tensor, grad: Any) -> None:
        previous = self.leaf_grads.get(id(leaf))
        total = grad if previous is None else previous[1] + grad  # the order .grad sums in
        self.leaf_grads[id(leaf)] = (leaf, np.asarray(total))

    def finish(self) -> BackwardTrace:
        for leaf, total in self.leaf_grads.values():
            self.steps.append(TraceStep(len(self.steps), self.name(leaf), LEAF_OP,
                                        GradInfo.of(total, self.keep), ()))
        return BackwardTrace(self.steps)


def trace_backward(loss: Tensor, grad: Any = None, *, params: Mapping[str, Tensor] | None = None,
                   keep_grads: bool = False, retain_graph: bool = False) -> BackwardTrace:
    """Run ``loss.backward(grad, retain_graph)`` and return its steps (see ``TraceStep``).

    ``params`` (``dict(model.named_parameters())``) names the leaves; ``keep_grads=True``
    keeps a copy of every gradient in the trace (``GradInfo.value``). The leaves' ``.grad``
    are filled exactly as by ``loss.backward()``.
    """
    recorder = _Recorder(params, keep_grads)
    if loss._ctx is not None:
        recorder.name(loss._ctx)  # the loss's node is #0
    with hooks.observe(recorder):
        loss.backward(grad, retain_graph=retain_graph)
    return recorder.finish()
