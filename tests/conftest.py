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


# --------------------------------------------------------------------------
# Scheduling for `make test` (pytest-xdist: --dist loadscope --no-loadscope-reorder)
# --------------------------------------------------------------------------


def _builds_a_shared_fixture(item) -> bool:
    """Whether the item needs a module- or class-scoped fixture: a graded batch, a throw-away environment."""
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(info, "names_closure", []):
        defs = info.name2fixturedefs.get(name)
        if defs and defs[-1].scope in ("module", "class", "package"):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    """Hand out the longest work first, so that the two workers finish together.

    xdist (``--dist loadscope``) keeps each module or test class -- each notebook for nbval -- on one
    worker and, with ``--no-loadscope-reorder``, hands them out in the order of their first test, to
    whichever worker is free. That order, longest first: modules and classes whose slow tests share a
    graded batch or another expensive fixture, then those with other slow tests, then the notebooks,
    then the quick ones, which even out the end. Each module's (class's) tests stay together, in order.
    """

    def scope(item) -> str:
        holder = item.getparent(pytest.Class) or item.getparent(pytest.Module) or item
        return holder.nodeid

    ranks: dict[str, tuple[int, int]] = {}
    for index, item in enumerate(items):
        if item.get_closest_marker("slow") is not None:
            rank = 0 if _builds_a_shared_fixture(item) else 1
        else:
            rank = 2 if item.path.suffix == ".ipynb" else 3
        key = scope(item)
        first = ranks.get(key, (rank, index))
        ranks[key] = (min(first[0], rank), first[1])
    items[:] = [item for _, item in sorted(enumerate(items), key=lambda pair: (ranks[scope(pair[1])], pair[0]))]
