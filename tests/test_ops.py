"""Every differentiable op, one row each: gradcheck in float64 on both backends.

Each row gives input shapes (several cases per op: plain, broadcasting, non-contiguous) and
the function to check. Inputs are float64 tensors of standard normal values unless the row
asks for positive ones (for log, sqrt, fractional powers) or a layout: "T" makes an input a
transposed view, "step" a strided slice, so non-contiguous arrays reach the ops.
"""

import numpy as np
import pytest

import minigrad as mg


def make(rng, shape, layout="c", positive=False):
    """A float64 leaf of ``shape`` whose array has the requested memory layout."""
    if layout == "T":  # transposed view of a C array: same shape, reversed strides
        data = rng.standard_normal(shape[::-1]).T
    elif layout == "step":  # every other element along the last axis
        data = rng.standard_normal(shape[:-1] + (shape[-1] * 2,))[..., ::2]
    else:
        data = rng.standard_normal(shape)
    if positive:
        data = np.abs(data) + 0.5
    assert data.shape == tuple(shape)
    return mg.tensor(data, dtype=np.float64, requires_grad=True) if layout == "c" else \
        mg.Tensor(data, requires_grad=True)


def shifted(x):
    """Moves values away from kinks (|x| < 0.1) so that finite differences are smooth."""
    return x + mg.tensor(np.sign(x.data) * 0.1, dtype=np.float64)


