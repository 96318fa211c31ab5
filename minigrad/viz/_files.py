"""Atomic file writing and the optional-dependency check shared by the pictures of minigrad.viz."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import IO, Any

from ..serialization import _replace_atomically

FORMATS = {".png": "png", ".svg": "svg"}


def picture_format(path: str | os.PathLike) -> str:
    """``"png"`` or ``"svg"`` from the file's suffix; anything else raises ``ValueError``."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot tell the picture format of {os.fspath(path)!r}: use a .png or .svg suffix"
        )
    return FORMATS[suffix]


def new_figure(**kwargs: Any) -> Any:
    """A matplotlib ``Figure`` made without pyplot (so no GUI backend is touched and nothing
    stays registered after it is saved), or an ImportError naming the ``viz`` extra."""
    try:
        figure = importlib.import_module("matplotlib.figure")
    except ImportError as e:
        raise ImportError(
            "minigrad.viz draws pictures with matplotlib, which is not installed: "
            "pip install 'minigrad-cython[viz]' (or pip install matplotlib)"
        ) from e
    return figure.Figure(**kwargs)


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``
    (mg.save's writer): a failure or a crash leaves the old file, never half a picture. A
    symbolic link keeps pointing at the file it named, which is replaced."""
    target = os.path.realpath(os.fspath(path))
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):  # else the error would name the temporary file
        raise FileNotFoundError(f"cannot write {os.fspath(path)!r}: no such directory "
                                f"{directory!r}")
    _replace_atomically(target, write)
