"""mg.save / mg.load of .safetensors files: round trips, what other readers see, the atomic
write, and files that are corrupt, truncated or hostile."""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import tracemalloc

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, serialization

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _net():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model(mg.tensor(np.random.default_rng(0).standard_normal((5, 4))))
    return model


def test_a_state_dict_round_trips_in_order_and_other_readers_see_it(tmp_path):
    model = _net()
    path = tmp_path / "model.safetensors"
    mg.save(model.state_dict(), path)
    loaded = mg.load(path)
    state = model.state_dict()
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].flags.writeable
    assert loaded["1.num_batches_tracked"].shape == () and loaded["1.num_batches_tracked"] == 1
    theirs = safetensors_numpy.load_file(str(path))
    assert theirs.keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(theirs[key], value)
    fresh = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    fresh.load_state_dict(mg.load(path))
    np.testing.assert_array_equal(fresh[1].running_var.numpy(), model[1].running_var.numpy())


def test_tensors_odd_layouts_and_dtypes_are_saved_as_their_values(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    arrays = {
        "transposed": base.T,
        "strided": base[::2, 1::3],
        "big_endian": np.arange(5, dtype=">i4"),
        "flags": np.array([True, False, True]),
        "empty": np.zeros((0, 3), np.float32),
        "scalar": np.array(2.5, np.float32),
        "tensor": mg.tensor([[1.0, 2.0]], requires_grad=True),
    }
    path = tmp_path / "odd.SafeTensors"  # the suffix is matched in any letter case
    mg.save(arrays, path)
    loaded = mg.load(path)
    for key, value in arrays.items():
        expected = value.numpy() if isinstance(value, mg.Tensor) else value
        assert loaded[key].shape == expected.shape, key
        np.testing.assert_array_equal(loaded[key], expected, err_msg=key)
    assert loaded["big_endian"].dtype == np.dtype("<i4")


@pytest.mark.parametrize("obj, match", [
    ({"model": {"w": np.ones(2)}}, "'model'.*flat dict"),
    ({"lr": 0.1}, "'lr'"),
    ({3: np.ones(2)}, "key 3"),
    ({"s": np.array(["a"])}, "dtype <U1"),
    ({"c": np.ones(2, np.complex64)}, "complex64"),
    ([np.ones(2)], "got list"),
])
def test_what_the_format_cannot_hold_raises_type_error_and_writes_nothing(tmp_path, obj, match):
    with pytest.raises(TypeError, match=match):
        mg.save(obj, tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    mg.save(_net().state_dict(), path)
    before = path.read_bytes()

    def die(fd):
        raise OSError("disk gone before the rename")

    monkeypatch.setattr(serialization.os, "fsync", die)  # the whole file is written by now
    with pytest.raises(OSError, match="disk gone"):
        mg.save({"w": np.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_missing_directory_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such"):
        mg.save({"w": np.ones(2)}, tmp_path / "no" / "such" / "m.safetensors")
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        mg.load(tmp_path / "absent.safetensors")


def test_saving_through_a_symlink_replaces_its_target(tmp_path):
    target = tmp_path / "ckpt.safetensors"
    mg.save({"v": np.array(1)}, target)
    link = tmp_path / "latest.safetensors"
    link.symlink_to("ckpt.safetensors")
    mg.save({"v": np.array(2)}, link)
    assert link.is_symlink() and mg.load(target)["v"] == 2


def _header_file(path, header: bytes, body: bytes = b"") -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + body)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _hostile_files(tmp_path):
    yield "random", lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096))
    yield "empty", lambda p: p.write_bytes(b"")
    yield "header_length_beyond_the_file", lambda p: p.write_bytes(struct.pack("<Q", 2**40))
    yield "truncated", lambda p: p.write_bytes(
        safetensors_numpy.save({"w": np.ones(1000, np.float32)})[:-100])
    yield "claims_a_trillion_floats", lambda p: _header_file(
        p, b'{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4]}}', b"\0" * 4)
    yield "offsets_past_the_end", lambda p: _header_file(
        p, b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8000000000]}}', b"\0" * 8)
    yield "overlapping_tensors", lambda p: _header_file(
        p, b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
           b'"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', b"\0" * 8)
    yield "an_npz", lambda p: p.write_bytes(_npz_bytes(tmp_path))
    yield "a_pickle", lambda p: p.write_bytes(pickle.dumps(_Exploit(str(tmp_path / "pwned"))))


def _npz_bytes(tmp_path):
    mg.save({"w": np.ones(3)}, tmp_path / "real.npz")
    return (tmp_path / "real.npz").read_bytes()


@pytest.mark.parametrize("case", [name for name, _ in _hostile_files(None)])
def test_corrupt_and_hostile_files_raise_value_error_naming_the_file(tmp_path, case):
    make = dict(_hostile_files(tmp_path))[case]
    path = tmp_path / f"{case}.safetensors"
    make(path)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"{case}.safetensors"):
            mg.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # nothing near what the file claims was allocated
    assert not (tmp_path / "pwned").exists()


def test_the_reserved_metadata_name_is_refused_before_writing(tmp_path):
    # the package writes such a key into the header beside its own metadata: an unreadable file
    with pytest.raises(ValueError, match="__metadata__.*reserves"):
        mg.save({"w": np.ones(2), "__metadata__": np.zeros(2)}, tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("dtype, nbytes", [("BF16", 4), ("F8_E4M3", 2), ("F8_E5M2", 2)])
def test_a_dtype_numpy_lacks_raises_type_error_naming_tensor_and_dtype(tmp_path, dtype, nbytes):
    path = tmp_path / "half.safetensors"
    header = json.dumps({"ok": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         "w": {"dtype": dtype, "shape": [2], "data_offsets": [4, 4 + nbytes]}})
    header = header.encode()
    _header_file(path, header, b"\0" * (4 + nbytes))
    with pytest.raises(TypeError, match=f"half.safetensors.*'w' has dtype {dtype}"):
        mg.load(path)


def test_without_the_package_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"minigrad-cython\[safetensors\]"):
        mg.save({"w": np.ones(2)}, tmp_path / "m.safetensors")
    mg.save({"w": np.ones(2)}, tmp_path / "m.npz")  # the .npz path does not need it


def test_pytorch_loads_the_file_into_the_same_architecture(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = _net()
    path = tmp_path / "model.safetensors"
    mg.save(model.state_dict(), path)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 3))
    net.load_state_dict(safetensors_torch.load_file(str(path)))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[key].numpy(), value, err_msg=key)


def test_an_order_entry_that_is_not_a_name_falls_back_to_the_file_order(tmp_path):
    # a hand-made order list [1, "a"] matches the keys "1" and "a" once converted to str:
    # the loader looked up the int 1 and failed with a bare KeyError
    path = tmp_path / "order.safetensors"
    header = json.dumps({"1": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                         "__metadata__": {"minigrad.order": json.dumps([1, "a"])}}).encode()
    _header_file(path, header, np.array([1.0, 2.0], np.float32).tobytes())
    loaded = mg.load(path)
    assert list(loaded) == ["1", "a"]
    assert loaded["1"].tolist() == [1.0] and loaded["a"].tolist() == [2.0]