# (id, function, [shapes...], options)  -- options: positive=..., layout=...
OPS = [
    ("add", lambda a, b: a + b, [(3, 4), (3, 4)], {}),
    ("add-broadcast", lambda a, b: a + b, [(3, 4), (4,)], {}),
    ("add-broadcast-both", lambda a, b: a + b, [(3, 1), (1, 4)], {}),
    ("add-scalar-reversed", lambda a: 2.0 + a, [(3, 4)], {}),
    ("sub", lambda a, b: a - b, [(2, 3, 4), (3, 1)], {}),
    ("sub-reversed", lambda a: 1.5 - a, [(5,)], {}),
    ("mul", lambda a, b: a * b, [(3, 4), (3, 4)], {"layout": "T"}),
    ("mul-broadcast", lambda a, b: a * b, [(2, 3, 4), (1, 4)], {}),
    ("mul-same-tensor", lambda a: a * a * a, [(4, 3)], {}),
    ("div", lambda a, b: a / b, [(3, 4), (4,)], {"positive": True}),
    ("div-reversed", lambda a: 2.0 / a, [(3, 4)], {"positive": True}),
    ("pow-scalar", lambda a: a**3, [(3, 4)], {}),
    ("pow-fractional", lambda a: a**0.5, [(3, 4)], {"positive": True}),
    ("pow-tensor", lambda a, b: a**b, [(3, 4), (4,)], {"positive": True}),
    ("rpow", lambda a: 2.0**a, [(3, 4)], {}),
    ("neg", lambda a: -a, [(3, 4)], {"layout": "step"}),
    ("exp", lambda a: a.exp(), [(3, 4)], {"layout": "T"}),
    ("log", lambda a: a.log(), [(3, 4)], {"positive": True}),
    ("sqrt", lambda a: a.sqrt(), [(3, 4)], {"positive": True, "layout": "step"}),
    ("abs", lambda a: shifted(a).abs(), [(3, 4)], {}),
    ("tanh", lambda a: a.tanh(), [(3, 4)], {"layout": "T"}),
    ("sigmoid", lambda a: a.sigmoid(), [(3, 4)], {}),
    ("relu", lambda a: shifted(a).relu(), [(3, 4)], {"layout": "step"}),
    ("leaky_relu", lambda a: mg.functional.leaky_relu(shifted(a), 0.2), [(3, 4)], {}),
    ("gelu", lambda a: mg.functional.gelu(a), [(3, 4)], {}),
    ("silu", lambda a: mg.functional.silu(a), [(3, 4)], {}),
    ("clip", lambda a: shifted(a).clip(-0.6, 0.7), [(4, 5)], {}),
    ("clip-lower-only", lambda a: shifted(a).clip(min=0.0), [(4, 5)], {}),
    ("matmul", lambda a, b: a @ b, [(3, 4), (4, 5)], {}),
    ("matmul-transposed", lambda a, b: a @ b, [(3, 4), (4, 5)], {"layout": "T"}),
    ("matmul-batched", lambda a, b: a @ b, [(2, 3, 4), (2, 4, 5)], {}),
    ("matmul-batch-broadcast", lambda a, b: a @ b, [(2, 1, 3, 4), (3, 4, 2)], {}),
    ("matmul-vector-right", lambda a, b: a @ b, [(3, 4), (4,)], {}),
    ("matmul-vector-left", lambda a, b: a @ b, [(4,), (2, 4, 3)], {}),
    ("matmul-dot", lambda a, b: a @ b, [(4,), (4,)], {}),
    ("linear", lambda x, w, b: mg.functional.linear(x, w, b), [(5, 3), (4, 3), (4,)], {}),
    ("linear-3d", lambda x, w: mg.functional.linear(x, w), [(2, 5, 3), (4, 3)], {}),
    ("reshape", lambda a: a.reshape(6, 2) * mg.arange(12.0).reshape(6, 2), [(3, 4)],
     {"layout": "T"}),
    ("transpose", lambda a: a.transpose(0, 2) * mg.arange(24.0).reshape(4, 3, 2), [(2, 3, 4)],
     {}),
    ("T", lambda a: a.T @ a, [(3, 4)], {}),
    ("permute", lambda a: a.permute(2, 0, 1).reshape(4, 6) @ mg.ones(6, 1, dtype="float64"),
     [(2, 3, 4)], {}),
    ("flatten", lambda a: a.flatten(1) * mg.arange(12.0), [(2, 3, 4)], {}),
    ("squeeze", lambda a: a.squeeze(1) * mg.arange(4.0), [(3, 1, 4)], {}),
    ("unsqueeze", lambda a: a.unsqueeze(0) * mg.arange(3.0).reshape(3, 1, 1), [(3, 4)], {}),
    ("getitem-slice", lambda a: a[1:, ::2], [(4, 5)], {}),
    ("getitem-int-neg", lambda a: a[-1], [(4, 5)], {"layout": "T"}),
    ("getitem-repeated-index", lambda a: a[[0, 2, 0, 0]], [(4, 5)], {}),
    ("getitem-array-pairs", lambda a: a[np.array([0, 1, 1]), np.array([2, 2, 2])], [(3, 4)],
     {}),
    ("getitem-mask", lambda a: a[a.data > 0], [(4, 5)], {}),
    ("concat", lambda a, b: mg.concat([a, b, a], axis=1), [(2, 3), (2, 2)], {}),
    ("stack", lambda a, b: mg.stack([a, b], axis=-1), [(2, 3), (2, 3)], {"layout": "T"}),
    ("sum-all", lambda a: a.sum(), [(3, 4)], {"layout": "T"}),
    ("sum-axis", lambda a: a.sum(axis=0), [(3, 4, 2)], {}),
    ("sum-tuple-keepdims", lambda a: a.sum(axis=(0, 2), keepdims=True), [(3, 4, 2)],
     {"layout": "step"}),
    ("sum-dim-alias", lambda a: a.sum(dim=-1, keepdim=True), [(3, 4)], {}),
    ("mean-all", lambda a: a.mean(), [(3, 4)], {}),
    ("mean-axis", lambda a: a.mean(axis=(1, 2)), [(2, 3, 4)], {"layout": "T"}),
    ("var-biased", lambda a: a.var(axis=0), [(5, 3)], {}),
    ("var-unbiased", lambda a: a.var(axis=1, correction=1, keepdims=True), [(3, 5)],
     {"layout": "T"}),
    ("var-all", lambda a: a.var(), [(4, 3)], {}),
    ("std", lambda a: a.std(axis=-1), [(3, 6)], {}),
    ("std-unbiased-tuple", lambda a: a.std(axis=(0, 2), correction=1), [(3, 4, 2)], {}),
    ("max-all", lambda a: a.max(), [(3, 4)], {}),
    ("max-axis", lambda a: a.max(axis=1), [(3, 4)], {"layout": "T"}),
    ("max-tuple-keepdims", lambda a: a.max(axis=(0, 2), keepdims=True), [(3, 4, 2)], {}),
    ("min-axis", lambda a: a.min(axis=0), [(3, 4)], {"layout": "step"}),
    ("min-dim-alias", lambda a: a.min(dim=(1,), keepdim=True), [(2, 3, 4)], {}),
    ("logsumexp", lambda a: a.logsumexp(axis=-1), [(3, 4)], {}),
    ("logsumexp-tuple", lambda a: a.logsumexp(axis=(0, 1), keepdims=True), [(3, 4, 2)],
     {"layout": "T"}),
    ("logsumexp-all", lambda a: a.logsumexp(), [(3, 4)], {}),
    ("group_norm", lambda x, g, b: mg.functional.group_norm(x, 2, g, b), [(3, 4, 5), (4,), (4,)],
     {"layout": "T"}),
    ("group_norm-plain", lambda x: mg.functional.group_norm(x, 1), [(2, 4, 3, 2)],
     {"layout": "step"}),
    ("instance_norm", lambda x, g, b: mg.functional.instance_norm(x, weight=g, bias=b),
     [(2, 3, 5), (3,), (3,)], {"layout": "step"}),
    ("rms_norm", lambda x, w: mg.functional.rms_norm(x, 5, w), [(3, 5), (5,)], {"layout": "T"}),
    ("softmax-last", lambda a: a.softmax(axis=-1), [(3, 5)], {}),
    ("softmax-first", lambda a: a.softmax(axis=0), [(3, 5)], {"layout": "T"}),
    ("softmax-middle", lambda a: mg.softmax(a, axis=1), [(2, 3, 4)], {"layout": "step"}),
    ("log_softmax", lambda a: a.log_softmax(axis=-1), [(3, 5)], {}),
    ("log_softmax-first", lambda a: mg.log_softmax(a, axis=0), [(4, 3)], {"layout": "T"}),
    ("max_pool2d", lambda a: mg.functional.max_pool2d(a, 3, 2, 1, ceil_mode=True),
     [(2, 3, 7, 6)], {"layout": "T"}),
    ("max_pool2d-dilated-unbatched", lambda a: mg.functional.max_pool2d(a, 2, 1, dilation=2),
     [(3, 6, 5)], {"layout": "step"}),
    ("avg_pool2d", lambda a: mg.functional.avg_pool2d(a, 3, 2, 1, True, False), [(2, 3, 7, 6)],
     {"layout": "step"}),
    ("adaptive_avg_pool2d", lambda a: mg.functional.adaptive_avg_pool2d(a, (3, 4)),
     [(2, 3, 7, 6)], {"layout": "T"}),
    ("conv2d", lambda x, w, b: mg.functional.conv2d(x, w, b, padding=1), [(2, 3, 5, 4),
                                                                             (4, 3, 3, 3), (4,)],
     {}),
    ("conv2d-strided-grouped", lambda x, w: mg.functional.conv2d(x, w, stride=2, dilation=(1, 2),
                                                                  groups=2),
     [(2, 4, 6, 7), (2, 2, 2, 2)], {"layout": "T"}),
    ("conv1d-same", lambda x, w: mg.functional.conv1d(x, w, padding="same"), [(2, 3, 6),
                                                                               (4, 3, 3)],
     {"layout": "step"}),
    ("pad", lambda a: mg.functional.pad(a, (1, 2, -1, 0), value=0.5), [(2, 3, 4)], {}),
    ("composite", lambda a, b: ((a @ b).tanh() * a.sum(1, keepdims=True)).softmax(0).log(),
     [(3, 4), (4, 2)], {}),
    ("embedding", lambda w: mg.functional.embedding(mg.tensor([[3, 0, 3], [1, 4, 0]]), w),
     [(5, 4)], {"layout": "T"}),
]


