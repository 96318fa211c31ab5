"""Why the compiled kernels could not be imported, and what to do about it, in the user's terms."""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_BUILT = (".so", ".pyd")


def _built_modules(directory: str) -> list[str]:
    """Compiled kernel modules (``_<family>.<platform tag>.so`` or ``.pyd``) in ``directory``."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith("_") and n.endswith(_BUILT))


def _installed_copy() -> str | None:
    """Another minigrad on ``sys.path`` whose kernels are built (hidden by this one), if any."""
    for entry in sys.path:
        package = os.path.join(os.path.abspath(entry or os.curdir), "minigrad")
        kernels = os.path.join(package, "kernels")
        if os.path.realpath(kernels) != os.path.realpath(_HERE) and _built_modules(kernels):
            return package
    return None


def missing_build_message(error: ImportError | None) -> str:
    """The warning shown when the compiled kernels are unavailable: the cause and the fix."""
    head = "minigrad's compiled kernels could not be imported; running on the NumPy twins " \
           "(same results, slower)."
    if _built_modules(_HERE):  # built, but for another Python or NumPy, or damaged
        return (f"{head} The modules in {_HERE} failed to load ({error}); rebuild them: "
                "`python setup.py build_ext --inplace` in a checkout, or "
                "`pip install --force-reinstall --no-cache-dir .`.")
    if not any(n.endswith(".pyx") for n in os.listdir(_HERE)):
        return f"{head} {_HERE} holds no compiled modules; reinstall with `pip install .`."
    root = os.path.dirname(os.path.dirname(_HERE))
    message = (f"{head} This minigrad was imported from the source tree {root}, where the "
               "kernels were never built")
    installed = _installed_copy()
    if installed is not None:
        message += (f"; an installed copy with built kernels is at {installed}, but the source "
                    "tree comes first on sys.path: run from another directory to use it")
    return (message + ". To build the kernels in the source tree: `pip install -e .` or "
            "`python setup.py build_ext --inplace`.")
