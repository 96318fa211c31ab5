"""F.batch_norm called the way a layer calls it (every argument a Tensor) keeps every rule.

Each row spoils one argument of a call that is otherwise what ``BatchNorm1d`` passes: Tensor
running buffers and Parameters for weight and bias. It must raise exactly what the same call
with ndarray buffers raises, and write nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.nn import Parameter

C = 3


def _args(tensor_buffers: bool) -> dict:
    rng = np.random.default_rng(0)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    return {
        "x": mg.tensor(rng.standard_normal((8, C)), dtype=mg.float32),
        "running_mean": mg.tensor(rm) if tensor_buffers else rm,
        "running_var": mg.tensor(rv) if tensor_buffers else rv,
        "weight": Parameter(np.ones(C, np.float32)), "bias": Parameter(np.zeros(C, np.float32)),
        "training": True, "momentum": 0.9, "eps": 1e-5,
    }


def _read_only() -> mg.Tensor:
    """A Tensor wrapping a read-only buffer (mg.tensor would copy it into a writeable one)."""
    a = np.zeros(C, np.float32)
    a.flags.writeable = False
    t = mg.zeros(C)
    t.data = a
    return t


# (label, argument name, spoiler: the valid value -> a bad one)
ROWS = [
    ("x float64", "x", lambda v: v.double()),
    ("x int", "x", lambda v: mg.tensor(np.ones((8, C), np.int32))),
    ("x 1-d", "x", lambda v: mg.ones(C)),
    ("x one per channel", "x", lambda v: mg.ones((1, C))),
    ("x other channel count", "x", lambda v: mg.ones((8, C + 1))),
    ("eps negative", "eps", lambda v: -1.0),
    ("eps nan", "eps", lambda v: float("nan")),
    ("eps inf", "eps", lambda v: float("inf")),
    ("eps bool", "eps", lambda v: True),
    ("momentum above 1", "momentum", lambda v: 1.5),
    ("momentum nan", "momentum", lambda v: float("nan")),
    ("training str", "training", lambda v: "False"),
    ("running_mean missing", "running_mean", lambda v: None),
    ("running_mean shape", "running_mean", lambda v: mg.zeros(C + 1)),
    ("running_mean float64", "running_mean", lambda v: mg.zeros(C, dtype=mg.float64)),
    ("running_mean read-only", "running_mean", lambda v: _read_only()),
    ("running_var 2-d", "running_var", lambda v: mg.ones((1, C))),
    ("running_var read-only", "running_var", lambda v: _read_only()),
    ("x empty batch", "x", lambda v: mg.ones((0, C))),
    ("x no channels", "x", lambda v: mg.ones((8, 0))),
    ("weight missing", "weight", lambda v: None),
    ("weight shape", "weight", lambda v: Parameter(np.ones(C + 1, np.float32))),
    ("bias float64", "bias", lambda v: Parameter(np.zeros(C))),
    ("bias missing", "bias", lambda v: None),
    ("bias shape", "bias", lambda v: Parameter(np.zeros((1, C), np.float32))),
]


def _outcome(args: dict) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        F.batch_norm(args.pop("x"), **args)
    return info.type, str(info.value)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_tensor_arguments_raise_what_ndarray_arguments_raise(backend, row):
    _, name, spoil = row
    as_layer, as_arrays = _args(tensor_buffers=True), _args(tensor_buffers=False)
    for args in (as_layer, as_arrays):
        args[name] = spoil(args[name])
        if args is as_arrays and name.startswith("running") and isinstance(args[name], mg.Tensor):
            args[name] = args[name].data  # the ndarray twin of the spoiled buffer
    buffers = [np.array(as_layer[k].data) for k in ("running_mean", "running_var")
               if isinstance(as_layer[k], mg.Tensor)]
    kept = [as_layer[k] for k in ("running_mean", "running_var")
            if isinstance(as_layer[k], mg.Tensor)]
    assert _outcome(as_layer) == _outcome(as_arrays)
    for tensor, before in zip(kept, buffers, strict=True):
        np.testing.assert_array_equal(tensor.data, before)


# valid calls at the edges of what batch_norm accepts, with Tensor and with ndarray arguments
VALID = [
    ("as a layer calls it", {}),
    ("two values per channel", {"x": mg.tensor(np.arange(2.0 * C).reshape(2, C),
                                               dtype=mg.float32)}),
    ("eval", {"training": False}),
    ("eval, read-only buffers", {"training": False, "running_mean": _read_only()}),
]


@pytest.mark.parametrize(("label", "change"), VALID, ids=[v[0] for v in VALID])
def test_tensor_and_ndarray_arguments_agree_on_a_valid_call(backend, label, change):
    as_layer, as_arrays = _args(tensor_buffers=True), _args(tensor_buffers=False)
    as_layer.update(change)
    as_arrays.update({k: v.data if k.startswith("running") else v for k, v in change.items()})
    y_layer = F.batch_norm(as_layer.pop("x"), **as_layer)
    y_arrays = F.batch_norm(as_arrays.pop("x"), **as_arrays)
    np.testing.assert_array_equal(y_layer.data, y_arrays.data)
    np.testing.assert_array_equal(as_layer["running_mean"].data, as_arrays["running_mean"])
    np.testing.assert_array_equal(as_layer["running_var"].data, as_arrays["running_var"])
