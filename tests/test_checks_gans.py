"""Notebook 01's checks (course_lib.checks.gans).

The synthesis check (``check_fit_gan``): it passes right loops, names each catalogued mistake, and cannot be
fooled by the shortcut or by a broken step from earlier in the notebook. The training-step checks name each
mistake they were built for. The debug exercise's check (``check_mode_coverage``) passes right answers, names
the first bug of the code as shipped and each catalogued mistake.
"""

from __future__ import annotations

import textwrap

import harness
import pytest
import torch
from envtools import assert_fails_naming

from course_lib import gan, metrics
from course_lib.checks import gans
from course_lib.data import eight_gaussians, ring_centers
from course_lib.grading import CheckFailed

HIDDEN_LIKE = [  # the edge cases of the notebook's hidden region: one step, d_lr set, saturating, beta1 = 0
    {"seed": 4, "latent_dim": 1, "data_dim": 2, "steps": 1, "batch_size": 5, "lr": 0.1, "lr_end": 0.05,
     "d_lr": None, "betas": (0.5, 0.999), "non_saturating": True},
    {"seed": 9, "latent_dim": 4, "data_dim": 3, "steps": 7, "batch_size": 9, "lr": 0.03, "lr_end": 0.2,
     "d_lr": 0.005, "betas": (0.0, 0.99), "non_saturating": False},
]


def _notebook(source: str) -> dict:
    """A namespace like a notebook's globals(): torch, the reference step, and the cell's definitions."""
    namespace = {"torch": torch, "gan_train_step": gan.gan_train_step}
    exec(textwrap.dedent(source), namespace)
    return namespace


SCHEDULER_LOOP = """
def fit_gan(G, D, sample_real, steps, latent_dim, batch_size=256, lr=1e-3, lr_end=0.05, d_lr=None,
            betas=(0.5, 0.999), non_saturating=True, seed=0, callback=None):
    # a different but right way: LambdaLR for the schedule, z drawn before the data
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=d_lr or lr, betas=betas)
    decay = lambda i: 1 - (1 - lr_end) * i / max(1, steps - 1)
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, decay) for opt in (opt_G, opt_D)]
    gen = torch.Generator().manual_seed(seed)
    history = {"d_loss": [], "g_loss": []}
    for i in range(steps):
        z = torch.randn(batch_size, latent_dim, generator=gen)
        losses = gan_train_step(G, D, opt_G, opt_D, sample_real(batch_size), z, non_saturating=non_saturating)
        for name, value in zip(history, losses):
            history[name].append(value)
        for schedule in schedules:
            schedule.step()
        if callback:
            callback(i, history)
    return history
"""


def test_reference_and_a_different_right_loop_pass_visible_and_hidden_cases():
    gans.check_fit_gan(gan.fit_gan, {})
    gans.check_fit_gan(gan.fit_gan, {}, cases=HIDDEN_LIKE)
    namespace = _notebook(SCHEDULER_LOOP)
    gans.check_fit_gan(namespace["fit_gan"], namespace)
    gans.check_fit_gan(namespace["fit_gan"], namespace, cases=HIDDEN_LIKE)


@pytest.mark.parametrize("description", list(gans.FIT_GAN_MISTAKES))
def test_each_mistake_fails_the_visible_check_and_is_named(description):
    with pytest.raises(CheckFailed) as failure:
        gans.check_fit_gan(gans.FIT_GAN_MISTAKES[description], {})
    assert f"Likely cause: {description}" in str(failure.value)


@pytest.mark.parametrize("description", list(gans.FIT_GAN_MISTAKES))
def test_each_mistake_differs_from_the_reference_on_a_hidden_case(description):
    # the hidden region must not pass a mistake the visible cases catch (d_lr only shows where it is set)
    differs = [gans._fit_difference(gans._run_fit(gans.FIT_GAN_MISTAKES[description], case),
                                    gans._run_fit(gan.fit_gan, case)) for case in HIDDEN_LIKE]
    assert any(differs), description


def test_the_step_is_the_reference_during_the_check_and_the_students_afterwards():
    namespace = _notebook(SCHEDULER_LOOP)

    def broken_step(*args, **kwargs):
        raise RuntimeError("the student's own step is broken")

    namespace["gan_train_step"] = broken_step
    gans.check_fit_gan(namespace["fit_gan"], namespace)  # a slip in Section 3 is not counted twice
    assert namespace["gan_train_step"] is broken_step


