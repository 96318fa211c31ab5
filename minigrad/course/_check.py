"""What the unit checks share: the registry of checks, the comparison that explains a mismatch
in plain words, and running one program on the student's copy and on the answer key.

A check is a function ``fn(c)`` of a ``Pair``: ``c.s`` is the student's minigrad, ``c.k`` the
answer key (the installed minigrad, imported under another name), ``c.rng`` a seeded generator.
It returns normally when the student's code is right and raises ``CheckFailed`` with a sentence
saying what is wrong otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

#: unit key -> [(title, check function)], in the order the checks run
CHECKS: dict[str, list[tuple[str, Callable]]] = {}


class CheckFailed(AssertionError):
    """A check's verdict on wrong results, in words."""


def check(unit: str, title: str) -> Callable:
    """Register the decorated function as a check of ``unit``, reported as ``title``."""
    def register(fn: Callable) -> Callable:
        CHECKS.setdefault(unit, []).append((title, fn))
        return fn
    return register


@dataclass
class Pair:
    """The student's package ``s``, the answer key ``k`` and the check's random generator."""

    s: ModuleType
    k: ModuleType
    rng: np.random.Generator

    def randn(self, *shape: int) -> np.ndarray:
        """Standard normal float64 samples of ``shape`` from the check's generator."""
        return self.rng.standard_normal(shape)


def _fmt(v: Any) -> str:
    return f"{float(v):.4g}" if np.isfinite(v) else str(float(v))


def compare(what: str, yours: Any, expected: Any, context: str = "", rtol: float = 1e-6,
            atol: float = 1e-8) -> None:
    """Raise CheckFailed unless ``yours`` matches ``expected`` elementwise (NaN matches NaN).

    The message names the quantity, the context ("for input (4, 3)"), and the worst element
    with both values: "dx wrong for input (4, 3); worst element [2, 1]: yours 0.13, expected
    -0.21".
    """
    if yours is None:
        raise CheckFailed(f"{what} is None{context}, expected an array of shape "
                          f"{np.shape(expected)}")
    yours = np.asarray(getattr(yours, "data", yours))
    expected = np.asarray(getattr(expected, "data", expected))
    if yours.shape != expected.shape:
        raise CheckFailed(f"{what} has shape {yours.shape}{context}, expected {expected.shape}")
    if yours.dtype.kind not in "fiub":
        raise CheckFailed(f"{what} has dtype {yours.dtype}{context}, expected {expected.dtype}")
    y64, e64 = yours.astype(np.float64), expected.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        excess = np.abs(y64 - e64) - (atol + rtol * np.abs(e64))
    excess = np.where(np.isnan(y64) & np.isnan(e64), -1.0, excess)
    excess = np.where(np.isnan(excess), np.inf, excess)
    if excess.size and np.max(excess) > 0:
        index = np.unravel_index(int(np.argmax(excess)), excess.shape)
        where = f"[{', '.join(str(int(i)) for i in index)}]" if index else "(the only value)"
        raise CheckFailed(f"{what} wrong{context}; worst element {where}: yours "
                          f"{_fmt(y64[index])}, expected {_fmt(e64[index])}")


def compare_all(names: list[str], yours: Any, expected: tuple, context: str = "",
                **tolerance: float) -> None:
    """``compare`` for each of the values a kernel returns, after checking how many it returned."""
    if not isinstance(yours, (tuple, list)) or len(yours) != len(expected):
        count = len(yours) if isinstance(yours, (tuple, list)) else "not a tuple but 1"
        raise CheckFailed(f"returned {count} values{context}, expected {len(expected)} "
                          f"({', '.join(names[:len(expected)])})")
    for name, a, e in zip(names, yours, expected, strict=False):
        compare(name, a, e, context, **tolerance)


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as people write it: (4, 3), (5,), ()."""
    return "(" + ", ".join(str(n) for n in shape) + (",)" if len(shape) == 1 else ")")


def run_graph(mg: ModuleType, fn: Callable, arrays: list[np.ndarray], cotangent=None,
              wants: tuple[bool, ...] | None = None):
    """``fn(mg, *tensors)`` on float64 leaves made from ``arrays``, then backward with
    ``cotangent`` (an array shaped like the output; ones when None). Returns the output array
    and each leaf's gradient array (None for a leaf that wanted none or got none)."""
    wants = wants or (True,) * len(arrays)
    leaves = [mg.tensor(a, dtype=mg.float64, requires_grad=w)
              for a, w in zip(arrays, wants, strict=True)]
    out = fn(mg, *leaves)
    seed = np.ones(out.shape) if cotangent is None else cotangent
    out.backward(seed)
    return out.data.copy(), [None if t.grad is None else np.asarray(t.grad.data) for t in leaves]


