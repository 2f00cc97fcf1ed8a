"""Helpers for tests that start servers or build throw-away Python environments, and shared assertions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path


def free_port() -> int:
    """A localhost TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def borrowing_env(env: Path, also: tuple[Path, ...] = ()) -> Path:
    """A venv at ``env`` (no pip of its own) that sees this environment's packages behind its own.

    Packages installed into it (``python -m pip install`` works through the borrowed pip)
    take precedence over the borrowed ones; ``also`` adds more paths (e.g. the course
    itself, whose editable install is a .pth file that is not followed). Returns its site-packages.
    """
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = Path(
        subprocess.check_output(
            [str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    paths = [sysconfig.get_paths()["purelib"], *map(str, also)]
    (site / "borrowed.pth").write_text("".join(f"{p}\n" for p in paths))
    return site


def oracle(module: str):
    """Import an independent implementation a test compares with.

    `make test` installs them (the ``hf`` extra), so in CI (``CI`` set) a missing one is a failure;
    elsewhere (a bare ``pytest`` without the extra) the test is skipped with the reason.
    """
    import importlib

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not installed (pip install -e '.[hf]'; `make test` installs it): {exc}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: the oracle tests must run)")
        pytest.skip(message)


def assert_each_mistake_is_caught_and_named(mistakes: dict, reference, cases: list[dict], name: str) -> None:
    """``check_function`` passes ``reference`` and names each catalogued mistake (or reports its NaN) on ``cases``."""
    import pytest

    from course_lib.grading import CheckFailed, check_function

    check_function(reference, reference, cases)  # the reference passes its own check
    for description, wrong in mistakes.items():
        with pytest.raises(CheckFailed) as failure:
            check_function(wrong, reference, cases, mistakes=mistakes, name=name)
        assert description in str(failure.value) or "NaN" in str(failure.value), (name, description)


def assert_fails_naming(run, description: str) -> None:
    """``run()`` raises CheckFailed, and its message contains ``description`` (a catalogue's cause, or a phrase)."""
    import pytest

    from course_lib.grading import CheckFailed

    with pytest.raises(CheckFailed) as caught:
        run()
    assert description in str(caught.value), str(caught.value)
