"""minigrad.viz.to_dot and draw: the DOT text parsed back and compared with the graph each
test built by hand; the picture written atomically in both formats."""

from __future__ import annotations

import re
import sys
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.viz import draw, to_dot
from minigrad.viz.graph import collect
from minigrad.viz.layout import layout

# ---------------------------------------------------------------- a parser for what we emit
_STRING = r'"(?:[^"\\]|\\.)*"'
_NODE = re.compile(rf"^\s*(\w+) \[((?:\w+=(?:{_STRING}|[\w.#]+)(?:, )?)+)\];$")
_ATTR = re.compile(rf"(\w+)=({_STRING}|[\w.#]+)")
_EDGE = re.compile(r"^\s*(\w+) -> (\w+);$")


def _unquote(text: str) -> str:
    """A DOT quoted string's text: \\n is a line break, \\x is x (so \\\\ and \\" are literal)."""
    if not text.startswith('"'):
        return text
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text[1:-1])


def parse_dot(text: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str]]]:
    """Nodes (id -> attributes) and edges of the DOT subset to_dot writes; any other line in
    the body fails the test, so the output cannot drift into something this does not check."""
    lines = text.strip().splitlines()
    assert lines[0] == "digraph minigrad {" and lines[-1] == "}"
    nodes: dict[str, dict[str, str]] = {}
    edges = []
    for line in lines[1:-1]:
        if line.strip() in ("rankdir=TB;", 'node [fontname="Helvetica", fontsize=10];'):
            continue
        if m := _EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
        elif m := _NODE.match(line):
            assert m.group(1) not in nodes, f"node {m.group(1)} twice"
            nodes[m.group(1)] = {k: _unquote(v) for k, v in _ATTR.findall(m.group(2))}
        else:
            raise AssertionError(f"unexpected DOT line: {line!r}")
    for source, target in edges:
        assert source in nodes and target in nodes, (source, target)
    return nodes, edges


def labelled(text: str) -> tuple[dict[str, list[str]], Counter]:
    """The parsed graph keyed by label lines: {id: [title, 'shape dtype']} and the edges as a
    multiset of (source label, target label)."""
    nodes, edges = parse_dot(text)
    labels = {k: v["label"].split("\n") for k, v in nodes.items()}
    return labels, Counter((labels[s][0], labels[t][0]) for s, t in edges)


# ---------------------------------------------------------------- to_dot
def test_dot_nodes_and_edges_match_the_expression():
    x = mg.randn(4, 2)
    w = mg.randn(2, 3, requires_grad=True)
    b = mg.randn(3, dtype=mg.float64, requires_grad=True)
    y = ((x @ w) + b).relu()
    loss = (y * y).sum()
    labels, edges = labelled(to_dot(loss, {"w": w, "b": b, "x": x}))
    assert sorted(labels.values()) == sorted([
        ["x", "(4, 2) float32"], ["w", "(2, 3) float32"], ["b", "(3,) float64"],
        ["MatMul", "(4, 3) float32"], ["Add", "(4, 3) float64"], ["ReLU", "(4, 3) float64"],
        ["Mul", "(4, 3) float64"], ["Sum", "() float64"],
    ])
    assert edges == Counter({("x", "MatMul"): 1, ("w", "MatMul"): 1, ("MatMul", "Add"): 1,
                             ("b", "Add"): 1, ("Add", "ReLU"): 1, ("ReLU", "Mul"): 2,
                             ("Mul", "Sum"): 1})


def test_dot_kinds_and_the_output_are_marked():
    x = mg.randn(3, 2)
    w = mg.randn(2, 2, requires_grad=True)
    free = mg.randn(2, requires_grad=True)
    out = (x @ w + free).sum()
    nodes, _ = parse_dot(to_dot(out, {"w": w}))
    by_title = {v["label"].split("\n")[0]: v for v in nodes.values()}
    assert by_title["w"]["shape"] == "box" and by_title["leaf"]["shape"] == "box"
    assert by_title["input"]["fillcolor"] != by_title["w"]["fillcolor"]
    assert by_title["leaf"]["fillcolor"] != by_title["w"]["fillcolor"]
    assert by_title["Sum"]["shape"] == "ellipse"
    assert [v["label"].split("\n")[0] for v in nodes.values() if "penwidth" in v] == ["Sum"]


def test_dot_names_model_parameters():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    loss = F.cross_entropy(model(mg.randn(6, 5)), mg.tensor([0, 1, 2, 0, 1, 2]))
    labels, edges = labelled(to_dot(loss, dict(model.named_parameters())))
    titles = Counter(v[0] for v in labels.values())
    assert titles == Counter({"Linear": 2, "BatchNorm": 1, "ReLU": 1, "CrossEntropy": 1,
                              "input": 1, "0.weight": 1, "0.bias": 1, "1.weight": 1,
                              "1.bias": 1, "3.weight": 1, "3.bias": 1})
    for name, op in [("0.weight", "Linear"), ("1.bias", "BatchNorm"), ("3.bias", "Linear")]:
        assert edges[(name, op)] == 1
    assert edges[("Linear", "BatchNorm")] == 1 and edges[("Linear", "CrossEntropy")] == 1


