"""Optimizers against hand-written NumPy versions of PyTorch's documented update rules, plus
parameter groups, option checks, version counters, schedulers and clip_grad_norm_ (the state
and state dicts are tested in test_optim_state.py).

Every optimizer test runs twice: with the compiled fused kernels and with their NumPy twins.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from optim_cases import CASES, TOL, adam_rule, case_id, grads_for, make_params, set_grads

import minigrad as mg
from minigrad import nn, optim
from minigrad.nn.utils import clip_grad_norm_
from minigrad.optim import lr_scheduler

NUMPY_ONLY = os.environ.get("MINIGRAD_BACKEND", "").strip().lower() == "numpy"


@pytest.fixture(params=["numpy"] if NUMPY_ONLY else ["cython", "numpy"], autouse=True)
def kernels(request):
    """Run each test with the compiled kernels and again with the NumPy twins."""
    if request.param == "cython":
        from minigrad.kernels import _optim  # noqa: F401  (a missing build fails here)
    previous = mg.get_backend()
    mg.set_backend(request.param)
    yield request.param
    mg.set_backend(previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_pytorch_rule(case, dtype):
    cls, rule, options = case
    params = make_params(0, dtype)
    expected = [p.data.astype(np.float64) for p in params]
    states = [{} for _ in params]
    opt = cls(params, **options)
    for t, grads in enumerate(grads_for(1, n_steps=5), start=1):
        set_grads(params, grads)
        opt.step()
        expected = [
            rule(e, g, s, t, **options) for e, g, s in zip(expected, grads, states, strict=True)
        ]
        for p, e in zip(params, expected, strict=True):
            assert p.data.dtype == dtype
            np.testing.assert_allclose(p.data, e, **TOL[dtype])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_skipped_parameters_keep_their_own_step_count(case):
    """A parameter without a gradient is not updated and its step count does not advance."""
    cls, rule, options = case
    params = make_params(2, np.float64)
    expected = [p.data.copy() for p in params]
    states = [{} for _ in params]
    counts = [0] * len(params)
    opt = cls(params, **options)
    for step, grads in enumerate(grads_for(3, n_steps=6)):
        grads = [None if (k + step) % 3 == 0 else g for k, g in enumerate(grads)]
        set_grads(params, grads)
        opt.step()
        for k, g in enumerate(grads):
            if g is not None:
                counts[k] += 1
                expected[k] = rule(expected[k], g, states[k], counts[k], **options)
        for p, e in zip(params, expected, strict=True):
            np.testing.assert_allclose(p.data, e, **TOL[np.float64])


def test_non_contiguous_and_rebound_param_data():
    params = make_params(4, np.float32, shapes=[(6, 4), (5,)])
    # A transposed view and a negatively strided view of bigger buffers.
    transposed = np.zeros((4, 6), np.float32).T
    transposed[...] = params[0].data
    reversed_ = np.zeros(5, np.float32)[::-1]
    reversed_[...] = params[1].data
    params[0].data, params[1].data = transposed, reversed_
    expected = [p.data.astype(np.float64) for p in params]
    states = [{}, {}]
    opt = optim.Adam(params, lr=0.05)
    for t, grads in enumerate(grads_for(5, 3, shapes=[(6, 4), (5,)]), start=1):
        set_grads(params, grads)
        opt.step()
        expected = [
            adam_rule(e, g, s, t, lr=0.05) for e, g, s in zip(expected, grads, states, strict=True)
        ]
    assert params[0].data is transposed and params[1].data is reversed_  # updated in place
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.data, e, **TOL[np.float32])

    # Rebinding .data to a new array of the same size is harmless (state is not tied to it).
    params[1].data = params[1].data.copy()
    set_grads(params, [np.ones((6, 4)), np.ones(5)])
    opt.step()
    params[1].data = np.zeros(7, np.float32)
    with pytest.raises(ValueError, match="changed"):
        opt.step()


def test_mixed_dtypes_in_one_group():
    params = [nn.Parameter(np.ones(3, np.float32)), nn.Parameter(np.ones(2, np.float64))]
    opt = optim.SGD(params, lr=0.5, momentum=0.9)
    set_grads(params, [np.ones(3), np.ones(2)])
    opt.step()
    opt.step()
    assert params[0].data.dtype == np.float32 and params[1].data.dtype == np.float64
    # b1 = 1, b2 = 0.9 + 1: p = 1 - 0.5 * 1 - 0.5 * 1.9
    np.testing.assert_allclose(params[0].data, -0.45, rtol=1e-6)
    np.testing.assert_allclose(params[1].data, -0.45, rtol=1e-15)


def test_param_groups_options_and_lr_changes():
    a, b = make_params(6, np.float64, shapes=[(3,)]), make_params(7, np.float64, shapes=[(2,)])
    opt = optim.SGD([{"params": a}, {"params": b, "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[1]["momentum"] == 0.9
    start_a, start_b = a[0].data.copy(), b[0].data.copy()
    set_grads(a + b, [np.ones(3), np.ones(2)])
    opt.param_groups[0]["lr"] = 0.2  # as a scheduler would
    opt.step()
    np.testing.assert_allclose(a[0].data, start_a - 0.2)
    np.testing.assert_allclose(b[0].data, start_b - 0.5)
    c = make_params(8, np.float64, shapes=[(4,)])
    opt.add_param_group({"params": c, "lr": 1.0})
    set_grads(c, [np.ones(4)])
    start_c = c[0].data.copy()
    opt.step()
    np.testing.assert_allclose(c[0].data, start_c - 1.0)


def test_zero_grad():
    params = make_params(9, np.float32, shapes=[(2,), (3,)])
    set_grads(params, [np.ones(2), np.ones(3)])
    opt = optim.Adam(params)
    opt.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.data == 0) for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    before = [p.data.copy() for p in params]
    opt.step()  # no gradients: nothing moves
    for p, b in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.data, b)


def test_works_with_a_module_and_autograd():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = mg.tensor(np.random.default_rng(0).standard_normal((16, 3)), dtype=mg.float32)
    y = mg.tensor(np.random.default_rng(1).standard_normal((16, 1)), dtype=mg.float32)
    opt = optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: optim.SGD(p, lr=-0.1), "learning rate"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-1), "momentum"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1e-4), "weight_decay"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "beta1"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), "beta2"),
        (lambda p: optim.Adam(p, betas=0.9), "pair"),
        (lambda p: optim.Adam(p, eps=-1e-8), "eps"),
        (lambda p: optim.AdamW(p, lr=float("nan")), "learning rate"),
        (lambda p: optim.RMSprop(p, alpha=1.5), "alpha"),
        (lambda p: optim.RMSprop(p, momentum=-0.5), "momentum"),
        (lambda p: optim.SGD([{"params": p, "lr": -1.0}], lr=0.1), "learning rate"),
        (lambda p: optim.SGD([{"params": p, "betas": (0.9, 0.9)}], lr=0.1), "unknown options"),
        (lambda p: optim.SGD([], lr=0.1), "empty"),
        (lambda p: optim.SGD(p + p, lr=0.1), "more than one"),
    ],
)
def test_invalid_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_params(14, np.float32, shapes=[(2,)]))


def test_invalid_parameters_raise_type_error():
    with pytest.raises(TypeError, match="wrap it in a list"):
        optim.SGD(nn.Parameter(np.ones(2, np.float32)), lr=0.1)
    with pytest.raises(TypeError, match="Tensors"):
        optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        optim.SGD([mg.Tensor(np.ones(2, np.int64))], lr=0.1)


def test_step_with_closure_returns_loss():
    params = make_params(15, np.float64, shapes=[(2,)])

    def closure():
        set_grads(params, [np.ones(2)])
        return 3.0

    start = params[0].data.copy()
    assert optim.SGD(params, lr=0.25).step(closure) == 3.0
    np.testing.assert_allclose(params[0].data, start - 0.25)


# --------------------------------------------------------------------------- schedulers
def _lrs(scheduler_cls, epochs, lr=0.1, **options):
    opt = optim.SGD(make_params(16, np.float32, shapes=[(1,)]), lr=lr)
    scheduler = scheduler_cls(opt, **options)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        assert scheduler.get_last_lr() == [lrs[-1]]
        opt.step()
        scheduler.step()
    return lrs, scheduler


def test_step_lr_sequence():
    lrs, scheduler = _lrs(lr_scheduler.StepLR, 10, step_size=3, gamma=0.5)
    expected = [0.1 * 0.5 ** (e // 3) for e in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-15)
    assert scheduler.last_epoch == 10


def test_exponential_lr_sequence():
    lrs, _ = _lrs(lr_scheduler.ExponentialLR, 8, gamma=0.9)
    np.testing.assert_allclose(lrs, [0.1 * 0.9**e for e in range(8)], rtol=1e-15)


def test_cosine_annealing_sequence_past_t_max():
    lrs, _ = _lrs(lr_scheduler.CosineAnnealingLR, 25, T_max=10, eta_min=0.01)
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(25)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-14)
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.01)


def test_scheduler_per_group_base_lrs_and_resume():
    a, b = make_params(17, np.float32, shapes=[(1,)]), make_params(18, np.float32, shapes=[(1,)])
    opt = optim.SGD([{"params": a}, {"params": b, "lr": 1.0}], lr=0.1)
    scheduler = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    scheduler.step()
    scheduler.step()
    assert scheduler.get_last_lr() == [0.025, 0.25]
    state = scheduler.state_dict()
    resumed = lr_scheduler.ExponentialLR(opt, gamma=0.5, last_epoch=state["last_epoch"])
    resumed.load_state_dict(state)
    resumed.step()
    assert resumed.get_last_lr() == [0.0125, 0.125]
    fresh = optim.SGD(make_params(19, np.float32, shapes=[(1,)]), lr=0.1)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(fresh, step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(fresh, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        lr_scheduler.CosineAnnealingLR(fresh, T_max=0)


# --------------------------------------------------------------------------- clipping
def _clip_params(grads, dtype=np.float64):
    params = [nn.Parameter(np.zeros(np.shape(g), dtype)) for g in grads]
    set_grads(params, grads)
    return params


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_scales_when_too_large(norm_type):
    rng = np.random.default_rng(20)
    grads = [rng.standard_normal(s) for s in [(3, 4), (5,), (1,)]]
    flat = np.concatenate([g.ravel() for g in grads])
    if math.isinf(norm_type):
        expected = np.abs(flat).max()
    else:
        expected = (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    params = _clip_params(grads)
    total = clip_grad_norm_(params, max_norm=0.5, norm_type=norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(expected, rel=1e-12)
    scale = 0.5 / (expected + 1e-6)
    for p, g in zip(params, grads, strict=True):
        np.testing.assert_allclose(p.grad.data, g * scale, rtol=1e-12)


def test_clip_grad_norm_leaves_small_gradients_and_skips_missing():
    grads = [np.array([0.3, 0.4]), None]
    params = _clip_params([np.array([0.3, 0.4]), np.zeros(2)])
    params[1].grad = None
    assert clip_grad_norm_(params, max_norm=1.0) == pytest.approx(0.5, rel=1e-15)
    np.testing.assert_array_equal(params[0].grad.data, grads[0])
    assert params[1].grad is None
    assert clip_grad_norm_([params[1]], max_norm=1.0) == 0.0
    single = _clip_params([np.array([3.0, 4.0])])[0]
    assert clip_grad_norm_(single, max_norm=1.0) == pytest.approx(5.0)  # a bare Tensor
    np.testing.assert_allclose(single.grad.data, [0.6, 0.8], rtol=1e-6)


def test_clip_grad_norm_float32_accumulates_in_float64():
    # 1e6 equal values: a float32 running sum of squares would drift; float64 does not.
    grad = np.full(1_000_000, 1e-3, np.float32)
    params = _clip_params([grad], np.float32)
    total = clip_grad_norm_(params, max_norm=10.0)
    assert total == pytest.approx(math.sqrt(1e6) * float(np.float32(1e-3)), rel=1e-12)


def test_clip_grad_norm_nonfinite_and_bad_arguments():
    params = _clip_params([np.array([np.inf, 1.0])])
    with pytest.raises(RuntimeError, match="inf"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_(params, 1.0, norm_type=0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(params, -1.0)


def test_gradient_of_wrong_shape_or_dtype_is_rejected_before_any_change():
    params = make_params(21, np.float32, shapes=[(2, 3)])
    opt = optim.Adam(params)
    before = params[0].data.copy()
    params[0].grad = mg.Tensor(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        opt.step()
    params[0].grad = mg.Tensor(np.ones((2, 3)), dtype=np.float64)
    with pytest.raises(TypeError, match="float64"):
        opt.step()
    np.testing.assert_array_equal(params[0].data, before)
    assert opt.state_dict()["state"] == {}


def test_each_updated_parameter_version_goes_up_by_one_per_step():
    params = make_params(31, np.float32, shapes=[(2,), (3,), (4,)])
    opt = optim.Adam(params)
    set_grads(params, [np.ones(2), None, np.ones(4)])
    versions = [p._version for p in params]
    opt.step()
    opt.step()
    assert [p._version - v for p, v in zip(params, versions, strict=True)] == [2, 0, 2]


def test_overlapping_parameters_each_receive_their_update():
    # two parameters viewing one array: both updates land, in group order (PyTorch's loop);
    # the compiled SGD used to write back a stale copy of the strided view
    base = nn.Parameter(np.arange(24, dtype=np.float32).reshape(4, 6))
    view = nn.Parameter(np.zeros((4, 3), np.float32))
    view.data = base.data[:, ::2]
    expected = base.data - 0.5
    expected[:, ::2] -= 5.0
    set_grads([base, view], [np.ones((4, 6)), np.full((4, 3), 10.0)])
    optim.SGD([base, view], lr=0.5).step()
    np.testing.assert_array_equal(base.data, expected)
    assert np.shares_memory(base.data, view.data)
