"""Memory: a graph is freed by reference counting alone, every node releases what it saved
after backward, and training does not grow memory.
"""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import data, kernels, nn, optim

compiled = kernels.compiled


# ================================================================================== 4. memory

def _graph_objects(root):
    """Every Context and non-leaf Tensor reachable from root."""
    found, stack, seen = [], [root], set()
    while stack:
        t = stack.pop()
        ctx = t.grad_fn
        if ctx is None or id(ctx) in seen:
            continue
        seen.add(id(ctx))
        found += [t, ctx]
        stack.extend(ctx.inputs)
    return found


def _small_net():
    mg.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8),
                         nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3))


@pytest.mark.parametrize("run_backward", [False, True])
def test_graph_is_freed_by_reference_counting_alone(run_backward):
    model = _small_net()
    x = mg.randn(8, 4, requires_grad=True)
    gc.collect()
    gc.disable()
    try:
        loss = F.cross_entropy(model(x), mg.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
        loss = loss + (x * x).mean() * 0.1  # a leaf used twice, a broadcast, a reduction
        if run_backward:
            loss.backward()
        graph = _graph_objects(loss)
        refs = [weakref.ref(o) for o in graph if isinstance(o, mg.Tensor)]
        node_ids = {id(o) for o in graph if not isinstance(o, mg.Tensor)}
        assert len(refs) > 10 and len(node_ids) > 10
        del loss, graph
        alive = [r() for r in refs if r() is not None]
        assert alive == [], f"tensors kept alive by a reference cycle: {alive[:3]}"
        # Contexts take no weak references; with the collector off, any that still exist are
        # held by a cycle (gc.get_objects also lists unreachable objects not yet collected)
        nodes = [o for o in gc.get_objects() if id(o) in node_ids
                 and type(o).__name__ == "Context"]
        assert nodes == [], f"graph nodes kept alive by a reference cycle: {nodes[:3]}"
    finally:
        gc.enable()


def test_gc_finds_no_minigrad_cycles_after_training():
    model = _small_net()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    X, y = data.make_moons(64, noise=0.1, seed=0)
    X = np.concatenate([X, X], axis=1)
    loader = data.DataLoader(data.TensorDataset(X, y), batch_size=16, shuffle=True, seed=0)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        del xb, yb
        gc.collect()
        cyclic = [o for o in gc.garbage if type(o).__module__.startswith("minigrad")]
        assert cyclic == [], f"minigrad objects in reference cycles: {cyclic[:5]}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_every_node_releases_its_saved_arrays_after_backward():
    model = _small_net()
    x = mg.randn(8, 4, requires_grad=True)
    loss = F.cross_entropy(model(x), mg.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    nodes = [o for o in _graph_objects(loss) if not isinstance(o, mg.Tensor)]
    assert any(n.saved for n in nodes)
    loss.backward()
    assert all(n.saved is None for n in nodes), [n for n in nodes if n.saved is not None]


def test_training_memory_does_not_grow():
    """2,000 steps of a small BatchNorm MLP: traced memory stays flat after warm-up."""
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    X = mg.tensor(rng.standard_normal((32, 4)).astype(np.float32))
    y = mg.tensor(rng.integers(0, 2, 32))

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            loss = F.cross_entropy(model(X), y)
            loss.backward()
            opt.step()
        return loss.item()

    tracemalloc.start()
    try:
        steps(200)  # warm-up: optimizer state, caches
        gc.collect()
        baseline, _ = tracemalloc.get_traced_memory()
        steps(1800)
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one leaked graph per step would be ~1800 x (a few KB); allow 64 KB of noise
    assert current - baseline < 64 * 1024, (baseline, current)


