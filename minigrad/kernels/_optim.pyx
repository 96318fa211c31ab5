# distutils: extra_compile_args = -fno-math-errno
# (sqrt must not set errno, or gcc keeps the Adam and RMSprop loops scalar: 2-3x slower.)
"""Fused optimizer updates: one compiled pass over every parameter of a group.

The optimizer keeps its state (moments, momentum buffers) in flat 1-D buffers, one per kind,
and tensor ``i`` owns ``state[offsets[i] : offsets[i] + params[i].size]``. A kernel walks the
list of (param, grad) arrays once with the GIL released, updating parameters and state in
place. ``steps[i]`` is tensor i's step count *including* this step (>= 1), so that a tensor
skipped on some steps (it had no gradient) keeps its own bias correction.

Every element is updated on its own, so results do not depend on the thread count. The
arithmetic runs in the parameters' precision, as PyTorch's does: the state is stored in that
precision anyway, and a float64 detour doubles the cost of the sqrt and the division.
The NumPy twins, with the same signatures, live in ``reference.py``.
"""

include "_parallel.pxi"

import numpy as np

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport pow, sqrt, sqrtf
from libc.stdlib cimport free, malloc

from minigrad.kernels.reference import check_betas, check_hyperparameters, check_step

cnp.import_array()

# ------------------------------------------------------------------------- validation
cdef class _Batch:
    """Validated raw pointers to a list of (param, grad) arrays and to the flat state buffers.

    A non-contiguous parameter is updated through a contiguous copy that ``write_back``
    copies into the caller's array (``copies`` keeps both alive until then); a non-contiguous
    gradient is read from a contiguous copy kept in ``keep``.
    """
    cdef Py_ssize_t n
    cdef bint is_double
    cdef void** p
    cdef void** g
    cdef Py_ssize_t* size
    cdef Py_ssize_t* offset
    cdef void* state[3]
    cdef list keep
    cdef list copies

    def __cinit__(self):
        self.n = 0
        self.p = self.g = NULL
        self.size = self.offset = NULL
        self.state[0] = self.state[1] = self.state[2] = NULL
        self.keep = []
        self.copies = []

    def __dealloc__(self):
        free(self.p)
        free(self.g)
        free(self.size)
        free(self.offset)

    cdef int fill(self, str name, list params, list grads, const cnp.int64_t[::1] offsets,
                  const cnp.int64_t[::1] steps, tuple states) except -1:
        """Collect the pointers; on anything a bad call could crash on, raise the error
        ``reference.check_step`` words (the twins' rules, so both backends say the same)."""
        if not self._collect(params, grads, offsets, steps, states):
            check_step(name, params, grads, states, np.asarray(offsets), np.asarray(steps))
            raise ValueError(f"{name}: invalid arguments")  # check_step raises first
        return 0

    cdef bint _collect(self, list params, list grads, const cnp.int64_t[::1] offsets,
                       const cnp.int64_t[::1] steps, tuple states) except -1:
        """Fill the pointer arrays; False at the first argument check_step would reject."""
        cdef Py_ssize_t i, n = len(params), state_size = -1
        cdef cnp.ndarray p, g, s
        cdef int type_num
        if len(grads) != n or offsets.shape[0] != n or steps.shape[0] != n:
            return False
        if n == 0:
            return True
        if not isinstance(params[0], cnp.ndarray):
            return False
        type_num = cnp.PyArray_TYPE(<cnp.ndarray>params[0])
        if type_num != cnp.NPY_FLOAT32 and type_num != cnp.NPY_FLOAT64:
            return False
        self.is_double = type_num == cnp.NPY_FLOAT64

        for k, state in enumerate(states):
            if state is None:
                continue
            if not isinstance(state, cnp.ndarray):
                return False
            s = state
            if (cnp.PyArray_NDIM(s) != 1 or cnp.PyArray_TYPE(s) != type_num
                    or not cnp.PyArray_IS_C_CONTIGUOUS(s) or not cnp.PyArray_ISWRITEABLE(s)
                    or state_size not in (-1, cnp.PyArray_DIMS(s)[0])):
                return False
            state_size = cnp.PyArray_DIMS(s)[0]
            self.state[k] = cnp.PyArray_DATA(s)

        self.p = <void**> malloc(n * sizeof(void*))
        self.g = <void**> malloc(n * sizeof(void*))
        self.size = <Py_ssize_t*> malloc(n * sizeof(Py_ssize_t))
        self.offset = <Py_ssize_t*> malloc(n * sizeof(Py_ssize_t))
        if self.p == NULL or self.g == NULL or self.size == NULL or self.offset == NULL:
            raise MemoryError()
        for i in range(n):
            if not isinstance(params[i], cnp.ndarray) or not isinstance(grads[i], cnp.ndarray):
                return False
            p = params[i]
            g = grads[i]
            if (cnp.PyArray_TYPE(p) != type_num or cnp.PyArray_TYPE(g) != type_num
                    or not cnp.PyArray_SAMESHAPE(p, g) or not cnp.PyArray_ISWRITEABLE(p)):
                return False
            self.size[i] = cnp.PyArray_SIZE(p)
            self.offset[i] = offsets[i]
            # Written so that a huge offset cannot overflow into a check that passes.
            if state_size >= 0 and (
                self.offset[i] < 0 or self.offset[i] > state_size - self.size[i]
            ):
                return False
            if not cnp.PyArray_IS_C_CONTIGUOUS(p):
                p = np.ascontiguousarray(p)
                self.copies.append((params[i], p))
            if not cnp.PyArray_IS_C_CONTIGUOUS(g):
                g = np.ascontiguousarray(g)
                self.keep.append(g)
            self.p[i] = cnp.PyArray_DATA(p)
            self.g[i] = cnp.PyArray_DATA(g)
        self.n = n
        return True

    cdef write_back(self):
        for original, updated in self.copies:
            np.copyto(original, updated)


