"""Pooling against PyTorch itself (skipped when torch is not installed), for the configurations
where a framework most easily differs: ceil_mode with padding (the last window must start inside
the input or the left padding, and is clipped for the divisor), count_include_pad=False,
dilation, rectangular windows, and adaptive pooling with sizes that do not divide."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F

torch = pytest.importorskip("torch")

# (input shape, kwargs) -- the same keywords in both frameworks
MAX_CONFIGS = [
    ((2, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 3, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 5, 8), dict(kernel_size=(2, 3), stride=(3, 2), padding=(1, 1), ceil_mode=True)),
    ((1, 2, 10, 9), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    ((1, 2, 9, 9), dict(kernel_size=(3, 2), stride=1, padding=(1, 0), dilation=(2, 3))),
    ((3, 5, 5), dict(kernel_size=2, stride=2, ceil_mode=True)),
    # ceil would add a window starting in the right padding: PyTorch drops it
    ((1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
]
AVG_CONFIGS = [
    ((2, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                        count_include_pad=False)),
    ((2, 3, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 5, 8), dict(kernel_size=(2, 3), stride=(3, 2), padding=(1, 1), ceil_mode=True)),
    ((1, 2, 6, 5), dict(kernel_size=(4, 3), stride=(3, 1), padding=(2, 0), ceil_mode=True,
                        count_include_pad=False)),
    ((1, 2, 5, 6), dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),
    ((3, 5, 5), dict(kernel_size=2, ceil_mode=True, count_include_pad=False)),
    ((1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
]
ADAPTIVE_CONFIGS = [((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 3), (7, 4)), ((1, 2, 10, 10), (3, 6)),
                    ((2, 3, 8, 8), 1), ((1, 2, 7, 5), (None, 2)), ((3, 11, 6), (4, 4))]


def _compare(backend_fn, torch_fn, shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape).astype(dtype)
    x = mg.tensor(data, dtype=dtype, requires_grad=True)
    xt = torch.from_numpy(data.copy()).requires_grad_(True)
    y, yt = backend_fn(x), torch_fn(xt)
    assert y.shape == tuple(yt.shape)
    g = rng.standard_normal(y.shape).astype(dtype)
    y.backward(mg.tensor(g, dtype=dtype))
    yt.backward(torch.from_numpy(g))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(x.grad.data, xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, kwargs", MAX_CONFIGS)
def test_max_pool2d_matches_torch(backend, shape, kwargs, dtype):
    _compare(lambda x: F.max_pool2d(x, **kwargs),
             lambda x: torch.nn.functional.max_pool2d(x, **kwargs), shape, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, kwargs", AVG_CONFIGS)
def test_avg_pool2d_matches_torch(backend, shape, kwargs, dtype):
    _compare(lambda x: F.avg_pool2d(x, **kwargs),
             lambda x: torch.nn.functional.avg_pool2d(x, **kwargs), shape, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, out", ADAPTIVE_CONFIGS)
def test_adaptive_avg_pool2d_matches_torch(backend, shape, out, dtype):
    _compare(lambda x: F.adaptive_avg_pool2d(x, out),
             lambda x: torch.nn.functional.adaptive_avg_pool2d(x, out), shape, dtype)


def test_max_pool2d_ties_resolve_as_torch_does(backend):
    """Both frameworks give a tied window's gradient to its first maximal element."""
    data = np.array([[[[1.0, 3.0, 3.0], [3.0, 0.0, 3.0], [2.0, 3.0, 1.0]]]])
    _compare(lambda x: F.max_pool2d(x, 2, stride=1),
             lambda x: torch.nn.functional.max_pool2d(x, 2, stride=1), data.shape, np.float64)
    x = mg.tensor(data, dtype=np.float64, requires_grad=True)
    xt = torch.from_numpy(data.copy()).requires_grad_(True)
    F.max_pool2d(x, 2, stride=1).sum().backward()
    torch.nn.functional.max_pool2d(xt, 2, stride=1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, xt.grad.numpy())


@pytest.mark.parametrize("shape, kwargs", [((1, 1, 4, 4), dict(kernel_size=5, padding=0)),
                                           ((1, 1, 4, 4), dict(kernel_size=3, padding=2))])
def test_the_same_configurations_are_refused(shape, kwargs):
    data = np.zeros(shape, np.float32)
    with pytest.raises(RuntimeError):
        torch.nn.functional.max_pool2d(torch.from_numpy(data), **kwargs)
    with pytest.raises(ValueError):
        F.max_pool2d(data, **kwargs)