def test_dividing_by_steps_minus_one_fails_only_the_one_step_case():
    namespace = _notebook(SCHEDULER_LOOP.replace("max(1, steps - 1)", "(steps - 1)"))
    gans.check_fit_gan(namespace["fit_gan"], namespace)
    with pytest.raises(CheckFailed, match="ZeroDivisionError") as failure:
        gans.check_fit_gan(namespace["fit_gan"], namespace, cases=HIDDEN_LIKE)
    assert f"Likely cause: {gans.FIT_GAN_ERRORS[r'^ZeroDivisionError']}" in str(failure.value)


def test_the_shortcut_through_train_gan_is_refused():
    namespace = _notebook("""
        import course_lib.gan as reference

        def fit_gan(G, D, sample_real, steps, latent_dim, batch_size=256, lr=1e-3, lr_end=0.05, d_lr=None,
                    betas=(0.5, 0.999), non_saturating=True, seed=0, callback=None):
            config = reference.GANConfig(steps=steps, batch_size=batch_size, latent_dim=latent_dim, lr=lr,
                                         lr_end=lr_end, d_lr=d_lr, betas=betas)
            run = reference.train_gan(G, D, sample_real, config, progress=False, seed=seed)
            return {name: [v for _, v in pairs] for name, pairs in run.train.items()}
    """)
    with pytest.raises(CheckFailed, match="course_lib.gan.train_gan"):
        gans.check_fit_gan(namespace["fit_gan"], namespace)


@pytest.mark.parametrize(
    "body,message",
    [
        ("return None", "should return a dict"),
        ('return {"d_loss": [0.0] * steps, "g_loss": [0.0]}', r"history\['g_loss'\] should be a list of 6"),
        ('sample_real(batch_size); sample_real(batch_size); return {"d_loss": [], "g_loss": []}',
         r"should be a list of 6"),
    ],
)
def test_a_malformed_history_is_described(body, message):
    namespace = _notebook(f"""
        def fit_gan(G, D, sample_real, steps, latent_dim, batch_size=256, lr=1e-3, lr_end=0.05, d_lr=None,
                    betas=(0.5, 0.999), non_saturating=True, seed=0, callback=None):
            {body}
    """)
    with pytest.raises(CheckFailed, match=message):
        gans.check_fit_gan(namespace["fit_gan"], namespace)


def test_extra_data_batches_are_reported():
    extra = "        sample_real(batch_size)  # a batch drawn and never used\n        z = torch.randn("
    namespace = _notebook(SCHEDULER_LOOP.replace("        z = torch.randn(", extra))
    with pytest.raises(CheckFailed, match="sample_real was called 12 times"):
        gans.check_fit_gan(namespace["fit_gan"], namespace)


# --------------------------------------------------------------------------
# The training-step checks name each mistake they were built for
# --------------------------------------------------------------------------

GAN_CASES = [  # the flag matters only with non_saturating=False: both kinds of case
    {"seed": 0, "latent_dim": 3, "data_dim": 2, "batch": 8, "lr": 0.1, "non_saturating": True},
    {"seed": 1, "latent_dim": 2, "data_dim": 2, "batch": 6, "lr": 0.5, "non_saturating": False},
]
WGAN_CASES = [{"seed": 0, "latent_dim": 3, "data_dim": 2, "batch": 6, "lr": 0.05, "n_critic": 3, "gp_weight": 10.0}]


def test_step_checks_pass_the_reference_steps():
    gans.check_train_step(gan.gan_train_step, GAN_CASES)
    gans.check_wgan_step(gan.wgan_gp_train_step, WGAN_CASES)


@pytest.mark.parametrize("kind", ["gan", "wgan"])
def test_step_checks_name_each_mistake(kind):
    if kind == "gan":
        catalogue, check, cases = gans.TRAIN_STEP_MISTAKES, gans.check_train_step, GAN_CASES
    else:
        catalogue, check, cases = gans.WGAN_STEP_MISTAKES, gans.check_wgan_step, WGAN_CASES
    for description, mistaken in catalogue.items():
        with pytest.raises(CheckFailed) as failure:
            check(mistaken, cases)
        assert f"Likely cause: {description}" in str(failure.value), description