cdef inline floating* _at(void* base, Py_ssize_t offset, floating* kind) noexcept nogil:
    """Typed pointer to element ``offset`` of a state buffer; NULL stays NULL. ``kind`` (a
    typed NULL) only picks the float or double version."""
    if base == NULL:
        return NULL
    return (<floating*> base) + offset


cdef inline floating* _plus(floating* a, Py_ssize_t k) noexcept nogil:
    return a + k if a != NULL else NULL


cdef inline floating _sqrt(floating x) noexcept nogil:
    """sqrt in the argument's precision: libm's double sqrt turned the float32 Adam loop into
    a float64 one (2.5x slower)."""
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


# ------------------------------------------------------------------------- SGD
cdef void _sgd_span(floating* p, const floating* g, floating* buf, Py_ssize_t n,
                    floating lr, floating wd, floating mu, floating keep_grad,
                    bint first, bint nesterov) noexcept nogil:
    """SGD on n contiguous elements; buf is NULL without momentum."""
    cdef Py_ssize_t i
    cdef floating d, b
    if buf == NULL:
        for i in range(n):
            p[i] = p[i] - lr * (g[i] + wd * p[i])
    elif first:
        # PyTorch starts the buffer at the (decayed) gradient itself, without dampening.
        if nesterov:
            for i in range(n):
                d = g[i] + wd * p[i]
                buf[i] = d
                p[i] = p[i] - lr * (d + mu * d)
        else:
            for i in range(n):
                d = g[i] + wd * p[i]
                buf[i] = d
                p[i] = p[i] - lr * d
    elif nesterov:
        for i in range(n):
            d = g[i] + wd * p[i]
            b = mu * buf[i] + keep_grad * d
            buf[i] = b
            p[i] = p[i] - lr * (d + mu * b)
    else:
        for i in range(n):
            b = mu * buf[i] + keep_grad * (g[i] + wd * p[i])
            buf[i] = b
            p[i] = p[i] - lr * b


cdef void _sgd_tensor(floating* p, const floating* g, floating* buf, Py_ssize_t n,
                      double lr, double wd, double mu, double dampening,
                      bint first, bint nesterov) noexcept nogil:
    """One tensor, split into one contiguous span per thread when it is large.

    All three rules use the project's element threshold even though Adam and RMSprop do more
    work per element: on the shared 2-core machine two threads were slower at 262K elements.
    """
    cdef int c, parts = threads_for(n)
    cdef Py_ssize_t start, chunk = (n + parts - 1) // parts
    if parts == 1:
        _sgd_span(p, g, buf, n, <floating> lr, <floating> wd, <floating> mu,
                  <floating> (1.0 - dampening), first, nesterov)
        return
    for c in prange(parts, num_threads=parts, schedule="static"):
        start = c * chunk
        if start < n:
            _sgd_span(p + start, g + start, _plus(buf, start), min(chunk, n - start),
                      <floating> lr, <floating> wd, <floating> mu,
                      <floating> (1.0 - dampening), first, nesterov)


