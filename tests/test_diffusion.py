"""course_lib.diffusion against independent facts.

Every reference is compared with something it does not compute itself: Python
products, the cosine closed form, Monte-Carlo moments, Gaussian conditioning
done by hand, an oracle noise predictor, and (when installed) diffusers.
"""

from __future__ import annotations

import math

import pytest
import torch
from envtools import oracle

from course_lib import diffusion as D
from course_lib.checks.reverse_diffusion import RecordingModel, toy_model

# --------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------


def test_linear_schedule_endpoints_and_spacing():
    betas = D.linear_beta_schedule(1000)
    assert betas.shape == (1000,) and betas.dtype == torch.float32
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    steps = betas[1:].double() - betas[:-1].double()
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) / 999), atol=1e-8)


def test_alpha_bar_is_the_cumulative_product():
    schedule = D.NoiseSchedule.linear(200)
    product = 1.0
    for t in range(200):
        product *= 1.0 - float(schedule.betas[t])
        assert float(schedule.alpha_bars[t]) == pytest.approx(product, rel=1e-5)
    assert float(schedule.alpha_bars_prev[0]) == 1.0
    assert torch.equal(schedule.alpha_bars_prev[1:], schedule.alpha_bars[:-1])


@pytest.mark.parametrize("T", [10, 1000])
def test_cosine_schedule_matches_its_closed_form(T):
    s = 0.008
    schedule = D.NoiseSchedule.cosine(T)

    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    for t in range(T - 1):  # the last beta is clipped
        assert float(schedule.alpha_bars[t]) == pytest.approx(f((t + 1) / T) / f(0), rel=1e-4, abs=1e-7)
    assert float(schedule.betas.max()) == pytest.approx(0.999)
    assert float(schedule.betas[-1]) == pytest.approx(0.999)


def test_cosine_destroys_information_more_evenly():
    """Nichol & Dhariwal's motivation: the linear schedule's last steps are nearly pure noise."""
    lin, cos = D.NoiseSchedule.linear(1000), D.NoiseSchedule.cosine(1000)
    # fraction of steps with log-SNR below -5 (almost no signal left)
    assert (lin.snr().log() < -5).float().mean() > 2 * (cos.snr().log() < -5).float().mean()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: D.linear_beta_schedule(0), ValueError),
        (lambda: D.linear_beta_schedule(10, 0.1, 0.01), ValueError),
        (lambda: D.cosine_beta_schedule(2.5), ValueError),
        (lambda: D.NoiseSchedule.from_betas([0.1, 0.2]), TypeError),
        (lambda: D.NoiseSchedule.from_betas(torch.tensor([0.1, 1.0])), ValueError),
        (lambda: D.NoiseSchedule.from_betas(torch.ones(2, 2) * 0.1), ValueError),
        (lambda: D.q_sample(torch.zeros(3, 2), torch.tensor([0, 1, 10]), D.NoiseSchedule.linear(10)), ValueError),
        (lambda: D.q_sample(torch.zeros(3, 2), torch.tensor([0.0, 1, 2]), D.NoiseSchedule.linear(10)), TypeError),
        (lambda: D.q_sample(torch.zeros(3, 2), torch.tensor([0, 1]), D.NoiseSchedule.linear(10)), ValueError),
        (lambda: D.q_sample(torch.zeros(3, 2), 0, "linear"), TypeError),
        (lambda: D.q_sample(torch.zeros(3, 2), 0, D.NoiseSchedule.linear(10), torch.zeros(3)), ValueError),
        (lambda: D.ddim_step(torch.zeros(1), torch.zeros(1), 3, 3, D.NoiseSchedule.linear(10)), ValueError),
        (lambda: D.ddim_timesteps(10, 11), ValueError),
        (lambda: D.p_sample(toy_model, torch.zeros(2, 2), 1, D.NoiseSchedule.linear(4), variance="x"), ValueError),
    ],
)
def test_bad_input_is_rejected(call, error):
    with pytest.raises(error):
        call()


# --------------------------------------------------------------------------
# The forward process
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_sample_mean_and_variance_on_100k_samples(kind):
    schedule = getattr(D.NoiseSchedule, kind)(1000)
    n = 100_000
    x0 = torch.tensor([1.5, -0.5]).expand(n, 2)
    for t in (0, 100, 500, 999):
        xt = D.q_sample(x0, torch.full((n,), t), schedule, generator=torch.Generator().manual_seed(t))
        ab = float(torch.prod(1 - schedule.betas[: t + 1].double()))
        mean, var = math.sqrt(ab) * x0[0], 1 - ab
        se = math.sqrt(var / n)
        assert torch.allclose(xt.mean(0).double(), mean.double(), atol=5 * se + 1e-6), (t, xt.mean(0), mean)
        assert torch.allclose(xt.var(0).double(), torch.tensor([var, var]).double(), rtol=0.02, atol=1e-7)


