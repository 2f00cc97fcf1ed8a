"""Mistake submissions for 03_reverse_diffusion: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell is the target of at least one
mistake; each mistake names exactly the test cells that must score 0.
"""

from harness import FROM_CATALOGUE, Mistake

_SHAPE = "shape = (-1, *([1] * (xt.dim() - 1)))"


def _posterior(ab_prev: str, alpha: str = "schedule.alphas[t]", ab: str = "schedule.alpha_bars[t]") -> str:
    return f'''
def q_posterior_mean_variance(x0, xt, t, schedule):
    {_SHAPE}
    beta = schedule.betas[t].reshape(shape)
    alpha = {alpha}.reshape(shape)
    ab = {ab}.reshape(shape)
    ab_prev = {ab_prev}.reshape(shape)
    mean = beta * ab_prev.sqrt() / (1 - ab) * x0 + (1 - ab_prev) * alpha.sqrt() / (1 - ab) * xt
    return mean, beta * (1 - ab_prev) / (1 - ab)
'''


def _loss(draw_t: str = "torch.randint(schedule.T, (x0.shape[0],))", target: str = "noise",
          call: str = "model(xt, t) if labels is None else model(xt, t, labels)", reduce: str = "mean") -> str:
    return f'''
def diffusion_loss(model, x0, schedule, labels=None, t=None, noise=None):
    if t is None:
        t = {draw_t}
    if noise is None:
        noise = torch.randn_like(x0)
    xt = q_sample(x0, t, schedule, noise)
    predicted = {call}
    return ((predicted - {target}) ** 2).{reduce}()
'''


def _p_sample(mean_alpha: str = "alpha", noise_coef: str = "beta.sqrt()", last: str = "t == 0",
              denom: str = "(1 - ab).sqrt()") -> str:
    return f'''
def p_sample(model, xt, t, schedule, noise=None):
    eps = model(xt, torch.full((xt.shape[0],), t, dtype=torch.long))
    beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
    mean = (xt - beta / {denom} * eps) / {mean_alpha}.sqrt()
    if {last}:
        return mean
    if noise is None:
        noise = torch.randn_like(xt)
    return mean + {noise_coef} * noise
'''


def _ddpm(times: str) -> str:
    return f'''
def ddpm_sample(model, shape, schedule, generator):
    x = torch.randn(shape, generator=generator)
    for t in {times}:
        noise = torch.randn(shape, generator=generator) if t > 0 else None
        x = p_sample(model, x, t, schedule, noise)
    return x
'''


def _ddim_step(ab_prev: str, table: str = "schedule.alpha_bars") -> str:
    return f'''
def ddim_step(eps, xt, t, t_prev, schedule):
    ab_t = {table}[t]
    ab_prev = {ab_prev}
    x0_hat = (xt - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    return ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps
'''


def _cfg(expression: str) -> str:
    return f'''
def guided_noise(model, xt, t, labels, guidance_scale):
    eps_cond = model(xt, t, labels)
    eps_uncond = model(xt, t)
    return {expression}
'''


def _train(dropout: str = "torch.rand(labels.shape) < p_uncond", update: str = """optimizer.zero_grad()
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()""") -> str:
    return f'''
def train_denoiser(model, batches, schedule, optimizer, steps, p_uncond=0.0, lr_scheduler=None, grad_clip=1.0):
    model.train()
    losses = []
    for _ in range(steps):
        batch = next(batches)
        x0, labels = batch[0], (batch[1] if len(batch) > 1 else None)
        if labels is not None and p_uncond > 0:
            drop = {dropout}
            labels = torch.where(drop, torch.full_like(labels, model.null_label), labels)
        loss = diffusion_loss(model, x0, schedule, labels)
        {update}
        if lr_scheduler is not None:
            lr_scheduler.step()
        losses.append(loss.item())
    return losses
'''


def _prediction(name: str, letter: str) -> str:
    return f'''
{name} = "{letter}"
'''


