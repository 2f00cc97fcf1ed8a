"""course_lib.env: FAST mode, device choice, seeding, setup's status line."""

from __future__ import annotations

import pytest
import torch

import course_lib
from course_lib import env


@pytest.mark.parametrize(
    "environ,expected",
    [
        ({}, False),
        ({"COURSE_FAST": "1"}, True),
        ({"COURSE_FAST": "true"}, True),
        ({"COURSE_FAST": "0"}, False),
        ({"NBGRADER_EXECUTION": "autograde"}, True),
        ({"NBGRADER_EXECUTION": "validate", "COURSE_FAST": "0"}, False),  # explicit wins
    ],
)
def test_fast_mode(environ, expected):
    assert env.fast_mode(environ) is expected


def test_fast_mode_rejects_nonsense():
    with pytest.raises(ValueError, match="COURSE_FAST must be 1 or 0"):
        env.fast_mode({"COURSE_FAST": "maybe"})


def test_fast_note_speaks_in_fast_mode_only(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "1")
    course_lib.fast_note("60 steps instead of 8,000")
    out = capsys.readouterr().out
    assert out.startswith("FAST mode (60 steps instead of 8,000)") and "COURSE_FAST=0" in out and out.count("\n") == 1
    monkeypatch.setenv("COURSE_FAST", "0")
    course_lib.fast_note("60 steps instead of 8,000")
    assert capsys.readouterr().out == ""


def test_pick_device(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert env.pick_device().type == expected
    assert env.pick_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert env.pick_device().type == "cuda"  # CUDA is preferred whenever present
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'mps'"):
        env.pick_device("tpu")


def test_cuda_asked_for_but_missing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        env.pick_device("cuda")


def test_setup_seeds_and_reports(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "1")
    session = course_lib.setup(seed=3, device="cpu")
    a = torch.rand(3)
    course_lib.setup(seed=3, device="cpu", quiet=True)
    assert torch.equal(a, torch.rand(3))
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "FAST mode on" in line and "device cpu" in line and "seed 3" in line
    assert session.fast and course_lib.FAST
    assert torch.get_num_threads() == 1  # FAST runs share the CPU with other kernels


def test_seed_must_be_an_int():
    with pytest.raises(TypeError):
        env.seed_everything(1.5)
