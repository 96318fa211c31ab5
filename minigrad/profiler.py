"""``minigrad.profiler.profile()``: time every op's forward and backward, per op and backend.

    >>> from minigrad import profiler
    >>> with profiler.profile() as prof:
    ...     loss = model(x).sum(); loss.backward()
    >>> print(prof.table())
    >>> prof.export_chrome_trace("step.json")   # open in https://ui.perfetto.dev

The profile is an engine observer (``minigrad.hooks``): while the block runs, ``Function.apply``
and the backward walk time each op with ``time.perf_counter_ns``; outside it the engine is back
on its plain paths and profiling costs nothing. A forward time covers the whole op as the
caller sees it (``Function.apply``: the kernel plus the Tensor and graph node around it); a
backward time covers the node's ``backward`` and the summing of its gradients to its inputs'
shapes. Ops run by any thread are recorded, each with its thread id.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from . import hooks, kernels
from .serialization import write_atomically

__all__ = ["OpStats", "Profile", "profile"]


@dataclass(frozen=True)
class OpStats:
    """One row of ``Profile.stats()``: an op on one backend, its counts and times in µs."""

    name: str
    backend: str
    forward_count: int
    forward_us: float
    backward_count: int
    backward_us: float
    share: float  # of the time spent in all recorded ops, 0..1

    @property
    def total_us(self) -> float:
        """Forward plus backward time."""
        return self.forward_us + self.backward_us

    @property
    def forward_mean_us(self) -> float:
        """Mean time of one forward (0 when it never ran)."""
        return self.forward_us / self.forward_count if self.forward_count else 0.0

    @property
    def backward_mean_us(self) -> float:
        """Mean time of one backward (0 when it never ran)."""
        return self.backward_us / self.backward_count if self.backward_count else 0.0


class Profile(hooks.Observer):
    """The record of one ``profile()`` block: ``events`` holds one
    ``(op, phase, start_ns, duration_ns, backend, thread_id)`` tuple per forward or backward,
    in the order they finished; ``stats()``, ``table()`` and ``export_chrome_trace()`` read it.
    Entering the same profile again adds to its record: the events of every block, the wall
    time summed over the blocks, and trace times from the start of the first block.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, int, str, int]] = []
        self.start_ns = self.end_ns = 0
        self._block_ns = self._recorded_ns = 0  # this block's start; earlier blocks' wall time
        self._handle: hooks.RemovableHandle | None = None

    def __enter__(self) -> Profile:
        if self._handle is not None:
            raise RuntimeError("this profile is already recording")
        self._handle = hooks.observe(self)
        self._block_ns = perf_counter_ns()
        self.start_ns = self.start_ns or self._block_ns
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end_ns = perf_counter_ns()
        self._recorded_ns += self.end_ns - self._block_ns
        handle, self._handle = self._handle, None
        handle.remove()

    # the engine calls these (hooks.Observer)
    def forward(self, fn: type, inputs: tuple, attrs: dict, output: Any,
                start_ns: int, end_ns: int) -> None:
        self.events.append((fn.__name__, "forward", start_ns, end_ns - start_ns,
                            kernels.get_backend(), threading.get_ident()))

    def backward(self, node: Any, grad: Any, input_grads: tuple, start_ns: int,
                 end_ns: int) -> None:
        self.events.append((node.fn.__name__, "backward", start_ns, end_ns - start_ns,
                            kernels.get_backend(), threading.get_ident()))

    # ------------------------------------------------------------------ reading
    @property
    def wall_us(self) -> float:
        """The block's wall-clock time in µs (so far, while it runs), summed over the blocks
        when the profile was entered more than once."""
        running = perf_counter_ns() - self._block_ns if self._handle is not None else 0
        return (self._recorded_ns + running) / 1e3

    def stats(self) -> list[OpStats]:
        """One row per (op, backend), the most expensive first."""
        sums: dict[tuple[str, str], list[float]] = {}
        for name, phase, _, duration, backend, _ in self.events:
            row = sums.setdefault((name, backend), [0, 0.0, 0, 0.0])
            offset = 0 if phase == "forward" else 2
            row[offset] += 1
            row[offset + 1] += duration / 1e3
        total = sum(r[1] + r[3] for r in sums.values()) or 1.0
        rows = [OpStats(name, backend, int(fc), ft, int(bc), bt, (ft + bt) / total)
                for (name, backend), (fc, ft, bc, bt) in sums.items()]
        return sorted(rows, key=lambda r: (-r.total_us, r.name, r.backend))

    def table(self, limit: int | None = None) -> str:
        """The stats as a text table sorted by total time (``limit`` rows at most), with the
        share of the block's wall time spent inside ops."""
        rows = self.stats()
        head = (f"{'op':<18} {'backend':<7} {'fwd n':>6} {'fwd µs':>10} {'fwd mean':>9} "
                f"{'bwd n':>6} {'bwd µs':>10} {'bwd mean':>9} {'total µs':>10} {'share':>6}")
        lines = [head, "-" * len(head)]
        for r in rows[:limit]:
            lines.append(
                f"{r.name:<18} {r.backend:<7} {r.forward_count:>6} {r.forward_us:>10.1f} "
                f"{r.forward_mean_us:>9.1f} {r.backward_count:>6} {r.backward_us:>10.1f} "
                f"{r.backward_mean_us:>9.1f} {r.total_us:>10.1f} {r.share:>6.1%}")
        in_ops = sum(r.total_us for r in rows)
        wall = self.wall_us
        lines.append(f"{len(self.events)} op calls, {in_ops:.1f} µs inside ops of "
                     f"{wall:.1f} µs wall ({in_ops / wall if wall else 0.0:.0%}); the rest is "
                     "Python outside ops (layers, optimizer, data, the profiler itself)")
        return "\n".join(lines)

    __str__ = table

    def chrome_trace(self) -> dict[str, Any]:
        """The events in the Chrome trace format (complete events, µs from the block start)."""
        pid = os.getpid()
        events = [{"name": name, "cat": phase, "ph": "X", "pid": pid, "tid": tid,
                   "ts": (start - self.start_ns) / 1e3, "dur": duration / 1e3,
                   "args": {"backend": backend}}
                  for name, phase, start, duration, backend, tid in self.events]
        events.sort(key=lambda e: e["ts"])
        return {"traceEvents": events, "displayTimeUnit": "ms"}

    def export_chrome_trace(self, path: str | os.PathLike) -> None:
        """Write the Chrome trace JSON to ``path`` atomically (a failure leaves the old file);
        open it in Perfetto (https://ui.perfetto.dev) or chrome://tracing."""
        text = json.dumps(self.chrome_trace()).encode("utf-8")
        write_atomically(path, lambda f: f.write(text))


def profile() -> Profile:
    """A context manager recording every op's forward and backward while its block runs:
    ``with profile() as prof: ...`` then ``prof.table()``, ``prof.stats()`` or
    ``prof.export_chrome_trace(path)``."""
    return Profile()
