"""The one dtype rule, dtype conversions, and the small Tensor and Module methods around it."""

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn


@pytest.mark.parametrize("data", [
    np.ones(3, np.float64), np.ones(3, np.float16), np.ones(3, np.float32), [1.0, 2.0], 1.5,
    np.float64(2.0),
])
def test_every_float_becomes_float32(data):
    assert mg.tensor(data).dtype == np.float32
    assert mg.Tensor(data).dtype == np.float32


def test_ints_bools_and_explicit_dtypes():
    assert mg.tensor([1, 2]).dtype == np.int64
    assert mg.tensor(np.array([1, 2], np.int32)).dtype == np.int32
    assert mg.tensor([True, False]).dtype == np.bool_
    assert mg.tensor(np.ones(2), dtype=mg.float64).dtype == np.float64
    assert mg.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert mg.randn(2, dtype=mg.float64).dtype == np.float64
    with pytest.raises(TypeError, match="floating-point"):
        mg.tensor([1, 2], requires_grad=True)


def test_from_numpy_shares_memory_and_keeps_the_dtype():
    array = np.arange(4.0)
    t = mg.from_numpy(array)
    assert t.dtype == np.float64 and np.shares_memory(t.data, array)
    array[0] = 7
    assert t.data[0] == 7
    assert mg.from_numpy(np.arange(3)).dtype == np.int64
    with pytest.raises(TypeError, match="float16"):
        mg.from_numpy(np.ones(2, np.float16))
    with pytest.raises(TypeError, match="ndarray"):
        mg.from_numpy([1.0])


def test_float64_model_data_from_numpy_trains_in_float32(backend):
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((8, 3)))  # float64 data, as scikit-learn gives
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    loss = model(x).sum()
    loss.backward()
    assert loss.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_float_dtypes_promote_as_numpy(backend):
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0], dtype=mg.float64, requires_grad=True)
    for y in (a + b, b * a, a - b, b / a, mg.where(a > 1, a, b)):
        assert y.dtype == np.float64
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])
    float64_array = np.array([0.1, 0.2])  # an ndarray operand takes the tensor's dtype
    assert (b * float64_array).data[0] == 0.30000000000000004


def test_astype_float_double_to(backend):
    x = mg.tensor([1.5, -2.5], requires_grad=True)
    d = x.double()
    assert d.dtype == np.float64 and d.requires_grad
    assert x.float() is x and x.to(np.float32) is x
    (d * d).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, -5.0])
    as_int = x.astype(np.int64)
    assert as_int.dtype == np.int64 and not as_int.requires_grad
    np.testing.assert_array_equal(as_int.numpy(), [1, -2])
    assert x.to("float64").dtype == np.float64
    with pytest.raises(TypeError, match="float16"):
        x.astype(np.float16)


def test_argmax_argmin_and_python_numbers():
    x = mg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    assert x.argmax().item() == 3 and x.argmin().item() == 4
    np.testing.assert_array_equal(x.argmax(axis=1).numpy(), [1, 0])
    np.testing.assert_array_equal(x.argmin(dim=0, keepdim=True).numpy(), [[0, 1, 0]])
    assert x.argmax(1).dtype == np.int64
    with pytest.raises(TypeError, match="axis"):
        x.argmax(axis=(0, 1))
    with pytest.raises(ValueError, match="empty"):
        mg.zeros(0).argmax()
    assert float(mg.tensor([2.5])) == 2.5 and int(mg.tensor(3.7)) == 3
    with pytest.raises(ValueError, match="one element"):
        float(x)
    np.testing.assert_array_equal(abs(mg.tensor([-1.0, 2.0])).numpy(), [1.0, 2.0])


def test_module_to_double_and_back(backend):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    model(mg.randn(5, 3)).sum().backward()
    weight = model[0].weight
    model[1].register_buffer("count", np.zeros((), np.int64))
    assert model.double() is model
    assert model[0].weight is weight  # the same Parameter objects, converted in place
    for p in model.parameters():
        assert p.dtype == np.float64 and p.grad.dtype == np.float64
    assert model[1].running_var.dtype == np.float64
    assert model[1].count.dtype == np.int64  # integer buffers are left alone
    model.zero_grad()
    out = model(mg.randn(5, 3, dtype=mg.float64))
    assert out.dtype == np.float64
    out.sum().backward()
    assert model[0].weight.grad.dtype == np.float64
    model.float()
    assert all(p.dtype == np.float32 for p in model.parameters())
    with pytest.raises(TypeError, match="float32 or float64"):
        model.to(np.int32)


def test_where_gradcheck_and_broadcasting(backend):
    cond = mg.tensor([[True], [False], [True]])
    a = mg.randn(3, 4, dtype=mg.float64, requires_grad=True)
    b = mg.randn(4, dtype=mg.float64, requires_grad=True)
    assert mg.gradcheck(lambda a, b: mg.where(cond, a, b), a, b)
    y = mg.where(cond, a, 0.5)
    assert y.shape == (3, 4) and y.dtype == np.float64
    np.testing.assert_array_equal(y.numpy()[1], 0.5)
    with pytest.raises(TypeError, match="boolean"):
        mg.where(mg.tensor([1, 0]), a, b)
    with pytest.raises(ValueError, match="broadcast"):
        mg.where(mg.tensor([True, False]), mg.ones(3), mg.ones(3))


def test_where_condition_changed_after_forward_raises(backend):
    cond = mg.tensor([True, False])
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    y = mg.where(cond, a, 0.0).sum()
    cond[0] = False
    with pytest.raises(RuntimeError, match="modified by an in-place operation.*Where"):
        y.backward()
