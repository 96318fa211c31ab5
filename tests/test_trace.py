"""viz.trace_backward: the steps of a backward pass, their gradients equal to .grad."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import autograd, nn
from minigrad.viz import trace_backward
from minigrad.viz.trace import LEAF_OP

F64 = np.float64


def _model_and_loss(seed=0):
    mg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    x = mg.randn(5, 4)
    loss = F.cross_entropy(model(x), mg.tensor(np.array([0, 1, 2, 1, 0])))
    return model, loss


def test_leaf_steps_equal_grad(backend):
    model, loss = _model_and_loss()
    params = dict(model.named_parameters())
    trace = trace_backward(loss, params=params, keep_grads=True)
    leaves = trace.leaves()
    assert set(leaves) == set(params)
    for name, p in params.items():
        info = leaves[name]
        assert info.shape == p.grad.shape and info.dtype == str(p.grad.dtype)
        np.testing.assert_array_equal(info.value, p.grad.numpy())
        assert info.norm == pytest.approx(np.linalg.norm(p.grad.numpy().astype(F64)), rel=1e-12)


def test_steps_follow_the_graph_from_the_loss_down(backend):
    model, loss = _model_and_loss()
    trace = trace_backward(loss, params=dict(model.named_parameters()))
    ops = [s.op for s in trace if s.op != LEAF_OP]
    assert ops == ["CrossEntropy", "Linear", "ReLU", "BatchNorm", "Linear"]
    assert trace[0].received.shape == () and trace[0].received.norm == 1.0
    # what a node passed on is what its consumer received
    for step, consumer in zip(trace.steps[:4], trace.steps[1:5], strict=True):
        target, passed = step.passed[0]
        assert target == consumer.node and passed == consumer.received
    last = trace[4]
    assert [t for t, _ in last.passed][1:] == ["0.weight", "0.bias"]
    assert last.passed[0][1] is None  # the input did not require grad


def test_received_gradients_equal_retained_grads(backend, rng):
    x = mg.tensor(rng.standard_normal((3, 4)), dtype=F64, requires_grad=True)
    h = x.tanh()
    h.retain_grad()
    loss = (h * h).sum() + h.mean()  # h is used twice: the trace shows the summed gradient
    trace = trace_backward(loss, keep_grads=True)
    tanh_step = next(s for s in trace if s.op == "Tanh")
    np.testing.assert_array_equal(tanh_step.received.value, h.grad.numpy())
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy() + 1 / 12, rtol=1e-12)
    (target, info), = tanh_step.passed
    assert target == trace[-1].node and trace[-1].op == LEAF_OP
    np.testing.assert_array_equal(info.value, x.grad.numpy())


def test_a_leaf_used_twice_gets_one_step_with_the_sum(rng):
    w = mg.tensor(rng.standard_normal(3), dtype=F64, requires_grad=True)
    trace = trace_backward((w * 2.0).sum() + (w * w).sum(), params={"w": w}, keep_grads=True)
    leaf_steps = [s for s in trace if s.op == LEAF_OP]
    assert [s.node for s in leaf_steps] == ["w"]
    np.testing.assert_array_equal(leaf_steps[0].received.value, w.grad.numpy())
    np.testing.assert_allclose(w.grad.numpy(), 2.0 + 2 * w.numpy(), rtol=1e-12)


def test_text_has_one_line_per_gradient_passed_on():
    model, loss = _model_and_loss()
    trace = trace_backward(loss, params=dict(model.named_parameters()))
    text = trace.table()
    assert text == str(trace)
    body = text.splitlines()[2:]
    assert len(body) == sum(max(1, len(s.passed)) for s in trace)
    assert "CrossEntropy#0" in body[0] and "|g|=1.0000e+00" in body[0]
    assert any("3.weight" in line for line in body)


def test_trace_without_keep_grads_stores_no_arrays_and_leaves_the_engine_plain():
    _, loss = _model_and_loss()
    trace = trace_backward(loss)
    assert all(s.received.value is None for s in trace)
    assert not autograd.observers


def test_trace_of_a_non_scalar_with_a_gradient(rng):
    x = mg.tensor(rng.standard_normal(4), dtype=F64, requires_grad=True)
    seed = rng.standard_normal(4)
    trace = trace_backward(x * 3.0, seed, keep_grads=True)
    np.testing.assert_array_equal(trace[0].received.value, seed)
    np.testing.assert_allclose(trace.leaves()[trace[-1].node].value, 3 * seed)
