"""max_pool2d, avg_pool2d, adaptive_avg_pool2d and their layers, on both backends: values and
gradients against a direct float64 loop nest written here (window by window, tap by tap),
gradcheck, ties, NaN, unbatched and non-contiguous inputs, and every argument error."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn

# ------------------------------------------------------------------ the loop-nest reference


def ref_size(L, k, s, p, d, ceil_mode):
    """Count the windows one by one: a window is kept while it fits the padded input (floor) or,
    in ceil_mode, while the one before it had not reached the padded end and it starts inside
    the input or its left padding."""
    span, n = d * (k - 1) + 1, 0
    while True:
        start = n * s
        fits = start + span <= L + 2 * p
        if ceil_mode:
            fits = (n == 0 or (n - 1) * s + span < L + 2 * p) and start < L + p
        if not fits:
            return n
        n += 1


def ref_windows(H, W, k, s, p, d, ceil_mode):
    """For each output (i, j): its taps as (h, w, inside the input, inside the padded input)."""
    oh, ow = ref_size(H, k[0], s[0], p[0], d[0], ceil_mode), ref_size(W, k[1], s[1], p[1], d[1],
                                                                        ceil_mode)
    windows = {}
    for i in range(oh):
        for j in range(ow):
            taps = []
            for a in range(k[0]):
                for b in range(k[1]):
                    h, w = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + b * d[1]
                    taps.append((h, w, 0 <= h < H and 0 <= w < W, h < H + p[0] and w < W + p[1]))
            windows[i, j] = taps
    return (oh, ow), windows


def ref_pool(x, g, kind, k, s=None, p=(0, 0), d=(1, 1), ceil_mode=False, count_include_pad=True):
    """(y, dx) in float64 for pooling kind "max" or "avg" of x (N, C, H, W), cotangent g."""
    s = k if s is None else s
    N, C, H, W = x.shape
    (oh, ow), windows = ref_windows(H, W, k, s, p, d, ceil_mode)
    y, dx = np.zeros((N, C, oh, ow)), np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for (i, j), taps in windows.items():
                real = [(h, w) for h, w, inside, _ in taps if inside]
                if kind == "max":
                    best = real[0]
                    for h, w in real:  # strictly greater: the first maximum; NaN beats numbers
                        v, m = x[n, c, h, w], x[n, c, best[0], best[1]]
                        if (v > m) or (np.isnan(v) and not np.isnan(m)):
                            best = (h, w)
                    y[n, c, i, j] = x[n, c, best[0], best[1]]
                    if g is not None:
                        dx[n, c, best[0], best[1]] += g[n, c, i, j]
                    continue
                divisor = sum(padded for *_, padded in taps) if count_include_pad else len(real)
                y[n, c, i, j] = sum(x[n, c, h, w] for h, w in real) / divisor
                for h, w in real:
                    if g is not None:
                        dx[n, c, h, w] += g[n, c, i, j] / divisor
    return y, dx


def ref_adaptive(x, g, out):
    N, C, H, W = x.shape
    y, dx = np.zeros((N, C) + out), np.zeros(x.shape)
    for i in range(out[0]):
        h0, h1 = (i * H) // out[0], -((-(i + 1) * H) // out[0])  # floor and ceil
        for j in range(out[1]):
            w0, w1 = (j * W) // out[1], -((-(j + 1) * W) // out[1])
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / ((h1 - h0) * (w1 - w0))
            dx[:, :, h0:h1, w0:w1] += g[:, :, i:i + 1, j:j + 1] / ((h1 - h0) * (w1 - w0))
    return y, dx


# ------------------------------------------------------------------------------ configurations

# (shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    ((2, 3, 8, 8), (2, 2), None, (0, 0), (1, 1), False),
    ((2, 2, 7, 9), (3, 3), (2, 2), (1, 1), (1, 1), False),
    ((2, 2, 7, 9), (3, 3), (2, 2), (1, 1), (1, 1), True),
    ((1, 2, 6, 5), (2, 3), (3, 2), (1, 0), (1, 1), True),
    ((1, 2, 9, 8), (3, 2), (1, 2), (1, 1), (2, 3), False),
    ((2, 1, 10, 7), (3, 3), (2, 3), (1, 1), (2, 1), True),
    ((1, 1, 5, 5), (5, 5), (1, 1), (2, 2), (1, 1), False),
    ((1, 2, 4, 4), (1, 1), (2, 2), (0, 0), (1, 1), True),
]
# (shape, kernel, stride, padding, ceil_mode, count_include_pad)
AVG_CASES = [
    ((2, 3, 8, 8), (2, 2), None, (0, 0), False, True),
    ((2, 2, 7, 9), (3, 3), (2, 2), (1, 1), False, True),
    ((2, 2, 7, 9), (3, 3), (2, 2), (1, 1), True, True),
    ((2, 2, 7, 9), (3, 3), (2, 2), (1, 1), True, False),
    ((1, 2, 6, 5), (2, 3), (3, 2), (1, 1), True, True),
    ((1, 2, 6, 5), (4, 3), (3, 1), (2, 0), True, False),
    ((2, 1, 5, 6), (3, 2), (1, 1), (1, 1), False, False),
]
ADAPTIVE_CASES = [((2, 3, 8, 8), (1, 1)), ((2, 2, 7, 9), (3, 4)), ((1, 2, 5, 6), (5, 6)),
                  ((1, 2, 5, 3), (7, 4)), ((2, 1, 10, 7), (3, 2))]


def _call(kind, x, case):
    if kind == "max":
        _, k, s, p, d, ceil = case
        return F.max_pool2d(x, k, s, p, d, ceil)
    _, k, s, p, ceil, include = case
    return F.avg_pool2d(x, k, s, p, ceil, include)


def _reference(kind, x, g, case):
    if kind == "max":
        _, k, s, p, d, ceil = case
        return ref_pool(x, g, "max", k, s, p, d, ceil)
    _, k, s, p, ceil, include = case
    return ref_pool(x, g, "avg", k, s, p, ceil_mode=ceil, count_include_pad=include)


WINDOW_CASES = [("max", c) for c in MAX_CASES] + [("avg", c) for c in AVG_CASES]
TOL = {np.float32: 2e-6, np.float64: 1e-12}


@pytest.mark.parametrize("kind, case", WINDOW_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_and_gradients_match_the_loop_nest(backend, rng, kind, case, dtype):
    x64 = rng.standard_normal(case[0])
    x = mg.tensor(x64, dtype=dtype, requires_grad=True)
    y = _call(kind, x, case)
    g = rng.standard_normal(y.shape)
    y.backward(mg.tensor(g, dtype=dtype))
    want_y, want_dx = _reference(kind, x.data.astype(np.float64), g.astype(dtype), case)
    assert y.dtype == dtype and x.grad.dtype == dtype
    np.testing.assert_allclose(y.data, want_y, rtol=0, atol=TOL[dtype] * 4)
    np.testing.assert_allclose(x.grad.data, want_dx, rtol=0, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("shape, out", ADAPTIVE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_values_and_gradients_match_the_loop_nest(backend, rng, shape, out, dtype):
    x = mg.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True)
    y = F.adaptive_avg_pool2d(x, out)
    g = rng.standard_normal(y.shape).astype(dtype)
    y.backward(mg.tensor(g, dtype=dtype))
    want_y, want_dx = ref_adaptive(x.data.astype(np.float64), g.astype(np.float64), out)
    np.testing.assert_allclose(y.data, want_y, rtol=0, atol=TOL[dtype] * 4)
    np.testing.assert_allclose(x.grad.data, want_dx, rtol=0, atol=TOL[dtype] * 10)


def _layout(data, layout):
    """The same values in another memory layout: transposed storage or every other column."""
    if layout == "T":
        return np.ascontiguousarray(data.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)
    if layout == "step":
        wide = np.zeros(data.shape[:-1] + (2 * data.shape[-1],))
        wide[..., ::2] = data
        return wide[..., ::2]
    return data


@pytest.mark.parametrize("layout", ["c", "T", "step"])
@pytest.mark.parametrize("kind, case", WINDOW_CASES)
def test_gradcheck_windowed(backend, rng, kind, case, layout):
    data = _layout(rng.standard_normal(case[0]), layout)
    x = mg.Tensor(data, requires_grad=True)
    assert mg.gradcheck(lambda t: _call(kind, t, case), x)


@pytest.mark.parametrize("layout", ["c", "T", "step"])
@pytest.mark.parametrize("shape, out", ADAPTIVE_CASES)
def test_gradcheck_adaptive(backend, rng, shape, out, layout):
    x = mg.Tensor(_layout(rng.standard_normal(shape), layout), requires_grad=True)
    assert mg.gradcheck(lambda t: F.adaptive_avg_pool2d(t, out), x)


# ------------------------------------------------------------------------ ties, NaN, -inf


def test_max_pool_ties_send_the_gradient_to_the_first_maximum(backend):
    """Equal values: the first maximal tap in row-major window order takes all the gradient."""
    x = mg.ones(1, 1, 3, 3, requires_grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()  # four windows, each led by its top-left tap
    np.testing.assert_array_equal(x.grad.data[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    x = mg.tensor([[[[1.0, 3.0], [3.0, 2.0]]]], requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.data[0, 0], [[0, 1], [0, 0]])


def test_max_pool_nan_wins_and_the_first_nan_takes_the_gradient(backend):
    x = mg.tensor([[[[1.0, np.nan, 5.0, np.nan], [7.0, 2.0, 0.0, 1.0]]]], requires_grad=True)
    y = F.max_pool2d(x, (2, 4))
    assert np.isnan(y.data).all() and y.shape == (1, 1, 1, 1)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data[0, 0], [[0, 1, 0, 0], [0, 0, 0, 0]])


def test_max_pool_of_minus_inf_picks_a_real_element_not_padding(backend):
    x = mg.full((1, 1, 2, 2), -np.inf, requires_grad=True)
    y = F.max_pool2d(x, 3, stride=1, padding=1)
    assert np.all(y.data == -np.inf)
    y.sum().backward()
    assert x.grad.data.sum() == 4  # every gradient landed on the input, none in the padding
    np.testing.assert_array_equal(x.grad.data[0, 0], [[4, 0], [0, 0]])


def test_avg_pool_ceil_mode_window_clipped_by_the_padded_end(backend):
    """PyTorch's divisor: the last ceil_mode window (rows 3..5 of a 4-row input padded by 1)
    counts only its part inside the padded input, rows 3 and 4: a divisor of 2 * 2, not 3 * 3."""
    x = mg.ones(1, 1, 4, 4)
    y = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)
    assert y.shape == (1, 1, 3, 3)
    assert y.data[0, 0, 2, 2] == 1 / 4  # one real element over the clipped window of 4
    assert y.data[0, 0, 0, 0] == pytest.approx(4 / 9)  # four real elements over 3 * 3
    y = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_array_equal(y.data, np.ones((1, 1, 3, 3)))


# ------------------------------------------------------------------------ shapes and layers


@pytest.mark.parametrize("fn", [lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
                                lambda t: F.avg_pool2d(t, 2, 1, 1, count_include_pad=False),
                                lambda t: F.adaptive_avg_pool2d(t, (2, None))])
def test_unbatched_input_is_a_batch_of_one(backend, rng, fn):
    data = rng.standard_normal((3, 6, 7))
    x3 = mg.tensor(data, dtype=np.float64, requires_grad=True)
    x4 = mg.tensor(data[None], dtype=np.float64, requires_grad=True)
    y3, y4 = fn(x3), fn(x4)
    np.testing.assert_array_equal(y3.data, y4.data[0])
    y3.sum().backward()
    y4.sum().backward()
    assert x3.grad.shape == (3, 6, 7)
    np.testing.assert_array_equal(x3.grad.data, x4.grad.data[0])


def test_layers_match_the_functions_and_say_their_configuration(backend, rng):
    x = mg.tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32))
    layer = nn.MaxPool2d(3, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(layer(x).data, F.max_pool2d(x, 3, 3, 1, 1, True).data)
    assert "ceil_mode=True" in repr(layer) and layer.stride == 3
    layer = nn.AvgPool2d((2, 3), stride=(1, 2), count_include_pad=False)
    np.testing.assert_array_equal(layer(x).data,
                                  F.avg_pool2d(x, (2, 3), (1, 2), 0, False, False).data)
    layer = nn.AdaptiveAvgPool2d((None, 1))
    assert layer(x).shape == (2, 3, 9, 1) and "output_size=(None, 1)" in repr(layer)
    assert nn.AdaptiveAvgPool2d(1)(x).shape == (2, 3, 1, 1)
    assert list(layer.parameters()) == []


def test_ceil_mode_keeps_one_partial_window_of_a_kernel_larger_than_the_input(backend):
    # 3x3 input, kernel 4, stride 4: floor mode has no window; ceil_mode has one, clipped to the
    # input, so max is the plane's maximum and the avg divisor is the 9 elements it covers
    x = mg.tensor(np.arange(18.0).reshape(1, 2, 3, 3), requires_grad=True)
    y = F.max_pool2d(x, 4, ceil_mode=True)
    np.testing.assert_array_equal(y.numpy(), [[[[8.0]], [[17.0]]]])
    a = F.avg_pool2d(x, 4, ceil_mode=True)
    np.testing.assert_allclose(a.numpy(), [[[[4.0]], [[13.0]]]], rtol=1e-12)
    assert mg.gradcheck(lambda t: F.avg_pool2d(t, 4, ceil_mode=True), x)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.max_pool2d(x, 4)


# ------------------------------------------------------------------------------- errors

X4 = np.zeros((1, 2, 5, 5), np.float32)
ERRORS = [
    ("2-D input", lambda: F.max_pool2d(np.zeros((5, 5)), 2), ValueError, "got 2-D input"),
    ("5-D input", lambda: F.avg_pool2d(np.zeros((1, 1, 1, 5, 5)), 2), ValueError, "4-D"),
    ("empty plane", lambda: F.max_pool2d(np.zeros((1, 2, 0, 5)), 2), ValueError, "H and W > 0"),
    ("int input", lambda: F.max_pool2d(np.zeros((1, 1, 4, 4), np.int64), 2), TypeError,
     "floating-point"),
    ("kernel too big", lambda: F.max_pool2d(X4, 6), ValueError,
     r"larger than the padded input \(5 \+ 2 \* 0 = 5\) along H; expected an input of at "
     "least 6, got 5"),
    ("dilated kernel too big", lambda: F.max_pool2d(X4, 3, dilation=3), ValueError,
     r"kernel \(7 with dilation\)"),
    ("avg kernel too big", lambda: F.avg_pool2d(X4, (2, 8), padding=1), ValueError, "along W"),
    ("zero stride", lambda: F.max_pool2d(X4, 2, stride=0), ValueError, "stride must be >= 1"),
    ("negative padding", lambda: F.avg_pool2d(X4, 2, padding=-1), ValueError,
     "padding must be >= 0"),
    ("zero dilation", lambda: F.max_pool2d(X4, 2, dilation=(1, 0)), ValueError,
     "dilation must be >= 1"),
    ("zero kernel", lambda: F.max_pool2d(X4, 0), ValueError, "kernel_size must be >= 1"),
    ("padding over half", lambda: F.max_pool2d(X4, 3, padding=2), ValueError,
     r"at most half the kernel size, got padding \(2, 2\) for kernel_size \(3, 3\)"),
    ("padding over half in w", lambda: F.avg_pool2d(X4, (4, 2), padding=(2, 2)), ValueError,
     "at most half"),
    ("float kernel", lambda: F.max_pool2d(X4, 2.0), TypeError, "int or a pair of ints"),
    ("three kernel sizes", lambda: F.max_pool2d(X4, (2, 2, 2)), TypeError, "pair of ints"),
    ("bool stride", lambda: F.max_pool2d(X4, 2, stride=True), TypeError, "pair of ints"),
    ("string ceil_mode", lambda: F.max_pool2d(X4, 2, ceil_mode="no"), TypeError,
     "ceil_mode must be a bool"),
    ("string count_include_pad", lambda: F.avg_pool2d(X4, 2, count_include_pad="no"),
     TypeError, "count_include_pad must be a bool"),
    ("adaptive zero", lambda: F.adaptive_avg_pool2d(X4, 0), ValueError, "output_size must be >="),
    ("adaptive None", lambda: F.adaptive_avg_pool2d(X4, None), TypeError, "got None"),
    ("adaptive triple", lambda: F.adaptive_avg_pool2d(X4, (1, 2, 3)), TypeError, "pair"),
    ("adaptive 2-D", lambda: F.adaptive_avg_pool2d(np.zeros((4, 4)), 1), ValueError, "3-D"),
    ("layer padding", lambda: nn.MaxPool2d(2, padding=2), ValueError, "MaxPool2d: padding"),
    ("layer stride", lambda: nn.AvgPool2d(2, stride=0), ValueError, "AvgPool2d: stride"),
    ("layer ceil_mode", lambda: nn.MaxPool2d(2, ceil_mode=1), TypeError, "ceil_mode"),
    ("layer output_size", lambda: nn.AdaptiveAvgPool2d((0, 2)), ValueError, "output_size"),
]


@pytest.mark.parametrize("name, call, exc, match", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_arguments_name_expected_and_got(backend, name, call, exc, match):
    with pytest.raises(exc, match=match):
        call()
