"""Threads: kernel results do not depend on the OpenMP thread count, Python threads get serial
results, and grad mode is per thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import minigrad as mg
from minigrad import kernels, nn
from minigrad.kernels import reference

compiled = kernels.compiled
needs_compiled = pytest.mark.skipif(compiled is None, reason="compiled kernels not built")


# ================================================================================= 5. threads

BIG = 300_000  # above the 262,144-element threshold where the kernels split work


def _with_threads(n, fn):
    previous = mg.get_num_threads()
    mg.set_num_threads(n)
    try:
        return fn()
    finally:
        mg.set_num_threads(previous)


def _threaded_kernel_calls():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 500)).astype(np.float32)  # 300K elements
    x4 = rng.standard_normal((40, 30, 16, 16)).astype(np.float32)
    c = x.shape[1]
    g, b = np.linspace(0.5, 2, c).astype(np.float32), np.zeros(c, np.float32)
    target = rng.integers(0, c, x.shape[0])
    big_params = [rng.standard_normal(BIG).astype(np.float32)]
    big_grads = [rng.standard_normal(BIG).astype(np.float32)]

    def optim_call(name, n_state, *counts, **kw):
        def run():
            p = [a.copy() for a in big_params]
            state = [[np.zeros(BIG, np.float32)] for _ in range(n_state)]
            getattr(compiled, name)(p, big_grads, *state, *counts, **kw)
            return [p[0]] + [s[0] for s in state]
        return run

    calls = {}
    for name in ("sum", "mean", "max", "min", "logsumexp"):
        for axis in (0, 1, None):
            calls[f"{name}-{axis}"] = (lambda n=name, a=axis: getattr(compiled, n)(x, a))
    calls["var-0"] = lambda: compiled.var(x, 0)
    calls["var-1"] = lambda: compiled.var(x, 1)
    for name in ("softmax", "log_softmax"):
        for axis in (0, 1):
            calls[f"{name}-{axis}"] = lambda n=name, a=axis: getattr(compiled, n)(x, a)
            calls[f"{name}_backward-{axis}"] = (
                lambda n=name, a=axis: getattr(compiled, n + "_backward")(
                    getattr(compiled, n)(x, a), x, a))
    calls["cross_entropy"] = lambda: compiled.cross_entropy_forward(x, target)
    calls["gelu_forward"] = lambda: compiled.gelu_forward(x)
    calls["gelu_backward"] = lambda: compiled.gelu_backward(x, x, compiled.gelu_forward(x)[1])
    calls["cross_entropy_backward"] = lambda: compiled.cross_entropy_backward(
        np.ones(x.shape[0], np.float32), x, target, compiled.cross_entropy_forward(x, target)[1])
    calls["batchnorm_forward-2d"] = lambda: compiled.batchnorm_forward(
        x, g, b, np.zeros(c, np.float32), np.ones(c, np.float32), 0.9, 1e-5, True)
    calls["batchnorm_forward-4d"] = lambda: compiled.batchnorm_forward(
        x4, None, None, None, None, 0.9, 1e-5, True)
    calls["batchnorm_backward-2d"] = lambda: compiled.batchnorm_backward(
        x, x, g, *reference.batchnorm_forward(x, g, b, None, None, 0.9, 1e-5, True)[1:])
    calls["batchnorm_backward-4d"] = lambda: compiled.batchnorm_backward(
        x4, x4, None, *reference.batchnorm_forward(x4, None, None, None, None, 0.9, 1e-5,
                                                        True)[1:])
    calls["layernorm_forward"] = lambda: compiled.layernorm_forward(x, g, b, 1e-5, 1)
    calls["layernorm_backward"] = lambda: compiled.layernorm_backward(
        x, x, g, *reference.layernorm_forward(x, g, b, 1e-5, 1)[1:])
    calls["sgd_step"] = optim_call("sgd_step", 1, [False], lr=0.1, momentum=0.9)
    calls["adam_step"] = optim_call("adam_step", 3, [1], lr=0.1)  # the third state: AMSGrad
    calls["rmsprop_step"] = optim_call("rmsprop_step", 3, lr=0.1, momentum=0.9)
    return calls


if compiled is not None:
    THREADED = _threaded_kernel_calls()
else:  # pragma: no cover
    THREADED = {}


def _as_list(out):
    if isinstance(out, tuple | list):
        return [np.asarray(o) for o in out if o is not None]
    return [np.asarray(out)]


@needs_compiled
@pytest.mark.parametrize("name", sorted(THREADED))
def test_one_and_two_threads_give_identical_results(name):
    one = _with_threads(1, THREADED[name])
    two = _with_threads(2, THREADED[name])
    for a, b in zip(_as_list(one), _as_list(two), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"{name} depends on the thread count")


def _work(seed):
    """A BatchNorm/LayerNorm forward and backward plus reductions on this seed's data."""
    rng = np.random.default_rng(seed)
    x = mg.tensor(rng.standard_normal((512, 300)).astype(np.float32), requires_grad=True)
    bn = nn.BatchNorm1d(300)
    ln = nn.LayerNorm(300)
    out = ln(bn(x))
    loss = (out * out).mean() + out.logsumexp(axis=1).sum() * 1e-3 + out.var(axis=0).sum()
    loss.backward()
    return [loss.data, x.grad.data, bn.running_mean.data, bn.running_var.data,
            out.max(axis=0).data, out.softmax(axis=1).data]


def test_two_python_threads_give_the_same_results_as_serial_calls():
    seeds = list(range(6))
    serial = [_work(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = list(pool.map(_work, seeds))
    for s, (a, b) in enumerate(zip(serial, concurrent, strict=True)):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v, err_msg=f"seed {s}")


def test_no_grad_in_one_thread_does_not_affect_another():
    entered, done = threading.Event(), threading.Event()

    def other():
        with mg.no_grad():
            entered.set()
            done.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        entered.wait(5)
        y = mg.randn(3, requires_grad=True) * 2
        assert y.requires_grad, "this thread's graph was not recorded"
    finally:
        done.set()
        thread.join()




@pytest.mark.parametrize("count", [100_000, "limit + 1"])
def test_more_threads_than_the_machine_has_are_refused(backend, count):
    n = kernels.max_threads() + 1 if count == "limit + 1" else count
    previous = mg.get_num_threads()
    try:
        with pytest.raises(ValueError, match=rf"set_num_threads\({n}\): at most "
                                             rf"{kernels.max_threads()} threads"):
            mg.set_num_threads(n)
    finally:
        mg.set_num_threads(previous)  # a missed refusal must not crash the tests that follow
    assert mg.get_num_threads() == previous
    x = np.random.default_rng(0).standard_normal((4, BIG)).astype(np.float32)
    np.testing.assert_allclose(mg.tensor(x).sum(axis=1).numpy(), x.sum(axis=1, dtype=np.float64),
                               rtol=1e-5)
    mg.set_num_threads(kernels.max_threads())  # the limit itself is accepted
    mg.set_num_threads(previous)


@needs_compiled
@pytest.mark.parametrize("module", ["_activation", "_norm", "_optim", "_reduce", "_softmax"])
def test_a_kernel_module_refuses_more_threads_than_openmp_can_start(module):
    mod = getattr(compiled, module)
    previous = mod.get_num_threads()
    try:
        with pytest.raises(ValueError, match="number of threads must be between 1 and"):
            mod.set_num_threads(100_000)
    finally:
        mod.set_num_threads(previous)
    assert mod.get_num_threads() == previous