def sgd_step(list params, list grads, object momentum_buffer, const cnp.int64_t[::1] offsets,
             const cnp.int64_t[::1] steps, *, double lr, double momentum=0.0,
             double dampening=0.0, bint nesterov=False, double weight_decay=0.0) -> None:
    """SGD in place: d = g + wd*p; b = mu*b + (1-dampening)*d (b = d when steps[i] == 1);
    p -= lr * (d + mu*b if nesterov else b); without momentum (buffer None) p -= lr * d.

    Args:
        params, grads: lists of same-shape float32 or float64 ndarrays (one dtype per call).
        momentum_buffer: the group's flat momentum state, or None when momentum is 0.
        offsets: int64 (n,), where each tensor's slice of the state starts.
        steps: int64 (n,), momentum steps of each tensor including this one; 1 starts the
            buffer (ignored without momentum).
    """
    cdef _Batch batch = _Batch()
    cdef Py_ssize_t t, n
    cdef bint first
    check_hyperparameters("sgd_step", lr=lr, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay)
    batch.fill("sgd_step", params, grads, offsets, steps, (momentum_buffer, None, None))
    with nogil:
        for t in range(batch.n):
            n = batch.size[t]
            first = steps[t] == 1
            if batch.is_double:
                _sgd_tensor(<double*> batch.p[t], <const double*> batch.g[t],
                            _at(batch.state[0], batch.offset[t], <double*> NULL), n,
                            lr, weight_decay, momentum, dampening, first, nesterov)
            else:
                _sgd_tensor(<float*> batch.p[t], <const float*> batch.g[t],
                            _at(batch.state[0], batch.offset[t], <float*> NULL), n,
                            lr, weight_decay, momentum, dampening, first, nesterov)
    batch.write_back()


# ------------------------------------------------------------------------- Adam / AdamW
cdef void _adam_span(floating* p, const floating* g, floating* m, floating* v, floating* vmax,
                     Py_ssize_t n, floating beta1, floating beta2, floating l2,
                     floating decay, floating step_size, floating inv_sqrt_bc2,
                     floating eps) noexcept nogil:
    """Adam on n contiguous elements. Weight decay is folded into two constants so that the
    loop has no branch: l2 = wd (Adam) or 0, decay = 1 - lr*wd (AdamW) or 1."""
    cdef Py_ssize_t i
    cdef floating d, mi, vi
    if vmax == NULL:
        for i in range(n):
            d = g[i] + l2 * p[i]
            mi = beta1 * m[i] + (1 - beta1) * d
            vi = beta2 * v[i] + (1 - beta2) * d * d
            m[i] = mi
            v[i] = vi
            p[i] = decay * p[i] - step_size * mi / (_sqrt(vi) * inv_sqrt_bc2 + eps)
    else:
        for i in range(n):
            d = g[i] + l2 * p[i]
            mi = beta1 * m[i] + (1 - beta1) * d
            vi = beta2 * v[i] + (1 - beta2) * d * d
            m[i] = mi
            v[i] = vi
            # max that lets NaN through from either side, as np.maximum / torch.maximum do
            # (vi > vmax alone would keep the old maximum when vi is NaN)
            vi = vmax[i] if vmax[i] > vi or vmax[i] != vmax[i] else vi
            vmax[i] = vi
            p[i] = decay * p[i] - step_size * mi / (_sqrt(vi) * inv_sqrt_bc2 + eps)


cdef void _adam_tensor(floating* p, const floating* g, floating* m, floating* v,
                       floating* vmax, Py_ssize_t n, Py_ssize_t step, double lr,
                       double beta1, double beta2, double eps, double wd,
                       bint decoupled) noexcept nogil:
    """One tensor: bias corrections from its own step count, then one span per thread."""
    cdef double bc1 = 1.0 - pow(beta1, <double> step)
    cdef double bc2 = 1.0 - pow(beta2, <double> step)
    cdef floating l2 = 0.0 if decoupled else wd
    cdef floating decay = 1.0 - lr * wd if decoupled else 1.0
    cdef floating step_size = lr / bc1, inv_sqrt_bc2 = 1.0 / sqrt(bc2)
    cdef int c, parts = threads_for(n)
    cdef Py_ssize_t start, chunk = (n + parts - 1) // parts
    if parts == 1:
        _adam_span(p, g, m, v, vmax, n, <floating> beta1, <floating> beta2, l2, decay,
                   step_size, inv_sqrt_bc2, <floating> eps)
        return
    for c in prange(parts, num_threads=parts, schedule="static"):
        start = c * chunk
        if start < n:
            _adam_span(p + start, g + start, m + start, v + start, _plus(vmax, start),
                       min(chunk, n - start), <floating> beta1, <floating> beta2, l2, decay,
                       step_size, inv_sqrt_bc2, <floating> eps)


