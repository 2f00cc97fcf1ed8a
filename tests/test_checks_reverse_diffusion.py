"""Notebook 03's checks (course_lib.checks.reverse_diffusion).

The synthesis check (train_denoiser): course_lib passes it, every catalogued mistake fails with its own name,
and what cannot be compared value by value (eval mode, tensors for losses, a loop that skips diffusion_loss,
a shortcut) fails with a message that says so. Every other exercise's catalogue: each mistake is caught and named.

The debug exercise ``timestep_embedding`` is checked on the code the notebook ships (read from it with
harness.as_shipped): its first failure names the layout (cosines first), the second, once that is fixed, the
growing frequencies.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from envtools import assert_each_mistake_is_caught_and_named, assert_fails_naming
from harness import as_shipped

from course_lib import diffusion as D
from course_lib.checks import reverse_diffusion as C
from course_lib.grading import CheckFailed

ROOT = Path(__file__).resolve().parents[1]

STUDENT = '''
def train_denoiser(model, batches, schedule, optimizer, steps, p_uncond=0.0, lr_scheduler=None, grad_clip=1.0):
    model.train()
    losses = []
    for _ in range(steps):
        x0, *rest = next(batches)
        labels = rest[0] if rest else None
        if labels is not None and p_uncond > 0:
            drop = torch.rand(labels.shape) < p_uncond
            labels = torch.where(drop, torch.full_like(labels, model.null_label), labels)
        loss = diffusion_loss(model, x0, schedule, labels)
        optimizer.zero_grad()
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        losses.append(LOSS)
    return losses
'''


def _student(source: str = STUDENT, loss: str = "loss.item()") -> tuple[object, dict]:
    """A train_denoiser written the way a student would, in a namespace of its own (like a notebook's)."""
    namespace = {"torch": torch, "diffusion_loss": D.diffusion_loss}
    exec(compile(source.replace("LOSS", loss), "<student>", "exec"), namespace)
    return namespace["train_denoiser"], namespace


def test_the_reference_and_a_students_own_loop_pass():
    C.check_train_denoiser(D.train_denoiser, vars(D))
    fn, namespace = _student()
    C.check_train_denoiser(fn, namespace)
    C.check_train_denoiser(fn, namespace, cases=[{"seed": 3, "steps": 3, "data": "images", "labels": True,
                                                  "lr": 0.05, "grad_clip": 0.1, "scheduler": True}],
                           dropout={"seed": 2, "p_uncond": 0.5, "steps": 20})
    assert namespace["diffusion_loss"] is D.diffusion_loss  # the check put the student's loss back


def test_checked_runs_are_deterministic_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    case = C._train_cases()[1]
    first, second = C._reference_outcome(**case), C._reference_outcome(**case)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
@pytest.mark.parametrize("description", list(C.TRAIN_DENOISER_MISTAKES) + list(C.LABEL_DROPOUT_MISTAKES))
def test_each_catalogued_mistake_fails_and_is_named(description):
    wrong = {**C.TRAIN_DENOISER_MISTAKES, **C.LABEL_DROPOUT_MISTAKES}[description]
    with pytest.raises(CheckFailed) as failure:
        C.check_train_denoiser(wrong, vars(D))
    assert f"Likely cause: {description}" in str(failure.value), str(failure.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("model.train()", "model.eval()"), "eval mode"),
        (("loss = diffusion_loss(model, x0, schedule, labels)",
          "loss = ((model(x0, torch.zeros(len(x0), dtype=torch.long), labels) - x0) ** 2).mean()"),
         "never called diffusion_loss"),
        (("    return losses", "    return losses[1:]"), "one loss per step"),
    ],
)
def test_what_cannot_be_compared_by_value_is_still_named(change, message):
    fn, namespace = _student(STUDENT.replace(*change))
    with pytest.raises(CheckFailed, match=message):
        C.check_train_denoiser(fn, namespace)


def test_loss_tensors_instead_of_floats_are_reported():
    fn, namespace = _student(loss="loss.detach()")
    with pytest.raises(CheckFailed, match="Python floats"):
        C.check_train_denoiser(fn, namespace)


def test_a_loop_built_on_course_libs_train_is_a_shortcut():
    source = '''
def train_denoiser(model, batches, schedule, optimizer, steps, p_uncond=0.0, lr_scheduler=None, grad_clip=1.0):
    history = train(model, batches, denoiser_loss_fn(schedule, p_uncond), steps, optimizer=optimizer, progress=False)
    return [v for _, v in history.train["loss"]]
'''
    from course_lib.train import train

    namespace = {"train": train, "denoiser_loss_fn": D.denoiser_loss_fn, "diffusion_loss": D.diffusion_loss}
    exec(compile(source, "<student>", "exec"), namespace)
    with pytest.raises(CheckFailed, match="build yourself"):
        C.check_train_denoiser(namespace["train_denoiser"], namespace)


