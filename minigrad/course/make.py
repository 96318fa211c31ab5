"""``make``: write a student copy of minigrad with the chosen exercises stubbed, and handouts.

The copy holds the package's Python files only (no compiled modules, no Cython sources, no
benchmarks, no course kit, no ``.pyc``), runs on the NumPy backend, and is checked before it is
kept: it must import in a fresh interpreter, and no stubbed body may survive anywhere in it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from . import handouts
from .stubs import Site, code_tokens, scan_package, stub_lines, stub_source
from .units import UNITS, Unit, unit, unit_of

#: The answer key: the package this module belongs to, and the checkout holding its docs.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS_ROOT = os.path.join(os.path.dirname(PACKAGE_ROOT), "docs")

_SKIPPED_DIRS = {"__pycache__", "bench", "course"}
_COMPILED_STUB = '''"""The course copy has no compiled kernels: it runs on the NumPy twins."""

raise ImportError("the course copy of minigrad has no compiled kernels; it runs on NumPy")
'''
# The copy's own ``python -m minigrad.course``: run from the copy, that name finds the copy, so it
# hands the command to the installed minigrad (the answer key) in a process started elsewhere.
_SHIM = '''"""Hands ``python -m minigrad.course`` to the installed minigrad: it has the grader."""

import os
import subprocess
import sys
import tempfile

copy = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
if os.environ.get("MINIGRAD_COURSE_SHIM"):  # the installed minigrad was this copy again
    sys.exit("python -m minigrad.course: no installed minigrad (the answer key) was found "
             "besides this copy; install minigrad to make or grade coursework")
args = [os.path.abspath(a) if os.path.exists(a) else a for a in sys.argv[1:]]
path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if p and os.path.realpath(p) != copy]
env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), MINIGRAD_COURSE_SHIM="1")
probe = "import importlib.util as u, sys; sys.exit(u.find_spec('minigrad') is None)"
run = dict(env=env, cwd=tempfile.gettempdir())
if subprocess.call([sys.executable, "-c", probe], **run):
    sys.exit("python -m minigrad.course: minigrad is not installed, and the grader (the answer "
             "key) comes with it; install minigrad to grade this copy")
sys.exit(subprocess.call([sys.executable, "-m", "minigrad.course", *args], **run))
'''
_BACKEND_DEFAULT = 'os.environ.get("MINIGRAD_BACKEND", "cython")'
# A withheld module: importing it works, using any of its names raises (PEP 562's __getattr__)
_WITHHELD = '''"""Withheld from the course copy: it solves the "{unit}" unit in another form."""


def __getattr__(name):
    raise NotImplementedError(
        "{module} is withheld from the course copy (it solves the {unit!r} unit); what needs "
        "it (tensor hooks, the profiler, trace_backward) works in the installed minigrad")
'''


def chosen_units(keys: list[str] | None) -> list[Unit]:
    """The units named by ``keys`` in course order (all of them for None or empty)."""
    if not keys:
        return list(UNITS)
    wanted = {unit(k).key for k in keys}
    return [u for u in UNITS if u.key in wanted]


def make(dest: str, units: list[str] | None = None) -> list[Site]:
    """Write the student copy for ``units`` (default: all) into ``dest``; return the stubbed
    sites. ``dest`` must not exist yet or be an empty directory; the copy is built beside it
    and moved into place only once it passed its checks."""
    chosen = chosen_units(units)
    dest = os.path.abspath(dest)
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise FileExistsError(f"{dest} exists and is not an empty directory")
    for source in (PACKAGE_ROOT, DOCS_ROOT):  # the copy would copy itself, without end
        real = os.path.realpath(source)
        if os.path.commonpath([real, os.path.realpath(dest)]) == real:
            raise ValueError(f"{dest} is inside {source}, which the student copy is made from; "
                             "choose a directory outside it")
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".minigrad-course-", dir=parent)
    try:
        sites = _write_copy(work, chosen)
        _check_copy(work, sites)
        if os.path.isdir(dest):
            os.rmdir(dest)
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return sites


def _write_copy(work: str, chosen: list[Unit]) -> list[Site]:
    package = os.path.join(work, "minigrad")
    _copy_package(PACKAGE_ROOT, package)
    _force_numpy(package)
    os.makedirs(os.path.join(package, "course"))
    with open(os.path.join(package, "course", "__init__.py"), "w", encoding="utf-8") as f:
        f.write('"""The course kit lives in the installed minigrad; see __main__."""\n')
    with open(os.path.join(package, "course", "__main__.py"), "w", encoding="utf-8") as f:
        f.write(_SHIM)
    keys = {u.key for u in chosen}
    sites = [s for s in scan_package(PACKAGE_ROOT) if unit_of(s.exercise).key in keys]
    missing = {e for u in chosen for e in u.exercises} - {s.exercise for s in sites}
    if missing:
        raise RuntimeError(f"no marker in the source for exercises {sorted(missing)}")
    for path in sorted({s.path for s in sites}):
        file_sites = [s for s in sites if s.path == path]
        bodies = {s.qualname: stub_lines(s, unit_of(s.exercise).exercises[s.exercise],
                                         handouts.handout_path(unit_of(s.exercise)))
                  for s in file_sites}
        with open(os.path.join(PACKAGE_ROOT, path), encoding="utf-8") as f:
            text = stub_source(f.read(), file_sites, bodies)
        with open(os.path.join(package, path), "w", encoding="utf-8") as f:
            f.write(text)
    for u in chosen:
        for module in u.withheld:
            with open(os.path.join(package, module), "w", encoding="utf-8") as f:
                f.write(_WITHHELD.format(unit=u.key, module=f"minigrad/{module}"))
    if os.path.isdir(DOCS_ROOT):
        shutil.copytree(DOCS_ROOT, os.path.join(work, "docs"),
                        ignore=shutil.ignore_patterns("benchmarks*"))
    handouts.write_all(work, chosen, sites)
    manifest = {"units": [u.key for u in chosen],
                "exercises": {s.exercise: f"minigrad/{s.path}:{s.qualname}" for s in sites}}
    with open(os.path.join(work, "course.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return sites


def _copy_package(src: str, dst: str) -> None:
    """The package's Python files, nothing compiled, generated or course-related."""
    for directory, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]
        target = os.path.join(dst, os.path.relpath(directory, src))
        os.makedirs(target, exist_ok=True)
        for name in files:
            if name.endswith(".py"):
                shutil.copyfile(os.path.join(directory, name), os.path.join(target, name))


