"""Notebook 06's checks: course_lib passes them, and each catalogued mistake fails with its own name."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from envtools import assert_each_mistake_is_caught_and_named, assert_fails_naming
from torch import nn

from course_lib import finetune
from course_lib.checks import fine_tuning as ft
from course_lib.grading import check_function

SHAPES = [(6, 4, 2, True), (5, 5, 3, False), (3, 8, 1, True)]


# -- count_trainable_parameters -------------------------------------------------


def test_reference_count_passes_and_cases_are_distinct():
    cases = ft.count_cases(0)
    check_function(finetune.count_trainable_parameters, finetune.count_trainable_parameters, cases)
    counts = [finetune.count_trainable_parameters(**c) for c in cases]
    assert len(set(counts)) == 3


@pytest.mark.parametrize("description", list(ft.COUNT_MISTAKES))
def test_each_count_mistake_is_named(description):
    wrong = ft.COUNT_MISTAKES[description]
    assert_fails_naming(lambda: check_function(wrong, finetune.count_trainable_parameters, ft.count_cases(0),
                                               mistakes=ft.COUNT_MISTAKES), description)


# -- LoRALinear -----------------------------------------------------------------------


def test_reference_lora_passes():
    ft.check_lora_init(finetune.LoRALinear, 0, SHAPES)
    ft.check_lora_trainable(finetune.LoRALinear, 0)
    check_function(functools.partial(ft.lora_output, finetune.LoRALinear),
                   functools.partial(ft.lora_output, finetune.LoRALinear), ft.lora_cases(0, SHAPES))


def test_lora_output_is_the_published_formula():
    for case in ft.lora_cases(1, SHAPES):
        expected = case["x"] @ case["weight"].T + (case["bias"] if case["bias"] is not None else 0)
        expected = expected + case["alpha"] / case["r"] * case["x"] @ (case["B"] @ case["A"]).T
        torch.testing.assert_close(ft.lora_output(finetune.LoRALinear, **case), expected)


def _variant(forward=None, b_init=None, freeze=True, zero_a=False, scale=None):
    """course_lib's LoRALinear with one thing changed."""

    class Variant(nn.Module):
        def __init__(self, base, r=8, alpha=16.0):
            super().__init__()
            self.base, self.r, self.alpha = base, r, alpha
            self.scale = alpha / r if scale is None else scale(r, alpha)
            if freeze:
                base.requires_grad_(False)
            self.lora_A = nn.Parameter(torch.zeros(r, base.in_features) if zero_a else torch.randn(r, base.in_features))
            self.lora_B = nn.Parameter(torch.zeros(base.out_features, r) if b_init is None else b_init(base, r))

        def forward(self, x):
            if forward is not None:
                return forward(self, x)
            return self.base(x) + self.scale * (x @ self.lora_A.T @ self.lora_B.T)

    return Variant


def _cause(catalogue, entry):
    return "Likely cause: " + next(d for d, value in catalogue.items() if value is entry)


def test_lora_init_catches_random_b_and_zero_a():
    random_b = _variant(b_init=lambda base, r: torch.randn(base.out_features, r))
    assert_fails_naming(lambda: ft.check_lora_init(random_b, 0, SHAPES), "initialise `lora_B` with zeros")
    assert_fails_naming(lambda: ft.check_lora_init(_variant(zero_a=True), 0, SHAPES), "`lora_A` starts at zero")
    wrong_shape = _variant(b_init=lambda base, r: torch.zeros(r, base.out_features))
    assert_fails_naming(lambda: ft.check_lora_init(wrong_shape, 0, SHAPES), "expected (4, 2)")


def test_lora_init_names_each_cause_from_its_catalogue():
    random_b = _variant(b_init=lambda base, r: torch.randn(base.out_features, r))
    update_only = _variant(forward=lambda self, x: self.scale * (x @ self.lora_A.T @ self.lora_B.T))
    for variant, entry in [(random_b, ft._starts_with_random_b), (update_only, ft._update_replaces_the_base),
                           (_variant(zero_a=True), ft._starts_with_zero_a)]:
        assert_fails_naming(lambda variant=variant: ft.check_lora_init(variant, 0, SHAPES),
                            _cause(ft.LORA_INIT_SYMPTOMS, entry))


