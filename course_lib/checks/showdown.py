"""Self-checks, fixtures and common mistakes for notebook 08 (the showdown: measuring generative models).

Each check compares a student's function with its course_lib reference of the same name
(:mod:`course_lib.metrics`: ``digit_features``, ``feature_statistics``, ``frechet_distance``,
``precision_recall``, ``scorecard``; :mod:`course_lib.pixels`: ``quantize``) through
``grading.check_function``. Functions whose output is a dict or must have a given dtype are
first turned into ``*_summary`` functions that return comparable values. Each ``*_MISTAKES``
catalogue maps a description to a function that reproduces that mistake (or, for
``FRECHET_RESULT_SYMPTOMS``, to a predicate on a wrong result), so a failing check can name it;
``*_ERRORS`` name the likely cause of an exception.

Each ``check_<cell>`` function is the body of the notebook's self-check cell ``test_<cell>``:
called with the student's function alone it runs the visible cases (and refuses the shortcut);
the notebook's hidden tests call it again with their own ``cases``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, MutableMapping
from typing import Any

import numpy as np
import torch

from .. import metrics, pixels
from ..data import digits_split
from ..grading import CheckFailed, check_answer_rules, check_function, forbid_reference, matching_cause, substitute
from ..metrics import (
    classifier_scores,
    digit_features,
    digits_classifier,
    feature_statistics,
    frechet_distance,
    memorisation,
    precision_recall,
)

# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _digits(split: str) -> torch.Tensor:
    return digits_split(split)[0]


def digit_batch(seed: int, n: int = 12, noise: float = 0.3, split: str = "train") -> torch.Tensor:
    """``n`` real digits (n, 1, 8, 8) picked by ``seed``, a third of them with Gaussian noise of std ``noise``."""
    g = torch.Generator().manual_seed(seed)
    x = _digits(split)
    images = x[torch.randperm(len(x), generator=g)[:n]].clone()
    noisy = torch.arange(n) % 3 == 0
    images[noisy] += noise * torch.randn(int(noisy.sum()), 1, 8, 8, generator=g)
    return images


def feature_matrix(seed: int, N: int = 40, H: int = 6, rank: int | None = None) -> torch.Tensor:
    """Features (N, H) in float64 with correlated columns and a non-zero mean (rank ``rank`` once centred, if given)."""
    g = torch.Generator().manual_seed(seed)
    r = H if rank is None else rank
    z = torch.randn(N, r, generator=g, dtype=torch.float64)
    mix = torch.randn(r, H, generator=g, dtype=torch.float64)
    return z @ mix + 3 * torch.rand(H, generator=g, dtype=torch.float64) + 1


def statistics_case(seed: int, N: int = 40, H: int = 6, rank: int | None = None, same: bool = False) -> dict:
    """Keyword arguments of frechet_distance: two Gaussians' (mu, sigma) from :func:`feature_matrix` samples.

    ``rank`` < H makes both covariances singular (as digit features' are: dead ReLU units, fewer samples than
    features); ``same`` gives the second Gaussian the first one's statistics.
    """
    mu1, sigma1 = metrics.feature_statistics(feature_matrix(seed, N, H, rank))
    mu2, sigma2 = (mu1, sigma1) if same else metrics.feature_statistics(feature_matrix(seed + 1000, N, H, rank))
    return {"mu1": mu1, "sigma1": sigma1, "mu2": mu2, "sigma2": sigma2}


def point_clouds(seed: int, N: int = 50, M: int = 40, D: int = 4, k: int = 3) -> dict:
    """Keyword arguments of precision_recall: real points (N, D), and fake points (M, D) that cover only part of them.

    The fake points are a tighter, shifted cloud, so precision and recall differ; no two points coincide.
    """
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(N, D, generator=g, dtype=torch.float64)
    fake = 0.6 * torch.randn(M, D, generator=g, dtype=torch.float64) + 0.5
    return {"real": real, "fake": fake, "k": k}


# --------------------------------------------------------------------------
# digit_features
# --------------------------------------------------------------------------

FEATURES_SHORTCUTS = ["course_lib.metrics.digit_features"]


def _features_after_softmax(images):
    return digits_classifier()(images).softmax(dim=1)


def _features_logits(images):
    return digits_classifier()(images)


def _features_before_relu(images):
    return digits_classifier().net[:2](images)


FEATURES_MISTAKES = {
    "the features were taken after the softmax (10 class probabilities per image): FID's features come from the "
    "hidden layer *before* the classifier's last Linear layer, where a digit is described by 128 numbers, not "
    "reduced to its class": _features_after_softmax,
    "the features are the logits (the last Linear layer's 10 outputs): take the hidden layer before it, the "
    "128 ReLU activations": _features_logits,
    "the features were taken before the ReLU: the hidden layer's features are its activations, after the ReLU "
    "(all >= 0)": _features_before_relu,
}


def features_summary(features_fn: Callable, images: torch.Tensor) -> torch.Tensor:
    """``features_fn(images)``, checked to be a tensor, detached (its values are compared)."""
    check_answer_rules(features_fn)
    out = features_fn(images)
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"digit_features should return a tensor (B, 128), got {type(out).__name__}")
    return out.detach()


def check_digit_features(features_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of digit_features: the digits classifier's hidden ReLU layer, (B, 128)."""
    if cases is None:
        forbid_reference(features_fn, FEATURES_SHORTCUTS, example={"images": digit_batch(0, 4)},
                         name="digit_features")
        cases = [{"images": digit_batch(0, 5)}, {"images": digit_batch(1, 3, split="val")}]
    check_function(functools.partial(features_summary, features_fn), metrics.digit_features, cases,
                   name="digit_features", mistakes=FEATURES_MISTAKES, atol=1e-5)


