"""Attention, the transformer's core: scaled dot-product attention, masks, heads and positions.

Read top to bottom, this module follows notebook 04:

1. :func:`scaled_dot_product_attention` — ``softmax(q k^T / sqrt(d)) v`` with an
   optional boolean mask (Vaswani et al. 2017, "Attention Is All You Need").
2. :func:`causal_mask` and :func:`padding_mask` — which keys a query may see.
3. :func:`split_heads`, :func:`merge_heads` and :class:`MultiHeadAttention`;
   :func:`self_attention` puts the pieces together (causal and padding masks).
4. :func:`sinusoidal_positions` (and rotary embeddings, :func:`apply_rotary`).
5. A small attention model and a synthetic task that needs attention
   (reversing a sequence), used by the notebook's experiment.

Conventions, shared with :func:`torch.nn.functional.scaled_dot_product_attention`:

- a mask is boolean and ``True`` means *may attend*; it broadcasts against the
  scores ``(..., T_q, T_k)``;
- a query row whose mask is all ``False`` (it may attend to nothing) gets
  weights of all zeros and an output of zeros, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

# --------------------------------------------------------------------------
# 1. Scaled dot-product attention
# --------------------------------------------------------------------------


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of queries over keys, returning ``(output, weights)``.

    q: (..., T_q, d) queries; k: (..., T_k, d) keys; v: (..., T_k, d_v) values.
    The leading dimensions (batch, heads) must broadcast.
    mask: optional bool tensor broadcastable to (..., T_q, T_k); True = may attend.
    Returns output (..., T_q, d_v) and weights (..., T_q, T_k), where
    ``weights = softmax(q k^T / sqrt(d) with masked scores set to -inf)`` along
    the keys and ``output = weights @ v``. A query that may attend to no key
    gets all-zero weights and an all-zero output (not NaN).
    """
    _check_attention_inputs(q, k, v, mask)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    if mask is None:
        weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k): each row sums to 1
        return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)
    scores = scores.masked_fill(~mask, float("-inf"))
    # A query that may attend to no key would have a row of -inf, whose softmax is 0/0 = NaN (in the
    # gradient too): such rows get finite scores, then weights of zero.
    attends = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1)
    weights = torch.softmax(scores.masked_fill(~attends, 0.0), dim=-1) * attends
    return weights @ v, weights


def _check_tensor(x: object, name: str, min_dim: int = 2) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions (..., T, d), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def _check_attention_inputs(q: object, k: object, v: object, mask: object) -> None:
    """Clear errors for what scaled_dot_product_attention cannot take (shapes as in its docstring)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_tensor(x, name)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension d, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys T_k, got {k.shape[-2]} and {v.shape[-2]}")
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a boolean torch.Tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool (True = may attend), got {mask.dtype}")
    scores_shape = (*torch.broadcast_shapes(q.shape[:-1], k.shape[:-2] + (1,)), k.shape[-2])
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast against the scores {tuple(scores_shape)}"
        ) from None


# --------------------------------------------------------------------------
# 2. Masks
# --------------------------------------------------------------------------


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The (T, T) bool mask of a left-to-right model: query i may attend to keys j <= i.

    Lower-triangular True, diagonal included (``mask[i, j] = j <= i``).
    """
    if not isinstance(T, int) or isinstance(T, bool):
        raise TypeError(f"T must be an int, got {type(T).__name__}")
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """Which positions of a padded batch hold real tokens.

    lengths: (B,) integer lengths, each in [0, T]; T: the padded length.
    Returns a (B, T) bool tensor with ``mask[b, t] = t < lengths[b]``.
    As an attention mask over keys, use ``mask[:, None, :]`` for scores
    (B, T_q, T) or ``mask[:, None, None, :]`` for scores (B, H, T_q, T).
    """
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"lengths must be a torch.Tensor, got {type(lengths).__name__}")
    if lengths.dim() != 1 or lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be a 1-D integer tensor (B,), got {lengths.dtype} {tuple(lengths.shape)}")
    if not isinstance(T, int) or isinstance(T, bool) or T < 0:
        raise ValueError(f"T must be a non-negative int, got {T!r}")
    if len(lengths) and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"lengths must lie in [0, T={T}], got {lengths.tolist()}")
    return torch.arange(T, device=lengths.device) < lengths[:, None]  # (B, T)


