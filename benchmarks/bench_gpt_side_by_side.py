"""Training speed of course_lib's GPT against another version of it (and nanoGPT, when you have it), side by side.

Both models train at nanoGPT's CPU recipe (4 layers, 4 heads, 128 channels,
context 64, batch 12, no dropout, AdamW lr 1e-3, gradient clipping 1.0) from
the same initial weights, on the same batches, in one process: the steps are
run in alternating chunks (before, after, after, before, ...) so that a busy
machine slows both alike. Reported: tokens per second of each (the median
over chunks, the training step only) and the last chunk's mean training loss.

    .venv/bin/python benchmarks/bench_gpt_side_by_side.py                 # before = 14c9694 (issue 15's start)
    .venv/bin/python benchmarks/bench_gpt_side_by_side.py --before HEAD~3 --chunks 20 --steps 25
    .venv/bin/python benchmarks/bench_gpt_side_by_side.py --nanogpt ~/src/nanoGPT/model.py

``--before REV`` loads ``course_lib/gpt.py`` and the ``adamw`` of
``course_lib/train.py`` as they were at a git revision (their imports from the
rest of course_lib resolve to today's modules); each model trains with its own
optimizer (nanoGPT with its ``configure_optimizers``). ``--nanogpt``
adds Karpathy's nanoGPT ``model.py`` from a checkout you give (it is not part
of this repository): built with ``bias=True``, trained on the same batches
with its own loss (``targets`` = the window shifted by one).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

import course_lib
from course_lib.data import random_windows, text_corpus
from course_lib.gpt import GPT, GPTConfig, lm_loss
from course_lib.tokenizer import CharTokenizer
from course_lib.train import adamw

ROOT = Path(__file__).resolve().parent.parent
BLOCK, BATCH = 64, 12


def module_at(rev: str, name: str) -> types.ModuleType:
    """course_lib/<name>.py at git revision ``rev``, imported as a sibling of today's course_lib modules."""
    source = subprocess.run(["git", "show", f"{rev}:course_lib/{name}.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"course_lib._{name}_before")
    module.__package__ = "course_lib"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:course_lib/{name}.py", "exec"), module.__dict__)
    return module


def nanogpt_module(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="14c9694", help="git revision of course_lib/gpt.py to compare with")
    parser.add_argument("--nanogpt", type=Path, help="path to nanoGPT's model.py (optional)")
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--steps", type=int, default=25, help="training steps per chunk")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    text = text_corpus("docstrings", "train")
    tok = CharTokenizer(text)
    ids = torch.tensor(tok.encode(text))
    config = dict(vocab_size=tok.vocab_size, block_size=BLOCK, n_layer=4, n_head=4, n_embd=128, dropout=0.0)

    torch.manual_seed(1337)
    after = GPT(GPTConfig(**config))
    old = module_at(args.before, "gpt")
    before = old.GPT(old.GPTConfig(**config))
    before.load_state_dict(after.state_dict())  # the same initial weights
    models = {f"course_lib @ {args.before}": before, "course_lib (this checkout)": after}

    def course_loss(model: torch.nn.Module, window: torch.Tensor) -> torch.Tensor:
        x = window[:, :BLOCK]
        return lm_loss(model(x), x)

    losses = {name: course_loss for name in models}
    if args.nanogpt:
        nano = nanogpt_module(args.nanogpt.expanduser())
        torch.manual_seed(1337)
        models["nanoGPT"] = nano.GPT(nano.GPTConfig(**config, bias=True))
        # nanoGPT views its targets flat, so they must be contiguous (its own get_batch stacks fresh rows).
        losses["nanoGPT"] = lambda model, window: model(window[:, :BLOCK], window[:, 1:].contiguous())[1]

    # Each with its own optimizer: the course's adamw then and now, nanoGPT's configure_optimizers.
    optimizers = {name: adamw(model, 1e-3, weight_decay=0.1) for name, model in models.items()}
    optimizers[f"course_lib @ {args.before}"] = module_at(args.before, "train").adamw(before, 1e-3, weight_decay=0.1)
    if args.nanogpt:
        optimizers["nanoGPT"] = models["nanoGPT"].configure_optimizers(0.1, 1e-3, (0.9, 0.999), "cpu")
    # One window of BLOCK + 1 tokens per row: the course models read the first BLOCK, nanoGPT also its targets.
    windows = random_windows(ids, BLOCK + 1, BATCH, seed=0)
    seconds = {name: [] for name in models}
    last_loss = {}
    print(f"course_lib {course_lib.__version__ if hasattr(course_lib, '__version__') else ''}, torch "
          f"{torch.__version__}, {args.threads} threads, {args.chunks} chunks x {args.steps} steps")
    for chunk in range(args.chunks):
        batches = [next(windows) for _ in range(args.steps)]
        order = list(models) if chunk % 2 == 0 else list(reversed(models))
        for name in order:
            model, opt, loss_fn = models[name], optimizers[name], losses[name]
            model.train()
            chunk_losses = []
            start = time.perf_counter()
            for batch in batches:
                loss = loss_fn(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                chunk_losses.append(loss.item())
            seconds[name].append(time.perf_counter() - start)
            last_loss[name] = sum(chunk_losses) / len(chunk_losses)

    tokens = args.steps * BATCH * BLOCK
    base = statistics.median(seconds[f"course_lib @ {args.before}"])
    print(f"\n| model | tokens/s (median chunk) | relative to {args.before} | last chunk's loss |\n|---|---|---|---|")
    for name in models:
        median = statistics.median(seconds[name])
        print(f"| {name} | {tokens / median:,.0f} | {base / median:.3f}x | {last_loss[name]:.3f} |")


if __name__ == "__main__":
    main()
