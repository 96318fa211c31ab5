"""Module hooks: forward pre-hooks, forward hooks and full backward hooks, against
hand-computed gradients on both backends (and PyTorch's hooks when it is installed)."""

import gc

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import autograd, nn

F64 = np.float64


def _t(array, requires_grad=False):
    return mg.tensor(np.asarray(array), dtype=F64, requires_grad=requires_grad)


def _linear(rng, n_in, n_out):
    layer = nn.Linear(n_in, n_out).double()
    layer.weight.data[...] = rng.standard_normal((n_out, n_in))
    layer.bias.data[...] = rng.standard_normal(n_out)
    return layer


def _record(log):
    def hook(module, grad_input, grad_output):
        log.append((module, [None if g is None else g.numpy().copy() for g in grad_input],
                    [None if g is None else g.numpy().copy() for g in grad_output]))
    return hook


# ----------------------------------------------------------------------------- forward
def test_forward_pre_hook_may_replace_the_arguments(rng):
    layer = _linear(rng, 3, 2)
    x = _t(rng.standard_normal((4, 3)))
    seen = []
    layer.register_forward_pre_hook(lambda m, args: seen.append(args) or (args[0] * 2.0,))
    out = layer(x)
    assert seen[0][0] is x and len(seen[0]) == 1
    np.testing.assert_allclose(out.numpy(), (2 * x.numpy()) @ layer.weight.numpy().T +
                               layer.bias.numpy(), rtol=1e-12)


def test_a_pre_hook_returning_a_single_value_makes_it_the_only_argument(rng):
    layer = _linear(rng, 3, 2)
    zeros = _t(np.zeros((1, 3)))
    layer.register_forward_pre_hook(lambda m, args: zeros)
    np.testing.assert_allclose(layer(_t(np.ones((1, 3)))).numpy()[0], layer.bias.numpy())


def test_forward_hook_sees_arguments_and_output_and_may_replace_it(rng):
    layer = _linear(rng, 3, 2)
    x = _t(rng.standard_normal((4, 3)))
    order = []
    layer.register_forward_pre_hook(lambda m, args: order.append("pre"))
    layer.register_forward_hook(lambda m, args, out: order.append(("fwd", args[0] is x)))
    layer.register_forward_hook(lambda m, args, out: out * 0.0)
    out = layer(x)
    assert order == ["pre", ("fwd", True)]
    np.testing.assert_array_equal(out.numpy(), np.zeros((4, 2)))


def test_removing_the_last_hook_restores_the_plain_call(rng):
    layer = _linear(rng, 3, 2)
    calls = []
    handles = [layer.register_forward_hook(lambda *a: calls.append(1)),
               layer.register_forward_pre_hook(lambda *a: calls.append(2))]
    layer(_t(np.ones((1, 3))))
    handles[0].remove()
    layer(_t(np.ones((1, 3))))
    assert calls == [2, 1, 2] and "_hooks" in layer.__dict__
    handles[1].remove()
    handles[1].remove()
    layer(_t(np.ones((1, 3))))
    assert calls == [2, 1, 2] and "_hooks" not in layer.__dict__


def test_module_hooks_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        nn.ReLU().register_forward_hook(3)


# ----------------------------------------------------------------------------- backward
def test_backward_hook_on_linear_sees_hand_computed_gradients(backend, rng):
    # y = x W^T + b, L = sum(y * t): grad_output = t, grad_input = t W
    layer = _linear(rng, 3, 2)
    x, t = _t(rng.standard_normal((4, 3)), True), rng.standard_normal((4, 2))
    log = []
    layer.register_full_backward_hook(_record(log))
    (layer(x) * _t(t)).sum().backward()
    (module, grad_input, grad_output), = log
    assert module is layer
    np.testing.assert_allclose(grad_output[0], t, rtol=1e-12)
    np.testing.assert_allclose(grad_input[0], t @ layer.weight.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), t @ layer.weight.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.weight.grad.numpy(), t.T @ x.numpy(), rtol=1e-12)


def test_backward_hook_may_replace_grad_input(backend, rng):
    layer = _linear(rng, 3, 2)
    x = _t(rng.standard_normal((4, 3)), True)
    h = x * 1.0
    layer.register_full_backward_hook(lambda m, gi, go: (gi[0] * -1.0,))
    layer(h).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -np.ones((4, 2)) @ layer.weight.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(layer.weight.grad.numpy(), np.ones((4, 2)).T @ x.numpy(),
                               rtol=1e-12)  # the parameters' gradients are untouched


