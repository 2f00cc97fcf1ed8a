"""Shortcuts and common mistakes for notebook 04 (attention, masks, heads, positions).

Each mistaken function below is what a student's answer computes when it
makes that mistake; ``grading.check_function`` names the one that matches.
"""

from __future__ import annotations

import math

import torch

SDPA_SHORTCUTS = [
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward",
    "course_lib.attention.scaled_dot_product_attention",
]


def _attend(scores: torch.Tensor, v: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.softmax(scores, dim=dim)
    return weights @ v, weights


def _masked(scores: torch.Tensor, mask: torch.Tensor | None, fill: float = float("-inf")) -> torch.Tensor:
    return scores if mask is None else scores.masked_fill(~mask, fill)


def _safe(scores: torch.Tensor, mask: torch.Tensor | None, v: torch.Tensor, dim: int = -1):
    """Softmax, then all-zero weights for rows that may attend to nothing (as the reference does)."""
    weights = torch.softmax(scores, dim=dim).nan_to_num(0.0)
    return weights @ v, weights


def _sdpa_wrong_axis(q, k, v, mask=None):
    scores = _masked(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), mask)
    return _safe(scores, mask, v, dim=-2)


def _sdpa_no_scale(q, k, v, mask=None):
    return _safe(_masked(q @ k.transpose(-2, -1), mask), mask, v)


def _sdpa_scale_by_d(q, k, v, mask=None):
    return _safe(_masked(q @ k.transpose(-2, -1) / q.shape[-1], mask), mask, v)


def _sdpa_scale_by_sqrt_tk(q, k, v, mask=None):
    return _safe(_masked(q @ k.transpose(-2, -1) / math.sqrt(k.shape[-2]), mask), mask, v)


def _sdpa_inverted_mask(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return _safe(_masked(scores, None if mask is None else ~mask), mask, v)


def _sdpa_mask_with_zero(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return _safe(_masked(scores, mask, fill=0.0), mask, v)


def _sdpa_mask_after_softmax(q, k, v, mask=None):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ v, weights


def _sdpa_nan_rows(q, k, v, mask=None):
    return _attend(_masked(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), mask), v)


def _sdpa_no_transpose_v(q, k, v, mask=None):
    out, weights = _safe(_masked(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), mask), mask, v)
    return weights.transpose(-2, -1) @ v, weights


SDPA_MISTAKES = {
    "softmax over the wrong axis: each *query's* weights (a row, the last axis, the keys) must sum "
    "to 1, so use `dim=-1`, not `dim=-2`": _sdpa_wrong_axis,
    "missing scale: divide the scores q @ k^T by sqrt(d), where d = q.shape[-1]": _sdpa_no_scale,
    "wrong scale: divide by sqrt(d) (`math.sqrt(q.shape[-1])`), not by d": _sdpa_scale_by_d,
    "wrong scale: d is the feature size q.shape[-1], not the number of keys": _sdpa_scale_by_sqrt_tk,
    "inverted mask: True means *may attend*, so fill the scores where the mask is False "
    "(`scores.masked_fill(~mask, float('-inf'))`)": _sdpa_inverted_mask,
    "masked with 0 instead of -inf: exp(0) = 1, so a masked key still gets weight; fill masked "
    "scores with float('-inf') *before* the softmax": _sdpa_mask_with_zero,
    "masked after the softmax: the weights that remain no longer sum to 1; set masked scores to "
    "-inf *before* the softmax instead": _sdpa_mask_after_softmax,
    "a query that may attend to nothing got NaN (softmax of a row of -inf is 0/0): give such rows "
    "all-zero weights, e.g. `weights.nan_to_num(0.0)`": _sdpa_nan_rows,
    "multiplied the transposed weights with v: the output is weights @ v, (T_q, T_k) @ (T_k, d_v)": (
        _sdpa_no_transpose_v
    ),
}

# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------


def _causal_upper(T):
    return torch.ones(T, T, dtype=torch.bool).triu()


def _causal_strict(T):
    return torch.ones(T, T, dtype=torch.bool).tril(-1)


CAUSAL_MASK_MISTAKES = {
    "inverted: query i (row i) may attend to keys j <= i, which is the *lower* triangle (`torch.tril`), "
    "not the upper one": _causal_upper,
    "the diagonal is missing: a position may attend to itself (j <= i, not j < i)": _causal_strict,
}

