"""Mistake submissions for 06_fine_tuning: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell must be the target of at least
one mistake; each mistake names exactly the test cells that must score 0.
"""

import harness
from harness import FROM_CATALOGUE, Mistake

LORA_CLASS = '''
class LoRALinear(nn.Module):
    def __init__(self, base, r=8, alpha=16.0):
        super().__init__()
        self.base = base
        {freeze}
        self.r = r
        self.alpha = alpha
        self.scale = {scale}
        out_features, in_features = base.weight.shape
        self.lora_A = nn.Parameter({init_A})
        self.lora_B = nn.Parameter({init_B})

    def forward(self, x):
        return self.base(x) + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)
'''
RIGHT = {
    "freeze": "self.base.requires_grad_(False)",
    "scale": "alpha / r",
    "init_A": "torch.randn(r, in_features) / math.sqrt(in_features)",
    "init_B": "torch.zeros(out_features, r)",
}


def lora_class(**changes: str) -> str:
    return LORA_CLASS.format(**{**RIGHT, **changes})


BUDGET = '''
def lora_for_budget(model, budget, r_choices, target_choices):
    {start}
    best = None
    for index, targets in enumerate(target_choices):
        {layers}
        if not layers:
            raise ValueError(f"no nn.Linear matches {{list(targets)}}")
        per_rank = sum(m.in_features + m.out_features for m in layers)
        for r in r_choices:
            key = {key}
            if {fits} and (best is None or key > best[0]):
                best = (key, r, list(targets), {cost})
    if best is None:
        raise ValueError("no LoRA configuration fits the budget")
    _, r, targets, cost = best
    apply_lora(model, targets, r=r, alpha=2.0 * r)
    return r, targets, cost
'''
BUDGET_LAYERS = (
    "layers = [m for name, m in model.named_modules()\n"
    "                  if isinstance(m, nn.Linear) and any(name == t or name.endswith('.' + t) for t in targets)]"
)


def budget_code(start: str = "pass", layers: str = BUDGET_LAYERS, key: str = "(r * per_rank, len(layers), -index)",
                fits: str = "key[0] <= budget", cost: str = "key[0]") -> str:
    return BUDGET.format(start=start, layers=layers, key=key, fits=fits, cost=cost)


