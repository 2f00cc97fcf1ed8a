"""A pixel transformer: an image tokenizer and notebook 05's GPT over the 64 pixels of a digit (notebook 08).

An 8x8 digit becomes a "sentence" of 64 tokens read in raster order (row by
row, left to right), and a GPT learns ``p(x) = p(x_0) p(x_1 | x_0) ... p(x_63 | x_<63)``,
exactly as it learned text. In the order you would explain it:

1. the tokenizer: :func:`quantize` maps each pixel to the nearest of ``levels``
   grey levels, :func:`dequantize` maps token ids back to grey values;
2. the model: :func:`pixel_gpt`, a :class:`~course_lib.gpt.GPT` whose vocabulary is
   the ``levels`` grey levels plus one start token (id ``levels``) that every
   sequence begins with, so the first pixel, too, is predicted from something;
3. the objective: :func:`pixel_loss` is :func:`~course_lib.gpt.lm_loss` on the
   start token + 64 pixels, trained by :func:`train_pixel_gpt` through the
   course's one loop (:func:`course_lib.train.train`);
4. how good it is: :func:`bits_per_pixel`, the exact negative log2-likelihood per
   pixel of held-out digits;
5. sampling, one pixel at a time: :func:`sample_pixels`, with the KV cache or a
   plain full re-run per pixel (the same tokens for the same seed, at very
   different cost);
6. the trivial baseline every model must beat: :class:`IndependentPixels`, one
   categorical per pixel, blind to the other pixels.

The start token is never a pixel: the model's distribution over the next pixel
is the softmax of the ``levels`` pixel logits alone (the start token's logit is
dropped). Sampling and :func:`bits_per_pixel` both use that distribution.

Shapes: B batch (images), L levels, 64 pixels per image, 65 tokens per sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .data import random_batches
from .gpt import GPT, GPTConfig, forward_with_cache, lm_loss, sample_next_token
from .train import History, eval_mode, train

SIDE = 8  # the digits are SIDE x SIDE
PIXELS = SIDE * SIDE  # tokens per image
#: Grey levels of the tokenizer. The digits hold 17 values (0..16, scaled to [-1, 1]); 8 levels (one
#: every ~2.3 of those values) keep the strokes' shading while each pixel is a choice among 8, not 17.
#: Quantising the held-out digits to 8 levels moves their Frechet distance (classifier features) to the
#: training digits from 2.50 to 2.74 (4 levels: 2.94; 2 levels, black and white: 15.4).
DEFAULT_LEVELS = 8

# --------------------------------------------------------------------------
# 1. The tokenizer: grey values <-> level ids
# --------------------------------------------------------------------------


def _check_levels(levels: int) -> None:
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")


def quantize(images: torch.Tensor, levels: int = DEFAULT_LEVELS) -> torch.Tensor:
    """Images (B, 1, 8, 8) in [-1, 1] -> tokens (B, 64) int64 in 0 .. levels-1, raster order.

    Level i stands for the grey value ``-1 + 2 i / (levels - 1)``: ``levels`` values evenly
    spaced over [-1, 1]. Each pixel goes to the nearest level (a value exactly halfway between
    two levels goes to the upper one; values outside [-1, 1] are clamped first), so
    ``dequantize(quantize(x))`` is exact on level values and off by at most half a level step,
    ``1 / (levels - 1)``, elsewhere.
    """
    _check_levels(levels)
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor, got {getattr(images, 'dtype', type(images))}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, SIDE, SIDE):
        raise ValueError(f"images must have shape (B, 1, {SIDE}, {SIDE}), got {tuple(images.shape)}")
    position = (images.double().clamp(-1, 1) + 1) * (levels - 1) / 2  # (B, 1, 8, 8) on the level grid 0 .. L-1
    return torch.floor(position + 0.5).long().flatten(1)  # (B, 64): the nearest level, ties upwards


def dequantize(tokens: torch.Tensor, levels: int = DEFAULT_LEVELS) -> torch.Tensor:
    """Tokens (B, 64) in 0 .. levels-1 -> images (B, 1, 8, 8): level i becomes ``-1 + 2 i / (levels - 1)``."""
    _check_levels(levels)
    _check_tokens(tokens, levels)
    values = -1 + 2 * tokens.double() / (levels - 1)  # (B, 64)
    return values.float().reshape(len(tokens), 1, SIDE, SIDE)


def _check_tokens(tokens: torch.Tensor, levels: int) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long:
        raise TypeError(f"tokens must be an int64 tensor, got {getattr(tokens, 'dtype', type(tokens))}")
    if tokens.dim() != 2 or tokens.shape[1] != PIXELS:
        raise ValueError(f"tokens must have shape (B, {PIXELS}), got {tuple(tokens.shape)}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= levels):
        raise ValueError(f"tokens must lie in 0 .. {levels - 1}, got {int(tokens.min())} .. {int(tokens.max())}")


# --------------------------------------------------------------------------
# 2. The model: a GPT over the start token and 64 pixels
# --------------------------------------------------------------------------


def pixel_gpt(
    levels: int = DEFAULT_LEVELS, n_layer: int = 2, n_head: int = 4, n_embd: int = 64, dropout: float = 0.0
) -> GPT:
    """A GPT whose vocabulary is ``levels`` grey levels plus the start token (id ``levels``), context 65."""
    _check_levels(levels)
    config = GPTConfig(
        vocab_size=levels + 1, block_size=PIXELS + 1, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout
    )
    return GPT(config)


def levels_of(model: GPT) -> int:
    """The number of grey levels a pixel GPT models: its vocabulary less the start token."""
    if model.config.block_size < PIXELS + 1:
        raise ValueError(f"a pixel GPT needs block_size >= {PIXELS + 1}, got {model.config.block_size}")
    return model.config.vocab_size - 1


def with_start(tokens: torch.Tensor, levels: int) -> torch.Tensor:
    """Pixel tokens (B, 64) -> sequences (B, 65): the start token (id ``levels``), then the pixels."""
    _check_tokens(tokens, levels)
    start = torch.full((len(tokens), 1), levels, dtype=torch.long, device=tokens.device)
    return torch.cat([start, tokens], dim=1)


# --------------------------------------------------------------------------
# 3. The objective and training
# --------------------------------------------------------------------------


def pixel_loss(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """The LM loss of a pixel GPT on tokens (B, 64), in nats per pixel (a scalar): each pixel from those before it.

    :func:`~course_lib.gpt.lm_loss` on the 65-token sequences: the logits after the start token
    predict pixel 0, those after pixel t predict pixel t + 1 (the softmax is over the whole
    vocabulary, so the model also learns that the start token never comes next).
    """
    sequences = with_start(tokens, levels_of(model))  # (B, 65)
    return lm_loss(model(sequences), sequences)


def train_pixel_gpt(
    model: GPT,
    tokens: torch.Tensor,
    steps: int,
    *,
    batch_size: int = 64,
    lr: float = 3e-3,
    warmup_steps: int = 0,
    weight_decay: float = 0.1,
    grad_clip: float | None = 1.0,
    val_tokens: torch.Tensor | None = None,
    eval_every: int = 0,
    callback: Callable[[int, History], None] | None = None,
    progress: bool = True,
    seed: int = 0,
    desc: str = "pixel transformer",
) -> History:
    """Train a pixel GPT on tokens (N, 64) with :func:`pixel_loss` through :func:`course_lib.train.train`.

    Each step draws ``batch_size`` images at random (with replacement, seeded by ``seed``).
    With ``val_tokens`` (M, 64), :func:`bits_per_pixel` on them is logged as ``val_bpp``
    every ``eval_every`` steps and at the end. Returns the history.
    """
    _check_tokens(tokens, levels_of(model))
    stream = random_batches(tokens, batch_size=batch_size, seed=seed)
    device = next(model.parameters()).device
    evaluate = None if val_tokens is None else (lambda m: {"val_bpp": bits_per_pixel(m, val_tokens)})
    return train(
        model,
        lambda _step: next(stream)[0].to(device),  # (batch_size, 64)
        pixel_loss,
        steps,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        evaluate=evaluate,
        eval_every=eval_every,
        callback=callback,
        progress=progress,
        desc=desc,
    )


# --------------------------------------------------------------------------
# 4. Likelihood: bits per pixel
# --------------------------------------------------------------------------


@torch.no_grad()
def pixel_log_probs(model: GPT | IndependentPixels, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """log p(pixel t = each level | pixels before t), for tokens (B, 64) -> (B, 64, L), natural log.

    For a pixel GPT: the log-softmax of the ``L`` pixel logits at the position before each pixel
    (the start token's logit dropped). For :class:`IndependentPixels`: its per-pixel table,
    the same for every image.
    """
    if isinstance(model, IndependentPixels):
        _check_tokens(tokens, model.levels)
        return model.probs.log().expand(len(tokens), -1, -1)
    levels = levels_of(model)
    sequences = with_start(tokens, levels)  # (B, 65)
    device = next(model.parameters()).device
    parts = []
    with eval_mode(model):
        for chunk in sequences.split(batch_size):
            logits = model(chunk.to(device))[:, :PIXELS, :levels]  # (b, 64, L): the logits before each pixel
            parts.append(torch.log_softmax(logits.double(), dim=-1).cpu())
    return torch.cat(parts)


def bits_per_pixel(model: GPT | IndependentPixels, tokens: torch.Tensor) -> float:
    """Exact negative log2-likelihood per pixel of tokens (B, 64) under ``model`` (a pixel GPT or the baseline).

    ``-log2 p(x) / 64`` averaged over the B images, with ``p(x) = prod_t p(x_t | x_<t)``.
    A model that knew nothing would need ``log2(L)`` bits per pixel.
    """
    log_probs = pixel_log_probs(model, tokens)  # (B, 64, L)
    picked = log_probs.gather(2, tokens.cpu()[:, :, None]).squeeze(2)  # (B, 64): log p of the actual pixels
    return float(-picked.mean() / math.log(2))


# --------------------------------------------------------------------------
# 5. Sampling, one pixel at a time
# --------------------------------------------------------------------------


@torch.no_grad()
def sample_pixels(
    model: GPT,
    n: int,
    *,
    use_cache: bool = True,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` digits drawn pixel by pixel in raster order: images (n, 1, 8, 8) on the CPU.

    Starts every sequence with the start token and draws 64 pixels, each from the softmax of the
    ``L`` pixel logits (divided by ``temperature``) given all pixels before it. With ``use_cache``
    each step feeds only the newest token and reuses the keys/values of the earlier ones
    (:func:`~course_lib.gpt.forward_with_cache`); without it each step re-runs the model on the
    whole sequence so far. Both give the same tokens for the same ``generator`` state (drawn on the CPU).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    levels = levels_of(model)
    device = next(model.parameters()).device
    idx = torch.full((n, 1), levels, dtype=torch.long, device=device)  # (n, 1): the start token
    past = None
    with eval_mode(model):
        for _ in range(PIXELS):
            if use_cache:
                logits, past = forward_with_cache(model, idx[:, -1:], past)  # (n, 1, V): the newest token only
            else:
                logits = model(idx)  # (n, t, V): the whole sequence again
            pixel_logits = logits[:, -1, :levels].float().cpu()  # (n, L): the start token is never a pixel
            next_id = sample_next_token(pixel_logits, temperature, generator=generator)  # (n,)
            idx = torch.cat([idx, next_id[:, None].to(device)], dim=1)
    return dequantize(idx[:, 1:].cpu(), levels)


# --------------------------------------------------------------------------
# 6. The baseline: every pixel on its own
# --------------------------------------------------------------------------


@dataclass
class IndependentPixels:
    """``p(x) = prod_t p_t(x_t)``: one categorical per pixel, blind to the other pixels.

    ``probs`` (64, L): row t is pixel t's distribution over the L levels. :meth:`fit` estimates
    it from counts with Laplace (add-``alpha``) smoothing, so a level never seen at a pixel in
    training still gets a little probability and held-out bits per pixel stay finite.
    """

    probs: torch.Tensor

    def __post_init__(self) -> None:
        if self.probs.dim() != 2 or self.probs.shape[0] != PIXELS or self.probs.shape[1] < 2:
            raise ValueError(f"probs must have shape ({PIXELS}, L) with L >= 2, got {tuple(self.probs.shape)}")

    @classmethod
    def fit(cls, tokens: torch.Tensor, levels: int = DEFAULT_LEVELS, alpha: float = 1.0) -> IndependentPixels:
        """Fit on tokens (N, 64): ``p_t(v) = (count_t(v) + alpha) / (N + alpha L)``."""
        _check_levels(levels)
        _check_tokens(tokens, levels)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        counts = torch.zeros(PIXELS, levels, dtype=torch.float64)
        counts.scatter_add_(1, tokens.cpu().T, torch.ones(tokens.T.shape, dtype=torch.float64))  # (64, L)
        return cls((counts + alpha) / (len(tokens) + alpha * levels))

    @property
    def levels(self) -> int:
        return self.probs.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images (n, 1, 8, 8), every pixel drawn on its own from its row of ``probs``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        tokens = torch.multinomial(self.probs, n, replacement=True, generator=generator).T  # (n, 64)
        return dequantize(tokens.contiguous(), self.levels)


__all__ = [
    "DEFAULT_LEVELS",
    "PIXELS",
    "IndependentPixels",
    "bits_per_pixel",
    "dequantize",
    "levels_of",
    "pixel_gpt",
    "pixel_log_probs",
    "pixel_loss",
    "quantize",
    "sample_pixels",
    "train_pixel_gpt",
    "with_start",
]
