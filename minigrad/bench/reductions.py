"""Benchmark group "reductions": sum, mean, var, max, logsumexp, softmax, log_softmax."""

from __future__ import annotations

import numpy as np

from minigrad.bench.harness import COMPILED, Case, torch_or_none
from minigrad.kernels import reference

SHAPES = [(64, 128), (256, 512), (1024, 1024)]
QUICK_SHAPES = [(64, 128)]
REDUCTIONS = ["sum", "mean", "var", "max", "logsumexp"]
SOFTMAX = ["softmax", "log_softmax"]


def _torch_fn(torch, name: str, t, axis):
    """The PyTorch call doing the same work as kernel ``name``."""
    dim = axis if isinstance(axis, int) else list(axis)
    return {
        "sum": lambda: torch.sum(t, dim=dim),
        "mean": lambda: torch.mean(t, dim=dim),
        "var": lambda: torch.var_mean(t, dim=dim, correction=0),
        "max": lambda: torch.max(t, dim=dim),
        "logsumexp": lambda: torch.logsumexp(t, dim=dim),
        "softmax": lambda: torch.softmax(t, dim=dim),
        "log_softmax": lambda: torch.log_softmax(t, dim=dim),
    }[name]


def _case(name: str, x: np.ndarray, axis, torch) -> Case:
    ref = getattr(reference, name)
    impls = {"numpy": lambda: ref(x, axis)}
    if COMPILED is not None:
        fast = getattr(COMPILED, name)
        impls["cython"] = lambda: fast(x, axis)
    if torch is not None and not (name == "max" and isinstance(axis, tuple)):
        impls["torch"] = _torch_fn(torch, name, torch.from_numpy(x), axis)
    label = f"{name}(axis={axis})"
    # softmax reads x and writes y; a reduction reads x (its output is small)
    moved = 2 * x.nbytes if name in SOFTMAX else x.nbytes
    return Case("reductions", label, "x".join(map(str, x.shape)), impls, bytes=moved)


def cases(quick: bool) -> list[Case]:
    torch = torch_or_none()
    rng = np.random.default_rng(0)
    out = []
    for shape in QUICK_SHAPES if quick else SHAPES:
        x = rng.standard_normal(shape, dtype=np.float32)
        for axis in (0, -1):
            for name in REDUCTIONS + SOFTMAX:
                out.append(_case(name, x, axis, torch))
    x = rng.standard_normal((16, 8, 4, 4) if quick else (128, 64, 16, 16), dtype=np.float32)
    for name in REDUCTIONS:
        out.append(_case(name, x, (0, 2, 3), torch))
    x = rng.standard_normal((64, 100) if quick else (1024, 1000), dtype=np.float32)
    for name in ["logsumexp"] + SOFTMAX:
        out.append(_case(name, x, -1, torch))
    return out
