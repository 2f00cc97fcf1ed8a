"""course_lib.finetune: LoRA equals its published formula, merges exactly, and trains only what it should."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.finetune import (
    GPTClassifier,
    LoRALinear,
    apply_lora,
    classification_accuracy,
    count_parameters,
    count_trainable_parameters,
    encode_padded,
    lora_cost,
    lora_for_budget,
    merge_lora,
    predict_classes,
)
from course_lib.gpt import GPT, GPTConfig, lm_loss

CFG = GPTConfig(vocab_size=29, block_size=10, n_layer=2, n_head=2, n_embd=16)


def _gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG)


def test_a_fresh_lora_layer_is_exactly_the_base_layer():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    lora = LoRALinear(base, r=2, alpha=8)
    x = torch.randn(3, 5, 6)
    assert torch.equal(lora(x), base(x))
    assert torch.count_nonzero(lora.lora_B) == 0 and torch.count_nonzero(lora.lora_A) > 0


def test_lora_output_is_w_x_plus_b_plus_scaled_b_a_x():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    lora = LoRALinear(base, r=3, alpha=12)
    with torch.no_grad():
        lora.lora_A.normal_()
        lora.lora_B.normal_()
    x = torch.randn(5, 6)
    expected = F.linear(x, base.weight, base.bias) + (12 / 3) * F.linear(F.linear(x, lora.lora_A), lora.lora_B)
    torch.testing.assert_close(lora(x), expected)
    torch.testing.assert_close(lora.delta_weight(), 4.0 * lora.lora_B @ lora.lora_A)


def test_apply_lora_freezes_the_rest_and_counts_are_exact():
    model = _gpt()
    total = count_parameters(model)
    wrapped = apply_lora(model, ["attn.qkv", "attn.proj"], r=4, alpha=8)
    assert wrapped == ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.1.attn.qkv", "blocks.1.attn.proj"]
    # per layer: qkv r*(16 + 48) + proj r*(16 + 16); two layers
    assert count_trainable_parameters(model) == 2 * (4 * (16 + 48) + 4 * (16 + 16)) == 768
    assert count_parameters(model) == total + 768
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.endswith(("lora_A", "lora_B")) for n in trainable)


def test_only_lora_parameters_receive_gradients():
    model = _gpt()
    apply_lora(model, ["qkv"], r=2, alpha=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.1)  # so that A's gradient is not zero either
    x = torch.randint(29, (2, 10))
    lm_loss(model(x), x).backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_merge_keeps_outputs_and_removes_lora():
    model = _gpt()
    apply_lora(model, ["qkv", "fc"], r=3, alpha=6)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.2)
    x = torch.randint(29, (3, 10))
    before = model(x)
    assert merge_lora(model) == 4
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        apply_lora(_gpt(), ["attention.query"])
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(2, 2), r=0)


# --------------------------------------------------------------------------
# LoRA within a parameter budget
# --------------------------------------------------------------------------

ALL_FOUR = ["qkv", "attn.proj", "fc", "mlp.proj"]


def _by_trial(model, budget, r_choices, target_choices):
    """The budget rule by brute force: wrap a copy for every candidate and count what trains."""
    best = None
    for index, targets in enumerate(target_choices):
        for r in r_choices:
            trial = copy.deepcopy(model)
            wrapped = apply_lora(trial, targets, r=r, alpha=2.0 * r)
            key = (count_trainable_parameters(trial), len(wrapped), -index)
            if key[0] <= budget and (best is None or key > best[0]):
                best = (key, r, list(targets))
    return None if best is None else (best[1], best[2], best[0][0])


def test_lora_cost_is_r_times_in_plus_out_per_wrapped_layer():
    model = _gpt()  # 16 channels, 2 blocks: qkv 16 -> 48, attn.proj 16 -> 16, fc 16 -> 64, mlp.proj 64 -> 16
    assert lora_cost(model, ["qkv"], 3) == 3 * 2 * (16 + 48)
    assert lora_cost(model, ["proj"], 1) == 2 * ((16 + 16) + (64 + 16))
    assert lora_cost(model, ALL_FOUR, 2) == 2 * 2 * (64 + 32 + 80 + 80)
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        lora_cost(model, ["roj"], 1)


@pytest.mark.parametrize("budget", [100, 256, 511, 512, 1024, 1536, 2048, 5000, 20_000])
def test_lora_for_budget_agrees_with_trying_every_candidate(budget):
    choices = [["qkv"], ["attn.proj"], ["qkv", "attn.proj"], ALL_FOUR, ["fc"], ["mlp.proj"]]
    ranks = [8, 1, 2, 3, 4, 16]
    expected = _by_trial(_gpt(), budget, ranks, choices)
    model = _gpt()
    if expected is None:
        with pytest.raises(ValueError, match="no LoRA configuration fits"):
            lora_for_budget(model, budget, ranks, choices)
        assert all(p.requires_grad for p in model.parameters())
        return
    r, targets, cost = lora_for_budget(model, budget, ranks, choices)
    assert (r, targets, cost) == expected
    assert count_trainable_parameters(model) == cost <= budget
    for module in model.modules():
        if isinstance(module, LoRALinear):
            assert module.r == r and module.alpha == 2.0 * r


def test_lora_for_budget_breaks_ties_by_more_layers_then_by_order():
    # qkv alone at rank 4: 4 * 2 * 64 = 512; all four at rank 1: 2 * 256 = 512 -> all four (8 layers, not 2)
    assert lora_for_budget(_gpt(), 512, [1, 4], [["qkv"], ALL_FOUR])[:2] == (1, ALL_FOUR)
    # fc and mlp.proj cost the same with as many layers: the earlier list wins
    assert lora_for_budget(_gpt(), 200, [1], [["mlp.proj"], ["fc"]])[1] == ["mlp.proj"]
    assert lora_for_budget(_gpt(), 200, [1], [["fc"], ["mlp.proj"]])[1] == ["fc"]


def test_lora_for_budget_refuses_without_changing_the_model():
    model = _gpt()
    with pytest.raises(ValueError, match="no nn.Linear matches"):
        lora_for_budget(model, 10_000, [1], [["qkv"], ["attention.query"]])
    with pytest.raises(ValueError, match="cheapest costs 128"):
        lora_for_budget(model, 127, [1, 2], [["qkv"], ALL_FOUR])
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    for bad in [{"budget": -1}, {"budget": 1.5}, {"r_choices": []}, {"r_choices": [0]}, {"target_choices": []}]:
        args = {"budget": 100, "r_choices": [1], "target_choices": [["qkv"]], **bad}
        with pytest.raises(ValueError):
            lora_for_budget(model, **args)


# --------------------------------------------------------------------------
# Early stopping
# --------------------------------------------------------------------------


def _scripted_run(values, steps=10, eval_every=1, patience=2):
    """Train a one-parameter model whose 'validation loss' follows a script; returns what happened."""
    from course_lib.finetune import train_with_early_stopping

    model = nn.Linear(1, 1, bias=False)
    script = iter(values)
    weights_at_eval = []

    def evaluate(m):
        weights_at_eval.append(m.weight.item())
        return next(script)

    history, stopper = train_with_early_stopping(
        model, lambda step: torch.ones(1, 1), lambda m, x: m(x).sum(), steps,
        evaluate=evaluate, eval_every=eval_every, patience=patience, lr=0.1, progress=False,
    )
    return model, history, stopper, weights_at_eval


def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    model, history, stopper, weights = _scripted_run([3.0, 2.0, 2.5, 2.4, 1.0, 0.5], patience=2)
    assert stopper.best == 2.0 and stopper.best_step == 1 and history.stopped_at == 3
    assert [s for s, _ in history.evals["val_loss"]] == [0, 1, 2, 3]
    assert len(history.train["loss"]) == 4 and len(history.lr) == 4 and history.seconds > 0
    assert model.weight.item() == pytest.approx(weights[1])  # the weights evaluated at step 1, not the last ones


def test_early_stopping_runs_to_the_end_while_improving():
    model, history, stopper, weights = _scripted_run([5.0, 4.0, 3.0, 2.0, 1.0], steps=10, eval_every=2)
    assert history.stopped_at is None and stopper.best == 1.0 and stopper.best_step == 9
    assert [s for s, _ in history.evals["val_loss"]] == [1, 3, 5, 7, 9]
    assert model.weight.item() == pytest.approx(weights[-1])


def test_early_stopping_needs_evaluations():
    from course_lib.finetune import train_with_early_stopping

    with pytest.raises(ValueError, match="eval_every"):
        train_with_early_stopping(nn.Linear(1, 1), iter([]), lambda m, x: x, 3, evaluate=lambda m: 0.0, eval_every=0)


class _Chars:
    """A stand-in tokenizer: a=1, b=2, ..."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) - ord("a") + 1 for c in text]


