"""How much of notebook 06's gap between LoRA rank 4 and full fine-tuning comes from its setup?

Runs the notebook's rank-4 LoRA run and its full fine-tuning run with the
notebook's recipe, then variants of it, and prints the table of the notebook's
cell ``results-discussion`` ("How much of the gap is this setup?"): for each
variant the share of parameters LoRA trains, the domain validation loss of
LoRA and of full fine-tuning from the same pre-trained model, and the gap
(LoRA's loss over full fine-tuning's, minus 1).

The recipe is the notebook's (``sources/06_fine_tuning/fine_tuning.py``,
cells ``experiment-setup``, ``run-full`` and ``run-lora``): the pre-trained GPT
of ``course_lib.pretrained.pretrained_gpt`` (loaded from the cache, or trained
and cached on the first run), 300 steps of batch 16 windows of the context
length from the language reference's training text (``random_windows``, seed
1: every run sees the same batches), warm-up over a twentieth of the run, the
domain validation loss every tenth of the run and at the end. Full fine-tuning:
all weights, lr 1e-3, early stopping (patience 3,
``course_lib.finetune.train_with_early_stopping``). LoRA: ``apply_lora`` with
rank 4 and alpha 8 on ``qkv``, ``attn.proj``, ``fc`` and ``mlp.proj`` (what the
notebook's ``lora_for_budget`` picks for a 5 % budget), lr 6e-3, with the
notebook's LoRA initialisation (the global RNG as it is after the notebook's
scratch model: ``torch.manual_seed(1)``, then one ``GPT`` built). The
variants:

    base          the notebook's run
    lm_head       also adapt the output layer lm_head (tied to the token embedding, which stays frozen)
    norms_biases  ... and train the LayerNorms and all biases too (every 1-D parameter)
    steps600      600 steps instead of 300 (both runs; the first 300 batches are the same)
    long          a pre-trained model of 3x the steps (2,400 instead of 800; cached under its own name)
    long_all      the long model, with lm_head, LayerNorms and biases
    first15       less domain text: the first 15 % of every training topic (about 66 k characters)
    topics        less domain text: whole training topics, in a seeded random order, until as many
                  characters as first15 (the validation text is always the whole validation split)

A full fine-tuning run is shared by the rows with the same pre-trained model,
steps and training text. Each row's wall time counts what ran for it
(pre-training, when not cached, and a full fine-tuning run the first time a row
needs it). With ``COURSE_FAST=1`` it runs the notebook's FAST recipe (a tiny
model, 30 steps of batch 8), only to check that the script works.

    .venv/bin/python benchmarks/bench_lora_variants.py                        # all 8 rows, 1 thread
    .venv/bin/python benchmarks/bench_lora_variants.py --variants base,lm_head --threads 2
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import time
from dataclasses import dataclass

import torch

from course_lib.data import random_windows, reference_documents, split_documents, text_corpus
from course_lib.env import fast_mode
from course_lib.finetune import apply_lora, count_parameters, count_trainable_parameters, train_with_early_stopping
from course_lib.gpt import GPT, lm_loss
from course_lib.pretrained import default_recipe, lm_eval_loss, pretrained_gpt
from course_lib.train import train

FAST = fast_mode()
STEPS = 30 if FAST else 300  # the notebook's cell experiment-setup
BATCH = 8 if FAST else 16
LORA_TARGETS = ["qkv", "attn.proj", "fc", "mlp.proj"]
RANK, ALPHA = 4, 8.0  # lora_for_budget's choice for a 5 % budget in the full run, alpha = 2 r
LR_FULL, LR_LORA = 1e-3, 6e-3
LONG_FACTOR = 3  # the long pre-trained model: 3 x 800 = 2,400 steps
SHORT_SHARE = 0.15  # less domain text: this share of every topic, or as many characters of whole topics
TOPIC_SEED = 0


@dataclass(frozen=True)
class Variant:
    label: str  # the row's text in the notebook's table
    lm_head: bool = False  # also wrap lm_head in LoRA
    norms_biases: bool = False  # also train every 1-D parameter (LayerNorm weights and biases, linear biases)
    steps_factor: int = 1
    long: bool = False  # start from the longer pre-trained model
    domain: str = "all"  # "all", "first15" or "topics"


VARIANTS = {
    "base": Variant("this notebook: `qkv`, `attn.proj`, `fc`, `mlp.proj`"),
    "lm_head": Variant("also adapt the output layer `lm_head`", lm_head=True),
    "norms_biases": Variant("... and train the LayerNorms and biases too", lm_head=True, norms_biases=True),
    "steps600": Variant("{steps} steps instead of {base_steps}", steps_factor=2),
    "long": Variant("a longer pre-trained model ({pre_steps:,} steps, docstring loss {pre_loss:.2f})", long=True),
    "long_all": Variant("... with `lm_head`, LayerNorms and biases", lm_head=True, norms_biases=True, long=True),
    "first15": Variant("less domain text: the first 15 % of every topic ({chars})", domain="first15"),
    "topics": Variant("less domain text: {n_topics} whole topics, drawn at random ({chars})", domain="topics"),
}


def domain_texts() -> dict[str, tuple[str, int]]:
    """The training text of each domain choice, with the number of topics it draws on."""
    docs = split_documents(reference_documents(), "train")
    first = "\n\n".join(d.text[: int(SHORT_SHARE * len(d.text))] for d in docs)
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(TOPIC_SEED)).tolist()
    chosen: list[str] = []
    while len("\n\n".join(chosen)) < len(first):
        chosen.append(docs[order[len(chosen)]].text)
    return {"all": (text_corpus("reference", "train"), len(docs)), "first15": (first, len(docs)),
            "topics": ("\n\n".join(chosen), len(chosen))}


def next_token_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return lm_loss(model(x), x)


def fine_tune(model: GPT, train_ids: torch.Tensor, evaluate, steps: int, lr: float, early_stopping: bool) -> dict:
    """The notebook's fine_tune: ``steps`` steps on the same batches, evaluated every tenth of the run."""
    T = model.config.block_size
    batches = random_windows(train_ids, T, BATCH, seed=1)
    settings = dict(lr=lr, warmup_steps=steps // 20, evaluate=evaluate, eval_every=max(1, steps // 10),
                    progress=False)
    if early_stopping:
        history, stopper = train_with_early_stopping(model, batches, next_token_loss, steps, patience=3, **settings)
        note = f"best at step {stopper.best_step + 1}, " + (
            f"stopped at {len(history.train['loss'])}" if history.stopped_at is not None else "ran to the end")
    else:
        history = train(model, batches, next_token_loss, steps, **settings)
        note = ""
    return {"domain": evaluate(model), "seconds": history.seconds, "note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated rows to run, in this order (default: all of {', '.join(VARIANTS)}); "
                        "the table lists them in the notebook's order")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the notebook)")
    args = parser.parse_args()
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    start_all = time.perf_counter()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {'FAST' if FAST else 'full'} mode, "
          f"{STEPS} steps of batch {BATCH}; variants: {', '.join(chosen)}", flush=True)

    base_recipe = default_recipe()
    recipes = {False: base_recipe, True: dataclasses.replace(
        base_recipe, name=f"{base_recipe.name}-{base_recipe.steps * LONG_FACTOR}steps",
        steps=base_recipe.steps * LONG_FACTOR)}
    pretrained: dict[bool, tuple] = {}
    texts = domain_texts()
    full_runs: dict[tuple, dict] = {}
    rows, timings = [], []

    for key in chosen:
        variant = VARIANTS[key]
        row_start = time.perf_counter()
        ran = []
        if variant.long not in pretrained:
            recipe = recipes[variant.long]
            model, tokenizer, info = pretrained_gpt(recipe, progress=False)
            pretrained[variant.long] = (model, tokenizer, info)
            ran.append(f"pre-training {recipe.steps} steps: "
                       + ("cached" if info["cached"] else f"trained in {info['train_seconds']:.0f} s"))
            print(f"pre-trained model {recipe.name}: {ran[-1]}, docstring validation loss {info['val_loss']:.3f}",
                  flush=True)
        model0, tokenizer, info = pretrained[variant.long]
        T = model0.config.block_size
        domain_val = torch.tensor(tokenizer.encode(text_corpus("reference", "val")))
        train_text, n_topics = texts[variant.domain]
        train_ids = torch.tensor(tokenizer.encode(train_text))
        domain_loss = functools.partial(lm_eval_loss, ids=domain_val, length=T)  # model -> domain validation loss

        steps = STEPS * variant.steps_factor
        full_key = (variant.long, steps, variant.domain)
        if full_key not in full_runs:
            full_runs[full_key] = fine_tune(copy.deepcopy(model0), train_ids, domain_loss, steps, LR_FULL, True)
            ran.append(f"full fine-tuning {full_runs[full_key]['seconds']:.0f} s ({full_runs[full_key]['note']})")
        full = full_runs[full_key]

        lora = copy.deepcopy(model0)
        torch.manual_seed(1)  # the notebook's global RNG when its first LoRA run wraps the model:
        GPT(model0.config)  # after the scratch model's initialisation
        apply_lora(lora, LORA_TARGETS + (["lm_head"] if variant.lm_head else []), r=RANK, alpha=ALPHA)
        if variant.norms_biases:
            for p in lora.parameters():
                if p.dim() == 1:
                    p.requires_grad_(True)
        share = count_trainable_parameters(lora) / count_parameters(model0)
        result = fine_tune(lora, train_ids, domain_loss, steps, LR_LORA, False)
        ran.append(f"LoRA {result['seconds']:.0f} s")

        label = variant.label.format(steps=steps, base_steps=STEPS, pre_steps=recipes[True].steps,
                                     pre_loss=info["val_loss"], chars=f"{len(train_text) / 1000:.0f} k characters",
                                     n_topics=n_topics)
        rows.append((key, label, share, result["domain"], full["domain"]))
        timings.append((key, time.perf_counter() - row_start, "; ".join(ran)))
        print(f"{key}: trainable {share:.1%}, LoRA {result['domain']:.3f}, full FT {full['domain']:.3f}, "
              f"gap {result['domain'] / full['domain'] - 1:+.1%} ({timings[-1][1]:.0f} s: {timings[-1][2]})",
              flush=True)

    print("\n| variant | trainable | LoRA | full FT | gap |\n|---|---|---|---|---|")
    for _, label, share, lora_loss, full_loss in sorted(rows, key=lambda row: list(VARIANTS).index(row[0])):
        print(f"| {label} | {100 * share:.1f} % | {lora_loss:.3f} | {full_loss:.3f} | "
              f"{100 * (lora_loss / full_loss - 1):+.1f} % |")
    print("\n| row | wall time | what ran |\n|---|---|---|")
    for key, seconds, ran in timings:
        print(f"| {key} | {seconds:.0f} s | {ran} |")
    print(f"\ntotal wall time {time.perf_counter() - start_all:.0f} s with {args.threads} thread(s)")


if __name__ == "__main__":
    main()
