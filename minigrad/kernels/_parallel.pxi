# Included (textually) by every kernel module that may split work across threads, so that
# the thread cap and the size threshold live in one place. Each module gets its own copy of
# the cap; ``minigrad.kernels.compiled.set_num_threads`` sets all of them.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int mg_max_threads(void) { return omp_get_max_threads(); }
    static int mg_num_procs(void) { return omp_get_num_procs(); }
    #else
    #include <limits.h>
    static int mg_max_threads(void) { return 1; }
    static int mg_num_procs(void) { return INT_MAX; }  /* a serial build starts no threads */
    #endif
    """
    int mg_max_threads() noexcept nogil
    int mg_num_procs() noexcept nogil

# Below this many elements per call a second thread costs more than it saves. Measured on
# 2 cores, wall time, best of 40 (float32; 2 threads' time / 1 thread's):
# - idle machine (first measurement): 1.3x slower at 8K elements, paying from about 256K;
# - other processes busy on both cores (load 6-7): slower at every size up to 1M elements,
#   sum along a row 0.17x at 16K, 0.54x at 256K, 0.78x at 1M; cross-entropy fwd+bwd 0.2x at
#   16K-64K, 1.0x at 128K, 0.8x at 1M; LayerNorm fwd+bwd 0.7x at 128K, 1.0x at 512K;
#   BatchNorm fwd+bwd 0.2x at 64K, 0.6x at 256K, 0.8x at 1M. (OMP_WAIT_POLICY=PASSIVE: a
#   two-thread region costs about 15 us of wake-up.)
# One threshold serves every memory-bound kernel: none of them paid below 256K either way.
cdef enum:
    PARALLEL_MIN_WORK = 262144

# The cross-entropy kernels (_softmax_xent.pxi) do more arithmetic per element (an exp in the
# forward and one in the backward) and pay from fewer. Measured, float32 forward then backward,
# one process alternating 1 and 2 threads, medians of 15 rounds, 2 cores (Sapphire Rapids class)
# with other jobs running (load about 2); 2 threads' time / 1 thread's: rows of 1000 values 0.88
# at 16K elements, 0.68 at 32K, 0.60 at 64K, 0.54 at 128K, 0.52 at 256K, 0.50-0.54 at 1M; rows of
# 10 values 0.68 at 10K, 0.65 at 41K, 0.54 at 164K. With one more process busy: rows of 1000 0.61
# at 64K and 0.50 at 1M, rows of 10 0.96-0.98 at 164K-655K (best rounds 0.53-0.55). 64K: from
# there two threads gain 1.6x on long rows and lose nothing on short ones with a core busy.
cdef enum:
    XENT_MIN_WORK = 65536

cdef int _default_threads = mg_max_threads()
cdef int _num_threads = _default_threads


def set_num_threads(int n):
    """Cap the OpenMP threads this module's kernels may use.

    At most the processors OpenMP sees (or its start-up default when larger): asked for tens
    of thousands of threads, OpenMP fails to start them and the process dies.
    ``minigrad.set_num_threads`` checks the same bound first, with a fuller message.
    """
    global _num_threads
    # No max(): modules that include this file define their own max (the reduction).
    cdef int limit = mg_num_procs()
    if limit < _default_threads:
        limit = _default_threads
    if n < 1 or n > limit:
        raise ValueError(f"number of threads must be between 1 and {limit}, got {n}")
    _num_threads = n


def get_num_threads():
    """Return this module's OpenMP thread cap."""
    return _num_threads


cdef inline int threads_for(Py_ssize_t work) noexcept nogil:
    """Threads to use for a loop touching ``work`` elements: 1 below the threshold."""
    if work < PARALLEL_MIN_WORK or _num_threads < 2:
        return 1
    return _num_threads


cdef inline int threads_over(Py_ssize_t work, Py_ssize_t min_work) noexcept nogil:
    """Threads to use for a loop touching ``work`` elements when the kernel's own measured
    threshold is ``min_work`` elements: 1 below it."""
    if work < min_work or _num_threads < 2:
        return 1
    return _num_threads


cdef inline Py_ssize_t task_chunk(Py_ssize_t outer, Py_ssize_t inner, int nthreads) noexcept:
    """Width of the chunks of ``inner`` outputs handed to threads as separate tasks: all of them
    when the ``outer`` rows alone keep the threads busy, else about four tasks per thread.

    Chunking never changes a result: each output is accumulated by one task in a fixed order.
    """
    cdef Py_ssize_t chunk
    if nthreads < 2 or outer >= 2 * nthreads or inner < 64:
        return inner if inner > 1 else 1
    chunk = (inner + 4 * nthreads - 1) // (4 * nthreads)
    return chunk if chunk > 16 else 16


cdef _check_min_work(dict changes, dict before):
    """Raise unless ``changes`` (the keyword arguments of a module's ``parallel_min_work``)
    names only kernels of ``before`` (that module's thresholds), each with an int >= 0."""
    unknown = set(changes) - set(before)
    if unknown:
        raise TypeError(f"parallel_min_work: unknown kernels {sorted(unknown)}")
    for name, value in changes.items():
        if type(value) is not int or value < 0:
            raise ValueError(f"parallel_min_work: {name} must be an int >= 0, got {value!r}")
