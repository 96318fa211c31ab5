# The SIMD layer of _simd.h for Cython: its C loops (suffix _f for float data, _d for double)
# and, for each, one inline fused-type dispatcher (same name without the "mg" prefix) that picks
# the float or double loop at compile time. Every compiled kernel module cimports from here.

from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "_simd.h" nogil:
    void mg_gelu_fwd_f(const float *x, float *y, float *cdf, Py_ssize_t n)
    void mg_gelu_fwd_d(const double *x, double *y, double *cdf, Py_ssize_t n)
    void mg_gelu_bwd_f(const float *g, const float *x, const float *cdf, float *dx, Py_ssize_t n)
    void mg_gelu_bwd_d(const double *g, const double *x, const double *cdf, double *dx,
                       Py_ssize_t n)
    void mg_exp_array_f(const float *x, float *y, Py_ssize_t n)
    void mg_exp_array_d(const double *x, double *y, Py_ssize_t n)
    double mg_row_sum_f(const float *x, Py_ssize_t n)
    double mg_row_sum_d(const double *x, Py_ssize_t n)
    void mg_row_moments_f(const float *x, Py_ssize_t n, double c, double *s1, double *s2)
    void mg_row_moments_d(const double *x, Py_ssize_t n, double c, double *s1, double *s2)
    float mg_row_extreme_exact_f(const float *x, Py_ssize_t n, int sign, Py_ssize_t *index)
    double mg_row_extreme_exact_d(const double *x, Py_ssize_t n, int sign, Py_ssize_t *index)
    float mg_row_extreme_f(const float *x, Py_ssize_t n, int sign, Py_ssize_t *index)
    double mg_row_extreme_d(const double *x, Py_ssize_t n, int sign, Py_ssize_t *index)
    float mg_row_max_f(const float *x, Py_ssize_t n, int sign)
    double mg_row_max_d(const double *x, Py_ssize_t n, int sign)
    double mg_row_sumexp_f(const float *x, Py_ssize_t n, float shift)
    double mg_row_sumexp_d(const double *x, Py_ssize_t n, double shift)
    double mg_row_expwrite_f(const float *x, float *y, Py_ssize_t n, float shift)
    double mg_row_expwrite_d(const double *x, double *y, Py_ssize_t n, double shift)
    double mg_row_dot_f(const float *x, const float *y, Py_ssize_t n)
    double mg_row_dot_d(const double *x, const double *y, Py_ssize_t n)
    void mg_row_affine_f(const float *x, float *y, Py_ssize_t n, float a, float b)
    void mg_row_affine_d(const double *x, double *y, Py_ssize_t n, double a, double b)
    void mg_row_softmax_bwd_f(const float *y, const float *g, float *dx, Py_ssize_t n, float dot)
    void mg_row_softmax_bwd_d(const double *y, const double *g, double *dx, Py_ssize_t n,
                              double dot)
    void mg_row_logsoftmax_bwd_f(const float *y, const float *g, float *dx, Py_ssize_t n,
                                 float total)
    void mg_row_logsoftmax_bwd_d(const double *y, const double *g, double *dx, Py_ssize_t n,
                                 double total)
    void mg_col_sum_f(const float *x, Py_ssize_t stride, int rows, double *acc, Py_ssize_t n)
    void mg_col_sum_d(const double *x, Py_ssize_t stride, int rows, double *acc, Py_ssize_t n)
    # _simd_reduce.h: faster float32 loops with the results of mg_row_sum_f, mg_col_sum_f and
    # mg_row_extreme_f
    double mg_row_sum_fast_f(const float *x, Py_ssize_t n)
    void mg_rows_sum_fast_f(const float *x, Py_ssize_t rows, Py_ssize_t n, double d, float *out)
    void mg_col_sum_fast_f(const float *x, Py_ssize_t stride, int rows, double *acc, Py_ssize_t n)
    float mg_row_extreme_fast_f(const float *x, Py_ssize_t n, int sign, Py_ssize_t *index)
    void mg_col_moments_f(const float *x, const double *c, double *s1, double *s2, Py_ssize_t n)
    void mg_col_moments_d(const double *x, const double *c, double *s1, double *s2, Py_ssize_t n)
    void mg_col_extreme_f(const float *x, float *m, int64_t *index, int64_t a, int sign,
                          Py_ssize_t n)
    void mg_col_extreme_d(const double *x, double *m, int64_t *index, int64_t a, int sign,
                          Py_ssize_t n)
    void mg_col_sumexp_f(const float *x, const float *shift, double *acc, Py_ssize_t n)
    void mg_col_sumexp_d(const double *x, const double *shift, double *acc, Py_ssize_t n)
    void mg_col_expwrite_f(const float *x, float *y, const float *shift, double *acc, Py_ssize_t n)
    void mg_col_expwrite_d(const double *x, double *y, const double *shift, double *acc,
                           Py_ssize_t n)
    void mg_col_dot_f(const float *x, const float *y, double *acc, Py_ssize_t n)
    void mg_col_dot_d(const double *x, const double *y, double *acc, Py_ssize_t n)
    void mg_col_affine_f(const float *x, float *y, const float *a, const float *b, Py_ssize_t n)
    void mg_col_affine_d(const double *x, double *y, const double *a, const double *b, Py_ssize_t n)
    void mg_col_softmax_bwd_f(const float *y, const float *g, float *dx, const float *dot,
                              Py_ssize_t n)
    void mg_col_softmax_bwd_d(const double *y, const double *g, double *dx, const double *dot,
                              Py_ssize_t n)
    void mg_col_logsoftmax_bwd_f(const float *y, const float *g, float *dx, const float *total,
                                 Py_ssize_t n)
    void mg_col_logsoftmax_bwd_d(const double *y, const double *g, double *dx, const double *total,
                                 Py_ssize_t n)
    void mg_grad_sums_f(const float *dy, const float *x, Py_ssize_t n, double mean, double *sum_dy,
                        double *sum_dy_xc)
    void mg_grad_sums_d(const double *dy, const double *x, Py_ssize_t n, double mean,
                        double *sum_dy, double *sum_dy_xc)
    void mg_layernorm_grad_sums_f(const float *dy, const float *x, const float *gamma,
                                  Py_ssize_t n, double mean, double rstd, double *dgamma,
                                  double *dbeta, double *sum_g, double *sum_g_xhat)
    void mg_layernorm_grad_sums_d(const double *dy, const double *x, const double *gamma,
                                  Py_ssize_t n, double mean, double rstd, double *dgamma,
                                  double *dbeta, double *sum_g, double *sum_g_xhat)
    void mg_column_shifted_sums_f(const float *x, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0,
                                  Py_ssize_t c1, double *sum1, double *sum2)
    void mg_column_shifted_sums_d(const double *x, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t c0,
                                  Py_ssize_t c1, double *sum1, double *sum2)
    void mg_column_grad_sums_f(const float *dy, const float *x, Py_ssize_t rows, Py_ssize_t cols,
                               Py_ssize_t c0, Py_ssize_t c1, const double *mean, double *sum_dy,
                               double *sum_dy_xc)
    void mg_column_grad_sums_d(const double *dy, const double *x, Py_ssize_t rows, Py_ssize_t cols,
                               Py_ssize_t c0, Py_ssize_t c1, const double *mean, double *sum_dy,
                               double *sum_dy_xc)
    void mg_scale_shift_f(const float *x, Py_ssize_t n, float mean_hi, float mean_lo, float scale,
                          float shift, float *y)
    void mg_scale_shift_d(const double *x, Py_ssize_t n, double mean_hi, double mean_lo,
                          double scale, double shift, double *y)
    void mg_scale_shift_rows_f(const float *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
                               const float *mean_hi, const float *mean_lo, const float *scale,
                               const float *shift, float *y)
    void mg_scale_shift_rows_d(const double *x, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
                               const double *mean_hi, const double *mean_lo, const double *scale,
                               const double *shift, double *y)
    void mg_dx_write_f(const float *dy, const float *x, Py_ssize_t n, float mean_hi, float mean_lo,
                       float a, float b, float d, float *dx)
    void mg_dx_write_d(const double *dy, const double *x, Py_ssize_t n, double mean_hi,
                       double mean_lo, double a, double b, double d, double *dx)
    void mg_dx_write_rows_f(const float *dy, const float *x, Py_ssize_t r0, Py_ssize_t r1,
                            Py_ssize_t cols, const float *mean_hi, const float *mean_lo,
                            const float *a, const float *b, const float *d, float *dx)
    void mg_dx_write_rows_d(const double *dy, const double *x, Py_ssize_t r0, Py_ssize_t r1,
                            Py_ssize_t cols, const double *mean_hi, const double *mean_lo,
                            const double *a, const double *b, const double *d, double *dx)
    void mg_layernorm_row_f(const float *x, Py_ssize_t n, float mean_hi, float mean_lo, float rstd,
                            const float *gamma, const float *beta, float *y)
    void mg_layernorm_row_d(const double *x, Py_ssize_t n, double mean_hi, double mean_lo,
                            double rstd, const double *gamma, const double *beta, double *y)
    void mg_layernorm_dx_row_f(const float *dy, const float *x, const float *gamma, Py_ssize_t n,
                               float mean_hi, float mean_lo, float rstd, float p, float q,
                               float *dx)
    void mg_layernorm_dx_row_d(const double *dy, const double *x, const double *gamma,
                               Py_ssize_t n, double mean_hi, double mean_lo, double rstd, double p,
                               double q, double *dx)


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


