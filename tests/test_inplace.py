"""In-place changes: the version counter, the errors it raises, and recorded in-place ops."""

import re

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim

MODIFIED = "modified by an in-place operation"


def _t(values, requires_grad=False):
    return mg.tensor(values, requires_grad=requires_grad)


# ----------------------------------------------------------------------------- the counter
@pytest.mark.parametrize("change", [
    lambda t: t.__iadd__(1.0), lambda t: t.__isub__(1.0), lambda t: t.__imul__(2.0),
    lambda t: t.__itruediv__(2.0), lambda t: (t.__setitem__(0, 5.0), t)[1], lambda t: t.add_(1.0),
    lambda t: t.sub_(1.0), lambda t: t.mul_(2.0), lambda t: t.div_(2.0), lambda t: t.zero_(),
    lambda t: t.fill_(3.0), lambda t: t.copy_(np.ones(3)), lambda t: t.clamp_(0.0, 1.5),
], ids=["iadd", "isub", "imul", "itruediv", "setitem", "add_", "sub_", "mul_", "div_",
        "zero_", "fill_", "copy_", "clamp_"])
def test_every_in_place_change_bumps_the_version_and_keeps_the_array(change):
    t = _t([1.0, 2.0, 3.0])
    array = t.data
    assert t._version == 0
    assert change(t) is t
    assert t._version == 1 and t.data is array


def test_in_place_results():
    t = _t([1.0, -2.0, 3.0])
    t += 1
    t *= _t([2.0, 2.0, 0.5])
    t.clamp_(max=1.6)
    t[1] = 7
    np.testing.assert_allclose(t.numpy(), [1.6, 7.0, 1.6])
    t.copy_([0.5])
    np.testing.assert_array_equal(t.numpy(), [0.5, 0.5, 0.5])
    assert t.dtype == np.float32


def test_views_share_the_counter_of_their_base():
    base = _t([1.0, 2.0, 3.0, 4.0])
    view = base[1:3]
    view += 1
    assert base._version == view._version == 1
    np.testing.assert_array_equal(base.numpy(), [1.0, 3.0, 4.0, 4.0])


# ----------------------------------------------------------------------------- errors
def test_numpy_of_a_tensor_that_requires_grad_is_read_only(backend):
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    with pytest.raises(ValueError, match="read-only"):
        x.numpy()[0] = 100
    with pytest.raises(ValueError, match="read-only"):
        np.asarray(x)[1] = 100
    assert np.array(x, copy=True).flags.writeable
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])
    x.data[0] = 100  # .data is the escape hatch
    assert x.numpy()[0] == 100


def test_update_between_forward_and_backward_raises_naming_the_op(backend):
    w = mg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    x = mg.tensor([[1.0, 1.0]])
    loss = (x @ w).sum()
    g = mg.ones(2, 2)
    with mg.no_grad():
        w -= 0.1 * g
    with pytest.raises(RuntimeError, match=rf"{MODIFIED}.*MatMul.*\(2, 2\).*version 1"):
        loss.backward()


def test_manual_sgd_step_between_forward_and_backward_raises(backend):
    model = nn.Linear(3, 2)
    loss = model(mg.randn(4, 3)).sum()
    loss.backward(retain_graph=True)
    with mg.no_grad():  # the update an optimizer makes, as GAN and actor-critic loops do
        for p in model.parameters():
            p -= 0.1 * p.grad
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_changing_a_saved_output_raises(backend):
    x = mg.tensor([0.5, 1.0], requires_grad=True)
    y = x.exp()
    with mg.no_grad():
        y.mul_(2)
    with pytest.raises(RuntimeError, match=rf"{MODIFIED}: the output of Exp"):
        y.sum().backward()


def test_changing_an_input_through_a_view_raises(backend):
    x = mg.tensor([1.0, 2.0])
    w = mg.tensor([3.0, 4.0], requires_grad=True)
    loss = (x * w).sum()
    view = x[0:1]
    view += 5
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_a_change_nothing_saved_does_not_raise(backend):
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0])
    loss = (a + b).sum()  # Add saves nothing: b's new values cannot reach the gradient
    b += 1
    loss.backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 1.0])


def test_leaf_that_requires_grad_cannot_change_in_place_in_grad_mode():
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    for change in (lambda: w.__iadd__(1), lambda: w.__setitem__(0, 1.0), lambda: w.zero_()):
        with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*in-place"):
            change()
    assert w._version == 0
    np.testing.assert_array_equal(w.data, [1.0, 2.0])


