"""The graph behind a tensor as plain data (nodes and edges), shared by ``to_dot`` and ``draw``.

No rendering lives here: ``collect`` walks the recorded Contexts from a tensor back to its
leaves and returns what a picture needs to know about each node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..autograd import Context, _node_at
from ..tensor import Tensor


@dataclass
class Node:
    """One node of the picture.

    ``kind`` is ``"op"`` (a recorded Function), ``"param"`` (a leaf that requires grad and is
    named in ``params``), ``"leaf"`` (an unnamed one) or ``"input"`` (a leaf that does not
    require grad: data, constants; named too when ``params`` lists it). ``title`` is the op's
    class name or the leaf's name; ``shape`` and ``dtype`` describe the op's output or the
    leaf's data. ``is_output`` marks the tensor the picture was drawn from.
    """

    id: str
    kind: str
    title: str
    shape: tuple[int, ...]
    dtype: str
    is_output: bool = False

    @property
    def label(self) -> list[str]:
        """The lines a node shows: its title, then shape and dtype."""
        return [self.title, f"{_shape_text(self.shape)} {self.dtype}"]


@dataclass
class Graph:
    """Nodes in the order they were found (the output first) and edges ``(source, target)``
    between node ids in data-flow direction: from an input to the op that consumes it. An op
    that uses the same tensor twice (``x * x``) has that edge twice."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)


def _shape_text(shape: tuple[int, ...]) -> str:
    return str(tuple(int(n) for n in shape))  # Python's spelling: (3,) and ()


def _check_params(params: Mapping[str, Any] | None) -> dict[int, str]:
    """Map id(tensor) -> name, after checking every entry (names must be strings)."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(
            "params must be a mapping of names to tensors, e.g. dict(model.named_parameters()), "
            f"got {type(params).__name__}"
        )
    names: dict[int, str] = {}
    for name, t in params.items():
        if not isinstance(name, str):
            raise TypeError(f"params keys must be strings, got {type(name).__name__}: {name!r}")
        if not isinstance(t, Tensor):
            raise TypeError(f"params[{name!r}] must be a Tensor, got {type(t).__name__}")
        names.setdefault(id(t), name)  # a tensor listed twice keeps its first name
    return names


def _parent_node(parent: Tensor, consumer: Context) -> Context | None:
    """The node that produced ``parent`` as ``consumer`` saw it: after a recorded in-place op
    on ``parent`` its current node is newer than the consumer (the engine's rule)."""
    node = parent._ctx
    if node is not None and parent._counter[2] > consumer.epoch:
        node = _node_at(parent, consumer.epoch)
    return node


def collect(tensor: Tensor, params: Mapping[str, Any] | None = None) -> Graph:
    """The graph that produced ``tensor``: every recorded op and every leaf it reads.

    An iterative walk, so graphs of any depth work. Leaves are identified by the Tensor
    object (the same tensor used by two ops is one node), ops by their Context.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"expected a minigrad Tensor, got {type(tensor).__name__}")
    names = _check_params(params)
    graph = Graph()
    ids: dict[int, str] = {}
    keep: list[Any] = []  # holds every object whose id() is a key, so no id is reused

    def leaf_id(t: Tensor) -> str:
        key = id(t)
        if key not in ids:
            ids[key] = f"t{len(ids)}"
            keep.append(t)
            graph.nodes.append(_leaf_node(ids[key], t, names.get(key), t is tensor))
        return ids[key]

    def op_id(ctx: Context) -> tuple[str, bool]:
        key = id(ctx)
        if key in ids:
            return ids[key], False
        ids[key] = f"n{len(ids)}"
        keep.append(ctx)
        graph.nodes.append(Node(ids[key], "op", ctx.fn.__name__, tuple(ctx.out.shape),
                                str(ctx.out.dtype), ctx is tensor._ctx))
        return ids[key], True

    if tensor._ctx is None:
        leaf_id(tensor)
        return graph
    root, _ = op_id(tensor._ctx)
    stack = [tensor._ctx]
    while stack:
        ctx = stack.pop()
        target = ids[id(ctx)]
        for parent in ctx.inputs:
            node = _parent_node(parent, ctx)
            if node is None:
                graph.edges.append((leaf_id(parent), target))
                continue
            source, new = op_id(node)
            graph.edges.append((source, target))
            if new:
                stack.append(node)
    return graph


def _leaf_node(node_id: str, t: Tensor, name: str | None, is_output: bool) -> Node:
    if not t._requires_grad:
        kind, title = "input", name or "input"
    elif name is not None:
        kind, title = "param", name
    else:
        kind, title = "leaf", "leaf"
    return Node(node_id, kind, title, tuple(t._data.shape), str(t._data.dtype), is_output)
