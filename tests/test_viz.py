"""course_lib.viz: every figure draws what it is given, headless."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import viz  # noqa: E402
from course_lib.train import History  # noqa: E402


def teardown_function():
    plt.close("all")


def test_plot_history_draws_train_and_eval_curves():
    h = History()
    for s in range(20):
        h.log(s, {"loss": 1.0 / (s + 1), "grad_norm": 1.0})
    h.log(19, {"val_loss": 0.1}, to="evals")
    fig = viz.plot_history(h, smooth=5)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["loss (train)", "val_loss (eval)"]
    assert len(fig.axes[0].lines[0].get_xdata()) == 16  # running mean over 5 of 20 points


def test_show_images_builds_a_grid():
    images = torch.linspace(-1, 1, 12 * 64).reshape(12, 1, 8, 8)
    fig = viz.show_images(images, nrow=5)
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (3 * 9 + 1, 5 * 9 + 1)
    assert np.isclose(grid[1, 1], images[0, 0, 0, 0].item())
    with pytest.raises(ValueError, match="1 channel"):
        viz.show_images(torch.zeros(2, 3, 8, 8))


def test_scatter_and_bars():
    fig = viz.scatter_2d(torch.randn(50, 2), reference=torch.randn(80, 2), lim=3)
    assert len(fig.axes[0].collections) == 2
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        viz.scatter_2d(torch.randn(5, 3))
    fig = viz.bar_probabilities(torch.tensor([0.2, 0.8]))
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([0.2, 0.8])


def test_plot_confusion_shows_row_shares():
    counts = torch.tensor([[3, 1], [0, 0]])
    fig = viz.plot_confusion(counts, ["a", "b"])
    shown = fig.axes[0].images[0].get_array()
    assert np.allclose(shown, [[0.75, 0.25], [0.0, 0.0]])  # an empty row stays 0, not NaN
    assert [t.get_text() for t in fig.axes[0].texts] == ["75", "25", "0", "0"]
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        viz.plot_confusion(counts, ["a", "b", "c"])