MISTAKES = [
    Mistake(
        name="posterior-alpha-bar-for-prev",
        cause="used alpha_bar_t where alpha_bar_{t-1}",
        cell="q_posterior_mean_variance",
        why="alpha_bar_t where alpha_bar_{t-1} belongs (off by one)",
        code=FROM_CATALOGUE,
        fails={"test_posterior"},
    ),
    Mistake(
        name="posterior-alpha-for-alpha-bar",
        cause="used alpha_t where alpha_bar_t belongs: x_0",
        cell="q_posterior_mean_variance",
        why="alpha used where alpha_bar belongs",
        code=FROM_CATALOGUE,
        fails={"test_posterior"},
    ),
    Mistake(
        name="posterior-precomputed",
        cause="read a precomputed term of",
        cell="q_posterior_mean_variance",
        why="reads the schedule's precomputed posterior terms",
        code=FROM_CATALOGUE, catalogue='POSTERIOR_MISTAKES',
        fails={"test_posterior"},
    ),
    Mistake(
        name="loss-predicts-x0",
        cause="compared the prediction with",
        cell="diffusion_loss",
        why="regresses onto x0 instead of the noise",
        code=FROM_CATALOGUE,
        fails={"test_diffusion_loss"},
    ),
    Mistake(
        name="loss-ignores-labels",
        cause="did not pass the labels to",
        cell="diffusion_loss",
        why="never passes the labels to the model",
        code=FROM_CATALOGUE,
        fails={"test_diffusion_loss"},
    ),
    Mistake(
        name="loss-sum",
        cause="summed the squared errors:",
        cell="diffusion_loss",
        why="sums instead of averaging",
        code=FROM_CATALOGUE,
        fails={"test_diffusion_loss"},
    ),
    Mistake(
        name="loss-t-from-one",
        cause="draw it with torch.randint(T, ...)",
        cell="diffusion_loss",
        why="1-based timesteps: draws t from 1..T (off by one between t and the schedule index)",
        code=_loss(draw_t="torch.randint(1, schedule.T + 1, (x0.shape[0],))"),
        fails={"test_diffusion_loss_random"},
    ),
    Mistake(
        name="p-sample-alpha-bar-in-mean",
        cause="divided by sqrt(alpha_bar_t)",
        cell="p_sample",
        why="divides by sqrt(alpha_bar_t) where sqrt(alpha_t) belongs (same value at t = 0)",
        code=FROM_CATALOGUE,
        fails={"test_p_sample"},
    ),
    Mistake(
        name="p-sample-noise-at-last-step",
        cause="added noise at the last step",
        cell="p_sample",
        why="adds noise at t = 0 too",
        code=FROM_CATALOGUE,
        fails={"test_p_sample_last_step"},
    ),
    Mistake(
        name="p-sample-no-sqrt",
        cause="forgot the square root: the",
        cell="p_sample",
        why="beta_t / (1 - alpha_bar_t): the square root forgotten",
        code=FROM_CATALOGUE,
        fails={"test_p_sample", "test_p_sample_last_step"},
    ),
    Mistake(
        name="p-sample-std-is-beta",
        cause="multiplied the noise by beta_t:",
        cell="p_sample",
        why="uses the variance beta_t as the standard deviation",
        code=FROM_CATALOGUE,
        fails={"test_p_sample"},
    ),
    Mistake(
        name="ddpm-forward-order",
        cause="ran the steps forwards: sampling",
        cell="ddpm_sample",
        why="loops t = 0 .. T-1",
        code=_ddpm("range(schedule.T)"),
        fails={"test_ddpm_sample"},
    ),
    Mistake(
        name="ddpm-skips-last-step",
        cause="stopped before t = 0: `range(T",
        cell="ddpm_sample",
        why="range(T - 1, 0, -1) never runs t = 0",
        code=_ddpm("range(schedule.T - 1, 0, -1)"),
        fails={"test_ddpm_sample"},
    ),
    Mistake(
        name="ddim-wrong-alpha-bar",
        cause="used alpha_bar_{t-1} where",
        cell="ddim_step",
        why="alpha_bar_{t-1} where alpha_bar_{t_prev} belongs",
        code=FROM_CATALOGUE,
        fails={"test_ddim_step"},
    ),
    Mistake(
        name="ddim-negative-index",
        cause="at the final step t_prev =",
        cell="ddim_step",
        why="alpha_bars[-1] is the last entry, not alpha_bar_{-1} = 1",
        code=FROM_CATALOGUE,
        fails={"test_ddim_step"},
    ),
    Mistake(
        name="ddim-alpha-for-alpha-bar",
        cause="used alpha_t where alpha_bar_t belongs: x_t",
        cell="ddim_step",
        why="alpha used where alpha_bar belongs",
        code=FROM_CATALOGUE,
        fails={"test_ddim_step"},
    ),
    Mistake(
        name="ddim-sample-ends-at-zero",
        cause="ended at t_prev = 0 instead",
        cell="ddim_sample",
        why="the last jump goes to t = 0 instead of the clean data (-1)",
        code='''
@torch.no_grad()
def ddim_sample(model, x_T, schedule, steps):
    times = ddim_timesteps(schedule.T, steps)
    x = x_T
    for i, t in enumerate(times):
        t_prev = times[i + 1] if i + 1 < len(times) else 0
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long))
        x = ddim_step(eps, x, t, t_prev, schedule)
    return x
''',
        fails={"test_ddim_sample"},
    ),
    Mistake(
        name="ddim-sample-calls-reference",
        cell="ddim_sample",
        why="calls course_lib's ddim_sample",
        code='''
import course_lib.diffusion as _lib


def ddim_sample(model, x_T, schedule, steps):
    full = _lib.NoiseSchedule.from_betas(schedule.betas)
    return _lib.ddim_sample(model, tuple(x_T.shape), full, steps, x_T=x_T)
''',
        fails={"test_ddim_sample"},
    ),
    Mistake(
        name="cfg-swapped",
        cause="swapped the conditional and",
        cell="guided_noise",
        why="conditional and unconditional swapped",
        code=FROM_CATALOGUE,
        fails={"test_guided_noise"},
    ),
    Mistake(
        name="cfg-conditional-only",
        cause="scaled the conditional prediction",
        cell="guided_noise",
        why="scales the conditional prediction alone",
        code=FROM_CATALOGUE,
        fails={"test_guided_noise"},
    ),
    Mistake(
        name="train-no-zero-grad",
        cause="never zeroed the gradients",
        cell="train_denoiser",
        why="gradients accumulate over the steps: optimizer.zero_grad() forgotten",
        code=_train(update="""loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()"""),
        fails={"test_train_denoiser"},
    ),
    Mistake(
        name="train-clips-after-step",
        cause="did not clip the gradients before the update",
        cell="train_denoiser",
        why="clip_grad_norm_ after optimizer.step(), where it changes nothing",
        code=_train(update="""optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)"""),
        fails={"test_train_denoiser"},
    ),
    Mistake(
        name="train-keeps-labels-with-p",
        cause="kept each label with probability p_uncond",
        cell="train_denoiser",
        why="drops a label with probability 1 - p_uncond (the comparison the wrong way round)",
        code=_train(dropout="torch.rand(labels.shape) >= p_uncond"),
        fails={"test_train_denoiser"},
    ),
    Mistake(
        name="predict-ddim-as-good",
        cell="predict_ddim",
        why="expects DDIM's 50 steps to match DDPM's 1000 on the Swiss roll",
        code=_prediction("predict_ddim", "B"),
        fails={"test_predict_ddim"},
    ),
    Mistake(
        name="predict-scale-no-diversity-cost",
        cell="predict_scale",
        why="expects guidance to leave the within-class variety unchanged",
        code=_prediction("predict_scale", "C"),
        fails={"test_predict_scale"},
    ),
]
