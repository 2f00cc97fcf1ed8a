"""Mistake submissions for 07_instruction_tuning: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell must be the target of at least
one mistake; each mistake names exactly the test cells that must score 0.
"""

from harness import FROM_CATALOGUE, Mistake

RESPOND = '''
def generate_response(model, tokenizer, instruction, max_new_tokens=20, temperature=0.0, generator=None):
    prompt = tokenizer.encode(format_prompt(instruction))
    written = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            {context}
            logits = model(torch.tensor([prompt + written]))[:, -1, :]
            next_id = int(sample_next_token(logits, {temperature}, generator=generator)[0])
            {stop}
            written.append(next_id)
    return tokenizer.decode({result})
'''
CONTEXT = "if len(prompt) + len(written) >= model.config.block_size:\n                break"
STOP = "if next_id == tokenizer.end_id:\n                break"


def respond_code(context: str = CONTEXT, temperature: str = "temperature", stop: str = STOP,
                 result: str = "written") -> str:
    return RESPOND.format(context=context, temperature=temperature, stop=stop, result=result)


LOGPROB = '''
def sequence_logprob(model, ids, mask):
    logp = torch.log_softmax(model(ids)[:, :-1], dim=-1)
    token_logp = logp.gather(2, ids[:, 1:, None]).squeeze(2)
    return {reduce}
'''


def logprob_code(reduce: str = "(token_logp * mask[:, 1:]).sum(dim=1)") -> str:
    return LOGPROB.format(reduce=reduce)


