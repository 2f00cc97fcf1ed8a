"""Notebook 05's mistake catalogues and graders, and the reference functions the exercises are compared with.

Every listed mistake must be wrong on the inputs the notebook's checks use, and
named as the likely cause when a student's answer computes exactly it.

The debug exercise ``bpe_encode`` is checked on the code the notebook ships (read from it with
harness.as_shipped): its first failure names the choice by count, the second, once that is fixed, the loop
that stops at two ids.
"""

from __future__ import annotations

import re
from pathlib import Path

import harness
import pytest
import torch
import torch.nn.functional as F
from envtools import assert_each_mistake_is_caught_and_named, assert_fails_naming
from harness import as_shipped

from course_lib import gpt, tokenizer
from course_lib.checks import pretraining as checks
from course_lib.grading import CheckFailed, _mismatch, _resolve, catalogued, check_function


def _likely(student, reference, cases, mistakes, **tol):
    with pytest.raises(CheckFailed) as failure:
        check_function(student, reference, cases, mistakes=mistakes, **tol)
    return str(failure.value)


def _ids_cases():
    return [{"ids": [1, 2, 3, 1, 2]}, {"ids": [5, 5, 5]}, {"ids": [4, 9, 4, 9, 4, 1, 4]}, {"ids": [3, 1, 3, 1, 2, 3]}]


def _merge_cases():
    return [
        {"ids": [1, 2, 3, 1, 2], "pair": (1, 2), "new_id": 256},
        {"ids": [7, 7, 7], "pair": (7, 7), "new_id": 300},
        {"ids": [4, 1, 2, 5], "pair": (1, 2), "new_id": 99},
    ]


def _char_reference(text, probe):
    return checks.char_tokenizer_round(tokenizer.CharTokenizer, text, probe)


def _block_cases():
    g = torch.Generator().manual_seed(5)
    config = gpt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    return [{"config": config, "x": torch.randn(2, 5, 8, generator=g), "seed": 0}]


def _block_reference(config, x, seed):
    return checks.block_output(gpt.Block, config, x, seed)


def _loss_cases():
    g = torch.Generator().manual_seed(6)
    return [
        {"logits": torch.randn(2, 5, 7, generator=g), "tokens": torch.randint(7, (2, 5), generator=g)},
        {"logits": 3 * torch.randn(3, 4, 5, generator=g), "tokens": torch.randint(5, (3, 4), generator=g)},
    ]


def _attention_cases():
    g = torch.Generator().manual_seed(7)

    def qkv(B, H, T, d, T_past=0):
        case = {name: torch.randn(B, H, T, d, generator=g) for name in "qkv"}
        if T_past:
            case["past"] = (torch.randn(B, H, T_past, d, generator=g), torch.randn(B, H, T_past, d, generator=g))
        return case

    return [qkv(2, 2, 4, 8), qkv(2, 2, 2, 8, T_past=3), qkv(1, 3, 1, 4, T_past=5)]


