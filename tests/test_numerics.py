"""Numerics: NaN and inf travel as NumPy says, losses stay finite for large logits, variances
are never negative, and detect_anomaly names the op that produced a non-finite value.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, nn, optim

compiled = kernels.compiled


# ================================================================================ 3. numerics

SPECIAL = np.array([[1.0, np.nan, -2.0, np.inf], [-np.inf, 0.5, 3.0, -1.0]], np.float32)


@pytest.fixture(params=["numpy", "cython"])
def backend(request):
    if request.param == "cython" and compiled is None:
        pytest.skip("compiled kernels not built")
    previous = mg.get_backend()
    mg.set_backend(request.param)
    yield request.param
    mg.set_backend(previous)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("op,ref", [
    (lambda t: t.exp(), np.exp), (lambda t: t.relu(), lambda a: np.maximum(a, 0)),
    (lambda t: t.tanh(), np.tanh), (lambda t: t.abs(), np.abs),
    (lambda t: t * 2 + 1, lambda a: a * 2 + 1), (lambda t: t.clip(-1, 1), lambda a: np.clip(
        a, -1, 1)),
    (lambda t: t.sum(axis=0), lambda a: a.sum(0)), (lambda t: t.sum(axis=1), lambda a: a.sum(1)),
    (lambda t: t.mean(axis=1), lambda a: a.mean(1)), (lambda t: t.var(axis=1), lambda a: a.var(1)),
    (lambda t: t.max(axis=1), lambda a: a.max(1)), (lambda t: t.min(axis=0), lambda a: a.min(0)),
    (lambda t: t @ mg.ones(4, 2), lambda a: a @ np.ones((4, 2))),
], ids=["exp", "relu", "tanh", "abs", "affine", "clip", "sum0", "sum1", "mean", "var", "max",
        "min", "matmul"])
def test_nan_and_inf_propagate_like_numpy(backend, op, ref):
    got = op(mg.tensor(SPECIAL)).data.astype(np.float64)
    want = ref(SPECIAL.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # no silent zero
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_logsumexp_and_softmax_with_inf(backend):
    x = mg.tensor(np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf],
                            [np.inf, 0.0, 1.0]], np.float32))
    lse = x.logsumexp(axis=1).data
    assert np.isfinite(lse[0]) and lse[1] == -np.inf and lse[2] == np.inf
    sm = x.softmax(axis=1).data
    np.testing.assert_allclose(sm[0], np.exp([0, -np.inf, 1]) / np.exp([0, 1]).sum(), rtol=1e-6)
    assert sm[0, 1] == 0  # exp(-inf) is an exact 0, not NaN


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_logsumexp_gradient_of_a_row_holding_inf(backend):
    """The gradient is softmax(x): in a row holding +inf, 0 at every finite entry and NaN at the
    infinite ones (inf / inf), as PyTorch gives, not NaN across the whole row; a finite row next
    to it is untouched."""
    x = mg.tensor(np.array([[np.inf, 1.0, 2.0], [np.inf, np.inf, -np.inf], [0.0, 1.0, 2.0]]),
                  requires_grad=True)
    x.logsumexp(axis=1).sum().backward()
    g = x.grad.data
    assert np.isnan(g[0, 0]) and g[0, 1] == 0 and g[0, 2] == 0
    assert np.isnan(g[1, :2]).all() and g[1, 2] == 0
    np.testing.assert_allclose(g[2], np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum(), rtol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_losses_stay_finite_for_logits_of_1e4(backend, fused):
    big = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], np.float32)
    logits = mg.tensor(big, requires_grad=True)
    loss = F.cross_entropy(logits, mg.tensor([1, 0, 0]), fused=fused)
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(logits.grad.data))
    np.testing.assert_allclose(loss.item(), (2e4 + 2e4 + np.log(2)) / 3, rtol=1e-6)
    for fn in (F.softmax, F.log_softmax):
        out = fn(mg.tensor(big), axis=1).data
        assert np.all(np.isfinite(out))
    b = mg.tensor(np.array([1e4, -1e4, 1e4, -1e4], np.float32), requires_grad=True)
    bce = F.binary_cross_entropy_with_logits(b, mg.tensor([0.0, 1.0, 1.0, 0.0]))
    bce.backward()
    np.testing.assert_allclose(bce.item(), 2e4 / 4, rtol=1e-6)
    assert np.all(np.isfinite(b.grad.data))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_variance_is_never_negative(backend, dtype):
    rng = np.random.default_rng(0)
    cases = [np.full((7, 3), 0.1, dtype), np.full((5, 4), 1e4, dtype) + dtype(1e-3) * rng
             .standard_normal((5, 4)).astype(dtype), (rng.standard_normal((9, 2)) * 1e-20)
             .astype(dtype), np.float32(3e4) + np.zeros((6, 2), dtype)]
    for x in cases:
        t = mg.tensor(x)
        for v in (t.var(axis=0), t.var(), t.var(axis=0, correction=1), t.std(axis=0)):
            assert np.all(v.data >= 0), v
        y = F.batch_norm(t, None, None, training=True)
        assert np.all(np.isfinite(y.data))
        y = F.layer_norm(t, (x.shape[1],))
        assert np.all(np.isfinite(y.data))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_names_the_forward_op_and_shapes():
    x = mg.tensor(np.array([[1.0, -1.0, 2.0]], np.float32), requires_grad=True)
    with mg.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"(?i)log.*forward.*NaN.*\(1, 3\)"):
            x.log()
    x.log()  # off again: no error (NumPy only warns)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_names_the_backward_op_and_shapes():
    x = mg.tensor(np.array([0.0, 4.0], np.float32), requires_grad=True)
    with mg.detect_anomaly():
        y = x.sqrt().sum()  # sqrt(0) = 0 is fine forward; its gradient 1 / (2 sqrt(0)) is inf
        with pytest.raises(FloatingPointError, match=r"(?i)sqrt.*backward.*inf.*\(2,\)"):
            y.backward()


def test_nan_gradient_reaches_parameters_on_both_backends():
    results = []
    for name in ("numpy", "cython") if compiled is not None else ("numpy",):
        mg.set_backend(name)
        p = nn.Parameter(np.ones(3, np.float32))
        opt = optim.Adam([p], lr=0.1)
        p.grad = mg.tensor(np.array([1.0, np.nan, 1.0], np.float32))
        opt.step()
        results.append(p.data.copy())
    mg.set_backend("cython" if compiled is not None else "numpy")
    for r in results:
        np.testing.assert_array_equal(np.isnan(r), [False, True, False])
    np.testing.assert_allclose(results[0], results[-1], rtol=1e-6)




def test_logsumexp_gradient_of_a_0d_tensor(backend):
    x = mg.tensor(np.float32(0.25), requires_grad=True)
    x.logsumexp().backward()
    assert x.grad.shape == () and x.grad.item() == 1.0
