"""Image data sets: the 8x8 digits (through scikit-learn) and MNIST / Fashion-MNIST read from
IDX files, downloaded and checksummed when missing. ``mg.data`` re-exports the public names.

IDX layout (big-endian): two zero bytes, a dtype code, the number of dimensions ``ndim``,
``ndim`` uint32 sizes, then the values in C order. Nothing here trusts a header: the data it
declares must fill the file exactly, and a gzip file cannot claim more than deflate can expand
its size to, so a hostile header fails before any large allocation.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import stat
import sys
import urllib.request
import zlib
from typing import IO, Any

import numpy as np

from ._optional import require
from .serialization import _create_temporary, _fsync_directory

__all__ = ["load_digits", "load_mnist", "read_idx"]

_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Deflate expands at most about 1032:1, so a .gz file of s bytes holds at most this many times
# s bytes; the slack covers the gzip header and trailer of a tiny file.
_GZIP_MAX_RATIO = 1032
_GZIP_SLACK = 1024
_CHUNK = 1 << 20

# Mirrors in the order tried, and the MD5 of each .gz file as published with the data sets
# (the same digests torchvision checks).
_SOURCES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "mnist": (
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        {
            "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion": (
        (
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        {
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}
_NAMES = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}
_SAMPLES = {"train": 60000, "t10k": 10000}  # both data sets have the same split sizes
_DOWNLOAD_TIMEOUT = 30.0


def load_digits(*, images: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits (1797 samples) bundled with scikit-learn; works offline.

    Args:
        images: return each sample as a one-channel 8x8 image (for convolutions) instead of a
            row of 64 pixels; the values are the same.

    Returns:
        X float32 with pixel values scaled from 0..16 to [0, 1], of shape (1797, 64), or
        (1797, 1, 8, 8) with ``images=True``; y int64 (1797,) in 0..9.

    Raises:
        ImportError: scikit-learn is not installed (``pip install minigrad-cython[examples]``).
    """
    sklearn_datasets = require("sklearn.datasets", "examples", "load_digits", "scikit-learn")
    digits = sklearn_datasets.load_digits()
    X = np.asarray(digits.data, dtype=np.float32) / np.float32(16.0)
    if images:
        X = X.reshape(-1, 1, 8, 8)
    return X, np.asarray(digits.target, dtype=np.int64)


def read_idx(
    path: str | os.PathLike,
    *,
    dtype: np.dtype | type | None = None,
    shape: tuple[int | None, ...] | None = None,
) -> np.ndarray:
    """Read one IDX file (raw, or gzip-compressed when its name ends in ``.gz``).

    Args:
        path: the file.
        dtype: when given, the dtype the header must declare (e.g. ``np.uint8``).
        shape: when given, the shape the header must declare; ``None`` entries match any size.
            Both are checked before any data is read.

    Returns:
        A new, writable array in native byte order, of the declared dtype and shape.

    Raises:
        ValueError: naming the file, when it is not IDX, declares another dtype or shape than
            asked, or holds fewer or more bytes than its header declares.
    """
    path = os.fspath(path)
    compressed = path.endswith(".gz")
    # O_NONBLOCK: opening a FIFO must not wait for a writer before the check below refuses it
    with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        stream: IO[bytes] = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        try:
            item, dims, header = _read_header(stream, path)
            _check_declared(path, item, dims, dtype, shape)
            nbytes = math.prod(dims) * item.itemsize
            if compressed:
                if header + nbytes > _GZIP_MAX_RATIO * info.st_size + _GZIP_SLACK:
                    raise ValueError(
                        f"{path}: its header declares shape {dims} ({nbytes} bytes of data), "
                        f"more than a {info.st_size}-byte gzip file can hold"
                    )
            elif header + nbytes != info.st_size:
                state = "is truncated" if header + nbytes > info.st_size else "has extra data"
                raise ValueError(
                    f"{path} {state}: its header declares shape {dims}, {header + nbytes} "
                    f"bytes with the header, but the file has {info.st_size} bytes"
                )
            buffer = _read_exactly(stream, nbytes, path)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise ValueError(f"{path} is not a complete gzip file: {exc}") from None
    return np.frombuffer(buffer, dtype=item).reshape(dims).astype(item.newbyteorder("="))


