# The direct path's backward with dx and dW together (included by _conv.pyx after
# _conv_direct_api.pxi, whose _backward_direct takes it when _together_fits).

# dx, dW (by broadcasts) and db together on two threads: one thread runs dW, the other dx and
# then db, each on the one-thread loops, instead of each gradient split across both threads in
# turn (each split gained only about 1.4x: its two halves are short, and meet at barriers).
# Measured alone, float32, 64x16x4x4 -> 32 (the digits CNN's second layer), median / min of
# 7x50 us: one thread dx 82 + dW 100 + db 5; two threads in turn 134 / 134, together 104 / 103.
# Taken when its work fits in BLOCK_BYTES with dW's blocks as large as on their own (dW's sums
# over blocks, and so its bits, must not depend on the thread count).
cdef bint _together_fits(Direct d, cnp.ndarray x):
    """Whether _backward_together's work (dW's blocks as large as on its own, dx's work and
    db's sums) fits in BLOCK_BYTES, the work a backward may hold at once; else each gradient
    runs in turn."""
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x)
    cdef Py_ssize_t per = d.L * d.groups * d.ogp + d.xm, nb = _block(d.N, per, itemsize)
    cdef Py_ssize_t x_work = d.O * d.taps * d.cga + d.O * d.yplane
    return d.O * d.L * sizeof(double) + (x_work + nb * per) * itemsize <= BLOCK_BYTES


cdef object _backward_together(dy, cnp.ndarray x, cnp.ndarray w, bint want_db, Taps t,
                               Direct d):
    """conv2d_backward's (dx, dW, db) on the direct path, dW by broadcasts, two threads (d.nt):
    each gradient computed by one thread with the loops of a one-thread call, so the same bits
    as those."""
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x), wx_size = d.O * d.taps * d.cga
    cdef int typenum = cnp.PyArray_TYPE(x)
    cdef cnp.npy_intp dims[3]
    dx = _planes(d, d.C, d.Lx, d.ldx, x.shape[2], x.shape[3], typenum)
    dims[0], dims[1], dims[2] = d.groups, d.kgp, d.ogp
    dwt = cnp.PyArray_ZEROS(3, dims, typenum, 0)
    dw = cnp.PyArray_EMPTY(4, w.shape, typenum, 0)
    dims[0] = d.O
    db = cnp.PyArray_ZEROS(1, dims, typenum, 0) if want_db else None
    # work: db's float64 row sums (O L), dx's (W packed, one sample's padded dY planes), dW's
    # (a block of samples' dY^T and masked copies)
    cdef Py_ssize_t per = d.L * d.groups * d.ogp + d.xm, nb = _block(d.N, per, itemsize)
    cdef Py_ssize_t sums = d.O * d.L * sizeof(double), x_work = wx_size + d.O * d.yplane
    work = _scratch(sums + (x_work + nb * per) * itemsize)
    cdef char *pk = <char *>_data(work)
    cdef void *pdy = _data(dy)
    cdef void *px = _data(x)
    cdef void *pw = _data(w)
    cdef void *pdx = _data(dx)
    cdef void *pdwt = _data(dwt)
    cdef void *pdw = _data(dw)
    cdef void *pdb = NULL if db is None else _data(db)
    with nogil:
        if itemsize == 4:
            _together[float](<const float *>pdy, <const float *>px, <const float *>pw,
                             <float *>pdx, <float *>pdwt, <float *>pdw, <float *>pdb,
                             <double *>pk, <float *>(pk + sums), nb, wx_size, x_work, t, d)
        else:
            _together[double](<const double *>pdy, <const double *>px, <const double *>pw,
                              <double *>pdx, <double *>pdwt, <double *>pdw, <double *>pdb,
                              <double *>pk, <double *>(pk + sums), nb, wx_size, x_work, t, d)
    return _cut(dx, d, d.Lx, d.ldx, x.shape[2], x.shape[3]), dw, db


cdef void _together(const floating *dy, const floating *x, const floating *w, floating *dx,
                    floating *dwt, floating *dw, floating *db, double *acc, floating *work,
                    Py_ssize_t nb, Py_ssize_t wx_size, Py_ssize_t x_work, Taps t,
                    Direct d) noexcept nogil:
    """Thread 0: dW; thread 1: dx, then db (NULL: none); a team of one runs all three."""
    cdef Direct one = d
    cdef int tid, team
    one.nt = 1
    with parallel(num_threads=2):
        tid = threadid()
        team = mg_team_size()
        if tid == 0:
            _wgrad_bc_blocks(dy, x, dwt, dw, work + x_work, nb, t, one)
        if tid == 1 or team == 1:
            _pack_dx(w, work, one)
            _direct_dx(dy, work, dx, work + wx_size, t, one)
            if db != NULL:
                if floating is float:
                    mg_channel_sums_f(dy, d.N, d.O, d.L, 0, d.O, acc, db)
                else:
                    mg_channel_sums_d(dy, d.N, d.O, d.L, 0, d.O, acc, db)
