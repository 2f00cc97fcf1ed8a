"""Shortcuts, test models and common mistakes for notebook 06 (LoRA, freezing, counting, merging, early stopping).

The exercises build classes and functions that act on whole models, so the
checks first turn each into a function of plain, seeded inputs that returns
tensors and lists (``lora_output``, ``apply_lora_summary``,
``merge_lora_summary``). ``grading.check_function`` then compares the
student's version with course_lib's, and each mistaken function below is what
that summary looks like when a student makes that mistake, so the failing
check can name it. What a check tests as a property (a fresh layer's A and B, a
frozen base, a model left as it was) has its catalogue too: description -> the
predicate the check applies, so its message names the cause in the catalogue's words.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import torch
from torch import nn

from ..finetune import EarlyStopping, LoRALinear, apply_lora, lora_for_budget, merge_lora
from ..finetune import count_trainable_parameters as reference_count
from ..gpt import GPT, GPTConfig
from ..grading import (
    CheckFailed,
    catalogued,
    check_answer_rules,
    check_function,
    check_untampered,
    forbid_reference,
    matching_cause,
    substitute,
)
from ..train import StopTraining, run_loop

COUNT_SHORTCUTS = ["course_lib.finetune.count_trainable_parameters", "course_lib.finetune.count_parameters"]
APPLY_SHORTCUTS = ["course_lib.finetune.apply_lora"]
MERGE_SHORTCUTS = ["course_lib.finetune.merge_lora", "course_lib.finetune.LoRALinear.merged"]

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def tiny_gpt(seed: int = 0) -> GPT:
    """A seeded 2-layer GPT with 8 channels (``blocks.i.attn.qkv``, ``attn.proj``, ``mlp.fc``, ``mlp.proj``)."""
    torch.manual_seed(seed)
    return GPT(TINY)


def _tokens(seed: int) -> torch.Tensor:
    return torch.randint(TINY.vocab_size, (2, 6), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------
# count_trainable_parameters
# --------------------------------------------------------------------------


def _count_all(model):
    return sum(p.numel() for p in model.parameters())


def _count_tensors(model):
    return sum(1 for p in model.parameters() if p.requires_grad)


def _count_frozen(model):
    return sum(p.numel() for p in model.parameters() if not p.requires_grad)


def _count_shared_twice(model):
    return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False) if p.requires_grad)


COUNT_MISTAKES = {
    "counted every parameter, frozen ones too: keep only those with `p.requires_grad`": _count_all,
    "counted parameter *tensors*, not numbers: add up `p.numel()`": _count_tensors,
    "counted the frozen parameters instead of the trainable ones (`requires_grad` is True for trainable)": (
        _count_frozen
    ),
    "counted a shared (tied) tensor twice: `model.parameters()` lists each tensor once, use it (Hint 2 above)": (
        _count_shared_twice
    ),
}


def count_cases(seed: int) -> list[dict]:
    """Models to count: all trainable (with tied weights), partly frozen, and LoRA-wrapped."""
    torch.manual_seed(seed)
    plain = tiny_gpt(seed)
    partly = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.LayerNorm(3))
    partly[0].requires_grad_(False)
    partly[3].bias.requires_grad_(False)
    lora = tiny_gpt(seed + 1)
    apply_lora(lora, ["qkv", "fc"], r=2, alpha=4.0)
    return [{"model": plain}, {"model": partly}, {"model": lora}]


def check_count_trainable_parameters(count_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 06's count_trainable_parameters against course_lib's.

    With ``cases`` None: refuses course_lib's counting functions as shortcuts, then
    compares on :func:`count_cases` ``(0)`` (a GPT with tied weights, a partly
    frozen model, a LoRA model). Otherwise compares on ``cases`` (``{"model": ...}``
    dicts). A wrong count names its :data:`COUNT_MISTAKES` cause.
    """
    if cases is None:
        forbid_reference(count_fn, COUNT_SHORTCUTS, example={"model": nn.Linear(2, 2)},
                         name="count_trainable_parameters")
        cases = count_cases(0)
    check_function(count_fn, reference_count, cases, name="count_trainable_parameters", mistakes=COUNT_MISTAKES)


# --------------------------------------------------------------------------
# LoRALinear
# --------------------------------------------------------------------------


def check_not_reference_class(cls: type, reference: type = LoRALinear,
                              instead: str = "build yourself: subclass nn.Module instead") -> None:
    """Fail if the student's class is course_lib's ``reference`` (or built on it); ``instead`` ends the message."""
    check_answer_rules(cls)
    if isinstance(cls, type) and issubclass(cls, reference):
        raise CheckFailed(
            f"your {reference.__name__} is (or subclasses) course_lib.finetune.{reference.__name__}, which is what "
            f"this exercise asks you to {instead}."
        )


def _wrap(cls: type, weight, bias, r: int, alpha: float):
    out_features, in_features = weight.shape
    base = nn.Linear(in_features, out_features, bias=bias is not None)
    with torch.no_grad():
        base.weight.copy_(weight)
        if bias is not None:
            base.bias.copy_(bias)
    return base, cls(base, r=r, alpha=alpha)


def _parameter(layer: nn.Module, name: str, shape: tuple[int, ...], what: str) -> nn.Parameter:
    p = getattr(layer, name, None)
    if not isinstance(p, nn.Parameter):
        raise CheckFailed(f"LoRALinear should have an nn.Parameter `{name}` ({what}), got {type(p).__name__}.")
    if tuple(p.shape) != shape:
        raise CheckFailed(f"`{name}` has shape {tuple(p.shape)}; expected {shape} ({what}).")
    return p


