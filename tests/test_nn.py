"""Module system, layers, activations, dropout and initialisers."""

import math
import re

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 2, bias=False)
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.not_a_parameter = np.zeros(3)

    def forward(self, x):
        return self.out(self.norm(self.hidden(x)).relu()) * self.scale


def test_registration_and_traversal():
    model = TwoLayer()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["scale", "hidden.weight", "hidden.bias", "norm.weight", "norm.bias",
                     "out.weight"]
    assert [type(m).__name__ for m in model.children()] == ["Linear", "BatchNorm1d", "Linear"]
    assert len(list(model.modules())) == 4
    assert [n for n, _ in model.named_buffers()] == ["norm.running_mean", "norm.running_var",
                                                    "norm.num_batches_tracked"]
    assert isinstance(model.not_a_parameter, np.ndarray)
    model.out = nn.Identity()  # reassigning replaces the registration
    assert "out.weight" not in dict(model.named_parameters())


def test_shared_parameter_is_listed_once():
    layer = nn.Linear(3, 3)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert len(list(model.parameters())) == 2


def test_shared_module_and_tied_weight_appear_under_every_name_in_the_state_dict():
    # PyTorch's state dict names a shared module's state under each of its paths (and its
    # named_parameters once); its state dicts must load here and ours there
    layer = nn.Linear(3, 3)
    model = nn.Sequential(layer, nn.ReLU(), layer, nn.BatchNorm1d(3))
    model[3].weight = layer.bias  # a tied parameter across two modules; it keeps its place
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias",
                           "3.running_mean", "3.running_var", "3.num_batches_tracked"]
    assert [n for n, _ in model.named_modules(remove_duplicate=False)] == ["", "0", "1", "2",
                                                                          "3"]
    state = {k: v + 1 for k, v in state.items()}
    model.load_state_dict(state)
    np.testing.assert_array_equal(layer.weight.numpy(), state["0.weight"])
    state["2.bias"] = state["2.bias"] + 1  # the two names of one tensor now disagree
    with pytest.raises(ValueError, match=r"2.bias: the same tensor as 0.bias, but with other"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(layer.bias.numpy(), state["0.bias"])  # nothing was loaded


def test_a_shared_batchnorm_loads_an_old_state_dict_under_each_of_its_names():
    # an older state dict lacks num_batches_tracked under every path of the shared layer
    norm = nn.BatchNorm1d(3)
    model = nn.Sequential(norm, nn.ReLU(), norm)
    state = {k: v + 1 for k, v in model.state_dict().items() if "num_batches" not in k}
    model.load_state_dict(state)
    np.testing.assert_array_equal(norm.running_mean.numpy(), state["2.running_mean"])
    assert norm.num_batches_tracked.numpy() == 0


def test_train_eval_reach_every_descendant_and_zero_grad():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(4)))
    model.eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model(mg.randn(5, 4)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_round_trip_gives_identical_outputs():
    mg.manual_seed(0)
    a, b = TwoLayer(), TwoLayer()
    x = mg.randn(6, 4)
    a(x)  # updates running stats, so buffers differ from b's
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    state = a.state_dict()
    state["hidden.weight"][...] = 0  # a state dict is a copy
    assert np.any(a.hidden.weight.numpy() != 0)


def test_strict_load_reports_every_problem_at_once():
    model = TwoLayer()
    state = model.state_dict()
    del state["hidden.bias"]
    state["extra.weight"] = np.zeros(2)
    state["out.weight"] = np.zeros((3, 3))
    with pytest.raises(KeyError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "hidden.bias" in message and "extra.weight" in message
    assert "out.weight: expected (2, 8), got (3, 3)" in message
    before = model.hidden.weight.numpy().copy()
    state2 = model.state_dict()
    state2["hidden.weight"] = np.ones((8, 4))
    del state2["hidden.bias"]
    model.load_state_dict(state2, strict=False)  # loads what matches
    assert np.all(model.hidden.weight.numpy() == 1) and not np.all(before == 1)
    with pytest.raises(ValueError, match="mis-shaped"):
        model.load_state_dict({"hidden.weight": np.ones((2, 2))}, strict=False)


def test_nested_repr():
    text = repr(nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Dropout(0.2))))
    assert "(0): Linear(in_features=2, out_features=3, bias=True)" in text
    assert "(1): Sequential(\n    (0): ReLU()\n    (1): Dropout(p=0.2)\n  )" in text