def test_in_place_on_a_view_in_a_graph_raises():
    a = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = a * 2
    view = h[0:2]
    with pytest.raises(RuntimeError, match="shares its memory.*clone"):
        view += 1
    with pytest.raises(RuntimeError, match="shares its memory"):
        a[0:2] += 1  # a view of a leaf that requires grad
    np.testing.assert_array_equal(a.data, [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- no_grad updates
def test_manual_update_under_no_grad_changes_the_parameter_itself(backend):
    p = mg.tensor([1.0, 2.0], requires_grad=True)
    (p * p).sum().backward()
    array = p.data
    with mg.no_grad():
        p -= 0.25 * p.grad
    assert p.data is array and p._version == 1 and p.requires_grad and p.is_leaf
    np.testing.assert_allclose(p.numpy(), [0.5, 1.0])
    with mg.no_grad():
        p[0:1] += 1  # a view of a leaf, changed under no_grad
    np.testing.assert_allclose(p.numpy(), [1.5, 1.0])


def test_data_stays_an_ndarray():
    model = nn.Linear(2, 2)
    p = model.weight
    p.grad = mg.ones(2, 2)
    before = p.data.copy()
    p.data -= 0.5 * p.grad
    assert type(p.data) is np.ndarray
    np.testing.assert_allclose(p.data, before - 0.5)
    p.data = mg.zeros(2, 2)
    assert type(p.data) is np.ndarray
    model(mg.ones(1, 2))  # the model still works
    assert "weight" in model.state_dict() and "Parameter" in repr(p)


# ----------------------------------------------------------------------------- recorded ops
def test_in_place_on_a_non_leaf_is_recorded_like_the_out_of_place_op(backend):
    def run(in_place):
        a = mg.tensor([1.0, 2.0], requires_grad=True)
        b = mg.tensor([3.0, -4.0], requires_grad=True)
        c = a * b
        early = (c * 3).sum() if not in_place else None  # consumers before the change
        early2 = (c + 2).sum()
        if in_place:
            c += 1
            c *= a
            c.clamp_(-20, 6)
            c.sub_(b)
            c.div_(2)
        else:
            c = ((c + 1) * a).clip(-20, 6)
            c = (c - b) / 2
        (c.sum() + early2 + (0 if early is None else 0 * early)).backward()
        return a.grad.numpy(), b.grad.numpy()

    for got, want in zip(run(True), run(False), strict=True):
        np.testing.assert_allclose(got, want)


def test_setitem_in_a_graph_and_gradient_to_the_value(backend):
    a = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = mg.tensor([10.0, 20.0], requires_grad=True)
    c = a * 2
    c[[0, 2]] = v
    assert c.grad_fn is not None and c._version == 1
    (c * mg.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(c.data, [10.0, 4.0, 20.0])
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 4.0, 0.0])
    np.testing.assert_array_equal(v.grad.numpy(), [1.0, 3.0])


def test_setitem_value_that_requires_grad_into_a_plain_tensor(backend):
    x = mg.zeros(2, 3)
    v = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[1] = v  # broadcast row
    x[0, 1:] = 7.0
    assert x.requires_grad and not x.is_leaf
    (x * x).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), [2.0, 4.0, 6.0])


def test_setitem_with_repeated_indices_gives_the_gradient_to_the_kept_write(backend):
    x = mg.zeros(3)
    v = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 2])] = v
    kept = x.data[0]
    (x * mg.tensor([5.0, 6.0, 7.0])).sum().backward()
    grad = v.grad.numpy()
    assert grad[2] == 7.0 and sorted(grad[:2]) == [0.0, 5.0]
    assert grad[int(kept) - 1] == 5.0  # the element NumPy kept got the gradient


def test_setitem_index_array_is_copied_when_recorded(backend):
    x = mg.zeros(3)
    v = mg.tensor([1.0, 2.0], requires_grad=True)
    index = np.array([0, 1])
    x[index] = v
    index[:] = 2
    (x * mg.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), [1.0, 2.0])


def test_copy_and_fill_gradients(backend):
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    src = mg.tensor([5.0], requires_grad=True)
    c = a * 1
    c.copy_(src)
    (c * mg.tensor([2.0, 3.0])).sum().backward()
    assert a.grad is None or not np.any(a.grad.numpy())
    np.testing.assert_array_equal(src.grad.numpy(), [5.0])
    d = a * 1
    d.fill_(4.0)
    assert d.grad_fn is not None
    np.testing.assert_array_equal(d.numpy(), [4.0, 4.0])


def test_setitem_gradient_of_a_value_with_leading_ones_numpy_drops(backend):
    weights = mg.tensor(np.arange(6.0).reshape(2, 3))
    row = mg.tensor(np.ones((1, 3)), requires_grad=True)  # fills x[0], shape (3,)
    x = mg.zeros(2, 3, requires_grad=True) * 1
    x[0] = row
    (x * weights).sum().backward()
    np.testing.assert_array_equal(row.grad.numpy(), [[0.0, 1.0, 2.0]])
    block = mg.tensor(np.ones((1, 1, 3)), requires_grad=True)  # fills all of x, shape (2, 3)
    x = mg.zeros(2, 3, requires_grad=True) * 1
    x[...] = block
    (x * weights).sum().backward()
    np.testing.assert_array_equal(block.grad.numpy(), [[[3.0, 5.0, 7.0]]])


