"""Timing harness: interleaved repeats, medians, one table per group and a JSON dump.

A benchmark group is a module with ``cases(quick: bool) -> list[Case]``. Each ``Case`` holds
zero-argument callables keyed by implementation label; the harness times them interleaved
(every repeat runs each implementation once, in turn) so that machine noise hits all of them
alike, and reports medians. Groups take the compiled kernels from ``COMPILED``, which is None
when they are not built: those groups then leave the "cython" implementation out and the table
shows "-" in its column.

Comparators are columns: a label in ``Case.impls`` becomes a time column and, when its column
says so, a ratio column "label time / minigrad time". ``COLUMNS`` fixes their order, headers
and legends; a new comparator is one ``register_column`` call (a label no column names still
gets a plain column of its own). A case that has a ``torch`` implementation but no
``torch-1T`` gets one: the same callable timed with PyTorch on one thread.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
from minigrad import kernels

#: The compiled kernels under their public names, or None when they are not built.
COMPILED = kernels.compiled

#: Set False (``--no-torch``) to leave PyTorch out even when it is installed.
USE_TORCH = True

#: Threads PyTorch runs on in the "torch" column (the "torch-1T" column: one).
TORCH_THREADS = 2


@dataclass
class Case:
    """One benchmark row: the same work done by each implementation.

    ``bytes`` is the memory the work must move at least (each input read once, each output
    written once); when given, the row shows minigrad's GB/s next to the machine's bandwidth.
    """

    group: str
    name: str
    shape: str
    impls: dict[str, Callable[[], object]] = field(default_factory=dict)
    bytes: int | None = None


@dataclass(frozen=True)
class Column:
    """How one implementation label shows up: table header, chart legend, whether its time is
    also given as a ratio to minigrad's, and what to do before timing it (e.g. set threads)."""

    label: str
    header: str
    legend: str
    ratio: bool = True
    prepare: Callable[[], None] | None = None


def _torch_threads(n: int) -> Callable[[], None]:
    def prepare() -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)

    return prepare


#: Known comparators in table order; "cython" is minigrad itself (the denominator of ratios).
COLUMNS: list[Column] = [
    Column("numpy", "numpy", "NumPy baseline"),
    Column("cython", "minigrad", "minigrad", ratio=False),
    Column("minigrad-numpy", "minigrad-numpy", "minigrad on the NumPy twins", ratio=False),
    Column("torch-1T", "torch 1T", "PyTorch, 1 thread", prepare=_torch_threads(1)),
    Column("torch", f"torch {TORCH_THREADS}T", f"PyTorch, {TORCH_THREADS} threads",
           prepare=_torch_threads(TORCH_THREADS)),
]


def register_column(column: Column, before: str | None = None) -> None:
    """Add (or replace) a comparator column, placed before the column labelled ``before``
    (default: at the end)."""
    COLUMNS[:] = [c for c in COLUMNS if c.label != column.label]
    labels = [c.label for c in COLUMNS]
    COLUMNS.insert(labels.index(before) if before in labels else len(COLUMNS), column)


def column(label: str) -> Column:
    """The column of ``label`` (a plain one for a label no column names)."""
    for c in COLUMNS:
        if c.label == label:
            return c
    return Column(label, label, label)


def torch_or_none(threads: int = TORCH_THREADS):
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


def _implementations(case: Case) -> dict[str, Callable[[], object]]:
    impls = dict(case.impls)
    if "torch" in impls and "torch-1T" not in impls:
        impls = {**{k: v for k, v in impls.items() if k != "torch"},
                 "torch-1T": impls["torch"], "torch": impls["torch"]}
    return impls


def time_case(case: Case, repeats: int, target: float) -> dict[str, float]:
    """Median seconds per call of each implementation, timed interleaved."""
    impls = _implementations(case)
    prepare = {label: column(label).prepare for label in impls}
    numbers = {}
    for label, fn in impls.items():
        if prepare[label] is not None:
            prepare[label]()
        numbers[label] = _calls_per_timing(fn, target)
    samples: dict[str, list[float]] = {label: [] for label in impls}
    for _ in range(repeats):
        for label, fn in impls.items():
            if prepare[label] is not None:
                prepare[label]()
            n = numbers[label]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[label].append((time.perf_counter() - start) / n)
    return {label: statistics.median(s) for label, s in samples.items()}


def make_row(case: Case, times: dict[str, float]) -> dict:
    """A result row: times in seconds, ratios (other / minigrad) and minigrad's GB/s."""
    cy = times.get("cython")
    ratios = {label: t / cy for label, t in times.items() if cy and label != "cython"}
    return {
        "group": case.group,
        "case": case.name,
        "shape": case.shape,
        "times": times,
        "ratios": ratios,
        "bytes": case.bytes,
        "gbps": case.bytes / cy / 1e9 if case.bytes and cy else None,
        "numpy/cython": ratios.get("numpy"),
        "torch/cython": ratios.get("torch"),
    }


def run(cases: list[Case], repeats: int, target: float) -> list[dict]:
    """Time every case; one row per case."""
    return [make_row(case, time_case(case, repeats, target)) for case in cases]


