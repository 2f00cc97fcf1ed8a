"""The showdown (notebook 08): three families of generative model, the same digits, the same time.

Each family is the one an earlier notebook built, reused from course_lib:

- ``"gan"``: notebook 01's :class:`~course_lib.gan.DigitsGenerator` against a
  :class:`~course_lib.gan.DigitsDiscriminator`, trained by :func:`~course_lib.gan.train_gan`
  (WGAN-GP, as notebook 01 trains its digits); one pass of G per sample;
- ``"diffusion"``: notebook 03's :class:`~course_lib.diffusion.Denoiser`, unconditional, on a
  cosine schedule of T = 1000 steps, trained with :func:`~course_lib.diffusion.denoiser_loss_fn`
  through the course's loop; sampled with DDPM (all T steps) or DDIM (50 steps);
- ``"transformer"``: the pixel transformer of :mod:`course_lib.pixels`
  (notebook 05's GPT over the 64 pixels, 8 grey levels), trained with the LM loss;
  64 model calls per sample, with or without the KV cache.

Every family trains on ``digits_split("train")`` for the same wall-clock budget
(``recipe.seconds``). The trainers count steps, not seconds (their learning-rate
schedules need the total), so :func:`train_family` first times a few steps of a
throw-away copy, turns the budget into a number of steps, and stops the real run
when the budget is spent should it run slower than that. Every ``eval_every``
seconds of training, ``evaluate(sampler)`` scores the model so far; the time it
takes is not charged to the budget. The trained model is cached with its recipe,
as :mod:`course_lib.pretrained` caches the GPT: a later call with the same recipe
loads it, a changed recipe trains again.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from . import gan, pixels
from .data import digits_split, random_batches
from .diffusion import Denoiser, NoiseSchedule, ddim_sample, ddpm_sample, denoiser_loss_fn
from .env import cache_dir as course_cache_dir
from .env import fast_mode
from .gpt import GPT
from .pretrained import recipe_differences, save_checkpoint
from .train import History, StopTraining, train

FORMAT = 1  # bump when the checkpoint layout changes
FAMILIES = ("gan", "diffusion", "transformer")


class Sampler(Protocol):
    """``sampler(n, seed=0)`` -> n digits (n, 1, 8, 8) in about [-1, 1], on the CPU; the same seed, the same digits."""

    def __call__(self, n: int, seed: int = 0) -> torch.Tensor: ...


Evaluate = Callable[[Sampler], Any]  # scores samples during training: a float or a dict of floats


# --------------------------------------------------------------------------
# Recipes: everything that decides what a run produces, the budget included
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """What every family's recipe holds: its cache ``name``, the training budget in ``seconds``, the ``seed``."""

    family: ClassVar[str] = ""
    name: str = "full"  # part of the file name: one cached checkpoint per family and name
    seconds: float = 120.0  # the training budget: wall-clock seconds of training steps
    seed: int = 0


@dataclass(frozen=True)
class GANRecipe(Recipe):
    """Notebook 01's digits WGAN-GP: ``d_steps`` critic updates per generator update."""

    family: ClassVar[str] = "gan"
    latent_dim: int = 32
    channels: int = 64
    loss: str = "wgan_gp"
    d_steps: int = 5
    dropout: float = 0.0  # the critic's
    minibatch_std: bool = False
    batch_size: int = 64
    lr: float = 2e-4
    lr_end: float = 0.25
    betas: tuple[float, float] = (0.5, 0.9)


@dataclass(frozen=True)
class DiffusionRecipe(Recipe):
    """Notebook 03's digits denoiser, unconditional; DDPM samples with all ``T`` steps, DDIM with ``ddim_steps``."""

    family: ClassVar[str] = "diffusion"
    hidden: int = 256
    depth: int = 3
    T: int = 1000
    schedule: str = "cosine"  # on these 8x8 digits it beat notebook 03's linear schedule (same 120 s)
    batch_size: int = 256
    lr: float = 2e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.0
    ddim_steps: int = 50
    clip: float = 1.0  # clamp each step's predicted x_0 to [-clip, clip]

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")


