"""read_idx and load_mnist on small IDX files written here (raw and .gz); the download path
with the network replaced by a stub, so no test ever leaves the machine."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tracemalloc
import urllib.error

import numpy as np
import pytest

import minigrad as mg
from minigrad import datasets
from minigrad.data import load_mnist, read_idx

CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray, dims: tuple[int, ...] | None = None, code: int | None = None):
    """The IDX encoding of ``array``, written out by hand; ``dims``/``code`` override the header."""
    array = np.asarray(array)
    dims = array.shape if dims is None else dims
    code = CODES[array.dtype.str[1:]] if code is None else code
    header = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, payload: bytes, gz: bool) -> str:
    """Write ``payload`` to ``path`` (``path.gz``, compressed, when ``gz``); return the path."""
    path = str(path) + (".gz" if gz else "")
    with open(path, "wb") as f:
        f.write(gzip.compress(payload) if gz else payload)
    return path


def make_split(root, split: str, n: int, gz: bool, seed: int = 0):
    """Write ``n`` random images and labels as ``<split>-images/labels`` files in ``root``."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, :2] = [0, 255]  # both ends of the pixel range
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    write(root / f"{split}-images-idx3-ubyte", idx_bytes(images), gz)
    write(root / f"{split}-labels-idx1-ubyte", idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("kind", ["mnist", "fashion"])
def test_load_mnist_reads_train_and_test_files(tmp_path, gz, kind):
    train_images, train_labels = make_split(tmp_path, "train", 7, gz, seed=1)
    test_images, test_labels = make_split(tmp_path, "t10k", 4, gz, seed=2)
    for train, images, labels in [(True, train_images, train_labels),
                                  (False, test_images, test_labels)]:
        X, y = load_mnist(tmp_path, kind, train=train, download=False)
        assert X.shape == (len(images), 1, 28, 28) and X.dtype == np.float32
        assert y.shape == (len(images),) and y.dtype == np.int64
        np.testing.assert_array_equal(X[:, 0], images.astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(y, labels)
    X, _ = load_mnist(str(tmp_path), kind, download=False)  # str root as well as a Path
    assert X[0, 0, 0, 0] == 0.0 and X[0, 0, 0, 1] == 1.0


def test_raw_file_is_preferred_over_gz(tmp_path):
    make_split(tmp_path, "t10k", 3, gz=True, seed=1)
    images, labels = make_split(tmp_path, "t10k", 5, gz=False, seed=2)
    X, y = load_mnist(tmp_path, train=False, download=False)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(X[:, 0] * 255, images)


def test_mixed_raw_and_gz_files(tmp_path):
    images, labels = make_split(tmp_path, "train", 3, gz=False)
    os.remove(tmp_path / "train-labels-idx1-ubyte")
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels), gz=True)
    _, y = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(y, labels)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_every_dtype_big_endian_to_native(tmp_path, dtype, gz):
    array = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    path = write(tmp_path / "x-idx", idx_bytes(array), gz)
    got = read_idx(path)
    np.testing.assert_array_equal(got, array)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative and got.flags.writeable
    got[0, 0, 0] = 1  # a copy: writing to it is allowed and touches no file


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_hostile_header_fails_before_allocating(tmp_path, gz):
    # 10^12 pixels declared, 784 present
    payload = idx_bytes(np.zeros((1, 28, 28), np.uint8), dims=(10**6, 1000, 1000))
    path = write(tmp_path / "train-images-idx3-ubyte", payload, gz)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="train-images-idx3-ubyte") as info:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "(1000000, 1000, 1000)" in str(info.value)
    assert peak < 1 << 20, f"{peak} bytes traced"


def test_gz_bomb_stops_at_the_declared_size(tmp_path):
    # a header for one image followed by 64 MB of zeros (64 kB compressed)
    payload = idx_bytes(np.zeros((1, 28, 28), np.uint8)) + bytes(64 << 20)
    path = write(tmp_path / "bomb-idx3-ubyte", payload, gz=True)
    del payload
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="bomb-idx3-ubyte.gz has data after the 784 bytes"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes traced"


