"""conv1d, conv2d, pad and the Conv layers: gradcheck, values and gradients against a direct
loop nest in float64, PyTorch's shapes and initialisation, bad arguments, and memory."""

from __future__ import annotations

import gc
import math
import tracemalloc

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim

# ------------------------------------------------------------------ the float64 reference


def reference_conv2d(x, w, b, stride, padding, dilation, groups):
    """Direct loop nest over output positions and taps; padding is (top, bottom, left, right).

    Returns y and a function of dy giving (dx, dw, db) by the same loops, read backwards.
    """
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (top, bottom, left, right), (dh, dw) = stride, padding, dilation
    xp = np.zeros((N, C, H + top + bottom, W + left + right))
    xp[:, :, top:top + H, left:left + W] = x
    Ho = (H + top + bottom - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + left + right - dw * (kw - 1) - 1) // sw + 1
    Og = O // groups
    y = np.zeros((N, O, Ho, Wo))
    for o in range(O):
        g = o // Og
        for c in range(Cg):
            for i in range(kh):
                for j in range(kw):
                    for p in range(Ho):
                        for q in range(Wo):
                            y[:, o, p, q] += w[o, c, i, j] * xp[:, g * Cg + c, p * sh + i * dh,
                                                               q * sw + j * dw]
        if b is not None:
            y[:, o] += b[o]

    def grads(dy):
        dxp, dw_ = np.zeros_like(xp), np.zeros(w.shape)
        for o in range(O):
            g = o // Og
            for c in range(Cg):
                for i in range(kh):
                    for j in range(kw):
                        for p in range(Ho):
                            for q in range(Wo):
                                r, s = p * sh + i * dh, q * sw + j * dw
                                dxp[:, g * Cg + c, r, s] += w[o, c, i, j] * dy[:, o, p, q]
                                dw_[o, c, i, j] += np.dot(dy[:, o, p, q], xp[:, g * Cg + c, r, s])
        return dxp[:, :, top:top + H, left:left + W], dw_, dy.sum(axis=(0, 2, 3))

    return y, grads


# (x shape, weight shape, bias, kwargs, reference stride, padding, dilation, groups)
CASES = [
    ((2, 3, 6, 5), (4, 3, 3, 3), True, {}, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 3, 6, 5), (4, 3, 3, 2), False, {"padding": 1}, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 2, 7, 7), (3, 2, 3, 3), True, {"stride": 2, "padding": (2, 1)}, (2, 2),
     (2, 2, 1, 1), (1, 1), 1),
    ((1, 2, 8, 7), (2, 2, 3, 2), True, {"stride": (3, 2), "dilation": (2, 3), "padding": 1},
     (3, 2), (1, 1, 1, 1), (2, 3), 1),
    ((2, 4, 5, 6), (6, 2, 3, 3), True, {"groups": 2, "padding": "same"}, (1, 1),
     (1, 1, 1, 1), (1, 1), 2),
    ((2, 4, 5, 6), (4, 1, 3, 3), False, {"groups": 4, "padding": 1}, (1, 1), (1, 1, 1, 1),
     (1, 1), 4),  # depthwise
    ((2, 2, 6, 6), (3, 2, 2, 4), True, {"padding": "same", "dilation": (1, 2)}, (1, 1),
     (0, 1, 3, 3), (1, 2), 1),  # even kernel: the extra row goes after, as in PyTorch
    ((2, 3, 5, 4), (2, 3, 5, 4), True, {"padding": "valid"}, (1, 1), (0, 0, 0, 0), (1, 1),
     1),  # kernel as large as the input: a 1x1 output
]
IDS = ["plain", "pad1-nobias", "stride2", "stride-dilation", "groups-same", "depthwise",
       "same-even", "full-kernel"]


def T(a, grad=False):
    """A float64 tensor over ``a`` itself (memory layout kept)."""
    return mg.Tensor(a, dtype=np.float64, requires_grad=grad)


def _tensors(rng, xs, ws, bias, layout="c"):
    x = rng.standard_normal(xs)
    if layout == "T":  # same values, reversed memory order
        x = np.ascontiguousarray(x.T).T
    elif layout == "step":
        big = np.zeros(xs[:-1] + (2 * xs[-1],))
        big[..., ::2] = x
        x = big[..., ::2]
    w, b = rng.standard_normal(ws), rng.standard_normal(ws[0]) if bias else None
    return x, w, b


