"""Fuzz group for the optimizer kernels: random parameter lists, layouts and hyperparameters."""

from __future__ import annotations

import numpy as np
from fuzz_common import (
    DTYPES,
    arrays,
    assert_close,
    fuzz_settings,
    outcome,
)
from hypothesis import given
from hypothesis import strategies as st

from minigrad.kernels import compiled, reference


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
        steps = data.draw(st.lists(st.integers(1, 5), min_size=count, max_size=count))
        rule = data.draw(st.sampled_from(["sgd", "adam", "rmsprop"]))
        hyper = data.draw(st.sampled_from([0.0, 0.1, 0.9]))
        # the kernels trust their hyperparameters (the optimizers check them): valid ones only
        lr = data.draw(st.sampled_from([0.0, 1e-3, 0.5]))

        def state():
            return [np.abs(np.sin(np.arange(p.size, dtype=np.float64))).astype(dt)
                    .reshape(p.shape) for p in params]
        if rule == "sgd":
            buf = state() if hyper else None
            first = [data.draw(st.booleans()) for _ in params] if hyper else None
            args = [params, grads, buf, first]
            kwargs = dict(lr=lr, momentum=hyper, dampening=0.0,
                          nesterov=bool(hyper) and data.draw(st.booleans()), weight_decay=0.01)
            moved = (0, 2)
        elif rule == "adam":
            ams = state() if data.draw(st.booleans()) else None
            args = [params, grads, state(), state(), ams, steps]
            kwargs = dict(lr=lr, beta1=hyper, beta2=data.draw(st.sampled_from([0.999, 0.0])),
                          eps=1e-8, weight_decay=0.01, decoupled=data.draw(st.booleans()))
            moved = (0, 2, 3, 4)
        else:
            centered = state() if data.draw(st.booleans()) else None
            buf = state() if hyper else None
            args = [params, grads, state(), centered, buf]
            kwargs = dict(lr=lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=hyper)
            moved = (0, 2, 3, 4)

        def clone(a):
            if isinstance(a, list):
                return [p.copy() if isinstance(p, np.ndarray) else p for p in a]
            return a
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
            for j, (pc, pt) in enumerate(zip(a_c, a_t, strict=True)):
                assert_close(pc, pt, dt, f"{name} argument {i} tensor {j} {kwargs}", 10.0,
                             loosen)

    case()


