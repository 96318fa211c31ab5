# Included by _norm.pyx: the LayerNorm and RMSNorm kernels' Python wrappers, and the helpers
# through which every wrapper of the module reaches its arrays.
#
# The wrappers reach arrays through NumPy's C API and hand the cores data pointers: one typed
# memoryview per argument (nine for the backward) and the NumPy calls of a Python-level wrapper
# cost about 8 us per forward + backward, 8% of the whole step at (256, 512).

cdef inline void *_data(object a):
    """The data pointer of an ndarray, NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef object _c_contiguous(object a):
    """a itself when it is a C-contiguous, aligned ndarray, else a copy that is one (the loops
    read it through a typed pointer)."""
    if cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>a):
        return a
    a = np.ascontiguousarray(a)
    return a if cnp.PyArray_ISALIGNED(<cnp.ndarray>a) else a.copy()


cdef object _float64(object a):
    """A saved mean or rstd as a C-contiguous, aligned float64 array (a itself when it already
    is one)."""
    if cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_DOUBLE and cnp.PyArray_ISCARRAY_RO(
            <cnp.ndarray>a):
        return a
    a = np.ascontiguousarray(a, dtype=np.float64)
    return a if cnp.PyArray_ISALIGNED(<cnp.ndarray>a) else a.copy()


cdef object _empty(int ndim, cnp.npy_intp *dims, int typenum):
    return cnp.PyArray_EMPTY(ndim, dims, typenum, 0)


cdef Py_ssize_t _count(cnp.npy_intp *dims, int start, int stop):
    """The product of dims[start:stop]."""
    cdef Py_ssize_t n = 1
    cdef int i
    for i in range(start, stop):
        n *= dims[i]
    return n


cdef tuple _forward(x, gamma, beta, double eps, int k, bint centred):
    """(y, mean, rstd) over the trailing k axes of a checked x (gamma and beta None, or both
    arrays of the normalized shape)."""
    x = _c_contiguous(x)
    cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>x), typenum = cnp.PyArray_TYPE(<cnp.ndarray>x)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(<cnp.ndarray>x)
    cdef Py_ssize_t R = _count(dims, 0, nd - k), D = _count(dims, nd - k, nd)
    y = _empty(nd, dims, typenum)
    mean = _empty(nd - k, dims, cnp.NPY_DOUBLE)
    rstd = _empty(nd - k, dims, cnp.NPY_DOUBLE)
    if gamma is not None:
        gamma = _c_contiguous(gamma)
        beta = _c_contiguous(beta)
    if typenum == cnp.NPY_FLOAT:  # the checks allow only float32 and float64
        _layernorm_forward_core[float](<float *>_data(x), <float *>_data(gamma),
                                       <float *>_data(beta), centred, eps, R, D,
                                       <float *>_data(y), <double *>_data(mean),
                                       <double *>_data(rstd))
    else:
        _layernorm_forward_core[double](<double *>_data(x), <double *>_data(gamma),
                                        <double *>_data(beta), centred, eps, R, D,
                                        <double *>_data(y), <double *>_data(mean),
                                        <double *>_data(rstd))
    return y, mean, rstd


cdef tuple _backward(dy, x, gamma, mean, rstd, int k):
    """(dx, dgamma, dbeta) over the trailing k axes of a checked x; mean None: RMSNorm (dbeta
    None)."""
    x = _c_contiguous(x)
    dy = _c_contiguous(dy)
    rstd = _float64(rstd)
    if mean is not None:
        mean = _float64(mean)
    cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>x), typenum = cnp.PyArray_TYPE(<cnp.ndarray>x)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(<cnp.ndarray>x)
    cdef Py_ssize_t R = _count(dims, 0, nd - k), D = _count(dims, nd - k, nd)
    gamma = np.ones(D, x.dtype) if gamma is None else _c_contiguous(gamma)
    # LAYERNORM_BLOCK_WORK elements a block: the blocks depend on the shape only. Rows D + 8
    # apart: at D = 512 rows of exactly 4 KiB put a block's dgamma and dbeta at addresses equal
    # modulo 4096, and each store to one stalled the next load of the other (4K aliasing;
    # LayerNorm backward (256, 512) 74 -> 70 us).
    cdef Py_ssize_t blocks = max(1, min(R, LAYERNORM_MAX_BLOCKS, R * D // LAYERNORM_BLOCK_WORK))
    cdef cnp.npy_intp sdims[2]
    sdims[0] = 2 * blocks + 1
    sdims[1] = D + 8
    scratch = _empty(2, sdims, cnp.NPY_DOUBLE)
    dx = _empty(nd, dims, typenum)
    dgamma = _empty(k, dims + nd - k, typenum)
    dbeta = None if mean is None else _empty(k, dims + nd - k, typenum)
    if typenum == cnp.NPY_FLOAT:  # the checks allow only float32 and float64
        _layernorm_backward_core[float](
            <float *>_data(dy), <float *>_data(x), <float *>_data(gamma), <double *>_data(mean),
            <double *>_data(rstd), R, D, <float *>_data(dx), <float *>_data(dgamma),
            <float *>_data(dbeta), <double *>_data(scratch), blocks, sdims[1])
    else:
        _layernorm_backward_core[double](
            <double *>_data(dy), <double *>_data(x), <double *>_data(gamma),
            <double *>_data(mean), <double *>_data(rstd), R, D, <double *>_data(dx),
            <double *>_data(dgamma), <double *>_data(dbeta), <double *>_data(scratch), blocks,
            sdims[1])
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, eps, normalized_ndim, relu=False):
    """LayerNorm forward: y = gamma * (x - mean) / sqrt(var + eps) + beta, per sample.

    mean and the biased var are taken over the trailing ``normalized_ndim`` axes of x; gamma and
    beta have the shape of those axes (or are None, meaning 1 and 0). With ``relu``, y is then
    replaced by max(y, 0), bit for bit ``np.maximum(y, 0)`` (a LayerNorm followed by a ReLU).

    Returns:
        (y, mean, rstd): y like x; mean and rstd float64 with shape x.shape[:-normalized_ndim].
    """
    shape = layernorm_forward_args(x, gamma, beta, normalized_ndim)
    if gamma is not None or beta is not None:
        gamma = np.ones(shape, x.dtype) if gamma is None else gamma
        beta = np.zeros(shape, x.dtype) if beta is None else beta
    y, mean, rstd = _forward(x, gamma, beta, eps, len(shape), True)
    if relu:
        _relu_in_place(y)
    return y, mean, rstd


def layernorm_backward(grad_out, x, gamma, mean, rstd, relu_out=None):
    """LayerNorm backward, closed form, with sums over the D normalized values of each sample.

    With g = dy * gamma and x_hat = (x - mean) * rstd:
    dx = rstd / D * (D * g - sum(g) - x_hat * sum(g * x_hat)),
    dgamma = sum over samples of dy * x_hat, dbeta = sum over samples of dy.
    The normalized axes are the trailing x.ndim - mean.ndim ones. With ``relu_out`` (a ReLU's
    output over this LayerNorm's output), dy = relu_select(grad_out, relu_out), ReLU's
    backward.

    Returns:
        (dx, dgamma, dbeta): dx like x; dgamma and dbeta with the normalized shape, x's dtype.
    """
    shape = layernorm_backward_args(grad_out, x, gamma, mean, rstd)
    if relu_out is not None:
        grad_out = _relu_masked("layernorm_backward", grad_out, x, relu_out)
    return _backward(grad_out, x, gamma, mean, rstd, len(shape))


def rmsnorm_forward(x, weight, eps, normalized_ndim):
    """RMSNorm forward: y = x * rstd * weight per sample, rstd = 1 / sqrt(mean(x^2) + eps) over
    the trailing ``normalized_ndim`` axes (LayerNorm without centring and without beta).

    Returns:
        (y, rstd): y like x; rstd float64 with shape x.shape[:-normalized_ndim].
    """
    shape = rmsnorm_forward_args(x, weight, normalized_ndim)
    beta = None if weight is None else np.zeros(shape, x.dtype)
    y, _, rstd = _forward(x, weight, beta, eps, len(shape), False)
    return y, rstd


def rmsnorm_backward(grad_out, x, weight, rstd):
    """RMSNorm backward, with g = dy * weight and x_hat = x * rstd over the D values of a sample:
    dx = rstd * (g - x_hat * sum(g * x_hat) / D), dweight = sum over samples of dy * x_hat.
    The normalized axes are the trailing x.ndim - rstd.ndim ones.

    Returns:
        (dx, dweight): dx like x; dweight with the normalized shape, x's dtype.
    """
    shape = rmsnorm_backward_args(grad_out, x, weight, rstd)
    dx, dweight, _ = _backward(grad_out, x, weight, None, rstd, len(shape))
    return dx, dweight