@pytest.mark.parametrize("xs, ws, bias, kwargs, stride, padding, dilation, groups", CASES,
                         ids=IDS)
def test_conv2d_matches_the_loop_nest(backend, rng, xs, ws, bias, kwargs, stride, padding,
                                      dilation, groups):
    x, w, b = _tensors(rng, xs, ws, bias)
    tx, tw = T(x, True), T(w, True)
    tb = None if b is None else T(b, True)
    y = F.conv2d(tx, tw, tb, **kwargs)
    expected, grads = reference_conv2d(x, w, b, stride, padding, dilation, groups)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(expected.shape)
    (y * T(dy)).sum().backward()
    dx, dw, db = grads(dy)
    np.testing.assert_allclose(tx.grad.numpy(), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tw.grad.numpy(), dw, rtol=1e-12, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(tb.grad.numpy(), db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["c", "T", "step"])
@pytest.mark.parametrize("xs, ws, bias, kwargs, stride, padding, dilation, groups", CASES,
                         ids=IDS)
def test_conv2d_gradcheck(backend, rng, layout, xs, ws, bias, kwargs, stride, padding,
                          dilation, groups):
    x, w, b = _tensors(rng, xs, ws, bias, layout)
    inputs = [T(a, True) for a in (x, w, b) if a is not None]
    assert mg.gradcheck(lambda *t: F.conv2d(*t, **kwargs), *inputs)


@pytest.mark.parametrize("kwargs", [{}, {"stride": 2, "padding": 2}, {"dilation": 2},
                                    {"padding": "same", "dilation": 2}, {"groups": 2}])
def test_conv1d_matches_conv2d_at_unit_height_and_gradchecks(backend, rng, kwargs):
    x, w, b = rng.standard_normal((2, 4, 9)), rng.standard_normal((6, 4 // kwargs.get(
        "groups", 1), 3)), rng.standard_normal(6)
    y = F.conv1d(T(x), T(w), T(b), **kwargs)
    s, d, p = kwargs.get("stride", 1), kwargs.get("dilation", 1), kwargs.get("padding", 0)
    p = d if p == "same" else p
    expected, _ = reference_conv2d(x[:, :, None], w[:, :, None], b, (1, s), (0, 0, p, p),
                                   (1, d), kwargs.get("groups", 1))
    assert y.shape == expected.shape[:2] + expected.shape[3:]
    np.testing.assert_allclose(y.numpy(), expected[:, :, 0], rtol=1e-12, atol=1e-12)
    inputs = [T(a, True) for a in (x, w, b)]
    assert mg.gradcheck(lambda *t: F.conv1d(*t, **kwargs), *inputs)


def test_only_the_gradients_asked_for_are_computed(backend, rng):
    x = T(rng.standard_normal((2, 3, 5, 5)))  # no grad: the input of a first layer
    w = T(rng.standard_normal((4, 3, 3, 3)), True)
    b = T(rng.standard_normal(4))
    F.conv2d(x, w, b).sum().backward()
    assert x.grad is None and b.grad is None
    _, grads = reference_conv2d(x.numpy(), w.numpy(), b.numpy(), (1, 1), (0,) * 4, (1, 1), 1)
    np.testing.assert_allclose(w.grad.numpy(), grads(np.ones((2, 4, 3, 3)))[1], rtol=1e-12)


# ------------------------------------------------------------------------------------- pad


@pytest.mark.parametrize("pad, value", [((1, 2), 0.0), ((1, 0, 2, 3), 1.5),
                                        ((0, 0, 0, 0, 1, 1), -2.0), ((-1, 2, 1, -2), 0.0),
                                        ((5, -5), 0.5), ((-5, 1), 2.0), ((-2, -2, 3, -4), 0.0)])
def test_pad_matches_numpy_and_gradchecks(backend, rng, pad, value):
    x = rng.standard_normal((2, 3, 4, 5))
    y = F.pad(T(x), pad, value=value)
    widths = [(0, 0)] * (4 - len(pad) // 2) + [(pad[k], pad[k + 1]) for k in
                                               range(len(pad) - 2, -1, -2)]
    crop = tuple(slice(max(-a, 0), n - max(-b, 0))
                 for (a, b), n in zip(widths, x.shape, strict=True))
    expected = np.pad(x[crop], [(max(a, 0), max(b, 0)) for a, b in widths],
                      constant_values=value)
    np.testing.assert_array_equal(y.numpy(), expected)
    assert mg.gradcheck(lambda t: F.pad(t, pad, value=value),
                        T(x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2), True))


