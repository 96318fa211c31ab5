"""``python -m minigrad.bench [group ...|all] [--quick] [--json PATH] [--plot PATH] [--no-torch]``.

minigrad's rows run on the compiled kernels. When those are not built (say, run from a source
checkout whose kernels were never compiled), the benchmark says so and times only the NumPy
twins: the cython columns stay empty.

PyTorch, when installed, runs with 2 threads. Importing it next to our OpenMP extensions can
load two OpenMP runtimes whose idle threads spin against each other on a 2-core machine; if the
torch column looks odd, compare with ``--no-torch`` or set ``OMP_WAIT_POLICY=PASSIVE``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import minigrad as mg
from minigrad import kernels
from minigrad.bench import harness, overhead, plot

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minigrad.bench", description=__doc__)
    parser.add_argument("groups", nargs="*", default=["all"], help=f"{sorted(GROUPS)} or all")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--json", metavar="PATH", help="also write every row to PATH")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--plot", metavar="PATH", help="also draw the ratios (needs matplotlib)")
    parser.add_argument("--threads", type=int, default=None,
                        help="cap the compiled kernels' OpenMP threads (default: all cores)")
    args = parser.parse_args(argv)
    harness.USE_TORCH = not args.no_torch
    if args.threads is not None:
        mg.set_num_threads(args.threads)

    names = list(GROUPS) if "all" in args.groups else args.groups
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {unknown}; choose from {sorted(GROUPS)} or all")
    repeats = args.repeats or (3 if args.quick else 21)
    target = 0.002 if args.quick else 0.02  # seconds per timing sample

    if kernels.compiled_available():
        mg.set_backend("cython")  # whatever MINIGRAD_BACKEND says: the cython rows mean it
    env = harness.environment()
    print(harness.format_environment(env), flush=True)
    missing = _missing_build_note()
    if missing:
        print(missing, flush=True)
    rows = []
    for name in names:
        cases = importlib.import_module(GROUPS[name]).cases(args.quick)
        rows += harness.run(cases, repeats, target)
    print()
    print(harness.format_table(rows))
    if missing:
        print("NOTE: the cython columns are empty: the compiled kernels are not built (above).")
    print()
    print(plot.format_all_times(rows))
    per_node = overhead.per_node_overhead(rows)
    if per_node is not None:
        print(f"engine overhead per graph node: {per_node * 1e6:.1f} us")
    if args.plot:
        plot.plot_rows(rows, args.plot)
    if args.json:
        harness.write_json(args.json, env, rows)
    return 0


def _missing_build_note() -> str | None:
    """One line saying that the compiled columns are empty, and why; None when they are not."""
    reason = kernels.compiled_unavailable_reason()
    if reason is None:
        return None
    return f"NOTE: no cython column in this run, only the NumPy twins. {reason}"


if __name__ == "__main__":
    sys.exit(main())
