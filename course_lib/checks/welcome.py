"""Shortcuts, common mistakes and self-checks for notebook 00 (softmax, cross-entropy).

Each mistaken function below is what a student's answer computes when it
makes that mistake; ``grading.check_function`` names the one that matches.
Each ``check_*`` function is one self-check cell of the notebook: called with
the student's function alone it runs the cell's visible checks; the hidden
checks pass their own ``cases``, which live in the notebook's hidden region.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .. import basics
from ..basics import softmax
from ..grading import check_close, check_function, forbid_reference

SOFTMAX_SHORTCUTS = [
    "torch.softmax",
    "torch.nn.functional.softmax",
    "torch.Tensor.softmax",
    "torch.special.softmax",
    "course_lib.basics.softmax",
]


def _softmax_other_axis(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    other = 0 if dim in (-1, x.dim() - 1) else -1
    e = torch.exp(x - x.amax(dim=other, keepdim=True))
    return e / e.sum(dim=other, keepdim=True)


def _softmax_over_all(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    e = torch.exp(x - x.max())
    return e / e.sum()


def _softmax_unshifted(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_unnormalised(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.exp(x - x.amax(dim=dim, keepdim=True))


SOFTMAX_MISTAKES = {
    "normalised along the wrong axis: divide by the sum along `dim` "
    "(`.sum(dim=dim, keepdim=True)`), whatever `dim` is": _softmax_other_axis,
    "divided by the sum of *all* entries: `.sum()` needs `dim=dim, keepdim=True`": _softmax_over_all,
    "exp overflowed to inf and inf / inf = NaN: subtract the maximum along `dim` "
    "before exponentiating": _softmax_unshifted,
    "forgot to divide by the sum: the entries along `dim` must add up to 1": _softmax_unnormalised,
}


def _check_softmax(softmax: Callable, cases: Sequence[Mapping[str, Any]]) -> None:
    check_function(softmax, basics.softmax, cases, name="softmax", mistakes=SOFTMAX_MISTAKES)


def check_softmax_values(softmax: Callable, cases: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Self-check of notebook 00's softmax: its values along any dim, against ``course_lib.basics.softmax``.

    With ``cases`` None: the visible checks, i.e. no ready-made softmax (``SOFTMAX_SHORTCUTS``), then a
    vector, and a 4x5 matrix along dim -1 and along dim 0.
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        forbid_reference(
            softmax, SOFTMAX_SHORTCUTS, example={"x": torch.randn(2, 3), "dim": -1}, name="softmax",
            instead="Build it from torch.exp, .amax and .sum.",
        )
        cases = [
            {"x": torch.tensor([1.0, 2.0, 3.0]), "dim": -1},
            {"x": torch.randn(4, 5, generator=g), "dim": -1},
            {"x": torch.randn(4, 5, generator=g), "dim": 0},
        ]
    _check_softmax(softmax, cases)


def check_softmax_stable(softmax: Callable, cases: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Self-check of notebook 00's softmax on large scores (exp would overflow without the max shift).

    With ``cases`` None: the visible case, scores around 1000.
    """
    if cases is None:
        cases = [{"x": torch.tensor([1000.0, 1001.0, 1002.0]), "dim": -1}]
    _check_softmax(softmax, cases)


CROSS_ENTROPY_SHORTCUTS = [
    "torch.nn.functional.cross_entropy",
    "torch.nn.functional.nll_loss",
    "torch.nn.functional.log_softmax",
    "torch.log_softmax",
    "torch.Tensor.log_softmax",
    "torch.special.log_softmax",
    "torch.logsumexp",
    "torch.Tensor.logsumexp",
    "course_lib.basics.cross_entropy",
    "course_lib.basics.log_softmax",
]


def _log_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log softmax(x) along ``dim``, written out as a student's cross_entropy does: x - m - log(sum(exp(x - m)))."""
    m = x.amax(dim=dim, keepdim=True)
    return x - m - torch.log(torch.exp(x - m).sum(dim=dim, keepdim=True))


