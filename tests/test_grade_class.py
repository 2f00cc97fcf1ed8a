"""A class at a time: parallel workers, resume, shards, and PostgreSQL giving the same gradebook as SQLite.

One small welcome batch (solution, blank, a mistake, a flagged cheat, a
looping cell) is graded two ways and must give the same scores and flags each
time: JOBS=1 on SQLite (the default), and on a real PostgreSQL server by two
shards run at the same time (the cluster recipe), one of them with JOBS=2. Re-running resumes: nothing is
graded twice unless forced.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import harness
import pytest
from harness import Course

from course_lib.autograde.batch import shard_of

pytestmark = pytest.mark.slow

ASSIGNMENT = "00_welcome"
NOTEBOOK = "welcome.ipynb"


def test_shards_split_every_student_exactly_once():
    students = [f"student-{i:03d}" for i in range(300)]
    for n in (1, 2, 3, 8):
        shards = [{s for s in students if shard_of(s, n) == k} for k in range(1, n + 1)]
        assert sum(len(s) for s in shards) == len(students)
        assert set().union(*shards) == set(students)
        if n > 1:
            assert min(len(s) for s in shards) > len(students) / n / 2  # roughly balanced
    # The same on every machine: processes with different hash seeds agree with this one.
    code = ("from course_lib.autograde.batch import shard_of\n"
            "print([shard_of(f'student-{i:03d}', 8) for i in range(300)])")
    ours = str([shard_of(s, 8) for s in students])
    for seed in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True)
        assert proc.stdout.strip() == ours, f"PYTHONHASHSEED={seed} gives other shards"


def _submit_batch(course: Course) -> None:
    release = harness.release_notebook(ASSIGNMENT, NOTEBOOK)
    answers = harness.solution_answers(ASSIGNMENT, NOTEBOOK)
    mistake = next(m for m in harness.load_mistakes(ASSIGNMENT) if m.name == "ce-sum-not-mean")
    course.submit("solution", ASSIGNMENT, {NOTEBOOK: harness.solved(ASSIGNMENT, NOTEBOOK)})
    course.submit("blank", ASSIGNMENT, {NOTEBOOK: release})
    course.submit(mistake.name, ASSIGNMENT, {NOTEBOOK: harness.with_mistake(ASSIGNMENT, mistake)})
    cheat = harness.fill(release, {"softmax": "get_ipython().set_custom_exc((Exception,), print)"})
    course.submit("cheat", ASSIGNMENT, {NOTEBOOK: cheat})
    loop = harness.fill(release, {**answers, "softmax": "while True:\n    pass"})
    course.submit("infinite-loop", ASSIGNMENT, {NOTEBOOK: loop})


def _gradebook(course: Course, db_url: str | None = None):
    return course.scores(ASSIGNMENT, db_url), course.flags(ASSIGNMENT, db_url)


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("sqlite") / "course", timeout=10)
    course.release(ASSIGNMENT)
    _submit_batch(course)
    first = course.grade(ASSIGNMENT, jobs=1)
    return course, first


def test_jobs1_sqlite_grades_everyone_with_the_expected_scores(sqlite_run):
    course, results = sqlite_run
    scores, flags = _gradebook(course)
    assert {r.student for r in results} == {"solution", "blank", "ce-sum-not-mean", "cheat", "infinite-loop"}
    assert sum(scores["solution"].values()) == 6
    assert sum(scores["blank"].values()) == 0
    assert scores["ce-sum-not-mean"]["test_cross_entropy_values"] == 0
    assert sum(scores["cheat"].values()) == 0 and "cheat" in flags
    assert scores["infinite-loop"]["test_softmax_values"] == 0 and "infinite-loop" in flags
    assert scores["infinite-loop"]["test_cross_entropy_values"] == 2  # later cells still ran
    assert set(flags) == {"cheat", "infinite-loop"}, flags


def test_rerunning_resumes_and_force_regrades_the_same(sqlite_run):
    course, _ = sqlite_run
    before = _gradebook(course)
    again = course.grade(ASSIGNMENT, jobs=1)
    assert {r.status for r in again} == {"skipped"}
    forced = course.grade(ASSIGNMENT, jobs=1, students=["solution", "cheat"], force=True)
    assert {r.student: r.status for r in forced} == {"solution": "graded", "cheat": "graded"}
    assert _gradebook(course) == before


def test_postgres_jobs2_and_two_shards_give_the_sqlite_gradebook(sqlite_run, postgres_url, tmp_path_factory):
    """The cluster recipe on a real PostgreSQL server: two shards at once, one of them with JOBS=2.

    Three workers in two processes write to the shared gradebook and course folder at the same time; the
    result must be the SQLite run's gradebook, each student graded exactly once across the shards.
    """
    course, _ = sqlite_run
    expected = _gradebook(course)

    pg_course = Course(tmp_path_factory.mktemp("postgres") / "course", timeout=10)
    pg_course.nbgrader("generate_assignment", ASSIGNMENT, "--force", f"--CourseDirectory.db_url={postgres_url}")
    _submit_batch(pg_course)
    script = harness.ROOT / "tools" / "cluster" / "grade-shard.sh"
    env = dict(os.environ, ASSIGNMENT=ASSIGNMENT, GRADEBOOK_URL=postgres_url, COURSE_ROOT=str(pg_course.root),
               PYTHON=sys.executable, SLURM_ARRAY_TASK_COUNT="2")
    shards = [
        subprocess.Popen(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": str(k), "JOBS": str(jobs)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for k, jobs in ((1, 2), (2, 1))
    ]
    outputs = [p.communicate(timeout=600)[0] for p in shards]
    assert [p.returncode for p in shards] == [0, 0], outputs
    graded = [m.group(1) for out in outputs for m in re.finditer(r"^\[\s*\d+/\d+\]\s+(\S+)", out, re.M)]
    assert sorted(graded) == sorted(expected[0]), ("each student graded exactly once across the shards", outputs)
    assert _gradebook(pg_course, postgres_url) == expected, outputs
