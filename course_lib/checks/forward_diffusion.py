"""Shortcuts, common mistakes and test fixtures for notebook 02 (forward diffusion).

The checks hand answers a *bare* schedule (:func:`bare_schedule`): betas, alphas,
alpha_bars and alpha_bars_prev are real, every precomputed derived term (square
roots, posterior coefficients) is NaN, so an answer must compute what the
exercise asks instead of reading it off the schedule. The references run on the
full schedule rebuilt from the same betas (:func:`full`). Notebook 03's checks
(:mod:`course_lib.checks.reverse_diffusion`) use the same fixtures, from here.

Each mistaken function below is what an answer computes when it makes that
mistake; ``grading.check_function`` names the one that matches. Each ``*_ERRORS``
mapping names the likely cause of an exception an answer raises (a regular
expression searched in "ExceptionType: message" -> the cause).

Each ``check_<cell>`` function is the body of the notebook's self-check cell ``test_<cell>``:
called with the student's function alone it runs the visible cases (and the shortcut check);
the notebook's hidden tests call it again with their own ``cases``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import diffusion as D
from ..grading import check_function, forbid_reference

# --------------------------------------------------------------------------
# Fixtures: a bare schedule, and the helpers the mistakes share
# --------------------------------------------------------------------------

_DERIVED = (
    "sqrt_alpha_bars",
    "sqrt_one_minus_alpha_bars",
    "posterior_variance",
    "posterior_mean_coef_x0",
    "posterior_mean_coef_xt",
)


def bare_schedule(betas: torch.Tensor) -> D.NoiseSchedule:
    """A :class:`NoiseSchedule` whose derived terms are NaN: only betas, alphas and alpha_bars(_prev) are usable."""
    full = D.NoiseSchedule.from_betas(betas)
    values = {k: getattr(full, k) for k in full.__dataclass_fields__}
    for k in _DERIVED:
        values[k] = torch.full_like(values[k], float("nan"))
    return D.NoiseSchedule(**values)


def full(schedule: D.NoiseSchedule) -> D.NoiseSchedule:
    """The complete schedule with the same betas."""
    return D.NoiseSchedule.from_betas(schedule.betas)


def _timesteps(t: Any, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t.expand(len(x)) if t.dim() == 0 else t


def _shape_like(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values[t].reshape(len(t), *([1] * (x.dim() - 1)))


_PRECOMPUTED = (
    "read a precomputed term of the schedule (such as `schedule.sqrt_alpha_bars`): the checks' schedule "
    "holds only betas, alphas, alpha_bars and alpha_bars_prev, so compute the rest from those"
)


# --------------------------------------------------------------------------
# References with the students' signatures (they rebuild the full schedule)
# --------------------------------------------------------------------------


def reference_alpha_bars(betas: torch.Tensor) -> torch.Tensor:
    return D.NoiseSchedule.from_betas(betas).alpha_bars


def reference_q_sample(x0, t, schedule, noise=None):
    return D.q_sample(x0, t, full(schedule), noise)


# --------------------------------------------------------------------------
# Notebook 02: schedules
# --------------------------------------------------------------------------

SCHEDULE_SHORTCUTS = [
    "course_lib.diffusion.linear_beta_schedule",
    "course_lib.diffusion.cosine_beta_schedule",
    "course_lib.diffusion.cosine_alpha_bar",
    "course_lib.diffusion.NoiseSchedule.linear",
    "course_lib.diffusion.NoiseSchedule.cosine",
]


def _linear_arange(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    return beta_start + (beta_end - beta_start) * torch.arange(T, dtype=torch.float64).float() / T


def _linear_skips_first(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, T + 1, dtype=torch.float64)[1:].float()


LINEAR_MISTAKES = {
    "the last beta falls short of beta_end: `arange(T) / T` stops one step early; "
    "`torch.linspace(beta_start, beta_end, T)` includes both ends": _linear_arange,
    "made T + 1 points and dropped the first: the first beta must be beta_start": _linear_skips_first,
}


def _alpha_bar(u: torch.Tensor, s: float) -> torch.Tensor:
    """The cosine schedule's alpha_bar at u = t / T, as an answer writes it: f(u) / f(0)."""
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return f / math.cos(s / (1 + s) * math.pi / 2) ** 2