def test_encode_padded_cuts_and_pads():
    ids, lengths = encode_padded(_Chars(), ["abc", "a", "abcdefghijklm"], length=5, pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 0, 0], [1, 0, 0, 0, 0], [1, 2, 3, 4, 5]]
    assert lengths.tolist() == [3, 1, 5]
    with pytest.raises(ValueError, match="empty"):
        encode_padded(_Chars(), ["ab", ""], length=4)


def test_classifier_averages_the_hidden_states_of_each_text_alone():
    gpt = _gpt(0).eval()
    torch.manual_seed(1)
    model = GPTClassifier(gpt, n_classes=3)
    ids = torch.randint(CFG.vocab_size, (4, CFG.block_size), generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([10, 1, 4, 7])
    logits = model(ids, lengths)
    assert logits.shape == (4, 3)
    for i, n in enumerate(lengths.tolist()):  # each text on its own, without padding, through the plain GPT
        x = ids[i : i + 1, :n]
        h = gpt.ln_f(_trunk(gpt, x))  # (1, n, C)
        torch.testing.assert_close(logits[i], model.head(h.mean(dim=1))[0])
    other = ids.clone()
    other[1, 1:] = 5  # whatever sits in the padding does not matter
    torch.testing.assert_close(model(other, lengths), logits)
    with pytest.raises(ValueError, match="lengths"):
        model(ids, torch.tensor([10, 0, 4, 7]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        GPTClassifier(gpt, 1)


def _trunk(gpt: GPT, x: torch.Tensor) -> torch.Tensor:
    h = gpt.wte(x) + gpt.wpe(torch.arange(x.shape[1]))
    for block in gpt.blocks:
        h, _ = block(h)
    return h


def test_classifier_trains_body_and_head_and_accuracy_counts_argmax():
    model = GPTClassifier(_gpt(0), n_classes=2)
    ids = torch.randint(CFG.vocab_size, (6, 5), generator=torch.Generator().manual_seed(0))
    lengths = torch.full((6,), 5)
    F.cross_entropy(model(ids, lengths), torch.zeros(6, dtype=torch.long)).backward()
    assert model.head.weight.grad.abs().sum() > 0 and model.gpt.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        predicted = model(ids, lengths).argmax(-1)
    labels = predicted.clone()
    labels[:2] = 1 - labels[:2]
    assert classification_accuracy(model, ids, lengths, labels, batch_size=4) == pytest.approx(4 / 6)
    assert torch.equal(predict_classes(model, ids, lengths, batch_size=4), predicted) and model.training