def lora_output(cls: type, weight, bias, x, r: int, alpha: float, A, B) -> torch.Tensor:
    """Output of ``cls(base, r, alpha)`` on ``x`` once its ``lora_A`` and ``lora_B`` hold ``A`` and ``B``."""
    check_answer_rules(cls)
    out_features, in_features = weight.shape
    _, layer = _wrap(cls, weight, bias, r, alpha)
    a = _parameter(layer, "lora_A", (r, in_features), "A is (r, in_features)")
    b = _parameter(layer, "lora_B", (out_features, r), "B is (out_features, r)")
    with torch.no_grad():
        a.copy_(A)
        b.copy_(B)
        return layer(x)


def lora_cases(seed: int, shapes: Sequence[tuple[int, int, int, bool]]) -> list[dict]:
    """(in, out, r, bias) -> keyword arguments for :func:`lora_output` (minus ``cls``)."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for (n_in, n_out, r, bias), alpha in zip(shapes, [4.0, 1.0, 16.0, 8.0, 2.0]):
        cases.append({
            "weight": torch.randn(n_out, n_in, generator=g),
            "bias": torch.randn(n_out, generator=g) if bias else None,
            "x": torch.randn(3, n_in, generator=g),
            "r": r,
            "alpha": alpha,
            "A": torch.randn(r, n_in, generator=g),
            "B": torch.randn(n_out, r, generator=g),
        })
    return cases


class _LoRA(nn.Module):
    """LoRALinear as an answer writes it; each mistake below gets its forward wrong."""

    def __init__(self, base, r=8, alpha=16.0):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.r = r
        self.alpha = alpha
        self.scale = alpha / r
        out_features, in_features = base.weight.shape
        self.lora_A = nn.Parameter(torch.randn(r, in_features) / math.sqrt(in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))


class _LoRAInvertedScale(_LoRA):
    def forward(self, x):
        return self.base(x) + (self.r / self.alpha) * ((x @ self.lora_A.T) @ self.lora_B.T)


class _LoRANoScale(_LoRA):
    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.T) @ self.lora_B.T


class _LoRAAlphaOnly(_LoRA):
    def forward(self, x):
        return self.base(x) + self.alpha * ((x @ self.lora_A.T) @ self.lora_B.T)


class _LoRAUpdateOnly(_LoRA):
    def forward(self, x):
        return self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)


class _LoRANoBias(_LoRA):
    def forward(self, x):
        return x @ self.base.weight.T + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)


def _output_of(cls: type) -> Callable:
    """A mistaken class as the check sees a class: its output with A and B set (:func:`lora_output`)."""
    return functools.partial(lora_output, cls)


LORA_MISTAKES = {
    "the scale is upside down: multiply the update by alpha / r, not r / alpha": _output_of(_LoRAInvertedScale),
    "the update is not scaled: multiply B A x by alpha / r": _output_of(_LoRANoScale),
    "scaled by alpha alone: the scale is alpha / r": _output_of(_LoRAAlphaOnly),
    "only the low-rank update is returned: add it to the frozen layer's output, base(x) + (alpha / r) B A x": (
        _output_of(_LoRAUpdateOnly)
    ),
    "the base layer's bias went missing: call the base layer itself, `self.base(x)`": _output_of(_LoRANoBias),
}


def _is_zero(p: torch.Tensor) -> bool:
    return float(p.detach().abs().max()) == 0.0


def _starts_with_random_b(layer: nn.Module, changes_output: bool) -> bool:
    return changes_output and not _is_zero(layer.lora_B)


def _update_replaces_the_base(layer: nn.Module, changes_output: bool) -> bool:
    return changes_output and _is_zero(layer.lora_B)


def _starts_with_zero_a(layer: nn.Module, changes_output: bool) -> bool:
    return _is_zero(layer.lora_A)


# Checked on a freshly wrapped layer: predicates of (layer, whether it changes its base layer's output).
LORA_INIT_SYMPTOMS = {
    "B is not zero at the start: a fresh LoRA layer must compute exactly what the pre-trained layer did, so "
    "initialise `lora_B` with zeros (and only A randomly)": _starts_with_random_b,
    "the output differs from the base layer's although B is zero: return base(x) + the update": (
        _update_replaces_the_base
    ),
    "`lora_A` starts at zero: with A = 0 and B = 0 both gradients are zero and LoRA never learns; initialise A "
    "randomly (e.g. nn.init.kaiming_uniform_) and B with zeros": _starts_with_zero_a,
}


def check_lora_init(cls: type, seed: int, shapes: Sequence[tuple[int, int, int, bool]]) -> None:
    """A freshly wrapped layer must compute exactly what its base did (B = 0) and be able to learn (A != 0)."""
    check_answer_rules(cls)
    check_untampered()
    g = torch.Generator().manual_seed(seed)
    for n_in, n_out, r, bias in shapes:
        torch.manual_seed(seed)
        base = nn.Linear(n_in, n_out, bias=bias)
        x = torch.randn(4, n_in, generator=g)
        with torch.no_grad():
            expected = base(x)
        layer = cls(base, r=r, alpha=2.0 * r)
        _parameter(layer, "lora_A", (r, n_in), "A is (r, in_features)")
        _parameter(layer, "lora_B", (n_out, r), "B is (out_features, r)")
        with torch.no_grad():
            got = layer(x)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
            raise CheckFailed(f"LoRALinear({n_in} -> {n_out}) returned {type(got).__name__} "
                              f"{tuple(getattr(got, 'shape', ()))}; expected a tensor {tuple(expected.shape)}.")
        changes_output = not torch.allclose(got, expected, atol=1e-6)
        cause = matching_cause(LORA_INIT_SYMPTOMS, layer, changes_output)
        if cause:
            what = "changes the layer's output" if changes_output else "can never learn"
            raise CheckFailed(f"a freshly wrapped LoRALinear({n_in} -> {n_out}, r={r}) {what}.\n"
                              f"  Likely cause: {cause}")


def check_lora_forward(cls: type, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 06's LoRALinear: not course_lib's class, and W x + b + (alpha / r) B A x.

    With ``cases`` None: also :func:`check_lora_init` (a fresh layer computes what its
    base did, A is not zero) on two shapes, then compares outputs on
    :func:`lora_cases` ``(0, ...)``. Otherwise compares on ``cases`` (from
    :func:`lora_cases`). A wrong output names its :data:`LORA_MISTAKES` cause.
    """
    check_not_reference_class(cls)
    if cases is None:
        check_lora_init(cls, seed=0, shapes=[(6, 4, 2, True), (5, 5, 3, False)])
        cases = lora_cases(0, [(6, 4, 2, True), (3, 8, 1, True)])
    check_function(
        functools.partial(lora_output, cls), functools.partial(lora_output, LoRALinear), cases,
        name="LoRALinear (with A and B set)", mistakes=LORA_MISTAKES,
    )


