"""Every argument rule of the public functions, on both backends and both paths.

Each row is one bad argument. It runs four times (NumPy twins and compiled kernels, the fused
node and the ``fused=False`` composite; functions with one path run it on both backends) and
must raise the same exception type with the same message every time, before any work: the
running buffers and the caller's arrays are left exactly as they were.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import BACKENDS

import minigrad as mg
import minigrad.functional as F
from minigrad import nn

C = 3


def _inputs() -> dict:
    """Fresh, valid arguments; a row spoils one of them."""
    rng = np.random.default_rng(0)
    return {
        "x": mg.tensor(rng.standard_normal((8, C)), dtype=mg.float32),
        "rm": np.zeros(C, np.float32), "rv": np.ones(C, np.float32),
        "w": mg.tensor(np.ones(C), dtype=mg.float32), "b": mg.tensor(np.zeros(C), dtype=mg.float32),
        "t": mg.tensor([0, 1, 2, 1, 0, 2, 1, 0]),
    }


def _bn(**changes):
    def call(a, fused):
        args = {"x": a["x"], "running_mean": a["rm"], "running_var": a["rv"], "weight": a["w"],
                "bias": a["b"], "training": True, **changes}
        return F.batch_norm(args.pop("x"), fused=fused, **args)
    return call


def _ln(**changes):
    def call(a, fused):
        args = {"x": a["x"], "normalized_shape": (C,), "weight": a["w"], "bias": a["b"],
                **changes}
        return F.layer_norm(args.pop("x"), fused=fused, **args)
    return call


def _gn(**changes):
    def call(a, fused):
        args = {"x": a["x"], "num_groups": C, "weight": a["w"], "bias": a["b"], **changes}
        return F.group_norm(args.pop("x"), fused=fused, **args)
    return call


def _in(**changes):
    def call(a, fused):
        args = {"x": a["x"].reshape(2, C, 4), "weight": a["w"], "bias": a["b"], **changes}
        return F.instance_norm(args.pop("x"), fused=fused, **args)
    return call


def _rms(**changes):
    def call(a, fused):
        args = {"x": a["x"], "normalized_shape": (C,), "weight": a["w"], **changes}
        return F.rms_norm(args.pop("x"), fused=fused, **args)
    return call


def _ce(target=None, **changes):
    def call(a, fused):
        args = {"x": a["x"], **changes}
        return F.cross_entropy(args.pop("x"), a["t"] if target is None else target,
                               fused=fused, **args)
    return call


def _one_path(fn):
    """A function with a single path: the fused flag is ignored."""
    return lambda a, fused: fn(a)


X64 = mg.tensor(np.ones((8, C)), dtype=mg.float64)
XINT = mg.tensor(np.ones((8, C), np.int64))
X1 = mg.tensor(np.ones((1, C)), dtype=mg.float32)
X11 = mg.tensor(np.ones((1, C, 1)), dtype=mg.float32)
READ_ONLY = np.zeros(C, np.float32)
READ_ONLY.flags.writeable = False

ROWS = [
    # batch_norm
    ("bn eps -1", _bn(eps=-1.0), ValueError, "eps"),
    ("bn eps nan", _bn(eps=float("nan")), ValueError, "eps"),
    ("bn eps inf", _bn(eps=float("inf")), ValueError, "eps"),
    ("bn eps str", _bn(eps="1e-5"), TypeError, "eps"),
    ("bn eps bool", _bn(eps=True), TypeError, "eps"),
    ("bn momentum 5", _bn(momentum=5.0), ValueError, "momentum"),
    ("bn momentum -0.1", _bn(momentum=-0.1), ValueError, "momentum"),
    ("bn momentum nan", _bn(momentum=float("nan")), ValueError, "momentum"),
    ("bn momentum None", _bn(momentum=None), TypeError, "momentum"),
    ("bn training str", _bn(training="False"), TypeError, "training"),
    ("bn training None", _bn(training=None), TypeError, "training"),
    ("bn one value per channel", _bn(x=X1), ValueError, "more than 1 value per channel"),
    ("bn one value per channel 3-d", _bn(x=X11), ValueError, "more than 1 value per channel"),
    ("bn running shape", _bn(running_mean=np.zeros(4, np.float32)), ValueError, r"\(4,\)"),
    ("bn running_mean alone", _bn(running_var=None), ValueError, "both"),
    ("bn eval without stats", _bn(running_mean=None, running_var=None, training=False),
     ValueError, "training=False"),
    ("bn read-only buffer", _bn(running_mean=READ_ONLY), ValueError, "read-only"),
    ("bn weight alone", _bn(bias=None), ValueError, "both weight and bias"),
    ("bn weight shape", _bn(weight=mg.ones(4), bias=mg.zeros(4)), ValueError, r"\(4,\)"),
    ("bn float64 input", _bn(x=X64), TypeError, "float64.*float32"),
    ("bn int input", _bn(x=XINT), TypeError, "floating-point"),
    ("bn 1-d input", _bn(x=mg.ones(3)), ValueError, r"\(N, C"),
    # layer_norm
    ("ln eps -1", _ln(eps=-1.0), ValueError, "eps"),
    ("ln eps nan", _ln(eps=float("nan")), ValueError, "eps"),
    ("ln eps str", _ln(eps="x"), TypeError, "eps"),
    ("ln trailing shape", _ln(normalized_shape=(4,)), ValueError, r"\(4,\).*\(8, 3\)"),
    ("ln float shape", _ln(normalized_shape=(2.5,)), TypeError, "normalized_shape"),
    ("ln empty shape", _ln(normalized_shape=()), ValueError, "normalized_shape"),
    ("ln weight shape", _ln(weight=mg.ones(4), bias=mg.zeros(4)), ValueError, r"\(4,\)"),
    ("ln float64 input", _ln(x=X64), TypeError, "float64.*float32"),
    ("ln int input", _ln(x=XINT), TypeError, "floating-point"),
    # group_norm
    ("gn groups not dividing", _gn(num_groups=2), ValueError,
     "num_channels=3 is not divisible by num_groups=2"),
    ("gn groups 0", _gn(num_groups=0), ValueError, "num_groups"),
    ("gn groups float", _gn(num_groups=1.0), TypeError, "num_groups"),
    ("gn eps -1", _gn(eps=-1.0), ValueError, "eps"),
    ("gn weight alone", _gn(bias=None), ValueError, "both weight and bias"),
    ("gn weight shape", _gn(weight=mg.ones(4), bias=mg.zeros(4)), ValueError, r"\(4,\)"),
    ("gn float64 input", _gn(x=X64), TypeError, "float64.*float32"),
    ("gn int input", _gn(x=XINT), TypeError, "floating-point"),
    ("gn 1-d input", _gn(x=mg.ones(3)), ValueError, r"\(N, C"),
    ("gn empty groups", _gn(x=mg.ones(2, C, 0)), ValueError, "empty"),
    # instance_norm
    ("in running_mean alone", _in(running_mean=np.zeros(C, np.float32)), ValueError,
     "instance_norm: pass both running_mean and running_var"),
    ("in eval without stats", _in(use_input_stats=False), ValueError,
     "use_input_stats=False needs running_mean and running_var"),
    ("in running shape", _in(running_mean=np.zeros(4, np.float32),
                             running_var=np.ones(4, np.float32)), ValueError, r"\(4,\)"),
    ("in read-only buffer", _in(running_mean=READ_ONLY, running_var=np.ones(C, np.float32)),
     ValueError, "read-only"),
    ("in float64 buffers", _in(running_mean=np.zeros(C), running_var=np.ones(C)), TypeError,
     "float32.*float64"),
    ("in use_input_stats str", _in(use_input_stats="yes"), TypeError, "use_input_stats"),
    ("in momentum 5", _in(momentum=5.0), ValueError, "momentum"),
    ("in eps nan", _in(eps=float("nan")), ValueError, "eps"),
    ("in no spatial axis", _in(x=mg.ones(8, C)), ValueError, "at least one spatial axis"),
    ("in one spatial value", _in(x=mg.ones(8, C, 1)), ValueError, "more than 1 spatial value"),
    ("in weight shape", _in(weight=mg.ones(4), bias=mg.zeros(4)), ValueError, r"\(4,\)"),
    ("in float64 input", _in(x=mg.ones(2, C, 4, dtype=mg.float64)), TypeError,
     "float64.*float32"),
    # rms_norm
    ("rms trailing shape", _rms(normalized_shape=(4,)), ValueError, r"\(4,\).*\(8, 3\)"),
    ("rms empty shape", _rms(normalized_shape=()), ValueError, "normalized_shape"),
    ("rms eps -1", _rms(eps=-1.0), ValueError, "eps"),
    ("rms eps str", _rms(eps="1e-6"), TypeError, "eps"),
    ("rms weight shape", _rms(weight=mg.ones(4)), ValueError, r"\(4,\)"),
    ("rms float64 input", _rms(x=X64), TypeError, "float64.*float32"),
    ("rms int input", _rms(x=XINT), TypeError, "floating-point"),
    # cross_entropy
    ("ce label_smoothing 1.5", _ce(label_smoothing=1.5), ValueError, "label_smoothing"),
    ("ce label_smoothing -0.1", _ce(label_smoothing=-0.1), ValueError, "label_smoothing"),
    ("ce label_smoothing nan", _ce(label_smoothing=float("nan")), ValueError, "label_smoothing"),
    ("ce label_smoothing str", _ce(label_smoothing="0.1"), TypeError, "label_smoothing"),
    ("ce ignore_index 2.7", _ce(ignore_index=2.7), TypeError, "ignore_index"),
    ("ce ignore_index bool", _ce(ignore_index=True), TypeError, "ignore_index"),
    ("ce ignore_index huge", _ce(ignore_index=2**70), ValueError, "ignore_index"),
    ("ce target 3 of 3", _ce(mg.tensor([0, 1, 2, 3, 0, 0, 0, 0])), ValueError,
     "3 is out of range for 3 classes"),
    ("ce target -1", _ce(mg.tensor([0, -1, 2, 1, 0, 0, 0, 0])), ValueError, "-1 is out of range"),
    ("ce uint64 near 2**64", _ce(np.array([2**64 - 100] + [0] * 7, np.uint64)), ValueError,
     "out of range"),
    ("ce float target", _ce(mg.tensor([0.0] * 8)), TypeError, "integer"),
    ("ce target shape", _ce(mg.tensor([0, 1])), ValueError, r"\(2,\)"),
    ("ce reduction", _ce(reduction="avg"), ValueError, "avg"),
    ("ce int logits", _ce(x=XINT), TypeError, "floating-point"),
    # nll and the elementwise losses
    ("nll ignore_index 2.7", _one_path(lambda a: F.nll_loss(a["x"], a["t"], ignore_index=2.7)),
     TypeError, "ignore_index"),
    ("nll target range", _one_path(lambda a: F.nll_loss(a["x"], mg.tensor([5] * 8))),
     ValueError, "5 is out of range"),
    ("nll reduction", _one_path(lambda a: F.nll_loss(a["x"], a["t"], reduction="x")),
     ValueError, "reduction"),
    ("mse shapes", _one_path(lambda a: F.mse_loss(a["x"], mg.ones(3))), ValueError,
     r"\(8, 3\).*\(3,\)"),
    ("l1 reduction", _one_path(lambda a: F.l1_loss(a["x"], a["x"], reduction="avg")),
     ValueError, "avg"),
    ("bce shapes", _one_path(lambda a: F.binary_cross_entropy_with_logits(a["x"], mg.ones(8))),
     ValueError, "differ"),
    # activations and dropout
    ("dropout p 1.5", _one_path(lambda a: F.dropout(a["x"], 1.5)), ValueError, "1.5"),
    ("dropout p -0.1", _one_path(lambda a: F.dropout(a["x"], -0.1)), ValueError, "-0.1"),
    ("dropout p str", _one_path(lambda a: F.dropout(a["x"], "0.5")), TypeError, "probability"),
    ("dropout training str", _one_path(lambda a: F.dropout(a["x"], 0.5, "no")), TypeError,
     "training"),
    ("leaky_relu slope str", _one_path(lambda a: F.leaky_relu(a["x"], "a")), TypeError,
     "negative_slope"),
    ("leaky_relu slope nan", _one_path(lambda a: F.leaky_relu(a["x"], float("nan"))),
     ValueError, "negative_slope"),
    ("clip without bounds", _one_path(lambda a: a["x"].clip()), ValueError, "at least one"),
    # reductions and softmax
    ("sum axis True", _one_path(lambda a: a["x"].sum(axis=True)), TypeError, "bool"),
    ("mean axis (0, True)", _one_path(lambda a: a["x"].mean(axis=(0, True))), TypeError, "bool"),
    ("sum axis str", _one_path(lambda a: a["x"].sum(axis="a")), TypeError, "str"),
    ("sum axis 2", _one_path(lambda a: a["x"].sum(axis=2)), np.exceptions.AxisError, "axis 2"),
    ("sum repeated axis", _one_path(lambda a: a["x"].sum(axis=(0, 0))), ValueError, "repeated"),
    ("sum keepdims str", _one_path(lambda a: a["x"].sum(axis=0, keepdims="yes")), TypeError,
     "keepdims"),
    ("int sum axis True", _one_path(lambda a: XINT.sum(axis=True)), TypeError, "bool"),
    ("var correction -1", _one_path(lambda a: a["x"].var(correction=-1)), ValueError,
     "correction"),
    ("var correction bool", _one_path(lambda a: a["x"].var(correction=True)), TypeError,
     "correction"),
    ("max axis True", _one_path(lambda a: a["x"].max(axis=True)), TypeError, "bool"),
    ("max over empty axis", _one_path(lambda a: mg.zeros(0, 3).max(axis=0)), ValueError,
     r"zero-size reduction over axes \(0,\) of an array of shape \(0, 3\): max"),
    ("min of empty", _one_path(lambda a: mg.zeros(2, 0).min()), ValueError, "zero-size"),
    ("logsumexp keepdims 1", _one_path(lambda a: a["x"].logsumexp(0, keepdims=1)), TypeError,
     "keepdims"),
    ("softmax axis tuple", _one_path(lambda a: F.softmax(a["x"], axis=(0, 1))), TypeError,
     "one int"),
    ("softmax axis 5", _one_path(lambda a: F.log_softmax(a["x"], axis=5)),
     np.exceptions.AxisError, "axis 5"),
    # linear
    ("linear shapes", _one_path(lambda a: F.linear(a["x"], mg.ones(2, 4))), ValueError,
     r"\(8, 3\).*\(2, 4\)"),
    ("linear float64 input", _one_path(lambda a: F.linear(X64, mg.ones(2, 3), mg.ones(2))),
     TypeError, "float64.*float32"),
]


def _outcome(row, inputs, backend: str, fused: bool) -> tuple[type, str]:
    _, call, _, _ = row
    mg.set_backend(backend)
    with pytest.raises(Exception) as info:
        call(inputs, fused)
    return info.type, str(info.value)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_same_error_on_every_backend_and_path(row):
    label, _, exc, pattern = row
    inputs = _inputs()
    before = {k: np.array(v.data if hasattr(v, "_ctx") else v) for k, v in inputs.items()}
    previous = mg.get_backend()
    try:
        outcomes = {(b, f): _outcome(row, inputs, b, f) for b in BACKENDS for f in (True, False)}
    finally:
        mg.set_backend(previous)
    first = next(iter(outcomes.values()))
    assert all(o == first for o in outcomes.values()), outcomes
    assert first[0] is exc, first
    assert re.search(pattern, first[1]), first[1]
    for key, value in inputs.items():  # nothing was written, not even the running buffers
        np.testing.assert_array_equal(np.asarray(getattr(value, "data", value)), before[key])


def test_per_channel_message_is_written_once():
    """The one-value-per-channel rule has one home, above the kernels (which trust it)."""
    import pathlib

    root = pathlib.Path(mg.__file__).parent
    files = [p for suffix in ("*.py", "*.pyx", "*.pxi", "*.h") for p in root.rglob(suffix)]
    hits = [p for p in files if "more than 1 value per channel" in p.read_text()]
    assert [p.relative_to(root).as_posix() for p in hits] == ["functional/_rules.py"]


def test_layer_rejects_bad_batch_without_touching_its_state():
    bn = nn.BatchNorm1d(C)
    bn(mg.randn(8, C))
    state = {k: np.array(v) for k, v in bn.state_dict().items()}
    for bad in (mg.randn(1, C), X64):
        with pytest.raises((ValueError, TypeError)):
            bn(bad)
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)