def against_key(c: Pair, fn: Callable, arrays: list[np.ndarray], names: list[str],
                context: str, out_name: str = "output", rtol: float = 1e-6,
                atol: float = 1e-8, wants: tuple[bool, ...] | None = None) -> None:
    """Run ``fn`` on both packages with one random cotangent and compare the output and the
    gradient of each leaf that wants one."""
    k_out, k_grads = run_graph(c.k, fn, arrays, None, wants)
    cot = c.rng.standard_normal(k_out.shape)
    k_out, k_grads = run_graph(c.k, fn, arrays, cot, wants)
    s_out, s_grads = run_graph(c.s, fn, arrays, cot, wants)
    compare(out_name, s_out, k_out, context, rtol, atol)
    for name, sg, kg in zip(names, s_grads, k_grads, strict=True):
        if kg is not None:
            compare(f"gradient of {name}", sg, kg, context, rtol, atol)


def finite_differences(c: Pair, fn: Callable, arrays: list[np.ndarray], names: list[str],
                       context: str, eps: float = 1e-6, rtol: float = 1e-4,
                       atol: float = 1e-6) -> None:
    """Compare the student's gradients of sum(fn(x) * cot) with central differences computed
    from the student's own forward, in float64."""
    mg = c.s
    probe = fn(mg, *[mg.tensor(a, dtype=mg.float64) for a in arrays])
    cot = c.rng.standard_normal(probe.shape)
    _, grads = run_graph(mg, fn, arrays, cot)

    def loss(values: list[np.ndarray]) -> float:
        with mg.no_grad():
            out = fn(mg, *[mg.tensor(v, dtype=mg.float64) for v in values])
        return float(np.sum(out.data * cot))

    for i, (name, a) in enumerate(zip(names, arrays, strict=True)):
        numeric = np.zeros(a.shape)
        for index in np.ndindex(a.shape):
            values = [v.astype(np.float64, copy=True) for v in arrays]
            values[i][index] += eps
            up = loss(values)
            values[i][index] -= 2 * eps
            numeric[index] = (up - loss(values)) / (2 * eps)
        compare(f"gradient of {name} (against finite differences)", grads[i], numeric,
                context, rtol, atol)


def property_cases(c: Pair, case: Callable, methods: tuple[str, ...], n: int = 15) -> None:
    """Call ``case(shape, axis, keepdims, method)`` on ``n`` random reductions: drawn and, on
    failure, shrunk to a smallest failing case by hypothesis when it is installed, drawn from
    ``c.rng`` otherwise."""
    def drawn() -> None:
        shape = tuple(int(d) for d in c.rng.integers(1, 5, size=c.rng.integers(1, 4)))
        axes = tuple(sorted(c.rng.choice(len(shape), c.rng.integers(1, len(shape) + 1),
                                         replace=False).tolist()))
        case(shape, axes, bool(c.rng.integers(2)), methods[c.rng.integers(len(methods))])

    drawn()  # code that fails everywhere (a stub) fails here, without a search for a small case
    try:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st
    except ImportError:
        for _ in range(n - 1):
            drawn()
        return

    @st.composite
    def cases(draw):
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        ndim = len(shape)
        axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                              st.lists(st.integers(0, ndim - 1), min_size=1,
                                       unique=True).map(tuple)))
        return shape, axis, draw(st.booleans()), draw(st.sampled_from(methods))

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def run(args):
        case(*args)

    run()
