"""mg.compile: a compiled copy and an eager copy of the same model take the same steps and
must agree bit for bit (parameters, gradients, buffers, optimizer state, versions); what
cannot be replayed must run eagerly with a CompileWarning that says why."""

import types
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import CompileWarning, nn, optim

STEPS = 4


@dataclass
class Output:
    """What a step may return instead of a tuple."""

    loss: mg.Tensor


# ----------------------------------------------------------------------------- helpers
def mlp(norm="batchnorm", dropout=0.0):
    mg.manual_seed(0)
    layers = []
    for n_in, n_out in ((64, 128), (128, 128)):
        layers += [nn.Linear(n_in, n_out),
                   nn.BatchNorm1d(n_out) if norm == "batchnorm" else nn.LayerNorm(n_out),
                   nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(128, 10))


def cnn():
    mg.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def train_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def batches(shape, n=STEPS, seed=1):
    rng = np.random.default_rng(seed)
    return [(mg.tensor(rng.standard_normal(shape, dtype=np.float32)),
             rng.integers(0, 10, shape[0])) for _ in range(n)]


def assert_same_state(model_a, opt_a, model_b, opt_b):
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        assert np.array_equal(a.data, b.data), name
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert np.array_equal(a.grad.data, b.grad.data), f"grad of {name}"
        assert a._version == b._version, f"version of {name}"
    for (name, a), b in zip(model_a.named_buffers(), model_b.buffers(), strict=True):
        assert np.array_equal(a.data, b.data), name
        assert a._version == b._version, f"version of {name}"
    if opt_a is not None:
        for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
            sa, sb = opt_a.state.get(pa, {}), opt_b.state.get(pb, {})
            assert sa.keys() == sb.keys()
            for key in sa:
                assert np.array_equal(sa[key], sb[key]), key


def compare_training(make_model, make_opt, data, backend_name=None):
    """Train an eager and a compiled copy on the same batches; check every step."""
    eager_model, compiled_model = make_model(), make_model()
    eager_opt, compiled_opt = make_opt(eager_model), make_opt(compiled_model)
    eager = train_step(eager_model, eager_opt)
    compiled = mg.compile(train_step(compiled_model, compiled_opt))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        for x, y in data:
            expected, got = eager(x, y), compiled(x, y)
            assert np.array_equal(expected.data, got.data)
            assert_same_state(eager_model, eager_opt, compiled_model, compiled_opt)
    assert compiled.recordings == 1 and compiled.replays == len(data) - 1
    return compiled


# ----------------------------------------------------------------------------- bit-identical
def test_digits_batchnorm_mlp_adam(backend):
    compare_training(mlp, lambda m: optim.Adam(m.parameters(), lr=1e-2), batches((64, 64)))


def test_sgd_momentum_weight_decay(backend):
    compare_training(mlp, lambda m: optim.SGD(m.parameters(), lr=0.1, momentum=0.9,
                                              weight_decay=1e-4), batches((32, 64)))


def test_layernorm_adamw(backend):
    compare_training(lambda: mlp("layernorm"), lambda m: optim.AdamW(m.parameters(), lr=1e-2),
                     batches((16, 64)))


def test_cnn_step(backend):
    compare_training(cnn, lambda m: optim.Adam(m.parameters(), lr=1e-2), batches((8, 1, 8, 8)))


def test_dropout_draws_the_same_masks_as_eager(backend):
    eager_model, compiled_model = mlp(dropout=0.5), mlp(dropout=0.5)
    eager_opt = optim.SGD(eager_model.parameters(), lr=0.1)
    compiled_opt = optim.SGD(compiled_model.parameters(), lr=0.1)
    eager = train_step(eager_model, eager_opt)
    compiled = mg.compile(train_step(compiled_model, compiled_opt))
    for i, (x, y) in enumerate(batches((16, 64))):
        mg.manual_seed(100 + i)  # a new generator object each time: read at each replay
        expected = eager(x, y)
        mg.manual_seed(100 + i)
        got = compiled(x, y)
        assert np.array_equal(expected.data, got.data)
        assert_same_state(eager_model, eager_opt, compiled_model, compiled_opt)
    assert compiled.replays == STEPS - 1
    # without reseeding, each replay draws a new mask: two calls differ
    x, y = batches((16, 64), n=1)[0]
    first, second = compiled(x, y).item(), compiled(x, y).item()
    assert first != second