def _tiny_gpt(seed, B, T_past, T):
    torch.manual_seed(seed)
    model = gpt.GPT(gpt.GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(13, (B, T_past), generator=g)
    past = gpt.forward_with_cache(model, prefix)[1] if T_past else None
    return {"model": model, "idx": torch.randint(13, (B, T), generator=g), "past": past}


CATALOGUES = {
    "pair_counts": (checks.PAIR_COUNTS_MISTAKES, tokenizer.get_pair_counts, _ids_cases, {}),
    "merge": (checks.MERGE_MISTAKES, tokenizer.merge, _merge_cases, {}),
    "char_tokenizer": (
        checks.CHAR_TOKENIZER_MISTAKES,
        _char_reference,
        lambda: [{"text": "hello world", "probe": "low"}, {"text": "banana", "probe": "nab"}],
        {},
    ),
    "block": (checks.BLOCK_MISTAKES, _block_reference, _block_cases, {}),
    "lm_loss": (checks.LM_LOSS_MISTAKES, gpt.lm_loss, _loss_cases, {}),
    "attention_with_past": (checks.ATTENTION_WITH_PAST_MISTAKES, gpt.attention_with_past, _attention_cases, {}),
    "forward_with_cache": (
        checks.FORWARD_WITH_CACHE_MISTAKES,
        gpt.forward_with_cache,
        lambda: [_tiny_gpt(1, 2, 0, 4), _tiny_gpt(2, 2, 3, 1), _tiny_gpt(3, 1, 5, 3)],
        {},
    ),
    "generate": (checks.GENERATE_MISTAKES, checks._reference_generate, lambda: _generate_cases(), {}),
    "bpe_encode": (checks.BPE_ENCODE_MISTAKES, checks.reference_bpe_encode, checks.bpe_encode_cases, {}),
}


def _generate_cases():
    """The visible cases of check_generate."""
    return [
        checks.generate_case(1, 1, 3, 4, temperature=0),
        checks.generate_case(2, 2, 4, 12, temperature=1.0),
        checks.generate_case(3, 2, 10, 5, temperature=0.8, top_k=5, top_p=0.9),
    ]


@pytest.mark.parametrize("catalogue", sorted(CATALOGUES))
def test_every_mistake_is_wrong_and_named(catalogue):
    mistakes, reference, make_cases, tol = CATALOGUES[catalogue]
    for description, mistaken in mistakes.items():
        cases = make_cases()
        differs = [_mismatch(mistaken(**case), reference(**case), "x", 1e-5, 1e-4) for case in cases]
        assert any(differs), f"never wrong on the notebook's inputs, so never detectable: {description}"
        message = _likely(mistaken, reference, make_cases(), mistakes, **tol)
        assert f"Likely cause: {description}" in message, (description, message)


SAMPLING_CASES = [
    {"temperature": 0.5},
    {"temperature": 2.0},
    {"top_k": 2},
    {"top_k": 3},
    {"top_p": 0.6},
    {"top_p": 0.85},
    {"temperature": 0.3, "top_k": 4, "top_p": 0.9},
]
LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0], [0.0, 0.3, -0.2, 1.2, 0.1]])


def test_sampled_frequencies_match_the_exact_distribution():
    for options in SAMPLING_CASES + [{"temperature": 0}]:
        freq = checks.sampled_frequencies(gpt.sample_next_token, LOGITS, **options)
        exact = gpt.next_token_probs(LOGITS, **options).double()
        assert (freq - exact).abs().max() < 0.015, options
        assert torch.equal(freq > 0, exact > 0), options  # nothing outside the kept set is ever drawn


def test_every_sampling_mistake_is_a_different_distribution():
    for description, mistaken in checks.SAMPLING_MISTAKES.items():
        gaps = [(mistaken(LOGITS, **options) - gpt.next_token_probs(LOGITS, **options)).abs().max() for options in
                SAMPLING_CASES]
        assert max(gaps) > 0.06, f"too close to the right distribution to be told apart by sampling: {description}"


def test_top_p_keeps_the_token_that_crosses_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = gpt.next_token_probs(probs.log(), top_p=0.7) > 0
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7, 0.5 + 0.3 reaches it
    assert (gpt.next_token_probs(probs.log(), top_p=0.5) > 0).tolist() == [[True, False, False, False]]
    assert (gpt.next_token_probs(probs.log(), top_k=3) > 0).sum().item() == 3


