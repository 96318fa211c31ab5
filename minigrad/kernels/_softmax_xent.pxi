# Included by _softmax.pyx: softmax cross-entropy, forward, backward, and both in one call. The
# row loops are C (_softmax_xent.h); here the arguments are checked and the rows split among
# threads.
#
# Each entry point has two paths to those loops. The common call (logits a 2-D aligned
# C-contiguous float32/float64 array in native byte order, targets int64 of the same kind,
# ignore_index an int, and for the backward a gradient of the logits' dtype and float64 lse
# parts) is checked through the arrays' C fields and its targets in one C loop, and runs on data
# pointers: no memoryview, NumPy helper or mask array, each of which cost 0.2-1 us (a (2, 10)
# forward took 5.1 us through them, 0.38 us this way). Any other call takes the general path: the
# shared checks of _checks, which raise the errors naming the problem, then copies into the
# common kinds.

from cpython.long cimport PyLong_AsLongLongAndOverflow

cdef extern from "_softmax_xent.h" nogil:
    Py_ssize_t mg_xent_count(const int64_t *target, Py_ssize_t n, Py_ssize_t C, int64_t ignore)
    void mg_xent_forward_f(const float *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                           const int64_t *target, int64_t ignore, double ls, float *loss,
                           double *parts)
    void mg_xent_forward_d(const double *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                           const int64_t *target, int64_t ignore, double ls, double *loss,
                           double *parts)
    void mg_xent_backward_f(const float *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                            const int64_t *target, int64_t ignore, const double *parts,
                            const float *grad, Py_ssize_t grad_step, double ls, float *dx)
    void mg_xent_backward_d(const double *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                            const int64_t *target, int64_t ignore, const double *parts,
                            const double *grad, Py_ssize_t grad_step, double ls, double *dx)
    void mg_xent_fused_f(const float *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                         const int64_t *target, int64_t ignore, double ls, float *loss,
                         double *parts, float g, float *dx)
    void mg_xent_fused_d(const double *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                         const int64_t *target, int64_t ignore, double ls, double *loss,
                         double *parts, double g, double *dx)

cdef enum:
    XENT_FORWARD = 0
    XENT_BACKWARD = 1
    XENT_FUSED = 2

# Below this many logits the cross-entropy kernels stay on one thread (threads_over; the
# measurement behind it is in _parallel.pxi).
cdef Py_ssize_t _min_work_xent = XENT_MIN_WORK


def parallel_min_work(**changes) -> dict:
    """The logit counts from which the cross-entropy kernels (``cross_entropy``) split their
    rows over OpenMP threads, before ``changes`` replace them. For tests and measurements: the
    results are the same bits either way."""
    global _min_work_xent
    before = {"cross_entropy": _min_work_xent}
    _check_min_work(changes, before)
    _min_work_xent = changes.get("cross_entropy", _min_work_xent)
    return before


cdef struct Xent:
    # one call: the logits' type number (NPY_FLOAT or NPY_DOUBLE), (n, c) and data, the int64
    # targets with the value marking an ignored row, the outputs, and the gradient of each row
    # (grad[i * grad_step], or g for every row in the fused call)
    int dtype
    Py_ssize_t n, c
    const void *x
    const int64_t *target
    int64_t ignore
    double ls
    void *loss
    double *parts
    const void *grad
    Py_ssize_t grad_step
    double g
    void *dx


