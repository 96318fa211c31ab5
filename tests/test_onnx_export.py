"""export_onnx: the file passes onnx.checker and ONNX Runtime computes minigrad's eval-mode
outputs; what cannot be exported is named and nothing is written."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, serialization

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from minigrad.interop import UnsupportedLayerError, export_onnx  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _eval_output(model, x: np.ndarray) -> np.ndarray:
    modes = [m.training for m in model.modules()]
    model.eval()
    with mg.no_grad():
        y = model(mg.tensor(x, dtype=x.dtype)).numpy()
    for m, mode in zip(model.modules(), modes, strict=True):
        m.training = mode
    return y


def _check_export(model, x: np.ndarray, path, tol=TOL) -> None:
    """Export with a slice of ``x`` as the example; run all of ``x`` (another batch size)."""
    state = {k: v.copy() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    example = x[:2] if x.dtype != np.float64 else mg.tensor(x[:2], dtype=np.float64)
    export_onnx(model, example, path)
    onnx.checker.check_model(str(path), full_check=True)
    np.testing.assert_allclose(_run(path, x), _eval_output(model, x), **tol)
    assert [m.training for m in model.modules()] == modes  # each mode restored
    for key, value in model.state_dict().items():  # the export's forward changed nothing
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def _trained(model, x: np.ndarray, steps: int = 3):
    """Running statistics away from their initial values."""
    for k in range(steps):
        model(mg.tensor(x * (1 + k) + k, dtype=x.dtype))
    return model


def test_mlp_with_batch_norm_layer_norm_and_dropout(tmp_path):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(16, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 3))
    x = np.random.default_rng(0).standard_normal((9, 6)).astype(np.float32)
    _check_export(_trained(model, x), x, tmp_path / "mlp.onnx")


def test_cnn(tmp_path):
    mg.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Sequential(nn.Conv2d(8, 16, 3, stride=2),
                                                         nn.BatchNorm2d(16), nn.ReLU()),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    x = np.random.default_rng(1).standard_normal((5, 3, 12, 12)).astype(np.float32)
    _check_export(_trained(model, x), x, tmp_path / "cnn.onnx")


LAYERS = [
    (lambda: nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2, bias=False), (4, 3, 11)),
    (lambda: nn.Conv2d(4, 6, (3, 2), padding="same", dilation=(1, 2), groups=2), (3, 4, 7, 8)),
    (lambda: nn.BatchNorm1d(3), (5, 3, 4)),
    (lambda: nn.BatchNorm1d(3, affine=False), (5, 3)),
    (lambda: nn.BatchNorm2d(3, track_running_stats=False), (5, 3, 2, 2)),
    (lambda: nn.InstanceNorm1d(3), (4, 3, 6)),
    (lambda: nn.InstanceNorm1d(3, affine=True), (3, 6)),  # unbatched
    (lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (4, 3, 5, 5)),
    (lambda: nn.GroupNorm(3, 6), (4, 6, 5)),
    (lambda: nn.GroupNorm(2, 4, affine=False), (4, 4, 3, 3)),
    (lambda: nn.LayerNorm((3, 4), elementwise_affine=False), (2, 5, 3, 4)),
    (lambda: nn.RMSNorm(4), (3, 5, 4)),
    (lambda: nn.RMSNorm((2, 4), eps=1e-3, elementwise_affine=False), (3, 2, 4)),
    (lambda: nn.LeakyReLU(0.2), (4, 5)), (lambda: nn.Sigmoid(), (4, 5)),
    (lambda: nn.Tanh(), (4, 5)), (lambda: nn.SiLU(), (4, 5)), (lambda: nn.GELU(), (4, 5)),
    (lambda: nn.Softmax(dim=0), (4, 5)), (lambda: nn.LogSoftmax(dim=1), (4, 5, 2)),
    (lambda: nn.Flatten(), (3, 2, 3, 4)), (lambda: nn.Flatten(1, 2), (3, 2, 3, 4)),
    (lambda: nn.Flatten(0, 1), (3, 2, 3)), (lambda: nn.Identity(), (3, 4)),
    (lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=2), (2, 3, 11, 10)),
    (lambda: nn.MaxPool2d(2, ceil_mode=True), (2, 3, 7, 7)),
    (lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 3, 9, 8)),
    (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 3, 9, 8)),
    (lambda: nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False), (2, 3, 7, 7)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 8, 6)),
    (lambda: nn.AdaptiveAvgPool2d((None, 1)), (2, 3, 5, 6)),
]


@pytest.mark.parametrize("make, shape", LAYERS)
def test_each_layer_in_eval_mode(tmp_path, make, shape):
    mg.manual_seed(3)
    layer = make()
    for p in layer.parameters():  # weights away from the identity affine
        p.data[...] = np.random.default_rng(4).uniform(0.5, 1.5, p.shape)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    model = nn.Sequential(layer)
    _trained(model, x)
    path = tmp_path / "layer.onnx"
    if len(shape) == 2 and isinstance(layer, nn.InstanceNorm1d):  # unbatched: fixed shape
        export_onnx(model, x, path, dynamic_batch=False)
        np.testing.assert_allclose(_run(path, x), _eval_output(model, x), **TOL)
    else:
        _check_export(model, x, path)


def test_embedding_takes_integer_input(tmp_path):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.LayerNorm(4))
    ids = np.array([[1, 0, 9], [3, 3, 2], [0, 0, 0]], dtype=np.int64)
    _check_export(model, ids, tmp_path / "emb.onnx")


def test_float64_model(tmp_path):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5, dtype=np.float64), nn.Tanh(),
                          nn.Linear(5, 2, dtype=np.float64)).double()
    x = np.random.default_rng(0).standard_normal((4, 3))
    _check_export(model, x, tmp_path / "f64.onnx", tol=dict(rtol=1e-12, atol=1e-12))


def test_unsupported_layers_are_named_and_nothing_is_written(tmp_path):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x) + x

    class MyReLU(nn.ReLU):
        pass

    path = tmp_path / "bad.onnx"
    model = nn.Sequential(nn.Linear(2, 2), Block(), nn.Sequential(MyReLU()),
                          nn.ModuleList([nn.ReLU()]))
    with pytest.raises(UnsupportedLayerError) as info:
        export_onnx(model, np.zeros((1, 2), np.float32), path)
    message = str(info.value)
    assert "'1' (Block): no ONNX export (a Module with its own forward()" in message
    assert "'2.0' (MyReLU)" in message and "'3' (ModuleList)" in message
    with pytest.raises(UnsupportedLayerError, match=r"'0' \(MaxPool2d\): ceil_mode=True"):
        export_onnx(nn.Sequential(nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True)),
                    np.zeros((1, 1, 5, 5), np.float32), path)
    with pytest.raises(UnsupportedLayerError, match=r"AdaptiveAvgPool2d.*3x3 from input 7x7"):
        export_onnx(nn.Sequential(nn.AdaptiveAvgPool2d(3)), np.zeros((1, 1, 7, 7), np.float32),
                    path)
    table = nn.Embedding(4, 2, max_norm=1.0)
    table.weight.data[...] = 10.0  # rows a lookup would renormalise in place
    with pytest.raises(UnsupportedLayerError, match="the model itself.*max_norm"):
        export_onnx(table, np.zeros((1, 2), np.int64), path)
    assert (table.weight.data == 10.0).all()  # refused before the example ran
    with pytest.raises(TypeError, match="minigrad Module"):
        export_onnx(lambda x: x, np.zeros(1), path)
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    model = nn.Sequential(nn.Linear(2, 3))
    export_onnx(model, np.zeros((1, 2), np.float32), path)
    before = path.read_bytes()

    def die(fd):
        raise OSError("disk gone before the rename")

    monkeypatch.setattr(serialization.os, "fsync", die)
    with pytest.raises(OSError, match="disk gone"):
        export_onnx(nn.Sequential(nn.Linear(2, 4)), np.zeros((1, 2), np.float32), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.onnx"]


def test_without_onnx_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"minigrad-cython\[onnx\]"):
        export_onnx(nn.Linear(2, 2), np.zeros((1, 2), np.float32), tmp_path / "m.onnx")