def test_tiny_graph_with_grads_cleared_inside(backend):
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(4, dtype=np.float32) for _ in range(3)]

    def make():
        return [mg.tensor(v, requires_grad=True) for v in values]

    def fn(a, b, c):
        a.grad = b.grad = c.grad = None
        (a * b + c).sum().backward()
        return a.grad, b.grad, c.grad

    eager_inputs, compiled_inputs = make(), make()
    compiled = mg.compile(fn)
    for k in range(3):
        for t in (*eager_inputs, *compiled_inputs):
            t.data[...] = values[0] * (k + 1)  # new values, same tensors: read afresh
        expected = fn(*eager_inputs)
        got = compiled(*compiled_inputs)
        for e, g, t in zip(expected, got, compiled_inputs, strict=True):
            assert np.array_equal(e.data, g.data)
            assert g is t.grad
    assert compiled.replays == 2


def test_tiny_graph_accumulates_like_eager_without_clearing(backend):
    a, b = mg.tensor([1.0, 2.0], requires_grad=True), mg.tensor([3.0, 4.0], requires_grad=True)
    ea, eb = mg.tensor([1.0, 2.0], requires_grad=True), mg.tensor([3.0, 4.0], requires_grad=True)

    def fn(a, b):
        (a * b).sum().backward()

    compiled = mg.compile(fn)
    for _ in range(3):
        fn(ea, eb)
        compiled(a, b)
        assert np.array_equal(a.grad.data, ea.grad.data)
    assert np.array_equal(a.grad.data, 3 * np.array([3.0, 4.0], np.float32))


def test_leaf_gradients_never_share_memory_in_a_replay(backend):
    """The replay's first gradient of a leaf becomes its .grad only when no one else holds
    that array: one array sent to two leaves (a sum), a view (a reshape) and the caller's own
    seed are copied, as eager backward copies them."""
    seed = np.array([1.0, 2.0, 3.0, 4.0], np.float32)

    def fn(a, b, m, g):
        a.grad = b.grad = m.grad = None
        (a + b + m.reshape(4)).backward(g)
        return a.grad, b.grad, m.grad

    def make():
        return (mg.tensor(np.ones(4), requires_grad=True),
                mg.tensor(np.ones(4), requires_grad=True),
                mg.tensor(np.ones((2, 2)), requires_grad=True))

    compiled, eager = mg.compile(fn), make()
    inputs = make()
    for _ in range(3):
        expected = fn(*eager, seed)
        got = compiled(*inputs, seed)
        for e, g in zip(expected, got, strict=True):
            assert np.array_equal(e.data, g.data)
        arrays = [g.data for g in got] + [seed]
        for i, x in enumerate(arrays):
            for y in arrays[i + 1:]:
                assert not np.shares_memory(x, y)
        assert got[2].data.base is None and got[2].data.flags.writeable
    assert compiled.replays == 2