# --------------------------------------------------------------------------
# The gradient penalty must keep its graph: named from its catalogue
# --------------------------------------------------------------------------


def _penalty_without_graph(critic, real, fake, alpha=None):
    """The right value, but torch.autograd.grad without create_graph=True: nothing reaches the critic."""
    alpha = (torch.rand(len(real), dtype=real.dtype) if alpha is None else alpha).reshape(
        (len(real),) + (1,) * (real.dim() - 1))
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def test_the_backprop_check_passes_the_reference_and_names_a_penalty_without_its_graph():
    gans.check_gradient_penalty_backprop(gan.gradient_penalty)
    gans.check_gradient_penalty(_penalty_without_graph)  # its values are right
    (description,) = gans.GRADIENT_PENALTY_GRAPH_SYMPTOMS
    with pytest.raises(CheckFailed, match="cannot train the critic") as failure:
        gans.check_gradient_penalty_backprop(_penalty_without_graph)
    assert f"Likely cause: {description}" in str(failure.value)
    for detached in (torch.tensor(0.5), 0.5):
        assert gans.GRADIENT_PENALTY_GRAPH_SYMPTOMS[description](detached)
    assert not gans.GRADIENT_PENALTY_GRAPH_SYMPTOMS[description](torch.tensor(0.5, requires_grad=True) * 2)


# --------------------------------------------------------------------------
# mode_coverage, the debug exercise: right answers pass, the code as shipped and each mistake are named
# --------------------------------------------------------------------------

RING = ring_centers(8, 2.0)
COVERAGE_HIDDEN = [  # the notebook's hidden region: float64 on the ring; 1-D points; k * std above 1, min_share = 0
    gans.coverage_case(7, RING, 0.02, near=[300, 4, 0, 10, 0, 1, 0, 0], mid=[5, 3, 3, 0, 0, 2, 0, 0],
                       far=[0, 0, 0, 0, 12, 20, 20, 20], dtype=torch.float64),
    gans.coverage_case(8, torch.tensor([[-1.0], [1.0]]), 0.05, near=[8, 3], mid=[2, 6], far=[1, 0], k=2.0,
                       min_share=0.3),
    gans.coverage_case(9, torch.tensor([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]]), 1.0, near=[10, 0, 1],
                       mid=[3, 0, 2], far=[0, 4, 0], k=2.0, min_share=0.0),
]
COVERAGE_EDGES = [  # one mode; min_share = 0 with an empty mode; every sample far
    gans.coverage_case(3, torch.zeros(1, 2), 0.1, near=[5], mid=[2], far=[3]),
    gans.coverage_case(4, RING[:3], 0.02, near=[0, 2, 0], mid=[1, 0, 0], far=[0, 0, 4], min_share=0.0),
    gans.coverage_case(5, RING[:2], 0.02, near=[0, 0], mid=[0, 0], far=[3, 3]),
]

CDIST_COVERAGE = """
def mode_coverage(samples, centers, std, k=3.0, min_share=None):
    # a different but right way: torch.cdist, a one-hot sum for the counts, a squared radius
    K = centers.shape[0]
    share = 0.2 / K if min_share is None else min_share
    squares = torch.cdist(samples, centers) ** 2
    nearest = squares.argmin(dim=1)
    good = squares.min(dim=1).values <= (k * std) ** 2
    counts = torch.nn.functional.one_hot(nearest, K)[good].sum(dim=0)
    threshold = max(1, share * samples.shape[0])
    return {"modes": (counts >= threshold).sum(), "of": K, "high_quality": good.double().mean(), "counts": counts}
"""


def _coverage_answer(source: str):
    return _notebook(source)["mode_coverage"]


@pytest.mark.parametrize("answer", ["reference", "switchboard", "solution", "cdist"])
def test_right_mode_coverages_pass_visible_hidden_and_edge_cases(answer):
    fn = {
        "reference": lambda: metrics.mode_coverage,
        "switchboard": lambda: gans._coverage,
        "solution": lambda: _coverage_answer(harness.solution_answers("01_gans", "gans.ipynb")["mode_coverage"]),
        "cdist": lambda: _coverage_answer(CDIST_COVERAGE),
    }[answer]()
    gans.check_mode_coverage(fn)
    gans.check_mode_coverage(fn, cases=COVERAGE_HIDDEN + COVERAGE_EDGES)


