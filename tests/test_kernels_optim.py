"""Fused optimizer kernels: compiled (_optim) vs NumPy twin vs a float64 oracle.

The oracle is the twin run on float64 copies of the inputs; the compiled kernel must agree
with it (and with the twin in the working dtype) for every option, dtype and memory layout,
must update tensors that share memory one after the other as the twin does, and must reject
bad calls with the twin's Python exceptions.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_modules import compiled_module

from minigrad.kernels import _optim_twin as ref

_optim = compiled_module("_optim")
if _optim is None:
    pytest.skip("compiled kernels not built (MINIGRAD_BACKEND=numpy)", allow_module_level=True)

# Tolerances of one kernel call sequence (3 steps) against the float64 oracle and the twin.
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}

KERNELS = {
    # name: (state buffer names in call order, option sets)
    "sgd_step": (
        ("momentum_buffer",),
        [
            dict(lr=0.1),
            dict(lr=0.1, weight_decay=0.05),
            dict(lr=0.1, momentum=0.9),
            dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05),
            dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05),
        ],
    ),
    "adam_step": (
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        [
            dict(lr=0.05),
            dict(lr=0.05, weight_decay=0.1),
            dict(lr=0.05, weight_decay=0.1, decoupled=True),
            dict(lr=0.05, beta1=0.5, beta2=0.7, eps=1e-3, amsgrad=True),
            dict(lr=0.05, weight_decay=0.2, decoupled=True, amsgrad=True),
        ],
    ),
    "rmsprop_step": (
        ("square_avg", "grad_avg", "momentum_buffer"),
        [
            dict(lr=0.05),
            dict(lr=0.05, alpha=0.9, weight_decay=0.1),
            dict(lr=0.05, momentum=0.9),
            dict(lr=0.05, centered=True),
            dict(lr=0.05, alpha=0.8, centered=True, momentum=0.7, weight_decay=0.1),
        ],
    ),
}
CASES = [(name, i) for name, (_, options) in KERNELS.items() for i in range(len(options))]


def _state_used(name: str, options: dict) -> tuple[bool, ...]:
    """Which of the kernel's state lists these options pass (the others are None)."""
    if name == "sgd_step":
        return (options.get("momentum", 0) != 0,)
    if name == "adam_step":
        return (True, True, options.get("amsgrad", False))
    return (True, options.get("centered", False), options.get("momentum", 0) != 0)


def _counts(name: str, used: tuple[bool, ...], steps: list[int]) -> list:
    """The per-tensor counts argument: steps (Adam), first-step flags (SGD), none (RMSprop)."""
    if name == "adam_step":
        return [steps]
    if name == "sgd_step":
        return [[t == 1 for t in steps] if used[0] else None]
    return []


def _call(module, name, params, grads, states, steps, options):
    kwargs = {k: v for k, v in options.items() if k not in ("amsgrad", "centered")}
    used = tuple(s is not None for s in states)
    getattr(module, name)(params, grads, *states, *_counts(name, used, steps), **kwargs)