def test_attention_with_past_is_what_the_cached_model_computes():
    torch.manual_seed(0)
    config = gpt.GPTConfig(vocab_size=5, block_size=12, n_layer=1, n_head=2, n_embd=8)
    attn = gpt.CausalSelfAttention(config)
    x = torch.randn(2, 7, 8)
    full, _ = attn(x)
    B, T, C = x.shape
    q, k, v = (t.view(B, T, 2, 4).transpose(1, 2) for t in attn.qkv(x).split(C, dim=2))
    y_past, cache = gpt.attention_with_past(q[:, :, :4], k[:, :, :4], v[:, :, :4])
    y_new, cache = gpt.attention_with_past(q[:, :, 4:], k[:, :, 4:], v[:, :, 4:], cache)
    y = torch.cat([y_past, y_new], dim=2).transpose(1, 2).reshape(B, T, C)
    assert torch.allclose(attn.proj(y), full, atol=1e-6)
    assert cache[0].shape == (2, 2, 7, 4)


def test_forward_with_cache_equals_the_full_forward_over_the_whole_sequence():
    """The cached call on the new tokens gives the logits an uncached pass over prefix + new tokens gives them."""
    case = _tiny_gpt(4, 2, 5, 3)
    g = torch.Generator().manual_seed(4)
    prefix = torch.randint(13, (2, 5), generator=g)  # the prefix _tiny_gpt cached, drawn again
    logits, presents = gpt.forward_with_cache(**case)
    with torch.no_grad():
        full = case["model"](torch.cat([prefix, case["idx"]], dim=1))  # (B, 8, V), no cache anywhere
    assert torch.allclose(logits, full[:, 5:], atol=1e-5)
    assert len(presents) == 2 and presents[0][0].shape == (2, 2, 8, 4)  # (B, heads, T_past + T, head_dim)


def test_sample_next_token_draws_from_next_token_probs():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ids = gpt.sample_next_token(LOGITS.repeat(50, 1), 0.7, 3, 0.9, generator=g1)
    again = torch.multinomial(gpt.next_token_probs(LOGITS.repeat(50, 1), 0.7, 3, 0.9), 1, generator=g2).squeeze(1)
    assert torch.equal(ids, again)
    with pytest.raises(ValueError, match="top_p"):
        gpt.next_token_probs(LOGITS, top_p=1.5)


def test_slow_bpe_reference_is_the_textbook_loop():
    text = "low lower lowest low low"
    merges = checks.slow_bpe_reference(text, 5)
    assert merges[0] == (ord("l"), ord("o"))  # 'lo' occurs 5 times, more than any other pair
    assert len(merges) == 5


def test_shortcuts_resolve():
    for name in dir(checks):
        if name.endswith("_SHORTCUTS"):
            for target in getattr(checks, name):
                _resolve(target)


def test_block_output_rejects_renamed_modules():
    class Renamed(torch.nn.Module):
        def __init__(self, config):
            super().__init__()
            self.norm = torch.nn.LayerNorm(config.n_embd)

        def forward(self, x, past=None):
            return self.norm(x), None

    with pytest.raises(ValueError, match="ln_1"):
        checks.block_output(Renamed, **_block_cases()[0])


def test_lm_loss_mistakes_really_differ_from_cross_entropy_in_nats():
    case = _loss_cases()[0]
    right = F.cross_entropy(case["logits"][:, :-1].reshape(-1, 7), case["tokens"][:, 1:].reshape(-1))
    assert torch.allclose(gpt.lm_loss(**case), right)


def _plain_generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    """The loop written without any cache: the model re-reads the last block_size tokens at every step."""
    W = model.config.block_size
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = gpt.sample_next_token(model(idx[:, -W:])[:, -1], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, next_id[:, None]], dim=1)
    return idx


def _cached_generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    """The notebook's solution, written against the names check_generate binds in the namespace."""
    W = model.config.block_size
    past = None
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if past is not None and past[0][0].shape[2] < W:
                logits, past = forward_with_cache(model, idx[:, -1:], past)  # noqa: F821 - bound by the check
            else:
                logits, past = forward_with_cache(model, idx[:, -W:])  # noqa: F821
            next_id = sample_next_token(logits[:, -1], temperature, top_k, top_p, generator)  # noqa: F821
            idx = torch.cat([idx, next_id[:, None]], dim=1)
    return idx


