"""Shortcuts, common mistakes and test fixtures for notebook 03 (reverse diffusion).

Like notebook 02's checks (:mod:`course_lib.checks.forward_diffusion`, whose fixtures
these reuse), they hand answers a *bare* schedule: betas, alphas, alpha_bars and
alpha_bars_prev are real, every precomputed derived term (square roots, posterior
coefficients) is NaN. The references run on the full schedule rebuilt from the same betas.

Each mistaken function below is what an answer computes when it makes that
mistake; ``grading.check_function`` names the one that matches. Each ``*_ERRORS``
mapping names the likely cause of an exception an answer raises.

Each ``check_<cell>`` function is the body of the notebook's self-check cell ``test_<cell>``:
called with the student's function alone it runs the visible cases (and the shortcut check);
the notebook's hidden tests call it again with their own ``cases``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, MutableMapping
from typing import Any

import torch

from .. import diffusion as D
from ..diffusion import ddim_timesteps
from ..grading import (
    CheckFailed,
    check_answer_rules,
    check_function,
    describe,
    error_cause,
    forbid_reference,
    substitute,
)
from .forward_diffusion import _PRECOMPUTED, _shape_like, _timesteps, bare_schedule, full

# --------------------------------------------------------------------------
# Fixtures: toy noise-prediction models
# --------------------------------------------------------------------------


def toy_model(x: torch.Tensor, t: Any, labels: torch.Tensor | None = None) -> torch.Tensor:
    """A fixed, cheap stand-in for a trained noise predictor: ``(B, ...) -> (B, ...)``.

    Depends on ``x``, on ``t`` (an int or a ``(B,)`` tensor) and on the labels, with a distinct
    answer when ``labels`` is None (the unconditional model).
    """
    tt = _timesteps(t, x).to(x.dtype).reshape(len(x), *([1] * (x.dim() - 1)))
    out = torch.tanh(0.8 * x + 0.05 * tt) + 0.3 * torch.sin(1.7 * x)
    if labels is not None:
        lab = torch.as_tensor(labels).to(x.dtype).reshape(len(x), *([1] * (x.dim() - 1)))
        out = out + 0.25 * torch.cos(x + lab) + 0.1 * lab
    return out


class RecordingModel:
    """A model that returns zeros and remembers every ``(x, t, labels)`` it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor, Any]] = []

    def __call__(self, x: torch.Tensor, t: Any, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((x.detach().clone(), _timesteps(t, x).clone(), labels))
        return torch.zeros_like(x)


# --------------------------------------------------------------------------
# References with the students' signatures (they rebuild the full schedule)
# --------------------------------------------------------------------------


def reference_posterior(x0, xt, t, schedule):
    return D.q_posterior_mean_variance(x0, xt, t, full(schedule))


def reference_diffusion_loss(model, x0, schedule, labels=None, t=None, noise=None):
    return D.diffusion_loss(model, x0, full(schedule), labels, t, noise)


def reference_p_sample(model, xt, t, schedule, noise=None):
    return D.p_sample(model, xt, t, full(schedule), noise)


def reference_ddpm_sample(model, shape, schedule, generator):
    return D.ddpm_sample(model, shape, full(schedule), generator=generator)


def reference_ddim_step(eps, xt, t, t_prev, schedule):
    return D.ddim_step(eps, xt, t, t_prev, full(schedule))


def reference_ddim_sample(model, x_T, schedule, steps):
    return D.ddim_sample(model, tuple(x_T.shape), full(schedule), steps, x_T=x_T)


# The notebook's names for the functions a mistaken loop below calls. Here they are the references; in the
# mistake's generated submission (tools/catalogue.py) they are the student's own p_sample and diffusion_loss.
p_sample = reference_p_sample
diffusion_loss = reference_diffusion_loss


# --------------------------------------------------------------------------
# Notebook 03: the posterior
# --------------------------------------------------------------------------

POSTERIOR_SHORTCUTS = [
    "course_lib.diffusion.q_posterior_mean_variance",
    "course_lib.checks.reverse_diffusion.reference_posterior",
]


def _posterior(x0, xt, t, betas, alphas, ab, ab_prev):
    t = _timesteps(t, xt)
    coef0 = betas * ab_prev.sqrt() / (1 - ab)
    coeft = (1 - ab_prev) * alphas.sqrt() / (1 - ab)
    var = betas * (1 - ab_prev) / (1 - ab)
    mean = _shape_like(coef0, t, xt) * x0 + _shape_like(coeft, t, xt) * xt
    return mean, _shape_like(var, t, xt)


def _post_prev_is_current(x0, xt, t, schedule):
    s = schedule
    return _posterior(x0, xt, t, s.betas, s.alphas, s.alpha_bars, s.alpha_bars)


def _post_alpha_for_alpha_bar(x0, xt, t, schedule):
    s = schedule
    prev_alphas = torch.cat([torch.ones(1), s.alphas[:-1]])
    return _posterior(x0, xt, t, s.betas, s.alphas, s.alphas, prev_alphas)


def _post_no_sqrt(x0, xt, t, schedule):
    s = schedule
    return _posterior(x0, xt, t, s.betas, s.alphas**2, s.alpha_bars, s.alpha_bars_prev)


def _post_swapped(x0, xt, t, schedule):
    return _posterior(xt, x0, t, schedule.betas, schedule.alphas, schedule.alpha_bars, schedule.alpha_bars_prev)


def _post_precomputed(x0, xt, t, schedule):
    t = _timesteps(t, xt)
    s = schedule
    mean = _shape_like(s.posterior_mean_coef_x0, t, xt) * x0 + _shape_like(s.posterior_mean_coef_xt, t, xt) * xt
    return mean, _shape_like(s.posterior_variance, t, xt)


POSTERIOR_MISTAKES = {
    "used alpha_bar_t where alpha_bar_{t-1} belongs (off by one): the posterior mixes x_0 at the noise "
    "level of the step *before* t; use alpha_bars_prev[t]": _post_prev_is_current,
    "used alpha_t where alpha_bar_t belongs: x_0 is t + 1 steps away, so its coefficients need the "
    "cumulative products": _post_alpha_for_alpha_bar,
    "forgot the square root of alpha_t in the x_t coefficient: (1 - alpha_bar_{t-1}) sqrt(alpha_t) / "
    "(1 - alpha_bar_t)": _post_no_sqrt,
    "swapped x_0 and x_t: the coefficient with beta_t multiplies x_0": _post_swapped,
    _PRECOMPUTED: _post_precomputed,
}


def check_posterior(
    q_posterior_mean_variance: Callable, cases: list[dict] | None = None, atol: float = 1e-5, rtol: float = 1e-3
) -> None:
    """Self-check of notebook 03's q_posterior_mean_variance: mean and variance on a bare schedule.

    Without ``cases``: a shortcut check, then 2-D points at t = 0 .. 19 (t = 0 included).
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        check_schedule = bare_schedule(torch.linspace(1e-3, 0.2, 20))
        cases = [
            {"x0": torch.randn(6, 2, generator=g), "xt": torch.randn(6, 2, generator=g),
             "t": torch.tensor([0, 1, 5, 10, 18, 19]), "schedule": check_schedule},
        ]
        forbid_reference(q_posterior_mean_variance, POSTERIOR_SHORTCUTS, example=cases[0])
    check_function(
        q_posterior_mean_variance, reference_posterior, cases, name="q_posterior_mean_variance",
        atol=atol, rtol=rtol, mistakes=POSTERIOR_MISTAKES,
    )

# --------------------------------------------------------------------------
# Notebook 03: the training loss
# --------------------------------------------------------------------------

LOSS_SHORTCUTS = ["course_lib.diffusion.diffusion_loss", "course_lib.checks.reverse_diffusion.reference_diffusion_loss"]


def _loss_parts(model, x0, schedule, labels, t, noise, use_alpha=False):
    if t is None:
        t = torch.randint(len(schedule.betas), (x0.shape[0],))
    if noise is None:
        noise = torch.randn_like(x0)
    ab = schedule.alphas if use_alpha else schedule.alpha_bars
    tt = _timesteps(t, x0)
    xt = _shape_like(ab, tt, x0).sqrt() * x0 + _shape_like(1 - ab, tt, x0).sqrt() * noise
    eps = model(xt, tt) if labels is None else model(xt, tt, labels)
    return noise, eps  # the noise drawn when none was given


def _loss_predicts_x0(model, x0, schedule, labels=None, t=None, noise=None):
    noise, eps = _loss_parts(model, x0, schedule, labels, t, noise)
    return ((eps - x0) ** 2).mean()


def _loss_alpha(model, x0, schedule, labels=None, t=None, noise=None):
    noise, eps = _loss_parts(model, x0, schedule, labels, t, noise, use_alpha=True)
    return ((eps - noise) ** 2).mean()


def _loss_sum(model, x0, schedule, labels=None, t=None, noise=None):
    noise, eps = _loss_parts(model, x0, schedule, labels, t, noise)
    return ((eps - noise) ** 2).sum()


def _loss_ignores_labels(model, x0, schedule, labels=None, t=None, noise=None):
    noise, eps = _loss_parts(model, x0, schedule, None, t, noise)
    return ((eps - noise) ** 2).mean()


def _loss_model_on_x0(model, x0, schedule, labels=None, t=None, noise=None):
    tt = _timesteps(t, x0)
    eps = model(x0, tt) if labels is None else model(x0, tt, labels)
    return ((eps - noise) ** 2).mean()


LOSS_MISTAKES = {
    "compared the prediction with x_0: the model predicts the *noise*, so the target is `noise`": _loss_predicts_x0,
    "noised with alpha_t where alpha_bar_t belongs: build x_t with the closed form q(x_t | x_0)": _loss_alpha,
    "summed the squared errors: average them (`.mean()`), so the loss does not grow with the batch": _loss_sum,
    "did not pass the labels to the model: call model(x_t, t, labels) when labels are given": _loss_ignores_labels,
    "gave the model the clean x_0: it must see the noisy x_t": _loss_model_on_x0,
}


def check_diffusion_loss(diffusion_loss: Callable, cases: list[dict] | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 03's diffusion_loss for given t and noise, with and without labels.

    Without ``cases``: a shortcut check, then 2-D points and labelled (B, 1, 8, 8) images on a linear schedule.
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        loss_schedule = D.NoiseSchedule.linear(20, 1e-3, 0.2)
        cases = [
            {"model": toy_model, "x0": torch.randn(6, 2, generator=g), "schedule": loss_schedule,
             "t": torch.tensor([0, 1, 5, 10, 18, 19]), "noise": torch.randn(6, 2, generator=g)},
            {"model": toy_model, "x0": torch.randn(4, 1, 8, 8, generator=g), "schedule": loss_schedule,
             "labels": torch.tensor([3, 0, 9, 3]), "t": torch.tensor([2, 19, 7, 0]),
             "noise": torch.randn(4, 1, 8, 8, generator=g)},
        ]
        forbid_reference(diffusion_loss, LOSS_SHORTCUTS, example=cases[0])
    check_function(
        diffusion_loss, reference_diffusion_loss, cases, name="diffusion_loss", atol=atol, mistakes=LOSS_MISTAKES
    )

# --------------------------------------------------------------------------
# Notebook 03: one ancestral step, and the loop
# --------------------------------------------------------------------------

P_SAMPLE_SHORTCUTS = [
    "course_lib.diffusion.p_sample",
    "course_lib.diffusion.p_mean_from_eps",
    "course_lib.checks.reverse_diffusion.reference_p_sample",
]


def _p(model, xt, t, schedule, noise, alpha_for_mean=None, sqrt_ab=True, noise_at_zero=False, var=None):
    s = schedule
    tt = _timesteps(t, xt)
    eps = model(xt, tt)
    alpha = s.alphas if alpha_for_mean is None else alpha_for_mean
    denom = (1 - s.alpha_bars).sqrt() if sqrt_ab else 1 - s.alpha_bars
    mean = (xt - _shape_like(s.betas / denom, tt, xt) * eps) / _shape_like(alpha.sqrt(), tt, xt)
    if int(t) == 0 and not noise_at_zero:
        return mean
    if noise is None:
        noise = torch.randn_like(xt)
    return mean + _shape_like(s.betas if var is None else var, tt, xt).sqrt() * noise


def _p_alpha_bar(model, xt, t, schedule, noise=None):
    return _p(model, xt, t, schedule, noise, alpha_for_mean=schedule.alpha_bars)


def _p_no_sqrt(model, xt, t, schedule, noise=None):
    return _p(model, xt, t, schedule, noise, sqrt_ab=False)


def _p_noise_at_zero(model, xt, t, schedule, noise=None):
    return _p(model, xt, t, schedule, noise, noise_at_zero=True)


def _p_variance_no_sqrt(model, xt, t, schedule, noise=None):
    return _p(model, xt, t, schedule, noise, var=schedule.betas**2)


P_SAMPLE_MISTAKES = {
    "divided by sqrt(alpha_bar_t) where sqrt(alpha_t) belongs: one reverse step undoes one forward "
    "step, whose signal factor is sqrt(alpha_t)": _p_alpha_bar,
    "forgot the square root: the noise coefficient is beta_t / sqrt(1 - alpha_bar_t)": _p_no_sqrt,
    "added noise at the last step (t = 0): the final step returns the mean, so the sample is not "
    "left with fresh noise": _p_noise_at_zero,
    "multiplied the noise by beta_t: the standard deviation is sigma_t = sqrt(beta_t)": _p_variance_no_sqrt,
}


def _check_p_sample(p_sample: Callable, cases: list[dict], atol: float) -> None:
    check_function(p_sample, reference_p_sample, cases, name="p_sample", atol=atol, mistakes=P_SAMPLE_MISTAKES)


def check_p_sample(p_sample: Callable, cases: list[dict] | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 03's p_sample for t > 0 (by default t = 1, 7, 19 on 2-D points, a bare schedule).

    Without ``cases`` it also fails an answer that calls a ready-made step (``P_SAMPLE_SHORTCUTS``).
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        step_schedule = bare_schedule(torch.linspace(1e-3, 0.2, 20))
        xt, noise = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
        cases = [{"model": toy_model, "xt": xt, "t": t, "schedule": step_schedule, "noise": noise} for t in (1, 7, 19)]
        forbid_reference(p_sample, P_SAMPLE_SHORTCUTS, example=cases[0])
    _check_p_sample(p_sample, cases, atol)


def check_p_sample_last_step(p_sample: Callable, cases: list[dict] | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 03's p_sample at t = 0: it returns the mean, with no noise added."""
    if cases is None:
        g = torch.Generator().manual_seed(1)
        last_schedule = bare_schedule(torch.linspace(1e-2, 0.2, 20))
        cases = [{"model": toy_model, "xt": torch.randn(5, 2, generator=g), "t": 0, "schedule": last_schedule,
                  "noise": torch.randn(5, 2, generator=g)}]
    _check_p_sample(p_sample, cases, atol)

DDPM_SHORTCUTS = ["course_lib.diffusion.ddpm_sample", "course_lib.checks.reverse_diffusion.reference_ddpm_sample"]


def _ddpm_loop(model, shape, schedule, generator, times, noise_at_zero=False):
    x = torch.randn(shape, generator=generator)
    for t in times:
        noise = torch.randn(shape, generator=generator) if (t > 0 or noise_at_zero) else None
        x = p_sample(model, x, t, schedule, noise)
    return x


def _ddpm_forward_order(model, shape, schedule, generator):
    return _ddpm_loop(model, shape, schedule, generator, range(schedule.T))


def _ddpm_skips_last(model, shape, schedule, generator):
    return _ddpm_loop(model, shape, schedule, generator, range(schedule.T - 1, 0, -1))


def _ddpm_skips_first(model, shape, schedule, generator):
    return _ddpm_loop(model, shape, schedule, generator, range(schedule.T - 2, -1, -1))


def seeded(sampler):
    """``sampler(model, shape, schedule, generator)`` as ``f(model, shape, schedule, seed)``.

    Each call gets a fresh generator, so the answer and the reference draw the same numbers.
    """
    check_answer_rules(sampler)

    def run(model, shape, schedule, seed):
        return sampler(model, shape, schedule, torch.Generator().manual_seed(seed))

    run.__name__ = getattr(sampler, "__name__", "sampler")
    return run


DDPM_MISTAKES = {
    "ran the steps forwards: sampling goes from t = T-1 down to t = 0": seeded(_ddpm_forward_order),
    "stopped before t = 0: `range(T - 1, -1, -1)` includes the final step": seeded(_ddpm_skips_last),
    "started at T-2: the first step is t = T-1 (`range(T - 1, -1, -1)`)": seeded(_ddpm_skips_first),
}


def check_ddpm_sample(
    ddpm_sample: Callable, namespace: MutableMapping[str, Any], cases: list[dict] | None = None, atol: float = 1e-5
) -> None:
    """Self-check of notebook 03's ddpm_sample loop, run with the reference p_sample bound in ``namespace``.

    ``namespace`` is the notebook's ``globals()``, so a slip in the student's p_sample is not counted twice.
    Cases give ``seed`` instead of a generator (see :func:`seeded`). Without ``cases``: a shortcut check,
    then a 12-step bare schedule on (4, 2) samples.
    """
    with substitute(namespace, p_sample=reference_p_sample):
        if cases is None:
            loop_schedule = bare_schedule(torch.linspace(1e-3, 0.2, 12))
            forbid_reference(ddpm_sample, DDPM_SHORTCUTS, example={"model": toy_model, "shape": (2, 2),
                             "schedule": loop_schedule, "generator": torch.Generator().manual_seed(0)})
            cases = [{"model": toy_model, "shape": (4, 2), "schedule": loop_schedule, "seed": 0}]
        check_function(
            seeded(ddpm_sample), seeded(reference_ddpm_sample), cases, name="ddpm_sample", atol=atol,
            mistakes=DDPM_MISTAKES,
        )

# --------------------------------------------------------------------------
# Notebook 03 debug: the denoiser's time embedding
# --------------------------------------------------------------------------

TIMESTEP_EMBEDDING_SHORTCUTS = ["course_lib.diffusion.timestep_embedding"]


def _frequencies(half, max_period):
    """The right ladder w_i = max_period^(-i/half), i = 0 .. half-1: from 1 down towards 1/max_period."""
    return torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)


