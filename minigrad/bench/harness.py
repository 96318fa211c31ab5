"""Timing harness: interleaved repeats, medians, a plain-text table and a JSON dump.

A benchmark group is a module with ``cases(quick: bool) -> list[Case]``. Each ``Case`` holds
zero-argument callables keyed by implementation label ("numpy", "cython", "torch"); the
harness times them interleaved (every repeat runs each implementation once, in turn) so that
machine noise hits all of them alike, and reports medians. Groups take the compiled kernels
from ``COMPILED``, which is None when they are not built: those groups then leave the
"cython" implementation out and the table shows "-" in its columns.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
from minigrad import kernels

#: The compiled kernels under their public names, or None when they are not built.
COMPILED = kernels.compiled

IMPLS = ("numpy", "cython", "torch")

#: Set False (``--no-torch``) to leave PyTorch out even when it is installed.
USE_TORCH = True


@dataclass
class Case:
    """One benchmark row: the same work done by each implementation."""

    group: str
    name: str
    shape: str
    impls: dict[str, Callable[[], object]] = field(default_factory=dict)


def torch_or_none(threads: int = 2):
    """Import torch lazily (it is optional) and cap its threads; None when not installed."""
    if not USE_TORCH or importlib.util.find_spec("torch") is None:
        return None
    import torch

    torch.set_num_threads(threads)
    return torch


def _calls_per_timing(fn: Callable[[], object], target: float) -> int:
    """How many calls make one timing last about ``target`` seconds (at least one)."""
    fn()  # warm up: first-call allocations, lazy imports, caches
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(target / once))


def time_case(case: Case, repeats: int, target: float) -> dict[str, float]:
    """Median seconds per call of each implementation, timed interleaved."""
    numbers = {label: _calls_per_timing(fn, target) for label, fn in case.impls.items()}
    samples: dict[str, list[float]] = {label: [] for label in case.impls}
    for _ in range(repeats):
        for label, fn in case.impls.items():
            n = numbers[label]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[label].append((time.perf_counter() - start) / n)
    return {label: statistics.median(s) for label, s in samples.items()}


def run(cases: list[Case], repeats: int, target: float) -> list[dict]:
    """Time every case; one row per case with times in seconds and the speed-up ratios."""
    rows = []
    for case in cases:
        times = time_case(case, repeats, target)
        cy = times.get("cython")
        rows.append(
            {
                "group": case.group,
                "case": case.name,
                "shape": case.shape,
                "times": times,
                "numpy/cython": times["numpy"] / cy if cy and "numpy" in times else None,
                "torch/cython": times["torch"] / cy if cy and "torch" in times else None,
            }
        )
    return rows


def format_time(t: float | None) -> str:
    """Seconds as '12.3 us' or '4.56 ms' ('-' for a missing time)."""
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    return f"{t * 1e3:.2f} ms"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def format_table(rows: list[dict]) -> str:
    """A fixed-width table; ratios read "how many times faster cython is"."""
    header = ["case", "shape", "numpy", "cython", "torch(2T)", "numpy/cython", "torch/cython"]
    body = [
        [
            f"{r['group']}.{r['case']}",
            r["shape"],
            format_time(r["times"].get("numpy")),
            format_time(r["times"].get("cython")),
            format_time(r["times"].get("torch")),
            _fmt_ratio(r["numpy/cython"]),
            _fmt_ratio(r["torch/cython"]),
        ]
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas() -> str:
    """BLAS name and threads, from threadpoolctl when installed, else numpy's build config."""
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            return ", ".join(f"{i['internal_api']} ({i['num_threads']} threads)" for i in infos)
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # the config layout is not a stable API
        return "unknown"


def environment() -> dict:
    """What the numbers depend on: versions, BLAS, threads, CPU, torch."""
    torch = torch_or_none()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "compiled": "yes" if COMPILED is not None else "not built (NumPy twins only)",
        "kernel_threads": mg.get_num_threads(),
        "torch": (f"{torch.__version__} ({torch.get_num_threads()} threads)" if torch
                  else None if USE_TORCH else "left out (--no-torch)"),
    }


def format_environment(env: dict) -> str:
    """One right-aligned ``key: value`` line per entry; None prints as "not installed"."""
    return "\n".join(f"{k:>15}: {v if v is not None else 'not installed'}" for k, v in env.items())


def write_json(path: str, env: dict, rows: list[dict]) -> None:
    """Write ``{"environment": env, "rows": rows}``, times in seconds, for later comparison."""
    with open(path, "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=2)