def adam_step(list params, list grads, object exp_avg, object exp_avg_sq,
              object max_exp_avg_sq, const cnp.int64_t[::1] offsets,
              const cnp.int64_t[::1] steps, *, double lr,
              double beta1=0.9, double beta2=0.999, double eps=1e-8, double weight_decay=0.0,
              bint decoupled=False) -> None:
    """Adam / AdamW in place, per tensor with t = steps[i]:
    m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d^2; p -= lr/(1-b1^t) * m / (sqrt(v/(1-b2^t)) + eps),
    where d = g + wd*p (Adam) or d = g after p *= 1 - lr*wd (AdamW, ``decoupled=True``).
    With ``max_exp_avg_sq`` (AMSGrad) the denominator uses vmax = max(vmax, v).

    Args:
        params, grads: lists of same-shape float32 or float64 ndarrays (one dtype per call).
        exp_avg, exp_avg_sq: the group's flat first and second moments.
        max_exp_avg_sq: flat running maximum of exp_avg_sq for AMSGrad, or None.
        offsets: int64 (n,), where each tensor's slice of the state starts.
        steps: int64 (n,), each tensor's step count including this one (>= 1).
    """
    cdef _Batch batch = _Batch()
    cdef Py_ssize_t t, n, o
    # a NaN lr or a beta of 1 (bias correction 1 - beta**t = 0) would fill the params with NaN
    check_hyperparameters("adam_step", lr=lr, eps=eps, weight_decay=weight_decay)
    check_betas("adam_step", beta1=beta1, beta2=beta2)
    if exp_avg is None or exp_avg_sq is None:
        raise TypeError("adam_step: exp_avg and exp_avg_sq are required state buffers")
    batch.fill("adam_step", params, grads, offsets, steps,
               (exp_avg, exp_avg_sq, max_exp_avg_sq))
    for t in range(batch.n):
        if steps[t] < 1:  # the bias corrections 1 - beta^t would be 0
            raise ValueError(f"adam_step: steps must be >= 1, got {steps[t]} at index {t}")
    with nogil:
        for t in range(batch.n):
            n = batch.size[t]
            o = batch.offset[t]
            if batch.is_double:
                _adam_tensor(<double*> batch.p[t], <const double*> batch.g[t],
                             _at(batch.state[0], o, <double*> NULL),
                             _at(batch.state[1], o, <double*> NULL),
                             _at(batch.state[2], o, <double*> NULL), n, steps[t],
                             lr, beta1, beta2, eps, weight_decay, decoupled)
            else:
                _adam_tensor(<float*> batch.p[t], <const float*> batch.g[t],
                             _at(batch.state[0], o, <float*> NULL),
                             _at(batch.state[1], o, <float*> NULL),
                             _at(batch.state[2], o, <float*> NULL), n, steps[t],
                             lr, beta1, beta2, eps, weight_decay, decoupled)
    batch.write_back()


# ------------------------------------------------------------------------- RMSprop
cdef void _rmsprop_span(floating* p, const floating* g, floating* sq, floating* gavg,
                        floating* buf, Py_ssize_t n, floating lr, floating alpha,
                        floating eps, floating wd, floating mu) noexcept nogil:
    """RMSprop on n contiguous elements; gavg is NULL unless centered, buf NULL without
    momentum. The four variants are separate loops so that each one vectorises."""
    cdef Py_ssize_t i
    cdef floating d, s, a
    if gavg == NULL and buf == NULL:
        for i in range(n):
            d = g[i] + wd * p[i]
            s = alpha * sq[i] + (1 - alpha) * d * d
            sq[i] = s
            p[i] = p[i] - lr * d / (_sqrt(s) + eps)
    elif gavg == NULL:
        for i in range(n):
            d = g[i] + wd * p[i]
            s = alpha * sq[i] + (1 - alpha) * d * d
            sq[i] = s
            buf[i] = mu * buf[i] + d / (_sqrt(s) + eps)
            p[i] = p[i] - lr * buf[i]
    elif buf == NULL:
        for i in range(n):
            d = g[i] + wd * p[i]
            s = alpha * sq[i] + (1 - alpha) * d * d
            a = alpha * gavg[i] + (1 - alpha) * d
            sq[i] = s
            gavg[i] = a
            p[i] = p[i] - lr * d / (_sqrt(s - a * a) + eps)
    else:
        for i in range(n):
            d = g[i] + wd * p[i]
            s = alpha * sq[i] + (1 - alpha) * d * d
            a = alpha * gavg[i] + (1 - alpha) * d
            sq[i] = s
            gavg[i] = a
            buf[i] = mu * buf[i] + d / (_sqrt(s - a * a) + eps)
            p[i] = p[i] - lr * buf[i]


