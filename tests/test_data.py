"""Dataset, TensorDataset, DataLoader (batching, collating, shuffling, seeding) and the toy
data sets."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad.data import (
    DataLoader,
    Dataset,
    TensorDataset,
    load_digits,
    make_circles,
    make_moons,
    make_spirals,
)


def _dataset(n=10):
    X = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    return X, y, TensorDataset(X, mg.tensor(y))


def test_tensor_dataset_indexing_and_length():
    X, y, ds = _dataset()
    assert len(ds) == 10
    x3, y3 = ds[3]
    np.testing.assert_array_equal(x3, X[3])
    assert y3 == 3
    xs, ys = ds[np.array([4, 1])]
    np.testing.assert_array_equal(xs, X[[4, 1]])
    np.testing.assert_array_equal(ys, [4, 1])


def test_tensor_dataset_rejects_different_lengths_and_scalars():
    with pytest.raises(ValueError, match=r"\[3, 4\]"):
        TensorDataset(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="scalar"):
        TensorDataset(np.float32(1.0))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


@pytest.mark.parametrize(
    "batch_size, drop_last, sizes",
    [
        (4, False, [4, 4, 2]),
        (4, True, [4, 4]),
        (5, False, [5, 5]),
        (1, False, [1] * 10),
        (32, False, [10]),
        (32, True, []),
    ],
)
def test_batches_in_order(batch_size, drop_last, sizes):
    X, y, ds = _dataset()
    loader = DataLoader(ds, batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes)
    assert [len(xb.data) for xb, _ in batches] == sizes
    for xb, yb in batches:
        assert isinstance(xb, mg.Tensor) and not xb.requires_grad
        assert xb.dtype == np.float32 and yb.dtype == np.int64  # float data: float32
    if sizes:
        np.testing.assert_array_equal(
            np.concatenate([xb.data for xb, _ in batches]), X[: sum(sizes)]
        )


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_keep_a_tensors_dtype_and_apply_the_dtype_rule_to_arrays(shuffle):
    X = np.linspace(0.0, 1.0, 12).reshape(6, 2) + 1e-12  # not representable in float32
    ds = TensorDataset(
        mg.tensor(X, dtype=mg.float64), X, X.tolist(), mg.tensor(X), mg.tensor(np.arange(6))
    )
    for x64, x_array, x_list, x32, y in DataLoader(ds, batch_size=4, shuffle=shuffle, seed=0):
        assert x64.dtype == np.float64  # a tensor the user typed float64 stays float64
        assert x_array.dtype == np.float32 and x_list.dtype == np.float32  # the dtype rule
        assert x32.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x64.data, X[y.data])  # no float32 rounding on the way
        np.testing.assert_array_equal(x_array.data, X[y.data].astype(np.float32))


def test_shuffle_is_a_permutation_new_each_epoch_and_seeded():
    X, y, ds = _dataset(50)
    loader = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    epoch1 = np.concatenate([yb.data for _, yb in loader])
    epoch2 = np.concatenate([yb.data for _, yb in loader])
    assert sorted(epoch1) == list(range(50)) and sorted(epoch2) == list(range(50))
    assert not np.array_equal(epoch1, epoch2)
    assert not np.array_equal(epoch1, np.arange(50))
    for xb, yb in loader:  # rows stay paired
        np.testing.assert_array_equal(xb.data, X[yb.data])
    again = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    np.testing.assert_array_equal(np.concatenate([yb.data for _, yb in again]), epoch1)


def test_unseeded_loader_follows_manual_seed():
    _, _, ds = _dataset(30)

    def first_epoch():
        return np.concatenate([yb.data for _, yb in DataLoader(ds, 7, shuffle=True)])

    mg.manual_seed(11)
    a = first_epoch()
    mg.manual_seed(11)
    b = first_epoch()
    np.testing.assert_array_equal(a, b)


def test_batches_are_copies():
    X, _, ds = _dataset()
    xb, _ = next(iter(DataLoader(ds, batch_size=4)))
    xb.data[...] = -1
    assert X.min() >= 0


def test_generic_dataset_is_stacked():
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i, i * i], np.float32), i % 2

    batches = list(DataLoader(Squares(), batch_size=2))
    assert len(batches) == 3
    np.testing.assert_array_equal(batches[1][0].data, [[2, 4], [3, 9]])
    np.testing.assert_array_equal(batches[2][1].data, [0])


def test_loader_rejects_bad_batch_size():
    _, _, ds = _dataset()
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        DataLoader(ds, batch_size=2.5)


@pytest.mark.parametrize("make", [make_moons, make_circles, make_spirals])
@pytest.mark.parametrize("n", [3, 7, 100])
def test_toy_sets_shapes_dtypes_and_seeding(make, n):
    X, y = make(n_samples=n, noise=0.1, seed=0)
    assert X.shape == (n, 2) and X.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    X2, y2 = make(n_samples=n, noise=0.1, seed=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    X3, _ = make(n_samples=n, noise=0.1, seed=1)
    assert not np.array_equal(X, X3)
    mg.manual_seed(5)
    a = make(n_samples=n, noise=0.1)
    mg.manual_seed(5)
    b = make(n_samples=n, noise=0.1)
    np.testing.assert_array_equal(a[0], b[0])


def test_toy_set_geometry_without_noise():
    X, y = make_moons(101, seed=0)
    assert np.bincount(y).tolist() == [51, 50]
    np.testing.assert_allclose(np.linalg.norm(X[y == 0], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(X[y == 1] - [1.0, 0.5], axis=1), 1.0, rtol=1e-6)
    X, y = make_circles(100, factor=0.5, seed=0)
    radius = np.linalg.norm(X, axis=1)
    np.testing.assert_allclose(radius[y == 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(radius[y == 1], 0.5, rtol=1e-6)
    X, y = make_spirals(90, n_classes=3, seed=0)
    assert np.bincount(y).tolist() == [30, 30, 30]
    assert np.linalg.norm(X, axis=1).max() <= 1.0 + 1e-6


def test_toy_set_arguments_are_checked():
    with pytest.raises(ValueError, match="noise"):
        make_moons(10, noise=-1)
    with pytest.raises(ValueError, match="factor"):
        make_circles(10, factor=1.5)
    with pytest.raises(ValueError, match="n_samples"):
        make_spirals(2, n_classes=3)
    with pytest.raises(ValueError, match="n_classes"):
        make_spirals(10, n_classes=0)


def test_load_digits():
    pytest.importorskip("sklearn")
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert sorted(np.unique(y).tolist()) == list(range(10))


def test_load_digits_as_images():
    pytest.importorskip("sklearn")
    X, y = load_digits()
    images, labels = load_digits(images=True)
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    np.testing.assert_array_equal(images.reshape(1797, 64), X)  # row-major: pixel (r, c) = 8r+c
    np.testing.assert_array_equal(labels, y)
    from sklearn.datasets import load_digits as sklearn_load_digits

    np.testing.assert_array_equal(images[:, 0] * 16, sklearn_load_digits().images)


def test_load_digits_without_sklearn_names_the_extra(monkeypatch):
    import sys

    for name in ("sklearn", "sklearn.datasets"):  # None in sys.modules: the import fails
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"minigrad-cython\[examples\]"):
        load_digits()


class _Pairs(Dataset):
    """Sample i: (a float vector, an int label), the map-style protocol of PyTorch."""

    def __len__(self):
        return 7

    def __getitem__(self, i):
        return np.full(3, i, np.float64), i % 3


def test_dataset_subclass_is_collated_into_batches():
    loader = DataLoader(_Pairs(), batch_size=3)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    xb, yb = batches[1]
    assert xb.shape == (3, 3) and xb.dtype == np.float32  # the dtype rule of mg.tensor
    assert yb.dtype == np.int64 and not xb.requires_grad
    np.testing.assert_array_equal(xb.data[:, 0], [3, 4, 5])
    np.testing.assert_array_equal(yb.data, [0, 1, 2])
    np.testing.assert_array_equal(batches[2][1].data, [0])  # the short last batch
    assert isinstance(TensorDataset(np.zeros(2)), Dataset)


def test_dataset_of_float64_tensors_gives_float64_batches():
    # a Tensor sample keeps its dtype, as TensorDataset's batches do (0.1 is not rounded)
    class Precise(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"x": mg.tensor([0.1 * i], dtype=np.float64), "n": np.array([0.1 * i])}

    batch = next(iter(DataLoader(Precise(), batch_size=4)))
    assert batch["x"].dtype == np.float64 and batch["n"].dtype == np.float32
    np.testing.assert_array_equal(batch["x"].data[:, 0], [0.0, 0.1, 0.2, 0.1 * 3])


def test_shuffled_dataset_batches_cover_every_sample_once():
    labels = [int(v) for _, yb in DataLoader(_Pairs(), batch_size=2, shuffle=True, seed=3)
              for v in yb.data]
    firsts = sorted(int(x) for xb, _ in DataLoader(_Pairs(), batch_size=2, shuffle=True,
                                                   seed=3) for x in xb.data[:, 0])
    assert firsts == list(range(7)) and sorted(labels) == sorted(i % 3 for i in range(7))


def test_dict_samples_give_dict_batches():
    class Named(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"image": np.ones((2, 2)) * i, "label": i}

    batch = next(iter(DataLoader(Named(), batch_size=4)))
    assert set(batch) == {"image", "label"} and batch["image"].shape == (4, 2, 2)
    np.testing.assert_array_equal(batch["label"].data, [0, 1, 2, 3])


def test_dataset_mistakes_are_named():
    class NoLength(Dataset):
        def __getitem__(self, i):
            return i

    class Ragged(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return (np.zeros(i + 1), 0) if i else (np.zeros(1), 0, 1)

    class Shapes(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros(i + 1)

    with pytest.raises(TypeError, match="NoLength subclasses Dataset but does not define "
                                        "__len__"):
        DataLoader(NoLength())
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Dataset()[0]
    with pytest.raises(ValueError, match="not a tuple of 3 fields"):
        list(DataLoader(Ragged(), batch_size=2))
    with pytest.raises(ValueError, match=r"different shapes \[\(1,\), \(2,\)\]"):
        list(DataLoader(Shapes(), batch_size=2))


@pytest.mark.parametrize("sample, what", [
    ({"x": np.zeros(2), "meta": {"id": 1}}, "key 'meta': its values are dict"),
    ((np.zeros(2), "cat"), "field 1: its values are str"),
    (None, "the samples: its values are NoneType"),
])
def test_a_field_that_is_not_numbers_is_named(sample, what):
    class Odd(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return sample

    with pytest.raises(TypeError, match=f"cannot batch {what}"):
        list(DataLoader(Odd(), batch_size=2))
