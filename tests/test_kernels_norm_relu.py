"""The BatchNorm kernels' ReLU options (``relu=True`` forward, ``relu_out=`` backward), which
mg.compile uses to replay a BatchNorm followed by a ReLU: on each backend they must give the
very bits of the two separate steps (``np.maximum(y, 0)``, then ReLU's backward), and the
fused pair must be the gradient of max(BatchNorm(x), 0) (finite differences, float64)."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module, implementations

from minigrad.kernels._activation_twin import relu_select
from minigrad.ops.norm import BatchNorm

IMPLS = implementations("_norm")
DTYPES = [np.float32, np.float64]
SHAPES = [(64, 128), (5, 3), (2, 1), (7, 4, 5), (3, 2, 4, 5), (9, 6, 1, 1)]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN where NaN, and the same sign on every number and zero. The sign of a
    NaN is not compared: IEEE 754 leaves it unspecified, and the same sums compiled into
    differently vectorised loops give a NaN of either sign."""
    numbers = ~np.isnan(a)
    return (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a[numbers]), np.signbit(b[numbers])))


def inputs(shape, dtype, seed=0, special=False):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    if special:
        # gamma 0 and beta -0.0 make y = (x - mean) * 0 + -0.0: -0.0 wherever x < mean,
        # which ReLU turns into +0.0; a NaN in one channel and an inf gradient elsewhere
        gamma[0], beta[0] = 0.0, -0.0
        if c > 1:
            x.flat[1] = np.nan
    return x, gamma, beta, rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("special", [False, True])
def test_fused_relu_gives_the_bits_of_the_two_steps(impl, dtype, shape, training, special):
    x, gamma, beta, rm, rv = inputs(shape, dtype, special=special)
    rm2, rv2 = rm.copy(), rv.copy()
    y, mean, rstd = impl.batchnorm_forward(x, gamma, beta, rm, rv, 0.9, 1e-5, training)
    z = np.maximum(y, 0)
    fz, fmean, frstd = impl.batchnorm_forward(x, gamma, beta, rm2, rv2, 0.9, 1e-5, training,
                                              relu=True)
    assert same_bits(z, fz)
    assert same_bits(mean, fmean) and same_bits(rstd, frstd)
    assert same_bits(rm, rm2) and same_bits(rv, rv2)
    grad = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    if special:
        grad.flat[-1] = np.inf
        grad.flat[0] = -grad.flat[0] if grad.flat[0] > 0 else grad.flat[0]
    with np.errstate(invalid="ignore"):
        expected = impl.batchnorm_backward(relu_select(grad, z), x, gamma, mean, rstd, training)
        got = impl.batchnorm_backward(grad, x, gamma, mean, rstd, training, relu_out=fz)
    for e, g in zip(expected, got, strict=True):
        assert same_bits(e, g)


@pytest.mark.skipif(compiled_module("_norm") is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_relu_compiled_agrees_with_the_twin(dtype, shape):
    compiled, twin = (m.values[0] for m in reversed(IMPLS))
    x, gamma, beta, rm, rv = inputs(shape, dtype, seed=3)
    grad = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    results = []
    for impl in (compiled, twin):
        z, mean, rstd = impl.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), 0.9, 1e-5,
                                               True, relu=True)
        results.append((z, *impl.batchnorm_backward(grad, x, gamma, mean, rstd, True,
                                                    relu_out=z)))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for c, t in zip(*results, strict=True):
        np.testing.assert_allclose(c, t, rtol=tol, atol=tol * max(1.0, np.abs(t).max()))


@pytest.mark.parametrize("impl", IMPLS)
def test_relu_out_must_match_x(impl):
    x, gamma, beta, rm, rv = inputs((6, 4), np.float32)
    y, mean, rstd = impl.batchnorm_forward(x, gamma, beta, rm, rv, 0.9, 1e-5, True, relu=True)
    with pytest.raises(ValueError, match="relu_out must have shape"):
        impl.batchnorm_backward(x, x, gamma, mean, rstd, True, relu_out=y[:, :3])
    with pytest.raises(TypeError, match="relu_out has dtype float64"):
        impl.batchnorm_backward(x, x, gamma, mean, rstd, True, relu_out=y.astype(np.float64))
    with pytest.raises(TypeError, match="relu_out must be a numpy.ndarray"):
        impl.batchnorm_backward(x, x, gamma, mean, rstd, True, relu_out=[1.0])
    # any layout of the right shape and dtype is read by value
    strided = np.zeros((6, 8), np.float32)[:, ::2]
    strided[...] = y
    expected = impl.batchnorm_backward(x, x, gamma, mean, rstd, True, relu_out=y)
    got = impl.batchnorm_backward(x, x, gamma, mean, rstd, True, relu_out=strided)
    for e, g in zip(expected, got, strict=True):
        assert same_bits(e, g)


