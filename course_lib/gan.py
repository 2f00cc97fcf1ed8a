"""Generative adversarial networks: the two players, their losses, one step, a trainer.

Read top to bottom, this is notebook 01 in code:

1. the players: an MLP generator ``G(z)`` and discriminator ``D(x)`` for 2-D
   data, and a small convolutional pair for 8x8 digits;
2. the game of Goodfellow et al. (2014), whose optimal discriminator is
   ``p_data / (p_data + p_g)`` (:func:`optimal_discriminator`);
3. the losses on logits: :func:`discriminator_loss` (binary cross-entropy) and
   :func:`generator_loss` (non-saturating, or the original saturating form),
   written with ``softplus`` so they stay finite for any logit;
4. one alternating step (:func:`gan_train_step`): D on real and *detached*
   fake samples first, then G against the updated D;
5. WGAN-GP (Gulrajani et al. 2017): :func:`gradient_penalty` and
   :func:`wgan_gp_train_step`;
6. :func:`fit_gan`, the whole training loop written out (the notebook's
   synthesis exercise), and :func:`train_gan`, which hands a step to the
   course's one training loop (:func:`course_lib.train.run_loop`) and also
   runs WGAN-GP and extra D updates.

Logits, not probabilities, cross every interface: ``D`` ends in a linear layer
and the losses apply the sigmoid inside, where it can be done stably.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .train import History, eval_mode, run_loop

# --------------------------------------------------------------------------
# The players
# --------------------------------------------------------------------------


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def mlp(in_dim: int, out_dim: int, hidden: int = 128, layers: int = 3, activation: str = "relu") -> nn.Sequential:
    """A plain MLP: ``layers`` linear layers with ``activation`` between them (none at the end).

    Maps ``(B, in_dim)`` to ``(B, out_dim)``.
    """
    _check_positive(in_dim=in_dim, out_dim=out_dim, hidden=hidden, layers=layers)
    acts = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh, "silu": nn.SiLU}
    if activation not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        modules.append(nn.Linear(a, b))
        if i < layers - 1:
            modules.append(acts[activation]())
    return nn.Sequential(*modules)


def mlp_generator(latent_dim: int = 2, data_dim: int = 2, hidden: int = 128, layers: int = 3) -> nn.Sequential:
    """G for 2-D data: ``z (B, latent_dim) -> x (B, data_dim)``, ReLU hidden layers, linear output."""
    return mlp(latent_dim, data_dim, hidden, layers, "relu")


def mlp_discriminator(
    data_dim: int = 2, hidden: int = 128, layers: int = 3, minibatch_std: bool = False
) -> nn.Sequential:
    """D for 2-D data: ``x (B, data_dim) -> logits (B, 1)``, LeakyReLU hidden layers.

    ``minibatch_std=True`` appends the batch's feature spread (:class:`MinibatchStd`)
    before the last layer, so D can see when a batch of fakes is too uniform.
    """
    net = mlp(data_dim, 1, hidden, layers, "leaky_relu")
    if minibatch_std:
        last = net[-1]
        net[-1] = MinibatchStd()
        net.append(nn.Linear(last.in_features + 1, 1))
    return net


class DigitsGenerator(nn.Module):
    """A small DCGAN-style generator for 8x8 digits: ``z (B, latent_dim) -> images (B, 1, 8, 8)`` in [-1, 1].

    A linear layer makes a ``(B, 2c, 2, 2)`` map; two transposed convolutions
    double it to 4x4 and 8x8 (batch norm and ReLU between); ``tanh`` at the end.
    """

    def __init__(self, latent_dim: int = 32, channels: int = 64):
        super().__init__()
        _check_positive(latent_dim=latent_dim, channels=channels)
        self.latent_dim = latent_dim
        c = channels
        self.project = nn.Sequential(nn.Linear(latent_dim, 2 * c * 2 * 2), nn.BatchNorm1d(2 * c * 4), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),  # (B, c, 4, 4)
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1),  # (B, c/2, 8, 8)
            nn.BatchNorm2d(c // 2),
            nn.ReLU(),
            nn.Conv2d(c // 2, 1, 3, padding=1),  # (B, 1, 8, 8)
            nn.Tanh(),
        )
        self.channels = c

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        h = self.project(z).view(len(z), 2 * self.channels, 2, 2)  # (B, 2c, 2, 2)
        return self.net(h)


class MinibatchStd(nn.Module):
    """Append the batch's average standard deviation as one extra feature: (B, F) -> (B, F + 1).

    The minibatch-standard-deviation layer of Karras et al. (2018, ProGAN): a
    collapsed generator makes batches whose samples are all alike, and this
    feature lets D see that at once (PacGAN's packing serves the same purpose).
    """

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        spread = h.std(dim=0, unbiased=False).mean() if len(h) > 1 else h.new_zeros(())
        return torch.cat([h, spread.expand(len(h), 1)], dim=1)


class DigitsDiscriminator(nn.Module):
    """A small conv discriminator for 8x8 digits: ``images (B, 1, 8, 8) -> logits (B, 1)``.

    Two stride-2 convolutions (8x8 -> 4x4 -> 2x2) with LeakyReLU, a
    minibatch-standard-deviation feature (:class:`MinibatchStd`, which fights
    mode collapse), then a linear layer. ``dropout`` (default 0.3) keeps it
    from memorising the 1,437 training digits.
    """

    def __init__(self, channels: int = 64, dropout: float = 0.3, minibatch_std: bool = True):
        super().__init__()
        _check_positive(channels=channels)
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),  # (B, c, 4, 4)
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),  # (B, 2c, 2, 2)
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Flatten(),  # (B, 8c)
            MinibatchStd() if minibatch_std else nn.Identity(),  # (B, 8c + 1)
            nn.Linear(2 * c * 4 + int(minibatch_std), 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"images must have shape (B, 1, 8, 8), got {tuple(x.shape)}")
        return self.net(x)


# --------------------------------------------------------------------------
# The game and its losses
# --------------------------------------------------------------------------


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)) for densities evaluated at the same points.

    p_data, p_g: non-negative tensors of one shape. Returns that shape; 1/2
    where both densities are 0 (no evidence either way).
    """
    if p_data.shape != p_g.shape:
        raise ValueError(f"p_data and p_g must have the same shape, got {tuple(p_data.shape)} and {tuple(p_g.shape)}")
    if (p_data < 0).any() or (p_g < 0).any():
        raise ValueError("densities must be non-negative")
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.clamp_min(torch.finfo(total.dtype).tiny), torch.full_like(total, 0.5))


