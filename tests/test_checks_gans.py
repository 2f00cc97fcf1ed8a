"""Notebook 01's checks (course_lib.checks.gans).

The synthesis check (``check_fit_gan``): it passes right loops, names each catalogued mistake, and cannot be
fooled by the shortcut or by a broken step from earlier in the notebook. The training-step checks name each
mistake they were built for.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

from course_lib import gan
from course_lib.checks import gans
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
