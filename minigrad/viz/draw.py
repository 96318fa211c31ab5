"""``draw``: the graph behind a tensor as a PNG or SVG picture, with matplotlib only.

No Graphviz binary: the layout is minigrad.viz.layout (layered, inputs at the top), and
matplotlib draws boxes and arrows. Install the optional dependency with the ``viz`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..tensor import Tensor
from ._files import new_figure, picture_format, write_atomically
from .dot import COLORS
from .graph import Graph, collect
from .layout import layout

# Inches per unit of layout: one column per node, one row per layer, room for two lines.
COLUMN, ROW, MARGIN = 1.75, 0.8, 0.55
FONT_SIZE = 8
MAX_NODES = 500  # beyond this a picture is unreadable (and a PNG too large for matplotlib)
ARROW = {"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "shrinkA": 3, "shrinkB": 3}


def render(graph: Graph) -> Any:
    """A matplotlib Figure of ``graph`` (used by ``draw``; handy in a notebook too)."""
    lay = layout(graph)
    fig = new_figure(figsize=(max(2.5, COLUMN * lay.width), max(1.2, ROW * lay.depth)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(-MARGIN, lay.width - 1 + MARGIN)
    ax.set_ylim(-(lay.depth - 1) - MARGIN, MARGIN)
    boxes = {}
    for node in graph.nodes:
        x, y = lay.positions[node.id]
        style = "round,pad=0.35" if node.kind == "op" else "square,pad=0.35"
        frame = {"boxstyle": style, "fc": COLORS[node.kind], "ec": "black",
                 "lw": 1.8 if node.is_output else 0.6}
        boxes[node.id] = ax.text(x, y, "\n".join(node.label), ha="center", va="center",
                                 fontsize=FONT_SIZE, bbox=frame, zorder=3)
    for (source, target), path in zip(graph.edges, lay.paths, strict=True):
        _edge(ax, boxes[source], boxes[target], path[1:-1])
    return fig


def _edge(ax: Any, source: Any, target: Any, waypoints: list[tuple[float, float]]) -> None:
    """An arrow from the bottom of ``source`` to the top of ``target`` through waypoints.

    Artist coordinates ((0.5, 0) is the bottom centre of a text) are resolved when the
    figure is drawn, so arrows meet the boxes whatever size the text turns out to be.
    """
    if not waypoints:
        ax.annotate("", xy=(0.5, 1), xycoords=target, xytext=(0.5, 0), textcoords=source,
                     arrowprops=ARROW, zorder=2)
        return
    line = {k: ARROW[k] for k in ("color", "lw")}
    ax.annotate("", xy=waypoints[0], xycoords="data", xytext=(0.5, 0), textcoords=source,
                arrowprops={"arrowstyle": "-", "shrinkA": 3, "shrinkB": 0, **line}, zorder=2)
    xs, ys = zip(*waypoints, strict=True)
    ax.plot(xs, ys, zorder=2, **line)
    ax.annotate("", xy=(0.5, 1), xycoords=target, xytext=waypoints[-1], textcoords="data",
                arrowprops={**ARROW, "shrinkA": 0}, zorder=2)


def draw(tensor: Tensor, path: str | os.PathLike, params: Mapping[str, Any] | None = None,
         *, dpi: int = 110) -> None:
    """Draw the graph that produced ``tensor`` to ``path``: PNG or SVG, chosen by the suffix.

    The same nodes and edges as ``to_dot`` (ops with output shape and dtype, parameters by
    name from ``params``), laid out in layers from the inputs at the top to ``tensor`` at the
    bottom. Needs matplotlib (``pip install 'minigrad-cython[viz]'``), no system binary. The
    file is written through a temporary file and renamed, so it is never left half written.

    Args:
        tensor: the result to draw, usually a loss before ``backward()``.
        path: where to write; a ``.png`` or ``.svg`` suffix (case-insensitive).
        params: names for tensors, e.g. ``dict(model.named_parameters())``.
        dpi: resolution of a PNG.

    Raises:
        ValueError: the suffix is neither ``.png`` nor ``.svg``, or the graph has more than
            ``MAX_NODES`` nodes.
        ImportError: matplotlib is missing (the message names the ``viz`` extra).
    """
    fmt = picture_format(path)
    graph = collect(tensor, params)
    if len(graph.nodes) > MAX_NODES:
        raise ValueError(
            f"the graph has {len(graph.nodes)} nodes, more than draw() lays out readably "
            f"({MAX_NODES}); write to_dot(tensor) to a file and use Graphviz instead"
        )
    fig = render(graph)
    write_atomically(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
