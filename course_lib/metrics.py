"""How good are a generative model's samples? Numbers to put next to the pictures.

- 2-D data with known modes: :func:`mode_coverage`, in the convention of the
  mode-collapse literature (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al.
  2018): a sample is *high quality* when it lies within ``k`` standard
  deviations of some mode's centre, and a mode is *covered* when enough
  high-quality samples fall near it.
- Any two samples: :func:`energy_distance` (Szekely's energy distance, 0 only
  when the distributions are equal).
- Digits: :func:`digits_classifier`, a small classifier trained
  deterministically on ``digits_split("train")`` and cached in-process, and
  :func:`classifier_scores`: the share of samples it labels with high
  confidence and the histogram of its labels (a collapsed generator piles its
  samples into a few classes).
- Sample quality in a feature space, as the image-generation literature measures
  it, with :func:`digit_features` (the classifier's hidden layer) standing in for
  Inception-v3's features: :func:`feature_statistics` and
  :func:`frechet_distance` (the FID formula, Heusel et al. 2017);
  :func:`precision_recall` (improved precision and recall, Kynkaanniemi et al.
  2019: are samples realistic, is all of the data covered?).
- Copying: :func:`memorisation` compares samples' distances to their nearest
  training digit with those of real held-out digits.
- All of it at once, one row of notebook 08's table: :func:`scorecard`.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn


def _points(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 1:
        x = x.unsqueeze(1)
    if x.dim() != 2 or len(x) == 0:
        raise ValueError(f"{name} must have shape (N, D) with N > 0, got {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64)


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between two samples.

    x: (N, D), y: (M, D) (or 1-D tensors of scalars). Expectations are plain
    means over all pairs (the V-statistic), so the value is >= 0 and 0 for
    identical samples. It is the square of what ``scipy.stats.energy_distance``
    returns for 1-D data.
    """
    x, y = _points(x, "x"), _points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return float(2 * xy - xx - yy)


def mode_coverage(
    samples: torch.Tensor,
    centers: torch.Tensor,
    std: float,
    k: float = 3.0,
    min_share: float | None = None,
) -> dict[str, object]:
    """Modes covered and the share of high-quality samples, for data with known Gaussian modes.

    samples: (N, D); centers: (K, D) the modes' means; std: their standard deviation.
    A sample is high quality when its distance to the nearest centre is at most
    ``k * std``. A mode is covered when at least ``min_share * N`` high-quality
    samples are nearest to it; the default, ``0.2 / K`` of the samples, is
    PacGAN's 20 of 2,500 for 25 modes scaled to K modes (a fifth of a fair share).
    Returns ``{"modes": int, "of": K, "high_quality": float in [0, 1],
    "counts": (K,) int64 high-quality samples per mode}``.
    """
    s, c = _points(samples, "samples"), _points(centers, "centers")
    if s.shape[1] != c.shape[1]:
        raise ValueError(f"samples and centers must have the same dimension, got {s.shape[1]} and {c.shape[1]}")
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    K = len(c)
    if min_share is None:
        min_share = 0.2 / K
    dist, nearest = torch.cdist(s, c).min(dim=1)  # (N,), (N,)
    good = dist <= k * std
    counts = torch.bincount(nearest[good], minlength=K)
    covered = int((counts >= max(1.0, min_share * len(s))).sum())
    return {"modes": covered, "of": K, "high_quality": float(good.double().mean()), "counts": counts}


# --------------------------------------------------------------------------
# Digits: a small classifier and the scores it gives to samples
# --------------------------------------------------------------------------


class DigitsClassifier(nn.Module):
    """An MLP for 8x8 digits: images (B, 1, 8, 8) in [-1, 1] -> logits (B, 10)."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"images must have shape (B, 1, 8, 8), got {tuple(x.shape)}")
        return self.net(x)


@functools.lru_cache(maxsize=1)
def digits_classifier() -> DigitsClassifier:
    """The digits classifier, trained once per process (about a second) and cached.

    Deterministic: seeded initialisation, full-batch Adam on
    ``digits_split("train")`` for 150 steps with weight decay. About 97 % accuracy on
    ``digits_split("val")``. Returned in eval mode with gradients switched off;
    do not train it further.
    """
    from .data import digits_split

    x, y = digits_split("train")
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(1234)
        model = DigitsClassifier()
    finally:
        torch.random.set_rng_state(gen_state)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    with torch.enable_grad():  # callers may hold torch.no_grad()
        for _ in range(150):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _images(images: torch.Tensor) -> torch.Tensor:
    """Digits (B, 1, 8, 8) or (B, 8, 8) -> a detached float32 CPU batch (B, 1, 8, 8)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 8, 8) or len(images) == 0:
        raise ValueError(f"images must have shape (B, 1, 8, 8) with B > 0, got {tuple(images.shape)}")
    return images.detach().float().cpu()


