"""Checks of units 7-11: BatchNorm forward (with running statistics, train and eval) and
backward, LayerNorm, the SGD and Adam updates, and conv2d, each against the answer key."""

from __future__ import annotations

import numpy as np

from ._check import (
    CheckFailed,
    Pair,
    against_key,
    check,
    compare,
    compare_all,
    finite_differences,
    shape_text,
)

_BN_SHAPES = [(4, 3), (5, 3, 4), (2, 3, 4, 5)]

# ----------------------------------------------------------------------------- 7. BN forward


def _fresh(*args):
    """Copies of the arrays among ``args``: each side gets its own, so a kernel that changes
    its arguments in place cannot change what the other side is given."""
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _bn_kernel(c: Pair, mg, x, gamma, beta, buffers, training):
    """The student's or the key's batchnorm_forward kernel (on copies of every array)."""
    x, gamma, beta = _fresh(x, gamma, beta)
    rm, rv = (None, None) if buffers is None else (buffers[0].copy(), buffers[1].copy())
    y, mean, rstd = mg.kernels.reference.batchnorm_forward(x, gamma, beta, rm, rv, 0.9, 1e-5,
                                                           training)
    return [y, mean, rstd] + ([] if rm is None else [rm, rv])


def _bn_forward_case(c: Pair, shape, training: bool, affine: bool = True,
                     buffers: bool = True) -> None:
    x = c.randn(*shape) * 2 + 1
    channels = shape[1]
    gamma, beta = (c.randn(channels), c.randn(channels)) if affine else (None, None)
    state = (c.randn(channels), np.abs(c.randn(channels)) + 0.5) if buffers else None
    names = ["y", "mean", "rstd", "running_mean", "running_var"]
    yours = _bn_kernel(c, c.s, x, gamma, beta, state, training)
    expected = _bn_kernel(c, c.k, x, gamma, beta, state, training)
    mode = "training" if training else "eval"
    compare_all(names, yours, expected, f" for input {shape_text(shape)} in {mode} mode",
                rtol=1e-9, atol=1e-12)


check("batchnorm_forward", "BatchNorm forward, training")(
    lambda c: [_bn_forward_case(c, s, True) for s in _BN_SHAPES])
check("batchnorm_forward", "BatchNorm forward, training, no affine and no buffers")(
    lambda c: [_bn_forward_case(c, s, True, False, False) for s in _BN_SHAPES])
check("batchnorm_forward", "BatchNorm forward, eval (running statistics)")(
    lambda c: [_bn_forward_case(c, s, False) for s in _BN_SHAPES])


@check("batchnorm_forward", "BatchNorm running statistics over training steps, then eval")
def _bn_layer(c: Pair) -> None:
    batches = [c.randn(6, 3, 2, 2) * 3 + 2 for _ in range(3)]
    test = c.randn(4, 3, 2, 2)
    results = []
    for mg in (c.s, c.k):
        layer = mg.nn.BatchNorm2d(3, momentum=0.8).double()
        with mg.no_grad():
            for xb in batches:
                layer(mg.tensor(xb, dtype=mg.float64))
            stats = [layer.running_mean.data.copy(), layer.running_var.data.copy()]
            layer.eval()
            y = layer(mg.tensor(test, dtype=mg.float64)).data
            after = [layer.running_mean.data.copy(), layer.running_var.data.copy()]
        results.append((stats, y, after))
    context = " after three training batches of (6, 3, 2, 2), momentum=0.8"
    (s_stats, s_y, s_after), (k_stats, k_y, _) = results
    compare("running_mean", s_stats[0], k_stats[0], context, rtol=1e-9)
    compare("running_var", s_stats[1], k_stats[1], context, rtol=1e-9)
    compare("eval-mode output", s_y, k_y, context, rtol=1e-9)
    compare("running_mean after an eval-mode call (it must not change)", s_after[0],
            s_stats[0], context, rtol=0, atol=0)
    compare("running_var after an eval-mode call (it must not change)", s_after[1],
            s_stats[1], context, rtol=0, atol=0)


