"""minigrad <-> PyTorch: to_torch / from_torch give the same outputs, gradients, running
statistics and optimizer steps, and optimizer states convert both ways."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim

torch = pytest.importorskip("torch")
from minigrad.interop import (  # noqa: E402 -- after the skip: these need torch at call time
    UnsupportedLayerError,
    from_torch,
    from_torch_optimizer_state,
    to_torch,
    to_torch_optimizer_state,
)

TOL = dict(rtol=1e-5, atol=1e-5)


def _mlp(dropout: float = 0.3) -> nn.Module:
    mg.manual_seed(0)
    # no bias before BatchNorm: its gradient is zero up to rounding, which Adam's m / sqrt(v)
    # would turn into steps of +-lr whose sign is set by rounding noise
    return nn.Sequential(nn.Linear(6, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(16, 8), nn.LayerNorm(8), nn.Tanh(),
                         nn.Linear(8, 3))


def _cnn() -> nn.Module:
    mg.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.InstanceNorm2d(8, affine=True), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding="same", groups=2), nn.GroupNorm(2, 8),
        nn.SiLU(), nn.AvgPool2d(2, stride=1), nn.Conv2d(8, 6, 1, bias=False),
        nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
        nn.Linear(6, 4))


def _inputs(model_kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (8, 6) if model_kind == "mlp" else (4, 3, 9, 9)
    return (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)


MODELS = {"mlp": _mlp, "cnn": _cnn}


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t.numpy()


def _assert_same_state(model: nn.Module, net) -> None:
    theirs = net.state_dict()
    ours = model.state_dict()
    assert list(ours) == list(theirs)
    for key, value in ours.items():
        np.testing.assert_allclose(value, theirs[key].numpy(), **TOL, err_msg=key)


def _no_dropout(model, net) -> None:
    """Dropout draws different masks in each framework: put only the Dropout layers in eval,
    which also checks that each sub-module's mode is its own."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_to_torch_gives_the_same_outputs_and_gradients(backend, kind, mode):
    model = MODELS[kind]()
    if mode == "eval":
        model.train()
        model(mg.tensor(_inputs(kind, 5)))  # running statistics that are not the initial ones
        model.eval()
    net = to_torch(model)
    _assert_same_state(model, net)
    _no_dropout(model, net)
    x = _inputs(kind)
    ours_x, their_x = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours, theirs = model(ours_x), net(their_x)
    np.testing.assert_allclose(ours.numpy(), _np(theirs), **TOL)
    weights = np.random.default_rng(3).standard_normal(ours.shape).astype(np.float32)
    (ours * mg.tensor(weights)).sum().backward()
    (theirs * torch.from_numpy(weights)).sum().backward()
    np.testing.assert_allclose(ours_x.grad.numpy(), their_x.grad.numpy(), rtol=1e-4, atol=1e-5)
    their_params = dict(net.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), their_params[name].grad.numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=name)
    _assert_same_state(model, net)  # the running statistics moved alike in training


@pytest.mark.parametrize("kind", MODELS)
def test_round_trips_are_exact_and_keep_settings(kind):
    model = MODELS[kind]()
    model(mg.tensor(_inputs(kind)))  # running stats and num_batches_tracked away from init
    model[1].eval()
    back = from_torch(to_torch(model))
    assert repr(back) == repr(model)
    for (key, a), (key_b, b) in zip(model.state_dict().items(), back.state_dict().items(),
                                    strict=True):
        assert key == key_b and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert [m.training for m in back.modules()] == [m.training for m in model.modules()]

    net = to_torch(MODELS[kind]())
    net(torch.from_numpy(_inputs(kind)))
    again = to_torch(from_torch(net))
    assert repr(again) == repr(net)
    for key, value in net.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_momentum_is_mapped_between_conventions():
    model = nn.Sequential(nn.BatchNorm1d(3, momentum=0.9), nn.BatchNorm1d(3, momentum=0.75),
                          nn.InstanceNorm1d(3, momentum=0.8, track_running_stats=True))
    net = to_torch(model)
    assert [m.momentum for m in net] == [0.1, 0.25, 0.2]
    assert [m.momentum for m in from_torch(net)] == [0.9, 0.75, 0.8]


