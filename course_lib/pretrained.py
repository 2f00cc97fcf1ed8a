"""A pre-trained GPT for notebook 06, made (or loaded from a cache) with one call.

Fine-tuning needs a model that already knows something. :func:`pretrained_gpt`
pre-trains a small GPT on the standard library's docstrings with a recorded
:class:`Recipe` (model size, tokenizer, corpus, seed, steps, learning rate...)
and caches the checkpoint; a later call with the same recipe loads it in a
second. The checkpoint stores its recipe, and loading one made with a
different recipe raises a ``ValueError`` that names the differing fields, so a
changed setting is never silently ignored.

The tokenizer is a :class:`~course_lib.tokenizer.CharTokenizer` over the
characters of *both* corpora (docstrings and the language reference): a
tokenizer built from the pre-training text alone would fail on characters that
only the fine-tuning domain uses. Its vocabulary is part of the recipe check.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data import CORPORA, random_windows, text_corpus
from .env import cache_dir as course_cache_dir
from .env import fast_mode
from .gpt import GPT, GPTConfig, lm_loss
from .tokenizer import CharTokenizer
from .train import eval_mode

FORMAT = 1  # bump when the checkpoint layout changes


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what a pre-training run produces."""

    name: str = "full"  # part of the file name: one cached checkpoint per recipe name
    corpus: str = "docstrings"
    tokenizer: str = "char"  # one id per character of the docstring and reference corpora
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    steps: int = 800
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise ValueError(f"corpus must be one of {sorted(CORPORA)}, got {self.corpus!r}")
        if self.tokenizer != "char":
            raise ValueError(f"tokenizer must be 'char', got {self.tokenizer!r}")
        for field in ("steps", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")

    def config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
        )


#: Notebook 06 without FAST mode: about 0.8 M parameters, a few minutes on one CPU core.
FULL_RECIPE = Recipe()
#: FAST mode (tests, grading): a tiny model trained for a few seconds.
FAST_RECIPE = Recipe(
    name="fast", n_layer=2, n_head=2, n_embd=32, block_size=32, steps=40, batch_size=16, warmup_steps=5
)


def default_recipe() -> Recipe:
    """FAST_RECIPE in FAST mode, else FULL_RECIPE."""
    return FAST_RECIPE if fast_mode() else FULL_RECIPE


def course_vocabulary() -> str:
    """Every character of both corpora (all splits), sorted: the character tokenizer's vocabulary."""
    chars: set[str] = set()
    for corpus in sorted(CORPORA):
        chars.update(text_corpus(corpus, "all"))
    return "".join(sorted(chars))