@dataclass(frozen=True)
class TransformerRecipe(Recipe):
    """The pixel transformer: a GPT over the start token and 64 quantised pixels."""

    family: ClassVar[str] = "transformer"
    levels: int = pixels.DEFAULT_LEVELS
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.1  # without it, the more steps a fast machine runs, the more it overfits
    batch_size: int = 64
    lr: float = 3e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1


def default_recipes(seconds: float | None = None) -> dict[str, Recipe]:
    """One recipe per family: the full ones, or in FAST mode tiny ones (a few seconds each).

    ``seconds``, when given, replaces every recipe's budget (:func:`with_budget`).
    """
    if fast_mode():
        recipes: dict[str, Recipe] = {
            "gan": GANRecipe(name="fast", seconds=3.0, channels=32),
            "diffusion": DiffusionRecipe(name="fast", seconds=3.0, hidden=128, T=200, ddim_steps=20),
            "transformer": TransformerRecipe(name="fast", seconds=3.0, n_layer=1, n_embd=32),
        }
    else:
        recipes = {"gan": GANRecipe(), "diffusion": DiffusionRecipe(), "transformer": TransformerRecipe()}
    return with_budget(recipes, seconds)


def with_budget(recipes: dict[str, Recipe], seconds: float | None) -> dict[str, Recipe]:
    """The same recipes, each with a training budget of ``seconds`` (unchanged when None)."""
    if seconds is None:
        return dict(recipes)
    return {family: dataclasses.replace(recipe, seconds=float(seconds)) for family, recipe in recipes.items()}


def _check_recipe(recipe: object) -> None:
    if not isinstance(recipe, (GANRecipe, DiffusionRecipe, TransformerRecipe)):  # not the bare base class
        kinds = "a GANRecipe, DiffusionRecipe or TransformerRecipe"
        raise TypeError(f"recipe must be {kinds}, got {type(recipe).__name__}")
    if not recipe.seconds > 0:
        raise ValueError(f"recipe.seconds (the training budget) must be positive, got {recipe.seconds}")


# --------------------------------------------------------------------------
# Each family: its model, its training run, its samplers
# --------------------------------------------------------------------------

Run = Callable[[int, Callable[[int, History], None] | None, bool], History]  # (steps, callback, progress) -> history


def _schedule(recipe: DiffusionRecipe) -> NoiseSchedule:
    return NoiseSchedule.linear(recipe.T) if recipe.schedule == "linear" else NoiseSchedule.cosine(recipe.T)


def build_model(recipe: Recipe) -> nn.Module:
    """The untrained network of ``recipe``, initialised from ``recipe.seed``: G, the denoiser or the pixel GPT."""
    _check_recipe(recipe)
    torch.manual_seed(recipe.seed)
    if isinstance(recipe, GANRecipe):
        return gan.DigitsGenerator(recipe.latent_dim, recipe.channels)
    if isinstance(recipe, DiffusionRecipe):
        return Denoiser((1, 8, 8), hidden=recipe.hidden, depth=recipe.depth)
    return pixels.pixel_gpt(recipe.levels, recipe.n_layer, recipe.n_head, recipe.n_embd, recipe.dropout)


def _warmup(recipe: DiffusionRecipe | TransformerRecipe, steps: int) -> int:
    return min(steps, round(recipe.warmup_fraction * steps))