def _base_trainable(base: nn.Linear) -> bool:
    return any(p.requires_grad for p in base.parameters())


# Checked on the layer a fresh LoRALinear wraps: predicates of that base layer.
LORA_TRAINABLE_SYMPTOMS = {
    "the wrapped layer was not frozen: the pre-trained layer must stay as it is (`base.requires_grad_(False)`, "
    "or set `requires_grad = False` on its parameters)": _base_trainable,
}


def check_lora_trainable(cls: type, seed: int = 0) -> None:
    """Only A and B train: the base weight and bias are frozen, and a backward pass reaches B."""
    check_answer_rules(cls)
    check_untampered()
    torch.manual_seed(seed)
    base = nn.Linear(5, 3)
    layer = cls(base, r=2, alpha=4.0)
    cause = matching_cause(LORA_TRAINABLE_SYMPTOMS, base)
    if cause:
        trainable = [n for n, p in (("base.weight", base.weight), ("base.bias", base.bias)) if p.requires_grad]
        raise CheckFailed(f"{' and '.join(trainable)} still require gradients.\n  Likely cause: {cause}")
    names = sorted(n for n, p in layer.named_parameters() if p.requires_grad)
    if names != ["lora_A", "lora_B"]:
        raise CheckFailed(f"the trainable parameters should be exactly lora_A and lora_B, got {names}.")
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(seed))
    layer(x).pow(2).sum().backward()
    if base.weight.grad is not None:
        raise CheckFailed("the base weight received a gradient: it must be frozen.")
    if layer.lora_B.grad is None or float(layer.lora_B.grad.abs().max()) == 0.0:
        raise CheckFailed("lora_B got no gradient: is A zero, or is the update detached from the output?")


# --------------------------------------------------------------------------
# apply_lora
# --------------------------------------------------------------------------


def _is_lora(module: nn.Module) -> bool:
    return hasattr(module, "lora_A") and hasattr(module, "lora_B")


def apply_lora_summary(apply_fn: Callable, seed: int, target_modules: Sequence[str], r: int, alpha: float):
    """What ``apply_fn(tiny_gpt(seed), target_modules, r, alpha)`` did, as comparable values.

    Returns (sorted returned names, sorted names of LoRA layers with their A and B shapes,
    sorted trainable parameter names). The logits are left out on purpose: they depend on the
    LoRALinear class (checked on its own), not on apply_lora.
    """
    check_answer_rules(apply_fn)
    model = tiny_gpt(seed)
    returned = apply_fn(model, list(target_modules), r=r, alpha=alpha)
    if not isinstance(returned, (list, tuple)):
        raise CheckFailed(f"apply_lora should return the list of wrapped names, got {type(returned).__name__}")
    wrapped = sorted(
        f"{name}: A {tuple(m.lora_A.shape)}, B {tuple(m.lora_B.shape)}"
        for name, m in model.named_modules()
        if _is_lora(m)
    )
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    return sorted(returned), wrapped, trainable


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def _wrap_where(model: nn.Module, keep: Callable[[str], bool], r: int, alpha: float) -> list[str]:
    chosen = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and keep(n)]
    for name in chosen:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, LoRALinear(getattr(owner, attr), r=r, alpha=alpha))
    return chosen


def _apply_no_freeze(model, target_modules, r=8, alpha=16.0):
    return _wrap_where(model, lambda n: _matches(n, target_modules), r, alpha)  # LoRALinear freezes its base only


def _apply_freeze_after(model, target_modules, r=8, alpha=16.0):
    chosen = _wrap_where(model, lambda n: _matches(n, target_modules), r, alpha)
    model.requires_grad_(False)
    return chosen


def _apply_every_linear(model, target_modules, r=8, alpha=16.0):
    model.requires_grad_(False)
    return _wrap_where(model, lambda n: True, r, alpha)


def _apply_last_part_only(model, target_modules, r=8, alpha=16.0):
    model.requires_grad_(False)
    last = {t.split(".")[-1] for t in target_modules}
    return _wrap_where(model, lambda n: n.split(".")[-1] in last, r, alpha)


def _summarised(fn: Callable) -> Callable:
    return functools.partial(apply_lora_summary, fn)


APPLY_MISTAKES = {
    "the rest of the model is still trainable: freeze every parameter first (`p.requires_grad_(False)` for "
    "all of `model.parameters()`), then wrap; only the new A and B should train": _summarised(_apply_no_freeze),
    "froze the model *after* wrapping, which froze the new A and B too: freeze first, then wrap (Hint 1 above)": (
        _summarised(_apply_freeze_after)
    ),
    "wrapped every nn.Linear: wrap only the layers whose name ends with one of target_modules": (
        _summarised(_apply_every_linear)
    ),
    "matched only the last part of each name: 'attn.proj' must not also pick 'mlp.proj'; test "
    "`name == t or name.endswith('.' + t)` (Hint 3 above)": _summarised(_apply_last_part_only),
}