cdef void _xent_rows(const Xent *p, int op, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    if p.dtype == cnp.NPY_FLOAT:
        if op == XENT_FORWARD:
            mg_xent_forward_f(<const float *>p.x, r0, r1, p.c, p.target, p.ignore, p.ls,
                              <float *>p.loss, p.parts)
        elif op == XENT_BACKWARD:
            mg_xent_backward_f(<const float *>p.x, r0, r1, p.c, p.target, p.ignore, p.parts,
                               <const float *>p.grad, p.grad_step, p.ls, <float *>p.dx)
        else:
            mg_xent_fused_f(<const float *>p.x, r0, r1, p.c, p.target, p.ignore, p.ls,
                            <float *>p.loss, p.parts, <float>p.g, <float *>p.dx)
    else:
        if op == XENT_FORWARD:
            mg_xent_forward_d(<const double *>p.x, r0, r1, p.c, p.target, p.ignore, p.ls,
                              <double *>p.loss, p.parts)
        elif op == XENT_BACKWARD:
            mg_xent_backward_d(<const double *>p.x, r0, r1, p.c, p.target, p.ignore, p.parts,
                               <const double *>p.grad, p.grad_step, p.ls, <double *>p.dx)
        else:
            mg_xent_fused_d(<const double *>p.x, r0, r1, p.c, p.target, p.ignore, p.ls,
                            <double *>p.loss, p.parts, p.g, <double *>p.dx)


cdef void _xent_run(const Xent *p, int op) noexcept nogil:
    """Run ``op`` over all rows: one contiguous share of them per thread (rows are independent,
    so the split never changes a result)."""
    cdef int t, nt = threads_over(p.n * p.c, _min_work_xent)
    if nt > 1:
        for t in prange(nt, num_threads=nt, schedule="static"):
            _xent_rows(p, op, p.n * t // nt, p.n * (t + 1) // nt)
    else:  # no OpenMP region at all: entering one costs microseconds
        _xent_rows(p, op, 0, p.n)


cdef inline bint _plain(cnp.ndarray a) noexcept:
    """a's memory can be read through its data pointer as a C array of its dtype."""
    return (cnp.PyArray_ISNOTSWAPPED(a) and cnp.PyArray_ISALIGNED(a)
            and cnp.PyArray_IS_C_CONTIGUOUS(a))


cdef Py_ssize_t _common_call(Xent *p, object logits, object target, object ignore_index):
    """Fill p from the common call (see the top of this file) and return how many rows are not
    ignored; -1 for any other call, which the general path then checks."""
    cdef cnp.ndarray x, t
    cdef int kind, overflow = 0
    cdef long long ignore
    if type(logits) is not cnp.ndarray or type(target) is not cnp.ndarray or (
            type(ignore_index) is not int):
        return -1
    x, t = <cnp.ndarray>logits, <cnp.ndarray>target
    kind = cnp.PyArray_TYPE(x)
    if ((kind != cnp.NPY_FLOAT and kind != cnp.NPY_DOUBLE) or cnp.PyArray_NDIM(x) != 2
            or cnp.PyArray_DIM(x, 1) < 1 or not _plain(x)):
        return -1
    if (cnp.PyArray_TYPE(t) != cnp.NPY_INT64 or cnp.PyArray_NDIM(t) != 1
            or cnp.PyArray_DIM(t, 0) != cnp.PyArray_DIM(x, 0) or not _plain(t)):
        return -1
    ignore = PyLong_AsLongLongAndOverflow(ignore_index, &overflow)
    if overflow:
        return -1
    p.dtype = kind
    p.n, p.c = cnp.PyArray_DIM(x, 0), cnp.PyArray_DIM(x, 1)
    p.x = cnp.PyArray_DATA(x)
    p.target = <const int64_t *>cnp.PyArray_DATA(t)
    p.ignore = ignore
    return mg_xent_count(p.target, p.n, p.c, p.ignore)  # -1: a target out of range


cdef tuple _general_call(Xent *p, str fn, object logits, object target, object ignore_index):
    """Check any call with the shared checks (which raise the errors naming a problem) and fill
    p from C-contiguous aligned copies where needed: ignored rows get the target -1, which no
    class has. Returns (the rows not ignored, the arrays p points into, to be kept alive)."""
    logits, target, ignored = cross_entropy_args(fn, logits, target, ignore_index)
    x = np.require(logits, requirements="CA")
    t = np.where(ignored, np.int64(-1), target)
    p.dtype = cnp.PyArray_TYPE(<cnp.ndarray>x)
    p.n, p.c = x.shape
    p.x = cnp.PyArray_DATA(<cnp.ndarray>x)
    p.target = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>t)
    p.ignore = -1
    return p.n - int(np.count_nonzero(ignored)), x, t


def class_target_count(target, classes, ignore_index):
    """How many of the integer class targets are not ``ignore_index``, or -1 when one of those
    lies outside [0, classes) (see ``_checks.class_target_count``): int64 targets readable as a
    C array in one C loop (0.1 us for 64 targets, where the NumPy reductions took 1.7 us), any
    other call in NumPy."""
    cdef cnp.ndarray t
    cdef int overflow = 0
    cdef long long ignore
    if (type(target) is cnp.ndarray and type(classes) is int and type(ignore_index) is int
            and 0 <= classes <= 2**62):
        t = <cnp.ndarray>target
        ignore = PyLong_AsLongLongAndOverflow(ignore_index, &overflow)
        if cnp.PyArray_TYPE(t) == cnp.NPY_INT64 and _plain(t) and not overflow:
            return mg_xent_count(<const int64_t *>cnp.PyArray_DATA(t), cnp.PyArray_SIZE(t),
                                 classes, ignore)
    return _class_target_count(target, classes, ignore_index)


cdef object _outputs(Xent *p):
    """New (loss, lse_parts) arrays for p's rows, also set as p's outputs."""
    cdef cnp.npy_intp dims[2]
    dims[0], dims[1] = p.n, 2
    loss = cnp.PyArray_EMPTY(1, dims, p.dtype, 0)
    parts = cnp.PyArray_EMPTY(2, dims, cnp.NPY_DOUBLE, 0)
    p.loss = cnp.PyArray_DATA(<cnp.ndarray>loss)
    p.parts = <double *>cnp.PyArray_DATA(<cnp.ndarray>parts)
    return loss, parts


cdef object _gradient_array(Xent *p):
    """A new (n, c) array of the logits' dtype for the gradient, also set as p's."""
    cdef cnp.npy_intp dims[2]
    dims[0], dims[1] = p.n, p.c
    dx = cnp.PyArray_EMPTY(2, dims, p.dtype, 0)
    p.dx = cnp.PyArray_DATA(<cnp.ndarray>dx)
    return dx


def cross_entropy_forward(logits, target, label_smoothing=0.0, ignore_index=-100):
    """Per-row softmax cross-entropy and the parts of the row log-sum-exp.

    loss_i = lse_i - (1 - ls) * logits[i, t_i] - ls / C * sum_j logits[i, j], with
    lse_i = logsumexp_j logits[i, j]; rows whose target is ``ignore_index`` get loss 0.
    Shapes: logits (N, C), target (N,) integers -> ``(loss, lse_parts)``: loss (N,) in logits'
    dtype; lse_parts (N, 2) float64, the row max m (0 in a row whose max is not finite or that
    holds NaN) and log(sum_j exp(logits[i, j] - m)), whose sum is lse_i, kept apart for the
    backward.
    """
    cdef Xent p
    keep = None
    if _common_call(&p, logits, target, ignore_index) < 0:
        _, *keep = _general_call(&p, "cross_entropy_forward", logits, target, ignore_index)
    p.ls = float(label_smoothing)
    loss, parts = _outputs(&p)
    with nogil:
        _xent_run(&p, XENT_FORWARD)
    return loss, parts


cdef bint _common_gradient(Xent *p, object grad_loss, object lse_parts) noexcept:
    """Set p's gradient and parts when grad_loss is a 0-d or (n,) array of the logits' dtype
    and lse_parts (n, 2) float64, both readable as C arrays; False otherwise."""
    cdef cnp.ndarray g, parts
    if type(grad_loss) is not cnp.ndarray or type(lse_parts) is not cnp.ndarray:
        return False
    g, parts = <cnp.ndarray>grad_loss, <cnp.ndarray>lse_parts
    if cnp.PyArray_TYPE(g) != p.dtype or not _plain(g) or not (
            cnp.PyArray_NDIM(g) == 0
            or (cnp.PyArray_NDIM(g) == 1 and cnp.PyArray_DIM(g, 0) == p.n)):
        return False
    if (cnp.PyArray_TYPE(parts) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(parts) != 2
            or cnp.PyArray_DIM(parts, 0) != p.n or cnp.PyArray_DIM(parts, 1) != 2
            or not _plain(parts)):
        return False
    p.grad = cnp.PyArray_DATA(g)
    p.grad_step = cnp.PyArray_NDIM(g)  # 0: one value for every row
    p.parts = <double *>cnp.PyArray_DATA(parts)
    return True


def cross_entropy_backward(grad_loss, logits, target, lse_parts, label_smoothing=0.0,
                           ignore_index=-100):
    """Gradient of the per-row cross-entropy with respect to the logits.

    dlogits[i, j] = grad_loss[i] * (exp(logits[i, j] - lse_i) - (1 - ls) * [j == t_i] - ls / C),
    zero rows where the target is ``ignore_index``. ``grad_loss`` is (N,) or a scalar;
    ``lse_parts`` is (N, 2), as cross_entropy_forward returns it.
    """
    cdef Xent p
    keep = None
    if _common_call(&p, logits, target, ignore_index) >= 0 and _common_gradient(
            &p, grad_loss, lse_parts):
        p.ls = float(label_smoothing)
    else:
        keep = _general_backward(&p, grad_loss, logits, target, lse_parts, label_smoothing,
                                 ignore_index)
    dx = _gradient_array(&p)
    with nogil:
        _xent_run(&p, XENT_BACKWARD)
    return dx


cdef tuple _general_backward(Xent *p, grad_loss, logits, target, lse_parts, label_smoothing,
                             ignore_index):
    """The backward's general path (see _general_call), in the order of its checks."""
    fn = "cross_entropy_backward"
    _, x, t = _general_call(p, fn, logits, target, ignore_index)
    p.ls = float(label_smoothing)
    stats_array(fn, "lse_parts", lse_parts, (p.n, 2), logits)
    grad_loss = float_array(fn, "grad_loss", grad_loss)
    if grad_loss.shape not in ((), (p.n,)):
        raise ValueError(f"{fn}: grad_loss must have shape () or ({p.n},), "
                         f"got shape {grad_loss.shape}")
    grad = np.require(np.broadcast_to(grad_loss, (p.n,)), x.dtype, "CA")
    parts = np.require(lse_parts, np.float64, "CA")
    p.grad = cnp.PyArray_DATA(<cnp.ndarray>grad)
    p.grad_step = 1
    p.parts = <double *>cnp.PyArray_DATA(<cnp.ndarray>parts)
    return x, t, grad, parts


def cross_entropy_fused(logits, target, label_smoothing=0.0, ignore_index=-100):
    """The mean cross-entropy's forward and backward in one call (``mg.compile`` replays a
    cross-entropy whose backward starts at the loss this way).

    Returns ``(loss, count, dlogits)``: loss and its row log-sum-exp parts computed exactly as
    ``cross_entropy_forward`` does, ``count`` the rows whose target is not ``ignore_index``,
    and dlogits exactly as ``cross_entropy_backward`` gives it for the gradient
    g = 1 / max(count, 1) (in logits' dtype) of every row: d mean / d loss_i. Each block of
    rows goes through the backward right after its forward, while its logits are in cache.
    """
    cdef Xent p
    keep = None
    count = _common_call(&p, logits, target, ignore_index)
    if count < 0:
        count, *keep = _general_call(&p, "cross_entropy_fused", logits, target, ignore_index)
    # the very division of the mean's backward: a 1 of the loss's dtype over the count
    if p.dtype == cnp.NPY_FLOAT:
        p.g = <float>1 / <float>max(<Py_ssize_t>count, 1)
    else:
        p.g = 1.0 / <double>max(<Py_ssize_t>count, 1)
    p.ls = float(label_smoothing)
    loss, parts = _outputs(&p)
    dx = _gradient_array(&p)
    with nogil:
        _xent_run(&p, XENT_FUSED)
    return loss, count, dx
