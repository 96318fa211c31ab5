"""The engine's behaviour: graph building, accumulation, grad mode, errors, deep graphs."""

import gc
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg

ROOT = Path(__file__).resolve().parents[1]


def test_micrograd_style_expression_values_and_gradients():
    # f(a, b) = (a*b + b**3) * relu(a - b) + a / b, checked against hand-derived derivatives
    a = mg.tensor(2.0, dtype=np.float64, requires_grad=True)
    b = mg.tensor(-3.0, dtype=np.float64, requires_grad=True)
    f = (a * b + b**3) * (a - b).relu() + a / b
    f.backward()
    av, bv = 2.0, -3.0
    assert f.item() == pytest.approx((av * bv + bv**3) * (av - bv) + av / bv)
    # d/da: b*(a-b) + (a*b + b^3) + 1/b ; d/db: (a + 3b^2)(a-b) - (a*b + b^3) - a/b^2
    assert a.grad.item() == pytest.approx(bv * (av - bv) + (av * bv + bv**3) + 1 / bv)
    assert b.grad.item() == pytest.approx(
        (av + 3 * bv**2) * (av - bv) - (av * bv + bv**3) - av / bv**2
    )


def test_tensor_used_twice_accumulates():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * 2 + x * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 + 2 * x.numpy())


def test_backward_twice_accumulates_into_grad():
    x = mg.tensor([1.0, -2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])


def test_shared_gradient_arrays_are_not_aliased_between_leaves():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad.data *= 10  # an in-place change (as clip_grad_norm_ does) must not touch b.grad
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])


def test_grad_is_tensor_with_input_shape_and_dtype():
    x = mg.randn(3, 1, dtype=np.float64, requires_grad=True)
    (x + mg.ones(3, 4, dtype=np.float64)).sum().backward()
    assert isinstance(x.grad, mg.Tensor)
    assert x.grad.shape == (3, 1) and x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), np.full((3, 1), 4.0))


def test_chain_of_ten_thousand_ops_backpropagates_without_recursion_error():
    x = mg.tensor(1.0, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001**10_000)
    del y  # freeing a 10,000-node graph must not overflow the stack either
    gc.collect()


def test_non_scalar_backward_needs_a_gradient():
    y = mg.randn(2, 3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        y.backward()


def test_non_scalar_backward_with_gradient():
    x = mg.randn(2, 3, requires_grad=True)
    y = x * 2
    g = np.arange(6, dtype=np.float32).reshape(2, 3)
    y.backward(mg.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), 2 * g)


def test_backward_gradient_of_wrong_shape_is_rejected():
    y = mg.randn(2, 3, requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(np.ones((3, 2)))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (mg.ones(2) * 2).sum().backward()


def test_second_backward_without_retain_graph_raises_and_retain_graph_allows_it():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_saved_arrays_are_released_after_backward():
    x = mg.randn(100, 100, requires_grad=True)
    y = x.var(axis=0)  # saves (x, mean); the mean array is held by nothing else
    saved = weakref.ref(y.grad_fn.saved[1])
    z = y.sum()
    z.backward()
    gc.collect()
    assert saved() is None


def test_no_grad_records_nothing_and_restores_mode():
    x = mg.randn(3, requires_grad=True)
    with mg.no_grad():
        y = x * 2
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None

    @mg.no_grad()
    def double(t):
        return t * 2

    assert not double(x).requires_grad


def test_requires_grad_propagates_only_from_inputs_that_need_it():
    a = mg.randn(3, requires_grad=True)
    b = mg.randn(3)
    assert (a * b).requires_grad
    assert not (b * 2).requires_grad
    (a * b).sum().backward()
    assert b.grad is None


def test_detach_cuts_the_graph_and_shares_data():
    x = mg.randn(3, requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    y = (x * d).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), d.numpy())


def test_requires_grad_on_integer_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="int64"):
        mg.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError):
        mg.arange(3).requires_grad = True


def test_dtype_rules():
    assert mg.tensor([1.0, 2.0]).dtype == np.float32
    assert mg.tensor(1.5).dtype == np.float32
    assert mg.tensor(np.ones(2)).dtype == np.float32  # every float array becomes float32
    assert mg.tensor([1, 2]).dtype == np.int64
    assert mg.tensor([1, 2], dtype=np.float64).dtype == np.float64
    x = mg.ones(2)
    for y in (x * 2.5, 2.5 * x, x + np.float64(1.0), x / 3, x**2, 1 - x):
        assert y.dtype == np.float32  # scalars never upcast a float32 tensor
    assert (mg.ones(2) + mg.ones(2, dtype=np.float64)).dtype == np.float64


def test_tensor_copies_ndarray_input():
    data = np.ones(3, dtype=np.float32)
    t = mg.tensor(data)
    data[0] = 5
    assert t.numpy()[0] == 1


def test_comparisons_are_boolean_and_outside_the_graph():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for mask in (x > 1.5, x >= 2, x < 2, x <= 2, x == 2, x != 2):
        assert mask.dtype == np.bool_ and not mask.requires_grad
    np.testing.assert_array_equal((x > 1.5).numpy(), [False, True, True])
    assert (x > 1.5).sum().item() == 2 and (x > 1.5).mean().item() == pytest.approx(2 / 3)


