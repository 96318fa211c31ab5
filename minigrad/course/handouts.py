"""The Markdown a student copy carries: one handout per unit and a README for the copy."""

from __future__ import annotations

import os
import textwrap

from .stubs import Site
from .units import UNITS, Unit


def handout_path(u: Unit) -> str:
    """The handout's path inside the student copy, e.g. ``handouts/08-batchnorm_backward.md``."""
    return f"handouts/{UNITS.index(u) + 1:02d}-{u.key}.md"


def _fill(text: str) -> str:
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def handout(u: Unit, sites: list[Site]) -> str:
    """One unit's handout: the goal, the math, where to write it, what is checked, how to
    run the grader."""
    number = UNITS.index(u) + 1
    rows = "\n".join(f"| `{s.exercise}` | `minigrad/{s.path}` | `{s.qualname}` | "
                     f"{u.exercises[s.exercise]} |" for s in sites)
    return f"""# Unit {number}: {u.title}

## Goal

Write the functions below. Each one currently raises `NotImplementedError` naming its exercise;
its signature is the contract (arguments and return values are described in the module's and
the class's docstrings). The rest of your copy works once the earlier units are done, so you can
try your code interactively as soon as it runs.

| exercise | file | function | what it computes |
|---|---|---|---|
{rows}

## The math

{_fill(u.math)}

{_fill(f"Read more: {u.doc} (the `docs/` folder of your copy).")}

## What the grader checks

{_fill(u.checks[0].upper() + u.checks[1:])}

Each failure is reported with the first check that failed, in words: which quantity was
wrong, for which input shape, and the worst element (yours against the expected value).

## Running the grader

From the directory that holds your copy (`minigrad/`, `handouts/`, `course.json`):

```bash
python -m minigrad.course grade . --units {u.key}
```

The grader needs the full minigrad installed (it is the answer key) and runs each unit in its own
process with a time limit, so a crash or an endless loop costs that unit only. While you work on
this unit the grader uses the reference versions of the other units' exercises, so your score
here depends on this unit's code alone. Test as you go: `mg.gradcheck(fn, *inputs)` compares
your gradients with finite differences.
"""


def readme(chosen: list[Unit]) -> str:
    """The copy's README: the units in order and the grader's command."""
    lines = "\n".join(f"{UNITS.index(u) + 1}. [{u.title}]({handout_path(u)})" for u in chosen)
    return f"""# minigrad: course copy

This is a copy of minigrad in which some functions are left for you to write. It runs on NumPy
only: no compiler is needed. Put this directory first on your path (work from it, or
`export PYTHONPATH=$PWD`) and `import minigrad` gives you this copy.

Units, in order:

{lines}

Grade your work (all units, or some with `--units`; `--json` for a machine-readable report):

```bash
python -m minigrad.course grade .
```
"""


def write_all(root: str, chosen: list[Unit], sites: list[Site]) -> None:
    """Write every chosen unit's handout and the README under ``root``."""
    os.makedirs(os.path.join(root, "handouts"), exist_ok=True)
    for u in chosen:
        mine = [s for s in sites if s.exercise in u.exercises]
        with open(os.path.join(root, handout_path(u)), "w", encoding="utf-8") as f:
            f.write(handout(u, mine))
    with open(os.path.join(root, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme(chosen))