class _Ctx:
    """The little a Function's forward and backward need of a context."""

    inputs = (None, None, None)

    def save_for_backward(self, *arrays):
        self.saved = arrays


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5)])
def test_fused_pair_is_the_gradient_of_relu_of_batchnorm(impl, shape, monkeypatch):
    """Central differences of sum(w * max(BatchNorm(x), 0)) in float64 against
    ``BatchNorm.backward_relu``, for x, gamma and beta."""
    from minigrad import kernels

    monkeypatch.setattr(kernels, "impl", impl)
    x, gamma, beta, _, _ = inputs(shape, np.float64, seed=7)
    w = np.random.default_rng(8).standard_normal(shape)

    def loss(x, gamma, beta):
        y = BatchNorm.forward_relu(_Ctx(), x, gamma, beta, running_mean=None, running_var=None,
                                   momentum=0.9, eps=1e-5, training=True)
        return float(np.sum(w * y))

    ctx = _Ctx()
    BatchNorm.forward_relu(ctx, x, gamma, beta, running_mean=None, running_var=None,
                           momentum=0.9, eps=1e-5, training=True)
    analytic = BatchNorm.backward_relu(ctx, w)
    args = [x, gamma, beta]
    h = 1e-6
    for k, a in enumerate(args):
        numeric = np.zeros_like(a)
        for i in range(a.size):
            orig = a.flat[i]
            a.flat[i] = orig + h
            up = loss(*args)
            a.flat[i] = orig - h
            down = loss(*args)
            a.flat[i] = orig
            numeric.flat[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(analytic[k], numeric, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- LayerNorm
LN_CASES = [((64, 128), 1), ((5, 3), 1), ((2, 1), 1), ((4, 6, 5), 2), ((3, 2, 4), 1),
            ((0, 4), 1)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "k"), LN_CASES)
@pytest.mark.parametrize("special", [False, True])
def test_layernorm_fused_relu_gives_the_bits_of_the_two_steps(impl, dtype, shape, k, special):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    tail = shape[len(shape) - k:]
    gamma = rng.standard_normal(tail).astype(dtype)
    beta = rng.standard_normal(tail).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    if special and x.size > 3:
        gamma.flat[0], beta.flat[0] = 0.0, -0.0  # -0.0 outputs, which ReLU makes +0.0
        x.flat[2] = np.nan
        grad.flat[-1] = np.inf
    y, mean, rstd = impl.layernorm_forward(x, gamma, beta, 1e-5, k)
    z = np.maximum(y, 0)
    fz, fmean, frstd = impl.layernorm_forward(x, gamma, beta, 1e-5, k, relu=True)
    assert same_bits(z, fz) and same_bits(mean, fmean) and same_bits(rstd, frstd)
    with np.errstate(invalid="ignore"):
        expected = impl.layernorm_backward(relu_select(grad, z), x, gamma, mean, rstd)
        got = impl.layernorm_backward(grad, x, gamma, mean, rstd, relu_out=fz)
    for e, g in zip(expected, got, strict=True):
        assert same_bits(e, g)


@pytest.mark.parametrize("impl", IMPLS)
def test_layernorm_relu_out_must_match_x(impl):
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    y, mean, rstd = impl.layernorm_forward(x, None, None, 1e-5, 1, relu=True)
    with pytest.raises(ValueError, match="relu_out must have shape"):
        impl.layernorm_backward(x, x, None, mean, rstd, relu_out=y[:, :3])
    with pytest.raises(TypeError, match="relu_out has dtype float64"):
        impl.layernorm_backward(x, x, None, mean, rstd, relu_out=y.astype(np.float64))