MISTAKES = [
    # -- count_trainable_parameters ------------------------------------------------
    Mistake(
        name="count-frozen-too",
        cause="counted every parameter, frozen",
        cell="count_trainable_parameters",
        why="forgets the requires_grad filter: counts the whole model",
        code=FROM_CATALOGUE,
        fails={"test_count_trainable_parameters"},
    ),
    Mistake(
        name="count-tensors",
        cause="counted parameter *tensors*,",
        cell="count_trainable_parameters",
        why="counts parameter tensors instead of numbers",
        code=FROM_CATALOGUE,
        fails={"test_count_trainable_parameters"},
    ),
    Mistake(
        name="count-tied-twice",
        cause="counted a shared (tied) tensor",
        cell="count_trainable_parameters",
        why="walks every module's own parameters, so the tied embedding / output matrix counts twice",
        code=FROM_CATALOGUE,
        fails={"test_count_trainable_parameters"},
    ),
    # -- LoRALinear -------------------------------------------------------------------------
    Mistake(
        name="lora-random-b",
        cause="B is not zero at the start",
        cell="LoRALinear",
        why="initialises B randomly like A: the wrapped model no longer starts as the pre-trained one",
        code=lora_class(init_B="torch.randn(out_features, r) / math.sqrt(r)"),
        fails={"test_lora_forward"},
    ),
    Mistake(
        name="lora-scale-upside-down",
        cause="the scale is upside down:",
        cell="LoRALinear",
        why="scale = r / alpha: right at initialisation (B = 0), wrong once B is not zero",
        code=FROM_CATALOGUE,
        fails={"test_lora_forward"},
    ),
    Mistake(
        name="lora-no-scale",
        cause="the update is not scaled:",
        cell="LoRALinear",
        why="forgets the alpha / r factor",
        code=FROM_CATALOGUE,
        fails={"test_lora_forward"},
    ),
    Mistake(
        name="lora-base-trainable",
        cause="the wrapped layer was not frozen",
        cell="LoRALinear",
        why="never freezes the wrapped layer: its weight and bias would train too",
        code=lora_class(freeze="pass"),
        fails={"test_lora_trainable"},
    ),
    Mistake(
        name="lora-both-zero",
        cause="`lora_A` starts at zero",
        cell="LoRALinear",
        why="initialises A to zero as well: the output is right, but no gradient ever reaches A or B",
        code=lora_class(init_A="torch.zeros(r, in_features)"),
        fails={"test_lora_forward", "test_lora_trainable"},
    ),
    # -- apply_lora ---------------------------------------------------------------------------
    Mistake(
        name="apply-no-freeze",
        cause="the rest of the model is still",
        cell="apply_lora",
        why="relies on LoRALinear to freeze: embeddings, LayerNorms and unwrapped layers stay trainable",
        code=FROM_CATALOGUE,
        fails={"test_apply_lora"},
    ),
    Mistake(
        name="apply-freeze-after-wrapping",
        cause="froze the model *after* wrapping,",
        cell="apply_lora",
        why="freezes the model after wrapping, which freezes A and B too: nothing trains",
        code=FROM_CATALOGUE,
        fails={"test_apply_lora"},
    ),
    Mistake(
        name="apply-every-linear",
        cause="wrapped every nn.Linear: wrap",
        cell="apply_lora",
        why="ignores target_modules and wraps every nn.Linear",
        code=FROM_CATALOGUE,
        fails={"test_apply_lora"},
    ),
    Mistake(
        name="apply-last-part-only",
        cause="matched only the last part",
        cell="apply_lora",
        why="compares only the last part of each name: 'attn.proj' also wraps mlp.proj",
        code=FROM_CATALOGUE,
        fails={"test_apply_lora"},
    ),
    Mistake(
        name="apply-no-typo-error",
        cause="a target list that matches no layer was accepted silently",
        cell="apply_lora",
        why="returns an empty list when nothing matches, so a typo silently trains nothing",
        code=FROM_CATALOGUE,
        fails={"test_apply_lora"},
    ),
    # -- merge_lora -----------------------------------------------------------------------------
    Mistake(
        name="merge-transposed",
        cause="the update is transposed:",
        cell="merge_lora",
        why="adds (B A)^T: same shape only for square layers, wrong values there, an error elsewhere",
        code=FROM_CATALOGUE,
        fails={"test_merge_lora"},
    ),
    Mistake(
        name="merge-a-times-b",
        cause="the update is transposed:",
        cell="merge_lora",
        why="multiplies in the wrong order, A^T B^T",
        code=FROM_CATALOGUE,
        fails={"test_merge_lora"},
    ),
    Mistake(
        name="merge-no-scale",
        cause="the scale is missing: W +",
        cell="merge_lora",
        why="forgets the alpha / r factor when merging",
        code=FROM_CATALOGUE,
        fails={"test_merge_lora"},
    ),
    Mistake(
        name="merge-leaves-lora-layers",
        cause="the LoRA layers are still",
        cell="merge_lora",
        why="updates the base weight but keeps the LoRA wrapper, so the update counts twice",
        code=FROM_CATALOGUE,
        fails={"test_merge_lora"},
    ),
    # -- lora_for_budget (synthesis) --------------------------------------------------------------
    Mistake(
        name="budget-strictly-below",
        cause="a candidate whose cost equals the budget",
        cell="lora_for_budget",
        why="keeps only candidates strictly below the budget, so one that uses it exactly is dropped",
        code=FROM_CATALOGUE,
        fails={"test_lora_for_budget"},
    ),
    Mistake(
        name="budget-largest-rank",
        cause="picked the largest rank that fits",
        cell="lora_for_budget",
        why="ranks the candidates by rank first: the highest rank that fits anywhere wins, not the largest cost",
        code=FROM_CATALOGUE,
        fails={"test_lora_for_budget"},
    ),
    Mistake(
        name="budget-ties-to-larger-rank",
        cause="among equal costs, prefer the candidate that wraps more layers",
        cell="lora_for_budget",
        why="breaks ties by the larger rank (fewer layers), against the contract and Hu et al.",
        code=FROM_CATALOGUE,
        fails={"test_lora_for_budget"},
    ),
    Mistake(
        name="budget-each-target-once",
        cause="counted each target name once",
        cell="lora_for_budget",
        why="costs each target by its first matching layer only, forgetting that every block has one",
        code=FROM_CATALOGUE,
        fails={"test_lora_for_budget"},
    ),
    Mistake(
        name="budget-freezes-before-refusing",
        cause="froze the model before deciding that nothing fits",
        cell="lora_for_budget",
        why="freezes the model before searching, so a budget that nothing fits leaves it frozen",
        code=budget_code(start="model.requires_grad_(False)"),
        fails={"test_lora_for_budget"},
    ),
    # -- EarlyStopping (the debug exercise) -------------------------------------------------------
    Mistake(
        name="early-stopping-as-shipped",
        cause="the restored model is not the best one",
        cell="EarlyStopping",
        why="the debug exercise handed in unchanged: state_dict() kept without a copy, and no reset of bad_evals",
        code=harness.as_shipped("06_fine_tuning", "EarlyStopping"),
        fails={"test_early_stopping"},
    ),
    Mistake(
        name="early-stopping-live-weights",
        cause="the restored model is not the best one",
        cell="EarlyStopping",
        why="fixed the counter only: the 'best' weights still follow training, so restore loads the last ones",
        code=FROM_CATALOGUE,
        fails={"test_early_stopping"},
    ),
    Mistake(
        name="early-stopping-never-resets",
        cause="the run stops too early: at the evaluation",
        cell="EarlyStopping",
        why="fixed the copy only: bad_evals counts every evaluation without progress, not those in a row",
        code=FROM_CATALOGUE,
        fails={"test_early_stopping"},
    ),
    Mistake(
        name="early-stopping-tie-is-progress",
        cause="a tie counted as progress",
        cell="EarlyStopping",
        why="tests value <= best - min_delta: an equal loss counts as a new best",
        code=FROM_CATALOGUE,
        fails={"test_early_stopping"},
    ),
    Mistake(
        name="early-stopping-delta-wrong-side",
        cause="min_delta works the wrong way",
        cell="EarlyStopping",
        why="tests value < best + min_delta: a loss a little above the best counts as progress",
        code=FROM_CATALOGUE,
        fails={"test_early_stopping"},
    ),
    Mistake(
        name="early-stopping-vs-previous",
        cause="a dip counted as a new best",
        cell="EarlyStopping",
        why="compares with the previous evaluation, so a dip after a rise counts as a new best",
        code=FROM_CATALOGUE,
        fails={"test_early_stopping"},
    ),
    Mistake(
        name="early-stopping-one-late",
        cause="stopped one evaluation late",
        cell="EarlyStopping",
        why="stops when bad_evals > patience, one evaluation after the contract says",
        code=FROM_CATALOGUE,
        fails={"test_early_stopping"},
    ),
    # -- predictions ----------------------------------------------------------------------------
    Mistake(
        name="predict-gap-lora-matches",
        cell="predict_gap",
        why="expects rank 4 to match full fine-tuning, as it did on GPT-3",
        code='predict_gap = "B"\n',
        fails={"test_predict_gap"},
    ),
    Mistake(
        name="predict-forgetting-none",
        cell="predict_forgetting",
        why="expects a frozen W to mean no forgetting at all",
        code='predict_forgetting = "C"\n',
        fails={"test_predict_forgetting"},
    ),
]
