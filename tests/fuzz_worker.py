"""Fuzz minigrad's compiled kernels and public ops; run by tests/test_fuzz.py in a child process.

Usage: ``python tests/fuzz_worker.py GROUP [MAX_EXAMPLES]`` with GROUP one of ``reduce``,
``softmax``, ``norm``, ``optim``, ``garbage``, ``ops``. Every case must either agree with the
NumPy twin (and, for valid inputs, a float64 NumPy reference) or raise an ordinary Python
exception on both backends. A crash in a kernel kills this process with a signal, which the
parent test reports with the signal's name; any disagreement exits with status 1 and a
traceback. Hypothesis is derandomized, so a run is reproducible.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.array_utils import normalize_axis_tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minigrad as mg  # noqa: E402
from minigrad.kernels import compiled, reference  # noqa: E402

# The exceptions a bad call may raise (AxisError is a ValueError and an IndexError).
CLEAN_ERRORS = (TypeError, ValueError, IndexError, KeyError, OverflowError)
DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}

warnings.simplefilter("ignore", RuntimeWarning)  # NaN/inf inputs warn in the NumPy twins


def fuzz_settings(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


# ------------------------------------------------------------------------------- strategies


@st.composite
def arrays(draw, min_ndim=0, max_ndim=4, dtype=None, min_side=0):
    """A float array of random shape, values and memory layout (the layout is what matters).

    Layouts: C-contiguous, transposed, a negative step, a step-2 slice, or a broadcast view
    with zero strides; sizes include 0 and 1.
    """
    ndim = draw(st.integers(min_ndim, max_ndim))
    shape = tuple(draw(st.lists(st.sampled_from([min_side, 1, 2, 3, 5, 8, 17]),
                                min_size=ndim, max_size=ndim)))
    shape = tuple(max(s, min_side) for s in shape)
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, 1e-3, 1e3]))
    offset = draw(st.sampled_from([0.0, 0.0, 100.0]))
    layout = draw(st.sampled_from(["c", "transposed", "negative", "strided", "broadcast"]))
    special = draw(st.sampled_from([None, None, None, np.nan, np.inf, -np.inf]))

    def values(shape):
        a = np.asarray(rng.standard_normal(shape) * scale + offset).astype(dtype)
        if special is not None and a.size:
            a.flat[rng.integers(a.size)] = special
        return a

    if layout == "transposed" and ndim >= 2:
        return values(shape[::-1]).T
    if layout == "negative" and ndim >= 1:
        return values(shape)[::-1]
    if layout == "strided" and ndim >= 1:
        return values((shape[0] * 2,) + shape[1:])[::2]
    if layout == "broadcast" and ndim >= 1:
        axis = draw(st.integers(0, ndim - 1))
        small = list(shape)
        small[axis] = 1
        return np.broadcast_to(values(tuple(small)), shape)
    return values(shape)


@st.composite
def axes(draw, ndim, allow_tuple=True, allow_none=True):
    """None, an int (sometimes out of range) or a tuple of ints (sometimes repeated)."""
    choices = ["int"] + (["none"] if allow_none else []) + (["tuple"] if allow_tuple else [])
    kind = draw(st.sampled_from(choices))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim - 1, ndim))
    return tuple(draw(st.lists(st.integers(-ndim - 1, ndim), max_size=max(ndim, 1) + 1)))


# ------------------------------------------------------------------------------- known issues
# Known, reported bugs the fuzzer steps around so that it keeps guarding everything else (each
# pinned by a strict xfail test in tests/test_robustness.py); none are open at the moment.


def known_issue(name, args, kwargs):
    """True for a call that hits one of the known, reported bugs."""
    return False


def _is_float(a):
    return isinstance(a, float | np.floating) or (
        isinstance(a, np.ndarray) and a.dtype.kind == "f")


# ------------------------------------------------------------------------------- comparison


# A ``noexcept`` kernel core cannot raise: an error inside it (in a MINIGRAD_CYTHON_DEBUG=1
# build, "Out of bounds on buffer access") is printed as "Exception ignored" and the kernel
# returns garbage. Record those and fail the call that caused them.
_UNRAISABLE: list[str] = []


def _record_unraisable(info) -> None:
    _UNRAISABLE.append(f"{info.exc_type.__name__}: {info.exc_value} (in {info.object!r})")


sys.unraisablehook = _record_unraisable


def outcome(fn, *args, **kwargs):
    """("ok", result) or ("raised", exception), failing at once on an unclean exception."""
    name = getattr(fn, "__name__", fn)
    try:
        result = "ok", fn(*args, **kwargs)
    except CLEAN_ERRORS as exc:
        result = "raised", exc
    except Exception as exc:  # noqa: BLE001 -- anything else is a finding
        raise AssertionError(f"{name} raised {type(exc).__name__}: {exc}") from exc
    if _UNRAISABLE:
        swallowed = _UNRAISABLE[:]
        _UNRAISABLE.clear()
        raise AssertionError(f"{name} swallowed an error in a nogil core: {swallowed[0]} "
                             f"for {describe(args)}")
    return result


def assert_close(got, want, dtype, what, scale=1.0, loosen=1.0):
    """Equal within the dtype's tolerance; NaN must meet NaN and inf the same inf."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    rtol = RTOL[np.dtype(dtype)] * loosen
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                               atol=rtol * scale, equal_nan=True, err_msg=what)