def _cosine_from(alpha_bar_fn, T: int, clip: bool = True) -> torch.Tensor:
    u = torch.arange(T + 1, dtype=torch.float64) / T
    ab = alpha_bar_fn(u)
    betas = 1 - ab[1:] / ab[:-1]
    return (betas.clamp(max=0.999) if clip else betas).float()


def _cosine_no_clip(T: int, s: float = 0.008) -> torch.Tensor:
    return _cosine_from(lambda u: _alpha_bar(u, s), T, clip=False)


def _cosine_not_squared(T: int, s: float = 0.008) -> torch.Tensor:
    return _cosine_from(lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2), T)


def _cosine_no_offset(T: int, s: float = 0.008) -> torch.Tensor:
    return _cosine_from(lambda u: torch.cos(u * math.pi / 2) ** 2, T)


def _cosine_returns_alpha_bars(T: int, s: float = 0.008) -> torch.Tensor:
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    return _alpha_bar(u, s).float()


def _cosine_shifted(T: int, s: float = 0.008) -> torch.Tensor:
    u = torch.arange(T + 1, dtype=torch.float64) / T
    ab = D.cosine_alpha_bar(u, s)
    betas = 1 - ab[:-1] / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-2]])
    return betas.clamp(max=0.999).float()


COSINE_MISTAKES = {
    "the last betas exceed 0.999: clip them with `.clamp(max=0.999)` (near t = T, alpha_bar reaches 0 "
    "and 1 - alpha_bar(t+1)/alpha_bar(t) becomes 1)": _cosine_no_clip,
    "forgot to square the cosine: f(u) = cos(((u + s) / (1 + s)) * pi / 2) ** 2": _cosine_not_squared,
    "left out the offset s: use (u + s) / (1 + s) inside the cosine": _cosine_no_offset,
    "returned alpha_bar instead of the betas: beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T)": (
        _cosine_returns_alpha_bars
    ),
    "off by one: beta_t is 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), so beta_0 compares u = 1/T with u = 0": (
        _cosine_shifted
    ),
}


def _check_schedule(
    fn: Callable, reference: Callable, name: str, mistakes: dict, cases: list[dict] | None, atol: float
) -> None:
    if cases is None:
        forbid_reference(fn, SCHEDULE_SHORTCUTS, example={"T": 5})
        cases = [{"T": 10}, {"T": 1000}]
    check_function(fn, reference, cases, name=name, atol=atol, mistakes=mistakes)


def check_linear_beta_schedule(
    linear_beta_schedule: Callable, cases: list[dict] | None = None, atol: float = 1e-7
) -> None:
    """Self-check of notebook 02's linear_beta_schedule against course_lib's, on T = 10 and 1000 by default.

    Without ``cases`` it also fails an answer that calls a ready-made schedule (``SCHEDULE_SHORTCUTS``).
    """
    _check_schedule(
        linear_beta_schedule, D.linear_beta_schedule, "linear_beta_schedule", LINEAR_MISTAKES, cases, atol
    )


def check_cosine_beta_schedule(
    cosine_beta_schedule: Callable, cases: list[dict] | None = None, atol: float = 1e-6
) -> None:
    """Self-check of notebook 02's cosine_beta_schedule against course_lib's, on T = 10 and 1000 by default.

    Without ``cases`` it also fails an answer that calls a ready-made schedule (``SCHEDULE_SHORTCUTS``).
    """
    _check_schedule(
        cosine_beta_schedule, D.cosine_beta_schedule, "cosine_beta_schedule", COSINE_MISTAKES, cases, atol
    )

ALPHA_BAR_SHORTCUTS = [
    "course_lib.diffusion.NoiseSchedule.from_betas",
    "course_lib.checks.forward_diffusion.reference_alpha_bars",
]


def _alpha_bars_are_alphas(betas: torch.Tensor) -> torch.Tensor:
    return 1 - betas


def _alpha_bars_cumsum(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(1 - betas, dim=0)


def _alpha_bars_of_betas(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(betas, dim=0)


def _alpha_bars_shifted(betas: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, dim=0)[:-1]])


ALPHA_BAR_MISTAKES = {
    "returned alpha_t = 1 - beta_t where alpha_bar_t, the running *product* of the alphas, belongs: "
    "use torch.cumprod": _alpha_bars_are_alphas,
    "summed the alphas: alpha_bar is a cumulative product (torch.cumprod), not a sum": _alpha_bars_cumsum,
    "multiplied the betas: alpha_bar_t is the product of alpha_s = 1 - beta_s": _alpha_bars_of_betas,
    "off by one: alpha_bar_0 = alpha_0 = 1 - beta_0 already includes step 0 (do not start from 1)": (
        _alpha_bars_shifted
    ),
}