cdef inline floating _row_max(const floating *x, Py_ssize_t n, int sign) noexcept nogil:
    # the extreme value only, as a shift for exp-sums (see mg_row_max in _simd_typed.h)
    if floating is float:
        return mg_row_max_f(x, n, sign)
    else:
        return mg_row_max_d(x, n, sign)


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


cdef inline void _row_softmax_bwd(const floating *y, const floating *g, floating *dx, Py_ssize_t n,
                                  floating dot) noexcept nogil:
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


cdef inline void _col_extreme(const floating *x, floating *m, int64_t *index, int64_t a, int sign,
                              Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_extreme_f(x, m, index, a, sign, n)
    else:
        mg_col_extreme_d(x, m, index, a, sign, n)


cdef inline void _col_sumexp(const floating *x, const floating *shift, double *acc,
                             Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_sumexp_f(x, shift, acc, n)
    else:
        mg_col_sumexp_d(x, shift, acc, n)


cdef inline void _col_expwrite(const floating *x, floating *y, const floating *shift, double *acc,
                               Py_ssize_t n) noexcept nogil:
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


cdef inline void _col_affine(const floating *x, floating *y, const floating *a, const floating *b,
                             Py_ssize_t n) noexcept nogil:
    if floating is float:
        mg_col_affine_f(x, y, a, b, n)
    else:
        mg_col_affine_d(x, y, a, b, n)


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


cdef inline void _grad_sums(const floating *dy, const floating *x, Py_ssize_t n, double mean,
                            double *sum_dy, double *sum_dy_xc) noexcept nogil:
    if floating is float:
        mg_grad_sums_f(dy, x, n, mean, sum_dy, sum_dy_xc)
    else:
        mg_grad_sums_d(dy, x, n, mean, sum_dy, sum_dy_xc)


cdef inline void _layernorm_grad_sums(const floating *dy, const floating *x, const floating *gamma,
                                      Py_ssize_t n, double mean, double rstd, double *dgamma,
                                      double *dbeta, double *sum_g,
                                      double *sum_g_xhat) noexcept nogil:
    if floating is float:
        mg_layernorm_grad_sums_f(dy, x, gamma, n, mean, rstd, dgamma, dbeta, sum_g, sum_g_xhat)
    else:
        mg_layernorm_grad_sums_d(dy, x, gamma, n, mean, rstd, dgamma, dbeta, sum_g, sum_g_xhat)


cdef inline void _column_shifted_sums(const floating *x, Py_ssize_t rows, Py_ssize_t cols,
                                      Py_ssize_t c0, Py_ssize_t c1, double *sum1,
                                      double *sum2) noexcept nogil:
    if floating is float:
        mg_column_shifted_sums_f(x, rows, cols, c0, c1, sum1, sum2)
    else:
        mg_column_shifted_sums_d(x, rows, cols, c0, c1, sum1, sum2)


cdef inline void _column_grad_sums(const floating *dy, const floating *x, Py_ssize_t rows,
                                   Py_ssize_t cols, Py_ssize_t c0, Py_ssize_t c1,
                                   const double *mean, double *sum_dy,
                                   double *sum_dy_xc) noexcept nogil:
    if floating is float:
        mg_column_grad_sums_f(dy, x, rows, cols, c0, c1, mean, sum_dy, sum_dy_xc)
    else:
        mg_column_grad_sums_d(dy, x, rows, cols, c0, c1, mean, sum_dy, sum_dy_xc)


cdef inline void _scale_shift(const floating *x, Py_ssize_t n, floating mean_hi, floating mean_lo,
                              floating scale, floating shift, floating *y) noexcept nogil:
    if floating is float:
        mg_scale_shift_f(x, n, mean_hi, mean_lo, scale, shift, y)
    else:
        mg_scale_shift_d(x, n, mean_hi, mean_lo, scale, shift, y)


cdef inline void _scale_shift_rows(const floating *x, Py_ssize_t r0, Py_ssize_t r1,
                                   Py_ssize_t cols, const floating *mean_hi,
                                   const floating *mean_lo, const floating *scale,
                                   const floating *shift, floating *y) noexcept nogil:
    if floating is float:
        mg_scale_shift_rows_f(x, r0, r1, cols, mean_hi, mean_lo, scale, shift, y)
    else:
        mg_scale_shift_rows_d(x, r0, r1, cols, mean_hi, mean_lo, scale, shift, y)


cdef inline void _dx_write(const floating *dy, const floating *x, Py_ssize_t n, floating mean_hi,
                           floating mean_lo, floating a, floating b, floating d,
                           floating *dx) noexcept nogil:
    if floating is float:
        mg_dx_write_f(dy, x, n, mean_hi, mean_lo, a, b, d, dx)
    else:
        mg_dx_write_d(dy, x, n, mean_hi, mean_lo, a, b, d, dx)


cdef inline void _dx_write_rows(const floating *dy, const floating *x, Py_ssize_t r0,
                                Py_ssize_t r1, Py_ssize_t cols, const floating *mean_hi,
                                const floating *mean_lo, const floating *a, const floating *b,
                                const floating *d, floating *dx) noexcept nogil:
    if floating is float:
        mg_dx_write_rows_f(dy, x, r0, r1, cols, mean_hi, mean_lo, a, b, d, dx)
    else:
        mg_dx_write_rows_d(dy, x, r0, r1, cols, mean_hi, mean_lo, a, b, d, dx)


cdef inline void _layernorm_row(const floating *x, Py_ssize_t n, floating mean_hi,
                                floating mean_lo, floating rstd, const floating *gamma,
                                const floating *beta, floating *y) noexcept nogil:
    if floating is float:
        mg_layernorm_row_f(x, n, mean_hi, mean_lo, rstd, gamma, beta, y)
    else:
        mg_layernorm_row_d(x, n, mean_hi, mean_lo, rstd, gamma, beta, y)


cdef inline void _layernorm_dx_row(const floating *dy, const floating *x, const floating *gamma,
                                   Py_ssize_t n, floating mean_hi, floating mean_lo, floating rstd,
                                   floating p, floating q, floating *dx) noexcept nogil:
    if floating is float:
        mg_layernorm_dx_row_f(dy, x, gamma, n, mean_hi, mean_lo, rstd, p, q, dx)
    else:
        mg_layernorm_dx_row_d(dy, x, gamma, n, mean_hi, mean_lo, rstd, p, q, dx)
