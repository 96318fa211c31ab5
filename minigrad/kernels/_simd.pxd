# The C helpers of ``_simd.h`` and their fused-type dispatchers, shared by ``_reduce.pyx`` and
# ``_softmax.pyx`` (``cimport`` them from here). Each dispatcher picks the float (``_f``) or
# double (``_d``) helper at compile time; they are inline, so nothing here exists at run time.

from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "_simd.h" nogil:
    void mg_col_affine_d(const double *x, double *y, const double *a, const double *b,
                         Py_ssize_t n)
    void mg_col_affine_f(const float *x, float *y, const float *a, const float *b, Py_ssize_t n)
    void mg_col_dot_d(const double *x, const double *y, double *acc, Py_ssize_t n)
    void mg_col_dot_f(const float *x, const float *y, double *acc, Py_ssize_t n)
    void mg_col_expwrite_d(const double *x, double *y, const double *shift, double *acc,
                           Py_ssize_t n)
    void mg_col_expwrite_f(const float *x, float *y, const float *shift, double *acc,
                           Py_ssize_t n)
    void mg_col_extreme_d(const double *x, double *m, int64_t *index, int64_t a, int sign,
                          Py_ssize_t n)
    void mg_col_extreme_f(const float *x, float *m, int64_t *index, int64_t a, int sign,
                          Py_ssize_t n)
    void mg_col_logsoftmax_d(const double *x, double *y, const double *m, const double *lse,
                             Py_ssize_t n)
    void mg_col_logsoftmax_f(const float *x, float *y, const float *m, const float *lse,
                             Py_ssize_t n)
    void mg_col_logsoftmax_bwd_d(const double *y, const double *g, double *dx,
                                 const double *total, Py_ssize_t n)
    void mg_col_logsoftmax_bwd_f(const float *y, const float *g, float *dx, const float *total,
                                 Py_ssize_t n)
    void mg_col_moments_d(const double *x, const double *c, double *s1, double *s2,
                          Py_ssize_t n)
    void mg_col_moments_f(const float *x, const double *c, double *s1, double *s2, Py_ssize_t n)
    void mg_col_softmax_bwd_d(const double *y, const double *g, double *dx, const double *dot,
                              Py_ssize_t n)
    void mg_col_softmax_bwd_f(const float *y, const float *g, float *dx, const float *dot,
                              Py_ssize_t n)
    void mg_col_sum_d(const double *x, Py_ssize_t stride, int rows, double *acc, Py_ssize_t n)
    void mg_col_sum_f(const float *x, Py_ssize_t stride, int rows, double *acc, Py_ssize_t n)
    void mg_col_sumexp_d(const double *x, const double *shift, double *acc, Py_ssize_t n)
    void mg_col_sumexp_f(const float *x, const float *shift, double *acc, Py_ssize_t n)
    void mg_exp_array_d(const double *x, double *y, Py_ssize_t n)
    void mg_exp_array_f(const float *x, float *y, Py_ssize_t n)
    void mg_row_affine_d(const double *x, double *y, Py_ssize_t n, double a, double b)
    void mg_row_affine_f(const float *x, float *y, Py_ssize_t n, float a, float b)
    double mg_row_dot_d(const double *x, const double *y, Py_ssize_t n)
    double mg_row_dot_f(const float *x, const float *y, Py_ssize_t n)
    double mg_row_expwrite_d(const double *x, double *y, Py_ssize_t n, double shift)
    double mg_row_expwrite_f(const float *x, float *y, Py_ssize_t n, float shift)
    double mg_row_extreme_d(const double *x, Py_ssize_t n, int sign, Py_ssize_t *index)
    float mg_row_extreme_f(const float *x, Py_ssize_t n, int sign, Py_ssize_t *index)
    void mg_row_logsoftmax_d(const double *x, double *y, Py_ssize_t n, double m, double lse)
    void mg_row_logsoftmax_f(const float *x, float *y, Py_ssize_t n, float m, float lse)
    void mg_row_logsoftmax_bwd_d(const double *y, const double *g, double *dx, Py_ssize_t n,
                                 double total)
    void mg_row_logsoftmax_bwd_f(const float *y, const float *g, float *dx, Py_ssize_t n,
                                 float total)
    void mg_row_moments_d(const double *x, Py_ssize_t n, double c, double *s1, double *s2)
    void mg_row_moments_f(const float *x, Py_ssize_t n, double c, double *s1, double *s2)
    void mg_row_softmax_bwd_d(const double *y, const double *g, double *dx, Py_ssize_t n,
                              double dot)
    void mg_row_softmax_bwd_f(const float *y, const float *g, float *dx, Py_ssize_t n,
                              float dot)
    double mg_row_sum_d(const double *x, Py_ssize_t n)
    double mg_row_sum_f(const float *x, Py_ssize_t n)
    double mg_row_sumexp_d(const double *x, Py_ssize_t n, double shift)
    double mg_row_sumexp_f(const float *x, Py_ssize_t n, float shift)
    void mg_row_xent_bwd_d(const double *x, double *dx, Py_ssize_t n, double lse, double g,
                           double c)
    void mg_row_xent_bwd_f(const float *x, float *dx, Py_ssize_t n, float lse, float g,
                           float c)


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline double _row_sum(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return mg_row_sum_f(x, n)
    else:
        return mg_row_sum_d(x, n)


cdef inline void _row_moments(const floating *x, Py_ssize_t n, double c, double *s1,
                              double *s2) noexcept nogil:
    if floating is float:
        mg_row_moments_f(x, n, c, s1, s2)
    else:
        mg_row_moments_d(x, n, c, s1, s2)


cdef inline floating _row_extreme(const floating *x, Py_ssize_t n, int sign,
                                  Py_ssize_t *index) noexcept nogil:
    if floating is float:
        return mg_row_extreme_f(x, n, sign, index)
    else:
        return mg_row_extreme_d(x, n, sign, index)


cdef inline floating _row_max(const floating *x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0
    if floating is float:
        return mg_row_extreme_f(x, n, 1, &i)
    else:
        return mg_row_extreme_d(x, n, 1, &i)


cdef inline double _row_sumexp(const floating *x, Py_ssize_t n, floating shift) noexcept nogil:
    if floating is float:
        return mg_row_sumexp_f(x, n, shift)
    else:
        return mg_row_sumexp_d(x, n, shift)


cdef inline double _row_expwrite(const floating *x, floating *y, Py_ssize_t n,
                                 floating shift) noexcept nogil:
    if floating is float:
        return mg_row_expwrite_f(x, y, n, shift)
    else:
        return mg_row_expwrite_d(x, y, n, shift)


cdef inline double _row_dot(const floating *x, const floating *y, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return mg_row_dot_f(x, y, n)
    else:
        return mg_row_dot_d(x, y, n)


cdef inline void _row_affine(const floating *x, floating *y, Py_ssize_t n, floating a,
                             floating b) noexcept nogil:
    if floating is float:
        mg_row_affine_f(x, y, n, a, b)
    else:
        mg_row_affine_d(x, y, n, a, b)


cdef inline void _row_logsoftmax(const floating *x, floating *y, Py_ssize_t n, floating m,
                                 floating lse) noexcept nogil:
    if floating is float:
        mg_row_logsoftmax_f(x, y, n, m, lse)
    else:
        mg_row_logsoftmax_d(x, y, n, m, lse)


cdef inline void _row_softmax_bwd(const floating *y, const floating *g, floating *dx,
                                  Py_ssize_t n, floating dot) noexcept nogil:
    if floating is float:
        mg_row_softmax_bwd_f(y, g, dx, n, dot)
    else:
        mg_row_softmax_bwd_d(y, g, dx, n, dot)


cdef inline void _row_logsoftmax_bwd(const floating *y, const floating *g, floating *dx,
                                     Py_ssize_t n, floating total) noexcept nogil:
    if floating is float:
        mg_row_logsoftmax_bwd_f(y, g, dx, n, total)
    else:
        mg_row_logsoftmax_bwd_d(y, g, dx, n, total)


cdef inline void _row_xent_bwd(const floating *x, floating *dx, Py_ssize_t n, floating lse,
                               floating g, floating c) noexcept nogil:
    if floating is float:
        mg_row_xent_bwd_f(x, dx, n, lse, g, c)
    else:
        mg_row_xent_bwd_d(x, dx, n, lse, g, c)


cdef inline void _col_sum(const floating *x, Py_ssize_t stride, int rows, double *acc,
                          Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_sum_f(x, stride, rows, acc, n)
    else:
        mg_col_sum_d(x, stride, rows, acc, n)


cdef inline void _col_moments(const floating *x, const double *c, double *s1, double *s2,
                              Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_moments_f(x, c, s1, s2, n)
    else:
        mg_col_moments_d(x, c, s1, s2, n)


cdef inline void _col_extreme(const floating *x, floating *m, int64_t *index, int64_t a,
                              int sign, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_extreme_f(x, m, index, a, sign, n)
    else:
        mg_col_extreme_d(x, m, index, a, sign, n)


cdef inline void _col_max(const floating *x, floating *m, int64_t *scratch,
                          Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_extreme_f(x, m, scratch, 0, 1, n)
    else:
        mg_col_extreme_d(x, m, scratch, 0, 1, n)


cdef inline void _col_sumexp(const floating *x, const floating *shift, double *acc,
                             Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_sumexp_f(x, shift, acc, n)
    else:
        mg_col_sumexp_d(x, shift, acc, n)


cdef inline void _col_expwrite(const floating *x, floating *y, const floating *shift,
                               double *acc, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_expwrite_f(x, y, shift, acc, n)
    else:
        mg_col_expwrite_d(x, y, shift, acc, n)


cdef inline void _col_dot(const floating *x, const floating *y, double *acc,
                          Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_dot_f(x, y, acc, n)
    else:
        mg_col_dot_d(x, y, acc, n)


cdef inline void _col_scale(const floating *x, floating *y, const floating *a,
                            const floating *zero, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_affine_f(x, y, a, zero, n)
    else:
        mg_col_affine_d(x, y, a, zero, n)


cdef inline void _col_logsoftmax(const floating *x, floating *y, const floating *m,
                                 const floating *lse, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_logsoftmax_f(x, y, m, lse, n)
    else:
        mg_col_logsoftmax_d(x, y, m, lse, n)


cdef inline void _col_softmax_bwd(const floating *y, const floating *g, floating *dx,
                                  const floating *dot, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_softmax_bwd_f(y, g, dx, dot, n)
    else:
        mg_col_softmax_bwd_d(y, g, dx, dot, n)


cdef inline void _col_logsoftmax_bwd(const floating *y, const floating *g, floating *dx,
                                     const floating *total, Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_logsoftmax_bwd_f(y, g, dx, total, n)
    else:
        mg_col_logsoftmax_bwd_d(y, g, dx, total, n)