def test_lora_trainable_catches_an_unfrozen_base():
    assert_fails_naming(lambda: ft.check_lora_trainable(_variant(freeze=False), 0),
                        "base.weight and base.bias still require")
    assert_fails_naming(lambda: ft.check_lora_trainable(_variant(freeze=False), 0),
                        _cause(ft.LORA_TRAINABLE_SYMPTOMS, ft._base_trainable))


@pytest.mark.parametrize("description", list(ft.LORA_MISTAKES))
def test_each_lora_formula_mistake_is_named(description):
    mistaken_class = ft.LORA_MISTAKES[description].args[0]  # the catalogue holds lora_output(mistaken_class, ...)
    assert issubclass(mistaken_class, nn.Module)
    assert_fails_naming(lambda: check_function(functools.partial(ft.lora_output, mistaken_class),
                                               functools.partial(ft.lora_output, finetune.LoRALinear),
                                               ft.lora_cases(0, SHAPES), mistakes=ft.LORA_MISTAKES), description)


def test_the_reference_class_is_refused():
    class Sneaky(finetune.LoRALinear):
        pass

    assert_fails_naming(lambda: ft.check_not_reference_class(Sneaky), "subclass nn.Module instead")
    ft.check_not_reference_class(_variant())


# -- apply_lora ------------------------------------------------------------------------

APPLY_CASES = [
    {"seed": 0, "target_modules": ["qkv", "attn.proj"], "r": 2, "alpha": 4.0},
    {"seed": 1, "target_modules": ["fc"], "r": 1, "alpha": 1.0},
]


def test_reference_apply_passes_and_wraps_only_targets():
    check_function(functools.partial(ft.apply_lora_summary, finetune.apply_lora), ft.reference_apply_summary,
                   APPLY_CASES)
    names, wrapped, trainable = ft.reference_apply_summary(**APPLY_CASES[0])
    assert names == ["blocks.0.attn.proj", "blocks.0.attn.qkv", "blocks.1.attn.proj", "blocks.1.attn.qkv"]
    assert all("lora_" in n for n in trainable) and len(trainable) == 8
    ft.check_apply_lora_rejects_typos(finetune.apply_lora)


@pytest.mark.parametrize("description", list(ft.APPLY_MISTAKES))
def test_each_apply_mistake_is_named(description):
    assert_fails_naming(lambda: check_function(ft.APPLY_MISTAKES[description], ft.reference_apply_summary, APPLY_CASES,
                                               mistakes=ft.APPLY_MISTAKES), description)


def test_apply_without_a_typo_check_is_caught():
    assert_fails_naming(lambda: ft.check_apply_lora_rejects_typos(ft._apply_last_part_only), "did not raise")
    for accepts_typos in (ft._apply_last_part_only, ft._apply_accepts_typos):
        assert_fails_naming(lambda fn=accepts_typos: ft.check_apply_lora_rejects_typos(fn),
               _cause(ft.APPLY_TYPO_MISTAKES, ft._apply_accepts_typos))


# -- merge_lora -------------------------------------------------------------------------

MERGE_CASES = [
    {"seed": 0, "target_modules": ["attn.proj"], "r": 2, "alpha": 4.0},
    {"seed": 1, "target_modules": ["qkv", "fc"], "r": 3, "alpha": 1.0},
]


def test_reference_merge_passes_and_keeps_the_function():
    check_function(functools.partial(ft.merge_lora_summary, finetune.merge_lora, finetune.LoRALinear),
                   ft.reference_merge_summary, MERGE_CASES)
    for case in MERGE_CASES:
        model = ft.lora_model(finetune.LoRALinear, **case)
        tokens = torch.randint(ft.TINY.vocab_size, (2, 6), generator=torch.Generator().manual_seed(case["seed"]))
        with torch.no_grad():
            before = model(tokens)
        count, left, weights, after = ft.reference_merge_summary(**case)
        assert count == len(weights) > 0 and left == []
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(after, ft.tiny_gpt(case["seed"])(tokens), atol=1e-3)  # the update matters


@pytest.mark.parametrize("description", list(ft.MERGE_MISTAKES))
def test_each_merge_mistake_is_named(description):
    assert_fails_naming(lambda: check_function(ft.MERGE_MISTAKES[description], ft.reference_merge_summary,
                                               MERGE_CASES[:1], mistakes=ft.MERGE_MISTAKES), description)


