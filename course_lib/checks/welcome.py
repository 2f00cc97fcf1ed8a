"""Shortcuts and common mistakes for notebook 00 (softmax, cross-entropy).

Each mistaken function below is what a student's answer computes when it
makes that mistake; ``grading.check_function`` names the one that matches.
"""

from __future__ import annotations

import torch

from ..basics import log_softmax, softmax

SOFTMAX_SHORTCUTS = [
    "torch.softmax",
    "torch.nn.functional.softmax",
    "torch.Tensor.softmax",
    "torch.special.softmax",
    "course_lib.basics.softmax",
]


def _softmax_other_axis(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    last = dim in (-1, x.dim() - 1)
    return softmax(x, dim=0 if last else -1)


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


def _pick(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_probs[n, targets[n]] for every row n: (N,)."""
    return log_probs.gather(1, targets.long().unsqueeze(1)).squeeze(1)


def _ce_summed(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -_pick(log_softmax(logits, 1), targets).sum()


def _ce_no_minus(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _pick(log_softmax(logits, 1), targets).mean()


def _ce_batch_axis(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -_pick(log_softmax(logits, 0), targets).mean()


def _ce_wrong_index(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -log_softmax(logits, 1)[:, targets].mean()


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