@pytest.mark.parametrize("kind", ["tensor", "ndarray", "made inside"])
def test_backward_with_a_gradient_like_eager(backend, kind):
    """backward(grad) with an explicit gradient: a tensor or an array argument, or a
    tensor made inside the function; the recording used to compare it with a string."""
    rng = np.random.default_rng(2)
    values = [rng.standard_normal(3, dtype=np.float32) for _ in range(3)]
    seed = np.array([2.0, -1.0, 0.5], np.float32)
    grad = mg.tensor(seed) if kind == "tensor" else seed

    def fn(x, w, g):
        y = x * w
        y.backward(mg.tensor(seed) if kind == "made inside" else g)
        return w.grad

    w_eager, w_compiled = (mg.tensor(values[0], requires_grad=True) for _ in range(2))
    compiled = mg.compile(fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        for v in values:
            expected = fn(mg.tensor(v), w_eager, grad)
            got = compiled(mg.tensor(v), w_compiled, grad)
            assert np.array_equal(expected.data, got.data)
            assert np.array_equal(w_eager.grad.data, w_compiled.grad.data)
    assert compiled.replays == len(values) - 1


def test_returned_grad_of_a_leaf_is_read_at_each_call(backend):
    """A returned ``w.grad`` is the leaf's gradient of this call, also when the leaf had a
    gradient at the recording and it was set to None (``zero_grad``) since."""
    results = []
    for compile_it in (False, True):
        w = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
        w.grad = mg.tensor([0.5, 0.5, 0.5])

        def fn(x, w=w):
            (x * w).sum().backward()
            return w.grad

        step = mg.compile(fn) if compile_it else fn
        got = []
        for k in range(3):
            got.append(step(mg.tensor([k + 1.0, 2.0, 3.0])))
            assert got[-1] is w.grad
            w.grad = None
        results.append([g.data for g in got])
    for expected, got in zip(*results, strict=True):
        assert np.array_equal(expected, got)


def test_no_grad_evaluation_function(backend):
    model = mlp()
    model.eval()

    @mg.compile
    def evaluate(x):
        with mg.no_grad():
            return F.softmax(model(x), axis=1)

    for x, _ in batches((32, 64)):
        got = evaluate(x)
        with mg.no_grad():
            expected = F.softmax(model(x), axis=1)
        assert np.array_equal(got.data, expected.data)
        assert not got.requires_grad
    assert evaluate.replays == STEPS - 1


def test_called_under_no_grad_records_separately(backend):
    model = mlp()
    model.eval()
    forward = mg.compile(lambda x: model(x))
    x = batches((8, 64), n=1)[0][0]
    with mg.no_grad():
        first = forward(x)
        second = forward(x)
    assert np.array_equal(first.data, second.data)
    assert forward.replays == 1


# ----------------------------------------------------------------------------- read afresh
def test_learning_rate_set_by_a_scheduler_is_read_at_each_replay(backend):
    models = mlp(), mlp()
    opts = [optim.SGD(m.parameters(), lr=0.5) for m in models]
    scheds = [optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5) for o in opts]
    eager = train_step(models[0], opts[0])
    compiled = mg.compile(train_step(models[1], opts[1]))
    for x, y in batches((16, 64)):
        eager(x, y)
        compiled(x, y)
        for s in scheds:
            s.step()
        assert_same_state(models[0], opts[0], models[1], opts[1])
    assert compiled.replays == STEPS - 1


def test_scheduler_step_inside_the_function(backend):
    models = mlp(), mlp()
    opts = [optim.Adam(m.parameters(), lr=0.1) for m in models]
    scheds = [optim.lr_scheduler.ExponentialLR(o, gamma=0.5) for o in opts]

    def make(model, opt, sched):
        inner = train_step(model, opt)

        def step(x, y):
            loss = inner(x, y)
            sched.step()
            return loss
        return step

    eager = make(models[0], opts[0], scheds[0])
    compiled = mg.compile(make(models[1], opts[1], scheds[1]))
    for x, y in batches((16, 64)):
        eager(x, y)
        compiled(x, y)
        assert opts[0].param_groups[0]["lr"] == opts[1].param_groups[0]["lr"]
        assert_same_state(models[0], opts[0], models[1], opts[1])
    assert compiled.replays == STEPS - 1


def test_input_values_changed_in_place_are_read(backend):
    model = mlp()
    model.eval()
    forward = mg.compile(lambda x: model(x))
    x = mg.tensor(np.ones((4, 64), np.float32))
    with mg.no_grad():
        forward(x)
        x.data[...] = 2.0
        got = forward(x)
        expected = model(x)
    assert np.array_equal(got.data, expected.data)


def test_ndarray_arguments_converted_inside(backend):
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    twin = mlp()
    twin_opt = optim.SGD(twin.parameters(), lr=0.1)

    def step_on(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(mg.tensor(x)), y)
            loss.backward()
            opt.step()
            return loss
        return step

    eager, compiled = step_on(twin, twin_opt), mg.compile(step_on(model, opt))
    rng = np.random.default_rng(3)
    for _ in range(STEPS):
        x = rng.standard_normal((16, 64))  # float64: converted to float32 inside
        y = rng.integers(0, 10, 16)
        assert np.array_equal(eager(x, y).data, compiled(x, y).data)
        assert_same_state(twin, twin_opt, model, opt)
    assert compiled.replays == STEPS - 1


