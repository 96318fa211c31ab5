"""LambdaLR, LinearLR, OneCycleLR, ReduceLROnPlateau and SequentialLR: each sequence against
the formula of PyTorch's documentation written out here, on both backends (an optimizer steps
a parameter between scheduler steps), their state dicts and argument errors, and against torch
itself where it is installed."""

from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.optim import lr_scheduler as L


def _optimizer(kind="sgd", lr=0.1, groups=1, **options):
    params = [[nn.Parameter(np.ones(3))] for _ in range(groups)]
    spec = [{"params": p} for p in params]
    if kind == "adam":
        return optim.Adam(spec, lr=lr, **options)
    return optim.SGD(spec, lr=lr, **options)


def _run(opt, scheduler, steps, metrics=None):
    """The lr of every group at each step (what the optimizer used), stepping the optimizer
    with a gradient in between as a training loop does."""
    lrs = []
    for step in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        assert scheduler.get_last_lr() == lrs[-1]
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = mg.ones(3, dtype="float64")
        opt.step()
        scheduler.step() if metrics is None else scheduler.step(metrics[step])
    return np.array(lrs)


# ------------------------------------------------------------------------------- LambdaLR
class Warm:
    """A callable object: its state goes into the scheduler's state dict."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.steps)


def test_lambda_lr_per_group_formula(backend):
    opt = _optimizer(groups=2)
    fns = [lambda e: 0.9**e, Warm(4)]
    lrs = _run(opt, L.LambdaLR(opt, fns), 8)
    # lr_epoch = initial_lr * lr_lambda(epoch)
    want = [[0.1 * 0.9**e, 0.1 * min(1.0, (e + 1) / 4)] for e in range(8)]
    np.testing.assert_allclose(lrs, want, rtol=1e-15)


def test_lambda_lr_state_dict_keeps_callable_objects_only():
    opt = _optimizer(groups=2)
    scheduler = L.LambdaLR(opt, [lambda e: 1.0, Warm(4)])
    scheduler.step()
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [None, {"steps": 4}] and state["last_epoch"] == 1
    other = Warm(99)
    resumed = L.LambdaLR(_optimizer(groups=2), [lambda e: 1.0, other])
    resumed.load_state_dict(state)
    assert other.steps == 4 and resumed.last_epoch == 1


@pytest.mark.parametrize("call, error, match", [
    (lambda: L.LambdaLR(_optimizer(groups=2), [lambda e: 1.0]), ValueError, "expected 2"),
    (lambda: L.LambdaLR(_optimizer(), 0.5), TypeError, "callable"),
    (lambda: L.LambdaLR(_optimizer(), lambda e: float("nan")), ValueError, "lr_lambda"),
    (lambda: L.LambdaLR(_optimizer(), lambda e: "fast"), ValueError, "lr_lambda"),
])
def test_lambda_lr_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------------- LinearLR
@pytest.mark.parametrize("start, end, total", [(1 / 3, 1.0, 5), (0.1, 1.0, 3), (1.0, 0.2, 4)])
def test_linear_lr_formula(backend, start, end, total):
    opt = _optimizer(lr=0.5)
    lrs = _run(opt, L.LinearLR(opt, start_factor=start, end_factor=end, total_iters=total), 9)
    # lr = base * (start + (end - start) * min(epoch, total_iters) / total_iters)
    want = [[0.5 * (start + (end - start) * min(e, total) / total)] for e in range(9)]
    np.testing.assert_allclose(lrs, want, rtol=1e-14)


@pytest.mark.parametrize("options, match", [
    ({"start_factor": 0}, "start_factor"), ({"start_factor": 1.5}, "start_factor"),
    ({"end_factor": -0.1}, "end_factor"), ({"total_iters": 0}, "total_iters"),
])
def test_linear_lr_bad_arguments(options, match):
    with pytest.raises(ValueError, match=match):
        L.LinearLR(_optimizer(), **options)


# ------------------------------------------------------------------------------- OneCycleLR
def one_cycle_reference(step, total, max_lr, pct, div, final_div, strategy, three_phase,
                        base_m, max_m):
    """PyTorch's documented 1cycle: phases ending at pct*T - 1 (and 2*pct*T - 2 with three
    phases) and T - 1, each annealing from its start value to its end value."""
    initial = max_lr / div
    low = initial / final_div
    end = pct * total - 1
    if three_phase:
        phases = [(end, initial, max_lr, max_m, base_m), (2 * pct * total - 2, max_lr, initial,
                                                          base_m, max_m),
                  (total - 1, initial, low, max_m, max_m)]
    else:
        phases = [(end, initial, max_lr, max_m, base_m), (total - 1, max_lr, low, base_m, max_m)]

    def anneal(a, b, t):
        if strategy == "cos":
            return b + (a - b) / 2 * (math.cos(math.pi * t) + 1)
        return a + (b - a) * t

    start = 0.0
    for i, (stop, lr_a, lr_b, m_a, m_b) in enumerate(phases):
        if step <= stop or i == len(phases) - 1:
            t = (step - start) / (stop - start)
            return anneal(lr_a, lr_b, t), anneal(m_a, m_b, t)
        start = stop


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_one_cycle_formula_with_momentum(backend, strategy, three_phase, kind):
    opt = _optimizer(kind, lr=123.0, **({"momentum": 0.9} if kind == "sgd" else {}))
    scheduler = L.OneCycleLR(opt, max_lr=0.4, total_steps=20, pct_start=0.25,
                             anneal_strategy=strategy, three_phase=three_phase,
                             div_factor=10.0, final_div_factor=100.0)
    momenta = []
    lrs = []
    for _ in range(20):
        group = opt.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["betas"][0] if kind == "adam" else group["momentum"])
        opt.param_groups[0]["params"][0].grad = mg.ones(3, dtype="float64")
        opt.step()
        scheduler.step()
    want = [one_cycle_reference(s, 20, 0.4, 0.25, 10.0, 100.0, strategy, three_phase,
                                0.85, 0.95) for s in range(20)]
    np.testing.assert_allclose(lrs, [w[0] for w in want], rtol=1e-13)
    np.testing.assert_allclose(momenta, [w[1] for w in want], rtol=1e-13)
    assert lrs[0] == pytest.approx(0.04) and max(lrs) == pytest.approx(0.4, rel=0.02)
    if kind == "adam":
        assert opt.param_groups[0]["betas"][1] == 0.999  # beta2 untouched
    with pytest.raises(ValueError, match="tried to step 21 times"):
        scheduler.step()


def test_one_cycle_steps_per_epoch_groups_and_no_momentum_cycling(backend):
    opt = _optimizer(groups=2)
    scheduler = L.OneCycleLR(opt, max_lr=[0.1, 1.0], epochs=3, steps_per_epoch=4,
                             cycle_momentum=False)
    assert scheduler.total_steps == 12
    lrs = _run(opt, scheduler, 12)
    for g, peak in enumerate((0.1, 1.0)):
        want = [one_cycle_reference(s, 12, peak, 0.3, 25.0, 1e4, "cos", False, 0.85, 0.95)[0]
                for s in range(12)]
        np.testing.assert_allclose(lrs[:, g], want, rtol=1e-13)
    assert opt.param_groups[0]["momentum"] == 0  # not cycled


def test_one_cycle_state_dict_round_trip():
    opt = _optimizer(momentum=0.9)
    scheduler = L.OneCycleLR(opt, max_lr=0.2, total_steps=10)
    for _ in range(4):
        scheduler.step()
    state = scheduler.state_dict()
    resumed = L.OneCycleLR(_optimizer(momentum=0.9), max_lr=0.2, total_steps=10)
    resumed.load_state_dict(state)
    scheduler.step()
    resumed.step()
    assert resumed.get_last_lr() == scheduler.get_last_lr() and resumed.last_epoch == 5


@pytest.mark.parametrize("options, error, match", [
    ({"max_lr": 0.1}, ValueError, "total_steps"),
    ({"max_lr": 0.1, "total_steps": 0}, ValueError, "total_steps"),
    ({"max_lr": 0.1, "epochs": 2, "steps_per_epoch": 1.5}, ValueError, "steps_per_epoch"),
    ({"max_lr": [0.1, 0.2], "total_steps": 10}, ValueError, "expected 1 values of max_lr"),
    ({"max_lr": 0.1, "total_steps": 10, "anneal_strategy": "cosine"}, ValueError, "anneal"),
    ({"max_lr": 0.1, "total_steps": 10, "pct_start": 1.5}, ValueError, "pct_start"),
    ({"max_lr": 0.1, "total_steps": 10, "pct_start": 0.1}, ValueError, "no steps"),
    # pct_start * total_steps < 1: the rise would run backwards and never reach max_lr
    ({"max_lr": 0.1, "total_steps": 10, "pct_start": 0.05}, ValueError, "no steps"),
    ({"max_lr": 0.1, "total_steps": 2}, ValueError, "no steps"),
    # three phases with pct_start > 0.5: the fall back overruns the cycle, no final anneal
    ({"max_lr": 0.1, "total_steps": 10, "pct_start": 0.6, "three_phase": True}, ValueError,
     "and three_phase leaves a phase with no steps"),
    ({"max_lr": 0.1, "total_steps": 10, "pct_start": 1.0, "three_phase": True}, ValueError,
     "no steps"),
    ({"max_lr": 0.1, "total_steps": 10, "div_factor": 0}, ValueError, "div_factor"),
])
def test_one_cycle_bad_arguments(options, error, match):
    with pytest.raises(error, match=match):
        L.OneCycleLR(_optimizer(), **options)


# ------------------------------------------------------------------------------- ReduceLROnPlateau
def plateau_reference(metrics, lr, mode, factor, patience, threshold, threshold_mode, cooldown,
                      min_lr, eps=1e-8):
    """PyTorch's documented rule, written out: the lr used at each epoch."""
    best = math.inf if mode == "min" else -math.inf
    bad = cool = 0
    used = []
    for m in metrics:
        used.append(lr)
        if mode == "min":
            better = m < (best * (1 - threshold) if threshold_mode == "rel" else best - threshold)
        else:
            better = m > (best * (1 + threshold) if threshold_mode == "rel" else best + threshold)
        best, bad = (m, 0) if better else (best, bad + 1)
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            lr = new if lr - new > eps else lr
            cool, bad = cooldown, 0
    return used


