"""Shortcuts, common mistakes and self-checks for notebook 04 (attention, masks, heads, positions).

Each mistaken function below is what a student's answer computes when it
makes that mistake; ``grading.check_function`` names the one that matches.
Each ``check_<cell>`` function is one self-check cell of the notebook: called
without cases it runs the visible cases; the hidden cases stay in the notebook
and are passed in.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch import nn

from .. import attention as A
from ..attention import causal_mask, merge_heads, padding_mask, scaled_dot_product_attention, split_heads
from ..grading import CheckFailed, check_answer_rules, check_close, check_function, forbid_reference, substitute

Cases = Sequence[Mapping[str, Any]]

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
    "to 1, so use `dim=-1`, not `dim=-2` (Hint 2 above)": _sdpa_wrong_axis,
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
    "all-zero weights, e.g. `weights.nan_to_num(0.0)` (Hint 3 above)": _sdpa_nan_rows,
    "multiplied the transposed weights with v: the output is weights @ v, (T_q, T_k) @ (T_k, d_v)": (
        _sdpa_no_transpose_v
    ),
}


def _check_sdpa(attention_fn: Callable, cases: Cases, atol: float) -> None:
    check_function(
        attention_fn, A.scaled_dot_product_attention, cases,
        name="scaled_dot_product_attention", atol=atol, mistakes=SDPA_MISTAKES,
    )


def check_sdpa_values(scaled_dot_product_attention: Callable, cases: Cases | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 04's attention without a mask, with batch and head dimensions.

    Without ``cases``: the answer must not call a ready-made attention (``SDPA_SHORTCUTS``),
    then it is compared with course_lib's on a (T, d) and a batched (B, T, d) case.
    """
    if cases is None:
        g = torch.Generator().manual_seed(0)
        forbid_reference(
            scaled_dot_product_attention, SDPA_SHORTCUTS,
            example={"q": torch.randn(2, 3, 4), "k": torch.randn(2, 5, 4), "v": torch.randn(2, 5, 4)},
            name="scaled_dot_product_attention",
            instead="Build it from @, .transpose(-2, -1) and torch.softmax.",
        )
        cases = [
            {"q": torch.randn(3, 4, generator=g), "k": torch.randn(5, 4, generator=g),
             "v": torch.randn(5, 2, generator=g)},
            {"q": torch.randn(2, 4, 8, generator=g), "k": torch.randn(2, 6, 8, generator=g),
             "v": torch.randn(2, 6, 3, generator=g)},
        ]
    _check_sdpa(scaled_dot_product_attention, cases, atol)


def check_sdpa_mask(scaled_dot_product_attention: Callable, cases: Cases | None = None, atol: float = 1e-5) -> None:
    """Self-check of notebook 04's attention with boolean masks.

    Without ``cases``: a random mask (every query keeps key 0), a causal mask and a padding
    mask over the keys, compared with course_lib's attention.
    """
    if cases is None:
        g = torch.Generator().manual_seed(1)
        some_keys = torch.rand(2, 4, 6, generator=g) > 0.5
        some_keys[..., 0] = True  # every query may attend to at least one key
        cases = [
            {"q": torch.randn(2, 4, 8, generator=g), "k": torch.randn(2, 6, 8, generator=g),
             "v": torch.randn(2, 6, 3, generator=g), "mask": some_keys},
            {"q": torch.randn(2, 5, 4, generator=g), "k": torch.randn(2, 5, 4, generator=g),
             "v": torch.randn(2, 5, 4, generator=g), "mask": A.causal_mask(5)},
            {"q": torch.randn(2, 3, 4, generator=g), "k": torch.randn(2, 5, 4, generator=g),
             "v": torch.randn(2, 5, 2, generator=g), "mask": A.padding_mask(torch.tensor([5, 2]), 5)[:, None, :]},
        ]
    _check_sdpa(scaled_dot_product_attention, cases, atol)