def same_outcome(name, compiled_fn, twin_fn, args, kwargs=None, compare=None, copy_args=()):
    """Run both kernels; both must raise, or both return results that ``compare`` accepts.

    ``copy_args`` lists positions of arguments that the kernels change in place; each
    kernel gets its own copy and the copies are handed to ``compare`` too.
    """
    kwargs = kwargs or {}
    args_c = [a.copy() if i in copy_args and isinstance(a, np.ndarray) else a
              for i, a in enumerate(args)]
    args_t = [a.copy() if i in copy_args and isinstance(a, np.ndarray) else a
              for i, a in enumerate(args)]
    kind_c, out_c = outcome(compiled_fn, *args_c, **kwargs)
    kind_t, out_t = outcome(twin_fn, *args_t, **kwargs)
    if kind_c != kind_t:
        raise AssertionError(
            f"{name}: compiled {kind_c} ({out_c!r:.200}) but twin {kind_t} ({out_t!r:.200}) "
            f"for {describe(args)} {kwargs}"
        )
    if kind_c == "ok" and compare is not None:
        compare(out_c, out_t, args_c, args_t)
    return kind_c, out_c, out_t


def describe(args):
    parts = []
    for a in args:
        if isinstance(a, np.ndarray):
            parts.append(f"{a.dtype}{a.shape} strides={a.strides}")
        else:
            parts.append(repr(a)[:40])
    return "(" + ", ".join(parts) + ")"


def finite_scale(*arrays):
    """Largest finite magnitude among the arrays (at least 1): the atol unit."""
    m = 1.0
    for a in arrays:
        a = np.asarray(a, dtype=np.float64)
        finite = a[np.isfinite(a)]
        if finite.size:
            m = max(m, float(np.max(np.abs(finite))))
    return m


# ------------------------------------------------------------------------------- groups