@pytest.mark.parametrize("shape", [(1, 3), (2, 3), (4,)])
def test_copy_refuses_a_source_that_does_not_broadcast_to_the_target(backend, shape):
    # a (1, 3) source filled a (3,) target and its gradient came back as one sum of shape (1,)
    src = mg.tensor(np.ones(shape), requires_grad=True)
    for target in (mg.zeros(3), mg.zeros(3, requires_grad=True) * 1):
        with pytest.raises(ValueError, match=re.escape(f"copy_: a source of shape {shape}")):
            target.copy_(src)
        with pytest.raises(ValueError, match="does not broadcast to the shape"):
            target.copy_(np.ones(shape))
    target = mg.zeros(2, 3)
    target.copy_(src[..., :1] if shape == (2, 3) else mg.tensor([[1.0, 2.0, 3.0]]))
    assert target.shape == (2, 3)


@pytest.mark.parametrize("src", [np.array([0.1, 1 / 3]), [0.1, 1 / 3], (0.1, 1 / 3)])
def test_copy_keeps_float64_data_at_float64(backend, src):
    t = mg.zeros(2, dtype=np.float64)
    t.copy_(src)
    np.testing.assert_array_equal(t.numpy(), [0.1, 1 / 3])  # not rounded through float32
    with pytest.raises(TypeError):
        t.copy_(["a", "b"])


def test_clone_is_differentiable_and_owns_its_memory(backend):
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = a.clone()
    assert not np.shares_memory(a.data, b.data)
    b += 1  # allowed: b is a non-leaf with its own memory
    (b * b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [4.0, 6.0])


def test_in_place_shape_and_dtype_errors():
    t = mg.zeros(3)
    with pytest.raises(ValueError):
        t += mg.ones(2, 3)
    c = mg.tensor([1.0], requires_grad=True) * 1
    with pytest.raises(ValueError, match=r"shape \(2, 1\).*\(1,\)"):
        c += mg.ones(2, 1)
    ints = mg.tensor([1, 2])
    with pytest.raises(TypeError):
        ints /= 2
    with pytest.raises(TypeError, match="int64"):
        ints[0] = mg.tensor(1.0, requires_grad=True)


@pytest.mark.parametrize("make_optimizer", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: optim.Adam(ps, lr=0.01),
    lambda ps: optim.RMSprop(ps, lr=0.01),
], ids=["sgd", "adam", "rmsprop"])
def test_optimizer_step_between_a_forward_and_its_backward_raises(backend, make_optimizer):
    """The GAN / actor-critic mistake: step on one loss, then backward through an older graph
    whose weights the step changed. The gradient would be silently wrong; it must raise."""
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = make_optimizer(model.parameters())
    x = mg.randn(5, 4)
    old_loss = model(x).sum()
    new_loss = (model(x) ** 2).sum()
    new_loss.backward()
    opt.step()
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation.*Linear"):
        old_loss.backward()


def test_optimizer_step_after_backward_then_a_fresh_forward_works(backend):
    mg.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = mg.randn(4, 3)
    for _ in range(2):
        opt.zero_grad()
        loss = (model(x) ** 2).sum()
        loss.backward()
        opt.step()
    expected = 2 * (x.data @ model.weight.data.T + model.bias.data).T @ x.data
    opt.zero_grad()
    (model(x) ** 2).sum().backward()
    np.testing.assert_allclose(model.weight.grad.data, expected, rtol=1e-5)


def test_mul_keeps_only_what_its_backward_reads(backend):
    """c * 2 needs only the constant for dc: changing c afterwards is harmless (as in PyTorch),
    while changing the operand that is read raises."""
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    c = x + 1
    d = c * 2
    c += 1
    d.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 2.0])
    w = mg.tensor([3.0, 4.0], requires_grad=True)
    c = x * 1
    e = (c * w).sum()
    c += 1
    with pytest.raises(RuntimeError, match="Mul"):
        e.backward()


def test_load_state_dict_between_forward_and_backward_raises(backend):
    """Loading weights changes them in place: the graph that used the old ones must not
    silently compute its gradient from the new ones."""
    lin = nn.Linear(2, 1)
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    y = lin(x)
    lin.load_state_dict({"weight": np.array([[10.0, 20.0]], np.float32),
                         "bias": np.zeros(1, np.float32)})
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()
