"""Instruction tuning (notebook 07): a task family, a chat template, new special tokens, a response-only loss.

A pre-trained GPT continues text; an assistant answers. The step between is
**supervised instruction tuning** (Ouyang et al. 2022; Wei et al. 2022): train
on ``(instruction, response)`` pairs written in a fixed template, scoring the
response only. This module holds each piece, in the order notebook 07 builds
them:

- the **task family**: short instructions over words of the docstring corpus
  (upper-case it, reverse it, spell it with dashes, count its letters, give its
  last letter), each phrased several ways, with held-out words *and* held-out
  phrasings (:func:`task_words`, :func:`make_examples`);
- the **template** ``<|user|> instruction <|assistant|> response <|end|>`` and
  a tokenizer that knows the three new special tokens (:class:`ChatTokenizer`);
- **growing the vocabulary** of a pre-trained GPT without disturbing the rows
  it has (:func:`grow_vocabulary`);
- a training example's ids and label mask (:func:`build_example`), padded
  batches (:func:`collate`), and :func:`masked_lm_loss`, the mean next-token
  loss over response tokens only;
- decoding that stops at ``<|end|>`` (:func:`generate_response`, and the
  batched :func:`generate_responses` used for evaluation), exact-match
  accuracy per task (:func:`exact_match`), and what is wrong with a wrong
  answer (:func:`error_kind`, :func:`error_rates`).

Shapes: B batch, T time (tokens), V vocabulary. A label mask ``mask`` (B, T)
is True where token t is a *target* (a response token or ``<|end|>``); the
logits at position t - 1 predict token t.
"""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .env import fast_mode
from .gpt import GPT, forward_with_cache, sample_next_token
from .pretrained import FULL_RECIPE, Recipe
from .tokenizer import CharTokenizer
from .train import eval_mode

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = (USER, ASSISTANT, END)

#: FAST mode's base model for notebook 07: notebook 06's tiny FAST recipe with a context of 64 characters,
#: long enough for the longest example (57 tokens). Without FAST mode notebook 07 starts from FULL_RECIPE.
FAST_RECIPE_CTX64 = Recipe(
    name="fast-ctx64", n_layer=2, n_head=2, n_embd=32, block_size=64, steps=40, batch_size=16, warmup_steps=5
)


def base_recipe() -> Recipe:
    """The pre-trained model notebook 07 starts from: FAST_RECIPE_CTX64 in FAST mode, else FULL_RECIPE."""
    return FAST_RECIPE_CTX64 if fast_mode() else FULL_RECIPE

# --------------------------------------------------------------------------
# The task family
# --------------------------------------------------------------------------


def _dashes(word: str) -> str:
    return "-".join(word)


#: task -> the function that answers it.
TASKS = {
    "upper": str.upper,
    "reverse": lambda w: w[::-1],
    "dashes": _dashes,
    "length": lambda w: str(len(w)),
    "last": lambda w: w[-1],
}

#: task -> phrasings used for training ({w} is the word).
TRAIN_PHRASINGS = {
    "upper": ["Upper-case {w}", "Write {w} in capitals", "Make {w} all caps"],
    "reverse": ["Reverse {w}", "Write {w} backwards", "Spell {w} in reverse"],
    "dashes": ["Spell {w} with dashes", "Put dashes between the letters of {w}", "Hyphenate {w}"],
    "length": ["How many letters in {w}?", "Count the letters of {w}", "Length of {w}?"],
    "last": ["Last letter of {w}?", "Which letter ends {w}?", "Give the final letter of {w}"],
}

#: task -> phrasings never seen in training: do the models understand a new wording?
HELDOUT_PHRASINGS = {
    "upper": ["{w} in upper case, please"],
    "reverse": ["Reverse the letters of {w}"],
    "dashes": ["Spell out {w} with hyphens"],
    "length": ["What is the length of {w}?"],
    "last": ["What letter does {w} end with?"],
}


