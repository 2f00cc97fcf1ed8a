"""course_lib.basics against torch's own softmax, log_softmax and cross_entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.basics import cross_entropy, log_softmax, softmax

g = torch.Generator().manual_seed(0)


@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), -1), ((3, 4), 0), ((2, 3, 7), 1), ((2, 3, 7), -2)])
def test_softmax_and_log_softmax_equal_torch(shape, dim):
    x = 4 * torch.randn(shape, generator=g)
    torch.testing.assert_close(softmax(x, dim), torch.softmax(x, dim))
    torch.testing.assert_close(log_softmax(x, dim), torch.log_softmax(x, dim))


def test_softmax_properties_at_extreme_scores():
    x = torch.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]])
    p = softmax(x, -1)
    assert torch.isfinite(p).all() and (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(2))
    torch.testing.assert_close(softmax(x + 123.0, -1), p)  # shift invariance


def test_cross_entropy_equals_torch_and_closed_forms():
    logits = 3 * torch.randn(8, 5, generator=g, dtype=torch.float64)
    targets = torch.randint(5, (8,), generator=g)
    torch.testing.assert_close(cross_entropy(logits, targets), F.cross_entropy(logits, targets))
    assert cross_entropy(torch.zeros(4, 10), torch.tensor([0, 1, 2, 3])).item() == pytest.approx(math.log(10))
    confident = torch.tensor([[1000.0, -1000.0]])
    assert cross_entropy(confident, torch.tensor([1])).item() == pytest.approx(2000.0)


def test_cross_entropy_gradient_equals_torch():
    logits = torch.randn(6, 4, generator=g, requires_grad=True)
    targets = torch.randint(4, (6,), generator=g)
    (mine,) = torch.autograd.grad(cross_entropy(logits, targets), logits)
    (theirs,) = torch.autograd.grad(F.cross_entropy(logits, targets), logits)
    torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize(
    "logits,targets,error,match",
    [
        (torch.zeros(3), torch.tensor([0]), ValueError, r"shape \(N, C\)"),
        (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), TypeError, "integer tensor"),
        (torch.zeros(2, 3), torch.tensor([0]), ValueError, r"shape \(N,\) = \(2,\)"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), ValueError, r"\[0, 3\)"),
        (torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1]), TypeError, "floating-point"),
    ],
)
def test_cross_entropy_rejects_bad_input(logits, targets, error, match):
    with pytest.raises(error, match=match):
        cross_entropy(logits, targets)