def format_time(t: float | None) -> str:
    """Seconds as '12.3 us' or '4.56 ms' ('-' for a missing time)."""
    if t is None:
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    return f"{t * 1e3:.2f} ms"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _ordered_labels(rows: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        seen += [label for label in r["times"] if label not in seen]
    known = [c.label for c in COLUMNS if c.label in seen]
    return known + [label for label in seen if label not in known]


def ratio_labels(rows: list[dict]) -> list[str]:
    """Labels that have a ratio column and a ratio in at least one row, in column order."""
    return [label for label in _ordered_labels(rows) if column(label).ratio
            and any(r.get("ratios", {}).get(label) for r in rows)]


def table_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one table of ``rows``: the case, every implementation's time,
    minigrad's GB/s (when any row has it) and each ratio column, "-" where a row lacks it."""
    labels = _ordered_labels(rows)
    ratios = ratio_labels(rows)
    with_gbps = any(r.get("gbps") for r in rows)
    header = ["case", "shape"] + [column(label).header for label in labels]
    header += ["GB/s"] if with_gbps else []
    header += [f"{column(label).header} / minigrad" for label in ratios]
    body = []
    for r in rows:
        cells = [r["case"], r["shape"]] + [format_time(r["times"].get(label)) for label in labels]
        if with_gbps:
            cells.append(f"{r['gbps']:.1f}" if r.get("gbps") else "-")
        cells += [_fmt_ratio(r.get("ratios", {}).get(label)) for label in ratios]
        body.append(cells)
    return header, body


def format_table(rows: list[dict]) -> str:
    """One fixed-width table per group; ratios read "how many times faster minigrad is"."""
    blocks = []
    for group in dict.fromkeys(r["group"] for r in rows):
        header, body = table_cells([r for r in rows if r["group"] == group])
        widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
        lines = [f"[{group}]", " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pin_blas_threads(n: int = 1):
    """Cap BLAS (and NumPy-side OpenMP) thread pools with threadpoolctl for the whole run.

    On a small machine OpenBLAS otherwise splits even a 64x128 product over every core and
    stalls when another process holds one. Returns the threadpoolctl limiter to keep alive, or
    None (with a printed note) when threadpoolctl is not installed.
    """
    if importlib.util.find_spec("threadpoolctl") is None:
        print("NOTE: threadpoolctl is not installed (pip install threadpoolctl, or the 'bench' "
              "extra), so BLAS threads are not pinned: set OPENBLAS_NUM_THREADS=1 by hand.")
        return None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


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


def _best_rate(fn: Callable[[], object], nbytes: int, budget: float = 0.05) -> float:
    """Bytes per second of the fastest of several timed calls of ``fn`` (about ``budget`` s)."""
    fn()
    best = float("inf")
    stop = time.perf_counter() + budget
    while time.perf_counter() < stop or best == float("inf"):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return nbytes / best


def memory_bandwidth() -> dict[str, float]:
    """One thread's bandwidth in GB/s, best of a short burst: NumPy copy (read + write) and
    float64 sum (read) of an array that fits in L2 (256 KiB) and of one far beyond the caches
    (64 MiB). A kernel's GB/s is read against the pair matching its working set."""
    out = {}
    for name, size in (("in-cache", 1 << 18), ("memory", 1 << 26)):
        src = np.ones(size // 8)
        dst = np.empty_like(src)
        out[f"copy {name}"] = _best_rate(lambda s=src, d=dst: np.copyto(d, s), 2 * size) / 1e9
        out[f"sum {name}"] = _best_rate(lambda s=src: np.add.reduce(s), size) / 1e9
    return out


def environment() -> dict:
    """What the numbers depend on: versions, BLAS, threads, CPU, torch, bandwidth."""
    torch = torch_or_none()
    bandwidth = memory_bandwidth()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "compiled": "yes" if COMPILED is not None else "not built (NumPy twins only)",
        "kernel_threads": mg.get_num_threads(),
        "torch": (f"{torch.__version__} ({TORCH_THREADS} threads; torch 1T: 1)" if torch
                  else None if USE_TORCH else "left out (--no-torch)"),
        "bandwidth_GBps": {k: round(v, 1) for k, v in bandwidth.items()},
    }


def format_environment(env: dict) -> str:
    """One right-aligned ``key: value`` line per entry; None prints as "not installed"."""
    lines = []
    for k, v in env.items():
        if isinstance(v, dict):
            v = ", ".join(f"{name} {value:.1f}" for name, value in v.items())
        lines.append(f"{k:>15}: {v if v is not None else 'not installed'}")
    return "\n".join(lines)


def write_json(path: str, env: dict, rows: list[dict]) -> None:
    """Write ``{"environment": env, "rows": rows}``, times in seconds, atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_json(path: str) -> tuple[dict, list[dict]]:
    """``(environment, rows)`` from a file ``write_json`` wrote."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "rows" not in data or "environment" not in data:
        raise ValueError(f"{path} is not a benchmark result (no 'environment' and 'rows')")
    return data["environment"], data["rows"]