def run_reduce(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        x = data.draw(arrays())
        axis = data.draw(axes(x.ndim))
        keepdims = data.draw(st.booleans())
        name = data.draw(st.sampled_from(["sum", "mean", "var", "max", "min", "logsumexp"]))
        kwargs = {}
        if name == "var":
            kwargs["correction"] = data.draw(st.sampled_from([0, 1]))
        scale = finite_scale(x) * max(1, x.size)
        if known_issue(name, [x, axis, keepdims], kwargs):
            outcome(getattr(compiled, name), x, axis, keepdims, **kwargs)  # must not crash
            return

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

        if known_issue("cross_entropy_forward", [logits, target, ls, ii], {}):
            outcome(compiled.cross_entropy_forward, logits, target, ls, ii)  # must not crash
            return

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

    case()


def run_norm(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        kind = data.draw(st.sampled_from(["batch", "layer"]))
        if kind == "batch":
            x = data.draw(arrays(min_ndim=2, max_ndim=4))
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
            momentum = data.draw(st.sampled_from([0.0, 0.9, 1.0, 1.5, -0.1]))
            eps = data.draw(st.sampled_from([1e-5, 1e-3, -1.0]))
            training = data.draw(st.booleans())
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
            kc, oc = outcome(compiled.batchnorm_forward, *rc)
            kt, ot = outcome(reference.batchnorm_forward, *rt)
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
                s = (finite_scale(dy) * finite_scale(t[0]) * max(1, x.size)
                     * finite_scale(gamma if gamma is not None else 1.0))
                assert_close(c[0], t[0], dt, f"bn dx {describe([x])}", scale=s)
                assert_close(c[1], t[1], dt, "bn dgamma", scale=s * finite_scale(x))
                assert_close(c[2], t[2], dt, "bn dbeta", scale=s)
            same_outcome("batchnorm_backward", compiled.batchnorm_backward,
                         reference.batchnorm_backward,
                         [dy, x, gamma, mean, rstd, training], compare=compare_bwd)
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
        kind, out, _ = same_outcome("layernorm_forward", compiled.layernorm_forward,
                                    reference.layernorm_forward, [x, gamma, beta, eps, k],
                                    compare=compare)
        if kind != "ok":
            return
        dy = np.sin(np.arange(x.size, dtype=np.float64)).astype(dt).reshape(x.shape)
        _, mean, rstd = out

        def compare_bwd(c, t, *_):
            s = finite_scale(t[0]) * max(1, x.size) * 10
            assert_close(c[0], t[0], dt, f"ln dx {describe([x])} k={k}", scale=s)
            assert_close(c[1], t[1], dt, "ln dgamma", scale=s * finite_scale(x))
            assert_close(c[2], t[2], dt, "ln dbeta", scale=s)
        same_outcome("layernorm_backward", compiled.layernorm_backward,
                     reference.layernorm_backward, [dy, x, gamma, mean, rstd],
                     compare=compare_bwd)

    case()


def run_optim(n):
    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        dt = np.dtype(data.draw(st.sampled_from(DTYPES)))
        count = data.draw(st.integers(0, 4))
        params, grads = [], []
        for _ in range(count):
            p = data.draw(arrays(max_ndim=3, dtype=dt))
            g = data.draw(arrays(max_ndim=3, dtype=dt))
            if g.shape != p.shape:
                g = np.cos(np.arange(p.size, dtype=dt)).reshape(p.shape)
            # A parameter must own writeable memory (a broadcast view cannot be updated).
            # NaN stays, inf becomes large but finite: at overflow the compiled loops (fused
            # multiply-adds) and NumPy may round inf - inf differently, which is no bug.
            # Parameters stay finite: with a NaN parameter and weight_decay=0 the compiled
            # loops (d = g + 0 * p) put NaN into the state where the twin (PyTorch's rule,
            # which skips the decay term) does not; the parameter is NaN on both.
            params.append(np.nan_to_num(np.array(p), nan=0.0, posinf=1e3, neginf=-1e3))
            grads.append(np.nan_to_num(g, nan=np.nan, posinf=1e3, neginf=-1e3))
        sizes = [p.size for p in params]
        offsets = np.zeros(count, np.int64)
        if count:
            np.cumsum(sizes[:-1], out=offsets[1:])
        total = int(sum(sizes))
        steps = np.asarray(data.draw(st.lists(st.integers(1, 5), min_size=count,
                                              max_size=count)), np.int64)
        rule = data.draw(st.sampled_from(["sgd", "adam", "rmsprop"]))
        hyper = data.draw(st.sampled_from([0.0, 0.1, 0.9]))
        lr = data.draw(st.sampled_from([0.0, 1e-3, 0.5, -1.0, float("nan")]))
        state = [np.abs(np.sin(np.arange(total, dtype=np.float64))).astype(dt)
                 for _ in range(3)]
        if rule == "sgd":
            buf = state[0] if hyper else None
            args = [params, grads, buf, offsets, steps]
            kwargs = dict(lr=lr, momentum=hyper, dampening=0.0,
                          nesterov=data.draw(st.booleans()), weight_decay=0.01)
            moved = (0, 2)
        elif rule == "adam":
            ams = state[2] if data.draw(st.booleans()) else None
            args = [params, grads, state[0], state[1], ams, offsets, steps]
            kwargs = dict(lr=lr, beta1=hyper, beta2=data.draw(st.sampled_from([0.999, 1.0])),
                          eps=1e-8, weight_decay=0.01, decoupled=data.draw(st.booleans()))
            moved = (0, 2, 3, 4)
        else:
            centered = state[1] if data.draw(st.booleans()) else None
            buf = state[2] if hyper else None
            args = [params, grads, state[0], centered, buf, offsets, steps]
            kwargs = dict(lr=lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=hyper)
            moved = (0, 2, 3, 4)

        def clone(a):
            if isinstance(a, list):
                return [p.copy() for p in a]
            return a.copy() if isinstance(a, np.ndarray) else a
        args_c = [clone(a) for a in args]
        args_t = [clone(a) for a in args]
        name = f"{rule}_step"
        # centered RMSprop divides by sqrt(s - a^2): the subtraction cancels, and fused
        # multiply-adds in the compiled loop round it differently from NumPy
        loosen = 100.0 if rule == "rmsprop" and args[3] is not None else 1.0
        kc, oc = outcome(getattr(compiled, name), *args_c, **kwargs)
        kt, ot = outcome(getattr(reference, name), *args_t, **kwargs)
        assert kc == kt, f"{name}: compiled {kc} {oc!r:.200}, twin {kt} {ot!r:.200}, {kwargs}"
        if kc != "ok":
            return
        for i in moved:
            a_c, a_t = args_c[i], args_t[i]
            if a_c is None:
                continue
            if isinstance(a_c, list):
                for j, (pc, pt) in enumerate(zip(a_c, a_t, strict=True)):
                    assert_close(pc, pt, dt, f"{name} param {j} {kwargs}", 10.0, loosen)
            else:
                assert_close(a_c, a_t, dt, f"{name} state {i} {kwargs}", 10.0, loosen)

    case()


def _garbage_values():
    rng = np.random.default_rng(0)
    return [
        None, "x", 3, 1.5, True, [[1.0, 2.0], [3.0]], [1.0, 2.0], (1, 2), {"a": 1},
        np.array(["a", "b"]), np.array([None, 1.0], dtype=object), np.arange(6).reshape(2, 3),
        np.ones((2, 3), bool), np.ones((2, 3), np.float16), np.ones((2, 3), complex),
        np.ones((2, 3), ">f4"), np.float64(2.0), np.ones((), np.float32),
        np.ones((0, 3), np.float32), rng.standard_normal((2, 3)),
        rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 4, 5)),
        np.broadcast_to(np.float32(1.0), (4, 3)), np.ones((2, 3), np.float32)[:, ::-1],
        float("nan"), -1.0, 10**30, -(10**30), np.int64(2**62),
    ]