def test_backward_hooks_on_a_sequential_and_its_layers(backend, rng):
    first, second = _linear(rng, 3, 4), _linear(rng, 4, 2)
    model = nn.Sequential(first, nn.Tanh(), second)
    x, t = _t(rng.standard_normal((5, 3)), True), rng.standard_normal((5, 2))
    log = []
    for m in model.modules():
        m.register_full_backward_hook(_record(log))
    (model(x) * _t(t)).sum().backward()
    assert [type(m).__name__ for m, _, _ in log] == ["Linear", "Tanh", "Linear", "Sequential"]
    a = np.tanh(x.numpy() @ first.weight.numpy().T + first.bias.numpy())
    d_a = t @ second.weight.numpy()
    d_z = d_a * (1 - a * a)
    d_x = d_z @ first.weight.numpy()
    by_name = {type(m).__name__ + str(i): (gi, go) for i, (m, gi, go) in enumerate(log)}
    np.testing.assert_allclose(by_name["Linear0"][0][0], d_a, rtol=1e-12)
    np.testing.assert_allclose(by_name["Tanh1"][0][0], d_z, rtol=1e-12)
    np.testing.assert_allclose(by_name["Tanh1"][1][0], d_a, rtol=1e-12)
    np.testing.assert_allclose(by_name["Linear2"][0][0], d_x, rtol=1e-12)
    np.testing.assert_allclose(by_name["Sequential3"][0][0], d_x, rtol=1e-12)
    np.testing.assert_allclose(by_name["Sequential3"][1][0], t, rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_backward_hook_on_batchnorm_sees_the_hand_computed_input_gradient(backend, rng, fused):
    bn = nn.BatchNorm1d(3).double()
    bn.weight.data[...] = rng.standard_normal(3)
    bn.bias.data[...] = rng.standard_normal(3)
    if not fused:
        bn.forward = lambda x: F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight,
                                            bn.bias, training=True, fused=False)
    x, t = _t(rng.standard_normal((6, 3)) * 3 + 1, True), rng.standard_normal((6, 3))
    log = []
    bn.register_full_backward_hook(_record(log))
    (bn(x) * _t(t)).sum().backward()
    xv, gamma, n = x.numpy(), bn.weight.numpy(), 6
    rstd = 1 / np.sqrt(xv.var(axis=0) + bn.eps)
    xhat = (xv - xv.mean(axis=0)) * rstd
    dxhat = t * gamma  # dx = rstd / n * (n dxhat - sum(dxhat) - xhat sum(dxhat xhat))
    dx = rstd / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    (_, grad_input, grad_output), = log
    np.testing.assert_allclose(grad_output[0], t, rtol=1e-12)
    np.testing.assert_allclose(grad_input[0], dx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-9, atol=1e-12)


def test_backward_hook_when_no_input_requires_grad(rng):
    layer = _linear(rng, 3, 2)
    log = []
    layer.register_full_backward_hook(_record(log))
    layer(_t(np.ones((2, 3)))).sum().backward()
    (_, grad_input, grad_output), = log
    assert grad_input == [None]
    np.testing.assert_array_equal(grad_output[0], np.ones((2, 2)))
    layer.register_full_backward_hook(lambda m, gi, go: (mg.ones(2, 3),))
    with pytest.raises(RuntimeError, match="no input of the module requires grad"):
        layer(_t(np.ones((2, 3)))).sum().backward()


class _Mix(nn.Module):
    """forward(a, scale, b) = a * scale + b * b: two tensor arguments and a number."""

    def forward(self, a, scale, b):
        return a * scale + b * b


def test_backward_hook_with_several_arguments_and_a_constant(backend, rng):
    module = _Mix()
    a, b = _t(rng.standard_normal(3), True), _t(rng.standard_normal(3), True)
    c = _t(rng.standard_normal(3))  # a tensor that does not require grad
    log = []
    module.register_full_backward_hook(_record(log))
    module.register_full_backward_hook(lambda m, gi, go: (gi[0], None, gi[2] * 0.0))
    module(a, 2.0, b).sum().backward()
    (_, grad_input, _), = log
    np.testing.assert_allclose(grad_input[0], np.full(3, 2.0))
    assert grad_input[1] is None
    np.testing.assert_allclose(grad_input[2], 2 * b.numpy())
    np.testing.assert_allclose(a.grad.numpy(), np.full(3, 2.0))
    np.testing.assert_array_equal(b.grad.numpy(), np.zeros(3))  # replaced by the second hook
    log.clear()
    module(c, 2.0, b).sum().backward()
    assert log[0][1][0] is None and log[0][1][2] is not None


