"""What the pictures of minigrad.viz share: the format from the suffix, a matplotlib figure,
the atomic writer."""

from __future__ import annotations

import os
from typing import Any

from .._optional import require
from ..serialization import write_atomically  # noqa: F401  (the pictures' writer)

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
    figure = require("matplotlib.figure", "viz", "minigrad.viz (its pictures)")
    return figure.Figure(**kwargs)
