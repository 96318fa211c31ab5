"""Which kernel implementations a kernel test runs on: the NumPy twins always, a compiled module
too unless the NumPy-only run was chosen on purpose (then a missing build is no failure)."""

import importlib
import os

import numpy as np
import pytest

NUMPY_ONLY = os.environ.get("MINIGRAD_BACKEND", "").strip().lower() == "numpy"


def compiled_module(name: str):
    """``minigrad.kernels.<name>``, or None in a NumPy-only run whose build is missing.

    Anywhere else a missing build raises ImportError, so the suite fails loudly.
    """
    try:
        return importlib.import_module(f"minigrad.kernels.{name}")
    except ImportError:
        if not NUMPY_ONLY:
            raise
        return None


def implementations(name: str) -> list:
    """pytest params: the twin module beside ``name`` (id "numpy", e.g. ``_norm_twin`` for
    ``_norm``) and, when built, the compiled module itself ("cython")."""
    impls = [pytest.param(importlib.import_module(f"minigrad.kernels.{name}_twin"), id="numpy")]
    module = compiled_module(name)
    if module is not None:
        impls.append(pytest.param(module, id="cython"))
    return impls


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in another memory layout: "contiguous" (as is), "transposed"
    (transposed, copied, transposed back: Fortran order), "step" (every other element of a
    twice-as-long last axis), "negative" (the first axis read backwards) or "unaligned"
    (C-contiguous, its data one byte past an aligned address)."""
    if layout == "contiguous":
        return a
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "step":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "negative":
        return a[::-1].copy()[::-1]
    if layout == "unaligned":
        raw = np.zeros(a.nbytes + 1, np.uint8)
        out = raw[1:].view(a.dtype).reshape(a.shape)
        out[...] = a
        return out
    raise ValueError(layout)
