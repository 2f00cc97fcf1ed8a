"""Mistake submissions for 04_attention: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell must be the target of at least
one mistake; each mistake names exactly the test cells that must score 0.
"""

import harness
from harness import FROM_CATALOGUE, Mistake

SDPA_TESTS = {"test_sdpa_values", "test_sdpa_mask", "test_sdpa_empty_rows"}

MISTAKES = [
    Mistake(
        name="sdpa-softmax-wrong-axis",
        cause="softmax over the wrong axis: each",
        cell="scaled_dot_product_attention",
        why="normalises over the queries (dim=-2): no error, every column sums to 1 instead of every row",
        code=FROM_CATALOGUE,
        fails=SDPA_TESTS,
    ),
    Mistake(
        name="sdpa-no-scale",
        cause="missing scale: divide the",
        cell="scaled_dot_product_attention",
        why="forgets the 1/sqrt(d)",
        code=FROM_CATALOGUE,
        # the empty-rows case also has rows with several keys, where the scale matters
        fails=SDPA_TESTS,
    ),
    Mistake(
        name="sdpa-inverted-mask",
        cause="inverted mask: True means",
        cell="scaled_dot_product_attention",
        why="masks where the mask is True: right without a mask, wrong with one",
        code=FROM_CATALOGUE,
        fails={"test_sdpa_mask", "test_sdpa_empty_rows"},
    ),
    Mistake(
        name="sdpa-mask-with-zero",
        cause="masked with 0 instead of -inf:",
        cell="scaled_dot_product_attention",
        why="fills masked scores with 0: exp(0) = 1, so masked keys keep weight",
        code=FROM_CATALOGUE,
        fails={"test_sdpa_mask", "test_sdpa_empty_rows"},
    ),
    Mistake(
        name="sdpa-nan-for-empty-rows",
        cause="a query that may attend to",
        cell="scaled_dot_product_attention",
        why="the textbook formula: right everywhere except a query with nothing to attend to, which gets NaN",
        code=FROM_CATALOGUE,
        fails={"test_sdpa_empty_rows"},
    ),
    Mistake(
        name="sdpa-calls-torch",
        cell="scaled_dot_product_attention",
        why="computes the output with torch's fused attention, the function the exercise asks to write",
        code='''
import torch.nn.functional as F


def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights
''',
        fails={"test_sdpa_values"},
    ),
    Mistake(
        name="causal-mask-upper",
        cause="inverted: query i (row i)",
        cell="causal_mask",
        why="the upper triangle: every query sees the future and not the past",
        code=FROM_CATALOGUE,
        fails={"test_causal_mask"},
    ),
    Mistake(
        name="padding-mask-off-by-one",
        cause="off by one: a sequence of",
        cell="padding_mask",
        why="t <= length keeps one padding token",
        code=FROM_CATALOGUE,
        fails={"test_padding_mask"},
    ),
    Mistake(
        name="split-heads-no-transpose",
        cause="reshaped (B, T, D) straight",
        cell="split_heads",
        why="reshapes (B, T, D) straight to (B, H, T, dh), mixing tokens",
        code=FROM_CATALOGUE,
        fails={"test_split_heads", "test_multi_head_attention"},
    ),
    Mistake(
        name="merge-heads-wrong-order",
        cause="heads merged in the wrong",
        cell="merge_heads",
        why="merges the heads feature by feature (B, T, dh, H) instead of head by head",
        code=FROM_CATALOGUE,
        fails={"test_merge_heads", "test_multi_head_attention"},
    ),
    Mistake(
        name="positions-sin-cos-swapped",
        cause="sin and cos swapped: sines",
        cell="sinusoidal_positions",
        why="cosines in the even columns, sines in the odd ones",
        code=FROM_CATALOGUE,
        fails={"test_sinusoidal_positions"},
    ),
    Mistake(
        name="positions-concatenated",
        cause="sines and cosines concatenated",
        cell="sinusoidal_positions",
        why="all sines then all cosines, as two halves, instead of interleaved",
        code=FROM_CATALOGUE,
        fails={"test_sinusoidal_positions"},
    ),
]

MISTAKES += [
    Mistake(
        name="predict-scale-uniform",
        cell="predict_scale",
        why="expects the unscaled weights to spread out evenly (they saturate instead)",
        code='predict_scale = "C"\n',
        fails={"test_predict_scale"},
    ),
    Mistake(
        name="predict-positions-still-learns",
        cell="predict_positions",
        why="expects attention alone to find the mirrored position",
        code='predict_positions = "A"\n',
        fails={"test_predict_positions"},
    ),
    Mistake(
        name="self-attention-masks-or",
        cause="combined the masks with `|` (or)",
        cell="self_attention",
        why="joins the causal and the padding mask with |, so a query sees the future and the padding",
        code=FROM_CATALOGUE,
        fails={"test_self_attention"},
    ),
    Mistake(
        name="self-attention-padding-without-head-axis",
        cause="the padding mask lacks the head axis",
        cell="self_attention",
        why="uses the (B, 1, T) key mask of Exercise 2, which broadcasts the batch against the heads",
        code=FROM_CATALOGUE,
        fails={"test_self_attention"},
    ),
    Mistake(
        name="self-attention-no-out-proj",
        cause="the output projection is missing",
        cell="self_attention",
        why="returns the merged heads without attn.out_proj",
        code=FROM_CATALOGUE,
        fails={"test_self_attention"},
    ),
]

MHA_TEST = {"test_mha_forward"}

MISTAKES += [
    Mistake(
        name="mha-forward-as-shipped",
        cause="hence the leak past a causal mask",
        cell="MultiHeadAttention",
        why="the debug exercise handed in unchanged: heads merged by a reshape alone and scores divided by sqrt(D)",
        code=harness.as_shipped("04_attention", "MultiHeadAttention"),
        fails=MHA_TEST,
    ),
    Mistake(
        name="mha-forward-merge-unfixed",
        cause="hence the leak past a causal mask",
        cell="MultiHeadAttention",
        why="fixed the scale only: the merge still hands position i the head outputs of later positions",
        code=FROM_CATALOGUE,
        fails=MHA_TEST,
    ),
    Mistake(
        name="mha-forward-scale-unfixed",
        cause="than the equation's, while with one head they are right",
        cell="MultiHeadAttention",
        why="fixed the merge only: every head's softmax is still too flat by a factor sqrt(H)",
        code=FROM_CATALOGUE,
        fails=MHA_TEST,
    ),
    Mistake(
        name="mha-forward-merge-last-axes",
        cause="and it is wrong with one head too",
        cell="MultiHeadAttention",
        why="transposes (-2, -1), as for k, instead of the heads and the positions",
        code=FROM_CATALOGUE,
        fails=MHA_TEST,
    ),
    Mistake(
        name="mha-forward-merge-feature-by-feature",
        cause="each position's output depends on its own results only",
        cell="MultiHeadAttention",
        why="permutes to (B, T_q, dh, H), interleaving the heads' features",
        code=FROM_CATALOGUE,
        fails=MHA_TEST,
    ),
    Mistake(
        name="mha-forward-no-scale",
        cause="more peaked (further from uniform)",
        cell="MultiHeadAttention",
        why="deleted the wrong scale instead of fixing it",
        code=FROM_CATALOGUE,
        fails=MHA_TEST,
    ),
    Mistake(
        name="mha-forward-scaled-by-head-size",
        cause="a query may see) than the equation's, with one head too",
        cell="MultiHeadAttention",
        why="divides by dh instead of sqrt(dh)",
        code=FROM_CATALOGUE,
        fails=MHA_TEST,
    ),
]