def _apply_accepts_typos(model, target_modules, r=8, alpha=16.0):
    model.requires_grad_(False)
    return _wrap_where(model, lambda n: _matches(n, target_modules), r, alpha)  # [] when nothing matches


# Checked by calling apply_lora with a target that matches no layer: description -> the mistaken apply_lora.
APPLY_TYPO_MISTAKES = {
    "a target list that matches no layer was accepted silently: raise a ValueError naming it, otherwise a typo "
    "trains nothing": _apply_accepts_typos,
}


def check_apply_lora_rejects_typos(apply_fn: Callable) -> None:
    """apply_lora must raise ValueError when no layer matches (a typo would otherwise train nothing)."""
    check_answer_rules(apply_fn)
    check_untampered()
    try:
        apply_fn(tiny_gpt(0), ["attn.qvk"], r=2, alpha=4.0)
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - any other error is the wrong kind
        raise CheckFailed(f"apply_lora with a target that matches nothing raised {type(exc).__name__}; "
                          "expected a ValueError naming the target") from exc
    raise CheckFailed("apply_lora(model, ['attn.qvk']) matched no layer but did not raise.\n"
                      f"  Likely cause: {catalogued(APPLY_TYPO_MISTAKES, _apply_accepts_typos)}")


def check_apply_lora(apply_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 06's apply_lora: the names it returns, the layers it wraps, what stays trainable.

    With ``cases`` None: refuses course_lib's apply_lora as a shortcut, then compares
    :func:`apply_lora_summary` with course_lib's on two visible cases. Otherwise compares
    on ``cases`` (``seed``, ``target_modules``, ``r``, ``alpha``). A difference names its
    :data:`APPLY_MISTAKES` cause. Then :func:`check_apply_lora_rejects_typos`.
    """
    if cases is None:
        forbid_reference(apply_fn, APPLY_SHORTCUTS, example={"model": tiny_gpt(0), "target_modules": ["qkv"], "r": 2},
                         name="apply_lora")
        cases = [{"seed": 0, "target_modules": ["qkv", "attn.proj"], "r": 2, "alpha": 4.0},
                 {"seed": 1, "target_modules": ["fc"], "r": 1, "alpha": 1.0}]
    check_function(
        functools.partial(apply_lora_summary, apply_fn), reference_apply_summary, cases,
        name="apply_lora (returned names, LoRA layers, trainable parameters)", mistakes=APPLY_MISTAKES,
    )
    check_apply_lora_rejects_typos(apply_fn)


# --------------------------------------------------------------------------
# merge_lora
# --------------------------------------------------------------------------


def lora_model(cls: type, seed: int, target_modules: Sequence[str], r: int, alpha: float) -> GPT:
    """``tiny_gpt(seed)`` with the named linear layers wrapped in ``cls`` and random (non-zero) A and B.

    Each layer's ``scale`` is set to alpha / r, so a merge that reads it
    gets the right number even if the wrapper's constructor got it wrong.
    """
    check_answer_rules(cls)
    model = tiny_gpt(seed)
    model.requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 1000)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and _matches(n, target_modules)]
    for name in names:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent)
        layer = cls(getattr(owner, attr), r=r, alpha=alpha)
        with torch.no_grad():
            layer.lora_A.copy_(0.5 * torch.randn(layer.lora_A.shape, generator=g))
            layer.lora_B.copy_(0.5 * torch.randn(layer.lora_B.shape, generator=g))
        layer.scale = alpha / r
        setattr(owner, attr, layer)
    return model


def merge_lora_summary(merge_fn: Callable, cls: type, seed: int, target_modules: Sequence[str], r: int, alpha: float):
    """What ``merge_fn`` does to :func:`lora_model`: (its return value, LoRA layers left,
    the merged weights of the wrapped layers, the merged model's logits)."""
    check_answer_rules(merge_fn, cls)
    model = lora_model(cls, seed, target_modules, r, alpha)
    wrapped = [n for n, m in model.named_modules() if _is_lora(m)]
    count = merge_fn(model)
    left = sorted(n for n, m in model.named_modules() if _is_lora(m))
    weights = []
    for name in wrapped:
        m = model.get_submodule(name)
        weights.append(m.weight.detach().clone() if isinstance(m, nn.Linear) else torch.full((1,), float("nan")))
    with torch.no_grad():
        logits = model(_tokens(seed))
    return count, left, weights, logits


def _merge_wrong(delta: Callable, keep_wrapper: bool = False) -> Callable:
    def merge(model):
        wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
        for name in wrapped:
            parent, _, attr = name.rpartition(".")
            owner = model.get_submodule(parent)
            layer = getattr(owner, attr)
            if keep_wrapper:
                with torch.no_grad():
                    layer.base.weight += delta(layer)
                continue
            out_features, in_features = layer.base.weight.shape
            merged = nn.Linear(in_features, out_features, bias=layer.base.bias is not None)
            with torch.no_grad():
                merged.weight.copy_(layer.base.weight + delta(layer))
                if layer.base.bias is not None:
                    merged.bias.copy_(layer.base.bias)
            setattr(owner, attr, merged)
        return len(wrapped)

    return merge


def _merge_summarised(merge: Callable) -> Callable:
    return functools.partial(merge_lora_summary, merge, LoRALinear)


MERGE_MISTAKES = {
    "the update is transposed: W is (out, in), and so is lora_B @ lora_A (B is (out, r), A is (r, in)); "
    "no `.T` (Hint 1 above)": _merge_summarised(
        _merge_wrong(lambda m: m.scale * (m.lora_B @ m.lora_A).T)
    ),
    "the scale is missing: W + (alpha / r) B A, the same scale as in forward": _merge_summarised(
        _merge_wrong(lambda m: m.lora_B @ m.lora_A)
    ),
    "the LoRA layers are still in the model: after adding the update to the weight, replace each LoRA layer "
    "by a plain nn.Linear (otherwise its update counts twice)": _merge_summarised(
        _merge_wrong(lambda m: m.scale * (m.lora_B @ m.lora_A), keep_wrapper=True)
    ),
}


def check_merge_lora(merge_fn: Callable, cls: type, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 06's merge_lora, run on models built with the student's LoRALinear ``cls``.

    With ``cases`` None: refuses course_lib's merge as a shortcut, then compares
    :func:`merge_lora_summary` (count, LoRA layers left, merged weights, logits) with
    course_lib's on two visible cases. Otherwise compares on ``cases`` (``seed``,
    ``target_modules``, ``r``, ``alpha``). A difference names its :data:`MERGE_MISTAKES` cause.
    """
    if cases is None:
        forbid_reference(merge_fn, MERGE_SHORTCUTS, example={"model": lora_model(cls, 0, ["qkv"], 2, 4.0)},
                         name="merge_lora")
        cases = [{"seed": 0, "target_modules": ["attn.proj"], "r": 2, "alpha": 4.0},
                 {"seed": 1, "target_modules": ["qkv", "fc"], "r": 3, "alpha": 1.0}]
    check_function(
        functools.partial(merge_lora_summary, merge_fn, cls), reference_merge_summary, cases,
        name="merge_lora (count, LoRA layers left, merged weights, logits)", mistakes=MERGE_MISTAKES,
    )


def reference_merge_summary(seed: int, target_modules: Sequence[str], r: int, alpha: float):
    """:func:`merge_lora_summary` of course_lib's merge_lora on course_lib's LoRALinear."""
    return merge_lora_summary(merge_lora, LoRALinear, seed, target_modules, r, alpha)


def reference_apply_summary(seed: int, target_modules: Sequence[str], r: int, alpha: float):
    """:func:`apply_lora_summary` of course_lib's apply_lora."""
    return apply_lora_summary(apply_lora, seed, target_modules, r, alpha)


# --------------------------------------------------------------------------
# Synthesis: lora_for_budget
# --------------------------------------------------------------------------

BUDGET_SHORTCUTS = ["course_lib.finetune.lora_for_budget", "course_lib.finetune.lora_cost"]
ALL_FOUR = ["qkv", "attn.proj", "fc", "mlp.proj"]


def budget_gpt(seed: int, n_embd: int = 8, n_layer: int = 2) -> GPT:
    """A seeded small GPT (``TINY`` with another width or depth) for the budget checks."""
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TINY.vocab_size, block_size=TINY.block_size, n_layer=n_layer, n_head=2,
                         n_embd=n_embd))


