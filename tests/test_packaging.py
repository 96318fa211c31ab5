"""The package data in pyproject.toml ships every source file the compiled kernels build from."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "minigrad" / "kernels"


def _kernel_globs() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        config = tomllib.load(f)
    return config["tool"]["setuptools"]["package-data"]["minigrad.kernels"]


def test_package_data_covers_every_kernel_source_file():
    # A wheel without a .pxi, .pxd or .h that a .pyx includes cannot rebuild or cimport it.
    sources = [p.name for p in KERNELS.iterdir() if p.suffix in {".pyx", ".pxd", ".pxi", ".h"}]
    assert any(name.endswith(".pxi") for name in sources)
    globs = _kernel_globs()
    missing = [n for n in sources if not any(fnmatch.fnmatch(n, g) for g in globs)]
    assert not missing, f"not in package-data for minigrad.kernels: {missing}"


def test_every_included_file_exists_and_is_shipped():
    globs = _kernel_globs()
    for pyx in KERNELS.glob("*.pyx"):
        for name in re.findall(r'^include "([^"]+)"', pyx.read_text(), flags=re.M):
            assert (KERNELS / name).is_file(), f"{pyx.name} includes missing {name}"
            assert any(fnmatch.fnmatch(name, g) for g in globs), f"{name} is not shipped"


def test_every_subpackage_is_listed():
    # a package directory missing from this list would be left out of the wheel
    with open(ROOT / "pyproject.toml", "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "minigrad").rglob("__init__.py")}
    assert found - listed == set(), f"not in [tool.setuptools] packages: {found - listed}"