# A valid call for every compiled kernel; the garbage group corrupts one or more arguments.
def _valid_calls():
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    y = reference.softmax(x, -1)
    target = np.array([0, 1, 2, 0])
    loss, lse = reference.cross_entropy_forward(x, target)
    C = 3
    g, b = np.ones(C, np.float32), np.zeros(C, np.float32)
    _, mean, rstd = reference.batchnorm_forward(x, g, b, None, None, 0.9, 1e-5, True)
    _, lmean, lrstd = reference.layernorm_forward(x, g, b, 1e-5, 1)
    params = [np.ones((2, 2), np.float32)]
    grads = [np.ones((2, 2), np.float32)]
    off, steps = np.zeros(1, np.int64), np.ones(1, np.int64)
    return {
        "sum": ([x, 0, False], {}), "mean": ([x, 1, True], {}),
        "var": ([x, None, False], {"correction": 1}), "max": ([x, 0, False], {}),
        "min": ([x, -1, False], {}), "logsumexp": ([x, 1, False], {}),
        "softmax": ([x, -1], {}), "log_softmax": ([x, 0], {}),
        "softmax_backward": ([y, x, -1], {}), "log_softmax_backward": ([y, x, -1], {}),
        "cross_entropy_forward": ([x, target, 0.0, -100], {}),
        "cross_entropy_backward": ([loss, x, target, lse, 0.0, -100], {}),
        "batchnorm_forward": ([x, g, b, np.zeros(C, np.float32), np.ones(C, np.float32), 0.9,
                               1e-5, True], {}),
        "batchnorm_backward": ([x, x, g, mean, rstd, True], {}),
        "layernorm_forward": ([x, g, b, 1e-5, 1], {}),
        "layernorm_backward": ([x, x, g, lmean, lrstd], {}),
        "sgd_step": ([params, grads, np.zeros(4, np.float32), off, steps],
                     {"lr": 0.1, "momentum": 0.9}),
        "adam_step": ([params, grads, np.zeros(4, np.float32), np.zeros(4, np.float32), None,
                       off, steps], {"lr": 0.1}),
        "rmsprop_step": ([params, grads, np.zeros(4, np.float32), None, None, off, steps],
                         {"lr": 0.1}),
    }