def test_gz_claim_within_the_ratio_bound_reads_only_what_is_there(tmp_path):
    # 64 kB of incompressible pixels under a header declaring 60 MB: deflate could expand the
    # file that far, so only reading shows the lie, and memory must follow the data read
    pixels = np.random.default_rng(0).integers(0, 256, size=(80, 28, 28), dtype=np.uint8)
    payload = idx_bytes(pixels, dims=(76_000, 28, 28))
    path = write(tmp_path / "claim-idx3-ubyte", payload, gz=True)
    assert 76_000 * 784 < datasets._GZIP_MAX_RATIO * os.path.getsize(path)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="claim-idx3-ubyte.gz is truncated"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes traced"


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_and_overlong_files(tmp_path, gz):
    payload = idx_bytes(np.arange(100, dtype=np.uint8).reshape(4, 25))
    short = write(tmp_path / "short", payload[:-1], gz)
    with pytest.raises(ValueError, match=r"short(.gz)? is truncated"):
        read_idx(short)
    long = write(tmp_path / "long", payload + b"\0", gz)
    with pytest.raises(ValueError, match=r"long(.gz)? has (extra data|data after)"):
        read_idx(long)


def test_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="cut-idx1-ubyte.gz is not a complete gzip file"):
        read_idx(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cut-idx1-ubyte.gz is not a complete gzip file"):
        read_idx(path)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "not an IDX file"),
        (b"\x00\x00", "not an IDX file"),
        (b"PK\x03\x04" + bytes(100), "not an IDX file"),
        (bytes([0, 0, 0x07, 1]) + (4).to_bytes(4, "big") + bytes(4), "dtype code 0x07"),
        (bytes([0, 0, 0x08, 0]), "0 dimensions"),
        (bytes([0, 0, 0x08, 3]) + (4).to_bytes(4, "big"), "header is truncated"),
    ],
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_corrupt_headers(tmp_path, payload, message, gz):
    path = write(tmp_path / "bad-idx", payload, gz)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert "bad-idx" in str(info.value)


def test_read_idx_checks_declared_dtype_and_shape_first(tmp_path):
    path = write(tmp_path / "x", idx_bytes(np.zeros((2, 3), np.int32)), gz=False)
    with pytest.raises(ValueError, match=r"dtype uint8, got int32"):
        read_idx(path, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"shape \(any, 4\), got \(2, 3\)"):
        read_idx(path, shape=(None, 4))
    with pytest.raises(ValueError, match=r"shape \(any,\), got \(2, 3\)"):
        read_idx(path, shape=(None,))
    assert read_idx(path, dtype=np.int32, shape=(None, 3)).shape == (2, 3)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs and /dev/zero")
def test_read_idx_refuses_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo-idx")  # opening it for reading must not wait for a writer
    for path in (tmp_path / "fifo-idx", "/dev/zero"):
        with pytest.raises(ValueError, match="not a regular file"):
            read_idx(path)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.uint8), "3 images but .* 2 labels"),
        (np.zeros((3, 28, 27), np.uint8), np.zeros(3, np.uint8), r"shape \(any, 28, 28\)"),
        (np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8), r"shape \(any, 28, 28\)"),
        (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8), "dtype uint8"),
        (np.zeros((3, 28, 28), np.uint8), np.array([1, 10, 2], np.uint8), "label 10 at index 1"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8), r"shape \(any,\)"),
    ],
)
def test_load_mnist_rejects_inconsistent_files(tmp_path, images, labels, message):
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(images), gz=False)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(labels), gz=True)
    with pytest.raises(ValueError, match=message) as info:
        load_mnist(tmp_path, train=False, download=False)
    assert "t10k-" in str(info.value)


def test_load_mnist_arguments(tmp_path):
    with pytest.raises(ValueError, match='"mnist" or "fashion"'):
        load_mnist(tmp_path, "kmnist", download=False)
    with pytest.raises(TypeError, match="train must be a bool"):
        load_mnist(tmp_path, train="test", download=False)


# --------------------------------------------------------------------------- download path
def _no_network(url):
    raise urllib.error.URLError("Name or service not known")


def _serve(files: dict[str, bytes], log: list[str]):
    """A stand-in for the network: serves ``files`` by URL, records every request."""

    def open_url(url):
        log.append(url)
        if url not in files:
            raise urllib.error.URLError("404")
        return io.BytesIO(files[url])

    return open_url


