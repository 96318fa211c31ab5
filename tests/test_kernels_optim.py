"""Fused optimizer kernels: compiled (_optim) vs NumPy twin vs a float64 oracle.

The oracle is the twin run on float64 copies of the inputs; the compiled kernel must agree
with it (and with the twin in the working dtype) for every option, dtype and memory layout,
must leave state outside each tensor's slice alone, and must reject bad calls with Python
exceptions.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_modules import compiled_module

from minigrad.kernels import reference as ref

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
    """Which of the kernel's state buffers these options pass (the others are None)."""
    if name == "sgd_step":
        return (options.get("momentum", 0) != 0,)
    if name == "adam_step":
        return (True, True, options.get("amsgrad", False))
    return (True, options.get("centered", False), options.get("momentum", 0) != 0)


def _call(module, name, params, grads, states, offsets, steps, options):
    kwargs = {k: v for k, v in options.items() if k not in ("amsgrad", "centered")}
    getattr(module, name)(params, grads, *states, offsets, steps, **kwargs)


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
    """Parameters, per-step gradients and flat state with gaps between the tensors' slices."""

    GAP = 3  # state elements between slices; they must come out untouched

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
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        self.offsets = np.array(
            [self.GAP + sum(sizes[:k]) + self.GAP * k for k in range(len(shapes))], np.int64
        )
        self.state_size = self.GAP * (len(shapes) + 1) + sum(sizes)
        # Tensors at different step counts: each must use its own bias correction.
        self.first_steps = np.arange(1, len(shapes) + 1, dtype=np.int64)
        self.p_layout, self.g_layout = p_layout, g_layout
        self.fill = rng.standard_normal(self.state_size)

    def run(self, module, dtype):
        """Run every step with ``module``'s kernel in ``dtype``; return (params, states)."""
        names, _ = KERNELS[self.name]
        used = _state_used(self.name, self.options)
        params = [_layout(p.astype(dtype), self.p_layout) for p in self.params0]
        # State starts as the gap sentinel everywhere, zeros inside the slices.
        states = []
        for flag in used:
            if not flag:
                states.append(None)
                continue
            state = self.fill.astype(dtype)
            for p, o in zip(params, self.offsets, strict=True):
                state[o : o + p.size] = 0
            states.append(state)
        for step, grads in enumerate(self.grads):
            grads = [_layout(g.astype(dtype), self.g_layout) for g in grads]
            steps = self.first_steps + step
            _call(module, self.name, params, grads, states, self.offsets, steps, self.options)
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
            np.testing.assert_allclose(got, exact, **tol)
            np.testing.assert_allclose(got, twin, **tol)
            gaps = np.ones(self.state_size, bool)
            for p, o in zip(got_p, self.offsets, strict=True):
                gaps[o : o + p.size] = False
            np.testing.assert_array_equal(got[gaps], self.fill.astype(dtype)[gaps])


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
            np.testing.assert_array_equal(a, b)
    problem.check()


def test_sgd_first_momentum_step_copies_gradient():
    p, g = np.zeros(4), np.array([1.0, -2.0, 3.0, 0.5])
    buf = np.full(4, 99.0)  # whatever is there before step 1 must not leak in
    for module in (_optim, ref):
        p[:] = 0
        buf[:] = 99.0
        module.sgd_step(
            [p],
            [g],
            buf,
            np.zeros(1, np.int64),
            np.ones(1, np.int64),
            lr=0.5,
            momentum=0.9,
            dampening=0.5,
        )
        np.testing.assert_array_equal(buf, g)
        np.testing.assert_array_equal(p, -0.5 * g)


def test_adam_first_step_moves_each_weight_by_lr():
    # After one step m/(sqrt(v)) = sign(g) exactly: the classic sanity check of Adam.
    g = np.array([3.0, -0.25, 1e-3, -40.0])
    for module in (_optim, ref):
        p = np.zeros(4)
        m, v = np.zeros(4), np.zeros(4)
        module.adam_step(
            [p], [g], m, v, None, np.zeros(1, np.int64), np.ones(1, np.int64), lr=0.01, eps=0.0
        )
        np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-14)


def test_empty_parameter_list_is_a_no_op():
    empty = np.zeros(0, np.int64)
    state = np.zeros(5)
    for module in (_optim, ref):
        module.adam_step([], [], state, state.copy(), None, empty, empty, lr=0.1)
        module.sgd_step([], [], None, empty, empty, lr=0.1)
        module.rmsprop_step([], [], state, None, None, empty, empty, lr=0.1)
    np.testing.assert_array_equal(state, 0)


# --------------------------------------------------------------------------- bad calls
def _adam(params, grads, m=None, v=None, offsets=None, steps=None, vmax=None):
    n = len(params)
    size = sum(np.asarray(p).size for p in params)
    dtype = np.asarray(params[0]).dtype if params else np.float64
    m = np.zeros(size, dtype) if m is None else m
    v = np.zeros(size, dtype) if v is None else v
    if offsets is None:
        offsets = np.cumsum([0] + [np.asarray(p).size for p in params[:-1]]).astype(np.int64)
    steps = np.ones(n, np.int64) if steps is None else steps
    _optim.adam_step(params, grads, m, v, vmax, offsets, steps, lr=0.1)


def test_rejects_mismatched_dtypes():
    with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
        _adam([np.zeros(3, np.float32)], [np.zeros(3, np.float64)])
    with pytest.raises(TypeError, match="param 1"):
        _adam([np.zeros(3), np.zeros(2, np.float32)], [np.zeros(3), np.zeros(2, np.float32)])
    with pytest.raises(TypeError, match="state buffer"):
        _adam([np.zeros(3)], [np.zeros(3)], m=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        _adam([np.zeros(3, np.int64)], [np.zeros(3, np.int64)])
    with pytest.raises(TypeError, match="ndarrays"):
        _adam([np.zeros(3), [1.0, 2.0]], [np.zeros(3), np.zeros(2)])


def test_rejects_bad_shapes_offsets_and_steps():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        _adam([np.zeros((2, 3))], [np.zeros((3, 2))])
    with pytest.raises(ValueError, match="does not fit"):
        _adam([np.zeros(4)], [np.zeros(4)], offsets=np.array([2], np.int64))
    with pytest.raises(ValueError, match="does not fit"):
        _adam([np.zeros(4)], [np.zeros(4)], offsets=np.array([-1], np.int64))
    with pytest.raises(ValueError, match="does not fit"):
        _adam([np.zeros(4)], [np.zeros(4)], offsets=np.array([2**63 - 2], np.int64))
    with pytest.raises(ValueError, match="offsets"):
        _adam([np.zeros(4)], [np.zeros(4)], offsets=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        _adam([np.zeros(4)], [np.zeros(4)], steps=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="different sizes"):
        _adam([np.zeros(4)], [np.zeros(4)], v=np.zeros(5))
    with pytest.raises(ValueError, match="momentum_buffer"):
        _optim.rmsprop_step(
            [np.zeros(2)],
            [np.zeros(2)],
            np.zeros(2),
            None,
            None,
            np.zeros(1, np.int64),
            np.ones(1, np.int64),
            lr=0.1,
            momentum=0.9,
        )


def test_rejects_read_only_param_and_leaves_it_alone():
    p = np.ones(3)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _adam([p], [np.ones(3)])
    np.testing.assert_array_equal(p, 1.0)
