"""Checks of units 1-6: the engine, elementwise ops, matmul and Linear, reductions, softmax and
cross-entropy. Each compares the student's results with the answer key's on the same inputs."""

from __future__ import annotations

import numpy as np

from ._check import (
    CheckFailed,
    Pair,
    against_key,
    check,
    compare,
    finite_differences,
    property_cases,
    shape_text,
)

# ----------------------------------------------------------------------------- 1. engine


@check("engine", "Backward through a chain")
def _chain(c: Pair) -> None:
    x = c.randn(3, 4)
    against_key(c, lambda mg, x: ((x * 2.0 + 1.0) * 0.5).exp().sum(axis=1), [x], ["x"],
                " for a chain of five ops on (3, 4)", out_name="output")


@check("engine", "A tensor used twice")
def _reuse(c: Pair) -> None:
    x, w = c.randn(4, 3), c.randn(4, 3)
    against_key(c, lambda mg, x, w: (x * w + x) * x, [x, w], ["x", "w"],
                " for (x * w + x) * x with x, w (4, 3)")


@check("engine", "A diamond-shaped graph")
def _diamond(c: Pair) -> None:
    x = c.randn(5)

    def diamond(mg, x):
        a = (x * 0.3).exp()
        return (a * 2.0) * (a * 3.0) + a
    against_key(c, diamond, [x], ["x"], " for a = exp(0.3 x); 2a * 3a + a")


@check("engine", "A chain of 3000 ops (no recursion)")
def _deep(c: Pair) -> None:
    x = c.randn(2)

    def deep(mg, x):
        for _ in range(3000):
            x = x * 1.0001
        return x
    try:
        against_key(c, deep, [x], ["x"], " for a chain of 3000 multiplications")
    except RecursionError:
        raise CheckFailed("a chain of 3000 ops hit Python's recursion limit: walk the graph "
                          "with a loop and an explicit stack") from None


@check("engine", "Gradients accumulate into .grad")
def _accumulate(c: Pair) -> None:
    a = c.randn(3)
    grads = []
    for mg in (c.s, c.k):
        x = mg.tensor(a, dtype=mg.float64, requires_grad=True)
        (x * 2.0).sum().backward()
        (x * x).sum().backward()
        grads.append(None if x.grad is None else x.grad.data)
    compare("x.grad after two backward calls", grads[0], grads[1],
            " for (2x).sum() then (x*x).sum() on (3,)")


@check("engine", "A second backward needs retain_graph")
def _released(c: Pair) -> None:
    mg = c.s
    x = mg.tensor(c.randn(3), dtype=mg.float64, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    compare("x.grad after two backward calls with retain_graph", x.grad, 4 * x.data,
            " for (x*x).sum() on (3,)")
    try:
        y.backward()
    except RuntimeError:
        return
    raise CheckFailed("a third backward through a graph released by the second one did not "
                      "raise RuntimeError (call _raise_released when node.saved is None)")


# ----------------------------------------------------------------------------- 2. elementwise

_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 3)), ((5, 1), (1, 6))]


def _binary(c: Pair, name: str, fn, positive_b: bool = False, positive_a: bool = False):
    for sa, sb in _PAIRS:
        a, b = c.randn(*sa), c.randn(*sb)
        if positive_a:
            a = np.abs(a) + 0.5
        if positive_b:
            b = np.abs(b) + 0.5
        against_key(c, fn, [a, b], ["a", "b"], f" for {name} of {sa} and {sb}")


@check("elementwise", "unbroadcast")
def _unbroadcast(c: Pair) -> None:
    for grad_shape, shape in [((3, 4), (4,)), ((2, 3, 4), (3, 1)), ((2, 3), (2, 3)),
                              ((5, 1, 4), (1, 1, 4)), ((2, 3), ())]:
        g = c.randn(*grad_shape)
        expected = c.k.autograd.unbroadcast(g.copy(), shape)  # first: yours may change g
        compare("unbroadcast(grad, shape)", c.s.autograd.unbroadcast(g, shape), expected,
                f" for grad {shape_text(grad_shape)} and shape {shape_text(shape)}")