def test_bad_targets_still_raise_in_a_replay(backend):
    model = mlp()
    step = mg.compile(train_step(model, optim.SGD(model.parameters(), lr=0.1)))
    x, y = batches((8, 64), n=1)[0]
    step(x, y)
    with pytest.raises(ValueError, match="out of range"):
        step(x, np.full(8, 10))


def test_returned_tensors_do_not_alias_the_next_call(backend):
    model = mlp()
    step = mg.compile(train_step(model, optim.SGD(model.parameters(), lr=0.1)))
    data = batches((16, 64))
    losses = [step(x, y) for x, y in data]
    kept = [loss.data.copy() for loss in losses]
    for x, y in data:
        step(x, y)
    for loss, value in zip(losses, kept, strict=True):
        assert np.array_equal(loss.data, value)
    assert len({id(loss.data) for loss in losses}) == len(losses)


def test_versions_advance_and_an_outside_graph_refuses_stale_weights(backend):
    model = mlp()
    step = mg.compile(train_step(model, optim.SGD(model.parameters(), lr=0.1)))
    x, y = batches((16, 64), n=1)[0]
    step(x, y)
    versions = [p._version for p in model.parameters()]
    out = model(x).sum()  # an eager graph that saves the current weights
    step(x, y)
    assert [p._version for p in model.parameters()] == [v + 1 for v in versions]
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.backward()


# ----------------------------------------------------------------------------- re-recording
def test_new_shapes_record_again(backend):
    model = mlp()
    step = mg.compile(train_step(model, optim.SGD(model.parameters(), lr=0.1)))
    for shape in ((16, 64), (8, 64), (16, 64), (8, 64)):
        x, y = batches(shape, n=1)[0]
        step(x, y)
    assert step.recordings == 2 and step.replays == 2


def test_train_eval_switch_records_again_with_a_warning(backend):
    models = mlp(), mlp()
    opts = [optim.SGD(m.parameters(), lr=0.1) for m in models]
    eager = train_step(models[0], opts[0])
    compiled = mg.compile(train_step(models[1], opts[1]))
    data = batches((16, 64))
    for x, y in data[:2]:
        eager(x, y), compiled(x, y)
    for m in models:
        m.eval()
    with pytest.warns(CompileWarning, match="eval mode"):
        compiled(*data[2])
    eager(*data[2])
    assert_same_state(models[0], opts[0], models[1], opts[1])
    assert compiled.recordings == 2


def test_replaced_parameter_records_again(backend):
    model = mlp()
    step = mg.compile(train_step(model, optim.SGD(model.parameters(), lr=0.1)))
    x, y = batches((16, 64), n=1)[0]
    step(x, y)
    step(x, y)
    model[0].weight = nn.Parameter(np.zeros((128, 64), np.float32))
    with pytest.warns(CompileWarning, match="replaced"):
        step(x, y)
    assert step.recordings == 2


def test_outside_tensor_given_a_new_shape_records_again(backend):
    w = mg.tensor(np.full(3, 2.0, np.float32))
    scaled = mg.compile(lambda x: x * w)
    x = mg.tensor(np.ones(3, np.float32))
    scaled(x), scaled(x)
    w.data = np.full(1, 5.0, np.float32)  # broadcasts: eager code would still run
    with pytest.warns(CompileWarning, match=r"changed from float32 \(3,\)"):
        got = scaled(x)
    assert np.array_equal(got.data, [5.0, 5.0, 5.0])
    assert scaled.recordings == 2


def test_rebound_closure_variable_records_again(backend):
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    scale = 2.0

    def fn():
        x.grad = None
        (x * scale).sum().backward()
        return x.grad

    compiled = mg.compile(fn)
    compiled(), compiled()
    scale = 3.0
    with pytest.warns(CompileWarning, match="closes over"):
        got = compiled()
    assert np.array_equal(got.data, [3.0, 3.0])


