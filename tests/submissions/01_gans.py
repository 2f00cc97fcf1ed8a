"""Mistake submissions for 01_gans: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell must be the target of at least
one mistake; each mistake names exactly the test cells that must score 0.
"""

import harness
from harness import FROM_CATALOGUE, Mistake

_D_TESTS = {"test_discriminator_loss", "test_discriminator_loss_stable"}
_G_TESTS = {"test_generator_loss", "test_generator_loss_stable"}
_GP_TESTS = {"test_gradient_penalty", "test_gradient_penalty_backprop"}

MISTAKES = [
    # ---- discriminator_loss -------------------------------------------------
    Mistake(
        name="d-swapped-labels",
        cause="swapped the labels: real samples",
        cell="discriminator_loss",
        why="real labelled 0 and fake labelled 1",
        code=FROM_CATALOGUE,
        fails=_D_TESTS,
    ),
    Mistake(
        name="d-log-of-sigmoid",
        cause="took log(sigmoid(x)) in two",
        cell="discriminator_loss",
        why="log(sigmoid(x)) in two steps: right for moderate logits, inf for confident ones",
        code=FROM_CATALOGUE, catalogue='DISCRIMINATOR_LOSS_MISTAKES',
        fails={"test_discriminator_loss_stable"},
    ),
    Mistake(
        name="d-calls-bce",
        cell="discriminator_loss",
        why="calls torch's binary cross-entropy, which the exercise asks to write",
        code='''
def discriminator_loss(real_logits, fake_logits):
    ones, zeros = torch.ones_like(real_logits), torch.zeros_like(fake_logits)
    return (F.binary_cross_entropy_with_logits(real_logits, ones)
            + F.binary_cross_entropy_with_logits(fake_logits, zeros))
''',
        fails={"test_discriminator_loss"},
    ),
    Mistake(
        name="d-halved",
        cause="divided the sum of the two",
        cell="discriminator_loss",
        why="averages the two terms instead of adding them",
        code=FROM_CATALOGUE,
        fails=_D_TESTS,
    ),
    # ---- generator_loss -----------------------------------------------------
    Mistake(
        name="g-wrong-label",
        cause="used the wrong target: the",
        cell="generator_loss",
        why="the non-saturating loss with label 0: G helps D instead of fooling it",
        code=FROM_CATALOGUE,
        fails={"test_generator_loss", "test_generator_loss_stable"},
    ),
    Mistake(
        name="g-log-of-sigmoid",
        cause="took log(sigmoid(x)) in two",
        cell="generator_loss",
        why="log(sigmoid(x)) in two steps",
        code=FROM_CATALOGUE, catalogue='GENERATOR_LOSS_MISTAKES',
        fails={"test_generator_loss_stable"},
    ),
    Mistake(
        name="g-ignores-flag",
        cause="ignored `non_saturating=False`:",
        cell="generator_loss",
        why="always the non-saturating form",
        code=FROM_CATALOGUE,
        fails=_G_TESTS,
    ),
    # ---- gan_train_step -----------------------------------------------------
    Mistake(
        name="step-no-detach",
        cause="the discriminator's loss backpropagated into G:",
        cell="gan_train_step",
        why="D's loss backpropagates into G (parameters still right: caught by the backward-pass count)",
        code=FROM_CATALOGUE,
        fails={"test_gan_train_step"},
    ),
    Mistake(
        name="step-g-before-d",
        cause="updated G before D: the order",
        cell="gan_train_step",
        why="updates G first, against the old D",
        code=FROM_CATALOGUE,
        fails={"test_gan_train_step"},
    ),
    Mistake(
        name="step-g-label-zero",
        cause="G used label 0 for its samples:",
        cell="gan_train_step",
        why="the generator's loss uses label 0 for its own samples",
        code=FROM_CATALOGUE,
        fails={"test_gan_train_step"},
    ),
    Mistake(
        name="step-g-grad-into-d",
        cause="G's loss reached D's update:",
        cell="gan_train_step",
        why="both losses backpropagated before either optimiser steps: G's gradient lands in D's update",
        code=FROM_CATALOGUE,
        fails={"test_gan_train_step"},
    ),
    Mistake(
        name="step-no-zero-grad",
        cause="gradients from an earlier",
        cell="gan_train_step",
        why="never zeroes gradients: the previous step's gradients are added in",
        code=FROM_CATALOGUE,
        fails={"test_gan_train_step"},
    ),
    # ---- predict_saturation -------------------------------------------------
    Mistake(
        name="predict-saturation-vanish",
        cell="predict_saturation",
        why="predicts that both gradients vanish where D rejects the fake",
        code='predict_saturation = "D"\n',
        fails={"test_predict_saturation"},
    ),
    Mistake(
        name="predict-saturation-same",
        cell="predict_saturation",
        why="predicts identical gradients (same fixed point), in lower case",
        code='predict_saturation = "c"\n',
        fails={"test_predict_saturation"},
    ),
    # ---- fit_gan (the synthesis) ----------------------------------------------
    Mistake(
        name="fit-fresh-optimisers",
        cause="made new optimisers at every step",
        cell="fit_gan",
        why="creates the two Adam optimisers inside the loop: their running averages restart every step",
        code=FROM_CATALOGUE,
        fails={"test_fit_gan"},
    ),
    Mistake(
        name="fit-constant-lr",
        cause="kept the learning rates constant",
        cell="fit_gan",
        why="never decays the learning rate",
        code=FROM_CATALOGUE,
        fails={"test_fit_gan"},
    ),
    Mistake(
        name="fit-one-step-run-crashes",
        cause="a run of one step then divides by zero",
        cell="fit_gan",
        why="divides by steps - 1: right on the visible cases, ZeroDivisionError on the hidden one-step run",
        code='''
def fit_gan(G, D, sample_real, steps, latent_dim, batch_size=256, lr=1e-3, lr_end=0.05, d_lr=None,
            betas=(0.5, 0.999), non_saturating=True, seed=0, callback=None):
    d_base = lr if d_lr is None else d_lr
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=d_base, betas=betas)
    latents = torch.Generator().manual_seed(seed)
    history = {"d_loss": [], "g_loss": []}
    for i in range(steps):
        factor = 1 - (1 - lr_end) * i / (steps - 1)
        opt_G.param_groups[0]["lr"] = lr * factor
        opt_D.param_groups[0]["lr"] = d_base * factor
        z = torch.randn(batch_size, latent_dim, generator=latents)
        d_loss, g_loss = gan_train_step(G, D, opt_G, opt_D, sample_real(batch_size), z, non_saturating)
        history["d_loss"].append(d_loss)
        history["g_loss"].append(g_loss)
        if callback is not None:
            callback(i, history)
    return history
''',
        fails={"test_fit_gan"},
    ),
    Mistake(
        name="fit-global-rng",
        cause="drew z from torch's global random generator",
        cell="fit_gan",
        why="draws the latents with plain torch.randn: not reproducible from seed",
        code=FROM_CATALOGUE,
        fails={"test_fit_gan"},
    ),
    Mistake(
        name="fit-calls-train-gan",
        cell="fit_gan",
        why="hands the job to course_lib's train_gan, which the exercise asks to write",
        code='''
def fit_gan(G, D, sample_real, steps, latent_dim, batch_size=256, lr=1e-3, lr_end=0.05, d_lr=None,
            betas=(0.5, 0.999), non_saturating=True, seed=0, callback=None):
    config = reference.GANConfig(steps=steps, batch_size=batch_size, latent_dim=latent_dim, lr=lr, lr_end=lr_end,
                                 d_lr=d_lr, betas=betas, loss="non_saturating" if non_saturating else "saturating")
    run = reference.train_gan(G, D, sample_real, config, step=gan_train_step, progress=False, seed=seed)
    history = {name: [value for _, value in pairs] for name, pairs in run.train.items()}
    if callback is not None:
        for i in range(steps):
            callback(i, {name: values[: i + 1] for name, values in history.items()})
    return history
''',
        fails={"test_fit_gan"},
    ),
    # ---- mode_coverage (the debug exercise) ---------------------------------
    Mistake(
        name="coverage-as-shipped",
        cause="up to about 0.245 from their nearest centre",
        cell="mode_coverage",
        why="the debug exercise handed in unchanged: a squared distance against k * std, a count against min_share",
        code=harness.as_shipped("01_gans", "mode_coverage"),
        fails={"test_mode_coverage"},
    ),
    Mistake(
        name="coverage-squared-distance",
        cause="up to about 0.245 from their nearest centre",
        cell="mode_coverage",
        why="fixed the threshold only: still a squared distance against the radius k * std",
        code=FROM_CATALOGUE,
        fails={"test_mode_coverage"},
    ),
    Mistake(
        name="coverage-share-as-count",
        cause="a single high-quality sample is enough to cover a mode",
        cell="mode_coverage",
        why="fixed the distance only: a count still compared with min_share, so one sample covers a mode",
        code=FROM_CATALOGUE,
        fails={"test_mode_coverage"},
    ),
    Mistake(
        name="coverage-k-not-squared",
        cause="within about 0.035 of a centre",
        cell="mode_coverage",
        why="fixed the distance by squaring the radius, as k * std ** 2: a radius of sqrt(k) std",
        code=FROM_CATALOGUE,
        fails={"test_mode_coverage"},
    ),
    Mistake(
        name="coverage-all-samples",
        cause="take in samples that are not high quality",
        cell="mode_coverage",
        why="counts every sample's nearest mode, high quality or not",
        code=FROM_CATALOGUE,
        fails={"test_mode_coverage"},
    ),
    Mistake(
        name="coverage-strict",
        cause="equals the covering threshold exactly",
        cell="mode_coverage",
        why="counts > threshold: a mode exactly at the threshold is not covered",
        code=FROM_CATALOGUE,
        fails={"test_mode_coverage"},
    ),
    Mistake(
        name="coverage-no-floor",
        cause="a mode without a single high-quality sample counts as covered",
        cell="mode_coverage",
        why="threshold min_share * N without max(1, ...): with min_share = 0 an empty mode is covered",
        code=FROM_CATALOGUE,
        fails={"test_mode_coverage"},
    ),
    Mistake(
        name="coverage-fifth-of-all",
        cause="far above a fifth of a mode's fair share",
        cell="mode_coverage",
        why="default min_share 0.2 instead of 0.2 / K",
        code=FROM_CATALOGUE,
        fails={"test_mode_coverage"},
    ),
    # ---- predict_collapse ---------------------------------------------------
    Mistake(
        name="predict-collapse-harmless",
        cell="predict_collapse",
        why="predicts that a slower discriminator only slows the game down",
        code='predict_collapse = "C"\n',
        fails={"test_predict_collapse"},
    ),
    # ---- gradient_penalty ---------------------------------------------------
    Mistake(
        name="gp-no-create-graph",
        cause="computed the gradient without `create_graph=True`",
        cell="gradient_penalty",
        why="right value, but without create_graph=True the penalty cannot train the critic",
        code='''
def gradient_penalty(critic, real, fake, alpha=None):
    B = real.shape[0]
    if alpha is None:
        alpha = torch.rand(B)
    alpha = alpha.reshape((B,) + (1,) * (real.dim() - 1))
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
''',
        fails={"test_gradient_penalty_backprop"},
    ),
    Mistake(
        name="gp-norm-over-batch",
        cause="took one norm over the whole",
        cell="gradient_penalty",
        why="one gradient norm for the whole batch instead of one per sample",
        code=FROM_CATALOGUE,
        fails=_GP_TESTS,
    ),
    Mistake(
        name="gp-last-axis-norm",
        cause="took the norm over the last",
        cell="gradient_penalty",
        why="norm over the last axis only: right for 2-D points, wrong for images",
        code=FROM_CATALOGUE,
        fails={"test_gradient_penalty"},
    ),
    Mistake(
        name="gp-squared-norm",
        cause="penalised the squared norm:",
        cell="gradient_penalty",
        why="penalises (|grad|^2 - 1)^2",
        code=FROM_CATALOGUE,
        fails=_GP_TESTS,
    ),
    Mistake(
        name="gp-swapped-mix",
        cause="mixed the wrong way round:",
        cell="gradient_penalty",
        why="x_hat = alpha * fake + (1 - alpha) * real",
        code=FROM_CATALOGUE,
        fails=_GP_TESTS,
    ),
    Mistake(
        name="gp-calls-reference",
        cell="gradient_penalty",
        why="calls course_lib's reference",
        code='''
import course_lib.gan


def gradient_penalty(critic, real, fake, alpha=None):
    return course_lib.gan.gradient_penalty(critic, real, fake, alpha)
''',
        fails={"test_gradient_penalty"},
    ),
    # ---- wgan_gp_train_step -------------------------------------------------
    Mistake(
        name="wgan-critic-sign",
        cause="the critic's loss has the",
        cell="wgan_gp_train_step",
        why="the critic maximises its loss: mean(C(real)) - mean(C(fake)) + penalty",
        code=FROM_CATALOGUE,
        fails={"test_wgan_gp_train_step"},
    ),
    Mistake(
        name="wgan-no-detach",
        cause="the critic's updates backpropagated",
        cell="wgan_gp_train_step",
        why="fakes for the critic made with a gradient into G",
        code=FROM_CATALOGUE,
        fails={"test_wgan_gp_train_step"},
    ),
    Mistake(
        name="wgan-vanilla-g-loss",
        cause="the generator used the vanilla",
        cell="wgan_gp_train_step",
        why="the generator uses the non-saturating GAN loss on the critic's scores",
        code=FROM_CATALOGUE,
        fails={"test_wgan_gp_train_step"},
    ),
    Mistake(
        name="wgan-one-critic-update",
        cause="only one critic update was",
        cell="wgan_gp_train_step",
        why="one critic update whatever len(reals) is",
        code=FROM_CATALOGUE,
        fails={"test_wgan_gp_train_step"},
    ),
]
