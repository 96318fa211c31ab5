# distutils: extra_compile_args = -fno-math-errno
# (sqrt must not set errno, or gcc keeps the Adam and RMSprop loops scalar: 2-3x slower.)
"""Fused optimizer updates: one compiled pass over every parameter of a group.

A kernel takes one list per kind of array (params, grads, and each state such as
``exp_avgs``), one entry per tensor, and walks the tensors in list order with the GIL
released, updating each parameter and its state in place. Tensors are updated one after the
other, so tensors that share memory see each other's updates exactly as in the NumPy twins
(``_optim_twin.py``, same names, signatures and structure) and in PyTorch's per-parameter loop.
The lists are checked and turned into pointers in ``_optim_lists.pxi``; this file holds the rules.

The element arithmetic runs in the parameters' precision, as PyTorch's does (a float64 detour
doubles the cost of the sqrt and the division), but every hyperparameter term (``1 - beta2``,
``lr / (1 - beta1**t)``) is formed in float64 and rounded once: ``1 - beta2`` formed in float32
from a rounded beta2 = 0.999 is already 1.3e-5 off. Every element is updated on its own, so
results do not depend on the thread count.
"""

include "_parallel.pxi"

import numpy as np

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport pow, sqrt, sqrtf

cnp.import_array()

cdef enum Rule:
    SGD, ADAM, RMSPROP

cdef struct Hyper:
    # every term in float64; the loops round them to the parameters' precision once
    double lr, wd, mu, keep_grad, beta1, beta2, eps
    bint nesterov, decoupled


include "_optim_lists.pxi"


cdef inline floating* _at(void** slots, Py_ssize_t t, floating* kind) noexcept nogil:
    """Tensor t's state array from a slot list (NULL when the state is absent); ``kind``
    (a typed NULL) only picks the float or double version."""
    if slots == NULL:
        return NULL
    return <floating*> slots[t]


cdef inline floating* _plus(floating* a, Py_ssize_t k) noexcept nogil:
    return a + k if a != NULL else NULL


cdef inline floating _sqrt(floating x) noexcept nogil:
    """sqrt in the argument's precision: libm's double sqrt turned the float32 Adam loop into
    a float64 one (2.5x slower)."""
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef void _update(Rule rule, _Batch b, Py_ssize_t t, Hyper* h) noexcept nogil:
    """Tensor t of the batch under ``rule``, in the batch's dtype."""
    if b.is_double:
        _tensor(rule, <double*> b.p[t], <const double*> b.g[t], _at(b.s0, t, <double*> NULL),
                _at(b.s1, t, <double*> NULL), _at(b.s2, t, <double*> NULL), b.size[t],
                b.count[t], h)
    else:
        _tensor(rule, <float*> b.p[t], <const float*> b.g[t], _at(b.s0, t, <float*> NULL),
                _at(b.s1, t, <float*> NULL), _at(b.s2, t, <float*> NULL), b.size[t],
                b.count[t], h)


cdef void _tensor(Rule rule, floating* p, const floating* g, floating* s0, floating* s1,
                  floating* s2, Py_ssize_t n, Py_ssize_t count, Hyper* h) noexcept nogil:
    """One tensor, split into one contiguous span per thread when it is large.

    All three rules use the project's element threshold even though Adam and RMSprop do more
    work per element: on the shared 2-core machine two threads were slower at 262K elements.
    """
    cdef int c, parts = threads_for(n)
    cdef Py_ssize_t start, chunk = (n + parts - 1) // parts
    if parts == 1:
        _span(rule, p, g, s0, s1, s2, n, count, h)
        return
    for c in prange(parts, num_threads=parts, schedule="static"):
        start = c * chunk
        if start < n:
            _span(rule, p + start, g + start, _plus(s0, start), _plus(s1, start),
                  _plus(s2, start), min(chunk, n - start), count, h)


cdef inline void _span(Rule rule, floating* p, const floating* g, floating* s0, floating* s1,
                       floating* s2, Py_ssize_t n, Py_ssize_t count, Hyper* h) noexcept nogil:
    if rule == SGD:
        _sgd_span(p, g, s0, n, count == 1, h)
    elif rule == ADAM:
        _adam_span(p, g, s0, s1, s2, n, count, h)
    else:
        _rmsprop_span(p, g, s0, s1, s2, n, h)