@dataclass(frozen=True)
class Example:
    """One instruction with its correct response; ``task`` and ``heldout_phrasing`` describe it."""

    task: str
    word: str
    instruction: str
    response: str
    heldout_phrasing: bool = False


def answer(task: str, word: str) -> str:
    """The correct response of ``task`` on ``word``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    return TASKS[task](word)


def _is_heldout_word(word: str, fraction: float) -> bool:
    return (zlib.crc32(word.encode()) % 1000) < fraction * 1000


def task_words(
    split: str = "train", min_len: int = 3, max_len: int = 6, min_count: int = 5, heldout_fraction: float = 0.2
) -> list[str]:
    """Lower-case words of the docstring corpus (its train documents) for the tasks, sorted.

    Words of ``min_len`` to ``max_len`` letters a-z that occur at least
    ``min_count`` times. ``split`` "train" or "heldout" is decided per word by
    a hash, so a held-out word is never used to train an instruction model
    (the pre-trained model has read it as text, as it has read most words).
    """
    from .data import text_corpus

    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    counts = Counter(re.findall(r"(?<![A-Za-z_])[a-z]+(?![A-Za-z_])", text_corpus("docstrings", "train")))
    words = [w for w, c in counts.items() if min_len <= len(w) <= max_len and c >= min_count]
    return sorted(w for w in words if _is_heldout_word(w, heldout_fraction) == (split == "heldout"))


def make_examples(
    words: Sequence[str],
    n: int,
    seed: int = 0,
    tasks: Sequence[str] | None = None,
    heldout_phrasing: bool = False,
) -> list[Example]:
    """``n`` random examples: a task, a word of ``words`` and a phrasing (held-out ones if ``heldout_phrasing``)."""
    rng = random.Random(seed)
    tasks = list(tasks or TASKS)
    phrasings = HELDOUT_PHRASINGS if heldout_phrasing else TRAIN_PHRASINGS
    out = []
    for _ in range(n):
        task, word = rng.choice(tasks), rng.choice(list(words))
        instruction = rng.choice(phrasings[task]).format(w=word)
        out.append(Example(task, word, instruction, answer(task, word), heldout_phrasing))
    return out


def eval_examples(words: Sequence[str], per_task: int, seed: int = 0) -> list[Example]:
    """An evaluation set: for every task, ``per_task`` words each with a training phrasing and a held-out one."""
    rng = random.Random(seed)
    out = []
    for task in TASKS:
        for word in rng.sample(list(words), min(per_task, len(words))):
            for heldout, phrasings in ((False, TRAIN_PHRASINGS), (True, HELDOUT_PHRASINGS)):
                instruction = rng.choice(phrasings[task]).format(w=word)
                out.append(Example(task, word, instruction, answer(task, word), heldout))
    return out


# --------------------------------------------------------------------------
# The template and its tokenizer
# --------------------------------------------------------------------------


def format_prompt(instruction: str) -> str:
    """The prompt the model reads: ``<|user|>instruction<|assistant|>``; the response follows it."""
    return f"{USER}{instruction}{ASSISTANT}"


class ChatTokenizer:
    """A :class:`CharTokenizer` plus special tokens, each one id after the characters' ids.

    ``encode`` reads the special tokens' strings (``"<|end|>"``) as single ids;
    ``decode`` writes them back. With V characters, the specials get ids V,
    V + 1, ...: the ids a pre-trained model already knows keep their meaning.
    """

    def __init__(self, base: CharTokenizer, specials: Sequence[str] = SPECIAL_TOKENS) -> None:
        if len(set(specials)) != len(specials) or not specials:
            raise ValueError(f"specials must be distinct strings, got {list(specials)}")
        self.base = base
        self.specials = list(specials)
        self.special_ids = {s: base.vocab_size + i for i, s in enumerate(self.specials)}
        self._split = re.compile("(" + "|".join(re.escape(s) for s in self.specials) + ")")

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(self.specials)

    @property
    def n_new(self) -> int:
        """How many ids the special tokens add to the base vocabulary."""
        return len(self.specials)

    @property
    def user_id(self) -> int:
        return self.special_ids[USER]

    @property
    def assistant_id(self) -> int:
        return self.special_ids[ASSISTANT]

    @property
    def end_id(self) -> int:
        return self.special_ids[END]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self._split.split(text):
            if piece in self.special_ids:
                ids.append(self.special_ids[piece])
            elif piece:
                ids.extend(self.base.encode(piece))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        by_id = {i: s for s, i in self.special_ids.items()}
        return "".join(by_id[i] if i in by_id else self.base.decode([i]) for i in (int(i) for i in ids))


# --------------------------------------------------------------------------
# Growing the vocabulary of a pre-trained GPT
# --------------------------------------------------------------------------


@torch.no_grad()
def grow_vocabulary(model: GPT, n_new: int) -> GPT:
    """Give ``model`` ``n_new`` more token ids (in place), keeping every known row; returns the model.

    The token embedding ``wte`` (V, C) becomes (V + n_new, C): rows 0..V-1 are
    the old ones, unchanged; the new rows are the mean of the old rows (so a new
    token starts as an "average" token, neither dominating the output softmax
    nor far from what the layers have seen; Hewitt 2021). The output layer
    ``lm_head`` stays tied to the embedding, so its logits for old tokens on old
    inputs are unchanged and the new tokens get logits too. ``config.vocab_size``
    follows.
    """
    if not isinstance(n_new, int) or n_new < 1:
        raise ValueError(f"n_new must be a positive int, got {n_new!r}")
    old = model.wte.weight  # (V, C)
    V, C = old.shape
    wte = nn.Embedding(V + n_new, C, device=old.device, dtype=old.dtype)
    wte.weight[:V] = old
    wte.weight[V:] = old.mean(dim=0, keepdim=True)
    wte.weight.requires_grad_(old.requires_grad)
    model.wte = wte
    model.lm_head = nn.Linear(C, V + n_new, bias=False, device=old.device, dtype=old.dtype)
    model.lm_head.weight = model.wte.weight  # tied again, to the new matrix
    model.config.vocab_size = V + n_new
    return model


def chat_model(pretrained: GPT, tokenizer: ChatTokenizer) -> GPT:
    """A copy of ``pretrained`` whose vocabulary has room for ``tokenizer``'s special tokens."""
    import copy

    model = copy.deepcopy(pretrained)
    if model.config.vocab_size != tokenizer.base.vocab_size:
        raise ValueError(f"the model has {model.config.vocab_size} ids, the base tokenizer {tokenizer.base.vocab_size}")
    return grow_vocabulary(model, tokenizer.n_new)


