"""nn.ModuleDict and Module.apply, as PyTorch defines them (and compared with torch itself where
it is installed)."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim


def test_module_dict_registers_in_insertion_order():
    heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "box": nn.Linear(4, 2)})
    heads["norm"] = nn.LayerNorm(4)
    heads.update([("act", nn.ReLU())])
    assert list(heads) == ["cls", "box", "norm", "act"] == list(heads.keys())
    assert len(heads) == 4 and "box" in heads and "weight" not in heads
    assert [m for _, m in heads.items()] == list(heads.values())
    assert list(heads.state_dict()) == ["cls.weight", "cls.bias", "box.weight", "box.bias",
                                        "norm.weight", "norm.bias"]
    assert len(list(heads.parameters())) == 6
    assert isinstance(heads.pop("box"), nn.Linear) and "box" not in heads
    del heads["act"]
    assert list(heads) == ["cls", "norm"]
    heads["cls"] = nn.Linear(4, 5)  # replacing keeps the position
    assert list(heads) == ["cls", "norm"] and heads["cls"].out_features == 5
    heads.update(nn.ModuleDict({"extra": nn.Tanh()}))
    assert list(heads) == ["cls", "norm", "extra"]
    heads.clear()
    assert len(heads) == 0 and list(heads.parameters()) == []


def test_module_dict_inside_a_model_trains_and_reloads():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 4)
            self.heads = nn.ModuleDict({"a": nn.Linear(4, 1), "b": nn.Linear(4, 2)})

        def forward(self, x):
            h = self.body(x).relu()
            return {name: head(h) for name, head in self.heads.items()}

    model = TwoHeads()
    opt = optim.SGD(model.parameters(), lr=0.1)
    out = model(mg.randn(5, 3))
    (out["a"].sum() + out["b"].sum()).backward()
    before = model.heads["b"].weight.data.copy()
    opt.step()
    assert not np.array_equal(before, model.heads["b"].weight.data)
    copy = TwoHeads().load_state_dict(model.state_dict())
    np.testing.assert_array_equal(copy.heads["b"].weight.data, model.heads["b"].weight.data)


@pytest.mark.parametrize("call, error, match", [
    (lambda d: d.__setitem__(1, nn.ReLU()), TypeError, "strings"),
    (lambda d: d.__setitem__("a.b", nn.ReLU()), KeyError, "'.'"),
    (lambda d: d.__setitem__("", nn.ReLU()), KeyError, "non-empty"),
    (lambda d: d.__setitem__("training", nn.ReLU()), KeyError, "shadow"),
    (lambda d: d.__setitem__("forward", nn.ReLU()), KeyError, "shadow"),
    (lambda d: d.__setitem__("x", np.ones(2)), TypeError, "Module"),
    (lambda d: d["missing"], KeyError, "missing"),
    (lambda d: d.update([nn.ReLU()]), TypeError, "pairs"),
    (lambda d: d(mg.ones(2)), NotImplementedError, "forward"),
])
def test_module_dict_bad_use(call, error, match):
    with pytest.raises(error, match=match):
        call(nn.ModuleDict({"a": nn.ReLU()}))


def _nested():
    return nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)),
                         nn.ModuleDict({"h": nn.Tanh()}))


def test_apply_visits_children_before_parents_and_returns_self():
    model = _nested()
    seen = []
    assert model.apply(seen.append) is model
    # PyTorch: for each child (in order) child.apply(fn), then fn(self)
    want = [model[0], model[1][0], model[1][1], model[1], model[2]["h"], model[2], model]
    assert [id(m) for m in seen] == [id(m) for m in want]


def test_apply_initialises_weights():
    def init(module):
        if isinstance(module, nn.Linear):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    model = _nested().apply(init)
    for layer in (model[0], model[1][1]):
        assert np.all(layer.weight.data == 1) and not layer.bias.data.any()
    with pytest.raises(TypeError, match="function"):
        model.apply("not callable")


def test_apply_visits_a_child_held_twice_once_per_parent_as_torch():
    torch = pytest.importorskip("torch")

    def halve(module):
        if hasattr(module, "weight"):
            module.weight.data[...] *= 0.5

    shared = nn.Linear(2, 2)
    nn.init.ones_(shared.weight)
    ours = nn.Sequential(nn.Sequential(shared), shared, shared)
    tied = torch.nn.Linear(2, 2)
    torch.nn.init.ones_(tied.weight)
    theirs = torch.nn.Sequential(torch.nn.Sequential(tied), tied, tied)
    with torch.no_grad():
        theirs.apply(halve)
    ours.apply(halve)
    assert tied.weight[0, 0].item() == 0.25  # once under each parent
    np.testing.assert_array_equal(shared.weight.numpy(), tied.weight.detach().numpy())


def test_apply_order_and_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(
        torch.nn.Linear(2, 3),
        torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(3, 1)),
        torch.nn.ModuleDict({"h": torch.nn.Tanh(), "g": torch.nn.Linear(1, 1)}),
    )
    ours = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)),
                         nn.ModuleDict({"h": nn.Tanh(), "g": nn.Linear(1, 1)}))
    names_theirs, names_ours = [], []
    theirs.apply(lambda m: names_theirs.append(type(m).__name__))
    ours.apply(lambda m: names_ours.append(type(m).__name__))
    assert names_ours == names_theirs
    assert list(ours.state_dict()) == list(theirs.state_dict())
