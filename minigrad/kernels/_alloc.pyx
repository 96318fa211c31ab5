"""The buffer cache of NumPy arrays made while minigrad runs (see ``_alloc.h`` for why and how):
``install`` makes it NumPy's memory handler in the current context, ``release`` hands the cached
buffers back to the system and ``cached_bytes`` says how much is held."""

from cpython.pycapsule cimport PyCapsule_New

cimport numpy as cnp

cnp.import_array()

cdef extern from "_alloc.h":
    ctypedef struct PyDataMem_Handler:
        pass
    PyDataMem_Handler mg_handler
    size_t mg_release() nogil
    size_t mg_cached() nogil
    int mg_register_fork_handler()

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)


if mg_register_fork_handler() != 0:
    raise OSError("the array cache could not register its fork handler")


def install() -> None:
    """Make the cache NumPy's memory handler for arrays created from now on in this context
    (a thread's own context starts with NumPy's default; each array keeps the handler that
    made it, so arrays of either kind are always freed by the right one)."""
    PyDataMem_SetHandler(PyCapsule_New(<void *>&mg_handler, "mem_handler", NULL))


def release() -> int:
    """Free every cached buffer; returns the number of bytes handed back."""
    return mg_release()


def cached_bytes() -> int:
    """Bytes held by the cache for reuse."""
    return mg_cached()