def test_the_reference_generation_is_the_uncached_loop_token_for_token():
    """course_lib.gpt.generate, the check's reference, against a loop with no cache at all, past the window."""
    for case in _generate_cases() + [checks.generate_case(5, 3, 1, 20, temperature=1.5)]:
        case = dict(case)
        model = checks.tiny_generator_gpt(case["seed"], case.pop("block_size"))
        seed, idx, n = case.pop("seed"), case.pop("idx"), case.pop("max_new_tokens")
        expected = _plain_generate(model, idx, n, generator=torch.Generator().manual_seed(seed), **case)
        assert torch.equal(checks._reference_generate(model.config.block_size, idx, n, seed, **case), expected)
        assert expected.shape == (idx.shape[0], idx.shape[1] + n)


def test_check_generate_passes_the_cached_loop_and_restores_the_namespace():
    """The loop reads forward_with_cache and sample_next_token from this module's globals, bound by the check."""
    checks.check_generate(_cached_generate, globals())
    checks.check_generate(_cached_generate, globals(), cases=[checks.generate_case(4, 1, 3, 0)])
    assert "forward_with_cache" not in globals() and "sample_next_token" not in globals()


def test_check_generate_fails_a_loop_that_never_uses_its_cache():
    def no_cache(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        return _plain_generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator)

    with pytest.raises(CheckFailed, match="re-reads the whole sequence") as failure:
        checks.check_generate(no_cache, {})
    (description,) = checks.GENERATE_CACHE_SYMPTOMS
    assert f"Likely cause: {description}" in str(failure.value)
    assert checks.positions_fed(no_cache, checks.tiny_generator_gpt(0, 16), torch.tensor([[1, 2, 3]]), 6) == 33


def test_check_generate_refuses_course_libs_generate():
    def shortcut(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        return gpt.generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator=generator)

    with pytest.raises(CheckFailed, match="course_lib.gpt.generate"):
        checks.check_generate(shortcut, {})


# -- the debug exercise: bpe_encode ------------------------------------------------------


def _shipped_bpe_encode(namespace):
    """The function the student release ships (the notebook's buggy code, uncommented), defined in ``namespace``,
    where check_bpe_encode binds get_pair_counts and merge as it binds them in the notebook."""
    exec(as_shipped("05_pretraining", "bpe_encode"), namespace)
    return namespace["bpe_encode"]


def _bpe_encode_by_rank(text, merges):
    """A correct answer written differently: each merge once, in the order it was learned, over the whole text."""
    ids = list(text.encode("utf-8"))
    for rank, pair in enumerate(merges):
        ids = tokenizer.merge(ids, pair, 256 + rank)
    return ids


def _bpe_encode_hidden_style_cases():
    return [
        checks.bpe_encode_case("Return an iterator over the items of the mapping."),
        checks.bpe_encode_case("Return the index.", num_merges=40),
        checks.bpe_encode_case("é", "café, crème, fiancé", 6),
        {"text": "abc", "merges": []},
        {"text": "aaaaa", "merges": [(97, 97), (256, 256)]},
        checks.random_bpe_case(51),
        checks.random_bpe_case(52, alphabet="aab"),
        checks.random_bpe_case(53, num_merges=25),
    ]


def test_the_bpe_encode_reference_replays_train_bpe():
    """Rank order on the training text gives the ids the textbook loop produced; the edges of the contract."""
    text = "the cat sat on the mat; the hat is flat, the bat is fat"
    merges = checks.slow_bpe_reference(text, 12)
    ids = list(text.encode("utf-8"))
    for rank, pair in enumerate(merges):
        ids = tokenizer.merge(ids, pair, 256 + rank)
    assert checks.reference_bpe_encode(text, merges) == ids
    for case in checks.bpe_encode_cases() + _bpe_encode_hidden_style_cases():
        assert checks.reference_bpe_encode(**case) == _bpe_encode_by_rank(**case)
    assert checks.reference_bpe_encode("", merges) == []
    assert checks.reference_bpe_encode("é", []) == [195, 169]
    assert checks.reference_bpe_encode("aaaaa", [(97, 97), (256, 256)]) == [257, 97]