def test_a_wrong_dropout_rate_is_reported_with_the_rate():
    fn, namespace = _student(STUDENT.replace("< p_uncond", "< p_uncond / 2"))
    with pytest.raises(CheckFailed, match="dropped 1"):
        C.check_train_denoiser(fn, namespace)


# -- the catalogues of notebook 03's other exercises: every mistake is catchable ----------------------------


def _schedule(T=20):
    return C.bare_schedule(D.linear_beta_schedule(T, 1e-3, 0.2))


def _catalogue_cases():
    g = torch.Generator().manual_seed(0)
    s = _schedule()
    x2, x4 = torch.randn(6, 2, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    t6 = torch.tensor([0, 1, 5, 10, 18, 19])
    torch.randn(6, 2, generator=g)  # skipped: notebook 02's q_sample noise, drawn here when one test held both
    return {
        "posterior": (
            C.POSTERIOR_MISTAKES,
            C.reference_posterior,
            [{"x0": x2, "xt": torch.randn(6, 2, generator=g), "t": t6, "schedule": s}],
        ),
        "loss": (
            C.LOSS_MISTAKES,
            C.reference_diffusion_loss,
            [{"model": C.toy_model, "x0": x2, "schedule": s, "labels": torch.arange(6), "t": t6,
              "noise": torch.randn(6, 2, generator=g)}],
        ),
        "p_sample": (
            C.P_SAMPLE_MISTAKES,
            C.reference_p_sample,
            [{"model": C.toy_model, "xt": x4, "t": t, "schedule": s, "noise": torch.randn(3, 1, 4, 4, generator=g)}
             for t in (0, 7)],
        ),
        "ddpm": (
            C.DDPM_MISTAKES,
            C.seeded(C.reference_ddpm_sample),
            [{"model": C.toy_model, "shape": (4, 2), "schedule": s, "seed": 5}],
        ),
        "ddim_step": (
            C.DDIM_STEP_MISTAKES,
            C.reference_ddim_step,
            [{"eps": x2, "xt": x2.flip(0), "t": t, "t_prev": tp, "schedule": s} for t, tp in ((15, 10), (4, -1))],
        ),
        "ddim_sample": (
            C.DDIM_SAMPLE_MISTAKES,
            C.reference_ddim_sample,
            [{"model": C.toy_model, "x_T": x2, "schedule": s, "steps": 4}],
        ),
        "guidance": (
            C.GUIDANCE_MISTAKES,
            D.guided_noise,
            [{"model": C.toy_model, "xt": x2, "t": t6, "labels": torch.arange(6), "guidance_scale": 3.0}],
        ),
    }


@pytest.mark.parametrize("exercise", list(_catalogue_cases()))
def test_every_catalogued_mistake_is_caught_and_named(exercise):
    assert_each_mistake_is_caught_and_named(*_catalogue_cases()[exercise], name=exercise)


def test_ddim_sample_reference_uses_the_given_x_T():
    s = _schedule()
    x_T = torch.randn(4, 2)
    out = C.reference_ddim_sample(C.toy_model, x_T, s, 20)
    assert torch.equal(out, D.ddim_sample(C.toy_model, (4, 2), C.full(s), 20, x_T=x_T))


# -- diffusion_loss drawing its own t and noise -------------------------------------------------------------


def _loss_drawing(low: int, high_offset: int):
    """diffusion_loss that draws t from low .. T - 1 + high_offset, and noise, then uses course_lib's loss."""

    def diffusion_loss(model, x0, schedule, labels=None, t=None, noise=None):
        t = torch.randint(low, schedule.T + high_offset, (x0.shape[0],))
        return D.diffusion_loss(model, x0, schedule, labels, t, torch.randn_like(x0))

    return diffusion_loss


def test_the_random_draw_check_passes_the_reference_and_names_one_based_timesteps():
    C.check_diffusion_loss_random(D.diffusion_loss)
    C.check_diffusion_loss_random(_loss_drawing(0, 0))
    (description,) = C.LOSS_DRAW_ERRORS.values()
    with pytest.raises(CheckFailed, match="when it drew its own timesteps") as failure:
        C.check_diffusion_loss_random(_loss_drawing(1, 1))
    assert f"Likely cause: {description}" in str(failure.value), str(failure.value)


# -- the debug exercise: the denoiser's time embedding ------------------------------------------------------


def _shipped_embedding(*fixes: tuple[str, str]):
    """The function the student release ships (the notebook's buggy code, uncommented), with ``fixes`` applied."""
    source = as_shipped("03_reverse_diffusion", "timestep_embedding")
    for old, new in fixes:
        assert old in source, old
        source = source.replace(old, new)
    namespace = {"torch": torch}
    exec(compile(source, "<shipped>", "exec"), namespace)
    return namespace["timestep_embedding"]


FIX_SIGN = ("torch.exp(math.log(max_period)", "torch.exp(-math.log(max_period)")
FIX_ORDER = ("[torch.cos(angles), torch.sin(angles)]", "[torch.sin(angles), torch.cos(angles)]")


def _embedding_by_powers(t, dim, max_period=10_000.0):
    """A correct answer written differently: max_period ** (-2i/dim) in float64."""
    freqs = max_period ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _embedding_hidden_cases():
    g = torch.Generator().manual_seed(23)
    return [{"t": torch.zeros(2, dtype=torch.long), "dim": 2},
            {"t": torch.randint(1000, (7,), generator=g), "dim": 32, "max_period": 1000.0},
            {"t": torch.tensor([999, 0, 500, 501]), "dim": 64}]


@pytest.mark.parametrize("which", ["reference", "powers in float64", "the shipped code with both bugs fixed"])
def test_the_time_embedding_check_passes_right_answers_on_every_case(which):
    answer = {"reference": D.timestep_embedding, "powers in float64": _embedding_by_powers}.get(which)
    answer = answer or _shipped_embedding(FIX_SIGN, FIX_ORDER)
    C.check_timestep_embedding(answer)
    C.check_timestep_embedding(answer, cases=_embedding_hidden_cases())


def test_the_shipped_time_embedding_is_named_by_one_bug_then_the_other():
    growing, cos_first = list(C.TIMESTEP_EMBEDDING_MISTAKES)[:2]
    assert growing.startswith("the frequencies are wrong, and far too fast")
    assert cos_first.startswith("the layout is wrong")
    assert_fails_naming(lambda: C.check_timestep_embedding(_shipped_embedding()), f"Likely cause: {cos_first}")
    assert_fails_naming(lambda: C.check_timestep_embedding(_shipped_embedding(FIX_SIGN)), f"Likely cause: {cos_first}")
    assert_fails_naming(lambda: C.check_timestep_embedding(_shipped_embedding(FIX_ORDER)), f"Likely cause: {growing}")


@pytest.mark.parametrize("description", list(C.TIMESTEP_EMBEDDING_MISTAKES))
def test_each_time_embedding_mistake_is_named_by_the_check(description):
    wrong = C.TIMESTEP_EMBEDDING_MISTAKES[description]
    assert_fails_naming(lambda: C.check_timestep_embedding(wrong), f"Likely cause: {description}")
    assert_fails_naming(lambda: C.check_timestep_embedding(wrong, cases=_embedding_hidden_cases()),
                        f"Likely cause: {description}")


def _debug_section() -> str:
    """The source of notebook 03's debug section, from its heading to the answer cell (the hints included)."""
    source = (ROOT / "sources" / "03_reverse_diffusion" / "reverse_diffusion.py").read_text()
    start = source.index("# ## Debug · ")
    return source[start:source.index('# %% id="timestep_embedding"', start)]


@pytest.mark.parametrize("description", list(C.TIMESTEP_EMBEDDING_MISTAKES))
def test_each_time_embedding_description_points_to_a_hint_and_does_not_give_the_fix(description):
    """Each names Hint 1 and the paragraph of it that covers the mistake ('At t = 0' for the layout, 'At t = 1'
    for the frequencies); none writes code or names the change that fixes it (that is Hint 3's job)."""
    hint, paragraph = re.search(r"\(Hint (\d) above, '([^']+)'\)$", description).groups()
    section = _debug_section()
    body = section[section.index(f"<summary>Hint {hint}</summary>"):]
    body = body[:body.index("</details>")]
    assert f"**{paragraph.replace('t = ', '$t = ')}$**" in body, (paragraph, body)
    for giveaway in ("torch", "math.", "exp(", "sin(", "cos(", "sign", "minus", "swap", "instead", "order"):
        assert giveaway not in description, giveaway


def test_the_time_embedding_check_refuses_the_reference():
    def timestep_embedding(t, dim, max_period=10_000.0):
        return D.timestep_embedding(t, dim, max_period)

    assert_fails_naming(lambda: C.check_timestep_embedding(timestep_embedding), "build yourself")
