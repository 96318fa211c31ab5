# Included by _optim.pyx: the per-tensor lists of an optimizer kernel, checked and turned into
# raw pointers (``_Batch``), and the loop that runs a rule over them in list order. The rules
# follow ``_checks.tensor_lists`` (the twins' check): at the first doubt the Python rule decides
# and words the error, so both backends raise the same exception with the same message.

cimport cython
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free

from minigrad.kernels._checks import MAX_STEP, flag_list, step_list, tensor_lists


cdef inline bint _ok(object a, int type_num, cnp.ndarray like, bint state) except -1:
    """The C version of ``_checks.tensor_lists`` for one array (False: let it word the error)."""
    if type(a) is not cnp.ndarray and not isinstance(a, cnp.ndarray):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray> a
    if cnp.PyArray_TYPE(arr) != type_num or not cnp.PyArray_ISNOTSWAPPED(arr):
        return False
    if like is not None and not cnp.PyArray_SAMESHAPE(arr, like):
        return False
    return not state or (cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISWRITEABLE(arr))


cdef inline void _bounds(cnp.ndarray a, uintptr_t* lo, uintptr_t* hi) noexcept:
    """The first and one-past-last byte an array can touch."""
    cdef int k
    cdef Py_ssize_t step
    lo[0] = hi[0] = <uintptr_t> cnp.PyArray_DATA(a)
    if cnp.PyArray_SIZE(a) == 0:
        return
    for k in range(cnp.PyArray_NDIM(a)):
        step = cnp.PyArray_STRIDES(a)[k] * (cnp.PyArray_DIMS(a)[k] - 1)
        if step < 0:
            lo[0] += step
        else:
            hi[0] += step
    hi[0] += cnp.PyArray_ITEMSIZE(a)


cdef inline bint _apart(Py_ssize_t n, uintptr_t* lo, uintptr_t* hi) noexcept:
    """True when the byte ranges [lo[i], hi[i]) of one tensor's n arrays are disjoint."""
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(i):
            if lo[i] < hi[j] and lo[j] < hi[i]:
                return False
    return True


