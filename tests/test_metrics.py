"""course_lib.metrics against independent facts: scipy, constructed samples, real digits."""

from __future__ import annotations

import math
import warnings

import numpy as np
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


# --------------------------------------------------------------------------
# Feature-space sample quality: Frechet distance, precision / recall, memorisation
# --------------------------------------------------------------------------


def _random_statistics(H, rank=None, seed=0):
    """A mean (H,) and a random covariance (H, H) of the given rank (full by default), as numpy."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(H, rank or H))
    return rng.normal(size=H), 2.0 * a @ a.T / a.shape[1]


def _scipy_frechet_distance(mu1, sigma1, mu2, sigma2):
    """FID's formula with the square root of the product taken by scipy.linalg.sqrtm, as pytorch-fid does."""
    linalg = pytest.importorskip("scipy.linalg")
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    assert np.abs(covmean.imag).max(initial=0.0) < 1e-6  # round-off only
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


def test_feature_statistics_equal_numpys_mean_and_unbiased_cov():
    x = np.random.default_rng(0).normal(size=(50, 7)) * np.arange(1, 8)
    for features in (x, torch.from_numpy(x).float()):
        mu, sigma = metrics.feature_statistics(features)
        assert mu.dtype == sigma.dtype == torch.float64
        assert mu.shape == (7,) and sigma.shape == (7, 7)
        expected = np.asarray(features, dtype=np.float64)
        np.testing.assert_allclose(mu.numpy(), expected.mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sigma.numpy(), np.cov(expected, rowvar=False, ddof=1), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.feature_statistics(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(N, H\)"):
        metrics.feature_statistics(torch.zeros(5))
    with pytest.raises(TypeError):
        metrics.feature_statistics([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize(("H", "rank1"), [(1, None), (2, None), (5, None), (16, None), (64, None), (32, 10)])
def test_frechet_distance_equals_scipys_sqrtm_of_the_product(H, rank1):
    with warnings.catch_warnings():  # scipy warns that a singular product may have no square root
        warnings.simplefilter("ignore")
        mu1, sigma1 = _random_statistics(H, rank1, seed=H)
        mu2, sigma2 = _random_statistics(H, seed=H + 1000)
        expected = _scipy_frechet_distance(mu1, sigma1, mu2, sigma2)
    assert expected > 1.0
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    as_tensors = [torch.from_numpy(t) for t in (mu1, sigma1, mu2, sigma2)]
    assert metrics.frechet_distance(*as_tensors) == pytest.approx(expected, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_with_a_singular_covariance_equals_a_50_digit_computation(seed):
    # sigma1 = A A^T has rank 4 of 12: its square root is ill-conditioned, and sqrtm of the product is
    # off by about 1e-6 here; in 50-digit arithmetic, tr (s1 s2)^(1/2) = tr (s2^(1/2) s1 s2^(1/2))^(1/2).
    mp = pytest.importorskip("mpmath")
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(12, 4)), rng.normal(size=(12, 12))
    mu1, mu2, sigma1, sigma2 = rng.normal(size=12), rng.normal(size=12), a @ a.T, b @ b.T / 12
    with mp.workdps(50):
        A, S2 = mp.matrix(a.tolist()), mp.matrix(sigma2.tolist())
        E, Q = mp.eigsy(S2)
        root2 = Q * mp.diag([mp.sqrt(e) for e in E]) * Q.T
        tr_covmean = mp.fsum(mp.sqrt(max(e, 0)) for e in mp.eigsy(root2 * A * A.T * root2, eigvals_only=True))
        expected = float(mp.fsum((mu1 - mu2) ** 2) + mp.fsum((A * A.T)[i, i] for i in range(12))
                         + np.trace(sigma2) - 2 * tr_covmean)
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_properties():
    mu1, sigma1 = _random_statistics(8, seed=0)
    mu2, sigma2 = _random_statistics(8, seed=1)
    mu3, sigma3 = _random_statistics(8, rank=3, seed=2)
    for mu, sigma in ((mu1, sigma1), (mu3, sigma3)):
        assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        metrics.frechet_distance(mu2, sigma2, mu1, sigma1), rel=1e-10)
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma1) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-10)
    # Diagonal covariances: the Frechet (2-Wasserstein) distance is sum (m1 - m2)^2 + (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 0.25, 9.0, 0.0]), np.array([4.0, 1.0, 0.25, 2.0, 3.0])
    m1, m2 = np.array([0.0, 1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.0, -2.0, 3.0, 4.0])
    expected = ((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert metrics.frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"mu1 \(H,\), sigma1 \(H, H\)"):
        metrics.frechet_distance(mu1, sigma1, mu2[:5], sigma2)
    with pytest.raises(ValueError, match=r"sigma1 \(H, H\)"):
        metrics.frechet_distance(mu1, mu1, mu2, sigma2)
    with pytest.raises(ValueError, match="symmetric"):
        metrics.frechet_distance(mu1, sigma1 + np.triu(np.ones((8, 8)), 1), mu2, sigma2)
    with pytest.raises(TypeError):
        metrics.frechet_distance(list(mu1), sigma1, mu2, sigma2)


def _brute_force_precision_recall(real, fake, k):
    """Kynkaanniemi et al.'s definition, one point at a time in plain Python."""
    real, fake = real.tolist(), fake.tolist()

    def radii(points):  # distance to the k-th nearest other point
        return [sorted(math.dist(p, q) for j, q in enumerate(points) if j != i)[k - 1] for i, p in enumerate(points)]

    def share_inside(points, centres, r):
        return sum(any(math.dist(p, c) <= rc for c, rc in zip(centres, r)) for p in points) / len(points)

    return {"precision": share_inside(fake, real, radii(real)), "recall": share_inside(real, fake, radii(fake))}


@pytest.mark.parametrize(("seed", "k"), [(0, 1), (0, 3), (0, 5), (1, 3), (2, 2)])
def test_precision_recall_equals_a_brute_force_loop(seed, k):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(40, 3, generator=g, dtype=torch.float64)
    fake = 0.6 * torch.randn(30, 3, generator=g, dtype=torch.float64) + torch.tensor([2.0, 0.0, 0.0])
    expected = _brute_force_precision_recall(real, fake, k)
    assert 0 < expected["precision"] < 1 and 0 < expected["recall"] < 1
    result = metrics.precision_recall(real, fake, k=k)
    assert set(result) == {"precision", "recall"}
    assert result["precision"] == pytest.approx(expected["precision"], abs=1e-12)
    assert result["recall"] == pytest.approx(expected["recall"], abs=1e-12)


def test_precision_recall_grow_with_k_and_are_perfect_on_the_real_set():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(200, 4, generator=g), 0.5 * torch.randn(150, 4, generator=g) + 0.5
    results = [metrics.precision_recall(real, fake, k=k) for k in (1, 3, 10)]
    for smaller, larger in zip(results, results[1:]):  # larger k, larger balls
        assert smaller["precision"] <= larger["precision"] and smaller["recall"] <= larger["recall"]
    assert results[0]["recall"] < results[-1]["recall"]
    assert metrics.precision_recall(real, real) == {"precision": 1.0, "recall": 1.0}


def test_precision_recall_radius_is_the_kth_nearest_other_point():
    real = torch.tensor([[0.0], [1.0], [3.0]])  # k = 1 radii: 1, 1, 2
    fake = torch.tensor([[0.5], [2.5], [100.0]])  # k = 1 radii: 2, 2, 97.5
    result = metrics.precision_recall(real, fake, k=1)
    # 0.5 and 2.5 lie in real balls, 100 is far from all. Were the point itself its own nearest
    # neighbour, every k = 1 radius would be 0 and precision 0.
    assert result["precision"] == pytest.approx(2 / 3)
    # The outlier's huge ball covers every real point: recall's known sensitivity to outliers.
    assert result["recall"] == 1.0
    with pytest.raises(ValueError, match="k must be"):
        metrics.precision_recall(real, fake, k=3)
    with pytest.raises(ValueError, match="same dimension"):
        metrics.precision_recall(real, torch.zeros(3, 2))


def test_digit_features_are_the_classifiers_hidden_relu_layer():
    x, _ = data.digits_split("val")
    model = metrics.digits_classifier()
    features = metrics.digit_features(x.requires_grad_())
    assert features.shape == (len(x), 128) and not features.requires_grad
    assert (features >= 0).all() and (features > 0).any()
    first = model.net[1]  # Flatten, Linear(64, 128), ReLU, Linear(128, 10)
    by_hand = torch.relu(x.detach().reshape(len(x), 64) @ first.weight.T + first.bias)
    torch.testing.assert_close(features, by_hand)
    torch.testing.assert_close(model.net[-1](features), model(x.detach()))
    torch.testing.assert_close(metrics.digit_features(x.detach()[:, 0]), features)  # (B, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        metrics.digit_features(torch.zeros(2, 64))


def test_memorisation_tells_copies_from_new_digits():
    train, _ = data.digits_split("train")
    val, _ = data.digits_split("val")
    heldout, new = val[: len(val) // 2], val[len(val) // 2:]
    # Plain numpy as the oracle: nearest-training-digit distances and their medians.
    flat_train = train.reshape(len(train), -1).double().numpy()

    def nearest_distances(x):
        x = x.reshape(len(x), -1).double().numpy()
        return np.sqrt(((x[:, None, :] - flat_train[None, :, :]) ** 2).sum(-1)).min(1)

    result = metrics.memorisation(new, train, heldout)
    assert result["sample_median"] == pytest.approx(np.median(nearest_distances(new)), rel=1e-9)
    assert result["heldout_median"] == pytest.approx(np.median(nearest_distances(heldout)), rel=1e-9)
    assert 0.8 < result["ratio"] < 1.25
    p5 = np.percentile(nearest_distances(heldout), 5)
    assert result["near_copies"] == pytest.approx((nearest_distances(new) < p5).mean())
    assert result["near_copies"] < 0.15

    idx = torch.arange(0, len(train), 7)
    copies = metrics.memorisation(train[idx], train, heldout)
    assert copies["sample_median"] == 0.0 and copies["ratio"] == 0.0 and copies["near_copies"] == 1.0
    assert torch.equal(copies["nearest"], idx)
    slightly_off = train[idx] + 0.05 * torch.randn(train[idx].shape, generator=torch.Generator().manual_seed(0))
    assert metrics.memorisation(slightly_off.reshape(len(idx), 64), train, heldout)["ratio"] < 0.3  # (B, 64) too
    with pytest.raises(ValueError, match="one size"):
        metrics.memorisation(torch.zeros(3, 1, 4, 4), train, heldout)


def test_frechet_distance_and_precision_recall_on_digit_features_separate_digits_from_noise():
    train, _ = data.digits_split("train")
    val, _ = data.digits_split("val")
    n = len(val)  # the same sample size on every side: the estimates' bias depends on it
    noise = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    reference = metrics.feature_statistics(metrics.digit_features(train[:n]))
    fd_val = metrics.frechet_distance(*reference, *metrics.feature_statistics(metrics.digit_features(val)))
    fd_noise = metrics.frechet_distance(*reference, *metrics.feature_statistics(metrics.digit_features(noise)))
    assert 0 < fd_val < 0.05 * fd_noise
    pr_val = metrics.precision_recall(metrics.digit_features(train[:n]), metrics.digit_features(val))
    pr_noise = metrics.precision_recall(metrics.digit_features(train[:n]), metrics.digit_features(noise))
    assert pr_val["precision"] > 0.8 and pr_val["recall"] > 0.8
    assert pr_noise["precision"] < 0.1 and pr_noise["recall"] < 0.1
