"""``to_dot``: the graph behind a tensor as Graphviz DOT text (no Graphviz needed to make it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tensor import Tensor
from .graph import Node, collect

# Fill colours by node kind; the same palette as ``draw`` so both pictures read alike.
COLORS = {"op": "#fde9c9", "param": "#cfe2f3", "leaf": "#d9ead3", "input": "#eeeeee"}
SHAPES = {"op": "ellipse", "param": "box", "leaf": "box", "input": "box"}


def quote(text: str) -> str:
    """A DOT double-quoted string showing ``text`` literally.

    Inside DOT quotes ``\\"`` is a quote and Graphviz reads backslash escapes in labels
    (``\\n``, ``\\l``, ``\\N`` ...), so backslashes are doubled first; a newline in the text
    becomes Graphviz's own line break ``\\n``.
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{text}"'


def _node_line(node: Node) -> str:
    label = quote("\n".join(node.label))
    attrs = [f"label={label}", f"shape={SHAPES[node.kind]}", "style=filled",
             f'fillcolor="{COLORS[node.kind]}"']
    if node.is_output:
        attrs.append("penwidth=2")
    return f"  {node.id} [{', '.join(attrs)}];"


def to_dot(tensor: Tensor, params: Mapping[str, Any] | None = None) -> str:
    """The graph that produced ``tensor`` in Graphviz DOT.

    One node per recorded op (its class name, output shape and dtype) and one per leaf it
    reads: parameters take their names from ``params``, other leaves are labelled ``leaf``
    (requires grad) or ``input`` (does not). Edges point in data-flow direction, from an
    input to the op that consumes it; the tensor itself has a thick border. Every label is a
    quoted, escaped DOT string, so any parameter name is safe.

    Args:
        tensor: the result to draw, usually a loss before ``backward()``.
        params: names for tensors, e.g. ``dict(model.named_parameters())``; inputs may be
            named too (``{"x": x, **dict(model.named_parameters())}``).

    Example:
        >>> text = to_dot(loss, dict(model.named_parameters()))
        >>> Path("graph.dot").write_text(text)       # then: dot -Tsvg graph.dot
    """
    graph = collect(tensor, params)
    lines = ["digraph minigrad {", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10];']
    lines += [_node_line(node) for node in graph.nodes]
    lines += [f"  {source} -> {target};" for source, target in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"
