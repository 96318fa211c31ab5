"""Losses against float64 NumPy references, by gradcheck, and at extreme logits."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn


def reference_cross_entropy(x, t, label_smoothing=0.0, ignore_index=-100):
    """Per-row loss in float64: -(1-ls) logp[t] - ls * mean_j logp_j, 0 for ignored rows."""
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    kept = t != ignore_index
    picked = logp[np.arange(len(t)), np.where(kept, t, 0)]
    loss = -(1 - label_smoothing) * picked - label_smoothing * logp.mean(axis=1)
    return np.where(kept, loss, 0.0), kept


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
def test_cross_entropy_matches_reference(backend, rng, fused, reduction, label_smoothing):
    x = rng.standard_normal((7, 5)) * 3
    t = rng.integers(0, 5, 7)
    t[2] = -100
    per_row, kept = reference_cross_entropy(x, t, label_smoothing)
    expected = {"none": per_row, "sum": per_row.sum(), "mean": per_row.sum() / kept.sum()}
    got = F.cross_entropy(mg.tensor(x, dtype=np.float64), t, reduction, label_smoothing,
                          fused=fused)
    np.testing.assert_allclose(got.numpy(), expected[reduction], rtol=1e-12, atol=1e-12)
    xt = mg.tensor(x, dtype=np.float64, requires_grad=True)
    assert mg.gradcheck(lambda z: F.cross_entropy(z, t, reduction, label_smoothing,
                                                  fused=fused), xt)


def test_cross_entropy_float32_and_extreme_logits(backend):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=np.float32)
    t = np.array([1, 2])
    xt = mg.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xt, t, label_smoothing=0.1)
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(xt.grad.numpy()))
    per_row, _ = reference_cross_entropy(x, t, 0.1)
    assert loss.item() == pytest.approx(per_row.mean(), rel=1e-6)


def test_cross_entropy_spatial_and_unbatched(backend, rng):
    x = mg.tensor(rng.standard_normal((2, 4, 3)), dtype=np.float64, requires_grad=True)
    t = rng.integers(0, 4, (2, 3))
    flat = np.moveaxis(x.numpy(), 1, -1).reshape(-1, 4)
    per_row, _ = reference_cross_entropy(flat, t.reshape(-1))
    np.testing.assert_allclose(F.cross_entropy(x, t, "none").numpy(), per_row.reshape(2, 3))
    assert mg.gradcheck(lambda z: F.cross_entropy(z, t), x)
    v = mg.tensor(rng.standard_normal(4), dtype=np.float64)
    assert F.cross_entropy(v, np.array(2)).item() == pytest.approx(
        reference_cross_entropy(v.numpy()[None], np.array([2]))[0][0])


def test_cross_entropy_bad_targets():
    x = mg.randn(3, 4)
    with pytest.raises(ValueError, match="out of range"):
        F.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="target shape"):
        F.cross_entropy(x, np.array([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")


def test_nll_loss_matches_reference(backend, rng):
    logp = rng.standard_normal((6, 4))
    t = rng.integers(0, 4, 6)
    expected = -logp[np.arange(6), t]
    x = mg.tensor(logp, dtype=np.float64, requires_grad=True)
    np.testing.assert_allclose(nn.NLLLoss(reduction="none")(x, t).numpy(), expected)
    assert nn.NLLLoss()(x, t).item() == pytest.approx(expected.mean())
    assert mg.gradcheck(lambda z: F.nll_loss(z, t, "sum"), x)
    # log_softmax followed by NLL equals cross-entropy
    ce = F.cross_entropy(x, t).item()
    assert F.nll_loss(x.log_softmax(axis=1), t).item() == pytest.approx(ce)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(rng, reduction):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    reduce = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction]
    x = mg.tensor(a, dtype=np.float64, requires_grad=True)
    y = mg.tensor(b, dtype=np.float64)
    np.testing.assert_allclose(nn.MSELoss(reduction)(x, y).numpy(), reduce((a - b) ** 2))
    np.testing.assert_allclose(nn.L1Loss(reduction)(x, y).numpy(), reduce(np.abs(a - b)))
    assert mg.gradcheck(lambda z: F.mse_loss(z, y, reduction), x)
    assert mg.gradcheck(lambda z: F.l1_loss(z, y, reduction), x)


def test_regression_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 4\)"):
        F.mse_loss(mg.randn(4, 3), mg.randn(3, 4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits(rng, reduction):
    logits = rng.standard_normal((5, 2)) * 4
    target = rng.random((5, 2))
    p = 1 / (1 + np.exp(-logits))
    per = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    x = mg.tensor(logits, dtype=np.float64, requires_grad=True)
    y = mg.tensor(target, dtype=np.float64, requires_grad=True)
    np.testing.assert_allclose(nn.BCEWithLogitsLoss(reduction)(x, y).numpy(), expected,
                               rtol=1e-10)
    assert mg.gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction), x, y)


def test_bce_with_logits_is_stable_for_huge_logits():
    x = mg.tensor([1e4, -1e4, 1e4, -1e4], requires_grad=True)
    y = mg.tensor([1.0, 0.0, 0.0, 1.0])
    loss = F.binary_cross_entropy_with_logits(x, y, "none")
    np.testing.assert_allclose(loss.numpy(), [0, 0, 1e4, 1e4])
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0, 1, -1])


# ------------------------------------------------------------------- targets the graph owns


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("make_target", [np.array, mg.tensor], ids=["ndarray", "tensor"])
def test_changing_the_target_after_forward_does_not_change_the_gradient(backend, rng, fused,
                                                                        make_target):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    t = make_target([0, 1, 2, 3, 1])
    expected = mg.tensor(x, requires_grad=True)
    F.cross_entropy(expected, t, fused=fused).backward()
    got = mg.tensor(x, requires_grad=True)
    loss = F.cross_entropy(got, t, fused=fused)
    (t.data if isinstance(t, mg.Tensor) else t)[:] = 3  # the caller reuses its array
    loss.backward()
    np.testing.assert_array_equal(got.grad.numpy(), expected.grad.numpy())


def test_changing_the_nll_target_after_forward_does_not_change_the_gradient(backend, rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    t = np.array([0, 1, 2, 3, 1])
    got = mg.tensor(x, requires_grad=True)
    loss = F.nll_loss(got, t)
    t[:] = 0
    loss.backward()
    expected = np.zeros_like(x)
    expected[np.arange(5), [0, 1, 2, 3, 1]] = -1 / 5
    np.testing.assert_allclose(got.grad.numpy(), expected)


@pytest.mark.parametrize("fused", [True, False])
def test_uint64_target_near_2_to_64_is_out_of_range_not_ignored(backend, fused):
    target = np.array([2**64 - 100, 1], dtype=np.uint64)  # wraps to -100 as int64
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        F.cross_entropy(mg.randn(2, 3), target, fused=fused)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_every_target_ignored_gives_pytorchs_answer_on_both_paths(backend, reduction,
                                                                  label_smoothing):
    """PyTorch: mean is NaN, sum 0, none zeros; the gradient is zero in all three."""
    expected_loss = {"mean": np.nan, "sum": 0.0, "none": np.zeros(3)}[reduction]
    for fused in (True, False):
        x = mg.randn(3, 4, requires_grad=True)
        loss = F.cross_entropy(x, np.full(3, -100), reduction, label_smoothing, fused=fused)
        np.testing.assert_array_equal(loss.numpy(), expected_loss)
        loss.sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 4), np.float32))
    x = mg.randn(3, 4, requires_grad=True)
    loss = F.nll_loss(x, np.full(3, -100), reduction)
    np.testing.assert_array_equal(loss.numpy(), expected_loss)
    loss.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 4), np.float32))


def test_every_target_ignored_matches_torch():
    torch = pytest.importorskip("torch")
    for reduction in ("mean", "sum", "none"):
        xt = torch.zeros(3, 4, requires_grad=True)
        lt = torch.nn.functional.cross_entropy(xt, torch.full((3,), -100), reduction=reduction)
        lt.sum().backward()
        for fused in (True, False):
            x = mg.zeros(3, 4, requires_grad=True)
            loss = F.cross_entropy(x, np.full(3, -100), reduction, fused=fused)
            loss.sum().backward()
            np.testing.assert_array_equal(loss.numpy(), lt.detach().numpy())
            np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("offset", [1e3, 1e4, 1e6])
def test_cross_entropy_float32_gradient_with_a_large_logit_offset(backend, offset,
                                                                  label_smoothing):
    """The backward must not use a log-sum-exp rounded to float32: at offset 1e6 its spacing
    is 0.06 and the gradient would be off by percents (rows not summing to 0)."""
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((16, 7)) + offset).astype(np.float32)
    target = rng.integers(0, 7, 16)
    x = mg.tensor(logits, requires_grad=True)
    F.cross_entropy(x, target, label_smoothing=label_smoothing).backward()
    a = logits.astype(np.float64)
    p = np.exp(a - a.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = (p - (1 - label_smoothing) * np.eye(7)[target] - label_smoothing / 7) / 16
    np.testing.assert_allclose(x.grad.data, expected, atol=2e-7 / 16 * 10)
