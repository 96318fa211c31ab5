"""Tensor hooks and retain_grad: what each hook sees and changes, against hand-computed
gradients on both backends; removal; the in-place checks; zero cost once removed."""

import gc
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import autograd, nn
from minigrad.autograd import Function

F64 = np.float64


def _x(rng, *shape):
    return mg.tensor(rng.standard_normal(shape), dtype=F64, requires_grad=True)


def _plain_engine():
    """Nothing left registered: the engine's plain paths are back."""
    gc.collect()
    return not autograd.watched and not autograd.observers and \
        "apply" in Function.__dict__ and Function.__dict__["apply"].__func__.__name__ == "apply"


# ----------------------------------------------------------------------------- leaves
def test_leaf_hook_sees_the_hand_computed_gradient(backend, rng):
    # L = mean(x * x) + sum(x * c)  =>  dL/dx = 2x / n + c
    x, c = _x(rng, 3, 4), rng.standard_normal((3, 4))
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    ((x * x).mean() + (x * mg.tensor(c, dtype=F64)).sum()).backward()
    expected = 2 * x.numpy() / 12 + c
    assert len(seen) == 1  # once, with the sum over the leaf's two uses
    np.testing.assert_allclose(seen[0], expected, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_leaf_hook_replaces_the_gradient_before_it_reaches_grad(backend, rng):
    x = _x(rng, 5)
    x.grad = mg.tensor(np.ones(5), dtype=F64)  # an earlier backward's gradient
    x.register_hook(lambda g: g * 3.0)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1.0 + 3.0 * 2 * x.numpy(), rtol=1e-12)


def test_hooks_run_in_registration_order_each_seeing_the_last_replacement(rng):
    x = _x(rng, 3)
    calls = []
    x.register_hook(lambda g: (calls.append(("a", g.numpy().copy())), g + 1.0)[1])
    x.register_hook(lambda g: (calls.append(("b", g.numpy().copy())), g * 10.0)[1])
    x.sum().backward()
    assert [name for name, _ in calls] == ["a", "b"]
    np.testing.assert_array_equal(calls[0][1], np.ones(3))
    np.testing.assert_array_equal(calls[1][1], np.full(3, 2.0))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 20.0))


def test_a_hook_on_the_root_leaf_sees_the_seed():
    x = mg.tensor(3.0, dtype=F64, requires_grad=True)
    x.register_hook(lambda g: g * 2.0)
    x.backward()
    assert x.grad.item() == 2.0


# ----------------------------------------------------------------------------- non-leaves
def test_non_leaf_hook_sees_its_gradient_and_replaces_what_flows_on(backend, rng):
    # y = x * w, L = sum(softmax(y) * t): the hook doubles dL/dy, so dL/dx doubles too
    x, w, t = _x(rng, 2, 3), _x(rng, 2, 3), rng.standard_normal((2, 3))
    y = x * w
    seen = []
    y.register_hook(lambda g: (seen.append(g.numpy().copy()), g * 2.0)[1])
    (y.softmax(axis=-1) * mg.tensor(t, dtype=F64)).sum().backward()
    s = np.exp(y.numpy()) / np.exp(y.numpy()).sum(axis=-1, keepdims=True)
    dy = s * (t - (s * t).sum(axis=-1, keepdims=True))  # softmax's Jacobian applied to t
    np.testing.assert_allclose(seen[0], dy, rtol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), 2 * dy * w.numpy(), rtol=1e-10)
    np.testing.assert_allclose(w.grad.numpy(), 2 * dy * x.numpy(), rtol=1e-10)


def test_a_hook_registered_before_an_in_place_change_sees_the_earlier_value(rng):
    x = _x(rng, 3)
    y = x * 2.0
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    y.mul_(3.0)  # recorded: y is now (x * 2) * 3; the hook stays on x * 2, as in PyTorch
    y.sum().backward()
    np.testing.assert_array_equal(seen[0], np.full(3, 3.0))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 6.0))


def test_hook_gradient_is_read_only():
    x = mg.tensor([1.0, 2.0], requires_grad=True)

    def scribble(g):
        g.data[0] = 99.0

    x.register_hook(scribble)
    with pytest.raises(ValueError, match="read-only"):
        (x + x).sum().backward()


@pytest.mark.parametrize("bad, error, match", [
    (lambda g: mg.tensor(np.ones(4)), RuntimeError, r"shape from \(3,\) to \(4,\)"),
    (lambda g: mg.tensor(np.ones(3), dtype=F64), RuntimeError, "dtype from float32 to float64"),
    (lambda g: g.numpy() * 2, TypeError, "returned ndarray"),
])
def test_a_hook_returning_a_wrong_gradient_is_named(bad, error, match):
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x.register_hook(bad)
    with pytest.raises(error, match=match):
        (x * x).sum().backward()


def test_replacement_gradient_is_copied_from_the_hooks_tensor():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    mine = mg.tensor([5.0, 6.0])
    x.register_hook(lambda g: mine)
    x.sum().backward()
    mine.data[:] = 0.0  # the hook's own tensor, changed later, must not reach x.grad
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 6.0])


