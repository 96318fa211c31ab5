"""GroupNorm, InstanceNorm1d/2d and RMSNorm: gradients, values, PyTorch parity, accuracy, errors."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn


def leaf(data):
    """A float64 leaf that keeps ``data``'s memory layout (strides included)."""
    return mg.Tensor(np.asarray(data, dtype=np.float64), requires_grad=True)


def layout(rng, shape, kind):
    if kind == "T":  # reversed strides
        return rng.standard_normal(shape[::-1]).T
    if kind == "step":  # every other element along the last axis
        return rng.standard_normal(shape[:-1] + (shape[-1] * 2,))[..., ::2]
    return rng.standard_normal(shape)


def group_norm_reference(x, groups, gamma=None, beta=None, eps=1e-5):
    """Independent float64 formula: statistics per (sample, group) over channels and space."""
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, -1).astype(np.float64)
    x_hat = ((xg - xg.mean(2, keepdims=True)) / np.sqrt(xg.var(2, keepdims=True) + eps))
    y = x_hat.reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if gamma is not None:
        y = y * gamma.reshape(per_channel) + beta.reshape(per_channel)
    return y


def rms_norm_reference(x, k, weight=None, eps=1e-6):
    axes = tuple(range(x.ndim - k, x.ndim))
    y = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=axes, keepdims=True) + eps)
    return y if weight is None else y * weight


GN_CASES = [((4, 6), 3), ((3, 6, 5), 2), ((2, 4, 3, 5), 4), ((2, 4, 3, 5), 1), ((1, 6, 2, 3), 3)]
LAYOUTS = ["c", "T", "step"]


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("shape, groups", GN_CASES)
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("fused", [True, False])
def test_group_norm_gradcheck(backend, rng, shape, groups, kind, fused):
    x = leaf(layout(rng, shape, kind))
    gamma, beta = leaf(rng.standard_normal(shape[1]) + 1), leaf(rng.standard_normal(shape[1]))
    assert mg.gradcheck(lambda a, g, b: F.group_norm(a, groups, g, b, fused=fused),
                        x, gamma, beta)
    assert mg.gradcheck(lambda a: F.group_norm(a, groups, fused=fused), x)


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 3), (1, 2, 3)])
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("fused", [True, False])
def test_instance_norm_gradcheck(backend, rng, shape, kind, fused):
    x = leaf(layout(rng, shape, kind))
    gamma, beta = leaf(rng.standard_normal(shape[1]) + 1), leaf(rng.standard_normal(shape[1]))
    assert mg.gradcheck(lambda a, g, b: F.instance_norm(a, weight=g, bias=b, fused=fused),
                        x, gamma, beta)
    assert mg.gradcheck(lambda a: F.instance_norm(a, fused=fused), x)


@pytest.mark.parametrize("shape, normalized", [((5, 7), (7,)), ((2, 3, 4), (3, 4)),
                                               ((2, 3, 4), (4,)), ((6,), (6,))])
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("fused", [True, False])
def test_rms_norm_gradcheck(backend, rng, shape, normalized, kind, fused):
    x = leaf(layout(rng, shape, kind))
    weight = leaf(rng.standard_normal(normalized))
    assert mg.gradcheck(lambda a, w: F.rms_norm(a, normalized, w, eps=1e-5, fused=fused),
                        x, weight)
    assert mg.gradcheck(lambda a: F.rms_norm(a, normalized, fused=fused), x)


# ----------------------------------------------------------------------------- values


def _run(fn, x, params, fused):
    """Output and gradients (x, then params) for a fixed cotangent, in float64."""
    xt = mg.tensor(x, dtype=np.float64, requires_grad=True)
    ps = [mg.tensor(p, dtype=np.float64, requires_grad=True) for p in params]
    y = fn(xt, *ps, fused=fused)
    (y * mg.tensor(np.cos(np.arange(y.size)).reshape(y.shape))).sum().backward()
    return [y.numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in ps]


FUNCTIONS = [
    ("group_norm", lambda x, g, b, fused: F.group_norm(x, 2, g, b, fused=fused), (3, 4, 5, 2)),
    ("instance_norm", lambda x, g, b, fused: F.instance_norm(x, weight=g, bias=b, fused=fused),
     (3, 4, 6)),
    ("rms_norm", lambda x, w, fused: F.rms_norm(x, (5, 2), w, fused=fused), (3, 4, 5, 2)),
]