# --------------------------------------------------------------------------
# 3. Multi-head attention
# --------------------------------------------------------------------------


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, H, T, D // H): head h gets features h*dh ... (h+1)*dh - 1."""
    _check_heads_input(x, "(B, T, D)", num_heads)
    B, T, D = x.shape
    return x.view(B, T, num_heads, D // num_heads).transpose(1, 2)  # (B, H, T, dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, dh) -> (B, T, H * dh), the inverse of :func:`split_heads`."""
    _check_heads_input(x, "(B, H, T, dh)")
    B, H, T, dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * dh)  # (B, T, D)


def _check_heads_input(x: object, shape: str, num_heads: int | None = None) -> None:
    """Clear errors for what split_heads / merge_heads cannot take: ``x`` must be a float tensor of ``shape``."""
    dims = shape.count(",") + 1
    _check_tensor(x, "x", min_dim=dims)
    if x.dim() != dims:
        raise ValueError(f"x must have shape {shape}, got {tuple(x.shape)}")
    if num_heads is not None and (num_heads < 1 or x.shape[-1] % num_heads):
        raise ValueError(f"D={x.shape[-1]} must be divisible by num_heads={num_heads}")


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017): H attentions side by side on slices of D.

    ``forward(query, key=None, value=None, mask=None)`` takes query (B, T_q, D)
    and key, value (B, T_k, D) (both default to ``query``: self-attention).
    mask: bool, broadcastable to (B, H, T_q, T_k), True = may attend; a (T_q, T_k)
    causal mask or a (B, 1, 1, T_k) padding mask both work.
    Returns output (B, T_q, D) and weights (B, H, T_q, T_k).

    The projections ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` are
    ``nn.Linear(D, D)``; head h uses output features h*dh ... (h+1)*dh - 1,
    the layout of :class:`torch.nn.MultiheadAttention`.
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        if d_model < 1 or num_heads < 1 or d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be a positive multiple of num_heads={num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = query if key is None else key
        value = key if value is None else value
        for name, x in (("query", query), ("key", key), ("value", value)):
            _check_tensor(x, name, min_dim=3)
            if x.dim() != 3 or x.shape[-1] != self.d_model:
                raise ValueError(f"{name} must have shape (B, T, {self.d_model}), got {tuple(x.shape)}")
        q = split_heads(self.q_proj(query), self.num_heads)  # (B, H, T_q, dh)
        k = split_heads(self.k_proj(key), self.num_heads)  # (B, H, T_k, dh)
        v = split_heads(self.v_proj(value), self.num_heads)  # (B, H, T_k, dh)
        out, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T_q, dh), (B, H, T_q, T_k)
        return self.out_proj(merge_heads(out)), weights


def self_attention(
    x: torch.Tensor,
    attn: MultiHeadAttention,
    lengths: torch.Tensor | None = None,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head self-attention of a padded batch, with an optional causal mask.

    x: (B, T, D); attn: holds ``num_heads`` and the projections ``q_proj``, ``k_proj``,
    ``v_proj``, ``out_proj`` (``nn.Linear(D, D)``), e.g. a :class:`MultiHeadAttention`.
    lengths: None (no padding) or (B,) integers in [0, T]: positions t >= lengths[b]
    of sequence b are padding, and no query attends to them.
    causal: when True, query i attends to keys j <= i only.
    Returns output (B, T, D) and the per-head weights (B, H, T, T). A query left with
    no key (lengths[b] = 0) gets zero weights, so its output is ``out_proj`` of zeros.
    """
    _check_tensor(x, "x", min_dim=3)
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, T, D), got {tuple(x.shape)}")
    B, T, D = x.shape
    mask = causal_mask(T, device=x.device) if causal else None  # (T, T)
    if lengths is not None:
        if lengths.shape != (B,):
            raise ValueError(f"lengths must have shape (B,) = ({B},), got {tuple(lengths.shape)}")
        keys = padding_mask(lengths, T)[:, None, None, :]  # (B, 1, 1, T): the same keys for every head and query
        mask = keys if mask is None else mask & keys  # (B, 1, T, T)
    q = split_heads(attn.q_proj(x), attn.num_heads)  # (B, H, T, dh)
    k = split_heads(attn.k_proj(x), attn.num_heads)
    v = split_heads(attn.v_proj(x), attn.num_heads)
    out, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, dh), (B, H, T, T)
    return attn.out_proj(merge_heads(out)), weights


# --------------------------------------------------------------------------
# 4. Positions
# --------------------------------------------------------------------------


def sinusoidal_positions(T: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """The (T, d) sinusoidal position encodings of Vaswani et al. (2017).

    ``PE[t, 2i] = sin(t / base^(2i/d))`` and ``PE[t, 2i+1] = cos(t / base^(2i/d))``
    for i = 0 .. d/2 - 1: sines in the even columns, cosines in the odd ones.
    d must be even.
    """
    for name, value in (("T", T), ("d", d)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if T < 1 or d < 2 or d % 2:
        raise ValueError(f"need T >= 1 and an even d >= 2, got T={T}, d={d}")
    t = torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
    freq = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)  # (d/2,)
    angles = t * freq  # (T, d/2)
    pe = torch.empty(T, d)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe


def apply_rotary(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, "RoFormer"), applied to queries or keys.

    x: (..., T, d) with d even; positions: (T,) (default 0 .. T-1).
    Each pair of features (2i, 2i+1) is rotated by the angle ``t / base^(2i/d)``,
    so that ``rotary(q)_s . rotary(k)_t`` depends on the positions only through s - t.
    """
    _check_tensor(x, "x", min_dim=2)
    T, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"the last dimension must be even, got {d}")
    if positions is None:
        positions = torch.arange(T, device=x.device)
    freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)  # (d/2,)
    angles = positions.to(torch.float32)[:, None] * freq  # (T, d/2)
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x_even * cos - x_odd * sin
    out[..., 1::2] = x_even * sin + x_odd * cos
    return out


# --------------------------------------------------------------------------
# 5. A small attention model and a task that needs attention
# --------------------------------------------------------------------------


SelfAttention = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""``(x, attn, lengths=None, causal=False) -> (output, weights)``, like :func:`self_attention`."""


def reversal_batch(
    batch_size: int, length: int = 8, vocab: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random digit sequences and their reversals: x, y both (batch_size, length) int64."""
    if batch_size < 1 or length < 1 or vocab < 2:
        raise ValueError(f"need batch_size >= 1, length >= 1, vocab >= 2; got {batch_size}, {length}, {vocab}")
    x = torch.randint(vocab, (batch_size, length), generator=generator)
    return x, x.flip(1)


class AttentionBlock(nn.Module):
    """A pre-LayerNorm transformer block: x + attention(LN(x)), then x + MLP(LN(x)). x: (B, T, D).

    ``attention`` computes the self-attention, with the signature of :func:`self_attention`
    (the default); notebook 04 passes the student's own.
    """

    def __init__(
        self, d_model: int, num_heads: int, mlp_ratio: int = 4, attention: SelfAttention | None = None
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.attention = attention or self_attention
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(), nn.Linear(mlp_ratio * d_model, d_model)
        )

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, causal: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.attention(self.ln1(x), self.attn, lengths=lengths, causal=causal)
        x = x + out
        return x + self.mlp(self.ln2(x)), weights


class SequenceModel(nn.Module):
    """Token embedding + sinusoidal positions -> attention blocks -> per-position logits.

    ``forward(tokens, lengths=None, causal=False)`` with tokens (B, T) int64 returns
    logits (B, T, vocab) and the attention weights of every layer, a list of
    (B, H, T, T) tensors; ``lengths`` and ``causal`` go to every block's attention
    (see :func:`self_attention`). ``use_positions=False`` drops the position
    encodings (the model is then blind to order). ``attention``: the self-attention
    function of every block (default :func:`self_attention`).
    """

    def __init__(
        self,
        vocab: int = 10,
        max_len: int = 16,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        use_positions: bool = True,
        attention: SelfAttention | None = None,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.use_positions = use_positions
        self.blocks = nn.ModuleList(
            AttentionBlock(d_model, num_heads, attention=attention) for _ in range(num_layers)
        )
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None, causal: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if tokens.dim() != 2 or tokens.is_floating_point():
            raise ValueError(f"tokens must be an integer tensor (B, T), got {tokens.dtype} {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if T > self.positions.shape[0]:
            raise ValueError(f"sequence length {T} exceeds max_len={self.positions.shape[0]}")
        x = self.embed(tokens)  # (B, T, D)
        if self.use_positions:
            x = x + self.positions[:T]
        maps = []
        for block in self.blocks:
            x, weights = block(x, lengths, causal)
            maps.append(weights)
        return self.head(self.ln(x)), maps


def sequence_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of sequences whose every position is predicted right. logits (B, T, V), targets (B, T)."""
    return (logits.argmax(-1) == targets).all(dim=1).float().mean().item()


__all__ = [
    "AttentionBlock",
    "MultiHeadAttention",
    "SequenceModel",
    "apply_rotary",
    "causal_mask",
    "merge_heads",
    "padding_mask",
    "reversal_batch",
    "scaled_dot_product_attention",
    "self_attention",
    "sequence_accuracy",
    "sinusoidal_positions",
    "split_heads",
]
