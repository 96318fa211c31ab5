"""File safety: loading never runs code from a file, and a failed save keeps the old file.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import minigrad as mg
from minigrad import kernels, nn

compiled = kernels.compiled


def _small_net():
    mg.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8),
                         nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3))


class _Exploit:
    """Unpickling this creates a marker file: the proof that code from a file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_never_runs_code_from_a_pickle(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ValueError, match="evil.pkl"):
        mg.load(path)
    assert not marker.exists()


def test_load_never_runs_code_from_an_object_member_with_a_valid_manifest(tmp_path):
    from minigrad import serialization

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    manifest = b'{"format": "minigrad.save", "version": 1, "root": {"t": "array", "ref": "a0"}}'
    payload = np.empty(1, dtype=object)
    payload[0] = _Exploit(str(marker))
    np.savez(path, **{serialization.MANIFEST: np.frombuffer(manifest, np.uint8), "a0": payload},
             allow_pickle=True)
    with pytest.raises(ValueError, match="evil.npz"):
        mg.load(path)
    assert not marker.exists()


def test_load_of_a_deeply_nested_manifest_raises_value_error(tmp_path):
    from minigrad import serialization

    depth = 100_000
    root = '{"t": "list", "items": [' * depth + ']}' * depth
    manifest = ('{"format": "minigrad.save", "version": 1, "root": ' + root + "}").encode()
    path = tmp_path / "deep.npz"
    np.savez(path, **{serialization.MANIFEST: np.frombuffer(manifest, np.uint8)})
    with pytest.raises(ValueError, match="deep.npz"):
        mg.load(path)


def test_save_into_a_missing_directory_names_it_and_writes_nothing(tmp_path):
    target = tmp_path / "no" / "such" / "ckpt.npz"
    with pytest.raises(FileNotFoundError, match="no/such"):
        mg.save({"w": np.ones(2)}, target)
    assert os.listdir(tmp_path) == []


def test_save_failing_midway_through_a_module_state_keeps_the_old_checkpoint(tmp_path,
                                                                             monkeypatch):
    from minigrad import serialization

    model = _small_net()
    path = tmp_path / "model.npz"
    mg.save(model.state_dict(), path)
    before = path.read_bytes()
    real_write = serialization._write_npz

    def write_then_die(f, members):
        real_write(f, members)  # a complete file reaches the temporary name...
        raise MemoryError("killed before the rename")  # ...but the rename never happens

    monkeypatch.setattr(serialization, "_write_npz", write_then_die)
    with pytest.raises(MemoryError):
        mg.save({"w": np.zeros(3)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    model.load_state_dict(mg.load(path))
