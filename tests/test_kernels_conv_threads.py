"""The compiled convolution's backward on two threads: dx and dW (by broadcasts) together, one
gradient per thread, and dW over positions with each thread summing its own strips over every
block: the bits of the one-thread loops, with or without db, and with a team of one thread
when OpenMP gives no second one."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from kernel_modules import compiled_module

import minigrad as mg

_conv = compiled_module("_conv")
pytestmark = pytest.mark.skipif(_conv is None, reason="compiled kernels not built")

GEOMETRY = ((1, 1), (1, 1, 1, 1), (1, 1), 1)


def _case(dtype, seed=14):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((12, 16, 4, 4)).astype(dtype)  # 144 rows: dW by broadcasts
    w = rng.standard_normal((32, 16, 3, 3)).astype(dtype)
    dy = rng.standard_normal((12, 32, 4, 4)).astype(dtype)
    return dy, x, w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("needs", [(True, True, True), (True, True, False)])
def test_dx_and_dw_together_give_the_bits_of_one_thread(monkeypatch, dtype, needs):
    monkeypatch.setattr(_conv, "DIRECT_PARALLEL_MIN_MACS", 0)
    dy, x, w = _case(dtype)
    previous = mg.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            mg.set_num_threads(threads)
            results.append(_conv.conv2d_backward(dy, x, w, *GEOMETRY, needs))
    finally:
        mg.set_num_threads(previous)
    for one, two in zip(*results, strict=True):
        if one is None:
            assert two is None
        else:
            assert one.dtype == two.dtype == dtype
            np.testing.assert_array_equal(one, two)


_TEAM_OF_ONE = """
import numpy as np
import minigrad as mg
from minigrad.kernels import _conv
import test_kernels_conv_threads as t
_conv.DIRECT_PARALLEL_MIN_MACS = 0
dy, x, w = t._case(np.float32)
mg.set_num_threads(1)
one = _conv.conv2d_backward(dy, x, w, *t.GEOMETRY, (True, True, True))
mg.set_num_threads(2)
two = _conv.conv2d_backward(dy, x, w, *t.GEOMETRY, (True, True, True))
for a, b in zip(one, two):
    np.testing.assert_array_equal(a, b)
print("ok")
"""


def test_a_team_of_one_thread_computes_every_gradient():
    """OMP_THREAD_LIMIT=1: the two-thread region runs on one thread, which then computes dx and
    db as well as dW."""
    if os.cpu_count() is None or os.cpu_count() < 2:
        pytest.skip("set_num_threads(2) needs two processors")
    here = os.path.dirname(__file__)
    env = dict(os.environ, OMP_THREAD_LIMIT="1",
               PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-c", _TEAM_OF_ONE], capture_output=True, text=True,
                         timeout=120, env=env)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", [(4, 8), (5, 7)])  # dY's rows read in place, and copied
@pytest.mark.parametrize("chunk", [1, 4096])  # blocks of one sample, and of several
def test_dw_over_positions_on_two_threads_gives_the_bits_of_one(monkeypatch, dtype, hw, chunk):
    """A first layer's dW (nine rows: over positions): each thread sums its own strips over
    every block, building the blocks' buffers itself; the bits of one thread, and close to the
    twin."""
    from minigrad.kernels import _conv_twin

    monkeypatch.setattr(_conv, "DIRECT_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(_conv, "WG_CHUNK_BYTES", chunk)
    rng = np.random.default_rng(15)
    x = rng.standard_normal((9, 1) + hw).astype(dtype)
    w = rng.standard_normal((12, 1, 3, 3)).astype(dtype)  # three strips: unequal shares
    dy = rng.standard_normal((9, 12) + hw).astype(dtype)
    previous = mg.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            mg.set_num_threads(threads)
            results.append(_conv.conv2d_backward(dy, x, w, *GEOMETRY, (False, True, False))[1])
    finally:
        mg.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    want = _conv_twin.conv2d_backward(dy.astype(np.float64), x.astype(np.float64),
                                      w.astype(np.float64), *GEOMETRY, (False, True, False))[1]
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(results[1], want, rtol=0, atol=tol * np.abs(want).max())