cdef class _Batch:
    """Raw pointers to the arrays of every tensor, filled after every check passed.

    A non-contiguous parameter or gradient is handled at its turn (``stage``): it is copied to
    a contiguous array just before its update and the parameter copied back right after, so a
    later tensor sharing its memory sees the update.
    """
    cdef Py_ssize_t n
    cdef bint is_double
    cdef void** p
    cdef void** g
    cdef void** s0
    cdef void** s1
    cdef void** s2
    cdef Py_ssize_t* size
    cdef Py_ssize_t* count  # the step count (Adam) or 1 for a first momentum step (SGD)
    cdef char* plain  # 1 when the param and grad are contiguous (no staging)
    cdef list params, grads, staged

    def __dealloc__(self):
        free(self.p)
        free(self.g)
        free(self.s0)
        free(self.s1)
        free(self.s2)
        free(self.size)
        free(self.count)
        free(self.plain)

    cdef int fill(self, str fn, object params, object grads, dict states,
                  str counts_name, object counts) except -1:
        """Check and collect; at the first doubt ``_checks`` decides and words the error, so
        both backends raise the same exception with the same message. ``counts_name`` is
        "steps" (Adam), "first" (SGD with momentum) or None (no per-tensor counts)."""
        if not self._collect(params, grads, states, counts_name, counts):
            tensor_lists(fn, params, grads, **states)
            if counts_name == "steps":
                step_list(fn, "steps", counts, len(params))
            elif counts_name is not None:
                flag_list(fn, "first", counts, len(params))
            # _checks accepted: only byte ranges overlapped, which it proved harmless
            if not self._collect(params, grads, states, counts_name, counts, exact=True):
                raise AssertionError(f"{fn}: argument checks disagree")  # pragma: no cover
        return 0

    # Python lists are indexed with bounds checks: a strange element (an object whose
    # ``__class__`` runs code) could shrink a list while it is being read.
    @cython.boundscheck(True)
    cdef bint _collect(self, object params, object grads, dict states, str counts_name,
                       object counts, bint exact=False) except -1:
        cdef Py_ssize_t i, n, k
        cdef uintptr_t lo[5]
        cdef uintptr_t hi[5]
        cdef Py_ssize_t m
        cdef object a, g, c
        cdef int type_num
        cdef cnp.ndarray p
        cdef list lists = [v for v in states.values()]
        cdef void** slots[3]
        cdef bint steps = counts_name == "steps"
        if type(params) is not list or type(grads) is not list:
            return False
        n = len(<list> params)
        if len(<list> grads) != n or len(lists) > 3:
            return False
        for k in range(len(lists)):
            if lists[k] is not None and (type(lists[k]) is not list or len(lists[k]) != n):
                return False
        if counts_name is not None and (type(counts) is not list or len(<list> counts) != n):
            return False
        if n == 0:
            return True
        if not isinstance(params[0], cnp.ndarray):
            return False
        type_num = cnp.PyArray_TYPE(<cnp.ndarray> params[0])
        if type_num != cnp.NPY_FLOAT32 and type_num != cnp.NPY_FLOAT64:
            return False
        self.is_double = type_num == cnp.NPY_FLOAT64
        self._alloc(n)
        slots[0], slots[1], slots[2] = self.s0, self.s1, self.s2
        for i in range(n):
            a = (<list> params)[i]
            if not _ok(a, type_num, None, False):
                return False
            p = <cnp.ndarray> a
            g = (<list> grads)[i]
            if not cnp.PyArray_ISWRITEABLE(p) or not _ok(g, type_num, p, False):
                return False
            _bounds(p, &lo[0], &hi[0])
            _bounds(<cnp.ndarray> g, &lo[1], &hi[1])
            m = 2
            for k in range(len(lists)):
                if lists[k] is not None:
                    a = (<list> lists[k])[i]
                    if not _ok(a, type_num, p, True):
                        return False
                    _bounds(<cnp.ndarray> a, &lo[m], &hi[m])
                    m += 1
                    slots[k][i] = cnp.PyArray_DATA(<cnp.ndarray> a)
            if not exact and not _apart(m, lo, hi):
                return False
            if counts_name is not None:
                c = (<list> counts)[i]
                if steps:
                    if type(c) is not int or not 1 <= c <= MAX_STEP:
                        return False
                    self.count[i] = c
                elif c is True or c is False:
                    self.count[i] = c is True
                else:
                    return False
            self.size[i] = cnp.PyArray_SIZE(p)
            self.plain[i] = (cnp.PyArray_IS_C_CONTIGUOUS(p)
                             and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> g))
            self.p[i] = cnp.PyArray_DATA(p)
            self.g[i] = cnp.PyArray_DATA(<cnp.ndarray> g)
        for k in range(len(lists)):
            if lists[k] is None:
                free(slots[k])
                if k == 0:
                    self.s0 = NULL
                elif k == 1:
                    self.s1 = NULL
                else:
                    self.s2 = NULL
        self.params, self.grads, self.n = params, grads, n
        return True

    cdef int _alloc(self, Py_ssize_t n) except -1:
        if self.p != NULL:  # a second, exact pass
            return 0
        self.p = <void**> calloc(n, sizeof(void*))
        self.g = <void**> calloc(n, sizeof(void*))
        self.s0 = <void**> calloc(n, sizeof(void*))
        self.s1 = <void**> calloc(n, sizeof(void*))
        self.s2 = <void**> calloc(n, sizeof(void*))
        self.size = <Py_ssize_t*> calloc(n, sizeof(Py_ssize_t))
        self.count = <Py_ssize_t*> calloc(n, sizeof(Py_ssize_t))
        self.plain = <char*> calloc(n, sizeof(char))
        if (self.p == NULL or self.g == NULL or self.s0 == NULL or self.s1 == NULL
                or self.s2 == NULL or self.size == NULL or self.count == NULL
                or self.plain == NULL):
            raise MemoryError()
        return 0

    @cython.boundscheck(True)
    cdef int run(self, Rule rule, Hyper* h) except -1:
        """Update the tensors in order; contiguous runs in one GIL-free stretch."""
        cdef Py_ssize_t t = 0, end
        while t < self.n:
            if not self.plain[t]:
                self.stage(t)
                with nogil:
                    _update(rule, self, t, h)
                if self.staged[0] is not self.params[t]:  # the param was staged: write it back
                    np.copyto(self.params[t], self.staged[0])
                self.staged = None
                t += 1
                continue
            end = t
            while end < self.n and self.plain[end]:
                end += 1
            with nogil:
                while t < end:
                    _update(rule, self, t, h)
                    t += 1
        return 0

    @cython.boundscheck(True)
    cdef int stage(self, Py_ssize_t t) except -1:
        """Contiguous copies of tensor t's param and grad, taken now (not before the tensors
        ahead of it were updated)."""
        p = np.ascontiguousarray(self.params[t])
        g = np.ascontiguousarray(self.grads[t])
        self.staged = [p, g]
        self.p[t] = cnp.PyArray_DATA(<cnp.ndarray> p)
        self.g[t] = cnp.PyArray_DATA(<cnp.ndarray> g)
        return 0