# --------------------------------------------------------------------------
# Training examples, batches and the response-only loss
# --------------------------------------------------------------------------


def build_example(tokenizer: ChatTokenizer, instruction: str, response: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and label mask of one training example.

    ids: (T,) int64, ``<|user|> instruction <|assistant|> response <|end|>``.
    mask: (T,) bool, True exactly on the response's tokens and the final
    ``<|end|>`` (the tokens the model must learn to *write*), False on the
    prompt (``<|user|>``, the instruction, ``<|assistant|>``).
    """
    prompt = tokenizer.encode(format_prompt(instruction))
    target = tokenizer.encode(response) + [tokenizer.end_id]
    ids = torch.tensor(prompt + target, dtype=torch.long)
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[len(prompt):] = True
    return ids, mask


def collate(
    examples: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``(ids, mask)`` pairs at the end to the longest: ids (B, T) with ``pad_id``, mask (B, T) False there."""
    if not examples:
        raise ValueError("no examples to collate")
    T = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(examples), T, dtype=torch.bool)
    for i, (x, m) in enumerate(examples):
        ids[i, : len(x)] = x
        mask[i, : len(m)] = m
    return ids, mask


def example_batch(tokenizer: ChatTokenizer, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`build_example` on each example, then :func:`collate` (padded with ``<|end|>``)."""
    return collate([build_example(tokenizer, e.instruction, e.response) for e in examples], tokenizer.end_id)


def example_stream(
    tokenizer: ChatTokenizer, words: Sequence[str], batch_size: int, seed: int = 0
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of training batches (ids, mask) of random examples over ``words``."""
    step = 0
    while True:
        yield example_batch(tokenizer, make_examples(words, batch_size, seed=seed * 1_000_003 + step))
        step += 1


def masked_lm_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the target tokens only: a scalar.

    logits: (B, T, V), the model's output on ids (B, T); mask: (B, T) bool, True
    where token t is a target. The logits at position t - 1 predict token t, so
    the loss is the mean of ``-log softmax(logits[b, t - 1])[ids[b, t]]`` over
    every (b, t) with t >= 1 and ``mask[b, t]``: each target token of the
    batch counts once, whatever its sequence's length; prompt and padding count
    zero.
    """
    if logits.dim() != 3 or ids.shape != logits.shape[:2] or mask.shape != ids.shape:
        raise ValueError(
            f"need logits (B, T, V), ids and mask (B, T); got {tuple(logits.shape)}, {tuple(ids.shape)}, "
            f"{tuple(mask.shape)}"
        )
    targets = mask[:, 1:]  # (B, T-1): is token t (t >= 1) a target?
    if not bool(targets.any()):
        raise ValueError("the mask selects no target token (after position 0)")
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
    return losses[targets].mean()


def all_tokens_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The ablation: next-token loss on every real token (prompt too), padding still excluded.

    A sequence's real tokens are those up to its ``<|end|>``: the positions up to
    the last True of ``mask``.
    """
    T = ids.shape[1]
    last = T - 1 - mask.flip(1).int().argmax(dim=1)  # (B,): position of each row's last target
    real = torch.arange(T, device=ids.device)[None, :] <= last[:, None]  # (B, T)
    return masked_lm_loss(logits, ids, real)


# --------------------------------------------------------------------------
# Decoding until <|end|>
# --------------------------------------------------------------------------


@torch.no_grad()
def generate_response(
    model: GPT,
    tokenizer: ChatTokenizer,
    instruction: str,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> str:
    """The model's response to ``instruction``: the text it writes after the prompt, up to ``<|end|>``.

    Encodes :func:`format_prompt` of ``instruction`` and appends one token at a
    time, chosen by ``course_lib.gpt.sample_next_token`` from the last
    position's logits with ``temperature`` (0: greedy) and ``generator``. Stops
    after ``<|end|>`` (not part of the returned text), after ``max_new_tokens``
    tokens, or when the context (``block_size``) is full. Returns the decoded
    response.
    """
    ids = torch.tensor([tokenizer.encode(format_prompt(instruction))], dtype=torch.long)
    device = next(model.parameters()).device
    ids = ids.to(device)
    out: list[int] = []
    with eval_mode(model):
        for _ in range(max_new_tokens):
            if ids.shape[1] >= model.config.block_size:
                break
            logits = model(ids)[:, -1, :]  # (1, V)
            next_id = int(sample_next_token(logits, temperature, generator=generator)[0])
            if next_id == tokenizer.end_id:
                break
            out.append(next_id)
            ids = torch.cat([ids, torch.tensor([[next_id]], device=device)], dim=1)
    return tokenizer.decode(out)


@torch.no_grad()
def generate_responses(
    model: GPT,
    tokenizer: ChatTokenizer,
    instructions: Sequence[str],
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> list[str]:
    """:func:`generate_response` for many instructions at once (same results with ``temperature`` 0).

    Prompts of equal length run as one batch with a KV cache; each row stops
    at its ``<|end|>``.
    """
    prompts = [tokenizer.encode(format_prompt(s)) for s in instructions]
    device = next(model.parameters()).device
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    responses: list[str] = [""] * len(prompts)
    with eval_mode(model):
        for length, members in sorted(by_length.items()):
            for start in range(0, len(members), batch_size):
                rows = members[start : start + batch_size]
                idx = torch.tensor([prompts[i] for i in rows], dtype=torch.long, device=device)
                steps = min(max_new_tokens, model.config.block_size - length)
                logits, past = forward_with_cache(model, idx)
                written = torch.empty(len(rows), 0, dtype=torch.long, device=device)
                done = torch.zeros(len(rows), dtype=torch.bool, device=device)
                for step in range(steps):
                    next_id = sample_next_token(logits[:, -1, :], temperature, generator=generator)  # (B,)
                    next_id = next_id.masked_fill(done, tokenizer.end_id)
                    written = torch.cat([written, next_id[:, None]], dim=1)
                    done |= next_id == tokenizer.end_id
                    if bool(done.all()) or step == steps - 1:
                        break
                    logits, past = forward_with_cache(model, next_id[:, None], past)
                for row, tokens in zip(rows, written.tolist()):
                    if tokenizer.end_id in tokens:
                        tokens = tokens[: tokens.index(tokenizer.end_id)]
                    responses[row] = tokenizer.decode(tokens)
    return responses


def exact_match(
    model: GPT, tokenizer: ChatTokenizer, examples: Sequence[Example], max_new_tokens: int = 20
) -> dict[str, float]:
    """Greedy exact-match accuracy: ``"all"``, per task, and ``"seen phrasing"`` / ``"new phrasing"``."""
    got = generate_responses(model, tokenizer, [e.instruction for e in examples], max_new_tokens)
    right = [g == e.response for g, e in zip(got, examples)]
    groups: dict[str, list[bool]] = {"all": right}
    for e, r in zip(examples, right):
        groups.setdefault(e.task, []).append(r)
        groups.setdefault("new phrasing" if e.heldout_phrasing else "seen phrasing", []).append(r)
    return {k: sum(v) / len(v) for k, v in groups.items()}


# --------------------------------------------------------------------------
# What kind of mistake?
# --------------------------------------------------------------------------

#: task -> the shape a well-formed answer has, whatever the word: capitals, lower-case letters, letters joined by
#: single dashes, a number, one letter.
ANSWER_FORMS = {
    "upper": re.compile(r"[A-Z]+"),
    "reverse": re.compile(r"[a-z]+"),
    "dashes": re.compile(r"[a-z](?:-[a-z])*"),
    "length": re.compile(r"[0-9]+"),
    "last": re.compile(r"[a-z]"),
}

#: What :func:`error_kind` can say, "correct" first.
ERROR_KINDS = ("correct", "wrong form", "wrong length", "wrong letters", "wrong value")


def error_kind(example: Example, response: str) -> str:
    """What is wrong with ``response`` as an answer to ``example``: one of :data:`ERROR_KINDS`.

    - ``"correct"``: exactly the expected response;
    - ``"wrong form"``: not even the shape of an answer to this task (:data:`ANSWER_FORMS`), e.g. a number where
      the word in capitals was asked, text that runs on, or an empty answer;
    - for the tasks that write the word out (upper, reverse, dashes), ``"wrong length"``: the right shape with a
      letter too many or too few, and ``"wrong letters"``: the right shape and number of letters, some of them
      wrong (a copying mistake);
    - for length and last, ``"wrong value"``: a number or a letter, not the right one.
    """
    if response == example.response:
        return "correct"
    if not ANSWER_FORMS[example.task].fullmatch(response):
        return "wrong form"
    if example.task in ("upper", "reverse", "dashes"):
        letters = response.replace("-", "")
        return "wrong length" if len(letters) != len(example.word) else "wrong letters"
    return "wrong value"


def error_rates(
    model: GPT, tokenizer: ChatTokenizer, examples: Sequence[Example], max_new_tokens: int = 20
) -> dict[str, float]:
    """The share of ``examples`` whose greedy answer is of each kind of :data:`ERROR_KINDS` (they add up to 1)."""
    if not examples:
        raise ValueError("no examples to score")
    got = generate_responses(model, tokenizer, [e.instruction for e in examples], max_new_tokens)
    kinds = Counter(error_kind(e, g) for e, g in zip(examples, got))
    return {kind: kinds[kind] / len(examples) for kind in ERROR_KINDS}
