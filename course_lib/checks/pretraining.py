"""Shortcuts, runners, common mistakes and self-checks for notebook 05 (tokenizers, GPT block, LM loss, sampling,
KV cache).

Each mistaken function below is what a student's answer computes when it
makes that mistake; ``grading.check_function`` names the one that matches.
Modules are compared by building the student's and the reference class from
the same configuration and copying one set of seeded weights into both.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, MutableMapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import scaled_dot_product_attention
from ..gpt import GPT, MLP, CausalSelfAttention, GPTConfig, forward_with_cache, next_token_probs, sample_next_token
from ..grading import CheckFailed, check_answer_rules, check_function, forbid_reference, matching_cause, substitute
from ..tokenizer import BPETokenizer, get_pair_counts, merge

# ---------------------------------------------------------------------------
# BPE: pair counts and merges
# ---------------------------------------------------------------------------


def _pairs_non_overlapping(ids):
    counts, i = {}, 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def _pairs_wrap_around(ids):
    counts = {}
    for pair in zip(ids, list(ids[1:]) + list(ids[:1])):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _pairs_stride_two(ids):
    counts = {}
    for pair in zip(ids[::2], ids[1::2]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


PAIR_COUNTS_MISTAKES = {
    "overlapping pairs were counted once: in [5, 5, 5] the pair (5, 5) occurs twice (positions 0-1 and "
    "1-2); count every adjacent pair `zip(ids, ids[1:])`": _pairs_non_overlapping,
    "the sequence wrapped around: the last id and the first are not neighbours (use ids[1:], "
    "not a rotation)": _pairs_wrap_around,
    "only pairs starting at even positions were counted: slide the window one step at a time": _pairs_stride_two,
}

PAIR_COUNTS_SHORTCUTS = ["course_lib.tokenizer.get_pair_counts"]


def check_get_pair_counts(get_pair_counts: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's get_pair_counts against course_lib.tokenizer's (the visible cases when ``cases``
    is None, after making sure it does not just call the library's copy)."""
    from ..tokenizer import get_pair_counts as reference

    if cases is None:
        forbid_reference(get_pair_counts, PAIR_COUNTS_SHORTCUTS, example={"ids": [1, 2, 3]})
        cases = [{"ids": [1, 2, 3, 1, 2]}, {"ids": [5, 5, 5]}, {"ids": [7]}, {"ids": [4, 9, 4, 9, 4, 1, 4]}]
    check_function(get_pair_counts, reference, cases, name="get_pair_counts", mistakes=PAIR_COUNTS_MISTAKES)


def _merge_overlapping(ids, pair, new_id):
    out = []
    for i, a in enumerate(ids):
        if i + 1 < len(ids) and (a, ids[i + 1]) == tuple(pair):
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], a) == tuple(pair)):
            out.append(a)
    return out


