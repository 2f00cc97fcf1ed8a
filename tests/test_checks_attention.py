"""Notebook 04's synthesis self-check (course_lib.checks.attention.check_self_attention) and its catalogue.

The check must pass course_lib's reference and an answer written independently of it (straight from
torch's nn.MultiheadAttention arguments), fail each catalogued mistake naming it, refuse the shortcuts,
and run the answer with the reference pieces bound in the notebook's namespace, restoring them after.
"""

from __future__ import annotations

import pytest
import torch

from course_lib import attention as A
from course_lib.checks import attention as C
from course_lib.grading import CheckFailed


def _namespace() -> dict:
    """A notebook's globals() after the earlier exercises, with a broken split_heads the check must not use."""

    def broken_split_heads(x, num_heads):
        raise AssertionError("the check must bind course_lib's split_heads while it runs")

    return {"split_heads": broken_split_heads, "merge_heads": A.merge_heads}


ANSWER = """
def self_attention(x, attn, lengths=None, causal=False):
    B, T, D = x.shape
    mask = causal_mask(T) if causal else None
    if lengths is not None:
        keys = padding_mask(lengths, T)[:, None, None, :]
        mask = keys if mask is None else mask & keys
    q = split_heads(attn.q_proj(x), attn.num_heads)
    k = split_heads(attn.k_proj(x), attn.num_heads)
    v = split_heads(attn.v_proj(x), attn.num_heads)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    return attn.out_proj(merge_heads(out)), weights
"""


def _notebook_answer(namespace: dict, source: str = ANSWER):
    """The answer as a student would write it, calling the notebook's pieces through ``namespace``."""
    exec(source, namespace)
    return namespace["self_attention"]


def test_the_reference_and_a_notebook_style_answer_pass_and_the_namespace_is_restored():
    C.check_self_attention(A.self_attention, {})
    namespace = _namespace()
    broken = namespace["split_heads"]
    answer = _notebook_answer(namespace)
    C.check_self_attention(answer, namespace)
    C.check_self_attention(answer, namespace, configs=[
        {"B": 2, "T": 7, "D": 16, "H": 4, "lengths": [7, 1], "causal": True, "seed": 9},
        {"B": 1, "T": 4, "D": 6, "H": 3, "lengths": [0], "causal": False, "seed": 10},
    ])
    assert namespace["split_heads"] is broken and "causal_mask" not in namespace


def test_an_answer_built_from_torch_multihead_attention_agrees_with_the_cases():
    """Independent of course_lib: the cases' expected values are torch's nn.MultiheadAttention with the same weights."""
    for config in C.SELF_ATTENTION_CONFIGS:
        case = C.self_attention_case(**config)
        attn, x, lengths, causal = case["attn"], case["x"], case["lengths"], case["causal"]
        D, H, T = attn.d_model, attn.num_heads, x.shape[1]
        theirs = torch.nn.MultiheadAttention(D, H, batch_first=True)
        with torch.no_grad():
            theirs.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
            theirs.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
            theirs.out_proj.weight.copy_(attn.out_proj.weight)
            theirs.out_proj.bias.copy_(attn.out_proj.bias)
            blocked = None if not causal else ~torch.ones(T, T, dtype=torch.bool).tril()
            padded = None if lengths is None else torch.arange(T) >= lengths[:, None]
            expected = theirs(x, x, x, attn_mask=blocked, key_padding_mask=padded, average_attn_weights=False)
            got = A.self_attention(**case)
        torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("description", list(C.SELF_ATTENTION_MISTAKES))
def test_each_mistake_fails_the_visible_check_and_is_named(description):
    mistaken = C.SELF_ATTENTION_MISTAKES[description]

    def self_attention(x, attn, lengths=None, causal=False):
        return mistaken(x, attn, lengths, causal)

    with pytest.raises(CheckFailed) as failure:
        C.check_self_attention(self_attention, {})
    assert f"Likely cause: {description}" in str(failure.value)


def test_each_mistake_differs_from_the_reference_on_some_visible_case():
    for description, mistaken in C.SELF_ATTENTION_MISTAKES.items():
        differs = False
        for config in C.SELF_ATTENTION_CONFIGS:
            case = C.self_attention_case(**config)
            with torch.no_grad():
                wrong, right = mistaken(**case), A.self_attention(**case)
            differs |= wrong[1].shape != right[1].shape or not (
                torch.allclose(wrong[0], right[0], atol=1e-4) and torch.allclose(wrong[1], right[1], atol=1e-4)
            )
        assert differs, description


@pytest.mark.parametrize("shortcut", ["module", "torch"])
def test_shortcuts_are_refused(shortcut):
    def self_attention(x, attn, lengths=None, causal=False):
        mask = A.causal_mask(x.shape[1]) if causal else None
        if lengths is not None:
            keys = A.padding_mask(lengths, x.shape[1])[:, None, None, :]
            mask = keys if mask is None else mask & keys
        if shortcut == "module":
            return attn(x, mask=mask)
        q, k, v = (A.split_heads(p(x), attn.num_heads) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return attn.out_proj(A.merge_heads(out)), A.scaled_dot_product_attention(q, k, v, mask)[1]

    with pytest.raises(CheckFailed, match="asks you to build yourself"):
        C.check_self_attention(self_attention, {})


def test_a_wrong_answer_with_an_uncatalogued_mistake_still_fails():
    forgets_the_value_projection = ANSWER.replace("split_heads(attn.v_proj(x),", "split_heads(x,")
    namespace: dict = {}
    answer = _notebook_answer(namespace, forgets_the_value_projection)
    with pytest.raises(CheckFailed, match="not right yet") as failure:
        C.check_self_attention(answer, namespace)
    assert "Likely cause" not in str(failure.value)