def test_q_sample_per_example_t_and_any_shape():
    schedule = D.NoiseSchedule.linear(50)
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 7, 30, 49])
    out = D.q_sample(x0, t, schedule, noise)
    for i in range(4):
        ab = float(torch.prod(1 - schedule.betas[: int(t[i]) + 1].double()))
        assert torch.allclose(out[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i], atol=1e-5)


def test_step_by_step_noising_matches_the_closed_form():
    schedule = D.NoiseSchedule.cosine(100)
    torch.manual_seed(0)
    x = torch.full((100_000, 1), 2.0)
    for t in range(40):
        x = D.q_step(x, t, schedule)
    ab = float(schedule.alpha_bars[39])
    assert x.mean().item() == pytest.approx(2 * math.sqrt(ab), abs=0.02)
    assert x.var().item() == pytest.approx(1 - ab, rel=0.02)


# --------------------------------------------------------------------------
# The posterior and the reverse step
# --------------------------------------------------------------------------


def test_posterior_equals_gaussian_conditioning():
    """q(x_{t-1} | x_t, x_0) from the joint Gaussian of (x_{t-1}, x_t) given x_0, by hand."""
    schedule = D.NoiseSchedule.linear(100)
    betas = [float(b) for b in schedule.betas.double()]
    g = torch.Generator().manual_seed(0)
    x0, xt = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    t = torch.tensor([0, 1, 17, 50, 99])
    mean, var = D.q_posterior_mean_variance(x0, xt, t, schedule)
    assert mean.shape == (5, 3) and var.shape == (5, 1)
    for i, ti in enumerate(t.tolist()):
        ab_prev = math.prod(1 - b for b in betas[:ti])  # empty product = 1 at t = 0
        a_t = 1 - betas[ti]
        # x_{t-1} = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) e1; x_t = sqrt(a_t) x_{t-1} + sqrt(beta_t) e2
        m1, v11 = math.sqrt(ab_prev) * x0[i].double(), 1 - ab_prev
        m2 = math.sqrt(a_t) * m1
        v12 = math.sqrt(a_t) * v11
        v22 = a_t * v11 + betas[ti]
        cond_mean = m1 + v12 / v22 * (xt[i].double() - m2)
        cond_var = v11 - v12**2 / v22
        assert torch.allclose(mean[i].double(), cond_mean, atol=1e-5), ti
        assert float(var[i]) == pytest.approx(cond_var, abs=1e-7), ti


def _oracle(x0, schedule, noise_or_none=None):
    """A model that knows x_0 and so returns the exact noise in x_t."""

    def model(xt, t, labels=None):
        e = D.extract(schedule.alpha_bars.double(), t, xt)
        return ((xt.double() - e.sqrt() * x0.double()) / (1 - e).sqrt()).to(xt.dtype)

    return model


def test_reverse_step_with_true_noise_gives_the_posterior_mean():
    schedule = D.NoiseSchedule.cosine(50)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(6, 2, generator=g)
    for t in (0, 1, 25, 49):
        xt = D.q_sample(x0, t, schedule, generator=g)
        mean, _ = D.q_posterior_mean_variance(x0, xt, t, schedule)
        step = D.p_sample(_oracle(x0, schedule), xt, t, schedule, noise=torch.zeros_like(xt))
        assert torch.allclose(step, mean, atol=2e-4), t


def test_no_noise_at_the_last_step():
    schedule = D.NoiseSchedule.linear(10)
    xt = torch.randn(4, 2)
    a = D.p_sample(toy_model, xt, 0, schedule, noise=torch.randn(4, 2))
    b = D.p_sample(toy_model, xt, 0, schedule, noise=torch.randn(4, 2))
    assert torch.equal(a, b)
    c = D.p_sample(toy_model, xt, 1, schedule, noise=torch.ones(4, 2))
    d = D.p_sample(toy_model, xt, 1, schedule, noise=torch.zeros(4, 2))
    assert torch.allclose(c - d, schedule.betas[1].sqrt() * torch.ones(4, 2))