def test_correct_bpe_encodes_pass_and_the_namespace_is_restored():
    namespace = {}
    exec(harness.solution_answers("05_pretraining", "pretraining.ipynb")["bpe_encode"], namespace)
    for answer in (namespace["bpe_encode"], _bpe_encode_by_rank):
        checks.check_bpe_encode(answer, namespace)
        checks.check_bpe_encode(answer, namespace, cases=_bpe_encode_hidden_style_cases())
    assert "get_pair_counts" not in namespace and "merge" not in namespace


def test_the_shipped_bpe_encode_runs_and_survives_its_authors_tests():
    """Wrong, not broken: it raises on no input of the contract; it encodes its training text to the ids training
    produced and every text back to itself, which is why its bugs went unnoticed; the check names its first bug."""
    namespace = {"get_pair_counts": tokenizer.get_pair_counts, "merge": tokenizer.merge}
    shipped = _shipped_bpe_encode(namespace)
    cases = checks.bpe_encode_cases() + _bpe_encode_hidden_style_cases()
    outputs = [shipped(**case) for case in cases]
    assert any(out != checks.reference_bpe_encode(**case) for out, case in zip(outputs, cases))
    learned = checks.bpe_encode_case("")["merges"]
    trained = list(checks.BPE_TRAINING_TEXT.encode("utf-8"))
    for rank, pair in enumerate(learned):  # what train_bpe's loop left
        trained = tokenizer.merge(trained, pair, 256 + rank)
    assert shipped(checks.BPE_TRAINING_TEXT, learned) == trained
    for out, case in zip(outputs, cases):
        pieces = tokenizer.BPETokenizer(case["merges"]).vocab
        assert b"".join(pieces[i] for i in out).decode("utf-8") == case["text"]
    first = next(iter(checks.BPE_ENCODE_MISTAKES))
    assert_fails_naming(lambda: checks.check_bpe_encode(shipped, {}), first)
    assert_fails_naming(lambda: checks.check_bpe_encode(shipped, {}), "(Hint 1 above, 'Which pair')")


def test_fixing_one_bug_of_the_shipped_bpe_encode_lets_the_check_name_the_other():
    source = as_shipped("05_pretraining", "bpe_encode")
    by_rank = "min(counts, key=lambda p: ranks.get(p, len(merges)))"
    chosen_by_rank = source.replace("max(counts, key=counts.get)", by_rank)
    loop_fixed = source.replace("while len(tokens) > 2:", "while len(tokens) >= 2:")
    assert chosen_by_rank != source and loop_fixed != source
    for fixed, named in ((chosen_by_rank, checks._encode_stops_at_two), (loop_fixed, checks._encode_most_frequent)):
        namespace = {}
        exec(fixed, namespace)
        assert_fails_naming(lambda ns=namespace: checks.check_bpe_encode(ns["bpe_encode"], ns),
                            catalogued(checks.BPE_ENCODE_MISTAKES, named))


def test_the_shipped_bpe_encode_merges_nothing_of_fast_modes_validation_text():
    """The notebook's claim: with the merges FAST mode learns from the first 3,000 training characters, the
    shipped code leaves the first 3,000 validation characters as bytes; the rank order shortens them."""
    from course_lib.data import text_corpus

    merges = checks.slow_bpe_reference(text_corpus("docstrings", "train")[:3000], 40)
    held_out = text_corpus("docstrings", "val")[:3000]
    shipped = _shipped_bpe_encode({"get_pair_counts": tokenizer.get_pair_counts, "merge": tokenizer.merge})
    assert shipped(held_out, merges) == list(held_out.encode("utf-8"))
    assert len(checks.reference_bpe_encode(held_out, merges)) < 0.8 * len(held_out.encode("utf-8"))