def check_sdpa_empty_rows(
    scaled_dot_product_attention: Callable, cases: Cases | None = None, atol: float = 1e-5
) -> None:
    """Self-check of notebook 04's attention: a query that may attend to nothing gets zeros, not NaN.

    Without ``cases``: one (3, 3) mask whose second row is all False.
    """
    if cases is None:
        g = torch.Generator().manual_seed(2)
        nothing_for_query_1 = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
        cases = [
            {"q": torch.randn(3, 4, generator=g), "k": torch.randn(3, 4, generator=g),
             "v": torch.randn(3, 2, generator=g), "mask": nothing_for_query_1},
        ]
    _check_sdpa(scaled_dot_product_attention, cases, atol)

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


def _require_bool(got: Any, message: str) -> None:
    """Fail with ``message`` and the dtype found unless ``got`` is a torch.bool tensor."""
    if not isinstance(got, torch.Tensor) or got.dtype != torch.bool:
        found = getattr(got, "dtype", type(got).__name__)
        raise CheckFailed(message.format(found=found))


def check_causal_mask(causal_mask: Callable, cases: Cases | None = None) -> None:
    """Self-check of notebook 04's causal_mask: a lower-triangular torch.bool (T, T) tensor.

    Without ``cases``: no call of course_lib's causal_mask, a bool dtype, then T = 1 and T = 4.
    """
    if cases is None:
        forbid_reference(causal_mask, CAUSAL_SHORTCUTS, example={"T": 3}, name="causal_mask")
        _require_bool(
            causal_mask(4),
            "causal_mask(4) should be a torch.bool tensor, got {found}. Masks are boolean: True = may attend.",
        )
        cases = [{"T": 1}, {"T": 4}]
    check_function(causal_mask, A.causal_mask, cases, name="causal_mask", mistakes=CAUSAL_MASK_MISTAKES)


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


def check_padding_mask(padding_mask: Callable, cases: Cases | None = None) -> None:
    """Self-check of notebook 04's padding_mask: a torch.bool (B, T) tensor, True where t < length.

    Without ``cases``: no call of course_lib's padding_mask, a bool dtype, then two batches of lengths.
    """
    if cases is None:
        forbid_reference(
            padding_mask, PADDING_SHORTCUTS, example={"lengths": torch.tensor([1, 2]), "T": 3}, name="padding_mask"
        )
        _require_bool(
            padding_mask(torch.tensor([2, 3]), 4), "padding_mask should return a torch.bool tensor, got {found}."
        )
        cases = [{"lengths": torch.tensor([3, 1, 4]), "T": 4}, {"lengths": torch.tensor([2]), "T": 5}]
    check_function(padding_mask, A.padding_mask, cases, name="padding_mask", mistakes=PADDING_MASK_MISTAKES)

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
    "view as (B, T, H, dh) first, then `.transpose(1, 2)` (Hint 1 above)": _split_no_transpose,
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


def check_split_heads(split_heads: Callable, cases: Cases | None = None) -> None:
    """Self-check of notebook 04's split_heads: (B, T, D) -> (B, H, T, D // H), contiguous slices per head.

    Without ``cases``: no call of course_lib's head functions, then an arange input and a random one.
    """
    if cases is None:
        g = torch.Generator().manual_seed(3)
        forbid_reference(
            split_heads, HEADS_SHORTCUTS, example={"x": torch.randn(1, 2, 4), "num_heads": 2}, name="split_heads"
        )
        cases = [
            {"x": torch.arange(24.0).view(1, 3, 8), "num_heads": 2},
            {"x": torch.randn(2, 5, 12, generator=g), "num_heads": 3},
        ]
    check_function(split_heads, A.split_heads, cases, name="split_heads", mistakes=SPLIT_HEADS_MISTAKES)


