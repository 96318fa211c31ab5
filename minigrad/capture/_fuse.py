"""Rewrites of a record into fewer kernel calls that compute the same bits.

A replay is free to call other functions than the recorded ones when they compute exactly
the same floating-point operations in the same order. Two rewrites:

- a BatchNorm (or LayerNorm) whose output only a ReLU reads becomes one
  ``BatchNorm.forward_relu`` call (the kernel applies ``np.maximum(y, 0)`` to its output
  while it is in cache), and the two backward calls become one ``BatchNorm.backward_relu``
  (the kernel forms ReLU's backward itself): two op calls and two temporaries
  fewer per pair, and the norm's own output is never materialised;
- a mean cross-entropy whose backward starts the backward pass (``loss.backward()``, the
  seed a 1) computes its gradient in the forward's kernel call (``cross_entropy_fused``):
  one argument check, one pass over the targets and one kernel call fewer.

A step's output may be fused away only when nothing else reads it: no other op, no
gradient sum, no leaf, and not the function's return value.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .. import kernels
from ..ops.elementwise import ReLU
from ..ops.loss import CrossEntropy
from ..ops.norm import BatchNorm, LayerNorm
from ._sources import Constant, Slot


class BatchNormReLU:
    """BatchNorm followed by ReLU as one op of a replay (see the module docstring)."""

    forward = staticmethod(BatchNorm.forward_relu)
    backward = staticmethod(BatchNorm.backward_relu)


class LayerNormReLU:
    """LayerNorm followed by ReLU as one op of a replay."""

    forward = staticmethod(LayerNorm.forward_relu)
    backward = staticmethod(LayerNorm.backward_relu)


_WITH_RELU = {BatchNorm: BatchNormReLU, LayerNorm: LayerNormReLU}


class CrossEntropyMean:
    """``CrossEntropy`` with reduction "mean" whose backward receives the seed 1: the forward
    makes the gradient too, in one kernel call, and the backward hands it over. The loss is
    reduced exactly as ``CrossEntropy.forward`` reduces it, and the gradient is what
    ``CrossEntropy.backward`` computes for a seed of 1 (1 / count per row)."""

    @staticmethod
    def forward(ctx, logits, *, target, label_smoothing, ignore_index, reduction):
        loss, count, dlogits = kernels.impl.cross_entropy_fused(logits, target,
                                                                label_smoothing, ignore_index)
        ctx.save_for_backward(dlogits)
        total = loss.sum(dtype=np.float64)
        total = total / count if count else np.nan
        return np.asarray(total, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        return ctx.saved[0]


FUSED = ("fused",)  # a step whose work another step now does: the replay emits nothing


def _slots_read(step: tuple) -> list[Slot]:
    """Every slot a step reads."""
    kind = step[0]
    if kind == "forward":
        values = [*step[2], *step[3].values()]
    elif kind == "backward":
        values = [step[2]]
    elif kind in ("fit", "handed"):
        values = [step[1]] if kind == "fit" else [step[2]]
    elif kind == "add":
        values = [step[1], step[2]]
    elif kind == "leaf":
        values = [step[2]]
    elif kind == "targets":
        values = [step[3]]
    else:
        values = []
    return [v for v in values if isinstance(v, Slot)]


def fuse(steps: list[tuple], returned: set[int], constants: list[Any]) -> list[tuple]:
    """``steps`` with every BatchNorm-ReLU or LayerNorm-ReLU pair and every seeded mean
    cross-entropy fused; ``returned`` holds the indices of the slots the function returns
    (they must stay), ``constants`` the record's constants (the ops' settings)."""
    steps = _fuse_cross_entropy(steps, constants)
    reads = Counter(s.index for step in steps for s in _slots_read(step))
    for index in returned:
        reads[index] += 1
    backward_of = {step[1]: k for k, step in enumerate(steps) if step[0] == "backward"}
    readers = {}
    for k, step in enumerate(steps):
        for s in _slots_read(step):
            readers[s.index] = k
    out = list(steps)
    for k, step in enumerate(steps):
        if step[0] != "forward" or step[1] not in _WITH_RELU or step[5]:
            continue
        norm_out = step[6].index
        if reads[norm_out] != 1:
            continue
        r = readers[norm_out]
        relu = steps[r]
        if relu[0] != "forward" or relu[1] is not ReLU or relu[3] or (relu[4] is None) != (
                step[4] is None):
            continue
        plan = _backward_plan(steps, reads, backward_of, k, r)
        if plan is None:
            continue
        out[k] = ("forward", _WITH_RELU[step[1]], step[2], step[3], step[4], False, relu[6])
        out[r] = FUSED
        for index, replacement in plan:
            out[index] = replacement
    return out


def _backward_plan(steps: list[tuple], reads: Counter, backward_of: dict[int, int],
                   bn: int, relu: int) -> list[tuple[int, tuple]] | None:
    """How the backward steps of a norm (forward step ``bn``) and its ReLU (``relu``) change
    when they are fused: none when neither ran backward; the ReLU's dropped and the norm's
    fed the ReLU's incoming gradient when the ReLU's gradient went only there; None (no
    fusion) otherwise."""
    b_bn, b_relu = backward_of.get(bn), backward_of.get(relu)
    if b_bn is None and b_relu is None:
        return []
    if b_bn is None or b_relu is None or b_relu > b_bn:
        return None
    _, _, relu_grad, relu_outs = steps[b_relu]
    _, _, bn_grad, bn_outs = steps[b_bn]
    if (len(relu_outs) != 1 or relu_outs[0] is None or relu_outs[0] != bn_grad
            or reads[bn_grad.index] != 1):
        return None
    return [(b_relu, FUSED), (b_bn, ("backward", bn, relu_grad, bn_outs))]


def _fuse_cross_entropy(steps: list[tuple], constants: list[Any]) -> list[tuple]:
    """Each mean ``CrossEntropy`` whose backward received the seed (a 1 made by the
    backward pass itself, not a gradient from another op) becomes ``CrossEntropyMean``."""
    seeds = {step[3].index for step in steps if step[0] == "seed" and step[1] == ()}
    out = list(steps)
    for step in steps:
        if step[0] != "backward" or not isinstance(step[2], Slot) or step[2].index not in seeds:
            continue
        k = step[1]
        forward = steps[k]
        reduction = forward[3].get("reduction")
        if (forward[1] is CrossEntropy and isinstance(reduction, Constant)
                and constants[reduction.index] == "mean" and forward[4] is not None):
            out[k] = ("forward", CrossEntropyMean, *forward[2:])
    return out
