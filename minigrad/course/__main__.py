"""``python -m minigrad.course list | make DEST [--units ...] | grade DEST [--json]``."""

from __future__ import annotations

import argparse
import sys

from .grade import as_json, grade, table
from .make import make
from .units import UNITS


def _list() -> str:
    lines = []
    for number, u in enumerate(UNITS, 1):
        lines.append(f"{number:2d}. {u.key}: {u.title}  [{u.doc}]")
        lines += [f"      {name}: {text}" for name, text in u.exercises.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 1 when a graded unit lost points)."""
    parser = argparse.ArgumentParser(prog="python -m minigrad.course",
                                     description="minigrad as graded coursework")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the units and their exercises")
    maker = commands.add_parser("make", help="write a student copy with handouts")
    maker.add_argument("dest", help="a new (or empty) directory")
    maker.add_argument("--units", nargs="+", metavar="UNIT", help="units to stub (default all)")
    grader = commands.add_parser("grade", help="grade a student copy")
    grader.add_argument("dest", help="the student copy's directory")
    grader.add_argument("--units", nargs="+", metavar="UNIT",
                        help="units to grade (default: those the copy was made for)")
    grader.add_argument("--timeout", type=float, default=60.0,
                        help="seconds each unit may run (default 60)")
    grader.add_argument("--jobs", type=int, default=1, help="units graded at once (default 1)")
    grader.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print(_list())
            return 0
        if args.command == "make":
            sites = make(args.dest, args.units)
            print(f"wrote a student copy with {len(sites)} exercises to {args.dest}; "
                  f"handouts are in {args.dest}/handouts")
            return 0
        results = grade(args.dest, args.units, args.timeout, args.jobs)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(as_json(results) if args.json else table(results))
    return 0 if all(r.status == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