def check_merge_heads(merge_heads: Callable, cases: Cases | None = None) -> None:
    """Self-check of notebook 04's merge_heads: (B, H, T, dh) -> (B, T, H * dh), heads in order.

    Without ``cases``: no call of course_lib's head functions, then an arange input and a random one.
    """
    if cases is None:
        g = torch.Generator().manual_seed(4)
        forbid_reference(merge_heads, HEADS_SHORTCUTS, example={"x": torch.randn(1, 2, 3, 2)}, name="merge_heads")
        cases = [{"x": torch.arange(24.0).view(1, 2, 3, 4)}, {"x": torch.randn(2, 3, 5, 4, generator=g)}]
    check_function(merge_heads, A.merge_heads, cases, name="merge_heads", mistakes=MERGE_HEADS_MISTAKES)


@torch.no_grad()
def attention_from_torch(mha: nn.MultiheadAttention) -> A.MultiHeadAttention:
    """A :class:`MultiHeadAttention` with the weights of a ``torch.nn.MultiheadAttention(D, H, batch_first=True)``.

    torch keeps the q, k and v projections stacked in ``in_proj_weight`` (3D, D); ours are three Linears.
    """
    if mha.in_proj_weight is None:
        raise ValueError("only MultiheadAttention with equal q/k/v dimensions (one in_proj_weight) is supported")
    D, H = mha.embed_dim, mha.num_heads
    ours = A.MultiHeadAttention(D, H, bias=mha.in_proj_bias is not None)
    for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
        proj.weight.copy_(mha.in_proj_weight[i * D : (i + 1) * D])
        if proj.bias is not None:
            proj.bias.copy_(mha.in_proj_bias[i * D : (i + 1) * D])
    ours.out_proj.weight.copy_(mha.out_proj.weight)
    if ours.out_proj.bias is not None:
        ours.out_proj.bias.copy_(mha.out_proj.bias)
    return ours


def _compare_with_torch(
    split_heads: Callable, merge_heads: Callable, D: int, H: int, T_q: int, T_k: int, seed: int
) -> None:
    torch.manual_seed(seed)
    theirs = torch.nn.MultiheadAttention(D, H, batch_first=True)
    projections = attention_from_torch(theirs)
    query, memory = torch.randn(2, T_q, D), torch.randn(2, T_k, D)
    hint = "your split_heads / merge_heads pass the shape checks but put features in the wrong heads or order"

    def attend(query, key, value, mask=None):
        """Multi-head attention with the projections, split into heads and merged back by the answer's functions."""
        q = split_heads(projections.q_proj(query), H)  # (B, H, T_q, dh)
        k = split_heads(projections.k_proj(key), H)  # (B, H, T_k, dh)
        v = split_heads(projections.v_proj(value), H)
        out, weights = A.scaled_dot_product_attention(q, k, v, mask)  # (B, H, T_q, dh), (B, H, T_q, T_k)
        return projections.out_proj(merge_heads(out)), weights

    with torch.no_grad():
        out, weights = attend(query, memory, memory)  # cross-attention
        expected_out, expected_weights = theirs(query, memory, memory, average_attn_weights=False)
        check_close(out, expected_out, name=f"cross-attention output (D={D}, H={H})", hint=hint)
        check_close(weights, expected_weights, name=f"cross-attention weights (D={D}, H={H})", hint=hint)
        causal = A.causal_mask(T_q)  # self-attention; torch's mask means the opposite: True = blocked
        out, _ = attend(query, query, query, mask=causal)
        expected_out, _ = theirs(query, query, query, attn_mask=~causal)
        check_close(out, expected_out, name=f"causal self-attention output (D={D}, H={H})", hint=hint)
        keep = A.padding_mask(torch.tensor([T_k, max(1, T_k - 2)]), T_k)
        out, _ = attend(query, memory, memory, mask=keep[:, None, None, :])
        expected_out, _ = theirs(query, memory, memory, key_padding_mask=~keep)
        check_close(out, expected_out, name=f"padded cross-attention output (D={D}, H={H})", hint=hint)