def _force_numpy(package: str) -> None:
    """Make the NumPy twins the copy's only backend, without a warning at import."""
    kernels = os.path.join(package, "kernels")
    with open(os.path.join(kernels, "compiled.py"), "w", encoding="utf-8") as f:
        f.write(_COMPILED_STUB)
    init = os.path.join(kernels, "__init__.py")
    with open(init, encoding="utf-8") as f:
        text = f.read()
    if text.count(_BACKEND_DEFAULT) != 1:
        raise RuntimeError(f"cannot find the default backend ({_BACKEND_DEFAULT}) in {init}")
    with open(init, "w", encoding="utf-8") as f:
        f.write(text.replace(_BACKEND_DEFAULT, _BACKEND_DEFAULT.replace("cython", "numpy")))


def _check_copy(work: str, sites: list[Site]) -> None:
    """Refuse a copy in which a stubbed body survives or that does not import."""
    survivors = find_solutions(work, sites)
    if survivors:
        raise RuntimeError("solution text survives in the student copy: " + "; ".join(survivors))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINIGRAD_BACKEND")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the import must leave no __pycache__ in the copy
    probe = ("import sys; sys.path.insert(0, '.'); import minigrad, os; "
             "assert os.path.dirname(minigrad.__file__) == os.path.abspath('minigrad'); "
             "assert minigrad.get_backend() == 'numpy'")
    run = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", probe], cwd=work,
                         env=env, capture_output=True, text=True, timeout=120)
    if run.returncode:
        raise RuntimeError(f"the student copy does not import cleanly:\n{run.stderr[-2000:]}")


def find_solutions(root: str, sites: list[Site]) -> list[str]:
    """Each stubbed body (as code tokens, its docstring and comments aside) found in any file
    under ``root``, as ``"<exercise> in <file>"``."""
    with_code = []
    for site in sites:
        with open(os.path.join(PACKAGE_ROOT, site.path), encoding="utf-8") as f:
            lines = f.read().splitlines()[site.body_start - 1: site.body_end]
        body = code_tokens("\n".join(lines), skip_docstring=True)
        if body:
            with_code.append((site.exercise, body))
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                raw = f.read()
            text = raw.decode("utf-8", errors="replace")
            # Python as tokens (comments and layout aside); anything else without whitespace
            flat = code_tokens(text) if name.endswith(".py") else "".join(text.split())
            found += [f"{exercise} in {os.path.relpath(path, root)}"
                      for exercise, body in with_code if body in flat]
    return found
