"""nn.Embedding, F.embedding and F.one_hot against PyTorch's documented formulas (and against
torch itself where it is installed), on both backends; float64 gradchecks; bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn


def scatter_reference(grad, indices, num_embeddings, padding_idx=None, by_freq=False):
    """dW[k] = sum over positions i with indices[i] == k of grad[i] (/ count(k) with
    scale_grad_by_freq); row padding_idx stays zero. A plain float64 loop."""
    flat = np.asarray(indices).reshape(-1)
    g = np.asarray(grad, np.float64).reshape(flat.size, -1)
    counts = np.bincount(flat, minlength=num_embeddings)
    dw = np.zeros((num_embeddings, g.shape[1]))
    for i, k in enumerate(flat):
        if k != padding_idx:
            dw[k] += g[i] / (counts[k] if by_freq else 1)
    return dw


# ------------------------------------------------------------------------------- forward/backward
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32, np.uint8])
def test_lookup_and_scatter_add_gradient(backend, rng, dtype, index_dtype):
    weight = mg.tensor(rng.standard_normal((7, 5)), dtype=dtype, requires_grad=True)
    idx = rng.integers(0, 7, size=(4, 6)).astype(index_dtype)
    idx[0, :3] = 2  # repeated rows must add up
    y = F.embedding(mg.from_numpy(idx), weight)
    assert y.shape == (4, 6, 5) and y.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), weight.data[idx])  # out = weight[input]
    g = rng.standard_normal(y.shape)
    (y * mg.tensor(g, dtype=dtype)).sum().backward()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(weight.grad.numpy(), scatter_reference(g, idx, 7), atol=tol)


@pytest.mark.parametrize("padding_idx, row", [(3, 3), (-1, 6), (-7, 0)])
def test_padding_row_gets_no_gradient(backend, rng, padding_idx, row):
    layer = nn.Embedding(7, 4, padding_idx=padding_idx)
    assert layer.padding_idx == row
    np.testing.assert_array_equal(layer.weight.data[row], 0)  # starts at zero
    idx = np.array([[row, 1, row], [2, row, 1]])
    g = rng.standard_normal((2, 3, 4))
    (layer(mg.from_numpy(idx)) * mg.tensor(g)).sum().backward()
    want = scatter_reference(g, idx, 7, padding_idx=row)
    np.testing.assert_allclose(layer.weight.grad.numpy(), want, atol=1e-6)
    assert not layer.weight.grad.numpy()[row].any()


def test_scale_grad_by_freq(backend, rng):
    weight = mg.tensor(rng.standard_normal((5, 3)), dtype=np.float64, requires_grad=True)
    idx = np.array([0, 0, 0, 2, 4, 4, 1])
    g = rng.standard_normal((7, 3))
    y = F.embedding(mg.from_numpy(idx), weight, padding_idx=1, scale_grad_by_freq=True)
    (y * mg.tensor(g, dtype=np.float64)).sum().backward()
    want = scatter_reference(g, idx, 5, padding_idx=1, by_freq=True)
    np.testing.assert_allclose(weight.grad.numpy(), want, atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"padding_idx": 4}, {"padding_idx": -2}])
def test_gradcheck_float64(backend, rng, options):
    # The padding row (4) is never looked up here: its gradient is zero on purpose, not the
    # derivative, so only the other rows can be checked against finite differences (and
    # scale_grad_by_freq is a rescaling by design: test_scale_grad_by_freq checks it).
    weight = mg.tensor(rng.standard_normal((6, 4)), dtype=np.float64, requires_grad=True)
    idx = mg.tensor([[0, 2, 5], [2, 2, 1], [5, 3, 0]])
    assert mg.gradcheck(lambda w: F.embedding(idx, w, **options), weight)


def test_gradcheck_non_contiguous_table(backend, rng):
    table = rng.standard_normal((4, 6)).T  # a transposed view: (6, 4), not C-contiguous
    weight = mg.Tensor(table, requires_grad=True)
    idx = mg.tensor([3, 0, 3, 5])
    assert mg.gradcheck(lambda w: F.embedding(idx, w) * 2.0, weight)


def test_scalar_and_empty_indices(backend):
    layer = nn.Embedding(4, 3)
    y = layer(mg.tensor(2))
    assert y.shape == (3,)
    y.sum().backward()
    np.testing.assert_array_equal(layer.weight.grad.numpy()[2], 1)
    layer.zero_grad()
    empty = layer(mg.from_numpy(np.zeros((2, 0), np.int64)))
    assert empty.shape == (2, 0, 3)
    empty.sum().backward()
    assert not layer.weight.grad.numpy().any()


def test_indices_changed_after_forward_do_not_reach_backward(backend):
    weight = mg.ones(5, 2, requires_grad=True)
    idx = np.array([0, 1])
    y = F.embedding(idx, weight)
    idx[:] = 4  # the caller reuses its array
    y.sum().backward()
    np.testing.assert_array_equal(weight.grad.numpy()[:, 0], [1, 1, 0, 0, 0])


# ------------------------------------------------------------------------------- the layer
def test_init_is_standard_normal():
    mg.manual_seed(0)
    w = nn.Embedding(400, 50).weight.data
    assert w.dtype == np.float32 and w.shape == (400, 50)
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02  # 20000 draws of N(0, 1)
    assert nn.Embedding(3, 2, dtype=np.float64).weight.dtype == np.float64


def test_repr_and_state_dict():
    layer = nn.Embedding(10, 3, padding_idx=-2, max_norm=1.5)
    assert repr(layer) == "Embedding(10, 3, padding_idx=8, max_norm=1.5)"
    assert list(layer.state_dict()) == ["weight"]


def test_from_pretrained(backend):
    table = mg.tensor(np.arange(12.0).reshape(4, 3), dtype=np.float64)
    frozen = nn.Embedding.from_pretrained(table, padding_idx=1)
    assert not frozen.weight.requires_grad and frozen.weight.dtype == np.float64
    np.testing.assert_array_equal(frozen.weight.data, table.data)  # padding row kept
    assert not np.shares_memory(frozen.weight.data, table.data)
    assert list(frozen.parameters()) == [frozen.weight]
    trainable = nn.Embedding.from_pretrained(np.ones((4, 3)), freeze=False, padding_idx=1)
    assert trainable.weight.requires_grad and trainable.weight.dtype == np.float32
    trainable(mg.tensor([1, 2, 1])).sum().backward()
    np.testing.assert_array_equal(trainable.weight.grad.numpy()[:, 0], [0, 0, 1, 0])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_max_norm_renormalises_named_rows_in_place(backend, rng, norm_type):
    table = rng.standard_normal((6, 4)) * 3
    layer = nn.Embedding.from_pretrained(mg.tensor(table, dtype=np.float64), freeze=False,
                                         max_norm=1.0, norm_type=norm_type)
    idx = np.array([1, 3, 3])
    y = layer(mg.from_numpy(idx))
    want = table.copy()
    for k in (1, 3):  # PyTorch: row * max_norm / (norm + 1e-7) where norm > max_norm
        norm = np.linalg.norm(table[k], ord=norm_type)
        if norm > 1.0:
            want[k] = table[k] * (1.0 / (norm + 1e-7))
    np.testing.assert_allclose(layer.weight.data, want, rtol=1e-14)
    np.testing.assert_allclose(y.numpy(), want[idx], rtol=1e-14)


def test_max_norm_change_is_seen_by_an_earlier_graph(backend):
    layer = nn.Embedding(3, 2, max_norm=0.5)
    layer.weight.data[...] = 5.0
    earlier = (layer.weight * layer.weight).sum()  # saved the old table
    layer(mg.tensor([0]))
    with pytest.raises(RuntimeError, match="in-place"):
        earlier.backward()


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, error, match", [
    (lambda: nn.Embedding(5, 2)(mg.tensor([0, 5])), IndexError, "index 5 is out of range"),
    (lambda: nn.Embedding(5, 2)(mg.tensor([-1, 2])), IndexError, "index -1 is out of range"),
    (lambda: nn.Embedding(5, 2)(np.array([2**64 - 1], np.uint64)), IndexError, "out of range"),
    (lambda: nn.Embedding(5, 2)(mg.tensor([0.0, 1.0])), TypeError, "integer indices.*float"),
    (lambda: nn.Embedding(5, 2)(np.array([True])), TypeError, "integer indices.*bool"),
    (lambda: nn.Embedding(5, 2, padding_idx=5), ValueError, r"padding_idx.*\[-5, 5\)"),
    (lambda: nn.Embedding(5, 2, padding_idx=-6), ValueError, "padding_idx"),
    (lambda: nn.Embedding(5, 2, padding_idx=1.0), TypeError, "padding_idx"),
    (lambda: nn.Embedding(5, 2, sparse=True), NotImplementedError, "sparse"),
    (lambda: nn.Embedding(5, 2, max_norm=-1.0), ValueError, "max_norm"),
    (lambda: nn.Embedding(5, 2, max_norm=1.0, norm_type=0), ValueError, "norm_type"),
    (lambda: nn.Embedding(0, 2), ValueError, "num_embeddings"),
    (lambda: nn.Embedding(5, 2.0), TypeError, "embedding_dim"),
    (lambda: F.embedding(mg.tensor([0]), mg.ones(5)), ValueError, "2-D"),
    (lambda: F.embedding(mg.tensor([0]), mg.ones(5, 2, dtype="int64")), TypeError,
     "floating-point"),
    (lambda: F.embedding(mg.tensor([0]), mg.ones(5, 2), padding_idx=7), ValueError,
     "padding_idx"),
    (lambda: F.embedding(mg.tensor([0]), mg.ones(5, 2), sparse=True), NotImplementedError,
     "sparse"),
    (lambda: nn.Embedding.from_pretrained(mg.ones(4)), ValueError, "2-D"),
    (lambda: nn.Embedding.from_pretrained(np.ones((2, 2), np.int64)), TypeError, "floating"),
])
def test_bad_input_is_named(backend, call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------------- one_hot
def test_one_hot_formula():
    x = np.array([[0, 3], [1, 1]])
    out = F.one_hot(mg.from_numpy(x), num_classes=5)
    assert out.dtype == np.int64 and out.shape == (2, 2, 5) and not out.requires_grad
    want = (x[..., None] == np.arange(5)).astype(np.int64)  # out[..., k] = [x == k]
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(F.one_hot(mg.tensor([2, 0])).numpy(),
                                  [[0, 0, 1], [1, 0, 0]])  # num_classes=-1: max + 1
    assert F.one_hot(mg.from_numpy(np.zeros(0, np.int64)), 4).shape == (0, 4)


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.one_hot(mg.tensor([0, 3]), 3), ValueError, "not smaller than num_classes=3"),
    (lambda: F.one_hot(mg.tensor([0, -1]), 3), ValueError, "non-negative"),
    (lambda: F.one_hot(mg.tensor([0.0, 1.0])), TypeError, "integer"),
    (lambda: F.one_hot(mg.from_numpy(np.zeros(0, np.int64))), ValueError, "empty"),
    (lambda: F.one_hot(mg.tensor([0]), 0), ValueError, "num_classes"),
    (lambda: F.one_hot(mg.tensor([0]), 2.0), TypeError, "num_classes"),
])
def test_one_hot_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------------- against torch
def test_embedding_matches_torch(backend, rng):
    torch = pytest.importorskip("torch")
    table = rng.standard_normal((9, 4))
    idx = rng.integers(0, 9, size=(5, 3))
    idx[0] = 7
    g = rng.standard_normal((5, 3, 4))
    for options in ({"padding_idx": -2}, {"scale_grad_by_freq": True},
                    {"max_norm": 1.2, "norm_type": 3.0}):
        ours = nn.Embedding.from_pretrained(mg.tensor(table, dtype=np.float64), freeze=False,
                                            **options)
        theirs = torch.nn.Embedding.from_pretrained(torch.tensor(table), freeze=False,
                                                    **options)
        y = ours(mg.from_numpy(idx))
        (y * mg.tensor(g, dtype=np.float64)).sum().backward()
        ty = theirs(torch.from_numpy(idx))
        (ty * torch.from_numpy(g)).sum().backward()
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.weight.data, theirs.weight.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                                   rtol=1e-12, atol=1e-12)


def test_one_hot_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.integers(0, 6, size=(3, 4))
    for num_classes in (-1, 6, 9):
        want = torch.nn.functional.one_hot(torch.from_numpy(x), num_classes).numpy()
        np.testing.assert_array_equal(F.one_hot(mg.from_numpy(x), num_classes).numpy(), want)
