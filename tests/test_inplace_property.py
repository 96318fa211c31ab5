"""Property: random programs of forwards, in-place changes and a backward never give a wrong
gradient. Each backward either raises the in-place RuntimeError or matches the gradient of
the same program replayed without any in-place op."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import minigrad as mg

F64 = mg.float64
MODIFIED = "modified by an in-place operation"
N = 3  # elements per tensor

slot = st.integers(0, 20)  # taken modulo the pool size when the step runs
step = st.one_of(
    st.tuples(st.just("binary"), st.sampled_from(["add", "mul"]), slot, slot),
    st.tuples(st.just("unary"), st.sampled_from(["tanh", "sigmoid"]), slot),
    st.tuples(st.just("inplace"), st.sampled_from(["add_", "sub_", "mul_", "div_"]), slot,
              st.one_of(slot, st.floats(0.5, 2.0)), st.booleans()),
    st.tuples(st.just("setitem"), slot, st.integers(0, N - 1),
              st.one_of(slot, st.floats(0.5, 2.0)), st.booleans()),
    st.tuples(st.just("clamp_"), slot, st.floats(-1.5, -0.1), st.floats(0.1, 1.5),
              st.booleans()),
)
program = st.lists(step, min_size=1, max_size=10)
starts = st.lists(st.floats(0.5, 1.5), min_size=3 * N, max_size=3 * N)


class Replay:
    """The same program without in-place ops: each change rebinds the tensor instead."""

    def __init__(self, values):
        self.leaves = [mg.tensor(values[0], dtype=F64, requires_grad=True),
                       mg.tensor(values[1], dtype=F64, requires_grad=True)]
        self.pool = [*self.leaves, mg.tensor(values[2], dtype=F64)]

    def recorded(self, i, op, operand):
        t = self.pool[i]
        if op == "clamp_":
            self.pool[i] = t.clip(*operand)
        elif op == "setitem":
            position, value = operand
            onehot = np.zeros(N)
            onehot[position] = 1.0
            self.pool[i] = t * mg.tensor(1.0 - onehot, dtype=F64) + \
                mg.tensor(onehot, dtype=F64) * value
        else:
            fn = {"add_": lambda a, b: a + b, "sub_": lambda a, b: a - b,
                  "mul_": lambda a, b: a * b, "div_": lambda a, b: a / b}[op]
            self.pool[i] = fn(t, operand)

    def unrecorded(self, i, new_values):
        """A change the graph does not see: a constant shift of the tensor's values."""
        t = self.pool[i]
        self.pool[i] = t + mg.tensor(new_values - t.data, dtype=F64)


def _operand(pool, replay, choice):
    if isinstance(choice, float):
        return choice, choice
    k = choice % len(pool)
    return pool[k], replay.pool[k]


def _run_step(s, pool, replay):
    kind = s[0]
    if kind == "binary":
        a, b = s[2] % len(pool), s[3] % len(pool)
        fn = (lambda x, y: x + y) if s[1] == "add" else (lambda x, y: x * y)
        pool.append(fn(pool[a], pool[b]))
        replay.pool.append(fn(replay.pool[a], replay.pool[b]))
        return
    if kind == "unary":
        a = s[2] % len(pool)
        pool.append(getattr(pool[a], s[1])())
        replay.pool.append(getattr(replay.pool[a], s[1])())
        return
    i, grad_mode = (s[2] if kind == "inplace" else s[1]) % len(pool), s[-1]
    t = pool[i]
    if kind == "inplace":
        real, fake = _operand(pool, replay, s[3])
        op, replay_operand = s[1], fake
        change = lambda: getattr(t, op)(real)  # noqa: E731
        others = [real]
    elif kind == "setitem":
        real, fake = _operand(pool, replay, s[3])
        position = s[2]
        real_value = real[position] if isinstance(real, mg.Tensor) else real
        fake_value = fake[position] if isinstance(fake, mg.Tensor) else fake
        op, replay_operand = "setitem", (position, fake_value)
        change = lambda: t.__setitem__(position, real_value)  # noqa: E731
        others = [real_value]
    else:
        op, replay_operand = "clamp_", (s[2], s[3])
        change = lambda: t.clamp_(s[2], s[3])  # noqa: E731
        others = []
    recorded = grad_mode and (t.requires_grad or any(
        isinstance(o, mg.Tensor) and o.requires_grad for o in others))
    before, version = t.data.copy(), t._version
    try:
        with (mg.enable_grad() if grad_mode else mg.no_grad()):
            change()
    except RuntimeError:  # refused (a leaf or a view in a graph): nothing may have changed
        np.testing.assert_array_equal(t.data, before)
        assert t._version == version
        return
    assert t._version == version + 1
    if recorded:
        replay.recorded(i, op, replay_operand)
    else:
        replay.unrecorded(i, t.data.copy())


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=program, values=starts)
def test_backward_is_right_or_raises(backend, steps, values):
    values = np.array(values).reshape(3, N)
    leaves = [mg.tensor(values[0], dtype=F64, requires_grad=True),
              mg.tensor(values[1], dtype=F64, requires_grad=True)]
    pool = [*leaves, mg.tensor(values[2], dtype=F64)]
    replay = Replay(values)
    for s in steps:
        _run_step(s, pool, replay)
        # x / 0 makes inf, and the replay's constant shifts (inf - inf) would be NaN
        assume(all(np.all(np.isfinite(t.data)) for t in pool))
    for got, want in zip(pool, replay.pool, strict=True):
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=1e-12)
    weights = [mg.tensor(np.full(N, k + 1.0), dtype=F64) for k in range(len(pool))]
    loss = sum((t * w).sum() for t, w in zip(pool, weights, strict=True))
    expected_loss = sum((t * w).sum() for t, w in zip(replay.pool, weights, strict=True))
    if not expected_loss.requires_grad:
        return
    try:
        loss.backward()
    except RuntimeError as error:
        assert MODIFIED in str(error)
        return
    expected_loss.backward()
    for got, want in zip(leaves, replay.leaves, strict=True):
        g = np.zeros(N) if got.grad is None else got.grad.numpy()
        w = np.zeros(N) if want.grad is None else want.grad.numpy()
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


def test_the_property_sees_a_wrong_gradient():
    """The oracle can fail: a change hidden from the version counter (through .data) gives a
    gradient that does not match the replay, which the property would report."""
    values = np.ones((3, N))
    a = mg.tensor(values[0], dtype=F64, requires_grad=True)
    y = (a * a).sum()
    a.data *= 3  # the escape hatch: not seen by the counter
    y.backward()
    replay = Replay(values)
    (replay.pool[0] * replay.pool[0]).sum().backward()
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(a.grad.numpy(), replay.leaves[0].grad.numpy())