def test_num_batches_tracked_requires_grad_dtype_and_sharing_are_carried():
    mg.manual_seed(0)
    shared = nn.Linear(3, 3, dtype=np.float64)
    model = nn.Sequential(shared, nn.BatchNorm1d(3, dtype=np.float64), shared)
    model[1].weight.requires_grad = False
    x = mg.tensor(np.random.default_rng(0).standard_normal((5, 3)), dtype=np.float64)
    for _ in range(3):
        model(x)
    net = to_torch(model)
    assert net[0] is net[2]
    assert net[0].weight.dtype == torch.float64
    assert int(net[1].num_batches_tracked) == 3
    assert not net[1].weight.requires_grad and net[1].bias.requires_grad
    back = from_torch(net)
    assert back[0] is back[2] and back[0].weight.dtype == np.float64
    assert int(back[1].num_batches_tracked.item()) == 3
    assert not back[1].weight.requires_grad


def test_weights_are_copies_not_aliases():
    model = _mlp()
    net = to_torch(model)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert not np.allclose(model[0].weight.numpy(), net[0].weight.detach().numpy())


def test_dropout_keeps_its_probability_and_mode():
    net = to_torch(nn.Sequential(nn.Dropout(0.25)))
    x = torch.ones(200, 100)
    y = net(x)
    kept = y != 0
    assert 0.2 < 1 - kept.float().mean().item() < 0.3
    assert torch.allclose(y[kept], torch.tensor(1 / 0.75))
    back = from_torch(net.eval())
    assert back[0].p == 0.25 and not back[0].training


def _optimizers(kind: str, ours, theirs):
    if kind == "adam":
        return optim.Adam(ours, lr=1e-2, weight_decay=1e-3), torch.optim.Adam(
            theirs, lr=1e-2, weight_decay=1e-3)
    if kind == "adamw":
        return optim.AdamW(ours, lr=1e-2), torch.optim.AdamW(theirs, lr=1e-2)
    if kind == "rmsprop":
        options = dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=1e-3)
        return optim.RMSprop(ours, **options), torch.optim.RMSprop(theirs, **options)
    return optim.SGD(ours, lr=0.05, momentum=0.9, nesterov=True), torch.optim.SGD(
        theirs, lr=0.05, momentum=0.9, nesterov=True)


def _train(model, net, opt, topt, kind: str, steps: int, seed: int) -> None:
    for step in range(steps):
        x = _inputs(kind, seed + step)
        target = np.random.default_rng(seed + step).integers(0, 3 if kind == "mlp" else 4,
                                                             len(x))
        opt.zero_grad()
        mg.nn.functional.cross_entropy(model(mg.tensor(x)), mg.tensor(target)).backward()
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(x)),
                                          torch.from_numpy(target)).backward()
        topt.step()


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("rule", ["adam", "adamw", "sgd", "rmsprop"])
def test_optimizer_steps_agree_and_states_convert_both_ways(backend, kind, rule):
    model = MODELS[kind]()
    net = to_torch(model)
    _no_dropout(model, net)
    opt, topt = _optimizers(rule, model.parameters(), net.parameters())
    _train(model, net, opt, topt, kind, 3, 0)
    _assert_same_state(model, net)

    # minigrad -> torch: a fresh torch optimizer continues where minigrad's left off
    net2 = to_torch(model)
    _no_dropout(model, net2)
    _, topt2 = _optimizers(rule, [mg.zeros(1)], net2.parameters())
    topt2.load_state_dict(to_torch_optimizer_state(opt))
    # torch -> minigrad: likewise from the torch side
    model2 = from_torch(net)
    opt2, _ = _optimizers(rule, model2.parameters(), [torch.zeros(1)])
    opt2.load_state_dict(from_torch_optimizer_state(topt))

    _train(model, net2, opt, topt2, kind, 2, 10)
    _train(model2, net, opt2, topt, kind, 2, 10)
    _assert_same_state(model, net2)
    _assert_same_state(model2, net)
    _assert_same_state(model, net)


def test_optimizer_state_round_trip_keeps_every_entry(tmp_path):
    model = _mlp()
    opt = optim.Adam(model.parameters(), lr=3e-3, betas=(0.8, 0.9), amsgrad=True)
    _train(model, to_torch(model), opt, torch.optim.SGD([torch.zeros(1)], lr=0), "mlp", 2, 0)
    saved = opt.state_dict()
    back = from_torch_optimizer_state(to_torch_optimizer_state(opt))
    assert back["param_groups"][0]["decoupled_weight_decay"] is False
    assert back["param_groups"][0]["betas"] == (0.8, 0.9)
    assert back["state"].keys() == saved["state"].keys()
    for index, entry in saved["state"].items():
        assert back["state"][index]["step"] == entry["step"] == 2
        for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            np.testing.assert_array_equal(back["state"][index][name], entry[name])
    mg.save(back, tmp_path / "opt.npz")  # plain NumPy and Python values only
    opt.load_state_dict(mg.load(tmp_path / "opt.npz"))