def test_pad_is_differentiable_through_a_conv(backend, rng):
    x = T(rng.standard_normal((1, 2, 4, 4)), True)
    w = T(rng.standard_normal((3, 2, 3, 3)), True)
    explicit = F.conv2d(F.pad(x, (1, 1, 1, 1)), w)
    np.testing.assert_allclose(explicit.numpy(), F.conv2d(x, w, padding=1).numpy(), atol=1e-12)
    assert mg.gradcheck(lambda a, b: F.conv2d(F.pad(a, (2, 0, 1, 1)), b), x, w)


def border_reference(x, pad, mode):
    """Each padded dim of x, one at a time, by numpy.pad's own modes (symmetric about the
    edge element is numpy's "reflect", edge repeat "edge", wrap-around "wrap"). Negative
    widths crop: after padding for reflect and replicate (the border mirrors the whole input),
    before it for circular (which wraps what is left, PyTorch's order)."""
    numpy_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    for k in range(len(pad) // 2):
        axis = x.ndim - 1 - k
        before, after = pad[2 * k], pad[2 * k + 1]
        grow = [(0, 0)] * x.ndim
        grow[axis] = (max(before, 0), max(after, 0))

        def crop(a, axis=axis, before=before, after=after):
            index = [slice(None)] * a.ndim
            index[axis] = slice(max(-before, 0), a.shape[axis] - max(-after, 0))
            return a[tuple(index)]

        if mode == "circular":
            x = np.pad(crop(x), grow, mode=numpy_mode)
        else:
            x = crop(np.pad(x, grow, mode=numpy_mode))
    return x


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape, pad", [((2, 3, 5), (2, 4)), ((2, 3, 4, 5), (1, 3, 2, 0)),
                                        ((3, 4, 5), (3, 1, 0, 2)), ((2, 3, 5), (-1, 2)),
                                        ((2, 3, 6), (2, -3)), ((2, 3, 5), (-4, 1)),
                                        ((1, 2, 3, 4, 3), (1, 1, 2, 0, 1, 2))])
def test_border_pad_matches_numpy_and_gradchecks(backend, rng, mode, shape, pad):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(F.pad(T(x), pad, mode=mode).numpy(),
                                  border_reference(x, pad, mode))
    strided = T(np.swapaxes(np.swapaxes(x, -1, -2).copy(), -1, -2), True)
    assert mg.gradcheck(lambda t: F.pad(t, pad, mode=mode), strided)


def test_border_pad_gradient_counts_every_copy(backend):
    # reflect (2, 2) of [a b c]: c b | a b c | b a; each output gradient 1 lands on its source
    x = T(np.array([[1.0, 2.0, 3.0]]), True)
    F.pad(x, (2, 2), mode="reflect").sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 3.0, 2.0]])