def _bn_composite(c: Pair, training: bool) -> None:
    for shape in _BN_SHAPES:
        x = c.randn(*shape) + 1
        channels = shape[1]
        w, b = c.randn(channels), c.randn(channels)
        rm, rv = c.randn(channels), np.abs(c.randn(channels)) + 0.5
        outs = []
        for mg in (c.s, c.k):
            buffers = [rm.copy(), rv.copy()]
            with mg.no_grad():
                y = mg.nn.functional.batch_norm(
                    mg.tensor(x, dtype=mg.float64), buffers[0], buffers[1],
                    mg.tensor(w, dtype=mg.float64), mg.tensor(b, dtype=mg.float64),
                    training=training, fused=False)
            outs.append([y.data] + buffers)
        mode = "training" if training else "eval"
        for name, a, e in zip(["y", "running_mean", "running_var"], *outs, strict=True):
            compare(f"{name} of the composite", a, e, f" for input {shape_text(shape)} in "
                    f"{mode} mode", rtol=1e-9, atol=1e-12)


check("batchnorm_forward", "BatchNorm composite (fused=False), training")(
    lambda c: _bn_composite(c, True))
check("batchnorm_forward", "BatchNorm composite (fused=False), eval")(
    lambda c: _bn_composite(c, False))


# ----------------------------------------------------------------------------- 8. BN backward


def _bn_backward_case(c: Pair, shape, training: bool, affine: bool = True,
                      dtype=np.float64) -> None:
    x = (c.randn(*shape) * 2 + 1).astype(dtype)
    channels = shape[1]
    gamma = c.randn(channels).astype(dtype) if affine else None
    rm, rv = c.randn(channels).astype(dtype), (np.abs(c.randn(channels)) + 0.5).astype(dtype)
    _, mean, rstd = c.k.kernels.reference.batchnorm_forward(x, gamma, None, rm, rv, 0.9, 1e-5,
                                                            training)
    grad = c.randn(*shape).astype(dtype)
    args = (grad, x, gamma, mean, rstd, training)
    expected = c.k.kernels.reference.batchnorm_backward(*_fresh(*args))
    yours = c.s.kernels.reference.batchnorm_backward(*_fresh(*args))
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    mode = "" if training else " in eval mode"
    compare_all(["dx", "dgamma", "dbeta"], yours, expected, f" for input {shape_text(shape)}{mode}",
                **tol)
    for name, a in zip(["dx", "dgamma", "dbeta"], yours, strict=True):
        if np.asarray(a).dtype != dtype:
            raise CheckFailed(f"{name} has dtype {np.asarray(a).dtype} for input "
                              f"{shape_text(shape)}, expected {np.dtype(dtype)}")


check("batchnorm_backward", "BatchNorm backward")(
    lambda c: [_bn_backward_case(c, s, True) for s in _BN_SHAPES])
check("batchnorm_backward", "BatchNorm backward, eval mode")(
    lambda c: [_bn_backward_case(c, s, False) for s in _BN_SHAPES])
check("batchnorm_backward", "BatchNorm backward without gamma")(
    lambda c: [_bn_backward_case(c, s, True, affine=False) for s in _BN_SHAPES])
check("batchnorm_backward", "BatchNorm backward, float32")(
    lambda c: _bn_backward_case(c, (8, 3, 2), True, dtype=np.float32))


@check("batchnorm_backward", "BatchNorm backward through F.batch_norm (finite differences)")
def _bn_fd(c: Pair) -> None:
    for shape in [tuple(int(n) for n in c.rng.integers(2, 5, size=2)), (2, 2, 3)]:
        channels = shape[1]
        finite_differences(
            c, lambda mg, x, w, b: mg.nn.functional.batch_norm(x, None, None, w, b,
                                                               training=True),
            [c.randn(*shape), c.randn(channels), c.randn(channels)], ["x", "weight", "bias"],
            f" for F.batch_norm of input {shape_text(shape)}, training")


