"""Fuzz group that corrupts the arguments of valid kernel calls: every call must raise a clean
Python exception (the same on both backends) or agree, never crash."""

from __future__ import annotations

import numpy as np
from fuzz_common import (
    describe,
    fuzz_settings,
    outcome,
)
from hypothesis import given
from hypothesis import strategies as st

from minigrad.kernels import compiled, reference


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

    def state():
        return [np.zeros((2, 2), np.float32)]
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
        "sgd_step": ([params, grads, state(), [True]], {"lr": 0.1, "momentum": 0.9}),
        "adam_step": ([params, grads, state(), state(), None, [1]], {"lr": 0.1}),
        "rmsprop_step": ([params, grads, state(), None, None], {"lr": 0.1}),
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