def test_changed_attribute_of_a_closed_over_object_records_again(backend):
    # a config object the function reads a number from (cfg.scale): changing the number
    # changes what the function computes; the replay must not keep the recorded value
    class Config:
        scale = 0.0

    cfg = Config()
    cfg.scale = 2.0
    x = mg.tensor([1.0, 2.0], requires_grad=True)

    def fn():
        x.grad = None
        (x * cfg.scale).sum().backward()
        return x.grad

    compiled = mg.compile(fn)
    compiled(), compiled()
    cfg.scale = 3.0
    with pytest.warns(CompileWarning, match="attribute"):
        got = compiled()
    assert np.array_equal(got.data, [3.0, 3.0])


# ----------------------------------------------------------------------------- refusals
def _refused(fn, *args, match):
    compiled = mg.compile(fn)
    with pytest.warns(CompileWarning, match=match):
        first = compiled(*args)
    second = compiled(*args)
    assert compiled.replays == 0 and compiled.eager_calls == 1
    return first, second


@pytest.mark.parametrize("read", [
    lambda t: t.item(), lambda t: t.numpy(), lambda t: bool(t > 0), lambda t: float(t),
    lambda t: t.data.copy(), lambda t: np.asarray(t)])
def test_values_read_in_python_run_eagerly(backend, read):
    w = mg.tensor([1.0, -2.0], requires_grad=True)

    def fn():
        w.grad = None
        loss = (w * w).sum()
        if read(loss) > 3:  # data-dependent control flow
            loss = loss * 2
        loss.backward()
        return w.grad

    first, second = _refused(fn, match="reads tensor values")
    assert np.array_equal(first.data, second.data)


def test_random_numbers_drawn_inside_run_eagerly(backend):
    w = mg.tensor([1.0, 2.0])
    first, second = _refused(lambda: (w * mg.randn(2)).sum(), match="random numbers")
    assert first.item() != second.item()


def test_returning_a_graph_without_backward_runs_eagerly(backend):
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    first, second = _refused(lambda: (w * w).sum(), match="did not run backward")
    second.backward()
    assert np.array_equal(w.grad.data, [2.0, 4.0])


@pytest.mark.parametrize("wrap", [types.SimpleNamespace, Output], ids=["namespace", "dataclass"])
def test_returning_tensors_inside_another_object_runs_eagerly(backend, wrap):
    """A replay cannot rebuild an arbitrary object around this call's tensors: it would
    return the recording's object, with the recording's values."""
    w = mg.tensor([1.0, 2.0], requires_grad=True)

    def fn(x):
        w.grad = None
        loss = (x * w).sum()
        loss.backward()
        return wrap(loss=loss.detach())

    compiled = mg.compile(fn)
    with pytest.warns(CompileWarning, match="returns a"):
        compiled(mg.tensor([1.0, 1.0]))
    second = compiled(mg.tensor([2.0, 3.0]))
    assert np.array_equal(second.loss.data, np.float32(8.0))
    assert compiled.replays == 0


def test_in_place_change_inside_runs_eagerly(backend):
    w = mg.tensor([1.0, 2.0])

    def fn():
        w.add_(1.0)
        return w * 2

    first, second = _refused(fn, match="in place")
    assert np.array_equal(second.data, [6.0, 8.0])


def test_train_eval_switch_inside_runs_eagerly(backend):
    model = mlp()

    def fn(x):
        model.eval()
        with mg.no_grad():
            out = model(x)
        model.train()
        return out

    _refused(fn, batches((4, 64), n=1)[0][0], match="train and eval")


def test_gradient_clipping_inside_runs_eagerly(backend):
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)

    def fn(x, y):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()

    _refused(fn, *batches((8, 64), n=1)[0], match="reads tensor values")


@pytest.mark.skipif(not hasattr(nn.Module, "register_forward_hook"), reason="no module hooks")
def test_module_hooks_are_not_replayed(backend):
    model = mlp()
    model.eval()
    calls = []
    model[0].register_forward_hook(lambda m, args, out: calls.append(1))
    forward = mg.compile(lambda x: model(x))
    x = batches((4, 64), n=1)[0][0]
    with mg.no_grad(), pytest.warns(CompileWarning, match="hooks"):
        forward(x)
    with mg.no_grad():
        forward(x)
    assert len(calls) == 2