PLATEAU_CASES = [
    ("min", 0.5, 2, 1e-4, "rel", 0, 0.0),
    ("min", 0.1, 1, 0.05, "abs", 2, 0.002),
    ("max", 0.5, 0, 1e-2, "rel", 1, 0.0),
    ("max", 0.3, 3, 0.5, "abs", 0, 0.01),
]


@pytest.mark.parametrize("mode, factor, patience, threshold, threshold_mode, cooldown, min_lr",
                         PLATEAU_CASES)
def test_reduce_on_plateau_formula(backend, mode, factor, patience, threshold, threshold_mode,
                                   cooldown, min_lr):
    rng = np.random.default_rng(patience + cooldown)
    metrics = list(np.round(np.cumsum(rng.normal(0, 1, 40)) / 4, 3))  # a wandering metric
    opt = _optimizer(lr=0.1)
    scheduler = L.ReduceLROnPlateau(opt, mode, factor, patience, threshold, threshold_mode,
                                    cooldown, min_lr)
    lrs = _run(opt, scheduler, 40, metrics)[:, 0]
    want = plateau_reference(metrics, 0.1, mode, factor, patience, threshold, threshold_mode,
                             cooldown, min_lr)
    np.testing.assert_allclose(lrs, want, rtol=1e-15)
    assert len(set(want)) > 1  # the case does reduce the lr


