"""mg.save / mg.load: state dicts as ``.npz`` files, written atomically and read without pickle.

File layout: every array of the object is one ``.npz`` member named ``a0, a1, ...``; the member
``__minigrad_manifest__`` holds UTF-8 JSON (as uint8) that describes the structure:

    {"format": "minigrad.save", "version": 1, "root": <node>}
    node = {"t": "dict", "items": [[key, node], ...]} | {"t": "list" | "tuple", "items": [node...]}
         | {"t": "array", "ref": "a3", "tensor": bool} | {"t": "none"} | {"t": "bool", "v": b}
         | {"t": "int" | "float" | "str", "v": value} | {"t": "npscalar", "ref": "a4"}

so nothing in the file is ever executed (no pickle), and dict key order, tuples and NumPy
scalar dtypes survive a round trip. Tensors are saved as their arrays and load as ndarrays
(``Module.load_state_dict`` accepts both). Members are stored uncompressed, and ``load`` reads
them with its own checks (see ``_Members``) so that a file cannot claim more memory than its
own size.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

MANIFEST = "__minigrad_manifest__"
FORMAT = "minigrad.save"
VERSION = 1


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write a state dict (nested dicts/lists/tuples of arrays, Tensors and scalars) to ``path``.

    The file is written to a temporary file beside its final place, flushed to disk and then
    renamed over it, so a crash leaves either the old file or the new one, never half. A new
    file gets the permissions any program's new file gets (0666 less the umask); an existing
    file keeps its mode. When ``path`` is a symbolic link, its target is replaced and the link
    stays.

    Args:
        obj: dicts with str or int keys, lists and tuples of: ndarrays (not of dtype object),
            Tensors (saved as their arrays), bool, int, float, str, None and NumPy scalars.
        path: the file to write; ``.npz`` is the customary suffix (none is added).

    Raises:
        TypeError: an unsupported object or a non-str dict key, named by its key path (a Module
            or an optimizer names the fix: save its ``state_dict()``).
        FileNotFoundError: the directory does not exist.

    Example:
        >>> mg.save({"model": model.state_dict(), "optim": opt.state_dict()}, "ckpt.npz")
    """
    arrays: dict[str, np.ndarray] = {}
    root = _encode(obj, arrays, "obj")
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "root": root}, allow_nan=True)
    members = {MANIFEST: np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)}
    members.update(arrays)

    path = os.fspath(path)
    target = os.path.realpath(path)  # through symbolic links: replace the file, keep the link
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):  # else the error would name the temporary file
        raise FileNotFoundError(f"cannot save to {path!r}: no such directory {directory!r}")
    _replace_atomically(target, lambda f: _write_npz(f, members))