def test_decorator_and_repr():
    @mg.compile
    def double(x):
        with mg.no_grad():
            return x * 2

    x = mg.tensor([1.0])
    assert np.array_equal(double(x).data, [2.0]) and np.array_equal(double(x).data, [2.0])
    assert double.__name__ == "double"
    assert "1 recordings, 1 replays" in repr(double)
    assert "def run(args)" in double.source(x)


def test_changed_module_setting_records_again(backend):
    models = mlp(), mlp()
    opts = [optim.SGD(m.parameters(), lr=0.1) for m in models]
    eager = train_step(models[0], opts[0])
    compiled = mg.compile(train_step(models[1], opts[1]))
    data = batches((16, 64))
    for x, y in data[:2]:
        eager(x, y), compiled(x, y)
    for m in models:
        m[1].momentum = 0.5  # BatchNorm's running-statistics momentum
    with pytest.warns(CompileWarning, match="setting of BatchNorm1d"):
        compiled(*data[2])
    eager(*data[2])
    assert_same_state(models[0], opts[0], models[1], opts[1])


def test_one_tensor_passed_twice_records_separately(backend):
    def fn(a, b):
        with mg.no_grad():
            return a * 2 + b

    compiled = mg.compile(fn)
    x, y = mg.tensor([1.0, 2.0]), mg.tensor([10.0, 20.0])
    for a, b in ((x, y), (x, x), (x, y), (y, y)):
        assert np.array_equal(compiled(a, b).data, fn(a, b).data)
    assert compiled.recordings == 2


def test_argument_that_is_also_a_parameter_is_pinned(backend):
    lin = nn.Linear(2, 2)
    x = mg.tensor([[1.0, 2.0]])

    def fn(t):
        with mg.no_grad():
            return lin(x) + t

    compiled = mg.compile(fn)
    compiled(lin.bias), compiled(lin.bias)
    other = mg.tensor([100.0, 200.0], requires_grad=True)
    with pytest.warns(CompileWarning, match="argument 0"):
        got = compiled(other)
    assert np.array_equal(got.data, fn(other).data)


def test_compiled_bound_method_sees_its_object_change(backend):
    class Scaler:
        def __init__(self):
            self.factor = 2.0

        def apply(self, t):
            with mg.no_grad():
                return t * self.factor

    s = Scaler()
    compiled = mg.compile(s.apply)
    t = mg.tensor([1.0, 2.0])
    compiled(t), compiled(t)
    s.factor = 5.0
    with pytest.warns(CompileWarning, match="attribute of the object"):
        assert np.array_equal(compiled(t).data, [5.0, 10.0])


@pytest.mark.skipif(not hasattr(mg.Tensor, "register_hook"), reason="no tensor hooks")
def test_tensor_hooks_are_not_replayed(backend):
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    seen = []

    def fn():
        w.grad = None
        (w * w).sum().backward()
        return w.grad

    compiled = mg.compile(fn)
    compiled(), compiled()
    handle = w.register_hook(lambda g: seen.append(g) or g * 2)
    with pytest.warns(CompileWarning, match="hooks"):
        got = compiled()
    compiled()
    assert len(seen) == 2 and np.array_equal(got.data, [4.0, 8.0])
    handle.remove()
    assert np.array_equal(compiled().data, [2.0, 4.0])


class Residual(nn.Module):
    """A layer used twice and a tensor used twice: gradients summed in the engine's order."""

    def __init__(self):
        super().__init__()
        mg.manual_seed(0)
        self.a, self.b, self.out = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 10)

    def forward(self, x):
        h = self.a(x).relu()
        h = h + self.b(h)
        h = self.b(h).tanh() + h * h
        return self.out(h)


def test_shared_layer_and_residual_sum_like_eager(backend):
    compare_training(Residual, lambda m: optim.Adam(m.parameters(), lr=1e-2), batches((8, 16)))


