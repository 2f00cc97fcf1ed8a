"""course_lib.metrics against independent facts: scipy, constructed samples, real digits."""

from __future__ import annotations

import pytest
import torch

from course_lib import data, metrics


@pytest.mark.parametrize("seed", [0, 1])
def test_energy_distance_is_the_square_of_scipys_in_1d(seed):
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(40, generator=g), 0.5 + 2 * torch.randn(55, generator=g)
    expected = stats.energy_distance(x.numpy(), y.numpy()) ** 2
    assert metrics.energy_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_energy_distance_properties():
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    assert metrics.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    near, far = metrics.energy_distance(x, x + 0.1), metrics.energy_distance(x, x + 1.0)
    assert 0 < near < far
    assert metrics.energy_distance(x, x + 1.0) == pytest.approx(metrics.energy_distance(x + 1.0, x))
    with pytest.raises(ValueError, match="same dimension"):
        metrics.energy_distance(torch.randn(3, 2), torch.randn(3, 3))
    with pytest.raises(TypeError):
        metrics.energy_distance([1.0], torch.randn(3))


def test_mode_coverage_on_the_data_itself_is_perfect():
    samples = data.eight_gaussians(2500, seed=3)
    result = metrics.mode_coverage(samples, data.ring_centers(), std=0.02)
    assert result["modes"] == 8 and result["of"] == 8
    assert result["high_quality"] > 0.98  # 3 std in 2-D holds 1 - exp(-4.5) = 98.9 % of the mass
    assert int(result["counts"].sum()) == round(result["high_quality"] * 2500)


def test_mode_coverage_counts_collapse_and_far_samples():
    centers = data.ring_centers()
    three_modes = centers[torch.arange(300) % 3] + 0.01 * torch.randn(300, 2)
    far = torch.zeros(100, 2)  # the centre of the ring: 2 away from every mode
    result = metrics.mode_coverage(torch.cat([three_modes, far]), centers, std=0.02)
    assert result["modes"] == 3
    assert result["high_quality"] == pytest.approx(0.75)
    assert result["counts"].tolist() == [100, 100, 100, 0, 0, 0, 0, 0]
    # A mode with a handful of samples is not covered by default, and is with min_share=0.
    few = torch.cat([three_modes, centers[3:4].repeat(2, 1)])
    assert metrics.mode_coverage(few, centers, 0.02)["modes"] == 3
    assert metrics.mode_coverage(few, centers, 0.02, min_share=0.0)["modes"] == 4
    with pytest.raises(ValueError, match="std"):
        metrics.mode_coverage(few, centers, 0.0)


def test_digits_classifier_is_accurate_confident_on_real_digits_and_cached():
    model = metrics.digits_classifier()
    assert metrics.digits_classifier() is model
    x, y = data.digits_split("val")
    accuracy = (model(x).argmax(1) == y).double().mean().item()
    assert accuracy > 0.95
    scores = metrics.classifier_scores(x)
    assert scores["confident"] > 0.85
    assert scores["histogram"].sum().item() == pytest.approx(1.0)
    assert scores["min_class_share"] > 0.05


def test_classifier_scores_reveal_collapse_and_noise():
    x, y = data.digits_split("val")
    ones = metrics.classifier_scores(x[y == 1])
    assert ones["histogram"][1] > 0.9 and ones["min_class_share"] == 0.0
    noise = torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert metrics.classifier_scores(noise)["confident"] < 0.5
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        metrics.classifier_scores(torch.zeros(2, 64))


def test_confusion_matrix_equals_scikit_learns():
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    labels, predictions = torch.randint(4, (200,), generator=g), torch.randint(4, (200,), generator=g)
    predictions[:3] = 3  # make sure off-diagonal and diagonal cells both fill
    expected = sk.confusion_matrix(labels.numpy(), predictions.numpy(), labels=range(5))
    assert metrics.confusion_matrix(labels, predictions, 5).tolist() == expected.tolist()
    with pytest.raises(ValueError, match="0..3"):
        metrics.confusion_matrix(torch.tensor([0, 4]), torch.tensor([0, 1]), 4)
    with pytest.raises(ValueError, match="one length"):
        metrics.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 4)