def test_tensor_is_a_dict_key_by_identity():
    # The hash is object's C slot (a Python __hash__ costs a call per optimizer-state lookup).
    assert mg.Tensor.__hash__ is object.__hash__
    a, b = mg.tensor([1.0, 2.0]), mg.tensor([1.0, 2.0])  # equal values, distinct tensors
    state = {a: "a", b: "b"}
    assert len(state) == 2 and state[a] == "a" and state[b] == "b"
    assert hash(a) == hash(a) and hash(a) != hash(b)
    assert a in state and mg.tensor([1.0, 2.0]) not in state
    assert len({a, a, b}) == 2


def test_max_gradient_with_ties_goes_to_the_first_maximum():
    x = mg.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])
    y = mg.tensor([[5.0, 1.0], [5.0, 5.0]], requires_grad=True)
    y.max().backward()  # the first maximum in C order over all axes
    np.testing.assert_array_equal(y.grad.numpy(), [[1, 0], [0, 0]])


def test_min_gradient_with_ties_goes_to_the_first_minimum():
    x = mg.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    x.min(axis=-1).backward(np.ones(1, dtype=np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0]])


@pytest.mark.parametrize("bad", [2, -3, (0, 0), (0, 5)])
def test_invalid_axes_raise(bad):
    x = mg.randn(2, 3)
    with pytest.raises((np.exceptions.AxisError, ValueError)):
        x.sum(axis=bad)


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        mg.randn(2, 3) @ mg.randn(4, 5)


def test_item_and_repr():
    x = mg.tensor([[1.5]], requires_grad=True)
    assert x.item() == 1.5
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=Mul" in repr(x * 2)
    with pytest.raises(ValueError, match="one element"):
        mg.ones(2).item()


def test_creation_functions_and_seed():
    mg.manual_seed(7)
    a = mg.randn(3, 4).numpy().copy()
    mg.manual_seed(7)
    np.testing.assert_array_equal(a, mg.randn(3, 4).numpy())
    assert mg.zeros(2, 3).shape == (2, 3) and mg.ones((2, 3)).numpy().sum() == 6
    assert mg.full((2,), 7.0).numpy().tolist() == [7.0, 7.0]
    assert mg.eye(3).numpy().trace() == 3
    assert mg.arange(5).dtype == np.int64 and mg.arange(0.0, 1.0, 0.25).dtype == np.float32
    assert mg.zeros_like(mg.ones(2, dtype=np.float64)).dtype == np.float64
    assert mg.ones_like(np.zeros((2, 2))).shape == (2, 2)
    r = mg.rand(1000).numpy()
    assert 0 <= r.min() and r.max() < 1
    assert mg.randn(2, requires_grad=True).requires_grad


def test_zero_dim_results_are_ndarrays():
    assert type((mg.tensor(2.0) * 3.0).data) is np.ndarray
    assert type(mg.tensor([1.0, 2.0])[0].data) is np.ndarray


def test_numpy_array_protocol_copies_when_asked():
    x = mg.ones(2, 2)
    copy = np.array(x)
    copy[0, 0] = 5
    assert x.numpy()[0, 0] == 1
    assert np.asarray(x) is x.numpy()  # asarray may share, as for ndarrays


def test_backward_on_a_leaf_does_not_keep_the_callers_array():
    x = mg.ones(3, requires_grad=True)
    seed = np.full(3, 2.0, dtype=np.float32)
    x.backward(seed)
    seed[:] = 0
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_functional_accepts_dim_aliases():
    import minigrad.nn.functional as nnF

    x = mg.randn(2, 3)
    np.testing.assert_allclose(nnF.softmax(x, dim=0).numpy(), x.softmax(axis=0).numpy())
    np.testing.assert_allclose(mg.log_softmax(x, dim=1).numpy(), x.log_softmax(1).numpy())
    assert mg.logsumexp(x, dim=1, keepdim=True).shape == (2, 1)


def test_integer_tensors_meeting_floats_give_float32_like_pytorch():
    assert (mg.arange(4) * 0.5).dtype == np.float32
    assert (0.5 * mg.arange(4)).dtype == np.float32
    assert (mg.arange(4) / 2).dtype == np.float32
    assert (mg.arange(4) + 1).dtype == np.int64
    assert (mg.arange(3) + mg.ones(3, dtype=np.float64)).dtype == np.float64
    np.testing.assert_allclose((mg.arange(4) / 2).numpy(), [0, 0.5, 1, 1.5])


@pytest.mark.parametrize("first", ["minigrad.autograd", "minigrad.tensor", "minigrad.nn",
                                   "minigrad.ops.elementwise", "minigrad.creation"])
def test_modules_import_in_any_order_without_injection(first):
    code = (f"import importlib; importlib.import_module({first!r}); "
            "import sys; a, t = sys.modules['minigrad.autograd'], sys.modules['minigrad.tensor']; "
            "assert a.Tensor is t.Tensor; "
            "import inspect; assert 'autograd.Tensor =' not in inspect.getsource(t)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