def _check_logits(**logits: torch.Tensor) -> None:
    for name, value in logits.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if value.numel() == 0:
            raise ValueError(f"{name} is empty")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D: real samples labelled 1, fake samples labelled 0.

    real_logits: (B_real, ...) logits D gave to data; fake_logits: (B_fake, ...) to G's samples.
    Returns a scalar ``mean(-log sigmoid(real)) + mean(-log(1 - sigmoid(fake)))``,
    computed as ``mean(softplus(-real)) + mean(softplus(fake))``: finite for any logit.
    """
    _check_logits(real_logits=real_logits, fake_logits=fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, non_saturating: bool = True) -> torch.Tensor:
    """G's loss on the logits D gave its samples: (B, ...) -> scalar.

    non_saturating=True: ``mean(-log sigmoid(fake)) = mean(softplus(-fake))``, the
    heuristic of Goodfellow et al. (2014): G maximises log D(G(z)).
    non_saturating=False: the minimax form ``mean(log(1 - sigmoid(fake))) = -mean(softplus(fake))``,
    whose gradient vanishes exactly when D confidently rejects G's samples.
    """
    _check_logits(fake_logits=fake_logits)
    if non_saturating:
        return F.softplus(-fake_logits).mean()
    return -F.softplus(fake_logits).mean()


# --------------------------------------------------------------------------
# One step of the game
# --------------------------------------------------------------------------


def gan_train_step(
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
    non_saturating: bool = True,
) -> tuple[float, float]:
    """One alternating step: update D once, then G once. Returns ``(d_loss, g_loss)`` as floats.

    real: (B, ...) a batch of data; z: (B_z, latent_dim) latent vectors for G.
    D learns from real (label 1) and ``G(z).detach()`` (label 0): detaching keeps
    D's loss from backpropagating into G. G then learns against the *updated* D,
    through a fresh ``D(fake)`` (non-saturating loss unless asked otherwise); its
    backward pass also reaches D's parameters, but ``opt_D.zero_grad()`` clears
    those before D's next update.
    """
    if not isinstance(real, torch.Tensor) or not isinstance(z, torch.Tensor):
        raise TypeError(f"real and z must be tensors, got {type(real).__name__} and {type(z).__name__}")
    fake = G(z)
    # 1. Discriminator: real -> 1, fake -> 0. No gradient into G.
    d_loss = discriminator_loss(D(real), D(fake.detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    # 2. Generator: make the updated D call its samples real.
    g_loss = generator_loss(D(fake), non_saturating)
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


# --------------------------------------------------------------------------
# WGAN-GP
# --------------------------------------------------------------------------


def gradient_penalty(
    critic: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """The WGAN-GP penalty of Gulrajani et al. (2017): ``mean((||grad_x critic(x_hat)||_2 - 1)^2)``.

    real, fake: (B, ...) batches of the same shape. x_hat = alpha * real + (1 - alpha) * fake,
    with one alpha per sample: ``alpha`` of shape (B,) or (B, 1, ..., 1); drawn from
    U(0, 1) when None. The gradient norm is taken over all non-batch axes of each
    sample. Returns a scalar that is differentiable with respect to the critic's
    parameters (``create_graph=True``), so it can be added to the critic's loss.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if real.dim() < 2:
        raise ValueError(f"real and fake must be (B, ...) batches with a feature axis, got {tuple(real.shape)}")
    B = real.shape[0]
    shape = (B,) + (1,) * (real.dim() - 1)
    if alpha is None:
        alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    elif alpha.numel() != B:
        raise ValueError(f"alpha must have one entry per sample (B={B}), got shape {tuple(alpha.shape)}")
    alpha = alpha.reshape(shape).to(real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)  # (B, ...)
    scores = critic(x_hat)
    grad = None
    if scores.requires_grad:
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True, allow_unused=True)
    if grad is None:  # the critic ignores its input: its gradient is 0
        grad = torch.zeros_like(x_hat)
    norms = grad.flatten(1).norm(dim=1)  # (B,)
    return ((norms - 1) ** 2).mean()