def checkpoint_path(recipe: Recipe, cache_dir: str | Path | None = None) -> Path:
    """Where the checkpoint of ``recipe`` lives: ``<cache_dir>/gpt-<corpus>-<name>.pt``."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else course_cache_dir()
    return folder / f"gpt-{recipe.corpus}-{recipe.name}.pt"


def _requested(recipe: Recipe, vocab: str) -> dict[str, Any]:
    return {**dataclasses.asdict(recipe), "vocab": vocab}


def recipe_differences(stored: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """One line per field whose value differs: ``"steps: checkpoint 1000, requested 500"``."""
    lines = []
    for key in sorted(set(stored) | set(requested)):
        have, want = stored.get(key, "<missing>"), requested.get(key, "<missing>")
        if have != want:
            if key == "vocab":
                lines.append(f"vocab: checkpoint has {len(have)} characters, these corpora have {len(want)}")
            else:
                lines.append(f"{key}: checkpoint {have!r}, requested {want!r}")
    return lines


@torch.no_grad()
def lm_eval_loss(
    model: GPT, ids: torch.Tensor, length: int, max_windows: int | None = None, batch_size: int = 64
) -> float:
    """Mean next-token loss of ``model`` over non-overlapping windows of ``length`` ids cut from ``ids`` (1-D).

    With ``max_windows`` the windows are spread evenly over the text. Each
    window's loss is over its ``length - 1`` predictions; windows are weighted
    equally.
    """
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
    n = len(ids) // length
    if n < 1:
        raise ValueError(f"need at least {length} ids for one window, got {len(ids)}")
    starts = torch.arange(n) * length
    if max_windows is not None and n > max_windows:
        starts = starts[torch.linspace(0, n - 1, max_windows).round().long()]
    windows = ids[starts[:, None] + torch.arange(length)]  # (n, length)
    device = next(model.parameters()).device
    total = 0.0
    with eval_mode(model):
        for chunk in windows.split(batch_size):
            chunk = chunk.to(device)
            total += lm_loss(model(chunk), chunk).item() * len(chunk)
    return total / len(windows)


def pretrain(recipe: Recipe, progress: bool = True) -> tuple[GPT, CharTokenizer, dict[str, Any]]:
    """Pre-train a GPT with ``recipe`` (no cache). Returns (model, tokenizer, info)."""
    from .train import train

    vocab = course_vocabulary()
    tokenizer = CharTokenizer(vocab)
    train_ids = torch.tensor(tokenizer.encode(text_corpus(recipe.corpus, "train")))
    val_ids = torch.tensor(tokenizer.encode(text_corpus(recipe.corpus, "val")))
    torch.manual_seed(recipe.seed)
    model = GPT(recipe.config(tokenizer.vocab_size))
    batches = random_windows(train_ids, recipe.block_size, recipe.batch_size, seed=recipe.seed)
    history = train(
        model,
        batches,
        lambda m, x: lm_loss(m(x), x),
        recipe.steps,
        lr=recipe.lr,
        warmup_steps=recipe.warmup_steps,
        min_lr_ratio=recipe.min_lr_ratio,
        weight_decay=recipe.weight_decay,
        grad_clip=recipe.grad_clip,
        evaluate=lambda m: lm_eval_loss(m, val_ids, recipe.block_size, max_windows=256),
        eval_every=max(1, recipe.steps // 10),
        progress=progress,
        desc=f"pre-training ({recipe.name})",
    )
    model.eval()
    info = {
        "format": FORMAT,
        "recipe": _requested(recipe, vocab),
        "val_loss": history.last("val_loss"),
        "train_seconds": history.seconds,
        "train_loss": history.train["loss"],
        "val_curve": history.evals["val_loss"],
    }
    return model, tokenizer, info


def save_checkpoint(path: str | Path, model: torch.nn.Module, info: dict[str, Any]) -> Path:
    """Write ``model``'s weights and ``info`` (with its recipe) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"info": info, "state_dict": model.state_dict()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | Path, recipe: Recipe, vocab: str | None = None) -> tuple[GPT, CharTokenizer, dict]:
    """Load a checkpoint made by :func:`pretrained_gpt`, checking it was made with ``recipe``.

    Raises ``ValueError`` naming every differing field (``vocab`` too, when
    given: it changes with the Python version the corpora come from).
    """
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    info = payload.get("info", {}) if isinstance(payload, dict) else {}
    if info.get("format") != FORMAT or "recipe" not in info:
        raise ValueError(f"{path} is not a course_lib GPT checkpoint (format {FORMAT}); delete it and retrain")
    stored = info["recipe"]
    requested = _requested(recipe, vocab if vocab is not None else stored.get("vocab", ""))
    differences = recipe_differences(stored, requested)
    if differences:
        raise ValueError(
            f"the checkpoint {path} was made with a different recipe:\n  "
            + "\n  ".join(differences)
            + "\nDelete the file, call pretrained_gpt(..., retrain=True), or give the new recipe another name."
        )
    tokenizer = CharTokenizer(stored["vocab"])
    model = GPT(recipe.config(tokenizer.vocab_size))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, tokenizer, info


def pretrained_gpt(
    recipe: Recipe | None = None,
    cache_dir: str | Path | None = None,
    *,
    retrain: bool = False,
    progress: bool = True,
) -> tuple[GPT, CharTokenizer, dict[str, Any]]:
    """A GPT pre-trained with ``recipe`` (default: :func:`default_recipe`), from the cache when possible.

    Returns ``(model, tokenizer, info)``; ``info`` holds the recipe, the
    validation loss, the training time and curves, ``cached`` (loaded or
    trained now) and ``path``. A cached checkpoint with a different recipe
    raises ``ValueError`` (``retrain=True`` overwrites it instead). A cache
    that cannot be written only costs the next call a retraining.
    """
    recipe = recipe or default_recipe()
    path = checkpoint_path(recipe, cache_dir)
    vocab = course_vocabulary()
    if path.exists() and not retrain:
        model, tokenizer, info = load_checkpoint(path, recipe, vocab)
        return model, tokenizer, {**info, "cached": True, "path": str(path)}
    start = time.perf_counter()
    model, tokenizer, info = pretrain(recipe, progress=progress)
    info["total_seconds"] = time.perf_counter() - start
    try:
        save_checkpoint(path, model, info)
    except OSError as exc:
        print(f"could not cache the checkpoint at {path} ({exc}); the next call will train again")
    return model, tokenizer, {**info, "cached": False, "path": str(path)}
