"""A small GPT (Radford et al. 2019), in the order you would explain it (notebook 05).

Config -> causal self-attention with a key/value cache (notebook 04's
``split_heads`` and ``merge_heads`` around :func:`attention_with_past`) -> MLP
-> pre-LayerNorm block -> the model (token + position embeddings, blocks, final
LayerNorm, a language-model head tied to the token embedding). Then the
objective (:func:`lm_loss`), sampling (:func:`sample_next_token`,
:func:`generate`) and loading Hugging Face GPT-2 weights.

``model(idx)`` gives logits; :func:`forward_with_cache` gives logits and the
cache, and continues from one; ``model.hidden(idx, past)`` is what both run.

Shapes: B batch, T time (tokens), C channels (``n_embd``), H heads, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import merge_heads, split_heads
from .train import eval_mode

KV = tuple[torch.Tensor, torch.Tensor]  # keys and values of one layer: (B, H, T_past, C // H) each


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 64  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")


def causal_mask_with_past(T: int, T_past: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T_past + T) bool: query i (absolute position T_past + i) may attend keys 0 .. T_past + i."""
    return torch.ones(T, T_past + T, dtype=torch.bool, device=device).tril(diagonal=T_past)


def attention_with_past(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: KV | None = None, dropout_p: float = 0.0
) -> tuple[torch.Tensor, KV]:
    """Causal attention of T new queries over the cached past and the new keys (the KV-cache step).

    q, k, v: (B, H, T, d) for the T new positions; past: None, or the keys and
    values of the T_past earlier positions, each (B, H, T_past, d). The new keys
    and values are appended after the past ones (along the time axis, dim 2);
    new query i sits at absolute position T_past + i, so it may attend to keys
    0 .. T_past + i. Returns the output (B, H, T, d) and the updated cache
    (keys, values), each (B, H, T_past + T, d).

    The attention itself is notebook 04's softmax(q k^T / sqrt(d)) v, computed by
    PyTorch's fused kernel (tests/test_attention.py proves course_lib's
    ``scaled_dot_product_attention`` equal to it); ``dropout_p`` drops attention
    weights while training.
    """
    if past is not None:
        k = torch.cat([past[0], k], dim=2)  # (B, H, T_past + T, d)
        v = torch.cat([past[1], v], dim=2)
    T = q.shape[2]
    mask = causal_mask_with_past(T, k.shape[2] - T, q.device)  # (T, T_past + T)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)  # (B, H, T, d)
    return y, (k, v)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t only.

    One linear layer makes queries, keys and values at once (``qkv``, as GPT-2's
    ``c_attn``); ``past`` holds this layer's keys and values of earlier tokens.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        """x (B, T, C) -> output (B, T, C) and the keys/values so far, each (B, H, T_past + T, C // H)."""
        q, k, v = self.qkv(x).split(x.shape[2], dim=2)  # 3 x (B, T, C)
        q, k, v = (split_heads(t, self.n_head) for t in (q, k, v))  # (B, H, T, C // H)
        y, present = attention_with_past(q, k, v, past, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(merge_heads(y)), present  # (B, T, C)


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU -> C (GPT-2's tanh-approximated GELU)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        a, present = self.attn(self.ln_1(x), past)
        x = x + a  # the residual goes *around* the sublayer
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # the tied matrix counts once

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> next-token logits (B, T, V)."""
        h, _ = self.hidden(idx)  # (B, T, C)
        return self.lm_head(h)

    def hidden(self, idx: torch.Tensor, past: list[KV] | None = None) -> tuple[torch.Tensor, list[KV]]:
        """Token ids (B, T) -> final hidden states (B, T, C), the input of ``lm_head``, and each layer's cache.

        ``past`` holds each layer's keys/values of the T_past tokens before
        ``idx``; the new tokens sit at positions T_past .. T_past + T - 1.
        Position t has seen tokens 0..t only (causal), so padding after a text
        never changes the states of the text's own positions.
        """
        _check_idx(self, idx, past)
        T_past = past[0][0].shape[2] if past else 0
        pos = torch.arange(T_past, T_past + idx.shape[1], device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        presents = []
        for i, block in enumerate(self.blocks):
            x, present = block(x, past[i] if past else None)
            presents.append(present)
        return self.ln_f(x), presents


def _check_idx(model: GPT, idx: torch.Tensor, past: list[KV] | None = None) -> None:
    """Raise ValueError unless idx is (B, T) int64 and the past plus T tokens fit in the context."""
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.dim() != 2:
        raise ValueError(f"idx must be a (B, T) int64 tensor, got {getattr(idx, 'shape', type(idx))}")
    T_past = past[0][0].shape[2] if past else 0
    if T_past + idx.shape[1] > model.config.block_size:
        raise ValueError(f"{T_past} past + {idx.shape[1]} new tokens exceed block_size={model.config.block_size}")


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of logits computed on ``tokens``, with the shift made explicit.

    logits: (B, T, V), the model's output for tokens (B, T). The logits at
    position t predict token t + 1, so they are scored against
    ``tokens[:, 1:]`` and the last position (which has no next token) is
    dropped: the mean is over B * (T - 1) predictions. Returns a scalar.
    """
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, T, V) and tokens (B, T); got {tuple(logits.shape)} and {tuple(tokens.shape)}"
        )
    if tokens.shape[1] < 2:
        raise ValueError("need at least 2 tokens per sequence: one to read, one to predict")
    predictions = logits[:, :-1, :]  # (B, T-1, V): what each position says comes next
    targets = tokens[:, 1:]  # (B, T-1): what actually came next
    return F.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1))