def _twin(name):
    for module in (reference,):
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no NumPy twin named {name}")


def run_garbage(n):
    calls = _valid_calls()
    garbage = _garbage_values()
    names = sorted(calls)
    for name in names:  # every compiled kernel is covered, and its valid call works
        args, kwargs = calls[name]
        kind, out = outcome(getattr(compiled, name), *[_clone(a) for a in args], **kwargs)
        assert kind == "ok", f"the valid call of {name} raised {out!r}"
        # every argument replaced by every garbage value, one at a time (a few thousand calls)
        keys = list(kwargs)
        for pos in range(len(args) + len(keys)):
            for value in garbage:
                bad_args = [_clone(a) for a in args]
                bad_kwargs = dict(kwargs)
                if pos < len(args):
                    bad_args[pos] = _clone(value)
                else:
                    bad_kwargs[keys[pos - len(args)]] = value
                _garbage_call(name, bad_args, bad_kwargs)

    @fuzz_settings(n)
    @given(data=st.data())
    def case(data):
        name = data.draw(st.sampled_from(names))
        args, kwargs = calls[name]
        args = [_clone(a) for a in args]
        kwargs = dict(kwargs)
        positions = data.draw(st.lists(st.integers(0, len(args) + len(kwargs) - 1),
                                       min_size=1, max_size=3, unique=True))
        keys = list(kwargs)
        for pos in positions:
            value = data.draw(st.sampled_from(garbage))
            value = _clone(value)
            if pos < len(args):
                args[pos] = value
            else:
                kwargs[keys[pos - len(args)]] = value
        _garbage_call(name, args, kwargs)

    case()


def _garbage_call(name, args, kwargs):
    """The compiled kernel must not crash and must raise a clean exception or return; the twin
    must agree on whether the call is valid."""
    kc, oc = outcome(getattr(compiled, name), *[_clone(a) for a in args], **kwargs)
    if known_issue(name, args, kwargs):
        return
    kt, ot = outcome(_twin(name), *[_clone(a) for a in args], **kwargs)
    if kc != kt:
        raise AssertionError(
            f"{name}: compiled {kc} ({oc!r:.200}) but twin {kt} ({ot!r:.200}) for "
            f"{describe(args)} {kwargs}"
        )


def _clone(a):
    if isinstance(a, list):
        return [_clone(v) for v in a]
    if isinstance(a, np.ndarray) and a.flags.writeable:
        return a.copy()
    return a


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
        t = mg.tensor(x, requires_grad=True)
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
            (out * mg.tensor(c.astype(x.dtype))).sum().backward()
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
                want = {"exp": np.exp(x64), "relu": (x64 > 0).astype(float),
                        "tanh": 1 - np.tanh(x64) ** 2}[name].astype(x.dtype)
            assert_close(t.grad.data, want, x.dtype, f"d{name}", finite_scale(want))
            return
        other = data.draw(arrays(max_ndim=3, dtype=x.dtype))
        o = mg.tensor(other, requires_grad=True)
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


GROUPS = {"reduce": run_reduce, "softmax": run_softmax, "norm": run_norm, "optim": run_optim,
          "garbage": run_garbage, "ops": run_ops}


if __name__ == "__main__":
    group = sys.argv[1]
    examples = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    GROUPS[group](examples)
    print(f"fuzz group {group}: {examples} examples passed")