CAUSAL_SHORTCUTS = ["course_lib.attention.causal_mask"]


def _padding_inverted(lengths, T):
    return torch.arange(T) >= lengths[:, None]


def _padding_off_by_one(lengths, T):
    return torch.arange(T) <= lengths[:, None]


PADDING_MASK_MISTAKES = {
    "inverted: True marks the *real* tokens (positions t < length), the ones that may be attended to": (
        _padding_inverted
    ),
    "off by one: a sequence of length n has real tokens at positions 0 .. n-1 (t < n, not t <= n)": (
        _padding_off_by_one
    ),
}

PADDING_SHORTCUTS = ["course_lib.attention.padding_mask"]

# ---------------------------------------------------------------------------
# heads
# ---------------------------------------------------------------------------


def _split_no_transpose(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, num_heads, T, D // num_heads)


def _split_interleaved(x, num_heads):
    B, T, D = x.shape
    return x.view(B, T, D // num_heads, num_heads).permute(0, 3, 1, 2)


SPLIT_HEADS_MISTAKES = {
    "reshaped (B, T, D) straight to (B, H, T, dh): that mixes features of different tokens; "
    "view as (B, T, H, dh) first, then `.transpose(1, 2)`": _split_no_transpose,
    "heads interleaved: head h owns the contiguous features h*dh .. (h+1)*dh - 1, so view as "
    "(B, T, H, dh), not (B, T, dh, H)": _split_interleaved,
}


def _merge_no_transpose(x):
    B, H, T, dh = x.shape
    return x.reshape(B, T, H * dh)


def _merge_wrong_order(x):
    B, H, T, dh = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, H * dh)


MERGE_HEADS_MISTAKES = {
    "reshaped (B, H, T, dh) straight to (B, T, D): that mixes tokens; `.transpose(1, 2)` to "
    "(B, T, H, dh) first, then reshape": _merge_no_transpose,
    "heads merged in the wrong order: the features must be head 0's dh values, then head 1's, ... "
    "(permute to (B, T, H, dh), not (B, T, dh, H))": _merge_wrong_order,
}

HEADS_SHORTCUTS = ["course_lib.attention.split_heads", "course_lib.attention.merge_heads"]

# ---------------------------------------------------------------------------
# positions
# ---------------------------------------------------------------------------


def _angles(T, d, exponent_scale=2.0):
    t = torch.arange(T, dtype=torch.float32)[:, None]
    i = torch.arange(d // 2, dtype=torch.float32)
    return t / 10000 ** (exponent_scale * i / d)


def _pe_swapped(T, d):
    a = _angles(T, d)
    pe = torch.empty(T, d)
    pe[:, 0::2], pe[:, 1::2] = torch.cos(a), torch.sin(a)
    return pe


def _pe_concatenated(T, d):
    a = _angles(T, d)
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


def _pe_exponent_i(T, d):
    a = _angles(T, d, exponent_scale=1.0)
    pe = torch.empty(T, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(a), torch.cos(a)
    return pe


def _pe_times_base(T, d):
    t = torch.arange(T, dtype=torch.float32)[:, None]
    a = t * 10000 ** (2 * torch.arange(d // 2, dtype=torch.float32) / d)
    pe = torch.empty(T, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(a), torch.cos(a)
    return pe


POSITIONS_MISTAKES = {
    "sin and cos swapped: sines go in the even columns (0, 2, 4, ...) and cosines in the odd ones": _pe_swapped,
    "sines and cosines concatenated as two halves: they interleave, sin in column 2i and cos in "
    "column 2i+1": _pe_concatenated,
    "wrong frequencies: the exponent is 2i/d (with i = 0 .. d/2-1), i.e. `torch.arange(0, d, 2) / d`": (
        _pe_exponent_i
    ),
    "multiplied by 10000^(2i/d) instead of dividing: the frequencies must *decrease* along the "
    "columns": _pe_times_base,
}

POSITIONS_SHORTCUTS = ["course_lib.attention.sinusoidal_positions"]

__all__ = [
    "CAUSAL_MASK_MISTAKES",
    "MERGE_HEADS_MISTAKES",
    "PADDING_MASK_MISTAKES",
    "POSITIONS_MISTAKES",
    "SDPA_MISTAKES",
    "SDPA_SHORTCUTS",
    "SPLIT_HEADS_MISTAKES",
]
