"""The array cache (kernels/_alloc.h): NumPy buffers of 32 KiB-32 MiB freed while minigrad runs
are kept for reuse. A reused buffer must behave like a fresh one: zeros where NumPy promises
zeros, contents kept across a resize, no sharing between live arrays, bounded size, and safe
from several threads at once."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import kernels

pytestmark = pytest.mark.skipif(not kernels.compiled_available(),
                                reason="the array cache is part of the compiled kernels")
ROOT = Path(__file__).resolve().parent.parent
N = 50_000  # 400 KB of float64: inside the cached range, above glibc's mmap threshold


def handler_name() -> str:
    return (np._core if hasattr(np, "_core") else np.core).multiarray.get_handler_name()


def test_importing_minigrad_installs_it_and_freed_buffers_are_reused():
    assert handler_name() == "minigrad_cache"
    mg.empty_cache()
    a = np.full(N, 7.0)
    address = a.ctypes.data
    del a
    assert kernels.cached_bytes() == N * 8
    b = np.empty(N)  # same size: the same block comes back
    assert b.ctypes.data == address and kernels.cached_bytes() == 0


def test_a_reused_buffer_is_zeroed_where_numpy_promises_zeros():
    dirty = np.full(N, np.nan)
    del dirty
    assert not np.zeros(N).any()
    dirty = np.full((N // 10, 10), -1.0)
    del dirty
    assert not np.zeros((N // 10, 10)).any()


def test_live_arrays_never_share_a_buffer_and_resize_keeps_contents():
    arrays = [np.full(N, float(k)) for k in range(20)]
    del arrays[::2]
    fresh = [np.full(N, -1.0) for _ in range(10)]
    for k, a in zip(range(1, 20, 2), arrays, strict=True):
        assert np.all(a == k)
    assert len({a.ctypes.data for a in arrays + fresh}) == 20
    grown = np.arange(N, dtype=np.float64)
    grown.resize(3 * N, refcheck=False)
    np.testing.assert_array_equal(grown[:N], np.arange(N))
    assert not grown[N:].any()


def test_the_cache_is_bounded():
    mg.empty_cache()
    blocks = [np.ones(4 << 20, np.uint8) for _ in range(64)]  # 64 x 4 MiB
    del blocks
    assert kernels.cached_bytes() <= 128 << 20
    big = np.ones(64 << 20, np.uint8)  # above the cached sizes: never kept
    del big
    assert kernels.cached_bytes() <= 128 << 20
    assert mg.empty_cache() > 0 and kernels.cached_bytes() == 0


def test_threads_allocating_and_freeing_at_once_get_their_own_buffers():
    failures = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            size = int(rng.integers(N // 2, N))
            a = np.full(size, float(seed))
            b = np.zeros(size)
            if not (np.all(a == seed) and not b.any()):
                failures.append(seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_training_gives_the_same_bits_with_and_without_the_cache():
    script = (
        "import numpy as np, minigrad as mg\n"
        "from minigrad import nn, optim\n"
        "import minigrad.functional as F\n"
        "mg.manual_seed(0)\n"
        "m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))\n"
        "opt = optim.Adam(m.parameters(), lr=1e-3)\n"
        "x, y = mg.randn(32, 1, 32, 32), mg.tensor(np.arange(32) % 10)\n"
        "for _ in range(5):\n"
        "    opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()\n"
        "core = np._core if hasattr(np, '_core') else np.core\n"
        "print(core.multiarray.get_handler_name(),\n"
        "      [float(np.sum(p.data.astype(np.float64) ** 2)) for p in m.parameters()])\n"
    )
    runs = {}
    for flag in ("1", "0"):
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                              text=True, env={**__import__("os").environ,
                                              "MINIGRAD_ARRAY_CACHE": flag}, timeout=300)
        assert done.returncode == 0, done.stderr
        runs[flag] = done.stdout.strip().split(" ", 1)
    assert runs["1"][1] == runs["0"][1]
    assert runs["1"][0] == "minigrad_cache" and runs["0"][0] != "minigrad_cache"


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_another_thread_allocates_gets_a_consistent_cache():
    # a fork in the middle of another thread's change to a bin must not hand the child a
    # half-stored block: each child reuses every cached size, writes it and checks its zeros
    import os

    stop = threading.Event()

    def churn() -> None:
        kernels.compiled._alloc.install()  # a new thread starts with NumPy's own handler
        while not stop.is_set():
            arrays = [np.empty(N + 1024 * k) for k in range(6)]
            del arrays

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(40):
            pid = os.fork()
            if pid == 0:  # the child: exit code 0 only if every buffer behaves
                ok = True
                for _ in range(3):
                    arrays = [np.zeros(N + 1024 * k) for k in range(6)]
                    ok = ok and all(not a.any() for a in arrays)
                    for a in arrays:
                        a[:] = 1.0
                    ok = ok and all(a.all() for a in arrays)
                    del arrays
                os._exit(0 if ok else 1)
            for _ in range(200):  # a child stuck on the lock is killed and counted a failure
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                threading.Event().wait(0.05)
            else:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("a forked child hung on the array cache's lock")
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        thread.join()