# ----------------------------------------------------------------------------- 9. LayerNorm

_LN_CASES = [((4, 5), 1), ((2, 3, 4), 2), ((3, 6), 1)]


def _ln_case(c: Pair, shape, k: int, affine: bool) -> None:
    x = c.randn(*shape) * 2 + 1
    gamma, beta = (c.randn(*shape[-k:]), c.randn(*shape[-k:])) if affine else (None, None)
    context = f" for input {shape_text(shape)} normalized over {k} axes" + (
        "" if affine else ", no affine")
    fwd = [mg.kernels.reference.layernorm_forward(*_fresh(x, gamma, beta), 1e-5, k)
           for mg in (c.s, c.k)]
    compare_all(["y", "mean", "rstd"], fwd[0], fwd[1], context, rtol=1e-9, atol=1e-12)
    grad = c.randn(*shape)
    _, mean, rstd = fwd[1]
    bwd = [mg.kernels.reference.layernorm_backward(*_fresh(grad, x, gamma, mean, rstd))
           for mg in (c.s, c.k)]
    compare_all(["dx", "dgamma", "dbeta"], bwd[0], bwd[1], context, rtol=1e-9, atol=1e-12)


check("layernorm", "LayerNorm forward and backward")(
    lambda c: [_ln_case(c, s, k, True) for s, k in _LN_CASES])
check("layernorm", "LayerNorm without gamma and beta")(
    lambda c: [_ln_case(c, s, k, False) for s, k in _LN_CASES])


@check("layernorm", "LayerNorm composite (fused=False)")
def _ln_composite(c: Pair) -> None:
    for shape, k in _LN_CASES:
        normalized = shape[-k:]
        against_key(c, lambda mg, x, w, b, n=normalized: mg.nn.functional.layer_norm(
            x, n, w, b, fused=False), [c.randn(*shape), c.randn(*normalized),
                                       c.randn(*normalized)], ["x", "weight", "bias"],
            f" for the composite on input {shape_text(shape)}", rtol=1e-8, atol=1e-10)


@check("layernorm", "nn.LayerNorm: training and eval agree")
def _ln_modes(c: Pair) -> None:
    x = c.randn(3, 4)
    layer = c.s.nn.LayerNorm(4).double()
    with c.s.no_grad():
        train = layer(c.s.tensor(x, dtype=c.s.float64)).data
        layer.eval()
        evaluated = layer(c.s.tensor(x, dtype=c.s.float64)).data
    compare("eval-mode output (it must equal the training-mode one)", evaluated, train,
            " for input (3, 4)", rtol=0, atol=0)


@check("layernorm", "LayerNorm through F.layer_norm (finite differences)")
def _ln_fd(c: Pair) -> None:
    n, d = (int(v) for v in c.rng.integers(2, 6, size=2))
    finite_differences(
        c, lambda mg, x, w, b: mg.nn.functional.layer_norm(x, (d,), w, b),
        [c.randn(n, d), c.randn(d), c.randn(d)], ["x", "weight", "bias"],
        f" for F.layer_norm of input ({n}, {d})")


# ----------------------------------------------------------------------------- 10. optimizers


def _trajectory(c: Pair, make, steps: int = 4) -> None:
    shapes = [(3, 4), (5,)]
    start = [c.randn(*s) for s in shapes]
    grads = [[c.randn(*s) for s in shapes] for _ in range(steps)]
    paths = []
    for mg in (c.s, c.k):
        params = [mg.nn.Parameter(mg.tensor(a, dtype=mg.float64)) for a in start]
        opt = make(mg, params)
        path = []
        for g in grads:
            for p, gi in zip(params, g, strict=True):
                p.grad = mg.tensor(gi, dtype=mg.float64)
            opt.step()
            path.append([p.data.copy() for p in params])
        paths.append(path)
    for t, (mine, key) in enumerate(zip(*paths, strict=True)):
        for i, (a, e) in enumerate(zip(mine, key, strict=True)):
            compare(f"parameter {i}", a, e, f" after step {t + 1}", rtol=1e-10, atol=1e-12)


