"""Datasets, the DataLoader, and small toy data sets (moons, circles, spirals); the image data
sets of ``minigrad.datasets`` (digits, MNIST) are re-exported here.

Data stays in NumPy arrays until a batch is made; the loader then wraps each batch array in a
Tensor that does not require grad. No model code lives here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import random as mg_random
from .datasets import load_digits, load_mnist, read_idx
from .tensor import Tensor

__all__ = [
    "Dataset",
    "TensorDataset",
    "DataLoader",
    "make_moons",
    "make_circles",
    "make_spirals",
    "load_digits",
    "load_mnist",
    "read_idx",
]


class Dataset:
    """Base class of a map-style data set: subclasses define ``__getitem__(i)``, returning
    sample ``i``, and ``__len__``, the number of samples (as PyTorch's ``Dataset``).

    A sample is an array or number, a tuple of them (e.g. ``(image, label)``) or a dict of
    them; ``DataLoader`` stacks the samples of a batch field by field into Tensors (a field of
    Tensors keeps their dtype; arrays and numbers follow the dtype rule of ``mg.tensor``).

    Example:
        >>> class Squares(Dataset):
        ...     def __len__(self):
        ...         return 100
        ...     def __getitem__(self, i):
        ...         return np.array([i], np.float32), i * i
        >>> for x, y in DataLoader(Squares(), batch_size=10): ...
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__()")


class TensorDataset(Dataset):
    """Samples are the rows of several arrays of the same length (e.g. inputs and labels).

    Args:
        *arrays: ndarrays, Tensors (their ``.data`` is used, not copied) or array-likes, each
            with the samples along axis 0. Batches of a Tensor keep its dtype (a float64
            tensor gives float64 batches); float ndarrays and Python data follow the dtype
            rule of ``mg.tensor`` (float32).

    Example:
        >>> ds = TensorDataset(X, y)
        >>> x0, y0 = ds[0]
        >>> len(ds)
    """

    def __init__(self, *arrays: Any):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        converted = []
        dtypes = []
        for i, a in enumerate(arrays):
            array = a.data if isinstance(a, Tensor) else np.asarray(a)
            if array.ndim == 0:
                raise ValueError(f"array {i} is a scalar; samples must lie along axis 0")
            if array.dtype.hasobject:  # ragged rows or arbitrary objects cannot be batched
                raise TypeError(
                    f"array {i} has dtype object; TensorDataset needs numeric arrays"
                )
            converted.append(array)
            dtypes.append(array.dtype if isinstance(a, Tensor) else None)
        lengths = [len(a) for a in converted]
        if len(set(lengths)) != 1:
            raise ValueError(f"all arrays must have the same length, got lengths {lengths}")
        self.arrays: tuple[np.ndarray, ...] = tuple(converted)
        # The dtype each array's batches keep: a Tensor's (the user typed it already), or
        # None for the dtype rule.
        self.batch_dtypes: tuple[np.dtype | None, ...] = tuple(dtypes)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        """Row ``index`` of every array (an int, a slice or an integer array of indices)."""
        return tuple(a[index] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return f"TensorDataset({shapes})"


class DataLoader:
    """Iterate over a dataset in mini-batches of Tensors.

    A ``TensorDataset`` is batched with one fancy-indexing operation per array; any other
    dataset (a ``Dataset`` subclass, or anything with ``__len__`` and ``__getitem__``) is
    batched by collating its samples: a tuple sample gives one Tensor per position, a dict
    sample a dict of Tensors under the same keys, anything else (an array, a number) one Tensor.

    Args:
        dataset: the samples.
        batch_size: samples per batch.
        shuffle: draw a new order every epoch (every ``iter(loader)``).
        drop_last: skip the last batch when it is smaller than ``batch_size``.
        seed: seed of the loader's own generator; None draws one from minigrad's global
            generator, so that ``mg.manual_seed`` makes the order reproducible.

    Yields:
        Tuples (or, for dict samples, dicts) of Tensors (requires_grad=False) with
        ``batch_size`` rows (fewer at the end).

    Example:
        >>> loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, seed=0)
        >>> for xb, yb in loader: ...
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(dataset, tuple) and dataset and all(
            isinstance(a, np.ndarray | Tensor) for a in dataset
        ):
            # DataLoader((X, y)) would batch the two arrays as two "samples": a silent mix-up
            raise TypeError(
                "DataLoader got a tuple of arrays; wrap them in a dataset first: "
                "DataLoader(TensorDataset(X, y), batch_size=...)"
            )
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"DataLoader needs a dataset with __len__ and __getitem__ (e.g. a "
                f"TensorDataset), got {type(dataset).__name__}"
            )
        if isinstance(dataset, Dataset):
            for method in ("__len__", "__getitem__"):
                if getattr(type(dataset), method) is getattr(Dataset, method):
                    raise TypeError(f"{type(dataset).__name__} subclasses Dataset but does not "
                                    f"define {method}")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if seed is None:
            seed = int(mg_random.generator().integers(2**63))
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...] | dict[Any, Tensor]]:
        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else None
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        typed = isinstance(self.dataset, TensorDataset)
        for start in range(0, stop, self.batch_size):
            if order is not None:
                index: Any = order[start : start + self.batch_size]
            else:
                index = slice(start, min(start + self.batch_size, n))
            arrays = self._batch(index)
            if typed:
                dtypes = self.dataset.batch_dtypes
                yield tuple(Tensor(a, dtype=dt) for a, dt in zip(arrays, dtypes, strict=True))
            elif isinstance(arrays, dict):
                yield {key: _batch_tensor(array) for key, array in arrays.items()}
            else:
                yield tuple(_batch_tensor(array) for array in arrays)

    def _batch(self, index: Any) -> Sequence[np.ndarray] | dict[Any, np.ndarray]:
        if isinstance(self.dataset, TensorDataset):
            # A fancy index returns a fresh array; copy a slice too, so that changing a
            # batch in place never changes the dataset.
            return [np.array(a[index]) for a in self.dataset.arrays]
        positions = range(index.start, index.stop) if isinstance(index, slice) else index
        return _collate([self.dataset[int(i)] for i in positions])

    def __repr__(self) -> str:
        return (
            f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})"
        )


def _collate(samples: list) -> list | dict:
    """Stack a batch of samples field by field: tuples position by position, dicts key by key,
    anything else as one field. Every sample must have the structure of the first."""
    first = samples[0]
    if isinstance(first, Mapping):
        keys = list(first)
        for i, sample in enumerate(samples):
            if not isinstance(sample, Mapping) or set(sample) != set(keys):
                raise ValueError(f"sample {i} of the batch is not a dict with the keys {keys} "
                                 f"of the first sample")
        return {key: _stack([sample[key] for sample in samples], f"key {key!r}") for key in keys}
    if isinstance(first, tuple):
        for i, sample in enumerate(samples):
            if not isinstance(sample, tuple) or len(sample) != len(first):
                raise ValueError(f"sample {i} of the batch is not a tuple of {len(first)} "
                                 f"fields like the first sample")
        columns = zip(*samples, strict=True)
        return [_stack(list(column), f"field {j}") for j, column in enumerate(columns)]
    return [_stack(samples, "the samples")]


def _stack(values: list, what: str) -> np.ndarray | Tensor:
    """One field of every sample, stacked along a new axis 0; shapes must agree."""
    arrays = [np.asarray(value) for value in values]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"cannot batch {what}: samples have different shapes {sorted(shapes)}")
    stacked = np.stack(arrays)
    if stacked.dtype.kind not in "biuf":  # e.g. a nested dict, a string, None
        raise TypeError(f"cannot batch {what}: its values are {type(values[0]).__name__} "
                        f"(dtype {stacked.dtype}), not arrays or numbers; a sample is an "
                        f"array, a number, or a tuple or dict of them")
    if all(isinstance(v, Tensor) for v in values):  # Tensors keep their dtype, as in a
        return Tensor(stacked, dtype=stacked.dtype)   # TensorDataset
    return stacked


def _batch_tensor(field: np.ndarray | Tensor) -> Tensor:
    """A batched field as a Tensor: stacked Tensors as they are, arrays and numbers through
    the dtype rule of ``mg.tensor``."""
    return field if isinstance(field, Tensor) else Tensor(field)


# --------------------------------------------------------------------------- toy data
def _check_n(n_samples: int, minimum: int = 1) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be an int, got {n_samples!r}")
    if n_samples < minimum:
        raise ValueError(f"n_samples must be >= {minimum}, got {n_samples}")
    return int(n_samples)


def _finish(
    X: np.ndarray, y: np.ndarray, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Add Gaussian noise, shuffle the rows, and return (float32 X, int64 y)."""
    if not (math.isfinite(noise) and noise >= 0):  # NaN would pass a plain noise < 0 test
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    if noise > 0:
        X = X + rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order].astype(np.int64)


def make_moons(
    n_samples: int = 100, noise: float = 0.0, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles in 2-D: class 0 on top, class 1 below and shifted.

    Returns:
        X float32 (n_samples, 2), y int64 (n_samples,) in {0, 1}; the first class gets the
        extra sample when n_samples is odd.
    """
    n = _check_n(n_samples, 2)
    rng = np.random.default_rng(seed) if seed is not None else mg_random.generator()
    n_top = (n + 1) // 2
    t_top = np.linspace(0.0, np.pi, n_top)
    t_bottom = np.linspace(0.0, np.pi, n - n_top)
    top = np.stack([np.cos(t_top), np.sin(t_top)], axis=1)
    bottom = np.stack([1.0 - np.cos(t_bottom), 0.5 - np.sin(t_bottom)], axis=1)
    X = np.concatenate([top, bottom])
    y = np.concatenate([np.zeros(n_top), np.ones(n - n_top)])
    return _finish(X, y, noise, rng)


def make_circles(
    n_samples: int = 100, noise: float = 0.0, factor: float = 0.8, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles in 2-D: class 0 on the unit circle, class 1 at radius ``factor``.

    Returns:
        X float32 (n_samples, 2), y int64 (n_samples,) in {0, 1}.
    """
    n = _check_n(n_samples, 2)
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1), got {factor}")
    rng = np.random.default_rng(seed) if seed is not None else mg_random.generator()
    n_outer = (n + 1) // 2
    t_outer = np.linspace(0.0, 2 * np.pi, n_outer, endpoint=False)
    t_inner = np.linspace(0.0, 2 * np.pi, n - n_outer, endpoint=False)
    outer = np.stack([np.cos(t_outer), np.sin(t_outer)], axis=1)
    inner = factor * np.stack([np.cos(t_inner), np.sin(t_inner)], axis=1)
    X = np.concatenate([outer, inner])
    y = np.concatenate([np.zeros(n_outer), np.ones(n - n_outer)])
    return _finish(X, y, noise, rng)


def make_spirals(
    n_samples: int = 100, n_classes: int = 3, noise: float = 0.0, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n_classes`` interleaved spiral arms in 2-D, each turning once from the centre out.

    Returns:
        X float32 (n_samples, 2) within about [-1, 1], y int64 (n_samples,) in
        ``range(n_classes)``; samples are shared out as evenly as possible.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an int, got {n_classes!r}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    n = _check_n(n_samples, n_classes)
    rng = np.random.default_rng(seed) if seed is not None else mg_random.generator()
    y = np.arange(n) % n_classes
    counts = np.bincount(y, minlength=n_classes)
    # Position along its arm of each sample, 0 at the centre and 1 at the tip.
    r = np.concatenate([np.linspace(0.0, 1.0, c) if c > 1 else np.zeros(c) for c in counts])
    y = np.repeat(np.arange(n_classes), counts)
    theta = 2 * np.pi * (y / n_classes + r)
    X = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return _finish(X, y, noise, rng)