def _build_run(recipe: Recipe) -> tuple[nn.Module, Run]:
    """A fresh model of ``recipe`` and the function that trains it for a given number of steps."""
    x, _ = digits_split("train")  # (N, 1, 8, 8)
    model = build_model(recipe)
    if isinstance(recipe, GANRecipe):
        critic = gan.DigitsDiscriminator(recipe.channels, recipe.dropout, recipe.minibatch_std)
        draws = torch.Generator().manual_seed(recipe.seed)

        def sample_real(n: int) -> torch.Tensor:
            return x[torch.randint(len(x), (n,), generator=draws)]  # (n, 1, 8, 8)

        def run(steps: int, callback, progress: bool) -> History:
            config = gan.GANConfig(
                steps=steps, batch_size=recipe.batch_size, latent_dim=recipe.latent_dim, loss=recipe.loss,
                lr=recipe.lr, betas=recipe.betas, d_steps=recipe.d_steps, lr_end=recipe.lr_end,
            )
            return gan.train_gan(model, critic, sample_real, config, callback=callback, progress=progress,
                                 desc="GAN", seed=recipe.seed)

    elif isinstance(recipe, DiffusionRecipe):
        loss_fn = denoiser_loss_fn(_schedule(recipe), generator=torch.Generator().manual_seed(recipe.seed))

        def run(steps: int, callback, progress: bool) -> History:
            return train(model, random_batches(x, batch_size=recipe.batch_size, seed=recipe.seed), loss_fn, steps,
                         lr=recipe.lr, warmup_steps=_warmup(recipe, steps), weight_decay=recipe.weight_decay,
                         callback=callback, progress=progress, desc="diffusion")

    else:
        tokens = pixels.quantize(x, recipe.levels)  # (N, 64)

        def run(steps: int, callback, progress: bool) -> History:
            return pixels.train_pixel_gpt(model, tokens, steps, batch_size=recipe.batch_size, lr=recipe.lr,
                                          warmup_steps=_warmup(recipe, steps), weight_decay=recipe.weight_decay,
                                          callback=callback, progress=progress, seed=recipe.seed)

    return model, run


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def samplers(recipe: Recipe, model: nn.Module) -> dict[str, Sampler]:
    """The ways to sample a trained ``model`` of ``recipe``, by name; the first is the family's default.

    GAN: one pass of G. Diffusion: DDPM over all T steps, DDIM over ``ddim_steps``. Transformer:
    64 steps with the KV cache, or re-running the whole sequence at each step.
    """
    _check_recipe(recipe)
    if isinstance(recipe, GANRecipe):
        return {"GAN": partial(_gan_sample, model, recipe.latent_dim)}
    if isinstance(recipe, DiffusionRecipe):
        schedule = _schedule(recipe)
        return {
            f"DDIM ({recipe.ddim_steps} steps)": partial(_ddim, model, schedule, recipe.ddim_steps, recipe.clip),
            f"DDPM ({recipe.T} steps)": partial(_ddpm, model, schedule, recipe.clip),
        }
    return {
        "transformer (KV cache)": partial(_pixels, model, True),
        "transformer (no cache)": partial(_pixels, model, False),
    }


def _gan_sample(G: nn.Module, latent_dim: int, n: int, seed: int = 0) -> torch.Tensor:
    return gan.sample(G, n, latent_dim, seed=seed)


def _ddim(model: nn.Module, schedule: NoiseSchedule, steps: int, clip: float, n: int, seed: int = 0) -> torch.Tensor:
    return ddim_sample(model, (n, 1, 8, 8), schedule, steps, generator=_seeded(seed), clip=clip)


def _ddpm(model: nn.Module, schedule: NoiseSchedule, clip: float, n: int, seed: int = 0) -> torch.Tensor:
    return ddpm_sample(model, (n, 1, 8, 8), schedule, generator=_seeded(seed), clip=clip)


def _pixels(model: GPT, use_cache: bool, n: int, seed: int = 0) -> torch.Tensor:
    return pixels.sample_pixels(model, n, use_cache=use_cache, generator=_seeded(seed))


# --------------------------------------------------------------------------
# Training on a wall-clock budget
# --------------------------------------------------------------------------


def seconds_per_step(run: Run, probe_seconds: float) -> float:
    """Seconds per training step: times ``run(steps, None, False)`` for 2, 8, 32, ... steps until one takes long enough.

    One untimed step comes first (first calls allocate and initialise); then the first run that
    lasts ``probe_seconds`` (or has 4,096 steps) gives the answer. ``run`` must train a throw-away
    model: the probe's steps are not part of any result.
    """
    run(1, None, False)
    steps = 2
    while True:
        history = run(steps, None, False)
        if history.seconds >= probe_seconds or steps >= 4096:
            return history.seconds / steps
        steps *= 4


