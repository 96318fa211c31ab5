"""Bar chart of benchmark ratios (``--plot PATH``) and a table of every implementation's time.

matplotlib is optional: ``plot_rows`` raises a RuntimeError naming the package when it is
missing, and nothing else in the benchmark needs it.
"""

from __future__ import annotations

import math

from minigrad.bench import harness

#: The ratios drawn, as (row key, legend label): how many times faster minigrad's compiled
#: backend is than the other implementation (above 1: minigrad wins).
RATIOS = (("numpy/cython", "NumPy time / minigrad time"),
          ("torch/cython", "PyTorch (2 threads) time / minigrad time"))


def plot_rows(rows: list[dict], path: str) -> None:
    """Draw the speed-up ratios of ``harness.run`` rows as grouped horizontal bars to ``path``.

    One group of bars per row (case and shape), one bar per ratio in ``RATIOS``; a dashed line
    marks 1 (parity). The axis is logarithmic so 2x faster and 2x slower look alike.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib (pip install matplotlib); the tables need nothing"
        ) from exc

    labels = [f"{r['group']}.{r['case']} [{r['shape']}]" for r in rows]
    height = 0.8 / len(RATIOS)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) * len(RATIOS) + 1.5))
    for k, (key, legend) in enumerate(RATIOS):
        positions = [i + (k - (len(RATIOS) - 1) / 2) * height for i in range(len(rows))]
        values = [r.get(key) or math.nan for r in rows]
        bars = ax.barh(positions, values, height=height, label=legend)
        for bar, value in zip(bars, values, strict=True):
            if not math.isnan(value):
                ax.annotate(f"{value:.2f}x", (value, bar.get_y() + bar.get_height() / 2),
                            xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()  # first row on top, as in the table
    ax.set_xlabel("speed-up of minigrad (compiled backend); > 1 means minigrad is faster")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_all_times(rows: list[dict]) -> str:
    """Every implementation's median time per row, including those the main table omits
    (``minigrad-numpy``, ``torch-1T``), with each one's time relative to minigrad (cython)."""
    labels: list[str] = []
    for r in rows:
        labels += [label for label in r["times"] if label not in labels]
    lines = []
    for r in rows:
        cython = r["times"].get("cython")
        cells = []
        for label in labels:
            t = r["times"].get(label)
            if t is None:
                continue
            ratio = f" ({t / cython:.2f}x)" if cython and label != "cython" else ""
            cells.append(f"{label} {harness.format_time(t)}{ratio}")
        lines.append(f"{r['group']}.{r['case']} [{r['shape']}]: " + ", ".join(cells))
    return "\n".join(lines)


