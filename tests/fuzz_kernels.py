"""Fuzz groups for the reduction, softmax/cross-entropy and normalization kernels: every case
agrees with the NumPy twin and a float64 reference, or raises the same clean error on both."""

from __future__ import annotations

import math

import numpy as np
from fuzz_common import (
    arrays,
    assert_close,
    axes,
    describe,
    finite_scale,
    fuzz_settings,
    outcome,
    same_outcome,
)
from hypothesis import given
from hypothesis import strategies as st

from minigrad.kernels import compiled, reference


@st.composite
def long_rows(draw):
    """Arrays whose reduced runs are long enough for the vector loops (32 and 64 floats a step,
    then a scalar tail): one long axis among short ones, in the layouts of ``arrays``."""
    n = draw(st.sampled_from([31, 32, 33, 64, 65, 100, 128, 129, 257, 1000]))
    ndim = draw(st.integers(1, 3))
    shape = [draw(st.sampled_from([1, 2, 3, 5])) for _ in range(ndim)]
    shape[draw(st.integers(0, ndim - 1))] = n
    base = draw(arrays(min_ndim=ndim, max_ndim=ndim, min_side=1))
    x = np.resize(base, shape) if base.size else np.zeros(shape, base.dtype)
    layout = draw(st.sampled_from(["c", "c", "transposed", "negative"]))
    if layout == "transposed":
        return np.ascontiguousarray(x.T).T
    if layout == "negative":
        return x[::-1].copy()[::-1]
    return np.ascontiguousarray(x)


