"""``docs/benchmarks.md`` from one benchmark result (``--markdown PATH``).

Every number in the page comes from the rows and the environment of that result: the tables,
the summary sentences and the targets table are computed here, and the fixed prose holds no
numbers, so text and tables cannot disagree. ``python -m minigrad.bench --from-json RESULT
--markdown PATH`` renders a saved result again without timing anything.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from minigrad.bench import harness

INTRO = """\
# Benchmarks

What a training step and each compiled kernel cost in minigrad, next to idiomatic NumPy and
PyTorch, measured on one machine. This page is generated from one run of
`python -m minigrad.bench` (command below); do not edit it by hand.

How to read it:

- Every time is a median of interleaved repeats in one process: each repeat runs every
  implementation once, in turn, so machine noise hits them alike. Read the **ratios**, not the
  absolute times.
- A ratio column `X / minigrad` is X's time divided by minigrad's: above 1, minigrad (its
  compiled backend) is that many times faster.
- `numpy` is the row's NumPy baseline: the kernel's NumPy twin; for `step`, the training step
  written out by hand in NumPy; for `overhead.tiny-op`, the same math as bare NumPy calls; for
  `overhead.engine`, minigrad's own kernel calls without the engine. `minigrad-numpy` is
  minigrad on its NumPy twins. `torch 1T` and `torch 2T` are PyTorch on one and two threads.
- `GB/s` is the memory the work must move at least (each input read once, each output
  written once) divided by minigrad's time. Compare it with the machine's bandwidth in the
  environment block: `in-cache` for working sets that fit in L2, `memory` beyond the caches.
- BLAS runs on one thread (pinned with threadpoolctl); minigrad's kernels split work over
  threads only above a size measured per kernel family (`minigrad/kernels/_parallel.pxi`;
  the reductions set their own in `_reduce.pyx`).
"""


LIMITS = """\
What bounds the rows where minigrad is not ahead (the Summary above lists them from the data):

- **Sums along a row** accumulate float32 data in float64, which keeps them accurate where a
  float32 sum is not; converting each float to a double is the bound, one vector conversion
  per four floats, while PyTorch sums in float32.
- **Tiny calls** cost what their Python around the kernel costs (argument checks, allocation of
  the output): a few microseconds that a C++ dispatcher spends less on.
- **Two threads on a shared machine**: a kernel splits its work over threads only above a size
  where that paid on an idle machine; when another process holds the second core, a
  two-thread region waits for it, and so do PyTorch's 2-thread rows.
- **Training steps** are bound by per-op Python (Tensor, graph node, backward walk) and, under
  `mg.compile`, by the kernels themselves: the `overhead.engine` row's `numpy` column is the
  digits step's kernel calls alone, the floor of any replay of it. On the MNIST-size MLP the
  matrix products (BLAS on one thread) are most of the step.
- **The comparators vary between runs** on a shared VM more than minigrad does: PyTorch's
  (1024, 1000) cross-entropy took 0.76 ms on two threads in one run and 1.2-1.6 ms in later
  runs on the same machine and day, and its one-thread row sums at (256, 512) 6.6-8.9 us. A
  ratio within a few tenths of 1 can land on either side from one run to the next.
"""


@dataclass(frozen=True)
class Target:
    """A performance goal checked against the rows: ``label``'s time / minigrad's time must
    be at least ``at_least`` in every row that ``match`` accepts."""

    text: str
    match: Callable[[dict], bool]
    label: str
    at_least: float


def _is(group: str, case_prefix: str, shape: str | None = None) -> Callable[[dict], bool]:
    def match(row: dict) -> bool:
        return (row["group"] == group and row["case"].startswith(case_prefix)
                and (shape is None or row["shape"] == shape))

    return match


def _reduction(row: dict) -> bool:
    return row["group"] == "reductions" and row["case"].split("(")[0] in (
        "sum", "mean", "max", "min")


#: The goals the tables are checked against; a new goal is one entry.
TARGETS = [
    Target("sum/mean/max/min never slower than NumPy", _reduction, "numpy", 1.0),
    Target("sum/mean/max/min at least as fast as PyTorch on one thread", _reduction,
           "torch-1T", 1.0),
    Target("LayerNorm fwd+bwd (256x512) at most PyTorch's 2-thread time",
           _is("norm", "layernorm fwd+bwd", "256x512"), "torch", 1.0),
    Target("cross-entropy fwd+bwd (1024x1000) at least 2x faster than PyTorch on 2 threads",
           _is("xent", "cross_entropy", "1024x1000"), "torch", 2.0),
]


def _table(rows: list[dict]) -> str:
    header, body = harness.table_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # case names hold markdown characters ("(a*b+c)"): code spans keep them literal
    lines += ["| " + " | ".join([f"`{cells[0]}`"] + cells[1:]) + " |" for cells in body]
    return "\n".join(lines)


def _environment(env: dict) -> str:
    shown = {k: v for k, v in env.items() if k != "command"}  # the command has its own section
    return "```\n" + harness.format_environment(shown) + "\n```"


def _targets(rows: list[dict]) -> str:
    lines = ["| target | rows | worst ratio | met |", "|---|---|---|---|"]
    for t in TARGETS:
        ratios = [r["ratios"][t.label] for r in rows if t.match(r)
                  and r.get("ratios", {}).get(t.label)]
        if not ratios:
            lines.append(f"| {t.text} | 0 | - | not measured |")
            continue
        worst = min(ratios)
        lines.append(f"| {t.text} | {len(ratios)} | {worst:.2f}x | "
                     f"{'yes' if worst >= t.at_least else 'no'} |")
    return "\n".join(lines)


def _summary(rows: list[dict]) -> str:
    """Per group and comparator: how many rows minigrad wins and the range of ratios; then
    every row where it loses, with its ratio."""
    lines = []
    losses = []
    for group in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == group]
        parts = []
        for label in harness.ratio_labels(mine):
            ratios = [r["ratios"][label] for r in mine if r.get("ratios", {}).get(label)]
            wins = sum(x >= 1 for x in ratios)
            parts.append(f"faster than {harness.column(label).header} in {wins} of "
                         f"{len(ratios)} rows ({min(ratios):.2f}x to {max(ratios):.2f}x)")
            losses += [(r, label) for r in mine if r.get("ratios", {}).get(label, 1) < 1]
        if parts:
            lines.append(f"- **{group}**: minigrad is " + "; ".join(parts) + ".")
    if losses:
        lines.append("\nRows where minigrad is slower:\n")
        lines += [f"- {r['group']}.{r['case']} [{r['shape']}]: "
                  f"{r['ratios'][label]:.2f}x of {harness.column(label).header}"
                  for r, label in losses]
    return "\n".join(lines)


def markdown(env: dict, rows: list[dict], command: str, plot: str | None = None) -> str:
    """The whole page for ``rows`` measured in ``env`` by ``command``."""
    parts = [INTRO, "## Environment", _environment(env), "## Command",
             f"```\n{command}\n```", "## Targets", _targets(rows), "## Summary", _summary(rows),
             "## Known limits", LIMITS, "## Results"]
    if plot:
        parts.append(f"![speed-up ratios of the run above]({plot})")
    for group in dict.fromkeys(r["group"] for r in rows):
        parts += [f"### {group}", _table([r for r in rows if r["group"] == group])]
    return "\n\n".join(parts) + "\n"


def write_markdown(path: str, env: dict, rows: list[dict], command: str,
                   plot: str | None = None) -> None:
    """Write ``markdown(...)`` to ``path`` atomically."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".md")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(markdown(env, rows, command, plot))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