def test_reduce_on_plateau_counts_and_state(backend):
    opt = _optimizer(lr=1.0)
    scheduler = L.ReduceLROnPlateau(opt, patience=1, min_lr=0.3)
    for metric in [1.0, 1.0, 1.0]:  # two epochs without improvement > patience 1
        scheduler.step(mg.tensor(metric))
    assert scheduler.get_last_lr() == [pytest.approx(0.3)]  # 0.1 clipped to min_lr
    state = scheduler.state_dict()
    assert state["best"] == 1.0 and state["last_epoch"] == 3
    resumed = L.ReduceLROnPlateau(_optimizer(lr=1.0), patience=1, min_lr=0.3)
    resumed.load_state_dict(state)
    assert resumed.best == 1.0 and resumed.num_bad_epochs == 0
    with pytest.raises(ValueError, match="nan"):
        scheduler.step(float("nan"))
    with pytest.raises(TypeError, match="number"):
        scheduler.step("low")


@pytest.mark.parametrize("options, match", [
    ({"factor": 1.0}, "factor"), ({"mode": "lowest"}, "mode"),
    ({"threshold_mode": "pct"}, "threshold_mode"), ({"patience": -1}, "patience"),
    ({"min_lr": [0.0, 0.1]}, "expected 1 min_lrs"),
])
def test_reduce_on_plateau_bad_arguments(options, match):
    with pytest.raises(ValueError, match=match):
        L.ReduceLROnPlateau(_optimizer(), **options)


