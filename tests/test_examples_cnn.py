"""The CNN example scripts end to end: arguments, data loading, training loop, saving and
plotting, with a small stand-in model where the convolution layers are not the point."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import datasets, nn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HAS_CNN_LAYERS = all(
    hasattr(nn, name) for name in ("Conv2d", "MaxPool2d", "AdaptiveAvgPool2d", "BatchNorm2d")
)
needs_cnn_layers = pytest.mark.skipif(not HAS_CNN_LAYERS, reason="no convolution layers")


@pytest.fixture
def example(monkeypatch):
    """Import an example script as a module; like the scripts themselves, it imports its
    sibling ``common``, so the examples folder goes on sys.path for this test only."""
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name):
        return importlib.import_module(name)

    return load


def _mlp(pixels: int) -> nn.Module:
    """A stand-in for the CNN: flattens the (N, 1, H, W) images it is given."""
    return nn.Sequential(nn.Flatten(), nn.Linear(pixels, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, 10))


def _check_outputs(out: Path, model_file: str, plot_file: str, model: nn.Module) -> None:
    """The saved file restores the trained model; the plot exists when matplotlib does."""
    pixels = model[1].in_features
    fresh = _mlp(pixels)
    fresh.load_state_dict(mg.load(out / model_file))
    x = mg.tensor(np.random.default_rng(0).random((4, pixels), dtype=np.float32))
    model.eval()
    fresh.eval()
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / plot_file).stat().st_size > 1000


def test_digits_cnn_pipeline(example, monkeypatch, tmp_path, capsys):
    pytest.importorskip("sklearn")
    script = example("train_digits_cnn")
    built = []
    monkeypatch.setattr(script, "build_model", lambda: built.append(_mlp(64)) or built[-1])
    assert script.main(["--epochs", "4", "--out", str(tmp_path), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "1438 train / 359 test samples" in printed
    assert printed.count("test accuracy") == 5  # four epochs and the final line
    final = float(printed.split("final test accuracy: ")[1].split("%")[0]) / 100
    assert final > 0.85  # the stand-in learns: data, labels and loop fit together
    _check_outputs(tmp_path, "digits_cnn.npz", "digits_cnn_training.png", built[0])
    args = script.parse_args([])
    assert (args.epochs, args.batch_size, args.lr, args.seed) == (30, 64, 0.01, 0)


def _write_idx(root: Path, split: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    images[np.arange(n), labels, labels] = 255  # a learnable pattern: a dot where the label is
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
        (root / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes()))


def test_mnist_cnn_pipeline(example, monkeypatch, tmp_path, capsys):
    root = tmp_path / "fashion"
    root.mkdir()
    _write_idx(root, "train", 300, seed=0)
    _write_idx(root, "t10k", 50, seed=1)
    script = example("train_mnist_cnn")
    built = []
    monkeypatch.setattr(script, "build_model", lambda: built.append(_mlp(784)) or built[-1])
    out = tmp_path / "out"
    argv = ["--kind", "fashion", "--root", str(root), "--limit", "200", "--epochs", "5",
            "--batch-size", "32", "--lr", "0.01", "--out", str(out), "--no-download"]
    assert script.main(argv) == 0
    printed = capsys.readouterr().out
    assert "fashion: 200 train / 50 test images" in printed
    final = float(printed.split("final test accuracy: ")[1].split("%")[0]) / 100
    assert final > 0.8
    _check_outputs(out, "fashion_cnn.npz", "fashion_cnn_training.png", built[0])


def test_mnist_cnn_without_files_explains_and_exits_2(example, monkeypatch, tmp_path, capsys):
    script = example("train_mnist_cnn")

    def no_network(url):
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets, "_open_url", no_network)
    root = tmp_path / "mnist"
    for extra in ([], ["--no-download"]):
        assert script.main(["--root", str(root), *extra]) == 2
        message = capsys.readouterr().err
        assert str(root) in message and f"--root {root}" in message
        for name in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3",
                     "t10k-labels-idx1"):
            assert f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}-ubyte.gz" in message
        assert ("network is unreachable" in message) == (not extra)
    assert script.parse_args(["--kind", "fashion"]).root == Path("data") / "fashion"
    with pytest.raises(SystemExit):
        script.parse_args(["--limit", "0"])


@needs_cnn_layers
@pytest.mark.parametrize(
    "name, shape, parameters",
    [("train_digits_cnn", (5, 1, 8, 8), 5226), ("train_mnist_cnn", (3, 1, 28, 28), 50378)],
)
def test_example_models(example, name, shape, parameters):
    model = example(name).build_model()
    assert sum(p.data.size for p in model.parameters()) == parameters
    model.train()
    logits = model(mg.tensor(np.random.default_rng(0).random(shape, dtype=np.float32)))
    assert logits.shape == (shape[0], 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@needs_cnn_layers
def test_digits_cnn_trains(example, tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert example("train_digits_cnn").main(["--epochs", "3", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert float(printed.split("final test accuracy: ")[1].split("%")[0]) > 80


def _table(printed: str) -> dict[tuple[str, ...], float]:
    """Rows of the study's table: (first column..., lr, norm) -> final accuracy in [0, 1]."""
    rows = {}
    for line in printed.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-2].endswith("%"):
            rows[tuple(parts[:-3])] = float(parts[-2].rstrip("%")) / 100
    return rows


@needs_cnn_layers
@pytest.mark.parametrize("norm", ["none", "batchnorm", "groupnorm", "layernorm"])
def test_normalization_study_cnn_models(example, norm):
    study = example("normalization_study")
    model = study.build_cnn(norm)
    kinds = [type(m).__name__ for m in model]
    expected = {"none": None, "batchnorm": "BatchNorm2d", "groupnorm": "GroupNorm",
                "layernorm": "LayerNorm"}[norm]
    assert kinds.count(expected) == (2 if expected else 0)
    assert kinds.count("Conv2d") == 2 and kinds[-1] == "Linear"
    x = mg.tensor(np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    model.train()
    logits = model(x)
    assert logits.shape == (3, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@needs_cnn_layers
def test_normalization_study_cnn_panel(example, tmp_path, capsys):
    pytest.importorskip("sklearn")
    study = example("normalization_study")
    argv = ["--panel", "cnn", "--cnn-epochs", "2", "--cnn-lrs", "0.3", "--out", str(tmp_path)]
    assert study.main(argv) == 0
    printed = capsys.readouterr().out
    rows = _table(printed)
    assert set(rows) == {("0.3", norm) for norm in study.CNN_NORMS}
    assert "MLP" not in printed
    assert rows["0.3", "batchnorm"] > 0.5  # two epochs are enough to leave chance behind
    assert not (tmp_path / "normalization_study.png").exists()
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "normalization_study_cnn.png").stat().st_size > 1000


def test_normalization_study_mlp_panel(example, tmp_path, capsys):
    pytest.importorskip("sklearn")
    study = example("normalization_study")
    argv = ["--panel", "mlp", "--epochs", "2", "--lrs", "0.03", "--depths", "2",
            "--out", str(tmp_path)]
    assert study.main(argv) == 0
    printed = capsys.readouterr().out
    rows = _table(printed)
    assert set(rows) == {("2", "0.03", norm) for norm in study.MLP_NORMS}
    assert "CNN" not in printed
    assert rows["2", "0.03", "batchnorm"] > 0.8
    assert not (tmp_path / "normalization_study_cnn.png").exists()
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "normalization_study.png").stat().st_size > 1000
    assert study.parse_args([]).panel == "all"
    with pytest.raises(SystemExit):
        study.parse_args(["--cnn-epochs", "0"])
