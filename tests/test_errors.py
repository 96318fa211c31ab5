"""Clear errors for bad input: each audited mistake raises a Python exception that names it.

The error table holds one row per mistake (the call, the exception type and a regex its
message must match); the kernel sections check that direct kernel calls with bad arrays or
arguments are refused the same way on both backends, never with a crash.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import data, kernels, nn, optim
from minigrad.kernels import reference
from minigrad.nn.utils import clip_grad_norm_
from minigrad.optim import lr_scheduler

compiled = kernels.compiled
needs_compiled = pytest.mark.skipif(compiled is None, reason="compiled kernels not built")
KERNEL_IMPLS = [reference] + ([compiled] if compiled is not None else [])


# =============================================================================== 1. clear errors
# (label, call, exception, regex the message must match). Each row is one audited mistake.

def _bad_backward_grad():
    (mg.randn(3, requires_grad=True) * 2).backward(np.ones(4))


def _load_into_linear(state):
    nn.Linear(3, 2).load_state_dict(state)


_LINEAR_OK = {"weight": np.zeros((2, 3), np.float32), "bias": np.zeros(2, np.float32)}

ERROR_TABLE = [
    # creation and dtypes
    ("tensor of None", lambda: mg.tensor(None), TypeError, "NoneType"),
    ("tensor of str", lambda: mg.tensor("abc"), TypeError, "str"),
    ("tensor of ragged lists", lambda: mg.tensor([[1, 2], [3]]), ValueError, "inhomogeneous"),
    ("tensor of object array", lambda: mg.tensor(np.array([None, 1.0])), TypeError, "object"),
    ("tensor of complex array", lambda: mg.tensor(np.ones(2, complex)), TypeError, "complex"),
    ("tensor dtype=object", lambda: mg.tensor([1.0], dtype=object), TypeError, "object"),
    ("tensor dtype=float16", lambda: mg.tensor([1.0], dtype="float16"), TypeError, "float16"),
    ("requires_grad on int", lambda: mg.tensor([1, 2], requires_grad=True), TypeError,
     "floating-point"),
    ("requires_grad on bool", lambda: mg.zeros(2, dtype=bool, requires_grad=True), TypeError,
     "floating-point"),
    ("randn of int dtype", lambda: mg.randn(2, dtype="int32"), TypeError, "float32 or float64"),
    ("negative shape", lambda: mg.zeros(-1, 3), ValueError, "non-negative"),
    ("float shape", lambda: mg.ones(2.5), ValueError, "non-negative ints"),
    ("arange step 0", lambda: mg.arange(0, 5, 0), ValueError, "step"),
    ("bad backend", lambda: mg.set_backend("torch"), ValueError, "torch"),
    ("zero threads", lambda: mg.set_num_threads(0), ValueError, "positive"),
    # shapes
    ("matmul mismatch", lambda: mg.randn(3, 4) @ mg.randn(5, 2), ValueError,
     r"\(3, 4\).*\(5, 2\)"),
    ("matmul 0-d", lambda: mg.randn(3, 4) @ mg.tensor(2.0), ValueError, "1-D"),
    ("Linear mismatch", lambda: nn.Linear(4, 2)(mg.randn(3, 5)), ValueError,
     r"\(\.\.\., 4\).*\(3, 5\)"),
    ("broadcast mismatch", lambda: mg.randn(3, 4) + mg.randn(5), ValueError, "broadcast"),
    ("add None", lambda: mg.randn(2) + None, TypeError, "NoneType"),
    ("reshape to wrong size", lambda: mg.randn(3, 4).reshape(5, 5), ValueError,
     r"\(3, 4\).*\(5, 5\)"),
    ("concat mismatch", lambda: mg.concat([mg.randn(3, 4), mg.randn(2, 5)]), ValueError,
     r"\(3, 4\).*\(2, 5\)"),
    ("concat of nothing", lambda: mg.concat([]), ValueError, "at least one"),
    ("index out of range", lambda: mg.randn(3)[5], IndexError, "out of bounds"),
    # axes
    ("sum axis out of range", lambda: mg.randn(3, 4).sum(axis=2), np.exceptions.AxisError,
     "axis 2"),
    ("sum repeated axis", lambda: mg.randn(3, 4).sum(axis=(0, 0)), ValueError, "repeated"),
    ("sum axis str", lambda: mg.randn(3, 4).sum(axis="a"), TypeError, "str"),
    ("softmax axis tuple", lambda: mg.randn(3, 4).softmax(axis=(0, 1)), TypeError, "one int"),
    ("sum axis bool", lambda: mg.randn(3, 4).sum(axis=True), TypeError, "bool True"),
    ("mean keepdims str", lambda: mg.randn(3, 4).mean(0, keepdims="no"), TypeError, "keepdims"),
    ("max over empty axis", lambda: mg.zeros(0, 3).max(axis=0), ValueError, "zero-size"),
    ("permute repeated", lambda: mg.randn(3, 4).permute(0, 0), ValueError, "repeated"),
    # backward
    ("backward of non-scalar", lambda: (mg.randn(3, requires_grad=True) * 2).backward(),
     RuntimeError, r"scalar.*\(3,\)"),
    ("backward wrong grad shape", _bad_backward_grad, ValueError, r"\(4,\).*\(3,\)"),
    ("backward without grad", lambda: mg.randn(3).sum().backward(), RuntimeError,
     "does not require grad"),
    # normalization layers
    ("BatchNorm features", lambda: nn.BatchNorm1d(4)(mg.randn(8, 5)), ValueError,
     "expected 4 features.*got 5"),
    ("BatchNorm1d rank", lambda: nn.BatchNorm1d(4)(mg.randn(8, 4, 2, 2)), ValueError,
     r"\(N, C\).*\(8, 4, 2, 2\)"),
    ("BatchNorm one value per channel", lambda: nn.BatchNorm1d(4)(mg.randn(1, 4)), ValueError,
     "more than 1 value"),
    ("BatchNorm dtype mix",
     lambda: nn.BatchNorm1d(4)(mg.tensor(np.ones((8, 4)), dtype=np.float64)), TypeError,
     "float64.*float32"),
    ("BatchNorm int input", lambda: nn.BatchNorm1d(4)(mg.tensor(np.ones((8, 4), int))),
     TypeError, "floating-point"),
    ("BatchNorm negative eps", lambda: nn.BatchNorm1d(4, eps=-1.0), ValueError, "eps"),
    ("BatchNorm NaN momentum", lambda: nn.BatchNorm1d(4, momentum=float("nan")), ValueError,
     "momentum"),
    ("BatchNorm float features", lambda: nn.BatchNorm1d(4.0), TypeError, "num_features"),
    ("LayerNorm trailing shape", lambda: nn.LayerNorm(4)(mg.randn(8, 5)), ValueError,
     r"\(4,\).*\(8, 5\)"),
    ("LayerNorm float shape", lambda: nn.LayerNorm((2.5,)), TypeError, "normalized_shape"),
    ("LayerNorm empty shape", lambda: nn.LayerNorm(()), ValueError, "normalized_shape"),
    ("LayerNorm negative eps", lambda: nn.LayerNorm(4, eps=-1.0), ValueError, "eps"),
    # losses
    ("cross_entropy target out of range",
     lambda: F.cross_entropy(mg.randn(4, 3), mg.tensor([0, 1, 2, 3])), ValueError,
     "3 is out of range for 3 classes"),
    ("cross_entropy float target",
     lambda: F.cross_entropy(mg.randn(4, 3), mg.tensor([0.0, 1.0, 2.0, 0.0])), TypeError,
     "integer"),
    ("cross_entropy target shape", lambda: F.cross_entropy(mg.randn(4, 3), mg.tensor([0, 1])),
     ValueError, r"\(2,\)"),
    ("CrossEntropyLoss label_smoothing", lambda: nn.CrossEntropyLoss(label_smoothing=2.0),
     ValueError, "label_smoothing"),
    ("NLLLoss float ignore_index", lambda: nn.NLLLoss(ignore_index=1.5), TypeError,
     "ignore_index"),
    ("cross_entropy float ignore_index",
     lambda: F.cross_entropy(mg.randn(4, 3), mg.tensor([0, 1, 2, 0]), ignore_index=2.7,
                             fused=False), TypeError, "ignore_index must be an int"),
    ("batch_norm momentum out of range",
     lambda: F.batch_norm(mg.randn(4, 3), np.zeros(3, np.float32), np.ones(3, np.float32),
                          training=True, momentum=5.0, fused=False), ValueError,
     r"momentum must be in \[0, 1\]"),
    ("Linear dtype mix", lambda: nn.Linear(3, 2)(mg.tensor(np.ones((4, 3)), dtype=mg.float64)),
     TypeError, r"float64.*float32.*x\.float\(\).*model\.double\(\)"),
    ("bad reduction", lambda: nn.MSELoss(reduction="avg"), ValueError, "avg"),
    ("mse shapes", lambda: nn.MSELoss()(mg.randn(4, 3), mg.randn(3)), ValueError,
     r"\(4, 3\).*\(3,\)"),
    ("dropout p", lambda: nn.Dropout(1.5), ValueError, "1.5"),
    # modules and state dicts
    ("state_dict missing key", lambda: _load_into_linear({"weight": _LINEAR_OK["weight"]}),
     KeyError, r"missing keys \['bias'\]"),
    ("state_dict unexpected key", lambda: _load_into_linear({**_LINEAR_OK, "extra": 1.0}),
     KeyError, "unexpected keys"),
    ("state_dict wrong shape",
     lambda: _load_into_linear({**_LINEAR_OK, "weight": np.zeros((3, 3), np.float32)}),
     ValueError, r"weight: expected \(2, 3\), got \(3, 3\)"),
    ("state_dict object entry",
     lambda: _load_into_linear({**_LINEAR_OK, "bias": np.array([None, None])}), TypeError,
     "bias.*object"),
    ("state_dict str entry", lambda: _load_into_linear({**_LINEAR_OK, "bias": "ab"}),
     TypeError, "bias.*str"),
    ("state_dict not a dict", lambda: _load_into_linear([1, 2]), TypeError, "list"),
    ("assign int over a Parameter", lambda: setattr(nn.Linear(2, 2), "weight", 3), TypeError,
     "Parameter or None"),
    ("train('eval')", lambda: nn.Linear(2, 2).train("eval"), TypeError, "bool"),
    ("Sequential of non-Module", lambda: nn.Sequential(3), TypeError, "Module"),
    # optimizers and schedulers
    ("SGD NaN lr", lambda: optim.SGD(nn.Linear(2, 2).parameters(), lr=float("nan")),
     ValueError, "learning rate"),
    ("Adam beta1 = 1", lambda: optim.Adam(nn.Linear(2, 2).parameters(), betas=(1.0, 0.9)),
     ValueError, "beta1"),
    ("RMSprop negative momentum",
     lambda: optim.RMSprop(nn.Linear(2, 2).parameters(), lr=0.1, momentum=-1), ValueError,
     "momentum"),
    ("optimizer of one Tensor", lambda: optim.SGD(mg.randn(2, requires_grad=True), lr=0.1),
     TypeError, "single Tensor"),
    ("scheduler state of another kind",
     lambda: lr_scheduler.StepLR(optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 1)
     .load_state_dict({"T_max": 3}), KeyError, "unexpected keys"),
    ("scheduler state None",
     lambda: lr_scheduler.StepLR(optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 1)
     .load_state_dict(None), TypeError, "dict"),
    ("clip_grad_norm_ of ints", lambda: clip_grad_norm_([1, 2], 1.0), TypeError, "int"),
    ("clip_grad_norm_ NaN max_norm", lambda: clip_grad_norm_([], float("nan")), ValueError,
     "max_norm"),
    ("gradcheck eps 0", lambda: mg.gradcheck(lambda t: t, mg.randn(2, requires_grad=True),
                                             eps=0.0), ValueError, "eps"),
    # data
    ("TensorDataset lengths", lambda: data.TensorDataset(np.zeros((5, 2)), np.zeros(4)),
     ValueError, r"\[5, 4\]"),
    ("TensorDataset of objects",
     lambda: data.TensorDataset(np.array([None, 1], dtype=object)), TypeError, "object"),
    ("DataLoader of a tuple", lambda: data.DataLoader((np.zeros((5, 2)), np.zeros(4))),
     TypeError, "TensorDataset"),
    ("DataLoader of None", lambda: data.DataLoader(None), TypeError, "__len__"),
    ("DataLoader batch 0", lambda: data.DataLoader(data.TensorDataset(np.zeros(3)), 0),
     ValueError, "batch_size"),
    ("DataLoader str seed", lambda: data.DataLoader(data.TensorDataset(np.zeros(3)), seed="a"),
     TypeError, "seed"),
    ("moons NaN noise", lambda: data.make_moons(10, noise=float("nan")), ValueError, "noise"),
    # lookups by index
    ("embedding index too large", lambda: F.embedding(mg.tensor([3]), mg.ones(3, 2)),
     IndexError, "index 3 is out of range"),
    ("embedding float indices", lambda: F.embedding(mg.tensor([1.0]), mg.ones(3, 2)),
     TypeError, "integer indices"),
    ("Embedding padding_idx out of range", lambda: nn.Embedding(3, 2, padding_idx=3),
     ValueError, "padding_idx"),
    ("one_hot class too large", lambda: F.one_hot(mg.tensor([2]), 2), ValueError,
     "num_classes=2"),
]


@pytest.mark.parametrize("label,call,error,match", ERROR_TABLE, ids=[r[0] for r in ERROR_TABLE])
def test_mistake_raises_a_clear_error(label, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_tensor_constructor_rejects_object_arrays():
    with pytest.raises(TypeError, match="object"):
        mg.Tensor(np.array([None, 1.0]))


def test_mg_tensor_copies_and_keeps_good_dtypes():
    assert mg.tensor(np.ones(2, np.float16)).dtype == np.float32
    assert mg.tensor([True]).dtype == bool
    assert mg.zeros_like(np.zeros(2, np.float16)).dtype == np.float32
    assert mg.arange(3, dtype="float64").dtype == np.float64


# ------------------------------------------------------------------------ kernel wrappers

def _x(shape=(4, 3), dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def _kernel_calls():
    """A valid call of every non-optimizer kernel: name -> positional arguments."""
    x = _x()
    y = reference.softmax(x, -1)
    target = np.array([0, 1, 2, 0])
    loss, lse = reference.cross_entropy_forward(x, target)
    g, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    _, mean, rstd = reference.batchnorm_forward(x, g, b, None, None, 0.9, 1e-5, True)
    _, lmean, lrstd = reference.layernorm_forward(x, g, b, 1e-5, 1)
    return {
        "sum": [x, 0, False], "mean": [x, 1, True], "var": [x, None, False, 1],
        "max": [x, 0, False], "min": [x, -1, False], "logsumexp": [x, 1, False],
        "softmax": [x, -1], "log_softmax": [x, 0], "softmax_backward": [y, x, -1],
        "log_softmax_backward": [y, x, -1],
        "cross_entropy_forward": [x, target, 0.0, -100],
        "cross_entropy_backward": [loss, x, target, lse, 0.0, -100],
        "batchnorm_forward": [x, g, b, np.zeros(3, np.float32), np.ones(3, np.float32), 0.9,
                              1e-5, True],
        "batchnorm_backward": [x, x, g, mean, rstd, True],
        "layernorm_forward": [x, g, b, 1e-5, 1],
        "layernorm_backward": [x, x, g, lmean, lrstd],
    }


_SWAPPABLE = [(name, pos) for name, args in _kernel_calls().items()
              for pos, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]


@pytest.mark.parametrize("name, pos", _SWAPPABLE, ids=[f"{n}-{p}" for n, p in _SWAPPABLE])
def test_kernels_refuse_byte_swapped_arrays_naming_the_argument(name, pos):
    # a '>f4' buffer read as native floats is garbage: both backends refuse it, in one message
    argname = list(inspect.signature(getattr(reference, name)).parameters)[pos]
    messages = []
    for impl in KERNEL_IMPLS:
        args = _kernel_calls()[name]
        args[pos] = args[pos].astype(args[pos].dtype.newbyteorder(">"))
        with pytest.raises(TypeError, match=rf"^{name}: {argname} has non-native byte order"):
            getattr(impl, name)(*args)
        messages.append(str(pytest.raises(TypeError, getattr(impl, name), *args).value))
    assert len(set(messages)) == 1, messages


def _with(name, pos, value):
    args = _kernel_calls()[name]
    args[pos] = value(args[pos]) if callable(value) else value
    return name, args


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _overlapping_running_buffers():
    args = _kernel_calls()["batchnorm_forward"]
    buf = np.zeros(4, np.float32)
    args[3], args[4] = buf[:3], buf[1:]  # running_mean[1:] is running_var[:2]
    return "batchnorm_forward", args


# (label, (kernel, args), exception, message start): unsafe arrays, refused by both backends
KERNEL_MEMORY_ERRORS = [
    ("sum of a list", _with("sum", 0, [[1.0, 2.0]]), TypeError,
     "sum: x must be a numpy.ndarray, got list"),
    ("var of int64", _with("var", 0, np.ones((2, 3), np.int64)), TypeError,
     "var: x must be float32 or float64, got dtype int64"),
    ("softmax_backward shape", _with("softmax_backward", 1, np.ones((3, 4), np.float32)),
     ValueError, "softmax_backward: grad_out must have shape (4, 3)"),
    ("log_softmax_backward dtype", _with("log_softmax_backward", 1, np.ones((4, 3))),
     TypeError, "log_softmax_backward: grad_out has dtype float64 but x has dtype float32"),
    ("cross_entropy target range", _with("cross_entropy_forward", 1, np.array([0, 1, 3, 0])),
     ValueError, "cross_entropy_forward: target 3 is out of range for 3 classes"),
    ("cross_entropy float target", _with("cross_entropy_forward", 1, np.zeros(4)), TypeError,
     "cross_entropy_forward: target must hold integer class indices"),
    ("cross_entropy lse_parts shape", _with("cross_entropy_backward", 3,
                                           np.zeros(4, np.float32)),
     ValueError, "cross_entropy_backward: lse_parts must have shape (4, 2)"),
    ("batchnorm read-only running_var", _with("batchnorm_forward", 4, _read_only), ValueError,
     "batchnorm_forward: running_var is updated in place but is read-only"),
    ("batchnorm overlapping running buffers", _overlapping_running_buffers(), ValueError,
     "batchnorm_forward: running_mean and running_var overlap in memory"),
    ("layernorm gamma shape", _with("layernorm_forward", 1, np.ones(4, np.float32)), ValueError,
     "layernorm_forward: gamma must have shape (3,)"),
    ("layernorm_backward rstd", _with("layernorm_backward", 4, np.ones(3)), ValueError,
     "layernorm_backward: rstd must have shape (4,)"),
]


@pytest.mark.parametrize("label, call, error, start", KERNEL_MEMORY_ERRORS,
                         ids=[row[0] for row in KERNEL_MEMORY_ERRORS])
def test_kernels_refuse_unsafe_arrays_with_one_message_on_both_backends(label, call, error, start):
    name, args = call
    messages = []
    for impl in KERNEL_IMPLS:
        with pytest.raises(error) as info:
            getattr(impl, name)(*args)
        messages.append(str(info.value))
    assert messages[0].startswith(start), messages[0]
    assert len(set(messages)) == 1, messages


@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_cross_entropy_kernels_read_byte_swapped_integer_targets(impl):
    # integer targets are converted to int64 before use, so any byte order is read correctly
    args = _kernel_calls()["cross_entropy_forward"]
    loss, lse = impl.cross_entropy_forward(*args)
    args[1] = args[1].astype(">i4")
    swapped = impl.cross_entropy_forward(*args)
    np.testing.assert_array_equal(swapped[0], loss)
    np.testing.assert_array_equal(swapped[1], lse)


@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_cross_entropy_kernels_refuse_uint64_targets_beyond_int64(impl):
    # 2**64 - 100 would wrap to -100 (the ignore_index) if converted blindly
    args = _kernel_calls()["cross_entropy_forward"]
    args[1] = np.array([0, 1, 2**64 - 100, 0], np.uint64)
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        impl.cross_entropy_forward(*args)


@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_batchnorm_eval_accepts_read_only_running_buffers(impl):
    rm = np.zeros(3, np.float32)
    rv = np.ones(3, np.float32)
    rm.flags.writeable = rv.flags.writeable = False  # eval only reads them
    y, _, _ = impl.batchnorm_forward(_x(), None, None, rm, rv, 0.9, 1e-5, False)
    np.testing.assert_allclose(y, _x() / np.sqrt(1 + 1e-5), rtol=1e-6)


@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_batchnorm_kernel_with_zero_channels(impl):
    x = np.zeros((4, 0), np.float32)
    rm, rv = np.zeros(0, np.float32), np.ones(0, np.float32)
    y, mean, rstd = impl.batchnorm_forward(x, None, None, rm, rv, 0.9, 1e-5, True)
    assert y.shape == (4, 0) and mean.shape == rstd.shape == (0,)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_batchnorm_eval_backward_does_not_leak_nan_from_x(impl):
    # eval: dx = dy * gamma * rstd involves no x; NaN * 0 from the training form must not appear
    x = _x()
    x[1, 2] = np.nan
    dy = np.ones_like(x)
    gamma = np.array([1.0, 2.0, 3.0], np.float32)
    rstd = np.full(3, 0.5)
    dx, _, dbeta = impl.batchnorm_backward(dy, x, gamma, np.zeros(3), rstd, False)
    np.testing.assert_allclose(dx, np.broadcast_to(gamma * 0.5, x.shape))
    np.testing.assert_allclose(dbeta, [4, 4, 4])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("impl", KERNEL_IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_norm_statistics_of_data_holding_inf_follow_numpy(impl):
    # an inf first value must not turn the shifted sums into NaN: NumPy's mean is inf
    x = np.array([[np.inf, 1.0], [1.0, 2.0], [3.0, -np.inf]], np.float32)
    _, mean, rstd = impl.batchnorm_forward(x, None, None, None, None, 0.9, 1e-5, True)
    np.testing.assert_array_equal(mean, [np.inf, -np.inf])
    assert np.all(np.isnan(rstd))
    _, mean, _ = impl.layernorm_forward(x, None, None, 1e-5, 1)
    np.testing.assert_array_equal(mean, [np.inf, 1.5, -np.inf])


OPTIM_IMPLS = [reference] + ([compiled] if compiled is not None else [])


@pytest.mark.parametrize("impl", OPTIM_IMPLS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_amsgrad_maximum_lets_nan_through_like_numpy(impl):
    p, g = [np.ones(2, np.float32)], [np.array([np.nan, 1.0], np.float32)]
    m, v, vmax = np.zeros(2, np.float32), np.zeros(2, np.float32), np.ones(2, np.float32)
    impl.adam_step(p, g, [m], [v], [vmax], [1], lr=0.1)
    np.testing.assert_array_equal(np.isnan(vmax), [True, False])  # np.maximum keeps NaN


# An optimizer checks its options when it is made AND when step() finds them changed, with the
# same rules (one function per optimizer): an edited group must not reach the kernel.
def _one_param_step(make, edit):
    p = nn.Parameter(np.ones(3, np.float32))
    opt = make([p])
    p.grad = mg.tensor(np.ones(3, np.float32))
    opt.step()
    before = p.data.copy(), opt.state_dict()
    edit(opt.param_groups[0])
    return p, opt, before


EDITED_OPTIONS = [
    (lambda ps: optim.RMSprop(ps), lambda g: g.update(alpha=3.0), ValueError, "alpha"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda g: g.update(dampening=7),
     ValueError, "dampening"),
    (lambda ps: optim.Adam(ps), lambda g: g.update(amsgrad="no"), TypeError, "amsgrad"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda g: g.update(nesterov="yes"),
     TypeError, "nesterov"),
    (lambda ps: optim.RMSprop(ps), lambda g: g.update(centered=1), TypeError, "centered"),
    (lambda ps: optim.Adam(ps), lambda g: g.update(lr=float("nan")), ValueError,
     "learning rate"),
    (lambda ps: optim.Adam(ps), lambda g: g.update(betas=(0.9, 1.0)), ValueError, "beta2"),
    (lambda ps: optim.AdamW(ps), lambda g: g.update(eps=-1.0), ValueError, "eps"),
    (lambda ps: optim.SGD(ps, lr=0.1), lambda g: g.update(weight_decay=float("inf")),
     ValueError, "weight_decay"),
    (lambda ps: optim.SGD(ps, lr=0.1), lambda g: g.update(nesterov=True), ValueError,
     "Nesterov"),
]


@pytest.mark.parametrize("make, edit, exc, match", EDITED_OPTIONS)
def test_options_edited_after_construction_are_checked_at_step(backend, make, edit, exc, match):
    p, opt, (data, state) = _one_param_step(make, edit)
    with pytest.raises(exc, match=match):
        opt.step()
    np.testing.assert_array_equal(p.data, data)  # nothing moved
    after = opt.state_dict()
    assert after["state"].keys() == state["state"].keys()
    for k, entry in state["state"].items():
        for name, value in entry.items():
            np.testing.assert_array_equal(after["state"][k][name], value)


@pytest.mark.parametrize("make, edit, exc, match", EDITED_OPTIONS)
def test_constructor_refuses_what_step_refuses(make, edit, exc, match):
    group: dict = {}
    edit(group)
    with pytest.raises(exc, match=match):
        make([{"params": [nn.Parameter(np.ones(3, np.float32))], **group}])


def test_non_bool_flags_are_refused_at_construction():
    ps = [nn.Parameter(np.ones(2, np.float32))]
    with pytest.raises(TypeError, match="amsgrad"):
        optim.Adam(ps, amsgrad="no")
    with pytest.raises(TypeError, match="nesterov"):
        optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=1)
    with pytest.raises(TypeError, match="centered"):
        optim.RMSprop(ps, centered="False")


# ------------------------------------------------------ kernel argument edge cases

@needs_compiled
def test_compiled_softmax_rejects_float_axis():
    with pytest.raises(TypeError):
        compiled.softmax(_x(), 1.5)


@needs_compiled
def test_compiled_sum_rejects_non_bool_keepdims():
    with pytest.raises(TypeError):
        compiled.sum(_x(), 0, "no")


@needs_compiled
def test_compiled_var_mean_of_inf_is_inf():
    var, mean = compiled.var(np.array([np.inf, 1.0], np.float32), None)
    assert mean == np.inf and np.isnan(var)


def test_cross_entropy_with_zero_classes_raises_value_error():
    with pytest.raises(ValueError):
        reference.cross_entropy_forward(np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                                        0.1, -100)