def _layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout (a view into a bigger buffer)."""
    if layout == "c" or array.ndim == 0:
        return array.copy()
    if layout == "transposed":
        return np.ascontiguousarray(array.T).T
    if layout == "strided":
        big = np.zeros(tuple(2 * n for n in array.shape), array.dtype)
        view = big[tuple(slice(None, None, 2) for _ in array.shape)]
    else:  # negative steps
        big = np.zeros(array.shape, array.dtype)
        view = big[tuple(slice(None, None, -1) for _ in array.shape)]
    view[...] = array
    return view


class Problem:
    """Parameters, per-step gradients and per-tensor state, tensors at different step counts."""

    def __init__(self, shapes, dtype, name, options, seed, p_layout="c", g_layout="c", n_steps=3):
        rng = np.random.default_rng(seed)
        self.name, self.options, self.dtype = name, options, dtype
        self.params0 = [rng.standard_normal(s) for s in shapes]
        self.grads = [[rng.standard_normal(s) for s in shapes] for _ in range(n_steps)]
        if options.get("centered"):
            # Centered RMSprop divides by sqrt(s - a^2), which cancels when a gradient barely
            # changes between steps; float32 then loses digits in any implementation (PyTorch
            # too). Gradients that flip sign every step keep s - a^2 well away from 0.
            self.grads = [
                [np.asarray((-1) ** t * (0.5 + np.abs(g))) for g in grads]
                for t, grads in enumerate(self.grads)
            ]
        # Tensors at different step counts: each must use its own bias correction.
        self.first_steps = list(range(1, len(shapes) + 1))
        self.p_layout, self.g_layout = p_layout, g_layout

    def run(self, module, dtype):
        """Run every step with ``module``'s kernel in ``dtype``; return (params, states)."""
        used = _state_used(self.name, self.options)
        params = [_layout(p.astype(dtype), self.p_layout) for p in self.params0]
        states = [[np.zeros(p.shape, dtype) for p in params] if flag else None for flag in used]
        for step, grads in enumerate(self.grads):
            grads = [_layout(g.astype(dtype), self.g_layout) for g in grads]
            steps = [t + step for t in self.first_steps]
            _call(module, self.name, params, grads, states, steps, self.options)
        return params, states

    def check(self):
        dtype = self.dtype
        tol = TOL[dtype]
        got_p, got_s = self.run(_optim, dtype)
        twin_p, twin_s = self.run(ref, dtype)
        exact_p, exact_s = self.run(ref, np.float64)
        for got, twin, exact in zip(got_p, twin_p, exact_p, strict=True):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, exact, **tol)
            np.testing.assert_allclose(got, twin, **tol)
        for got, twin, exact in zip(got_s, twin_s, exact_s, strict=True):
            if got is None:
                continue
            for g, t, e in zip(got, twin, exact, strict=True):
                np.testing.assert_allclose(g, e, **tol)
                np.testing.assert_allclose(g, t, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,which", CASES)
def test_fixed_shapes_match_oracle(name, which, dtype):
    options = KERNELS[name][1][which]
    shapes = [(64, 33), (33,), (1,), (7, 1, 5), ()]
    Problem(shapes, dtype, name, options, seed=which).check()


@pytest.mark.parametrize("layout", ["transposed", "strided", "negative"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_non_contiguous_params_and_grads(name, layout):
    options = KERNELS[name][1][-1]
    shapes = [(6, 5), (4, 3, 2), (9,)]
    for dtype in (np.float32, np.float64):
        Problem(shapes, dtype, name, options, seed=7, p_layout=layout).check()
        Problem(shapes, dtype, name, options, seed=8, g_layout=layout).check()


shape_lists = st.lists(
    st.lists(st.integers(0, 9), min_size=0, max_size=3).map(tuple), min_size=0, max_size=4
)


@settings(max_examples=60, deadline=None)
@given(
    shapes=shape_lists,
    case=st.sampled_from(CASES),
    dtype=st.sampled_from([np.float32, np.float64]),
    p_layout=st.sampled_from(["c", "transposed", "strided", "negative"]),
    g_layout=st.sampled_from(["c", "transposed", "strided", "negative"]),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_layouts(shapes, case, dtype, p_layout, g_layout, seed):
    name, which = case
    Problem(shapes, dtype, name, KERNELS[name][1][which], seed, p_layout, g_layout).check()


@pytest.mark.parametrize("name", list(KERNELS))
def test_large_tensor_same_result_for_any_thread_count(name):
    options = KERNELS[name][1][-1]
    problem = Problem([(600, 500)], np.float32, name, options, seed=3, n_steps=2)
    threads = _optim.get_num_threads()
    try:
        _optim.set_num_threads(1)
        one_p, one_s = problem.run(_optim, np.float32)
        _optim.set_num_threads(2)
        two_p, two_s = problem.run(_optim, np.float32)
    finally:
        _optim.set_num_threads(threads)
    np.testing.assert_array_equal(one_p[0], two_p[0])
    for a, b in zip(one_s, two_s, strict=True):
        if a is not None:
            np.testing.assert_array_equal(a[0], b[0])
    problem.check()


@pytest.mark.parametrize("module", [_optim, ref], ids=["cython", "numpy"])
def test_sgd_first_momentum_step_copies_gradient(module):
    p, g = np.zeros(4), np.array([1.0, -2.0, 3.0, 0.5])
    buf = np.full(4, 99.0)  # whatever is there before the first step must not leak in
    module.sgd_step([p], [g], [buf], [True], lr=0.5, momentum=0.9, dampening=0.5)
    np.testing.assert_array_equal(buf, g)
    np.testing.assert_array_equal(p, -0.5 * g)


@pytest.mark.parametrize("module", [_optim, ref], ids=["cython", "numpy"])
def test_adam_first_step_moves_each_weight_by_lr(module):
    # After one step m/(sqrt(v)) = sign(g) exactly: the classic sanity check of Adam.
    g = np.array([3.0, -0.25, 1e-3, -40.0])
    p, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    module.adam_step([p], [g], [m], [v], None, [1], lr=0.01, eps=0.0)
    np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-14)


@pytest.mark.parametrize("module", [_optim, ref], ids=["cython", "numpy"])
def test_empty_parameter_list_is_a_no_op(module):
    module.adam_step([], [], [], [], None, [], lr=0.1)
    module.sgd_step([], [], None, None, lr=0.1)
    module.rmsprop_step([], [], [], None, None, lr=0.1)


@pytest.mark.parametrize("module", [_optim, ref], ids=["cython", "numpy"])
@pytest.mark.parametrize("second", ["strided", "contiguous rows"])
def test_tensors_sharing_memory_are_updated_one_after_the_other(module, second):
    # base and a view of it: each receives its own update, in list order (PyTorch's loop);
    # the compiled kernel once updated a stale copy of the strided view and lost one update
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2] if second == "strided" else base[1:3]
    g1, g2 = np.ones_like(base), np.full(view.shape, 10, np.float32)
    expected = base - 0.5 * g1
    expected_view = expected[:, ::2] if second == "strided" else expected[1:3]
    expected_view -= 0.5 * g2
    module.sgd_step([base, view], [g1, g2], None, None, lr=0.5)
    np.testing.assert_array_equal(base, expected)


@pytest.mark.parametrize("beta2", [0.999, 0.9999, 0.999999])
@pytest.mark.parametrize("module", [_optim, ref], ids=["cython", "numpy"])
def test_float32_adam_forms_one_minus_beta2_in_float64(module, beta2):
    # 1 - beta2 formed in float32 from a rounded beta2 was 1.3e-5 (0.999) to 1.3e-2
    # (0.999999) off in relative terms; formed in float64 and rounded once it is ~1e-7
    g = np.random.default_rng(0).standard_normal(1000)
    v32 = [np.zeros(1000, np.float32)]
    module.adam_step([np.zeros(1000, np.float32)], [g.astype(np.float32)],
                     [np.zeros(1000, np.float32)], v32, None, [1], lr=1e-3, beta2=beta2)
    exact = (1 - beta2) * g.astype(np.float32).astype(np.float64) ** 2
    assert np.max(np.abs(v32[0] / exact - 1)) < 5e-7


@pytest.mark.parametrize("alpha", [0.999, 0.9999, 0.999999])
@pytest.mark.parametrize("module", [_optim, ref], ids=["cython", "numpy"])
def test_float32_rmsprop_forms_one_minus_alpha_in_float64(module, alpha):
    g = np.random.default_rng(1).standard_normal(1000)
    s32 = [np.zeros(1000, np.float32)]
    module.rmsprop_step([np.zeros(1000, np.float32)], [g.astype(np.float32)], s32, None, None,
                        lr=1e-3, alpha=alpha)
    exact = (1 - alpha) * g.astype(np.float32).astype(np.float64) ** 2
    assert np.max(np.abs(s32[0] / exact - 1)) < 5e-7


# --------------------------------------------------------------------------- bad calls
# Each row: a call with one bad argument, the exception and a regex of its message. Both
# backends must raise exactly the same exception with exactly the same message.
def _adam(params=None, grads=None, m=None, v=None, vmax=None, steps=None, **kw):
    params = [np.zeros(3, np.float32)] if params is None else params
    grads = [np.ones(np.shape(p), np.float32) for p in params] if grads is None else grads
    like = [np.zeros(np.shape(p), np.float32) for p in params]
    m = like if m is None else m
    v = [a.copy() for a in like] if v is None else v
    steps = [1] * len(params) if steps is None else steps
    return lambda k: k.adam_step(params, grads, m, v, vmax, steps, lr=0.1, **kw)


_f4 = np.zeros(3, np.float32)
_ro = np.zeros(3, np.float32)
_ro.flags.writeable = False
_shared = np.zeros(6, np.float32)
BAD_CALLS = {
    "params tuple": (_adam(params=(np.zeros(3, np.float32),)), TypeError, "must be lists"),
    "grad float64": (_adam(grads=[np.ones(3)]), TypeError, r"grads\[0\] is float64"),
    "big-endian param": (_adam(params=[np.zeros(3, ">f4")]), TypeError,
                         r"params\[0\] has non-native byte order"),
    "big-endian grad": (_adam(grads=[np.ones(3, ">f4")]), TypeError,
                        r"grads\[0\] has non-native byte order"),
    "big-endian state": (_adam(v=[np.zeros(3, ">f4")]), TypeError,
                         r"exp_avg_sqs\[0\] has non-native byte order"),
    "int param": (_adam(params=[np.zeros(3, np.int64)]), TypeError, "float32 or float64"),
    "mixed dtypes": (_adam(params=[_f4.copy(), np.zeros(2)]), TypeError,
                     r"params\[1\] is float64 but params\[0\] is float32"),
    "list grad": (_adam(grads=[[1.0, 2.0, 3.0]]), TypeError, "must be a numpy.ndarray"),
    "grad shape": (_adam(grads=[np.ones(4, np.float32)]), ValueError, r"\(4,\).*\(3,\)"),
    "state shape": (_adam(m=[np.zeros(4, np.float32)]), ValueError, r"exp_avgs\[0\].*\(4,\)"),
    "state list short": (_adam(m=[]), ValueError, "exp_avgs has 0 entries for 1 params"),
    "state not a list": (_adam(m=np.zeros(3, np.float32)), TypeError, "exp_avgs must be a list"),
    "state strided": (_adam(m=[np.zeros(6, np.float32)[::2]]), ValueError, "C-contiguous"),
    "state read-only": (_adam(v=[_ro]), ValueError, r"exp_avg_sqs\[0\] .*read-only"),
    "param read-only": (_adam(params=[_ro]), ValueError, r"params\[0\] .*read-only"),
    "state is the param": (_adam(params=[_shared[:3]], m=[_shared[:3]]), ValueError,
                           r"params\[0\] and exp_avgs\[0\] overlap"),
    "state overlaps grad": (_adam(grads=[_shared[1:4]], m=[_shared[:3]]), ValueError,
                            r"grads\[0\] and exp_avgs\[0\] overlap"),
    "no exp_avgs": (lambda k: k.adam_step([_f4.copy()], [_f4.copy()], None, [_f4.copy()],
                                          None, [1], lr=0.1), TypeError, "required"),
    "step 0": (_adam(steps=[0]), ValueError, r"steps\[0\] must be an int in \[1"),
    "step float": (_adam(steps=[1.0]), ValueError, r"steps\[0\]"),
    "steps short": (_adam(steps=[]), TypeError, "steps must be a list of 1 ints"),
    "sgd first not bool": (
        lambda k: k.sgd_step([_f4.copy()], [_f4.copy()], [_f4.copy()], [1], lr=0.1,
                             momentum=0.9), TypeError, "first must be a list of 1 bools"),
    "rmsprop no square_avgs": (
        lambda k: k.rmsprop_step([_f4.copy()], [_f4.copy()], None, None, None, lr=0.1),
        TypeError, "square_avgs is required"),
    "lr a string": (lambda k: k.sgd_step([_f4.copy()], [_f4.copy()], None, None, lr="x"),
                    TypeError, "must be real number, not str"),
}


@pytest.mark.parametrize("label", sorted(BAD_CALLS))
def test_bad_calls_raise_the_same_error_on_both_backends(label):
    call, exc, match = BAD_CALLS[label]
    messages = []
    for module in (_optim, ref):
        with pytest.raises(exc, match=match) as info:
            call(module)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_strided_views_of_one_array_that_do_not_overlap_are_accepted():
    # byte ranges that interleave are not an overlap: the exact check lets them through
    base = np.zeros(8, np.float32)
    for module in (_optim, ref):
        base[:] = 0
        module.sgd_step([base[::2]], [np.ones(4, np.float32)], [base[1::2].copy()], [True],
                        lr=1.0, momentum=0.5)
        p, g = base[::2], base[1::2]
        g[:] = 1
        module.sgd_step([p], [g], None, None, lr=1.0)
        np.testing.assert_array_equal(base[::2], -2.0)


def test_rejected_call_leaves_everything_alone():
    p, m = [np.ones(3), np.ones(2)], [np.zeros(3), np.zeros(2)]
    for module in (_optim, ref):
        with pytest.raises(ValueError, match="grads"):
            module.adam_step(p, [np.ones(3), np.ones(5)], m, [a.copy() for a in m], None,
                             [1, 1], lr=0.1)
        assert all(np.all(a == 1) for a in p) and all(np.all(a == 0) for a in m)
