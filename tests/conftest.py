"""Shared test setup: tools/ on the import path, FAST mode, a headless plot backend."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
os.environ.setdefault("COURSE_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# pytest-xdist runs two workers on a 2-core machine: one thread each avoids oversubscription.
torch.set_num_threads(1)


# --------------------------------------------------------------------------
# A real PostgreSQL server (tests/pgserver.py) for grading tests that need one
# --------------------------------------------------------------------------

import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def postgres_url():
    """SQLAlchemy URL of a throw-away PostgreSQL ``gradebook`` database (one server per pytest process).

    Skips where PostgreSQL or psycopg2 is missing, except in CI (``CI`` set), where that is a failure.
    """
    from pgserver import postgres_available, temporary_postgres

    ok, why = postgres_available()
    if not ok:
        message = f"PostgreSQL unavailable: {why}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: these tests must run)")
        pytest.skip(message)
    # Not tmp_path_factory: as root the server runs as 'postgres', who cannot enter /tmp/pytest-of-root.
    folder = Path(tempfile.mkdtemp(prefix="course-pg-"))
    try:
        with temporary_postgres(folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)