cdef void _rmsprop_tensor(floating* p, const floating* g, floating* sq, floating* gavg,
                          floating* buf, Py_ssize_t n, double lr, double alpha, double eps,
                          double wd, double mu) noexcept nogil:
    """One tensor, split into one contiguous span per thread when it is large."""
    cdef int c, parts = threads_for(n)
    cdef Py_ssize_t start, chunk = (n + parts - 1) // parts
    if parts == 1:
        _rmsprop_span(p, g, sq, gavg, buf, n, <floating> lr, <floating> alpha,
                      <floating> eps, <floating> wd, <floating> mu)
        return
    for c in prange(parts, num_threads=parts, schedule="static"):
        start = c * chunk
        if start < n:
            _rmsprop_span(p + start, g + start, sq + start, _plus(gavg, start),
                          _plus(buf, start), min(chunk, n - start), <floating> lr,
                          <floating> alpha, <floating> eps, <floating> wd, <floating> mu)


def rmsprop_step(list params, list grads, object square_avg, object grad_avg,
                 object momentum_buffer, const cnp.int64_t[::1] offsets,
                 const cnp.int64_t[::1] steps, *, double lr,
                 double alpha=0.99, double eps=1e-8, double weight_decay=0.0,
                 double momentum=0.0) -> None:
    """RMSprop in place: d = g + wd*p; s = alpha*s + (1-alpha)*d^2; centered (grad_avg given):
    a = alpha*a + (1-alpha)*d, s~ = s - a^2; u = d / (sqrt(s~) + eps);
    with momentum (buffer given) b = mu*b + u, p -= lr*b; else p -= lr*u.

    Args:
        params, grads: lists of same-shape float32 or float64 ndarrays (one dtype per call).
        square_avg: the group's flat running average of squared gradients.
        grad_avg: flat running average of gradients (centered RMSprop), or None.
        momentum_buffer: flat momentum state, or None when momentum is 0.
        offsets: int64 (n,), where each tensor's slice of the state starts.
        steps: int64 (n,), each tensor's step count including this one; the rule does not
            depend on it (a uniform signature keeps the optimizer code simple).
    """
    cdef _Batch batch = _Batch()
    cdef Py_ssize_t t, n, o
    check_hyperparameters("rmsprop_step", lr=lr, alpha=alpha, eps=eps,
                          weight_decay=weight_decay, momentum=momentum)
    if square_avg is None:
        raise TypeError("rmsprop_step: square_avg is a required state buffer")
    if momentum_buffer is None and momentum != 0.0:
        raise ValueError("rmsprop_step: momentum != 0 needs a momentum_buffer")
    batch.fill("rmsprop_step", params, grads, offsets, steps,
               (square_avg, grad_avg, momentum_buffer))
    with nogil:
        for t in range(batch.n):
            n = batch.size[t]
            o = batch.offset[t]
            if batch.is_double:
                _rmsprop_tensor(<double*> batch.p[t], <const double*> batch.g[t],
                                _at(batch.state[0], o, <double*> NULL),
                                _at(batch.state[1], o, <double*> NULL),
                                _at(batch.state[2], o, <double*> NULL), n,
                                lr, alpha, eps, weight_decay, momentum)
            else:
                _rmsprop_tensor(<float*> batch.p[t], <const float*> batch.g[t],
                                _at(batch.state[0], o, <float*> NULL),
                                _at(batch.state[1], o, <float*> NULL),
                                _at(batch.state[2], o, <float*> NULL), n,
                                lr, alpha, eps, weight_decay, momentum)
    batch.write_back()
