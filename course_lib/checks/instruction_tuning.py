"""Self-checks, test models and common mistakes for notebook 07 (instruction tuning and DPO).

Each check compares a student's function with course_lib's reference
(:mod:`course_lib.instruct`, :mod:`course_lib.preference`) through
``grading.check_function``; functions that act on models are first turned into
functions of plain, seeded inputs that return comparable values
(``grow_summary``, ``example_summary``, ``response_summary``,
``dpo_step_summary``). Each ``*_MISTAKES`` catalogue maps a description to a
function that reproduces that mistake, so a failing check can name it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, MutableMapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..gpt import GPT, GPTConfig, sample_next_token
from ..grading import (
    CheckFailed,
    check_answer_rules,
    check_function,
    check_untampered,
    error_cause,
    forbid_reference,
    matching_cause,
    substitute,
)
from ..instruct import (
    ChatTokenizer,
    build_example,
    format_prompt,
    generate_response,
    grow_vocabulary,
    masked_lm_loss,
)
from ..preference import dpo_loss, dpo_step, sequence_logprob
from ..tokenizer import CharTokenizer

TINY = GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=8)
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ?-"


def tiny_gpt(seed: int = 0, vocab_size: int = 13, block_size: int = 16) -> GPT:
    """A seeded 2-layer GPT with 8 channels."""
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=8))


def tiny_tokenizer(chars: str = LETTERS) -> ChatTokenizer:
    """A :class:`ChatTokenizer` over ``chars`` (letters, digits, space, '?' and '-' by default)."""
    return ChatTokenizer(CharTokenizer(chars))


# --------------------------------------------------------------------------
# grow_vocabulary
# --------------------------------------------------------------------------

GROW_SHORTCUTS = ["course_lib.instruct.grow_vocabulary", "course_lib.instruct.chat_model"]


def grow_summary(grow_fn: Callable, seed: int, n_new: int, vocab_size: int = 13) -> list:
    """What ``grow_fn(tiny_gpt(seed), n_new)`` did, as comparable values.

    [config.vocab_size, the embedding matrix, whether lm_head is still tied to it, the logits on a batch of old
    tokens (all V + n_new of them), the logits on a batch that contains the new tokens].
    """
    check_answer_rules(grow_fn)
    model = tiny_gpt(seed, vocab_size)
    returned = grow_fn(model, n_new)
    if returned is not None and returned is not model:
        model = returned
    if not isinstance(model, GPT):
        raise CheckFailed(f"grow_vocabulary should change the GPT in place and return it, got {type(model).__name__}")
    g = torch.Generator().manual_seed(seed)
    old_tokens = torch.randint(vocab_size, (2, 6), generator=g)
    new_tokens = torch.cat([old_tokens[:, :3], vocab_size + torch.arange(n_new).repeat(2, 1)], dim=1)
    with torch.no_grad():
        weight = model.wte.weight.detach().clone()
        old_logits = model(old_tokens)
        try:
            new_logits = model(new_tokens)
        except (IndexError, RuntimeError) as exc:
            raise CheckFailed(f"the grown model cannot read the new token ids {vocab_size}..{vocab_size + n_new - 1}: "
                              f"{type(exc).__name__}: {exc}") from None
    tied = model.lm_head.weight is model.wte.weight
    return [int(model.config.vocab_size), weight, tied, old_logits, new_logits]


def _grow_with(rows: Callable[[torch.Tensor, int], torch.Tensor], tie: bool = True, update_config: bool = True,
               keep_head: bool = False) -> Callable:
    """A grow_vocabulary whose new embedding matrix is ``rows(old, n_new)``."""

    @torch.no_grad()
    def grow(model, n_new):
        old = model.wte.weight
        V, C = old.shape
        model.wte = nn.Embedding(V + n_new, C)
        model.wte.weight.copy_(rows(old, n_new))
        if not keep_head:
            model.lm_head = nn.Linear(C, V + n_new, bias=False)
            if tie:
                model.lm_head.weight = model.wte.weight
            else:
                model.lm_head.weight.copy_(model.wte.weight)
        if update_config:
            model.config.vocab_size = V + n_new
        return model

    return grow


def _mean_rows(old, n):
    return torch.cat([old, old.mean(0, keepdim=True).expand(n, -1)])


GROW_MISTAKES = {
    "the new rows went first, so every known token moved to another id: keep rows 0..V-1 where they were and "
    "put the new rows after them, at ids V..V+n_new-1 (Hint 2 above)": functools.partial(grow_summary, _grow_with(
        lambda old, n: torch.cat([old.mean(0, keepdim=True).expand(n, -1), old])
    )),
    "the old rows were overwritten: the last n_new known tokens lost their embeddings (the copy must cover "
    "rows 0..V-1, the new rows come after)": functools.partial(grow_summary, _grow_with(
        lambda old, n: torch.cat([old[: len(old) - n], old.mean(0, keepdim=True).expand(2 * n, -1)])
    )),
    "the new rows are zeros: the contract asks for the mean of the old rows": functools.partial(
        grow_summary, _grow_with(lambda old, n: torch.cat([old, torch.zeros(n, old.shape[1])]))
    ),
    "lm_head is a copy, not tied: set `model.lm_head.weight = model.wte.weight` so the two stay one matrix": (
        functools.partial(grow_summary, _grow_with(_mean_rows, tie=False))
    ),
    "lm_head still has the old vocabulary: it must produce V + n_new logits, tied to the new embedding": (
        functools.partial(grow_summary, _grow_with(_mean_rows, keep_head=True))
    ),
    "model.config.vocab_size was not updated": functools.partial(grow_summary, _grow_with(_mean_rows,
                                                                                          update_config=False)),
}


def reference_grow_summary(seed: int, n_new: int, vocab_size: int = 13) -> list:
    return grow_summary(grow_vocabulary, seed, n_new, vocab_size)


def check_grow_vocabulary(grow_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of grow_vocabulary: old rows and old logits unchanged, new rows the mean, lm_head tied."""
    if cases is None:
        forbid_reference(grow_fn, GROW_SHORTCUTS, example={"model": tiny_gpt(0), "n_new": 2}, name="grow_vocabulary")
        cases = [{"seed": 0, "n_new": 3}, {"seed": 1, "n_new": 1}]
    check_function(functools.partial(grow_summary, grow_fn), reference_grow_summary, cases,
                   name="grow_vocabulary ([vocab_size, embedding, tied, logits on old tokens, logits with new ones])",
                   mistakes=GROW_MISTAKES, atol=1e-6)