def _bpe_encode_hints() -> dict[str, str]:
    """The hints of notebook 05's debug section ('Hint 1' -> its text), read from the source."""
    source = (Path(__file__).resolve().parents[1] / "sources" / "05_pretraining" / "pretraining.py").read_text()
    start = source.index("# ## Debug · ")
    section = source[start:source.index('# %% id="bpe_encode"', start)]
    return dict(re.findall(r"<summary>(Hint \d)</summary>(.*?)</details>", section, flags=re.S))


@pytest.mark.parametrize("description", list(checks.BPE_ENCODE_MISTAKES) + list(checks.BPE_ENCODE_ERRORS.values()))
def test_each_bpe_encode_description_points_to_a_hint_paragraph_and_does_not_give_the_fix(description):
    """Each description says what is wrong with the ids and where to look, then names the hint and its paragraph
    ('Which pair' or 'When to stop'); none writes the fix (that is Hint 3's job)."""
    hint, paragraph = re.search(r"\((Hint \d) above, '([^']+)'\)$", description).groups()
    assert f"**{paragraph}.**" in _bpe_encode_hints()[hint], (hint, paragraph)
    for giveaway in ("min", "max", "smallest", "largest", ">=", "> 2", "len(", "ranks[", "`ranks`", "get(", "count",
                     "while len", "`while`", "instead", "rather", "sort", "rank order"):
        assert giveaway not in description, giveaway


def test_the_shipped_bugs_are_pointed_at_hint_1_which_has_a_paragraph_for_each():
    """Hint 1 says where to look for each bug, Hint 2 what goes wrong, Hint 3 the code: each has both paragraphs."""
    hints = _bpe_encode_hints()
    assert list(hints) == ["Hint 1", "Hint 2", "Hint 3"]
    for text in hints.values():
        assert "**Which pair.**" in text and "**When to stop.**" in text
    for bug, paragraph in ((checks._encode_most_frequent, "Which pair"), (checks._encode_stops_at_two, "When to stop")):
        assert catalogued(checks.BPE_ENCODE_MISTAKES, bug).endswith(f"(Hint 1 above, '{paragraph}')")
    assert "max(counts" not in hints["Hint 1"] and "> 2" not in hints["Hint 1"]


def test_every_bpe_encode_mistake_is_caught_and_named():
    assert_each_mistake_is_caught_and_named(checks.BPE_ENCODE_MISTAKES, checks.reference_bpe_encode,
                                            checks.bpe_encode_cases(), name="bpe_encode")


@pytest.mark.parametrize("description", list(checks.BPE_ENCODE_MISTAKES))
def test_each_bpe_encode_mistake_fails_the_self_check_naming_it(description):
    assert_fails_naming(lambda: checks.check_bpe_encode(checks.BPE_ENCODE_MISTAKES[description], {}), description)


def test_a_bpe_encode_ranking_unlearned_pairs_by_none_names_the_likely_cause():
    def ranked_by_get(text, merges):
        ranks = {pair: i for i, pair in enumerate(merges)}
        ids = list(text.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(tokenizer.get_pair_counts(ids), key=ranks.get)
            if pair not in ranks:
                break
            ids = tokenizer.merge(ids, pair, 256 + ranks[pair])
        return ids

    (description,) = checks.BPE_ENCODE_ERRORS.values()
    assert_fails_naming(lambda: checks.check_bpe_encode(ranked_by_get, {}), f"Likely cause: {description}")


def test_bpe_encode_calling_course_libs_tokenizer_is_caught():
    def answer(text, merges):
        return tokenizer.BPETokenizer(merges)._encode_pretoken(text)

    assert_fails_naming(lambda: checks.check_bpe_encode(answer, {}), "build yourself")
