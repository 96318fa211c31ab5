"""Fuzz the compiled kernels and the public ops with hypothesis, each group in a child process.

The work happens in ``tests/fuzz_worker.py``: random shapes (zero-size and size-1 dims
included), both dtypes, transposed / negative-step / strided / zero-stride broadcast layouts,
NaN and inf values and garbage arguments; every call must match the NumPy twin or float64
NumPy, or raise a clean Python exception on both backends. Running it in a child process means
that a segfault in a kernel fails this test with the signal's name instead of killing pytest.

The runs are derandomized (the same examples every time) and bounded: the whole module takes
about 30 s. ``MINIGRAD_FUZZ_SCALE=10`` multiplies the number of examples for a longer hunt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from minigrad import kernels

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "fuzz_worker.py"
SCALE = float(os.environ.get("MINIGRAD_FUZZ_SCALE", "1"))
# examples per group: chosen so that each child runs in 2-6 s on the 2-core CI machine
GROUPS = {"reduce": 600, "softmax": 600, "norm": 600, "optim": 500, "garbage": 500, "ops": 800,
          "pool": 400, "conv": 400, "embed": 400, "activation": 400}
TIMEOUT = 300 * max(1.0, SCALE)


def run_child(args: list[str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository root with minigrad importable."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def check_child(result: subprocess.CompletedProcess, what: str) -> None:
    """Fail with the signal's name when the child crashed, with its output when it failed."""
    tail = (result.stdout[-3000:] + "\n" + result.stderr[-6000:]).strip()
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        pytest.fail(f"{what} crashed with signal {name} (a kernel read or wrote out of "
                    f"bounds?)\n{tail}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit status {result.returncode}):\n{tail}", pytrace=False)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_fuzz_group_in_a_child_process(group):
    if group != "ops" and not kernels.compiled_available():
        if os.environ.get("MINIGRAD_BACKEND", "").strip().lower() == "numpy":
            pytest.skip("compiled kernels not built (MINIGRAD_BACKEND=numpy)")
        pytest.fail(f"compiled kernels are missing: {kernels.COMPILED_IMPORT_ERROR}")
    examples = max(1, int(GROUPS[group] * SCALE))
    result = run_child([str(WORKER), group, str(examples)])
    check_child(result, f"fuzz group {group!r} ({examples} examples)")
    assert f"{examples} examples passed" in result.stdout


def test_a_crash_in_the_child_is_reported_with_its_signal():
    """The harness itself: a segfaulting child must fail the test and name SIGSEGV."""
    result = run_child(["-c", "import ctypes; ctypes.string_at(0)"], timeout=60)
    with pytest.raises(pytest.fail.Exception, match="SIGSEGV"):
        check_child(result, "a child that dereferences NULL")


def test_a_failing_case_in_the_child_is_reported_with_its_output():
    result = run_child(["-c", "raise AssertionError('twin and kernel disagree')"], timeout=60)
    with pytest.raises(pytest.fail.Exception, match="twin and kernel disagree"):
        check_child(result, "a failing child")
