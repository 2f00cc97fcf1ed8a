"""The environment every notebook starts from: seeds, device, FAST mode, the cache folder.

Every notebook's first code cell calls :func:`setup`. It makes runs repeatable
(one seed for ``random``, NumPy and PyTorch), picks where tensors live, and says
whether this is a FAST run (tests, CI, nbgrader) or a full one. (The doctor,
which checks an installation, is :mod:`course_lib.doctor`.)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def fast_mode(environ: dict[str, str] | None = None) -> bool:
    """Whether training runs should be shrunk to seconds.

    ``COURSE_FAST=1`` turns FAST mode on and ``COURSE_FAST=0`` turns it off.
    When ``COURSE_FAST`` is unset, FAST mode is on while nbgrader executes the
    notebook (it sets ``NBGRADER_EXECUTION`` to ``validate`` or ``autograde``),
    so grading never waits for a full training run.
    """
    env = os.environ if environ is None else environ
    value = env.get("COURSE_FAST")
    if value is not None:
        value = value.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError(f"COURSE_FAST must be 1 or 0 (or true/false), got {value!r}")
    return bool(env.get("NBGRADER_EXECUTION"))


def fast_note(shrunk: str) -> None:
    """In FAST mode, print one line saying that the numbers next to it are not meaningful.

    ``shrunk`` says what FAST mode cut, e.g. ``"60 training steps instead of 8,000"``. Outside
    FAST mode it prints nothing, so an experiment cell can always call it next to its results.
    """
    if fast_mode():
        print(f"FAST mode ({shrunk}): these numbers only show that the code runs, not how well the method "
              "works; set COURSE_FAST=0 for the full run.")


def pick_device(prefer: str | None = None) -> torch.device:
    """Choose where tensors live: CUDA when present, else the CPU.

    ``prefer`` (or the ``COURSE_DEVICE`` environment variable) forces a choice:
    ``"cpu"``, ``"cuda"`` or ``"mps"``. Apple's MPS is used only when asked for,
    because some operations the course uses are missing or slow there.
    """
    choice = prefer or os.environ.get("COURSE_DEVICE") or None
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    choice = choice.lower()
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for, but torch.cuda.is_available() is False")
        return torch.device("cuda")
    if choice == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError("device 'mps' was asked for, but this torch has no working MPS")
        return torch.device("mps")
    raise ValueError(f"device must be 'cpu', 'cuda' or 'mps', got {choice!r}")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (all devices) with one number."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cache_dir() -> Path:
    """Where the course keeps files it can rebuild (checkpoints, extracted corpora).

    ``$COURSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/genai-course``, else ``~/.cache/genai-course``.
    """
    if os.environ.get("COURSE_CACHE_DIR"):
        return Path(os.environ["COURSE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "genai-course"


@dataclass(frozen=True)
class Session:
    """What :func:`setup` decided: the device, FAST mode and the seed."""

    device: torch.device
    fast: bool
    seed: int

    def status_line(self) -> str:
        from . import __version__

        if self.fast:
            why = "grading" if os.environ.get("NBGRADER_EXECUTION") else "COURSE_FAST=1"
            mode = f"FAST mode on ({why}): short training runs, 1 CPU thread"
        else:
            mode = "full mode: training runs to the quality the text promises"
        return (
            f"course_lib {__version__} | torch {torch.__version__} | device {self.device} "
            f"| {mode} | seed {self.seed}"
        )


def setup(seed: int = 0, device: str | None = None, quiet: bool = False) -> Session:
    """Prepare a notebook: seed everything, pick the device, read FAST mode.

    Prints one status line (unless ``quiet``) and returns a :class:`Session`. Later cells read
    FAST mode as ``course_lib.FAST`` (the same :func:`fast_mode`).
    """
    seed_everything(seed)
    # The self-checks keep private references to the functions they compare with; importing them
    # here, in every notebook's first cell, captures those before any answer cell runs.
    from . import grading  # noqa: F401
    session = Session(device=pick_device(device), fast=fast_mode(), seed=seed)
    if session.fast:
        # FAST runs happen where several kernels share the CPU (tests, CI, nbgrader): with small
        # models, one thread each is several times faster than all of them fighting over two cores.
        torch.set_num_threads(1)
    if not quiet:
        print(session.status_line())
    return session
