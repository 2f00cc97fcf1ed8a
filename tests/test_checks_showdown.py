"""Notebook 08's checks: course_lib passes them, honest variants pass, each catalogued mistake fails with its name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from envtools import assert_fails_naming

from course_lib import metrics, pixels
from course_lib.checks import showdown as sd
from course_lib.grading import CheckFailed, check_function

# How each catalogue's entries are run: through the notebook's own check where the mistake has the answer's
# signature, through check_function with the summary-form catalogue where it does not (the visible cases).
RUNS = {
    "features": (sd.FEATURES_MISTAKES, sd.check_digit_features),
    "statistics": (sd.STATISTICS_MISTAKES, sd.check_feature_statistics),
    "frechet": (sd.FRECHET_MISTAKES, sd.check_frechet_distance),
    "pr": (sd.PR_MISTAKES, sd.check_precision_recall),
    "quantize": (sd.QUANTIZE_MISTAKES, sd.check_quantize),
}
ENTRIES = [(kind, d) for kind, (catalogue, _) in RUNS.items() for d in catalogue]


@pytest.mark.parametrize(("kind", "description"), ENTRIES, ids=[f"{k}:{d[:40]}" for k, d in ENTRIES])
def test_each_catalogued_mistake_is_caught_and_named_by_its_check(kind, description):
    catalogue, check = RUNS[kind]
    assert_fails_naming(lambda: check(catalogue[description]), description)


@pytest.mark.parametrize("description", list(sd.SCORECARD_MISTAKES), ids=lambda d: d[:40])
def test_each_scorecard_mistake_is_caught_and_named(description):
    assert_fails_naming(lambda: check_function(sd.SCORECARD_MISTAKES[description], sd.reference_scorecard_summary,
                                               sd.scorecard_cases(), mistakes=sd.SCORECARD_MISTAKES, atol=1e-6,
                                               rtol=1e-5),
                        description)


def test_the_references_pass_their_checks():
    sd.check_digit_features(metrics.digit_features)
    sd.check_feature_statistics(metrics.feature_statistics)
    sd.check_frechet_distance(metrics.frechet_distance)
    sd.check_precision_recall(metrics.precision_recall)
    sd.check_quantize(pixels.quantize)
    sd.check_scorecard(metrics.scorecard, {})


def test_the_shortcuts_are_refused():
    with pytest.raises(CheckFailed, match="build yourself"):
        sd.check_feature_statistics(lambda features: (features.mean(0), torch.cov(features.T)))
    with pytest.raises(CheckFailed, match="build yourself"):
        sd.check_frechet_distance(lambda mu1, sigma1, mu2, sigma2: metrics.frechet_distance(mu1, sigma1, mu2, sigma2))
    with pytest.raises(CheckFailed, match="build yourself"):
        sd.check_precision_recall(lambda real, fake, k=3: metrics.precision_recall(real, fake, k))
    with pytest.raises(CheckFailed, match="build yourself"):
        sd.check_quantize(lambda images, levels=8: pixels.quantize(images, levels))
    with pytest.raises(CheckFailed, match="build yourself"):
        sd.check_scorecard(lambda samples, train, heldout, k=3: metrics.scorecard(samples, train, heldout, k), {})


# --------------------------------------------------------------------------
# Honest answers written other ways pass
# --------------------------------------------------------------------------


def _fd_complex_eigenvalues(mu1, sigma1, mu2, sigma2):
    """The way many write it first: eigenvalues of the (non-symmetric) product, complex, real part kept."""
    diff = mu1 - mu2
    root_trace = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().sum().real
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * root_trace)


def _fd_numpy(mu1, sigma1, mu2, sigma2):
    s1, s2 = sigma1.numpy(), sigma2.numpy()
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    diff = (mu1 - mu2).numpy()
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()


def _fd_tensor_result(mu1, sigma1, mu2, sigma2):
    return torch.tensor(_fd_numpy(mu1, sigma1, mu2, sigma2))


def _pr_default_cdist(real, fake, k=3):
    real_r = torch.cdist(real, real).sort(dim=1).values[:, k]
    fake_r = torch.cdist(fake, fake).sort(dim=1).values[:, k]
    precision = (torch.cdist(fake, real) <= real_r[None, :]).any(dim=1).float().mean()
    recall = (torch.cdist(real, fake) <= fake_r[None, :]).any(dim=1).float().mean()
    return {"precision": precision, "recall": recall}


def _pr_loops(real, fake, k=3):
    def radii(x):
        return [sorted(float((x[i] - x[j]).norm()) for j in range(len(x)) if j != i)[k - 1] for i in range(len(x))]

    def share(points, centres, r):
        return sum(any(float((p - c).norm()) <= rc for c, rc in zip(centres, r)) for p in points) / len(points)

    return {"precision": share(fake, real, radii(real)), "recall": share(real, fake, radii(fake))}


@pytest.mark.parametrize("fd", [_fd_complex_eigenvalues, _fd_numpy, _fd_tensor_result])
def test_other_honest_frechet_distances_pass(fd):
    sd.check_frechet_distance(fd)
    sd.check_frechet_distance(fd, cases=[sd.statistics_case(5, 12, 10, rank=4), sd.statistics_case(6, 60, 16)])


@pytest.mark.parametrize("pr", [_pr_default_cdist, _pr_loops])
def test_other_honest_precision_recalls_pass(pr):
    sd.check_precision_recall(pr)


@pytest.mark.parametrize("quantize", [
    lambda images, levels=8: torch.round((images.clamp(-1, 1) + 1) * (levels - 1) / 2).long().reshape(len(images), -1),
    lambda images, levels=8: ((images + 1) / 2 * (levels - 1)).round().clamp(0, levels - 1).to(torch.int64).flatten(1),
    lambda images, levels=8: torch.floor((torch.clamp(images, -1, 1) + 1) / 2 * (levels - 1) + 0.5).long().view(-1, 64),
])
def test_other_honest_quantizers_pass(quantize):
    sd.check_quantize(quantize)
    sd.check_quantize(quantize, cases=[{"images": sd.digit_batch(9, 20, noise=0.0), "levels": 17},
                                       {"images": sd.random_images(4, 8, spread=1.5), "levels": 5}])


def _stats_float32(features):
    x = features.float()
    mu = x.mean(0)
    return mu, (x - mu).T @ (x - mu) / (len(x) - 1)


def _stats_numpy(features):
    x = features.numpy()
    mu = x.mean(axis=0)
    return torch.from_numpy(mu), torch.from_numpy((x - mu).T @ (x - mu) / (x.shape[0] - 1))


@pytest.mark.parametrize("stats", [_stats_float32, _stats_numpy])
def test_other_honest_feature_statistics_pass(stats):
    sd.check_feature_statistics(stats)


# --------------------------------------------------------------------------
# Failures that are not a different value
# --------------------------------------------------------------------------


def _fd_no_clamp(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2)
                 - 2 * torch.linalg.eigvals(sigma1 @ sigma2).real.sqrt().sum())


def _fd_complex(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    return (diff @ diff + torch.trace(sigma1) + torch.trace(sigma2)
            - 2 * torch.linalg.eigvals(sigma1 @ sigma2).sqrt().sum()).item()


def test_a_nan_or_complex_frechet_distance_names_the_edge_case():
    nan, complex_ = list(sd.FRECHET_RESULT_SYMPTOMS)
    assert_fails_naming(lambda: sd.check_frechet_distance(_fd_no_clamp), nan)
    assert_fails_naming(lambda: sd.check_frechet_distance(_fd_complex), complex_)


def test_an_asymmetric_frechet_distance_is_caught():
    def lopsided(mu1, sigma1, mu2, sigma2):  # right when the first mean is the smaller one, off by 1 otherwise
        return _fd_numpy(mu1, sigma1, mu2, sigma2) + float(mu1.sum() > mu2.sum())

    case = sd.statistics_case(3, 20, 4)
    case["mu2"] = case["mu1"] + 1.0
    assert_fails_naming(lambda: sd.check_frechet_distance(lopsided, cases=[case]), "not symmetric")


def test_the_mean_over_the_wrong_axis_names_its_cause():
    def wrong_axis(features):
        mu = features.mean(dim=1)
        centred = features - mu
        return mu, centred.T @ centred / (len(features) - 1)

    assert_fails_naming(lambda: sd.check_feature_statistics(wrong_axis), next(iter(sd.STATISTICS_ERRORS.values())))


def test_float_tokens_are_refused():
    assert_fails_naming(
        lambda: sd.check_quantize(lambda images, levels=8: torch.round((images.clamp(-1, 1) + 1) / 2 * (levels - 1))
                                               .flatten(1)), "int64")


# --------------------------------------------------------------------------
# The synthesis reference: one row of the table
# --------------------------------------------------------------------------


def test_scorecard_of_held_out_digits_is_the_floor():
    from course_lib.data import digits_split

    train, heldout = digits_split("train")[0], digits_split("val")[0]
    real = metrics.scorecard(heldout, train, heldout)
    assert real["memorisation"] == pytest.approx(1.0)
    assert real["classes"] == 10 and real["precision"] > 0.8 and real["recall"] > 0.8
    noise = metrics.scorecard(2 * torch.rand(len(heldout), 1, 8, 8, generator=torch.Generator().manual_seed(0)) - 1,
                              train, heldout)
    assert noise["fd"] > 50 * real["fd"] and noise["precision"] < 0.05
    copies = metrics.scorecard(train[: len(heldout)], train, heldout)
    assert copies["memorisation"] == 0.0 and copies["precision"] == 1.0
    assert all(isinstance(v, float) and math.isfinite(v) for v in real.values())