def test_conv_takes_an_unbatched_sample(backend, rng):
    x = rng.standard_normal((3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    one = F.conv2d(T(x), T(w), padding=1, stride=(1, 2))
    batched = F.conv2d(T(x[None]), T(w), padding=1, stride=(1, 2))
    assert one.shape == batched.shape[1:]
    np.testing.assert_array_equal(one.numpy(), batched.numpy()[0])
    assert mg.gradcheck(lambda a, b: F.conv1d(a, b, padding=1), T(x[:, 0], True),
                        T(w[:, :, 0], True))
    assert nn.Conv2d(3, 4, 3)(mg.tensor(x.astype(np.float32))).shape == (4, 4, 3)


# ---------------------------------------------------------------------------------- layers


@pytest.mark.parametrize("layer, shape, expected", [
    (lambda: nn.Conv2d(1, 16, 3, padding=1), (4, 1, 8, 8), (4, 16, 8, 8)),
    (lambda: nn.Conv2d(3, 8, (3, 5), stride=2), (2, 3, 11, 12), (2, 8, 5, 4)),
    (lambda: nn.Conv2d(4, 4, 3, dilation=2, groups=4, bias=False), (1, 4, 9, 9), (1, 4, 5, 5)),
    (lambda: nn.Conv2d(2, 6, 4, padding="same"), (1, 2, 7, 5), (1, 6, 7, 5)),
    (lambda: nn.Conv1d(3, 5, 3, stride=2, padding=1), (2, 3, 10), (2, 5, 5)),
])
def test_layers_give_pytorch_output_shapes(backend, layer, shape, expected):
    mg.manual_seed(0)
    y = layer()(mg.randn(*shape))
    assert y.shape == expected and y.dtype == np.float32


def test_default_init_is_pytorchs():
    mg.manual_seed(0)
    conv = nn.Conv2d(8, 32, 3, groups=2)
    bound = 1 / math.sqrt(4 * 9)  # fan_in = in_channels / groups * kh * kw
    assert conv.weight.shape == (32, 4, 3, 3) and conv.bias.shape == (32,)
    for p in (conv.weight, conv.bias):
        values = p.numpy()
        assert values.min() >= -bound and values.max() <= bound
        assert values.max() > 0.8 * bound and values.min() < -0.8 * bound  # uniform, not tiny


def test_extra_repr_is_pytorchs():
    assert repr(nn.Conv2d(1, 16, 3, padding=1)) == \
        "Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    assert repr(nn.Conv2d(16, 32, (3, 1), stride=2, dilation=(2, 1), groups=16, bias=False)) \
        == ("Conv2d(16, 32, kernel_size=(3, 1), stride=(2, 2), dilation=(2, 1), groups=16, "
            "bias=False)")
    assert repr(nn.Conv1d(3, 4, 5, padding="same")) == \
        "Conv1d(3, 4, kernel_size=(5,), stride=(1,), padding=same)"


def test_a_conv_layer_trains_in_float64_after_double(backend, rng):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 2)).double()
    x = T(rng.standard_normal((8, 1, 6, 6)))
    target = mg.tensor((rng.standard_normal(8) > 0).astype(np.int64))
    opt = optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call, error, message", [
    (lambda x, w: F.conv2d(x, w[:, :2]), ValueError,
     r"expected input with 2 channels .* got 3 channels"),
    (lambda x, w: nn.Conv2d(4, 4, 3)(x), ValueError, r"expected input with 4 channels"),
    (lambda x, w: F.conv2d(x, w, groups=2), ValueError, r"out_channels 5 is not divisible"),
    (lambda x, w: F.conv2d(x, w[:4, :1], groups=2), ValueError,
     r"expected input with 2 channels .* got 3"),
    (lambda x, w: nn.Conv2d(3, 4, 3, groups=2), ValueError, r"divisible by groups=2"),
    (lambda x, w: F.conv2d(x, w, dilation=4), ValueError,
     r"kernel \(dilated size \(9, 9\)\) is larger than the padded input \(6, 7\)"),
    (lambda x, w: F.conv2d(x[:, :, :2], w, padding=(0, 1)), ValueError,
     r"larger than the padded input \(2, 9\)"),
    (lambda x, w: F.conv2d(x, w, stride=0), ValueError, r"stride must be >= 1"),
    (lambda x, w: F.conv2d(x, w, stride=2**31), ValueError,
     r"stride must hold ints in \[1, 2\*\*31 - 1\]"),
    (lambda x, w: F.conv2d(x, w, padding=(2**62, 0)), ValueError,
     r"padding must hold ints in \[0, 2\*\*31 - 1\]"),
    (lambda x, w: F.conv2d(x, w, stride=1.0), TypeError, r"stride must be an int"),
    (lambda x, w: F.conv2d(x, w, stride=(1, 2, 3)), TypeError, r"tuple of 2 ints"),
    (lambda x, w: F.conv2d(x, w, stride=(1, True)), TypeError, r"tuple of 2 ints"),
    (lambda x, w: F.conv2d(x, w, stride=True), TypeError, r"stride must be an int"),
    (lambda x, w: F.conv2d(x, w, padding=(1, -1)), ValueError, r"padding must be >= 0"),
    (lambda x, w: F.conv2d(x, w, dilation=(1, 0)), ValueError, r"dilation must be >= 1"),
    (lambda x, w: F.conv2d(x, w, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda x, w: F.conv2d(x, w, padding="full"), ValueError, r"'same' or 'valid'"),
    (lambda x, w: F.conv2d(x, w, stride=2, padding="same"), ValueError, r"needs stride 1"),
    (lambda x, w: F.conv2d(x, w, dilation=0), ValueError, r"dilation must be >= 1"),
    (lambda x, w: F.conv2d(x, w, groups=0), ValueError, r"groups must be a positive int"),
    (lambda x, w: F.conv2d(x[0, 0], w), ValueError, r"expected input \(N, C, H, W\) or "),
    (lambda x, w: F.conv2d(x, w, mg.zeros(4)), ValueError, r"bias must have shape \(5,\)"),
    (lambda x, w: F.conv2d(x.double(), w), TypeError,
     r"input dtype float64 does not match the parameter dtype float32"),
    (lambda x, w: nn.Conv2d(3, 2, 3)(x.double()), TypeError,
     r"input dtype float64 does not match the parameter dtype float32"),
    (lambda x, w: F.conv2d(mg.tensor(np.ones((2, 3, 6, 7), np.int64)), w), TypeError,
     r"floating-point input"),
    (lambda x, w: F.conv1d(x, w), ValueError, r"weight must be \(out_channels"),
    (lambda x, w: F.pad(x, (1,)), ValueError, r"even number of ints"),
    (lambda x, w: F.pad(x, (1, 1), mode="wrap"), ValueError, r"mode must be one of"),
    (lambda x, w: F.pad(x, (1, 1, 1, 1), mode="reflect", value=0), ValueError, r"takes no value"),
    (lambda x, w: F.pad(x, (7, 0, 0, 0), mode="reflect"), ValueError,
     r"less than the size .* got \(7, 0\) for dim 3 of size 7"),
    (lambda x, w: F.pad(x, (0, 0, 0, 7), mode="circular"), ValueError,
     r"at most the size .* got \(0, 7\) for dim 2 of size 6"),
    (lambda x, w: F.pad(x, (4, -4, 0, 0), mode="circular"), ValueError,
     r"at most the size .* got \(4, -4\) for dim 3 of size 3"),
    (lambda x, w: F.pad(x, (1,) * 8, mode="replicate"), ValueError, r"last 1, 2 or 3 dims"),
    (lambda x, w: F.pad(x[0, 0, 0], (1, 1), mode="reflect"), ValueError, r"1 or 2 more dims"),
    (lambda x, w: F.pad(x, (-4, -4)), ValueError, r"crop 8 values from dim 3 of size 7"),
    (lambda x, w: F.pad(x, (8, -8)), ValueError, r"crop 8 values from dim 3 of size 7"),
    (lambda x, w: F.pad(x, (0, 0, -7, 3)), ValueError, r"crop 7 values from dim 2 of size 6"),
    (lambda x, w: F.pad(x, (1, 1), value="0"), TypeError, r"value must be a real number"),
    (lambda x, w: F.pad(mg.tensor([1, 2]), (1, 1), value=2.5), ValueError,
     r"value 2.5 cannot be stored in an input of dtype int64"),
    (lambda x, w: nn.Conv2d(3, 4, 3, padding_mode="circular"), ValueError, r"'zeros'"),
    (lambda x, w: nn.Conv2d(3, 0, 3), ValueError, r"out_channels must be a positive int"),
])
def test_bad_arguments_name_expected_and_got(backend, call, error, message):
    x = mg.randn(2, 3, 6, 7)
    w = mg.randn(5, 3, 3, 3)
    with pytest.raises(error, match=message):
        call(x, w)