@torch.no_grad()
def classifier_scores(images: torch.Tensor, threshold: float = 0.9) -> dict[str, object]:
    """What the digits classifier makes of a batch of images (B, 1, 8, 8) in [-1, 1].

    Returns ``{"confident": share of images whose top class has probability >= threshold,
    "mean_confidence": mean top-class probability, "histogram": (10,) share of images per
    predicted class, "min_class_share": the smallest entry of the histogram,
    "labels": (B,) predicted classes}``.
    """
    images = _images(images)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    probs = digits_classifier()(images).softmax(dim=1)  # (B, 10)
    confidence, labels = probs.max(dim=1)
    histogram = torch.bincount(labels, minlength=10).double() / len(labels)
    return {
        "confident": float((confidence >= threshold).double().mean()),
        "mean_confidence": float(confidence.mean()),
        "histogram": histogram,
        "min_class_share": float(histogram.min()),
        "labels": labels,
    }


@torch.no_grad()
def digit_features(images: torch.Tensor) -> torch.Tensor:
    """The digits classifier's penultimate-layer features: images (B, 1, 8, 8) in [-1, 1] -> (B, H).

    H = 128, the hidden ReLU activations just before the last Linear layer (so every
    entry is >= 0). They play the part Inception-v3's 2048 pool features play in FID:
    a space where distances reflect what digits look like rather than raw pixels.
    ``digits_classifier().net[-1](digit_features(x))`` are the classifier's logits.
    (B, 8, 8) is accepted too.
    """
    return digits_classifier().net[:-1](_images(images))  # Flatten, Linear, ReLU: (B, H)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts ``(n_classes, n_classes)``: entry ``[i, j]`` is how many examples of class ``i`` were predicted ``j``.

    The diagonal holds the correct predictions; accuracy is its sum over the total.
    """
    labels, predictions = torch.as_tensor(labels).long(), torch.as_tensor(predictions).long()
    if labels.shape != predictions.shape or labels.dim() != 1:
        raise ValueError(f"labels and predictions must be 1-D of one length, got {tuple(labels.shape)} "
                         f"and {tuple(predictions.shape)}")
    for name, t in (("labels", labels), ("predictions", predictions)):
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= n_classes):
            raise ValueError(f"{name} must lie in 0..{n_classes - 1}")
    flat = torch.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


# --------------------------------------------------------------------------
# Sample quality in a feature space: Frechet distance, precision and recall,
# memorisation
# --------------------------------------------------------------------------


def _float64(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if not isinstance(x, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``mu`` (H,) and unbiased covariance ``sigma`` (H, H) of features (N, H), in float64.

    ``sigma = (X - mu)^T (X - mu) / (N - 1)``, as ``numpy.cov(X, rowvar=False)``.
    """
    x = _float64(features, "features")
    if x.dim() != 2 or len(x) < 2:
        raise ValueError(f"features must have shape (N, H) with N >= 2, got {tuple(x.shape)}")
    N = len(x)
    mu = x.mean(dim=0)  # (H,)
    centred = x - mu  # (N, H)
    sigma = centred.T @ centred / (N - 1)  # (H, H)
    return mu, sigma


def _check_statistics(mu1, sigma1, mu2, sigma2) -> tuple[torch.Tensor, ...]:
    mu1, sigma1 = _float64(mu1, "mu1"), _float64(sigma1, "sigma1")
    mu2, sigma2 = _float64(mu2, "mu2"), _float64(sigma2, "sigma2")
    H = mu1.shape[0] if mu1.dim() == 1 else -1
    shapes = [tuple(t.shape) for t in (mu1, sigma1, mu2, sigma2)]
    if H < 1 or shapes != [(H,), (H, H), (H,), (H, H)]:
        raise ValueError(f"expected mu1 (H,), sigma1 (H, H), mu2 (H,), sigma2 (H, H), got {shapes}")
    for name, t in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} has non-finite entries")
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if not torch.allclose(s, s.T, rtol=1e-6, atol=1e-12 * float(s.abs().max())):
            raise ValueError(f"{name} must be a symmetric covariance matrix")
    return mu1, sigma1, mu2, sigma2


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """The symmetric PSD square root of a covariance (H, H).

    Eigenvalues at round-off level (below ``H * eps`` times the largest, negative ones
    included) count as 0, as numpy's ``matrix_rank`` counts them, so that the null space of a
    singular covariance stays exactly null instead of gaining square roots of round-off.
    """
    w, v = torch.linalg.eigh(sigma)
    w = torch.where(w > len(w) * torch.finfo(w.dtype).eps * w.max(), w, 0.0)
    return (v * w.sqrt()) @ v.T