@pytest.mark.parametrize("name, fn, shape", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_fused_equals_composite(backend, rng, name, fn, shape):
    x = rng.standard_normal(shape) * 2 + 1
    params = ([rng.standard_normal((5, 2))] if name == "rms_norm"
              else [rng.standard_normal(4), rng.standard_normal(4)])
    fused, composite = _run(fn, x, params, True), _run(fn, x, params, False)
    for a, b in zip(fused, composite, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_values_match_the_float64_formulas(backend, rng, fused):
    x = rng.standard_normal((3, 6, 4, 5)) * 3 + 2
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    t = mg.tensor(x, dtype=np.float64)
    p = [mg.tensor(v, dtype=np.float64) for v in (gamma, beta)]
    np.testing.assert_allclose(F.group_norm(t, 3, *p, eps=1e-3, fused=fused).numpy(),
                               group_norm_reference(x, 3, gamma, beta, 1e-3), rtol=1e-12)
    np.testing.assert_allclose(F.instance_norm(t, weight=p[0], bias=p[1], fused=fused).numpy(),
                               group_norm_reference(x, 6, gamma, beta), rtol=1e-12)
    weight = rng.standard_normal((4, 5))
    np.testing.assert_allclose(
        F.rms_norm(t, (4, 5), mg.tensor(weight, dtype=np.float64), fused=fused).numpy(),
        rms_norm_reference(x, 2, weight, np.finfo(np.float64).eps), rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_rms_norm_eps_none_is_the_dtype_epsilon(backend, rng, fused):
    """Tiny inputs, where eps matters: float32 uses float32's epsilon, not float64's."""
    x = (rng.standard_normal((4, 8)) * 1e-4).astype(np.float32)
    got = F.rms_norm(mg.tensor(x), 8, fused=fused).numpy()
    expected = rms_norm_reference(x.astype(np.float64), 1, eps=float(np.finfo(np.float32).eps))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not np.allclose(expected, rms_norm_reference(x.astype(np.float64), 1, eps=2.2e-16),
                           rtol=1e-3)


def test_group_norm_is_layer_norm_over_channels_and_space_with_one_group(backend, rng):
    x = mg.tensor(rng.standard_normal((3, 4, 5)), dtype=np.float64)
    np.testing.assert_allclose(F.group_norm(x, 1).numpy(), F.layer_norm(x, (4, 5)).numpy(),
                               rtol=1e-12)


def test_layers_are_the_same_in_train_and_eval_and_at_batch_size_one(backend, rng):
    x = rng.standard_normal((4, 6, 5, 3)).astype(np.float32)
    for layer in (nn.GroupNorm(3, 6), nn.InstanceNorm2d(6, affine=True), nn.RMSNorm((5, 3))):
        train = layer(mg.tensor(x)).numpy()
        layer.eval()
        np.testing.assert_array_equal(layer(mg.tensor(x)).numpy(), train)
        # each sample is normalized on its own: a batch of one gives that sample's rows
        np.testing.assert_allclose(layer(mg.tensor(x[2:3])).numpy(), train[2:3], rtol=1e-6)


def test_instance_norm_unbatched_input_is_a_batch_of_one(backend, rng):
    x = rng.standard_normal((3, 7)).astype(np.float32)
    layer = nn.InstanceNorm1d(3, affine=True)
    np.testing.assert_allclose(layer(mg.tensor(x)).numpy(), layer(mg.tensor(x[None])).numpy()[0],
                               rtol=1e-6)
    assert layer(mg.tensor(x)).shape == (3, 7)


# ----------------------------------------------------------------------------- accuracy


def _float32_errors(call, x32, cotangent, fused):
    """Max errors of a float32 forward and backward relative to float64, scaled by the max."""
    results = []
    for dtype in (np.float32, np.float64):
        t = mg.tensor(x32, dtype=dtype, requires_grad=True)
        y = call(t, fused)
        (y * mg.tensor(cotangent, dtype=dtype)).sum().backward()
        results.append((y.numpy().astype(np.float64), t.grad.numpy().astype(np.float64)))
    (y32, g32), (y64, g64) = results
    return (np.abs(y32 - y64).max() / np.abs(y64).max(),
            np.abs(g32 - g64).max() / np.abs(g64).max())


@pytest.mark.parametrize("name, shape", [("group_norm", (8, 8, 16, 16)),
                                         ("instance_norm", (8, 8, 256)),
                                         ("rms_norm", (64, 256))])
def test_float32_mean_1e4_times_the_spread_stays_accurate(backend, rng, name, shape):
    """The fused float32 paths are as accurate as float32 allows (a few ulp) when the data
    sit far from zero; centring in float32 (the composite) loses about 1e4 ulp."""
    x32 = (1e4 + rng.standard_normal(shape)).astype(np.float32)
    cotangent = rng.standard_normal(shape)
    call = {"group_norm": lambda t, fused: F.group_norm(t, 4, fused=fused),
            "instance_norm": lambda t, fused: F.instance_norm(t, fused=fused),
            "rms_norm": lambda t, fused: F.rms_norm(t, shape[-1], eps=1e-6, fused=fused)}[name]
    y_error, grad_error = _float32_errors(call, x32, cotangent, fused=True)
    assert y_error < 1e-6 and grad_error < 1e-6, (y_error, grad_error)
    if name != "rms_norm":  # the check has teeth: the same data through the composite
        assert max(_float32_errors(call, x32, cotangent, fused=False)) > 1e-5


# ----------------------------------------------------------------------------- PyTorch


def _compare_with_torch(torch, ours, theirs, x, atol):
    xt = mg.tensor(x, dtype=x.dtype, requires_grad=True)
    tt = torch.tensor(x, requires_grad=True)
    cotangent = np.cos(np.arange(x.size)).reshape(x.shape).astype(x.dtype)
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        for p in list(ours.parameters()) + [xt]:
            p.grad = None
        for p in list(theirs.parameters()) + [tt]:
            p.grad = None
        y, yt = ours(xt), theirs(tt)
        (y * mg.tensor(cotangent, dtype=x.dtype)).sum().backward()
        yt.backward(torch.tensor(cotangent))
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=atol, err_msg=mode)
        np.testing.assert_allclose(xt.grad.numpy(), tt.grad.numpy(), atol=atol, err_msg=mode)
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=atol * 10,
                                       err_msg=f"{mode} {name}")


def _layers(torch, name, dtype):
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    pairs = {
        "group": (nn.GroupNorm(3, 6, eps=1e-3, dtype=dtype), torch.nn.GroupNorm(3, 6, eps=1e-3)),
        "group-plain": (nn.GroupNorm(2, 6, affine=False, dtype=dtype),
                        torch.nn.GroupNorm(2, 6, affine=False)),
        "instance1d": (nn.InstanceNorm1d(6, affine=True, dtype=dtype),
                       torch.nn.InstanceNorm1d(6, affine=True)),
        "instance2d": (nn.InstanceNorm2d(6, dtype=dtype), torch.nn.InstanceNorm2d(6)),
        "rms": (nn.RMSNorm((4, 5), dtype=dtype), torch.nn.RMSNorm((4, 5))),
        "rms-eps": (nn.RMSNorm(5, eps=1e-2, elementwise_affine=False, dtype=dtype),
                    torch.nn.RMSNorm(5, eps=1e-2, elementwise_affine=False)),
    }
    ours, theirs = pairs[name]
    theirs = theirs.to(tdtype)
    rng = np.random.default_rng(5)
    for (_, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        p.data[...] = rng.standard_normal(p.shape)  # non-trivial affine parameters
        with torch.no_grad():
            q.copy_(torch.tensor(p.data))
    return ours, theirs


TORCH_INPUTS = {"group": (4, 6, 5, 3), "group-plain": (1, 6, 7), "instance1d": (3, 6, 9),
                "instance2d": (2, 6, 4, 5), "rms": (3, 4, 5), "rms-eps": (2, 3, 5)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(TORCH_INPUTS))
def test_layers_match_pytorch_in_train_and_eval(backend, rng, name, dtype):
    torch = pytest.importorskip("torch")
    ours, theirs = _layers(torch, name, dtype)
    x = (rng.standard_normal(TORCH_INPUTS[name]) * 2 + 1).astype(dtype)
    atol = 1e-10 if dtype == np.float64 else 2e-5
    _compare_with_torch(torch, ours, theirs, x, atol)


def test_instance_norm_unbatched_matches_pytorch(backend, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((6, 4, 5))
    ours, theirs = _layers(torch, "instance2d", np.float64)
    np.testing.assert_allclose(ours(mg.tensor(x, dtype=np.float64)).numpy(),
                               theirs(torch.tensor(x)).numpy(), atol=1e-10)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (3, 5, 6)])
def test_instance_norm_running_statistics_match_pytorch(backend, rng, fused, shape):
    """track_running_stats=True: buffers move towards the batch average of the per-instance
    mean and unbiased variance (minigrad momentum 0.8 = PyTorch 0.2), and eval uses them."""
    torch = pytest.importorskip("torch")
    ours = nn.InstanceNorm2d(3, momentum=0.8, affine=True, track_running_stats=True,
                             dtype=np.float64)
    theirs = torch.nn.InstanceNorm2d(3, momentum=0.2, affine=True,
                                     track_running_stats=True).double()

    def call(x):
        if fused or x.ndim == 3:
            return ours(x)
        use_input_stats = ours.training
        return F.instance_norm(x, ours.running_mean, ours.running_var, ours.weight, ours.bias,
                               use_input_stats, ours.momentum, ours.eps, fused=False)

    for step in range(3):
        x = rng.standard_normal(shape) * (step + 1) + step
        np.testing.assert_allclose(call(mg.tensor(x, dtype=np.float64)).numpy(),
                                   theirs(torch.tensor(x)).detach().numpy(), atol=1e-12)
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(getattr(ours, name).numpy(),
                                       getattr(theirs, name).numpy(), rtol=1e-12, err_msg=name)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape) + 2
    np.testing.assert_allclose(call(mg.tensor(x, dtype=np.float64)).numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), atol=1e-12)
    state = ours.state_dict()
    assert sorted(state) == sorted(theirs.state_dict())
    assert int(state["num_batches_tracked"]) == int(theirs.num_batches_tracked) == 0