# ------------------------------------------------------------------------- SGD
cdef void _sgd_span(floating* p, const floating* g, floating* buf, Py_ssize_t n, bint first,
                    Hyper* h) noexcept nogil:
    """SGD on n contiguous elements; buf is NULL without momentum."""
    cdef Py_ssize_t i
    cdef floating d, b
    cdef floating lr = h.lr, wd = h.wd, mu = h.mu, keep_grad = h.keep_grad
    if buf == NULL:
        for i in range(n):
            p[i] = p[i] - lr * (g[i] + wd * p[i])
    elif first:
        # PyTorch starts the buffer at the (decayed) gradient itself, without dampening.
        for i in range(n):
            d = g[i] + wd * p[i]
            buf[i] = d
            p[i] = p[i] - lr * (d + mu * d if h.nesterov else d)
    elif h.nesterov:
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


def sgd_step(object params, object grads, object momentum_buffers, object first, *,
             double lr, double momentum=0.0, double dampening=0.0, bint nesterov=False,
             double weight_decay=0.0) -> None:
    """SGD in place: d = g + wd*p; b = mu*b + (1-dampening)*d (b = d where first[i]);
    p -= lr * (d + mu*b if nesterov else b); without buffers (None) p -= lr * d.

    Args:
        params, grads: lists of same-shape float32 or float64 ndarrays (one dtype per call).
        momentum_buffers: one C-contiguous buffer per tensor, or None (no momentum).
        first: one bool per tensor, True where its buffer starts at this step (ignored
            without buffers).
    """
    cdef _Batch batch = _Batch()
    cdef Hyper h
    h.lr, h.wd, h.mu, h.nesterov = lr, weight_decay, momentum, nesterov
    h.keep_grad = 1.0 - dampening
    batch.fill("sgd_step", params, grads, {"momentum_buffers": momentum_buffers},
               "first" if momentum_buffers is not None else None, first)
    batch.run(SGD, &h)


# ------------------------------------------------------------------------- Adam / AdamW
cdef void _adam_span(floating* p, const floating* g, floating* m, floating* v, floating* vmax,
                     Py_ssize_t n, Py_ssize_t step, Hyper* h) noexcept nogil:
    """Adam on n contiguous elements of a tensor at ``step``. Weight decay is folded into two
    constants so that the loop has no branch: l2 = wd (Adam) or 0, decay = 1 - lr*wd (AdamW)
    or 1; every constant is formed in float64."""
    cdef Py_ssize_t i
    cdef floating d, mi, vi
    cdef floating beta1 = h.beta1, beta2 = h.beta2, eps = h.eps
    cdef floating keep1 = 1.0 - h.beta1, keep2 = 1.0 - h.beta2
    cdef floating l2 = 0.0 if h.decoupled else h.wd
    cdef floating decay = 1.0 - h.lr * h.wd if h.decoupled else 1.0
    cdef floating step_size = h.lr / (1.0 - pow(h.beta1, <double> step))
    cdef floating inv_root_bc2 = 1.0 / sqrt(1.0 - pow(h.beta2, <double> step))
    if vmax == NULL:
        for i in range(n):
            d = g[i] + l2 * p[i]
            mi = beta1 * m[i] + keep1 * d
            vi = beta2 * v[i] + keep2 * d * d
            m[i] = mi
            v[i] = vi
            p[i] = decay * p[i] - step_size * mi / (_sqrt(vi) * inv_root_bc2 + eps)
    else:
        for i in range(n):
            d = g[i] + l2 * p[i]
            mi = beta1 * m[i] + keep1 * d
            vi = beta2 * v[i] + keep2 * d * d
            m[i] = mi
            v[i] = vi
            # max that lets NaN through from either side, as np.maximum / torch.maximum do
            # (vi > vmax alone would keep the old maximum when vi is NaN)
            vi = vmax[i] if vmax[i] > vi or vmax[i] != vmax[i] else vi
            vmax[i] = vi
            p[i] = decay * p[i] - step_size * mi / (_sqrt(vi) * inv_root_bc2 + eps)


