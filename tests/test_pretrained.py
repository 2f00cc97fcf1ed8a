"""course_lib.pretrained: one call pre-trains or loads, and a checkpoint from another recipe is refused by name."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from course_lib.data import text_corpus
from course_lib.env import cache_dir
from course_lib.gpt import GPT
from course_lib.pretrained import (
    FAST_RECIPE,
    Recipe,
    checkpoint_path,
    course_vocabulary,
    lm_eval_loss,
    pretrained_gpt,
    recipe_differences,
)

TINY = dataclasses.replace(FAST_RECIPE, name="test", steps=6, n_layer=1, n_embd=16, block_size=16, batch_size=4)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    model, tokenizer, info = pretrained_gpt(TINY, cache_dir=folder, progress=False)
    return folder, model, tokenizer, info


def test_first_call_trains_and_writes_the_checkpoint(cached):
    folder, model, tokenizer, info = cached
    assert isinstance(model, GPT) and not info["cached"]
    assert checkpoint_path(TINY, folder).exists() and info["path"] == str(checkpoint_path(TINY, folder))
    assert info["recipe"]["steps"] == 6 and info["recipe"]["vocab"] == course_vocabulary()
    assert model.config.n_layer == 1 and model.config.vocab_size == tokenizer.vocab_size
    assert len(info["val_curve"]) >= 1 and info["val_loss"] == info["val_curve"][-1][1]


def test_second_call_loads_the_same_weights(cached):
    folder, model, _, info = cached
    again, tokenizer, info2 = pretrained_gpt(TINY, cache_dir=folder, progress=False)
    assert info2["cached"] and info2["val_loss"] == info["val_loss"]
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.tensor([tokenizer.encode("def f(x):\n    return x")[: TINY.block_size]])
    assert torch.equal(model(x), again(x))


def test_training_is_repeatable(cached, tmp_path):
    _, model, _, _ = cached
    other, _, _ = pretrained_gpt(TINY, cache_dir=tmp_path, progress=False)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_different_recipe_is_refused_naming_the_fields(cached):
    folder, *_ = cached
    changed = dataclasses.replace(TINY, steps=7, lr=1e-3)
    with pytest.raises(ValueError) as caught:
        pretrained_gpt(changed, cache_dir=folder, progress=False)
    message = str(caught.value)
    assert "steps: checkpoint 6, requested 7" in message and "lr: checkpoint 0.003, requested 0.001" in message
    assert "seed" not in message and "n_embd" not in message


def test_retrain_overwrites_a_checkpoint_with_another_recipe(tmp_path):
    pretrained_gpt(TINY, cache_dir=tmp_path, progress=False)
    changed = dataclasses.replace(TINY, seed=1)
    _, _, info = pretrained_gpt(changed, cache_dir=tmp_path, retrain=True, progress=False)
    assert not info["cached"]
    _, _, again = pretrained_gpt(changed, cache_dir=tmp_path, progress=False)
    assert again["cached"] and again["recipe"]["seed"] == 1


def test_differences_name_the_vocabulary_and_missing_fields():
    stored = {"steps": 1, "vocab": "abc"}
    lines = recipe_differences(stored, {"steps": 1, "vocab": "abcd", "lr": 0.1})
    assert lines == [
        "lr: checkpoint '<missing>', requested 0.1",
        "vocab: checkpoint has 3 characters, these corpora have 4",
    ]


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = checkpoint_path(TINY, tmp_path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a course_lib GPT checkpoint"):
        pretrained_gpt(TINY, cache_dir=tmp_path, progress=False)


def test_the_tokenizer_covers_both_corpora():
    vocab = course_vocabulary()
    assert set(text_corpus("reference", "all")) <= set(vocab) and set(text_corpus("docstrings", "all")) <= set(vocab)
    assert vocab == "".join(sorted(set(vocab)))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert checkpoint_path(TINY).parent == tmp_path / "c"
    monkeypatch.delenv("COURSE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "genai-course"


def test_recipe_rejects_bad_values():
    with pytest.raises(ValueError, match="corpus"):
        Recipe(corpus="shakespeare")
    with pytest.raises(ValueError, match="tokenizer"):
        Recipe(tokenizer="bpe")


def test_eval_loss_averages_windows():
    torch.manual_seed(0)
    model = GPT(TINY.config(5))
    ids = torch.randint(5, (70,))
    expected = torch.stack([
        torch.nn.functional.cross_entropy(model(ids[i : i + 16][None])[0, :-1], ids[i + 1 : i + 16])
        for i in range(0, 64, 16)
    ]).mean()
    assert abs(lm_eval_loss(model, ids, 16, batch_size=3) - expected.item()) < 1e-5
    two = lm_eval_loss(model, ids, 16, max_windows=2)  # windows 0 and 3
    expected_two = torch.stack([
        torch.nn.functional.cross_entropy(model(ids[i : i + 16][None])[0, :-1], ids[i + 1 : i + 16]) for i in (0, 48)
    ]).mean()
    assert abs(two - expected_two.item()) < 1e-5
    with pytest.raises(ValueError, match="1-D"):
        lm_eval_loss(model, ids[None], 16)
