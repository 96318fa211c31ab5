"""Optional dependencies (torch, onnx, safetensors, matplotlib, scikit-learn): imported only
when a feature needs them, with one message when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, needed_for: str, pip_name: str | None = None) -> ModuleType:
    """``module`` imported, or an ImportError saying that ``needed_for`` needs it and which extra
    of minigrad installs it (``pip_name``: the package's name on PyPI when it is not the
    module's own)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = pip_name or module.split(".")[0]
        raise ImportError(f"{needed_for} needs {package}, which is not installed: "
                          f"pip install 'minigrad-cython[{extra}]' (or pip install {package})"
                          ) from exc
