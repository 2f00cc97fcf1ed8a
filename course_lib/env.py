"""The environment every notebook starts from: seeds, device, FAST mode, and a doctor.

Every notebook's first code cell calls :func:`setup`. It makes runs repeatable
(one seed for ``random``, NumPy and PyTorch), picks where tensors live, and says
whether this is a FAST run (tests, CI, nbgrader) or a full one. ``python -m
course_lib doctor`` runs :func:`check_environment` and prints one ``[OK]`` /
``[FAIL]`` line per requirement, so a student can paste it into a bug report.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import platform
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DIST_NAME = "genai-course"
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

    Prints one status line (unless ``quiet``) and returns a :class:`Session`.
    Also updates ``course_lib.FAST`` so later cells read one consistent value.
    """
    import course_lib

    seed_everything(seed)
    # The self-checks keep private references to the functions they compare with; importing them
    # here, in every notebook's first cell, captures those before any answer cell runs.
    from . import grading  # noqa: F401
    session = Session(device=pick_device(device), fast=fast_mode(), seed=seed)
    course_lib.FAST = session.fast
    if session.fast:
        # FAST runs happen where several kernels share the CPU (tests, CI, nbgrader): with small
        # models, one thread each is several times faster than all of them fighting over two cores.
        torch.set_num_threads(1)
    if not quiet:
        print(session.status_line())
    return session


# --------------------------------------------------------------------------
# The doctor: one line per requirement
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report. ``ok`` is None for an optional extra."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        tag = {True: "[OK]  ", False: "[FAIL]", None: "[--]  "}[self.ok]
        return f"{tag} {self.name}: {self.detail}"


def _requirements() -> list:
    """The runtime requirements declared by the installed distribution."""
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in metadata.requires(DIST_NAME) or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def _import_name(dist: str) -> str:
    return {"scikit-learn": "sklearn"}.get(dist, dist.replace("-", "_"))


def _check_package(req) -> Check:
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return Check(req.name, False, f"not installed (need {req.specifier or 'any version'})")
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        return Check(req.name, False, f"{version} installed, but the course needs {req.specifier}")
    try:
        importlib.import_module(_import_name(req.name))
    except Exception as exc:  # a broken install is exactly what the doctor is for
        return Check(req.name, False, f"{version} installed but import fails: {exc}")
    return Check(req.name, True, f"{version} ({req.specifier})")


def _probe(name: str, fn: Callable[[], str], optional: bool = False) -> Check:
    try:
        return Check(name, True, fn())
    except Exception as exc:
        return Check(name, None if optional else False, f"{type(exc).__name__}: {exc}")


def _torch_works() -> str:
    x = torch.linspace(-1.0, 1.0, 6, requires_grad=True)
    (x**2).sum().backward()
    if not torch.allclose(x.grad, 2 * x.detach()):
        raise RuntimeError("autograd gave a wrong gradient for sum(x**2)")
    threads = torch.get_num_threads()
    return f"tensors and autograd work; {threads} CPU thread(s)"


def _device() -> str:
    device = pick_device()
    torch.ones(2, device=device).sum().item()
    extra = f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else ""
    return f"{device}{extra}"


def _digits() -> str:
    from .data import load_digits

    images, labels = load_digits()
    return f"{len(images)} 8x8 digits from scikit-learn, values in [-1, 1]"


def _corpora() -> str:
    """Cheap check that both corpora can be built (building them takes seconds)."""
    import sysconfig
    from pathlib import Path
    from pydoc_data.topics import topics

    from .data import _docstrings_of

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sample = stdlib / "json" / "__init__.py"
    if not sample.exists():
        raise RuntimeError(f"no standard-library sources under {stdlib}: the docstring corpus needs them")
    if not _docstrings_of(sample.read_text(encoding="utf-8")):
        raise RuntimeError(f"found no docstrings in {sample}")
    return f"standard-library sources at {stdlib}; {len(topics)} language reference topics"


def _optional_version(dist: str, why: str) -> Callable[[], str]:
    def probe() -> str:
        try:
            return f"{metadata.version(dist)} ({why})"
        except metadata.PackageNotFoundError:
            raise RuntimeError(f"not installed; {why}") from None

    return probe


def check_environment() -> list[Check]:
    """Check everything the course needs; optional extras are reported, never failed."""
    ok_python = sys.version_info >= (3, 10)
    checks = [
        Check(
            "python",
            ok_python,
            f"{platform.python_version()}" + ("" if ok_python else " (the course needs 3.10 or newer)"),
        )
    ]
    try:
        metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        checks.append(
            Check(DIST_NAME, False, "not installed: run `make install` (or pip install -e .)")
        )
    else:
        checks.append(Check(DIST_NAME, True, metadata.version(DIST_NAME)))
        checks.extend(_check_package(req) for req in _requirements())
    checks += [
        _probe("torch works", _torch_works),
        _probe("device", _device),
        _probe("FAST mode", lambda: "on" if fast_mode() else "off (set COURSE_FAST=1 for quick runs)"),
        _probe("digits data", _digits),
        _probe("text corpora", _corpora),
        _probe("jupyterlab_widgets", _optional_version("jupyterlab_widgets", "sliders in JupyterLab"), True),
        _probe("nbgrader", _optional_version("nbgrader", "instructors only"), True),
    ]
    return checks


def doctor(stream=None) -> int:
    """Print the report; return 1 if any required check failed, else 0."""
    stream = stream or sys.stdout
    checks = check_environment()
    for check in checks:
        print(check.line(), file=stream)
    failed = [c for c in checks if c.ok is False]
    if failed:
        print(f"{len(failed)} check(s) failed: see the [FAIL] lines above.", file=stream)
        return 1
    print("Everything the course needs is here.", file=stream)
    return 0
