"""Fuzz group for the public ops on Tensors: forwards against float64 NumPy, backwards against
closed forms."""

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
)
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.array_utils import normalize_axis_tuple

import minigrad as mg
from minigrad.kernels import reference


def run_ops(n):
    """Public ops on Tensors: forward against float64 NumPy, backward against closed forms."""
    mg.set_backend("cython")

    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        x = data.draw(arrays(max_ndim=3))
        x64 = x.astype(np.float64)
        name = data.draw(st.sampled_from(["sum", "mean", "var", "max", "logsumexp", "softmax",
                                          "log_softmax", "add", "mul", "div", "matmul",
                                          "exp", "relu", "tanh"]))
        t = mg.tensor(x, dtype=x.dtype, requires_grad=True)
        scale = finite_scale(x) * max(1, x.size)
        if name in ("sum", "mean", "var", "max", "logsumexp"):
            axis = data.draw(axes(x.ndim))
            keepdims = data.draw(st.booleans())
            kind, out = outcome(getattr(t, name), axis=axis, keepdims=keepdims)
            ref_kind, ref = outcome(_numpy_reduce, name, x64, axis, keepdims)
            assert kind == ref_kind, f"{name} {describe([x])} axis={axis}: {kind} vs {ref_kind}"
            if kind != "ok":
                return
            assert out.dtype == x.dtype, f"{name} changed the dtype"
            s = scale ** 2 if name == "var" else scale
            assert_close(out.data, ref, x.dtype, f"{name} {describe([x])} axis={axis}", s)
            if name == "var":
                assert not np.any(out.data < 0), "negative variance"
            c = np.cos(np.arange(out.size, dtype=np.float64)).reshape(out.shape)
            (out * mg.tensor(c, dtype=x.dtype)).sum().backward()
            want = _numpy_reduce_grad(name, x64, axis, keepdims, c)
            if want is not None:
                assert_close(t.grad.data, want, x.dtype, f"d{name} {describe([x])} axis={axis}",
                             scale=finite_scale(want) * max(1, x.size))
            return
        if name in ("softmax", "log_softmax"):
            axis = data.draw(axes(x.ndim, allow_tuple=False, allow_none=False))
            kind, out = outcome(getattr(t, name), axis=axis)
            if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
                assert kind == "raised", f"{name} accepted axis {axis} for {x.shape}"
                return
            assert kind == "ok", f"{name} raised {out!r} for {describe([x])} axis={axis}"
            with np.errstate(all="ignore"):  # the float64 reference is the twin on float64
                ref = getattr(reference, name)(x64, axis)
            assert_close(out.data, ref, x.dtype, f"{name} {describe([x])}", finite_scale(ref))
            return
        if name in ("exp", "relu", "tanh"):
            out = getattr(t, name)()
            with np.errstate(all="ignore"):
                ref = {"exp": np.exp, "relu": lambda a: np.maximum(a, 0),
                       "tanh": np.tanh}[name](x64).astype(x.dtype)  # overflows like x's dtype
            assert_close(out.data, ref, x.dtype, f"{name} {describe([x])}", finite_scale(ref))
            out.sum().backward()
            with np.errstate(all="ignore"):
                # ReLU passes the gradient where x > 0 or x is NaN (PyTorch's rule)
                want = {"exp": np.exp(x64), "relu": (~(x64 <= 0)).astype(float),
                        "tanh": 1 - np.tanh(x64) ** 2}[name].astype(x.dtype)
            assert_close(t.grad.data, want, x.dtype, f"d{name}", finite_scale(want))
            return
        other = data.draw(arrays(max_ndim=3, dtype=x.dtype))
        o = mg.tensor(other, dtype=other.dtype, requires_grad=True)
        o64 = other.astype(np.float64)
        if name == "matmul":
            kind, out = outcome(lambda: t @ o)
            ok = x.ndim >= 1 and other.ndim >= 1 and x.shape[-1] == other.shape[
                -2 if other.ndim >= 2 else 0]
            if x.ndim >= 1 and other.ndim >= 1 and ok:
                ref_kind, ref = outcome(np.matmul, x64, o64)
            else:
                ref_kind, ref = "raised", None
            assert kind == ref_kind, f"matmul {describe([x, other])}: {kind} vs {ref_kind}"
            if kind == "ok":
                assert_close(out.data, ref, x.dtype, f"matmul {describe([x, other])}",
                             finite_scale(x) * finite_scale(other) * max(1, x.shape[-1]))
            return
        op = {"add": np.add, "mul": np.multiply, "div": np.divide}[name]
        kind, out = outcome({"add": lambda: t + o, "mul": lambda: t * o,
                             "div": lambda: t / o}[name])
        ref_kind, ref = outcome(lambda: op(x64, o64))
        assert kind == ref_kind, f"{name} {describe([x, other])}: {kind} vs {ref_kind}"
        if kind != "ok":
            return
        if name != "div":  # x / tiny is ill-conditioned in float32; shapes still checked
            assert_close(out.data, ref, x.dtype, f"{name} {describe([x, other])}",
                         finite_scale(ref))
        assert out.shape == ref.shape
        out.sum().backward()
        assert t.grad.shape == x.shape and o.grad.shape == other.shape, "unbroadcast shapes"
        if name == "add" and x.size:
            # d sum(x + o) / dx = how many output elements each element of x reaches
            reach = ref.size / x.size
            assert_close(t.grad.data, np.full(x.shape, reach), x.dtype, "dadd", 1.0)

    case()


def _numpy_reduce(name, x, axis, keepdims):
    if axis is not None:  # minigrad's axis rules (NumPy's reductions let axis=0 pass on 0-d)
        normalize_axis_tuple(axis, x.ndim)
    if name == "max":
        if x.size == 0 and (axis is None or any(x.shape[a] == 0 for a in _axes(x, axis))):
            raise ValueError("empty max")
        return np.max(x, axis=axis, keepdims=keepdims)
    if name == "logsumexp":
        with np.errstate(all="ignore"):
            m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros(
                np.sum(x, axis=axis, keepdims=True).shape)
            m = np.where(np.isfinite(m), m, 0.0)
            out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=_axes(x, axis))
    with np.errstate(all="ignore"):
        return getattr(np, name)(x, axis=axis, keepdims=keepdims)


def _axes(x, axis):
    if axis is None:
        return tuple(range(x.ndim))
    axis = (axis,) if isinstance(axis, int) else axis
    return tuple(sorted(a + x.ndim if a < 0 else a for a in axis))


def _numpy_reduce_grad(name, x, axis, keepdims, c):
    """d sum(op(x) * c) / dx for the smooth reductions (None where ties make it ambiguous)."""
    ax = _axes(x, axis)
    ck = c if keepdims else np.expand_dims(c, ax)
    n = math.prod(x.shape[a] for a in ax)
    if not np.all(np.isfinite(x)):
        return None
    if name == "sum":
        return np.broadcast_to(ck, x.shape)
    if name == "mean":
        return np.broadcast_to(ck / n, x.shape) if n else np.zeros(x.shape)
    if name == "var":
        if n == 0:
            return None
        return 2 * (x - x.mean(axis=ax, keepdims=True)) / n * ck
    if name == "logsumexp":
        m = np.max(x, axis=ax, keepdims=True) if x.size else 0.0
        e = np.exp(x - m)
        return e / np.sum(e, axis=ax, keepdims=True) * ck if x.size else np.zeros(x.shape)
    return None


