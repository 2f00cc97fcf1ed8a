"""Diffusion models: noise schedules, the forward process, and learning to reverse it.

Notation follows Ho et al. (2020), "Denoising Diffusion Probabilistic Models":
``beta_t`` is the variance added at step t, ``alpha_t = 1 - beta_t`` and
``alpha_bar_t = alpha_0 * ... * alpha_t``. Timesteps run 0 .. T-1, as in common
libraries (the paper counts 1 .. T): ``x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0,
(1 - alpha_bar_t) I)`` for t = 0 .. T-1, where ``x_0`` (``x0`` in code) is the clean
data and the noisy sample at index t is the paper's ``x_{t+1}``. So even t = 0 adds a
little noise (``beta_0``), and "the step before t = 0" is the clean data itself
(``alpha_bar_{-1} = 1``).

The module is laid out like the two notebooks that teach it, and keeps the
three parts apart, as diffusers' schedulers do:

1. schedule arithmetic: pure functions of tensors and a :class:`NoiseSchedule`
   (``q_sample``, the posterior, one DDPM step, one DDIM step);
2. the network: :class:`Denoiser`, a small time-conditioned MLP that predicts
   the noise (optionally class-conditioned, with a "no label" entry for
   classifier-free guidance);
3. the sampling loops: :func:`ddpm_sample` and :func:`ddim_sample`.

Every model here is called as ``model(x_t, t, labels=None)`` and returns a
tensor shaped like ``x_t``: its estimate of the noise that was added.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

EpsModel = Callable[..., torch.Tensor]

# --------------------------------------------------------------------------
# 1. Noise schedules
# --------------------------------------------------------------------------


def _check_T(T: int) -> None:
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T (the number of timesteps) must be a positive int, got {T!r}")


def linear_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020)'s schedule: ``T`` betas evenly spaced from ``beta_start`` to ``beta_end``.

    Returns a float32 tensor of shape ``(T,)``; ``betas[0] = beta_start``, ``betas[-1] = beta_end``.
    """
    _check_T(T)
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64).float()


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal (2021)'s ``alpha_bar`` at fraction ``u = t / T`` of the way: ``f(u) / f(0)``.

    ``f(u) = cos(((u + s) / (1 + s)) * pi / 2) ** 2``. Any shape; same shape out.
    """
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return f / f0


def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021)'s cosine schedule: betas whose ``alpha_bar`` follows a squared cosine.

    ``beta_t = min(1 - alpha_bar((t + 1) / T) / alpha_bar(t / T), max_beta)`` for t = 0 .. T-1, so
    that (before clipping) the cumulative product of ``1 - beta`` is exactly :func:`cosine_alpha_bar`
    at ``(t + 1) / T``. Returns a float32 tensor of shape ``(T,)``.
    """
    _check_T(T)
    if s < 0:
        raise ValueError(f"s must be >= 0, got {s}")
    u = torch.arange(T + 1, dtype=torch.float64) / T
    alpha_bar = cosine_alpha_bar(u, s)
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta).float()


