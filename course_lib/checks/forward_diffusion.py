"""Checks for notebook 02's synthesis: the forward chain, run one step at a time.

The schedule, ``compute_alpha_bars`` and ``q_sample`` exercises of notebook 02 are
checked by :mod:`course_lib.checks.diffusion` (shared with notebook 03); this module
holds what notebook 02's synthesis adds. Like those checks, it hands answers a
*bare* schedule (:func:`~course_lib.checks.diffusion.bare_schedule`): betas, alphas
and alpha_bars are real, the precomputed square roots are NaN.

Each mistaken function below is what an answer computes when it makes that mistake;
``grading.check_function`` names the one that matches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import diffusion as D
from ..grading import check_function, forbid_reference
from .diffusion import bare_schedule, full

# --------------------------------------------------------------------------
# Synthesis: q_chain
# --------------------------------------------------------------------------

Q_CHAIN_SHORTCUTS = [
    "course_lib.diffusion.q_chain",
    "course_lib.diffusion.q_step",
    "course_lib.checks.forward_diffusion.reference_q_chain",
]


def reference_q_chain(x0: torch.Tensor, schedule: D.NoiseSchedule, noise: torch.Tensor) -> torch.Tensor:
    """course_lib's :func:`~course_lib.diffusion.q_chain` on the full schedule with the same betas: ``(K, B, ...)``."""
    return D.q_chain(x0, full(schedule), noise)


def _run(x0, noise, step, keep_x0=False):
    """A chain whose step is ``step(t, x_prev, x0)``; the states after each step, stacked (optionally x0 first)."""
    states, x = ([x0] if keep_x0 else []), x0
    for t in range(len(noise) - (1 if keep_x0 else 0)):
        x = step(t, x, x0)
        states.append(x)
    return torch.stack(states)


def _chain_alpha_bar(x0, schedule, noise):
    ab, b = schedule.alpha_bars, schedule.betas
    return _run(x0, noise, lambda t, x, _: ab[t].sqrt() * x + b[t].sqrt() * noise[t])


def _chain_no_sqrt(x0, schedule, noise):
    a, b = schedule.alphas, schedule.betas
    return _run(x0, noise, lambda t, x, _: a[t] * x + b[t] * noise[t])


def _chain_noise_no_sqrt(x0, schedule, noise):
    a, b = schedule.alphas, schedule.betas
    return _run(x0, noise, lambda t, x, _: a[t].sqrt() * x + b[t] * noise[t])


def _chain_not_scaled(x0, schedule, noise):
    b = schedule.betas
    return _run(x0, noise, lambda t, x, _: x + b[t].sqrt() * noise[t])


def _chain_from_x0(x0, schedule, noise):
    a, b = schedule.alphas, schedule.betas
    return _run(x0, noise, lambda t, _, clean: a[t].sqrt() * clean + b[t].sqrt() * noise[t])


def _chain_same_noise(x0, schedule, noise):
    a, b = schedule.alphas, schedule.betas
    return _run(x0, noise, lambda t, x, _: a[t].sqrt() * x + b[t].sqrt() * noise[0])


def _chain_keeps_x0(x0, schedule, noise):
    a, b = schedule.alphas, schedule.betas
    return _run(x0, noise, lambda t, x, _: a[t].sqrt() * x + b[t].sqrt() * noise[t], keep_x0=True)


def _chain_skips_step_0(x0, schedule, noise):
    a, b = schedule.alphas, schedule.betas
    return _run(x0, noise, lambda t, x, _: a[t + 1].sqrt() * x + b[t + 1].sqrt() * noise[t])


def _chain_last_only(x0, schedule, noise):
    a, b = schedule.alphas, schedule.betas
    return _run(x0, noise, lambda t, x, _: a[t].sqrt() * x + b[t].sqrt() * noise[t])[-1]


Q_CHAIN_MISTAKES = {
    "one chain step scales by sqrt(alpha_t), not sqrt(alpha_bar_t): alpha_bar_t is what all the steps so far "
    "do together, and the loop builds it up by repeating the one step (Hint 2 above)": _chain_alpha_bar,
    "the chain step lost its square roots: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) noise[t], since "
    "alpha_t and beta_t are variances": _chain_no_sqrt,
    "the chain step's noise lacks its square root: noise[t] has standard deviation 1, so it is scaled by "
    "sqrt(beta_t)": _chain_noise_no_sqrt,
    "the previous state is not scaled down by sqrt(alpha_t): without it the noise piles up and the variance "
    "grows towards the sum of the betas instead of staying below 1": _chain_not_scaled,
    "every step starts again from the clean x0: step t continues from the state the step before produced "
    "(Hint 1 above)": _chain_from_x0,
    "the same noise at every step: step t adds its own, fresh noise[t]": _chain_same_noise,
    "the chain's first state is the clean x0: out[0] is the state after step 0, with noise[0] already added "
    "(Hint 1 above)": _chain_keeps_x0,
    "the chain skips step 0: the first state uses betas[0] and noise[0], and step t uses betas[t]": (
        _chain_skips_step_0
    ),
    "returned only the chain's last state: return every state, stacked into (K, B, ...) (Hint 2 above)": (
        _chain_last_only
    ),
}


def q_chain_cases(seed: int = 0) -> list[dict]:
    """The visible cases: images with a partial chain (K < T), points with the whole chain, and K = 1."""
    g = torch.Generator().manual_seed(seed)
    schedule = bare_schedule(torch.linspace(1e-3, 0.2, 20))
    return [
        {"x0": torch.randn(3, 1, 4, 4, generator=g), "schedule": schedule,
         "noise": torch.randn(7, 3, 1, 4, 4, generator=g)},
        {"x0": torch.randn(5, 2, generator=g), "schedule": schedule, "noise": torch.randn(20, 5, 2, generator=g)},
        {"x0": torch.randn(4, 3, generator=g), "schedule": schedule, "noise": torch.randn(1, 4, 3, generator=g)},
    ]


def check_q_chain(q_chain: Callable, cases: list[dict] | None = None, atol: float = 1e-4) -> None:
    """Self-check of notebook 02's synthesis ``q_chain(x0, schedule, noise) -> (K, B, ...)`` against course_lib's.

    Without ``cases``: a shortcut check (``Q_CHAIN_SHORTCUTS``), then :func:`q_chain_cases`, on a bare schedule.
    """
    if cases is None:
        cases = q_chain_cases()
        forbid_reference(q_chain, Q_CHAIN_SHORTCUTS, example=cases[0])
    check_function(q_chain, reference_q_chain, cases, name="q_chain", atol=atol, mistakes=Q_CHAIN_MISTAKES,
                   errors=Q_CHAIN_ERRORS)


# What q_chain raises when it runs more steps than it was given noise for.
Q_CHAIN_ERRORS = {
    r"IndexError: index \d+ is out of bounds": (
        "the chain ran more steps than there are noise draws: run K = len(noise) steps (K may be smaller than "
        "the schedule's T), step t using betas[t] and noise[t]"
    ),
}

__all__ = [
    "Q_CHAIN_ERRORS", "Q_CHAIN_MISTAKES", "Q_CHAIN_SHORTCUTS", "check_q_chain", "q_chain_cases", "reference_q_chain",
]
