"""Preference tuning with DPO (notebook 07): Direct Preference Optimization (Rafailov et al. 2023).

RLHF fits a reward model to human preferences and then maximises it with
reinforcement learning, held close to a reference model by a KL penalty. DPO
reaches the same optimum with one classification-like loss on preference
pairs ``(prompt, chosen, rejected)``, no reward model and no sampling loop:

    L = -log sigmoid( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

where log pi(y|x) is the **sum** of the response tokens' log-probabilities
(:func:`sequence_logprob`) under the trained policy, and pi_ref is a frozen
copy of the model DPO starts from (:func:`frozen_reference`). The implicit
reward of a response is ``beta * (log pi(y|x) - log pi_ref(y|x))``.

This module holds :func:`sequence_logprob`, :func:`dpo_loss`, the preference
pairs of notebook 07 (chosen = the correct response, rejected = a wrong one the
instruction-tuned model actually samples: :func:`preference_pairs`), one
training step (:func:`dpo_step`, the notebook's synthesis), a training loop
(:func:`train_dpo`) on ``course_lib.train.run_loop``, and a sampled estimate
of the KL divergence to the reference (:func:`kl_to_reference`).

Shapes: B pairs (or sequences), T time. ``mask`` (B, T) is True where token t
is a response token (a target), as in :mod:`course_lib.instruct`.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .gpt import GPT
from .instruct import ChatTokenizer, Example, build_example, collate, format_prompt, generate_responses
from .train import History, adamw, eval_mode, run_loop

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # chosen ids, mask, rejected ids, mask


def sequence_logprob(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(response | prompt) of each row: (B,).

    ids (B, T) int64, mask (B, T) bool (True on the response tokens and
    ``<|end|>``). The sum over t >= 1 with ``mask[b, t]`` of
    ``log softmax(model(ids)[b, t - 1])[ids[b, t]]``: the log-probability of
    the whole response, the prompt and the padding excluded. A sum, not a mean:
    the probability of a sequence is the product of its tokens' probabilities.
    """
    if ids.dim() != 2 or mask.shape != ids.shape:
        raise ValueError(f"ids and mask must both be (B, T); got {tuple(ids.shape)} and {tuple(mask.shape)}")
    logits = model(ids)  # (B, T, V)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, T-1, V): position t-1 predicts token t
    token_logp = logp.gather(2, ids[:, 1:, None]).squeeze(2)  # (B, T-1)
    return (token_logp * mask[:, 1:]).sum(dim=1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss and the implicit rewards.

    Each input is (B,): the sequence log-probabilities of the chosen and the
    rejected responses under the policy and under the reference. Returns
    ``(loss, chosen_rewards, rejected_rewards)``: the scalar mean over the
    batch of ``-log sigmoid(beta * (chosen log-ratio - rejected log-ratio))``,
    and the rewards ``beta * (policy - reference)`` of each side, (B,) each,
    detached (they are for monitoring).
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    shapes = {tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"the four log-probabilities must all be (B,); got shapes {sorted(shapes)}")
    chosen_ratio = policy_chosen - ref_chosen  # log pi(y_w|x) / pi_ref(y_w|x)
    rejected_ratio = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()
    return loss, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


def frozen_reference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every parameter frozen: DPO's pi_ref."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference


# --------------------------------------------------------------------------
# Preference pairs from the task itself
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """A preference: for ``instruction``, ``chosen`` (correct) is preferred to ``rejected`` (what the model wrote)."""

    task: str
    instruction: str
    chosen: str
    rejected: str


def preference_pairs(
    model: GPT,
    tokenizer: ChatTokenizer,
    examples: Sequence[Example],
    samples: int = 4,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 20,
) -> list[Pair]:
    """Pairs (chosen = the correct response, rejected = a wrong response ``model`` samples).

    Each example's instruction is answered ``samples`` times at ``temperature``;
    the first wrong answer becomes the rejected response (examples the model
    always gets right give no pair).
    """
    g = torch.Generator().manual_seed(seed)
    instructions = [e.instruction for e in examples]
    wrong: dict[int, str] = {}
    for _ in range(samples):
        got = generate_responses(model, tokenizer, instructions, max_new_tokens, temperature, generator=g)
        for i, (e, text) in enumerate(zip(examples, got)):
            if i not in wrong and text != e.response:
                wrong[i] = text
    return [Pair(examples[i].task, examples[i].instruction, examples[i].response, wrong[i]) for i in sorted(wrong)]


def pair_batch(tokenizer: ChatTokenizer, pairs: Sequence[Pair]) -> Batch:
    """Padded (chosen ids, chosen mask, rejected ids, rejected mask), each (B, T_side)."""
    chosen = collate([build_example(tokenizer, p.instruction, p.chosen) for p in pairs], tokenizer.end_id)
    rejected = collate([build_example(tokenizer, p.instruction, p.rejected) for p in pairs], tokenizer.end_id)
    return (*chosen, *rejected)


def pair_stream(tokenizer: ChatTokenizer, pairs: Sequence[Pair], batch_size: int, seed: int = 0):
    """Endless random batches of pairs (:func:`pair_batch`), a new shuffle every epoch."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            fresh = list(range(len(pairs)))
            rng.shuffle(fresh)
            order += fresh
        chosen, order = order[:batch_size], order[batch_size:]
        yield pair_batch(tokenizer, [pairs[i] for i in chosen])


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def dpo_step(
    policy: nn.Module, reference: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, beta: float = 0.1
) -> dict[str, float]:
    """One DPO update of ``policy`` on a batch of pairs; ``reference`` gets no gradient and never changes.

    batch: (chosen ids, chosen mask, rejected ids, rejected mask), each
    (B, T_side). Returns ``{"loss", "reward_margin", "reward_accuracy"}``: the
    loss before the update, the mean of chosen minus rejected reward, and the
    share of pairs whose chosen reward is the higher.
    """
    chosen_ids, chosen_mask, rejected_ids, rejected_mask = batch
    policy.train()
    policy_chosen = sequence_logprob(policy, chosen_ids, chosen_mask)
    policy_rejected = sequence_logprob(policy, rejected_ids, rejected_mask)
    with torch.no_grad(), eval_mode(reference):
        ref_chosen = sequence_logprob(reference, chosen_ids, chosen_mask)
        ref_rejected = sequence_logprob(reference, rejected_ids, rejected_mask)
    loss, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    margin = chosen_rewards - rejected_rewards
    return {
        "loss": loss.item(),
        "reward_margin": margin.mean().item(),
        "reward_accuracy": (margin > 0).float().mean().item(),
    }


@torch.no_grad()
def kl_to_reference(
    policy: GPT,
    reference: GPT,
    tokenizer: ChatTokenizer,
    instructions: Sequence[str],
    seed: int = 0,
    max_new_tokens: int = 20,
) -> float:
    """A sampled estimate of KL(policy || reference) per response, in nats.

    Samples one response per instruction from ``policy`` (temperature 1) and
    averages ``log pi(y|x) - log pi_ref(y|x)`` over them (the sequence
    log-probabilities include ``<|end|>``; a response cut off at
    ``max_new_tokens`` counts without it).
    """
    g = torch.Generator().manual_seed(seed)
    responses = generate_responses(policy, tokenizer, instructions, max_new_tokens, 1.0, generator=g)
    examples = []
    for instruction, response in zip(instructions, responses):
        ids, mask = build_example(tokenizer, instruction, response)
        examples.append((ids[: policy.config.block_size], mask[: policy.config.block_size]))
    ids, mask = collate(examples, tokenizer.end_id)
    with eval_mode(policy), eval_mode(reference):
        return (sequence_logprob(policy, ids, mask) - sequence_logprob(reference, ids, mask)).mean().item()


def train_dpo(
    policy: GPT,
    reference: GPT,
    batches,
    steps: int,
    *,
    beta: float = 0.1,
    lr: float = 1e-4,
    step_fn: Callable = dpo_step,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "DPO",
) -> History:
    """``steps`` DPO updates of ``policy`` (AdamW, constant ``lr``) with ``step_fn`` (default :func:`dpo_step`).

    ``batches`` is an iterator of :data:`Batch` (e.g. :func:`pair_stream`).
    ``evaluate()`` runs every ``eval_every`` steps and at the end, in eval mode.
    """
    optimizer = adamw(policy, lr)

    def one_step(_step: int) -> dict[str, float]:
        return step_fn(policy, reference, optimizer, next(batches), beta)

    def run_eval() -> dict[str, float]:
        with eval_mode(policy), torch.no_grad():
            return evaluate()

    return run_loop(one_step, steps, evaluate=run_eval if evaluate else None, eval_every=eval_every,
                    progress=progress, desc=desc)


__all__ = [
    "Pair",
    "dpo_loss",
    "dpo_step",
    "format_prompt",
    "frozen_reference",
    "kl_to_reference",
    "pair_batch",
    "pair_stream",
    "preference_pairs",
    "sequence_logprob",
    "train_dpo",
]