# --------------------------------------------------------------------------
# feature_statistics
# --------------------------------------------------------------------------

STATISTICS_SHORTCUTS = ["course_lib.metrics.feature_statistics", "torch.cov", "numpy.cov"]


def _statistics_biased(features):
    mu = features.mean(dim=0)
    centred = features - mu
    return mu, centred.T @ centred / len(features)


def _statistics_not_centred(features):
    mu = features.mean(dim=0)
    return mu, features.T @ features / (len(features) - 1)


def _statistics_samples_by_samples(features):
    mu = features.mean(dim=0)
    centred = features - mu
    return mu, centred @ centred.T / (len(features) - 1)


STATISTICS_MISTAKES = {
    "the covariance is biased (divided by N): the unbiased estimate divides by N - 1, as numpy.cov and FID "
    "implementations do": _statistics_biased,
    "the features were not centred: the covariance averages products of *deviations from the mean*, "
    "(x - mu)^T (x - mu), not of the raw features": _statistics_not_centred,
    "the covariance is (N, N), between samples: it is between features, (H, H), so the product is "
    "(x - mu)^T (x - mu) with the transpose first": _statistics_samples_by_samples,
}

STATISTICS_ERRORS = {
    r"size of tensor a \(\d+\) must match the size of tensor b": (
        "the mean was taken over the wrong axis: mu has one entry per feature, the average over the N samples "
        "(dim 0), shape (H,)"
    ),
}