def _merge_drops_last(ids, pair, new_id):
    out, i = [], 0
    while i + 1 < len(ids):
        if (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_first_only(ids, pair, new_id):
    ids = list(ids)
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == tuple(pair):
            return ids[:i] + [new_id] + ids[i + 2 :]
    return ids


def _merge_keeps_second(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.extend([new_id, ids[i + 1]])
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


MERGE_MISTAKES = {
    "overlapping matches were all replaced: after replacing a pair, continue *after* it (i += 2), so "
    "[7, 7, 7] merged on (7, 7) gives [new_id, 7]": _merge_overlapping,
    "the last id went missing: when no pair starts at the last position, still copy that id": _merge_drops_last,
    "only the first occurrence was replaced: replace every occurrence, scanning left to right": _merge_first_only,
    "the pair's second id was kept: new_id replaces *both* ids of the pair": _merge_keeps_second,
}

MERGE_SHORTCUTS = ["course_lib.tokenizer.merge"]


def check_merge(merge: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's merge against course_lib.tokenizer's (the visible cases when ``cases`` is None,
    after making sure it does not just call the library's copy)."""
    from ..tokenizer import merge as reference

    if cases is None:
        forbid_reference(merge, MERGE_SHORTCUTS, example={"ids": [1, 2], "pair": (1, 2), "new_id": 256})
        cases = [
            {"ids": [1, 2, 3, 1, 2], "pair": (1, 2), "new_id": 256},
            {"ids": [7, 7, 7], "pair": (7, 7), "new_id": 300},
            {"ids": [4, 1, 2, 5], "pair": (1, 2), "new_id": 99},
        ]
    check_function(merge, reference, cases, name="merge", mistakes=MERGE_MISTAKES)


def slow_bpe_reference(text: str, num_merges: int) -> list[tuple[int, int]]:
    """The textbook loop on the raw UTF-8 bytes of ``text`` (no pre-tokenization): count, pick, merge, repeat.

    Ties go to the pair seen first, as ``max`` over a dict in insertion order does.
    """
    ids = list(text.encode("utf-8"))
    merges = []
    for step in range(num_merges):
        counts = get_pair_counts(ids)
        if not counts:
            break
        pair = max(counts, key=counts.get)
        ids = merge(ids, pair, 256 + step)
        merges.append(pair)
    return merges


# ---------------------------------------------------------------------------
# Debug: encoding new text with the learned merges
# ---------------------------------------------------------------------------


def reference_bpe_encode(text: str, merges: list[tuple[int, int]]) -> list[int]:
    """``text`` as course_lib.tokenizer.BPETokenizer encodes one pre-token: its UTF-8 bytes, then, while a learned
    pair is adjacent somewhere, the one learned first (smallest rank; ``merges[r]`` became id 256 + r) merged
    everywhere. No pre-tokenization, like the notebook's ``train_bpe``."""
    return BPETokenizer(merges)._encode_pretoken(text)


def _encode_most_frequent(text, merges):
    ranks = {pair: i for i, pair in enumerate(merges)}
    tokens = list(text.encode("utf-8"))
    while len(tokens) >= 2:
        counts = get_pair_counts(tokens)
        pair = max(counts, key=counts.get)
        if pair not in ranks:
            break
        tokens = merge(tokens, pair, 256 + ranks[pair])
    return tokens


def _encode_stops_at_two(text, merges):
    ranks = {pair: i for i, pair in enumerate(merges)}
    tokens = list(text.encode("utf-8"))
    while len(tokens) > 2:
        counts = get_pair_counts(tokens)
        pair = min(counts, key=lambda p: ranks.get(p, len(merges)))
        if pair not in ranks:
            break
        tokens = merge(tokens, pair, 256 + ranks[pair])
    return tokens


def _encode_most_frequent_learned(text, merges):
    ranks = {pair: i for i, pair in enumerate(merges)}
    tokens = list(text.encode("utf-8"))
    while len(tokens) >= 2:
        counts = {pair: n for pair, n in get_pair_counts(tokens).items() if pair in ranks}
        if not counts:
            break
        pair = max(counts, key=counts.get)
        tokens = merge(tokens, pair, 256 + ranks[pair])
    return tokens


def _encode_latest_first(text, merges):
    ranks = {pair: i for i, pair in enumerate(merges)}
    tokens = list(text.encode("utf-8"))
    while len(tokens) >= 2:
        counts = get_pair_counts(tokens)
        pair = max(counts, key=lambda p: ranks.get(p, -1))
        if pair not in ranks:
            break
        tokens = merge(tokens, pair, 256 + ranks[pair])
    return tokens


def _encode_one_pass(text, merges):
    ranks = {pair: i for i, pair in enumerate(merges)}
    tokens = list(text.encode("utf-8"))
    for pair in get_pair_counts(tokens):
        if pair in ranks:
            tokens = merge(tokens, pair, 256 + ranks[pair])
    return tokens


BPE_ENCODE_MISTAKES = {
    "the loop returned while pairs that `merges` holds were still adjacent in the ids (often before its first "
    "merge: the text's UTF-8 bytes came back as they were), or it merged them in another order than the equation's "
    "r* gives; look at how the loop chooses `pair` (Hint 1 above, 'Which pair')": _encode_most_frequent,
    "the ids ended as two that are themselves a learned pair (such as ' th' and 'e', which make ' the'): the loop "
    "was over while the equation still had an r* to merge; look at what ends the loop (Hint 1 above, "
    "'When to stop')": _encode_stops_at_two,
    "no learned pair is left adjacent, but the merges went in another order than the ranks: at some step the "
    "learned pair merged was not r* but one that occurred at least as often in the ids at that step; look at what "
    "decides which learned pair the loop takes (Hint 1 above, 'Which pair')": _encode_most_frequent_learned,
    "no learned pair is left adjacent, but whenever several learned pairs were adjacent, the one learned last was "
    "merged first, so the ids are not the equation's; look at how the loop chooses `pair` (Hint 1 above, "
    "'Which pair')": _encode_latest_first,
    "each learned pair of the text's bytes was merged once, in the order the pairs first occur in the text: pairs "
    "that only a merge makes (' th' next to 'e') are still adjacent in the ids, or the merges went in the text's "
    "order, not the equation's; look at what the loop goes over and what ends it (Hint 1 above, "
    "'When to stop')": _encode_one_pass,
}

BPE_ENCODE_ERRORS = {
    r"'<' not supported between instances of '(NoneType|int)' and '(NoneType|int)'": (
        "a pair that was never learned has no rank (None here), and None cannot be ordered against a learned "
        "pair's rank: look at the rank the choice of `pair` gives a pair that is not in `merges` (Hint 3 above, "
        "'Which pair')"
    ),
}

BPE_ENCODE_SHORTCUTS = [
    "course_lib.tokenizer.BPETokenizer.encode",
    "course_lib.tokenizer.BPETokenizer._encode_pretoken",
]

BPE_TRAINING_TEXT = (
    "Return the number of items in the sequence. Return the index of the first item that is equal to the value. "
    "Return a new list of the items in the order they were inserted."
)


def bpe_encode_case(text: str, training_text: str = BPE_TRAINING_TEXT, num_merges: int = 24) -> dict:
    """A case for bpe_encode: ``text`` and the ``num_merges`` merges that the notebook's ``train_bpe`` learns from
    the raw bytes of ``training_text`` (:func:`slow_bpe_reference`)."""
    return {"text": text, "merges": slow_bpe_reference(training_text, num_merges)}


def random_bpe_case(seed: int, alphabet: str = "ab c", length: int = 80, num_merges: int = 10) -> dict:
    """A case for bpe_encode on random text: merges learned from ``length`` random characters of ``alphabet``,
    applied to ``length // 2`` others (a small alphabet makes many competing merges)."""
    rng = random.Random(seed)
    training_text = "".join(rng.choice(alphabet) for _ in range(length))
    text = "".join(rng.choice(alphabet) for _ in range(length // 2))
    return bpe_encode_case(text, training_text, num_merges)


def bpe_encode_cases() -> list[dict]:
    """The visible cases of :func:`check_bpe_encode`: a sentence, a word the merges make one token, a word where two
    merges compete for the same byte, and the empty text, each with the merges learned from
    :data:`BPE_TRAINING_TEXT`."""
    texts = ["Return the items of the list in reverse order.", " the", " test", ""]
    return [bpe_encode_case(text) for text in texts]


def check_bpe_encode(
    bpe_encode: Callable, namespace: MutableMapping[str, Any], cases: list[dict] | None = None
) -> None:
    """Self-check of notebook 05's debug exercise bpe_encode against :func:`reference_bpe_encode` (course_lib's
    BPETokenizer), run with course_lib's ``get_pair_counts`` and ``merge`` bound in ``namespace`` (the notebook's
    ``globals()``), so a slip in those exercises is not counted twice. Without ``cases``: a shortcut check, then
    the visible cases (a sentence, two words, the empty text) with merges learned from :data:`BPE_TRAINING_TEXT`."""
    with substitute(namespace, get_pair_counts=get_pair_counts, merge=merge):
        if cases is None:
            forbid_reference(bpe_encode, BPE_ENCODE_SHORTCUTS, example=bpe_encode_case(" the"))
            cases = bpe_encode_cases()
        check_function(bpe_encode, reference_bpe_encode, cases, name="bpe_encode", mistakes=BPE_ENCODE_MISTAKES,
                       errors=BPE_ENCODE_ERRORS)


# ---------------------------------------------------------------------------
# CharTokenizer
# ---------------------------------------------------------------------------


def char_tokenizer_round(cls: type, text: str, probe: str) -> tuple:
    """What the test compares: vocabulary size, the ids of ``probe``, and decode(encode(probe))."""
    check_answer_rules(cls)
    tok = cls(text)
    ids = tok.encode(probe)
    return (tok.vocab_size, list(ids), tok.decode(ids))


class _CharFirstSeen:
    def __init__(self, chars):
        self.chars = list(dict.fromkeys(chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, text):
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


class _CharDuplicates(_CharFirstSeen):
    def __init__(self, chars):
        self.chars = sorted(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}


class _CharOneBased(_CharFirstSeen):
    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.stoi = {c: i + 1 for i, c in enumerate(self.chars)}

    def decode(self, ids):
        return "".join(self.chars[i - 1] for i in ids)


def _char_mistake(cls: type) -> Callable:
    return lambda text, probe: char_tokenizer_round(cls, text, probe)


CHAR_TOKENIZER_MISTAKES = {
    "ids follow the order in which characters first appear; give them in *sorted* character order, so the "
    "same alphabet always gets the same ids": _char_mistake(_CharFirstSeen),
    "repeated characters got several ids: build the vocabulary from the *distinct* characters "
    "(`sorted(set(chars))`)": _char_mistake(_CharDuplicates),
    "ids start at 1: the first character gets id 0, so ids run 0 .. vocab_size - 1": _char_mistake(_CharOneBased),
}


def check_char_tokenizer(char_tokenizer: type, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's CharTokenizer: vocabulary size, encode and decode on each case's ``text`` and
    ``probe``, compared with course_lib.tokenizer.CharTokenizer (the visible cases when ``cases`` is None)."""
    from ..tokenizer import CharTokenizer as Reference

    def yours(text, probe):
        return char_tokenizer_round(char_tokenizer, text, probe)

    def reference(text, probe):
        return char_tokenizer_round(Reference, text, probe)

    if cases is None:
        cases = [{"text": "hello world", "probe": "low"}, {"text": "banana", "probe": "nab"}]
    check_function(yours, reference, cases, name="CharTokenizer", mistakes=CHAR_TOKENIZER_MISTAKES)

# ---------------------------------------------------------------------------
# The transformer block
# ---------------------------------------------------------------------------


def _randomize(module: nn.Module, seed: int) -> None:
    """Seeded weights everywhere, LayerNorms included (so swapping ln_1 and ln_2 shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.5) + (1.0 if p.dim() == 1 else 0))


def block_output(block_cls: type, config: GPTConfig, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Build ``block_cls(config)``, give it the reference block's seeded weights, return its output x (B, T, C)."""
    check_answer_rules(block_cls)
    from ..gpt import Block

    reference = Block(config)
    _randomize(reference, seed)
    block = block_cls(config)
    missing = set(reference.state_dict()) - set(block.state_dict())
    if missing:
        raise ValueError(
            f"the block has no parameters named {sorted(missing)}: keep the names ln_1, attn, ln_2 and mlp"
        )
    block.load_state_dict(reference.state_dict())
    block.eval()
    with torch.no_grad():
        out = block(x)
    return out[0] if isinstance(out, tuple) else out


class _BlockBase(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)


class _BlockPostLN(_BlockBase):
    def forward(self, x, past=None):
        a, present = self.attn(x, past)
        x = self.ln_1(x + a)
        return self.ln_2(x + self.mlp(x)), present


class _BlockResidualAfterNorm(_BlockBase):
    def forward(self, x, past=None):
        h = self.ln_1(x)
        a, present = self.attn(h, past)
        x = h + a
        h = self.ln_2(x)
        return h + self.mlp(h), present


class _BlockNoNorm(_BlockBase):
    def forward(self, x, past=None):
        a, present = self.attn(x, past)
        x = x + a
        return x + self.mlp(x), present


class _BlockOneNorm(_BlockBase):
    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_1(x)), present


class _BlockNoResidual(_BlockBase):
    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        return a + self.mlp(self.ln_2(a)), present


class _BlockParallel(_BlockBase):
    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        return x + a + self.mlp(self.ln_2(x)), present


def _block_mistake(cls: type) -> Callable:
    return lambda config, x, seed: block_output(cls, config, x, seed)


BLOCK_MISTAKES = {
    "post-LN: LayerNorm applied *after* the residual sum, ln(x + attn(x)), as in the original Transformer; GPT-2 "
    "normalises the sublayer's *input*: x + attn(ln_1(x))": _block_mistake(_BlockPostLN),
    "the residual adds the normalised x: the skip connection must carry x itself, x + attn(ln_1(x)), "
    "not ln_1(x) + attn(ln_1(x))": _block_mistake(_BlockResidualAfterNorm),
    "no LayerNorm before the sublayers: use x + attn(ln_1(x)) and x + mlp(ln_2(x))": _block_mistake(_BlockNoNorm),
    "ln_1 used twice: the MLP's input is ln_2(x)": _block_mistake(_BlockOneNorm),
    "the first residual connection is missing: x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x))": _block_mistake(
        _BlockNoResidual
    ),
    "the MLP read the block's input instead of the output of the attention step: compute x = x + attn(ln_1(x)) "
    "first, then x + mlp(ln_2(x)) on that new x": _block_mistake(_BlockParallel),
}


def check_block(block_cls: type, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's Block: built from each case's ``config``, given the reference block's weights
    (seeded by ``seed``) and run on ``x``; its output is compared with course_lib.gpt.Block's (the visible case
    when ``cases`` is None)."""
    from ..gpt import Block as Reference

    def yours(config, x, seed):
        return block_output(block_cls, config, x, seed)

    def reference(config, x, seed):
        return block_output(Reference, config, x, seed)

    if cases is None:
        g = torch.Generator().manual_seed(5)
        small = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
        cases = [{"config": small, "x": torch.randn(2, 5, 8, generator=g), "seed": 0}]
    check_function(yours, reference, cases, name="Block", mistakes=BLOCK_MISTAKES)

# ---------------------------------------------------------------------------
# The language-model loss
# ---------------------------------------------------------------------------


def _loss_unshifted(logits, tokens):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))


def _loss_shift_backwards(logits, tokens):
    p, t = logits[:, 1:], tokens[:, :-1]
    return F.cross_entropy(p.reshape(-1, p.shape[-1]), t.reshape(-1))


def _loss_softmax_time_axis(logits, tokens):
    logp = torch.log_softmax(logits, dim=1)[:, :-1]
    return -logp.gather(-1, tokens[:, 1:, None]).mean()


def _loss_sum(logits, tokens):
    p, t = logits[:, :-1], tokens[:, 1:]
    return F.cross_entropy(p.reshape(-1, p.shape[-1]), t.reshape(-1), reduction="sum")


def _loss_mean_over_batch(logits, tokens):
    p, t = logits[:, :-1], tokens[:, 1:]
    return F.cross_entropy(p.reshape(-1, p.shape[-1]), t.reshape(-1), reduction="sum") / tokens.shape[0]


def _loss_probabilities(logits, tokens):
    probs = torch.softmax(logits, dim=-1)[:, :-1]
    return -probs.gather(-1, tokens[:, 1:, None]).mean()


def _loss_log2(logits, tokens):
    return _loss_unshifted(logits[:, :-1], tokens[:, 1:]) / math.log(2)


LM_LOSS_MISTAKES = {
    "targets not shifted: the logits at position t predict token t + 1, so score logits[:, :-1] against "
    "tokens[:, 1:] (scoring a token against its own position asks the model to copy its input)": _loss_unshifted,
    "shifted the wrong way: drop the *last* logits and the *first* tokens (logits[:, :-1] vs tokens[:, 1:])": (
        _loss_shift_backwards
    ),
    "log-softmax over the wrong axis: the distribution is over the vocabulary, the last axis (dim=-1), not "
    "over time": _loss_softmax_time_axis,
    "summed instead of averaged: return the mean over all B * (T - 1) predictions": _loss_sum,
    "averaged over the batch only: divide by the number of predictions, B * (T - 1), not by B": (
        _loss_mean_over_batch
    ),
    "used probabilities instead of log-probabilities: the loss is -log p(next token)": _loss_probabilities,
    "measured in bits: cross-entropy here is in nats (natural log); bits are nats / ln 2": _loss_log2,
}

LM_LOSS_SHORTCUTS = ["course_lib.gpt.lm_loss"]


def check_lm_loss(lm_loss: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's lm_loss against course_lib.gpt.lm_loss (the visible cases when ``cases`` is
    None, after making sure it does not just call the library's copy)."""
    from ..gpt import lm_loss as reference

    if cases is None:
        g = torch.Generator().manual_seed(6)
        example = {"logits": torch.randn(1, 3, 4), "tokens": torch.tensor([[0, 1, 2]])}
        forbid_reference(lm_loss, LM_LOSS_SHORTCUTS, example=example)
        cases = [
            {"logits": torch.randn(2, 5, 7, generator=g), "tokens": torch.randint(7, (2, 5), generator=g)},
            {"logits": 3 * torch.randn(3, 4, 5, generator=g), "tokens": torch.randint(5, (3, 4), generator=g)},
        ]
    check_function(lm_loss, reference, cases, name="lm_loss", mistakes=LM_LOSS_MISTAKES)

# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


def sampled_frequencies(
    sample_fn: Callable, logits: torch.Tensor, n: int = 20000, seed: int = 0, **options
) -> torch.Tensor:
    """How often ``sample_fn`` picks each token when asked ``n`` times about each row of ``logits`` (B, V).

    Returns (B, V) frequencies that sum to 1 per row.
    """
    check_answer_rules(sample_fn)
    B, V = logits.shape
    rows = logits.repeat_interleave(n, dim=0)  # (B * n, V)
    ids = sample_fn(rows, generator=torch.Generator().manual_seed(seed), **options)
    if not isinstance(ids, torch.Tensor) or ids.shape != (B * n,):
        got = getattr(ids, "shape", ids)
        raise ValueError(f"sample_next_token should return a ({B * n},) tensor of ids, got {got}")
    counts = F.one_hot(ids.long().view(B, n), V).sum(dim=1)  # (B, V)
    return counts.double() / n


def _sampler(temperature_after=False, temperature_times=False, k_shift=0, p_mode="right"):
    """sample_next_token with one mistake (all off: right); each keyword names a mistake's variant."""

    def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
        if temperature == 0:
            return logits.argmax(dim=-1)
        if temperature_after:
            z = logits
        else:
            z = logits * temperature if temperature_times else logits / temperature
        if top_k is not None:
            k = max(1, min(top_k + k_shift, z.shape[-1]))
            kth = torch.topk(z, k, dim=-1).values[:, -1:]
            z = z.masked_fill(z < kth, float("-inf"))
        if top_p is not None:
            sorted_z, order = torch.sort(z, descending=p_mode != "ascending", dim=-1)
            sp = torch.softmax(sorted_z, dim=-1)
            cum = sp.cumsum(dim=-1)
            if p_mode == "exclude-boundary":
                drop_sorted = cum > top_p
                drop_sorted[:, 0] = False
            elif p_mode == "one-extra":  # drop only once the mass before the *previous* token reached p
                reached = cum - sp >= top_p
                drop_sorted = torch.cat([torch.zeros_like(reached[:, :1]), reached[:, :-1]], 1)
            else:
                drop_sorted = cum - sp >= top_p
            z = z.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
        p = torch.softmax(z, dim=-1)
        if temperature_after:
            p = p / temperature  # torch.multinomial renormalises: this changes nothing
        return torch.multinomial(p, 1, generator=generator).squeeze(1)

    return sample_next_token


def _how_often(**mistake) -> Callable:
    """The mistaken sampler as the check sees a sampler: how often it draws each token (sampled_frequencies)."""
    return functools.partial(sampled_frequencies, _sampler(**mistake))


SAMPLING_MISTAKES = {
    "temperature applied after the softmax: dividing probabilities by T changes nothing once they are "
    "renormalised; divide the *logits* by T, then softmax": _how_often(temperature_after=True),
    "multiplied the logits by the temperature: divide by it (low T must sharpen the distribution)": (
        _how_often(temperature_times=True)
    ),
    "top-k kept one token too many: keep exactly the k largest logits (`torch.topk(logits, k)`)": _how_often(k_shift=1),
    "top-k kept one token too few: keep exactly the k largest logits, the k-th one included": _how_often(k_shift=-1),
    "top-p dropped the boundary token: keep the smallest set whose mass *reaches* p, i.e. also the token that "
    "crosses p (drop a token only when the mass *before* it is already >= p)": _how_often(p_mode="exclude-boundary"),
    "top-p kept one token past the boundary: stop at the first token whose cumulative mass reaches p": _how_often(
        p_mode="one-extra"
    ),
    "top-p sorted the wrong way: accumulate the probabilities from the *most* likely token down": _how_often(
        p_mode="ascending"
    ),
}

SAMPLING_SHORTCUTS = ["course_lib.gpt.sample_next_token", "course_lib.gpt.next_token_probs"]


_SAMPLING_LOGITS = ((2.0, 1.0, 0.5, 0.0, -1.0), (0.0, 0.3, -0.2, 1.2, 0.1))


def _check_sampling(sample_next_token: Callable, cases: list[dict]) -> None:
    """How often ``sample_next_token`` draws each token (20,000 draws per row) vs the exact distribution."""

    def how_often_yours_picks(logits, temperature=1.0, top_k=None, top_p=None):
        return sampled_frequencies(sample_next_token, logits, temperature=temperature, top_k=top_k, top_p=top_p)

    check_function(
        how_often_yours_picks, next_token_probs, cases, name="sample_next_token (how often each token is drawn)",
        mistakes=SAMPLING_MISTAKES, atol=0.02, rtol=0.0,
    )


def check_sampling_temperature(sample_next_token: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's sample_next_token with temperature only (0 = greedy): its empirical frequencies
    against course_lib.gpt.next_token_probs (the visible cases when ``cases`` is None, after making sure it does not
    just call the library's sampler)."""
    if cases is None:
        forbid_reference(sample_next_token, SAMPLING_SHORTCUTS, example={"logits": torch.randn(2, 5)})
        logits = torch.tensor(_SAMPLING_LOGITS)
        cases = [{"logits": logits}, {"logits": logits, "temperature": 0.5}, {"logits": logits, "temperature": 2.0},
                 {"logits": logits, "temperature": 0}]
    _check_sampling(sample_next_token, cases)


def check_sampling_top_k_top_p(sample_next_token: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's sample_next_token with top-k and top-p filtering: its empirical frequencies
    against course_lib.gpt.next_token_probs (the visible cases when ``cases`` is None)."""
    if cases is None:
        logits = torch.tensor(_SAMPLING_LOGITS)
        cases = [{"logits": logits, "top_k": 2}, {"logits": logits, "top_k": 3}, {"logits": logits, "top_p": 0.6},
                 {"logits": logits, "top_p": 0.85}]
    _check_sampling(sample_next_token, cases)

# ---------------------------------------------------------------------------
# The KV cache: attention over the past, positions after the past
# ---------------------------------------------------------------------------


def _concat(past, k, v):
    if past is None:
        return k, v
    return torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)


def _attn_no_mask(q, k, v, past=None):
    k, v = _concat(past, k, v)
    y, _ = scaled_dot_product_attention(q, k, v)
    return y, (k, v)


def _attn_mask_ignores_past(q, k, v, past=None):
    k, v = _concat(past, k, v)
    T, T_all = q.shape[2], k.shape[2]
    y, _ = scaled_dot_product_attention(q, k, v, torch.ones(T, T_all, dtype=torch.bool).tril())
    return y, (k, v)


def _attn_square_mask_on_new(q, k, v, past=None):
    k, v = _concat(past, k, v)
    T, T_all = q.shape[2], k.shape[2]
    mask = torch.ones(T, T_all, dtype=torch.bool)
    mask[:, T_all - T :] = torch.ones(T, T, dtype=torch.bool).tril()
    mask[:, : T_all - T] = False
    y, _ = scaled_dot_product_attention(q, k, v, mask)
    return y, (k, v)


def _attn_cache_not_returned(q, k, v, past=None):
    k_all, v_all = _concat(past, k, v)
    T, T_all = q.shape[2], k_all.shape[2]
    mask = torch.ones(T, T_all, dtype=torch.bool).tril(diagonal=T_all - T)
    y, _ = scaled_dot_product_attention(q, k_all, v_all, mask)
    return y, (k, v)


def _attn_past_after(q, k, v, past=None):
    if past is not None:
        k, v = torch.cat([k, past[0]], dim=2), torch.cat([v, past[1]], dim=2)
    T, T_all = q.shape[2], k.shape[2]
    y, _ = scaled_dot_product_attention(q, k, v, torch.ones(T, T_all, dtype=torch.bool).tril(diagonal=T_all - T))
    return y, (k, v)


ATTENTION_WITH_PAST_MISTAKES = {
    "no causal mask: a new query may attend only to keys at positions <= its own (T_past + i)": _attn_no_mask,
    "the mask ignores the past: with T_past cached keys, query i sits at position T_past + i and may see keys "
    "0 .. T_past + i, so the mask is `torch.ones(T, T_past + T).tril(diagonal=T_past)`": _attn_mask_ignores_past,
    "the cached keys were masked out: new queries must see every past key": _attn_square_mask_on_new,
    "the returned cache holds only the new keys and values: return the concatenation (past, then new), so the "
    "next step sees everything": _attn_cache_not_returned,
    "the past went after the new keys: concatenate `torch.cat([past_k, k], dim=2)`, oldest first": (
        _attn_past_after
    ),
}

ATTENTION_WITH_PAST_SHORTCUTS = [
    "torch.nn.functional.scaled_dot_product_attention",
    "course_lib.gpt.attention_with_past",
    "course_lib.gpt.causal_mask_with_past",
]


def random_qkv(generator: torch.Generator, B: int, H: int, T: int, d: int) -> dict[str, torch.Tensor]:
    """{"q": ..., "k": ..., "v": ...}, each (B, H, T, d), drawn in that order from ``generator``."""
    return {name: torch.randn(B, H, T, d, generator=generator) for name in "qkv"}


def check_attention_with_past(attention_with_past: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's attention_with_past against course_lib.gpt's, with and without a cached past
    (the visible cases when ``cases`` is None, after making sure it does not just call a library's attention)."""
    from ..gpt import attention_with_past as reference

    if cases is None:
        g = torch.Generator().manual_seed(7)
        forbid_reference(attention_with_past, ATTENTION_WITH_PAST_SHORTCUTS, example=random_qkv(g, 1, 1, 2, 4))
        cases = [
            {**random_qkv(g, 2, 2, 4, 8)},
            {**random_qkv(g, 2, 2, 2, 8),
             "past": (torch.randn(2, 2, 3, 8, generator=g), torch.randn(2, 2, 3, 8, generator=g))},
            {**random_qkv(g, 1, 3, 1, 4),
             "past": (torch.randn(1, 3, 5, 4, generator=g), torch.randn(1, 3, 5, 4, generator=g))},
        ]
    check_function(
        attention_with_past, reference, cases, name="attention_with_past", mistakes=ATTENTION_WITH_PAST_MISTAKES
    )


def _fwd_no_offset(model, idx, past=None):
    T = idx.shape[1]
    x = model.wte(idx) + model.wpe(torch.arange(T))
    presents = []
    for i, block in enumerate(model.blocks):
        x, present = block(x, past[i] if past else None)
        presents.append(present)
    return model.lm_head(model.ln_f(x)), presents


def _fwd_past_ignored(model, idx, past=None):
    T_past = past[0][0].shape[2] if past else 0
    x = model.wte(idx) + model.wpe(torch.arange(T_past, T_past + idx.shape[1]))
    presents = []
    for block in model.blocks:
        x, present = block(x, None)
        presents.append(present)
    return model.lm_head(model.ln_f(x)), presents


def _fwd_no_final_norm(model, idx, past=None):
    T_past = past[0][0].shape[2] if past else 0
    x = model.wte(idx) + model.wpe(torch.arange(T_past, T_past + idx.shape[1]))
    presents = []
    for i, block in enumerate(model.blocks):
        x, present = block(x, past[i] if past else None)
        presents.append(present)
    return model.lm_head(x), presents


def _fwd_same_past_everywhere(model, idx, past=None):
    T_past = past[0][0].shape[2] if past else 0
    x = model.wte(idx) + model.wpe(torch.arange(T_past, T_past + idx.shape[1]))
    presents = []
    for block in model.blocks:
        x, present = block(x, past[0] if past else None)
        presents.append(present)
    return model.lm_head(model.ln_f(x)), presents


FORWARD_WITH_CACHE_MISTAKES = {
    "positions restarted at 0: the new tokens come after the T_past cached ones, so their positions are "
    "`torch.arange(T_past, T_past + T)`": _fwd_no_offset,
    "the cache was not passed to the blocks: block i needs past[i] to see the earlier tokens": _fwd_past_ignored,
    "the final LayerNorm is missing: logits = lm_head(ln_f(x))": _fwd_no_final_norm,
    "every block got layer 0's cache: pass past[i] to block i": _fwd_same_past_everywhere,
}

FORWARD_WITH_CACHE_SHORTCUTS = ["course_lib.gpt.forward_with_cache", "course_lib.gpt.GPT.hidden"]


def tiny_gpt_and_cache(seed: int, B: int, T_past: int, T: int, n_layer: int = 2) -> dict:
    """A case for forward_with_cache: a tiny seeded GPT (vocabulary 13, 2 heads, 8 channels), ``T`` new ids (B, T)
    and, when ``T_past`` > 0, the reference cache of ``T_past`` earlier random ids."""
    from ..gpt import GPT
    from ..gpt import forward_with_cache as reference

    torch.manual_seed(seed)
    gpt = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=n_layer, n_head=2, n_embd=8)).eval()
    with torch.no_grad():
        for p in gpt.parameters():
            p.add_(0.3 * torch.randn_like(p))  # break the small-init symmetry so every mistake shows
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(13, (B, T_past), generator=g)
    past = reference(gpt, prefix)[1] if T_past else None
    return {"model": gpt, "idx": torch.randint(13, (B, T), generator=g), "past": past}


def check_forward_with_cache(forward_with_cache: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's forward_with_cache against course_lib.gpt's on tiny GPTs, with and without a
    cache (the visible cases when ``cases`` is None, after making sure it does not just call the library's)."""
    from ..gpt import forward_with_cache as reference

    if cases is None:
        example = tiny_gpt_and_cache(0, 1, 0, 2)
        forbid_reference(forward_with_cache, FORWARD_WITH_CACHE_SHORTCUTS, example=example)
        cases = [tiny_gpt_and_cache(1, 2, 0, 4), tiny_gpt_and_cache(2, 2, 3, 1), tiny_gpt_and_cache(3, 1, 5, 3)]
    check_function(
        forward_with_cache, reference, cases, name="forward_with_cache", mistakes=FORWARD_WITH_CACHE_MISTAKES
    )

# ---------------------------------------------------------------------------
# Synthesis: the generation loop (your sampler and your KV cache together)
# ---------------------------------------------------------------------------


def tiny_generator_gpt(seed: int, block_size: int = 8, n_layer: int = 2) -> GPT:
    """A tiny seeded GPT (vocabulary 13, 2 heads, 8 channels) with a short context window, its weights perturbed
    so that its next-token distributions are far from uniform and every mistake of the loop shows."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=13, block_size=block_size, n_layer=n_layer, n_head=2, n_embd=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model


def generate_case(seed: int, B: int, T: int, max_new_tokens: int, block_size: int = 8, **options: Any) -> dict:
    """A case for the generation check: the context window ``block_size`` of the tiny GPT built from ``seed``
    (:func:`tiny_generator_gpt`), a random prompt ``idx`` (B, T), the number of new tokens, the ``seed`` of the
    sampling generator too, and sampling options (temperature, top_k, top_p)."""
    g = torch.Generator().manual_seed(seed)
    return {"block_size": block_size, "idx": torch.randint(13, (B, T), generator=g),
            "max_new_tokens": max_new_tokens, "seed": seed, **options}


def generated_ids(generate_fn: Callable, block_size: int, idx: torch.Tensor, max_new_tokens: int, seed: int,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """What ``generate_fn`` writes after ``idx`` (B, T) with the tiny GPT of ``seed`` and ``block_size`` and a
    generator seeded by ``seed``: (B, T + N) ids."""
    check_answer_rules(generate_fn)
    model = tiny_generator_gpt(seed, block_size)
    with torch.no_grad():
        return generate_fn(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           generator=torch.Generator().manual_seed(seed))


def _reference_generate(block_size, idx, max_new_tokens, seed, temperature=1.0, top_k=None, top_p=None):
    from ..gpt import generate

    return generate(tiny_generator_gpt(seed, block_size), idx, max_new_tokens, temperature, top_k, top_p,
                    use_cache=True, generator=torch.Generator().manual_seed(seed))


def _generate_with(when_full: str = "rebuild", position: int = -1, pass_options: bool = True,
                   new_only: bool = False) -> Callable:
    """The loop with the cache, right by default; each argument turns one mistake on."""

    def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
        block, prompt_length = model.config.block_size, idx.shape[1]
        with torch.no_grad():
            logits, past = forward_with_cache(model, idx[:, -block:])
            for _ in range(max_new_tokens):
                options = (temperature, top_k, top_p) if pass_options else ()
                next_id = sample_next_token(logits[:, position], *options, generator=generator)  # (B,)
                idx = torch.cat([idx, next_id[:, None]], dim=1)
                if past[0][0].shape[2] < block:
                    logits, past = forward_with_cache(model, next_id[:, None], past)
                elif when_full == "slide":  # drop the oldest cached position and go on
                    past = [(k[:, :, 1:], v[:, :, 1:]) for k, v in past]
                    logits, past = forward_with_cache(model, next_id[:, None], past)
                elif when_full == "short":  # rebuild, leaving room for one more token
                    logits, past = forward_with_cache(model, idx[:, -(block - 1):])
                else:
                    logits, past = forward_with_cache(model, idx[:, -block:])
        return idx[:, prompt_length:] if new_only else idx

    return generate


def _generation(**mistake: Any) -> Callable:
    """The mistaken loop as the check sees a loop: the ids it writes for a case (:func:`generated_ids`)."""
    return functools.partial(generated_ids, _generate_with(**mistake))


GENERATE_MISTAKES = {
    "the cache slid when the window filled up: a cached key was computed with the position embedding of its "
    "old place, so after dropping the oldest entry the others no longer sit where their keys say; when the cache "
    "is full, rebuild it from the last block_size tokens (Hint 2 above)": _generation(when_full="slide"),
    "the window was rebuilt one token short: once the cache is full, the model must read the last block_size "
    "tokens, exactly what model(idx[:, -block_size:]) reads, not block_size - 1": _generation(when_full="short"),
    "the token was drawn from the first position's logits: the next token follows the *last* position, "
    "logits[:, -1]": _generation(position=0),
    "only the new tokens were returned: return the prompt followed by them, (B, T + max_new_tokens)": _generation(
        new_only=True
    ),
    "temperature, top_k and top_p were not passed on to sample_next_token: every step draws with the caller's "
    "settings": _generation(pass_options=False),
}

GENERATE_SHORTCUTS = ["course_lib.gpt.generate"]


def _rereads_the_sequence(fed: int, prompt: int, new: int) -> bool:
    """More positions fed to the model than the prompt plus one per new token: the cache went unused."""
    return fed > prompt + new


# Checked on the positions a right answer feeds to the model (see :func:`positions_fed`), not by comparing values.
GENERATE_CACHE_SYMPTOMS = {
    "each step re-reads the whole sequence: after the first call, feed only the newest token together with the "
    "cache the previous call returned": _rereads_the_sequence,
}


def positions_fed(generate_fn: Callable, model: GPT, idx: torch.Tensor, max_new_tokens: int) -> int:
    """How many token positions ``generate_fn`` feeds to ``model`` (summed over its calls, per sequence) while
    writing ``max_new_tokens`` greedy tokens after ``idx``; counted at the token embedding ``model.wte``."""
    check_answer_rules(generate_fn)
    fed: list[int] = []
    handle = model.wte.register_forward_hook(lambda module, inputs, output: fed.append(inputs[0].shape[-1]))
    try:
        with torch.no_grad():
            generate_fn(model, idx, max_new_tokens, temperature=0, generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    return sum(fed)


def check_generate(generate: Callable, namespace: MutableMapping[str, Any], cases: list[dict] | None = None) -> None:
    """Self-check of notebook 05's synthesis, ``generate``, run with course_lib's ``forward_with_cache`` and
    ``sample_next_token`` bound in ``namespace`` (the notebook's ``globals()``), so a slip in those exercises is
    not counted twice. Each case (see :func:`generate_case`) is compared token for token with
    ``course_lib.gpt.generate`` on the same seed. Without ``cases``: a shortcut check, three tiny GPTs with an
    8-token window (greedy; sampled past the window; a prompt longer than the window with top-k and top-p), then a
    count of the positions fed to the model, which shows whether the loop uses its cache."""

    with substitute(namespace, forward_with_cache=forward_with_cache, sample_next_token=sample_next_token):
        visible = cases is None
        if visible:
            example = {"model": tiny_generator_gpt(0), "idx": torch.tensor([[1, 2]]), "max_new_tokens": 2,
                       "generator": torch.Generator().manual_seed(0)}
            forbid_reference(generate, GENERATE_SHORTCUTS, example=example)
            cases = [
                generate_case(1, 1, 3, 4, temperature=0),
                generate_case(2, 2, 4, 12, temperature=1.0),
                generate_case(3, 2, 10, 5, temperature=0.8, top_k=5, top_p=0.9),
            ]

        def yours(**case):
            return generated_ids(generate, **case)

        check_function(yours, _reference_generate, cases, name="generate", mistakes=GENERATE_MISTAKES)
        if visible:
            T, n = 3, 6
            fed = positions_fed(generate, tiny_generator_gpt(4, block_size=16), torch.tensor([[1, 5, 2]]), n)
            cause = matching_cause(GENERATE_CACHE_SYMPTOMS, fed, T, n)
            if cause:
                raise CheckFailed(
                    f"generate is right, but it fed the model {fed} token positions to write {n} tokens after a "
                    f"{T}-token prompt inside the window; with the KV cache that takes at most {T + n}.\n"
                    f"  Likely cause: {cause}"
                )

__all__ = [
    "ATTENTION_WITH_PAST_MISTAKES",
    "ATTENTION_WITH_PAST_SHORTCUTS",
    "BLOCK_MISTAKES",
    "BPE_ENCODE_ERRORS",
    "BPE_ENCODE_MISTAKES",
    "BPE_ENCODE_SHORTCUTS",
    "BPE_TRAINING_TEXT",
    "CHAR_TOKENIZER_MISTAKES",
    "FORWARD_WITH_CACHE_MISTAKES",
    "FORWARD_WITH_CACHE_SHORTCUTS",
    "GENERATE_CACHE_SYMPTOMS",
    "GENERATE_MISTAKES",
    "GENERATE_SHORTCUTS",
    "LM_LOSS_MISTAKES",
    "LM_LOSS_SHORTCUTS",
    "MERGE_MISTAKES",
    "MERGE_SHORTCUTS",
    "PAIR_COUNTS_MISTAKES",
    "PAIR_COUNTS_SHORTCUTS",
    "SAMPLING_MISTAKES",
    "SAMPLING_SHORTCUTS",
    "block_output",
    "bpe_encode_case",
    "bpe_encode_cases",
    "char_tokenizer_round",
    "generate_case",
    "generated_ids",
    "check_attention_with_past",
    "check_block",
    "check_bpe_encode",
    "check_char_tokenizer",
    "check_forward_with_cache",
    "check_generate",
    "check_get_pair_counts",
    "check_lm_loss",
    "check_merge",
    "check_sampling_temperature",
    "check_sampling_top_k_top_p",
    "positions_fed",
    "random_bpe_case",
    "random_qkv",
    "reference_bpe_encode",
    "sampled_frequencies",
    "slow_bpe_reference",
    "tiny_gpt_and_cache",
    "tiny_generator_gpt",
]
