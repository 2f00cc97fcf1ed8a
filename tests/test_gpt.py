"""course_lib.gpt: causality, attention equal to torch's multi-head attention, the KV cache, the loss, sampling,
and (with the [hf] extra) identical logits to Hugging Face's GPT-2 with the same weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from envtools import oracle
from torch import nn

from course_lib.gpt import (
    GPT,
    CausalSelfAttention,
    GPTConfig,
    causal_mask_with_past,
    forward_with_cache,
    generate,
    lm_loss,
    sample_next_token,
)

CFG = GPTConfig(vocab_size=37, block_size=12, n_layer=2, n_head=4, n_embd=32)


def _model(seed: int = 0, cfg: GPTConfig = CFG) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg).eval()


def _tokens(B: int, T: int, seed: int = 1, vocab: int = CFG.vocab_size) -> torch.Tensor:
    return torch.randint(vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_weight_tying():
    model = _model()
    assert model(_tokens(3, 12)).shape == (3, 12, 37)
    assert model.lm_head.weight is model.wte.weight
    untied = sum(p.numel() for p in model.parameters())
    assert model.num_parameters() == untied  # parameters() lists the tied matrix once
    with pytest.raises(ValueError, match="exceed block_size=12"):
        model(_tokens(1, 13))
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(1, 3))


def test_hidden_states_are_what_the_lm_head_reads():
    model = _model()
    x = _tokens(3, 12)
    h, presents = model.hidden(x)
    assert len(presents) == CFG.n_layer and presents[0][0].shape == (3, CFG.n_head, 12, CFG.n_embd // CFG.n_head)
    assert h.shape == (3, 12, CFG.n_embd)
    torch.testing.assert_close(h @ model.wte.weight.T, model(x))  # tied head: logits = h E^T
    # LayerNorm output: zero mean, unit variance per position, before its affine part (identity at init).
    torch.testing.assert_close(h.mean(-1), torch.zeros(3, 12), atol=1e-5, rtol=0)
    # Causal: padding after position 5 leaves positions 0..5 unchanged.
    padded = x.clone()
    padded[:, 6:] = 0
    torch.testing.assert_close(model.hidden(padded)[0][:, :6], h[:, :6])
    with pytest.raises(ValueError, match="exceed block_size=12"):
        model.hidden(_tokens(1, 13))


def test_position_i_does_not_see_the_future():
    model = _model()
    x = _tokens(2, 12)
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 5) % 37
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@torch.no_grad()
def test_causal_self_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    attn = CausalSelfAttention(CFG).eval()
    mha = nn.MultiheadAttention(CFG.n_embd, CFG.n_head, batch_first=True).eval()
    mha.in_proj_weight.copy_(attn.qkv.weight)  # both stack the q, k, v projections in this order
    mha.in_proj_bias.copy_(attn.qkv.bias)
    mha.out_proj.weight.copy_(attn.proj.weight)
    mha.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 9, CFG.n_embd)
    future = torch.ones(9, 9, dtype=torch.bool).triu(diagonal=1)  # torch's convention: True = may not attend
    expected, _ = mha(x, x, x, attn_mask=future, need_weights=False)
    y, (k, v) = attn(x)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    assert k.shape == v.shape == (2, CFG.n_head, 9, CFG.n_embd // CFG.n_head)


def test_causal_mask_with_past():
    assert causal_mask_with_past(2, 3).tolist() == [[True] * 4 + [False], [True] * 5]


def test_cached_forward_equals_full_forward():
    model = _model()
    x = _tokens(2, 10)
    full = model(x)
    logits, past = forward_with_cache(model, x[:, :6])
    steps = [logits]
    for t in range(6, 10):
        logits, past = forward_with_cache(model, x[:, t : t + 1], past)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cached_and_uncached_generation_agree_token_for_token():
    model = _model()
    start = _tokens(2, 3)
    # 20 new tokens run past block_size=12, so the sliding window is exercised too
    cached = generate(model, start, 20, temperature=0, use_cache=True)
    plain = generate(model, start, 20, temperature=0, use_cache=False)
    assert torch.equal(cached, plain) and cached.shape == (2, 23)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(
        generate(model, start, 8, temperature=1.0, top_k=5, generator=g1, use_cache=True),
        generate(model, start, 8, temperature=1.0, top_k=5, generator=g2, use_cache=False),
    )


def test_cached_generation_rebuilds_the_window_like_the_uncached_loop_when_sampling():
    """Sampling past the window, and from a prompt longer than it: the same generator gives the same tokens."""
    model = _model()
    for start, n in ((_tokens(2, 3), 20), (_tokens(1, 15), 4), (_tokens(1, 3), 0)):
        runs = [
            generate(model, start, n, temperature=1.2, top_p=0.9, generator=torch.Generator().manual_seed(9),
                     use_cache=use_cache)
            for use_cache in (True, False)
        ]
        assert torch.equal(runs[0], runs[1]) and runs[0].shape == (start.shape[0], start.shape[1] + n)
        assert torch.equal(runs[0][:, : start.shape[1]], start)


def test_lm_loss_is_the_shifted_cross_entropy_and_starts_near_log_vocab():
    model = _model()
    x = _tokens(4, 12)
    logits = model(x)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 37), x[:, 1:].reshape(-1))
    torch.testing.assert_close(lm_loss(logits, x), expected)
    assert abs(lm_loss(logits, x).item() - math.log(37)) < 0.1  # an untrained model is nearly uniform
    manual = -sum(
        torch.log_softmax(logits[b, t], -1)[x[b, t + 1]] for b in range(4) for t in range(11)
    ) / (4 * 11)
    torch.testing.assert_close(lm_loss(logits, x), manual)
    with pytest.raises(ValueError):
        lm_loss(logits, x[:, :5])


def test_sampling_rules():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0, -1.0]])
    assert sample_next_token(logits, temperature=0).item() == 1
    g = torch.Generator().manual_seed(0)

    def many(**kw) -> set[int]:
        return set(sample_next_token(logits.repeat(2000, 1), generator=g, **kw).tolist())

    assert many(top_k=1) == {1}
    assert many(top_k=3) == {1, 2, 0}
    p = torch.softmax(logits, -1)[0]  # sorted: 1 (0.63), 2 (0.23), 0 (0.09), ...
    assert many(top_p=float(p[1]) - 0.01) == {1}
    assert many(top_p=float(p[1] + p[2]) - 0.01) == {1, 2}
    assert many(top_p=float(p[1] + p[2]) + 0.01) == {1, 2, 0}
    # temperature divides the logits before the softmax
    counts = torch.bincount(sample_next_token(logits.repeat(20000, 1), temperature=2.0, generator=g), minlength=5)
    torch.testing.assert_close(counts / 20000, torch.softmax(logits[0] / 2, -1), atol=0.015, rtol=0)
    with pytest.raises(ValueError):
        sample_next_token(logits, top_p=0.0)


def test_gpt_learns_a_repeating_sequence():
    cfg = GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=16)
    model = _model(cfg=cfg).train()
    seq = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = lm_loss(model(seq), seq)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert generate(model, seq[:, :2], 6, temperature=0).tolist() == seq.tolist()


def test_same_logits_as_hugging_face_gpt2():
    transformers = oracle("transformers")
    from course_lib.gpt import from_hf

    hf_config = transformers.GPT2Config(
        vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = from_hf(hf).eval()
    x = _tokens(2, 16, vocab=50)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-4, rtol=1e-4)


def test_sampling_explorer_builds_a_widget_and_draws():
    import matplotlib

    matplotlib.use("Agg")
    pytest.importorskip("ipywidgets")
    from course_lib import viz
    from course_lib.tokenizer import CharTokenizer

    tok = CharTokenizer("abcdefghij ")
    model = _model(cfg=GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8))
    explorer = viz.sampling_explorer(model, tok.encode, tok.decode, prompt="abc ", max_new_tokens=20)
    assert [w.description for w in explorer.children[:4]] == ["temperature", "top_k", "top_p", "seed"]
    for index, value in [(0, 0.0), (0, 1.5), (1, 3), (2, 0.5), (3, 7)]:  # each redraw must not raise
        explorer.children[index].value = value
    with pytest.raises(ValueError, match="prompt"):
        viz.sampling_explorer(model, tok.encode, tok.decode, prompt="")