def check_alpha_bars(compute_alpha_bars: Callable, cases: list[dict] | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 02's compute_alpha_bars: the cumulative product of 1 - beta.

    Without ``cases``: a shortcut check, then a linear 20-step schedule and 8 random betas.
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        forbid_reference(compute_alpha_bars, ALPHA_BAR_SHORTCUTS, example={"betas": torch.full((4,), 0.1)})
        cases = [{"betas": torch.linspace(1e-3, 0.2, 20)}, {"betas": 0.3 * torch.rand(8, generator=g) + 0.01}]
    check_function(
        compute_alpha_bars, reference_alpha_bars, cases, name="compute_alpha_bars", atol=atol,
        mistakes=ALPHA_BAR_MISTAKES,
    )

# --------------------------------------------------------------------------
# Notebook 02: q_sample
# --------------------------------------------------------------------------

Q_SAMPLE_SHORTCUTS = ["course_lib.diffusion.q_sample", "course_lib.checks.forward_diffusion.reference_q_sample"]


def _q(x0, t, schedule, noise, signal, noise_var):
    if noise is None:
        noise = torch.randn_like(x0)
    t = _timesteps(t, x0)
    return _shape_like(signal, t, x0) * x0 + _shape_like(noise_var, t, x0).sqrt() * noise


def _q_alpha(x0, t, schedule, noise=None):
    a = schedule.alphas
    return _q(x0, t, schedule, noise, a.sqrt(), 1 - a)


def _q_no_sqrt(x0, t, schedule, noise=None):
    ab = schedule.alpha_bars
    t = _timesteps(t, x0)
    return _shape_like(ab, t, x0) * x0 + _shape_like(1 - ab, t, x0) * noise


def _q_signal_no_sqrt(x0, t, schedule, noise=None):
    ab = schedule.alpha_bars
    return _q(x0, t, schedule, noise, ab, 1 - ab)


def _q_off_by_one(x0, t, schedule, noise=None):
    ab = schedule.alpha_bars
    return _q(x0, _timesteps(t, x0) - 1, schedule, noise, ab.sqrt(), 1 - ab)


def _q_off_by_one_up(x0, t, schedule, noise=None):
    ab = torch.cat([schedule.alpha_bars[1:], schedule.alpha_bars[-1:]])
    return _q(x0, t, schedule, noise, ab.sqrt(), 1 - ab)


def _q_swapped(x0, t, schedule, noise=None):
    ab = schedule.alpha_bars
    return _q(x0, t, schedule, noise, (1 - ab).sqrt(), ab)


def _q_precomputed(x0, t, schedule, noise=None):
    return _q(x0, t, schedule, noise, schedule.sqrt_alpha_bars, schedule.sqrt_one_minus_alpha_bars**2)


Q_SAMPLE_MISTAKES = {
    "used alpha_t where alpha_bar_t belongs: one step's alpha only describes q(x_t | x_{t-1}); "
    "the jump from x_0 needs the cumulative product alpha_bar_t": _q_alpha,
    "forgot the square roots: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise "
    "(alpha_bar_t is a variance, the coefficients are standard deviations)": _q_no_sqrt,
    "forgot the square root on the signal coefficient: sqrt(alpha_bar_t) x_0": _q_signal_no_sqrt,
    "off by one between t and the schedule index: timesteps are 0 .. T-1, so use alpha_bars[t], "
    "not alpha_bars[t - 1]": _q_off_by_one,
    "off by one between t and the schedule index: use alpha_bars[t], not alpha_bars[t + 1]": _q_off_by_one_up,
    "swapped the coefficients: x_0 gets sqrt(alpha_bar_t), the noise gets sqrt(1 - alpha_bar_t)": _q_swapped,
    _PRECOMPUTED: _q_precomputed,
}


# What q_sample raises when its (B,) coefficients do not broadcast against x0 (B, ...).
Q_SAMPLE_ERRORS = {
    r"size of tensor a \(\d+\) must match the size of tensor b": (
        "the (B,) coefficients did not broadcast against x0 of shape (B, ...): broadcasting lines up the *last* "
        "axes, so give the coefficients as many trailing size-1 axes as x0 has after the batch axis, (B, 1, ..., 1), "
        "whatever x0's number of dimensions (Hint 1 above)"
    ),
}


def _check_q_sample(q_sample: Callable, cases: list[dict], atol: float) -> None:
    check_function(q_sample, reference_q_sample, cases, name="q_sample", atol=atol, mistakes=Q_SAMPLE_MISTAKES,
                   errors=Q_SAMPLE_ERRORS)


def check_q_sample_points(q_sample: Callable, cases: list[dict] | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 02's q_sample on 2-D points with a different t per example (bare schedule).

    Without ``cases`` it also fails an answer that calls a ready-made q_sample (``Q_SAMPLE_SHORTCUTS``).
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        check_schedule = bare_schedule(torch.linspace(1e-3, 0.2, 20))
        cases = [
            {"x0": torch.randn(6, 2, generator=g), "t": torch.tensor([0, 1, 5, 10, 18, 19]),
             "schedule": check_schedule, "noise": torch.randn(6, 2, generator=g)},
            {"x0": torch.randn(3, 2, generator=g), "t": torch.tensor([19, 0, 7]),
             "schedule": check_schedule, "noise": torch.randn(3, 2, generator=g)},
        ]
        forbid_reference(q_sample, Q_SAMPLE_SHORTCUTS, example=cases[0])
    _check_q_sample(q_sample, cases, atol)


def check_q_sample_images(q_sample: Callable, cases: list[dict] | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 02's q_sample on (B, 1, 8, 8) images (by default), so the coefficients must broadcast."""
    if cases is None:
        g = torch.Generator().manual_seed(1)
        image_schedule = bare_schedule(torch.linspace(1e-3, 0.2, 20))
        cases = [{"x0": torch.randn(4, 1, 8, 8, generator=g), "t": torch.tensor([0, 3, 12, 19]),
                  "schedule": image_schedule, "noise": torch.randn(4, 1, 8, 8, generator=g)}]
    _check_q_sample(q_sample, cases, atol)


# --------------------------------------------------------------------------
# Notebook 02 debug exercise: extract
# --------------------------------------------------------------------------

EXTRACT_SHORTCUTS = ["course_lib.diffusion.extract"]


def _extract_previous_step(values, t, x):
    return values[t - 1].reshape(len(t), *([1] * (x.dim() - 1)))


def _extract_points_only(values, t, x):
    return values[t].view(-1, 1)


def _extract_clamped(values, t, x):
    return values[(t - 1).clamp(min=0)].reshape(len(t), *([1] * (x.dim() - 1)))


def _extract_flat(values, t, x):
    return values[t]


def _extract_extra_axis(values, t, x):
    return values[t].reshape(len(t), *([1] * x.dim()))


def _extract_images_only(values, t, x):
    return values[t][:, None, None, None]


EXTRACT_MISTAKES = {
    "every example gets the value of another step than its own t_i (at t = 0, the *last* entry of `values`, "
    "the step where the data is pure noise): check which entry of `values` each example reads "
    "(Hint 1 above, on picking)": _extract_previous_step,
    "the result has shape (B, 1) whatever x is: that fits points (B, 2) only; for images, or plain numbers (B,), "
    "its number of axes is not x's, and against images (B, 1, 8, 8) its B values do not meet x's batch axis "
    "(an error, or for B = 8 a wrong pairing that runs): check whether the result's shape follows x "
    "(Hint 1 above, on shaping)": _extract_points_only,
    "examples at t = 0 now get their own value, but every example at a later step still gets the value of "
    "another step than its own t_i: check again which entry of `values` each example reads "
    "(Hint 1 above, on picking)": _extract_clamped,
    "the result is one-dimensional, (B,), whatever x is: for points or images it has fewer axes than x, and "
    "multiplied by x its B values would meet x's *last* axis, not the batch axis: check whether the result's "
    "shape follows x (Hint 1 above, on shaping)": _extract_flat,
    "the result has one axis more than x: multiplied by x it would broadcast to (B, B, ...) instead of x's shape; "
    "count the axes of size 1 it gets (Hint 1 above, on shaping)": _extract_extra_axis,
    "the result has 4 axes whatever x is: that fits images (B, 1, 8, 8) only; for points (B, 2), plain numbers "
    "(B,) or any x without 4 axes its number of axes is not x's: check whether the result's shape follows x "
    "(Hint 1 above, on shaping)": _extract_images_only,
}

# What extract raises when it gives the B picked values x's whole shape, or stretches them to it.
EXTRACT_ERRORS = {
    r"shape '\[[\d, ]*\]' is invalid for input of size": (
        "asked the B picked values, one per example, to fill a shape of another size (such as x's whole "
        "shape): the contract's result has x's number of axes, not x's sizes; check which shape the picked "
        "values are given (Hint 1 above, on shaping)"
    ),
    r"expanded size of the tensor": (
        "stretching the (B,) picked values to x's shape failed: a tensor is stretched from its *last* axis, so "
        "the B values met x's last axis, not its batch axis; the contract's result is not x-sized, the "
        "multiplication by x does the stretching: check which shape the picked values are given "
        "(Hint 1 above, on shaping)"
    ),
}


def extract_cases(seed: int = 0) -> list[dict]:
    """The visible cases (a schedule's alpha_bars): points with t = 0 and t = T-1 in the batch, images, and x (B,)."""
    g = torch.Generator().manual_seed(seed)
    values = D.NoiseSchedule.linear(20, 1e-3, 0.2).alpha_bars  # (T,): falls from 0.999 to 0.1, so a wrong step shows
    return [
        {"values": values, "t": torch.tensor([0, 1, 5, 10, 18, 19]), "x": torch.randn(6, 2, generator=g)},
        {"values": values, "t": torch.tensor([0, 3, 12, 19]), "x": torch.randn(4, 1, 8, 8, generator=g)},
        {"values": values, "t": torch.tensor([7, 0, 19, 2, 11]), "x": torch.randn(5, generator=g)},
    ]


def check_extract(extract: Callable, cases: list[dict] | None = None, atol: float = 1e-6) -> None:
    """Self-check of notebook 02's debug exercise ``extract(values, t, x) -> (B, 1, ..., 1)`` against course_lib's.

    Without ``cases``: a shortcut check (``EXTRACT_SHORTCUTS``), then :func:`extract_cases`.
    """
    if cases is None:
        cases = extract_cases()
        forbid_reference(extract, EXTRACT_SHORTCUTS, example=cases[0])
    check_function(extract, D.extract, cases, name="extract", atol=atol, mistakes=EXTRACT_MISTAKES,
                   errors=EXTRACT_ERRORS)


# --------------------------------------------------------------------------
# Notebook 02 synthesis: q_chain
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


# What q_chain raises when it runs more steps than it was given noise for.
Q_CHAIN_ERRORS = {
    r"IndexError: index \d+ is out of bounds": (
        "the chain ran more steps than there are noise draws: run K = len(noise) steps (K may be smaller than "
        "the schedule's T), step t using betas[t] and noise[t]"
    ),
}


def check_q_chain(q_chain: Callable, cases: list[dict] | None = None, atol: float = 1e-4) -> None:
    """Self-check of notebook 02's synthesis ``q_chain(x0, schedule, noise) -> (K, B, ...)`` against course_lib's.

    Without ``cases``: a shortcut check (``Q_CHAIN_SHORTCUTS``), then :func:`q_chain_cases`, on a bare schedule.
    """
    if cases is None:
        cases = q_chain_cases()
        forbid_reference(q_chain, Q_CHAIN_SHORTCUTS, example=cases[0])
    check_function(q_chain, reference_q_chain, cases, name="q_chain", atol=atol, mistakes=Q_CHAIN_MISTAKES,
                   errors=Q_CHAIN_ERRORS)

__all__ = [
    "ALPHA_BAR_MISTAKES", "ALPHA_BAR_SHORTCUTS", "COSINE_MISTAKES", "EXTRACT_ERRORS", "EXTRACT_MISTAKES",
    "EXTRACT_SHORTCUTS", "LINEAR_MISTAKES", "Q_CHAIN_ERRORS", "Q_CHAIN_MISTAKES", "Q_CHAIN_SHORTCUTS",
    "Q_SAMPLE_ERRORS", "Q_SAMPLE_MISTAKES", "Q_SAMPLE_SHORTCUTS", "SCHEDULE_SHORTCUTS", "bare_schedule",
    "check_alpha_bars", "check_cosine_beta_schedule", "check_extract", "check_linear_beta_schedule", "check_q_chain",
    "check_q_sample_images", "check_q_sample_points", "extract_cases", "full", "q_chain_cases", "reference_alpha_bars",
    "reference_q_chain", "reference_q_sample",
]