def test_instance_norm_eval_with_running_statistics_is_batch_norm_eval(backend, rng):
    x = mg.tensor(rng.standard_normal((2, 3, 4)), dtype=np.float64)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    for fused in (True, False):
        got = F.instance_norm(x, rm, rv, use_input_stats=False, fused=fused).numpy()
        expected = (x.numpy() - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # with its own statistics, an input with one spatial value has nothing to normalize;
    # with the running ones it is fine (as in PyTorch)
    one = mg.tensor(rng.standard_normal((2, 3, 1)), dtype=np.float64)
    assert F.instance_norm(one, rm, rv, use_input_stats=False).shape == (2, 3, 1)


# ----------------------------------------------------------------------------- errors


def test_layer_errors_name_what_was_expected():
    with pytest.raises(ValueError, match="num_channels=6 is not divisible by num_groups=4"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="num_channels=6 is not divisible by num_groups=4"):
        F.group_norm(mg.randn(2, 6, 3), 4)
    with pytest.raises(ValueError, match="expected 6 channels.*got 4"):
        nn.GroupNorm(3, 6)(mg.randn(2, 4, 3))
    with pytest.raises(TypeError, match="track_running_stats must be a bool"):
        nn.InstanceNorm2d(3, track_running_stats="yes")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(C, H, W\)"):
        nn.InstanceNorm2d(3)(mg.randn(3, 4))
    with pytest.raises(ValueError, match="expected 3 channels.*got 4"):
        nn.InstanceNorm1d(3)(mg.randn(2, 4, 5))
    with pytest.raises(ValueError, match="more than 1 spatial value"):
        nn.InstanceNorm1d(3)(mg.randn(2, 3, 1))
    with pytest.raises(ValueError, match=r"trailing shape \(4,\).*\(2, 5\)"):
        nn.RMSNorm(4)(mg.randn(2, 5))
    for layer in (nn.GroupNorm(1, 3), nn.InstanceNorm1d(3, affine=True), nn.RMSNorm(4)):
        with pytest.raises(TypeError, match="float64 does not match the parameter dtype float32"):
            layer(mg.randn(2, 3, 4, dtype=mg.float64))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        nn.RMSNorm(4, dtype=np.int32)


def test_reprs_and_parameters():
    assert "3, 6, eps=1e-05, affine=True" in repr(nn.GroupNorm(3, 6))
    assert list(nn.InstanceNorm1d(4).parameters()) == []
    assert [p.shape for p in nn.InstanceNorm1d(4, affine=True).parameters()] == [(4,), (4,)]
    assert [p.shape for p in nn.RMSNorm((2, 3)).parameters()] == [(2, 3)]
    assert "eps=None" in repr(nn.RMSNorm(3))