@check("elementwise", "unbroadcast on random shapes (property-based)")
def _random_unbroadcast(c: Pair) -> None:
    def case(shape: tuple[int, ...], axis, drop_leading: bool, _: str) -> None:
        axes = range(len(shape)) if axis is None else np.atleast_1d(axis) % len(shape)
        target = tuple(1 if i in set(axes) else n for i, n in enumerate(shape))
        while drop_leading and target and target[0] == 1:
            target = target[1:]  # a leading axis the input did not have at all
        g = c.randn(*shape)
        expected = c.k.autograd.unbroadcast(g.copy(), target)  # first: yours may change g
        compare("unbroadcast(grad, shape)", c.s.autograd.unbroadcast(g, target), expected,
                f" for grad {shape_text(shape)} and shape {shape_text(target)}")
    property_cases(c, case, methods=("unbroadcast",))


for _title, _fn, _opts in [
    ("Mul backward", lambda mg, a, b: a * b, {}),
    ("Div backward", lambda mg, a, b: a / b, {"positive_b": True}),
    ("Pow backward", lambda mg, a, b: a ** b, {"positive_a": True}),
]:
    check("elementwise", _title)(
        lambda c, t=_title, f=_fn, o=_opts: _binary(c, t.split()[0].lower(), f, **o))

for _title, _fn, _positive in [
    ("Exp backward", lambda mg, x: x.exp(), False),
    ("Log backward", lambda mg, x: x.log(), True),
    ("Sqrt backward", lambda mg, x: x.sqrt(), True),
    ("Tanh backward", lambda mg, x: x.tanh(), False),
    ("Sigmoid backward", lambda mg, x: x.sigmoid(), False),
    ("ReLU backward", lambda mg, x: x.relu(), False),
]:
    def _unary(c: Pair, t=_title, f=_fn, positive=_positive) -> None:
        for shape in [(3, 4), (2, 3, 2)]:
            x = c.randn(*shape)
            x = np.abs(x) + 0.5 if positive else x
            against_key(c, f, [x], ["x"], f" for {t.split()[0].lower()} of {shape_text(shape)}")
    check("elementwise", _title)(_unary)


@check("elementwise", "Finite differences of an expression with broadcasting")
def _elementwise_fd(c: Pair) -> None:
    a, b = c.randn(3, 4), np.abs(c.randn(4)) + 0.5
    finite_differences(c, lambda mg, a, b: ((a * b) / (b + 1.0)).tanh().exp() + (b ** 1.5),
                       [a, b], ["a", "b"], " for exp(tanh(a b / (b + 1))) + b^1.5, a (3, 4), "
                       "b (4,)")


# ----------------------------------------------------------------------------- 3. linear


@check("linear", "Matmul backward (2-D)")
def _matmul_2d(c: Pair) -> None:
    against_key(c, lambda mg, a, b: a @ b, [c.randn(3, 4), c.randn(4, 5)], ["a", "b"],
                " for (3, 4) @ (4, 5)")


@check("linear", "Matmul backward (batched and broadcast)")
def _matmul_batched(c: Pair) -> None:
    for sa, sb in [((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 3))]:
        against_key(c, lambda mg, a, b: a @ b, [c.randn(*sa), c.randn(*sb)], ["a", "b"],
                    f" for {sa} @ {sb}")