def frechet_distance(
    mu1: torch.Tensor | np.ndarray,
    sigma1: torch.Tensor | np.ndarray,
    mu2: torch.Tensor | np.ndarray,
    sigma2: torch.Tensor | np.ndarray,
) -> float:
    """Frechet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2): FID's formula.

    ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))`` (Heusel et al.
    2017), with mu: (H,) and sigma: (H, H), torch tensors or numpy arrays, e.g. from
    :func:`feature_statistics` of :func:`digit_features`.

    The trace of the product's square root is computed without forming the product:
    with ``A = sqrt(sigma1) sqrt(sigma2)`` (symmetric PSD square roots by ``eigh``),
    sigma1 sigma2 has the eigenvalues of ``sqrt(sigma1) sigma2 sqrt(sigma1) = A A^T``, so
    ``tr (sigma1 sigma2)^(1/2)`` is the sum of A's singular values (its nuclear norm).
    Everything is real and symmetric, in float64, so none of the edge cases of
    ``scipy.linalg.sqrtm`` on the non-symmetric product arise that pytorch-fid and the
    TTUR code patch (a non-finite root retried with ``eps * I`` added to both covariances,
    small imaginary parts dropped, large ones an error); singular (rank-deficient)
    covariances, e.g. from dead ReLU units or fewer samples than features, are fine.
    The estimate from samples is biased upwards, more so for fewer samples: compare
    values only at equal sample sizes.
    """
    mu1, sigma1, mu2, sigma2 = _check_statistics(mu1, sigma1, mu2, sigma2)
    # tr (sigma1 sigma2)^(1/2) = sum of the singular values of sqrt(sigma1) sqrt(sigma2)
    tr_covmean = torch.linalg.matrix_norm(_psd_sqrt(sigma1) @ _psd_sqrt(sigma2), ord="nuc")
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_covmean)


def _cdist(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024):
    """The distance matrix between a (N, D) and b (M, D), as blocks of rows (<= chunk, M).

    Computed directly, not through ``|a|^2 + |b|^2 - 2 a.b`` (whose cancellation would give
    a point a small non-zero distance to itself), one block at a time to bound memory.
    """
    for start in range(0, len(a), chunk):
        yield torch.cdist(a[start:start + chunk], b, compute_mode="donot_use_mm_for_euclid_dist")


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point of x (N, D) to its k-th nearest *other* point: (N,)."""
    # Each row holds the point's 0 distance to itself, so the k-th other neighbour is the (k+1)-th smallest.
    return torch.cat([d.kthvalue(k + 1, dim=1).values for d in _cdist(x, x)])


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of points (M, D) inside at least one ball ``|p - c_j| <= r_j`` around centres (N, D)."""
    inside = torch.cat([(d <= radii).any(dim=1) for d in _cdist(points, centres)])  # (M,)
    return float(inside.double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of fake features against real ones.

    real: (N, D), fake: (M, D), e.g. :func:`digit_features` of data and of samples.
    Each real point gets a ball whose radius is the distance to its k-th nearest *other*
    real point; the union of the balls estimates the real manifold. Likewise for fake.

    - precision = share of fake points inside at least one real ball (are samples realistic?)
    - recall = share of real points inside at least one fake ball (is all of the data covered?)

    Returns ``{"precision": float, "recall": float}``, both in [0, 1]. The paper uses k = 3.
    """
    real, fake = _points(real, "real"), _points(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake must have the same dimension, got {real.shape[1]} and {fake.shape[1]}")
    if not (isinstance(k, int) and 1 <= k < min(len(real), len(fake))):
        raise ValueError(f"k must be an int in 1..{min(len(real), len(fake)) - 1} (fewer than N and M), got {k}")
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)  # (N,), (M,)
    return {"precision": _coverage(fake, real, real_radii), "recall": _coverage(real, fake, fake_radii)}


def _nearest(x: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance (N,) from each row of x to its nearest row of train, and that row's index (N,)."""
    found = [d.min(dim=1) for d in _cdist(x, train)]
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])


