"""course_lib.train: the schedule's closed form, the optimizer's groups, and a loop that learns."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from course_lib.train import History, adamw, eval_mode, lr_factor, run_loop, train


def test_lr_factor_warmup_then_cosine():
    total, warm = 110, 10
    factors = [lr_factor(s, total, warm, min_ratio=0.1) for s in range(total)]
    assert factors[:warm] == pytest.approx([(s + 1) / warm for s in range(warm)])
    assert factors[warm] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.1)
    mid = warm + (total - warm - 1) // 2
    expected_mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (mid - warm) / (total - warm - 1)))
    assert factors[mid] == pytest.approx(expected_mid)
    assert all(a >= b for a, b in zip(factors[warm:], factors[warm + 1 :]))  # monotone decay


def test_lr_factor_rejects_bad_arguments():
    with pytest.raises(ValueError):
        lr_factor(0, 0)
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_factor(0, 10, warmup_steps=11)


def test_adamw_decays_only_matrices():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    opt = adamw(model, lr=1e-3, weight_decay=0.1)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(model[0].weight), id(model[2].weight)}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_adamw_steps_equal_torchs_plain_adamw():
    """Fused or not, the update is AdamW's (Loshchilov & Hutter 2019): torch's reference loop, same groups."""
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    theirs = copy.deepcopy(ours)
    opt = adamw(ours, lr=1e-2, weight_decay=0.1)
    decay = [p for p in theirs.parameters() if p.dim() >= 2]
    plain = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                               {"params": [p for p in theirs.parameters() if p.dim() < 2], "weight_decay": 0.0}],
                              lr=1e-2, foreach=False)
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    for _ in range(20):
        for model, optimizer in ((ours, opt), (theirs, plain)):
            optimizer.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_adamw_refuses_a_frozen_model():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        adamw(model, 1e-3)


def test_train_fits_linear_regression_and_records_history():
    torch.manual_seed(0)
    w_true = torch.tensor([[2.0, -3.0]])
    x = torch.randn(256, 2)
    y = x @ w_true.T + 0.5
    model = nn.Linear(2, 1)

    def loss_fn(model, batch):
        xb, yb = batch
        return ((model(xb) - yb) ** 2).mean()

    def evaluate(model):
        assert not model.training and not torch.is_grad_enabled()
        return loss_fn(model, (x, y)).item()

    history = train(
        model, lambda step: (x, y), loss_fn, 300, lr=0.05, warmup_steps=10, evaluate=evaluate,
        eval_every=100, progress=False,
    )
    torch.testing.assert_close(model.weight.detach(), w_true, atol=1e-2, rtol=0)
    assert [s for s, _ in history.evals["val_loss"]] == [99, 199, 299]
    assert history.last("val_loss") < 1e-4
    assert len(history.train["loss"]) == 300 and len(history.lr) == 300
    assert history.lr[0][1] == pytest.approx(0.05 / 10) and history.lr[-1][1] == pytest.approx(0.005)
    assert model.training  # evaluation restored train mode
    assert history.seconds > 0


def test_train_clips_gradients():
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def loss_fn(model, batch):
        return (model(torch.ones(1, 1)) - 1000.0).pow(2).sum()

    history = train(model, lambda s: None, loss_fn, 1, optimizer=opt, grad_clip=1.0, progress=False)
    assert history.train["grad_norm"][0][1] > 1000  # the norm before clipping is reported
    step = torch.cat([model.weight.flatten(), model.bias]).norm().item()
    assert step == pytest.approx(1.0, rel=1e-5)  # but the update used the clipped gradient


def test_train_stops_on_a_non_finite_loss():
    model = nn.Linear(1, 1)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(model, lambda s: None, lambda m, b: torch.tensor(float("nan"), requires_grad=True), 3, progress=False)


def test_run_loop_accepts_dicts_and_calls_back():
    seen = []
    history = run_loop(lambda s: {"d": s, "g": -s}, 5, callback=lambda s, h: seen.append(s), progress=False)
    assert seen == [0, 1, 2, 3, 4]
    assert history.train["g"][-1] == (4, -4.0)
    with pytest.raises(KeyError, match="have"):
        History().last("nope")


def test_a_callback_can_stop_the_run_early():
    from course_lib.train import StopTraining

    def stop_at_three(step, history):
        if step == 3:
            raise StopTraining

    history = run_loop(lambda s: float(s), 10, callback=stop_at_three, progress=False)
    assert history.stopped_at == 3
    assert [s for s, _ in history.train["loss"]] == [0, 1, 2, 3]
    assert history.seconds > 0
    assert run_loop(lambda s: float(s), 4, progress=False).stopped_at is None


def test_eval_mode_switches_dropout_off_and_restores_the_mode():
    model = nn.Sequential(nn.Dropout(0.5))
    with eval_mode(model):
        assert not model.training and not model[0].training
    assert model.training and model[0].training
    model.eval()
    with pytest.raises(RuntimeError), eval_mode(model):  # restored on errors too, to the mode it was in
        model.train()
        raise RuntimeError
    assert not model.training
