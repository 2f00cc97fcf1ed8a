"""The doctor: one ``[OK]`` / ``[FAIL]`` line per requirement of the course.

``python -m course_lib doctor`` (or ``make doctor``, or the welcome notebook's
second cell) runs :func:`check_environment` and prints its report, so a student
can paste it into a bug report. Optional extras are reported as ``[--]``, never
failed.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .env import fast_mode, pick_device

DIST_NAME = "genai-course"


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