def _read_header(stream: IO[bytes], path: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, header size in bytes) from the start of an IDX stream."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00":
        found = magic.hex() or "missing"
        raise ValueError(f"{path} is not an IDX file (magic number {found}, expected 0000xxyy)")
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"{path}: its IDX header declares 0 dimensions")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"{path}: the IDX header is truncated ({ndim} dimensions declared)")
    dims = tuple(int.from_bytes(raw_dims[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
    return _IDX_DTYPES[code], dims, 4 + 4 * ndim


def _check_declared(
    path: str, item: np.dtype, dims: tuple[int, ...], dtype: Any, shape: Any
) -> None:
    if dtype is not None and item.newbyteorder("=") != np.dtype(dtype):
        got = item.newbyteorder("=")
        raise ValueError(f"{path}: expected IDX data of dtype {np.dtype(dtype)}, got {got}")
    if shape is not None and not (
        len(shape) == len(dims)
        and all(s is None or s == d for s, d in zip(shape, dims, strict=True))
    ):
        expected = str(tuple("any" if s is None else s for s in shape)).replace("'", "")
        raise ValueError(f"{path}: expected IDX data of shape {expected}, got {dims}")


def _read_exactly(stream: IO[bytes], nbytes: int, path: str) -> bytearray:
    """Read ``nbytes``, then insist that the stream ends.

    In chunks: ``GzipFile.read(n)`` allocates n bytes before decompressing anything, and
    memory should grow with the data actually there, not with what a header claims.
    """
    buffer = bytearray()
    while len(buffer) < nbytes:
        chunk = stream.read(min(_CHUNK, nbytes - len(buffer)))
        if not chunk:
            raise ValueError(
                f"{path} is truncated: its header declares {nbytes} bytes of data, "
                f"the file holds {len(buffer)}"
            )
        buffer += chunk
    if stream.read(1):
        raise ValueError(f"{path} has data after the {nbytes} bytes its header declares")
    return buffer


def load_mnist(
    root: str | os.PathLike,
    kind: str = "mnist",
    train: bool = True,
    *,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST (handwritten digits) or Fashion-MNIST (clothing), read from the IDX files in ``root``.

    ``root`` holds ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (training set)
    or ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (test set), each raw or as
    ``<name>.gz`` (the raw file is read when both exist). Both data sets use these names: keep
    them in separate directories. Missing files are downloaded as ``.gz`` into ``root`` when
    ``download`` is true and the network allows, checked against their published MD5 and
    renamed into place only when it matches.

    Args:
        root: the directory of the files (created when a download needs it).
        kind: ``"mnist"`` or ``"fashion"``.
        train: the 60000-image training set, or the 10000-image test set.
        download: fetch missing files; False raises at once instead.

    Returns:
        images float32 (N, 1, 28, 28), pixel values scaled from 0..255 to [0, 1]; labels
        int64 (N,) in 0..9.

    Raises:
        FileNotFoundError: files are missing and could not be downloaded; the message names
            them, their URLs and the directory to put them in.
        ValueError: a file is not a valid IDX file of the expected type and shape, or the
            counts of images and labels differ, or a label is outside 0..9.

    Example:
        >>> X, y = load_mnist("data/mnist", train=False)   # X: (10000, 1, 28, 28)
    """
    if kind not in _SOURCES:
        raise ValueError(f'kind must be "mnist" or "fashion", got {kind!r}')
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {train!r}")
    root = os.fspath(root)
    split = "train" if train else "t10k"
    names = [f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"]
    missing = [name for name in names if _find(root, name) is None]
    if missing:
        _fetch(root, kind, missing, download)
    image_path, label_path = (_find(root, name) for name in names)
    labels = read_idx(label_path, dtype=np.uint8, shape=(None,))
    images = read_idx(image_path, dtype=np.uint8, shape=(None, 28, 28))
    if len(images) != len(labels):
        raise ValueError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{label_path}: label {labels[bad]} at index {bad} is outside 0..9")
    X = images.reshape(-1, 1, 28, 28).astype(np.float32)
    X /= np.float32(255.0)
    return X, labels.astype(np.int64)


def _find(root: str, name: str) -> str | None:
    """The path of ``name`` in ``root``, raw first, then ``.gz``; None when neither exists."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(root, candidate)
        if os.path.exists(path):
            return path
    return None


def _fetch(root: str, kind: str, missing: list[str], download: bool) -> None:
    """Download each missing file (as .gz) from the first mirror that delivers it intact."""
    mirrors, digests = _SOURCES[kind]
    if not download:
        reasons = ["not downloaded: download=False"]
        raise FileNotFoundError(_missing_message(root, kind, {n: reasons for n in missing}))
    os.makedirs(root, exist_ok=True)
    failures: dict[str, list[str]] = {}
    for name in missing:
        reasons = []
        for mirror in mirrors:
            url = mirror + name + ".gz"
            try:
                _download(url, os.path.join(root, name + ".gz"), digests[name], _max_size(name))
                break
            except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
                reasons.append(f"{url}: {exc}")
        else:  # no mirror delivered it
            failures[name] = reasons
    if failures:
        raise FileNotFoundError(_missing_message(root, kind, failures))


def _max_size(name: str) -> int:
    """An upper bound on the size of ``name``.gz: the raw size (gzip adds a few bytes to
    incompressible data) plus slack."""
    split, part = name.split("-")[:2]
    n = _SAMPLES[split]
    return (16 + 28 * 28 * n if part == "images" else 8 + n) + (1 << 16)


def _open_url(url: str) -> IO[bytes]:
    """The response to a GET of ``url`` (the one place that touches the network)."""
    return urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT)


def _download(url: str, path: str, md5: str, max_size: int) -> None:
    """Stream ``url`` into a temporary file beside ``path``; rename it to ``path`` only when
    its MD5 is ``md5`` (else delete it and raise ValueError)."""
    print(f"downloading {url} -> {path}", file=sys.stderr)
    digest = hashlib.md5(usedforsecurity=False)
    fd, tmp = _create_temporary(os.path.dirname(path) or ".", os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as out, _open_url(url) as response:
            size = 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > max_size:
                    raise ValueError(f"the download exceeds {max_size} bytes")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise ValueError(
                f"MD5 {digest.hexdigest()} does not match the published {md5}; file not saved"
            )
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_directory(os.path.dirname(path) or ".")


def _missing_message(root: str, kind: str, failures: dict[str, list[str]]) -> str:
    """Which files are missing, why each download failed, and where to put them by hand."""
    mirrors, _ = _SOURCES[kind]
    directory = os.path.abspath(root)
    lines = [f"{_NAMES[kind]} files missing from {directory}:"]
    for name, reasons in failures.items():
        lines.append(f"  {name} (or {name}.gz)")
        lines.extend(f"    {reason}" for reason in reasons)
    lines.append(f"Download them (the .gz files, or their decompressed contents) into {directory}:")
    for name in failures:
        lines.append("  " + " or ".join(mirror + name + ".gz" for mirror in mirrors))
    return "\n".join(lines)