def _fake_source(monkeypatch, split: str = "t10k", n: int = 4):
    """Replace the published digests of one split by those of small fake .gz files; return the
    mirrors, the fake images and labels, and the .gz bytes by file name."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    blobs = {
        f"{split}-images-idx3-ubyte": gzip.compress(idx_bytes(images)),
        f"{split}-labels-idx1-ubyte": gzip.compress(idx_bytes(labels)),
    }
    mirrors, digests = datasets._SOURCES["mnist"]
    digests = dict(digests, **{name: hashlib.md5(b).hexdigest() for name, b in blobs.items()})
    monkeypatch.setitem(datasets._SOURCES, "mnist", (mirrors, digests))
    return mirrors, images, labels, blobs


def test_missing_files_without_download_name_files_urls_and_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_open_url", _serve({}, log := []))
    root = tmp_path / "fashion"
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(root, "fashion", train=False, download=False)
    message = str(info.value)
    assert "Fashion-MNIST" in message and str(root) in message
    for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        for mirror in datasets._SOURCES["fashion"][0]:
            assert f"{mirror}{name}.gz" in message
    assert "train-" not in message
    assert log == [] and not root.exists()


def test_offline_error_names_files_urls_directory_and_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_open_url", _no_network)
    make_split(tmp_path, "train", 2, gz=True)
    os.remove(tmp_path / "train-images-idx3-ubyte.gz")  # only the images are missing
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, "mnist")
    message = str(info.value)
    assert str(tmp_path) in message and "Name or service not known" in message
    assert "train-images-idx3-ubyte" in message and "train-labels" not in message
    for mirror in datasets._SOURCES["mnist"][0]:
        assert f"{mirror}train-images-idx3-ubyte.gz" in message
    assert sorted(os.listdir(tmp_path)) == ["train-labels-idx1-ubyte.gz"]  # no leftovers


def test_download_saves_verified_files_and_loads_them(tmp_path, monkeypatch):
    mirrors, images, labels, blobs = _fake_source(monkeypatch)
    served = {mirrors[1] + name + ".gz": blob for name, blob in blobs.items()}
    monkeypatch.setattr(datasets, "_open_url", _serve(served, log := []))
    root = tmp_path / "new" / "mnist"  # created on the way
    X, y = load_mnist(root, train=False)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(X[:, 0] * 255, images)
    assert sorted(os.listdir(root)) == sorted(name + ".gz" for name in blobs)
    assert log == [m + name + ".gz" for name in blobs for m in mirrors]  # first mirror: 404
    log.clear()
    load_mnist(root, train=False)
    assert log == []  # present files are not fetched again


def test_download_refuses_a_file_whose_checksum_does_not_match(tmp_path, monkeypatch):
    mirrors, images, labels, blobs = _fake_source(monkeypatch)
    name = "t10k-images-idx3-ubyte"
    tampered = gzip.compress(idx_bytes(255 - images))  # valid IDX, wrong content
    served = {mirrors[0] + n + ".gz": blob for n, blob in blobs.items()}
    served[mirrors[0] + name + ".gz"] = tampered
    monkeypatch.setattr(datasets, "_open_url", _serve(served, []))
    got, published = hashlib.md5(tampered).hexdigest(), hashlib.md5(blobs[name]).hexdigest()
    pattern = rf"{name}(.|\n)*MD5 {got} does not match the published {published}"
    with pytest.raises(FileNotFoundError, match=pattern):
        load_mnist(tmp_path, train=False)
    assert os.listdir(tmp_path) == ["t10k-labels-idx1-ubyte.gz"]  # the good file, no temp file

    served[mirrors[1] + name + ".gz"] = blobs[name]  # a second mirror with the right file
    X, _ = load_mnist(tmp_path, train=False)
    np.testing.assert_array_equal(X[:, 0] * 255, images)


def test_download_is_bounded_in_size(tmp_path, monkeypatch):
    limit = datasets._max_size("t10k-labels-idx1-ubyte")
    assert 10008 < limit < 1 << 20  # the labels file is 10008 bytes before compression
    monkeypatch.setattr(datasets, "_open_url", lambda url: io.BytesIO(bytes(limit + 1)))
    with pytest.raises(FileNotFoundError, match=rf"labels-idx1-ubyte.gz: the download exceeds "
                       rf"{limit} bytes"):
        load_mnist(tmp_path, train=False)
    assert os.listdir(tmp_path) == []


def test_published_digests_and_size_bounds():
    for kind in ("mnist", "fashion"):
        mirrors, digests = datasets._SOURCES[kind]
        assert all(m.endswith("/") for m in mirrors)
        assert len(set(digests.values())) == 4
        assert all(len(d) == 32 and int(d, 16) >= 0 for d in digests.values())
    # the full-size raw files: 60000 / 10000 images of 784 bytes plus the header
    assert datasets._max_size("train-images-idx3-ubyte") >= 16 + 60000 * 784
    assert datasets._max_size("t10k-labels-idx1-ubyte") >= 8 + 10000
    assert mg.data.load_mnist is datasets.load_mnist
