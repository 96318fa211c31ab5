"""``mg.save`` / ``mg.load`` for ``.safetensors`` files, through the optional ``safetensors``
package: a flat mapping of names to arrays (a state dict), readable by every framework that
reads the format. Nothing in such a file is executed, and its reader checks that the tensors
it declares fit the file before any is read."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._optional import require

SUFFIX = ".safetensors"
_ORDER_KEY = "minigrad.order"  # metadata: the key order of the saved dict (the format sorts)
_METADATA = "__metadata__"  # the format's reserved header entry: no tensor may take the name
# The format's dtypes that NumPy holds; others (BF16, the F8 kinds...) cannot be read here.
_NUMPY_DTYPES = frozenset({"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64",
                           "F16", "F32", "F64", "C64"})


def is_safetensors_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a .safetensors file (by its suffix, any letter case)."""
    return os.fspath(path).lower().endswith(SUFFIX)


def _import_safetensors() -> Any:
    require("safetensors.numpy", "safetensors", "reading and writing .safetensors files")
    return require("safetensors", "safetensors", "reading and writing .safetensors files")


def encode(obj: Any) -> bytes:
    """The bytes of a .safetensors file holding ``obj``, a flat dict of names to arrays or
    Tensors (a state dict).

    Raises:
        TypeError: ``obj`` is not such a dict (nested dicts, an optimizer state, scalars...),
            or an entry has a dtype the format cannot hold; the key is named.
        ValueError: a key is ``"__metadata__"``, the name the format reserves (the file
            written would be unreadable).
    """
    safetensors = _import_safetensors()
    if not isinstance(obj, Mapping):
        raise TypeError(f"a .safetensors file holds a flat dict of names to arrays (a state "
                        f"dict), got {type(obj).__name__}; save other objects as .npz")
    arrays: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"cannot save key {key!r} to .safetensors: names must be str")
        if key == _METADATA:
            raise ValueError(f"cannot save key {key!r} to .safetensors: the format reserves "
                             f"that name for its metadata; rename the entry")
        data = getattr(value, "data", None) if hasattr(value, "requires_grad") else value
        if not isinstance(data, np.ndarray):
            raise TypeError(
                f"cannot save {key!r} to .safetensors: {type(value).__name__} is not an array "
                f"(the format holds a flat dict of arrays; save nested objects, such as an "
                f"optimizer's state, as .npz)")
        if data.dtype.kind not in "biuf" or data.dtype.itemsize > 8:
            raise TypeError(f"cannot save {key!r} to .safetensors: dtype {data.dtype} is not "
                            f"supported")
        # the format stores little-endian, C-ordered bytes (not ascontiguousarray: it makes
        # a 0-d array, such as num_batches_tracked, 1-d)
        arrays[key] = np.array(data, dtype=data.dtype.newbyteorder("<"), order="C", copy=None)
    metadata = {"format": "np", _ORDER_KEY: json.dumps(list(arrays))}
    return safetensors.numpy.save(arrays, metadata=metadata)


def load(path: str) -> dict[str, np.ndarray]:
    """The arrays of the .safetensors file ``path`` in the order they were saved (writable
    NumPy arrays).

    Raises:
        ValueError: the file is not a valid .safetensors file (corrupt, truncated, a header
            whose tensors do not fit the file, another format); the message names the file.
        TypeError: a tensor has a dtype NumPy cannot hold (bfloat16, float8); the tensor,
            its dtype and the file are named.
    """
    safetensors = _import_safetensors()
    unreadable = None
    try:
        with safetensors.safe_open(path, framework="np") as f:
            keys = list(f.keys())
            unreadable = _unreadable_dtype(path, {k: f.get_slice(k).get_dtype() for k in keys})
            if unreadable is None:
                arrays = {key: np.array(f.get_tensor(key)) for key in keys}
                metadata = f.metadata() or {}
    except (safetensors.SafetensorError, OSError, ValueError, TypeError, RuntimeError,
            UnicodeDecodeError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path!r} is not a valid .safetensors file: {exc}") from exc
    if unreadable is not None:
        raise TypeError(unreadable)
    return {key: arrays[key] for key in _saved_order(metadata, keys)}


def _unreadable_dtype(path: str, dtypes: Mapping[str, str]) -> str | None:
    """The error message for the first tensor whose dtype NumPy lacks (the package's reader
    would fail with an unrelated message, or an AttributeError for the float8 kinds)."""
    for key, dtype in dtypes.items():
        if dtype not in _NUMPY_DTYPES:
            return (f"{path!r}: tensor {key!r} has dtype {dtype}, which NumPy (and so "
                    f"minigrad) cannot hold; convert it to float32 where it was written "
                    f"(e.g. in PyTorch: .float())")
    return None


def _saved_order(metadata: Mapping[str, str], keys: list[str]) -> list[str]:
    """The key order minigrad recorded, when it names exactly the file's keys; else the
    file's own order."""
    try:
        order = json.loads(metadata.get(_ORDER_KEY, "null"))
    except (json.JSONDecodeError, TypeError):
        return keys
    if isinstance(order, list) and all(type(k) is str for k in order) and \
            sorted(order) == sorted(keys) and len(order) == len(keys):
        return order
    return keys