# ------------------------------------------------------------------------------- SequentialLR
def test_sequential_warmup_then_cosine(backend):
    opt = _optimizer(lr=0.2)
    warmup = L.LinearLR(opt, start_factor=0.1, total_iters=4)
    cosine = L.CosineAnnealingLR(opt, T_max=6, eta_min=0.01)
    scheduler = L.SequentialLR(opt, [warmup, cosine], milestones=[4])
    lrs = _run(opt, scheduler, 12)[:, 0]
    # epochs < 4: LinearLR at epoch e; from epoch 4: CosineAnnealingLR at epoch e - 4
    want = [0.2 * (0.1 + 0.9 * e / 4) if e < 4 else
            0.01 + (0.2 - 0.01) * (1 + math.cos(math.pi * (e - 4) / 6)) / 2 for e in range(12)]
    np.testing.assert_allclose(lrs, want, rtol=1e-14)


def test_sequential_three_schedulers_and_state_dict():
    opt = _optimizer(lr=1.0)
    parts = [L.LambdaLR(opt, lambda e: 0.5), L.StepLR(opt, step_size=2, gamma=0.1),
             L.ExponentialLR(opt, gamma=0.5)]
    scheduler = L.SequentialLR(opt, parts, milestones=[2, 5])
    lrs = _run(opt, scheduler, 8)[:, 0]
    want = [0.5, 0.5, 1.0, 1.0, 0.1, 1.0, 0.5, 0.25]
    np.testing.assert_allclose(lrs, want, rtol=1e-15)
    state = scheduler.state_dict()
    opt2 = _optimizer(lr=1.0)
    again = L.SequentialLR(opt2, [L.LambdaLR(opt2, lambda e: 0.5),
                                  L.StepLR(opt2, step_size=2, gamma=0.1),
                                  L.ExponentialLR(opt2, gamma=0.5)], milestones=[2, 5])
    again.load_state_dict(state)
    again.step()
    scheduler.step()
    assert again.get_last_lr() == scheduler.get_last_lr() == [0.0625]  # Exponential, epoch 4


def test_a_nested_sequential_runs_the_schedule_it_runs_alone():
    def inner(opt):
        return L.SequentialLR(opt, [L.LinearLR(opt, 0.5, 1.0, total_iters=2),
                                    L.ExponentialLR(opt, gamma=0.5)], milestones=[2])

    opt = _optimizer(lr=0.1)
    alone = _run(opt, inner(opt), 5)[:, 0]
    np.testing.assert_allclose(alone, [0.05, 0.075, 0.1, 0.05, 0.025], rtol=1e-15)
    opt = _optimizer(lr=0.1)
    wrapped = _run(opt, L.SequentialLR(opt, [inner(opt)], milestones=[]), 5)[:, 0]
    np.testing.assert_array_equal(wrapped, alone)
    opt = _optimizer(lr=0.1)
    outer = L.SequentialLR(opt, [inner(opt), L.StepLR(opt, 2, gamma=0.1)], milestones=[5])
    np.testing.assert_allclose(_run(opt, outer, 8)[:, 0], [*alone, 0.1, 0.1, 0.01],
                               rtol=1e-15)
    # a second pass through the outer milestone restarts the inner one at its epoch 0
    opt = _optimizer(lr=0.1)
    again = L.SequentialLR(opt, [L.StepLR(opt, 1, gamma=0.1), inner(opt)], milestones=[2])
    np.testing.assert_allclose(_run(opt, again, 5)[:, 0], [0.1, 0.01, 0.05, 0.075, 0.1],
                               rtol=1e-15)