def test_ddpm_with_the_exact_noise_predictor_samples_the_data_distribution():
    """For data N(mu, s^2) the optimal predictor is known in closed form; DDPM and DDIM must then return N(mu, s^2)."""
    mu, s = 1.0, 0.5
    schedule = D.NoiseSchedule.linear(1000)

    def model(xt, t, labels=None):
        ab = D.extract(schedule.alpha_bars, t, xt)
        return (1 - ab).sqrt() * (xt - ab.sqrt() * mu) / (ab * s**2 + 1 - ab)

    g = torch.Generator().manual_seed(0)
    runs = {
        "ddpm": (D.ddpm_sample(model, (20_000, 1), schedule, generator=g), 0.02),
        "ddpm posterior variance": (
            D.ddpm_sample(model, (20_000, 1), schedule, generator=g, variance="posterior"), 0.03
        ),
        "ddim 1000 steps": (D.ddim_sample(model, (20_000, 1), schedule, 1000, generator=g), 0.02),
        # 50 large deterministic steps shrink the spread a little (discretisation error)
        "ddim 50 steps": (D.ddim_sample(model, (20_000, 1), schedule, 50, generator=g), 0.06),
    }
    for name, (x, rel) in runs.items():
        assert x.mean().item() == pytest.approx(mu, abs=0.03), name
        assert x.std().item() == pytest.approx(s, rel=rel), name


# --------------------------------------------------------------------------
# DDIM
# --------------------------------------------------------------------------


def test_ddim_timesteps():
    assert D.ddim_timesteps(10, 10) == list(range(9, -1, -1))
    assert D.ddim_timesteps(1000, 4) == [999, 749, 499, 249]
    times = D.ddim_timesteps(1000, 50)
    assert len(times) == 50 and times[0] == 999 and all(a > b for a, b in zip(times, times[1:]))


def test_ddim_with_all_steps_and_eta_0_is_deterministic():
    schedule = D.NoiseSchedule.linear(100)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    a = D.ddim_sample(toy_model, (8, 2), schedule, 100, x_T=x_T, generator=torch.Generator().manual_seed(1))
    b = D.ddim_sample(toy_model, (8, 2), schedule, 100, x_T=x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_ddim_with_eta_1_has_ddpm_posterior_variance():
    schedule = D.NoiseSchedule.cosine(100)
    g = torch.Generator().manual_seed(0)
    xt, noise = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    for t in (1, 10, 99):
        eps = toy_model(xt, t)
        ddim = D.ddim_step(eps, xt, t, t - 1, schedule, eta=1.0, noise=noise)
        ddpm = D.p_sample(toy_model, xt, t, schedule, noise=noise, variance="posterior")
        assert torch.allclose(ddim, ddpm, atol=1e-4), t
        # and the noise enters with exactly the posterior standard deviation
        quiet = D.ddim_step(eps, xt, t, t - 1, schedule, 1.0, 0 * noise)
        spread = D.ddim_step(eps, xt, t, t - 1, schedule, 1.0, noise) - quiet
        assert torch.allclose(spread, schedule.posterior_variance[t].sqrt() * noise, atol=1e-5)


# --------------------------------------------------------------------------
# Loss, guidance, network
# --------------------------------------------------------------------------


def test_loss_is_zero_for_the_oracle_and_mean_noise_square_for_zero():
    schedule = D.NoiseSchedule.linear(100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, generator=g)
    t = torch.randint(100, (64,), generator=g)
    noise = torch.randn(64, 2, generator=g)
    assert D.diffusion_loss(_oracle(x0, schedule), x0, schedule, t=t, noise=noise).item() < 1e-6
    zero = D.diffusion_loss(lambda x, t: torch.zeros_like(x), x0, schedule, t=t, noise=noise)
    assert zero.item() == pytest.approx((noise**2).mean().item(), rel=1e-6)


def test_loss_draws_every_timestep_uniformly():
    rec = RecordingModel()
    D.diffusion_loss(rec, torch.zeros(5000, 2), D.NoiseSchedule.linear(10), generator=torch.Generator().manual_seed(0))
    t = rec.calls[0][1]
    counts = torch.bincount(t, minlength=10)
    assert len(counts) == 10 and counts.min() > 400


def test_guidance_interpolates_and_extrapolates():
    x, t, y = torch.randn(4, 2), torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 2, 3])
    cond, uncond = toy_model(x, t, y), toy_model(x, t)
    assert torch.allclose(D.guided_noise(toy_model, x, t, y, 1.0), cond)
    assert torch.allclose(D.guided_noise(toy_model, x, t, y, 0.0), uncond)
    assert torch.allclose(D.guided_noise(toy_model, x, t, y, 3.0), uncond + 3 * (cond - uncond))