def adam_step(object params, object grads, object exp_avgs, object exp_avg_sqs,
              object max_exp_avg_sqs, object steps, *, double lr, double beta1=0.9,
              double beta2=0.999, double eps=1e-8, double weight_decay=0.0,
              bint decoupled=False) -> None:
    """Adam / AdamW in place, tensor i at step t = steps[i]: m = b1*m + (1-b1)*d;
    v = b2*v + (1-b2)*d^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps), where
    d = g + wd*p (Adam) or d = g after p *= 1 - lr*wd (AdamW, ``decoupled``). AMSGrad (max
    buffers given) uses vmax = max(vmax, v) in the denominator.

    Args:
        params, grads: lists of same-shape float32 or float64 ndarrays (one dtype per call).
        exp_avgs, exp_avg_sqs: one C-contiguous first and second moment per tensor.
        max_exp_avg_sqs: one running maximum of exp_avg_sq per tensor (AMSGrad), or None.
        steps: one int per tensor, its step count including this one (>= 1).
    """
    cdef _Batch batch = _Batch()
    cdef Hyper h
    h.lr, h.beta1, h.beta2, h.eps, h.wd, h.decoupled = (
        lr, beta1, beta2, eps, weight_decay, decoupled)
    if exp_avgs is None or exp_avg_sqs is None:
        raise TypeError("adam_step: exp_avgs and exp_avg_sqs are required")
    batch.fill("adam_step", params, grads,
               {"exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs,
                "max_exp_avg_sqs": max_exp_avg_sqs}, "steps", steps)
    batch.run(ADAM, &h)


# ------------------------------------------------------------------------- RMSprop
cdef void _rmsprop_span(floating* p, const floating* g, floating* sq, floating* gavg,
                        floating* buf, Py_ssize_t n, Hyper* h) noexcept nogil:
    """RMSprop on n contiguous elements; gavg is NULL unless centered, buf NULL without
    momentum. The four variants are separate loops so that each one vectorises."""
    cdef Py_ssize_t i
    cdef floating d, s, a
    cdef floating lr = h.lr, alpha = h.beta2, keep = 1.0 - h.beta2, eps = h.eps
    cdef floating wd = h.wd, mu = h.mu
    if gavg == NULL and buf == NULL:
        for i in range(n):
            d = g[i] + wd * p[i]
            s = alpha * sq[i] + keep * d * d
            sq[i] = s
            p[i] = p[i] - lr * d / (_sqrt(s) + eps)
    elif gavg == NULL:
        for i in range(n):
            d = g[i] + wd * p[i]
            s = alpha * sq[i] + keep * d * d
            sq[i] = s
            buf[i] = mu * buf[i] + d / (_sqrt(s) + eps)
            p[i] = p[i] - lr * buf[i]
    elif buf == NULL:
        for i in range(n):
            d = g[i] + wd * p[i]
            s = alpha * sq[i] + keep * d * d
            a = alpha * gavg[i] + keep * d
            sq[i] = s
            gavg[i] = a
            p[i] = p[i] - lr * d / (_sqrt(s - a * a) + eps)
    else:
        for i in range(n):
            d = g[i] + wd * p[i]
            s = alpha * sq[i] + keep * d * d
            a = alpha * gavg[i] + keep * d
            sq[i] = s
            gavg[i] = a
            buf[i] = mu * buf[i] + d / (_sqrt(s - a * a) + eps)
            p[i] = p[i] - lr * buf[i]


def rmsprop_step(object params, object grads, object square_avgs, object grad_avgs,
                 object momentum_buffers, *, double lr, double alpha=0.99, double eps=1e-8,
                 double weight_decay=0.0, double momentum=0.0) -> None:
    """RMSprop in place: d = g + wd*p; s = alpha*s + (1-alpha)*d^2; centered (grad_avgs
    given): a = alpha*a + (1-alpha)*d, s~ = s - a^2; u = d / (sqrt(s~) + eps); with momentum
    buffers b = mu*b + u, p -= lr*b; else p -= lr*u.

    Args:
        params, grads: lists of same-shape float32 or float64 ndarrays (one dtype per call).
        square_avgs: one C-contiguous running average of squared gradients per tensor.
        grad_avgs: one running average of gradients per tensor (centered), or None.
        momentum_buffers: one momentum buffer per tensor, or None (no momentum).
    """
    cdef _Batch batch = _Batch()
    cdef Hyper h
    # alpha travels in the beta2 slot: both are the decay of a squared-gradient average
    h.lr, h.beta2, h.eps, h.wd, h.mu = lr, alpha, eps, weight_decay, momentum
    if square_avgs is None:
        raise TypeError("rmsprop_step: square_avgs is required")
    batch.fill("rmsprop_step", params, grads,
               {"square_avgs": square_avgs, "grad_avgs": grad_avgs,
                "momentum_buffers": momentum_buffers}, None, None)
    batch.run(RMSPROP, &h)
