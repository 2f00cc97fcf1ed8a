"""PyTorch warm-up (notebook 00): softmax and cross-entropy from first principles.

Both appear in every later notebook: softmax turns attention scores into
weights and logits into next-token probabilities; cross-entropy is the loss of
the discriminator, the classifier and the language model.
"""

from __future__ import annotations

import torch


def _check_float_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along ``dim``: ``exp(x_i) / sum_j exp(x_j)``, stable for large inputs.

    Subtracting the maximum along ``dim`` first changes nothing mathematically
    (the factor ``exp(-m)`` cancels) but keeps every exponent <= 0, so
    ``exp`` never overflows.

    x: any shape, floating point. Returns a tensor of the same shape whose
    entries along ``dim`` are non-negative and sum to 1.
    """
    _check_float_tensor(x, "x")
    shifted = x - x.amax(dim=dim, keepdim=True)  # every entry <= 0 along dim
    exps = torch.exp(shifted)
    return exps / exps.sum(dim=dim, keepdim=True)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log softmax(x)`` computed as ``x - logsumexp(x)``, stable for large inputs."""
    _check_float_tensor(x, "x")
    m = x.amax(dim=dim, keepdim=True)
    log_sum_exp = m + torch.log(torch.exp(x - m).sum(dim=dim, keepdim=True))
    return x - log_sum_exp


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the target classes under ``softmax(logits)``.

    logits: (N, C) unnormalized scores, floating point.
    targets: (N,) integer class indices in [0, C).
    Returns a scalar tensor: ``mean_n -log softmax(logits_n)[targets_n]``.
    """
    _check_float_tensor(logits, "logits")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    if not isinstance(targets, torch.Tensor) or targets.dtype not in (torch.int64, torch.int32):
        raise TypeError("targets must be an integer tensor of class indices (dtype int64)")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"targets must have shape (N,) = ({logits.shape[0]},), got {tuple(targets.shape)}"
        )
    if targets.numel() and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(f"targets must lie in [0, {logits.shape[1]}), got {targets.tolist()}")
    log_probs = log_softmax(logits, dim=1)  # (N, C)
    picked = log_probs.gather(1, targets.long().unsqueeze(1)).squeeze(1)  # (N,)
    return -picked.mean()