@dataclass(frozen=True)
class NoiseSchedule:
    """Everything the forward and reverse processes need, precomputed from ``betas``: each ``(T,)``.

    ``alpha_bars_prev[t]`` is ``alpha_bar_{t-1}`` with ``alpha_bar_{-1} = 1`` (clean data).
    ``posterior_variance`` is ``beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)``
    (0 at t = 0), and the two posterior-mean coefficients multiply ``x_0`` and ``x_t``.
    Build one with :meth:`from_betas`, :meth:`linear` or :meth:`cosine`.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor
    alpha_bars_prev: torch.Tensor
    sqrt_alpha_bars: torch.Tensor
    sqrt_one_minus_alpha_bars: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xt: torch.Tensor

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> NoiseSchedule:
        """A schedule from a ``(T,)`` tensor of betas in (0, 1). Arithmetic in float64, stored as float32."""
        if not isinstance(betas, torch.Tensor):
            raise TypeError(f"betas must be a torch.Tensor, got {type(betas).__name__}")
        if betas.dim() != 1 or len(betas) == 0:
            raise ValueError(f"betas must have shape (T,), got {tuple(betas.shape)}")
        b = betas.detach().to("cpu", torch.float64)
        if not ((b > 0) & (b < 1)).all():
            raise ValueError(f"every beta must be in (0, 1); got min {b.min().item():.3g}, max {b.max().item():.3g}")
        alphas = 1 - b
        alpha_bars = torch.cumprod(alphas, dim=0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        post_var = b * (1 - prev) / (1 - alpha_bars)
        values = dict(
            betas=b,
            alphas=alphas,
            alpha_bars=alpha_bars,
            alpha_bars_prev=prev,
            sqrt_alpha_bars=alpha_bars.sqrt(),
            sqrt_one_minus_alpha_bars=(1 - alpha_bars).sqrt(),
            posterior_variance=post_var,
            posterior_mean_coef_x0=b * prev.sqrt() / (1 - alpha_bars),
            posterior_mean_coef_xt=(1 - prev) * alphas.sqrt() / (1 - alpha_bars),
        )
        return cls(**{k: v.float() for k, v in values.items()})

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        return cls.from_betas(linear_beta_schedule(T, beta_start, beta_end))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008) -> NoiseSchedule:
        return cls.from_betas(cosine_beta_schedule(T, s))

    @property
    def T(self) -> int:
        """The number of timesteps."""
        return len(self.betas)

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)`` per step: ``(T,)``."""
        return self.alpha_bars / (1 - self.alpha_bars)

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """The same schedule with every tensor on ``device``."""
        return NoiseSchedule(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})


def _check_schedule(schedule: object) -> None:
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")