@pytest.mark.parametrize("name", ['a"b', "back\\slash", "two\nlines", "brace}; x -> y", "\\n"])
def test_dot_escapes_hostile_names(name):
    w = mg.randn(2, requires_grad=True)
    text = to_dot((w * 2).sum(), {name: w})
    labels, edges = labelled(text)
    assert ["Mul", "(2,) float32"] in labels.values()
    # the name comes back exactly; a line break in it is a line break of the label
    assert any(lines[: len(name.split("\n"))] == name.split("\n") for lines in labels.values())
    assert sum(edges.values()) == 3  # w -> Mul, 2 -> Mul, Mul -> Sum: nothing injected


def test_dot_of_a_leaf_is_one_node():
    t = mg.ones(2, 2, requires_grad=True)
    nodes, edges = parse_dot(to_dot(t, {"t": t}))
    assert edges == [] and [v["label"] for v in nodes.values()] == ["t\n(2, 2) float32"]


def test_dot_follows_the_graph_a_consumer_saw_before_an_in_place_change():
    w = mg.randn(2, 3, requires_grad=True)
    a = w * 2
    c = a * 3  # reads a before the change
    a += 1
    out = (c + a).sum()
    nodes, edges = parse_dot(to_dot(out, {"w": w}))
    title = {k: v["label"].split("\n")[0] for k, v in nodes.items()}
    final_add = [s for s, t in edges if title[t] == "Sum"][0]
    inplace_add = [s for s, t in edges if t == final_add and title[s] == "Add"][0]
    times_three = [s for s, t in edges if t == final_add and title[s] == "Mul"][0]
    times_two = [s for s, t in edges if t == inplace_add and title[s] == "Mul"][0]
    # the product by 3 hangs off w * 2 directly, not off the in-place addition
    assert [s for s, t in edges if t == times_three and title[s] == "Mul"] == [times_two]
    assert sum(1 for _, t in edges if t == times_two) == 2  # w and the constant 2


def test_dot_walks_deep_graphs_without_recursion():
    x = mg.ones(1, requires_grad=True)
    y = x
    for _ in range(3000):
        y = y * 1.0
    nodes, edges = parse_dot(to_dot(y))
    assert len(nodes) == 1 + 3000 * 2 and len(edges) == 3000 * 2


@pytest.mark.parametrize("params, message", [
    ([1, 2], "mapping"), ({1: mg.ones(1)}, "keys must be strings"),
    ({"w": np.ones(2)}, "params['w'] must be a Tensor"),
])
def test_dot_rejects_bad_params(params, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        to_dot(mg.ones(1, requires_grad=True) * 2, params)


def test_dot_rejects_a_non_tensor():
    with pytest.raises(TypeError, match="minigrad Tensor"):
        to_dot(np.ones(3))


# ---------------------------------------------------------------- layout and draw
def _model_loss():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 3))
    x = mg.randn(4, 8)
    loss = F.cross_entropy(model(x), mg.tensor([0, 1, 2, 0])) + (model[0].weight ** 2).sum()
    return loss, {"x": x, **dict(model.named_parameters())}


def test_layout_flows_down_and_keeps_nodes_apart():
    loss, params = _model_loss()
    graph = collect(loss, params)
    lay = layout(graph)
    for (source, target), path in zip(graph.edges, lay.paths, strict=True):
        assert path[0] == lay.positions[source] and path[-1] == lay.positions[target]
        ys = [y for _, y in path]
        assert all(a - b == 1 for a, b in pairwise(ys)), "an edge skips or climbs a layer"
    rows: dict[float, list[float]] = {}
    for x, y in lay.positions.values():
        rows.setdefault(y, []).append(x)
    for xs in rows.values():
        xs.sort()
        assert all(b - a >= 1 - 1e-9 for a, b in pairwise(xs))
    assert lay.positions[graph.nodes[0].id][1] == -(lay.depth - 1)  # the output at the bottom


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".SVG", b"<?xml")])
def test_draw_writes_the_picture(tmp_path, suffix, magic):
    pytest.importorskip("matplotlib")
    loss, params = _model_loss()
    path = tmp_path / f"graph{suffix}"
    draw(loss, path, params)
    data = path.read_bytes()
    assert data.startswith(magic) and len(data) > 5000
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_draw_rejects_an_unknown_suffix_before_writing(tmp_path):
    loss, _ = _model_loss()
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        draw(loss, tmp_path / "graph.jpg")
    assert list(tmp_path.iterdir()) == []


def test_draw_failure_keeps_the_old_file(tmp_path, monkeypatch):
    matplotlib_figure = pytest.importorskip("matplotlib.figure")
    path = tmp_path / "graph.png"
    path.write_bytes(b"old")

    def fail(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib_figure.Figure, "savefig", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        draw(_model_loss()[0], path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["graph.png"]


def test_draw_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"minigrad-cython\[viz\]"):
        draw(_model_loss()[0], tmp_path / "graph.png")
    assert list(tmp_path.iterdir()) == []


def test_draw_refuses_a_graph_too_large_to_read(tmp_path):
    y = mg.ones(1, requires_grad=True)
    for _ in range(300):
        y = y * 1.0  # two nodes each: the op and its constant
    with pytest.raises(ValueError, match=r"601 nodes.*to_dot"):
        draw(y, tmp_path / "big.png")
    assert list(tmp_path.iterdir()) == []
