"""Mistake submissions for 05_pretraining: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell must be the target of at least
one mistake; each mistake names exactly the test cells that must score 0.
"""

from harness import FROM_CATALOGUE, Mistake, as_shipped

_SAMPLING = {"test_sampling_top_k_top_p"}


MISTAKES = [
    # ---- BPE ----------------------------------------------------------------------
    Mistake(
        name="pairs-non-overlapping",
        cause="overlapping pairs were counted",
        cell="get_pair_counts",
        why="skips ahead after a repeated pair, so (5, 5) in [5, 5, 5] is counted once",
        code=FROM_CATALOGUE,
        fails={"test_get_pair_counts"},
    ),
    Mistake(
        name="pairs-wrap-around",
        cause="the sequence wrapped around:",
        cell="get_pair_counts",
        why="pairs the last id with the first (a rotation instead of ids[1:])",
        code=FROM_CATALOGUE,
        fails={"test_get_pair_counts"},
    ),
    Mistake(
        name="merge-overlapping",
        cause="overlapping matches were all",
        cell="merge",
        why="replaces overlapping matches: [7, 7, 7] becomes [n, n] instead of [n, 7]",
        code=FROM_CATALOGUE,
        fails={"test_merge"},
    ),
    Mistake(
        name="merge-drops-last",
        cause="the last id went missing:",
        cell="merge",
        why="the loop stops one early, losing a final id that is not part of a pair",
        code=FROM_CATALOGUE,
        fails={"test_merge"},
    ),
    Mistake(
        name="merge-first-only",
        cause="only the first occurrence",
        cell="merge",
        why="replaces the first occurrence and stops",
        code=FROM_CATALOGUE,
        fails={"test_merge"},
    ),
    # ---- debug: bpe_encode -------------------------------------------------------------
    Mistake(
        name="bpe-encode-as-shipped",
        cause="the loop returned while pairs that `merges` holds",
        cell="bpe_encode",
        why="the colleague's code, unchanged: most frequent pair first, and the loop stops at two ids",
        code=as_shipped("05_pretraining", "bpe_encode"),
        fails={"test_bpe_encode"},
    ),
    Mistake(
        name="bpe-encode-most-frequent-first",
        cause="the loop returned while pairs that `merges` holds",
        cell="bpe_encode",
        why="only the loop condition fixed: still picks the most frequent pair, as training does",
        code=FROM_CATALOGUE,
        fails={"test_bpe_encode"},
    ),
    Mistake(
        name="bpe-encode-stops-at-two",
        cause="the ids ended as two that are themselves a learned pair",
        cell="bpe_encode",
        why="only the choice fixed: a last pair of two ids is never merged",
        code=FROM_CATALOGUE,
        fails={"test_bpe_encode"},
    ),
    Mistake(
        name="bpe-encode-most-frequent-learned",
        cause="at some step the learned pair merged was not r*",
        cell="bpe_encode",
        why="half a fix: unlearned pairs filtered out, but counts still choose among the learned ones",
        code=FROM_CATALOGUE,
        fails={"test_bpe_encode"},
    ),
    Mistake(
        name="bpe-encode-latest-first",
        cause="the one learned last was merged first",
        cell="bpe_encode",
        why="chooses by rank with max instead of min",
        code=FROM_CATALOGUE,
        fails={"test_bpe_encode"},
    ),
    Mistake(
        name="bpe-encode-one-pass",
        cause="each learned pair of the text's bytes was merged once",
        cell="bpe_encode",
        why="a for loop over the pairs of the raw bytes: merges that need an earlier merge never happen",
        code=FROM_CATALOGUE,
        fails={"test_bpe_encode"},
    ),
    Mistake(
        name="bpe-encode-rank-none",
        cause="a pair that was never learned has no rank (None here)",
        cell="bpe_encode",
        why="min(counts, key=ranks.get): None for an unlearned pair cannot be compared with a rank",
        code='''
def bpe_encode(text, merges):
    ranks = {pair: i for i, pair in enumerate(merges)}
    tokens = list(text.encode("utf-8"))
    while len(tokens) >= 2:
        counts = get_pair_counts(tokens)
        pair = min(counts, key=ranks.get)
        if pair not in ranks:
            break
        tokens = merge(tokens, pair, 256 + ranks[pair])
    return tokens
''',
        fails={"test_bpe_encode"},
    ),
    # ---- CharTokenizer ----------------------------------------------------------------
    Mistake(
        name="char-first-seen-order",
        cause="ids follow the order in which",
        cell="CharTokenizer",
        why="ids in order of first appearance, not sorted",
        code=FROM_CATALOGUE,
        fails={"test_char_tokenizer"},
    ),
    Mistake(
        name="char-duplicates",
        cause="repeated characters got several",
        cell="CharTokenizer",
        why="sorted(chars) without set(): one id per occurrence",
        code=FROM_CATALOGUE,
        fails={"test_char_tokenizer"},
    ),
    # ---- Block --------------------------------------------------------------------------
    Mistake(
        name="block-post-ln",
        cause="post-LN: LayerNorm applied",
        cell="Block",
        why="the original Transformer's order, ln(x + attn(x)): residual after, not around, the norm",
        code=FROM_CATALOGUE,
        fails={"test_block"},
    ),
    Mistake(
        name="block-residual-of-normed",
        cause="the residual adds the normalised",
        cell="Block",
        why="adds the sublayer to ln(x) instead of x",
        code=FROM_CATALOGUE,
        fails={"test_block"},
    ),
    Mistake(
        name="block-ln1-twice",
        cause="ln_1 used twice: the MLP's",
        cell="Block",
        why="normalises the MLP input with ln_1",
        code=FROM_CATALOGUE,
        fails={"test_block"},
    ),
    # ---- lm_loss ---------------------------------------------------------------------------
    Mistake(
        name="loss-unshifted",
        cause="targets not shifted: the logits",
        cell="lm_loss",
        why="scores position t against token t: the model would learn to copy its input",
        code=FROM_CATALOGUE,
        fails={"test_lm_loss"},
    ),
    Mistake(
        name="loss-shift-backwards",
        cause="shifted the wrong way: drop",
        cell="lm_loss",
        why="logits[:, 1:] against tokens[:, :-1]: predicts the previous token",
        code=FROM_CATALOGUE,
        fails={"test_lm_loss"},
    ),
    Mistake(
        name="loss-softmax-over-time",
        cause="log-softmax over the wrong",
        cell="lm_loss",
        why="log_softmax over dim=1 (time) instead of the vocabulary",
        code=FROM_CATALOGUE,
        fails={"test_lm_loss"},
    ),
    Mistake(
        name="loss-mean-over-batch",
        cause="averaged over the batch only:",
        cell="lm_loss",
        why="sums over time and averages over the batch only",
        code=FROM_CATALOGUE,
        fails={"test_lm_loss"},
    ),
    # ---- sampling ---------------------------------------------------------------------------
    Mistake(
        name="sample-temperature-after-softmax",
        cause="temperature applied after",
        cell="sample_next_token",
        why="divides probabilities by T: multinomial renormalises, so temperature does nothing",
        code=FROM_CATALOGUE,
        fails={"test_sampling_temperature"},
    ),
    Mistake(
        name="sample-top-k-plus-one",
        cause="top-k kept one token too many:",
        cell="sample_next_token",
        why="keeps k + 1 tokens",
        code=FROM_CATALOGUE,
        fails=_SAMPLING,
    ),
    Mistake(
        name="sample-top-k-minus-one",
        cause="top-k kept one token too few:",
        cell="sample_next_token",
        why="keeps k - 1 tokens",
        code=FROM_CATALOGUE,
        fails=_SAMPLING,
    ),
    Mistake(
        name="sample-top-p-drops-boundary",
        cause="top-p dropped the boundary",
        cell="sample_next_token",
        why="drops the token whose cumulative probability crosses p (cumsum > p)",
        code=FROM_CATALOGUE,
        fails=_SAMPLING,
    ),
    # ---- KV cache ---------------------------------------------------------------------------
    Mistake(
        name="kv-no-mask",
        cause="no causal mask: a new query",
        cell="attention_with_past",
        why="attends to every key, future new tokens included",
        code=FROM_CATALOGUE,
        fails={"test_attention_with_past"},
    ),
    Mistake(
        name="kv-mask-ignores-past",
        cause="the mask ignores the past:",
        cell="attention_with_past",
        why="tril() without the T_past shift: right without a cache, wrong with one",
        code=FROM_CATALOGUE,
        fails={"test_attention_with_past"},
    ),
    Mistake(
        name="kv-positions-restart",
        cause="positions restarted at 0:",
        cell="forward_with_cache",
        why="positions arange(T) instead of arange(T_past, T_past + T)",
        code=FROM_CATALOGUE,
        fails={"test_forward_with_cache"},
    ),
    Mistake(
        name="kv-past-not-passed",
        cause="the cache was not passed to",
        cell="forward_with_cache",
        why="calls the blocks without their cache",
        code=FROM_CATALOGUE,
        fails={"test_forward_with_cache"},
    ),
    # ---- synthesis: generate ------------------------------------------------------------
    Mistake(
        name="generate-slides-cache",
        cause="the cache slid when the window",
        cell="generate",
        why="when the window is full, drops the oldest cached keys instead of rebuilding: stale positions",
        code=FROM_CATALOGUE,
        fails={"test_generate"},
    ),
    Mistake(
        name="generate-first-position",
        cause="the token was drawn from the first position",
        cell="generate",
        why="samples from logits[:, 0]: right after a one-token step, wrong after the prompt",
        code=FROM_CATALOGUE,
        fails={"test_generate"},
    ),
    Mistake(
        name="generate-without-cache",
        cause="each step re-reads the whole sequence",
        cell="generate",
        why="re-reads the whole window at every step: right tokens, but the cache is never used",
        code='''
def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    W = model.config.block_size
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits, _ = forward_with_cache(model, idx[:, -W:])
            next_id = sample_next_token(logits[:, -1], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, next_id[:, None]], dim=1)
    return idx
''',
        fails={"test_generate"},
    ),
    # ---- predictions ----------------------------------------------------------------------
    Mistake(
        name="predict-bpe-one-word-per-token",
        cell="predict_bpe_length",
        why="expects a word per token from 512 merges",
        code='predict_bpe_length = "C"\n',
        fails={"test_predict_bpe_length"},
    ),
    Mistake(
        name="predict-loss-no-better-than-bigram",
        cell="predict_val_loss",
        why="expects the small model not to beat the bigram counts",
        code='predict_val_loss = "A"\n',
        fails={"test_predict_val_loss"},
    ),
    Mistake(
        name="predict-temperature-reversed",
        cell="predict_temperature",
        why="swaps the two ends: expects cold samples to be garbled and hot ones to repeat",
        code='predict_temperature = "C"\n',
        fails={"test_predict_temperature"},
    ),
]
