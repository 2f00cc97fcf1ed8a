"""Mistake submissions for 03_reverse_diffusion: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell is the target of at least one
mistake; each mistake names exactly the test cells that must score 0.
"""

import harness
from harness import FROM_CATALOGUE, Mistake


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
        code=FROM_CATALOGUE,
        fails={"test_ddpm_sample"},
    ),
    Mistake(
        name="ddpm-skips-last-step",
        cause="stopped before t = 0: `range(T",
        cell="ddpm_sample",
        why="range(T - 1, 0, -1) never runs t = 0",
        code=FROM_CATALOGUE,
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
        code=FROM_CATALOGUE,
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
        name="time-embedding-as-shipped",
        cause="the layout is wrong: at t = 0, where every angle is 0",
        cell="timestep_embedding",
        why="the colleague's code, unfixed: frequencies that grow, and cosines before sines",
        code=harness.as_shipped("03_reverse_diffusion", "timestep_embedding"),
        fails={"test_timestep_embedding"},
    ),
    Mistake(
        name="time-embedding-growing-frequencies",
        cause="the frequencies are wrong, and far too fast",
        cell="timestep_embedding",
        why="only the layout fixed: the exponent still lacks its minus sign",
        code=FROM_CATALOGUE,
        fails={"test_timestep_embedding"},
    ),
    Mistake(
        name="time-embedding-cosines-first",
        cause="the layout is wrong: at t = 0, where every angle is 0",
        cell="timestep_embedding",
        why="only the frequencies fixed: cosines still before sines",
        code=FROM_CATALOGUE,
        fails={"test_timestep_embedding"},
    ),
    Mistake(
        name="time-embedding-interleaved",
        cause="zeros and ones alternate feature by feature",
        cell="timestep_embedding",
        why="sin and cos interleaved, as notebook 04's positions, instead of two halves",
        code=FROM_CATALOGUE,
        fails={"test_timestep_embedding"},
    ),
    Mistake(
        name="time-embedding-exponent-over-dim",
        cause="the frequencies fall too slowly",
        cell="timestep_embedding",
        why="exponent i/dim: the ladder stops at 1/sqrt(max_period)",
        code=FROM_CATALOGUE,
        fails={"test_timestep_embedding"},
    ),
    Mistake(
        name="time-embedding-from-one",
        cause="the frequencies are all too slow, even the first",
        cell="timestep_embedding",
        why="frequencies from i = 1 .. dim/2 (off by one)",
        code=FROM_CATALOGUE,
        fails={"test_timestep_embedding"},
    ),
    Mistake(
        name="train-no-zero-grad",
        cause="never zeroed the gradients",
        cell="train_denoiser",
        why="gradients accumulate over the steps: optimizer.zero_grad() forgotten",
        code=FROM_CATALOGUE,
        fails={"test_train_denoiser"},
    ),
    Mistake(
        name="train-clips-after-step",
        cause="did not clip the gradients before the update",
        cell="train_denoiser",
        why="clip_grad_norm_ after optimizer.step(), where it changes nothing",
        code=FROM_CATALOGUE,
        fails={"test_train_denoiser"},
    ),
    Mistake(
        name="train-keeps-labels-with-p",
        cause="kept each label with probability p_uncond",
        cell="train_denoiser",
        why="drops a label with probability 1 - p_uncond (the comparison the wrong way round)",
        code=FROM_CATALOGUE,
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
