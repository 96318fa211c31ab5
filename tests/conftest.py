"""Shared fixtures: every op test runs once per kernel backend."""

import os

import numpy as np
import pytest

import minigrad as mg
from minigrad import kernels

NUMPY_ONLY = os.environ.get("MINIGRAD_BACKEND", "").strip().lower() == "numpy"
BACKENDS = ["numpy"] if NUMPY_ONLY else ["numpy", "cython"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test on one kernel backend, then restore the previous one."""
    if request.param == "cython" and not kernels.compiled_available():
        pytest.fail(
            "compiled kernels are missing (" + str(kernels.COMPILED_IMPORT_ERROR) + "); "
            "set MINIGRAD_BACKEND=numpy to test the NumPy twins on purpose"
        )
    previous = mg.get_backend()
    mg.set_backend(request.param)
    yield request.param
    mg.set_backend(previous)


@pytest.fixture
def rng():
    """A seeded NumPy generator for test data."""
    return np.random.default_rng(1234)
