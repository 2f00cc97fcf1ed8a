"""Notebook 00's checks (course_lib.checks.welcome): every listed mistake really is wrong, and recognisably so.

A 'mistake' that agrees with the reference on every input could never be
named as a likely cause; one that crashes could never match a student's output.
"""

from __future__ import annotations

import pytest
import torch

from course_lib import basics
from course_lib.checks import welcome
from course_lib.grading import _mismatch, _resolve

g = torch.Generator().manual_seed(0)
SOFTMAX_INPUTS = [
    {"x": torch.randn(4, 5, generator=g), "dim": -1},
    {"x": torch.randn(4, 5, generator=g), "dim": 0},
    {"x": torch.tensor([1000.0, 1001.0, 1002.0]), "dim": -1},
]
CE_INPUTS = [
    {"logits": torch.randn(6, 4, generator=g), "targets": torch.randint(4, (6,), generator=g)},
    {"logits": torch.tensor([[300.0, 0.0, -300.0]]), "targets": torch.tensor([2])},
]


@pytest.mark.parametrize(
    "mistakes,reference,inputs",
    [
        (welcome.SOFTMAX_MISTAKES, basics.softmax, SOFTMAX_INPUTS),
        (welcome.CROSS_ENTROPY_MISTAKES, basics.cross_entropy, CE_INPUTS),
    ],
    ids=["softmax", "cross_entropy"],
)
def test_every_mistake_differs_from_the_reference_somewhere(mistakes, reference, inputs):
    for description, mistaken in mistakes.items():
        differs = [_mismatch(mistaken(**case), reference(**case), "x", 1e-5, 1e-4) for case in inputs]
        assert any(differs), f"never wrong, so never detectable: {description}"


@pytest.mark.parametrize("target", welcome.SOFTMAX_SHORTCUTS + welcome.CROSS_ENTROPY_SHORTCUTS)
def test_every_shortcut_resolves_to_a_callable(target):
    owner, attr, fn = _resolve(target)
    assert callable(fn) and getattr(owner, attr) is fn