def check_multi_head_attention(
    split_heads: Callable, merge_heads: Callable, configs: Sequence[Mapping[str, int]] | None = None
) -> None:
    """Self-check of notebook 04: multi-head attention built from the answer's split and merge equals torch's.

    Each config (keys D, H, T_q, T_k, seed) seeds torch, builds a ``torch.nn.MultiheadAttention(D, H)``,
    copies its weights into course_lib's projections, and compares cross-attention (output and
    per-head weights), causal self-attention and padded cross-attention with torch's.
    Without ``configs``: D=8, H=2, T_q=4, T_k=5, seed 0.
    """
    for config in configs or [{"D": 8, "H": 2, "T_q": 4, "T_k": 5, "seed": 0}]:
        _compare_with_torch(split_heads, merge_heads, **config)


# ---------------------------------------------------------------------------
# synthesis: multi-head self-attention of a padded batch, causal or not
# ---------------------------------------------------------------------------


class _Projections(A.MultiHeadAttention):
    """course_lib's multi-head projections with seeded weights, described in one line in a check's message."""

    def __init__(self, d_model: int, num_heads: int, seed: int) -> None:
        super().__init__(d_model, num_heads)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():  # the global random generator stays untouched
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(d_model))

    def __repr__(self) -> str:
        return f"MultiHeadAttention(d_model={self.d_model}, num_heads={self.num_heads})"


def _mask(T: int, lengths: torch.Tensor | None, causal: bool, keys_index=(slice(None), None, None, slice(None)),
          combine=torch.logical_and) -> torch.Tensor | None:
    """The attention mask, with the padding mask indexed by ``keys_index`` and combined by ``combine``."""
    mask = causal_mask(T) if causal else None
    if lengths is not None:
        keys = padding_mask(lengths, T)[keys_index]
        mask = keys if mask is None else combine(mask, keys)
    return mask


