"""Optimizer state: PyTorch's per-parameter keys, state_dict round trips, atomic
load_state_dict (checked against a deep copy), PyTorch's own state dicts, and the per-group
cache of step() seeing every change. Every test runs on both kernel backends."""

from __future__ import annotations

import numpy as np
import pytest
from optim_cases import CASES, case_id, grads_for, make_params, set_grads

from minigrad import nn, optim
from minigrad.serialization import load, save

pytestmark = pytest.mark.usefixtures("backend")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_state_dict_round_trip_resumes_identically(case, tmp_path):
    cls, _, options = case
    grads = grads_for(10, n_steps=6)
    reference = make_params(11, np.float32)
    opt = cls(reference, **options)
    for g in grads:
        set_grads(reference, g)
        opt.step()

    resumed = make_params(11, np.float32)
    first = cls(resumed, **options)
    for g in grads[:3]:
        set_grads(resumed, g)
        first.step()
    save({"optim": first.state_dict()}, tmp_path / "ckpt.npz")
    # A fresh optimizer with other hyperparameters: load must restore them as well.
    other = dict(options, lr=options.get("lr", 1e-2) * 3)
    second = cls(resumed, **other)
    second.load_state_dict(load(tmp_path / "ckpt.npz")["optim"])
    assert second.param_groups[0]["lr"] == first.param_groups[0]["lr"]
    for g in grads[3:]:
        set_grads(resumed, g)
        second.step()
    for p, q in zip(resumed, reference, strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_layout():
    params = make_params(12, np.float64, shapes=[(2, 3), (3,)])
    opt = optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}])
    set_grads(params, [np.ones((2, 3)), None])
    opt.step()
    sd = opt.state_dict()
    assert list(sd["state"]) == [0]  # parameter 1 never had a gradient
    assert sd["state"][0]["step"] == 1
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert sd["state"][0]["exp_avg"].shape == (2, 3)
    np.testing.assert_allclose(sd["state"][0]["exp_avg"], 0.1)
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    sd["state"][0]["exp_avg"][...] = 7  # a copy: the optimizer is not affected
    assert opt.state_dict()["state"][0]["exp_avg"][0, 0] == pytest.approx(0.1)


