"""course_lib.instruct: the task family, the template, growing the vocabulary, the response-only loss, decoding."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import instruct
from course_lib.checks.instruction_tuning import BigramLM, tiny_gpt, tiny_tokenizer
from course_lib.tokenizer import CharTokenizer


def test_answers_of_each_task():
    assert [instruct.answer(t, "cat") for t in instruct.TASKS] == ["CAT", "tac", "c-a-t", "3", "t"]
    with pytest.raises(ValueError):
        instruct.answer("sort", "cat")


def test_heldout_words_and_phrasings_are_disjoint_from_training():
    train, heldout = instruct.task_words("train"), instruct.task_words("heldout")
    assert len(train) > 500 and len(heldout) > 100
    assert not set(train) & set(heldout)
    for task in instruct.TASKS:
        assert not set(instruct.TRAIN_PHRASINGS[task]) & set(instruct.HELDOUT_PHRASINGS[task])
    examples = instruct.eval_examples(heldout, per_task=3)
    assert len(examples) == 2 * 3 * len(instruct.TASKS)
    assert {e.heldout_phrasing for e in examples} == {False, True}
    assert all(e.word in heldout and e.response == instruct.answer(e.task, e.word) for e in examples)


def test_the_tokenizer_reads_special_tokens_as_one_id_each_after_the_characters():
    tokenizer = tiny_tokenizer()
    V = tokenizer.base.vocab_size
    assert (tokenizer.user_id, tokenizer.assistant_id, tokenizer.end_id) == (V, V + 1, V + 2)
    text = instruct.format_prompt("reverse cat") + "tac" + instruct.END
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.user_id and ids[-1] == tokenizer.end_id and ids.count(tokenizer.assistant_id) == 1
    assert tokenizer.decode(ids) == text
    assert ids[1:12] == tokenizer.base.encode("reverse cat")  # the known characters keep their ids


def test_the_mask_covers_exactly_the_response_tokens_and_end():
    tokenizer = tiny_tokenizer()
    for instruction, response in [("reverse cat", "tac"), ("abc", "a-b-c"), ("how long?", "")]:
        ids, mask = instruct.build_example(tokenizer, instruction, response)
        assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == mask.shape
        assert tokenizer.decode(ids[mask].tolist()) == response + instruct.END
        assert tokenizer.decode(ids[~mask].tolist()) == instruct.format_prompt(instruction)
        assert not mask[: len(tokenizer.encode(instruct.format_prompt(instruction)))].any()


def test_growing_the_vocabulary_keeps_old_logits_for_old_inputs():
    model = tiny_gpt(0, vocab_size=13)
    x = torch.randint(13, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
    old_rows = model.wte.weight.detach().clone()
    same = instruct.grow_vocabulary(model, 4)
    assert same is model and model.config.vocab_size == 17
    assert model.lm_head.weight is model.wte.weight  # still tied
    with torch.no_grad():
        after = model(x)
    assert after.shape == (3, 10, 17)
    torch.testing.assert_close(after[..., :13], before, rtol=0, atol=0)
    torch.testing.assert_close(model.wte.weight[:13], old_rows, rtol=0, atol=0)
    torch.testing.assert_close(model.wte.weight[13:], old_rows.mean(0).expand(4, -1))
    with torch.no_grad():
        model(torch.tensor([[13, 14, 15, 16]]))  # the new ids can be read


def _loop_loss(logits, ids, mask):
    """The response-only loss, one token at a time."""
    total, count = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(1, ids.shape[1]):
            if mask[b, t]:
                logp = logits[b, t - 1].double().log_softmax(-1)[ids[b, t]]
                total, count = total - float(logp), count + 1
    return total / count


def test_masked_lm_loss_is_the_mean_over_target_tokens():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 8, 6, generator=g)
    ids = torch.randint(6, (3, 8), generator=g)
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[0, 3:6], mask[1, 2:8], mask[2, 5:7] = True, True, True
    assert math.isclose(float(instruct.masked_lm_loss(logits, ids, mask)), _loop_loss(logits, ids, mask),
                        rel_tol=1e-5)
    full = torch.ones_like(mask)
    from course_lib.gpt import lm_loss

    assert math.isclose(float(instruct.masked_lm_loss(logits, ids, full)), float(lm_loss(logits, ids)), rel_tol=1e-6)
    with pytest.raises(ValueError):
        instruct.masked_lm_loss(logits, ids, torch.zeros_like(mask))


def test_all_tokens_loss_covers_the_prompt_but_not_the_padding():
    tokenizer = tiny_tokenizer()
    examples = [instruct.build_example(tokenizer, "reverse cat", "tac"), instruct.build_example(tokenizer, "ab", "b")]
    ids, mask = instruct.collate(examples, tokenizer.end_id)
    real = torch.zeros_like(mask)
    for b, (x, _) in enumerate(examples):
        real[b, : len(x)] = True
    logits = torch.randn(*ids.shape, tokenizer.vocab_size, generator=torch.Generator().manual_seed(2))
    assert math.isclose(float(instruct.all_tokens_loss(logits, ids, mask)), _loop_loss(logits, ids, real),
                        rel_tol=1e-5)


def test_generate_response_stops_at_end_and_the_batched_version_agrees():
    tokenizer = tiny_tokenizer()
    model = BigramLM(tokenizer, 3, "ok")
    assert instruct.generate_response(model, tokenizer, "go") == "ok"
    assert instruct.generate_response(model, tokenizer, "go", max_new_tokens=1) == "o"
    gpt = tiny_gpt(4, vocab_size=tokenizer.vocab_size, block_size=24)
    instructions = ["abc", "de", "fgh", "reverse cat", "x"]
    one = [instruct.generate_response(gpt, tokenizer, s, max_new_tokens=8) for s in instructions]
    assert instruct.generate_responses(gpt, tokenizer, instructions, max_new_tokens=8) == one


def test_chat_model_copies_and_grows():
    base = CharTokenizer("abc")
    tokenizer = instruct.ChatTokenizer(base)
    pretrained = tiny_gpt(0, vocab_size=3)
    model = instruct.chat_model(pretrained, tokenizer)
    assert model.config.vocab_size == 6 and pretrained.config.vocab_size == 3


# Hand-labelled answers (the oracle): (task, word, response, kind).
LABELLED = [
    ("upper", "cat", "CAT", "correct"),
    ("upper", "cat", "CAB", "wrong letters"),
    ("upper", "cat", "CATT", "wrong length"),
    ("upper", "cat", "CA", "wrong length"),
    ("upper", "cat", "cat", "wrong form"),
    ("upper", "cat", "3", "wrong form"),
    ("upper", "cat", "", "wrong form"),
    ("reverse", "cat", "tac", "correct"),
    ("reverse", "cat", "tca", "wrong letters"),
    ("reverse", "cat", "tacc", "wrong length"),
    ("reverse", "cat", "TAC", "wrong form"),
    ("reverse", "cat", "t-a-c", "wrong form"),
    ("dashes", "cat", "c-a-t", "correct"),
    ("dashes", "cat", "c-a-a", "wrong letters"),
    ("dashes", "cat", "c-a", "wrong length"),
    ("dashes", "cat", "c-a-t-t", "wrong length"),
    ("dashes", "cat", "cat", "wrong form"),
    ("dashes", "cat", "c--a-t", "wrong form"),
    ("dashes", "cat", "c-a-t-", "wrong form"),
    ("length", "cat", "3", "correct"),
    ("length", "cat", "4", "wrong value"),
    ("length", "cat", "three", "wrong form"),
    ("last", "cat", "t", "correct"),
    ("last", "cat", "a", "wrong value"),
    ("last", "cat", "ta", "wrong form"),
    ("last", "cat", "T", "wrong form"),
]


@pytest.mark.parametrize(("task", "word", "response", "kind"), LABELLED)
def test_error_kind_matches_hand_labels(task, word, response, kind):
    example = instruct.Example(task, word, f"{task} {word}", instruct.answer(task, word))
    assert instruct.error_kind(example, response) == kind


def test_error_kinds_cover_the_labels_and_error_rates_add_up(monkeypatch):
    assert {kind for *_, kind in LABELLED} == set(instruct.ERROR_KINDS)
    examples = [instruct.Example(t, "cat", f"{t} cat", instruct.answer(t, "cat")) for t in ("upper", "reverse")]
    examples.append(instruct.Example("upper", "tab", "upper tab", "TAB"))
    # the model "answers" TAC to everything: right for nothing, a copying slip for two, wrong form for reverse
    monkeypatch.setattr(instruct, "generate_responses", lambda model, tok, instructions, n: ["TAC"] * len(instructions))
    rates = instruct.error_rates(None, None, examples)
    assert list(rates) == list(instruct.ERROR_KINDS)
    assert rates == {"correct": 0.0, "wrong form": 1 / 3, "wrong length": 0.0, "wrong letters": 2 / 3,
                     "wrong value": 0.0}
    with pytest.raises(ValueError):
        instruct.error_rates(None, None, [])