def test_module_list_and_sequential_indexing():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert isinstance(seq[1], nn.ReLU) and len(seq[:2]) == 2
    assert seq(mg.randn(4, 2)).shape == (4, 1)


def test_linear_shapes_init_and_errors():
    mg.manual_seed(1)
    layer = nn.Linear(50, 20)
    assert layer.weight.shape == (20, 50) and layer.bias.shape == (20,)
    bound = 1 / math.sqrt(50)
    assert np.abs(layer.weight.numpy()).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.8 * bound  # spans the range
    assert np.abs(layer.bias.numpy()).max() <= bound
    x = mg.randn(7, 50)
    np.testing.assert_allclose(layer(x).numpy(),
                               x.numpy() @ layer.weight.numpy().T + layer.bias.numpy(),
                               rtol=1e-5)
    with pytest.raises(ValueError, match=r"Linear\(50, 20\).*\(7, 40\)"):
        layer(mg.randn(7, 40))


@pytest.mark.parametrize("shape", [(4, 3), (0, 3), (2, 0, 3)])
@pytest.mark.parametrize("out", [0, 2])
def test_linear_backward_with_no_outputs_or_no_samples(backend, shape, out):
    # an empty side gives zero gradients of the right shapes (the leading dims were once
    # inferred by reshape(-1, 0), which NumPy cannot do)
    x = mg.tensor(np.ones(shape), requires_grad=True)
    layer = nn.Linear(3, out)
    layer(x).sum().backward()
    assert x.grad.shape == shape
    np.testing.assert_allclose(x.grad.numpy(),
                               np.broadcast_to(layer.weight.numpy().sum(0), shape), rtol=1e-6)
    assert layer.weight.grad.shape == (out, 3) and layer.bias.grad.shape == (out,)
    rows = math.prod(shape[:-1])
    np.testing.assert_array_equal(layer.bias.grad.numpy(), np.full(out, float(rows)))
    np.testing.assert_array_equal(layer.weight.grad.numpy(), np.full((out, 3), float(rows)))


ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Tanh(), np.tanh),
    (nn.GELU(), lambda x: x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))),
    (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
    (nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (nn.LogSoftmax(dim=1), lambda x: x - np.log(np.exp(x).sum(1, keepdims=True))),
    (nn.Identity(), lambda x: x),
]


@pytest.mark.parametrize("layer, reference", ACTIVATIONS,
                         ids=[type(a[0]).__name__ for a in ACTIVATIONS])
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-12)])
def test_activation_layers_match_numpy(rng, layer, reference, dtype, rtol):
    x = (rng.standard_normal((4, 6)) * 3).astype(dtype)
    y = layer(mg.tensor(x, dtype=dtype))
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), reference(x.astype(np.float64)), rtol=rtol,
                               atol=rtol)


def test_flatten_layer():
    assert nn.Flatten()(mg.randn(2, 3, 4)).shape == (2, 12)
    assert nn.Flatten(0)(mg.randn(2, 3, 4)).shape == (24,)


def test_dropout_statistics_and_eval_identity():
    mg.manual_seed(3)
    layer = nn.Dropout(0.3)
    x = mg.ones(200, 500)
    y = layer(x).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)  # inverted scaling
    assert abs(y.mean() - 1) < 0.02
    layer.eval()
    assert layer(x) is x
    x = mg.randn(10, 10, requires_grad=True)
    mg.manual_seed(4)
    out = F.dropout(x, 0.5)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy() != 0, out.numpy() != 0)
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)


