"""A layered layout for small graphs (inputs at the top, the output at the bottom), pure Python.

The classic recipe in three steps, small enough to read: (1) give every node a layer, the
longest path from a leaf for ops, and the layer just above its first consumer for leaves, so
parameters sit next to the op that reads them; (2) split every edge that spans several
layers with invisible waypoints, one per layer crossed; (3) order each layer by the barycentre
(mean position) of its neighbours in the layer above, then below, a few sweeps each way,
which removes most edge crossings; (4) place each row at least a column apart per node, each
node as close as it may to the mean x of its neighbours, so long edges run straight.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from .graph import Graph

SWEEPS = 6  # down+up barycentre passes; small graphs settle in two or three
LEAF_PULL = 0.25  # weight of a leaf's edge when placing nodes (an edge between ops: 1)


@dataclass
class Layout:
    """Node positions ``(x, y)`` by node id (x >= 0; y = -layer, so the output is lowest), each
    edge of the graph as the polyline of points it passes through, source first."""

    positions: dict[str, tuple[float, float]]
    paths: list[list[tuple[float, float]]]
    width: float  # from the leftmost to the rightmost node, plus one column
    depth: int  # number of layers


def _layers(graph: Graph) -> dict[str, int]:
    parents: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    children: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for source, target in graph.edges:
        parents[target].append(source)
        children[source].append(target)
    layer: dict[str, int] = {}
    waiting = {node: len(set(p)) for node, p in parents.items()}
    ready = [node for node, count in waiting.items() if count == 0]
    while ready:  # Kahn's order: every parent has its layer before its child
        node = ready.pop()
        layer[node] = 1 + max((layer[p] for p in parents[node]), default=-1)
        for child in set(children[node]):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    for node, above in parents.items():
        if not above and children[node]:  # a leaf: just above the first op that reads it
            layer[node] = min(layer[c] for c in children[node]) - 1
    low = min(layer.values(), default=0)
    return {node: value - low for node, value in layer.items()}


def _split_edges(graph: Graph, layer: dict[str, int]):
    """Rows of node ids per layer (waypoints included) and each edge as its chain of ids."""
    rows: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for node in graph.nodes:
        rows[layer[node.id]].append(node.id)
    chains = []
    for k, (source, target) in enumerate(graph.edges):
        chain = [source]
        for depth in range(layer[source] + 1, layer[target]):
            waypoint = f"~{k}.{depth}"
            rows[depth].append(waypoint)
            chain.append(waypoint)
        chains.append(chain + [target])
    return rows, chains


def _centre_ops(row: list[str], key, leaves: set[str]) -> list[str]:
    """Within each run of equal barycentres (an op and the parameters it reads), put the
    ops in the middle and the leaves half on each side, so the chain of ops runs straight."""
    out: list[str] = []
    start = 0
    while start < len(row):
        end = start + 1
        while end < len(row) and key(row[end]) == key(row[start]):
            end += 1
        run = row[start:end]
        side = [n for n in run if n in leaves]
        middle = [n for n in run if n not in leaves]
        half = len(side) // 2
        out += side[:half] + middle + side[half:]
        start = end
    return out


def _order(rows: list[list[str]], chains: list[list[str]], leaves: set[str]) -> None:
    """Reorder each row in place by the barycentre of its neighbours, sweeping both ways."""
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for chain in chains:
        for a, b in pairwise(chain):
            down.setdefault(a, []).append(b)
            up.setdefault(b, []).append(a)
    for sweep in range(2 * SWEEPS):
        forward = sweep % 2 == 0
        neighbours = up if forward else down
        indices = range(1, len(rows)) if forward else range(len(rows) - 2, -1, -1)
        for i in indices:
            ref = rows[i - 1] if forward else rows[i + 1]
            rank = {node: r for r, node in enumerate(ref)}
            current = {node: r for r, node in enumerate(rows[i])}

            def key(node: str, rank=rank, current=current, neighbours=neighbours) -> float:
                near = [rank[n] for n in neighbours.get(node, ()) if n in rank]
                return sum(near) / len(near) if near else current[node]

            rows[i] = _centre_ops(sorted(rows[i], key=key), key, leaves)


def _gap(a: str, b: str) -> float:
    """Least distance between neighbours in a row: a node needs a column, a waypoint less."""
    waypoints = a.startswith("~") + b.startswith("~")
    return (1.0, 0.5, 0.25)[waypoints]


def _place_row(row: list[str], desired: dict[str, float]) -> dict[str, float]:
    """x for each id of ``row``, in order, at least ``_gap`` apart and close to ``desired``.

    Packing from the left and from the right both keep the order and the gaps, and so does
    their mean (the constraints are linear), which splits the compromise evenly."""
    left, right = [desired[row[0]]], [desired[row[-1]]]
    for a, b in pairwise(row):
        left.append(max(desired[b], left[-1] + _gap(a, b)))
    for a, b in reversed(list(pairwise(row))):
        right.append(min(desired[a], right[-1] - _gap(a, b)))
    right.reverse()
    return {node: (lx + rx) / 2 for node, lx, rx in zip(row, left, right, strict=True)}


def _coordinates(rows: list[list[str]], chains: list[list[str]],
                 leaves: set[str]) -> dict[str, float]:
    """x of every node and waypoint: start from packed ranks, then pull each one towards the
    mean x of its neighbours, sweeping down and up, so that long edges run straight."""
    near: dict[str, list[tuple[str, float]]] = {}
    for chain in chains:
        # The spine of ops pulls harder than a parameter on the op that reads it, so that a
        # chain of ops runs straight down and the parameters fan out around it.
        weight = 1.0 if leaves.isdisjoint(chain) else LEAF_PULL
        for a, b in pairwise(chain):
            near.setdefault(a, []).append((b, weight))
            near.setdefault(b, []).append((a, weight))
    x: dict[str, float] = {}
    for row in rows:
        x.update(_place_row(row, {node: float(rank) for rank, node in enumerate(row)}))
    for sweep in range(2 * SWEEPS):
        order = rows if sweep % 2 == 0 else rows[::-1]
        for row in order:
            desired = {}
            for node in row:
                pulls = near.get(node, ())
                total = sum(w for _, w in pulls)
                desired[node] = sum(x[n] * w for n, w in pulls) / total if pulls else x[node]
            x.update(_place_row(row, desired))
    return x


def layout(graph: Graph) -> Layout:
    """Where to draw each node and edge of ``graph``; see the module docstring."""
    layer = _layers(graph)
    rows, chains = _split_edges(graph, layer)
    leaves = {n.id for n in graph.nodes if n.kind != "op"}
    _order(rows, chains, leaves)
    x = _coordinates(rows, chains, leaves)
    low = min(x.values(), default=0.0)
    points = {node: (x[node] - low, -float(depth))
              for depth, row in enumerate(rows) for node in row}
    positions = {node.id: points[node.id] for node in graph.nodes}
    paths = [[points[node] for node in chain] for chain in chains]
    width = max(x.values(), default=0.0) - low + 1
    return Layout(positions, paths, width, len(rows))
