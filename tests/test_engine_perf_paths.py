"""Behaviour of the engine's fast paths: each shortcut must give what the general
path gives. No timing here; speed is measured by ``python -m minigrad.bench step overhead``."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import autograd, nn, optim
from minigrad.autograd import Function
from minigrad.ops import linalg

DTYPES = [np.float32, np.float64]


# ----------------------------------------------------------------------------- Function.apply
def test_no_grad_makes_leaves_without_a_context():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    with mg.no_grad():
        y = (a * 3.0 + a).sum()
    assert y.grad_fn is None and not y.requires_grad
    assert y.item() == pytest.approx(12.0)


def test_inputs_without_grad_record_no_node():
    a, b = mg.tensor([1.0, 2.0]), mg.tensor([3.0, 4.0])
    y = a * b
    assert y.grad_fn is None and not y.requires_grad


class _Scale(Function):
    """y = x * factor, keeping the factor on the context as a plain attribute."""

    @staticmethod
    def forward(ctx, x, *, factor):
        ctx.factor = factor  # an attribute outside Context's slots
        return x * factor

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_functions_may_store_their_own_attributes_on_the_context(grad_enabled):
    x = mg.tensor([1.0, -2.0], requires_grad=True)
    with mg.enable_grad() if grad_enabled else mg.no_grad():
        y = _Scale.apply(x, factor=3.0)
    np.testing.assert_array_equal(y.numpy(), [3.0, -6.0])
    if grad_enabled:
        y.sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


class _FirstOnly(Function):
    """y = a + b whose backward returns one gradient (for a) instead of a pair."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return (grad,)


def test_backward_may_return_fewer_gradients_than_inputs():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([1.0, 2.0], requires_grad=True)
    _FirstOnly.apply(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 1.0])
    assert b.grad is None


# ----------------------------------------------------------------------------- operands
@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_operands_keep_the_tensor_dtype_on_both_sides(dtype):
    x = mg.tensor(np.array([1.0, 2.0]), dtype=dtype, requires_grad=True)
    for y in (x * 2.0, 2.0 * x, x + np.float64(1), 1 - x, x / 2, 2 / x, x**2):
        assert y.dtype == dtype
    (x * x + x).sum().backward()
    assert x.grad.dtype == dtype
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 5.0])


def test_ndarray_operand_on_either_side():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    w = np.array([3.0, 4.0], dtype=np.float32)
    (x * w + w * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 8.0])


# ----------------------------------------------------------------------------- backward engine
def test_diamond_graph_runs_each_node_once_and_sums_both_paths():
    calls = []

    class Counted(_Scale):
        @staticmethod
        def backward(ctx, grad):
            calls.append(1)
            return grad * ctx.factor

    x = mg.tensor([1.0, 2.0], requires_grad=True)
    shared = Counted.apply(x, factor=2.0)  # used by two consumers below
    ((shared * 3.0) + (shared * shared)).sum().backward()
    assert len(calls) == 1
    # d/dx of 3*(2x) + (2x)^2 = 6 + 8x
    np.testing.assert_allclose(x.grad.numpy(), [14.0, 22.0])


def test_every_node_releases_its_saved_arrays_unless_retained():
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = (x * x).relu()
    loss = (y @ mg.tensor(np.ones((3, 2)))).sum()
    nodes = [y.grad_fn, y.grad_fn.inputs[0].grad_fn, loss.grad_fn.inputs[0].grad_fn]
    loss.backward(retain_graph=True)
    assert all(node.saved is not None for node in nodes)
    first = x.grad.numpy().copy()
    loss.backward()
    assert all(node.saved is None for node in nodes)
    np.testing.assert_array_equal(x.grad.numpy(), 2 * first)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (5,), (2, 3, 4)])
def test_backward_seed_is_ones_of_the_output_dtype(dtype, shape):
    x = mg.tensor(np.full(shape, 2.0), dtype=dtype, requires_grad=True)
    (x * 3.0).sum().backward()
    assert x.grad.dtype == dtype and x.grad.shape == shape
    np.testing.assert_array_equal(x.grad.numpy(), np.full(shape, 3.0))


def test_leaf_gradients_never_alias_each_other_or_the_seed():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([1.0, 2.0], requires_grad=True)
    seed = np.ones(2, dtype=np.float32)
    (a + b).backward(seed)
    a.grad.data[0] = 100.0
    assert b.grad.numpy()[0] == 1.0 and seed[0] == 1.0


# ----------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 1, 4)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_full_reductions_spread_the_gradient_back(dtype, shape, keepdims, op):
    data = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    x = mg.tensor(data, requires_grad=True)
    y = getattr(x, op)(keepdims=keepdims)
    assert y.shape == (getattr(data, op)(keepdims=keepdims)).shape
    (y * 2.0).sum().backward()
    expected = np.full(shape, 2.0 if op == "sum" else 2.0 / data.size)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_reduction_axis_errors_survive_the_fast_path():
    x = mg.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(np.exceptions.AxisError):
        x.sum(axis=2)
    with pytest.raises(np.exceptions.AxisError):
        x.mean(axis=(0, -3))