def wgan_gp_train_step(
    G: nn.Module,
    critic: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_C: torch.optim.Optimizer,
    reals: Sequence[torch.Tensor],
    zs: Sequence[torch.Tensor],
    gp_weight: float = 10.0,
) -> tuple[float, float, float]:
    """One WGAN-GP step: ``len(reals)`` critic updates, then one generator update.

    reals: n_critic batches (B, ...) of data, one per critic update.
    zs: n_critic + 1 latent batches (B, latent_dim): ``zs[i]`` makes the fakes of
    critic update i (no gradient into G), ``zs[-1]`` the generator's batch.
    Critic loss: ``mean(C(fake)) - mean(C(real)) + gp_weight * gradient_penalty``;
    generator loss: ``-mean(C(G(z)))``.
    Returns ``(critic_loss, generator_loss, penalty)`` of the last critic update, as floats.
    """
    if len(reals) == 0:
        raise ValueError("reals must hold at least one batch (one per critic update)")
    if len(zs) != len(reals) + 1:
        raise ValueError(f"zs must hold len(reals) + 1 = {len(reals) + 1} latent batches, got {len(zs)}")
    for real, z in zip(reals, zs):
        with torch.no_grad():
            fake = G(z)
        penalty = gradient_penalty(critic, real, fake)
        c_loss = critic(fake).mean() - critic(real).mean() + gp_weight * penalty
        opt_C.zero_grad()
        c_loss.backward()
        opt_C.step()
    g_loss = -critic(G(zs[-1])).mean()
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    return c_loss.item(), g_loss.item(), penalty.item()


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def _lr_factor(i: int, steps: int, lr_end: float) -> float:
    """Linear decay of the learning rate: 1 at step 0, ``lr_end`` at step ``steps - 1`` (1 when steps == 1)."""
    return 1 - (1 - lr_end) * i / max(1, steps - 1)


