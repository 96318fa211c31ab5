"""File safety: loading never runs code from a file, and a failed save keeps the old file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import minigrad as mg
from minigrad import kernels, nn, serialization

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


# ------------------------------------------------------------ files that ask for too much
def _manifest(root) -> np.ndarray:
    text = json.dumps({"format": serialization.FORMAT, "version": serialization.VERSION,
                       "root": root})
    return np.frombuffer(text.encode(), np.uint8)


def _array_node(ref):
    return {"t": "array", "ref": ref, "tensor": False}


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _load_peak_bytes(path):
    """Load ``path`` expecting a ValueError naming it; return the peak bytes allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=path.name) as caught:
            mg.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return caught.value, peak


def test_a_small_compressed_file_cannot_ask_for_gigabytes(tmp_path):
    path = tmp_path / "bomb.npz"  # one 8 MB member of zeros, referenced a thousand times
    root = {"t": "list", "items": [_array_node("a0")] * 1000}
    np.savez_compressed(path, **{serialization.MANIFEST: _manifest(root),
                                 "a0": np.zeros(2**21, np.float32)})
    assert path.stat().st_size < 16_000
    error, peak = _load_peak_bytes(path)
    assert "compressed" in str(error)
    assert peak < 2**20


def test_a_member_referenced_twice_is_refused(tmp_path):
    path = tmp_path / "twice.npz"
    root = {"t": "list", "items": [_array_node("a0")] * 2}
    np.savez(path, **{serialization.MANIFEST: _manifest(root), "a0": np.zeros(8, np.float32)})
    error, _ = _load_peak_bytes(path)
    assert "'a0' is referenced more than once" in str(error)


def test_a_header_claiming_a_trillion_elements_is_refused_before_allocating(tmp_path):
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    member.write(b"\0" * 8)
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(serialization.MANIFEST + ".npy",
                   _npy_bytes(_manifest(_array_node("a0"))))
        z.writestr("a0.npy", member.getvalue())
    assert path.stat().st_size < 1000
    error, peak = _load_peak_bytes(path)
    assert "declares shape (1000000000000,) of float32" in str(error)
    assert "holds 8 bytes" in str(error)
    assert peak < 2**20


def test_members_hidden_inside_other_members_cannot_exceed_the_file_size(tmp_path):
    """Member a1's local header and data lie inside a0's data: distinct names, one set of
    bytes read twice. The file holds about 1 MB; the two members claim twice that."""
    inner = _npy_bytes(np.arange(2**18, dtype=np.float32))  # 1 MB
    inner_info = zipfile.ZipInfo("a1.npy")
    inner_info.file_size = inner_info.compress_size = len(inner)
    inner_info.CRC = zlib.crc32(inner)
    local_header = inner_info.FileHeader()
    outer = np.frombuffer(local_header + inner, np.uint8)
    path = tmp_path / "nested.npz"
    root = {"t": "list", "items": [_array_node("a0"), _array_node("a1")]}
    np.savez(path, **{serialization.MANIFEST: _manifest(root), "a0": outer})
    inner_info.header_offset = path.read_bytes().index(local_header + inner[:64])
    with zipfile.ZipFile(path, "a") as z:  # add a central-directory entry pointing inside a0
        z.filelist.append(inner_info)
        z.NameToInfo[inner_info.filename] = inner_info
        z._didModify = True
    with zipfile.ZipFile(path) as z:  # the crafted archive is readable as a zip
        assert z.read("a1.npy") == inner
    error, _ = _load_peak_bytes(path)
    assert "claim more bytes than the file holds" in str(error)


def test_random_bytes_are_not_a_save_file_and_no_pickle_advice_is_given(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="noise.bin.*not a minigrad save file") as caught:
        mg.load(path)
    assert "allow_pickle" not in str(caught.value)


def test_a_pickle_is_named_as_such(tmp_path):
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps({"w": np.ones(3)}))
    with pytest.raises(ValueError, match="state.pkl.*not a minigrad save file.*pickle") as caught:
        mg.load(path)
    assert "allow_pickle" not in str(caught.value)


# ------------------------------------------------------------------ permissions and links
@pytest.fixture
def umask():
    """Set the process umask for one test: ``umask(0o022)``; the old one comes back after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask022", "umask077", "umask002"])
def test_a_new_file_honours_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    mg.save({"w": np.ones(2)}, tmp_path / "new.npz")
    np.save(tmp_path / "numpy.npy", np.ones(2))
    assert _mode(tmp_path / "new.npz") == expected == _mode(tmp_path / "numpy.npy")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o444], ids=oct)
def test_an_existing_file_keeps_its_mode(tmp_path, umask, mode):
    path = tmp_path / "ckpt.npz"
    umask(0o022)
    mg.save({"version": 1}, path)
    os.chmod(path, mode)
    umask(0o077)
    mg.save({"version": 2}, path)
    assert _mode(path) == mode
    assert mg.load(path)["version"] == 2


def test_saving_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path, umask):
    umask(0o022)
    (tmp_path / "runs").mkdir()
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "ckpt-7.npz"
    mg.save({"version": 1}, target)
    os.chmod(target, 0o640)
    link = tmp_path / "runs" / "latest.npz"
    link.symlink_to(os.path.join("..", "store", "ckpt-7.npz"))
    mg.save({"version": 2}, link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "store", "ckpt-7.npz")
    assert mg.load(target)["version"] == 2 and mg.load(link)["version"] == 2
    assert _mode(target) == 0o640
    assert os.listdir(tmp_path / "runs") == ["latest.npz"]
    assert os.listdir(tmp_path / "store") == ["ckpt-7.npz"]


def test_saving_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "latest.npz"
    link.symlink_to("ckpt.npz")
    mg.save({"version": 1}, link)
    assert link.is_symlink() and (tmp_path / "ckpt.npz").is_file()
    assert mg.load(tmp_path / "ckpt.npz")["version"] == 1


def test_a_failed_save_through_a_symlink_keeps_the_target_and_the_link(tmp_path, monkeypatch):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "ckpt.npz"
    mg.save({"version": 1}, target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)

    def crash(f, members):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "_write_npz", crash)
    with pytest.raises(OSError, match="disk full"):
        mg.save({"version": 2}, link)
    assert link.is_symlink() and mg.load(target)["version"] == 1
    assert os.listdir(tmp_path / "store") == ["ckpt.npz"]