def _lora_layers(model: nn.Module) -> list[str]:
    return sorted(
        f"{name}: A {tuple(m.lora_A.shape)}, B {tuple(m.lora_B.shape)}, scale {getattr(m, 'scale', None)}"
        for name, m in model.named_modules()
        if _is_lora(m)
    )


def budget_summary(budget_fn: Callable, seed: int, budget: int, r_choices: Sequence[int],
                   target_choices: Sequence[Sequence[str]], n_embd: int = 8, n_layer: int = 2):
    """What ``budget_fn(budget_gpt(seed, n_embd, n_layer), budget, r_choices, target_choices)`` did, comparably.

    Returns ([r, targets, cost] as returned, sorted LoRA layers with their A and B shapes and scale,
    sorted trainable parameter names).
    """
    check_answer_rules(budget_fn)
    model = budget_gpt(seed, n_embd, n_layer)
    returned = budget_fn(model, budget, list(r_choices), [list(t) for t in target_choices])
    if not isinstance(returned, (tuple, list)) or len(returned) != 3:
        raise CheckFailed(f"lora_for_budget should return (r, targets, cost), got {returned!r:.80}")
    r, targets, cost = returned
    targets = list(targets) if isinstance(targets, (tuple, list)) else targets
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    return [r, targets, cost], _lora_layers(model), trainable


def _per_rank(model: nn.Module, targets: Sequence[str]) -> tuple[int, int]:
    layers = [m for n, m in model.named_modules() if isinstance(m, nn.Linear) and _matches(n, targets)]
    return sum(m.in_features + m.out_features for m in layers), len(layers)


def _per_rank_once(model: nn.Module, targets: Sequence[str]) -> tuple[int, int]:
    """The mistake: each target counted once (its first matching layer), not once per block."""
    total, count = 0, 0
    for t in targets:
        for n, m in model.named_modules():
            if isinstance(m, nn.Linear) and _matches(n, [t]):
                total, count = total + m.in_features + m.out_features, count + 1
                break
    return total, count


def _budget_variant(fits: Callable = lambda cost, budget: cost <= budget, key: Callable | None = None,
                    alpha: Callable = lambda r: 2.0 * r, per_rank: Callable = _per_rank) -> Callable:
    """A lora_for_budget with one rule changed; ``key(cost, n_layers, index, r)`` ranks the candidates."""
    key = key or (lambda cost, n, index, r: (cost, n, -index))

    def choose(model, budget, r_choices, target_choices):
        best = None
        for index, targets in enumerate(target_choices):
            total, n = per_rank(model, targets)
            for r in r_choices:
                rank = key(r * total, n, index, r)
                if fits(r * total, budget) and (best is None or rank > best[0]):
                    best = (rank, r, list(targets), r * total)
        if best is None:
            raise ValueError("nothing fits")
        _, r, targets, cost = best
        apply_lora(model, targets, r=r, alpha=alpha(r))
        return r, targets, cost

    return choose


