"""Mistake submissions for 02_forward_diffusion: each is the solution with one answer cell wrong.

Read by tools/harness.py. Every answer cell is the target of at least one
mistake; each mistake names exactly the test cells that must score 0.
"""

import harness
from harness import FROM_CATALOGUE, Mistake

MISTAKES = [
    Mistake(
        name="linear-arange",
        cause="the last beta falls short",
        cell="linear_beta_schedule",
        why="arange(T) / T never reaches beta_end",
        code=FROM_CATALOGUE,
        fails={"test_linear_beta_schedule"},
    ),
    Mistake(
        name="linear-calls-reference",
        cell="linear_beta_schedule",
        why="imports the course_lib reference",
        code='''
from course_lib.diffusion import linear_beta_schedule as _ready


def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    return _ready(T, beta_start, beta_end)
''',
        fails={"test_linear_beta_schedule"},
    ),
    Mistake(
        name="cosine-no-clip",
        cause="the last betas exceed 0.999:",
        cell="cosine_beta_schedule",
        why="the last beta reaches 1",
        code=FROM_CATALOGUE,
        fails={"test_cosine_beta_schedule"},
    ),
    Mistake(
        name="cosine-not-squared",
        cause="forgot to square the cosine:",
        cell="cosine_beta_schedule",
        why="cos instead of cos squared",
        code=FROM_CATALOGUE,
        fails={"test_cosine_beta_schedule"},
    ),
    Mistake(
        name="alpha-bars-are-alphas",
        cause="returned alpha_t = 1 - beta_t",
        cell="compute_alpha_bars",
        why="alpha used where alpha_bar belongs",
        code=FROM_CATALOGUE,
        fails={"test_alpha_bars"},
    ),
    Mistake(
        name="alpha-bars-cumsum",
        cause="summed the alphas: alpha_bar",
        cell="compute_alpha_bars",
        why="a running sum instead of a product",
        code=FROM_CATALOGUE,
        fails={"test_alpha_bars"},
    ),
    Mistake(
        name="q-sample-alpha-not-alpha-bar",
        cause="used alpha_t where alpha_bar_t belongs: one",
        cell="q_sample",
        why="one step's alpha where the cumulative alpha_bar belongs",
        code=FROM_CATALOGUE,
        fails={"test_q_sample_points", "test_q_sample_images"},
    ),
    Mistake(
        name="q-sample-no-sqrt",
        cause="forgot the square roots: x_t",
        cell="q_sample",
        why="variances used as standard deviations",
        code=FROM_CATALOGUE,
        fails={"test_q_sample_points", "test_q_sample_images"},
    ),
    Mistake(
        name="q-sample-off-by-one",
        cause="off by one between t and the schedule index: timesteps",
        cell="q_sample",
        why="1-based habit: alpha_bars[t - 1]",
        code=FROM_CATALOGUE,
        fails={"test_q_sample_points", "test_q_sample_images"},
    ),
    Mistake(
        name="q-sample-points-only",
        cause="coefficients did not broadcast against x0",
        cell="q_sample",
        why="[:, None] broadcasts against (B, 2) but not against images",
        code='''
def q_sample(x0, t, schedule, noise=None):
    if noise is None:
        noise = torch.randn_like(x0)
    ab = schedule.alpha_bars[t][:, None]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
''',
        fails={"test_q_sample_images"},
    ),
    Mistake(
        name="q-sample-precomputed",
        cause="read a precomputed term of",
        cell="q_sample",
        why="reads the schedule's precomputed square roots instead of computing them",
        code=FROM_CATALOGUE, catalogue='Q_SAMPLE_MISTAKES',
        fails={"test_q_sample_points", "test_q_sample_images"},
    ),
    Mistake(
        name="q-sample-calls-reference",
        cell="q_sample",
        why="calls course_lib's q_sample",
        code='''
import course_lib.diffusion


def q_sample(x0, t, schedule, noise=None):
    return course_lib.diffusion.q_sample(x0, t, course_lib.diffusion.NoiseSchedule.from_betas(schedule.betas), noise)
''',
        fails={"test_q_sample_points"},
    ),
    Mistake(
        name="extract-as-shipped",
        cause="every example gets the value of another step than its own t_i",
        cell="extract",
        why="the debug exercise handed in unchanged: values[t - 1] and a (B, 1) result for every x",
        code=harness.as_shipped("02_forward_diffusion", "extract"),
        fails={"test_extract"},
    ),
    Mistake(
        name="extract-previous-step",
        cause="every example gets the value of another step than its own t_i",
        cell="extract",
        why="fixed the shape only: still values[t - 1], which wraps to the last step at t = 0",
        code=FROM_CATALOGUE,
        fails={"test_extract"},
    ),
    Mistake(
        name="extract-points-only",
        cause="the result has shape (B, 1) whatever x is",
        cell="extract",
        why="fixed the index only: still view(-1, 1), right for points, not for images",
        code=FROM_CATALOGUE,
        fails={"test_extract"},
    ),
    Mistake(
        name="extract-clamped",
        cause="examples at t = 0 now get their own value",
        cell="extract",
        why="patched the wrap-around at t = 0 instead of the off-by-one behind it",
        code=FROM_CATALOGUE,
        fails={"test_extract"},
    ),
    Mistake(
        name="extract-flat",
        cause="the result is one-dimensional, (B,), whatever x is",
        cell="extract",
        why="dropped the reshape altogether",
        code=FROM_CATALOGUE,
        fails={"test_extract"},
    ),
    Mistake(
        name="extract-extra-axis",
        cause="the result has one axis more than x",
        cell="extract",
        why="x.dim() ones after the batch axis instead of x.dim() - 1",
        code=FROM_CATALOGUE,
        fails={"test_extract"},
    ),
    Mistake(
        name="extract-images-only",
        cause="the result has 4 axes whatever x is",
        cell="extract",
        why="[:, None, None, None]: right for images, not for points",
        code=FROM_CATALOGUE,
        fails={"test_extract"},
    ),
    Mistake(
        name="extract-reshape-to-x",
        cause="asked the B picked values, one per example, to fill a shape",
        cell="extract",
        why="one value per example cannot fill x's shape: a RuntimeError",
        code='''
def extract(values, t, x):
    return values[t].reshape(x.shape)
''',
        fails={"test_extract"},
    ),
    Mistake(
        name="q-chain-alpha-bar",
        cause="one chain step scales by sqrt(alpha_t), not sqrt(alpha_bar_t)",
        cell="q_chain",
        why="the cumulative alpha_bar in a single step: the signal shrinks far too fast",
        code=FROM_CATALOGUE,
        fails={"test_q_chain"},
    ),
    Mistake(
        name="q-chain-from-x0",
        cause="every step starts again from the clean x0",
        cell="q_chain",
        why="never updates the running state: each step noises the clean data afresh",
        code=FROM_CATALOGUE,
        fails={"test_q_chain"},
    ),
    Mistake(
        name="q-chain-not-scaled",
        cause="the previous state is not scaled down by sqrt(alpha_t)",
        cell="q_chain",
        why="adds the noise without shrinking the state: variance exploding",
        code=FROM_CATALOGUE,
        fails={"test_q_chain"},
    ),
    Mistake(
        name="q-chain-keeps-x0",
        cause="the chain's first state is the clean x0",
        cell="q_chain",
        why="stores the state before each step instead of after it",
        code=FROM_CATALOGUE,
        fails={"test_q_chain"},
    ),
    Mistake(
        name="q-chain-whole-schedule",
        cause="the chain ran more steps than there are noise draws",
        cell="q_chain",
        why="loops over schedule.T instead of len(noise): fails on a partial chain",
        code='''
def q_chain(x0, schedule, noise):
    states, x = [], x0
    for t in range(len(schedule.betas)):
        x = schedule.alphas[t].sqrt() * x + schedule.betas[t].sqrt() * noise[t]
        states.append(x)
    return torch.stack(states)
''',
        fails={"test_q_chain"},
    ),
    Mistake(
        name="q-chain-calls-q-step",
        cell="q_chain",
        why="loops over course_lib's one-step q_step instead of writing the step",
        code='''
from course_lib.diffusion import NoiseSchedule, q_step


def q_chain(x0, schedule, noise):
    full_schedule = NoiseSchedule.from_betas(schedule.betas)
    states, x = [], x0
    for t in range(len(noise)):
        x = q_step(x, t, full_schedule, noise[t])
        states.append(x)
    return torch.stack(states)
''',
        fails={"test_q_chain"},
    ),
    Mistake(
        name="predict-variance-adds-up",
        cell="predict_variance",
        why="the variances of the steps' noises add up to about 10 (they do not: each step shrinks the old noise)",
        code='''
predict_variance = "A"
''',
        fails={"test_predict_variance"},
    ),
    Mistake(
        name="predict-variance-not-a-letter",
        cell="predict_variance",
        why="a number where a letter belongs: fails even the visible form check",
        code='''
predict_variance = 1.0
''',
        fails={"test_predict_variance"},
    ),
    Mistake(
        name="predict-snr-swapped",
        cell="predict_snr",
        why="the schedules swapped: the cosine schedule is the one that keeps its signal longer",
        code='''
predict_snr = "B"
''',
        fails={"test_predict_snr"},
    ),
]
