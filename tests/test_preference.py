"""course_lib.preference: DPO's loss, sequence log-probabilities, the training step, the KL estimate."""

from __future__ import annotations

import copy
import math

import torch

from course_lib import instruct, preference
from course_lib.checks.instruction_tuning import pair_batches, tiny_gpt, tiny_tokenizer


def test_dpo_loss_is_the_papers_formula_written_out():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-5 * torch.rand(6, generator=g, dtype=torch.float64) for _ in range(4))
    for beta in (0.05, 0.1, 1.0, 3.0):
        loss, chosen, rejected = preference.dpo_loss(pc, pr, rc, rr, beta)
        per_pair = []
        for i in range(6):
            z = beta * ((pc[i].item() - rc[i].item()) - (pr[i].item() - rr[i].item()))
            per_pair.append(-math.log(1.0 / (1.0 + math.exp(-z))))  # -log sigmoid(z), Rafailov et al. eq. 7
        assert math.isclose(loss.item(), sum(per_pair) / 6, rel_tol=1e-12)
        torch.testing.assert_close(chosen, beta * (pc - rc))
        torch.testing.assert_close(rejected, beta * (pr - rr))
        assert not chosen.requires_grad and not rejected.requires_grad


def test_dpo_gradient_pushes_chosen_up_and_rejected_down():
    g = torch.Generator().manual_seed(1)
    pc, pr = (-5 * torch.rand(4, generator=g)).requires_grad_(), (-5 * torch.rand(4, generator=g)).requires_grad_()
    rc, rr = -5 * torch.rand(4, generator=g), -5 * torch.rand(4, generator=g)
    preference.dpo_loss(pc, pr, rc, rr, 0.5)[0].backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()
    assert math.isclose(float(pc.grad.sum() + pr.grad.sum()), 0.0, abs_tol=1e-7)  # d/d chosen = -d/d rejected


def test_sequence_logprob_equals_a_loop_over_unpadded_sequences():
    tokenizer = tiny_tokenizer()
    model = tiny_gpt(0, vocab_size=tokenizer.vocab_size, block_size=32)
    pairs = [("reverse cat", "tac"), ("ab", "b-a"), ("how long is tree?", "4")]
    examples = [instruct.build_example(tokenizer, i, r) for i, r in pairs]
    ids, mask = instruct.collate(examples, tokenizer.end_id)
    got = preference.sequence_logprob(model, ids, mask)
    for b, (x, m) in enumerate(examples):
        with torch.no_grad():
            logp = model(x[None]).double().log_softmax(-1)[0]  # this sequence alone, no padding
        want = sum(float(logp[t - 1, x[t]]) for t in range(1, len(x)) if m[t])
        assert math.isclose(got[b].item(), want, rel_tol=1e-5)
    assert got.requires_grad


def test_dpo_step_trains_the_policy_and_never_the_reference():
    policy = tiny_gpt(0)
    reference = copy.deepcopy(policy)  # not frozen: the step itself must keep it out of the graph
    before_policy = [p.detach().clone() for p in policy.parameters()]
    before_ref = [p.detach().clone() for p in reference.parameters()]
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    first = None
    for batch in pair_batches(0, n=3):
        metrics = preference.dpo_step(policy, reference, optimizer, batch, beta=0.5)
        first = first or metrics
    assert math.isclose(first["loss"], math.log(2), rel_tol=1e-6) and first["reward_accuracy"] == 0.0
    assert all(p.grad is None for p in reference.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before_ref, reference.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_policy, policy.parameters()))


def test_frozen_reference_and_kl_is_zero_against_itself():
    tokenizer = tiny_tokenizer()
    model = tiny_gpt(1, vocab_size=tokenizer.vocab_size, block_size=32)
    reference = preference.frozen_reference(model)
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.training
    kl = preference.kl_to_reference(model, reference, tokenizer, ["abc", "reverse cat"], max_new_tokens=6)
    assert abs(kl) < 1e-5


def test_preference_pairs_take_wrong_samples_as_rejected():
    tokenizer = tiny_tokenizer()
    model = tiny_gpt(2, vocab_size=tokenizer.vocab_size, block_size=32)
    examples = instruct.make_examples(["cat", "tree"], 4, seed=0, tasks=["reverse", "last"])
    pairs = preference.preference_pairs(model, tokenizer, examples, samples=2, max_new_tokens=6)
    assert pairs and all(p.chosen != p.rejected for p in pairs)
    batch = preference.pair_batch(tokenizer, pairs)
    assert len(batch) == 4 and batch[0].shape[0] == len(pairs)