def run_reduce(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        x = data.draw(st.one_of(arrays(), long_rows()))
        axis = data.draw(axes(x.ndim))
        keepdims = data.draw(st.booleans())
        name = data.draw(st.sampled_from(["sum", "mean", "var", "max", "min", "logsumexp"]))
        kwargs = {}
        if name == "var":
            kwargs["correction"] = data.draw(st.sampled_from([0, 1]))
        scale = finite_scale(x) * max(1, x.size)

        def compare(c, t, *_):
            if name in ("max", "min"):
                assert_close(c[0], t[0], x.dtype, f"{name} value {describe([x])} {axis}")
                np.testing.assert_array_equal(c[1], t[1], err_msg=f"{name} index")
            elif name == "var":
                assert_close(c[0], t[0], x.dtype, f"var {describe([x])} {axis}",
                             scale=finite_scale(x) ** 2 * max(1, x.size))
                assert_close(c[1], t[1], x.dtype, "var mean", scale=scale)
                assert not np.any(np.asarray(c[0]) < 0), "negative variance"
            else:
                assert_close(c, t, x.dtype, f"{name} {describe([x])} axis={axis}", scale=scale)
            y = c[0] if isinstance(c, tuple) else c
            assert np.asarray(y).dtype == x.dtype, f"{name} changed dtype to {y.dtype}"

        same_outcome(name, getattr(compiled, name), getattr(reference, name),
                     [x, axis, keepdims], kwargs, compare)

    case()


def run_softmax(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        x = data.draw(arrays())
        axis = data.draw(axes(x.ndim, allow_tuple=False, allow_none=False))
        name = data.draw(st.sampled_from(["softmax", "log_softmax", "softmax_backward",
                                          "log_softmax_backward", "cross_entropy"]))
        if name in ("softmax", "log_softmax"):
            def compare(c, t, *_):
                assert_close(c, t, x.dtype, f"{name} {describe([x])} axis={axis}",
                             scale=finite_scale(t))
            same_outcome(name, getattr(compiled, name), getattr(reference, name), [x, axis],
                         compare=compare)
            return
        if name.endswith("_backward"):
            forward = name[: -len("_backward")]
            kind, y = outcome(getattr(reference, forward), x, axis)
            if kind != "ok":
                return
            g = data.draw(arrays(dtype=x.dtype, min_ndim=x.ndim, max_ndim=x.ndim))
            if g.shape != y.shape and data.draw(st.booleans()):
                g = np.broadcast_to(np.float64(1.0), y.shape).astype(x.dtype)

            def compare(c, t, *_):
                assert_close(c, t, x.dtype, f"{name} {describe([y, g])}",
                             scale=finite_scale(g, y) ** 2 * max(1, y.size))
            same_outcome(name, getattr(compiled, name), getattr(reference, name),
                         [y, g, axis], compare=compare)
            return
        logits = data.draw(arrays(min_ndim=2, max_ndim=2))
        n_rows, n_cls = logits.shape
        target = np.asarray(data.draw(st.lists(st.integers(-101, n_cls), min_size=n_rows,
                                               max_size=n_rows)), dtype=np.int64)
        ls = data.draw(st.sampled_from([0.0, 0.1, 1.0]))
        ii = data.draw(st.sampled_from([-100, 0]))


        def compare_fwd(c, t, *_):
            assert_close(c[0], t[0], logits.dtype, "ce loss", scale=finite_scale(logits))
            assert_close(c[1], t[1], logits.dtype, "ce lse", scale=finite_scale(logits))
        kind, out_c, _ = same_outcome("cross_entropy_forward", compiled.cross_entropy_forward,
                                      reference.cross_entropy_forward,
                                      [logits, target, ls, ii], compare=compare_fwd)
        if kind != "ok":
            return
        lse = out_c[1]
        grad = data.draw(st.sampled_from(["row", "scalar"]))
        g = (np.ones(n_rows, logits.dtype) if grad == "row" else np.array(0.5, logits.dtype))

        def compare_bwd(c, t, *_):
            assert_close(c, t, logits.dtype, "ce backward", scale=1.0)
        same_outcome("cross_entropy_backward", compiled.cross_entropy_backward,
                     reference.cross_entropy_backward, [g, logits, target, lse, ls, ii],
                     compare=compare_bwd)

        def compare_fused(c, t, *_):
            assert_close(c[0], t[0], logits.dtype, "fused ce loss", scale=finite_scale(logits))
            assert c[1] == t[1], f"fused ce count {c[1]} != {t[1]}"
            assert_close(c[2], t[2], logits.dtype, "fused ce dlogits", scale=1.0)
        same_outcome("cross_entropy_fused", compiled.cross_entropy_fused,
                     reference.cross_entropy_fused, [logits, target, ls, ii],
                     compare=compare_fused)

    case()


def run_activation(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        x = data.draw(arrays())
        g = data.draw(arrays(dtype=x.dtype, min_ndim=x.ndim, max_ndim=x.ndim))
        if g.shape != x.shape:
            g = np.ones_like(x)

        def compare(c, t, *_):
            assert_close(c[0], t[0], x.dtype, f"gelu {describe([x])}", scale=finite_scale(x))
            assert_close(c[1], t[1], x.dtype, "gelu cdf")

        kind, out, _ = same_outcome("gelu_forward", compiled.gelu_forward,
                                    reference.gelu_forward, [x], compare=compare)
        if kind != "ok":
            return

        def compare_bwd(c, t, *_):
            assert_close(c, t, x.dtype, f"gelu backward {describe([x, g])}",
                         scale=finite_scale(g) * finite_scale(x))

        same_outcome("gelu_backward", compiled.gelu_backward, reference.gelu_backward,
                     [g, x, out[1]], compare=compare_bwd)

        def compare_relu(c, t, *_):  # the same numbers and NaNs (NumPy's sign of zero varies)
            np.testing.assert_array_equal(c, t, err_msg=f"relu {describe([x, g])}")

        kind, relu_out, _ = same_outcome("relu_forward", compiled.relu_forward,
                                         reference.relu_forward, [x], compare=compare_relu)
        if kind == "ok":
            with np.errstate(invalid="ignore"):
                same_outcome("relu_backward", compiled.relu_backward, reference.relu_backward,
                             [g, relu_out], compare=compare_relu)

    case()


def run_norm(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        kind = data.draw(st.sampled_from(["batch", "layer"]))
        if kind == "batch":
            x = data.draw(arrays(min_ndim=2, max_ndim=4))
            if x.ndim >= 3 and x.size and data.draw(st.integers(0, 3)) == 0:
                # repeat the channels past 16384 values per sample (two samples at most): the
                # compiled kernels sum and write shorter samples by columns, longer ones a
                # plane at a time
                x = np.tile(x[:2], (1, 16384 // (x.size // x.shape[0]) + 1) + (1,) * (x.ndim - 2))
            C = x.shape[1]
            dt = x.dtype
            affine = data.draw(st.booleans())
            gamma = data.draw(arrays(min_ndim=1, max_ndim=1, dtype=dt)) if affine else None
            if gamma is not None and gamma.shape != (C,) and data.draw(st.booleans()):
                gamma = np.linspace(0.5, 2.0, C).astype(dt)
            if gamma is not None:
                # NaN may stay; an infinite gamma only decides between inf and NaN (the twin
                # factors gamma out of the closed form, the kernel folds it into each term)
                gamma = np.nan_to_num(gamma, nan=np.nan, posinf=1e3, neginf=-1e3)
            beta = np.linspace(-1, 1, C).astype(dt) if affine else None
            running = data.draw(st.booleans())
            rm = np.zeros(C, dt) if running else None
            rv = np.ones(C, dt) if running else None
            if running and data.draw(st.booleans()):  # strided running buffers
                rm = np.zeros(2 * C, dt)[::2]
                rv = np.ones(2 * C, dt)[::2]
            # kernels trust their semantic arguments (the public function checks them), so
            # only valid ones: momentum in [0, 1], eps >= 0
            momentum = data.draw(st.sampled_from([0.0, 0.9, 1.0]))
            eps = data.draw(st.sampled_from([1e-5, 1e-3, 0.0]))
            training = data.draw(st.booleans())
            relu = data.draw(st.booleans())  # BatchNorm then ReLU in one call
            scale = finite_scale(x)

            def compare(c, t, args_c, args_t):
                s = finite_scale(gamma if gamma is not None else 1.0, beta if beta is not None
                                 else 1.0) * 1e3
                assert_close(c[0], t[0], dt, f"bn y {describe([x])} training={training}",
                             scale=s)
                assert_close(c[1], t[1], np.float64, "bn mean", scale=scale)
                assert_close(c[2], t[2], np.float32, "bn rstd", scale=1.0)
                if running:
                    assert_close(args_c[3], args_t[3], dt, "running_mean", scale=scale)
                    assert_close(args_c[4], args_t[4], dt, "running_var", scale=scale ** 2)

            # the running buffers are updated in place: each backend gets its own copy
            def fresh(a):
                return None if a is None else (a.copy() if a.flags.c_contiguous
                                               else np.zeros(2 * C, dt)[::2] + a)
            args = [x, gamma, beta, rm, rv, momentum, eps, training]
            rc = [x, gamma, beta, fresh(rm), fresh(rv), momentum, eps, training]
            rt = [x, gamma, beta, fresh(rm), fresh(rv), momentum, eps, training]
            kc, oc = outcome(compiled.batchnorm_forward, *rc, relu=relu)
            kt, ot = outcome(reference.batchnorm_forward, *rt, relu=relu)
            assert kc == kt, f"batchnorm_forward: compiled {kc} {oc!r:.200}, twin {kt} " \
                             f"{ot!r:.200} for {describe(args)}"
            if kc != "ok":
                return
            compare(oc, ot, rc, rt)
            dy = data.draw(arrays(min_ndim=x.ndim, max_ndim=x.ndim, dtype=dt))
            if dy.shape != x.shape:
                dy = np.cos(np.arange(x.size, dtype=dt)).reshape(x.shape)
            _, mean, rstd = ot

            def compare_bwd(c, t, *_):
                # dx is a difference of terms as large as |gamma * rstd * dy| (a near-constant
                # channel with eps 0 has a huge rstd and a dx that cancels to about 0)
                s = (finite_scale(dy) * finite_scale(t[0]) * max(1, x.size)
                     * finite_scale(gamma if gamma is not None else 1.0) * finite_scale(rstd))
                assert_close(c[0], t[0], dt, f"bn dx {describe([x])}", scale=s)
                assert_close(c[1], t[1], dt, "bn dgamma", scale=s * finite_scale(x))
                assert_close(c[2], t[2], dt, "bn dbeta", scale=s)
            # the ReLU's output the fused backward masks with: the forward's, or any array
            # (a wrong shape, dtype or layout must raise the same error on both backends)
            relu_out = data.draw(st.sampled_from([None, "forward", "any"]))
            if relu_out == "forward":
                relu_out = ot[0]
            elif relu_out == "any":
                relu_out = data.draw(arrays(min_ndim=1, max_ndim=4))
            same_outcome("batchnorm_backward", compiled.batchnorm_backward,
                         reference.batchnorm_backward,
                         [dy, x, gamma, mean, rstd, training], dict(relu_out=relu_out),
                         compare=compare_bwd)
            return
        x = data.draw(arrays(min_ndim=1, max_ndim=4))
        k = data.draw(st.integers(0, x.ndim + 1))
        dt = x.dtype
        tail = x.shape[x.ndim - k:] if 0 <= k <= x.ndim else ()
        gamma = (np.linspace(0.5, 2.0, math.prod(tail)).astype(dt).reshape(tail)
                 if data.draw(st.booleans()) else None)
        beta = (np.linspace(-1, 1, math.prod(tail)).astype(dt).reshape(tail)
                if data.draw(st.booleans()) else None)
        eps = data.draw(st.sampled_from([1e-5, 1e-3]))

        def compare(c, t, *_):
            assert_close(c[0], t[0], dt, f"ln y {describe([x])} k={k}", scale=1e3)
            assert_close(c[1], t[1], np.float64, "ln mean", scale=finite_scale(x))
            assert_close(c[2], t[2], np.float32, "ln rstd")
        relu = data.draw(st.booleans())  # LayerNorm then ReLU in one call
        kind, out, _ = same_outcome("layernorm_forward", compiled.layernorm_forward,
                                    reference.layernorm_forward, [x, gamma, beta, eps, k],
                                    dict(relu=relu), compare=compare)
        if kind != "ok":
            return
        dy = np.sin(np.arange(x.size, dtype=np.float64)).astype(dt).reshape(x.shape)
        _, mean, rstd = out

        def compare_bwd(c, t, *_):
            s = finite_scale(t[0]) * max(1, x.size) * 10
            assert_close(c[0], t[0], dt, f"ln dx {describe([x])} k={k}", scale=s)
            assert_close(c[1], t[1], dt, "ln dgamma", scale=s * finite_scale(x))
            assert_close(c[2], t[2], dt, "ln dbeta", scale=s)
        relu_out = data.draw(st.sampled_from([None, "forward", "any"]))
        if relu_out == "forward":
            relu_out = out[0]
        elif relu_out == "any":
            relu_out = data.draw(arrays(min_ndim=1, max_ndim=4))
        same_outcome("layernorm_backward", compiled.layernorm_backward,
                     reference.layernorm_backward, [dy, x, gamma, mean, rstd],
                     dict(relu_out=relu_out), compare=compare_bwd)

    case()