def test_merge_reads_the_scale_the_check_sets():
    model = ft.lora_model(_variant(scale=lambda r, alpha: r / alpha), seed=0, target_modules=["qkv"], r=2, alpha=8.0)
    assert all(m.scale == 4.0 for m in model.modules() if hasattr(m, "lora_A"))
    assert math.isclose(ft.lora_model(finetune.LoRALinear, 0, ["qkv"], 2, 8.0).blocks[0].attn.qkv.scale, 4.0)


# -- lora_for_budget (synthesis) -------------------------------------------------------


def _notebook_namespace():
    """What a notebook's globals hold when the synthesis check runs: the student's own (here: wrong) pieces."""
    return {"LoRALinear": None, "apply_lora": None, "count_trainable_parameters": None}


def _notebook_budget(namespace):
    """A correct lora_for_budget that, like a student's, uses apply_lora and count_trainable_parameters from
    the notebook's namespace (by trying each candidate on a copy)."""

    def lora_for_budget(model, budget, r_choices, target_choices):
        best = None
        for index, targets in enumerate(target_choices):
            for r in r_choices:
                trial = copy.deepcopy(model)
                n = len(namespace["apply_lora"](trial, targets, r=r, alpha=2.0 * r))
                key = (namespace["count_trainable_parameters"](trial), n, -index)
                if key[0] <= budget and (best is None or key > best[0]):
                    best = (key, r, list(targets))
        if best is None:
            raise ValueError("nothing fits")
        namespace["apply_lora"](model, best[2], r=best[1], alpha=2.0 * best[1])
        return best[1], best[2], best[0][0]

    return lora_for_budget


def test_reference_budget_passes_with_the_reference_pieces_bound():
    namespace = _notebook_namespace()
    student = _notebook_budget(namespace)
    ft.check_lora_for_budget(student, namespace)  # the student's pieces are None: the check binds course_lib's
    ft.check_lora_for_budget(student, namespace, cases=[
        {"seed": 3, "budget": 1152, "r_choices": [2, 8], "target_choices": [["qkv"], ft.ALL_FOUR], "n_embd": 12},
    ])
    assert namespace == _notebook_namespace()  # and gives them back
    first, wrapped, trainable = ft.reference_budget_summary(**ft.BUDGET_CASES[1])
    assert first == [1, ft.ALL_FOUR, 256] and len(wrapped) == 8 and len(trainable) == 16


@pytest.mark.parametrize("description", list(ft.BUDGET_MISTAKES))
def test_each_budget_mistake_is_named(description):
    assert_fails_naming(lambda: check_function(ft.BUDGET_MISTAKES[description], ft.reference_budget_summary,
                                               ft.BUDGET_CASES, mistakes=ft.BUDGET_MISTAKES), description)


def test_budget_check_refuses_the_shortcut_and_a_changed_model():
    assert_fails_naming(lambda: ft.check_lora_for_budget(finetune.lora_for_budget, {}), "asks you to build yourself")

    def freezes_first(model, budget, r_choices, target_choices):
        model.requires_grad_(False)
        return finetune.lora_for_budget(model, budget, r_choices, target_choices)

    assert_fails_naming(lambda: ft.check_lora_for_budget_rejects(freezes_first), "had already changed the model")
    assert_fails_naming(lambda: ft.check_lora_for_budget_rejects(freezes_first),
                        _cause(ft.BUDGET_REFUSAL_SYMPTOMS, ft._froze_before_refusing))

    def wraps_first(model, budget, r_choices, target_choices):
        finetune.apply_lora(model, ["fc"], r=1, alpha=2.0)
        return finetune.lora_for_budget(model, budget, r_choices, target_choices)

    assert_fails_naming(lambda: ft.check_lora_for_budget_rejects(wraps_first),
                        _cause(ft.BUDGET_REFUSAL_SYMPTOMS, ft._wrapped_before_refusing))

    def never_refuses(model, budget, r_choices, target_choices):
        try:
            return finetune.lora_for_budget(model, budget, r_choices, target_choices)
        except ValueError:
            return 0, [], 0

    assert_fails_naming(lambda: ft.check_lora_for_budget_rejects(never_refuses), "did not raise")


# -- EarlyStopping (the debug exercise) ---------------------------------------------------


def _early_stopping_ref(**case):
    return ft.reference_early_stopping_run(**case)