def test_dropout_is_reproducible_with_manual_seed():
    mg.manual_seed(11)
    a = F.dropout(mg.ones(50), 0.5).numpy()
    mg.manual_seed(11)
    np.testing.assert_array_equal(a, F.dropout(mg.ones(50), 0.5).numpy())


def test_initialisers():
    mg.manual_seed(5)
    w = nn.Parameter(np.empty((300, 200), dtype=np.float32))
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / 200)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.95 * bound
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 200), rel=0.03)
    nn.init.xavier_uniform_(w)
    assert np.abs(w.numpy()).max() <= math.sqrt(6 / 500)
    nn.init.xavier_normal_(w)
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 500), rel=0.03)
    nn.init.normal_(w, 2.0, 0.5)
    assert w.numpy().mean() == pytest.approx(2.0, abs=0.01)
    nn.init.uniform_(w, -1, 3)
    assert w.numpy().min() >= -1 and w.numpy().max() < 3
    nn.init.zeros_(w)
    assert not w.numpy().any()
    nn.init.ones_(w)
    assert np.all(w.numpy() == 1)
    with pytest.raises(ValueError, match="at least 2 dims"):
        nn.init.xavier_uniform_(nn.Parameter(np.zeros(3)))


@pytest.mark.parametrize("fn", [F.relu, F.sigmoid, F.tanh, F.gelu, F.silu,
                                lambda x: F.leaky_relu(x, 0.3)])
def test_activation_gradcheck_on_smooth_points(rng, fn):
    x = rng.standard_normal((3, 4))
    x = np.where(np.abs(x) < 0.1, 0.5, x)  # keep away from ReLU's kink
    assert mg.gradcheck(fn, mg.tensor(x, dtype=np.float64, requires_grad=True))


# ----------------------------------------------------------------------------- one dtype rule

LAYERS = [  # (name, layer factory taking a dtype, input shape)
    ("Linear", lambda dt: nn.Linear(3, 2, dtype=dt), (4, 3)),
    ("Linear-no-bias", lambda dt: nn.Linear(3, 2, bias=False, dtype=dt), (4, 3)),
    ("BatchNorm1d", lambda dt: nn.BatchNorm1d(3, dtype=dt), (4, 3)),
    ("BatchNorm1d-no-affine", lambda dt: nn.BatchNorm1d(3, affine=False, dtype=dt), (4, 3)),
    ("BatchNorm2d", lambda dt: nn.BatchNorm2d(3, dtype=dt), (2, 3, 2, 2)),
    ("LayerNorm", lambda dt: nn.LayerNorm(3, dtype=dt), (4, 3)),
]


@pytest.mark.parametrize("param_dtype, input_dtype, fixes", [
    (np.float32, np.float64, r"\(x.float\(\)\) or the model \(model.double\(\)\)"),
    (np.float64, np.float32, r"\(x.double\(\)\) or the model \(model.float\(\)\)"),
])
def test_every_layer_refuses_another_float_dtype_with_one_message(backend, param_dtype,
                                                                   input_dtype, fixes):
    messages = set()
    for _, make, shape in LAYERS:
        layer = make(param_dtype)
        x = mg.tensor(np.ones(shape), dtype=input_dtype)
        with pytest.raises(TypeError) as info:
            layer(x)
        messages.add(str(info.value))
    assert len(messages) == 1, messages
    message = messages.pop()
    assert np.dtype(input_dtype).name in message and np.dtype(param_dtype).name in message
    assert re.search(fixes, message), message


def test_linear_refuses_an_integer_input(backend):
    with pytest.raises(TypeError, match=r"int64 .*x.float\(\)"):
        nn.Linear(3, 2)(mg.tensor(np.ones((4, 3), np.int64)))
