"""Chart of benchmark ratios (``--plot PATH``): one panel per group, one bar per comparator.

matplotlib is optional: ``plot_rows`` raises a RuntimeError naming the package when it is
missing, and nothing else in the benchmark needs it.
"""

from __future__ import annotations

import math

from minigrad.bench import harness

#: Layout in inches: the height of one row (case), the space above a panel for its title,
#: below it for the tick labels, on its left for the row labels, on top for the legend, and
#: the figure's width. Two columns of panels keep the chart compact.
ROW_HEIGHT = 0.28
TITLE = 0.3
TICKS = 0.35
LABELS = 2.6
LEGEND = 0.4
WIDTH = 14.0


def _ticks(rows: list[dict], labels: list[str]) -> list[float]:
    """Powers of two spanning every ratio (and 1), at most eight of them (every second or
    fourth power on a wide range), for a log axis labelled "1/2x", "2x"..."""
    values = [r["ratios"][k] for r in rows for k in labels if r.get("ratios", {}).get(k)]
    lo = math.floor(math.log2(min(values + [1.0])))
    hi = math.ceil(math.log2(max(values + [1.0])))
    step = 1
    while (hi - lo) // step > 7:
        step *= 2
    lo, hi = step * math.floor(lo / step), step * math.ceil(hi / step)
    return [2.0**k for k in range(lo, hi + 1, step)]


def _tick_label(v: float) -> str:
    return f"{v:g}x" if v >= 1 else f"1/{1 / v:g}x"


def plot_rows(rows: list[dict], path: str) -> None:
    """Draw the speed-up ratios of ``harness.run`` rows to ``path``.

    One panel per group (two columns of panels), one row per case and shape, one bar per
    comparator that has data ("time of X / minigrad's time": above 1 minigrad is faster). The
    axis is logarithmic with ticks at powers of two, so 2x faster and 2x slower look alike.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib (pip install matplotlib); the tables need nothing"
        ) from exc

    rows = [r for r in rows if r.get("ratios")]
    labels = harness.ratio_labels(rows)
    if not rows or not labels:
        raise ValueError("no ratios to draw: minigrad's compiled column is empty")
    groups = list(dict.fromkeys(r["group"] for r in rows))
    per_group = {g: [r for r in rows if r["group"] == g] for g in groups}
    columns: list[list[str]] = [[], []] if len(groups) > 1 else [[]]
    for g in groups:  # in order, each group to the column that is shorter so far
        min(columns, key=lambda col: sum(len(per_group[h]) + 3 for h in col)).append(g)
    # a panel: a title line, its rows, a line of tick labels (inches, laid out by hand so that
    # every row has the same height whatever the panel)
    heights = [[TITLE + ROW_HEIGHT * len(per_group[g]) + TICKS for g in col] for col in columns]
    fig_height = LEGEND + max(sum(h) for h in heights)
    fig = plt.figure(figsize=(WIDTH, fig_height))
    panel_width = WIDTH / len(columns) - LABELS - 0.2
    ticks = _ticks(rows, labels)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bar = 0.8 / len(labels)
    for c, col in enumerate(columns):
        top = LEGEND
        left = c * WIDTH / len(columns) + LABELS
        for group, height in zip(col, heights[c], strict=True):
            axes_height = height - TITLE - TICKS
            bottom = fig_height - top - TITLE - axes_height
            ax = fig.add_axes((left / WIDTH, bottom / fig_height, panel_width / WIDTH,
                               axes_height / fig_height))
            _panel(ax, group, per_group[group], labels, colors, bar, ticks)
            top += height
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[i % len(colors)]) for i in
               range(len(labels))]
    fig.legend(handles, [f"{harness.column(lb).legend} / minigrad" for lb in labels],
               loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _panel(ax, group: str, rows: list[dict], labels: list[str], colors, bar: float,
           ticks: list[float]) -> None:
    """One group's horizontal bars, first row on top, a dashed line at parity."""
    for j, label in enumerate(labels):
        positions = [i + (j - (len(labels) - 1) / 2) * bar for i in range(len(rows))]
        values = [r["ratios"].get(label) or math.nan for r in rows]
        ax.barh(positions, values, height=bar, color=colors[j % len(colors)])
    ax.axvline(1.0, color="black", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlim(ticks[0] / 1.2, ticks[-1] * 1.2)
    ax.set_xticks(ticks, [_tick_label(t) for t in ticks], fontsize=7)
    ax.minorticks_off()
    ax.set_yticks(range(len(rows)), [f"{r['case']} [{r['shape']}]" for r in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, as in the table
    ax.set_title(group, fontsize=9, loc="left", pad=2)
    ax.grid(axis="x", linewidth=0.3)
