"""The grading process of one unit: runs inside a fresh interpreter started by ``grade``.

It imports the student's copy as ``minigrad`` (DEST first on ``sys.path``) and the answer key
(the package this module belongs to) under the name given by ``KEY_NAME``, gives the student's
copy the answer key's code for every exercise of the *other* units (so that a unit's score
depends on that unit's code alone), runs the unit's checks and reports each one as a JSON line
on the original stdout. Whatever the student's code prints goes to stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from types import FunctionType, ModuleType

import numpy as np

KEY_NAME = "minigrad_answer_key"

#: The environment variable that gives a worker its limit in CPU seconds (see BOOT).
CPU_LIMIT_VARIABLE = "MINIGRAD_GRADE_CPU_SECONDS"

#: What ``grade`` runs with ``python -c``: the answer key is loaded under another name from its
#: directory, so the two packages can never be confused (sys.argv: dest, key package, unit);
#: the student's copy is imported only once ``main`` runs.
BOOT = f"""
import importlib.util, os, sys
dest, key_root, unit = sys.argv[1:4]
# A worker whose grader died before it could stop it (killed itself, say) must not spin on:
# past the grader's time limit in CPU seconds the kernel stops it (SIGXCPU, then SIGKILL).
seconds = int(os.environ.get("{CPU_LIMIT_VARIABLE}", "0"))
if seconds > 0 and os.name == "posix":
    import resource
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    cap = seconds + 1 if hard == resource.RLIM_INFINITY else min(seconds + 1, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (min(seconds, cap), cap))
sys.path[:] = [dest] + [p for p in sys.path if p not in ("", ".", dest)]
# The key's compiled kernels were built as minigrad.kernels.*: they would import the student's
# copy (by that name) in the middle of the key's import. The key runs on its NumPy twins.
sys.modules["{KEY_NAME}.kernels.compiled"] = None
spec = importlib.util.spec_from_file_location(
    "{KEY_NAME}", os.path.join(key_root, "__init__.py"), submodule_search_locations=[key_root])
key = importlib.util.module_from_spec(spec)
sys.modules["{KEY_NAME}"] = key
spec.loader.exec_module(key)
from {KEY_NAME}.course import _worker
_worker.main(dest, unit)
"""


def _emit(out, **record) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def _function(prefix: str, module: str, qualname: str) -> FunctionType:
    """The plain function object of an exercise (a static or class method's underlying one)."""
    obj: object = importlib.import_module(f"{prefix}.{module}")
    *owners, name = qualname.split(".")
    for owner in owners:
        obj = getattr(obj, owner)
    raw = vars(obj)[name]
    return getattr(raw, "__func__", raw)


def use_key_for_other_units(student: ModuleType, key: ModuleType, unit_key: str) -> int:
    """Run the answer key's code in place of the student's for every exercise outside
    ``unit_key``: each such function keeps its identity and its module (so every reference
    to it sees the change) but gets the key's code. The exercises are found in the key's
    source, so markers a student moved or deleted do not matter; a function the student
    renamed keeps the student's code. Returns how many were replaced."""
    from .stubs import scan_package
    from .units import unit_of

    replaced = 0
    for site in scan_package(os.path.dirname(key.__file__)):
        if unit_of(site.exercise).key == unit_key:
            continue
        theirs = _function(key.__name__, site.module, site.qualname)
        try:
            mine = _function(student.__name__, site.module, site.qualname)
            mine.__code__ = theirs.__code__
        except (ImportError, AttributeError, KeyError, TypeError, ValueError):
            continue  # renamed, removed, or not a plain function any more
        mine.__defaults__, mine.__kwdefaults__ = theirs.__defaults__, theirs.__kwdefaults__
        replaced += 1
    return replaced


def _explain(title: str, exc: BaseException, dest: str) -> str:
    """A failed check in one sentence: the check, what went wrong, where in the copy."""
    from ._check import CheckFailed

    if isinstance(exc, CheckFailed):
        return f"{title}: {exc}"
    if isinstance(exc, NotImplementedError):
        return f"{title}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.abspath(f.filename).startswith(dest + os.sep)]
    where = f" at {os.path.relpath(frames[-1].filename, dest)}:{frames[-1].lineno}" if frames \
        else ""
    return f"{title}: your code raised {type(exc).__name__}{where}: {exc}"


def _import_failure(exc: Exception, dest: str) -> str:
    """Why the student's copy did not import, with the file and line to look at."""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = os.path.relpath(exc.filename, dest) if os.path.isabs(exc.filename) \
            else exc.filename
        return f"your copy does not import: {type(exc).__name__} at {where}:{exc.lineno}: " \
            f"{exc.msg}"
    return _explain("your copy does not import", exc, dest)


def main(dest: str, unit_key: str) -> None:
    """Grade one unit of the copy in ``dest``, reporting on stdout as JSON lines: a ``start``
    record before each check, a ``check`` record after it, ``done`` at the end (``error``
    instead when the copy imported is not the one in ``dest``)."""
    out = sys.stdout
    sys.stdout = sys.stderr  # the student's prints must not garble the report
    dest = os.path.abspath(dest)
    key = sys.modules[KEY_NAME]
    try:
        import minigrad as student
    except Exception as exc:  # a syntax error, say: name the file and line, not a traceback
        _emit(out, error=_import_failure(exc, dest))
        return

    from . import checks_core, checks_layers  # noqa: F401  (they register the checks)
    from ._check import CHECKS, Pair

    if not os.path.abspath(student.__file__).startswith(dest + os.sep):
        _emit(out, error=f"imported minigrad from {student.__file__}, not from {dest}")
        return
    use_key_for_other_units(student, key, unit_key)
    for number, (title, fn) in enumerate(CHECKS[unit_key]):
        _emit(out, start=title)
        pair = Pair(student, key, np.random.default_rng(1000 + number))
        try:
            fn(pair)
        except Exception as exc:  # any failure of the student's code costs this check
            _emit(out, check=title, ok=False, message=_explain(title, exc, dest))
        else:
            _emit(out, check=title, ok=True, message="")
    _emit(out, done=True, student=student.__file__, key=key.__file__)
