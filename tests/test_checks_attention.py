"""Notebook 04's synthesis self-check (course_lib.checks.attention.check_self_attention), its debug exercise's
self-check (check_mha_forward: a colleague's MultiHeadAttention), and their catalogues.

Each check must pass course_lib's reference and an answer written independently of it (straight from
torch's nn.MultiheadAttention arguments), fail each catalogued mistake naming it, refuse the shortcuts,
and run the answer with the reference pieces bound in the notebook's namespace, restoring them after.
The debug exercise's shipped code must run, fail, be named by one of its bugs and show the leak the
notebook describes.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from envtools import assert_each_mistake_is_caught_and_named, assert_fails_naming

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


# ---------------------------------------------------------------------------
# The debug exercise: a colleague's MultiHeadAttention (check_mha_forward, MHA_FORWARD_MISTAKES)
# ---------------------------------------------------------------------------

MHA_FIXED = '''
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.d_model = d_model
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        q = split_heads(self.q_proj(query), self.num_heads)
        k = split_heads(self.k_proj(key), self.num_heads)
        v = split_heads(self.v_proj(value), self.num_heads)
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(merge_heads(out)), weights
'''


def _shipped_and_solution() -> tuple[str, str]:
    """The debug cell's release code (the colleague's) and its solution, read from the solutions notebook."""
    import harness

    solution = harness.solution_answers("04_attention", "attention.ipynb")["MultiHeadAttention"]
    return harness.as_shipped("04_attention", "MultiHeadAttention"), solution


def _define(source: str, namespace: dict | None = None) -> type:
    """The class ``source`` defines, its globals being ``namespace`` (a notebook's, with math, torch and nn)."""
    namespace = {} if namespace is None else namespace
    namespace.update(math=math, torch=torch, nn=torch.nn)
    exec(source, namespace)
    return namespace["MultiHeadAttention"]


def test_the_reference_and_the_solution_pass_the_visible_and_the_hidden_configs():
    hidden = [
        {"B": 3, "T_q": 7, "D": 16, "H": 4, "mask": "causal", "seed": 40},
        {"B": 3, "T_q": 3, "T_k": 5, "D": 6, "H": 3, "mask": "padding", "lengths": [5, 0, 2], "seed": 41},
        {"B": 1, "T_q": 6, "D": 12, "H": 4, "mask": "causal", "zero_queries": True, "seed": 42},
        {"B": 2, "T_q": 4, "T_k": 2, "D": 4, "H": 2, "seed": 43},
    ]
    C.check_mha_forward(A.MultiHeadAttention, {}, configs=C.MHA_FORWARD_CONFIGS + hidden)
    _, solution = _shipped_and_solution()
    C.check_mha_forward(_define(solution), {})
    C.check_mha_forward(_define(solution), {}, configs=hidden)


def test_a_fix_built_from_the_notebooks_pieces_passes_with_the_reference_pieces_bound():
    """A fix calling the notebook's split_heads, merge_heads and attention runs with course_lib's (a broken
    split_heads from Exercise 3 is not counted twice), and the namespace is restored."""
    namespace = _namespace()
    broken = namespace["split_heads"]
    C.check_mha_forward(_define(MHA_FIXED, namespace), namespace)
    assert namespace["split_heads"] is broken and "scaled_dot_product_attention" not in namespace


def test_the_reference_agrees_with_torch_on_every_visible_case():
    """Independent of course_lib: the expected values are torch's nn.MultiheadAttention with the same weights."""
    for config in C.MHA_FORWARD_CONFIGS:
        case = C.mha_case(**config)
        D, H, query, key, mask = case["d_model"], case["num_heads"], case["query"], case["key"], case["mask"]
        ours = C.mha_output(A.MultiHeadAttention, **case)
        theirs = torch.nn.MultiheadAttention(D, H, batch_first=True)
        weights = C._Projections(D, H, case["seed"]).state_dict()
        if case["zero_queries"]:
            weights["q_proj.weight"].zero_()
            weights["q_proj.bias"].zero_()
        names = ("q_proj", "k_proj", "v_proj")
        memory = query if key is None else key
        with torch.no_grad():
            theirs.in_proj_weight.copy_(torch.cat([weights[f"{n}.weight"] for n in names]))
            theirs.in_proj_bias.copy_(torch.cat([weights[f"{n}.bias"] for n in names]))
            theirs.out_proj.weight.copy_(weights["out_proj.weight"])
            theirs.out_proj.bias.copy_(weights["out_proj.bias"])
            blocked = None if mask is None else ~mask.expand(query.shape[0], H, query.shape[1], memory.shape[1])
            if blocked is not None:
                blocked = blocked.reshape(-1, query.shape[1], memory.shape[1])
            out, per_head = theirs(query, memory, memory, attn_mask=blocked, average_attn_weights=False)
        empty = (mask is not None) and (~mask).all(-1).any()
        if empty:  # torch gives NaN for a query with no key; the course's contract says zeros, out_proj(0)
            rows = (~mask.expand(query.shape[0], 1, query.shape[1], memory.shape[1])).all(-1)[:, 0]  # (B, T_q)
            out = torch.where(rows[..., None], theirs.out_proj.bias.detach(), out)
            per_head = per_head.nan_to_num(0.0)
        torch.testing.assert_close(ours[0], out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours[1], per_head, atol=1e-5, rtol=1e-5)


def test_the_shipped_code_runs_fails_and_is_named_by_one_of_its_bugs():
    shipped, _ = _shipped_and_solution()
    cls = _define(shipped)
    for config in C.MHA_FORWARD_CONFIGS:  # wrong, not broken: it runs on every case, with the right shapes
        out, weights = C.mha_output(cls, **C.mha_case(**config))
        assert out.shape == (config["B"], config["T_q"], config["D"]) and torch.isfinite(out).all()
    merged_by_reshape = next(d for d, f in C.MHA_FORWARD_MISTAKES.items() if f.args[0] is C._MHAMergedByReshape)
    assert_fails_naming(lambda: C.check_mha_forward(cls, {}), f"Likely cause: {merged_by_reshape}")
    with_one_head = C.mha_case(B=2, T_q=5, D=6, H=1, mask="causal", seed=7)  # the bug report: right with one head
    torch.testing.assert_close(C.mha_output(cls, **with_one_head), C.mha_output(A.MultiHeadAttention, **with_one_head))


def test_the_shipped_code_leaks_the_future_past_a_causal_mask_and_the_fix_does_not():
    """The symptom the notebook describes: an earlier output moves when only the last token changes."""
    shipped, solution = _shipped_and_solution()
    case = C.mha_case(B=1, T_q=8, D=16, H=4, mask="causal", seed=5)
    later = dict(case, query=case["query"].clone())
    later["query"][0, -1] += 1.0
    for source, leaks in ((shipped, True), (solution, False)):
        cls = _define(source)
        moved = (C.mha_output(cls, **later)[0] - C.mha_output(cls, **case)[0])[0, :-1].abs().max().item()
        assert (moved > 1e-3) == leaks, (leaks, moved)


@pytest.mark.parametrize("description", list(C.MHA_FORWARD_MISTAKES))
def test_each_mha_mistake_fails_the_visible_check_and_is_named(description):
    cls = C.MHA_FORWARD_MISTAKES[description].args[0]
    assert_fails_naming(lambda: C.check_mha_forward(cls, {}), f"Likely cause: {description}")


def test_the_mha_catalogue_through_the_shared_assertion():
    cases = [C.mha_case(**config) for config in C.MHA_FORWARD_CONFIGS]
    reference = functools.partial(C.mha_output, A.MultiHeadAttention)
    assert_each_mistake_is_caught_and_named(C.MHA_FORWARD_MISTAKES, reference, cases, "MultiHeadAttention")


@pytest.mark.parametrize("shortcut", ["course_lib", "torch"])
def test_mha_shortcuts_are_refused(shortcut):
    class MultiHeadAttention(A.MultiHeadAttention):
        def forward(self, query, key=None, value=None, mask=None):
            if shortcut == "course_lib":
                return super().forward(query, key, value, mask)
            key = query if key is None else key
            q, k, v = (A.split_heads(p(x), self.num_heads)
                       for p, x in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, key)))
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.out_proj(A.merge_heads(out)), A.scaled_dot_product_attention(q, k, v, mask)[1]

    with pytest.raises(CheckFailed, match="asks you to build yourself"):
        C.check_mha_forward(MultiHeadAttention, {})