for _title, _make in [
    ("SGD", lambda mg, p: mg.optim.SGD(p, lr=0.1)),
    ("SGD with momentum", lambda mg, p: mg.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("SGD with momentum, dampening and weight decay", lambda mg, p: mg.optim.SGD(
        p, lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD with Nesterov momentum", lambda mg, p: mg.optim.SGD(p, lr=0.1, momentum=0.9,
                                                              nesterov=True)),
    ("Adam", lambda mg, p: mg.optim.Adam(p, lr=0.01)),
    ("Adam with weight decay and AMSGrad", lambda mg, p: mg.optim.Adam(
        p, lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True)),
    ("AdamW", lambda mg, p: mg.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
]:
    check("optim", _title)(lambda c, m=_make: _trajectory(c, m))


# ----------------------------------------------------------------------------- 11. conv2d

_CONV_CASES = [  # x shape, weight shape, stride, padding, dilation, groups
    ((2, 3, 6, 5), (4, 3, 3, 2), 1, 0, 1, 1),
    ((1, 2, 7, 7), (3, 2, 3, 3), 2, 1, 1, 1),
    ((2, 2, 7, 6), (2, 2, 2, 3), (1, 2), (2, 1), 2, 1),
    ((1, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2),
]


def _conv_context(case) -> str:
    xs, ws, stride, padding, dilation, groups = case
    return (f" for x {xs}, weight {ws}, stride={stride}, padding={padding}, "
            f"dilation={dilation}, groups={groups}")


@check("conv2d", "conv2d forward")
def _conv_forward(c: Pair) -> None:
    for case in _CONV_CASES:
        xs, ws, stride, padding, dilation, groups = case
        x, w, b = c.randn(*xs), c.randn(*ws), c.randn(ws[0])
        outs = []
        for mg in (c.s, c.k):
            with mg.no_grad():
                t = [mg.tensor(a, dtype=mg.float64) for a in (x, w, b)]
                outs.append(mg.nn.functional.conv2d(*t, stride=stride, padding=padding,
                                                    dilation=dilation, groups=groups).data)
        compare("output", outs[0], outs[1], _conv_context(case), rtol=1e-9, atol=1e-12)


@check("conv2d", "conv2d backward")
def _conv_backward(c: Pair) -> None:
    for case in _CONV_CASES:
        xs, ws, stride, padding, dilation, groups = case
        against_key(c, lambda mg, x, w, b, s=stride, p=padding, d=dilation, g=groups:
                    mg.nn.functional.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g),
                    [c.randn(*xs), c.randn(*ws), c.randn(ws[0])], ["x", "weight", "bias"],
                    _conv_context(case), rtol=1e-9, atol=1e-11)


@check("conv2d", "conv1d forward and backward")
def _conv1d(c: Pair) -> None:
    against_key(c, lambda mg, x, w: mg.nn.functional.conv1d(x, w, stride=2, padding=1),
                [c.randn(2, 3, 9), c.randn(4, 3, 3)], ["x", "weight"],
                " for conv1d of x (2, 3, 9), weight (4, 3, 3), stride=2, padding=1",
                rtol=1e-9, atol=1e-11)


@check("conv2d", "conv2d through F.conv2d (finite differences)")
def _conv_fd(c: Pair) -> None:
    finite_differences(
        c, lambda mg, x, w, b: mg.nn.functional.conv2d(x, w, b, stride=1, padding=1),
        [c.randn(1, 2, 4, 4), c.randn(2, 2, 2, 2), c.randn(2)], ["x", "weight", "bias"],
        " for conv2d of x (1, 2, 4, 4), weight (2, 2, 2, 2), padding=1")