def test_a_torch_optimizer_driven_by_one_cycle_converts():
    # PyTorch's OneCycleLR keeps its range in the param groups; minigrad's keeps it in the
    # scheduler, so those entries are left out and the lr, momentum and initial_lr carried
    net = torch.nn.Linear(3, 2)
    topt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.1, total_steps=10)
    net(torch.ones(1, 3)).sum().backward()
    topt.step()
    scheduler.step()
    state = from_torch_optimizer_state(topt)
    model = from_torch(net)
    opt = optim.SGD(model.parameters(), lr=1.0, momentum=0.5)
    opt.load_state_dict(state)
    group, theirs = opt.param_groups[0], topt.param_groups[0]
    for key in ("lr", "momentum", "initial_lr"):
        assert group[key] == theirs[key], key
    # resuming at last_epoch=1 sets the lr of step 2, where torch's next step() goes
    resumed = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, last_epoch=1)
    for _ in range(5):
        scheduler.step()
        for key in ("lr", "momentum"):
            assert group[key] == pytest.approx(theirs[key]), key
        resumed.step()


@pytest.mark.parametrize("bad", [{"state": {}, "param_groups": 5},
                                 {"state": [], "param_groups": []},
                                 {"state": {}, "param_groups": [5]}])
def test_a_malformed_optimizer_state_names_the_problem(bad):
    with pytest.raises(ValueError, match="PyTorch optimizer state dict"):
        from_torch_optimizer_state(bad)


def test_adamw_state_stays_adamw_in_torch():
    model = _mlp()
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    state = to_torch_optimizer_state(opt)
    assert state["param_groups"][0]["decoupled_weight_decay"] is True
    plain = optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        plain.load_state_dict(from_torch_optimizer_state(torch.optim.AdamW(
            to_torch(model).parameters()).state_dict()))


def test_arrays_added_to_a_layer_are_named_by_path():
    from torch.nn.utils import prune

    pruned = torch.nn.Linear(2, 2)
    prune.l1_unstructured(pruned, "weight", amount=0.5)
    with pytest.raises(UnsupportedLayerError, match=r"'1' \(Linear\).*'weight_orig'.*pruning"):
        from_torch(torch.nn.Sequential(torch.nn.ReLU(), pruned))
    masked = torch.nn.Linear(2, 2)
    masked.register_buffer("mask", torch.ones(2))
    with pytest.raises(UnsupportedLayerError, match=r"the model itself \(Linear\).*'mask'"):
        from_torch(masked)
    ours = nn.Linear(2, 2)
    ours.register_buffer("mask", mg.ones(2))
    with pytest.raises(UnsupportedLayerError, match=r"'0' \(Linear\).*'mask'"):
        to_torch(nn.Sequential(ours))


