"""mg.save / mg.load: round trips, atomic writes, corrupt and foreign files."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim, serialization
from minigrad.serialization import load, save


def _nested():
    return {
        "model": {
            "0.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
            "0.bias": np.zeros(0, np.float64),
            "bn.running_var": np.ones((4,), np.float64),
            "strided": np.arange(20, dtype=np.int32)[::-3],
            "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "flags": np.array([True, False]),
            "scalar_array": np.array(2.5),
        },
        "optim": {
            "state": {"0": {"step": 3, "exp_avg": np.full((2, 3), 0.5)}},
            "param_groups": [
                {"lr": 0.1, "betas": (0.9, 0.999), "amsgrad": False, "params": [0, 1]}
            ],
        },
        "epoch": 7,
        "big_int": 2**70,
        "loss": 0.1 + 0.2,
        "inf": float("inf"),
        "nan": float("nan"),
        "np_float32": np.float32(1.5),
        "np_int64": np.int64(-4),
        "np_bool": np.bool_(True),
        "name": "run-1 ✓",
        "nothing": None,
        "empty": {},
        "list": [1, [2.0, None], (), "x"],
    }


def _assert_same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b
        if isinstance(a, np.generic):
            assert a.dtype == b.dtype


def test_round_trip_nested_structure(tmp_path):
    obj = _nested()
    save(obj, tmp_path / "ckpt.npz")
    _assert_same(obj, load(tmp_path / "ckpt.npz"))
    _assert_same(obj, load(str(tmp_path / "ckpt.npz")))


def test_tensors_are_saved_as_arrays(tmp_path):
    w = mg.tensor(np.arange(4.0).reshape(2, 2), requires_grad=True)
    save({"w": w, "ws": [w]}, tmp_path / "t.npz")
    loaded = load(tmp_path / "t.npz")
    assert isinstance(loaded["w"], np.ndarray)
    np.testing.assert_array_equal(loaded["w"], w.data)
    np.testing.assert_array_equal(loaded["ws"][0], w.data)


def test_module_and_optimizer_state_round_trip(tmp_path):
    mg.manual_seed(0)
    model = mg.nn.Sequential(mg.nn.Linear(3, 4), mg.nn.ReLU(), mg.nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    x = mg.randn(8, 3)
    model(x).sum().backward()
    opt.step()
    save({"model": model.state_dict(), "optim": opt.state_dict()}, tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(
            np.asarray(getattr(value, "data", value)), loaded["model"][key]
        )
    assert loaded["optim"]["state"][0]["step"] == 1  # int keys come back as ints


def test_unsupported_objects_raise_type_error_naming_the_key(tmp_path):
    path = tmp_path / "bad.npz"
    with pytest.raises(TypeError, match=r"\['model'\]\['w'\].*object"):
        save({"model": {"w": object()}}, path)
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        save({"a": {1.5: np.zeros(2)}}, path)
    with pytest.raises(TypeError, match=r"\['x'\]\[1\].*dtype object"):
        save({"x": [1, np.array([None])]}, path)
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"version": 1, "w": np.ones(3)}, path)

    def crash(f, members):
        f.write(b"PK\x03\x04 half a zip")  # some bytes reach the temporary file
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "_write_npz", crash)
    with pytest.raises(OSError, match="disk full"):
        save({"version": 2, "w": np.zeros(3)}, path)
    assert load(path)["version"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


def test_interrupted_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"version": 1}, path)
    monkeypatch.setattr(
        serialization.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        save({"version": 2}, path)
    monkeypatch.undo()
    assert load(path)["version"] == 1
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(tmp_path / "nope.npz")


def test_foreign_npz_raises_value_error_naming_file(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(ValueError, match="foreign.npz.*not a minigrad save file"):
        load(path)
    npy = tmp_path / "plain.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match="plain.npy"):
        load(npy)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "manifest"])
def test_corrupt_file_raises_value_error_naming_file(tmp_path, damage):
    path = tmp_path / "ckpt.npz"
    save(_nested(), path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x01not a zip file at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a well-formed zip whose manifest is not JSON
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(serialization.MANIFEST + ".npy", b"not an npy")
    with pytest.raises(ValueError, match="ckpt.npz"):
        load(path)


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "pickle.npz"
    np.savez(
        path,
        **{
            serialization.MANIFEST: np.frombuffer(b"{}", np.uint8),
            "a0": np.array([object()], dtype=object),
        },
    )
    with pytest.raises(ValueError, match="pickle.npz"):
        load(path)


@pytest.mark.parametrize("what", ["module", "optimizer", "nested module"])
def test_saving_a_module_or_optimizer_points_at_state_dict(tmp_path, what):
    model = mg.nn.Linear(3, 2)
    obj = {"module": model, "optimizer": optim.SGD(model.parameters(), lr=0.1),
           "nested module": {"model": model}}[what]
    path = tmp_path / "m.npz"
    with pytest.raises(TypeError, match=r"save its state dict instead.*\.state_dict\(\)"):
        save(obj, path)
    assert not path.exists()