def test_hooks_on_tensors_that_do_not_require_grad_raise():
    x = mg.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        x.register_hook(lambda g: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        x.retain_grad()
    with pytest.raises(TypeError, match="callable"):
        mg.tensor([1.0], requires_grad=True).register_hook("not a function")


# ----------------------------------------------------------------------------- removal
def test_removed_hooks_do_not_run_and_remove_is_idempotent():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    handle = x.register_hook(lambda g: calls.append(1))
    handle.remove()
    handle.remove()
    x.sum().backward()
    assert calls == []
    with x.register_hook(lambda g: calls.append(2)):
        x.sum().backward()
    x.sum().backward()
    assert calls == [2]
    assert _plain_engine()


def test_hooks_of_a_dead_graph_leave_the_engine_plain():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    y.register_hook(lambda g: None)
    y.retain_grad()
    assert autograd.watched
    del y
    assert _plain_engine()


# ----------------------------------------------------------------------------- retain_grad
def test_retain_grad_fills_a_non_leaf_grad_after_its_hooks(backend, rng):
    x = _x(rng, 4)
    y = x.exp()
    y.retain_grad()
    y.register_hook(lambda g: g * 2.0)  # registered after retain_grad, still runs before it
    assert y.retains_grad and not x.retains_grad
    (y * y).sum().backward(retain_graph=True)
    np.testing.assert_allclose(y.grad.numpy(), 2 * 2 * y.numpy(), rtol=1e-12)
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * 2 * 2 * y.numpy(), rtol=1e-12)  # accumulates


def test_retain_grad_on_a_leaf_changes_nothing():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    x.retain_grad()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    assert _plain_engine()


def test_retain_grad_follows_the_tensor_through_an_in_place_change():
    x = mg.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    y = x * 2.0
    y.retain_grad()
    y.mul_(3.0)
    (y * 5.0).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [5.0, 5.0])  # d L / d (latest y)


def test_without_retain_grad_a_non_leaf_grad_stays_none():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    y.register_hook(lambda g: None)
    y.sum().backward()
    assert y.grad is None


# ----------------------------------------------------------------------------- in place
def test_a_hook_cannot_bypass_the_saved_tensor_check():
    x = mg.tensor([0.5, 1.0], dtype=F64, requires_grad=True)
    e = x.exp()  # Exp saves its output
    z = e * 2.0

    def change_e(g):
        with mg.no_grad():
            e.mul_(10.0)

    z.register_hook(change_e)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.sum().backward()


def test_a_hook_changing_an_unsaved_tensor_is_fine():
    x = mg.tensor([0.5, 1.0], dtype=F64, requires_grad=True)
    a = x + 1.0  # Add saves nothing
    z = a + 2.0

    def change_a(g):
        with mg.no_grad():
            a.mul_(10.0)

    z.register_hook(change_a)
    z.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


# ----------------------------------------------------------------------------- equivalence
def _mlp_grads(hook: bool, backend_name: str):
    mg.set_backend(backend_name)
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x = mg.tensor(np.random.default_rng(3).standard_normal((5, 6)), requires_grad=True)
    h = model[1](model[0](x))
    h += 0.5  # a recorded in-place change inside the graph
    out = model[3](model[2](h))
    if hook:
        out.register_hook(lambda g: None)
        x.register_hook(lambda g: None)
    loss = F_cross_entropy(out, np.array([0, 1, 2, 0, 1]))
    loss.backward()
    return [p.grad.numpy().copy() for p in model.parameters()] + [x.grad.numpy().copy()]


def F_cross_entropy(out, target):
    from minigrad import functional as F

    return F.cross_entropy(out, mg.tensor(target))


def test_the_observed_walk_gives_the_plain_walks_gradients_bit_for_bit(backend):
    plain = _mlp_grads(False, backend)
    hooked = _mlp_grads(True, backend)
    for a, b in zip(plain, hooked, strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- PyTorch
def test_tensor_hooks_and_retain_grad_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    xv, wv = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))

    def run(lib, tensor):
        x, w = tensor(xv), tensor(wv)
        seen = []
        h = (x @ w).tanh()
        h.retain_grad()
        h.register_hook(lambda g: (seen.append(("h", g.numpy().copy())), g * 3.0)[1])
        x.register_hook(lambda g: seen.append(("x", g.numpy().copy())))
        w.register_hook(lambda g: (seen.append(("w", g.numpy().copy())), g + 1.0)[1])
        ((h * h).sum() + (x * x).mean() + h.sum()).backward()
        return seen, [h.grad.numpy(), x.grad.numpy(), w.grad.numpy()]

    ours = run(mg, lambda v: mg.tensor(v, dtype=F64, requires_grad=True))
    theirs = run(torch, lambda v: torch.tensor(v, requires_grad=True))
    assert ours[0][0][0] == theirs[0][0][0] == "h"  # the non-leaf's hook first
    for (name, a), (name_t, b) in zip(sorted(ours[0], key=lambda s: s[0]),
                                      sorted(theirs[0], key=lambda s: s[0]), strict=True):
        assert name == name_t
        np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=name)
    for a, b in zip(ours[1], theirs[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)



def test_a_hooked_node_freed_during_interpreter_exit_goes_quietly(monkeypatch):
    # At exit, minigrad.hooks' globals may be cleared before a hooked node dies (a hook whose
    # closure holds its own tensor keeps the node alive that long): the registry's clean-up
    # must not need them.
    from minigrad import hooks

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    y = w * 2
    y.register_hook(lambda g: None)
    key = id(y._ctx)
    monkeypatch.setattr(hooks, "autograd", None)  # as module teardown leaves it
    del y
    gc.collect()
    assert not unraisable, unraisable[0].exc_value
    assert key not in autograd.watched