def _replace_atomically(target: str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``target`` with ``write(file)`` through a temporary file beside it, then rename;
    keep its old mode. A failure leaves the old file (or none) and no temporary file."""
    directory = os.path.dirname(target)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    fd, tmp = _create_temporary(directory, os.path.basename(target))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def load(path: str | os.PathLike) -> Any:
    """Read an object written by ``save``; arrays come back as ndarrays.

    Nothing in the file is executed, and the file cannot make ``load`` allocate more memory
    than its own size: every array must be stored uncompressed, be used once, and hold exactly
    the bytes its header declares.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a minigrad save file (corrupt, truncated, hostile, or a
            foreign ``.npz``, ``.npy`` or pickle); the message names the file and the problem.

    Example:
        >>> state = mg.load("ckpt.npz")
        >>> model.load_state_dict(state["model"])
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    with open(path, "rb") as f:
        kind = _foreign_kind(f.read(len(_NPY_MAGIC)))
        f.seek(0)
        if kind is not None:
            raise ValueError(f"{path!r} is not a minigrad save file ({kind})")
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ValueError(f"{path!r} is not a minigrad save file: {exc}") from exc
        with archive:
            names = set(archive.namelist())
            if MANIFEST + ".npy" not in names:
                raise ValueError(
                    f"{path!r} is not a minigrad save file (an .npz without the {MANIFEST} "
                    "entry)"
                )
            try:
                return _read_archive(_Members(archive, os.fstat(f.fileno()).st_size))
            except (
                ValueError,
                OSError,
                EOFError,
                KeyError,
                TypeError,
                RuntimeError,  # zipfile: an encrypted member
                RecursionError,  # a crafted manifest nested thousands of levels deep
                zipfile.BadZipFile,
                UnicodeDecodeError,
            ) as exc:
                raise ValueError(f"{path!r} is not a valid minigrad save file: {exc}") from exc


# --------------------------------------------------------------------------- encoding
def _encode(obj: Any, arrays: dict[str, np.ndarray], key_path: str) -> dict[str, Any]:
    """The manifest node of ``obj``; arrays go to ``arrays`` under fresh names."""
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, bool):
        return {"t": "bool", "v": obj}
    if isinstance(obj, np.generic):  # before int/float: np.float64 is a Python float
        if obj.dtype.kind not in "biufc":
            raise TypeError(f"cannot save {key_path}: NumPy scalar of dtype {obj.dtype}")
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(obj)  # a 0-d array keeps the scalar's dtype
        return {"t": "npscalar", "ref": name}
    if isinstance(obj, int):
        return {"t": "int", "v": obj}
    if isinstance(obj, float):
        # JSON has no inf or nan; repr keeps every float exact.
        return {"t": "float", "v": obj if math.isfinite(obj) else repr(obj)}
    if isinstance(obj, str):
        return {"t": "str", "v": obj}
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            # int keys too: an optimizer's state is keyed by parameter index (PyTorch's layout)
            if not isinstance(key, str) and type(key) is not int:
                raise TypeError(
                    f"cannot save {key_path}: dict keys must be str or int, got {key!r} "
                    f"({type(key).__name__})"
                )
            items.append([key, _encode(value, arrays, f"{key_path}[{key!r}]")])
        return {"t": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {
            "t": kind,
            "items": [_encode(v, arrays, f"{key_path}[{i}]") for i, v in enumerate(obj)],
        }
    array, is_tensor = _as_array(obj)
    if array is None:
        if callable(getattr(obj, "state_dict", None)):  # a Module or an optimizer
            raise TypeError(
                f"cannot save {key_path}: a {type(obj).__name__} is an object, not data; save "
                f"its state dict instead ({key_path}.state_dict()) and restore it with "
                f"load_state_dict(mg.load(path))"
            )
        raise TypeError(f"cannot save {key_path}: unsupported type {type(obj).__name__}")
    if array.dtype.hasobject or array.dtype.kind not in "biufcUS":
        raise TypeError(f"cannot save {key_path}: arrays of dtype {array.dtype} are not supported")
    name = f"a{len(arrays)}"
    arrays[name] = array
    return {"t": "array", "ref": name, "tensor": is_tensor}


def _as_array(obj: Any) -> tuple[np.ndarray | None, bool]:
    """(the ndarray, came-from-a-Tensor) for an ndarray or a Tensor; (None, False) otherwise."""
    if isinstance(obj, np.ndarray):
        return obj, False
    data = getattr(obj, "data", None)
    if isinstance(data, np.ndarray) and hasattr(obj, "requires_grad"):
        return data, True
    return None, False


def _write_npz(f: Any, members: dict[str, np.ndarray]) -> None:
    """Write the members as an uncompressed .npz to the open file ``f``."""
    np.savez(f, allow_pickle=False, **members)


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """Create a fresh temporary file for ``name`` in ``directory``: (descriptor, path).

    Created with mode 0666 so that the kernel applies the umask, as for any new file (reading
    the umask would mean setting it, which races with other threads).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file for {name!r} in {directory!r}")


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); not possible, nor needed, everywhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- decoding
_NPY_MAGIC = b"\x93NUMPY"
_CHUNK = 1 << 24  # bytes read at a time into an array


def _foreign_kind(head: bytes) -> str | None:
    """What a file that is surely not a save file is, from its first bytes; None otherwise."""
    if head.startswith(_NPY_MAGIC):
        return "a single .npy array, not an .npz written by mg.save"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocols 2 to 5
        return "it looks like a pickle, which mg.load never reads"
    return None


class _Members:
    """The arrays of an open save file, read so that the file bounds the memory it can claim.

    Every member must be stored uncompressed, be read at most once, and hold exactly the bytes
    its .npy header declares; the members read together cannot exceed the file's size.
    """

    def __init__(self, archive: zipfile.ZipFile, file_size: int):
        self.archive = archive
        self.budget = file_size
        self.used: set[str] = set()

    def array(self, ref: Any) -> np.ndarray:
        """The array of member ``ref`` (a name such as ``"a3"``), checked before allocating."""
        if not isinstance(ref, str):
            raise ValueError(f"malformed array reference {ref!r}")
        if ref in self.used:
            raise ValueError(f"member {ref!r} is referenced more than once")
        self.used.add(ref)
        try:
            info = self.archive.getinfo(ref + ".npy")
        except KeyError:
            raise ValueError(f"the manifest names a missing member {ref!r}") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"member {ref!r} is compressed; mg.save stores arrays uncompressed")
        self.budget -= info.compress_size
        if self.budget < 0:
            raise ValueError(f"its members claim more bytes than the file holds (at {ref!r})")
        with self.archive.open(info) as f:
            shape, fortran, dtype = _read_header(f, ref)
            count = math.prod(shape)
            held = info.file_size - f.tell()
            if count * dtype.itemsize != held:
                raise ValueError(
                    f"member {ref!r} declares shape {shape} of {dtype} ({count * dtype.itemsize} "
                    f"bytes) but holds {held} bytes"
                )
            flat = np.empty(count, dtype)
            raw = flat.view(np.uint8)
            for start in range(0, held, _CHUNK):
                chunk = f.read(min(_CHUNK, held - start))
                if len(chunk) != min(_CHUNK, held - start):
                    raise ValueError(f"member {ref!r} is truncated")
                raw[start : start + len(chunk)] = np.frombuffer(chunk, np.uint8)
        return flat.reshape(shape, order="F" if fortran else "C")


def _read_header(f: Any, ref: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy member open as ``f``, for plain dtypes only."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"member {ref!r} has .npy format version {version}")
    if dtype.hasobject or dtype.kind not in "biufcUS" or dtype.itemsize == 0:
        raise ValueError(f"member {ref!r} has dtype {dtype}, which mg.save never writes")
    return shape, fortran, dtype


def _read_archive(members: _Members) -> Any:
    """Check the manifest of an open save file and rebuild the object it describes."""
    raw = members.array(MANIFEST)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError("its manifest is not a 1-d uint8 array")
    manifest = json.loads(raw.tobytes().decode("utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError("its manifest is not minigrad's")
    if manifest.get("version") != VERSION:
        raise ValueError(
            f"it has format version {manifest.get('version')}; this minigrad reads "
            f"version {VERSION}"
        )
    return _decode(manifest["root"], members)


def _decode(node: Any, members: _Members) -> Any:
    if not isinstance(node, dict) or "t" not in node:
        raise ValueError(f"malformed manifest node {node!r}")
    kind = node["t"]
    if kind == "none":
        return None
    if kind == "bool":
        return bool(node["v"])
    if kind == "int":
        return int(node["v"])
    if kind == "float":
        return float(node["v"])
    if kind == "str":
        return str(node["v"])
    if kind == "array":
        return members.array(node["ref"])
    if kind == "npscalar":
        return members.array(node["ref"])[()]
    if kind == "dict":
        return {key if type(key) is int else str(key): _decode(value, members)
                for key, value in node["items"]}
    if kind == "list":
        return [_decode(value, members) for value in node["items"]]
    if kind == "tuple":
        return tuple(_decode(value, members) for value in node["items"])
    raise ValueError(f"unknown manifest node type {kind!r}")