def test_float64_model(backend):
    rng = np.random.default_rng(5)
    data = [(mg.tensor(rng.standard_normal((8, 16)), dtype=mg.float64), rng.integers(0, 10, 8))
            for _ in range(STEPS)]
    compare_training(lambda: Residual().double(),
                     lambda m: optim.SGD(m.parameters(), lr=0.1, momentum=0.9), data)


def test_two_losses_and_a_dict_result(backend):
    def make():
        mg.manual_seed(0)
        return nn.Linear(4, 3)

    def step_on(lin):
        def step(x):
            lin.zero_grad()
            first = (lin(x) * lin(x)).mean()
            first.backward()
            second = lin(x).sum()
            second.backward()  # accumulates into the same .grad
            return {"first": first, "second": second, "weight": lin.weight}
        return step

    eager_lin, compiled_lin = make(), make()
    eager, compiled = step_on(eager_lin), mg.compile(step_on(compiled_lin))
    for x, _ in batches((5, 4)):
        e, c = eager(x), compiled(x)
        assert set(c) == {"first", "second", "weight"} and c["weight"] is compiled_lin.weight
        assert np.array_equal(e["first"].data, c["first"].data)
        assert np.array_equal(e["second"].data, c["second"].data)
        assert np.array_equal(eager_lin.weight.grad.data, compiled_lin.weight.grad.data)
    assert compiled.replays == STEPS - 1


def test_an_error_while_recording_leaves_the_engine_untouched(backend):
    apply = mg.Function.__dict__["apply"]
    backward = mg.Tensor.__dict__["backward"]

    def fn(x):
        x.sum()
        raise KeyError("inside")

    with pytest.raises(KeyError):
        mg.compile(fn)(mg.tensor([1.0]))
    assert mg.Function.__dict__["apply"] is apply and mg.Tensor.__dict__["backward"] is backward
    w = mg.tensor([3.0], requires_grad=True)
    (w * w).sum().backward()
    assert np.array_equal(w.grad.data, [6.0])


def test_nested_compiled_functions(backend):
    inner = mg.compile(lambda t: t * 3)

    @mg.compile
    def outer(t):
        with mg.no_grad():
            return inner(t) + 1

    t = mg.tensor([1.0, 2.0])
    for _ in range(3):
        assert np.array_equal(outer(t).data, [4.0, 7.0])
    assert outer.replays == 2


def test_static_python_arguments_are_part_of_the_key(backend):
    def scale(t, factor, *, offset=0.0):
        with mg.no_grad():
            return t * factor + offset

    compiled = mg.compile(scale)
    t = mg.tensor([1.0, 2.0])
    for factor, offset in ((2.0, 0.0), (3.0, 0.0), (2.0, 1.0), (2.0, 0.0)):
        assert np.array_equal(compiled(t, factor, offset=offset).data,
                              scale(t, factor, offset=offset).data)
    assert compiled.recordings == 3 and compiled.replays == 1


def test_another_memory_layout_records_again(backend):
    model = mlp(norm="layernorm")
    model.eval()
    forward = mg.compile(lambda x: model(x))
    values = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    with mg.no_grad():
        for x in (mg.from_numpy(values), mg.from_numpy(np.asfortranarray(values)),
                  mg.from_numpy(values)):
            assert np.array_equal(forward(x).data, model(x).data)
    assert forward.recordings == 2 and forward.replays == 1


# ----------------------------------------------------------------------------- benchmark rows
def test_benchmark_rows_have_a_compiled_step_equal_to_eager():
    from minigrad.bench import overhead
    from minigrad.bench import step as step_group

    net = step_group.NETS[0]
    step_group.check_compiled(net)  # raises unless bit-identical
    rows = overhead.cases(quick=True)
    for case in rows:
        assert "compiled" in case.impls
        for _ in range(3):
            case.impls["compiled"]()
        assert case.impls["compiled"].replays == 2


def test_benchmark_jax_step_matches_the_numpy_step():
    jax = pytest.importorskip("jax")
    from minigrad.bench import step as step_group

    for net in step_group.NETS[:2]:
        step = step_group._jax_step(jax, net)  # checks the first loss against NumPy's
        losses = [float(step()) for _ in range(3)]
        assert losses[-1] < losses[0]  # Adam on one batch: the loss goes down