def test_guided_model_is_guided_noise_with_labels_and_the_model_without():
    x, t, y = torch.randn(4, 2), torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 2, 3])
    model = D.guided(toy_model, 3.0)
    assert torch.equal(model(x, t, y), D.guided_noise(toy_model, x, t, y, 3.0))
    assert torch.equal(model(x, t), toy_model(x, t))
    assert D.guided(toy_model, None) is toy_model and D.guided(toy_model, 1.0) is toy_model


def test_ddpm_chain_yields_every_step_before_it_runs_and_ends_at_the_sample():
    """x_T first, one state per step (the input of p_sample at t), the sample last, equal to ddpm_sample's."""
    schedule = D.NoiseSchedule.linear(6)
    states = list(D.ddpm_chain(toy_model, (3, 2), schedule, generator=torch.Generator().manual_seed(0)))
    assert [t for t, _ in states] == [5, 4, 3, 2, 1, 0, -1]
    assert torch.equal(states[0][1], torch.randn((3, 2), generator=torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(0)
    torch.randn((3, 2), generator=g)  # x_T
    for (t, x), (_, after) in zip(states, states[1:]):
        noise = torch.randn((3, 2), generator=g) if t > 0 else None
        assert torch.equal(after, D.p_sample(toy_model, x, t, schedule, noise)), t
    sample = D.ddpm_sample(toy_model, (3, 2), schedule, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample, states[-1][1])


def test_denoiser_shapes_and_null_label():
    model = D.Denoiser((1, 8, 8), hidden=32, depth=2, num_classes=10)
    x, t = torch.randn(5, 1, 8, 8), torch.randint(1000, (5,))
    assert model(x, t).shape == x.shape
    assert model(x, t, torch.arange(5)).shape == x.shape
    null = torch.full((5,), model.null_label)
    assert torch.equal(model(x, t), model(x, t, null))
    with pytest.raises(ValueError):
        model(torch.randn(5, 64), t)
    with pytest.raises(ValueError):
        D.Denoiser((2,), num_classes=0)(torch.randn(3, 2), torch.zeros(3, dtype=torch.long), torch.zeros(3))


def test_a_denoiser_learns_on_the_swiss_roll():
    from course_lib.data import random_batches, swiss_roll
    from course_lib.train import train

    torch.manual_seed(0)
    schedule = D.NoiseSchedule.linear(100)
    model = D.Denoiser((2,), hidden=64, depth=2)
    history = train(
        model, random_batches(swiss_roll(2000), batch_size=128), D.denoiser_loss_fn(schedule), 300,
        lr=3e-3, progress=False,
    )
    last = sum(v for _, v in history.train["loss"][-30:]) / 30
    assert last < 0.7  # predicting zero noise scores E[noise^2] = 1


@pytest.mark.parametrize("conditional", [False, True])
def test_train_denoiser_takes_the_steps_of_the_course_training_loop(conditional):
    """train_denoiser = course_lib.train.train with denoiser_loss_fn and its warm-up/cosine rate as a LambdaLR."""
    from course_lib.data import random_batches
    from course_lib.train import adamw, lr_factor, train

    schedule, steps, warmup = D.NoiseSchedule.linear(100), 30, 5
    x = torch.randn(500, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(4, (500,), generator=torch.Generator().manual_seed(1))
    data, p_uncond = ((x, y), 0.2) if conditional else ((x,), 0.0)
    runs = []
    for loop in ("train", "train_denoiser"):
        torch.manual_seed(0)
        model = D.Denoiser((1, 4, 4), hidden=32, depth=2, num_classes=4 if conditional else 0)
        batches = random_batches(*data, batch_size=64)
        if loop == "train":
            history = train(model, batches, D.denoiser_loss_fn(schedule, p_uncond), steps, lr=3e-3,
                            warmup_steps=warmup, progress=False)
            losses = [v for _, v in history.train["loss"]]
        else:
            optimizer = adamw(model, 3e-3)
            rates = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps, warmup))
            model.eval()  # train_denoiser switches it to training mode
            losses = D.train_denoiser(model, batches, schedule, optimizer, steps, p_uncond, rates)
            assert model.training and all(type(v) is float for v in losses)
        runs.append((losses, torch.cat([q.detach().flatten() for q in model.parameters()])))
    (losses_a, params_a), (losses_b, params_b) = runs
    assert len(losses_b) == steps and losses_b == pytest.approx(losses_a, rel=1e-5)
    # the same updates; gradient clipping sums the norms in another parameter order (last-bit differences)
    assert torch.allclose(params_a, params_b, atol=1e-6)
    assert sum(losses_b[-5:]) < sum(losses_b[:5])  # and it learns


def test_train_denoiser_rejects_bad_arguments():
    model = D.Denoiser((2,), hidden=8, depth=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = iter([(torch.randn(4, 2),)] * 3)
    for bad in ({"steps": 0}, {"steps": 2, "p_uncond": 1.5}):
        with pytest.raises(ValueError):
            D.train_denoiser(model, batches, D.NoiseSchedule.linear(10), optimizer, **bad)


def test_drop_labels():
    labels = torch.zeros(10_000, dtype=torch.long)
    dropped = D.drop_labels(labels, 0.2, 10, torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 10}
    assert (dropped == 10).float().mean().item() == pytest.approx(0.2, abs=0.02)


# --------------------------------------------------------------------------
# diffusers, when installed ([hf])
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_agrees_with_diffusers(kind, name):
    """Schedule, q_sample (add_noise) and the posterior agree with diffusers' DDPMScheduler to 1e-5."""
    diffusers = oracle("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=name, clip_sample=False)
    schedule = getattr(D.NoiseSchedule, kind)(1000)
    assert torch.allclose(schedule.betas, ref.betas.float(), atol=1e-5)
    assert torch.allclose(schedule.alpha_bars, ref.alphas_cumprod.float(), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 1, 8, 8, generator=g), torch.randn(6, 1, 8, 8, generator=g)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    xt = D.q_sample(x0, t, schedule, noise)
    assert torch.allclose(xt, ref.add_noise(x0, noise, t), atol=1e-5)
    # diffusers keeps its schedule in float32, where 1 - alpha_bar_t cancels catastrophically at small t
    # (at t = 1 it is ~2e-4: a relative error of ~5e-4 in the posterior coefficients, measured 2e-4 off in
    # prev_sample). The course does that arithmetic in float64; for the posterior step diffusers gets the
    # same precision, from its own betas.
    ref.betas = ref.betas.double()
    ref.alphas = 1 - ref.betas
    ref.alphas_cumprod = torch.cumprod(ref.alphas, dim=0)
    for i, ti in enumerate(t.tolist()):
        x0_i, xt_i = x0[i : i + 1], xt[i : i + 1]
        eps = noise[i : i + 1]  # the true noise: diffusers' predicted x_0 is then x_0 itself
        out = ref.step(eps, ti, xt_i, generator=torch.Generator().manual_seed(1))
        mean, var = D.q_posterior_mean_variance(x0_i, xt_i, ti, schedule)
        z = torch.randn(xt_i.shape, generator=torch.Generator().manual_seed(1)) if ti > 0 else torch.zeros_like(xt_i)
        expected = mean + var.clamp(min=1e-20).sqrt() * z
        assert torch.allclose(out.prev_sample.float(), expected, atol=1e-4), ti
        if ti > 0:
            assert float(ref._get_variance(ti)) == pytest.approx(float(var.squeeze()), abs=1e-5)


# --------------------------------------------------------------------------
# Figures and the t-slider (course_lib.viz, Diffusion section)
# --------------------------------------------------------------------------


def test_diffusion_figures_and_explorer():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib import viz

    schedules = {"linear": D.NoiseSchedule.linear(100), "cosine": D.NoiseSchedule.cosine(100)}
    images, points = torch.rand(4, 1, 8, 8) * 2 - 1, torch.randn(50, 2)
    fig = viz.noising_strip(images, schedules["linear"], [0, 50, 99])
    assert len(fig.axes) == 1
    assert len(viz.noising_strip(points, schedules["cosine"], [0, 50, 99]).axes) == 3
    with pytest.raises(ValueError):
        viz.noising_strip(torch.randn(4, 3), schedules["linear"], [0])
    assert len(viz.plot_snr(schedules).axes[0].lines) == 3  # two schedules and the SNR = 1 line
    assert len(viz.reverse_chain_figure({99: points, -1: points}, reference=points).axes) == 2
    widget = viz.diffusion_explorer(images, points, schedules)
    slider = widget.children[0]
    assert (slider.min, slider.max) == (0, 99)
    slider.value = 60  # redraws without error
    with pytest.raises(ValueError):
        viz.diffusion_explorer(images, points, {})
    plt.close("all")
