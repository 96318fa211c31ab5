"""What every fuzz group shares: strategies for arrays and axes, and the comparison of a
compiled kernel with its twin (same result, or the same clean exception on both)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

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


