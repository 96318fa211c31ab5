"""The picture of a ``Monitor``: one panel per metric, one line per layer, over the steps."""

from __future__ import annotations

import math
import os
from typing import Any

from ._files import new_figure, picture_format, write_atomically

# (metric, panel title, log scale): the order of the panels
PANELS = [
    ("mean", "activation mean", False),
    ("std", "activation std", True),
    ("saturated", "share |z| > threshold before sigmoid/tanh", False),
    ("dead", "share of dead ReLU units", False),
    ("grad_norm", "gradient norm of the weight", True),
    ("update_ratio", "update norm / weight norm", True),
    ("bn_mean_gap", "BatchNorm: |batch - running mean| / running std", False),
    ("bn_var_ratio", "BatchNorm: batch var / running var", True),
]
COLUMNS = 4


def render(monitor: Any, path: str | os.PathLike, panels: list, dpi: int) -> None:
    """Write the monitor's panels that have data to ``path`` (PNG or SVG), atomically."""
    fmt = picture_format(path)
    shown = [(metric, title, log) for metric, title, log in panels
             if any(metric in monitor.metrics(layer) for layer in monitor.layers)]
    if not shown:
        raise ValueError("the monitor has recorded nothing yet: run a training step first")
    rows = math.ceil(len(shown) / COLUMNS)
    columns = min(COLUMNS, len(shown))
    fig = new_figure(figsize=(3.3 * columns, 2.5 * rows))
    for i, (metric, title, log) in enumerate(shown):
        ax = fig.add_subplot(rows, columns, i + 1)
        for layer in monitor.layers:
            if metric in monitor.metrics(layer):
                steps, values = monitor.series(layer, metric)
                ax.plot(steps, values, lw=0.9, label=f"{layer} {monitor.kinds.get(layer, '')}")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        if log:
            ax.set_yscale("log")
        if i >= len(shown) - columns:
            ax.set_xlabel("step", fontsize=7)
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