class BudgetClock:
    """A training callback that stops the run when ``seconds`` of training have passed and scores it on the way.

    Every ``eval_every`` seconds of training it calls ``evaluate(sampler)`` and records
    ``(training seconds, steps done, value)`` in ``points``; the time that takes is excluded
    from the training time, so evaluating never eats into the budget.
    """

    def __init__(self, seconds: float, sampler: Sampler, evaluate: Evaluate | None, eval_every: float):
        self.seconds, self.sampler, self.evaluate, self.eval_every = seconds, sampler, evaluate, eval_every
        self.points: list[tuple[float, int, Any]] = []
        self.start = time.perf_counter()
        self.paused = 0.0  # seconds spent evaluating
        self.elapsed = 0.0  # training seconds at the latest step
        self.next_eval = eval_every

    def __call__(self, step: int, history: History) -> None:
        self.elapsed = time.perf_counter() - self.start - self.paused
        if self.evaluate is not None and self.elapsed >= self.next_eval:
            self.measure(step + 1)
            while self.next_eval <= self.elapsed:
                self.next_eval += self.eval_every
        if self.elapsed >= self.seconds:
            raise StopTraining

    def measure(self, steps_done: int) -> None:
        begin = time.perf_counter()
        self.points.append((self.elapsed, steps_done, self.evaluate(self.sampler)))
        self.paused += time.perf_counter() - begin


def _train_on_budget(
    recipe: Recipe, evaluate: Evaluate | None, eval_every: float | None, progress: bool
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``recipe``'s model for ``recipe.seconds``; returns the model (eval mode) and what happened."""
    probe = seconds_per_step(_build_run(recipe)[1], probe_seconds=min(2.0, 0.05 * recipe.seconds))
    planned = max(1, math.floor(recipe.seconds / probe))
    model, run = _build_run(recipe)  # the same start as the probe's throw-away copy
    sampler = next(iter(samplers(recipe, model).values()))
    clock = BudgetClock(recipe.seconds, sampler, evaluate, eval_every or recipe.seconds / 6)
    history = run(planned, clock, progress)
    done = planned if history.stopped_at is None else history.stopped_at + 1
    if evaluate is not None and (not clock.points or clock.points[-1][1] != done):
        clock.measure(done)  # the final model, scored
    model.eval()
    info = {
        "format": FORMAT,
        "family": recipe.family,
        "recipe": dataclasses.asdict(recipe),
        "steps": done,
        "planned_steps": planned,
        "probe_seconds_per_step": probe,
        "train_seconds": clock.elapsed,
        "curve": clock.points,
        "history": history.train,
    }
    return model, info


# --------------------------------------------------------------------------
# The cache, and the call a notebook makes
# --------------------------------------------------------------------------


@dataclass
class Trained:
    """A trained family: its ``model``, its ``samplers`` (by name, the default first) and ``info``.

    ``info``: the recipe, ``steps`` run, ``train_seconds``, ``curve`` (a list of
    ``(training seconds, steps, evaluate's value)``), ``history`` (the losses by step),
    ``cached`` and ``path``.
    """

    recipe: Recipe
    model: nn.Module
    info: dict[str, Any]
    samplers: dict[str, Sampler] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.recipe.family

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n digits (n, 1, 8, 8) from the family's default sampler."""
        return next(iter(self.samplers.values()))(n, seed)


def checkpoint_path(recipe: Recipe, cache_dir: str | Path | None = None) -> Path:
    """Where a trained ``recipe`` lives: ``<cache_dir>/showdown-<family>-<name>.pt``."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else course_cache_dir()
    return folder / f"showdown-{recipe.family}-{recipe.name}.pt"


def _load(path: Path, recipe: Recipe, need_curve: bool) -> tuple[nn.Module, dict[str, Any]] | None:
    """The cached model and info when ``path`` holds ``recipe`` (with a curve, if needed); else None, saying why."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        print(f"could not read {path} ({exc}): training again")
        return None
    info = payload.get("info", {}) if isinstance(payload, dict) else {}
    if info.get("format") != FORMAT or "recipe" not in info:
        print(f"{path} is not a showdown checkpoint (format {FORMAT}): training again")
        return None
    differences = recipe_differences(info["recipe"], dataclasses.asdict(recipe))
    if differences:
        print(f"{path} was made with another recipe ({'; '.join(differences)}): training again")
        return None
    if need_curve and not info.get("curve"):
        print(f"{path} was trained without an evaluate function, so it has no curve: training again")
        return None
    model = build_model(recipe)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), info


