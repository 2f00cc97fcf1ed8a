"""nbgrader against a real PostgreSQL server (tests/pgserver.py): the gradebook for parallel grading."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import Course
from nbgrader.api import Gradebook
from sqlalchemy import text


def _env() -> dict[str, str]:
    """This environment, with the venv's bin/ first on PATH (nbgrader shells out to alembic)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture(autouse=True)
def _alembic_on_path(monkeypatch):
    """Gradebook() on an empty database runs ``alembic heads`` in a subprocess, in this process too."""
    monkeypatch.setenv("PATH", _env()["PATH"])


def test_gradebook_schema_and_round_trip(postgres_url):
    with Gradebook(postgres_url) as gb:
        gb.add_assignment("pg-round-trip", duedate="2026-12-01 12:00:00")
        gb.add_student("pg-alice", first_name="Alice", last_name="Lovelace")
        gb.add_submission("pg-round-trip", "pg-alice")

    with Gradebook(postgres_url) as gb:  # a fresh connection sees what the first one committed
        assert "pg-round-trip" in {a.name for a in gb.assignments}
        assert gb.find_student("pg-alice").first_name == "Alice"
        submission = gb.find_submission("pg-round-trip", "pg-alice")
        assert submission.student.id == "pg-alice"
        assert submission.assignment.duedate is not None
        tables = set(gb.db.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    assert {"assignment", "student", "submitted_assignment", "alembic_version"} <= tables


WRITER = textwrap.dedent(
    """
    import sys
    from nbgrader.api import Gradebook

    url, prefix = sys.argv[1], sys.argv[2]
    with Gradebook(url) as gb:
        print("ready", flush=True)
        sys.stdin.readline()  # wait until both writers are connected, then write at once
        for i in range(20):
            gb.add_student(f"{prefix}-{i:02d}", first_name=prefix)
    print("done", flush=True)
    """
)


def test_two_processes_write_at_once(postgres_url):
    Gradebook(postgres_url).close()  # the schema exists before the writers start (create_all is not race-safe)
    prefixes = ("pg-writer-a", "pg-writer-b")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, postgres_url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for prefix in prefixes
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and out.strip() == "done", err

    with Gradebook(postgres_url) as gb:
        ids = {s.id for s in gb.students}
    for prefix in prefixes:
        assert {f"{prefix}-{i:02d}" for i in range(20)} <= ids


# nbgrader's default course_id is "", for which it creates no row in the course table; SQLite does not
# enforce foreign keys, PostgreSQL does: "assignment_course_id_fkey ... Key (course_id)=() is not present".
COURSE_ID = "genai-course"


@pytest.mark.slow
def test_nbgrader_command_line(postgres_url, tmp_path):
    course = Course(tmp_path / "course")
    course.nbgrader(
        "generate_assignment",
        "00_welcome",
        "--force",
        f"--CourseDirectory.db_url={postgres_url}",
        f"--CourseDirectory.course_id={COURSE_ID}",
    )
    assert (course.root / "notebooks" / "00_welcome" / "welcome.ipynb").exists()
    with Gradebook(postgres_url, course_id=COURSE_ID) as gb:
        assignment = gb.find_assignment("00_welcome")
        assert assignment.course_id == COURSE_ID
        assert [nb.name for nb in assignment.notebooks] == ["welcome"]
        assert assignment.max_score > 0
    # The copy's own SQLite gradebook was not used.
    assert not (course.root / "grading" / "gradebook.db").exists()