def _emb_growing(t, dim, max_period=10_000.0):
    half = dim // 2
    freqs = torch.exp(math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _emb_cos_first(t, dim, max_period=10_000.0):
    angles = t.float()[:, None] * _frequencies(dim // 2, max_period)[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def _emb_interleaved(t, dim, max_period=10_000.0):
    angles = t.float()[:, None] * _frequencies(dim // 2, max_period)[None]
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=2).flatten(1)


def _emb_exponent_over_dim(t, dim, max_period=10_000.0):
    freqs = torch.exp(-math.log(max_period) * torch.arange(dim // 2, dtype=torch.float32) / dim)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _emb_from_one(t, dim, max_period=10_000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(1, half + 1, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


# The notebook ships _emb_growing and _emb_cos_first in one function. The check's first case is t = 0, where
# every angle is 0 and only the layout shows, so the shipped code is named by its layout bug first, then, once
# that is fixed, by its frequencies. Each description says what the output shows against the contract and where
# to look (Hint 1 of the debug section: the layout at t = 0, the ladder at t = 1), never the corrected code:
# Hint 2 explains the two shipped bugs, Hint 3 gives the fix.
TIMESTEP_EMBEDDING_MISTAKES = {
    "the frequencies are wrong, and far too fast: only the first sine and the first cosine turn by 1 radian "
    "per step, as they should; every later one turns by more than 1 radian per step, where the contract's "
    "ladder w_i falls from 1 towards 1/max_period. So the embeddings of neighbouring timesteps are unrelated. "
    "Compare the function's frequencies with the ladder, as the features at t = 1 show them "
    "(Hint 1 above, 'At t = 1')": _emb_growing,
    "the layout is wrong: at t = 0, where every angle is 0, the first dim/2 features come out 1 and the last "
    "dim/2 come out 0, where the contract has dim/2 zeros, then dim/2 ones. A network trained with "
    "course_lib's embedding would read the features of another time. Check which column each kind of feature "
    "lands in (Hint 1 above, 'At t = 0')": _emb_cos_first,
    "the layout is wrong: zeros and ones alternate feature by feature at t = 0 (0, 1, 0, 1, ...), where the "
    "contract has two halves, dim/2 zeros, then dim/2 ones. Check which column each kind of feature lands in "
    "(Hint 1 above, 'At t = 0')": _emb_interleaved,
    "the frequencies fall too slowly: the first sine and cosine turn by 1 radian per step, as they should, "
    "but every later frequency is higher than the contract's, and the slowest stays above "
    "1/sqrt(max_period) where the contract's gets close to 1/max_period. Compare the function's frequencies "
    "with the ladder, as the features at t = 1 show them (Hint 1 above, 'At t = 1')": _emb_exponent_over_dim,
    "the frequencies are all too slow, even the first: the whole ladder sits one rung below the contract's, "
    "so the fastest sine and cosine turn by less than 1 radian per step and the slowest by 1/max_period "
    "itself. Compare the function's frequencies with the ladder, as the features at t = 1 show them "
    "(Hint 1 above, 'At t = 1')": _emb_from_one,
}


def check_timestep_embedding(timestep_embedding: Callable, cases: list[dict] | None = None,
                             atol: float = 2e-4) -> None:
    """Self-check of notebook 03's debug exercise, timestep_embedding: sines then cosines of t w_i.

    Without ``cases``: a shortcut check, then t = 0 alone (every angle 0: only the layout shows), then
    timesteps from 0 to 999 at dim 16, then a smaller max_period. The tolerance allows for another way of
    computing the frequencies (``max_period ** (-i / half)``, float64): at t = 999 that moves an angle by
    up to about 1e-4.
    """
    if cases is None:
        cases = [
            {"t": torch.zeros(3, dtype=torch.long), "dim": 8},
            {"t": torch.tensor([0, 1, 2, 37, 250, 999]), "dim": 16},
            {"t": torch.tensor([5, 80, 3]), "dim": 6, "max_period": 50.0},
        ]
        forbid_reference(timestep_embedding, TIMESTEP_EMBEDDING_SHORTCUTS, example=cases[1])
    check_function(
        timestep_embedding, D.timestep_embedding, cases, name="timestep_embedding", atol=atol, rtol=1e-4,
        mistakes=TIMESTEP_EMBEDDING_MISTAKES,
    )

# --------------------------------------------------------------------------
# Notebook 03: DDIM
# --------------------------------------------------------------------------

DDIM_SHORTCUTS = [
    "course_lib.diffusion.ddim_step",
    "course_lib.diffusion.ddim_sample",
    "course_lib.checks.reverse_diffusion.reference_ddim_step",
]


def _ddim(eps, xt, ab_t, ab_prev):
    x0_hat = (xt - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
    return ab_prev**0.5 * x0_hat + (1 - ab_prev) ** 0.5 * eps


def _ddim_t_minus_1(eps, xt, t, t_prev, schedule):
    ab = schedule.alpha_bars
    return _ddim(eps, xt, ab[t].item(), ab[t - 1].item() if t > 0 else 1.0)


def _ddim_negative_index(eps, xt, t, t_prev, schedule):
    ab = schedule.alpha_bars
    return _ddim(eps, xt, ab[t].item(), ab[t_prev].item())


def _ddim_alphas(eps, xt, t, t_prev, schedule):
    a = schedule.alphas
    return _ddim(eps, xt, a[t].item(), a[t_prev].item() if t_prev >= 0 else 1.0)


def _ddim_no_sqrt(eps, xt, t, t_prev, schedule):
    ab = schedule.alpha_bars
    ab_t, ab_prev = ab[t].item(), ab[t_prev].item() if t_prev >= 0 else 1.0
    x0_hat = (xt - (1 - ab_t) * eps) / math.sqrt(ab_t)
    return math.sqrt(ab_prev) * x0_hat + (1 - ab_prev) * eps


DDIM_STEP_MISTAKES = {
    "used alpha_bar_{t-1} where alpha_bar_{t_prev} belongs: DDIM jumps from t straight to t_prev, "
    "which can be many steps earlier": _ddim_t_minus_1,
    "at the final step t_prev = -1, alpha_bars[-1] is Python's *last* entry (almost 0); "
    "the step before t = 0 is clean data, so use 1.0 there": _ddim_negative_index,
    "used alpha_t where alpha_bar_t belongs: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps": _ddim_alphas,
    "forgot a square root: the noise coefficients are sqrt(1 - alpha_bar)": _ddim_no_sqrt,
}


def check_ddim_step(ddim_step: Callable, cases: list[dict] | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 03's ddim_step: a skip (15 -> 10), a long jump (19 -> 0) and the last one (4 -> -1).

    Without ``cases`` it also fails an answer that calls a ready-made step (``DDIM_SHORTCUTS``).
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        ddim_schedule = bare_schedule(torch.linspace(1e-3, 0.2, 20))
        eps, xt = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
        cases = [
            {"eps": eps, "xt": xt, "t": t, "t_prev": tp, "schedule": ddim_schedule}
            for t, tp in [(15, 10), (19, 0), (4, -1)]
        ]
        forbid_reference(ddim_step, DDIM_SHORTCUTS, example=cases[0])
    check_function(ddim_step, reference_ddim_step, cases, name="ddim_step", atol=atol, mistakes=DDIM_STEP_MISTAKES)


def _ddim_loop(model, x_T, schedule, times, last_alpha_bar=1.0):
    ab = schedule.alpha_bars
    x = x_T
    for i, t in enumerate(times):
        ab_prev = ab[times[i + 1]].item() if i + 1 < len(times) else last_alpha_bar
        eps = model(x, torch.full((len(x),), t, dtype=torch.long))
        x = _ddim(eps, x, ab[t].item(), ab_prev)
    return x


def _ddim_sample_stops_at_zero(model, x_T, schedule, steps):
    times = ddim_timesteps(schedule.T, steps)
    return _ddim_loop(model, x_T, schedule, times, last_alpha_bar=schedule.alpha_bars[0].item())


def _ddim_sample_leading(model, x_T, schedule, steps):
    times = [k * (schedule.T // steps) for k in range(steps)][::-1]
    return _ddim_loop(model, x_T, schedule, times)


DDIM_SAMPLE_MISTAKES = {
    "ended at t_prev = 0 instead of -1: the last jump goes to clean data (alpha_bar = 1)": _ddim_sample_stops_at_zero,
    "made your own timesteps: use `ddim_timesteps(schedule.T, steps)`": _ddim_sample_leading,
}


def check_ddim_sample(
    ddim_sample: Callable, namespace: MutableMapping[str, Any], cases: list[dict] | None = None, atol: float = 1e-5
) -> None:
    """Self-check of notebook 03's ddim_sample loop, run with the reference ddim_step bound in ``namespace``.

    ``namespace`` is the notebook's ``globals()``, so a slip in the student's ddim_step is not counted twice.
    Without ``cases``: a shortcut check (course_lib's ddim_sample), then 4 and 20 steps of a 20-step schedule.
    """
    with substitute(namespace, ddim_step=reference_ddim_step):
        if cases is None:
            g = torch.Generator().manual_seed(0)
            loop_schedule = bare_schedule(torch.linspace(1e-3, 0.2, 20))
            cases = [{"model": toy_model, "x_T": torch.randn(4, 2, generator=g), "schedule": loop_schedule,
                      "steps": s} for s in (4, 20)]
            forbid_reference(ddim_sample, DDIM_SHORTCUTS[1:2], example=cases[0])
        check_function(
            ddim_sample, reference_ddim_sample, cases, name="ddim_sample", atol=atol, mistakes=DDIM_SAMPLE_MISTAKES
        )

# --------------------------------------------------------------------------
# Notebook 03: classifier-free guidance
# --------------------------------------------------------------------------

GUIDANCE_SHORTCUTS = [
    "course_lib.diffusion.guided_noise",
    "course_lib.diffusion.guided",
]


def _cfg(model, xt, t, labels):
    return model(xt, t, labels), model(xt, t)


def _cfg_swapped(model, xt, t, labels, guidance_scale):
    cond, uncond = _cfg(model, xt, t, labels)
    return cond + guidance_scale * (uncond - cond)


def _cfg_cond_only(model, xt, t, labels, guidance_scale):
    cond, _ = _cfg(model, xt, t, labels)
    return guidance_scale * cond


def _cfg_no_base(model, xt, t, labels, guidance_scale):
    cond, uncond = _cfg(model, xt, t, labels)
    return guidance_scale * (cond - uncond)


GUIDANCE_MISTAKES = {
    "swapped the conditional and unconditional predictions: start from the *unconditional* eps_u and "
    "move towards the conditional one, eps_u + s (eps_c - eps_u)": _cfg_swapped,
    "scaled the conditional prediction alone: guidance extrapolates *away from the unconditional* one, "
    "eps_u + s (eps_c - eps_u)": _cfg_cond_only,
    "left out the unconditional base term: eps_u + s (eps_c - eps_u)": _cfg_no_base,
}


def check_guided_noise(guided_noise: Callable, cases: list[dict] | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 03's guided_noise: eps_u + s (eps_c - eps_u), by default at s = 3 and s = 0.5.

    Without ``cases`` it also fails an answer that calls a ready-made guidance (``GUIDANCE_SHORTCUTS``).
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        xt = torch.randn(6, 2, generator=g)
        t, labels = torch.tensor([0, 3, 9, 10, 50, 99]), torch.tensor([1, 0, 7, 7, 2, 9])
        cases = [{"model": toy_model, "xt": xt, "t": t, "labels": labels, "guidance_scale": s} for s in (3.0, 0.5)]
        forbid_reference(guided_noise, GUIDANCE_SHORTCUTS, example=cases[0])
    check_function(
        guided_noise, D.guided_noise, cases, name="guided_noise", atol=atol, mistakes=GUIDANCE_MISTAKES
    )

# --------------------------------------------------------------------------
# Notebook 03: what diffusion_loss draws when t and noise are not given
# --------------------------------------------------------------------------


# What diffusion_loss raises when it draws its own t from 1 .. T: alpha_bars[T] is past the schedule's end.
LOSS_DRAW_ERRORS = {
    r"^(IndexError|ValueError): ": (
        "off by one between t and the schedule index when drawing t: draw it with torch.randint(T, ...) "
        "(0 .. T-1), not 1 .. T"
    ),
}


def check_diffusion_loss_random(student_fn: Callable, T: int = 10, n: int = 4000, seed: int = 0) -> None:
    """Fail unless ``student_fn(model, x0, schedule)`` draws t uniformly from 0..T-1 and standard normal noise.

    Runs the answer on ``x0 = 0`` with a model that records what it is shown: then
    ``x_t = sqrt(1 - alpha_bar_t) noise``, so dividing by that scale must give N(0, 1) noise.
    """
    check_answer_rules(student_fn)
    torch.manual_seed(seed)
    schedule = D.NoiseSchedule.linear(T, 1e-3, 0.2)  # complete: the answer uses course_lib's q_sample
    model = RecordingModel()
    try:
        student_fn(model, torch.zeros(n, 2), schedule)
    except NotImplementedError:
        raise CheckFailed("diffusion_loss is not implemented yet.") from None
    except (IndexError, ValueError) as exc:
        message = f"diffusion_loss raised {type(exc).__name__} ({exc}) when it drew its own timesteps."
        cause = error_cause(LOSS_DRAW_ERRORS, exc)
        raise CheckFailed(message + (f"\n  Likely cause: {cause}" if cause else "")) from exc
    if len(model.calls) != 1:
        raise CheckFailed(f"diffusion_loss should call the model once, it called it {len(model.calls)} times.")
    xt, t, _ = model.calls[0]
    if t.shape != (n,) or t.is_floating_point():
        raise CheckFailed(f"the model should get integer timesteps of shape ({n},), got {t.dtype} {tuple(t.shape)}.")
    if t.min() < 0 or t.max() > T - 1:
        got = f"{t.min().item()} .. {t.max().item()}"
        raise CheckFailed(f"timesteps must be in 0 .. T-1 = {T - 1}; the model got {got}.")
    counts = torch.bincount(t, minlength=T)
    if counts.min() < 0.6 * n / T:
        raise CheckFailed(
            f"t should be uniform over 0 .. {T - 1}; counts per step were {counts.tolist()}. "
            "Draw it with torch.randint(T, (B,))."
        )
    z = xt / (1 - schedule.alpha_bars[t]).sqrt().unsqueeze(1)
    if not (abs(z.mean().item()) < 0.1 and abs(z.std().item() - 1) < 0.1):
        raise CheckFailed(
            f"with x0 = 0, x_t / sqrt(1 - alpha_bar_t) should be standard normal noise; it has mean "
            f"{z.mean().item():.3f} and std {z.std().item():.3f}. Draw noise with torch.randn_like(x0) and "
            "build x_t with the closed form at the same t the model is given."
        )

# --------------------------------------------------------------------------
# Notebook 03 synthesis: the training loop
# --------------------------------------------------------------------------

TRAIN_SHORTCUTS = [
    "course_lib.diffusion.train_denoiser",
    "course_lib.diffusion.denoiser_loss_fn",
    "course_lib.train.train",
    "course_lib.train.run_loop",
]
_DIFFUSION_LOSS = D.diffusion_loss  # the real one: SeededLoss calls it while D.diffusion_loss is swapped out
_TRAIN_SCHEDULE = D.NoiseSchedule.linear(20, 1e-3, 0.2)


class SeededLoss:
    """Stands in for ``diffusion_loss`` while a check trains: deterministic, and it keeps a record.

    Call k draws its t and noise from a generator seeded with ``seed + k``, so a training run is a
    function of the loop alone (not of the global random state); ``calls`` records, per call, the labels
    it was given and whether the model was in training mode.
    """

    def __init__(self, seed: int = 1000) -> None:
        self.seed = seed
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model, x0, schedule, labels=None, t=None, noise=None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + len(self.calls))
        self.calls.append({"labels": None if labels is None else torch.as_tensor(labels).detach().clone(),
                           "training": bool(getattr(model, "training", True))})
        return _DIFFUSION_LOSS(model, x0, full(schedule), labels, t, noise, generator=generator)


def train_setup(seed: int, steps: int, data: str = "points", labels: bool = False, optimizer: str = "adam",
                lr: float = 0.01, scheduler: bool = False, grad_clip: float | None = None,
                p_uncond: float = 0.0, batch_size: int = 8) -> dict[str, Any]:
    """The arguments of one checked training run, built afresh from ``seed`` (the global RNG untouched).

    A small :class:`Denoiser` handed over in eval mode (the loop must switch it to training), a list of
    ``steps + 2`` batches (``(x0,)`` or ``(x0, labels)``) behind an iterator, Adam or SGD with momentum,
    and, with ``scheduler``, a LambdaLR that halves the rate at every step (so an off-by-one shows).
    """
    shape = (2,) if data == "points" else (1, 4, 4)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = D.Denoiser(shape, hidden=16, depth=1, num_classes=3 if labels else 0)
    model.eval()
    g = torch.Generator().manual_seed(seed + 1)
    batches = []
    for _ in range(steps + 2):
        x0 = torch.randn(batch_size, *shape, generator=g)
        batches.append((x0, torch.randint(3, (batch_size,), generator=g)) if labels else (x0,))
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step) if scheduler else None
    return {"model": model, "batches": batches, "schedule": _TRAIN_SCHEDULE, "optimizer": opt, "steps": steps,
            "p_uncond": p_uncond, "lr_scheduler": lr_scheduler, "grad_clip": grad_clip}


def _parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _train_run(loop: Callable, namespace: MutableMapping[str, Any], case: dict) -> tuple[Any, dict, SeededLoss]:
    """Run ``loop`` on a fresh :func:`train_setup`, with ``namespace["diffusion_loss"]`` a fresh SeededLoss."""
    run = train_setup(**case)
    batches = run.pop("batches")
    loss = SeededLoss()
    with substitute(namespace, diffusion_loss=loss):
        losses = loop(batches=iter(batches), **run)
    return losses, {"batches": batches, **run}, loss


def _outcome(losses: Any, run: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """What a run is compared on: the returned losses and the parameters it ended with."""
    return torch.tensor([float(v) for v in losses], dtype=torch.float64), _parameters(run["model"])


def _reference_outcome(**case: Any) -> tuple[torch.Tensor, torch.Tensor]:
    losses, run, _ = _train_run(D.train_denoiser, vars(D), case)
    return _outcome(losses, run)


def _library_outcome(loop: Callable) -> Callable:
    """A mistaken loop of this module (it calls this module's ``diffusion_loss``) as ``case -> outcome``."""

    def outcome(**case: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with warnings.catch_warnings():  # a mistake may call the scheduler first, which PyTorch warns about
            warnings.simplefilter("ignore")
            losses, run, _ = _train_run(loop, globals(), case)
        return _outcome(losses, run)

    return outcome


def _drop_labels(labels, p, null_label):
    drop = torch.rand(labels.shape) < p
    return torch.where(drop, torch.full_like(labels, null_label), labels)


def _loop(model, batches, schedule, optimizer, steps, p_uncond=0.0, lr_scheduler=None, grad_clip=1.0, *,
          zero_grad="before", clip="norm", scheduler_step="after", pass_labels=True, dropout="each"):
    """The training loop with one thing changed (each keyword names a mistake's variant)."""
    model.train()
    losses = []
    for _ in range(steps):
        batch = next(batches)
        x0, labels = batch[0], (batch[1] if len(batch) > 1 else None)
        if labels is not None and p_uncond > 0:
            if dropout == "each":
                labels = _drop_labels(labels, p_uncond, model.null_label)
            elif dropout == "keep":
                labels = _drop_labels(labels, 1 - p_uncond, model.null_label)
            elif dropout == "batch":
                labels = labels if torch.rand(()) >= p_uncond else torch.full_like(labels, model.null_label)
            elif dropout == "zero":
                labels = _drop_labels(labels, p_uncond, 0)
            elif dropout == "in place":
                labels[torch.rand(labels.shape) < p_uncond] = model.null_label
        loss = diffusion_loss(model, x0, schedule, labels if pass_labels else None)
        if zero_grad == "before":
            optimizer.zero_grad()
        loss.backward()
        if zero_grad == "after backward":
            optimizer.zero_grad()
        if grad_clip is not None and clip == "norm":
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if grad_clip is not None and clip == "value":
            torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
        if lr_scheduler is not None and scheduler_step == "before":
            lr_scheduler.step()
        optimizer.step()
        if grad_clip is not None and clip == "after step":
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if lr_scheduler is not None and scheduler_step == "after":
            lr_scheduler.step()
        losses.append(loss.item())
    return losses


def _variant(**change: Any) -> Callable:
    def loop(model, batches, schedule, optimizer, steps, p_uncond=0.0, lr_scheduler=None, grad_clip=1.0):
        return _loop(model, batches, schedule, optimizer, steps, p_uncond, lr_scheduler, grad_clip, **change)

    return loop


TRAIN_DENOISER_MISTAKES = {
    "never zeroed the gradients: backward() adds to .grad, so each update also carries every earlier "
    "step's gradient; call optimizer.zero_grad() before loss.backward()": _variant(zero_grad="never"),
    "zeroed the gradients between backward() and optimizer.step(): the step then has no gradient to use; "
    "zero them before backward()": _variant(zero_grad="after backward"),
    "did not clip the gradients before the update: between backward() and optimizer.step(), rescale them so "
    "their total norm is at most grad_clip (clipping after the step changes nothing)": _variant(clip="after step"),
    "clipped each gradient entry (clip_grad_value_) where the total norm belongs (clip_grad_norm_)": (
        _variant(clip="value")
    ),
    "stepped the learning-rate scheduler before the optimizer: each update then uses the next step's rate; "
    "call lr_scheduler.step() after optimizer.step()": _variant(scheduler_step="before"),
    "never stepped the learning-rate scheduler: call lr_scheduler.step() once after each optimizer step": (
        _variant(scheduler_step="never")
    ),
    "did not pass the batch's labels to diffusion_loss: a class-conditional model must be told the class": (
        _variant(pass_labels=False)
    ),
}

LABEL_DROPOUT_MISTAKES = {
    "kept each label with probability p_uncond: p_uncond is the probability of *dropping* it": (
        _variant(dropout="keep")
    ),
    "dropped the labels of whole batches at once: drop each label on its own, with probability p_uncond": (
        _variant(dropout="batch")
    ),
    "replaced a dropped label by something other than model.null_label, the index the Denoiser reserves "
    "for 'no label'": _variant(dropout="zero"),
    "changed the batch's labels in place: build a new labels tensor (e.g. with torch.where), the batch may "
    "be reused": _variant(dropout="in place"),
    "did not drop any labels: with p_uncond > 0, replace each label by model.null_label with probability "
    "p_uncond": _variant(dropout="none"),
}


def _student_outcome(train_denoiser: Callable, namespace: MutableMapping[str, Any]) -> Callable:
    """The student's loop as ``case -> outcome``, with the checks that cannot be compared value by value."""

    def outcome(**case: Any) -> tuple[torch.Tensor, torch.Tensor]:
        losses, run, loss = _train_run(train_denoiser, namespace, case)
        steps = case["steps"]
        if not loss.calls:
            raise CheckFailed(
                "train_denoiser never called diffusion_loss: compute each step's loss with your diffusion_loss "
                "from Exercise 2 (the check swaps in a reference one, so a slip there is not counted twice)."
            )
        if len(loss.calls) != steps:
            raise CheckFailed(f"train_denoiser called diffusion_loss {len(loss.calls)} times for steps={steps}: "
                              "one loss, and one update, per step.")
        if not all(call["training"] for call in loss.calls):
            raise CheckFailed("the model was in eval mode while it trained (the check hands it over in eval "
                              "mode): call model.train() before the loop.")
        if not isinstance(losses, (list, tuple)) or len(losses) != steps:
            got = f"{len(losses)} values" if isinstance(losses, (list, tuple)) else describe(losses)
            raise CheckFailed(f"train_denoiser should return a list of one loss per step ({steps}), got {got}.")
        if not all(isinstance(v, float) for v in losses):
            kinds = sorted({type(v).__name__ for v in losses if not isinstance(v, float)})
            raise CheckFailed(f"the losses should be Python floats (loss.item()), got {', '.join(kinds)}: a kept "
                              "loss tensor also keeps its step's whole computation graph alive.")
        return _outcome(losses, run)

    return outcome


def _train_cases() -> list[dict]:
    return [
        {"seed": 0, "steps": 5, "data": "points", "optimizer": "adam", "lr": 0.01, "grad_clip": None},
        {"seed": 1, "steps": 5, "data": "images", "labels": True, "optimizer": "sgd", "lr": 0.2,
         "scheduler": True, "grad_clip": 0.05},
    ]


def _dropout_verdict(calls: list[dict], originals: list, null_label: int, p_uncond: float) -> str | None:
    """None when the recorded labels look like label dropout at rate p_uncond; else which mistake it looks like."""
    seen = [call["labels"] for call in calls]
    if any(labels is None for labels in seen):
        return next(d for d in TRAIN_DENOISER_MISTAKES if d.startswith("did not pass the batch's labels"))
    changed = [labels != original for labels, original in zip(seen, originals)]
    if any((labels[c] != null_label).any() for labels, c in zip(seen, changed)):
        return next(d for d in LABEL_DROPOUT_MISTAKES if d.startswith("replaced a dropped label"))
    fractions = torch.stack([c.float().mean() for c in changed])
    rate = fractions.mean().item()
    if rate == 0:
        return next(d for d in LABEL_DROPOUT_MISTAKES if d.startswith("did not drop any"))
    if ((fractions == 0) | (fractions == 1)).all():
        return next(d for d in LABEL_DROPOUT_MISTAKES if d.startswith("dropped the labels of whole batches"))
    if abs(rate - (1 - p_uncond)) < 0.06 < abs(rate - p_uncond):
        return next(d for d in LABEL_DROPOUT_MISTAKES if d.startswith("kept each label"))
    if abs(rate - p_uncond) >= 0.06:
        return f"dropped {rate:.1%} of the labels where p_uncond = {p_uncond} asks for about {p_uncond:.0%}"
    return None


def check_label_dropout(train_denoiser: Callable, namespace: MutableMapping[str, Any], seed: int = 0,
                        p_uncond: float = 0.3, steps: int = 40, batch_size: int = 64) -> None:
    """Fail unless the loop drops each label to ``model.null_label`` with probability ``p_uncond``, out of place.

    Runs ``steps`` cheap steps (learning rate 0) on labelled batches and reads the labels each loss call got.
    """
    case = {"seed": seed, "steps": steps, "labels": True, "optimizer": "sgd", "lr": 0.0, "p_uncond": p_uncond,
            "batch_size": batch_size}
    kept = [b[1].clone() for b in train_setup(**case)["batches"]]
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            _, run, loss = _train_run(train_denoiser, namespace, case)
    except NotImplementedError:
        raise CheckFailed("train_denoiser is not implemented yet.") from None
    except CheckFailed:
        raise
    except Exception as exc:
        raise CheckFailed(f"train_denoiser raised {type(exc).__name__} ({exc}) on labelled batches with "
                          f"p_uncond={p_uncond}.") from exc
    if any(not torch.equal(b[1], k) for b, k in zip(run["batches"], kept)):
        cause = next(d for d in LABEL_DROPOUT_MISTAKES if d.startswith("changed the batch's labels in place"))
        raise CheckFailed(f"train_denoiser changed the labels of the batches it was given.\n  Likely cause: {cause}")
    verdict = _dropout_verdict(loss.calls, kept, run["model"].null_label, p_uncond)
    if verdict is not None:
        known = verdict in TRAIN_DENOISER_MISTAKES or verdict in LABEL_DROPOUT_MISTAKES
        raise CheckFailed(
            f"label dropout is not right yet (p_uncond={p_uncond}, {steps} batches of {batch_size} labels, "
            f"null label {run['model'].null_label}).\n  " + (f"Likely cause: {verdict}" if known else verdict)
        )


def check_train_denoiser(train_denoiser: Callable, namespace: MutableMapping[str, Any],
                         cases: list[dict] | None = None, dropout: dict | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 03's synthesis, ``train_denoiser``: a training loop around diffusion_loss.

    ``namespace`` is the notebook's ``globals()``: while the check runs, ``diffusion_loss`` there is a
    :class:`SeededLoss` (a reference loss with its own random numbers), so the run is deterministic and a
    slip in Exercise 2 is not counted twice. Each case (keyword arguments of :func:`train_setup`) is
    compared with course_lib's ``train_denoiser`` on the losses returned and the parameters reached; then
    :func:`check_label_dropout` runs with ``dropout`` (its keyword arguments). Without ``cases``: a shortcut
    check, then Adam on 2-D points (no clipping, no scheduler) and SGD on labelled images with clipping
    and a scheduler.
    """
    check_answer_rules(train_denoiser)
    if cases is None:
        example = train_setup(seed=0, steps=2)
        example["batches"] = iter(example["batches"])
        with substitute(namespace, diffusion_loss=SeededLoss()):
            forbid_reference(train_denoiser, TRAIN_SHORTCUTS, example=example)
        cases = _train_cases()
    check_function(
        _student_outcome(train_denoiser, namespace), _reference_outcome, cases, name="train_denoiser",
        atol=atol, mistakes={d: _library_outcome(fn) for d, fn in TRAIN_DENOISER_MISTAKES.items()},
    )
    check_label_dropout(train_denoiser, namespace, **(dropout or {}))

__all__ = [
    "DDIM_SAMPLE_MISTAKES", "DDIM_SHORTCUTS", "DDIM_STEP_MISTAKES", "DDPM_MISTAKES", "DDPM_SHORTCUTS",
    "GUIDANCE_MISTAKES", "GUIDANCE_SHORTCUTS", "LABEL_DROPOUT_MISTAKES", "LOSS_DRAW_ERRORS", "LOSS_MISTAKES",
    "LOSS_SHORTCUTS", "POSTERIOR_MISTAKES", "POSTERIOR_SHORTCUTS", "P_SAMPLE_MISTAKES", "P_SAMPLE_SHORTCUTS",
    "RecordingModel", "SeededLoss", "TIMESTEP_EMBEDDING_MISTAKES", "TIMESTEP_EMBEDDING_SHORTCUTS",
    "TRAIN_DENOISER_MISTAKES", "TRAIN_SHORTCUTS", "bare_schedule", "check_ddim_sample", "check_ddim_step",
    "check_ddpm_sample", "check_diffusion_loss", "check_diffusion_loss_random", "check_guided_noise",
    "check_label_dropout", "check_p_sample", "check_p_sample_last_step", "check_posterior",
    "check_timestep_embedding", "check_train_denoiser", "full", "reference_ddim_sample", "reference_ddim_step",
    "reference_ddpm_sample", "reference_diffusion_loss", "reference_p_sample", "reference_posterior", "seeded",
    "toy_model", "train_setup",
]
