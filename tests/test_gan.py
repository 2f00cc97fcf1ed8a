"""course_lib.gan against independent facts: torch's BCE, known densities, closed-form gradients."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import gan


def _logits(seed: int, *shape: int, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discriminator_loss_is_bce_with_logits(seed):
    real, fake = _logits(seed, 7, 1), _logits(seed + 10, 5, 1)
    expected = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )
    torch.testing.assert_close(gan.discriminator_loss(real, fake), expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_generator_losses_are_bce_forms(seed):
    fake = _logits(seed, 9, 1)
    ones, zeros = torch.ones_like(fake), torch.zeros_like(fake)
    torch.testing.assert_close(gan.generator_loss(fake), F.binary_cross_entropy_with_logits(fake, ones))
    torch.testing.assert_close(
        gan.generator_loss(fake, non_saturating=False), -F.binary_cross_entropy_with_logits(fake, zeros)
    )


def test_losses_match_the_probability_formulas_for_moderate_logits():
    x = torch.linspace(-4, 4, 11, dtype=torch.float64)
    p = torch.sigmoid(x)
    torch.testing.assert_close(gan.discriminator_loss(x, x), -(torch.log(p).mean() + torch.log(1 - p).mean()))
    torch.testing.assert_close(gan.generator_loss(x), -torch.log(p).mean())
    torch.testing.assert_close(gan.generator_loss(x, non_saturating=False), torch.log(1 - p).mean())


def test_losses_stay_finite_and_right_at_extreme_logits():
    big = torch.tensor([100.0, -100.0])
    d = gan.discriminator_loss(big, big)
    # softplus(-100) ~ 0, softplus(100) = 100: mean over the two -> 50 per term.
    assert torch.isfinite(d) and math.isclose(d.item(), 100.0, rel_tol=1e-6)
    assert math.isclose(gan.generator_loss(torch.tensor([-100.0])).item(), 100.0, rel_tol=1e-6)
    assert math.isclose(gan.generator_loss(torch.tensor([100.0])).item(), 0.0, abs_tol=1e-6)
    assert math.isclose(gan.generator_loss(torch.tensor([100.0]), non_saturating=False).item(), -100.0, rel_tol=1e-6)
    for loss in (gan.discriminator_loss(big.requires_grad_(), big), gan.generator_loss(big)):
        assert torch.isfinite(loss)


def test_non_saturating_gradient_does_not_vanish_when_d_rejects_fakes():
    fake = torch.tensor([-10.0], requires_grad=True)  # D is sure the sample is fake
    (g_ns,) = torch.autograd.grad(gan.generator_loss(fake), fake)
    (g_sat,) = torch.autograd.grad(gan.generator_loss(fake, non_saturating=False), fake)
    assert abs(g_ns.item()) > 0.99 and abs(g_sat.item()) < 1e-4


def test_losses_reject_bad_input():
    with pytest.raises(TypeError, match="floating"):
        gan.discriminator_loss(torch.tensor([1, 2]), torch.tensor([0.5]))
    with pytest.raises(TypeError, match="Tensor"):
        gan.generator_loss([0.5])
    with pytest.raises(ValueError, match="empty"):
        gan.generator_loss(torch.tensor([]))


# --------------------------------------------------------------------------
# The optimal discriminator
# --------------------------------------------------------------------------


def test_optimal_discriminator_on_two_known_gaussians():
    # p_data = N(1, 1), p_g = N(-1, 1): D*(x) = sigmoid(log p_data - log p_g) = sigmoid(2x).
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    dist_data, dist_g = torch.distributions.Normal(1.0, 1.0), torch.distributions.Normal(-1.0, 1.0)
    d = gan.optimal_discriminator(dist_data.log_prob(x).exp(), dist_g.log_prob(x).exp())
    torch.testing.assert_close(d, torch.sigmoid(2 * x))


def test_optimal_discriminator_maximises_the_value_function_pointwise():
    # V(D) = p log D + q log(1 - D) is maximised at D = p / (p + q): check against a grid search.
    p, q = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.9, dtype=torch.float64)
    grid = torch.linspace(1e-4, 1 - 1e-4, 100_001, dtype=torch.float64)
    best = grid[(p * torch.log(grid) + q * torch.log(1 - grid)).argmax()]
    assert abs(gan.optimal_discriminator(p, q).item() - best.item()) < 1e-4
    assert gan.optimal_discriminator(torch.zeros(2), torch.zeros(2)).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="same shape"):
        gan.optimal_discriminator(torch.ones(2), torch.ones(3))


# --------------------------------------------------------------------------
# One training step changes only what it should
# --------------------------------------------------------------------------


def _players(seed: int = 0):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    D = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    g = torch.Generator().manual_seed(seed + 1)
    return G, D, torch.randn(16, 2, generator=g), torch.randn(16, 3, generator=g)


def _flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_train_step_matches_a_hand_written_sgd_step():
    G, D, real, z = _players()
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    lr = 0.1
    d_loss, g_loss = gan.gan_train_step(
        G, D, torch.optim.SGD(G.parameters(), lr), torch.optim.SGD(D.parameters(), lr), real, z
    )
    # By hand with torch's BCE: D's gradient from real=1 / fake=0 with G frozen ...
    fake = G0(z).detach()
    d_expected = F.binary_cross_entropy_with_logits(D0(real), torch.ones(16, 1)) + F.binary_cross_entropy_with_logits(
        D0(fake), torch.zeros(16, 1)
    )
    grads = torch.autograd.grad(d_expected, list(D0.parameters()))
    with torch.no_grad():
        for p, gr in zip(D0.parameters(), grads):
            p -= lr * gr
    # ... then G's gradient against the updated D, labels 1.
    g_expected = F.binary_cross_entropy_with_logits(D0(G0(z)), torch.ones(16, 1))
    grads = torch.autograd.grad(g_expected, list(G0.parameters()))
    with torch.no_grad():
        for p, gr in zip(G0.parameters(), grads):
            p -= lr * gr
    assert math.isclose(d_loss, d_expected.item(), rel_tol=1e-5)
    assert math.isclose(g_loss, g_expected.item(), rel_tol=1e-5)
    torch.testing.assert_close(_flat(D), _flat(D0))
    torch.testing.assert_close(_flat(G), _flat(G0))


def test_train_step_d_update_does_not_depend_on_g_and_g_gets_one_backward_pass():
    G, D, real, z = _players(3)
    calls = []
    for p in G.parameters():
        p.register_hook(lambda grad: calls.append(1))
    # A frozen G (lr 0) must leave D's update unchanged; G receives exactly one backward pass.
    D_frozen = copy.deepcopy(D)
    gan.gan_train_step(G, D, torch.optim.SGD(G.parameters(), 0.0), torch.optim.SGD(D.parameters(), 0.1), real, z)
    assert len(calls) == len(list(G.parameters()))
    G2, _, _, _ = _players(3)
    gan.gan_train_step(
        G2, D_frozen, torch.optim.SGD(G2.parameters(), 0.5), torch.optim.SGD(D_frozen.parameters(), 0.1), real, z
    )
    torch.testing.assert_close(_flat(D), _flat(D_frozen))


# --------------------------------------------------------------------------
# Gradient penalty
# --------------------------------------------------------------------------


def test_gradient_penalty_is_one_for_a_constant_critic():
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    assert gan.gradient_penalty(lambda x: 0 * x.sum(1, keepdim=True), real, fake).item() == pytest.approx(1.0)
    assert gan.gradient_penalty(lambda x: torch.ones(len(x), 1), real, fake).item() == pytest.approx(1.0)


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic():
    w = torch.randn(1, 3, 4, 4)
    w = w / w.norm()
    critic = lambda x: (x * w).flatten(1).sum(1, keepdim=True)  # noqa: E731
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    assert gan.gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_closed_form_for_a_quadratic_critic():
    # critic(x) = |x|^2 / 2 has gradient x_hat, so the penalty is mean((|x_hat| - 1)^2).
    real, fake = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    alpha = torch.rand(6, dtype=torch.float64)
    x_hat = alpha[:, None] * real + (1 - alpha[:, None]) * fake
    expected = ((x_hat.norm(dim=1) - 1) ** 2).mean()
    got = gan.gradient_penalty(lambda x: 0.5 * (x**2).sum(1), real, fake, alpha=alpha)
    torch.testing.assert_close(got, expected)


def test_gradient_penalty_backpropagates_into_the_critic():
    critic = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 4.0]]))  # |w| = 5: penalty (5 - 1)^2 = 16, d/dw = 2 (5 - 1) w / 5
    penalty = gan.gradient_penalty(critic, torch.randn(4, 2), torch.randn(4, 2))
    penalty.backward()
    assert penalty.item() == pytest.approx(16.0)
    torch.testing.assert_close(critic.weight.grad, torch.tensor([[4.8, 6.4]]))


def test_gradient_penalty_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        gan.gradient_penalty(nn.Linear(2, 1), torch.randn(4, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="one entry per sample"):
        gan.gradient_penalty(nn.Linear(2, 1), torch.randn(4, 2), torch.randn(4, 2), alpha=torch.rand(3))


def _wgan_players(seed: int = 0, n_critic: int = 3):
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    C = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    g = torch.Generator().manual_seed(seed + 1)
    reals = [torch.randn(6, 2, generator=g, dtype=torch.float64) for _ in range(n_critic)]
    zs = [torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(n_critic + 1)]
    return G, C, reals, zs


def test_wgan_gp_step_matches_the_papers_algorithm_by_hand():
    """Algorithm 1 of Gulrajani et al. (2017), written out with plain SGD and explicit interpolation weights."""
    G, C, reals, zs = _wgan_players()
    G0, C0 = copy.deepcopy(G), copy.deepcopy(C)
    lr, lam = 0.05, 10.0
    torch.manual_seed(123)  # the step draws one alpha per sample per critic update with torch.rand
    c_loss, g_loss, penalty = gan.wgan_gp_train_step(
        G, C, torch.optim.SGD(G.parameters(), lr), torch.optim.SGD(C.parameters(), lr), reals, zs, lam
    )
    torch.manual_seed(123)
    for real, z in zip(reals, zs):
        fake = G0(z).detach()
        eps = torch.rand(len(real), 1, dtype=torch.float64)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(C0(x_hat).sum(), x_hat, create_graph=True)
        gp = ((grad.norm(dim=1) - 1) ** 2).mean()
        loss = C0(fake).mean() - C0(real).mean() + lam * gp
        grads = torch.autograd.grad(loss, list(C0.parameters()))
        with torch.no_grad():
            for p, gr in zip(C0.parameters(), grads):
                p -= lr * gr
    g_expected = -C0(G0(zs[-1])).mean()
    grads = torch.autograd.grad(g_expected, list(G0.parameters()))
    with torch.no_grad():
        for p, gr in zip(G0.parameters(), grads):
            p -= lr * gr
    torch.testing.assert_close(_flat(C), _flat(C0))
    torch.testing.assert_close(_flat(G), _flat(G0))
    assert math.isclose(c_loss, loss.item(), rel_tol=1e-9)
    assert math.isclose(g_loss, g_expected.item(), rel_tol=1e-9)
    assert math.isclose(penalty, gp.item(), rel_tol=1e-9)


def test_wgan_gp_step_critic_updates_do_not_reach_g():
    G, C, reals, zs = _wgan_players(2, n_critic=4)
    calls = []
    first = next(G.parameters())
    first.register_hook(lambda grad: calls.append(1))
    gan.wgan_gp_train_step(G, C, torch.optim.SGD(G.parameters(), 0.1), torch.optim.SGD(C.parameters(), 0.1), reals, zs)
    assert len(calls) == 1  # the generator's own backward pass only


def test_wgan_gp_step_rejects_mismatched_batches():
    G, C, reals, zs = _wgan_players()
    opts = torch.optim.SGD(G.parameters(), 0.1), torch.optim.SGD(C.parameters(), 0.1)
    with pytest.raises(ValueError, match="len\\(reals\\) \\+ 1"):
        gan.wgan_gp_train_step(G, C, *opts, reals, zs[:-1])
    with pytest.raises(ValueError, match="at least one"):
        gan.wgan_gp_train_step(G, C, *opts, [], zs[:1])


# --------------------------------------------------------------------------
# Networks and the trainer
# --------------------------------------------------------------------------


def test_networks_have_the_documented_shapes():
    assert gan.mlp_generator(4, 2)(torch.randn(5, 4)).shape == (5, 2)
    assert gan.mlp_discriminator(2)(torch.randn(5, 2)).shape == (5, 1)
    G, D = gan.DigitsGenerator(latent_dim=8, channels=8), gan.DigitsDiscriminator(channels=8)
    images = G(torch.randn(3, 8))
    assert images.shape == (3, 1, 8, 8) and images.abs().max() <= 1
    assert D(images).shape == (3, 1)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        G(torch.randn(3, 7))
    with pytest.raises(ValueError, match="positive"):
        gan.mlp(0, 2)


@pytest.mark.parametrize("loss", ["non_saturating", "saturating", "wgan_gp"])
def test_train_gan_runs_and_logs_both_losses(loss):
    torch.manual_seed(0)
    G, D = gan.mlp_generator(2, 2, 16), gan.mlp_discriminator(2, 16)
    before = _flat(G).clone()
    config = gan.GANConfig(steps=5, batch_size=32, loss=loss, d_steps=2)
    history = gan.train_gan(G, D, lambda n: torch.randn(n, 2), config, progress=False)
    assert len(history.train["d_loss"]) == len(history.train["g_loss"]) == 5
    assert not torch.equal(before, _flat(G))
    assert gan.sample(G, 7, 2).shape == (7, 2)
    with pytest.raises(ValueError, match="loss must be"):
        gan.GANConfig(loss="hinge")


# --------------------------------------------------------------------------
# fit_gan: the whole loop, written out
# --------------------------------------------------------------------------


def _ring_pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return gan.mlp_generator(3, 2, 16), gan.mlp_discriminator(2, 16, minibatch_std=True)


def _stream(seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda n: torch.randn(n, 2, generator=g) + 1.0


@pytest.mark.parametrize("loss,d_lr", [("non_saturating", None), ("saturating", None), ("non_saturating", 3e-3)])
def test_fit_gan_gives_the_same_run_as_train_gan(loss, d_lr):
    # train_gan goes through course_lib.train.run_loop with its own step function: a second implementation.
    G1, D1 = _ring_pair()
    history = gan.fit_gan(G1, D1, _stream(5), 12, 3, batch_size=32, lr=1e-2, lr_end=0.2, d_lr=d_lr,
                          betas=(0.5, 0.9), non_saturating=loss == "non_saturating", seed=7)
    G2, D2 = _ring_pair()
    config = gan.GANConfig(steps=12, batch_size=32, latent_dim=3, loss=loss, lr=1e-2, lr_end=0.2, d_lr=d_lr,
                           betas=(0.5, 0.9))
    run = gan.train_gan(G2, D2, _stream(5), config, progress=False, seed=7)
    assert history == {name: [value for _, value in run.train[name]] for name in ("d_loss", "g_loss")}
    assert torch.equal(_flat(G1), _flat(G2)) and torch.equal(_flat(D1), _flat(D2))


@pytest.mark.parametrize("steps,factors", [(5, [1.0, 0.775, 0.55, 0.325, 0.1]), (1, [1.0])])
def test_fit_gan_decays_both_learning_rates_linearly_to_lr_end(monkeypatch, steps, factors):
    seen = []

    def spy(G, D, opt_G, opt_D, real, z, non_saturating=True):
        seen.append((opt_G.param_groups[0]["lr"], opt_D.param_groups[0]["lr"], real.shape, z.shape, non_saturating))
        return 0.0, 0.0

    monkeypatch.setattr(gan, "gan_train_step", spy)
    G, D = _ring_pair()
    gan.fit_gan(G, D, _stream(0), steps, 3, batch_size=4, lr=0.2, lr_end=0.1, d_lr=0.05, non_saturating=False)
    assert [lr_g for lr_g, *_ in seen] == pytest.approx([0.2 * f for f in factors])
    assert [lr_d for _, lr_d, *_ in seen] == pytest.approx([0.05 * f for f in factors])
    assert all(step[2:] == (torch.Size([4, 2]), torch.Size([4, 3]), False) for step in seen)


def test_fit_gan_is_reproducible_from_its_seed_alone_and_reports_each_step():
    runs = []
    for global_seed, seed in [(0, 3), (99, 3), (0, 4)]:
        torch.manual_seed(global_seed)  # the latents must not depend on torch's global generator
        G, D = _ring_pair()
        calls = []
        history = gan.fit_gan(G, D, _stream(1), 4, 3, batch_size=8, seed=seed,
                              callback=lambda i, h, calls=calls: calls.append((i, len(h["d_loss"]), len(h["g_loss"]))))
        assert calls == [(i, i + 1, i + 1) for i in range(4)]
        assert all(type(v) is float for values in history.values() for v in values)
        runs.append(_flat(G))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    with pytest.raises(ValueError, match="steps"):
        gan.fit_gan(G, D, _stream(1), 0, 3)


# --------------------------------------------------------------------------
# The notebook's live plot and latent explorer (course_lib.viz, GANs section)
# --------------------------------------------------------------------------


def test_live_plot_redraws_every_n_steps_and_after_the_last():
    import matplotlib

    matplotlib.use("Agg")
    from course_lib import viz
    from course_lib.train import run_loop

    drawn = []
    live = viz.LivePlot(10, every=4, draw_samples=lambda ax: drawn.append(ax))
    run_loop(lambda step: {"d_loss": 1.0 / (step + 1), "g_loss": 0.5}, 10, callback=live, progress=False)
    assert live.figures == 3 and len(drawn) == 3  # after steps 4, 8 and 10
    with pytest.raises(ValueError, match="positive"):
        viz.LivePlot(10, every=0)


def test_latent_explorer_builds_a_widget_and_draws():
    import matplotlib

    matplotlib.use("Agg")
    pytest.importorskip("ipywidgets")
    from course_lib import viz

    G = gan.DigitsGenerator(latent_dim=6, channels=8)
    explorer = viz.latent_explorer(G, 6, label_fn=lambda images: torch.zeros(len(images), dtype=torch.long))
    assert [w.description for w in explorer.children[:3]] == ["seed", "dim", "value"]
    explorer.children[1].value = 5  # redraw with another coordinate: must not raise
    with pytest.raises(ValueError, match="latent_dim"):
        viz.latent_explorer(G, 0)


def test_minibatch_std_feature_is_zero_for_a_collapsed_batch():
    layer = gan.MinibatchStd()
    same = torch.ones(4, 3)
    assert layer(same).shape == (4, 4) and layer(same)[:, -1].abs().max() == 0
    h = torch.tensor([[0.0, 2.0], [2.0, 2.0]])  # per-feature std (population): 1 and 0 -> mean 0.5
    torch.testing.assert_close(layer(h)[:, -1], torch.tensor([0.5, 0.5]))


def test_minibatch_std_discriminator_sees_the_batch_spread():
    torch.manual_seed(0)
    D = gan.mlp_discriminator(2, 16, minibatch_std=True)
    x = torch.randn(8, 2)
    assert D(x).shape == (8, 1)
    # A sample's logit depends on the rest of the batch (through the spread), unlike a plain D's.
    plain = gan.mlp_discriminator(2, 16)
    torch.testing.assert_close(plain(x)[:1], plain(x[:1]))
    assert not torch.allclose(D(x)[:1], D(torch.cat([x[:1], x[1:] * 10.0]))[:1])
