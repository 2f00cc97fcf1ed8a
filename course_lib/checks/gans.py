"""Shortcuts and common mistakes for notebook 01 (GAN losses, the training step, the training loop, mode coverage,
WGAN-GP).

Each mistaken function below is what a student's answer computes when it
makes that mistake; ``grading.check_function`` (and :func:`check_train_step`
here) names the one that matches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..gan import (
    _lr_factor,
    discriminator_loss,
    fit_gan,
    gan_train_step,
    generator_loss,
    gradient_penalty,
    wgan_gp_train_step,
)
from ..grading import (
    CheckFailed,
    _call,
    check_answer_rules,
    check_close,
    check_function,
    check_untampered,
    describe,
    forbid_reference,
    matching_cause,
    substitute,
)
from ..metrics import mode_coverage

BCE_SHORTCUTS = [
    "torch.nn.functional.binary_cross_entropy_with_logits",
    "torch.nn.functional.binary_cross_entropy",
    "torch.binary_cross_entropy_with_logits",
    "torch.nn.BCEWithLogitsLoss.forward",
    "torch.nn.BCELoss.forward",
    "course_lib.gan.discriminator_loss",
    "course_lib.gan.generator_loss",
]

# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------


def _d_swapped_labels(real_logits, fake_logits):
    return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()


def _d_log_sigmoid(real_logits, fake_logits):
    p_real, p_fake = torch.sigmoid(real_logits), torch.sigmoid(fake_logits)
    return -torch.log(p_real).mean() - torch.log(1 - p_fake).mean()


def _d_loss(real_logits, fake_logits):
    """The right loss, written out as an answer would: -log D(x) - log(1 - D(G(z))) in logits."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def _d_no_minus(real_logits, fake_logits):
    return -_d_loss(real_logits, fake_logits)


def _d_averaged(real_logits, fake_logits):
    return _d_loss(real_logits, fake_logits) / 2


def _d_summed(real_logits, fake_logits):
    return F.softplus(-real_logits).sum() + F.softplus(fake_logits).sum()


def _d_real_only(real_logits, fake_logits):
    return F.softplus(-real_logits).mean()


_LOG_SIGMOID = (
    "took log(sigmoid(x)) in two steps: for a large |logit| sigmoid rounds to exactly 0 or 1 and the log "
    "becomes -inf. Use the identities -log(sigmoid(x)) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x)"
)

DISCRIMINATOR_LOSS_MISTAKES = {
    "swapped the labels: real samples are labelled 1 (loss softplus(-real)), fake samples 0 "
    "(loss softplus(fake))": _d_swapped_labels,
    _LOG_SIGMOID: _d_log_sigmoid,
    "forgot the minus sign: a cross-entropy is a *negative* log-likelihood, so it is >= 0": _d_no_minus,
    "divided the sum of the two terms by 2: the loss is mean over real + mean over fake": _d_averaged,
    "summed over the batch instead of averaging: use .mean() for each term": _d_summed,
    "left out the fake samples: D must also learn to say 0 on G's samples": _d_real_only,
}