@check("linear", "Matmul backward (1-D operands)")
def _matmul_1d(c: Pair) -> None:
    for sa, sb in [((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((4,), (2, 4, 3))]:
        against_key(c, lambda mg, a, b: a @ b, [c.randn(*sa), c.randn(*sb)], ["a", "b"],
                    f" for {shape_text(sa)} @ {shape_text(sb)}")


@check("linear", "Linear forward")
def _linear_forward(c: Pair) -> None:
    x, w, b = c.randn(5, 3), c.randn(4, 3), c.randn(4)
    outs = []
    for mg in (c.s, c.k):
        with mg.no_grad():
            t = [mg.tensor(a, dtype=mg.float64) for a in (x, w, b)]
            outs.append(mg.nn.functional.linear(*t).data)
    compare("output", outs[0], outs[1], " for x (5, 3), weight (4, 3), bias (4,)")


@check("linear", "Linear backward")
def _linear_backward(c: Pair) -> None:
    for sx in [(5, 3), (2, 5, 3)]:
        x, w, b = c.randn(*sx), c.randn(4, 3), c.randn(4)
        against_key(c, lambda mg, x, w, b: mg.nn.functional.linear(x, w, b), [x, w, b],
                    ["x", "weight", "bias"], f" for x {sx}, weight (4, 3), bias (4,)")
        against_key(c, lambda mg, x, w: mg.nn.functional.linear(x, w), [x, w],
                    ["x", "weight"], f" for x {sx}, weight (4, 3), no bias")


@check("linear", "Finite differences of a linear map")
def _linear_fd(c: Pair) -> None:
    finite_differences(c, lambda mg, x, w, b: mg.nn.functional.linear(x, w, b) @ w,
                       [c.randn(2, 3), c.randn(3, 3), c.randn(3)], ["x", "weight", "bias"],
                       " for linear(x, w, b) @ w, x (2, 3), w (3, 3)")


# ----------------------------------------------------------------------------- 4. reductions

_AXES = [((3, 4, 5), None, False), ((3, 4, 5), 1, True), ((3, 4, 5), (0, 2), False),
         ((4,), 0, False), ((2, 3), -1, True)]


def _reduction(c: Pair, method: str, cases=_AXES, **extra) -> None:
    for shape, axis, keepdims in cases:
        x = c.randn(*shape)
        def fn(mg, x, a=axis, k=keepdims):
            return getattr(x, method)(axis=a, keepdims=k, **extra)
        against_key(c, fn, [x], ["x"], f" for {method}(axis={axis}, keepdims={keepdims}) of "
                    f"{shape_text(shape)}")


check("reductions", "Sum backward")(lambda c: _reduction(c, "sum"))
check("reductions", "Mean backward")(lambda c: _reduction(c, "mean"))
check("reductions", "Var backward (biased)")(lambda c: _reduction(c, "var"))
check("reductions", "Var backward (correction=1)")(
    lambda c: _reduction(c, "var", _AXES[:3], correction=1))
check("reductions", "Max backward")(lambda c: _reduction(c, "max"))
check("reductions", "Min backward")(lambda c: _reduction(c, "min"))


@check("reductions", "Max backward with ties: the first maximum gets the gradient")
def _ties(c: Pair) -> None:
    for shape, axis in [((4, 6), 1), ((3, 4, 2), (0, 2)), ((5,), None)]:
        x = c.rng.integers(0, 3, size=shape).astype(np.float64)
        against_key(c, lambda mg, x, a=axis: x.max(axis=a), [x], ["x"],
                    f" for max(axis={axis}) of {shape_text(shape)} with repeated values")


@check("reductions", "Reductions on random shapes and axes (property-based)")
def _random_reductions(c: Pair) -> None:
    def case(shape: tuple[int, ...], axis, keepdims: bool, method: str) -> None:
        _reduction(c, method, [(shape, axis, keepdims)])
    property_cases(c, case, methods=("sum", "mean", "var", "max"))


@check("reductions", "Finite differences of var and mean")
def _reduce_fd(c: Pair) -> None:
    finite_differences(c, lambda mg, x: x.var(axis=0) * x.mean(axis=1, keepdims=True),
                       [c.randn(3, 4)], ["x"], " for var(x, axis=0) * mean(x, axis=1), x (3, 4)")


# ----------------------------------------------------------------------------- 5. softmax


def _forward_pair(c: Pair, fn, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    outs = []
    for mg in (c.s, c.k):
        with mg.no_grad():
            outs.append(fn(mg, mg.tensor(x, dtype=mg.float64)).data)
    return outs[0], outs[1]


def _softmax_forward(c: Pair, name: str) -> None:
    for shape, axis in [((4, 5), -1), ((3, 4, 2), 1), ((6,), 0)]:
        for offset in (0.0, 1000.0):
            x = c.randn(*shape) * 3 + offset
            yours, expected = _forward_pair(c, lambda mg, t, a=axis: getattr(t, name)(axis=a), x)
            compare("output", yours, expected, f" for {name}(axis={axis}) of "
                    f"{shape_text(shape)} + {offset:g}", rtol=1e-9, atol=1e-12)


def _softmax_backward(c: Pair, name: str) -> None:
    for shape, axis in [((4, 5), -1), ((3, 4, 2), 1), ((6,), 0)]:
        against_key(c, lambda mg, x, a=axis: getattr(x, name)(axis=a), [c.randn(*shape)], ["x"],
                    f" for {name}(axis={axis}) of {shape_text(shape)}")


check("softmax", "Softmax forward")(lambda c: _softmax_forward(c, "softmax"))
check("softmax", "Log-softmax forward")(lambda c: _softmax_forward(c, "log_softmax"))
check("softmax", "Softmax backward")(lambda c: _softmax_backward(c, "softmax"))
check("softmax", "Log-softmax backward")(lambda c: _softmax_backward(c, "log_softmax"))


@check("softmax", "Log-sum-exp forward and backward")
def _logsumexp(c: Pair) -> None:
    for shape, axis in [((4, 5), 1), ((3, 4, 2), (0, 2)), ((6,), None)]:
        for offset in (0.0, 1000.0):
            x = c.randn(*shape) + offset
            yours, expected = _forward_pair(c, lambda mg, t, a=axis: t.logsumexp(axis=a), x)
            compare("output", yours, expected, f" for logsumexp(axis={axis}) of "
                    f"{shape_text(shape)} + {offset:g}", rtol=1e-9, atol=1e-12)
        against_key(c, lambda mg, x, a=axis: x.logsumexp(axis=a), [c.randn(*shape)], ["x"],
                    f" for logsumexp(axis={axis}) of {shape_text(shape)}")


@check("softmax", "Finite differences of softmax and log-softmax")
def _softmax_fd(c: Pair) -> None:
    finite_differences(c, lambda mg, x: x.softmax(axis=1) * x.log_softmax(axis=0), [c.randn(3, 4)],
                       ["x"], " for softmax(x, axis=1) * log_softmax(x, axis=0), x (3, 4)")


# ----------------------------------------------------------------------------- 6. cross-entropy


def _ce(c: Pair, n: int = 6, classes: int = 5, offset: float = 0.0, fused: bool = True,
        **options) -> None:
    logits = c.randn(n, classes) * 2 + offset
    target = c.rng.integers(0, classes, size=n)
    if "ignore_index" in options:
        target[::3] = options["ignore_index"]
    described = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
    against_key(c, lambda mg, x: mg.nn.functional.cross_entropy(x, target, fused=fused,
                                                                 **options),
                [logits], ["logits"], f" for logits ({n}, {classes}) + {offset:g}, {described}",
                out_name="loss", rtol=1e-7, atol=1e-9)


check("cross_entropy", "Cross-entropy (mean)")(lambda c: _ce(c))
check("cross_entropy", "Cross-entropy (sum and none)")(
    lambda c: (_ce(c, reduction="sum"), _ce(c, reduction="none")))
check("cross_entropy", "Cross-entropy with label smoothing")(
    lambda c: _ce(c, label_smoothing=0.1))
check("cross_entropy", "Cross-entropy with ignore_index")(
    lambda c: (_ce(c, ignore_index=-100), _ce(c, ignore_index=2, reduction="none")))
check("cross_entropy", "Cross-entropy of large logits")(lambda c: _ce(c, offset=1000.0))
check("cross_entropy", "Cross-entropy composite (fused=False)")(
    lambda c: (_ce(c, fused=False), _ce(c, fused=False, label_smoothing=0.2,
                                        ignore_index=1)))


@check("cross_entropy", "Finite differences of cross-entropy")
def _ce_fd(c: Pair) -> None:
    target = c.rng.integers(0, 4, size=3)
    finite_differences(c, lambda mg, x: mg.nn.functional.cross_entropy(
        x, target, label_smoothing=0.1), [c.randn(3, 4)], ["logits"],
        " for cross_entropy of logits (3, 4), label_smoothing=0.1")
