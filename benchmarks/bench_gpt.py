"""Benchmark course_lib.gpt at nanoGPT's published CPU recipe, char-level, on the docstring corpus.

Recipe (nanoGPT README, "I only have a macbook"): 4 layers, 4 heads, 128 channels,
context 64, batch 12, 2000 iterations, lr 1e-3 with 100 warm-up steps and cosine
decay to 1e-4, AdamW (weight decay 0.1), gradient clipping 1.0, no dropout.
Also times 256 new tokens with and without the KV cache.

Run by hand:  .venv/bin/python benchmarks/bench_gpt.py [--iters 2000]
"""

from __future__ import annotations

import argparse
import time

import torch

from course_lib.data import random_windows, text_corpus
from course_lib.gpt import GPT, GPTConfig, generate, lm_loss
from course_lib.tokenizer import CharTokenizer
from course_lib.train import train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)

    train_text, val_text = text_corpus("docstrings", "train"), text_corpus("docstrings", "val")
    tok = CharTokenizer(train_text + val_text)  # the alphabet of the whole corpus, as nanoGPT does
    train_ids = torch.tensor(tok.encode(train_text))
    val_ids = torch.tensor(tok.encode(val_text))
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = GPT(cfg)
    print(f"{len(train_ids):,} train / {len(val_ids):,} val chars, vocab {tok.vocab_size}, "
          f"{model.num_parameters() / 1e6:.2f} M parameters, {args.threads} threads")

    val_batches = random_windows(val_ids, 64, 12, seed=1)

    def evaluate(model: GPT) -> float:
        losses = [lm_loss(model(x), x).item() for x in (next(val_batches) for _ in range(50))]
        return sum(losses) / len(losses)

    history = train(
        model, random_windows(train_ids, 64, 12), lambda m, x: lm_loss(m(x), x), args.iters,
        lr=1e-3, warmup_steps=100, min_lr_ratio=0.1, weight_decay=0.1, grad_clip=1.0,
        evaluate=evaluate, eval_every=max(1, args.iters // 4), progress=False,
    )
    tokens = args.iters * 12 * 64
    print(f"training: {history.seconds:.1f} s, {tokens / history.seconds:,.0f} tokens/s (includes evaluation)")
    print(f"validation loss: {history.last('val_loss'):.3f} nats/char; train loss (last): "
          f"{history.train['loss'][-1][1]:.3f}")

    start = torch.tensor([tok.encode("Return the ")])
    sample = generate(model, start, 200, temperature=0.8, generator=torch.Generator().manual_seed(0))
    print("sample:", repr(tok.decode(sample[0].tolist())))

    # The KV cache pays off within one context window (past it, learned positions force a rebuild),
    # so time it on the same architecture with room for all 256 new tokens.
    long = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=320, n_layer=4, n_head=4, n_embd=128))
    times = {}
    for cached in (False, True):
        t0 = time.perf_counter()
        out = generate(long, start, 256, temperature=0, use_cache=cached)
        times[cached] = time.perf_counter() - t0
    same = torch.equal(out, generate(long, start, 256, temperature=0, use_cache=False))
    print(f"generate 256 tokens: {times[False]:.2f} s without cache, {times[True]:.2f} s with "
          f"({times[False] / times[True]:.1f}x faster), identical tokens: {same}")


if __name__ == "__main__":
    main()
