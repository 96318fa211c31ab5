"""``grade``: run each unit's checks on a student copy, one process and one time limit per unit,
and report a score table (or JSON) with the first failing check of each unit in words."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from . import checks_core, checks_layers  # noqa: F401  (they register the checks)
from ._check import CHECKS
from ._worker import BOOT, CPU_LIMIT_VARIABLE
from .make import PACKAGE_ROOT, chosen_units
from .units import Unit

_POSIX = hasattr(os, "killpg")


@dataclass
class UnitResult:
    """One unit's outcome: checks passed out of total, and why the first failure failed.

    ``status`` is "passed", "failed", "timeout" (the time limit cut it off; the unit scores
    0) or "crashed" (the process died or the copy could not be imported; the unit scores 0).
    """

    unit: str
    title: str
    passed: int
    total: int
    status: str
    message: str


def grade(dest: str, units: list[str] | None = None, timeout: float = 60.0,
          jobs: int = 1) -> list[UnitResult]:
    """Grade the student copy in ``dest``: the units named (default: those the copy was made
    for, from its ``course.json``; all units without one), ``jobs`` units at a time."""
    dest = os.path.abspath(dest)
    if not os.path.isfile(os.path.join(dest, "minigrad", "__init__.py")):
        raise FileNotFoundError(f"{dest} holds no student copy (no minigrad/__init__.py)")
    if not units:
        units = _manifest_units(os.path.join(dest, "course.json"))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each unit is a process
        return list(pool.map(lambda u: grade_unit(dest, u, timeout), chosen_units(units)))


def _manifest_units(path: str) -> list[str] | None:
    """The units a copy's ``course.json`` names (None without one); ValueError when it is not
    a manifest ``make`` writes, since the copy (and so this file) is in the student's hands."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            units = json.load(f)["units"]
    except (ValueError, KeyError, TypeError):
        units = None
    if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
        raise ValueError(f"{path} is not a course manifest (a JSON object whose \"units\" is a "
                         "list of unit names); name the units to grade with --units")
    return units


def grade_unit(dest: str, u: Unit, timeout: float) -> UnitResult:
    """Run one unit's checks in a fresh interpreter, killed after ``timeout`` seconds."""
    total = len(CHECKS[u.key])
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONSTARTUP", CPU_LIMIT_VARIABLE)}
    env.update(MINIGRAD_BACKEND="numpy", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    # the worker stops itself past the time limit in CPU seconds (one thread: CPU time does not
    # outrun the clock), should this grader die before it can kill the worker; no limit given
    # (an infinite timeout), none set
    if math.isfinite(timeout):
        env[CPU_LIMIT_VARIABLE] = str(math.ceil(timeout) + 5)
    command = [sys.executable, "-c", BOOT, dest, PACKAGE_ROOT, u.key]
    try:
        run = _run(command, dest, env, timeout)
    except subprocess.TimeoutExpired as exc:
        records = _records(exc.stdout)
        started = [r["start"] for r in records if "start" in r]
        during = f" during '{started[-1]}'" if started else ""
        return UnitResult(u.key, u.title, 0, total, "timeout",
                          f"stopped after {timeout:g} s{during}: an endless loop, or far too "
                          "slow; the unit scores 0")
    records = _records(run.stdout)
    results = [r for r in records if "check" in r]
    if any("error" in r for r in records) or not any(r.get("done") for r in records):
        reason = next((r["error"] for r in records if "error" in r), None)
        if reason is None:  # stderr holds the student's prints too: its last line may be one
            started = [r["start"] for r in records if "start" in r]
            during = f" during '{started[-1]}'" if started else ""
            tail = run.stderr.strip().splitlines()[-1:]
            last = f"; last line on stderr: {tail[0][:200]}" if tail else ""
            reason = f"the grading process died{during} (exit status {run.returncode}{last})"
        return UnitResult(u.key, u.title, 0, total, "crashed", f"{reason}; the unit scores 0")
    passed = sum(r["ok"] for r in results)
    failures = [r["message"] for r in results if not r["ok"]]
    status = "passed" if passed == total else "failed"
    return UnitResult(u.key, u.title, passed, total, status, failures[0] if failures else "")


def _run(command: list[str], cwd: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run`` with a process group for the worker, killed with all it started once
    the worker exits or ``timeout`` passes: a process the student's code left behind would
    otherwise hold the output pipes open until the time limit, and outlive the grader."""
    # bytes that are not UTF-8 (a student may print anything) must not stop the grader
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, encoding="utf-8", errors="replace",
                            start_new_session=_POSIX)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                exited, late = proc.poll() is not None, time.monotonic() >= deadline
                if exited or late:
                    _kill_group(proc)
                    out, err = proc.communicate()
                    if late and not exited:
                        raise subprocess.TimeoutExpired(command, timeout, out, err) from None
                    break
    finally:
        _kill_group(proc)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    if not _POSIX:
        proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing of the group is left


def _records(stdout: str | bytes | None) -> list[dict]:
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", errors="replace")
    records = []
    for line in (stdout or "").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):  # the worker's lines; a student's "5" or "[1]" is not
            records.append(record)
    return records


def table(results: list[UnitResult]) -> str:
    """The score table, then the first failure of each unit that lost points."""
    width = max(len(r.unit) for r in results)
    lines = [f"{'unit':<{width}}  score   status", "-" * (width + 18)]
    for r in results:
        lines.append(f"{r.unit:<{width}}  {r.passed:>2}/{r.total:<2}   {r.status}")
    passed, total = sum(r.passed for r in results), sum(r.total for r in results)
    lines += ["-" * (width + 18), f"{'total':<{width}}  {passed}/{total}"]
    failures = [r for r in results if r.message]
    if failures:
        lines += ["", "First failing check of each unit:"]
        lines += [f"  {r.unit}: {r.message}" for r in failures]
    return "\n".join(lines)


def as_json(results: list[UnitResult]) -> str:
    """The results as JSON: per unit, and the totals."""
    return json.dumps({"units": [asdict(r) for r in results],
                       "passed": sum(r.passed for r in results),
                       "total": sum(r.total for r in results)}, indent=2)
