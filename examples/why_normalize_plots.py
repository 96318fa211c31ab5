"""The figures of examples/why_normalize.py: one function per experiment, each writing one
PNG (small: 72 dpi) from the results the experiment returned."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLORS = {"none": "tab:gray", "batchnorm": "tab:blue", "layernorm": "tab:orange",
          "batchnorm+noise": "tab:purple"}


def checkpoints(args) -> list[int]:
    """The step counts at which test accuracy is measured: every ``args.every`` and the end."""
    return sorted(set(range(0, len(args.batches), args.every)) | {len(args.batches)})


def _smooth(values: np.ndarray, window: int = 10) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start), so trends show through
    the batch-to-batch noise."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    ends = np.arange(1, len(values) + 1)
    return (cumulative[ends] - cumulative[ends - counts]) / counts


def _save(fig, out: Path, name: str) -> None:
    path = out / name
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    fig.canvas.figure.clf()
    print(f"  figure: {path}")


def plot_shift(plt, result, args, out: Path) -> None:
    fig, axes = plt.subplots(1, args.depth + 1, figsize=(3.2 * (args.depth + 1), 2.9))
    for norm, r in result.items():
        for k, ax in enumerate(axes[:-1]):
            ax.plot(_smooth(r["shift"][:, k]), color=COLORS[norm], label=norm, lw=1)
        axes[-1].plot(checkpoints(args), 100 * r["accuracy"], color=COLORS[norm], label=norm)
    for k, ax in enumerate(axes[:-1]):
        ax.set(yscale="log", xlabel="step", title=f"input of Linear {k + 2}")
    axes[0].set_ylabel("move per step (in stds)")
    axes[-1].set(xlabel="step", ylabel="test accuracy (%)", ylim=(0, 100), title="accuracy")
    axes[-1].legend(fontsize=7)
    _save(fig, out, "why_normalize_shift.png")


def plot_saturation(plt, results, out: Path) -> None:
    fig, axes = plt.subplots(len(results), 2, figsize=(8, 2.6 * len(results)), squeeze=False)
    for row, (lr, result) in zip(axes, results.items(), strict=True):
        for norm, r in result.items():
            row[0].plot(_smooth(r["share"].max(axis=1)), color=COLORS[norm], label=norm)
            row[1].plot(_smooth(r["loss"]), color=COLORS[norm], label=norm)
        row[0].set(ylabel="share |z| > 4", ylim=(-0.02, 1.02),
                   title=f"sigmoid, lr {lr}: most saturated layer")
        row[1].set(ylabel="training loss", yscale="log", title=f"sigmoid, lr {lr}: loss")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    axes[0][1].legend(fontsize=7)
    _save(fig, out, "why_normalize_saturation.png")


def plot_smoothness(plt, result, args, out: Path) -> None:
    titles = [f"loss spread along -g (lr {args.smooth_lr})", "largest gradient change",
              "effective beta-smoothness"]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 2.9))
    for norm, rows in result.items():
        steps = np.arange(len(rows)) * args.every
        for ax, column in zip(axes, rows.T, strict=True):
            # a geometric moving average: the values span decades
            ax.plot(steps, np.exp(_smooth(np.log(column), 5)), color=COLORS[norm], label=norm)
    for ax, title in zip(axes, titles, strict=True):
        ax.set(yscale="log", xlabel="step", title=title)
    axes[0].legend(fontsize=7)
    _save(fig, out, "why_normalize_smoothness.png")


def plot_speed(plt, result, args, out: Path) -> None:
    fig, axes = plt.subplots(1, len(result), figsize=(2.9 * len(result), 2.7), sharey=True)
    for ax, (lr, curves) in zip(np.atleast_1d(axes), result.items(), strict=True):
        for norm, r in curves.items():
            ax.plot(checkpoints(args), 100 * r["accuracy"], color=COLORS[norm], label=norm)
        ax.set(title=f"SGD lr {lr}", xlabel="step", ylim=(0, 100))
    np.atleast_1d(axes)[0].set_ylabel("test accuracy (%)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    _save(fig, out, "why_normalize_speed.png")
