"""BatchNorm and LayerNorm graph nodes and layers: gradients, semantics, options, errors."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn

BN_SHAPES = [(6, 3), (4, 3, 5), (3, 3, 2, 4)]


def leaf(rng, shape, offset=0.0):
    return mg.tensor(rng.standard_normal(shape) + offset, dtype=np.float64, requires_grad=True)


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("fused", [True, False])
def test_batch_norm_gradcheck_train_and_eval(backend, rng, shape, fused):
    x, gamma, beta = leaf(rng, shape), leaf(rng, 3, 1.0), leaf(rng, 3)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    assert mg.gradcheck(
        lambda a, g, b: F.batch_norm(a, None, None, g, b, training=True, fused=fused),
        x, gamma, beta)
    assert mg.gradcheck(
        lambda a, g, b: F.batch_norm(a, rm, rv, g, b, training=False, fused=fused),
        x, gamma, beta)
    assert mg.gradcheck(lambda a: F.batch_norm(a, training=True, fused=fused), x)


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_fused_equals_composite(backend, rng, shape):
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    outputs = []
    for fused in (True, False):
        xt = mg.tensor(x, dtype=np.float64, requires_grad=True)
        g = mg.tensor(gamma, dtype=np.float64, requires_grad=True)
        b = mg.tensor(beta, dtype=np.float64, requires_grad=True)
        rm, rv = np.zeros(3), np.ones(3)
        y = F.batch_norm(xt, rm, rv, g, b, training=True, fused=fused)
        (y * mg.tensor(np.cos(np.arange(y.size)).reshape(y.shape))).sum().backward()
        outputs.append((y.numpy(), xt.grad.numpy(), g.grad.numpy(), b.grad.numpy(), rm, rv))
    for fused_value, composite_value in zip(*outputs, strict=True):
        np.testing.assert_allclose(fused_value, composite_value, rtol=1e-10, atol=1e-12)


def test_batch_norm_eval_composite_keeps_float64_running_statistics(backend, rng):
    """The composite used to round float64 running buffers to float32 in eval."""
    x = mg.tensor(rng.standard_normal((6, 3)), dtype=np.float64)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    expected = (x.numpy() - rm) / np.sqrt(rv + 1e-5)
    for fused in (True, False):
        got = F.batch_norm(x, rm, rv, training=False, fused=fused).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


def test_batch_norm_matches_textbook_formula(backend, rng):
    x = rng.standard_normal((8, 4)) * 3 + 2
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    mu, var = x.mean(0), x.var(0)
    expected = gamma * (x - mu) / np.sqrt(var + 1e-5) + beta
    got = F.batch_norm(mg.tensor(x, dtype=np.float64), None, None,
                       mg.tensor(gamma, dtype=np.float64), mg.tensor(beta, dtype=np.float64),
                       training=True)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_running_statistics_follow_the_seed_formula(backend, rng):
    bn = nn.BatchNorm1d(3, momentum=0.8, dtype=np.float64)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(5):
        x = rng.standard_normal((10, 3)) * (step + 1) + step
        bn(mg.tensor(x, dtype=np.float64))
        running_mean = running_mean * 0.8 + x.mean(0) * 0.2
        running_var = running_var * 0.8 + x.var(0, ddof=1) * 0.2  # unbiased
    np.testing.assert_allclose(bn.running_mean.numpy(), running_mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), running_var, rtol=1e-12)


def test_batchnorm2d_running_statistics_and_eval(backend, rng):
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    x = rng.standard_normal((4, 2, 3, 5)) + 3
    bn(mg.tensor(x, dtype=np.float64))
    per_channel = x.transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * per_channel.mean(1))
    np.testing.assert_allclose(bn.running_var.numpy(),
                               0.9 + 0.1 * per_channel.var(1, ddof=1))
    bn.eval()
    z = rng.standard_normal((2, 2, 3, 5))
    rm, rv = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    expected = (z - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(bn(mg.tensor(z, dtype=np.float64)).numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean.numpy(), rm)  # eval does not update


def test_track_running_stats_false_uses_batch_statistics_in_eval(backend, rng):
    bn = nn.BatchNorm1d(3, track_running_stats=False, dtype=np.float64).eval()
    x = rng.standard_normal((6, 3)) * 2 + 5
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(bn(mg.tensor(x, dtype=np.float64)).numpy(), expected, rtol=1e-12)
    assert "running_mean" not in bn.state_dict()


def test_batch_norm_large_mean_float32_is_accurate(backend, rng):
    x64 = rng.standard_normal((256, 16)) + 1e4
    x32 = x64.astype(np.float32)
    expected = (x32.astype(np.float64) - x32.astype(np.float64).mean(0)) / np.sqrt(
        x32.astype(np.float64).var(0) + 1e-5)
    got = nn.BatchNorm1d(16)(mg.tensor(x32)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-2)


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(4)(mg.randn(1, 4))
    with pytest.raises(ValueError, match="expected 4 features.*got 5"):
        nn.BatchNorm1d(4)(mg.randn(8, 5))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        nn.BatchNorm2d(4)(mg.randn(8, 4))
    with pytest.raises(TypeError, match="float64.*float32"):
        nn.BatchNorm1d(4)(mg.randn(8, 4, dtype=np.float64))
    bn = nn.BatchNorm1d(4).eval()
    assert bn(mg.randn(1, 4)).shape == (1, 4)  # one sample is fine in eval


def test_batch_norm_buffers_are_state_not_parameters():
    bn = nn.BatchNorm1d(5)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked"]
    assert "momentum=0.9" in repr(bn) and "BatchNorm1d(5" in repr(bn)
    assert list(nn.BatchNorm1d(5, affine=False).parameters()) == []


@pytest.mark.parametrize("shape, normalized", [((4, 6), (6,)), ((2, 3, 4), (3, 4)),
                                                ((2, 2, 3, 5), (5,))])
@pytest.mark.parametrize("fused", [True, False])
def test_layer_norm_gradcheck(backend, rng, shape, normalized, fused):
    x, gamma, beta = leaf(rng, shape), leaf(rng, normalized, 1.0), leaf(rng, normalized)
    assert mg.gradcheck(lambda a, g, b: F.layer_norm(a, normalized, g, b, fused=fused),
                        x, gamma, beta)
    assert mg.gradcheck(lambda a: F.layer_norm(a, normalized, fused=fused), x)


def test_layer_norm_matches_formula_and_is_mode_independent(backend, rng):
    x = rng.standard_normal((5, 8)) * 4 - 2
    ln = nn.LayerNorm(8, dtype=np.float64)
    expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(mg.tensor(x, dtype=np.float64)).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(ln.eval()(mg.tensor(x, dtype=np.float64)).numpy(), expected,
                               rtol=1e-12)


def test_layer_norm_fused_equals_composite(backend, rng):
    x = rng.standard_normal((3, 4, 5))
    g, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    results = []
    for fused in (True, False):
        xs = [mg.tensor(v, dtype=np.float64, requires_grad=True) for v in (x, g, b)]
        y = F.layer_norm(xs[0], (4, 5), xs[1], xs[2], fused=fused)
        (y * y).sum().backward()
        results.append([y.numpy()] + [t.grad.numpy() for t in xs])
    for a, c in zip(*results, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12)


def test_layer_norm_large_mean_float32(backend, rng):
    x = (rng.standard_normal((64, 32)) + 1e4).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(nn.LayerNorm(32)(mg.tensor(x)).numpy(), expected, atol=1e-2)


def test_layer_norm_errors_and_repr():
    with pytest.raises(ValueError, match=r"trailing shape \(4,\).*\(2, 5\)"):
        nn.LayerNorm(4)(mg.randn(2, 5))
    ln = nn.LayerNorm((3, 4), elementwise_affine=False)
    assert list(ln.parameters()) == [] and "(3, 4)" in repr(ln)


# ----------------------------------------------------------------------------- num_batches_tracked


def test_num_batches_tracked_counts_training_forwards(backend, rng):
    bn = nn.BatchNorm1d(3)
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()
    for _ in range(3):
        bn(mg.tensor(rng.standard_normal((4, 3)), dtype=mg.float32))
    bn.eval()
    bn(mg.tensor(rng.standard_normal((4, 3)), dtype=mg.float32))
    assert bn.num_batches_tracked.item() == 3
    untracked = nn.BatchNorm2d(3, track_running_stats=False)
    untracked(mg.randn(2, 3, 2, 2))
    assert "num_batches_tracked" not in untracked.state_dict()


def test_state_dict_without_num_batches_tracked_loads_strictly_with_zero(backend, rng):
    # An older state dict has the running statistics but no counter: it fills with 0.
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Sequential(nn.BatchNorm1d(3)))
    for _ in range(2):
        model(mg.tensor(rng.standard_normal((8, 4)), dtype=mg.float32))
    old = {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    fresh = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Sequential(nn.BatchNorm1d(3)))
    fresh[1].num_batches_tracked.data[()] = 5
    fresh.load_state_dict(old, strict=True)
    assert fresh[1].num_batches_tracked.item() == 0 and fresh[2][0].num_batches_tracked.item() == 0
    assert fresh[1].num_batches_tracked.dtype == np.int64
    np.testing.assert_array_equal(fresh[1].running_mean.data, model[1].running_mean.data)
    assert all("num_batches_tracked" not in k for k in old)  # the caller's dict is unchanged


def test_missing_batch_norm_statistics_are_still_reported(backend):
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    state = model.state_dict()
    del state["1.running_var"], state["1.num_batches_tracked"]
    with pytest.raises(KeyError, match=r"missing keys \['1.running_var'\]"):
        model.load_state_dict(state)
    without_layer = {k: v for k, v in model.state_dict().items() if not k.startswith("1.")}
    with pytest.raises(KeyError, match="1.running_mean.*1.num_batches_tracked"):
        model.load_state_dict(without_layer)
    # non-strict loads leave a counter alone when the layer is absent
    model[1].num_batches_tracked.data[()] = 4
    model.load_state_dict(without_layer, strict=False)
    assert model[1].num_batches_tracked.item() == 4


@pytest.mark.parametrize("convert", ["double", "float", "to64"])
def test_dtype_conversion_leaves_num_batches_tracked_an_integer(convert, rng):
    bn = nn.BatchNorm1d(3)
    bn(mg.randn(4, 3))
    {"double": bn.double, "float": bn.float, "to64": lambda: bn.to(mg.float64)}[convert]()
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.item() == 1
    expected = np.float32 if convert == "float" else np.float64
    assert bn.running_mean.dtype == expected and bn.weight.dtype == expected
    bn(mg.tensor(rng.standard_normal((4, 3)), dtype=expected))
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.item() == 2


def _torch_state(torch_model) -> dict:
    return {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}


def test_pytorch_state_dict_loads_strictly_key_for_key(backend, rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3),
                                    torch.nn.ReLU(), torch.nn.Linear(3, 2),
                                    torch.nn.LayerNorm(2))
    reference.train()
    for _ in range(2):
        reference(torch.randn(8, 4))
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2),
                          nn.LayerNorm(2))
    state = _torch_state(reference)
    assert list(model.state_dict()) == list(state)  # same keys in the same order
    model.load_state_dict(state, strict=True)
    assert model[1].num_batches_tracked.item() == 2
    reference.eval()
    model.eval()
    x = rng.standard_normal((5, 4)).astype(np.float32)
    expected = reference(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model(mg.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
