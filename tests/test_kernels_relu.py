"""Tests of the ReLU kernels: compiled vs NumPy twin vs the definition written out with
np.where, bit for bit, over dtypes, sizes around the vector width and the thread split, memory
layouts, special values and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module, implementations, relayout

import minigrad as mg
from minigrad import kernels

IMPLS = implementations("_activation")
DTYPES = [np.float32, np.float64]
LAYOUTS = ["contiguous", "transposed", "step", "unaligned"]
SPECIAL = [0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-45, -1e-45, 5e-324, -5e-324, 3.0,
           -3.0, 1e30, -1e30]


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def defined_forward(x: np.ndarray) -> np.ndarray:
    """max(x, 0) spelled out: x where x > 0 or x is NaN, else +0.0 (also for -0.0)."""
    return np.where((x > 0) | np.isnan(x), x, x.dtype.type(0))


def defined_backward(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    """g where y > 0 or y is NaN, +0.0 where y <= 0: a select, so an inf or NaN gradient at an
    inactive unit gives 0 (PyTorch's rule), and g's bits pass unchanged elsewhere."""
    keep = (y > 0) | np.isnan(y)
    return np.where(keep, g, g.dtype.type(0))


def assert_relu(impl, x: np.ndarray, g: np.ndarray) -> None:
    y = impl.relu_forward(x)
    want = defined_forward(np.ascontiguousarray(x))
    assert y.dtype == x.dtype and y.shape == x.shape
    if impl is compiled_module("_activation"):
        np.testing.assert_array_equal(bits(y), bits(want))
    else:  # NumPy's own maximum: the same numbers (its sign of zero may vary by platform)
        np.testing.assert_array_equal(y, want)
    with np.errstate(invalid="ignore"):
        dx = impl.relu_backward(g, want)
    np.testing.assert_array_equal(bits(dx), bits(defined_backward(np.ascontiguousarray(g), want)))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 8, 15, 16, 17, 31, 33, 4095, 4097, 20000])
def test_relu_matches_its_definition_at_every_size(impl, dtype, size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    assert_relu(impl, x, g)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(3, 5), (64, 16, 8, 8), (2, 3, 33)])
def test_relu_any_layout(impl, dtype, layout, shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    assert_relu(impl, relayout(x, layout), relayout(g, layout))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_special_values(impl, dtype):
    x = np.array(SPECIAL, dtype=dtype)
    for g in (np.ones_like(x), -np.ones_like(x), np.full_like(x, np.nan), np.full_like(x, np.inf),
              np.array(SPECIAL[::-1], dtype=dtype)):
        assert_relu(impl, x, g)
    y = impl.relu_forward(x)
    assert np.isnan(y[2]) and y[4] == np.inf and y[5] == 0 and y[1] == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_relu_other_dtypes_and_bad_arguments(impl):
    ints = np.array([[3, -2], [0, 7]], np.int64)
    np.testing.assert_array_equal(impl.relu_forward(ints), [[3, 0], [0, 7]])
    assert impl.relu_forward(np.zeros((0, 4), np.float32)).shape == (0, 4)
    y = np.array([1.0, -1.0, 2.0], np.float32)
    mixed = impl.relu_backward(np.array([2.0, 2.0, 2.0], np.float64), y)  # NumPy promotes
    assert mixed.dtype == np.float64 and mixed.tolist() == [2.0, 0.0, 2.0]
    with pytest.raises(ValueError, match=r"grad_out has shape \(2,\) but y has shape \(3,\)"):
        impl.relu_backward(np.ones(2, np.float32), y)
    with pytest.raises(ValueError, match="grad_out has shape"):
        impl.relu_backward(np.ones((3, 1), np.float32), y)  # no broadcasting


def test_relu_bits_do_not_depend_on_the_thread_count():
    compiled = compiled_module("_activation")
    if compiled is None:
        pytest.skip("compiled kernels not built")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(600_000).astype(np.float32)  # above the two-thread size
    g = rng.standard_normal(600_000).astype(np.float32)
    threads = kernels.get_num_threads()
    try:
        mg.set_num_threads(1)
        one = compiled.relu_forward(x), compiled.relu_backward(g, x)
        mg.set_num_threads(max(2, threads) if kernels.compiled is not None else 1)
        many = compiled.relu_forward(x), compiled.relu_backward(g, x)
    except ValueError:  # a one-CPU machine cannot ask for two threads
        pytest.skip("needs two CPUs")
    finally:
        mg.set_num_threads(threads)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(bits(a), bits(b))


@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_relu_op_gradcheck_and_int_tensors(backend):
    previous = mg.get_backend()
    mg.set_backend(backend)
    try:
        rng = np.random.default_rng(0)
        base = rng.standard_normal((4, 6))
        base[np.abs(base) < 0.05] = 0.5  # no input within eps of the kink
        x = mg.tensor(base[:, ::2], requires_grad=True)  # a strided leaf
        assert mg.testing.gradcheck(lambda t: t.relu() * 3.0, x)
        assert mg.tensor([3, -2]).relu().tolist() == [3, 0]
    finally:
        mg.set_backend(previous)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_selects_so_inf_and_nan_gradients_stop_at_inactive_units(impl, dtype):
    """PyTorch's rule, at every position of the vector loops and their tails: where y <= 0 the
    gradient is +0.0 whatever arrives (inf, NaN, a signaling NaN: never inf * 0 = NaN); where
    y > 0 or y is NaN the arriving gradient passes with its bits unchanged."""
    nan = {np.float32: [0x7F800001, 0xFF812345], np.float64: [0x7FF0000000000001,
                                                               0xFFF0000000ABCDEF]}[dtype]
    udt = np.uint32 if dtype == np.float32 else np.uint64
    specials = np.concatenate([np.array(nan, udt).view(dtype),
                               np.array([np.inf, -np.inf, np.nan, -2.0], dtype)])
    for size in (1, 7, 16, 33, 4097):
        g = np.resize(specials, size)
        y = np.resize(np.array([1.0, 0.0, -0.0, np.nan, -3.0], dtype), size)
        got = impl.relu_backward(g, y)
        inactive = y <= 0
        assert (bits(got[inactive]) == 0).all()  # +0.0 exactly
        np.testing.assert_array_equal(bits(got[~inactive]), bits(g[~inactive]))


def test_relu_gradient_matches_pytorch_rule_through_the_engine():
    """An inf upstream gradient meets ReLU's inactive units: 0 there, as PyTorch gives."""
    x = mg.tensor(np.array([-1.0, 0.0, 2.0, np.nan], np.float32), requires_grad=True)
    y = x.relu()
    y.backward(mg.tensor(np.array([np.inf, np.nan, 3.0, 5.0], np.float32)))
    assert x.grad.tolist()[:3] == [0.0, 0.0, 3.0] and x.grad.tolist()[3] == 5.0