def test_the_code_as_shipped_fails_naming_its_first_bug_and_shows_the_symptoms_the_text_claims():
    shipped = _coverage_answer(harness.as_shipped("01_gans", "mode_coverage"))
    distance = next(d for d in gans.MODE_COVERAGE_MISTAKES if "up to about 0.245 from their nearest centre" in d)
    assert_fails_naming(lambda: gans.check_mode_coverage(shipped), f"Likely cause: {distance}")
    # The notebook's text: the data 8/8; a collapsed generator with strays 8/8 too; a blurred ring 99 % high
    # quality. The samples are those of its demo cell (coverage-demo), where the fixed code says 8/8 and 99 %,
    # 1/8 and 95 %, 8/8 and 25 %.
    strays = torch.Generator().manual_seed(0)
    data = eight_gaussians(2500, seed=1)
    collapsed = torch.cat([RING[0] + 0.02 * torch.randn(2400, 2, generator=strays),
                           eight_gaussians(100, std=0.15, seed=2)])
    blurred = eight_gaussians(2500, std=0.08, seed=3)
    for points in (data, collapsed, blurred):  # "all three 8 of 8 modes and about 99 % high quality"
        assert shipped(points, RING, std=0.02)["modes"] == 8
        assert shipped(points, RING, std=0.02)["high_quality"] > 0.985
    right = metrics.mode_coverage
    assert right(data, RING, std=0.02)["modes"] == 8 and right(data, RING, std=0.02)["high_quality"] > 0.985
    assert right(collapsed, RING, std=0.02)["modes"] == 1 and right(collapsed, RING, std=0.02)["high_quality"] > 0.94
    assert 0.23 < right(blurred, RING, std=0.02)["high_quality"] < 0.26


def test_the_code_as_shipped_with_its_distance_fixed_is_told_about_its_threshold():
    """The second run of the self-check, after the first bug is fixed, names the second bug; each of the two
    messages points to its own part of Hint 2."""
    source = harness.as_shipped("01_gans", "mode_coverage")
    assert source.count(".sum(dim=-1)") == 1
    half_fixed = _coverage_answer(source.replace(".sum(dim=-1)", ".sum(dim=-1).sqrt()"))
    threshold = next(d for d in gans.MODE_COVERAGE_MISTAKES if "a single high-quality sample is enough" in d)
    assert_fails_naming(lambda: gans.check_mode_coverage(half_fixed), f"Likely cause: {threshold}")
    distance = next(d for d in gans.MODE_COVERAGE_MISTAKES if "up to about 0.245 from their nearest centre" in d)
    assert "'The distance' in Hint 2" in distance and "'The threshold' in Hint 2" in threshold


@pytest.mark.parametrize("description", list(gans.MODE_COVERAGE_MISTAKES))
def test_each_mode_coverage_mistake_fails_the_visible_check_and_is_named(description):
    mistaken = gans.MODE_COVERAGE_MISTAKES[description]
    assert_fails_naming(lambda: gans.check_mode_coverage(mistaken), f"Likely cause: {description}")


@pytest.mark.parametrize("description", list(gans.MODE_COVERAGE_MISTAKES))
def test_each_mode_coverage_mistake_fails_the_hidden_cases(description):
    with pytest.raises(CheckFailed):
        gans.check_mode_coverage(gans.MODE_COVERAGE_MISTAKES[description], cases=COVERAGE_HIDDEN)


def test_mode_coverage_through_the_reference_or_returning_a_tuple_is_refused():
    calls = _coverage_answer("""
        import course_lib.metrics

        def mode_coverage(samples, centers, std, k=3.0, min_share=None):
            return course_lib.metrics.mode_coverage(samples, centers, std, k, min_share)
    """)
    assert_fails_naming(lambda: gans.check_mode_coverage(calls), "course_lib.metrics.mode_coverage")
    as_tuple = _coverage_answer("""
        def mode_coverage(samples, centers, std, k=3.0, min_share=None):
            return 1, len(centers), 0.5, torch.zeros(len(centers))
    """)
    assert_fails_naming(lambda: gans.check_mode_coverage(as_tuple), "should return a dict with 'modes'")