def _budget(fn: Callable) -> Callable:
    return functools.partial(budget_summary, fn)


BUDGET_MISTAKES = {
    "a candidate whose cost equals the budget fits too: keep cost <= budget, not cost < budget": _budget(
        _budget_variant(fits=lambda cost, budget: cost < budget)
    ),
    "picked the largest rank that fits; the goal is the largest cost (trainable parameters): a lower rank on "
    "more layers can use more of the budget": _budget(
        _budget_variant(key=lambda cost, n, index, r: (r, cost, n, -index))
    ),
    "among equal costs, prefer the candidate that wraps more layers (a lower rank on more layers), "
    "not the larger rank (Hint 1 above)": _budget(
        _budget_variant(key=lambda cost, n, index, r: (cost, r, -index))
    ),
    "counted each target name once; every layer whose name matches (one per block) costs r (d_in + d_out)": (
        _budget(_budget_variant(per_rank=_per_rank_once))
    ),
    "wrapped with apply_lora's default alpha: the contract says alpha = 2 r": _budget(
        _budget_variant(alpha=lambda r: 16.0)
    ),
}

BUDGET_CASES = [  # each catalogued mistake shows, and is told apart from the others, on the first it fails
    {"seed": 0, "budget": 160, "r_choices": [1, 2, 4], "target_choices": [["fc"], ["qkv", "attn.proj"], ALL_FOUR]},
    {"seed": 1, "budget": 288, "r_choices": [1, 4, 6], "target_choices": [["qkv"], ALL_FOUR, ["attn.proj"]]},
]


def _wrapped_before_refusing(model: nn.Module) -> bool:
    return any(_is_lora(m) for m in model.modules())


def _froze_before_refusing(model: nn.Module) -> bool:
    return not all(p.requires_grad for p in model.parameters())


# Checked on the model after lora_for_budget refused (raised ValueError): predicates of that model.
BUDGET_REFUSAL_SYMPTOMS = {
    "wrapped layers before deciding that nothing fits: decide first, then change the model, so a refused call "
    "leaves it as it was": _wrapped_before_refusing,
    "froze the model before deciding that nothing fits: decide first, then change the model, so a refused call "
    "leaves it as it was": _froze_before_refusing,
}


def check_lora_for_budget_rejects(budget_fn: Callable) -> None:
    """ValueError, with the model left as it was, when nothing fits or a target list matches no layer."""
    check_answer_rules(budget_fn)
    check_untampered()
    for budget, targets, why in [
        (50, [["qkv"], ALL_FOUR], "the cheapest candidate, r = 1 on qkv, costs 64 > 50"),
        (10_000, [["qkv"], ["attn.qvk"]], "the target list ['attn.qvk'] matches no layer"),
    ]:
        model = budget_gpt(0)
        try:
            budget_fn(model, budget, [1, 2], targets)
        except ValueError:
            cause = matching_cause(BUDGET_REFUSAL_SYMPTOMS, model)
            if cause:
                raise CheckFailed(f"lora_for_budget raised ValueError ({why}) but had already changed the model.\n"
                                  f"  Likely cause: {cause}") from None
            continue
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any other error is the wrong kind
            raise CheckFailed(f"lora_for_budget(budget={budget}, target_choices={targets}) raised "
                              f"{type(exc).__name__}: {exc}; expected a ValueError ({why}).") from exc
        raise CheckFailed(f"lora_for_budget(budget={budget}, target_choices={targets}) did not raise: {why}, "
                          "so it should raise a ValueError.")


def check_lora_for_budget(budget_fn: Callable, namespace: MutableMapping[str, Any],
                          cases: list[dict] | None = None) -> None:
    """Self-check of notebook 06's synthesis, lora_for_budget, with course_lib's LoRA pieces bound in ``namespace``.

    ``namespace`` is the notebook's ``globals()``: while the check runs, the names
    ``LoRALinear``, ``apply_lora`` and ``count_trainable_parameters`` there are
    course_lib's, so a slip in an earlier exercise is not counted twice. With
    ``cases`` None: refuses course_lib's lora_for_budget as a shortcut, compares
    :func:`budget_summary` with course_lib's on :data:`BUDGET_CASES`, then
    :func:`check_lora_for_budget_rejects`. Otherwise compares on ``cases`` (``seed``,
    ``budget``, ``r_choices``, ``target_choices``, optional ``n_embd``, ``n_layer``).
    A difference names its :data:`BUDGET_MISTAKES` cause.
    """
    with substitute(namespace, LoRALinear=LoRALinear, apply_lora=apply_lora,
                    count_trainable_parameters=reference_count):
        if cases is None:
            forbid_reference(budget_fn, BUDGET_SHORTCUTS,
                             example={"model": budget_gpt(0), "budget": 256, "r_choices": [1, 2],
                                      "target_choices": [["qkv"]]}, name="lora_for_budget")
            cases = BUDGET_CASES
        check_function(
            functools.partial(budget_summary, budget_fn), reference_budget_summary, cases,
            name="lora_for_budget (returned (r, targets, cost), LoRA layers, trainable parameters)",
            mistakes=BUDGET_MISTAKES,
        )
        check_lora_for_budget_rejects(budget_fn)


def reference_budget_summary(seed: int, budget: int, r_choices: Sequence[int],
                             target_choices: Sequence[Sequence[str]], n_embd: int = 8, n_layer: int = 2):
    """:func:`budget_summary` of course_lib's lora_for_budget."""
    return budget_summary(lora_for_budget, seed, budget, r_choices, target_choices, n_embd, n_layer)


