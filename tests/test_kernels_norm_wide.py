"""BatchNorm kernels on short planes, where the compiled sums run over one row of C * S columns
per sample (in strips of 32 columns over blocks of 16 rows) and planes shorter than 16 values
are written the same way: shapes on both sides of those choices and around the vector widths,
strips and row blocks, data far from zero, inf and NaN in the first sample (which each
channel's sums are shifted by), thread counts, and the fused ReLU on those shapes (the backward
applies relu_out's mask as it reads dy on the column path).
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_modules import compiled_module, implementations
from test_kernels_norm import DTYPES, assert_same_results, run_batchnorm
from test_kernels_norm_relu import same_bits

from minigrad.kernels import reference
from minigrad.kernels._activation_twin import relu_select

_norm = compiled_module("_norm")
IMPLS = implementations("_norm")

# (N, C, S) on both sides of each choice of the compiled kernels: sums by columns when
# C * S <= 16384, S < 256 and S <= 4 N; writes by columns when also S < 16. HW = 1, 3, 16, 17;
# C * S around the vector widths (8 and 16 values) and the strips (32 columns); N around the
# row blocks (16 rows).
WIDE_SHAPES = [
    (6, 5, 1),
    (4, 3, 3),
    (5, 1, 16),
    (5, 2, 17),
    (4, 7, 1),
    (4, 5, 3),  # C * S = 15
    (4, 1, 16),  # 16
    (3, 11, 3),  # 33
    (8, 3, 15),  # the longest planes written by columns
    (8, 3, 31),
    (8, 3, 32),
    (9, 3, 33),
    (17, 33, 1),  # 17 rows: a block of 16 and one; 33 columns: a strip and one
    (16, 9, 7),  # 63 columns: a strip and 31
    (37, 5, 13),  # 65 columns, 37 rows
    (700, 16, 7, 7),  # past 1 MiB of float32 data: blocks of 4 rows
    (4, 3, 16),  # S = 4 N: sums by columns
    (3, 3, 16),  # S > 4 N: a plane at a time
    (64, 2, 255),  # the longest planes summed by columns
    (64, 2, 256),
    (4, 1024, 16),  # C * S = 16384: sums and write by columns
    (4, 1025, 16),  # a plane at a time
    (8, 32, 4, 4),
    (16, 16, 8, 8),
    (2, 16, 8, 8),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", WIDE_SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_short_planes_match_the_oracle(impl, dtype, shape, training):
    run_batchnorm(impl, shape, dtype, "contiguous", affine=True, running=True,
                  training=training)


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", WIDE_SHAPES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_short_planes_compiled_agrees_with_the_twin(dtype, shape, layout):
    compiled = run_batchnorm(_norm, shape, dtype, layout, affine=True, running=True, seed=5)
    twin = run_batchnorm(reference, shape, dtype, layout, affine=True, running=True, seed=5)
    assert_same_results(compiled, twin, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(64, 32, 4, 4), (64, 16, 8, 8), (256, 8, 3)])
def test_float32_far_from_zero_on_short_planes(impl, shape):
    """Every column's sums are shifted by its own first value, then moved to the channel's:
    the variance must keep float32 precision when |mean| is 1e4 times the spread."""
    rng = np.random.default_rng(2)
    x = (1e4 + rng.standard_normal(shape) * np.linspace(0.5, 2, shape[1]).reshape(
        (1, -1) + (1,) * (len(shape) - 2))).astype(np.float32)
    y, mean, rstd = impl.batchnorm_forward(x, None, None, None, None, 0.9, 1e-5, True)
    axes = (0,) + tuple(range(2, len(shape)))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=axes), rtol=1e-12)
    # (float64 sums of float32 data; a float32 one-pass variance would be off by far more)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(x64.var(axis=axes) + 1e-5), rtol=1e-7)
    expected = (x64 - x64.mean(axis=axes, keepdims=True)) * rstd.reshape(
        (1, -1) + (1,) * (len(shape) - 2))
    assert np.max(np.abs(y - expected)) < 5e-3


# (sample, channel, position) of one special value; sample 0 is what the columns shift by
SPECIAL_AT = [(0, 1, 0), (0, 1, 2), (0, 2, 15), (3, 0, 5)]


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("at", SPECIAL_AT)
@pytest.mark.parametrize("shape", [(4, 3, 16), (5, 3, 17), (5, 4, 4, 4)])
def test_inf_and_nan_agree_with_the_twin(dtype, value, at, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(shape[0], shape[1], -1)
    flat[at[0], at[1], at[2] % flat.shape[2]] = value
    if value == np.inf:  # and a -inf elsewhere in the channel: inf - inf, NaN statistics
        flat[1, at[1], 1] = -np.inf if at[1] == 2 else flat[1, at[1], 1]
    dy = rng.standard_normal(shape).astype(dtype)
    gamma = rng.standard_normal(shape[1]).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-11
    with np.errstate(invalid="ignore", over="ignore"):
        fwd = [m.batchnorm_forward(x, gamma, None, None, None, 0.9, 1e-5, True)
               for m in (_norm, reference)]
        bwd = [m.batchnorm_backward(dy, x, gamma, f[1], f[2], True)
               for m, f in zip((_norm, reference), fwd, strict=True)]
    for got, want in zip(fwd[0] + bwd[0], fwd[1] + bwd[1], strict=True):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=tol,
                                   atol=tol * max(1.0, float(np.abs(want[finite]).max(
                                       initial=0))))


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1024, 16, 4, 4), (512, 32, 17), (2048, 4, 33)])
def test_short_planes_thread_count_independent(dtype, shape):
    """Above the threading threshold: threads split the channels for the sums (each column
    summed whole by one thread) and the samples for the write, so the bits do not change."""
    results = []
    for threads in (1, 2):
        _norm.set_num_threads(threads)
        try:
            results.append(run_batchnorm(_norm, shape, dtype, "contiguous", True, True)[0])
        finally:
            _norm.set_num_threads(2)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 16), (3, 5, 3), (2, 3, 33), (3, 32, 4, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_fused_relu_on_short_planes_gives_the_bits_of_the_two_steps(impl, dtype, shape,
                                                                     training):
    rng = np.random.default_rng(6)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    gamma[0], beta[0] = 0.0, -0.0  # y = -0.0 where x < mean, which ReLU makes +0.0
    rm, rv = rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5
    y, mean, rstd = impl.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), 0.9, 1e-5,
                                           training)
    z = np.maximum(y, 0)
    fz, fmean, frstd = impl.batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), 0.9, 1e-5,
                                              training, relu=True)
    assert same_bits(z, fz) and same_bits(mean, fmean) and same_bits(rstd, frstd)
    grad = rng.standard_normal(shape).astype(dtype)
    expected = impl.batchnorm_backward(relu_select(grad, z), x, gamma, mean, rstd, training)
    got = impl.batchnorm_backward(grad, x, gamma, mean, rstd, training, relu_out=fz)
    for e, g in zip(expected, got, strict=True):
        assert same_bits(e, g)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(2, 3, 0), (2, 3, 0, 4), (2, 40, 5, 0)])
@pytest.mark.parametrize("training", [True, False])
def test_empty_planes(impl, shape, training):
    """No value in a plane: (C,) statistics and gradients, zero sums, nothing written."""
    c = shape[1]
    x = np.ones(shape, np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        y, mean, rstd = impl.batchnorm_forward(x, None, None, rm, rv, 0.9, 1e-5, training)
        dx, dgamma, dbeta = impl.batchnorm_backward(x, x, None, mean, rstd, training)
    assert y.shape == shape and dx.shape == shape
    assert mean.shape == rstd.shape == (c,)
    np.testing.assert_array_equal(dgamma, np.zeros(c, np.float32))
    np.testing.assert_array_equal(dbeta, np.zeros(c, np.float32))


# Shapes whose backward takes the column sums (so relu_out's mask is applied in the loops):
# planes written by columns and one at a time, strips and their tails, row blocks.
MASKED_SHAPES = [(4, 3, 16), (3, 5, 3), (17, 33, 1), (16, 16, 8, 8), (37, 5, 13), (20, 3, 20),
                 (700, 16, 7, 7)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MASKED_SHAPES)
def test_masked_gradient_gives_the_bits_of_the_two_steps_with_special_values(impl, dtype,
                                                                              shape):
    """NaN and inf gradients where the ReLU was off (ReLU's select gives +0.0 there, whatever
    arrives), negative ones, and a relu_out in another layout."""
    rng = np.random.default_rng(8)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype)
    z, mean, rstd = impl.batchnorm_forward(x, gamma, None, None, None, 0.9, 1e-5, True,
                                           relu=True)
    grad = rng.standard_normal(shape).astype(dtype)
    off = np.flatnonzero(z.reshape(-1) <= 0)
    grad.reshape(-1)[off[:3]] = [np.nan, np.inf, -np.inf][: len(off[:3])]
    with np.errstate(invalid="ignore"):
        expected = impl.batchnorm_backward(relu_select(grad, z), x, gamma, mean, rstd, True)
        for relu_out in (z, np.asfortranarray(z)):
            got = impl.batchnorm_backward(grad, x, gamma, mean, rstd, True, relu_out=relu_out)
            for e, g in zip(expected, got, strict=True):
                assert same_bits(e, g)


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 3, 16), (6, 4, 4, 4), (16, 16, 8, 8)])
def test_masked_gradient_compiled_agrees_with_the_twin(dtype, shape):
    results = []
    for impl in (_norm, reference):
        rng = np.random.default_rng(9)
        c = shape[1]
        x = rng.standard_normal(shape).astype(dtype)
        gamma = rng.standard_normal(c).astype(dtype)
        z, mean, rstd = impl.batchnorm_forward(x, gamma, None, None, None, 0.9, 1e-5, True,
                                               relu=True)
        grad = rng.standard_normal(shape).astype(dtype)
        results.append((z, *impl.batchnorm_backward(grad, x, gamma, mean, rstd, True,
                                                    relu_out=z)))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for c, t in zip(*results, strict=True):
        np.testing.assert_allclose(c, t, rtol=tol, atol=tol * max(1.0, float(np.abs(t).max())))


@pytest.mark.skipif(_norm is None, reason="compiled kernels not built")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1024, 16, 4, 4), (512, 32, 17)])
def test_fused_relu_thread_count_independent(dtype, shape):
    """The fused forward and masked backward above the threading threshold."""
    rng = np.random.default_rng(10)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    results = []
    for threads in (1, 2):
        _norm.set_num_threads(threads)
        try:
            z, mean, rstd = _norm.batchnorm_forward(x, gamma, None, None, None, 0.9, 1e-5, True,
                                                    relu=True)
            results.append((z, mean, rstd, *_norm.batchnorm_backward(grad, x, gamma, mean, rstd,
                                                                     True, relu_out=z)))
        finally:
            _norm.set_num_threads(2)
    for one, two in zip(*results, strict=True):
        assert same_bits(one, two)
