"""Notebook 03's synthesis check (train_denoiser): course_lib passes it, every catalogued mistake fails with
its own name, and what cannot be compared value by value (eval mode, tensors for losses, a loop that skips
diffusion_loss, a shortcut) fails with a message that says so."""

from __future__ import annotations

import pytest
import torch

from course_lib import diffusion as D
from course_lib.checks import diffusion as C
from course_lib.grading import CheckFailed

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