def steps_for(t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    """One timestep per example of ``x`` (B, ...): an int ``t`` becomes the (B,) int64 tensor of it."""
    if isinstance(t, int) and not isinstance(t, bool):
        return torch.full((len(x),), t, dtype=torch.long, device=x.device)
    return t


def _as_timesteps(t: torch.Tensor | int, x: torch.Tensor, T: int) -> torch.Tensor:
    """:func:`steps_for`, checked: an int64 tensor (B,) of steps in 0 .. T-1 for the batch ``x``."""
    if isinstance(t, bool):
        raise TypeError("t must be an int or an integer tensor, got a bool")
    batch, device = len(x), x.device
    t = steps_for(t, x)
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps, got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must have shape ({batch},) (one step per example), got {tuple(t.shape)}")
    if len(t) and (t.min() < 0 or t.max() >= T):
        raise ValueError(f"timesteps must be in 0 .. T-1 = {T - 1}, got values in {t.min().item()} .. {t.max().item()}")
    return t.long().to(device)


def extract(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped to broadcast against ``x``: ``values (T,)``, ``t (B,)``, ``x (B, ...)``.

    Returns ``(B, 1, ..., 1)`` with ``x.dim()`` axes, in ``x``'s dtype and device.
    """
    out = values.to(x.device)[t.to(x.device)]
    return out.reshape(len(t), *([1] * (x.dim() - 1))).to(x.dtype)


def _check_batch(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (B, ...), got {x.dtype} {tuple(x.shape)}")


# --------------------------------------------------------------------------
# 2. The forward process q(x_t | x_0)
# --------------------------------------------------------------------------


def q_sample(
    x0: torch.Tensor,
    t: torch.Tensor | int,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample ``x_t ~ q(x_t | x_0)`` in one go: ``sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise``.

    x0: (B, ...) clean data of any shape (2-D points ``(B, 2)``, images ``(B, 1, 8, 8)``).
    t: (B,) integer timesteps in 0 .. T-1, one per example (or an int for all).
    noise: standard normal noise shaped like ``x0``; drawn (with ``generator``) when None.
    Returns ``x_t``, shaped like ``x0``.
    """
    _check_schedule(schedule)
    _check_batch(x0, "x0")
    t = _as_timesteps(t, x0, schedule.T)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
    return extract(schedule.sqrt_alpha_bars, t, x0) * x0 + extract(schedule.sqrt_one_minus_alpha_bars, t, x0) * noise


def q_step(x_prev: torch.Tensor, t: int, schedule: NoiseSchedule, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One forward step ``x_t ~ q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)``; shaped like ``x_prev``.

    Applied for t = 0, 1, ..., k to clean data it gives a sample of ``q(x_k | x_0)``.
    """
    _check_schedule(schedule)
    _check_batch(x_prev, "x_prev")
    tt = _as_timesteps(t, x_prev, schedule.T)
    if noise is None:
        noise = torch.randn_like(x_prev)
    return extract(schedule.alphas.sqrt(), tt, x_prev) * x_prev + extract(schedule.betas.sqrt(), tt, x_prev) * noise


# --------------------------------------------------------------------------
# 3. The posterior q(x_{t-1} | x_t, x_0) and the training objective
# --------------------------------------------------------------------------


def q_posterior_mean_variance(
    x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the Gaussian ``q(x_{t-1} | x_t, x_0)`` (Ho et al. 2020, eq. 6-7).

    mean = ``beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t) x_0
    + (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t) x_t``;
    variance = ``beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)``, with ``alpha_bar_{-1} = 1``.

    x0, xt: (B, ...) of the same shape; t: (B,) integer timesteps (or an int).
    Returns ``(mean (B, ...), variance (B, 1, ..., 1))``.
    """
    _check_schedule(schedule)
    _check_batch(x0, "x0")
    _check_batch(xt, "xt")
    if x0.shape != xt.shape:
        raise ValueError(f"x0 and xt must have the same shape, got {tuple(x0.shape)} and {tuple(xt.shape)}")
    t = _as_timesteps(t, xt, schedule.T)
    mean = extract(schedule.posterior_mean_coef_x0, t, xt) * x0 + extract(schedule.posterior_mean_coef_xt, t, xt) * xt
    return mean, extract(schedule.posterior_variance, t, xt)


def _call_model(model: EpsModel, xt: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    eps = model(xt, t) if labels is None else model(xt, t, labels)
    if not isinstance(eps, torch.Tensor) or eps.shape != xt.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"the model must return a tensor shaped like x_t {tuple(xt.shape)}, got {got}")
    return eps


def diffusion_loss(
    model: EpsModel,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    labels: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Ho et al. (2020)'s simplified objective: ``mean || noise - model(x_t, t) ||^2``.

    x0: (B, ...) clean data. ``t`` (B,) is drawn uniformly from 0 .. T-1 and ``noise`` from
    N(0, I) when not given (with ``generator``); ``x_t = q_sample(x0, t, schedule, noise)``.
    The model is called as ``model(x_t, t)``, or ``model(x_t, t, labels)`` when labels are given.
    Returns a scalar: the squared error averaged over every entry.
    """
    _check_schedule(schedule)
    _check_batch(x0, "x0")
    if t is None:
        t = torch.randint(schedule.T, (len(x0),), generator=generator).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    xt = q_sample(x0, t, schedule, noise)
    eps = _call_model(model, xt, _as_timesteps(t, x0, schedule.T), labels)
    return ((eps - noise) ** 2).mean()


def drop_labels(
    labels: torch.Tensor, p: float, null_label: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each label by ``null_label`` with probability ``p`` (label dropout, Ho & Salimans 2022)."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    drop = torch.rand(labels.shape, generator=generator).to(labels.device) < p
    return torch.where(drop, torch.full_like(labels, null_label), labels)


# --------------------------------------------------------------------------
# 4. Classifier-free guidance
# --------------------------------------------------------------------------


def guided_noise(
    model: EpsModel, xt: torch.Tensor, t: torch.Tensor | int, labels: torch.Tensor, guidance_scale: float
) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ``eps_u + s (eps_c - eps_u)``.

    ``eps_c = model(x_t, t, labels)`` and ``eps_u = model(x_t, t)`` (no label). ``s = 1`` is the
    plain conditional model, ``s = 0`` the unconditional one, ``s > 1`` pushes samples towards
    what makes them look like their class (the paper's ``w`` is ``s - 1``). Shaped like ``xt``.
    """
    _check_batch(xt, "xt")
    if labels is None:
        raise ValueError("guidance needs labels (B,); call the model directly for unconditional noise")
    t = steps_for(t, xt)
    eps_uncond = _call_model(model, xt, t, None)
    eps_cond = _call_model(model, xt, t, labels)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def guided(model: EpsModel, guidance_scale: float | None) -> EpsModel:
    """``model`` with classifier-free guidance at ``guidance_scale``: ``(x_t, t, labels) -> eps``.

    Calls with labels get :func:`guided_noise`; calls without, and a scale of None or 1 (the plain
    conditional model), go to ``model`` itself. The samplers take this, so a step needs no guidance options.
    """
    if guidance_scale is None or guidance_scale == 1.0:
        return model

    def guided_model(xt: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return model(xt, t) if labels is None else guided_noise(model, xt, t, labels, guidance_scale)

    return guided_model


# --------------------------------------------------------------------------
# 5. Reverse steps: ancestral (DDPM) and deterministic (DDIM)
# --------------------------------------------------------------------------


def p_mean_from_eps(xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Ho et al. (2020)'s reverse mean ``(x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)``."""
    coef = extract(schedule.betas / schedule.sqrt_one_minus_alpha_bars, t, xt)
    return (xt - coef * eps) / extract(schedule.alphas.sqrt(), t, xt)


def p_sample(
    model: EpsModel,
    xt: torch.Tensor,
    t: int,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    *,
    labels: torch.Tensor | None = None,
    variance: str = "beta",
    clip_x0: float | None = None,
) -> torch.Tensor:
    """One ancestral step ``x_{t-1} = mu_theta(x_t, t) + sigma_t z`` (Ho et al. 2020, Algorithm 2).

    xt: (B, ...) the current sample; t: the current step (an int, 0 .. T-1). ``sigma_t^2`` is
    ``beta_t`` (``variance="beta"``, the default) or ``beta_tilde_t`` (``"posterior"``); both are in the
    paper. ``z = noise`` (standard normal, drawn when None); at t = 0 no noise is added: the result is
    the mean. With ``clip_x0``, the mean is computed as in Ho et al.'s code instead: the predicted
    ``x_0`` is clamped to [-clip_x0, clip_x0] and plugged into the posterior mean (the same value when
    nothing is clamped). ``labels`` go to the model (wrap it with :func:`guided` for guidance).
    Returns ``x_{t-1}``, shaped like ``xt``.
    """
    _check_schedule(schedule)
    _check_batch(xt, "xt")
    if variance not in ("beta", "posterior"):
        raise ValueError(f"variance must be 'beta' or 'posterior', got {variance!r}")
    tt = _as_timesteps(t, xt, schedule.T)  # (B,)
    eps = _call_model(model, xt, tt, labels)  # (B, ...) the predicted noise
    if clip_x0 is None:
        mean = p_mean_from_eps(xt, tt, eps, schedule)
    else:
        x0_hat = (xt - extract(schedule.sqrt_one_minus_alpha_bars, tt, xt) * eps) / extract(
            schedule.sqrt_alpha_bars, tt, xt
        )
        mean, _ = q_posterior_mean_variance(x0_hat.clamp(-clip_x0, clip_x0), xt, tt, schedule)
    if int(t) == 0:
        return mean
    sigma2 = schedule.betas if variance == "beta" else schedule.posterior_variance
    z = torch.randn_like(xt) if noise is None else noise
    return mean + extract(sigma2, tt, xt).sqrt() * z


def ddim_step(
    eps: torch.Tensor,
    xt: torch.Tensor,
    t: int,
    t_prev: int,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: float | None = None,
) -> torch.Tensor:
    """One DDIM update from step ``t`` to an earlier step ``t_prev`` (Song et al. 2021, eq. 12).

    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``;
    ``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``;
    ``abar_prev = alpha_bar[t_prev]``, or 1 when ``t_prev = -1`` (the final step to clean data).
    eps, xt: (B, ...). eta = 0 is deterministic; eta = 1 has DDPM's posterior variance.
    ``clip_x0`` clamps ``x0_hat`` to [-clip_x0, clip_x0] and recomputes ``eps`` to match it.
    """
    _check_schedule(schedule)
    if not -1 <= t_prev < t < schedule.T:
        raise ValueError(f"need -1 <= t_prev < t <= T-1 = {schedule.T - 1}, got t={t}, t_prev={t_prev}")
    ab_t = schedule.alpha_bars[t].item()
    ab_prev = schedule.alpha_bars[t_prev].item() if t_prev >= 0 else 1.0
    x0_hat = (xt - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    if clip_x0 is not None:
        x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
        eps = (xt - math.sqrt(ab_t) * x0_hat) / math.sqrt(1 - ab_t)
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_prev)
    out = math.sqrt(ab_prev) * x0_hat + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            noise = torch.randn_like(xt)
        out = out + sigma * noise
    return out


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` timesteps from T-1 down to 0, evenly spread ("trailing" spacing), e.g. T=1000, 4 -> 999, 749, 499, 249.

    Each is ``round(T - k T / steps) - 1`` for k = 0 .. steps-1; with ``steps = T`` it is every step.
    """
    _check_T(T)
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in 1 .. T={T}, got {steps!r}")
    return [round(T - k * T / steps) - 1 for k in range(steps)]


# --------------------------------------------------------------------------
# 6. Sampling loops
# --------------------------------------------------------------------------


def _initial_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str):
    return torch.randn(shape, generator=generator).to(device)


@torch.no_grad()
def ddpm_chain(
    model: EpsModel,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    labels: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    variance: str = "beta",
    clip: float | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[int, torch.Tensor]]:
    """Ancestral sampling step by step: ``(t, x_t)`` for t = T-1 .. 0 (``x_t`` before step t), then ``(-1, x_0)``.

    ``x_T ~ N(0, I)``, then :func:`p_sample` for t = T-1 down to 0. Random numbers are drawn from
    ``generator`` in this order: ``x_T`` (unless given), then one ``randn(shape)`` for each
    t = T-1 .. 1. ``clip`` clamps each step's predicted ``x_0`` to [-clip, clip] (data in [-1, 1]:
    use 1.0; None: no clamping). ``{t: x for t, x in ddpm_chain(...) if t in wanted}`` keeps some steps.
    """
    _check_schedule(schedule)
    model = guided(model, guidance_scale)
    x = _initial_noise(tuple(shape), generator, device) if x_T is None else x_T.clone()
    for t in range(schedule.T - 1, -1, -1):
        yield t, x
        noise = torch.randn(x.shape, generator=generator).to(x.device) if t > 0 else None
        x = p_sample(model, x, t, schedule, noise, labels=labels, variance=variance, clip_x0=clip)
    yield -1, x


@torch.no_grad()
def ddpm_sample(
    model: EpsModel,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    labels: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    variance: str = "beta",
    clip: float | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Ancestral sampling: the final ``x_0`` of :func:`ddpm_chain` (same arguments), shaped ``shape``."""
    chain = ddpm_chain(model, shape, schedule, labels, guidance_scale, generator, x_T, variance, clip, device)
    for _, x in chain:  # noqa: B007 (only the last state, x_0, is kept)
        pass
    return x


@torch.no_grad()
def ddim_sample(
    model: EpsModel,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    steps: int,
    eta: float = 0.0,
    labels: torch.Tensor | None = None,
    guidance_scale: float | None = None,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    clip: float | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021) over ``ddim_timesteps(T, steps)``; deterministic when eta = 0.

    From ``x_T`` (drawn from ``generator`` unless given), each visited step t goes to the next visited
    step (or -1, clean data) with :func:`ddim_step`. ``clip`` clamps each step's predicted ``x_0``
    to [-clip, clip] (None: no clamping). Returns ``(shape)`` samples.
    """
    _check_schedule(schedule)
    x = _initial_noise(tuple(shape), generator, device) if x_T is None else x_T.clone()
    model = guided(model, guidance_scale)
    times = ddim_timesteps(schedule.T, steps)
    for i, t in enumerate(times):
        t_prev = times[i + 1] if i + 1 < len(times) else -1
        eps = _call_model(model, x, _as_timesteps(t, x, schedule.T), labels)
        noise = torch.randn(x.shape, generator=generator).to(x.device) if eta > 0 and t_prev >= 0 else None
        x = ddim_step(eps, x, t, t_prev, schedule, eta, noise, clip_x0=clip)
    return x


# --------------------------------------------------------------------------
# 7. The network: a small time-conditioned MLP that predicts the noise
# --------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of integer timesteps (as in transformers' positions): ``(B,) -> (B, dim)``."""
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class Denoiser(nn.Module):
    """A time- (and optionally class-) conditioned MLP that predicts the noise in ``x_t``.

    data_shape: the shape of one example, e.g. ``(2,)`` for points or ``(1, 8, 8)`` for digits.
    num_classes: 0 for an unconditional model; otherwise labels 0 .. C-1, plus a learned
    "no label" embedding (index C) used when ``labels`` is None or equal to C, so one network
    is both conditional and unconditional (classifier-free guidance).
    ``forward(x (B, *data_shape), t (B,), labels (B,) or None) -> (B, *data_shape)``.
    """

    def __init__(
        self, data_shape: tuple[int, ...], hidden: int = 128, depth: int = 3, num_classes: int = 0, emb_dim: int = 64
    ):
        super().__init__()
        if hidden < 1 or depth < 1:
            raise ValueError(f"hidden and depth must be positive, got hidden={hidden}, depth={depth}")
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes
        self.emb_dim = emb_dim
        size = math.prod(self.data_shape)
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label_emb = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.inp = nn.Linear(size, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth)
        )
        self.cond = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, size))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        batch = len(x)
        t = steps_for(t, x)  # (B,)
        c = self.time_mlp(timestep_embedding(t, self.emb_dim))  # (B, hidden)
        if self.label_emb is not None:
            if labels is None:
                labels = torch.full((batch,), self.null_label, dtype=torch.long, device=x.device)
            c = c + self.label_emb(labels.long())
        elif labels is not None:
            raise ValueError("this Denoiser is unconditional (num_classes=0) but labels were given")
        h = self.inp(x.flatten(1))  # (B, hidden)
        for block, cond in zip(self.blocks, self.cond):
            h = h + block(h + cond(c))
        return self.out(h).reshape(x.shape)


def denoiser_loss_fn(
    schedule: NoiseSchedule, p_uncond: float = 0.0, generator: torch.Generator | None = None
) -> Callable[[nn.Module, tuple], torch.Tensor]:
    """A ``loss_fn(model, batch)`` for :func:`course_lib.train.train`.

    A batch is ``(x0,)`` or ``(x0, labels)``; with labels, each is dropped to the model's
    null label with probability ``p_uncond`` (so the model also learns the unconditional noise).
    """

    def loss_fn(model: nn.Module, batch: tuple) -> torch.Tensor:
        x0 = batch[0]
        labels = batch[1] if len(batch) > 1 else None
        if labels is not None and p_uncond > 0:
            labels = drop_labels(labels, p_uncond, model.null_label, generator)
        return diffusion_loss(model, x0, schedule, labels, generator=generator)

    return loss_fn


def train_denoiser(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, ...]],
    schedule: NoiseSchedule,
    optimizer: torch.optim.Optimizer,
    steps: int,
    p_uncond: float = 0.0,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip: float | None = 1.0,
) -> list[float]:
    """Train a noise predictor for ``steps`` steps with :func:`diffusion_loss`; return each step's loss.

    Each step takes the next batch from ``batches``: ``(x0,)`` or ``(x0, labels)``, with x0 ``(B, ...)``
    and labels ``(B,)`` int64. With labels, each one is replaced by ``model.null_label`` with probability
    ``p_uncond`` (label dropout, Ho & Salimans 2022; drawn before the loss draws its t and noise), so the
    model also learns the unconditional noise. Then one update from this step's gradients alone: their
    total norm clipped to ``grad_clip`` (None: not clipped), one ``optimizer`` step, and one
    ``lr_scheduler`` step when one is given. The model trains in training mode; the batches are not
    changed. Returns ``steps`` floats: the loss of each step, computed before that step's update.

    :func:`course_lib.train.train` with :func:`denoiser_loss_fn` (and its warm-up and cosine rates as a
    ``LambdaLR``) takes the same steps; ``tests/test_diffusion.py`` checks that they agree.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if not 0 <= p_uncond <= 1:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    model.train()
    losses = []
    for _ in range(steps):
        batch = next(batches)
        x0, labels = batch[0], (batch[1] if len(batch) > 1 else None)
        if labels is not None and p_uncond > 0:
            labels = drop_labels(labels, p_uncond, model.null_label)
        loss = diffusion_loss(model, x0, schedule, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        losses.append(loss.item())
    return losses


__all__ = [
    "Denoiser",
    "NoiseSchedule",
    "cosine_alpha_bar",
    "cosine_beta_schedule",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_chain",
    "ddpm_sample",
    "denoiser_loss_fn",
    "diffusion_loss",
    "drop_labels",
    "extract",
    "guided",
    "guided_noise",
    "linear_beta_schedule",
    "p_mean_from_eps",
    "p_sample",
    "q_posterior_mean_variance",
    "q_sample",
    "q_step",
    "steps_for",
    "timestep_embedding",
    "train_denoiser",
]


# --------------------------------------------------------------------------
# Notebook 02 synthesis: the forward chain, one step at a time
# --------------------------------------------------------------------------


def q_chain(x0: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor) -> torch.Tensor:
    """Run the forward Markov chain from clean ``x0`` for ``K = len(noise)`` steps; return every state.

    x0: (B, ...) clean data; noise: (K, B, ...) standard normal, ``noise[t]`` for step t, 1 <= K <= T.
    Step t (t = 0 .. K-1) is :func:`q_step`: ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) noise[t]``,
    starting from the clean data. Returns ``(K, B, ...)``: ``out[t]`` is the state after steps 0 .. t,
    distributed as :func:`q_sample` at t (mean ``sqrt(alpha_bar_t) x0``, variance ``1 - alpha_bar_t``).
    """
    _check_schedule(schedule)
    _check_batch(x0, "x0")
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
    if noise.dim() != x0.dim() + 1 or tuple(noise.shape[1:]) != tuple(x0.shape):
        raise ValueError(f"noise must have shape (K, *x0.shape) = (K, {', '.join(map(str, x0.shape))}), "
                         f"got {tuple(noise.shape)}")
    if not 1 <= len(noise) <= schedule.T:
        raise ValueError(f"the chain runs 1 .. T = {schedule.T} steps, got K = len(noise) = {len(noise)}")
    sqrt_alphas = schedule.alphas.sqrt().to(x0)  # (T,)
    sqrt_betas = schedule.betas.sqrt().to(x0)
    states, x = [], x0
    for t in range(len(noise)):
        x = sqrt_alphas[t] * x + sqrt_betas[t] * noise[t].to(x0)
        states.append(x)
    return torch.stack(states)  # (K, B, ...)


__all__ += ["q_chain"]
