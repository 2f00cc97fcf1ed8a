"""Figures the notebooks share: loss curves, image grids, 2-D scatters, a softmax bar chart.

Every function draws on a given ``ax`` (or makes a new figure) and returns the
``Figure``, so notebooks can compose panels and tests can inspect the result
without a screen.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .train import History


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def plot_history(
    history: History,
    metrics: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str = "",
    log_y: bool = False,
    smooth: int = 1,
) -> Figure:
    """Training curves (thin) and evaluation points (markers) against the step.

    ``smooth`` > 1 draws a running mean over that many steps of each training curve.
    """
    fig, ax = _axes(ax, (6, 3.5))
    names = list(metrics) if metrics is not None else [
        n for n in {**history.train, **history.evals} if n != "grad_norm"
    ]
    for name in names:
        if name in history.train:
            steps, values = zip(*history.train[name])
            values = np.asarray(values)
            if smooth > 1 and len(values) >= smooth:
                kernel = np.ones(smooth) / smooth
                values = np.convolve(values, kernel, mode="valid")
                steps = steps[smooth - 1 :]
            ax.plot(steps, values, lw=1, label=f"{name} (train)")
        if name in history.evals:
            steps, values = zip(*history.evals[name])
            ax.plot(steps, values, "o-", ms=4, label=f"{name} (eval)")
    ax.set_xlabel("step")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=8)
    return fig


def show_images(
    images: torch.Tensor | np.ndarray,
    nrow: int = 10,
    ax: Axes | None = None,
    title: str = "",
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Figure:
    """A grid of grey images ``(N, 1, H, W)`` or ``(N, H, W)`` with values in ``value_range``."""
    x = _numpy(images)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"images must have 1 channel, got shape {x.shape}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"images must have shape (N, 1, H, W) or (N, H, W), got {x.shape}")
    n, h, w = x.shape
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    grid = np.full((rows * (h + 1) + 1, ncol * (w + 1) + 1), value_range[0], dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = x[i]
    fig, ax = _axes(ax, (0.6 * ncol + 0.5, 0.6 * rows + 0.5))
    ax.imshow(grid, cmap="gray_r", vmin=value_range[0], vmax=value_range[1], interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def scatter_2d(
    points: torch.Tensor | np.ndarray,
    ax: Axes | None = None,
    title: str = "",
    reference: torch.Tensor | np.ndarray | None = None,
    lim: float | None = None,
    s: float = 3.0,
) -> Figure:
    """Scatter of ``(N, 2)`` points, optionally over grey ``reference`` points (the data)."""
    p = _numpy(points)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {p.shape}")
    fig, ax = _axes(ax, (4, 4))
    if reference is not None:
        r = _numpy(reference)
        ax.scatter(r[:, 0], r[:, 1], s=s, c="0.8", label="data")
    ax.scatter(p[:, 0], p[:, 1], s=s, c="C0", label="samples" if reference is not None else None)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title)
    if reference is not None:
        ax.legend(fontsize=8, loc="upper right")
    return fig


def bar_probabilities(
    probs: torch.Tensor | np.ndarray,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str = "",
) -> Figure:
    """Bar chart of one probability vector ``(C,)``, e.g. a softmax output."""
    p = _numpy(probs).reshape(-1)
    fig, ax = _axes(ax, (max(3, 0.5 * len(p)), 2.5))
    ax.bar(range(len(p)), p, color="C0")
    ax.set_xticks(range(len(p)))
    ax.set_xticklabels(labels if labels is not None else [str(i) for i in range(len(p))])
    ax.set_ylim(0, 1)
    ax.set_title(title)
    return fig