def check_feature_statistics(stats_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of feature_statistics: (mean (H,), unbiased covariance (H, H))."""
    if cases is None:
        forbid_reference(stats_fn, STATISTICS_SHORTCUTS, example={"features": feature_matrix(0, 8, 3)},
                         name="feature_statistics")
        cases = [{"features": feature_matrix(0, 30, 5)}, {"features": feature_matrix(1, 7, 4)}]
    check_function(stats_fn, metrics.feature_statistics, cases, name="feature_statistics (mu, sigma)",
                   mistakes=STATISTICS_MISTAKES, errors=STATISTICS_ERRORS, atol=1e-8, rtol=1e-6)


# --------------------------------------------------------------------------
# frechet_distance
# --------------------------------------------------------------------------

FRECHET_SHORTCUTS = ["course_lib.metrics.frechet_distance"]


def _psd_sqrt(sigma):
    w, v = torch.linalg.eigh(sigma)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def _trace_sqrt_product(sigma1, sigma2):
    root = _psd_sqrt(sigma1)
    return torch.linalg.eigvalsh(root @ sigma2 @ root).clamp(min=0).sqrt().sum()


def _fd_sqrt_each(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    covmean = _psd_sqrt(sigma1) @ _psd_sqrt(sigma2)
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(covmean))


def _fd_plus_trace(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) + 2 * _trace_sqrt_product(sigma1, sigma2))


def _fd_trace_factor_one(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - _trace_sqrt_product(sigma1, sigma2))


def _fd_sqrt_of_trace(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2)
                 - 2 * torch.trace(sigma1 @ sigma2).sqrt())


def _fd_norm_not_squared(mu1, sigma1, mu2, sigma2):
    distance = torch.linalg.vector_norm(mu1 - mu2)
    return float(distance + torch.trace(sigma1) + torch.trace(sigma2) - 2 * _trace_sqrt_product(sigma1, sigma2))


FRECHET_MISTAKES = {
    "took the matrix square root of each covariance and multiplied them, sqrt(sigma1) sqrt(sigma2): the formula "
    "needs the square root of their *product*, (sigma1 sigma2)^(1/2), which differs unless the two "
    "covariances commute (Hint 2 above)": _fd_sqrt_each,
    "the trace term has the wrong sign: it is tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), a minus before "
    "the square-root term": _fd_plus_trace,
    "the square-root term lost its factor 2: tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))": (
        _fd_trace_factor_one
    ),
    "took the square root of the trace, sqrt(tr(sigma1 sigma2)): the formula takes the trace of the matrix "
    "square root, the sum of the square roots of the eigenvalues of sigma1 sigma2 (Hint 1 above)": (
        _fd_sqrt_of_trace
    ),
    "the mean term is the distance, not its square: ||mu1 - mu2||^2": _fd_norm_not_squared,
}

FRECHET_RESULT_SYMPTOMS = {  # predicates on the (raw) value an answer returned
    "NaN: round-off makes some eigenvalues of a singular covariance product slightly negative (or their "
    "square roots complex); clamp the eigenvalues at 0 before the square root, as FID implementations do "
    "(Hint 3 above)": lambda value: isinstance(value, float) and math.isnan(value),
    "a complex number: sigma1 sigma2 is not symmetric, so a general eigen-solver returns complex eigenvalues "
    "(with tiny imaginary parts from round-off); FID implementations keep the real part (Hint 3 above)": (
        lambda value: isinstance(value, complex)
    ),
}


def frechet_summary(fd_fn: Callable, mu1, sigma1, mu2, sigma2) -> float:
    """``fd_fn(mu1, sigma1, mu2, sigma2)`` as a Python number; NaN or a complex result fails with its likely cause."""
    check_answer_rules(fd_fn)
    value = fd_fn(mu1, sigma1, mu2, sigma2)
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        if math.prod(value.shape) != 1:
            raise CheckFailed(f"frechet_distance should return one number, got an array of shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, (int, float, complex)) or isinstance(value, bool):
        raise CheckFailed(f"frechet_distance should return a number (a float), got {type(value).__name__}")
    cause = matching_cause(FRECHET_RESULT_SYMPTOMS, value)
    if cause:
        H = len(mu1)
        raise CheckFailed(f"frechet_distance returned {value!r} for two {H}x{H} covariance matrices."
                          f"\n  Likely cause: {cause}")
    return value


def frechet_cases() -> list[dict]:
    """The visible cases: full-rank covariances, singular ones (rank 3 of 8), identical statistics (distance 0)."""
    return [statistics_case(0, 40, 5), statistics_case(1, 30, 8, rank=3), statistics_case(2, 25, 4, same=True)]


def reference_frechet_summary(mu1, sigma1, mu2, sigma2) -> float:
    return frechet_summary(metrics.frechet_distance, mu1, sigma1, mu2, sigma2)


def check_frechet_distance(fd_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of frechet_distance: FID's formula, also on singular covariances and identical statistics.

    The tolerance (1e-6 absolute plus 1e-5 relative) leaves room for round-off in the eigenvalues of a singular
    product; it is far below what any catalogued mistake changes.
    """
    if cases is None:
        forbid_reference(fd_fn, FRECHET_SHORTCUTS, example=statistics_case(0, 10, 3), name="frechet_distance")
        cases = frechet_cases()
    check_function(functools.partial(frechet_summary, fd_fn), reference_frechet_summary, cases,
                   name="frechet_distance", mistakes=FRECHET_MISTAKES, atol=1e-6, rtol=1e-5)
    case = cases[0]
    there = frechet_summary(fd_fn, **case)
    back = frechet_summary(fd_fn, case["mu2"], case["sigma2"], case["mu1"], case["sigma1"])
    if not abs(there - back) <= 1e-6 + 1e-5 * abs(there):
        raise CheckFailed(f"frechet_distance is not symmetric: d(1, 2) = {there:.6g} but d(2, 1) = {back:.6g}. "
                          "A distance between two Gaussians does not depend on their order.")


# --------------------------------------------------------------------------
# precision_recall
# --------------------------------------------------------------------------

PR_SHORTCUTS = ["course_lib.metrics.precision_recall"]


def _distances(a, b):
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _knn_radius(points, others, rank):
    """Each point's distance to the ``rank``-th nearest of ``others`` (rank 1 is itself when others is points)."""
    return _distances(points, others).kthvalue(rank, dim=1).values


def _pr(real, fake, real_radii, fake_radii, once=True):
    """Precision and recall with the given ball radii; ``once=False`` counts (point, ball) pairs."""
    in_real_balls = _distances(fake, real) <= real_radii  # (M, N)
    in_fake_balls = _distances(real, fake) <= fake_radii  # (N, M)
    if once:
        in_real_balls, in_fake_balls = in_real_balls.any(dim=1), in_fake_balls.any(dim=1)
    return {"precision": float(in_real_balls.double().mean()), "recall": float(in_fake_balls.double().mean())}


def _pr_radius_includes_itself(real, fake, k=3):
    return _pr(real, fake, _knn_radius(real, real, k), _knn_radius(fake, fake, k))


def _pr_swapped(real, fake, k=3):
    right = _pr(real, fake, _knn_radius(real, real, k + 1), _knn_radius(fake, fake, k + 1))
    return {"precision": right["recall"], "recall": right["precision"]}


def _pr_radii_from_other_set(real, fake, k=3):
    return _pr(real, fake, _knn_radius(real, fake, k), _knn_radius(fake, real, k))


def _pr_counts_ball_memberships(real, fake, k=3):
    return _pr(real, fake, _knn_radius(real, real, k + 1), _knn_radius(fake, fake, k + 1), once=False)


PR_MISTAKES = {
    "the k-NN radius includes the point itself: every point is its own nearest neighbour at distance 0, so the "
    "radius must be the distance to the k-th nearest *other* point (with k = 1 your balls have radius 0) "
    "(Hint 2 above)": _pr_radius_includes_itself,
    "precision and recall are swapped: precision is the share of *fake* points inside the real balls (are the "
    "samples realistic?), recall the share of *real* points inside the fake balls (is the data covered?)": (
        _pr_swapped
    ),
    "the radii were measured to the other set: a real point's ball reaches its k-th nearest *real* neighbour, a "
    "fake point's its k-th nearest *fake* neighbour": _pr_radii_from_other_set,
    "counted (point, ball) pairs: a point counts once, as inside, when it lies in *at least one* ball": (
        _pr_counts_ball_memberships
    ),
}


def pr_summary(pr_fn: Callable, real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> list:
    """``[precision, recall]`` from the dict ``pr_fn(real, fake, k)`` returns."""
    check_answer_rules(pr_fn)
    out = pr_fn(real, fake, k)
    if not isinstance(out, dict) or not {"precision", "recall"} <= set(out):
        raise CheckFailed(f"precision_recall should return a dict with 'precision' and 'recall', got {out!r:.80}")
    return [out["precision"], out["recall"]]


def _mistake_summary(mistake: Callable) -> Callable:
    return functools.partial(pr_summary, mistake)


PR_MISTAKE_SUMMARIES = {description: _mistake_summary(fn) for description, fn in PR_MISTAKES.items()}

def pr_cases() -> list[dict]:
    return [point_clouds(0), point_clouds(1, N=30, M=45, D=3, k=1)]


def reference_pr_summary(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> list:
    return pr_summary(metrics.precision_recall, real, fake, k)


def check_precision_recall(pr_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of precision_recall: k-NN balls around each point, without the point itself."""
    if cases is None:
        forbid_reference(pr_fn, PR_SHORTCUTS, example=point_clouds(0, 10, 8), name="precision_recall")
        cases = pr_cases()
    check_function(functools.partial(pr_summary, pr_fn), reference_pr_summary, cases,
                   name="precision_recall ([precision, recall])", mistakes=PR_MISTAKE_SUMMARIES)


# --------------------------------------------------------------------------
# quantize: the image tokenizer
# --------------------------------------------------------------------------

QUANTIZE_SHORTCUTS = ["course_lib.pixels.quantize", "torch.bucketize", "torch.searchsorted"]


def _quantize_levels_not_steps(images, levels=8):
    return torch.round((images.clamp(-1, 1) + 1) / 2 * levels).long().flatten(1)


def _quantize_truncated(images, levels=8):
    return ((images.clamp(-1, 1) + 1) / 2 * (levels - 1)).long().flatten(1)


def _quantize_not_clamped(images, levels=8):
    return torch.round((images + 1) / 2 * (levels - 1)).long().flatten(1)


def _quantize_column_order(images, levels=8):
    return torch.round((images.clamp(-1, 1) + 1) / 2 * (levels - 1)).long().transpose(2, 3).flatten(1)


QUANTIZE_MISTAKES = {
    "off by one level: the grid has `levels` values, so `levels - 1` steps between -1 and 1 (level i is "
    "-1 + 2 i / (levels - 1)); scaling by `levels` shifts most pixels and sends 1.0 to the level `levels`, which "
    "does not exist": _quantize_levels_not_steps,
    "truncated instead of rounded: converting to an integer drops the fraction, so most pixels land one level "
    "too low; go to the *nearest* level (Hint 2 above)": _quantize_truncated,
    "values outside [-1, 1] were not clamped: samples from a model overshoot a little, and must still become "
    "level 0 or levels - 1, never -1 or levels": _quantize_not_clamped,
    "the pixels are in column order: raster order reads row by row, left to right, so token 1 is the pixel to "
    "the right of token 0": _quantize_column_order,
}


def quantize_summary(quantize_fn: Callable, images: torch.Tensor, levels: int = 8) -> torch.Tensor:
    """``quantize_fn(images, levels)``, checked to be int64 tokens (B, 64)."""
    check_answer_rules(quantize_fn)
    out = quantize_fn(images, levels)
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"quantize should return a tensor of tokens, got {type(out).__name__}")
    if out.dtype != torch.long:
        raise CheckFailed(f"quantize should return int64 (torch.long) token ids, got dtype {out.dtype}: the "
                          "tokens index an embedding table")
    return out


def random_images(seed: int, n: int = 6, spread: float = 1.2) -> torch.Tensor:
    """Images (n, 1, 8, 8) with uniform values in [-spread, spread] (a little outside [-1, 1], like model samples)."""
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(n, 1, 8, 8, generator=g) - 1) * spread


def quantize_cases() -> list[dict]:
    """Real digits (8 levels), and random values a little outside [-1, 1] (8 and 3 levels)."""
    return [{"images": digit_batch(3, 6, noise=0.0), "levels": 8}, {"images": random_images(0), "levels": 8},
            {"images": random_images(1, 4), "levels": 3}]


def check_quantize(quantize_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of quantize: the nearest of `levels` grey levels, clamped, in raster order, as int64."""
    if cases is None:
        forbid_reference(quantize_fn, QUANTIZE_SHORTCUTS, example={"images": random_images(0, 2), "levels": 8},
                         name="quantize")
        cases = quantize_cases()
    check_function(functools.partial(quantize_summary, quantize_fn), pixels.quantize, cases,
                   name="quantize", mistakes=QUANTIZE_MISTAKES)


# --------------------------------------------------------------------------
# Synthesis: scorecard
# --------------------------------------------------------------------------

SCORECARD_SHORTCUTS = ["course_lib.metrics.scorecard"]
SCORECARD_KEYS = ("fd", "precision", "recall", "classes", "min_class_share", "memorisation")


def scorecard_case(seed: int, n: int = 80, k: int = 3) -> dict:
    """Keyword arguments of scorecard: ``n`` samples that are noisy training digits of 7 classes, a single digit
    of an eighth class and a few noise images; 300 training and 100 held-out digits."""
    g = torch.Generator().manual_seed(seed)
    x, y = digits_split("train")
    train = x[:300]
    heldout = _digits("val")[:100]
    pool = torch.randperm(len(x), generator=g)
    favoured = [int(c) for c in torch.randperm(10, generator=g)[:8]]
    many = pool[torch.isin(y[pool], torch.tensor(favoured[:7]))][: n - 5]
    one = pool[y[pool] == favoured[7]][:1]
    samples = torch.cat([x[many] + 0.15 * torch.randn(len(many), 1, 8, 8, generator=g), x[one],
                         (2 * torch.rand(4, 1, 8, 8, generator=g) - 1)])
    return {"samples": samples, "train": train, "heldout": heldout, "k": k}


def scorecard_summary(scorecard_fn: Callable, samples, train, heldout, k: int = 3) -> list:
    """The values of the dict ``scorecard_fn(samples, train, heldout, k)`` returns, in :data:`SCORECARD_KEYS` order."""
    check_answer_rules(scorecard_fn)
    out = scorecard_fn(samples, train, heldout, k)
    if not isinstance(out, dict):
        raise CheckFailed(f"scorecard should return a dict, got {type(out).__name__}")
    missing = [key for key in SCORECARD_KEYS if key not in out]
    if missing:
        raise CheckFailed(f"scorecard's dict lacks the keys {missing} (it needs {list(SCORECARD_KEYS)})")
    return [out[key] for key in SCORECARD_KEYS]


def _card(samples, train, heldout, k=3, real_set="train", space="features", min_count=None, swap_pr=False,
          swap_memorisation=False):
    """The scorecard with one thing done differently (each mistake below picks one); a dict like the answer's."""
    real = train if real_set == "train" else heldout
    fake_f, real_f = digit_features(samples), digit_features(real)
    if space == "pixels":
        stats = feature_statistics(samples.flatten(1)), feature_statistics(real.flatten(1))
    else:
        stats = feature_statistics(fake_f), feature_statistics(real_f)
    pr = precision_recall(fake_f, real_f, k) if swap_pr else precision_recall(real_f, fake_f, k)
    histogram = classifier_scores(samples)["histogram"]
    covered = (histogram * len(samples) >= min_count).sum() if min_count else (histogram >= 0.02).sum()
    ratio = (memorisation(heldout, train, samples) if swap_memorisation
             else memorisation(samples, train, heldout))["ratio"]
    return {"fd": frechet_distance(*stats[0], *stats[1]), "precision": pr["precision"], "recall": pr["recall"],
            "classes": float(covered), "min_class_share": float(histogram.min()), "memorisation": ratio}


def _card_mistake(**change: Any) -> Callable:
    """The scorecard with ``change`` as the check sees it (its summary list)."""
    return functools.partial(scorecard_summary, functools.partial(_card, **change))


SCORECARD_MISTAKES = {
    "precision and recall came out swapped: precision_recall takes the real features first (the training "
    "digits') and the samples' second": _card_mistake(swap_pr=True),
    "the samples were judged against the held-out digits: the real set is the training set, what the model "
    "learned from; the held-out digits are the memorisation yardstick": _card_mistake(real_set="heldout"),
    "the Frechet distance was computed on raw pixels: it is measured between the classifier's features "
    "(digit_features) of the samples and of the training digits": _card_mistake(space="pixels"),
    "a class with a single sample counted as covered: a class is covered when it gets at least COVERED_SHARE "
    "(2 %) of the samples": _card_mistake(min_count=1),
    "memorisation got the samples and the held-out digits swapped: memorisation(samples, train, heldout), whose "
    "ratio is below 1 when samples sit closer to the training digits than new real digits do": (
        _card_mistake(swap_memorisation=True)
    ),
    "k was not passed on: precision_recall must use the k scorecard was given": functools.partial(
        scorecard_summary, lambda samples, train, heldout, k=3: _card(samples, train, heldout)
    ),
}

def scorecard_cases() -> list[dict]:
    return [scorecard_case(0), scorecard_case(1, n=60, k=5)]


def reference_scorecard_summary(samples, train, heldout, k: int = 3) -> list:
    return scorecard_summary(metrics.scorecard, samples, train, heldout, k)


def check_scorecard(scorecard_fn: Callable, namespace: MutableMapping[str, Any], cases: list[dict] | None = None
                    ) -> None:
    """Self-check of the synthesis scorecard, with course_lib's four metrics bound in ``namespace``.

    ``namespace`` is the notebook's ``globals()``: while the check runs, the names ``digit_features``,
    ``feature_statistics``, ``frechet_distance`` and ``precision_recall`` there are course_lib's, so a slip in an
    earlier exercise is not counted twice.
    """
    with substitute(namespace, digit_features=metrics.digit_features, feature_statistics=metrics.feature_statistics,
                    frechet_distance=metrics.frechet_distance, precision_recall=metrics.precision_recall):
        if cases is None:
            forbid_reference(scorecard_fn, SCORECARD_SHORTCUTS, example=scorecard_case(0, n=20), name="scorecard")
            cases = scorecard_cases()
        check_function(functools.partial(scorecard_summary, scorecard_fn), reference_scorecard_summary, cases,
                       name=f"scorecard ({', '.join(SCORECARD_KEYS)})", mistakes=SCORECARD_MISTAKES,
                       atol=1e-6, rtol=1e-5)
