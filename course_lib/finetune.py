"""Fine-tuning helpers (notebook 06): LoRA (Hu et al. 2021), freezing, and counting what trains.

LoRA keeps a pre-trained weight ``W`` (out, in) frozen and learns a low-rank
update ``B A`` with ``A`` (r, in) and ``B`` (out, r):

    y = W x + b + (alpha / r) * B A x

``B`` starts at zero, so a freshly wrapped layer computes exactly what the
base layer did; only ``A`` and ``B`` (r * (in + out) numbers) are trained.
After training, :func:`merge_lora` folds ``(alpha / r) B A`` into ``W`` and the
model is an ordinary model again, as fast as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .gpt import GPT
from .train import StopTraining, eval_mode, train


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update of rank ``r``, scaled by ``alpha / r``."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"rank r must be a positive int, got {r!r}")
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.base = base
        self.base.requires_grad_(False)
        self.r = r
        self.alpha = alpha
        self.scale = alpha / r
        out_features, in_features = base.weight.shape
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(r, in_features, **factory))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, **factory))  # (out, r): zero, so no change at start
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises its weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out) = W x + b + (alpha / r) B A x."""
        return self.base(x) + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)

    def delta_weight(self) -> torch.Tensor:
        """The update (alpha / r) B A, shaped like the base weight (out, in)."""
        return self.scale * (self.lora_B @ self.lora_A)

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function: W + (alpha / r) B A."""
        out_features, in_features = self.base.weight.shape
        layer = nn.Linear(in_features, out_features, bias=self.base.bias is not None)
        layer = layer.to(device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.base.weight + self.delta_weight())
            if self.base.bias is not None:
                layer.bias.copy_(self.base.bias)
        return layer

    def extra_repr(self) -> str:
        out_features, in_features = self.base.weight.shape
        return f"in={in_features}, out={out_features}, r={self.r}, alpha={self.alpha}"


def freeze(model: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of ``model``."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def apply_lora(model: nn.Module, target_modules: Iterable[str], r: int = 8, alpha: float = 16.0) -> list[str]:
    """Freeze ``model`` and wrap each ``nn.Linear`` whose name ends with one of ``target_modules`` in LoRA.

    Names are matched on their last components, e.g. ``["attn.qkv", "attn.proj"]``
    or ``["qkv"]``. Returns the full names of the wrapped layers; raises
    ``ValueError`` if none matched (a typo would otherwise train nothing).
    """
    targets = tuple(target_modules)
    if not targets:
        raise ValueError("target_modules is empty: name the layers to adapt, e.g. ['attn.qkv']")
    freeze(model)
    chosen = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)
    ]
    if not chosen:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"no nn.Linear matches {list(targets)}; the model's linear layers: {linear[:12]}")
    for name in chosen:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, LoRALinear(getattr(owner, attr), r=r, alpha=alpha))
    return chosen


def merge_lora(model: nn.Module) -> int:
    """Replace every ``LoRALinear`` in ``model`` by its merged ``nn.Linear``; return how many were merged."""
    wrapped = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    for name in wrapped:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, getattr(owner, attr).merged())
    return len(wrapped)


def count_trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad=True`` (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters, trainable or not (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------
# LoRA within a parameter budget
# --------------------------------------------------------------------------


def _matching_linears(model: nn.Module, targets: Sequence[str]) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers whose full name is a target or ends with ``"." + target``, in model order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)
    ]


def lora_cost(model: nn.Module, target_modules: Sequence[str], r: int) -> int:
    """Trainable parameters after ``apply_lora(model, target_modules, r)``: r (d_in + d_out) per wrapped layer.

    Only ``A`` (r, d_in) and ``B`` (d_out, r) of each wrapped layer train, since
    :func:`apply_lora` freezes everything else. Raises ``ValueError`` when no layer matches.
    """
    layers = _matching_linears(model, tuple(target_modules))
    if not layers:
        raise ValueError(f"no nn.Linear matches {list(target_modules)}")
    return r * sum(m.in_features + m.out_features for _, m in layers)


def lora_for_budget(
    model: nn.Module, budget: int, r_choices: Sequence[int], target_choices: Sequence[Sequence[str]]
) -> tuple[int, list[str], int]:
    """Wrap ``model`` (in place) with the LoRA configuration that trains the most parameters within ``budget``.

    The candidates are all pairs (r, targets), r from ``r_choices`` and targets
    (a list of name endings, as :func:`apply_lora` takes) from ``target_choices``.
    A candidate's cost is the number of trainable parameters after
    ``apply_lora(model, targets, r)``, i.e. :func:`lora_cost`. The winner has the
    largest cost <= ``budget``; among equal costs, the one that wraps more layers
    (Hu et al. 2021, section 7.1: for the same budget, adapting more weight
    matrices at a lower rank did better), then the one earliest in
    ``target_choices``. It is applied with ``alpha = 2 r``.

    Returns ``(r, targets, cost)`` with ``targets`` as a list. Raises
    ``ValueError``, leaving ``model`` unchanged, when a target list matches no
    layer or when no candidate fits the budget.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"budget must be a non-negative int (a number of parameters), got {budget!r}")
    ranks = list(r_choices)
    if not ranks or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks):
        raise ValueError(f"r_choices must be a non-empty list of positive ints, got {ranks!r}")
    choices = [list(targets) for targets in target_choices]
    if not choices:
        raise ValueError("target_choices is empty: give at least one list of layer names")
    best: tuple[tuple[int, int, int], int, list[str]] | None = None
    for index, targets in enumerate(choices):
        layers = _matching_linears(model, targets)
        if not layers:
            raise ValueError(f"no nn.Linear matches {targets}")
        per_rank = sum(m.in_features + m.out_features for _, m in layers)  # A and B of rank 1
        for r in ranks:
            key = (r * per_rank, len(layers), -index)  # the largest cost, then more layers, then the earlier list
            if key[0] <= budget and (best is None or key > best[0]):
                best = (key, r, targets)
    if best is None:
        cheapest = min(lora_cost(model, t, min(ranks)) for t in choices)
        raise ValueError(f"no LoRA configuration fits a budget of {budget:,} parameters; the cheapest costs "
                         f"{cheapest:,}")
    (cost, _, _), r, targets = best
    apply_lora(model, targets, r=r, alpha=2.0 * r)
    return r, targets, cost


