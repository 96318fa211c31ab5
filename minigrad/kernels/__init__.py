"""Kernel backends: the compiled Cython kernels and their NumPy twins, and the switch between them.

Kernels compute only: ndarray in, ndarray out. They never see a Tensor. Ops call them as
``kernels.impl.<name>(...)`` so that ``set_backend`` takes effect everywhere at once.

``compiled`` re-exports the Cython modules; ``reference`` holds the NumPy twins with the same
names, signatures and return values. If the compiled modules cannot be imported, minigrad warns
once and runs on the twins.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

from . import reference

try:
    from . import compiled
except ImportError as exc:  # the extension was not built, or was built for another Python
    compiled = None
    COMPILED_IMPORT_ERROR: ImportError | None = exc
else:
    COMPILED_IMPORT_ERROR = None

BACKENDS = ("cython", "numpy")

#: The kernel module in use; ops look it up at call time.
impl: ModuleType = reference
_backend = "numpy"
_warned = False


def set_backend(name: str) -> None:
    """Choose the kernels used by every op: ``"cython"`` (compiled) or ``"numpy"`` (twins).

    Asking for ``"cython"`` when the compiled modules are missing warns once and keeps NumPy.
    """
    global impl, _backend, _warned
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    if name == "cython" and compiled is None:
        if not _warned:
            warnings.warn(compiled_unavailable_reason(), RuntimeWarning, stacklevel=2)
            _warned = True
        name = "numpy"
    impl = compiled if name == "cython" else reference
    _backend = name


def get_backend() -> str:
    """Return the name of the kernel backend in use: ``"cython"`` or ``"numpy"``."""
    return _backend


def _install_array_cache() -> None:
    """Make NumPy keep freed buffers of 32 KiB-32 MiB for reuse (``_alloc.h``: a training
    step frees and re-allocates the same sizes, and fresh large buffers page-fault their
    memory in at every step) unless ``MINIGRAD_ARRAY_CACHE=0``. Without the compiled kernels
    NumPy's own allocator stays."""
    if compiled is not None and os.environ.get("MINIGRAD_ARRAY_CACHE", "1") != "0":
        compiled._alloc.install()


def empty_cache() -> int:
    """Hand the NumPy buffers the array cache holds for reuse (at most 128 MiB) back to the
    system; returns how many bytes that was (0 without the compiled kernels)."""
    return compiled._alloc.release() if compiled is not None else 0


def cached_bytes() -> int:
    """Bytes of freed NumPy buffers the array cache holds for reuse."""
    return compiled._alloc.cached_bytes() if compiled is not None else 0


_install_array_cache()


def compiled_available() -> bool:
    """True when the compiled Cython kernels were imported."""
    return compiled is not None


def compiled_unavailable_reason() -> str | None:
    """Why the compiled kernels are missing and how to build them; None when they loaded."""
    if compiled is not None:
        return None
    from ._diagnose import missing_build_message

    return missing_build_message(COMPILED_IMPORT_ERROR)


def _available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


def max_threads() -> int:
    """The largest count ``set_num_threads`` accepts: the CPUs this process may run on, or the
    OpenMP default when ``OMP_NUM_THREADS`` asked for more at start-up."""
    return max(_available_cpus(), _DEFAULT_THREADS)


def set_num_threads(n: int) -> None:
    """Cap the number of OpenMP threads the compiled kernels may use, ``1 <= n <=
    max_threads()``: more threads than CPUs only take turns, and far more make OpenMP fail."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n!r}")
    limit = max_threads()
    if n > limit:
        raise ValueError(
            f"set_num_threads({n}): at most {limit} threads here ({_available_cpus()} CPUs "
            "available to this process; OMP_NUM_THREADS set before start-up raises the limit)"
        )
    if compiled is not None:
        compiled.set_num_threads(n)


def get_num_threads() -> int:
    """Return the thread cap of the compiled kernels (1 when they are missing or serial)."""
    return compiled.get_num_threads() if compiled is not None else 1


_DEFAULT_THREADS = get_num_threads()
set_backend(os.environ.get("MINIGRAD_BACKEND", "cython").strip().lower() or "cython")
