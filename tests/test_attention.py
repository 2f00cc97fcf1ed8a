"""course_lib.attention against independent references: torch's SDPA and nn.MultiheadAttention, and properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import attention as A
from course_lib.checks import attention as C

# ---------------------------------------------------------------------------
# scaled_dot_product_attention
# ---------------------------------------------------------------------------

SHAPES = [
    ((5, 4), (7, 4), (7, 3)),
    ((2, 5, 8), (2, 6, 8), (2, 6, 8)),
    ((2, 3, 4, 16), (2, 3, 9, 16), (2, 3, 9, 5)),
    ((1, 3, 4, 16), (2, 1, 4, 16), (2, 1, 4, 6)),  # broadcasting batch and head dims
]


@pytest.mark.parametrize(("sq", "sk", "sv"), SHAPES)
def test_sdpa_matches_torch_without_mask(sq, sk, sv):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(s, generator=g) for s in (sq, sk, sv))
    out, weights = A.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)
    assert weights.shape == (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


@pytest.mark.parametrize("seed", range(4))
def test_sdpa_matches_torch_with_boolean_masks(seed):
    g = torch.Generator().manual_seed(seed)
    B, H, Tq, Tk, d = 2, 3, 5, 6, 8
    q = torch.randn(B, H, Tq, d, generator=g)
    k, v = torch.randn(B, H, Tk, d, generator=g), torch.randn(B, H, Tk, 4, generator=g)
    masks = [
        torch.rand(B, H, Tq, Tk, generator=g) > 0.4,
        torch.rand(Tq, Tk, generator=g) > 0.5,
        torch.rand(B, 1, 1, Tk, generator=g) > 0.3,
    ]
    for mask in masks:
        mask = mask.clone()
        mask[..., 0] = True  # every row may attend somewhere: torch and we must agree exactly
        out, weights = A.scaled_dot_product_attention(q, k, v, mask)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-5)
        assert (weights[~mask.expand_as(weights)] == 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, Tq))


def test_sdpa_causal_matches_torch_is_causal():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 7, 16, generator=g) for _ in range(3))
    out, _ = A.scaled_dot_product_attention(q, k, v, A.causal_mask(7))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5, rtol=1e-5)


def test_causal_attention_ignores_the_future():
    g = torch.Generator().manual_seed(2)
    T = 9
    q, k, v = (torch.randn(2, T, 8, generator=g) for _ in range(3))
    out, _ = A.scaled_dot_product_attention(q, k, v, A.causal_mask(T))
    for i in range(T - 1):
        k2, v2, q2 = k.clone(), v.clone(), q.clone()
        k2[:, i + 1 :] = torch.randn_like(k2[:, i + 1 :])
        v2[:, i + 1 :] = 100 * torch.randn_like(v2[:, i + 1 :])
        q2[:, i + 1 :] = torch.randn_like(q2[:, i + 1 :])
        out2, _ = A.scaled_dot_product_attention(q2, k2, v2, A.causal_mask(T))
        torch.testing.assert_close(out2[:, : i + 1], out[:, : i + 1])
        assert not torch.allclose(out2[:, i + 1 :], out[:, i + 1 :])


def test_fully_masked_rows_give_zeros_not_nan_and_finite_gradients():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 8, generator=g, requires_grad=True)
    k = torch.randn(2, 5, 8, generator=g, requires_grad=True)
    v = torch.randn(2, 5, 3, generator=g, requires_grad=True)
    mask = torch.rand(2, 4, 5, generator=g) > 0.5
    mask[:, 0] = True
    mask[0, 2] = False  # one query that may attend to nothing
    out, weights = A.scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert (out[0, 2] == 0).all() and (weights[0, 2] == 0).all()
    rows = mask.any(-1)
    torch.testing.assert_close(weights.sum(-1)[rows], torch.ones(int(rows.sum())))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out[rows], ref[rows], atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_sdpa_rejects_bad_input():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="last dimension"):
        A.scaled_dot_product_attention(x, torch.randn(3, 5), torch.randn(3, 2))
    with pytest.raises(ValueError, match="number of keys"):
        A.scaled_dot_product_attention(x, x, torch.randn(2, 4))
    with pytest.raises(TypeError, match="torch.bool"):
        A.scaled_dot_product_attention(x, x, x, mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="broadcast"):
        A.scaled_dot_product_attention(x, x, x, mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        A.scaled_dot_product_attention(x.long(), x, x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        A.scaled_dot_product_attention([[1.0]], x, x)


# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------


def test_causal_mask():
    m = A.causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert all(bool(m[i, j]) == (j <= i) for i in range(4) for j in range(4))
    with pytest.raises(ValueError):
        A.causal_mask(0)
    with pytest.raises(TypeError):
        A.causal_mask(3.0)


def test_padding_mask():
    m = A.padding_mask(torch.tensor([3, 0, 5]), 5)
    assert m.dtype == torch.bool
    assert m.tolist() == [[True] * 3 + [False] * 2, [False] * 5, [True] * 5]
    with pytest.raises(ValueError, match="lie in"):
        A.padding_mask(torch.tensor([6]), 5)
    with pytest.raises(ValueError, match="integer"):
        A.padding_mask(torch.tensor([1.0]), 5)


def test_padding_mask_makes_padding_irrelevant():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 6, 8, generator=g)
    lengths = torch.tensor([4, 6])
    keys = A.padding_mask(lengths, 6)[:, None, :]  # (B, 1, T)
    out, _ = A.scaled_dot_product_attention(x, x, x, keys)
    y = x.clone()
    y[0, 4:] = 50 * torch.randn(2, 8, generator=g)
    out2, _ = A.scaled_dot_product_attention(y, y, y, keys)
    torch.testing.assert_close(out2[0, :4], out[0, :4])


# ---------------------------------------------------------------------------
# heads
# ---------------------------------------------------------------------------


def test_split_and_merge_heads_are_inverse_and_use_contiguous_slices():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 8)
    heads = A.split_heads(x, 4)
    assert heads.shape == (2, 4, 3, 2)
    torch.testing.assert_close(heads[1, 2, 0], x[1, 0, 4:6])
    torch.testing.assert_close(A.merge_heads(heads), x)
    with pytest.raises(ValueError, match="divisible"):
        A.split_heads(x, 3)
    with pytest.raises(ValueError, match="dimensions"):
        A.merge_heads(x)


@pytest.mark.parametrize(("D", "H", "Tq", "Tk"), [(8, 2, 5, 5), (12, 3, 4, 7), (16, 1, 3, 3)])
def test_multi_head_attention_matches_torch(D, H, Tq, Tk):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(D, H, batch_first=True)
    mha = C.attention_from_torch(ref)
    g = torch.Generator().manual_seed(5)
    query, memory = torch.randn(2, Tq, D, generator=g), torch.randn(2, Tk, D, generator=g)
    # cross-attention
    out, weights = mha(query, memory, memory)
    ref_out, ref_weights = ref(query, memory, memory, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)
    # self-attention with a causal mask (torch's mask convention is the opposite: True = blocked)
    out, weights = mha(query, mask=A.causal_mask(Tq))
    ref_out, ref_weights = ref(query, query, query, attn_mask=~A.causal_mask(Tq), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)
    # a padding mask over keys
    keep = A.padding_mask(torch.tensor([Tk, 2]), Tk)
    out, _ = mha(query, memory, mask=keep[:, None, None, :])
    ref_out, _ = ref(query, memory, memory, key_padding_mask=~keep)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("D", "H", "lengths", "causal"), [
    (8, 2, None, False), (8, 2, None, True), (12, 3, [6, 2, 4], False), (12, 3, [6, 1, 5], True), (16, 4, [3], True),
])
def test_self_attention_matches_torch_with_causal_and_padding_masks(D, H, lengths, causal):
    torch.manual_seed(2)
    ref = torch.nn.MultiheadAttention(D, H, batch_first=True)
    mha = C.attention_from_torch(ref)
    B, T = (1 if lengths is None else len(lengths)), 6
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(3))
    lengths = None if lengths is None else torch.tensor(lengths)
    with torch.no_grad():
        out, weights = A.self_attention(x, mha, lengths, causal)
        ref_out, ref_weights = ref(
            x, x, x, average_attn_weights=False,
            attn_mask=None if not causal else torch.ones(T, T, dtype=torch.bool).triu(1),  # True = blocked
            key_padding_mask=None if lengths is None else torch.arange(T) >= lengths[:, None],
        )
    assert out.shape == (B, T, D) and weights.shape == (B, H, T, T)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)


def test_self_attention_ignores_padding_and_the_future_and_empty_sequences_give_the_bias():
    torch.manual_seed(3)
    mha = A.MultiHeadAttention(8, 2)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 6, 8, generator=g)
    lengths = torch.tensor([4, 6])
    with torch.no_grad():
        out, weights = A.self_attention(x, mha, lengths, causal=True)
        y = x.clone()
        y[0, 4:] = 50 * torch.randn(2, 8, generator=g)  # new padding
        y[1, 3:] = torch.randn(3, 8, generator=g)  # a new future for positions 0 .. 2
        out2, _ = A.self_attention(y, mha, lengths, causal=True)
        torch.testing.assert_close(out2[0, :4], out[0, :4])
        torch.testing.assert_close(out2[1, :3], out[1, :3])
        assert (weights[0, :, :, 4:] == 0).all() and (weights.triu(1) == 0).all()
        empty, empty_weights = A.self_attention(x[:1], mha, torch.tensor([0]))
    assert (empty_weights == 0).all()
    torch.testing.assert_close(empty, mha.out_proj.bias.expand(1, 6, 8))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        A.self_attention(x, mha, torch.tensor([3]))


def test_sequence_model_runs_the_attention_it_is_given():
    calls = []

    def attention(x, attn, lengths=None, causal=False):
        calls.append((tuple(x.shape), causal))
        return A.self_attention(x, attn, lengths, causal)

    torch.manual_seed(0)
    model = A.SequenceModel(vocab=10, max_len=8, d_model=16, num_heads=2, num_layers=2, attention=attention)
    tokens = torch.randint(10, (3, 5))
    logits, maps = model(tokens, causal=True)
    assert calls == [((3, 5, 16), True)] * 2
    torch.manual_seed(0)
    default = A.SequenceModel(vocab=10, max_len=8, d_model=16, num_heads=2, num_layers=2)
    torch.testing.assert_close(default(tokens, causal=True)[0], logits)
    assert all((m.triu(1) == 0).all() for m in maps)


def test_self_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(1)
    mha = A.MultiHeadAttention(16, 4)
    x = torch.randn(2, 7, 16)
    perm = torch.randperm(7)
    out, _ = mha(x)
    out_perm, _ = mha(x[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=1e-5)
    # with positions added, the symmetry is gone
    pe = A.sinusoidal_positions(7, 16)
    out, _ = mha(x + pe)
    out_perm, _ = mha(x[:, perm] + pe)
    assert not torch.allclose(out_perm, out[:, perm], atol=1e-3)


def test_multi_head_attention_rejects_bad_input():
    with pytest.raises(ValueError, match="multiple"):
        A.MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        A.MultiHeadAttention(8, 2)(torch.randn(2, 3, 6))


# ---------------------------------------------------------------------------
# positions
# ---------------------------------------------------------------------------


def test_sinusoidal_positions_follow_the_paper():
    T, d = 6, 8
    pe = A.sinusoidal_positions(T, d)
    assert pe.shape == (T, d)
    for t in range(T):
        for i in range(d // 2):
            angle = t / 10000 ** (2 * i / d)
            assert math.isclose(pe[t, 2 * i].item(), math.sin(angle), abs_tol=1e-5)
            assert math.isclose(pe[t, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-5)
    with pytest.raises(ValueError, match="even"):
        A.sinusoidal_positions(4, 5)


def test_rotary_scores_depend_only_on_the_offset():
    g = torch.Generator().manual_seed(6)
    q, k = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)

    def score(s, t):
        rq = A.apply_rotary(q, torch.tensor([s]))
        rk = A.apply_rotary(k, torch.tensor([t]))
        return (rq @ rk.T).item()

    assert math.isclose(score(3, 1), score(10, 8), rel_tol=1e-4, abs_tol=1e-5)
    assert not math.isclose(score(3, 1), score(3, 2), rel_tol=1e-3)
    x = torch.randn(2, 5, 8, generator=g)
    torch.testing.assert_close(A.apply_rotary(x).norm(dim=-1), x.norm(dim=-1))  # rotations keep lengths


# ---------------------------------------------------------------------------
# the model and the task
# ---------------------------------------------------------------------------


def test_reversal_batch_and_model_shapes():
    x, y = A.reversal_batch(4, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, x.flip(1))
    model = A.SequenceModel(vocab=10, max_len=8, d_model=16, num_heads=2, num_layers=2)
    logits, maps = model(x)
    assert logits.shape == (4, 6, 10) and len(maps) == 2 and maps[0].shape == (4, 2, 6, 6)
    assert A.sequence_accuracy(torch.nn.functional.one_hot(y, 10).float(), y) == 1.0
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_model_learns_reversal_quickly():
    from course_lib.train import train

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = A.SequenceModel(vocab=10, max_len=8, d_model=32, num_heads=2, num_layers=1)
    x_val, y_val = A.reversal_batch(256, 6, generator=torch.Generator().manual_seed(1))

    def loss_fn(model, batch):
        x, y = batch
        return F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten())

    train(model, lambda step: A.reversal_batch(64, 6, generator=g), loss_fn, 200, lr=3e-3, progress=False)
    with torch.no_grad():
        assert A.sequence_accuracy(model(x_val)[0], y_val) > 0.9


# ---------------------------------------------------------------------------
# the notebook's catalogue of mistakes: each must really be wrong
# ---------------------------------------------------------------------------


def _sdpa_case(mask: bool):
    g = torch.Generator().manual_seed(7)
    case = {k: torch.randn(2, 5, 8, generator=g) for k in ("q", "k", "v")}
    if mask:
        m = torch.rand(2, 5, 5, generator=g) > 0.5
        m[..., 0] = True
        case["mask"] = m
    return case


@pytest.mark.parametrize("name", list(C.SDPA_MISTAKES))
def test_every_sdpa_mistake_differs_from_the_reference(name):
    wrong = C.SDPA_MISTAKES[name]
    results = [wrong(**_sdpa_case(m)) for m in (False, True)]
    refs = [A.scaled_dot_product_attention(**_sdpa_case(m)) for m in (False, True)]
    empty = _sdpa_case(True)
    empty["mask"][0, 1] = False
    results.append(wrong(**empty))
    refs.append(A.scaled_dot_product_attention(**empty))
    assert any(not torch.allclose(r[0], e[0], atol=1e-4, equal_nan=False) for r, e in zip(results, refs)), name


@pytest.mark.parametrize(
    ("table", "reference", "case"),
    [
        (C.CAUSAL_MASK_MISTAKES, A.causal_mask, {"T": 5}),
        (C.PADDING_MASK_MISTAKES, A.padding_mask, {"lengths": torch.tensor([2, 4, 0]), "T": 4}),
        (C.SPLIT_HEADS_MISTAKES, A.split_heads, {"x": torch.randn(2, 3, 8), "num_heads": 2}),
        (C.MERGE_HEADS_MISTAKES, A.merge_heads, {"x": torch.randn(2, 2, 3, 4)}),
        (C.POSITIONS_MISTAKES, A.sinusoidal_positions, {"T": 6, "d": 8}),
    ],
)
def test_every_other_mistake_differs_from_the_reference(table, reference, case):
    expected = reference(**case)
    for name, wrong in table.items():
        got = wrong(**case)
        assert got.shape != expected.shape or not torch.equal(got.to(expected.dtype), expected), name


# ---------------------------------------------------------------------------
# figures and the explorer (course_lib.viz, attention section)
# ---------------------------------------------------------------------------


def test_attention_figures_and_explorer():
    import matplotlib

    matplotlib.use("Agg")
    import ipywidgets
    import matplotlib.pyplot as plt

    from course_lib import viz

    w = torch.softmax(torch.randn(3, 4), -1)
    fig = viz.plot_attention(w, title="t", key_labels=list("abcd"), query_labels=list("xyz"), colorbar=True)
    assert fig.axes[0].get_title() == "t"
    with pytest.raises(ValueError, match="T_q, T_k"):
        viz.plot_attention(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="labels"):
        viz.plot_attention(w, key_labels=list("ab"))
    maps = [torch.softmax(torch.randn(2, 3, 4, 4), -1) for _ in range(2)]
    fig = viz.plot_attention_heads(maps, example=1)
    assert len(fig.axes) == 6
    explorer = viz.attention_explorer(maps, tokens=torch.zeros(2, 4, dtype=torch.long), targets=torch.ones(2, 4))
    assert isinstance(explorer, ipywidgets.interactive)
    assert [c.description for c in explorer.children[:-1]] == ["example", "layer", "head"]
    explorer.children[2].value = "mean"  # redraws without error
    with pytest.raises(ValueError, match="non-empty"):
        viz.attention_explorer([])
    plt.close("all")