def test_load_state_dict_rejects_mismatches_and_leaves_state_alone():
    params = make_params(13, np.float64, shapes=[(2,), (3,)])
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    set_grads(params, [np.ones(2), np.ones(3)])
    opt.step()
    good = opt.state_dict()

    bad_shape = opt.state_dict()
    bad_shape["state"][1]["momentum_buffer"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        opt.load_state_dict(bad_shape)
    bad_groups = {"state": {}, "param_groups": good["param_groups"] * 2}
    with pytest.raises(ValueError, match="param groups"):
        opt.load_state_dict(bad_groups)
    bad_key = opt.state_dict()
    bad_key["state"][0]["exp_avg"] = np.zeros(2)
    with pytest.raises(ValueError, match="exp_avg"):
        opt.load_state_dict(bad_key)
    bad_lr = opt.state_dict()
    bad_lr["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="learning rate"):
        opt.load_state_dict(bad_lr)
    with pytest.raises(ValueError, match="keys"):
        opt.load_state_dict({"state": {}})
    after = opt.state_dict()
    np.testing.assert_array_equal(
        after["state"][1]["momentum_buffer"], good["state"][1]["momentum_buffer"]
    )
    assert after["param_groups"][0]["lr"] == 0.1


# --------------------------------------------------------------------------- per-parameter state
@pytest.mark.parametrize(
    "make, keys",
    [
        (lambda ps: optim.SGD(ps, lr=0.1), None),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), {"momentum_buffer"}),
        (lambda ps: optim.Adam(ps), {"step", "exp_avg", "exp_avg_sq"}),
        (lambda ps: optim.AdamW(ps, amsgrad=True),
         {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
        (lambda ps: optim.RMSprop(ps), {"step", "square_avg"}),
        (lambda ps: optim.RMSprop(ps, momentum=0.5, centered=True),
         {"step", "square_avg", "momentum_buffer", "grad_avg"}),
    ],
)
def test_state_is_kept_per_parameter_under_pytorchs_names(make, keys):
    params = make_params(30, np.float32, shapes=[(2, 3), (4,)])
    opt = make(params)
    set_grads(params, [np.ones((2, 3)), None])
    opt.step()
    opt.step()
    assert params[1] not in opt.state  # never had a gradient
    if keys is None:
        assert opt.state == {}
        return
    state = opt.state[params[0]]
    assert set(state) == keys
    if "step" in keys:
        assert state["step"] == 2 and type(state["step"]) is int
    for name in keys - {"step"}:
        assert state[name].shape == (2, 3) and state[name].dtype == np.float32
        assert state[name].flags.c_contiguous


def _snapshot(opt):
    """Everything an optimizer holds, as plain values (arrays copied) for a deep comparison."""
    state = {id(p): {k: np.array(v, copy=True) for k, v in s.items()} for p, s in opt.state.items()}
    groups = [{k: (list(map(id, v)) if k == "params" else v) for k, v in g.items()}
              for g in opt.param_groups]
    return state, groups


def _assert_same(a, b):
    assert a[1] == b[1]
    assert a[0].keys() == b[0].keys()
    for key in a[0]:
        assert a[0][key].keys() == b[0][key].keys()
        for name in a[0][key]:
            np.testing.assert_array_equal(a[0][key][name], b[0][key][name])
            assert a[0][key][name].dtype == b[0][key][name].dtype


def _edit(path, value):
    def edit(sd):
        node = sd
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


_DELETE = object()
BAD_STATE_DICTS = [
    # (edit, exception, regex naming the key and the parameter index)
    (_edit(("state", 1, "exp_avg_sq"), np.zeros(5)), ValueError, r"state\[1\]\['exp_avg_sq'\]"),
    (_edit(("state", 1, "exp_avg"), np.array(["a", "b", "c"])), TypeError,
     r"state\[1\]\['exp_avg'\].*dtype"),
    (_edit(("state", 1, "step"), -3), ValueError, r"state\[1\]\['step'\]"),
    (_edit(("state", 1, "step"), 2.5), ValueError, r"state\[1\]\['step'\]"),
    (_edit(("state", 1, "momentum_buffer"), np.zeros(3)), ValueError,
     r"state\[1\].*'momentum_buffer'"),
    (_edit(("state", 1, "exp_avg_sq"), _DELETE), ValueError, r"state\[1\] lacks \['exp_avg_sq'\]"),
    (_edit(("state", 1, "step"), _DELETE), ValueError, r"state\[1\] lacks \['step'\]"),
    (_edit(("state", 7), {"step": 1}), ValueError, "unknown parameter 7"),
    (_edit(("state", "x"), {}), ValueError, "parameter indices"),
    (_edit(("state", 1), [1, 2]), TypeError, r"state\[1\] must be a dict"),
    (_edit(("param_groups", 0, "lr"), -1.0), ValueError, "learning rate"),
    (_edit(("param_groups", 0, "amsgrad"), "no"), TypeError, "amsgrad"),
    (_edit(("param_groups", 0, "momentum"), 0.9), ValueError, r"param_groups\[0\].*'momentum'"),
    (_edit(("param_groups", 0, "maximize"), True), ValueError, "maximize"),
    (_edit(("param_groups", 0, "params"), [0]), ValueError, r"param_groups\[0\]\['params'\]"),
    (_edit(("param_groups",), []), ValueError, "param groups"),
    (_edit(("extra",), 1), ValueError, "exactly the keys"),
]


@pytest.mark.parametrize("edit, exc, match", BAD_STATE_DICTS)
def test_load_state_dict_is_atomic(edit, exc, match):
    params = make_params(32, np.float32, shapes=[(2,), (3,)])
    opt = optim.Adam(params, lr=0.01)
    for _ in range(2):
        set_grads(params, [np.ones(2), np.full(3, -1.0)])
        opt.step()
    sd = opt.state_dict()
    for entry in sd["state"].values():  # a different, valid state: a partial load would show
        entry["exp_avg"] = entry["exp_avg"] + 1
        entry["step"] = 9
    sd["param_groups"][0]["lr"] = 0.5
    edit(sd)
    before = _snapshot(opt)
    with pytest.raises(exc, match=match):
        opt.load_state_dict(sd)
    _assert_same(_snapshot(opt), before)


def test_load_state_dict_takes_int_or_string_indices_and_copies():
    params = make_params(33, np.float64, shapes=[(3,)])
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    set_grads(params, [np.ones(3)])
    opt.step()
    sd = opt.state_dict()
    buffer = sd["state"][0]["momentum_buffer"]
    sd["state"] = {"0": sd["state"][0]}  # what a JSON-like store may give back
    opt.load_state_dict(sd)
    assert opt.state[params[0]]["momentum_buffer"] is not buffer
    np.testing.assert_array_equal(opt.state[params[0]]["momentum_buffer"], buffer)


TORCH_CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
]


@pytest.mark.parametrize("name, options", TORCH_CASES, ids=lambda v: str(v))
def test_loads_a_pytorch_state_dict_and_continues_as_pytorch_does(name, options):
    torch = pytest.importorskip("torch")
    grads = grads_for(34, n_steps=6)
    start = [p.data.copy() for p in make_params(35, np.float32)]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in start]
    torch_opt = getattr(torch.optim, name)(theirs, **options)
    for step, g in enumerate(grads):
        if step == 3:  # halfway: hand PyTorch's state over to minigrad
            ours = [nn.Parameter(t.detach().numpy().copy()) for t in theirs]
            opt = getattr(optim, name)(ours, **dict(options, lr=123.0))
            opt.load_state_dict(torch_opt.state_dict())
            assert opt.param_groups[0]["lr"] == options["lr"]
        for t, a in zip(theirs, g, strict=True):
            t.grad = torch.from_numpy(np.asarray(a, np.float32))
        torch_opt.step()
        if step >= 3:
            set_grads(ours, g)
            opt.step()
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=2e-5, atol=1e-6)


def test_step_sees_state_replaced_or_options_changed_between_steps():
    # step() caches each group's state lookups; any change to optimizer.state or to the
    # options that decide the state must reach the next step
    params = make_params(36, np.float64, shapes=[(3,)])
    opt = optim.Adam(params, lr=0.1, eps=0.0)
    set_grads(params, [np.ones(3)])
    opt.step()
    opt.step()
    opt.state[params[0]] = {"step": 0, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)}
    start = params[0].data.copy()
    opt.step()  # a first step again: each weight moves by lr exactly
    np.testing.assert_allclose(params[0].data, start - 0.1, rtol=1e-12)
    assert opt.state[params[0]]["step"] == 1
    opt.param_groups[0]["amsgrad"] = True
    opt.step()
    np.testing.assert_array_equal(opt.state[params[0]]["max_exp_avg_sq"],
                                  opt.state[params[0]]["exp_avg_sq"])
    del opt.state[params[0]]
    opt.step()
    assert opt.state[params[0]]["step"] == 1