def _flat_images(**batches: torch.Tensor) -> list[torch.Tensor]:
    """Image batches (B, ...) with P values per image, e.g. (B, 1, 8, 8) or (B, 64) -> float64 rows (B, P)."""
    for name, t in batches.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2 or len(t) == 0:
            raise ValueError(f"{name} must be a non-empty batch of images (B, ...), got {tuple(t.shape)}")
    sizes = {name: t[0].numel() for name, t in batches.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{', '.join(sizes)} must hold images of one size, got {sizes} values per image")
    return [_points(t.flatten(1), name) for name, t in batches.items()]


def memorisation(samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor) -> dict[str, object]:
    """Do samples copy the training set? Nearest-training-digit distances, against real new digits.

    samples: (M, ...), train: (N, ...), heldout: (V, ...) images of one size, e.g.
    (B, 1, 8, 8) or (B, 64); distances are Euclidean in pixel space (each image flattened).
    A real digit the model never saw (held-out) lies some typical distance from its
    nearest training digit; a sample that copies a training digit lies much closer.

    Returns ``{"sample_median": median distance from a sample to its nearest training
    image, "heldout_median": the same for held-out images, "ratio": sample_median /
    heldout_median (about 1: no more copying than real new digits; well below 1:
    memorisation), "near_copies": share of samples closer to a training image than 95 %
    of held-out images are (the 5th percentile of held-out distances; about 0.05 without
    memorisation, near 1 for copies), "sample_distances": (M,), "heldout_distances": (V,),
    "nearest": (M,) index of each sample's nearest training image (to show them side by side)}``.
    Medians and the percentile interpolate linearly, as ``numpy.quantile``.
    """
    samples, train, heldout = _flat_images(samples=samples, train=train, heldout=heldout)
    sample_distances, nearest = _nearest(samples, train)  # (M,), (M,)
    heldout_distances, _ = _nearest(heldout, train)  # (V,)
    sample_median, heldout_median = sample_distances.quantile(0.5), heldout_distances.quantile(0.5)
    near_copies = (sample_distances < heldout_distances.quantile(0.05)).double().mean()
    return {
        "sample_median": float(sample_median),
        "heldout_median": float(heldout_median),
        "ratio": float(sample_median / heldout_median),
        "near_copies": float(near_copies),
        "sample_distances": sample_distances,
        "heldout_distances": heldout_distances,
        "nearest": nearest,
    }


#: A digit class is *covered* by a set of samples when the classifier gives it at least this share of them:
#: a fifth of a fair share of 10 %, the convention of :func:`mode_coverage` (PacGAN's 20 of 2,500 for 25 modes).
COVERED_SHARE = 0.02


def scorecard(samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor, k: int = 3) -> dict[str, float]:
    """One row of notebook 08's comparison table: how good, how diverse, how original are ``samples``?

    samples: (M, 1, 8, 8), train: (N, 1, 8, 8), heldout: (V, 1, 8, 8) digits in about [-1, 1].
    The real data the samples are judged against is the training set (what the model saw):

    - ``fd``: :func:`frechet_distance` between the :func:`feature_statistics` of the samples'
      and the training digits' :func:`digit_features`;
    - ``precision``, ``recall``: :func:`precision_recall` with the training digits' features as
      the real set and the samples' as the fake one, with ``k``;
    - ``classes``: how many of the 10 digit classes get at least :data:`COVERED_SHARE` of the
      samples by the digits classifier's labels (:func:`classifier_scores`), and
      ``min_class_share``: the smallest share of a class;
    - ``memorisation``: :func:`memorisation` of the samples against the training digits, with the
      held-out digits as the yardstick: its ``ratio`` (about 1: no more copying than new digits).

    Returns ``{"fd", "precision", "recall", "classes", "min_class_share", "memorisation"}``, all floats
    (``classes`` a whole number). Scoring held-out digits themselves gives the floor: what real
    digits the model never saw achieve at this sample size.
    """
    fake, real = digit_features(samples), digit_features(train)  # (M, H), (N, H)
    pr = precision_recall(real, fake, k)
    histogram = classifier_scores(samples)["histogram"]  # (10,)
    return {
        "fd": frechet_distance(*feature_statistics(fake), *feature_statistics(real)),
        "precision": pr["precision"],
        "recall": pr["recall"],
        "classes": float((histogram >= COVERED_SHARE).sum()),
        "min_class_share": float(histogram.min()),
        "memorisation": memorisation(samples, train, heldout)["ratio"],
    }


__all__ = [
    "COVERED_SHARE",
    "DigitsClassifier",
    "classifier_scores",
    "confusion_matrix",
    "digit_features",
    "digits_classifier",
    "energy_distance",
    "feature_statistics",
    "frechet_distance",
    "memorisation",
    "mode_coverage",
    "precision_recall",
    "scorecard",
]