def test_two_schedulers_stepping_one_optimizer_raise_instead_of_overwriting(backend):
    opt = _optimizer(lr=1.0)
    decay = L.ExponentialLR(opt, gamma=0.5)
    warmup = L.LinearLR(opt, start_factor=0.25, total_iters=4)  # sets 0.25 at its epoch 0
    with pytest.raises(RuntimeError, match="ExponentialLR.step.*changed by LinearLR"):
        decay.step()  # would set 0.5 and drop the warm-up factor (PyTorch: 0.125)
    opt = _optimizer(lr=1.0)
    warmup = L.LinearLR(opt, start_factor=0.25, total_iters=4)
    decay = L.ExponentialLR(opt, gamma=0.5)
    with pytest.raises(RuntimeError, match="LinearLR.step.*changed by ExponentialLR"):
        warmup.step()
    # a manual edit is still overwritten by the next step, as documented
    opt = _optimizer(lr=1.0)
    decay = L.ExponentialLR(opt, gamma=0.5)
    opt.param_groups[0]["lr"] = 3.0
    decay.step()
    assert opt.param_groups[0]["lr"] == 0.5


def test_schedulers_do_not_keep_their_optimizer_alive():
    for plateau in (False, True):  # a plateau cut marks its scheduler as the lr's writer
        opt = _optimizer()
        scheduler = L.ReduceLROnPlateau(opt, patience=0) if plateau else L.StepLR(opt, 2)
        for metric in (1.0, 2.0):
            scheduler.step(metric) if plateau else scheduler.step()
        assert opt.param_groups[0]["lr"] < 0.1 or not plateau
        alive = weakref.ref(opt)
        del opt, scheduler
        gc.collect()
        assert alive() is None


def test_warmup_then_plateau_matches_torch_and_concurrent_cuts_raise(backend):
    torch = pytest.importorskip("torch")
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0]
    opt = _optimizer(lr=1.0)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ours = (L.LinearLR(opt, 0.25, total_iters=3), L.ReduceLROnPlateau(opt, patience=1))
    theirs = (torch.optim.lr_scheduler.LinearLR(topt, 0.25, total_iters=3),
              torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=1))
    for epoch, loss in enumerate(losses):  # warm-up first, then the plateau rule alone
        topt.step()  # as a training loop does (PyTorch warns otherwise)
        for scheduler in (ours, theirs):
            scheduler[0].step() if epoch < 3 else scheduler[1].step(loss)
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] < 1.0  # the plateau rule did cut
    # both stepped every epoch: fine until the plateau rule cuts, then the warm-up refuses
    opt = _optimizer(lr=1.0)
    warmup, plateau = L.LinearLR(opt, 0.5, total_iters=2), L.ReduceLROnPlateau(opt, patience=0)
    warmup.step()
    plateau.step(1.0)
    warmup.step()
    plateau.step(2.0)  # no improvement, patience 0: the lr is cut
    with pytest.raises(RuntimeError, match="changed by ReduceLROnPlateau"):
        warmup.step()


def test_sequential_bad_arguments():
    opt, other = _optimizer(), _optimizer()
    step = L.StepLR(opt, 2)
    with pytest.raises(ValueError, match="expected 1 milestones"):
        L.SequentialLR(opt, [step, L.StepLR(opt, 3)], milestones=[])
    with pytest.raises(ValueError, match="increasing"):
        L.SequentialLR(opt, [step, L.StepLR(opt, 3), L.StepLR(opt, 4)], milestones=[3, 3])
    with pytest.raises(ValueError, match="another optimizer"):
        L.SequentialLR(opt, [step, L.StepLR(other, 3)], milestones=[2])
    with pytest.raises(TypeError, match="epoch-driven"):
        L.SequentialLR(opt, [step, L.ReduceLROnPlateau(opt)], milestones=[2])
    with pytest.raises(ValueError, match="non-empty"):
        L.SequentialLR(opt, [], milestones=[])