def _pick(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_probs[n, targets[n]] for every row n: (N,)."""
    return log_probs.gather(1, targets.long().unsqueeze(1)).squeeze(1)


def _ce_summed(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -_pick(_log_softmax(logits, 1), targets).sum()


def _ce_no_minus(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _pick(_log_softmax(logits, 1), targets).mean()


def _ce_batch_axis(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -_pick(_log_softmax(logits, 0), targets).mean()


def _ce_wrong_index(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -_log_softmax(logits, 1)[:, targets].mean()


def _ce_log_of_softmax(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -torch.log(_pick(softmax(logits, 1), targets)).mean()


def _ce_log_of_unshifted_softmax(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    e = torch.exp(logits)
    return -torch.log(_pick(e / e.sum(1, keepdim=True), targets)).mean()


_LOG_OF_SOFTMAX = (
    "took log(softmax(x)): a tiny probability underflows to 0 (or exp overflows) and the log "
    "becomes inf. Compute log-softmax directly: x - m - log(sum(exp(x - m)))"
)

CROSS_ENTROPY_MISTAKES = {
    "summed over the batch instead of averaging: divide by N (`.mean()`)": _ce_summed,
    "forgot the minus sign: cross-entropy is the *negative* log-probability, so it is >= 0": _ce_no_minus,
    "normalised over the batch axis (dim=0) instead of the classes (dim=1)": _ce_batch_axis,
    "picked the wrong entries: take row n's entry at column targets[n] "
    "(`log_probs[torch.arange(N), targets]`), not `log_probs[:, targets]`": _ce_wrong_index,
    _LOG_OF_SOFTMAX: _ce_log_of_softmax,
    _LOG_OF_SOFTMAX + " (and subtract the max before exp)": _ce_log_of_unshifted_softmax,
}


def _check_cross_entropy(cross_entropy: Callable, cases: Sequence[Mapping[str, Any]]) -> None:
    check_function(
        cross_entropy, basics.cross_entropy, cases, name="cross_entropy", mistakes=CROSS_ENTROPY_MISTAKES
    )


def check_cross_entropy_values(cross_entropy: Callable, cases: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Self-check of notebook 00's cross_entropy: its values, against ``course_lib.basics.cross_entropy``.

    With ``cases`` None: the visible checks, i.e. no ready-made loss (``CROSS_ENTROPY_SHORTCUTS``), a 2x3
    and a random 6x4 batch, then uniform logits over 10 classes, whose loss must be log(10).
    """
    visible = cases is None
    if visible:
        g = torch.Generator().manual_seed(0)
        forbid_reference(
            cross_entropy, CROSS_ENTROPY_SHORTCUTS,
            example={"logits": torch.randn(3, 4), "targets": torch.tensor([0, 1, 3])}, name="cross_entropy",
            instead="Build log-softmax yourself with the log-sum-exp trick.",
        )
        cases = [
            {"logits": torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]), "targets": torch.tensor([0, 2])},
            {"logits": torch.randn(6, 4, generator=g), "targets": torch.randint(4, (6,), generator=g)},
        ]
    _check_cross_entropy(cross_entropy, cases)
    if visible:
        check_close(
            cross_entropy(torch.zeros(4, 10), torch.tensor([0, 3, 9, 5])), math.log(10),
            name="the loss of uniform logits over 10 classes", hint="it should be log(C) = log(10)",
        )


def check_cross_entropy_stable(cross_entropy: Callable, cases: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Self-check of notebook 00's cross_entropy on confident logits (log(softmax) would give inf).

    With ``cases`` None: the visible case, logits of +-300.
    """
    if cases is None:
        cases = [{"logits": torch.tensor([[300.0, 0.0, -300.0]]), "targets": torch.tensor([2])}]
    _check_cross_entropy(cross_entropy, cases)