MISTAKES = [
    # -- grow_vocabulary ----------------------------------------------------------------------
    Mistake(
        name="grow-overwrites-old-rows",
        cause="the old rows were overwritten",
        cell="grow_vocabulary",
        why="puts the mean rows over the last n_new known rows (an off-by-n_new slice)",
        code=FROM_CATALOGUE,
        fails={"test_grow_vocabulary"},
    ),
    Mistake(
        name="grow-new-rows-first",
        cause="the new rows went first",
        cell="grow_vocabulary",
        why="prepends the new rows, so every known token moves to another id",
        code=FROM_CATALOGUE,
        fails={"test_grow_vocabulary"},
    ),
    Mistake(
        name="grow-untied-head",
        cause="lm_head is a copy, not tied",
        cell="grow_vocabulary",
        why="copies the embedding into the head instead of tying them",
        code=FROM_CATALOGUE,
        fails={"test_grow_vocabulary"},
    ),
    # -- build_example --------------------------------------------------------------------------
    Mistake(
        name="example-prompt-in-mask",
        cause="the prompt tokens are in the mask",
        cell="build_example",
        why="marks every token as a target, prompt included",
        code=FROM_CATALOGUE,
        fails={"test_build_example"},
    ),
    Mistake(
        name="example-end-not-a-target",
        cause="<|end|> is not a target",
        cell="build_example",
        why="leaves the end token out of the mask, so the model never learns to stop",
        code=FROM_CATALOGUE,
        fails={"test_build_example"},
    ),
    Mistake(
        name="example-mask-shifted",
        cause="the mask starts one token early",
        cell="build_example",
        why="shifts the mask in the example (on <|assistant|> .. the last response token), as if it marked inputs",
        code=FROM_CATALOGUE,
        fails={"test_build_example"},
    ),
    # -- masked_lm_loss ---------------------------------------------------------------------------
    Mistake(
        name="loss-not-shifted",
        cause="predict token t (Hint 2 above)",
        cell="masked_lm_loss",
        why="scores logits[t] against ids[t]: the model is asked to copy its input",
        code=FROM_CATALOGUE,
        fails={"test_masked_lm_loss"},
    ),
    Mistake(
        name="loss-prompt-included",
        cause="the prompt tokens are in the loss",
        cell="masked_lm_loss",
        why="ignores the mask: prompt and padding tokens are scored too",
        code=FROM_CATALOGUE,
        fails={"test_masked_lm_loss"},
    ),
    Mistake(
        name="loss-padding-counted",
        cause="the padding is counted",
        cell="masked_lm_loss",
        why="sums the masked losses but divides by every position",
        code=FROM_CATALOGUE,
        fails={"test_masked_lm_loss"},
    ),
    Mistake(
        name="loss-mask-unshifted",
        cause="token t is a target when mask[:, t]",
        cell="masked_lm_loss",
        why="shifts the labels but cuts the mask at the other end",
        code=FROM_CATALOGUE,
        fails={"test_masked_lm_loss"},
    ),
    # -- generate_response ------------------------------------------------------------------------
    Mistake(
        name="respond-never-stops",
        cause="did not stop at <|end|>",
        cell="generate_response",
        why="keeps writing past the end token until max_new_tokens",
        code=FROM_CATALOGUE,
        fails={"test_generate_response"},
    ),
    Mistake(
        name="respond-returns-prompt",
        cause="the prompt is part of the returned text",
        cell="generate_response",
        why="decodes the whole sequence, prompt included",
        code=FROM_CATALOGUE,
        fails={"test_generate_response"},
    ),
    Mistake(
        name="respond-always-greedy",
        cause="the temperature is ignored",
        cell="generate_response",
        why="always takes the arg-max",
        code=FROM_CATALOGUE,
        fails={"test_generate_response"},
    ),
    Mistake(
        name="respond-overflows-context",
        cause="the sequence outgrew the model's context",
        cell="generate_response",
        why="never checks the context length: a long prompt runs past block_size",
        code=respond_code(context="pass"),
        fails={"test_generate_response"},
    ),
    # -- sequence_logprob -------------------------------------------------------------------------
    Mistake(
        name="logprob-averaged",
        cause="averaged the log-probabilities",
        cell="sequence_logprob",
        why="takes the mean over the response tokens where DPO sums them",
        code=FROM_CATALOGUE,
        fails={"test_sequence_logprob"},
    ),
    Mistake(
        name="logprob-padding-counted",
        cause="the prompt and the padding are counted",
        cell="sequence_logprob",
        why="sums over every position, prompt and padding included",
        code=FROM_CATALOGUE,
        fails={"test_sequence_logprob"},
    ),
    Mistake(
        name="logprob-detached",
        cell="sequence_logprob",
        why="computes the values right but detaches them, so DPO could not train through them",
        code=logprob_code(reduce="(token_logp * mask[:, 1:]).sum(dim=1).detach()"),
        fails={"test_sequence_logprob"},
    ),
    # -- dpo_loss ------------------------------------------------------------------------------------
    Mistake(
        name="dpo-beta-outside",
        cause="beta is outside the sigmoid",
        cell="dpo_loss",
        why="scales the log-sigmoid by beta instead of its argument; the gradient still points the right way",
        code=FROM_CATALOGUE,
        fails={"test_dpo_loss"},
    ),
    Mistake(
        name="dpo-ratio-upside-down",
        cause="the log-ratio is upside down",
        cell="dpo_loss",
        why="reference minus policy: the loss rewards moving away from the chosen answers",
        code=FROM_CATALOGUE,
        fails={"test_dpo_loss", "test_dpo_gradient"},
    ),
    Mistake(
        name="dpo-swapped",
        cause="chosen and rejected are swapped in the margin",
        cell="dpo_loss",
        why="rejected minus chosen in the margin",
        code=FROM_CATALOGUE,
        fails={"test_dpo_loss", "test_dpo_gradient"},
    ),
    # -- dpo_step (synthesis) ------------------------------------------------------------------------
    Mistake(
        name="step-reference-gets-gradients",
        cause="the reference model received gradients",
        cell="dpo_step",
        why="runs the reference with gradients on: backward() reaches it",
        code=FROM_CATALOGUE,
        fails={"test_dpo_step"},
    ),
    Mistake(
        name="step-no-zero-grad",
        cause="the gradients were never reset",
        cell="dpo_step",
        why="forgets optimizer.zero_grad(): each step adds the previous gradients",
        code=FROM_CATALOGUE,
        fails={"test_dpo_step"},
    ),
    Mistake(
        name="step-policy-as-reference",
        cause="the policy served as its own reference",
        cell="dpo_step",
        why="uses the policy's own detached log-probabilities as the reference",
        code=FROM_CATALOGUE,
        fails={"test_dpo_step"},
    ),
    Mistake(
        name="step-ties-count",
        cause="a pair whose rewards are equal counted as right",
        cell="dpo_step",
        why="reward accuracy with >=: at the first step every pair ties",
        code=FROM_CATALOGUE,
        fails={"test_dpo_step"},
    ),
    # -- predictions ----------------------------------------------------------------------------------
    Mistake(
        name="predict-phrasing-same",
        cell="predict_phrasing",
        why="expects the key word and pre-training to carry a new phrasing",
        code='predict_phrasing = "A"\n',
        fails={"test_predict_phrasing"},
    ),
    Mistake(
        name="predict-beta-large",
        cell="predict_beta",
        why="expects a larger beta to move the model more",
        code='predict_beta = "A"\n',
        fails={"test_predict_beta"},
    ),
]
