"""The two exact claims of docs/why_normalize.md (BatchNorm can undo itself; one sample in eval
mode gets the answer it gets in a batch) and a fast run of examples/why_normalize.py."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOLERANCE = {mg.float32: 2e-6, mg.float64: 1e-13}  # relative to the inputs' scale (about 5)


def _set(t: mg.Tensor, values: np.ndarray) -> None:
    with mg.no_grad():
        t.copy_(mg.from_numpy(np.ascontiguousarray(values, dtype=t.dtype)))


@pytest.mark.parametrize("dtype", [mg.float32, mg.float64])
@pytest.mark.parametrize("shape", [(32, 6), (8, 3, 5, 5)])
def test_batchnorm_with_gamma_std_and_beta_mean_is_the_identity(backend, rng, dtype, shape):
    x = rng.normal(3.0, 2.0, size=shape) * rng.uniform(0.1, 10, size=shape[1])[
        (slice(None),) + (None,) * (len(shape) - 2)]
    x = x.astype(dtype)
    bn = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(shape[1]).to(dtype)
    axes = (0,) + tuple(range(2, len(shape)))
    stats = x.astype(np.float64)
    _set(bn.weight, np.sqrt(stats.var(axis=axes) + bn.eps))  # the biased batch variance
    _set(bn.bias, stats.mean(axis=axes))
    y = bn(mg.from_numpy(x)).numpy()
    assert y.dtype == dtype
    np.testing.assert_allclose(y, x, rtol=0, atol=TOLERANCE[dtype] * np.abs(x).max())
    # and a wrong gamma is not the identity: the check can fail
    _set(bn.weight, 1.01 * np.sqrt(stats.var(axis=axes) + bn.eps))
    assert np.abs(bn(mg.from_numpy(x)).numpy() - x).max() > 1e-3


def test_batchnorm_in_eval_mode_with_running_statistics_is_the_identity(backend, rng):
    bn = nn.BatchNorm1d(4).double()
    for _ in range(5):  # move the running statistics away from 0 and 1
        bn(mg.tensor(rng.normal(2.0, 3.0, size=(16, 4)), dtype=mg.float64))
    bn.eval()
    _set(bn.weight, np.sqrt(bn.running_var.numpy() + bn.eps))
    _set(bn.bias, bn.running_mean.numpy())
    x = rng.normal(size=(1, 4)) * 7  # any input, one sample is enough in eval mode
    np.testing.assert_allclose(bn(mg.tensor(x, dtype=mg.float64)).numpy(), x, rtol=0,
                               atol=1e-13 * np.abs(x).max())


def _trained_net(rng, norm) -> tuple[nn.Module, np.ndarray]:
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), norm(8), nn.ReLU(), nn.Linear(8, 3)).double()
    for _ in range(3):  # training-mode passes move BatchNorm's running statistics
        model(mg.tensor(rng.normal(size=(10, 6)), dtype=mg.float64))
    return model, rng.normal(size=(7, 6))


def test_batchnorm_refuses_one_sample_in_training_mode(backend, rng):
    model, x = _trained_net(rng, nn.BatchNorm1d)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 8\)"):
        model(mg.tensor(x[:1], dtype=mg.float64))


def test_batchnorm_in_eval_mode_answers_one_sample_as_in_a_batch(backend, rng):
    model, x = _trained_net(rng, nn.BatchNorm1d)
    model.eval()
    together = model(mg.tensor(x, dtype=mg.float64)).numpy()
    for i in range(len(x)):
        alone = model(mg.tensor(x[i : i + 1], dtype=mg.float64)).numpy()
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-12, atol=1e-12)
    # in training mode the batch's own statistics make a sample's answer depend on the others
    model.train()
    first = model(mg.tensor(x, dtype=mg.float64)).numpy()[0]
    other = model(mg.tensor(x[[0, 1, 2]], dtype=mg.float64)).numpy()[0]
    assert np.abs(first - other).max() > 1e-3


def test_layernorm_answers_one_sample_as_in_a_batch_even_in_training_mode(backend, rng):
    model, x = _trained_net(rng, nn.LayerNorm)
    together = model(mg.tensor(x, dtype=mg.float64)).numpy()
    alone = np.concatenate([model(mg.tensor(x[i : i + 1], dtype=mg.float64)).numpy()
                            for i in range(len(x))])
    np.testing.assert_allclose(alone, together, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the example
@pytest.fixture
def why(monkeypatch):
    """examples/why_normalize.py as a module (it imports its sibling ``common``)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("why_normalize")


def test_shift_measures_the_move_in_units_of_the_std(why, rng):
    before = rng.normal(size=(500, 3)) * [1.0, 2.0, 4.0]
    moved = before + before.std(axis=0) * 0.5  # every mean moves half a std, stds stay
    assert why._shift(before, moved) == pytest.approx(0.5)
    wider = before * 1.25 + before.mean(axis=0) * -0.25  # stds grow 25%, means stay
    assert why._shift(before, wider) == pytest.approx(0.25)
    dead = np.zeros((500, 3))  # no live feature: no distribution to move
    assert np.isnan(why._shift(dead, dead + 1))


def test_measuring_along_the_gradient_leaves_the_model_as_it_was(why, rng):
    model = why.build("batchnorm", nn.ReLU, width=8, depth=2, seed=0)
    x = mg.tensor(rng.random((16, 64)))
    y = mg.tensor(rng.integers(0, 10, 16))
    state = {k: v.copy() for k, v in model.state_dict().items()}
    spread, change, beta = why._along_gradient(model, x, y, np.array([0.1, 0.2]))
    assert spread > 0 and change > 0 and beta > 0
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_the_example_runs_end_to_end(why, tmp_path, capsys):
    pytest.importorskip("sklearn")
    argv = ["--steps", "12", "--every", "4", "--probe", "32", "--width", "8", "--depth", "2",
            "--lrs", "0.1", "--sigmoid-lrs", "0.5", "--out", str(tmp_path)]
    assert why.main(argv) == 0
    out = capsys.readouterr().out
    identity = float(out.split("beta = mean: ")[1].split()[0])
    assert identity < 1e-12
    assert "more than 1 value per channel" in out
    if importlib.util.find_spec("matplotlib") is not None:
        names = ["shift", "saturation", "smoothness", "speed"]
        for name in names:
            assert (tmp_path / f"why_normalize_{name}.png").stat().st_size > 5000
