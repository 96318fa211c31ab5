"""The version counter behind in-place safety: the in-place clock and each tensor's counter.

A graph node records the clock at its forward; backward compares that stamp with the clock
of each tensor it saved, so an in-place change between forward and backward is caught with
one int comparison per node (docs/architecture.md, "In-place operations").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tensor import Tensor


# The in-place clock: how many in-place changes this process has made. Each change stamps the
# changed tensor's counter with it and each graph node records it at its forward, so "was
# any input changed since this node ran?" is one int comparison per node in backward, and
# the forward pays one int store per node instead of one version per input.
_clock = [0]

# A tensor's version counter is a list [version, shared, stamp]. Most tensors are never
# changed in place, so they all start with this one immutable stand-in and get a list of
# their own only when they are changed or viewed (own_counter): no allocation per op.
FRESH_COUNTER = (0, False, 0)


def own_counter(t: Tensor) -> list:
    """``t``'s own mutable version counter, made on first need.

    The node that produced ``t`` watches its output through the same list, so it is handed
    over to that node too (a tuple cannot be watched for changes)."""
    counter = t._counter
    if counter is FRESH_COUNTER:
        counter = t._counter = [0, False, 0]
        node = t._ctx
        if node is not None and node.out_counter is FRESH_COUNTER:
            node.out_counter = counter
    return counter


def mark_changed(t: Tensor) -> None:
    """Record one in-place change of ``t``'s data: bump its version, stamp it with the clock.

    Call it after every deliberate in-place change of a tensor's array (``t._version += 1``
    does the same)."""
    counter = own_counter(t)
    _clock[0] += 1
    counter[0] += 1
    counter[2] = _clock[0]



def mark_all_changed(tensors: Any) -> None:
    """``mark_changed`` for every tensor of one update (an optimizer step), with one tick of
    the clock: a third of the cost of ``t._version += 1`` per tensor."""
    _clock[0] += 1
    stamp = _clock[0]
    for t in tensors:
        counter = t._counter
        if counter is FRESH_COUNTER:
            counter = own_counter(t)
        counter[0] += 1
        counter[2] = stamp
