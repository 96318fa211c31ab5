"""minigrad.viz.Monitor: its numbers against the same quantities computed by hand on a twin
model, its sampling, its removal, and that it never changes what the model computes."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from minigrad.viz import Monitor


def _model(seed: int = 0) -> nn.Sequential:
    mg.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5),
                         nn.Sigmoid(), nn.Linear(5, 3)).double()


def _batch(rng, n: int = 8):
    return (mg.tensor(rng.normal(size=(n, 4)) * 3, dtype=mg.float64),
            mg.tensor(rng.integers(0, 3, n)))


def _step(model, optimizer, x, y) -> None:
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def _expected_step(model, optimizer, x, y) -> dict[tuple[str, str], float]:
    """One training step of an unmonitored model, with every metric computed plainly."""
    out: dict[tuple[str, str], float] = {}
    before = {str(i): m.weight.numpy().copy() for i, m in enumerate(model) if hasattr(m, "weight")}
    bn = model[1]
    rmean, rvar = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    optimizer.zero_grad()
    h = x
    for i, layer in enumerate(model):
        z = h.numpy()
        h = layer(h)
        a = h.numpy()
        out[str(i), "mean"], out[str(i), "std"] = a.mean(), a.std()
        if isinstance(layer, nn.Sigmoid):
            out[str(i), "saturated"] = np.mean(np.abs(z) > 4.0)
        if isinstance(layer, nn.ReLU):
            out[str(i), "dead"] = np.mean(np.all(a == 0, axis=0))
        if isinstance(layer, nn.BatchNorm1d):
            out[str(i), "bn_mean_gap"] = np.mean(np.abs(z.mean(0) - rmean) / np.sqrt(rvar + 1e-5))
            out[str(i), "bn_var_ratio"] = np.mean(z.var(0) / rvar)
    F.cross_entropy(h, y).backward()
    for name in before:
        out[name, "grad_norm"] = np.linalg.norm(model[int(name)].weight.grad.numpy())
    optimizer.step()
    for name, w in before.items():
        out[name, "update_ratio"] = (np.linalg.norm(model[int(name)].weight.numpy() - w)
                                     / np.linalg.norm(w))
    return out


def test_monitor_numbers_match_a_hand_computation(rng):
    watched, plain = _model(), _model()
    with mg.no_grad():  # start with the running statistics away from 0 and 1
        watched[1].running_mean.copy_(mg.tensor([0.5, -1, 2, 0, 1, 3], dtype=mg.float64))
        plain[1].running_mean.copy_(watched[1].running_mean)
    opt_w = optim.SGD(watched.parameters(), lr=0.3, momentum=0.9)
    opt_p = optim.SGD(plain.parameters(), lr=0.3, momentum=0.9)
    monitor = Monitor(watched, every=1)
    expected = []
    for _ in range(4):
        x, y = _batch(rng)
        _step(watched, opt_w, x, y)
        expected.append(_expected_step(plain, opt_p, x, y))
    watched(x)  # one more call closes step 4 (its update ratio)
    assert monitor.step == 5
    checked = 0
    for step, values in enumerate(expected, start=1):
        for (layer, metric), value in values.items():
            steps, got = monitor.series(layer, metric)
            assert step in steps, (layer, metric, step)
            np.testing.assert_allclose(got[list(steps).index(step)], value, rtol=1e-9,
                                       atol=1e-12, err_msg=f"{layer} {metric} step {step}")
            checked += 1
    assert checked == 4 * 24
    assert monitor.kinds["1"] == "BatchNorm1d" and monitor.layers[0] == "0"


def test_the_monitor_changes_nothing_the_model_computes(rng):
    watched, plain = _model(), _model()
    opt_w = optim.Adam(watched.parameters(), lr=0.01)
    opt_p = optim.Adam(plain.parameters(), lr=0.01)
    Monitor(watched, every=2)
    for _ in range(5):
        x, y = _batch(rng)
        _step(watched, opt_w, x, y)
        _step(plain, opt_p, x, y)
    for (name, a), b in zip(watched.state_dict().items(), plain.state_dict().values(),
                            strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_every_samples_steps_and_eval_calls_are_not_steps(rng):
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, every=3)
    for _ in range(7):
        _step(model, opt, *_batch(rng))
        model.eval()
        with mg.no_grad():
            model(_batch(rng)[0])  # an accuracy check between steps
        model.train()
    assert monitor.step == 7
    for metric in ("mean", "grad_norm", "update_ratio"):
        steps, _ = monitor.series("0", metric)
        assert steps.tolist() == ([1, 4, 7] if metric != "update_ratio" else [1, 4, 7])


def test_remove_takes_every_hook_away(rng):
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, every=1)
    _step(model, opt, *_batch(rng))
    monitor.remove()
    assert "removed" in repr(monitor)
    for m in model.modules():
        assert m.__dict__.get("_hooks") is None, m
    counts = {k: len(v) for k, v in monitor._records.items()}
    for _ in range(3):
        _step(model, opt, *_batch(rng))
    assert monitor.step == 1
    assert {k: len(v) for k, v in monitor._records.items()} == counts
    with Monitor(model, every=1) as second:
        _step(model, opt, *_batch(rng))
    assert second.step == 1 and all(m.__dict__.get("_hooks") is None for m in model.modules())


def test_saturation_and_dead_units_are_counted_exactly():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh())
    with mg.no_grad():
        model[0].weight.copy_(mg.tensor([[1, 0], [0, 1], [0, 0], [1, 1]]))
        model[0].bias.copy_(mg.tensor([0, 0, -1, -100]))  # unit 2 and 3 never fire
        model[2].weight.copy_(mg.tensor(np.eye(4) * 10))
        model[2].bias.zero_()
    monitor = Monitor(model, every=1)
    x = mg.tensor([[1.0, 0.1], [0.3, 0.2], [0.05, 0.6]])
    model(x).sum().backward()
    assert monitor.series("1", "dead")[1].tolist() == [0.5]
    z = np.maximum(x.numpy() @ np.eye(2, 4), 0) * 10  # the tanh's input: units 0, 1 live
    assert monitor.series("3", "saturated")[1][0] == pytest.approx(np.mean(np.abs(z) > 4))
    assert 0 < np.mean(np.abs(z) > 4) < 1


def test_batchnorm2d_statistics_over_batch_and_space(rng):
    model = nn.Sequential(nn.BatchNorm2d(3))
    monitor = Monitor(model, every=1)
    x = rng.normal(2.0, 3.0, size=(4, 3, 5, 5))
    model(mg.tensor(x)).sum().backward()
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    assert monitor.series("0", "bn_mean_gap")[1][0] == pytest.approx(
        np.mean(np.abs(mean) / np.sqrt(1 + 1e-5)), rel=1e-5)
    assert monitor.series("0", "bn_var_ratio")[1][0] == pytest.approx(np.mean(var), rel=1e-5)


def test_bad_arguments_and_missing_series_name_the_problem(rng):
    with pytest.raises(TypeError, match="nn.Module"):
        Monitor(lambda x: x)
    for every in (0, 1.5, True):
        with pytest.raises(ValueError, match="every"):
            Monitor(_model(), every=every)
    with pytest.raises(ValueError, match="saturation"):
        Monitor(_model(), saturation=0)
    monitor = Monitor(_model(), every=1)
    with pytest.raises(KeyError, match="no records for layer 'nope'"):
        monitor.series("nope", "mean")
    monitor.model(_batch(rng)[0])
    with pytest.raises(KeyError, match=r"no 'dead' for layer '0'; it has \['mean', 'std'"):
        monitor.series("0", "dead")


def test_plot_writes_a_picture_and_refuses_an_empty_monitor(tmp_path, rng):
    pytest.importorskip("matplotlib")
    model = _model()
    monitor = Monitor(model, every=1)
    with pytest.raises(ValueError, match="recorded nothing"):
        monitor.plot(tmp_path / "empty.png")
    opt = optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        _step(model, opt, *_batch(rng))
    monitor.plot(tmp_path / "monitor.png")
    assert (tmp_path / "monitor.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        monitor.plot(tmp_path / "monitor.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor.png"]


def test_the_see_inside_example_runs(monkeypatch, tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "examples"))
    example = importlib.import_module("see_inside")
    assert example.main(["--epochs", "1", "--every", "2", "--out", str(tmp_path)]) == 0
    for name in ("graph_digits.png", "monitor_digits.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    # the timing mode runs (how long it takes is for a person to read, not for a test)
    assert example.main(["--overhead", "--repeats", "2", "--block", "2"]) == 0
    assert "every=1 " in capsys.readouterr().out


def test_hooks_stay_on_while_steps_are_sampled_and_are_off_in_between(rng, monkeypatch):
    attached = []
    monkeypatch.setattr(Monitor, "_attach", lambda self, real=Monitor._attach: (
        attached.append(self.step), real(self)))
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, every=1)
    for _ in range(5):
        _step(model, opt, *_batch(rng))
    assert attached == [1]  # once for five consecutive sampled steps
    model.eval()
    with mg.no_grad():
        model(_batch(rng)[0])  # an eval call takes the hooks off ...
    assert all(m.__dict__.get("_hooks") is None for m in model[1:])
    model.train()
    _step(model, opt, *_batch(rng))
    assert attached == [1, 6] and monitor.series("0", "mean")[0].tolist() == [1, 2, 3, 4, 5, 6]
    monitor.remove()

    attached.clear()
    monitor = Monitor(model, every=3)
    for step in range(1, 8):
        _step(model, opt, *_batch(rng))
        hooked = model[0].__dict__.get("_hooks") is not None
        assert hooked == (step % 3 == 1), step  # ... and so does a step that is not sampled
    assert attached == [1, 4, 7]


def test_a_layer_called_twice_in_a_step_keeps_its_last_call(rng):
    mg.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 6), relu, nn.Linear(6, 6), relu).double()
    monitor = Monitor(model, every=1)
    x = mg.tensor(rng.normal(size=(8, 4)), dtype=mg.float64)
    for _ in range(2):
        model(x).sum().backward()
    last = model(x).numpy()  # a third step, with the same weights (no optimizer)
    steps, means = monitor.series("1", "mean")
    assert steps.tolist() == [1, 2, 3]
    np.testing.assert_allclose(means[-1], last.mean(), rtol=1e-12)
    first = np.maximum(x.numpy() @ model[0].weight.numpy().T + model[0].bias.numpy(), 0)
    assert not np.isclose(means[-1], first.mean())  # not the first call's output


def test_a_weight_that_changes_shape_gets_no_update_ratio_for_that_step(rng):
    model = nn.Sequential(nn.Linear(5, 3)).double()
    monitor = Monitor(model, every=1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = mg.tensor(rng.normal(size=(4, 5)), dtype=mg.float64), mg.tensor([0, 1, 2, 0])
    _step(model, opt, x, y)
    model[0].weight._data = rng.normal(size=(3, 5))  # the same shape: compared
    _step(model, opt, x, y)
    model[0].weight._data = np.zeros((2, 5))  # another shape: nothing to compare with
    model[0].bias._data = np.zeros(2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    _step(model, opt, x, mg.tensor([0, 1, 1, 0]))
    model(x)
    steps, ratios = monitor.series("0", "update_ratio")
    assert steps.tolist() == [1, 3]  # zero weights at step 3's start: NaN, not an error
    assert np.isfinite(ratios[0]) and np.isnan(ratios[1])