@pytest.mark.parametrize("name, fn, shapes, options", OPS, ids=[row[0] for row in OPS])
def test_gradcheck(backend, rng, name, fn, shapes, options):
    layout = options.get("layout", "c")
    inputs = [
        make(rng, shape, layout if len(shape) > 1 else "c", options.get("positive", False))
        for shape in shapes
    ]
    assert mg.gradcheck(fn, *inputs)


def test_gradcheck_catches_a_wrong_gradient():
    """The checker itself must fail on a Function with a deliberately wrong backward."""

    class WrongSquare(mg.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved
            return grad * x  # should be 2 * grad * x

    x = mg.tensor(np.linspace(0.5, 1.5, 6), dtype=np.float64, requires_grad=True)
    with pytest.raises(mg.testing.GradcheckError, match="analytic"):
        mg.gradcheck(lambda t: WrongSquare.apply(t), x)


# ----------------------------------------------------------------------------- index arrays


@pytest.mark.parametrize("make_index", [np.array, mg.tensor, list], ids=["ndarray", "tensor",
                                                                          "list"])
def test_changing_an_index_after_forward_does_not_change_the_gradient(backend, make_index):
    idx = make_index([0, 1, 1])
    x = mg.tensor([1.0, 2.0, 3.0, 4.0, 5.0], requires_grad=True)
    y = (x[idx] * mg.tensor([1.0, 2.0, 3.0])).sum()
    (idx.data if isinstance(idx, mg.Tensor) else idx)[:] = [4, 4, 4]
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 5.0, 0.0, 0.0, 0.0])