# ----------------------------------------------------------------------------- nn.Linear
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 4), (4,), (2, 3, 4)])
def test_linear_layer_matches_the_functional_form(bias, shape):
    mg.manual_seed(0)
    layer = nn.Linear(4, 3, bias=bias)
    data = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    x1 = mg.tensor(data, requires_grad=True)
    x2 = mg.tensor(data, requires_grad=True)
    y1 = layer(x1)
    y2 = F.linear(x2, layer.weight.detach(), None if layer.bias is None else layer.bias.detach())
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=1e-6, atol=1e-6)
    (y1 * y1).sum().backward()
    (y2 * y2).sum().backward()
    np.testing.assert_allclose(x1.grad.numpy(), x2.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert layer.weight.grad.shape == (3, 4)
    assert (layer.bias is None) == (not bias)


def test_linear_layer_accepts_an_ndarray_and_rejects_a_wrong_width():
    layer = nn.Linear(4, 3)
    assert layer(np.ones((2, 4), dtype=np.float32)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"Linear\(4, 3\).*\(2, 5\)"):
        layer(mg.tensor(np.ones((2, 5))))
    with pytest.raises(ValueError):
        layer(mg.tensor(1.0))


def test_linear_node_saves_its_inputs_by_reference():
    """The fused node keeps x and W themselves (no copies) and gets all three gradients."""
    x = mg.tensor(np.ones((3, 4)), requires_grad=True)
    w = mg.tensor(np.ones((2, 4)), requires_grad=True)
    b = mg.tensor(np.zeros(2), requires_grad=True)
    y = linalg.Linear.apply(x, w, b)
    saved_x, saved_w = y.grad_fn.saved
    assert saved_x is x.data and saved_w is w.data  # saved by reference, not copied
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 4), 2.0))
    np.testing.assert_array_equal(w.grad.numpy(), np.full((2, 4), 3.0))
    np.testing.assert_array_equal(b.grad.numpy(), [3.0, 3.0])


# ----------------------------------------------------------------------------- optimizer step
def _one_param_adam():
    p = nn.Parameter(np.ones((2, 3), dtype=np.float32))
    return p, optim.Adam([p], lr=0.1)


def test_optimizer_rejects_a_gradient_of_the_wrong_shape():
    p, opt = _one_param_adam()
    p.grad = mg.tensor(np.ones((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*\(3, 2\)"):
        opt.step()
    np.testing.assert_array_equal(p.data, 1.0)


def test_optimizer_rejects_a_gradient_of_the_wrong_dtype():
    p, opt = _one_param_adam()
    p.grad = mg.tensor(np.ones((2, 3)), dtype=np.float64)
    with pytest.raises(TypeError, match="float32.*float64"):
        opt.step()


def test_optimizer_rejects_a_parameter_that_changed_size():
    # state is made at a parameter's first step (PyTorch's lazy state), so change it after one
    p, opt = _one_param_adam()
    p.grad = mg.tensor(np.ones((2, 3), dtype=np.float32))
    opt.step()
    p.data = np.ones(7, dtype=np.float32)
    p.grad = mg.tensor(np.ones(7, dtype=np.float32))
    with pytest.raises(ValueError, match="changed"):
        opt.step()


def test_optimizer_steps_only_parameters_with_gradients():
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    q = nn.Parameter(np.ones(3, dtype=np.float32))
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = mg.tensor(np.ones(3, dtype=np.float32))
    opt.step()
    np.testing.assert_allclose(p.data, 0.9, rtol=1e-6)
    np.testing.assert_array_equal(q.data, 1.0)


# ----------------------------------------------------------------------------- benchmark oracles
@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_training_step_matches_the_hand_written_numpy_step(norm):
    from minigrad.bench import step

    net = next(n for n in step.NETS if n.norm == norm and n.sizes[0] == 64)
    assert step.check_against_numpy(net, steps=2) < 1e-4


def test_hand_written_step_check_catches_a_difference(monkeypatch):
    from minigrad.bench import step

    monkeypatch.setattr(step, "EPS", 1e-1)  # only the hand-written normalization uses it
    with pytest.raises(AssertionError, match="differs"):
        step.check_against_numpy(step.NETS[0], steps=2)


def test_bare_kernel_step_computes_the_same_loss_as_minigrad():
    from minigrad.bench import overhead, step

    net = step.NETS[0]
    x, y = step.batch(net)
    bare = overhead._kernels_only_step(net)
    engine = step.minigrad_step(net, step.initial_weights(net), x, y)
    for _ in range(3):
        np.testing.assert_allclose(float(bare()), engine().item(), rtol=1e-5)


def test_version_check_runs_only_after_an_in_place_change(monkeypatch):

    checked = []
    original = autograd._check_saved
    monkeypatch.setattr(autograd, "_check_saved", lambda node: checked.append(node) or
                        original(node))
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    (x * x).exp().sum().backward()
    assert checked == []  # nothing changed in place: one int comparison per node, no scan
    x.grad = None
    y = (x * x).sum()
    unrelated = mg.zeros(2)
    unrelated += 1  # moves the in-place clock: the nodes check, find nothing, and run
    y.backward()
    assert len(checked) == 1
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_op_outputs_share_one_immutable_counter_until_changed():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    assert type(y._counter) is tuple and y._counter is x._counter  # no allocation per op
    y += 1
    assert type(y._counter) is list and y._version == 1 and x._version == 0


@pytest.mark.parametrize("grad_shape, shape", [((3, 4), (3, 5)), ((4,), (2, 4)), ((2, 3), (2,))])
def test_unbroadcast_refuses_a_gradient_that_is_no_broadcast_of_the_input(grad_shape, shape):
    from minigrad.autograd import unbroadcast

    with pytest.raises(ValueError, match="cannot belong to an input of shape"):
        unbroadcast(np.ones(grad_shape), shape)


@pytest.mark.parametrize("grad_shape, shape",
                         [((2, 3, 4), (3, 1)), ((4,), (1, 1, 4)), ((5, 1), (1,))])
def test_unbroadcast_sums_a_broadcast_gradient_back_to_the_input_shape(grad_shape, shape):
    from minigrad.autograd import unbroadcast

    grad = np.arange(np.prod(grad_shape), dtype=float).reshape(grad_shape)
    got = unbroadcast(grad, shape)
    assert got.shape == shape
    assert got.sum() == grad.sum()
