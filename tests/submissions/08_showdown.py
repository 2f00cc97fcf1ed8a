"""Mistake submissions for 08_showdown: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell must be the target of at least
one mistake; each mistake names exactly the test cells that must score 0.
Where the catalogue (course_lib.checks.showdown) holds the mistaken function
with the answer's signature, the answer cell is generated from it
(``code=FROM_CATALOGUE``); the others are written out here.
"""

from harness import FROM_CATALOGUE, Mistake

FRECHET = '''
def frechet_distance(mu1, sigma1, mu2, sigma2):
    eigenvalues = torch.linalg.eigvals(sigma1 @ sigma2)
    tr_sqrt = eigenvalues.real.sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_sqrt)
'''


MISTAKES = [
    # -- digit_features -----------------------------------------------------------------------------
    Mistake(
        name="features-after-softmax",
        cause="the features were taken after the softmax",
        cell="digit_features",
        why="class probabilities as features: 10 numbers per digit that keep little beyond its class",
        code=FROM_CATALOGUE,
        fails={"test_digit_features"},
    ),
    Mistake(
        name="features-before-relu",
        cause="the features were taken before the ReLU",
        cell="digit_features",
        why="stops one layer early: the hidden layer's pre-activations",
        code=FROM_CATALOGUE,
        fails={"test_digit_features"},
    ),
    # -- feature_statistics ---------------------------------------------------------------------------
    Mistake(
        name="statistics-biased",
        cause="the covariance is biased",
        cell="feature_statistics",
        why="divides by N: the biased covariance",
        code=FROM_CATALOGUE,
        fails={"test_feature_statistics"},
    ),
    Mistake(
        name="statistics-not-centred",
        cause="the features were not centred",
        cell="feature_statistics",
        why="forgets to subtract the mean before the outer products",
        code=FROM_CATALOGUE,
        fails={"test_feature_statistics"},
    ),
    # -- frechet_distance ------------------------------------------------------------------------------
    Mistake(
        name="fd-sqrt-of-each",
        cause="took the matrix square root of each covariance",
        cell="frechet_distance",
        why="sqrt(sigma1) sqrt(sigma2) instead of the square root of the product",
        code=FROM_CATALOGUE,
        fails={"test_frechet_distance"},
    ),
    Mistake(
        name="fd-plus-trace",
        cause="the trace term has the wrong sign",
        cell="frechet_distance",
        why="adds the square-root term",
        code=FROM_CATALOGUE,
        fails={"test_frechet_distance"},
    ),
    Mistake(
        name="fd-factor-one",
        cause="the square-root term lost its factor 2",
        cell="frechet_distance",
        why="subtracts tr (sigma1 sigma2)^(1/2) once",
        code=FROM_CATALOGUE,
        fails={"test_frechet_distance"},
    ),
    Mistake(
        name="fd-nan-on-singular",
        cause="NaN: round-off makes some eigenvalues",
        cell="frechet_distance",
        why="the eigenvalues' real parts without a clamp: right on full-rank covariances, NaN on singular ones",
        code=FRECHET,
        fails={"test_frechet_distance"},
    ),
    # -- precision_recall ------------------------------------------------------------------------------
    Mistake(
        name="pr-radius-includes-itself",
        cause="the k-NN radius includes the point itself",
        cell="precision_recall",
        why="the k-th smallest distance of a row is the (k-1)-th other point: radius 0 for k = 1",
        code=FROM_CATALOGUE,
        fails={"test_precision_recall"},
    ),
    Mistake(
        name="pr-swapped",
        cause="precision and recall are swapped: precision",
        cell="precision_recall",
        why="returns the share of real points in fake balls as the precision",
        code=FROM_CATALOGUE,
        fails={"test_precision_recall"},
    ),
    # -- quantize ----------------------------------------------------------------------------------------
    Mistake(
        name="quantize-off-by-one-level",
        cause="off by one level",
        cell="quantize",
        why="scales [-1, 1] onto [0, levels] instead of [0, levels - 1]",
        code=FROM_CATALOGUE,
        fails={"test_quantize"},
    ),
    Mistake(
        name="quantize-truncated",
        cause="truncated instead of rounded",
        cell="quantize",
        why="converts to int without rounding: half the pixels one level low",
        code=FROM_CATALOGUE,
        fails={"test_quantize"},
    ),
    Mistake(
        name="quantize-not-clamped",
        cause="values outside [-1, 1] were not clamped",
        cell="quantize",
        why="a sample that overshoots becomes level -1 or levels",
        code=FROM_CATALOGUE,
        fails={"test_quantize"},
    ),
    # -- scorecard (synthesis) -------------------------------------------------------------------------
    Mistake(
        name="scorecard-pr-swapped",
        cause="precision and recall came out swapped",
        cell="scorecard",
        why="passes the samples' features as the real set",
        code=FROM_CATALOGUE,
        fails={"test_scorecard"},
    ),
    Mistake(
        name="scorecard-judged-against-heldout",
        cause="the samples were judged against the held-out digits",
        cell="scorecard",
        why="compares the samples with the held-out digits instead of the training digits",
        code=FROM_CATALOGUE,
        fails={"test_scorecard"},
    ),
    Mistake(
        name="scorecard-any-sample-covers",
        cause="a class with a single sample counted as covered",
        cell="scorecard",
        why="counts every class with a sample as covered",
        code=FROM_CATALOGUE,
        fails={"test_scorecard"},
    ),
    Mistake(
        name="scorecard-memorisation-swapped",
        cause="memorisation got the samples and the held-out digits swapped",
        cell="scorecard",
        why="memorisation(heldout, train, samples): the ratio upside down",
        code=FROM_CATALOGUE,
        fails={"test_scorecard"},
    ),
    # -- predictions --------------------------------------------------------------------------------------
    Mistake(
        name="predict-real-fd-zero",
        cell="predict_real_fd",
        why="expects two sets of real digits to have the same statistics",
        code='predict_real_fd = "A"\n',
        fails={"test_predict_real_fd"},
    ),
    Mistake(
        name="predict-cache-no-gain",
        cell="predict_cache",
        why="expects Python overhead to hide what the cache saves",
        code='predict_cache = "A"\n',
        fails={"test_predict_cache"},
    ),
    Mistake(
        name="predict-gan-collapses",
        cell="predict_gan",
        why="expects the GAN to drop digit classes",
        code='predict_gan = "A"\n',
        fails={"test_predict_gan"},
    ),
]