def next_token_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution :func:`sample_next_token` draws from: (B, V) logits -> (B, V) probabilities.

    ``temperature`` divides the logits before the softmax (0 means greedy: all
    the mass on the arg-max). ``top_k`` keeps the k largest logits; ``top_p``
    keeps the smallest set of tokens, most likely first, whose probabilities
    add up to at least p (nucleus sampling, Holtzman et al. 2020), computed
    after the temperature and top-k. Everything else gets probability 0.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V), got {tuple(logits.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        drop_sorted = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # the mass before this token is enough
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.softmax(logits, dim=-1)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of ``logits`` (B, V) -> (B,), drawn from :func:`next_token_probs`.

    ``temperature`` divides the logits before the softmax (0 means greedy:
    the arg-max). ``top_k`` keeps the k largest logits; ``top_p`` keeps the
    smallest set of tokens, most likely first, whose probabilities add up to
    at least p (nucleus sampling, Holtzman et al. 2020). Everything else gets
    probability 0.
    """
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def forward_with_cache(model: GPT, idx: torch.Tensor, past: list[KV] | None = None) -> tuple[torch.Tensor, list[KV]]:
    """Logits (B, T, V) for the T new tokens ``idx`` and every layer's cache, continuing from ``past``.

    The new tokens sit at absolute positions T_past .. T_past + T - 1, where
    T_past = ``past[0][0].shape[2]`` (0 without a past), so their position
    embeddings continue where the cached tokens stopped (notebook 05's exercise).
    """
    h, presents = model.hidden(idx, past)  # (B, T, C), each layer's keys/values
    return model.lm_head(h), presents


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens: (B, T + max_new_tokens).

    With ``use_cache`` each step feeds only the newest token and reuses the
    keys/values of the earlier ones. When the context would exceed
    ``block_size``, both paths keep the last ``block_size`` tokens (the cache is
    rebuilt from that window).
    """
    block = model.config.block_size
    past: list[KV] | None = None
    with eval_mode(model):
        for _ in range(max_new_tokens):
            if use_cache and past is not None and past[0][0].shape[2] < block:
                logits, past = forward_with_cache(model, idx[:, -1:], past)
            elif use_cache:
                logits, past = forward_with_cache(model, idx[:, -block:])
            else:
                logits = model(idx[:, -block:])
            next_id = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, next_id[:, None]], dim=1)
    return idx


# --------------------------------------------------------------------------
# Hugging Face GPT-2 weights
# --------------------------------------------------------------------------


def config_from_hf(hf_config) -> GPTConfig:
    """A GPTConfig matching a ``transformers.GPT2Config``."""
    return GPTConfig(
        vocab_size=hf_config.vocab_size,
        block_size=hf_config.n_positions,
        n_layer=hf_config.n_layer,
        n_head=hf_config.n_head,
        n_embd=hf_config.n_embd,
    )


@torch.no_grad()
def load_hf_state_dict(model: GPT, state_dict: Mapping[str, torch.Tensor]) -> GPT:
    """Copy a ``GPT2LMHeadModel`` state dict into ``model``.

    GPT-2 stores its linear layers as ``Conv1D`` with weights shaped (in, out):
    they are transposed into ``nn.Linear``'s (out, in).
    """
    sd = {k.removeprefix("transformer."): v for k, v in state_dict.items()}
    c = model.config
    if sd["wte.weight"].shape != (c.vocab_size, c.n_embd) or sd["wpe.weight"].shape[0] != c.block_size:
        raise ValueError(
            f"weights are for vocab {tuple(sd['wte.weight'].shape)} and {sd['wpe.weight'].shape[0]} positions; "
            f"the model has vocab_size={c.vocab_size}, n_embd={c.n_embd}, block_size={c.block_size}"
        )
    model.wte.weight.copy_(sd["wte.weight"])
    model.wpe.weight.copy_(sd["wpe.weight"])
    for i, block in enumerate(model.blocks):
        p = f"h.{i}."
        pairs = [
            (block.ln_1.weight, sd[p + "ln_1.weight"], False),
            (block.ln_1.bias, sd[p + "ln_1.bias"], False),
            (block.attn.qkv.weight, sd[p + "attn.c_attn.weight"], True),
            (block.attn.qkv.bias, sd[p + "attn.c_attn.bias"], False),
            (block.attn.proj.weight, sd[p + "attn.c_proj.weight"], True),
            (block.attn.proj.bias, sd[p + "attn.c_proj.bias"], False),
            (block.ln_2.weight, sd[p + "ln_2.weight"], False),
            (block.ln_2.bias, sd[p + "ln_2.bias"], False),
            (block.mlp.fc.weight, sd[p + "mlp.c_fc.weight"], True),
            (block.mlp.fc.bias, sd[p + "mlp.c_fc.bias"], False),
            (block.mlp.proj.weight, sd[p + "mlp.c_proj.weight"], True),
            (block.mlp.proj.bias, sd[p + "mlp.c_proj.bias"], False),
        ]
        for ours, theirs, transpose in pairs:
            ours.copy_(theirs.t() if transpose else theirs)
    model.ln_f.weight.copy_(sd["ln_f.weight"])
    model.ln_f.bias.copy_(sd["ln_f.bias"])
    return model


def from_hf(hf_model) -> GPT:
    """A GPT with the weights of a ``transformers.GPT2LMHeadModel`` (any size, e.g. a real ``gpt2``)."""
    model = GPT(config_from_hf(hf_model.config))
    return load_hf_state_dict(model, hf_model.state_dict())