def train_family(
    recipe: Recipe,
    *,
    evaluate: Evaluate | None = None,
    eval_every: float | None = None,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> Trained:
    """Train ``recipe``'s family on ``digits_split("train")`` for ``recipe.seconds``, or load it from the cache.

    ``evaluate(sampler)`` runs every ``eval_every`` seconds of training (default: a sixth of
    the budget) and on the final model, with the family's default sampler (the first of
    :func:`samplers`: GAN, DDIM, transformer with the KV cache); its values land in ``info["curve"]`` as
    ``(training seconds, steps, value)``. A cached checkpoint is used when its recipe equals
    ``recipe`` (and, when ``evaluate`` is given, it has a curve); otherwise, or with ``retrain``,
    the family trains and the checkpoint is (over)written. A cache that cannot be written
    only costs the next call a retraining.
    """
    _check_recipe(recipe)
    path = checkpoint_path(recipe, cache_dir)
    loaded = _load(path, recipe, need_curve=evaluate is not None) if path.exists() and not retrain else None
    if loaded is not None:
        model, info = loaded
        return Trained(recipe, model, {**info, "cached": True, "path": str(path)}, samplers(recipe, model))
    model, info = _train_on_budget(recipe, evaluate, eval_every, progress)
    try:
        save_checkpoint(path, model, info)
    except OSError as exc:
        print(f"could not cache the checkpoint at {path} ({exc}); the next call will train again")
    return Trained(recipe, model, {**info, "cached": False, "path": str(path)}, samplers(recipe, model))


def train_showdown(
    seconds: float | None = None,
    *,
    recipes: dict[str, Recipe] | None = None,
    evaluate: Evaluate | None = None,
    eval_every: float | None = None,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> dict[str, Trained]:
    """Train (or load) every family with the same budget: ``{"gan": ..., "diffusion": ..., "transformer": ...}``.

    ``recipes`` defaults to :func:`default_recipes`; ``seconds``, when given, replaces their budgets.
    The other arguments go to :func:`train_family`.
    """
    recipes = with_budget(recipes or default_recipes(), seconds)
    return {
        family: train_family(recipe, evaluate=evaluate, eval_every=eval_every, cache_dir=cache_dir,
                             retrain=retrain, progress=progress)
        for family, recipe in recipes.items()
    }


# --------------------------------------------------------------------------
# The cost of a sample
# --------------------------------------------------------------------------


def time_sampling(named_samplers: dict[str, Sampler], n: int = 100, repeats: int = 1) -> dict[str, float]:
    """Milliseconds per sample of each sampler, drawing batches of ``n``: ``{name: ms}``.

    Each sampler first draws 2 samples (a warm-up), then ``n`` samples ``repeats`` times;
    the fastest repeat counts, divided by ``n``.
    """
    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be positive, got n={n}, repeats={repeats}")
    result = {}
    for name, sampler in named_samplers.items():
        sampler(2)
        best = math.inf
        for r in range(repeats):
            begin = time.perf_counter()
            sampler(n, seed=r)
            best = min(best, time.perf_counter() - begin)
        result[name] = 1000 * best / n
    return result


__all__ = [
    "FAMILIES",
    "BudgetClock",
    "Recipe",
    "DiffusionRecipe",
    "GANRecipe",
    "Sampler",
    "Trained",
    "TransformerRecipe",
    "build_model",
    "checkpoint_path",
    "default_recipes",
    "samplers",
    "seconds_per_step",
    "time_sampling",
    "train_family",
    "train_showdown",
    "with_budget",
]
