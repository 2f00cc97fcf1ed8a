"""course_lib.showdown: each family trains on a wall-clock budget and samples; the probe leaves no trace; the budget
clock stops a run and does not charge evaluation to it; the cache loads the same recipe and retrains a changed one."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from course_lib.showdown import (
    BudgetClock,
    DiffusionRecipe,
    GANRecipe,
    TransformerRecipe,
    _build_run,
    checkpoint_path,
    default_recipes,
    samplers,
    time_sampling,
    train_family,
    train_showdown,
)
from course_lib.train import History, StopTraining, run_loop

TINY = {
    "gan": GANRecipe(name="test", seconds=0.3, latent_dim=4, channels=8, loss="non_saturating", d_steps=1,
                     batch_size=16),
    "diffusion": DiffusionRecipe(name="test", seconds=0.3, hidden=16, depth=1, T=20, ddim_steps=5, batch_size=16),
    "transformer": TransformerRecipe(name="test", seconds=0.3, levels=4, n_layer=1, n_head=2, n_embd=16,
                                     batch_size=8),
}
SAMPLER_NAMES = {
    "gan": ["GAN"],
    "diffusion": ["DDIM (5 steps)", "DDPM (20 steps)"],
    "transformer": ["transformer (KV cache)", "transformer (no cache)"],
}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("family", list(TINY))
def test_each_family_trains_on_its_budget_and_samples(family, tmp_path):
    recipe = TINY[family]
    trained = train_family(recipe, cache_dir=tmp_path, progress=False)
    info = trained.info
    assert trained.family == family and not info["cached"]
    assert 1 <= info["steps"] <= info["planned_steps"]
    assert info["train_seconds"] < recipe.seconds + 1.0  # the budget, and at most one step (slow, shared CPUs) past it
    assert list(trained.samplers) == SAMPLER_NAMES[family]
    for sampler in trained.samplers.values():
        images = sampler(3, seed=5)
        assert images.shape == (3, 1, 8, 8) and torch.isfinite(images).all()
        assert torch.equal(images, sampler(3, seed=5))  # the same seed, the same digits
        assert not torch.equal(images, sampler(3, seed=6))
    assert torch.equal(trained.sample(2, seed=1), trained.samplers[SAMPLER_NAMES[family][0]](2, seed=1))


@pytest.mark.parametrize("family", list(TINY))
def test_the_trained_model_is_the_recipes_run_and_the_probe_leaves_no_trace(family, tmp_path):
    """Re-run the recipe for the planned steps, stopped where the budget stopped it: the very same weights."""
    trained = train_family(TINY[family], cache_dir=tmp_path, progress=False)
    done, planned = trained.info["steps"], trained.info["planned_steps"]

    def stop_where_it_stopped(step: int, history: History) -> None:
        if step + 1 == done:
            raise StopTraining

    model, run = _build_run(TINY[family])
    run(planned, stop_where_it_stopped, False)
    assert _same_weights(model, trained.model)


def test_second_call_loads_and_a_changed_recipe_retrains(tmp_path, capsys):
    recipe = TINY["transformer"]
    first = train_family(recipe, cache_dir=tmp_path, progress=False)
    path = checkpoint_path(recipe, tmp_path)
    assert path == tmp_path / "showdown-transformer-test.pt" and path.exists() and first.info["path"] == str(path)

    again = train_family(recipe, cache_dir=tmp_path, progress=False)
    assert again.info["cached"] and again.info["steps"] == first.info["steps"]
    assert _same_weights(first.model, again.model)
    assert torch.equal(first.sample(4, seed=2), again.sample(4, seed=2))

    changed = dataclasses.replace(recipe, seed=1)
    retrained = train_family(changed, cache_dir=tmp_path, progress=False)
    assert not retrained.info["cached"] and not _same_weights(first.model, retrained.model)
    assert "seed: checkpoint 0, requested 1" in capsys.readouterr().out
    assert train_family(changed, cache_dir=tmp_path, progress=False).info["recipe"]["seed"] == 1
    assert train_family(changed, cache_dir=tmp_path, progress=False).info["cached"]

    budget = dataclasses.replace(changed, seconds=0.2)  # the budget is part of the recipe
    assert not train_family(budget, cache_dir=tmp_path, progress=False).info["cached"]


def test_evaluate_records_a_curve_and_a_cache_without_one_retrains(tmp_path):
    recipe = TINY["diffusion"]
    train_family(recipe, cache_dir=tmp_path, progress=False)  # cached without a curve
    seen = []

    def evaluate(sampler) -> float:
        images = sampler(4)
        seen.append(images.shape)
        return float(images.abs().mean())

    trained = train_family(recipe, evaluate=evaluate, eval_every=0.1, cache_dir=tmp_path, progress=False)
    curve = trained.info["curve"]
    assert not trained.info["cached"] and len(curve) == len(seen) >= 2
    assert seen[0] == (4, 1, 8, 8)
    seconds, steps, values = zip(*curve)
    assert list(seconds) == sorted(seconds) and list(steps) == sorted(set(steps))
    assert steps[-1] == trained.info["steps"]  # the final model is scored
    assert all(isinstance(v, float) for v in values)
    loaded = train_family(recipe, evaluate=evaluate, cache_dir=tmp_path, progress=False)
    assert loaded.info["cached"] and loaded.info["curve"] == curve


def test_budget_clock_stops_the_run_and_does_not_charge_evaluation():
    def slow_evaluate(sampler) -> float:
        time.sleep(0.15)
        return 1.0

    clock = BudgetClock(0.2, sampler=lambda n, seed=0: torch.zeros(n, 1, 8, 8), evaluate=slow_evaluate, eval_every=0.05)
    start = time.perf_counter()
    history = run_loop(lambda step: time.sleep(0.01) or 0.0, 10_000, callback=clock, progress=False)
    wall = time.perf_counter() - start
    assert history.stopped_at is not None and history.stopped_at < 10_000
    assert 0.2 <= clock.elapsed < 0.2 + 0.5
    assert len(clock.points) >= 3 and wall >= clock.elapsed + 0.15 * len(clock.points) - 0.05
    steps = [s for _, s, _ in clock.points]
    assert steps == sorted(set(steps)) and all(v == 1.0 for *_, v in clock.points)


def test_time_sampling_reports_milliseconds_per_sample():
    def sleepy(n: int, seed: int = 0) -> torch.Tensor:
        time.sleep(0.002 * n)
        return torch.zeros(n, 1, 8, 8)

    ms = time_sampling({"sleepy": sleepy}, n=10)
    assert list(ms) == ["sleepy"] and 2.0 <= ms["sleepy"] < 10.0
    model, _ = _build_run(TINY["transformer"])
    ms = time_sampling(samplers(TINY["transformer"], model), n=4)
    assert set(ms) == set(SAMPLER_NAMES["transformer"]) and all(v > 0 for v in ms.values())
    with pytest.raises(ValueError, match="positive"):
        time_sampling({"sleepy": sleepy}, n=0)


def test_default_recipes_follow_fast_mode_and_take_a_budget(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    fast = default_recipes()
    assert list(fast) == ["gan", "diffusion", "transformer"]
    assert all(r.name == "fast" and r.seconds <= 5 and r.family == family for family, r in fast.items())
    monkeypatch.setenv("COURSE_FAST", "0")
    full = default_recipes(seconds=60)
    assert all(r.name == "full" and r.seconds == 60.0 for r in full.values())


def test_train_showdown_gives_every_family_the_same_budget(tmp_path):
    trained = train_showdown(0.2, recipes=TINY, cache_dir=tmp_path, progress=False)
    assert list(trained) == ["gan", "diffusion", "transformer"]
    assert all(t.recipe.seconds == 0.2 and t.family == family and not t.info["cached"] for family, t in trained.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"showdown-{f}-test.pt" for f in sorted(TINY)]


def test_bad_recipes_are_refused(tmp_path):
    with pytest.raises(TypeError, match="GANRecipe, DiffusionRecipe or TransformerRecipe"):
        train_family({"seconds": 1}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="budget"):
        train_family(dataclasses.replace(TINY["gan"], seconds=0), cache_dir=tmp_path)