# --------------------------------------------------------------------------
# Early stopping on top of course_lib.train
# --------------------------------------------------------------------------


class EarlyStopping:
    """Watch a validation metric, keep the best weights, and stop after ``patience`` evaluations without progress.

    Use it through :func:`train_with_early_stopping`. An evaluation counts as
    progress when it beats the best so far by more than ``min_delta``.
    """

    def __init__(self, evaluate, patience: int = 3, metric: str = "val_loss", min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self._evaluate = evaluate
        self.patience = patience
        self.metric = metric
        self.min_delta = min_delta
        self.best = math.inf
        self.best_step = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_evals = 0
        self._step = 0

    def evaluate(self, model: nn.Module):
        """The wrapped evaluation: also remembers the weights when the metric improves."""
        result = self._evaluate(model)
        value = float(result if isinstance(result, (int, float)) else result[self.metric])
        if value < self.best - self.min_delta:
            self.best, self.best_step, self.bad_evals = value, self._step, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1
        return result

    def callback(self, step: int, history) -> None:
        self._step = step + 1  # the step an evaluation inside the next step_fn call belongs to
        if self.bad_evals >= self.patience:
            raise StopTraining(step)  # run_loop ends the run and sets history.stopped_at

    def restore(self, model: nn.Module) -> None:
        """Load the best weights seen (if any evaluation ran)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def train_with_early_stopping(
    model: nn.Module,
    batches,
    loss_fn,
    steps: int,
    *,
    evaluate,
    eval_every: int,
    patience: int = 3,
    metric: str = "val_loss",
    callback=None,
    **train_kwargs,
):
    """:func:`course_lib.train.train` that stops when ``metric`` stops improving and keeps the best weights.

    Runs at most ``steps`` steps; after ``patience`` evaluations in a row
    without a new best, it stops, then loads the weights of the best
    evaluation into ``model``. Returns ``(history, stopper)``; ``stopper.best``,
    ``stopper.best_step`` and ``history.stopped_at`` (None when it ran to the
    end) say what happened.
    """

    if eval_every < 1:
        raise ValueError(f"early stopping needs evaluations: eval_every must be >= 1, got {eval_every}")
    stopper = EarlyStopping(evaluate, patience=patience, metric=metric)

    def on_step(step: int, history) -> None:
        if callback is not None:
            callback(step, history)
        stopper.callback(step, history)  # raises StopTraining: run_loop ends the run and returns its history

    history = train(
        model, batches, loss_fn, steps, evaluate=stopper.evaluate, eval_every=eval_every, callback=on_step,
        **train_kwargs,
    )
    stopper.restore(model)
    return history, stopper


# --------------------------------------------------------------------------
# Task-specific fine-tuning: a classification head on a GPT
# --------------------------------------------------------------------------


def encode_padded(tokenizer, texts: list[str], length: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``texts``, cut each to its first ``length`` tokens and pad to ``length``.

    Returns ``ids`` (N, length) int64 and ``lengths`` (N,), each at least 1.
    Padding comes after the text, so in a causal model it never changes the
    hidden states of the text's own positions.
    """
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    ids = torch.full((len(texts), length), pad_id, dtype=torch.long)
    lengths = torch.zeros(len(texts), dtype=torch.long)
    for i, text in enumerate(texts):
        tokens = tokenizer.encode(text)[:length]
        if not tokens:
            raise ValueError(f"text {i} is empty: nothing to classify")
        ids[i, : len(tokens)] = torch.tensor(tokens)
        lengths[i] = len(tokens)
    return ids, lengths


class GPTClassifier(nn.Module):
    """A GPT body plus a linear head: the mean of the final hidden states over each text's tokens -> class logits.

    ``forward(ids, lengths)``: ids (B, T) int64 with T <= block_size, lengths (B,)
    the number of real tokens of each row -> logits (B, n_classes). The GPT's
    language-model head is not used (its weight is the tied token embedding).
    """

    def __init__(self, gpt: GPT, n_classes: int) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.gpt = gpt
        self.head = nn.Linear(gpt.config.n_embd, n_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T = ids.shape
        if lengths.shape != (B,) or bool((lengths < 1).any()) or bool((lengths > T).any()):
            raise ValueError(f"lengths must be ({B},) with values in 1..{T}, got {lengths.tolist()}")
        h, _ = self.gpt.hidden(ids)  # (B, T, C)
        real = (torch.arange(T, device=ids.device) < lengths[:, None]).to(h.dtype)  # (B, T): 1 on text, 0 on padding
        pooled = (h * real[..., None]).sum(dim=1) / lengths[:, None].to(h.dtype)  # (B, C)
        return self.head(pooled)  # (B, n_classes)


@torch.no_grad()
def predict_classes(
    model: GPTClassifier, ids: torch.Tensor, lengths: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The most likely class of each row, in eval mode and in batches: ids (N, T), lengths (N,) -> (N,)."""
    with eval_mode(model):
        return torch.cat([model(i, n).argmax(dim=-1) for i, n in zip(ids.split(batch_size), lengths.split(batch_size))])


def classification_accuracy(
    model: GPTClassifier, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> float:
    """Share of rows whose most likely class is the label."""
    return (predict_classes(model, ids, lengths, batch_size) == labels).float().mean().item()