def fit_gan(
    G: nn.Module,
    D: nn.Module,
    sample_real: Callable[[int], torch.Tensor],
    steps: int,
    latent_dim: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    lr_end: float = 0.05,
    d_lr: float | None = None,
    betas: tuple[float, float] = (0.5, 0.999),
    non_saturating: bool = True,
    seed: int = 0,
    callback: Callable[[int, dict[str, list[float]]], None] | None = None,
) -> dict[str, list[float]]:
    """Train G and D for ``steps`` alternating steps of :func:`gan_train_step`; returns the loss history.

    sample_real(n) returns a fresh ``(n, ...)`` batch of data; G maps ``(n, latent_dim)`` to
    ``(n, ...)``, D maps samples to logits ``(n, 1)``. One Adam optimiser per player, created
    once: G's with base rate ``lr``, D's with ``d_lr`` (``lr`` when None), both with ``betas``.
    Step i (0-based) runs at the base rates times ``1 - (1 - lr_end) * i / max(1, steps - 1)``:
    a linear decay from the base rate to ``lr_end`` times it at the last step. Each step draws
    one data batch ``sample_real(batch_size)`` and one latent batch ``(batch_size, latent_dim)``
    of standard-normal numbers from a ``torch.Generator`` seeded with ``seed`` (so a run is
    reproducible), then calls ``gan_train_step(..., non_saturating)``.
    ``callback(i, history)``, when given, runs after step i with the history so far.
    Returns ``{"d_loss": [...], "g_loss": [...]}``: ``steps`` Python floats each.

    It gives the same run as :func:`train_gan` with ``GANConfig(d_steps=1, ...)`` and the same seed.
    """
    _check_positive(steps=steps, latent_dim=latent_dim, batch_size=batch_size)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    d_base = lr if d_lr is None else d_lr
    opt_D = torch.optim.Adam(D.parameters(), lr=d_base, betas=betas)
    device = next(G.parameters()).device
    latents = torch.Generator(device="cpu").manual_seed(seed)
    history: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
    for i in range(steps):
        factor = _lr_factor(i, steps, lr_end)
        for opt, base in ((opt_G, lr), (opt_D, d_base)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        real = sample_real(batch_size).to(device)  # (batch_size, ...)
        z = torch.randn(batch_size, latent_dim, generator=latents).to(device)  # (batch_size, latent_dim)
        d_loss, g_loss = gan_train_step(G, D, opt_G, opt_D, real, z, non_saturating)
        history["d_loss"].append(float(d_loss))
        history["g_loss"].append(float(g_loss))
        if callback is not None:
            callback(i, history)
    return history


@dataclass
class GANConfig:
    """How :func:`train_gan` trains: the loss, the optimiser and the schedule.

    loss: ``"non_saturating"``, ``"saturating"`` or ``"wgan_gp"``.
    d_steps: discriminator (critic) updates per generator update; WGAN-GP uses 5.
    lr_end: the learning rate decays linearly (per step) to ``lr * lr_end``.
    d_lr: D's (the critic's) base learning rate when it should differ from G's ``lr``.
    """

    steps: int = 2000
    batch_size: int = 256
    latent_dim: int = 2
    loss: str = "non_saturating"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    d_steps: int = 1
    gp_weight: float = 10.0
    lr_end: float = 0.05
    d_lr: float | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("non_saturating", "saturating", "wgan_gp"):
            raise ValueError(f"loss must be 'non_saturating', 'saturating' or 'wgan_gp', got {self.loss!r}")
        _check_positive(steps=self.steps, batch_size=self.batch_size, latent_dim=self.latent_dim, d_steps=self.d_steps)


def train_gan(
    G: nn.Module,
    D: nn.Module,
    sample_real: Callable[[int], torch.Tensor],
    config: GANConfig,
    *,
    step: Callable[..., tuple[float, ...]] | None = None,
    callback: Callable[[int, History], None] | None = None,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "GAN",
    seed: int = 0,
) -> History:
    """Train G and D with :func:`course_lib.train.run_loop`; returns the history.

    sample_real(batch_size) returns a fresh ``(batch_size, ...)`` batch of data.
    ``step`` replaces :func:`gan_train_step`, or :func:`wgan_gp_train_step` when
    ``loss="wgan_gp"`` (e.g. the student's own, same signature). Adam with ``config.betas``;
    the learning rate of both players decays linearly to ``lr * lr_end``.
    """
    step = step or (wgan_gp_train_step if config.loss == "wgan_gp" else gan_train_step)
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr, betas=config.betas)
    d_lr = config.lr if config.d_lr is None else config.d_lr
    opt_D = torch.optim.Adam(D.parameters(), lr=d_lr, betas=config.betas)
    device = next(G.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)

    def latent(n: int) -> torch.Tensor:
        return torch.randn(n, config.latent_dim, generator=g).to(device)

    def step_fn(i: int) -> dict[str, float]:
        factor = _lr_factor(i, config.steps, config.lr_end)
        for opt, base in ((opt_G, config.lr), (opt_D, d_lr)):
            for group in opt.param_groups:
                group["lr"] = base * factor
        G.train()
        D.train()
        if config.loss == "wgan_gp":
            reals = [sample_real(config.batch_size).to(device) for _ in range(config.d_steps)]
            zs = [latent(config.batch_size) for _ in range(config.d_steps + 1)]
            c_loss, g_loss, penalty = step(G, D, opt_G, opt_D, reals, zs, config.gp_weight)
            return {"d_loss": c_loss, "g_loss": g_loss, "penalty": penalty}
        non_saturating = config.loss == "non_saturating"
        for _ in range(config.d_steps - 1):  # extra D-only updates
            with torch.no_grad():
                fake = G(latent(config.batch_size))
            d_loss = discriminator_loss(D(sample_real(config.batch_size).to(device)), D(fake))
            opt_D.zero_grad()
            d_loss.backward()
            opt_D.step()
        d_loss, g_loss = step(
            G, D, opt_G, opt_D, sample_real(config.batch_size).to(device), latent(config.batch_size),
            non_saturating=non_saturating,
        )
        return {"d_loss": float(d_loss), "g_loss": float(g_loss)}

    return run_loop(step_fn, config.steps, evaluate=evaluate, eval_every=eval_every, callback=callback,
                    progress=progress, desc=desc)


@torch.no_grad()
def sample(G: nn.Module, n: int, latent_dim: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples of G in eval mode from seeded standard-normal latents: (n, ...)."""
    _check_positive(n=n, latent_dim=latent_dim)
    with eval_mode(G):
        device = next(G.parameters()).device
        z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        return G(z).cpu()


__all__ = [
    "DigitsDiscriminator",
    "DigitsGenerator",
    "GANConfig",
    "MinibatchStd",
    "discriminator_loss",
    "fit_gan",
    "gan_train_step",
    "generator_loss",
    "gradient_penalty",
    "mlp",
    "mlp_discriminator",
    "mlp_generator",
    "optimal_discriminator",
    "sample",
    "train_gan",
    "wgan_gp_train_step",
]