def check_discriminator_loss(student_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 01's ``discriminator_loss`` against ``course_lib.gan.discriminator_loss``.

    With ``cases`` None: the visible checks (no BCE built-in, three cases, one with batches of different
    sizes, and the loss 2 log 2 of a D that always says 1/2); otherwise only a comparison on ``cases``.
    """
    visible = cases is None
    if visible:
        g = torch.Generator().manual_seed(0)
        forbid_reference(
            student_fn, BCE_SHORTCUTS,
            example={"real_logits": torch.randn(4, 1), "fake_logits": torch.randn(4, 1)},
            name="discriminator_loss", instead="Write it with F.softplus (or F.logsigmoid).",
        )
        cases = [
            {"real_logits": torch.tensor([[2.0], [0.5]]), "fake_logits": torch.tensor([[-1.0], [0.0]])},
            {"real_logits": torch.randn(8, 1, generator=g), "fake_logits": torch.randn(8, 1, generator=g)},
            {"real_logits": torch.randn(6, 1, generator=g), "fake_logits": 2 * torch.randn(3, 1, generator=g)},
        ]
    check_function(student_fn, discriminator_loss, cases, name="discriminator_loss",
                   mistakes=DISCRIMINATOR_LOSS_MISTAKES)
    if visible:
        check_close(
            student_fn(torch.zeros(5, 1), torch.zeros(5, 1)), 2 * math.log(2),
            name="the loss of a D that always says 1/2", hint="each term is -log(1/2) = log 2",
        )


def check_discriminator_loss_stable(student_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check that ``discriminator_loss`` matches the reference for logits in the hundreds.

    With ``cases`` None, the visible case; the comparison is :func:`check_discriminator_loss`'s.
    """
    if cases is None:
        cases = [{"real_logits": torch.tensor([[200.0], [-150.0]]), "fake_logits": torch.tensor([[-300.0], [120.0]])}]
    check_discriminator_loss(student_fn, cases)


def _g_ns_wrong_label(fake_logits, non_saturating=True):
    return F.softplus(fake_logits).mean() if non_saturating else -F.softplus(-fake_logits).mean()


def _g_always_saturating(fake_logits, non_saturating=True):
    return -F.softplus(fake_logits).mean()


def _g_always_non_saturating(fake_logits, non_saturating=True):
    return F.softplus(-fake_logits).mean()


def _g_saturating_sign(fake_logits, non_saturating=True):
    return generator_loss(fake_logits, True) if non_saturating else F.softplus(fake_logits).mean()


def _g_log_sigmoid(fake_logits, non_saturating=True):
    p = torch.sigmoid(fake_logits)
    return -torch.log(p).mean() if non_saturating else torch.log(1 - p).mean()


GENERATOR_LOSS_MISTAKES = {
    "used the wrong target: the non-saturating generator wants D to say *real* (label 1) on its "
    "samples, so its loss is softplus(-fake_logits) = -log D(G(z))": _g_ns_wrong_label,
    "ignored `non_saturating`: True gives mean(softplus(-fake)), False the minimax form "
    "mean(log(1 - D(G(z)))) = -mean(softplus(fake))": _g_always_saturating,
    "ignored `non_saturating=False`: the saturating (minimax) form is mean(log(1 - D(G(z)))) "
    "= -mean(softplus(fake))": _g_always_non_saturating,
    "wrong sign of the saturating loss: G *minimises* log(1 - D(G(z))), which is -softplus(fake) "
    "(it is <= 0)": _g_saturating_sign,
    _LOG_SIGMOID: _g_log_sigmoid,
}


def check_generator_loss(student_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 01's ``generator_loss`` (both forms) against ``course_lib.gan.generator_loss``.

    With ``cases`` None: the visible checks (no BCE built-in, four cases, two per form); otherwise only a
    comparison on ``cases``.
    """
    if cases is None:
        g = torch.Generator().manual_seed(1)
        forbid_reference(
            student_fn, BCE_SHORTCUTS, example={"fake_logits": torch.randn(4, 1)},
            name="generator_loss", instead="Write it with F.softplus (or F.logsigmoid).",
        )
        cases = [
            {"fake_logits": torch.tensor([[-2.0], [0.0], [1.5]]), "non_saturating": True},
            {"fake_logits": torch.tensor([[-2.0], [0.0], [1.5]]), "non_saturating": False},
            {"fake_logits": 2 * torch.randn(8, 1, generator=g), "non_saturating": True},
            {"fake_logits": 2 * torch.randn(8, 1, generator=g), "non_saturating": False},
        ]
    check_function(student_fn, generator_loss, cases, name="generator_loss", mistakes=GENERATOR_LOSS_MISTAKES)


def check_generator_loss_stable(student_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check that ``generator_loss`` (both forms) matches the reference for logits in the hundreds.

    With ``cases`` None, the visible cases; the comparison is :func:`check_generator_loss`'s.
    """
    if cases is None:
        cases = [
            {"fake_logits": torch.tensor([[-200.0], [150.0]]), "non_saturating": True},
            {"fake_logits": torch.tensor([[-200.0], [150.0]]), "non_saturating": False},
        ]
    check_generator_loss(student_fn, cases)

# --------------------------------------------------------------------------
# The training step
# --------------------------------------------------------------------------


def _step_no_detach(G, D, opt_G, opt_D, real, z, non_saturating=True):
    fake = G(z)
    d_loss = discriminator_loss(D(real), D(fake))  # no detach: D's loss flows into G
    opt_D.zero_grad()
    d_loss.backward(retain_graph=True)
    opt_D.step()
    g_loss = generator_loss(D(fake), non_saturating)
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


def _step_no_detach_zero_first(G, D, opt_G, opt_D, real, z, non_saturating=True):
    opt_D.zero_grad()
    opt_G.zero_grad()
    fake = G(z)
    d_loss = discriminator_loss(D(real), D(fake))
    d_loss.backward(retain_graph=True)
    opt_D.step()
    g_loss = generator_loss(D(fake), non_saturating)
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


def _step_g_grad_into_d(G, D, opt_G, opt_D, real, z, non_saturating=True):
    fake = G(z)
    d_loss = discriminator_loss(D(real), D(fake.detach()))
    g_loss = generator_loss(D(fake), non_saturating)
    opt_D.zero_grad()
    opt_G.zero_grad()
    d_loss.backward()
    g_loss.backward()  # also lands in D's .grad before D steps
    opt_D.step()
    opt_G.step()
    return d_loss.item(), g_loss.item()


def _step_g_first(G, D, opt_G, opt_D, real, z, non_saturating=True):
    fake = G(z)
    g_loss = generator_loss(D(fake), non_saturating)
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    d_loss = discriminator_loss(D(real), D(fake.detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    return d_loss.item(), g_loss.item()


def _step_g_labels_zero(G, D, opt_G, opt_D, real, z, non_saturating=True):
    fake = G(z)
    d_loss = discriminator_loss(D(real), D(fake.detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    g_loss = F.softplus(D(fake)).mean()  # label 0: G helps D
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


def _step_d_labels_swapped(G, D, opt_G, opt_D, real, z, non_saturating=True):
    fake = G(z)
    d_loss = discriminator_loss(D(fake.detach()), D(real))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    g_loss = generator_loss(D(fake), non_saturating)
    opt_G.zero_grad()
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


def _step_no_zero_grad(G, D, opt_G, opt_D, real, z, non_saturating=True):
    fake = G(z)
    d_loss = discriminator_loss(D(real), D(fake.detach()))
    d_loss.backward()
    opt_D.step()
    g_loss = generator_loss(D(fake), non_saturating)
    g_loss.backward()
    opt_G.step()
    return d_loss.item(), g_loss.item()


def _step_ignores_flag(G, D, opt_G, opt_D, real, z, non_saturating=True):
    return gan_train_step(G, D, opt_G, opt_D, real, z, True)


TRAIN_STEP_MISTAKES = {
    "the discriminator's loss backpropagated into G: use `G(z).detach()` (or generate under "
    "`torch.no_grad()`) for D's fake batch": _step_no_detach,
    "the discriminator's loss backpropagated into G, and G's update used that gradient too: detach the "
    "fake batch for D's loss, and call `opt_G.zero_grad()` just before G's backward pass": _step_no_detach_zero_first,
    "G's loss reached D's update: compute and backpropagate G's loss only after `opt_D.step()`, and "
    "call `opt_D.zero_grad()` right before D's own backward pass": _step_g_grad_into_d,
    "updated G before D: the order is D first (on real and detached fake), then G against the updated D": _step_g_first,
    "G used label 0 for its samples: G wants D to call them real, so its loss is "
    "`generator_loss(D(fake))` (label 1)": _step_g_labels_zero,
    "D's labels are swapped: `discriminator_loss(D(real), D(fake))`, with the real logits first": (
        _step_d_labels_swapped
    ),
    "gradients from an earlier step were kept: call `opt_D.zero_grad()` before D's backward pass and "
    "`opt_G.zero_grad()` before G's": _step_no_zero_grad,
    "`non_saturating` was ignored: pass it on to `generator_loss`": _step_ignores_flag,
}


def _players(case: Mapping):
    """Tiny double-precision players and the batches of one case (a WGAN case has ``n_critic``)."""
    seed, latent_dim, data_dim, batch = case["seed"], case["latent_dim"], case["data_dim"], case["batch"]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = nn.Sequential(nn.Linear(latent_dim, 6), nn.Tanh(), nn.Linear(6, data_dim)).double()
        D = nn.Sequential(nn.Linear(data_dim, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    n_critic = case.get("n_critic")
    if n_critic is None:
        batches = {
            "real": torch.randn(batch, data_dim, generator=gen, dtype=torch.float64),
            "z": torch.randn(batch, latent_dim, generator=gen, dtype=torch.float64),
        }
    else:
        batches = {
            "reals": [torch.randn(batch, data_dim, generator=gen, dtype=torch.float64) for _ in range(n_critic)],
            "zs": [torch.randn(batch, latent_dim, generator=gen, dtype=torch.float64) for _ in range(n_critic + 1)],
        }
    # Gradients "left over from the previous step": a correct step clears them before using .grad.
    stale = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in [*G.parameters(), *D.parameters()]]
    return G, D, batches, stale


def _run_step(step: Callable, case: Mapping) -> dict[str, object]:
    """Run ``step`` on fresh copies of one case's players; report what it did."""
    G, D, batches, stale = _players(case)
    for p, s in zip([*G.parameters(), *D.parameters()], stale):
        p.grad = s.clone()
    passes = {"G": 0}

    def count(_grad):
        passes["G"] += 1

    first = next(G.parameters())
    first.register_hook(count)
    opt_G = torch.optim.SGD(G.parameters(), lr=case["lr"])
    opt_D = torch.optim.SGD(D.parameters(), lr=case["lr"])
    with torch.random.fork_rng():
        torch.manual_seed(case["seed"])  # WGAN-GP's interpolation weights: the same draws for every run
        if "n_critic" in case:
            out = step(G, D, opt_G, opt_D, batches["reals"], batches["zs"], gp_weight=case["gp_weight"])
        else:
            out = step(G, D, opt_G, opt_D, batches["real"], batches["z"], non_saturating=case["non_saturating"])
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    return {"out": out, "D": flat(D), "G": flat(G), "passes": passes["G"]}


def _differs(actual, expected, name: str) -> str | None:
    try:
        check_close(actual, expected, name=name, atol=1e-7, rtol=1e-6)
    except CheckFailed as failure:
        return str(failure)
    return None


def _first_difference(
    got: dict, want: dict, outputs: str = "(d_loss, g_loss)", players: tuple = ("D", "G")
) -> str | None:
    size = len(want["out"])
    if not isinstance(got["out"], (tuple, list)) or len(got["out"]) != size:
        return f"the step should return {outputs}, got {got['out']!r}"
    for key, name in [
        ("passes", "number of backward passes that reached G's parameters"),
        ("D", f"{players[0]}'s parameters after the step"),
        ("G", f"{players[1]}'s parameters after the step"),
    ]:
        reason = _differs(float(got[key]) if key == "passes" else got[key],
                          float(want[key]) if key == "passes" else want[key], name)
        if reason:
            return reason
    return _differs(tuple(float(v) for v in got["out"]), want["out"], f"the returned {outputs}")


def check_train_step(
    student_step: Callable,
    cases: list[Mapping],
    reference_step: Callable = gan_train_step,
    mistakes: Mapping[str, Callable] | None = None,
    name: str = "gan_train_step",
    outputs: str = "(d_loss, g_loss)",
    players: tuple[str, str] = ("D", "G"),
) -> None:
    """Run the student's and the reference step on identical tiny players and compare what they did.

    A GAN case is ``{"seed", "latent_dim", "data_dim", "batch", "lr", "non_saturating"}``;
    a WGAN-GP case has ``"n_critic"`` and ``"gp_weight"`` instead of ``"non_saturating"``
    (use :func:`check_wgan_step`). G and D are small double-precision MLPs with SGD (so
    the comparison is exact), whose ``.grad`` hold stale values as if left over from an
    earlier step; torch's global seed is fixed before each run. Compared: how many
    backward passes reach G (one: G's own), D's and G's parameters after the step, and
    the returned losses. A mistake that reproduces the difference is named as the likely cause.
    """
    check_answer_rules(student_step)
    check_untampered()
    mistakes = TRAIN_STEP_MISTAKES if mistakes is None else mistakes
    compare = lambda a, b: _first_difference(a, b, outputs, players)  # noqa: E731
    for number, case in enumerate(cases, start=1):
        # grading's own call: a stub or a crash becomes the same CheckFailed message as everywhere else
        got = _call(_run_step, {"step": student_step, "case": case}, name)
        want = _run_step(reference_step, case)
        reason = compare(got, want)
        if reason is None:
            continue
        lines = [f"{name} is not right yet.", f"  Case {number} of {len(cases)}: {dict(case)}", f"  {reason}"]
        for description, mistaken in mistakes.items():
            try:
                wrong = _run_step(mistaken, case)
            except Exception:
                continue
            if compare(wrong, want) is not None and compare(got, wrong) is None:
                lines.append(f"  Likely cause: {description}")
                break
        raise CheckFailed("\n".join(lines))


def check_gan_train_step(
    student_step: Callable, namespace: MutableMapping[str, Any], cases: list[Mapping] | None = None
) -> None:
    """Self-check of notebook 01's ``gan_train_step`` with :func:`check_train_step` (the visible cases when
    ``cases`` is None).

    While it runs, the notebook's ``namespace`` (its ``globals()``) holds the reference
    ``discriminator_loss`` and ``generator_loss``, so a slip in those exercises is not counted twice;
    the student's own are restored afterwards.
    """
    if cases is None:
        cases = [
            {"seed": 0, "latent_dim": 3, "data_dim": 2, "batch": 8, "lr": 0.1, "non_saturating": True},
            {"seed": 1, "latent_dim": 2, "data_dim": 2, "batch": 6, "lr": 0.5, "non_saturating": False},
        ]
    with substitute(namespace, discriminator_loss=discriminator_loss, generator_loss=generator_loss):
        check_train_step(student_step, cases)


# --------------------------------------------------------------------------
# The training loop (the synthesis exercise)
# --------------------------------------------------------------------------

FIT_GAN_SHORTCUTS = ["course_lib.gan.fit_gan", "course_lib.gan.train_gan"]


def _fit(G, D, sample_real, steps, latent_dim, batch_size=256, lr=1e-3, lr_end=0.05, d_lr=None,
         betas=(0.5, 0.999), non_saturating=True, seed=0, callback=None, *, decay="linear",
         fresh_optimisers=False, one_optimiser=False, use_d_lr=True, use_betas=True, same_z=False,
         global_rng=False, pass_flag=True, call_back=True):
    """The reference loop (:func:`course_lib.gan.fit_gan`) with one switch per common mistake (all off: right)."""
    d_base = lr if d_lr is None or not use_d_lr else d_lr
    adam_betas = betas if use_betas else (0.9, 0.999)

    def optimisers():
        if one_optimiser:
            both = torch.optim.Adam([*G.parameters(), *D.parameters()], lr=lr, betas=adam_betas)
            return both, both
        return (torch.optim.Adam(G.parameters(), lr=lr, betas=adam_betas),
                torch.optim.Adam(D.parameters(), lr=d_base, betas=adam_betas))

    def factor(i):
        if decay == "none":
            return 1.0
        if decay == "by_steps":
            return 1 - (1 - lr_end) * i / steps
        return _lr_factor(i, steps, lr_end)

    opt_G, opt_D = optimisers()
    latents = torch.Generator().manual_seed(seed)
    fixed_z = torch.randn(batch_size, latent_dim, generator=latents) if same_z else None
    history = {"d_loss": [], "g_loss": []}
    for i in range(steps):
        if fresh_optimisers:
            opt_G, opt_D = optimisers()
        rates = [(opt_G, lr), (opt_D, d_base)]
        if decay == "to_lr_end":
            rates = [(opt, base + (lr_end - base) * i / max(1, steps - 1)) for opt, base in rates]
        elif decay == "g_only":
            rates = [(opt_G, lr * factor(i)), (opt_D, d_base)]
        else:
            rates = [(opt, base * factor(i)) for opt, base in rates]
        for opt, rate in rates:
            for group in opt.param_groups:
                group["lr"] = rate
        real = sample_real(batch_size)
        if same_z:
            z = fixed_z
        elif global_rng:
            z = torch.randn(batch_size, latent_dim)
        else:
            z = torch.randn(batch_size, latent_dim, generator=latents)
        d_loss, g_loss = gan_train_step(G, D, opt_G, opt_D, real, z, non_saturating if pass_flag else True)
        history["d_loss"].append(d_loss)
        history["g_loss"].append(g_loss)
        if callback is not None and call_back:
            callback(i, history)
    return history


def _fit_mistake(**switches) -> Callable:
    def fit(G, D, sample_real, steps, latent_dim, batch_size=256, lr=1e-3, lr_end=0.05, d_lr=None,
            betas=(0.5, 0.999), non_saturating=True, seed=0, callback=None):
        return _fit(G, D, sample_real, steps, latent_dim, batch_size, lr, lr_end, d_lr, betas, non_saturating,
                    seed, callback, **switches)

    return fit


FIT_GAN_MISTAKES = {
    "kept the learning rates constant: step i runs at the base rate times 1 - (1 - lr_end) i / (steps - 1), "
    "for both players (Hint 2 above)": _fit_mistake(decay="none"),
    "divided by steps instead of steps - 1: the last step (i = steps - 1) must run at exactly lr_end times the "
    "base rate": _fit_mistake(decay="by_steps"),
    "decayed the rate towards lr_end itself: lr_end is a fraction of the base rate, so the last step runs at "
    "lr * lr_end (and d_lr * lr_end for D)": _fit_mistake(decay="to_lr_end"),
    "decayed only G's learning rate: D's rate follows the same schedule from its own base rate": (
        _fit_mistake(decay="g_only")
    ),
    "made new optimisers at every step: Adam keeps running averages of the gradients between steps, so create "
    "the two optimisers once, before the loop": _fit_mistake(fresh_optimisers=True),
    "one optimiser for both players: G and D each need their own Adam over their own parameters "
    "(opt_D.step() must not move G)": _fit_mistake(one_optimiser=True),
    "ignored d_lr: D's base learning rate is d_lr (lr only when d_lr is None)": _fit_mistake(use_d_lr=False),
    "left Adam's betas at their default (0.9, 0.999): pass `betas` to both optimisers": (
        _fit_mistake(use_betas=False)
    ),
    "the same latent batch every step: make the seeded generator once, before the loop, and draw a fresh "
    "(batch_size, latent_dim) batch from it at every step": _fit_mistake(same_z=True),
    "drew z from torch's global random generator: draw it from a torch.Generator seeded with `seed`, so the run "
    "is reproducible (Hint 2 above)": _fit_mistake(global_rng=True),
    "`non_saturating` was not passed on to the training step": _fit_mistake(pass_flag=False),
    "never called `callback`: call callback(i, history) after every step (the live plot uses it)": (
        _fit_mistake(call_back=False)
    ),
}

# What fit_gan raises on a run of one step when its schedule divides by steps - 1.
FIT_GAN_ERRORS = {
    r"^ZeroDivisionError": (
        "divided by steps - 1 to spread the decay over the run: a run of one step then divides by zero; divide "
        "by max(1, steps - 1), so a one-step run simply runs at the base rate"
    ),
}


def _fit_case(case: Mapping) -> tuple[nn.Module, nn.Module, Callable[[int], torch.Tensor], list[int]]:
    """Tiny float32 players for one case, and a reproducible data stream that records each batch size asked."""
    seed, latent_dim, data_dim = case["seed"], case["latent_dim"], case["data_dim"]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = nn.Sequential(nn.Linear(latent_dim, 8), nn.Tanh(), nn.Linear(8, data_dim))
        D = nn.Sequential(nn.Linear(data_dim, 8), nn.Tanh(), nn.Linear(8, 1))
    data = torch.Generator().manual_seed(seed + 100)
    asked: list[int] = []

    def sample_real(n: int) -> torch.Tensor:
        asked.append(int(n))
        return 0.5 * torch.randn(n, data_dim, generator=data) + 1.0  # (n, data_dim)

    return G, D, sample_real, asked


_FIT_ARGS = ("steps", "latent_dim", "batch_size", "lr", "lr_end", "d_lr", "betas", "non_saturating", "seed")


def _run_fit(fit: Callable, case: Mapping) -> dict[str, object]:
    """Run a training loop on one case's fresh players; report what it returned and did."""
    G, D, sample_real, asked = _fit_case(case)
    calls: list[tuple[int, int]] = []

    def callback(i, history):
        size = len(history["d_loss"]) if isinstance(history, Mapping) and "d_loss" in history else -1
        calls.append((int(i), size))

    kwargs = {k: case[k] for k in _FIT_ARGS if k in case}
    with torch.random.fork_rng():
        torch.manual_seed(1234 + case["seed"])  # the same global state for every run (see the global-RNG mistake)
        out = fit(G, D, sample_real, callback=callback, **kwargs)
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    return {"out": out, "asked": asked, "calls": calls, "G": flat(G), "D": flat(D)}


def _first_step_off(got: list, want: list, name: str, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    for i, (a, e) in enumerate(zip(got, want)):
        if not abs(a - e) <= atol + rtol * abs(e):
            agree = {0: "", 1: " (step 0 agrees)"}.get(i, f" (steps 0 to {i - 1} agree)")
            return f"{name} at step {i} is {a:.6g}; expected {e:.6g}{agree}."
    return None


def _fit_difference(got: dict, want: dict) -> str | None:
    out, steps = got["out"], len(want["out"]["d_loss"])
    if not isinstance(out, Mapping) or set(out) < {"d_loss", "g_loss"}:
        return f'fit_gan should return a dict {{"d_loss": [...], "g_loss": [...]}}, got {describe(out)}'
    for key in ("d_loss", "g_loss"):
        values = out[key]
        if not isinstance(values, (list, tuple)) or len(values) != steps or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            return f"history[{key!r}] should be a list of {steps} Python floats (one per step), got {describe(values)}"
    if got["asked"] != want["asked"]:
        return (f"sample_real was called {len(got['asked'])} times with batch sizes {describe(got['asked'])}; "
                f"expected one call per step, sample_real({want['asked'][0]}), {steps} in all")
    if got["calls"] != want["calls"]:
        return (f"callback was called as (i, len(history['d_loss'])) = {describe(got['calls'])}; expected "
                f"{describe(want['calls'])}: once after every step, with the history so far")
    for key in ("d_loss", "g_loss"):
        reason = _first_step_off([float(v) for v in out[key]], want["out"][key], f"history[{key!r}]")
        if reason:
            return reason
    for key in ("D", "G"):
        reason = _differs(got[key], want[key], f"{key}'s parameters after training")
        if reason:
            return reason
    return None


def check_fit_gan(
    student_fit: Callable, namespace: MutableMapping[str, Any], cases: list[Mapping] | None = None
) -> None:
    """Self-check of notebook 01's synthesis ``fit_gan`` against :func:`course_lib.gan.fit_gan`.

    A case is ``{"seed", "latent_dim", "data_dim", "steps", "batch_size", "lr", "lr_end", "d_lr", "betas",
    "non_saturating"}``: tiny float32 MLPs, a reproducible data stream and torch's global seed fixed, so the
    two runs must agree. Compared, in this order: the returned history's form, the calls of ``sample_real``
    and of ``callback``, the losses step by step, D's and G's parameters after training. While it runs,
    ``namespace`` (the notebook's ``globals()``) holds the reference ``gan_train_step`` and losses, so a
    slip in those exercises is not counted twice. With ``cases`` None: a shortcut check, then the visible cases.
    """
    check_answer_rules(student_fit, name="fit_gan")
    check_untampered()
    with substitute(namespace, gan_train_step=gan_train_step, discriminator_loss=discriminator_loss,
                    generator_loss=generator_loss):
        if cases is None:
            G, D, sample_real, _ = _fit_case({"seed": 0, "latent_dim": 2, "data_dim": 2})
            forbid_reference(
                student_fit, FIT_GAN_SHORTCUTS, name="fit_gan",
                example={"G": G, "D": D, "sample_real": sample_real, "steps": 2, "latent_dim": 2, "batch_size": 4},
                instead="Write the loop around your gan_train_step.",
            )
            cases = [
                {"seed": 0, "latent_dim": 3, "data_dim": 2, "steps": 6, "batch_size": 8, "lr": 0.05, "lr_end": 0.1,
                 "d_lr": None, "betas": (0.5, 0.999), "non_saturating": True},
                {"seed": 1, "latent_dim": 2, "data_dim": 2, "steps": 5, "batch_size": 6, "lr": 0.02, "lr_end": 0.5,
                 "d_lr": 0.1, "betas": (0.3, 0.9), "non_saturating": False},
            ]
        for number, case in enumerate(cases, start=1):
            got = _call(_run_fit, {"fit": student_fit, "case": case}, "fit_gan", FIT_GAN_ERRORS)
            want = _run_fit(fit_gan, case)
            reason = _fit_difference(got, want)
            if reason is None:
                continue
            lines = ["fit_gan is not right yet.", f"  Case {number} of {len(cases)}: {dict(case)}", f"  {reason}"]
            for description, mistaken in FIT_GAN_MISTAKES.items():
                try:
                    wrong = _run_fit(mistaken, case)
                except Exception:
                    continue
                if _fit_difference(wrong, want) is not None and _fit_difference(got, wrong) is None:
                    lines.append(f"  Likely cause: {description}")
                    break
            raise CheckFailed("\n".join(lines))


# --------------------------------------------------------------------------
# Mode coverage (the debug exercise): the yardstick that calls a GAN collapsed
# --------------------------------------------------------------------------

MODE_COVERAGE_SHORTCUTS = ["course_lib.metrics.mode_coverage"]


def _coverage(samples, centers, std, k=3.0, min_share=None, *, squared=False, k_not_squared=False,
              all_samples=False, share_as_count=False, strict=False, no_floor=False, share_of_all=False):
    """:func:`course_lib.metrics.mode_coverage` written out as an answer would, one switch per common mistake
    (all off: right)."""
    K = len(centers)
    if min_share is None:
        min_share = 0.2 if share_of_all else 0.2 / K
    squares = ((samples[:, None, :] - centers[None, :, :]) ** 2).sum(dim=-1)  # (N, K) squared distances
    nearest_square, nearest = squares.min(dim=1)  # (N,), (N,)
    if squared:
        good = nearest_square <= k * std  # a squared length against a length
    elif k_not_squared:
        good = nearest_square <= k * std ** 2  # the radius is then sqrt(k) * std
    else:
        good = nearest_square.sqrt() <= k * std
    counts = torch.bincount(nearest if all_samples else nearest[good], minlength=K)  # (K,)
    need = min_share if share_as_count else min_share * len(samples)
    if not no_floor:
        need = max(1.0, need)
    covered = counts > need if strict else counts >= need
    return {"modes": int(covered.sum()), "of": K, "high_quality": float(good.double().mean()), "counts": counts}


MODE_COVERAGE_MISTAKES = {
    "the cut-off for high quality is not at distance k * std from a centre: on the ring (k * std = 0.06) samples "
    "up to about 0.245 from their nearest centre, four times that cut-off, count as high quality, so "
    "`high_quality` and `counts` take in samples that miss every mode. Look at the comparison that decides "
    "d_i <= k * std and at what each of its two sides measures (Hint 1 above; 'The distance' in Hint 2 says why)": (
        functools.partial(_coverage, squared=True)
    ),
    "the cut-off for high quality is not at distance k * std from a centre: on the ring (k = 3, std = 0.02) only "
    "samples within about 0.035 of a centre count as high quality, not all those within 0.06, so `high_quality` "
    "comes out too low. Look at the radius the distance is compared with ('The distance' in Hint 2 above)": (
        functools.partial(_coverage, k_not_squared=True)
    ),
    "`counts` take in samples that are not high quality: a sample farther than k * std from every centre still "
    "adds to its nearest mode's n_j, so samples that miss a mode can cover it. Look at which samples are counted "
    "(the definition of n_j above the code)": functools.partial(_coverage, all_samples=True),
    "a single high-quality sample is enough to cover a mode, however many samples N there are, so modes with fewer "
    "high-quality samples than the covering threshold asks for count as covered. Look at what `counts` is "
    "compared with and in which units (Hint 1 above; 'The threshold' in Hint 2 says why)": (
        functools.partial(_coverage, share_as_count=True)
    ),
    "a mode whose number of high-quality samples equals the covering threshold exactly is not counted as covered, "
    "although the covering condition above the code says it is": functools.partial(_coverage, strict=True),
    "with min_share = 0 a mode without a single high-quality sample counts as covered, although a mode always needs "
    "at least one (the covering condition and the list above the code)": functools.partial(_coverage, no_floor=True),
    "with min_share left at its default, the threshold is far above a fifth of a mode's fair share N / K, so modes "
    "that reach that fifth can be left uncovered. Compare the default with the definition of m above the code": (
        functools.partial(_coverage, share_of_all=True)
    ),
}


def coverage_case(seed: int, centers: torch.Tensor, std: float, near: list[int], mid: list[int], far: list[int],
                  k: float = 3.0, min_share: float | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """A ``mode_coverage`` case: samples (N, D) placed around ``centers`` (K, D), mode by mode, at known distances.

    With ``r = k * std``: ``near[j]`` samples of mode j lie within 0.05 r to 0.9 r of its centre (high quality),
    ``mid[j]`` between ``r`` and ``sqrt(r)`` (kept 10 % away from both: high quality only for an answer that
    compares a squared distance with ``r``), ``far[j]`` at 1.5 to 2.5 times the larger of the two (high
    quality for no answer). Directions are random; the samples are shuffled.
    """
    radius = k * std
    low, high = sorted((radius, math.sqrt(radius)))
    if high < 1.25 * low:
        raise ValueError(f"k * std = {radius} is too close to 1 to tell a distance from its square")
    gen = torch.Generator().manual_seed(seed)
    centers = centers.to(torch.float64)
    points = []
    for j, (n_near, n_mid, n_far) in enumerate(zip(near, mid, far)):
        for n, (a, b) in ((n_near, (0.05 * radius, 0.9 * radius)), (n_mid, (1.1 * low, 0.9 * high)),
                          (n_far, (1.5 * high, 2.5 * high))):
            if n:
                u = torch.randn(n, centers.shape[1], generator=gen, dtype=torch.float64)
                u = u / u.norm(dim=1, keepdim=True)  # (n, D) unit directions
                r = a + (b - a) * torch.rand(n, 1, generator=gen, dtype=torch.float64)
                points.append(centers[j] + r * u)
    samples = torch.cat(points)
    samples = samples[torch.randperm(len(samples), generator=gen)]
    return {"samples": samples.to(dtype), "centers": centers.to(dtype), "std": std, "k": k, "min_share": min_share}


def coverage_cases() -> list[dict]:
    """The visible cases: the ring of notebook 01 (200 samples, so the default threshold is exactly 5, which mode 1
    reaches), and 3-D points with k = 2.5 and min_share = 0 (a mode needs one sample; mode 2 has none)."""
    ring = torch.tensor([[2.0 * math.cos(i * math.pi / 4), 2.0 * math.sin(i * math.pi / 4)] for i in range(8)])
    corners = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    return [
        coverage_case(0, ring, 0.02, near=[150, 5, 3, 0, 12, 0, 0, 0], mid=[4, 0, 0, 4, 0, 2, 0, 0],
                      far=[0, 0, 0, 0, 0, 5, 10, 5]),
        coverage_case(1, corners, 0.1, near=[6, 1, 0, 3], mid=[2, 0, 3, 0], far=[1, 0, 0, 2], k=2.5, min_share=0.0),
    ]


def _coverage_dict(coverage_fn: Callable, samples, centers, std, k, min_share) -> Mapping:
    out = coverage_fn(samples, centers, std, k, min_share)
    if not isinstance(out, Mapping) or not {"modes", "of", "high_quality", "counts"} <= set(out):
        raise CheckFailed(f"mode_coverage should return a dict with 'modes', 'of', 'high_quality' and 'counts', "
                          f"got {describe(out)}")
    return out


def coverage_quality(coverage_fn: Callable, samples, centers, std, k=3.0, min_share=None) -> list:
    """``[high_quality, counts]`` of the dict ``coverage_fn`` returns: what the distances decide."""
    out = _coverage_dict(coverage_fn, samples, centers, std, k, min_share)
    return [out["high_quality"], out["counts"]]


def coverage_all(coverage_fn: Callable, samples, centers, std, k=3.0, min_share=None) -> list:
    """``[modes, of, high_quality, counts]``: the whole dict ``coverage_fn`` returns. Compared after
    :func:`coverage_quality` agrees, so that only a threshold mistake can match a difference in ``modes``."""
    out = _coverage_dict(coverage_fn, samples, centers, std, k, min_share)
    return [out["modes"], out["of"], out["high_quality"], out["counts"]]


def check_mode_coverage(coverage_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 01's debug exercise ``mode_coverage`` against ``course_lib.metrics.mode_coverage``.

    In two stages: first what the distances decide (``[high_quality, counts]``), then the whole dict, where only
    ``modes`` (what the threshold decides) can still differ. So the code as shipped, with one bug in each, is told
    about its distance first; and a distance mistake, which also changes ``modes``, is never named for a wrong
    threshold. With ``cases`` None: the visible checks (no call of the reference, then :func:`coverage_cases`);
    otherwise only the comparison on ``cases`` (see :func:`coverage_case`).
    """
    if cases is None:
        forbid_reference(
            coverage_fn, MODE_COVERAGE_SHORTCUTS, name="mode_coverage",
            example={"samples": torch.randn(20, 2), "centers": torch.randn(3, 2), "std": 0.5, "k": 3.0,
                     "min_share": None},
        )
        cases = coverage_cases()
    stages = ((coverage_quality, "[high_quality, counts]"), (coverage_all, "[modes, of, high_quality, counts]"))
    for summary, parts in stages:
        check_function(
            functools.partial(summary, coverage_fn), functools.partial(summary, mode_coverage), cases,
            name=f"mode_coverage ({parts})",
            mistakes={description: functools.partial(summary, mistaken)
                      for description, mistaken in MODE_COVERAGE_MISTAKES.items()},
        )


# --------------------------------------------------------------------------
# Gradient penalty
# --------------------------------------------------------------------------

GRADIENT_PENALTY_SHORTCUTS = ["course_lib.gan.gradient_penalty"]


def _gp_interpolate(real, fake, alpha):
    if alpha is None:
        alpha = torch.rand(len(real))
    alpha = alpha.reshape((len(real),) + (1,) * (real.dim() - 1))
    return alpha, alpha * real + (1 - alpha) * fake


def _gp_from(critic, x_hat, reduce):
    x_hat = x_hat.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return reduce(grad)


def _gp_swapped(critic, real, fake, alpha=None):
    _, x_hat = _gp_interpolate(fake, real, alpha)
    return _gp_from(critic, x_hat, lambda g: ((g.flatten(1).norm(dim=1) - 1) ** 2).mean())


def _gp_squared_norm(critic, real, fake, alpha=None):
    _, x_hat = _gp_interpolate(real, fake, alpha)
    return _gp_from(critic, x_hat, lambda g: ((g.flatten(1).pow(2).sum(1) - 1) ** 2).mean())


def _gp_no_minus_one(critic, real, fake, alpha=None):
    _, x_hat = _gp_interpolate(real, fake, alpha)
    return _gp_from(critic, x_hat, lambda g: (g.flatten(1).norm(dim=1) ** 2).mean())


def _gp_batch_norm(critic, real, fake, alpha=None):
    _, x_hat = _gp_interpolate(real, fake, alpha)
    return _gp_from(critic, x_hat, lambda g: (g.norm() - 1) ** 2)


def _gp_last_axis_norm(critic, real, fake, alpha=None):
    _, x_hat = _gp_interpolate(real, fake, alpha)
    return _gp_from(critic, x_hat, lambda g: ((g.norm(dim=-1) - 1) ** 2).mean())


def _gp_on_real(critic, real, fake, alpha=None):
    return gradient_penalty(critic, real, real, alpha)


def _gp_one_sided(critic, real, fake, alpha=None):
    _, x_hat = _gp_interpolate(real, fake, alpha)
    return _gp_from(critic, x_hat, lambda g: ((g.flatten(1).norm(dim=1) - 1).clamp_min(0) ** 2).mean())


GRADIENT_PENALTY_MISTAKES = {
    "mixed the wrong way round: x_hat = alpha * real + (1 - alpha) * fake": _gp_swapped,
    "penalised the squared norm: take the square root (`.norm(dim=1)`) before subtracting 1": _gp_squared_norm,
    "forgot the - 1: the penalty pushes the gradient norm towards 1, not 0": _gp_no_minus_one,
    "took one norm over the whole batch: flatten each sample (`grad.flatten(1)`) and take one norm per "
    "sample (`.norm(dim=1)`)": _gp_batch_norm,
    "took the norm over the last axis only: for images, flatten each sample first (`grad.flatten(1)`)": (
        _gp_last_axis_norm
    ),
    "evaluated the critic on real samples only: the gradient is taken at the interpolates x_hat": _gp_on_real,
    "used a one-sided penalty max(0, norm - 1)^2: WGAN-GP's is two-sided, (norm - 1)^2": _gp_one_sided,
}


def _penalty_detached(penalty: Any) -> bool:
    """The penalty is no longer a function of the critic's parameters (no graph to backpropagate through)."""
    return not isinstance(penalty, torch.Tensor) or not penalty.requires_grad


# Checked as a property of the returned penalty (its value is right), not by comparing values.
GRADIENT_PENALTY_GRAPH_SYMPTOMS = {
    "computed the gradient without `create_graph=True` (or detached the result, or took `.item()`): "
    "`torch.autograd.grad(..., create_graph=True)` keeps the penalty a function of the critic's parameters, "
    "so that it can train the critic": _penalty_detached,
}


def small_critic(seed: int, in_features: int, scale: float = 1.0) -> nn.Module:
    """A small double-precision critic (flatten, Linear(in_features, 8), tanh, Linear(8, 1)), weights times ``scale``.

    Seeds torch's global generator with ``seed`` to initialise it.
    """
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net


def check_gradient_penalty(student_fn: Callable, cases: list[dict] | None = None) -> None:
    """Self-check of notebook 01's ``gradient_penalty`` against ``course_lib.gan.gradient_penalty``.

    With ``cases`` None: the visible checks (no call of the reference, three cases with given ``alpha``,
    one on 1x4x4 images, and two critics whose penalty is known: 1 for a zero gradient, 0 for a
    unit-norm one); otherwise only a comparison on ``cases``.
    """
    visible = cases is None
    if visible:
        g = torch.Generator().manual_seed(5)
        forbid_reference(
            student_fn, GRADIENT_PENALTY_SHORTCUTS,
            example={"critic": small_critic(0, 2), "real": torch.randn(4, 2).double(),
                     "fake": torch.randn(4, 2).double()},
            name="gradient_penalty",
        )
        cases = [
            {"critic": small_critic(0, 2), "real": torch.randn(6, 2, generator=g).double(),
             "fake": torch.randn(6, 2, generator=g).double(), "alpha": torch.rand(6, generator=g).double()},
            {"critic": small_critic(1, 2, scale=3.0), "real": torch.randn(5, 2, generator=g).double(),
             "fake": torch.randn(5, 2, generator=g).double(), "alpha": torch.rand(5, generator=g).double()},
            {"critic": small_critic(2, 16), "real": torch.randn(4, 1, 4, 4, generator=g).double(),
             "fake": torch.randn(4, 1, 4, 4, generator=g).double(), "alpha": torch.rand(4, generator=g).double()},
        ]
    check_function(student_fn, gradient_penalty, cases, name="gradient_penalty", mistakes=GRADIENT_PENALTY_MISTAKES)
    if visible:
        real, fake = torch.randn(8, 3), torch.randn(8, 3)
        check_close(student_fn(lambda x: 0 * x.sum(dim=1, keepdim=True), real, fake), 1.0,
                    name="the penalty of a critic with zero gradient", hint="(0 - 1)^2 = 1 for every sample")
        unit = torch.tensor([[0.6], [0.0], [0.8]])
        check_close(student_fn(lambda x: x @ unit, real, fake), 0.0, atol=1e-6,
                    name="the penalty of a linear critic with a unit-norm gradient", hint="(1 - 1)^2 = 0")


def penalty_parameter_gradients(gp_fn: Callable, seed: int = 0) -> torch.Tensor:
    """Gradient of ``gp_fn(critic, real, fake, alpha)`` with respect to a small critic's parameters.

    Zero (or an error) when the penalty was computed without ``create_graph=True``,
    i.e. when it cannot train the critic.
    """
    check_answer_rules(gp_fn)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        critic = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    real = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    fake = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    alpha = torch.rand(6, generator=gen, dtype=torch.float64)
    penalty = gp_fn(critic, real, fake, alpha)
    cause = matching_cause(GRADIENT_PENALTY_GRAPH_SYMPTOMS, penalty)
    if cause:
        raise CheckFailed(
            "the penalty does not depend on the critic's parameters, so it cannot train the critic.\n"
            f"  Likely cause: {cause}"
        )
    grads = torch.autograd.grad(penalty, list(critic.parameters()), allow_unused=True)
    params = list(critic.parameters())
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def check_gradient_penalty_backprop(student_fn: Callable, seed: int = 0) -> None:
    """Self-check that ``gradient_penalty`` can train the critic: its gradient with respect to a small critic's
    parameters (:func:`penalty_parameter_gradients`, critic and batches drawn from ``seed``) equals the reference's.
    """
    check_close(
        penalty_parameter_gradients(student_fn, seed=seed),
        penalty_parameter_gradients(gradient_penalty, seed=seed),
        name="the gradient of your penalty with respect to the critic's parameters",
        hint="if test_gradient_penalty passes, the values are right: pass create_graph=True to torch.autograd.grad "
             "and do not detach the result",
    )


# --------------------------------------------------------------------------
# The WGAN-GP step
# --------------------------------------------------------------------------


def _wgan_step(G, critic, opt_G, opt_C, reals, zs, gp_weight=10.0, *, critic_sign=1.0, penalty_weight=None,
               detach=True, g_objective="wgan", critic_updates=None, g_first=False, zero_grad=True, same_z=False,
               report_first=False):
    """The reference WGAN-GP step with one switch per common mistake (all off: the right step)."""
    penalty_weight = gp_weight if penalty_weight is None else penalty_weight
    pairs = list(zip(reals, [zs[0]] * len(reals) if same_z else zs))[:critic_updates]

    def generator_update():
        scores = critic(G(zs[-1]))
        if g_objective == "vanilla":
            loss = F.softplus(-scores).mean()
        else:
            loss = scores.mean() if g_objective == "wrong sign" else -scores.mean()
        opt_G.zero_grad()
        loss.backward()
        opt_G.step()
        return loss

    g_loss = generator_update() if g_first else None
    losses = []
    for real, z in pairs:
        fake = G(z).detach() if detach else G(z)
        penalty = gradient_penalty(critic, real, fake)
        c_loss = critic_sign * (critic(fake).mean() - critic(real).mean()) + penalty_weight * penalty
        if zero_grad:
            opt_C.zero_grad()
        c_loss.backward()
        opt_C.step()
        losses.append((c_loss, penalty))
    if not g_first:
        g_loss = generator_update()
    c_loss, penalty = losses[0] if report_first else losses[-1]
    return c_loss.item(), g_loss.item(), penalty.item()


def _mistake(**switches) -> Callable:
    def step(G, critic, opt_G, opt_C, reals, zs, gp_weight=10.0):
        return _wgan_step(G, critic, opt_G, opt_C, reals, zs, gp_weight, **switches)

    return step


WGAN_STEP_MISTAKES = {
    "the critic's loss has the wrong sign: the critic *minimises* mean(C(fake)) - mean(C(real)) (plus the "
    "penalty), i.e. it pushes real scores up and fake scores down": _mistake(critic_sign=-1.0),
    "the penalty is missing from the critic's loss: add `gp_weight * gradient_penalty(critic, real, fake)`": (
        _mistake(penalty_weight=0.0)
    ),
    "the penalty is not weighted: multiply it by `gp_weight` (lambda)": _mistake(penalty_weight=1.0),
    "the critic's updates backpropagated into G: make the fakes under `torch.no_grad()` (or `.detach()` them)": (
        _mistake(detach=False)
    ),
    "the generator's loss has the wrong sign: G *maximises* the critic's score, so its loss is "
    "-mean(C(G(z)))": _mistake(g_objective="wrong sign"),
    "the generator used the vanilla GAN loss: WGAN's generator loss is -mean(C(G(z))), no sigmoid or log": (
        _mistake(g_objective="vanilla")
    ),
    "only one critic update was made: make one per batch in `reals` (n_critic = len(reals))": (
        _mistake(critic_updates=1)
    ),
    "the generator was updated before the critics: first the n_critic critic updates, then G": (
        _mistake(g_first=True)
    ),
    "the critic's gradients piled up: call `opt_C.zero_grad()` before each critic backward pass": (
        _mistake(zero_grad=False)
    ),
    "the same latent batch made the fakes of every critic update: critic update i uses `zs[i]`": (
        _mistake(same_z=True)
    ),
    "returned the first critic update's losses: return those of the last one": _mistake(report_first=True),
}


def check_wgan_step(student_step: Callable, cases: list[Mapping], reference_step: Callable | None = None) -> None:
    """:func:`check_train_step` for ``wgan_gp_train_step``: cases hold ``n_critic`` and ``gp_weight``."""
    check_answer_rules(student_step)
    check_train_step(
        student_step, cases, reference_step or wgan_gp_train_step, WGAN_STEP_MISTAKES,
        name="wgan_gp_train_step", outputs="(critic_loss, generator_loss, penalty)", players=("the critic", "G"),
    )


def check_wgan_gp_train_step(
    student_step: Callable, namespace: MutableMapping[str, Any], cases: list[Mapping] | None = None
) -> None:
    """Self-check of notebook 01's ``wgan_gp_train_step`` with :func:`check_wgan_step` (the visible cases when
    ``cases`` is None).

    While it runs, the notebook's ``namespace`` (its ``globals()``) holds the reference ``gradient_penalty``,
    so a slip in that exercise is not counted twice; the student's own is restored afterwards.
    """
    if cases is None:
        cases = [
            {"seed": 0, "latent_dim": 3, "data_dim": 2, "batch": 6, "lr": 0.05, "n_critic": 3, "gp_weight": 10.0},
            {"seed": 1, "latent_dim": 2, "data_dim": 2, "batch": 5, "lr": 0.1, "n_critic": 2, "gp_weight": 0.5},
        ]
    with substitute(namespace, gradient_penalty=gradient_penalty):
        check_wgan_step(student_step, cases)


__all__ = [
    "BCE_SHORTCUTS",
    "DISCRIMINATOR_LOSS_MISTAKES",
    "FIT_GAN_ERRORS",
    "FIT_GAN_MISTAKES",
    "FIT_GAN_SHORTCUTS",
    "GENERATOR_LOSS_MISTAKES",
    "GRADIENT_PENALTY_GRAPH_SYMPTOMS",
    "GRADIENT_PENALTY_MISTAKES",
    "GRADIENT_PENALTY_SHORTCUTS",
    "MODE_COVERAGE_MISTAKES",
    "MODE_COVERAGE_SHORTCUTS",
    "TRAIN_STEP_MISTAKES",
    "WGAN_STEP_MISTAKES",
    "check_discriminator_loss",
    "check_discriminator_loss_stable",
    "check_fit_gan",
    "check_gan_train_step",
    "check_generator_loss",
    "check_generator_loss_stable",
    "check_gradient_penalty",
    "check_gradient_penalty_backprop",
    "check_mode_coverage",
    "check_train_step",
    "check_wgan_gp_train_step",
    "check_wgan_step",
    "coverage_case",
    "coverage_all",
    "coverage_cases",
    "coverage_quality",
    "penalty_parameter_gradients",
    "small_critic",
]