def test_numpy_integer_arguments_act_as_python_ints(backend):
    x, w = mg.randn(2, 3, 6, 7), mg.randn(5, 3, 3, 3)
    given = F.conv2d(x, w, stride=(np.int64(2), 1), padding=np.int32(1), dilation=(1, 1))
    expected = F.conv2d(x, w, stride=(2, 1), padding=1, dilation=1)
    np.testing.assert_array_equal(given.numpy(), expected.numpy())


# ---------------------------------------------------------------------------------- memory


def test_conv_training_does_not_grow_memory(backend):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    opt = optim.SGD(model.parameters(), lr=0.01)
    x, target = mg.randn(8, 1, 6, 6), mg.tensor(np.arange(8) % 3)

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            F.cross_entropy(model(x), target).backward()
            opt.step()

    tracemalloc.start()
    try:
        steps(50)  # warm-up
        growth = []
        for _ in range(2):  # two windows: a leak grows both, a one-off allocation only one
            gc.collect()
            before, _ = tracemalloc.get_traced_memory()
            steps(250)
            gc.collect()
            growth.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
    # a leaked im2col buffer or graph per step would be 250 x (several KB) in each window (a
    # one-off, such as an interpreter table growing once, shows in one window and not the other)
    assert min(growth) < 64 * 1024, growth