def test_optimizer_made_inside_runs_eagerly(backend):
    model = mlp()

    def fn(x, y):
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # fresh state each call
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    _refused(fn, *batches((8, 64), n=1)[0], match="new Optimizer")


def test_backend_switched_inside_runs_eagerly(backend):
    other = "numpy" if backend == "cython" else "cython"
    w = mg.tensor([1.0, 2.0])

    def fn():
        previous = mg.get_backend()
        mg.set_backend(other)
        try:
            with mg.no_grad():
                return (w * w).sum()
        finally:
            mg.set_backend(previous)

    _refused(fn, match="kernel backend")


def test_tensors_inside_a_list_argument_are_keyed_by_identity(backend):
    def total(ts):
        with mg.no_grad():
            return ts[0] + ts[1]

    compiled = mg.compile(total)
    a, b, c = mg.tensor([1.0]), mg.tensor([2.0]), mg.tensor([30.0])
    items = [a, b]
    assert np.array_equal(compiled(items).data, [3.0])
    assert np.array_equal(compiled(items).data, [3.0])
    items[1] = c  # the same list object, another tensor inside
    assert np.array_equal(compiled(items).data, [31.0])
    assert compiled.recordings == 2 and compiled.replays == 1


def test_closed_over_list_with_a_new_item_records_again(backend):
    weights = [mg.tensor([1.0, 2.0]), mg.tensor([3.0, 4.0])]

    def fn(x):
        with mg.no_grad():
            return x * weights[0] + weights[1]

    compiled = mg.compile(fn)
    x = mg.tensor([1.0, 1.0])
    compiled(x), compiled(x)
    weights[0] = mg.tensor([10.0, 20.0])
    with pytest.warns(CompileWarning, match="closes over"):
        assert np.array_equal(compiled(x).data, fn(x).data)


def test_module_holding_a_plain_list_of_layers(backend):
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = nn.Linear(3, 3), nn.Linear(3, 3)
            self.order = [self.first, self.second]  # a plain list, not registered

        def forward(self, x):
            for layer in self.order:
                x = layer(x)
            return x

    model = Stack()
    forward = mg.compile(lambda x: model(x))
    x = mg.tensor(np.ones((2, 3), np.float32))
    with mg.no_grad():
        forward(x), forward(x)
        model.order.reverse()
        with pytest.warns(CompileWarning, match="setting of Stack"):
            assert np.array_equal(forward(x).data, model(x).data)


def test_parameter_read_without_calling_its_module(backend):
    model = nn.Sequential(nn.Linear(3, 2))

    def fn(x):
        with mg.no_grad():
            return x @ model[0].weight.T

    compiled = mg.compile(fn)
    x = mg.tensor(np.ones((1, 3), np.float32))
    compiled(x), compiled(x)
    model[0].weight = nn.Parameter(np.full((2, 3), 5.0, np.float32))
    with pytest.warns(CompileWarning, match="replaced"):
        assert np.array_equal(compiled(x).data, [[15.0, 15.0]])


def test_layer_replaced_in_an_uncalled_container(backend):
    model = nn.Sequential(nn.Linear(3, 2))

    def fn(x):
        with mg.no_grad():
            return model[0](x)

    compiled = mg.compile(fn)
    x = mg.tensor(np.ones((1, 3), np.float32))
    compiled(x), compiled(x)
    model._modules["0"] = nn.Linear(3, 2)  # what an assignment model[0] = ... would do
    with pytest.warns(CompileWarning, match="replaced"):
        assert np.array_equal(compiled(x).data, fn(x).data)


def test_profiled_calls_run_eagerly(backend):
    profiler = pytest.importorskip("minigrad.profiler")
    w = mg.tensor([1.0, 2.0], requires_grad=True)

    def fn():
        w.grad = None
        (w * w).sum().backward()
        return w.grad

    compiled = mg.compile(fn)
    compiled(), compiled()
    with profiler.profile() as prof:
        got = compiled()
    assert compiled.eager_calls == 1 and np.array_equal(got.data, [2.0, 4.0])
    assert "Mul" in prof.table()