# --------------------------------------------------------------------------
# build_example
# --------------------------------------------------------------------------

EXAMPLE_SHORTCUTS = ["course_lib.instruct.build_example", "course_lib.instruct.example_batch"]


def example_summary(build_fn: Callable, instruction: str, response: str) -> list:
    """``[ids, mask]`` of ``build_fn(tiny_tokenizer(), instruction, response)``, as int64 and bool tensors."""
    check_answer_rules(build_fn)
    out = build_fn(tiny_tokenizer(), instruction, response)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise CheckFailed(f"build_example should return (ids, mask), got {type(out).__name__}")
    ids, mask = out
    if not isinstance(ids, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise CheckFailed(f"ids and mask should be tensors, got {type(ids).__name__} and {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise CheckFailed(f"mask should be a bool tensor (True on targets), got dtype {mask.dtype}")
    if ids.dtype != torch.long:
        raise CheckFailed(f"ids should be int64 (torch.long), got dtype {ids.dtype}")
    return [ids, mask]


def _example_with(mask_from: Callable[[int, int], tuple[int, int]], end: bool = True) -> Callable:
    """A build_example whose mask is True on [start, stop) given (prompt length, total length)."""

    def build(tokenizer, instruction, response):
        prompt = tokenizer.encode(format_prompt(instruction))
        ids = prompt + tokenizer.encode(response) + ([tokenizer.end_id] if end else [])
        mask = torch.zeros(len(ids), dtype=torch.bool)
        start, stop = mask_from(len(prompt), len(ids))
        mask[start:stop] = True
        return torch.tensor(ids), mask

    return functools.partial(example_summary, build)


EXAMPLE_MISTAKES = {
    "the prompt tokens are in the mask: only the response and <|end|> are targets": _example_with(lambda p, n: (0, n)),
    "<|end|> is not a target: the model must learn to stop, so the end token is in the mask": _example_with(
        lambda p, n: (p, n - 1)
    ),
    "the mask starts one token early, on <|assistant|>: the model never has to write that marker, it is part of "
    "the prompt (the shift to predictions happens in the loss, not in the mask)": _example_with(
        lambda p, n: (p - 1, n - 1)
    ),
    "the <|end|> token is missing from ids: append it after the response": _example_with(
        lambda p, n: (p, n), end=False
    ),
}


def check_build_example(build_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of build_example: ids are the template, the mask covers exactly the response and <|end|>."""
    if cases is None:
        forbid_reference(build_fn, EXAMPLE_SHORTCUTS,
                         example={"tokenizer": tiny_tokenizer(), "instruction": "abc", "response": "cba"},
                         name="build_example")
        cases = [{"instruction": "reverse cat", "response": "tac"},
                 {"instruction": "how long is tree?", "response": "four"}]
    check_function(functools.partial(example_summary, build_fn),
                   functools.partial(example_summary, build_example), cases,
                   name="build_example ([ids, mask])", mistakes=EXAMPLE_MISTAKES)


# --------------------------------------------------------------------------
# masked_lm_loss and sequence_logprob: the same shift, the same mask
# --------------------------------------------------------------------------

LOSS_SHORTCUTS = ["course_lib.instruct.masked_lm_loss", "course_lib.instruct.all_tokens_loss",
                  "course_lib.gpt.lm_loss"]
LOGPROB_SHORTCUTS = ["course_lib.preference.sequence_logprob"]


def padded_batch(seed: int, B: int = 3, T: int = 9, V: int = 7) -> dict[str, torch.Tensor]:
    """logits (B, T, V), ids (B, T) and a mask (B, T) with prompts, responses and padding of different lengths."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(B, T, V, generator=g)
    ids = torch.randint(V, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        prompt = 2 + int(torch.randint(3, (1,), generator=g))
        length = min(T, prompt + 1 + b + int(torch.randint(2, (1,), generator=g)))
        mask[b, prompt:length] = True  # the rest of the row is padding
    return {"logits": logits, "ids": ids, "mask": mask}


def _token_nll(logits, ids, shift=True):
    if shift:
        return F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
    return F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")  # (B, T)


LOSS_MISTAKES = {
    "the labels are not shifted against the logits: the logits at position t - 1 predict token t (Hint 2 above)": (
        lambda logits, ids, mask: _token_nll(logits, ids, shift=False)[mask].mean()
    ),
    "the mask is not shifted with the labels: token t is a target when mask[:, t] is True, and its prediction "
    "comes from position t - 1": lambda logits, ids, mask: _token_nll(logits, ids)[mask[:, :-1]].mean(),
    "the prompt tokens are in the loss: average over the masked (response) tokens only": (
        lambda logits, ids, mask: _token_nll(logits, ids).mean()
    ),
    "the padding is counted: the masked sum is divided by every position, not by the number of target tokens": (
        lambda logits, ids, mask: (_token_nll(logits, ids) * mask[:, 1:]).sum() / mask[:, 1:].numel()
    ),
    "each sequence was averaged first, then the batch: every target token of the batch should weigh the same": (
        lambda logits, ids, mask: ((_token_nll(logits, ids) * mask[:, 1:]).sum(1) / mask[:, 1:].sum(1)).mean()
    ),
}


def check_masked_lm_loss(loss_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of masked_lm_loss: the mean next-token loss over the masked tokens, labels shifted."""
    if cases is None:
        forbid_reference(loss_fn, LOSS_SHORTCUTS, example=padded_batch(0), name="masked_lm_loss")
        cases = [padded_batch(0), padded_batch(1, B=2, T=6, V=5)]
    check_function(loss_fn, masked_lm_loss, cases, name="masked_lm_loss", mistakes=LOSS_MISTAKES)


class LogitsModel(nn.Module):
    """A stand-in model: ``model(ids)`` returns fixed logits (B, T, V) whatever the ids (for sequence_logprob)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits[: ids.shape[0], : ids.shape[1]]


def logprob_summary(logprob_fn: Callable, logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
    """``logprob_fn(LogitsModel(logits), ids, mask)``, detached: (B,)."""
    check_answer_rules(logprob_fn)
    out = logprob_fn(LogitsModel(logits), ids, mask)
    return out.detach() if isinstance(out, torch.Tensor) else out


def _logprob_with(fn: Callable) -> Callable:
    return functools.partial(logprob_summary, fn)


LOGPROB_MISTAKES = {
    "averaged the log-probabilities: DPO's log pi(y|x) is their sum over the response tokens (a sequence's "
    "probability is the product of its tokens')": _logprob_with(
        lambda model, ids, mask: -(_token_nll(model(ids), ids) * mask[:, 1:]).sum(1) / mask[:, 1:].sum(1)
    ),
    "the labels are not shifted against the logits: the logits at position t - 1 predict token t": _logprob_with(
        lambda model, ids, mask: -(_token_nll(model(ids), ids, shift=False) * mask).sum(1)
    ),
    "the mask is not shifted with the labels: token t counts when mask[:, t] is True, scored by position t - 1": (
        _logprob_with(lambda model, ids, mask: -(_token_nll(model(ids), ids) * mask[:, :-1]).sum(1))
    ),
    "the prompt and the padding are counted: sum over the masked (response) tokens only": _logprob_with(
        lambda model, ids, mask: -_token_nll(model(ids), ids).sum(1)
    ),
    "returned the negative log-likelihood (a loss): sequence_logprob is log pi, at most 0": _logprob_with(
        lambda model, ids, mask: (_token_nll(model(ids), ids) * mask[:, 1:]).sum(1)
    ),
}


def check_sequence_logprob(logprob_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of sequence_logprob: the sum of the response tokens' log-probabilities, one per row."""
    if cases is None:
        batch = padded_batch(2)
        forbid_reference(logprob_fn, LOGPROB_SHORTCUTS,
                         example={"model": LogitsModel(batch["logits"]), "ids": batch["ids"], "mask": batch["mask"]},
                         name="sequence_logprob")
        cases = [padded_batch(2), padded_batch(3, B=4, T=7, V=6)]
    check_function(_logprob_with(logprob_fn), _logprob_with(sequence_logprob), cases,
                   name="sequence_logprob (on fixed logits)", mistakes=LOGPROB_MISTAKES)
    check_logprob_has_gradient(logprob_fn)


def check_logprob_has_gradient(logprob_fn: Callable) -> None:
    """The log-probabilities must stay attached to the model: DPO trains through them."""
    check_untampered()
    batch = padded_batch(4)
    model = LogitsModel(batch["logits"])
    out = logprob_fn(model, batch["ids"], batch["mask"])
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise CheckFailed("sequence_logprob's output carries no gradient: do not wrap it in torch.no_grad() or "
                          "call .detach() / .item(); DPO trains the policy through it.")


# --------------------------------------------------------------------------
# generate_response
# --------------------------------------------------------------------------

RESPONSE_SHORTCUTS = ["course_lib.instruct.generate_response", "course_lib.instruct.generate_responses",
                      "course_lib.gpt.generate"]


class BigramLM(nn.Module):
    """A stand-in language model: the logits after a token depend on that token only (a table, V x V).

    Has ``config.block_size`` like a GPT. Built so that greedy decoding after
    ``<|assistant|>`` writes a few letters and then ``<|end|>``.
    """

    def __init__(self, tokenizer: ChatTokenizer, seed: int, script: str, block_size: int = 64) -> None:
        super().__init__()
        V = tokenizer.vocab_size
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(V, V, generator=g)
        chain = [tokenizer.assistant_id] + tokenizer.encode(script) + [tokenizer.end_id]
        for a, b in zip(chain, chain[1:]):
            table[a, b] += 6.0  # the scripted continuation is the most likely one
        table[tokenizer.end_id, tokenizer.encode("x")[0]] += 6.0  # what follows <|end|> if a decoder goes on
        self.table = nn.Parameter(table)
        self.config = GPTConfig(vocab_size=V, block_size=block_size, n_layer=1, n_head=1, n_embd=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.config.block_size:
            raise ValueError(f"{ids.shape[1]} tokens exceed block_size={self.config.block_size}")
        return self.table[ids]  # (B, T, V)


def response_summary(respond_fn: Callable, seed: int, script: str, instruction: str, max_new_tokens: int,
                     temperature: float, block_size: int = 64) -> str:
    """``respond_fn(BigramLM(...), tokenizer, instruction, max_new_tokens, temperature, generator)``."""
    check_answer_rules(respond_fn)
    tokenizer = tiny_tokenizer()
    model = BigramLM(tokenizer, seed, script, block_size)
    g = torch.Generator().manual_seed(seed + 1)
    out = respond_fn(model, tokenizer, instruction, max_new_tokens=max_new_tokens, temperature=temperature,
                     generator=g)
    if not isinstance(out, str):
        raise CheckFailed(f"generate_response should return the response as a str, got {type(out).__name__}")
    return out


def _respond_with(stop: str = "end", keep_end: bool = False, prompt: bool = False, greedy: bool = False,
                  check_context: bool = True) -> Callable:
    """A generate_response with one rule changed."""

    def respond(model, tokenizer, instruction, max_new_tokens=20, temperature=0.0, generator=None):
        start = tokenizer.encode(format_prompt(instruction))
        ids = list(start)
        for _ in range(max_new_tokens):
            if check_context and len(ids) >= model.config.block_size:
                break
            logits = model(torch.tensor([ids]))[:, -1, :]
            t = 0.0 if greedy else temperature
            next_id = int(sample_next_token(logits, t, generator=generator)[0])
            if next_id == tokenizer.end_id and stop == "end":
                if keep_end:
                    ids.append(next_id)
                break
            ids.append(next_id)
        return tokenizer.decode(ids if prompt else ids[len(start):])

    return functools.partial(response_summary, respond)


RESPONSE_MISTAKES = {
    "did not stop at <|end|>: the response ends where the model writes the end token": _respond_with(stop="never"),
    "the <|end|> token is part of the returned text: stop *before* appending it": _respond_with(keep_end=True),
    "the prompt is part of the returned text: return only what the model wrote after <|assistant|>": _respond_with(
        prompt=True
    ),
    "the temperature is ignored: pass it (and the generator) to sample_next_token": _respond_with(greedy=True),
}

RESPONSE_ERRORS = {
    r"exceed block_size|index out of range|out of bounds": "the sequence outgrew the model's context: stop before a "
    "step when the prompt and the response so far fill model.config.block_size",
}

RESPONSE_CASES = [
    {"seed": 0, "script": "tac", "instruction": "reverse cat", "max_new_tokens": 10, "temperature": 0.0},
    {"seed": 1, "script": "a-bc", "instruction": "spell abc", "max_new_tokens": 3, "temperature": 0.0},
    {"seed": 2, "script": "ok", "instruction": "go", "max_new_tokens": 12, "temperature": 2.0},
]


def check_generate_response(respond_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of generate_response on stand-in models whose greedy answer is known."""
    if cases is None:
        tokenizer = tiny_tokenizer()
        forbid_reference(respond_fn, RESPONSE_SHORTCUTS,
                         example={"model": BigramLM(tokenizer, 0, "ab"), "tokenizer": tokenizer, "instruction": "x",
                                  "max_new_tokens": 3},
                         name="generate_response")
        cases = RESPONSE_CASES
    check_function(functools.partial(response_summary, respond_fn), functools.partial(response_summary,
                                                                                       generate_response),
                   cases, name="generate_response", mistakes=RESPONSE_MISTAKES, errors=RESPONSE_ERRORS)
    check_response_fits_context(respond_fn)




def check_response_fits_context(respond_fn: Callable) -> None:
    """A model with a short context: decoding must stop when the context is full, not crash."""
    check_untampered()
    case = {"seed": 5, "script": "abcdefghij", "instruction": "abcdef", "max_new_tokens": 20, "temperature": 0.0,
            "block_size": 12}
    try:
        got = response_summary(respond_fn, **case)
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any error here is reported, with its catalogued cause if known
        message = f"with a context of 12 tokens and a prompt of 8, generate_response raised {type(exc).__name__}: {exc}"
        cause = error_cause(RESPONSE_ERRORS, exc)
        raise CheckFailed(message + (f"\n  Likely cause: {cause}" if cause else "")) from None
    want = response_summary(generate_response, **case)
    if got != want:
        raise CheckFailed(f"with a context of 12 tokens and a prompt of 8, generate_response returned {got!r}; "
                          f"expected {want!r} (the context holds 4 more tokens).")


# --------------------------------------------------------------------------
# dpo_loss
# --------------------------------------------------------------------------

DPO_SHORTCUTS = ["course_lib.preference.dpo_loss"]


def dpo_cases(seed: int, B: int = 5, betas: tuple[float, ...] = (0.1, 2.0)) -> list[dict]:
    """Random log-probabilities (negative, as real ones) for the four inputs of dpo_loss, one case per beta."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for beta in betas:
        pc, pr, rc, rr = (-10 * torch.rand(B, generator=g) - 1 for _ in range(4))
        cases.append({"policy_chosen": pc, "policy_rejected": pr, "ref_chosen": rc, "ref_rejected": rr, "beta": beta})
    return cases


def _dpo_variant(margin: Callable, outside: bool = False, chosen_reward: Callable | None = None,
                 rejected_reward: Callable | None = None, squash: Callable | None = None) -> Callable:
    def loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1):
        pc, pr, rc, rr = policy_chosen, policy_rejected, ref_chosen, ref_rejected
        log_sigmoid = squash or F.logsigmoid
        m = margin(pc, pr, rc, rr)
        loss = -(beta * log_sigmoid(m)).mean() if outside else -log_sigmoid(beta * m).mean()
        cr = chosen_reward(pc, rc, beta) if chosen_reward else beta * (pc - rc)
        rj = rejected_reward(pr, rr, beta) if rejected_reward else beta * (pr - rr)
        return loss, cr, rj

    return loss_fn


def _right_margin(pc, pr, rc, rr):
    return (pc - rc) - (pr - rr)


DPO_MISTAKES = {
    "beta is outside the sigmoid: -log sigmoid(beta * margin), not -beta * log sigmoid(margin)": _dpo_variant(
        _right_margin, outside=True
    ),
    "the log-ratio is upside down: log pi - log pi_ref (policy minus reference), for the loss and the rewards": (
        _dpo_variant(lambda pc, pr, rc, rr: (rc - pc) - (rr - pr),
                     chosen_reward=lambda p, r, b: b * (r - p), rejected_reward=lambda p, r, b: b * (r - p))
    ),
    "chosen and rejected are swapped in the margin: it is the chosen log-ratio minus the rejected one": (
        _dpo_variant(lambda pc, pr, rc, rr: (pr - rr) - (pc - rc))
    ),
    "the reference is missing: the margin compares log-ratios pi / pi_ref, not the policy's log-probabilities "
    "alone": _dpo_variant(lambda pc, pr, rc, rr: pc - pr),
    "the rewards are not scaled by beta: reward = beta * (log pi - log pi_ref)": _dpo_variant(
        _right_margin, chosen_reward=lambda p, r, b: p - r, rejected_reward=lambda p, r, b: p - r
    ),
    "used log(sigmoid) without the minus sign, or sigmoid without the log: the loss is -log sigmoid(.)": (
        _dpo_variant(_right_margin, squash=lambda x: -F.logsigmoid(x))
    ),
}


def check_dpo_loss(loss_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of dpo_loss: (loss, chosen rewards, rejected rewards) as in Rafailov et al. (2023)."""
    if cases is None:
        forbid_reference(loss_fn, DPO_SHORTCUTS, example=dpo_cases(0)[0], name="dpo_loss")
        cases = dpo_cases(0)
    check_function(loss_fn, dpo_loss, cases, name="dpo_loss (loss, chosen_rewards, rejected_rewards)",
                   mistakes=DPO_MISTAKES)


DPO_GRADIENT_SYMPTOMS = {  # predicates on (d loss / d policy_chosen, d loss / d policy_rejected)
    "the gradient pushes the chosen response down and the rejected one up: a flipped sign, or chosen and "
    "rejected exchanged (the margin is chosen log-ratio minus rejected log-ratio, inside -log sigmoid)": (
        lambda grad_chosen, grad_rejected: bool((grad_chosen > 0).all()) and bool((grad_rejected < 0).all())
    ),
    "the loss does not depend on the policy's log-probabilities (zero gradient): keep policy_chosen and "
    "policy_rejected in the computation": lambda grad_chosen, grad_rejected: bool(
        (grad_chosen == 0).all() and (grad_rejected == 0).all()
    ),
}


def check_dpo_gradient(loss_fn: Callable, seed: int = 0) -> None:
    """The loss's gradient must push the policy's chosen log-probability up and its rejected one down."""
    check_untampered()
    check_answer_rules(loss_fn)
    case = dpo_cases(seed, B=4, betas=(0.5,))[0]
    pc = case["policy_chosen"].clone().requires_grad_(True)
    pr = case["policy_rejected"].clone().requires_grad_(True)
    out = loss_fn(pc, pr, case["ref_chosen"], case["ref_rejected"], beta=0.5)
    loss = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
        raise CheckFailed("dpo_loss's loss should be a scalar tensor that carries a gradient back to the policy's "
                          "log-probabilities.")
    loss.backward()
    if pc.grad is None or pr.grad is None:
        raise CheckFailed("no gradient reached policy_chosen or policy_rejected: keep them in the computation.")
    if not bool((pc.grad < 0).all()) or not bool((pr.grad > 0).all()):
        cause = matching_cause(DPO_GRADIENT_SYMPTOMS, pc.grad, pr.grad)
        raise CheckFailed(
            "a gradient step on this loss must raise the chosen response's log-probability (d loss / d "
            "policy_chosen < 0) and lower the rejected one's (> 0); yours gives "
            f"d/d chosen = {pc.grad.tolist()}, d/d rejected = {pr.grad.tolist()}."
            + (f"\n  Likely cause: {cause}" if cause else "")
        )


# --------------------------------------------------------------------------
# Synthesis: dpo_step
# --------------------------------------------------------------------------

STEP_SHORTCUTS = ["course_lib.preference.dpo_step", "course_lib.preference.train_dpo"]


def pair_batches(seed: int, n: int = 2, B: int = 3, T: int = 8, V: int = 13) -> list[tuple]:
    """``n`` batches of (chosen ids, chosen mask, rejected ids, rejected mask) with random prompts and responses."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        sides = []
        for _side in range(2):
            ids = torch.randint(V, (B, T), generator=g)
            mask = torch.zeros(B, T, dtype=torch.bool)
            for b in range(B):
                prompt = 2 + int(torch.randint(3, (1,), generator=g))
                mask[b, prompt: min(T, prompt + 1 + int(torch.randint(3, (1,), generator=g)))] = True
            sides += [ids, mask]
        batches.append(tuple(sides))
    return batches


def dpo_step_summary(step_fn: Callable, seed: int, beta: float, lr: float = 0.5, steps: int = 2) -> list:
    """``steps`` calls of ``step_fn(policy, reference, SGD, batch, beta)`` on a tiny GPT and an unfrozen copy.

    Returns [the metrics of each step as [loss, reward_margin, reward_accuracy], the policy's weights after,
    whether any reference parameter got a gradient, whether the reference's weights changed].
    """
    check_answer_rules(step_fn)
    policy = tiny_gpt(seed)
    reference = copy.deepcopy(policy)  # deliberately left trainable: the step must not train it
    before = [p.detach().clone() for p in reference.parameters()]
    optimizer = torch.optim.SGD(policy.parameters(), lr=lr)
    metrics = []
    for batch in pair_batches(seed, n=steps):
        out = step_fn(policy, reference, optimizer, batch, beta)
        if not isinstance(out, dict) or not {"loss", "reward_margin", "reward_accuracy"} <= set(out):
            raise CheckFailed("dpo_step should return a dict with 'loss', 'reward_margin' and 'reward_accuracy', "
                              f"got {out!r:.100}")
        values = []
        for key in ("loss", "reward_margin", "reward_accuracy"):
            value = out[key]
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise CheckFailed(f"dpo_step's {key!r} should be one number, got a tensor of shape "
                                      f"{tuple(value.shape)}")
                value = value.item()
            values.append(float(value))
        metrics.append(values)
    weights = torch.cat([p.detach().flatten() for p in policy.parameters()])
    ref_grads = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in reference.parameters())
    ref_changed = any(not torch.equal(a, p.detach()) for a, p in zip(before, reference.parameters()))
    return [metrics, weights, ref_grads, ref_changed]


def _step_variant(ref_grad: bool = False, zero_grad: bool = True, swap: bool = False, self_ref: bool = False,
                  ties_count: bool = False, update: bool = True) -> Callable:
    def step(policy, reference, optimizer, batch, beta=0.1):
        ci, cm, ri, rm = batch
        if swap:
            ci, cm, ri, rm = ri, rm, ci, cm
        pc, pr = sequence_logprob(policy, ci, cm), sequence_logprob(policy, ri, rm)
        ref_model = policy if self_ref else reference
        with torch.set_grad_enabled(ref_grad):
            rc, rr = sequence_logprob(ref_model, ci, cm), sequence_logprob(ref_model, ri, rm)
        if self_ref:
            rc, rr = rc.detach(), rr.detach()
        loss, cr, rj = dpo_loss(pc, pr, rc, rr, beta)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        if update:
            optimizer.step()
        margin = cr - rj
        accuracy = (margin >= 0) if ties_count else (margin > 0)
        return {"loss": loss.item(), "reward_margin": margin.mean().item(),
                "reward_accuracy": accuracy.float().mean().item()}

    return functools.partial(dpo_step_summary, step)


STEP_MISTAKES = {
    "the reference model received gradients: compute its log-probabilities under torch.no_grad() (it must stay "
    "frozen; only the policy trains)": _step_variant(ref_grad=True),
    "the gradients were never reset: call optimizer.zero_grad() before backward(), or every step adds the "
    "previous steps' gradients": _step_variant(zero_grad=False),
    "chosen and rejected are swapped: the first two tensors of the batch are the chosen response": _step_variant(
        swap=True
    ),
    "the policy served as its own reference (detached): the log-ratios are then always 0, so the loss is log 2 "
    "at every step; use the `reference` model": _step_variant(self_ref=True),
    "a pair whose rewards are equal counted as right: reward_accuracy is the share with chosen reward strictly "
    "higher": _step_variant(ties_count=True),
    "the optimizer never stepped: call optimizer.step() after backward()": _step_variant(update=False),
}

STEP_CASES = [{"seed": 0, "beta": 0.5}, {"seed": 1, "beta": 2.0, "steps": 3}]


def reference_step_summary(seed: int, beta: float, lr: float = 0.5, steps: int = 2) -> list:
    return dpo_step_summary(dpo_step, seed, beta, lr, steps)


def check_dpo_step(step_fn: Callable, namespace: MutableMapping[str, Any], cases: list[dict] | None = None) -> None:
    """Self-check of the synthesis dpo_step, with course_lib's sequence_logprob and dpo_loss bound in ``namespace``.

    ``namespace`` is the notebook's ``globals()``: while the check runs, the names ``sequence_logprob`` and
    ``dpo_loss`` there are course_lib's, so a slip in an earlier exercise is not counted twice.
    """
    with substitute(namespace, sequence_logprob=sequence_logprob, dpo_loss=dpo_loss):
        if cases is None:
            policy = tiny_gpt(0)
            forbid_reference(step_fn, STEP_SHORTCUTS,
                             example={"policy": policy, "reference": copy.deepcopy(policy),
                                      "optimizer": torch.optim.SGD(policy.parameters(), lr=0.1),
                                      "batch": pair_batches(0, n=1)[0], "beta": 0.5}, name="dpo_step")
            cases = STEP_CASES
        check_function(functools.partial(dpo_step_summary, step_fn), reference_step_summary, cases,
                       name="dpo_step ([metrics per step, policy weights after, reference got gradients, "
                       "reference changed])", mistakes=STEP_MISTAKES)