# --------------------------------------------------------------------------
# Debug exercise: EarlyStopping
# --------------------------------------------------------------------------

EARLY_STOPPING_SHORTCUTS = ["course_lib.finetune.EarlyStopping", "course_lib.finetune.train_with_early_stopping"]


def early_stopping_run(cls: type, losses: str, patience: int = 3, eval_every: int = 1,
                       min_delta: float = 0.0, metric: str | None = None):
    """Train a stand-in model under ``cls(evaluate, patience, ...)`` with course_lib's loop; what happened.

    The "training" adds 1 to every weight in place at each step, as an optimizer
    updates parameters in place, so a weight holds the number of steps done. The
    validation loss after ``(k + 1) * eval_every`` steps is the k-th number of
    ``losses`` (text such as ``"3.0 2.6 2.8"``, so that a failing case shows it):
    a number, or, with ``metric``, the entry ``metric`` of a dict of metrics. The
    run has ``eval_every`` steps per loss, with the stopper's ``evaluate`` and
    ``callback`` plugged into :func:`course_lib.train.run_loop` as
    ``train_with_early_stopping`` plugs them into ``train``; then ``restore``.

    Returns [the step the run stopped at (None: it ran to the end), ``best``, ``best_step``,
    the validation loss of the restored model].
    """
    check_answer_rules(cls)
    curve = [float(v) for v in losses.split()]
    table = {(k + 1) * eval_every: v for k, v in enumerate(curve)}  # steps done -> validation loss
    model = nn.Linear(3, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()

    def steps_done(m: nn.Module) -> int:
        return round(m.weight[0, 0].item())

    def evaluate(m: nn.Module):
        loss = table.get(steps_done(m), math.nan)
        return loss if metric is None else {"accuracy": 0.5, metric: loss}

    def step_fn(step: int) -> float:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        return 0.0

    options = {"patience": patience, "min_delta": min_delta, **({"metric": metric} if metric else {})}
    stopper = cls(evaluate, **options)
    history = run_loop(step_fn, len(curve) * eval_every, evaluate=lambda: stopper.evaluate(model),
                       eval_every=eval_every, callback=stopper.callback, progress=False)
    stopper.restore(model)
    best = getattr(stopper, "best", None)
    return [history.stopped_at, best, getattr(stopper, "best_step", None), table.get(steps_done(model), math.nan)]


def reference_early_stopping_run(losses: str, patience: int = 3, eval_every: int = 1,
                                 min_delta: float = 0.0, metric: str | None = None):
    """:func:`early_stopping_run` of course_lib's EarlyStopping."""
    return early_stopping_run(EarlyStopping, losses, patience, eval_every, min_delta, metric)


class _Stopper:
    """EarlyStopping as an answer writes it; each mistake below gets one method wrong."""

    def __init__(self, evaluate, patience=3, metric="val_loss", min_delta=0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self._evaluate = evaluate
        self.patience = patience
        self.metric = metric
        self.min_delta = min_delta
        self.best = math.inf
        self.best_step = -1
        self.best_state = None
        self.bad_evals = 0
        self._step = 0

    def evaluate(self, model):
        result = self._evaluate(model)
        value = float(result if isinstance(result, (int, float)) else result[self.metric])
        if value < self.best - self.min_delta:
            self.best, self.best_step, self.bad_evals = value, self._step, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1
        return result

    def callback(self, step, history):
        self._step = step + 1
        if self.bad_evals >= self.patience:
            raise StopTraining(step)

    def restore(self, model):
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


class _StopperKeepsLiveWeights(_Stopper):
    def evaluate(self, model):
        result = self._evaluate(model)
        value = float(result if isinstance(result, (int, float)) else result[self.metric])
        if value < self.best - self.min_delta:
            self.best, self.best_step, self.bad_evals = value, self._step, 0
            self.best_state = model.state_dict()
        else:
            self.bad_evals += 1
        return result


class _StopperNeverResets(_Stopper):
    def evaluate(self, model):
        result = self._evaluate(model)
        value = float(result if isinstance(result, (int, float)) else result[self.metric])
        if value < self.best - self.min_delta:
            self.best, self.best_step = value, self._step
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1
        return result


class _StopperTieIsProgress(_Stopper):
    def evaluate(self, model):
        result = self._evaluate(model)
        value = float(result if isinstance(result, (int, float)) else result[self.metric])
        if value <= self.best - self.min_delta:
            self.best, self.best_step, self.bad_evals = value, self._step, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1
        return result


class _StopperDeltaWrongSide(_Stopper):
    def evaluate(self, model):
        result = self._evaluate(model)
        value = float(result if isinstance(result, (int, float)) else result[self.metric])
        if value < self.best + self.min_delta:
            self.best, self.best_step, self.bad_evals = value, self._step, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1
        return result


class _StopperComparesWithPrevious(_Stopper):
    def __init__(self, evaluate, patience=3, metric="val_loss", min_delta=0.0):
        super().__init__(evaluate, patience, metric, min_delta)
        self.previous = math.inf

    def evaluate(self, model):
        result = self._evaluate(model)
        value = float(result if isinstance(result, (int, float)) else result[self.metric])
        previous, self.previous = self.previous, value
        if value < previous - self.min_delta:
            self.best, self.best_step, self.bad_evals = value, self._step, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_evals += 1
        return result


class _StopperStopsLate(_Stopper):
    def callback(self, step, history):
        self._step = step + 1
        if self.bad_evals > self.patience:
            raise StopTraining(step)


def _early_stopping_mistake(cls: type) -> Callable:
    """A mistaken class as the check sees a class: what a run under it did (:func:`early_stopping_run`)."""
    return functools.partial(early_stopping_run, cls)


EARLY_STOPPING_MISTAKES = {
    "the restored model is not the best one: the run stops where it should and `best` and `best_step` are right, "
    "but after `restore` the model has the validation loss of the run's last evaluation, as if `restore` had not "
    "run. Check what `best_state` holds at the end of the run, and whether that is still the weights of step "
    "`best_step` (Hint 1 above)": (
        _early_stopping_mistake(_StopperKeepsLiveWeights)
    ),
    "the run stops too early: at the evaluation where it stops, fewer than `patience` evaluations in a row have "
    "gone without progress since the last new best. Follow `bad_evals` evaluation by evaluation through this "
    "case and compare it with that count (Hint 1 above)": (
        _early_stopping_mistake(_StopperNeverResets)
    ),
    "a tie counted as progress: a loss equal to the best so far (with min_delta > 0, one exactly min_delta below "
    "it) became a new best, which moved `best_step` to the later of the two and started the patience count "
    "again; by the equation above a tie is an evaluation without progress. Check the test that decides "
    "progress": _early_stopping_mistake(_StopperTieIsProgress),
    "min_delta works the wrong way: with min_delta > 0, losses that do not beat the best by more than min_delta "
    "(a little below the best, or even a little above it) counted as new bests, so `best` can go up and the "
    "run can go on too long. Check the test that decides progress against the equation above": (
        _early_stopping_mistake(_StopperDeltaWrongSide)
    ),
    "a dip counted as a new best although it did not beat the best so far: after a rise, a loss lower than the "
    "evaluation just before it, but not lower than `best`, became the new best (so `best` can go up) and "
    "the patience count started again. Check what a new loss is compared with, against the equation above": (
        _early_stopping_mistake(_StopperComparesWithPrevious)
    ),
    "stopped one evaluation late: the run went on for one more evaluation after the one that made `patience` "
    "evaluations in a row without progress (or ran to the end when that came first). Check when `callback` "
    "ends the run": _early_stopping_mistake(_StopperStopsLate),
}

EARLY_STOPPING_CASES = [  # the first shows the saved-weights bug alone; each mistake shows on the first it fails
    {"losses": "3.0 2.6 2.3 2.3 2.5 2.9 3.1 3.2 3.3", "patience": 3},
    {"losses": "3.0 2.6 2.8 2.4 2.7 2.5 2.4 2.9 2.2 2.6", "patience": 2, "eval_every": 2, "metric": "val_loss"},
    {"losses": "2.0 1.7 1.68 1.75 1.4 1.45 1.5 1.3", "patience": 2, "min_delta": 0.05},
]


def early_stopping_cases(seed: int, n: int = 3) -> list[dict]:
    """Seeded noisy validation curves (fall, then rise), rounded to 0.05 so that ties happen; varied settings
    (patience 1 to 3, an evaluation every step or every second step, a dict of metrics, a min_delta)."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for i in range(n):
        length = int(torch.randint(8, 16, (1,), generator=g))
        turn = int(torch.randint(3, length - 2, (1,), generator=g))
        trend = [-0.2 * min(k, turn) + 0.15 * max(0, k - turn) for k in range(length)]
        noise = (0.12 * torch.randn(length, generator=g)).tolist()
        losses = " ".join(f"{round(20 * (3.0 + t + e)) / 20:g}" for t, e in zip(trend, noise))
        case = {"losses": losses, "patience": 1 + (seed + i) % 3, "eval_every": 1 + i % 2}
        if i % 3 == 1:
            case["metric"] = "val_loss" if seed % 2 else "perplexity"
        if i % 3 == 2:
            case["min_delta"] = 0.07  # far from the differences (multiples of 0.05): no rounding at the boundary
        cases.append(case)
    return cases


def _unchanged_by_restore(cls: type) -> str | None:
    """restore before any evaluation must leave the model as it is; patience < 1 must be refused."""
    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    cls(lambda m: 1.0, patience=2).restore(model)
    if any(not torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before)):
        return "restore() changed the model although no evaluation ran: with no best weights yet, do nothing."
    try:
        cls(lambda m: 1.0, patience=0)
    except ValueError:
        return None
    except Exception as exc:  # noqa: BLE001 - any other error is the wrong kind
        return f"EarlyStopping(evaluate, patience=0) raised {type(exc).__name__}: {exc}; expected a ValueError."
    return "EarlyStopping(evaluate, patience=0) did not raise: patience must be at least 1 (raise a ValueError)."


def check_early_stopping(cls: type, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 06's debug exercise, the class EarlyStopping, against course_lib's.

    With ``cases`` None: refuses course_lib's EarlyStopping (as a base class or a
    shortcut), checks the contract's edges (restore with no evaluation, patience
    0), then compares :func:`early_stopping_run` with course_lib's on
    :data:`EARLY_STOPPING_CASES`. Otherwise compares on ``cases`` (see
    :func:`early_stopping_cases`). A difference names its
    :data:`EARLY_STOPPING_MISTAKES` cause.
    """
    check_not_reference_class(cls, EarlyStopping, "fix yourself: keep the class you were given")
    check_untampered()
    if cases is None:
        forbid_reference(functools.partial(early_stopping_run, cls), EARLY_STOPPING_SHORTCUTS,
                         example={"losses": "2.0 1.0 1.5 1.6", "patience": 1}, name="EarlyStopping")
        problem = _unchanged_by_restore(cls)
        if problem:
            raise CheckFailed(problem)
        cases = EARLY_STOPPING_CASES
    check_function(
        functools.partial(early_stopping_run, cls), reference_early_stopping_run, cases,
        name="EarlyStopping (run: [step it stopped at, best, best_step, validation loss after restore])",
        mistakes=EARLY_STOPPING_MISTAKES,
    )
