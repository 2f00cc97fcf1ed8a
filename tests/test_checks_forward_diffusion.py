"""Notebook 02's checks (course_lib.checks.forward_diffusion), and course_lib's q_chain behind its synthesis.

The debug exercise ``extract`` is checked on the code the notebook ships (read from it with harness.as_shipped):
its first failure names the off-by-one, the second, once that is fixed, the (B, 1) shape.

q_chain is compared with the chain unrolled by hand in NumPy float64 (each state is
sqrt(alpha_bar_t) x0 plus a weighted sum of all noises so far) and, statistically, with
Ho et al. (2020)'s closed form q(x_t | x_0), its alpha_bar computed in NumPy. The check
passes course_lib's answer and a correct vectorised one, and names every catalogued mistake.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from envtools import assert_each_mistake_is_caught_and_named, assert_fails_naming
from harness import as_shipped

from course_lib import diffusion as D
from course_lib.checks import forward_diffusion as FD
from course_lib.checks.forward_diffusion import bare_schedule
from course_lib.grading import CheckFailed, _mismatch, _resolve, catalogued, check_function

# -- the reference, against independent arithmetic ---------------------------------------


def _unrolled(x0: np.ndarray, betas: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """x_k = prod_{s<=k} sqrt(alpha_s) x0 + sum_{s<=k} sqrt(beta_s) prod_{s<r<=k} sqrt(alpha_r) noise_s, in float64."""
    alphas = 1 - betas
    out = []
    for k in range(len(noise)):
        x = np.prod(np.sqrt(alphas[: k + 1])) * x0
        for s in range(k + 1):
            x = x + np.sqrt(betas[s]) * np.prod(np.sqrt(alphas[s + 1 : k + 1])) * noise[s]
        out.append(x)
    return np.stack(out)


@pytest.mark.parametrize("shape,K,T", [((4, 2), 12, 12), ((2, 1, 3, 3), 5, 9), ((6,), 1, 4)])
def test_q_chain_is_the_chain_unrolled_by_hand(shape, K, T):
    g = torch.Generator().manual_seed(K)
    betas = 0.3 * torch.rand(T, generator=g, dtype=torch.float64) + 1e-3
    x0, noise = torch.randn(shape, generator=g), torch.randn(K, *shape, generator=g)
    out = D.q_chain(x0, D.NoiseSchedule.from_betas(betas), noise)
    assert out.shape == (K, *shape) and out.dtype == torch.float32
    expected = _unrolled(x0.double().numpy(), betas.numpy(), noise.double().numpy())
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_chain_matches_the_closed_form_in_distribution(kind):
    T, n = 200, 40_000
    betas = (np.linspace(1e-4, 0.04, T) if kind == "linear"
             else D.cosine_beta_schedule(T).double().numpy())
    alpha_bars = np.cumprod(1 - betas)  # DDPM eq. 4, independently of NoiseSchedule
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((n, 1), 1.5)
    out = D.q_chain(x0, D.NoiseSchedule.from_betas(torch.tensor(betas)), torch.randn(T, n, 1, generator=g))
    for t in (0, 20, 100, T - 1):
        mean, var = out[t, :, 0].double().mean().item(), out[t, :, 0].double().var().item()
        assert abs(mean - 1.5 * np.sqrt(alpha_bars[t])) < 4 * np.sqrt((1 - alpha_bars[t]) / n) + 1e-6, (t, mean)
        assert abs(var - (1 - alpha_bars[t])) < 5 * np.sqrt(2 / n) * (1 - alpha_bars[t]) + 1e-6, (t, var)


def test_q_chain_is_q_step_repeated():
    schedule = D.NoiseSchedule.cosine(30)
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(5, 2, generator=g), torch.randn(30, 5, 2, generator=g)
    x = x0
    for t in range(30):
        x = D.q_step(x, t, schedule, noise[t])
    torch.testing.assert_close(D.q_chain(x0, schedule, noise)[-1], x)


@pytest.mark.parametrize(
    "x0,noise,error",
    [
        (torch.zeros(3, 2), torch.zeros(4, 3), ValueError),  # noise not (K, *x0.shape)
        (torch.zeros(3, 2), torch.zeros(4, 2, 2), ValueError),
        (torch.zeros(3, 2), torch.zeros(11, 3, 2), ValueError),  # K > T
        (torch.zeros(3, 2), torch.zeros(0, 3, 2), ValueError),  # K = 0
        (torch.zeros(3, 2), np.zeros((2, 3, 2)), TypeError),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(2, 3, 2), ValueError),
    ],
)
def test_q_chain_rejects_bad_input(x0, noise, error):
    with pytest.raises(error):
        D.q_chain(x0, D.NoiseSchedule.linear(10), noise)


def test_q_chain_wants_a_schedule():
    with pytest.raises(TypeError, match="NoiseSchedule"):
        D.q_chain(torch.zeros(3, 2), D.linear_beta_schedule(10), torch.zeros(2, 3, 2))


# -- the self-check -------------------------------------------------------------------


def _vectorised(x0, schedule, noise):
    """A correct answer without a loop: x_t = sqrt(alpha_bar_t) (x0 + sum_{s<=t} sqrt(beta_s / alpha_bar_s) noise_s)."""
    K = len(noise)
    ab = schedule.alpha_bars[:K].double().reshape(K, *([1] * x0.dim()))
    b = schedule.betas[:K].double().reshape(K, *([1] * x0.dim()))
    walk = torch.cumsum((b / ab).sqrt() * noise.double(), dim=0)
    return (ab.sqrt() * (x0.double() + walk)).float()


def _loop_over_T(x0, schedule, noise):
    x, states = x0, []
    for t in range(len(schedule.betas)):
        x = schedule.alphas[t].sqrt() * x + schedule.betas[t].sqrt() * noise[t]
        states.append(x)
    return torch.stack(states)


def _hidden_style_cases():
    g = torch.Generator().manual_seed(1)
    long = bare_schedule(D.cosine_beta_schedule(1000))
    random = bare_schedule(0.2 * torch.rand(30, generator=g) + 1e-3)
    return [
        {"x0": torch.randn(4, 3, generator=g), "schedule": long, "noise": torch.randn(1000, 4, 3, generator=g)},
        {"x0": torch.randn(6, generator=g), "schedule": random, "noise": torch.randn(30, 6, generator=g)},
    ]


@pytest.mark.parametrize("answer", [D.q_chain, _vectorised], ids=["course_lib", "vectorised"])
def test_correct_answers_pass(answer):
    FD.check_q_chain(answer)
    FD.check_q_chain(answer, cases=_hidden_style_cases())


def test_the_visible_cases_are_a_partial_chain_a_whole_one_and_a_single_step():
    cases = FD.q_chain_cases()
    T = len(cases[0]["schedule"].betas)
    assert [len(c["noise"]) for c in cases] == [7, T, 1]
    assert cases[0]["x0"].dim() == 4  # images: the coefficients must broadcast


@pytest.mark.parametrize("description", list(FD.Q_CHAIN_MISTAKES))
def test_each_mistake_is_wrong_and_named(description):
    wrong = FD.Q_CHAIN_MISTAKES[description]
    cases = FD.q_chain_cases()
    assert any(_mismatch(wrong(**c), FD.reference_q_chain(**c), "x", 1e-4, 1e-4) for c in cases)
    with pytest.raises(CheckFailed) as caught:
        check_function(wrong, FD.reference_q_chain, cases, name="q_chain", atol=1e-4, mistakes=FD.Q_CHAIN_MISTAKES)
    assert description in str(caught.value), str(caught.value)


def test_a_loop_over_the_whole_schedule_fails_with_the_error_and_its_likely_cause():
    with pytest.raises(CheckFailed, match="IndexError") as caught:
        FD.check_q_chain(_loop_over_T)
    assert f"Likely cause: {FD.Q_CHAIN_ERRORS[next(iter(FD.Q_CHAIN_ERRORS))]}" in str(caught.value)


def test_q_sample_that_does_not_broadcast_names_the_likely_cause():
    """The most common q_sample slip: (B,) coefficients against (B, C, H, W) raise instead of broadcasting."""
    def q_sample_one_axis(x0, t, schedule, noise=None):
        ab = schedule.alpha_bars[t][:, None]  # (B, 1): right for points, wrong for images
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    FD.check_q_sample_points(q_sample_one_axis)
    with pytest.raises(CheckFailed, match="raised RuntimeError") as caught:
        FD.check_q_sample_images(q_sample_one_axis)
    assert f"Likely cause: {next(iter(FD.Q_SAMPLE_ERRORS.values()))}" in str(caught.value)


def test_a_chain_that_changes_x0_in_place_is_reported():
    def in_place(x0, schedule, noise):
        states = []
        for t in range(len(noise)):
            x0.mul_(schedule.alphas[t].sqrt()).add_(schedule.betas[t].sqrt() * noise[t])
            states.append(x0.clone())
        return torch.stack(states)

    with pytest.raises(CheckFailed, match="in place"):
        FD.check_q_chain(in_place)


@pytest.mark.parametrize("target", FD.Q_CHAIN_SHORTCUTS)
def test_every_shortcut_resolves_and_is_caught(target):
    owner, attr, fn = _resolve(target)
    assert callable(fn) and getattr(owner, attr) is fn
    if target.endswith("q_step"):
        def answer(x0, schedule, noise):
            x, states = x0, []
            for t in range(len(noise)):
                x = D.q_step(x, t, D.NoiseSchedule.from_betas(schedule.betas), noise[t])
                states.append(x)
            return torch.stack(states)
    else:
        def answer(x0, schedule, noise):
            return fn(x0, schedule, noise)
    with pytest.raises(CheckFailed, match="build yourself"):
        FD.check_q_chain(answer)


def test_a_bare_schedule_is_enough_for_the_chain():
    case = FD.q_chain_cases()[1]
    assert torch.isnan(case["schedule"].sqrt_alpha_bars).all()
    assert torch.isfinite(D.q_chain(**case)).all()


# -- the catalogues of notebook 02's other exercises: fixtures are sound, and every mistake is catchable ---


def _schedule(T=20):
    return bare_schedule(D.linear_beta_schedule(T, 1e-3, 0.2))


def test_bare_schedule_hides_derived_terms_only():
    bare = _schedule()
    assert torch.isnan(bare.sqrt_alpha_bars).all() and torch.isnan(bare.posterior_variance).all()
    assert torch.isfinite(bare.alpha_bars).all() and torch.equal(FD.full(bare).alpha_bars, bare.alpha_bars)


def _catalogue_cases():
    g = torch.Generator().manual_seed(0)
    s = _schedule()
    x2 = torch.randn(6, 2, generator=g)
    t6 = torch.tensor([0, 1, 5, 10, 18, 19])
    return {
        "linear": (
            FD.LINEAR_MISTAKES, D.linear_beta_schedule, [{"T": 10}, {"T": 7, "beta_start": 0.01, "beta_end": 0.3}]
        ),
        "cosine": (FD.COSINE_MISTAKES, D.cosine_beta_schedule, [{"T": 10}, {"T": 50, "s": 0.02}]),
        "alpha_bars": (FD.ALPHA_BAR_MISTAKES, FD.reference_alpha_bars, [{"betas": s.betas}]),
        "q_sample": (
            FD.Q_SAMPLE_MISTAKES,
            FD.reference_q_sample,
            [{"x0": x2, "t": t6, "schedule": s, "noise": torch.randn(6, 2, generator=g)}],
        ),
        "extract": (FD.EXTRACT_MISTAKES, D.extract, FD.extract_cases()),
    }


@pytest.mark.parametrize("exercise", list(_catalogue_cases()))
def test_every_catalogued_mistake_is_caught_and_named(exercise):
    assert_each_mistake_is_caught_and_named(*_catalogue_cases()[exercise], name=exercise)


# -- the debug exercise: extract ------------------------------------------------------


def _shipped_extract():
    """The function the student release ships (the notebook's buggy code, uncommented), defined here."""
    namespace = {"torch": torch}
    exec(as_shipped("02_forward_diffusion", "extract"), namespace)
    return namespace["extract"]


def _extract_by_gather(values, t, x):
    """A correct answer written differently: gather, then index with None for each extra axis."""
    return values.gather(0, t)[(...,) + (None,) * (x.dim() - 1)]


def _extract_hidden_style_cases():
    g = torch.Generator().manual_seed(5)
    return [
        {"values": D.NoiseSchedule.cosine(1000).alpha_bars, "t": torch.tensor([999, 0, 500, 1, 998, 250, 0, 42]),
         "x": torch.randn(8, 1, 8, 8, generator=g)},  # B = 8: a (B, 1) result would broadcast against the width
        {"values": torch.rand(12, generator=g), "t": torch.tensor([11]), "x": torch.randn(1, 3, generator=g)},
        {"values": torch.rand(30, generator=g, dtype=torch.float64), "t": torch.randint(0, 30, (3,), generator=g),
         "x": torch.randn(3, 2, 5, 4, generator=g)},
    ]


@pytest.mark.parametrize("answer", [D.extract, _extract_by_gather], ids=["course_lib", "gather"])
def test_correct_extracts_pass(answer):
    FD.check_extract(answer)
    FD.check_extract(answer, cases=_extract_hidden_style_cases())


def test_the_visible_extract_cases_cover_the_contracts_edges():
    cases = FD.extract_cases()
    T = len(cases[0]["values"])
    steps = torch.cat([c["t"] for c in cases])
    assert {0, T - 1} <= set(steps.tolist())
    assert sorted(c["x"].dim() for c in cases) == [1, 2, 4]  # (B,), points, images


def test_the_shipped_extract_runs_and_is_wrong_on_every_shape():
    """Wrong, not broken: it raises on no input of the contract, and the check names its first bug."""
    shipped = _shipped_extract()
    for case in FD.extract_cases() + _extract_hidden_style_cases():
        out = shipped(**case)
        assert _mismatch(out, D.extract(**case), "x", 1e-6, 1e-6)
    assert_fails_naming(lambda: FD.check_extract(shipped), next(iter(FD.EXTRACT_MISTAKES)))
    assert_fails_naming(lambda: FD.check_extract(shipped), "(Hint 1 above, on picking)")


def test_fixing_one_bug_of_the_shipped_extract_lets_the_check_name_the_other():
    shipped = _shipped_extract()

    def index_fixed(values, t, x):
        return shipped(values, t + 1, x)  # undoes its t - 1; its (B, 1) shape stays

    assert_fails_naming(lambda: FD.check_extract(index_fixed), catalogued(FD.EXTRACT_MISTAKES, FD._extract_points_only))


@pytest.mark.parametrize("description", list(FD.EXTRACT_MISTAKES))
def test_each_extract_mistake_fails_the_self_check_naming_it(description):
    assert_fails_naming(lambda: FD.check_extract(FD.EXTRACT_MISTAKES[description]), description)


@pytest.mark.parametrize("pattern", list(FD.EXTRACT_ERRORS))
def test_an_extract_that_raises_names_the_likely_cause(pattern):
    def to_x_shape(values, t, x):
        return values[t].reshape(x.shape)

    def expanded(values, t, x):
        return values[t].expand_as(x)

    answer = to_x_shape if "invalid" in pattern else expanded
    assert_fails_naming(lambda: FD.check_extract(answer), f"Likely cause: {FD.EXTRACT_ERRORS[pattern]}")


def test_extract_calling_course_libs_is_caught():
    def answer(values, t, x):
        return D.extract(values, t, x)

    assert_fails_naming(lambda: FD.check_extract(answer), "build yourself")
