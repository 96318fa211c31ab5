"""mg.save / mg.load: state dicts as ``.npz`` files, written atomically and read without pickle.

File layout: every array of the object is one ``.npz`` member named ``a0, a1, ...``; the member
``__minigrad_manifest__`` holds UTF-8 JSON (as uint8) that describes the structure:

    {"format": "minigrad.save", "version": 1, "root": <node>}
    node = {"t": "dict", "items": [[key, node], ...]} | {"t": "list" | "tuple", "items": [node...]}
         | {"t": "array", "ref": "a3", "tensor": bool} | {"t": "none"} | {"t": "bool", "v": b}
         | {"t": "int" | "float" | "str", "v": value} | {"t": "npscalar", "ref": "a4"}

so nothing in the file is ever executed (``allow_pickle=False``), and dict key order, tuples
and NumPy scalar dtypes survive a round trip. Tensors are saved as their arrays and load as
ndarrays (``Module.load_state_dict`` accepts both).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

MANIFEST = "__minigrad_manifest__"
FORMAT = "minigrad.save"
VERSION = 1


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write a state dict (nested dicts/lists/tuples of arrays, Tensors and scalars) to ``path``.

    The file is written to a temporary file in the same directory, flushed to disk and then
    renamed over ``path``, so a crash leaves either the old file or the new one, never half.

    Args:
        obj: dicts with str or int keys, lists and tuples of: ndarrays (not of dtype object),
            Tensors (saved as their arrays), bool, int, float, str, None and NumPy scalars.
        path: the file to write; ``.npz`` is the customary suffix (none is added).

    Raises:
        TypeError: an unsupported object or a non-str dict key, named by its key path.

    Example:
        >>> mg.save({"model": model.state_dict(), "optim": opt.state_dict()}, "ckpt.npz")
    """
    arrays: dict[str, np.ndarray] = {}
    root = _encode(obj, arrays, "obj")
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "root": root}, allow_nan=True)
    members = {MANIFEST: np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)}
    members.update(arrays)

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):  # else the error would name the temporary file
        raise FileNotFoundError(f"cannot save to {path!r}: no such directory {directory!r}")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, members)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def load(path: str | os.PathLike) -> Any:
    """Read an object written by ``save``; arrays come back as ndarrays.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a minigrad save file (corrupt, truncated, or a foreign
            ``.npz`` without the manifest); the message names the file.

    Example:
        >>> state = mg.load("ckpt.npz")
        >>> model.load_state_dict(state["model"])
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path!r} is not a minigrad save file: {exc}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} is not a minigrad save file (a single .npy array)")
    with loaded as npz:
        if MANIFEST not in npz.files:
            raise ValueError(
                f"{path!r} is not a minigrad save file (an .npz without the {MANIFEST} entry)"
            )
        try:
            raw = npz[MANIFEST]
            if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8:
                raise ValueError("its manifest is not a uint8 array")
            manifest = json.loads(raw.tobytes().decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ValueError("its manifest is not minigrad's")
            if manifest.get("version") != VERSION:
                raise ValueError(
                    f"it has format version {manifest.get('version')}; this minigrad reads "
                    f"version {VERSION}"
                )
            return _decode(manifest["root"], npz)
        except (
            ValueError,
            OSError,
            EOFError,
            KeyError,
            TypeError,
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
def _decode(node: Any, npz: Any) -> Any:
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
        return npz[node["ref"]]
    if kind == "npscalar":
        return npz[node["ref"]][()]
    if kind == "dict":
        return {key if type(key) is int else str(key): _decode(value, npz)
                for key, value in node["items"]}
    if kind == "list":
        return [_decode(value, npz) for value in node["items"]]
    if kind == "tuple":
        return tuple(_decode(value, npz) for value in node["items"])
    raise ValueError(f"unknown manifest node type {kind!r}")