def test_layers_without_counterpart_are_named_by_path_and_class():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(2, 2), nn.ModuleList([Custom(), MyLinear(2, 2)]))
    with pytest.raises(UnsupportedLayerError, match=r"'1\.0' \(Custom\).*'1\.1' \(MyLinear\)"):
        to_torch(model)
    with pytest.raises(UnsupportedLayerError, match="the model itself"):
        to_torch(Custom())
    net = torch.nn.Sequential(torch.nn.GELU(approximate="tanh"),
                              torch.nn.BatchNorm1d(3, momentum=None),
                              torch.nn.Sequential(torch.nn.LSTM(2, 2)),
                              torch.nn.Conv2d(1, 1, 3, padding_mode="reflect"),
                              torch.nn.LayerNorm(3, bias=False), torch.nn.Softmax())
    with pytest.raises(UnsupportedLayerError) as info:
        from_torch(net)
    message = str(info.value)
    for expected in ("'0' (GELU): approximate='tanh'", "'1' (BatchNorm1d): momentum=None",
                     "'2.0' (LSTM)", "'3' (Conv2d): padding_mode='reflect'",
                     "'4' (LayerNorm): bias=False", "'5' (Softmax): dim=None"):
        assert expected in message
    with pytest.raises(UnsupportedLayerError, match=r"'1' \(Linear\): dtype float16"):
        from_torch(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(2, 2).half()))
    with pytest.raises(TypeError, match="bfloat16"):
        from_torch(torch.nn.Linear(2, 2).to(torch.bfloat16))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        from_torch(_mlp())
    with pytest.raises(TypeError, match="minigrad Module"):
        to_torch(net)


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=2), (2, 3, 11)),
    (nn.InstanceNorm1d(3, affine=True, track_running_stats=True), (2, 3, 7)),
    (nn.RMSNorm((3, 4)), (2, 3, 4)),
    (nn.RMSNorm(4, eps=1e-3, elementwise_affine=False), (2, 3, 4)),
    (nn.LeakyReLU(0.2), (3, 4)), (nn.Sigmoid(), (3, 4)), (nn.GELU(), (3, 4)),
    (nn.Softmax(dim=0), (3, 4)), (nn.LogSoftmax(dim=1), (3, 4)), (nn.Identity(), (3, 4)),
    (nn.Flatten(0, 1), (2, 3, 4)),
    (nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True), (1, 2, 8, 8)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
     (1, 2, 8, 8)),
    (nn.AdaptiveAvgPool2d((3, None)), (1, 2, 7, 5)),
])
def test_every_layer_matches_in_both_modes(backend, layer, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for mode in (True, False):
        layer.train(mode)
        net = to_torch(nn.Sequential(layer))
        ours_x, their_x = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ours, theirs = layer(ours_x), net(their_x)
        np.testing.assert_allclose(ours.numpy(), _np(theirs), **TOL)
        ours.sum().backward()
        theirs.sum().backward()
        np.testing.assert_allclose(ours_x.grad.numpy(), their_x.grad.numpy(), **TOL)
        _assert_same_state(nn.Sequential(layer), net)


def test_module_dict_and_embedding_convert_both_ways(backend):
    mg.manual_seed(2)
    model = nn.ModuleDict({"emb": nn.Embedding(10, 4, padding_idx=0, max_norm=1.5,
                                               scale_grad_by_freq=True),
                           "head": nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax())})
    net = to_torch(model)
    assert isinstance(net, torch.nn.ModuleDict) and list(net) == ["emb", "head"]
    assert net["emb"].padding_idx == 0 and net["emb"].max_norm == 1.5
    assert net["emb"].scale_grad_by_freq
    ids = np.array([[1, 0, 3, 3], [9, 2, 2, 0]])
    ours = model["head"](model["emb"](mg.tensor(ids)))
    theirs = net["head"](net["emb"](torch.from_numpy(ids)))
    np.testing.assert_allclose(ours.numpy(), _np(theirs), **TOL)
    (ours * ours).sum().backward()
    (theirs * theirs).sum().backward()
    np.testing.assert_allclose(model["emb"].weight.grad.numpy(), net["emb"].weight.grad.numpy(),
                               **TOL)
    _assert_same_state(model, net)  # max_norm renormalised the same rows in place
    back = from_torch(net)
    assert repr(back) == repr(model)
    with pytest.raises(UnsupportedLayerError, match="sparse=True"):
        from_torch(torch.nn.Embedding(3, 2, sparse=True))


def test_load_state_dict_accepts_pytorch_state_dicts():
    model = _cnn()
    net = to_torch(_cnn().train())
    net(torch.from_numpy(_inputs("cnn")))
    model.load_state_dict(net.state_dict())  # torch tensors, num_batches_tracked included
    _assert_same_state(model, net)
    model.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()})
    _assert_same_state(model, net)
    with torch.no_grad():
        net[0].weight.mul_(2)
    model.load_state_dict(dict(net.named_parameters()), strict=False)  # requires grad
    np.testing.assert_array_equal(model[0].weight.numpy(), net[0].weight.detach().numpy())
    bad = dict(net.state_dict())
    bad["0.weight"] = bad["0.weight"].to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"0\.weight: got Tensor of dtype torch.bfloat16"):
        model.load_state_dict(bad)


def test_importing_minigrad_does_not_import_torch_onnx_or_safetensors():
    code = ("import sys, minigrad, minigrad.interop; "
            "loaded = [m for m in ('torch', 'onnx', 'onnxruntime', 'safetensors', 'jax') "
            "if m in sys.modules]; print(loaded); sys.exit(1 if loaded else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_torch_the_error_names_the_extra(monkeypatch):
    model = _mlp()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"minigrad-cython\[torch\]"):
        to_torch(model)
