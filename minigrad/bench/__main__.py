"""``python -m minigrad.bench [group ...|all] [--quick] [--json PATH] [--plot PATH]
[--markdown PATH] [--from-json PATH] [--no-torch]``.

minigrad's rows run on the compiled kernels. When those are not built (say, run from a source
checkout whose kernels were never compiled), the benchmark says so and times only the NumPy
twins: the minigrad columns stay empty.

BLAS is pinned to one thread with threadpoolctl for the whole run (``--blas-threads``), and
PyTorch, when installed, is timed on one and on two threads. Idle OpenMP threads still spin by
default: on a shared machine set ``OMP_WAIT_POLICY=PASSIVE`` (read once, when the OpenMP
runtime starts, so it cannot be set from here).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

import minigrad as mg
from minigrad import kernels
from minigrad.bench import harness, overhead, plot, report

#: group name -> module defining ``cases(quick)``; a new group is one module and one line here.
GROUPS = {
    "reductions": "minigrad.bench.reductions",
    "xent": "minigrad.bench.xent",
    "norm": "minigrad.bench.norm",
    "pool": "minigrad.bench.pool",
    "conv": "minigrad.bench.conv",
    "optim": "minigrad.bench.optim",
    "step": "minigrad.bench.step",
    "overhead": "minigrad.bench.overhead",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minigrad.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="*", default=["all"], help=f"{sorted(GROUPS)} or all")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--json", metavar="PATH", help="also write every row to PATH")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--plot", metavar="PATH", help="also draw the ratios (needs matplotlib)")
    parser.add_argument("--markdown", metavar="PATH",
                        help="also write the results page (docs/benchmarks.md) to PATH")
    parser.add_argument("--from-json", metavar="PATH",
                        help="time nothing: print, plot and write the page of a saved result")
    parser.add_argument("--threads", type=int, default=None,
                        help="cap the compiled kernels' OpenMP threads (default: all cores)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads, pinned with threadpoolctl (default: 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.from_json:
        env, rows = harness.read_json(args.from_json)
        command = "python -m minigrad.bench " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        _report(args, env, rows, env.get("command", command))
        return 0
    harness.USE_TORCH = not args.no_torch
    if args.threads is not None:
        mg.set_num_threads(args.threads)
    names = list(GROUPS) if "all" in args.groups else args.groups
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {unknown}; choose from {sorted(GROUPS)} or all")
    repeats = args.repeats or (3 if args.quick else 21)
    target = 0.002 if args.quick else 0.02  # seconds per timing sample

    limiter = harness.pin_blas_threads(args.blas_threads)
    if kernels.compiled_available():
        mg.set_backend("cython")  # whatever MINIGRAD_BACKEND says: the cython rows mean it
    env = harness.environment()
    env["command"] = "python -m minigrad.bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    print(harness.format_environment(env), flush=True)
    missing = _missing_build_note()
    if missing:
        print(missing, flush=True)
    rows = []
    for name in names:
        cases = importlib.import_module(GROUPS[name]).cases(args.quick)
        rows += harness.run(cases, repeats, target)
    if args.json:
        harness.write_json(args.json, env, rows)
    _report(args, env, rows, env["command"])
    if missing:
        print("NOTE: the cython columns are empty: the compiled kernels are not built (above).")
    if limiter is not None:
        limiter.restore_original_limits()
    return 0


def _report(args, env: dict, rows: list[dict], command: str) -> None:
    """The tables, the per-node overhead line, and the chart and page when asked for."""
    print()
    print(harness.format_table(rows))
    per_node = overhead.per_node_overhead(rows)
    if per_node is not None:
        print(f"\nengine overhead per graph node: {per_node * 1e6:.1f} us")
    if args.plot:
        try:
            plot.plot_rows(rows, args.plot)
        except ValueError as exc:  # nothing to draw (no compiled column): say so, keep going
            print(f"NOTE: no chart written: {exc}")
            args.plot = None
    if args.markdown:
        report.write_markdown(args.markdown, env, rows, command, _relative(args.plot,
                                                                           args.markdown))


def _relative(plot_path: str | None, page: str) -> str | None:
    """The chart's path as the page links it (relative to the page's directory)."""
    if plot_path is None:
        return None
    return os.path.relpath(os.path.abspath(plot_path), os.path.dirname(os.path.abspath(page)))


def _missing_build_note() -> str | None:
    """One line saying that the compiled columns are empty, and why; None when they are not."""
    reason = kernels.compiled_unavailable_reason()
    if reason is None:
        return None
    return f"NOTE: no cython column in this run, only the NumPy twins. {reason}"


if __name__ == "__main__":
    sys.exit(main())