def test_backward_hook_returning_the_wrong_number_of_gradients_is_named(rng):
    layer = _linear(rng, 3, 2)
    layer.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    with pytest.raises(RuntimeError, match="returned 2 gradients; expected None or 1"):
        layer(_t(np.ones((2, 3)), True)).sum().backward()


def test_backward_hook_replacement_of_the_wrong_shape_is_named(rng):
    layer = _linear(rng, 3, 2)
    layer.register_full_backward_hook(lambda m, gi, go: (mg.ones(2, 2, dtype=F64),))
    with pytest.raises(RuntimeError, match=r"grad_input\[0\].*shape from \(2, 3\) to \(2, 2\)"):
        layer(_t(np.ones((2, 3)), True)).sum().backward()


def test_removed_backward_hook_is_not_called_and_leaves_the_engine_plain(rng):
    layer = _linear(rng, 3, 2)
    log = []
    with layer.register_full_backward_hook(_record(log)):
        layer(_t(np.ones((2, 3)), True)).sum().backward()
    layer(_t(np.ones((2, 3)), True)).sum().backward()
    assert len(log) == 1
    gc.collect()
    assert not autograd.watched and "_hooks" not in layer.__dict__


def test_backward_hook_module_input_shares_the_version_counter(rng):
    # the identity a backward hook adds must not hide an in-place change from saved tensors
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    module = Square()
    module.register_full_backward_hook(lambda m, gi, go: None)
    x = _t([1.0, 2.0], True)
    h = x * 1.0
    y = module(h)
    with pytest.raises(RuntimeError, match="shares its memory"):
        h.add_(1.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_backward_hook_under_no_grad_is_not_set_up(rng):
    layer = _linear(rng, 3, 2)
    layer.register_full_backward_hook(lambda m, gi, go: None)
    with mg.no_grad():
        out = layer(_t(np.ones((1, 3)), True))
    assert out.grad_fn is None


# ----------------------------------------------------------------------------- PyTorch
def test_backward_hooks_match_pytorch_on_a_batchnorm_mlp(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((8, 5))
    t = rng.standard_normal((8, 3))
    ours = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).double()
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4),
                                 torch.nn.ReLU(), torch.nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            q.copy_(torch.from_numpy(p.data.copy()))
    got, want = [], []
    for m in ours.modules():
        m.register_full_backward_hook(_record(got))
    for m in theirs.modules():
        m.register_full_backward_hook(
            lambda m, gi, go: want.append((m, [None if g is None else g.numpy() for g in gi],
                                           [None if g is None else g.numpy() for g in go])))
    (ours(_t(x, True)) * _t(t)).sum().backward()
    (theirs(torch.from_numpy(x).requires_grad_()) * torch.from_numpy(t)).sum().backward()
    assert [type(m).__name__ for m, _, _ in got] == [type(m).__name__ for m, _, _ in want]
    for (_, gi, go), (_, gi_t, go_t) in zip(got, want, strict=True):
        for a, b in zip(gi + go, gi_t + go_t, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_a_module_called_twice_runs_its_backward_hook_per_call(backend, rng):
    layer = _linear(rng, 3, 3)
    x = _t(rng.standard_normal((2, 3)), True)
    log = []
    layer.register_full_backward_hook(_record(log))
    layer(layer(x)).sum().backward()
    wt = layer.weight.numpy()
    outer_in = np.ones((2, 3)) @ wt
    assert len(log) == 2
    np.testing.assert_allclose(log[0][1][0], outer_in, rtol=1e-12)  # the outer call first
    np.testing.assert_allclose(log[1][2][0], outer_in, rtol=1e-12)
    np.testing.assert_allclose(log[1][1][0], outer_in @ wt, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), outer_in @ wt, rtol=1e-12)


def test_backward_hook_sees_grad_output_after_the_outputs_tensor_hooks(backend, rng):
    # As PyTorch: a tensor hook on the module's output changes the gradient that reaches the
    # module, so grad_output (and grad_input, computed from it) show the changed gradient.
    layer = _linear(rng, 3, 2)
    x = _t(rng.standard_normal((4, 3)), requires_grad=True)
    log = []
    layer.register_full_backward_hook(_record(log))
    out = layer(x)
    out.register_hook(lambda g: g * 10.0)
    out.sum().backward()
    (_, grad_input, grad_output), = log
    np.testing.assert_array_equal(grad_output[0], np.full((4, 2), 10.0))
    expected = np.full((4, 2), 10.0) @ layer.weight.numpy()
    np.testing.assert_allclose(grad_input[0], expected, rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)