def test_changing_a_tuple_index_after_forward_does_not_change_the_gradient(backend):
    rows, cols = np.array([0, 1]), np.array([2, 0])
    x = mg.zeros(2, 3, requires_grad=True)
    y = x[rows, cols].sum()
    rows[:], cols[:] = 1, 1
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0, 1], [1, 0, 0]])


# ----------------------------------------------------------------------------- float32 numerics

NUMERIC_CASES = [  # (name, minigrad op, torch op, offset, scale, reduced axis)
    ("var", lambda t: t.var(axis=0), lambda t: t.var(0, unbiased=False), 1e5, 1e-2, 0),
    ("var", lambda t: t.var(axis=0), lambda t: t.var(0, unbiased=False), 1e4, 1e-3, 0),
    ("std", lambda t: t.std(axis=0, correction=1), lambda t: t.std(0), 1e5, 1e-2, 0),
    ("logsumexp", lambda t: t.logsumexp(axis=1), lambda t: t.logsumexp(1), 1e6, 1.0, 1),
    ("logsumexp", lambda t: t.logsumexp(axis=1), lambda t: t.logsumexp(1), 1e4, 1.0, 1),
]


def _float32_grad_error(op, x32: np.ndarray, cotangent: np.ndarray) -> float:
    """Relative max error of the float32 gradient against the same op in float64."""
    grads = []
    for dtype in (np.float32, np.float64):
        x = mg.tensor(x32, dtype=dtype, requires_grad=True)
        (op(x) * mg.tensor(cotangent, dtype=dtype)).sum().backward()
        grads.append(x.grad.numpy().astype(np.float64))
    return float(np.abs(grads[0] - grads[1]).max() / np.abs(grads[1]).max())


@pytest.mark.parametrize("name, op, torch_op, offset, scale, axis", NUMERIC_CASES,
                         ids=[f"{c[0]}-{c[3]:g}-{c[4]:g}" for c in NUMERIC_CASES])
def test_float32_gradient_when_mean_dwarfs_spread(backend, rng, name, op, torch_op, offset,
                                                  scale, axis):
    """float32 backward of var/std/logsumexp at |mean| >> std is as good as float32 allows."""
    x32 = (offset + scale * rng.standard_normal((64, 32))).astype(np.float32)
    cotangent = rng.standard_normal(x32.shape[1 - axis])
    error = _float32_grad_error(op, x32, cotangent)
    assert error < 1e-6, error
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x32, requires_grad=True)
    (torch_op(xt) * torch.tensor(cotangent, dtype=torch.float32)).sum().backward()
    x64 = mg.tensor(x32, dtype=mg.float64, requires_grad=True)
    (op(x64) * mg.tensor(cotangent, dtype=mg.float64)).sum().backward()
    reference = x64.grad.numpy()
    torch_error = np.abs(xt.grad.numpy() - reference).max() / np.abs(reference).max()
    assert error <= torch_error, (error, torch_error)


def test_clip_gradient_is_zero_outside_even_for_inf_and_nan_gradients():
    """Where the clip is flat its derivative is 0: an inf or NaN gradient stops there (as in
    PyTorch's clamp), inside it passes unchanged."""
    x = mg.tensor(np.array([-2.0, 0.5, 3.0, np.nan], np.float32), requires_grad=True)
    x.clip(-1.0, 1.0).backward(mg.tensor(np.array([np.inf, np.inf, np.nan, 1.0], np.float32)))
    got = x.grad.numpy()
    assert got[0] == 0.0 and got[1] == np.inf and got[2] == 0.0 and got[3] == 0.0