def _heads(x, attn, mask, project=True, average=False):
    q, k, v = (split_heads(p(x), attn.num_heads) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    merged = merge_heads(out)
    return (attn.out_proj(merged) if project else merged), (weights.mean(1) if average else weights)


def _sa_no_causal(x, attn, lengths=None, causal=False):
    return _heads(x, attn, _mask(x.shape[1], lengths, False))


def _sa_no_padding(x, attn, lengths=None, causal=False):
    return _heads(x, attn, _mask(x.shape[1], None, causal))


def _sa_padding_on_queries(x, attn, lengths=None, causal=False):
    return _heads(x, attn, _mask(x.shape[1], lengths, causal, keys_index=(slice(None), None, slice(None), None)))


def _sa_padding_without_head_axis(x, attn, lengths=None, causal=False):
    return _heads(x, attn, _mask(x.shape[1], lengths, causal, keys_index=(slice(None), None, slice(None))))


def _sa_masks_or(x, attn, lengths=None, causal=False):
    return _heads(x, attn, _mask(x.shape[1], lengths, causal, combine=torch.logical_or))


def _sa_no_out_proj(x, attn, lengths=None, causal=False):
    return _heads(x, attn, _mask(x.shape[1], lengths, causal), project=False)


def _sa_averaged_weights(x, attn, lengths=None, causal=False):
    return _heads(x, attn, _mask(x.shape[1], lengths, causal), average=True)


SELF_ATTENTION_MISTAKES = {
    "the causal mask is missing: with causal=True, query i may attend to keys j <= i only": _sa_no_causal,
    "the padding mask is missing: with lengths given, the keys t >= lengths[b] of sequence b are padding, "
    "hidden from every query": _sa_no_padding,
    "the padding mask hides padded *queries* (rows) instead of padded *keys* (columns): the (B, T) mask "
    "belongs on the last axis of the scores, shape (B, 1, 1, T)": _sa_padding_on_queries,
    "the padding mask lacks the head axis: (B, 1, T) lines up with the scores (B, H, T, T) as (1, B, 1, T), "
    "so the batch axis lands on the heads; use (B, 1, 1, T) (Hint 2 above)": _sa_padding_without_head_axis,
    "combined the masks with `|` (or): a key must pass both masks, causal *and* padding": _sa_masks_or,
    "the output projection is missing: apply attn.out_proj to the merged heads": _sa_no_out_proj,
    "the weights are averaged over the heads (torch's default): return one map per head, (B, H, T, T)": (
        _sa_averaged_weights
    ),
}

SELF_ATTENTION_SHORTCUTS = [
    "course_lib.attention.self_attention",
    "course_lib.attention.MultiHeadAttention.forward",
    "torch.nn.MultiheadAttention.forward",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.functional.scaled_dot_product_attention",
]

SELF_ATTENTION_CONFIGS = [
    {"B": 2, "T": 5, "D": 8, "H": 2, "lengths": None, "causal": False, "seed": 0},
    {"B": 2, "T": 5, "D": 8, "H": 2, "lengths": None, "causal": True, "seed": 1},
    {"B": 2, "T": 5, "D": 8, "H": 2, "lengths": [5, 3], "causal": False, "seed": 2},
    {"B": 3, "T": 6, "D": 12, "H": 3, "lengths": [6, 2, 4], "causal": True, "seed": 3},
]


def self_attention_case(B: int, T: int, D: int, H: int, lengths: Sequence[int] | None, causal: bool, seed: int):
    """The keyword arguments of one ``self_attention`` call: x (B, T, D), seeded projections, lengths, causal."""
    g = torch.Generator().manual_seed(1000 + seed)
    return {
        "x": torch.randn(B, T, D, generator=g),
        "attn": _Projections(D, H, seed),
        "lengths": None if lengths is None else torch.tensor(lengths),
        "causal": causal,
    }


# course_lib's versions of the notebook's earlier answers: bound in the notebook's namespace while the synthesis
# and the debug exercise are checked, so a slip in an earlier exercise is not counted twice.
EARLIER_ANSWERS = {
    "scaled_dot_product_attention": A.scaled_dot_product_attention,
    "causal_mask": A.causal_mask,
    "padding_mask": A.padding_mask,
    "split_heads": A.split_heads,
    "merge_heads": A.merge_heads,
}


def check_self_attention(
    self_attention: Callable,
    namespace: MutableMapping[str, Any],
    configs: Sequence[Mapping[str, Any]] | None = None,
    atol: float = 1e-5,
) -> None:
    """Self-check of notebook 04's synthesis: multi-head self-attention of a padded batch, causal or not.

    Runs with course_lib's attention, masks and head functions bound in ``namespace`` (the notebook's
    ``globals()``), so a slip in an earlier exercise is not counted twice. Each config (keys B, T, D, H,
    lengths, causal, seed; see :func:`self_attention_case`) is compared, output and per-head weights,
    with course_lib's :func:`~course_lib.attention.self_attention`. Without ``configs``: no ready-made
    multi-head attention (``SELF_ATTENTION_SHORTCUTS``), then ``SELF_ATTENTION_CONFIGS``.
    """
    with substitute(namespace, **EARLIER_ANSWERS), torch.no_grad():
        if configs is None:
            forbid_reference(
                self_attention, SELF_ATTENTION_SHORTCUTS, example=self_attention_case(**SELF_ATTENTION_CONFIGS[3]),
                name="self_attention",
                instead="Build it from the projections of attn, split_heads, causal_mask and padding_mask, "
                "scaled_dot_product_attention and merge_heads.",
            )
            configs = SELF_ATTENTION_CONFIGS
        check_function(
            self_attention, A.self_attention, [self_attention_case(**config) for config in configs],
            name="self_attention", atol=atol, mistakes=SELF_ATTENTION_MISTAKES,
        )


# ---------------------------------------------------------------------------
# debug: a colleague's MultiHeadAttention, with the heads merged without a transpose and the wrong scale
# ---------------------------------------------------------------------------


class _MHA(nn.Module):
    """MultiHeadAttention as notebook 04's debug exercise writes it; each mistake below gets its forward wrong."""

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.d_model = d_model
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def attend(self, query, key, value, mask, scale):
        """Project, split into heads (right), attend with scores q k^T / scale: (B, H, T_q, dh), (B, H, T_q, T_k)."""
        key = query if key is None else key
        value = key if value is None else value
        B, T_q, D = query.shape
        H, dh = self.num_heads, D // self.num_heads
        q = self.q_proj(query).view(B, T_q, H, dh).transpose(1, 2)
        k = self.k_proj(key).view(B, key.shape[1], H, dh).transpose(1, 2)
        v = self.v_proj(value).view(B, value.shape[1], H, dh).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        return weights @ v, weights


class _MHAMergedByReshape(_MHA):
    def forward(self, query, key=None, value=None, mask=None):
        out, weights = self.attend(query, key, value, mask, math.sqrt(self.d_model // self.num_heads))
        B, H, T_q, dh = out.shape
        return self.out_proj(out.reshape(B, T_q, H * dh)), weights


class _MHAScaledByWidth(_MHA):
    def forward(self, query, key=None, value=None, mask=None):
        out, weights = self.attend(query, key, value, mask, math.sqrt(self.d_model))
        B, H, T_q, dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, T_q, H * dh)), weights


class _MHAMergedLastAxesSwapped(_MHA):
    def forward(self, query, key=None, value=None, mask=None):
        out, weights = self.attend(query, key, value, mask, math.sqrt(self.d_model // self.num_heads))
        B, H, T_q, dh = out.shape
        return self.out_proj(out.transpose(-2, -1).reshape(B, T_q, H * dh)), weights


class _MHAMergedFeatureByFeature(_MHA):
    def forward(self, query, key=None, value=None, mask=None):
        out, weights = self.attend(query, key, value, mask, math.sqrt(self.d_model // self.num_heads))
        B, H, T_q, dh = out.shape
        return self.out_proj(out.permute(0, 2, 3, 1).reshape(B, T_q, H * dh)), weights


class _MHANoScale(_MHA):
    def forward(self, query, key=None, value=None, mask=None):
        out, weights = self.attend(query, key, value, mask, 1.0)
        B, H, T_q, dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, T_q, H * dh)), weights


class _MHAScaledByHeadSize(_MHA):
    def forward(self, query, key=None, value=None, mask=None):
        out, weights = self.attend(query, key, value, mask, self.d_model // self.num_heads)
        B, H, T_q, dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, T_q, H * dh)), weights


def mha_output(
    cls: type,
    d_model: int,
    num_heads: int,
    seed: int,
    query: torch.Tensor,
    key: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    zero_queries: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cls(d_model, num_heads)`` with seeded weights (q_proj zero if ``zero_queries``), run on query (B, T_q, D)
    and key = value (B, T_k, D), or on query alone (self-attention) when ``key`` is None; returns its
    ``(output, weights)``. The global random generator is left as it was."""
    check_answer_rules(cls)
    weights = _Projections(d_model, num_heads, seed).state_dict()
    if zero_queries:  # every score is 0: each query weighs the keys it may see equally, whatever the scale
        weights = {name: p.zero_() if name.startswith("q_proj.") else p for name, p in weights.items()}
    with torch.random.fork_rng(devices=[]):
        module = cls(d_model, num_heads)
    missing = set(weights) - set(module.state_dict())
    if missing:
        raise ValueError(f"the module has no parameters named {sorted(missing)}: keep q_proj, k_proj, v_proj, out_proj")
    module.load_state_dict(weights)
    with torch.no_grad():
        return module(query, mask=mask) if key is None else module(query, key, key, mask=mask)


def _output_of(cls: type) -> Callable:
    """A mistaken class as the check sees a class: its output on a case (:func:`mha_output`)."""
    return functools.partial(mha_output, cls)


# Each description says what is observably wrong (against the equation and the contract) and where to look,
# and points to the part of the hints that covers it: 'After the softmax' (the merge), 'Before the softmax' (the
# scale); no description says what the right code is. A merge mistake is first caught on case 1, whose weights
# are uniform whatever the scale (hence "on this case the attention weights are right", true of the code as shipped).
_AFTER = "(Hint 1 above, 'After the softmax')"
_BEFORE = "(Hint 1 above, 'Before the softmax')"
_WHERE_MERGED = "look at what happens to the heads' results between the attention and `out_proj`"
_WHERE_SCALED = "look at how the scores are scaled"

MHA_FORWARD_MISTAKES = {
    "on this case the attention weights are right, yet the output at a query position is built partly from the "
    "results of other positions, later ones included (hence the leak past a causal mask); with one head the "
    f"output is right: {_WHERE_MERGED} {_AFTER}": _output_of(_MHAMergedByReshape),
    "every head's attention weights are flatter (closer to uniform over the keys a query may see) than the "
    "equation's, while with one head they are right: "
    f"{_WHERE_SCALED} {_BEFORE}": _output_of(_MHAScaledByWidth),
    "on this case the attention weights are right, yet the output at a query position is built partly from the "
    "results of other positions, later ones included (a leak past a causal mask), and it is wrong with one head "
    f"too: {_WHERE_MERGED} {_AFTER}": _output_of(_MHAMergedLastAxesSwapped),
    "on this case the attention weights are right and each position's output depends on its own results only "
    "(no leak), yet it differs: the features that reach `out_proj` are not laid out as the equation's "
    "[head_1, ..., head_H]; with one head the output is right: "
    f"{_WHERE_MERGED} {_AFTER}": _output_of(_MHAMergedFeatureByFeature),
    "every head's attention weights are more peaked (further from uniform) than the equation's, with one head "
    f"too: {_WHERE_SCALED} {_BEFORE}": _output_of(_MHANoScale),
    "every head's attention weights are flatter (closer to uniform over the keys a query may see) than the "
    f"equation's, with one head too: {_WHERE_SCALED} {_BEFORE}": _output_of(_MHAScaledByHeadSize),
}

MHA_FORWARD_SHORTCUTS = [
    "course_lib.attention.MultiHeadAttention.forward",
    "course_lib.attention.self_attention",
    "torch.nn.MultiheadAttention.forward",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.functional.scaled_dot_product_attention",
]

# The first case gives every query equal weights (q_proj is zero), so it tests the bookkeeping of heads and
# positions alone; the second the scores as well; then cross-attention with a padded (and an empty) memory,
# and one head.
MHA_FORWARD_CONFIGS = [
    {"B": 2, "T_q": 5, "D": 8, "H": 2, "mask": "causal", "zero_queries": True, "seed": 0},
    {"B": 2, "T_q": 5, "D": 8, "H": 2, "mask": "causal", "seed": 1},
    {"B": 2, "T_q": 4, "T_k": 6, "D": 12, "H": 3, "mask": "padding", "lengths": [6, 0], "seed": 2},
    {"B": 1, "T_q": 3, "D": 6, "H": 1, "seed": 3},
]


def mha_case(
    B: int,
    T_q: int,
    D: int,
    H: int,
    seed: int,
    T_k: int | None = None,
    mask: str | None = None,
    lengths: Sequence[int] | None = None,
    zero_queries: bool = False,
) -> dict[str, Any]:
    """The keyword arguments of one :func:`mha_output` call (minus ``cls``).

    Self-attention of a (B, T_q, D) query when ``T_k`` is None, else cross-attention to a (B, T_k, D) memory.
    mask: None, ``"causal"`` (a (T_q, T_q) causal mask, self-attention) or ``"padding"`` (a (B, 1, 1, T_k)
    mask hiding the keys t >= lengths[b]).
    """
    g = torch.Generator().manual_seed(2000 + seed)
    query = torch.randn(B, T_q, D, generator=g)
    key = None if T_k is None else torch.randn(B, T_k, D, generator=g)
    if mask == "causal":
        attend = causal_mask(T_q)  # (T_q, T_q)
    elif mask == "padding":
        attend = padding_mask(torch.tensor(lengths), T_q if T_k is None else T_k)[:, None, None, :]  # (B, 1, 1, T_k)
    else:
        attend = None
    return {"d_model": D, "num_heads": H, "seed": seed, "query": query, "key": key, "mask": attend,
            "zero_queries": zero_queries}


def check_mha_forward(
    MultiHeadAttention: type,
    namespace: MutableMapping[str, Any],
    configs: Sequence[Mapping[str, Any]] | None = None,
    atol: float = 1e-5,
) -> None:
    """Self-check of notebook 04's debug exercise: the colleague's ``MultiHeadAttention``, fixed.

    The class is built for each config (see :func:`mha_case`), given course_lib's seeded weights and compared,
    output and per-head weights, with course_lib's :class:`~course_lib.attention.MultiHeadAttention`. It runs
    with course_lib's attention, masks and head functions bound in ``namespace`` (the notebook's ``globals()``),
    so a fix that calls the notebook's own is not failed for a slip in an earlier exercise. Without
    ``configs``: no ready-made multi-head attention (``MHA_FORWARD_SHORTCUTS``), then ``MHA_FORWARD_CONFIGS``.
    """
    yours = functools.partial(mha_output, MultiHeadAttention)
    with substitute(namespace, **EARLIER_ANSWERS):
        if configs is None:
            forbid_reference(
                yours, MHA_FORWARD_SHORTCUTS, example=mha_case(**MHA_FORWARD_CONFIGS[1]), name="MultiHeadAttention",
                instead="Fix the forward pass you were given (or write it from the projections, split_heads, "
                "scaled_dot_product_attention and merge_heads).",
            )
            configs = MHA_FORWARD_CONFIGS
        check_function(
            yours, functools.partial(mha_output, A.MultiHeadAttention), [mha_case(**c) for c in configs],
            name="MultiHeadAttention", atol=atol, mistakes=MHA_FORWARD_MISTAKES,
        )


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


def check_sinusoidal_positions(sinusoidal_positions: Callable, cases: Cases | None = None, atol: float = 1e-4) -> None:
    """Self-check of notebook 04's sinusoidal_positions against Vaswani et al. (2017)'s encodings.

    Without ``cases``: no call of course_lib's version, then (T, d) = (4, 6) and (10, 16).
    """
    if cases is None:
        forbid_reference(
            sinusoidal_positions, POSITIONS_SHORTCUTS, example={"T": 3, "d": 4}, name="sinusoidal_positions"
        )
        cases = [{"T": 4, "d": 6}, {"T": 10, "d": 16}]
    check_function(
        sinusoidal_positions, A.sinusoidal_positions, cases,
        name="sinusoidal_positions", atol=atol, mistakes=POSITIONS_MISTAKES,
    )

__all__ = [
    "CAUSAL_MASK_MISTAKES",
    "CAUSAL_SHORTCUTS",
    "HEADS_SHORTCUTS",
    "MHA_FORWARD_CONFIGS",
    "MHA_FORWARD_MISTAKES",
    "MHA_FORWARD_SHORTCUTS",
    "MERGE_HEADS_MISTAKES",
    "PADDING_MASK_MISTAKES",
    "PADDING_SHORTCUTS",
    "POSITIONS_MISTAKES",
    "POSITIONS_SHORTCUTS",
    "SDPA_MISTAKES",
    "SDPA_SHORTCUTS",
    "SELF_ATTENTION_CONFIGS",
    "SELF_ATTENTION_MISTAKES",
    "SELF_ATTENTION_SHORTCUTS",
    "SPLIT_HEADS_MISTAKES",
    "attention_from_torch",
    "check_causal_mask",
    "check_merge_heads",
    "check_mha_forward",
    "check_multi_head_attention",
    "check_padding_mask",
    "check_sdpa_empty_rows",
    "check_sdpa_mask",
    "check_sdpa_values",
    "check_self_attention",
    "check_sinusoidal_positions",
    "check_split_heads",
    "mha_case",
    "mha_output",
    "self_attention_case",
]