def _first_bug() -> str:
    """The catalogue's description of the shipped class's first bug (the 'best' weights are not a copy)."""
    return next(d for d in ft.EARLY_STOPPING_MISTAKES if d.startswith("the restored model is not the best one"))


def test_reference_early_stopping_passes_on_every_case():
    cases = ft.EARLY_STOPPING_CASES + ft.early_stopping_cases(66, 4) + ft.early_stopping_cases(607, 4)
    check_function(functools.partial(ft.early_stopping_run, finetune.EarlyStopping), _early_stopping_ref, cases)
    ft.check_early_stopping(ft._Stopper)  # the catalogue's right class, as an answer writes it
    for seed in (0, 66, 607):
        ft.check_early_stopping(ft._Stopper, cases=ft.early_stopping_cases(seed, 4))


def test_early_stopping_run_restores_the_best_evaluation():
    stopped, best, best_step, restored = ft.reference_early_stopping_run(**ft.EARLY_STOPPING_CASES[0])
    assert (stopped, best, best_step, restored) == (5, 2.3, 2, 2.3)  # a tie at step 3 is not progress
    live = ft.EARLY_STOPPING_MISTAKES[_first_bug()]
    assert live(**ft.EARLY_STOPPING_CASES[0])[3] == 2.9  # the loss of the last evaluation, at step 5
    every_other = ft.reference_early_stopping_run(**ft.EARLY_STOPPING_CASES[1])
    assert every_other[2] % 2 == 1  # evaluations after steps 2, 4, ...: 0-based steps 1, 3, ...


def test_random_early_stopping_cases_vary_the_settings():
    cases = ft.early_stopping_cases(3, 6)
    assert {c["patience"] for c in cases} == {1, 2, 3} and {c.get("eval_every") for c in cases} == {1, 2}
    assert any("metric" in c for c in cases) and any("min_delta" in c for c in cases)
    assert ft.early_stopping_cases(3, 6) == cases


def test_each_early_stopping_mistake_is_caught_and_named():
    assert_each_mistake_is_caught_and_named(ft.EARLY_STOPPING_MISTAKES, _early_stopping_ref,
                                            ft.EARLY_STOPPING_CASES, "EarlyStopping")


@pytest.mark.parametrize("description", list(ft.EARLY_STOPPING_MISTAKES))
def test_the_check_names_each_early_stopping_mistake(description):
    mistaken_class = ft.EARLY_STOPPING_MISTAKES[description].args[0]  # early_stopping_run(mistaken_class, ...)
    assert_fails_naming(lambda: ft.check_early_stopping(mistaken_class), "Likely cause: " + description)


class _Shipped(ft._Stopper):
    """The colleague's class as the notebook ships it: both bugs."""

    def evaluate(self, model):
        result = self._evaluate(model)
        value = float(result if isinstance(result, (int, float)) else result[self.metric])
        if value < self.best - self.min_delta:
            self.best, self.best_step = value, self._step
            self.best_state = model.state_dict()
        else:
            self.bad_evals += 1
        return result


def test_the_shipped_class_is_told_its_first_bug_and_pointed_at_the_hint():
    assert_fails_naming(lambda: ft.check_early_stopping(_Shipped), "Likely cause: " + _first_bug())
    assert "(Hint 1 above)" in _first_bug()


def test_early_stopping_edges_and_shortcuts_are_refused():
    assert_fails_naming(lambda: ft.check_early_stopping(finetune.EarlyStopping), "asks you to fix yourself")

    class Delegates(ft._Stopper):
        def __init__(self, evaluate, patience=3, metric="val_loss", min_delta=0.0):
            super().__init__(evaluate, patience, metric, min_delta)
            self.inner = finetune.EarlyStopping(evaluate, patience, metric, min_delta)

    assert_fails_naming(lambda: ft.check_early_stopping(Delegates), "course_lib.finetune.EarlyStopping")

    class AnyPatience(ft._Stopper):
        def __init__(self, evaluate, patience=3, metric="val_loss", min_delta=0.0):
            super().__init__(evaluate, max(patience, 1), metric, min_delta)

    assert_fails_naming(lambda: ft.check_early_stopping(AnyPatience), "patience=0) did not raise")

    class RestoresNothing(ft._Stopper):
        def restore(self, model):
            model.load_state_dict({k: torch.zeros_like(v) for k, v in model.state_dict().items()})

    assert_fails_naming(lambda: ft.check_early_stopping(RestoresNothing), "although no evaluation ran")