# ------------------------------------------------------------------------------- against torch
def _torch_lrs(torch, make_scheduler, steps, lr=0.1, momentum=0.0, metrics=None, adam=False,
               groups=1):
    params = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(groups)]
    spec = [{"params": [p]} for p in params]
    opt = torch.optim.Adam(spec, lr=lr) if adam else torch.optim.SGD(spec, lr=lr,
                                                                      momentum=momentum)
    scheduler = make_scheduler(torch.optim.lr_scheduler, opt)
    lrs, moms = [], []
    for step in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append(opt.param_groups[0]["betas"][0] if adam else opt.param_groups[0]["momentum"])
        for p in params:
            p.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        scheduler.step() if metrics is None else scheduler.step(metrics[step])
    return np.array(lrs), np.array(moms)


def _our_lrs(make_scheduler, steps, lr=0.1, momentum=0.0, metrics=None, adam=False, groups=1):
    opt = _optimizer("adam" if adam else "sgd", lr=lr, groups=groups,
                     **({} if adam else {"momentum": momentum}))
    scheduler = make_scheduler(L, opt)
    lrs, moms = [], []
    for step in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append(opt.param_groups[0]["betas"][0] if adam else opt.param_groups[0]["momentum"])
        for group in opt.param_groups:
            group["params"][0].grad = mg.ones(3, dtype="float64")
        opt.step()
        scheduler.step() if metrics is None else scheduler.step(metrics[step])
    return np.array(lrs), np.array(moms)


TORCH_CASES = {
    "lambda": (lambda S, o: S.LambdaLR(o, [lambda e: 0.8**e, lambda e: 1 / (e + 1)]),
               {"groups": 2}),
    "linear": (lambda S, o: S.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=7), {}),
    "one-cycle": (lambda S, o: S.OneCycleLR(o, max_lr=0.3, total_steps=30), {"momentum": 0.9}),
    "one-cycle-3-linear": (lambda S, o: S.OneCycleLR(o, max_lr=[0.3, 0.5], total_steps=31,
                                                      three_phase=True,
                                                      anneal_strategy="linear"), {"groups": 2}),
    "one-cycle-adam": (lambda S, o: S.OneCycleLR(o, max_lr=0.01, epochs=5, steps_per_epoch=6),
                       {"adam": True}),
    "sequential": (lambda S, o: S.SequentialLR(o, [S.LinearLR(o, 0.1, total_iters=5),
                                                   S.CosineAnnealingLR(o, T_max=20)],
                                               milestones=[5]), {}),
    "sequential-3": (lambda S, o: S.SequentialLR(o, [S.ExponentialLR(o, 0.9),
                                                     S.StepLR(o, 3, 0.5),
                                                     S.LinearLR(o, 0.5, total_iters=4)],
                                                 milestones=[6, 15]), {}),
}


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_schedulers_match_torch(backend, name):
    torch = pytest.importorskip("torch")
    make, options = TORCH_CASES[name]
    steps = 30
    ours = _our_lrs(make, steps, **options)
    theirs = _torch_lrs(torch, make, steps, **options)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", PLATEAU_CASES)
def test_reduce_on_plateau_matches_torch(backend, case):
    torch = pytest.importorskip("torch")
    mode, factor, patience, threshold, threshold_mode, cooldown, min_lr = case
    metrics = list(np.round(np.cumsum(np.random.default_rng(3).normal(0, 1, 40)) / 4, 3))

    def make(S, o):
        return S.ReduceLROnPlateau(o, mode, factor, patience, threshold, threshold_mode,
                                   cooldown, min_lr)

    ours = _our_lrs(make, 40, metrics=metrics)[0]
    theirs = _torch_lrs(torch, make, 40, metrics=metrics)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-15)
