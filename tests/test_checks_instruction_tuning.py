"""Notebook 07's checks: course_lib passes them, and each catalogued mistake fails with its own name."""

from __future__ import annotations

import functools

import pytest
import torch
from envtools import assert_fails_naming

from course_lib import instruct, preference
from course_lib.checks import instruction_tuning as it
from course_lib.grading import CheckFailed, check_function

# The catalogue, its reference and the cases the visible check runs on: every mistake must show and be named there.
CATALOGUES = {
    "grow": (it.GROW_MISTAKES, it.reference_grow_summary, [{"seed": 0, "n_new": 3}, {"seed": 1, "n_new": 1}]),
    "example": (it.EXAMPLE_MISTAKES, functools.partial(it.example_summary, instruct.build_example),
                [{"instruction": "reverse cat", "response": "tac"},
                 {"instruction": "how long is tree?", "response": "four"}]),
    "loss": (it.LOSS_MISTAKES, instruct.masked_lm_loss, [it.padded_batch(0), it.padded_batch(1, B=2, T=6, V=5)]),
    "logprob": (it.LOGPROB_MISTAKES, it._logprob_with(preference.sequence_logprob),
                [it.padded_batch(2), it.padded_batch(3, B=4, T=7, V=6)]),
    "response": (it.RESPONSE_MISTAKES, functools.partial(it.response_summary, instruct.generate_response),
                 it.RESPONSE_CASES),
    "dpo": (it.DPO_MISTAKES, preference.dpo_loss, it.dpo_cases(0)),
    "step": (it.STEP_MISTAKES, it.reference_step_summary, it.STEP_CASES),
}
ENTRIES = [(kind, d) for kind, (catalogue, _, _) in CATALOGUES.items() for d in catalogue]


@pytest.mark.parametrize(("kind", "description"), ENTRIES, ids=[f"{k}:{d[:40]}" for k, d in ENTRIES])
def test_each_catalogued_mistake_is_caught_and_named(kind, description):
    catalogue, reference, cases = CATALOGUES[kind]
    assert_fails_naming(lambda: check_function(catalogue[description], reference, cases, mistakes=catalogue),
                        description)


def test_the_references_pass_their_checks():
    it.check_grow_vocabulary(instruct.grow_vocabulary)
    it.check_build_example(instruct.build_example)
    it.check_masked_lm_loss(instruct.masked_lm_loss)
    it.check_generate_response(instruct.generate_response)
    it.check_sequence_logprob(preference.sequence_logprob)
    it.check_dpo_loss(preference.dpo_loss)
    it.check_dpo_gradient(preference.dpo_loss)
    it.check_dpo_step(preference.dpo_step, {})


def test_the_shortcuts_are_refused():
    with pytest.raises(CheckFailed, match="build yourself"):
        it.check_masked_lm_loss(lambda logits, ids, mask: instruct.masked_lm_loss(logits, ids, mask))
    with pytest.raises(CheckFailed, match="build yourself"):
        it.check_dpo_loss(lambda **kw: preference.dpo_loss(**kw))
    with pytest.raises(CheckFailed, match="build yourself"):
        it.check_dpo_step(lambda policy, reference, optimizer, batch, beta: preference.dpo_step(
            policy, reference, optimizer, batch, beta), {})


def test_the_bigram_stand_in_answers_its_script_greedily():
    tokenizer = it.tiny_tokenizer()
    model = it.BigramLM(tokenizer, 0, "tac")
    assert instruct.generate_response(model, tokenizer, "reverse cat") == "tac"
    assert it.response_summary(instruct.generate_response, **it.RESPONSE_CASES[1]) == "a-b"  # cut at 3 tokens


def test_a_response_that_does_not_stop_at_the_context_is_caught():
    def no_limit(model, tokenizer, instruction, max_new_tokens=20, temperature=0.0, generator=None):
        ids = tokenizer.encode(instruct.format_prompt(instruction))
        out = []
        for _ in range(max_new_tokens):
            next_id = int(model(torch.tensor([ids]))[0, -1].argmax())
            if next_id == tokenizer.end_id:
                break
            ids.append(next_id)
            out.append(next_id)
        return tokenizer.decode(out)

    assert_fails_naming(lambda: it.check_response_fits_context(no_limit), next(iter(it.RESPONSE_ERRORS.values())))


def test_a_detached_logprob_and_a_wrong_gradient_are_caught():
    assert_fails_naming(
        lambda: it.check_logprob_has_gradient(lambda m, i, k: preference.sequence_logprob(m, i, k).detach()),
        "no gradient")
    flipped = it.DPO_MISTAKES[next(d for d in it.DPO_MISTAKES if d.startswith("chosen and rejected"))]
    assert_fails_naming(lambda: it.check_dpo_gradient(flipped), next(iter(it.DPO_GRADIENT_SYMPTOMS)))
