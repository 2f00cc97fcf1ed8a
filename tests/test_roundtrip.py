"""The grading round trip, end to end, in a throw-away copy of the course.

Graded the way an instructor grades a class (``course_lib.autograde``: sandboxed
kernels, the answer-rule screen, grading mode with experiments skipped). For
every assignment: the solutions submission scores full marks, the blank
release scores 0, and each mistake submission (tests/submissions/<assignment>.py)
loses exactly the points of the test cells aimed at its mistake -- the same
scores a full FAST execution gives (``fails`` was established that way). No
honest submission is flagged; a mistake that tampers with the grader
(``Mistake.flagged``) is. For the welcome assignment the batch also holds the
submissions that must not stop a batch: an infinite loop, invalid JSON, and
an edited read-only test cell (a kernel that kills itself is in the
unscreened batch of tests/test_adversarial.py, whose screen is off). Then:
regrading gives the same scores, and grading never changes a submitted file.

Two paths, one answer. The nbgrader batch (a sandboxed kernel per submission)
holds the solution, the blank release, every mistake that tampers with the
grader, ``AGREEMENT`` honest mistakes and the broken submissions. Every honest
mistake, the solution and the blank release are also graded by
``tools/inprocess.py``: the same sanitized cells (the course's own sanitize
preprocessors: restored test cells, experiments skipped, the screen) in one
long-lived process, scored by nbgrader's own rule -- a fraction of a second each
instead of a kernel. ``test_in_process_scores_equal_nbgrader_scores`` requires
both paths to give the same scores and flags for every submission they share,
graded in process *after* the others so that anything one submission leaves
behind would show; the honest mistakes' scores come from the in-process path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import catalogue
import harness
import inprocess
import pytest
from harness import Course, Mistake

pytestmark = pytest.mark.slow

ASSIGNMENTS = harness.assignments()
ROBUSTNESS = "00_welcome"  # the batch that also holds the broken submissions
TIMEOUT = 20  # seconds per cell in these batches
LOOP_TIMEOUT = 10  # in the welcome batch, whose infinite loop costs one of them (its slowest cell takes ~1 s)
AGREEMENT = 2  # honest mistakes per assignment graded by nbgrader as well as in process


def agreement_sample(honest: list[Mistake]) -> list[Mistake]:
    """The honest mistakes nbgrader grades too: the first and the last listed (early and late answer cells)."""
    return list({m.name: m for m in [*honest[: AGREEMENT - 1], *honest[-1:]]}.values())


def _robust_submissions(assignment: str) -> dict[str, dict]:
    """student id -> {notebook name: notebook or raw bytes} for the broken-submission cases."""
    name = harness.notebook_names(assignment)[0]
    answers = harness.solution_answers(assignment, name)
    release = harness.release_notebook(assignment, name)
    wrong_axis = next(m for m in harness.load_mistakes(assignment) if m.name == "softmax-wrong-axis")

    loop = harness.fill(release, {**answers, "softmax": "while True:\n    pass"})
    edited = harness.fill(release, {**answers, "softmax": wrong_axis.code})
    harness.test_cells(edited)["test_softmax_values"].source = 'print("tests? what tests?")'
    return {
        "infinite-loop": {name: loop},
        "invalid-json": {name: b'{"cells": [ this is not a notebook'},
        "edited-test": {name: edited},
    }


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Graded:
    """One assignment graded in a fresh course: scores before and after a regrade."""

    def __init__(self, assignment: str, root: Path):
        self.assignment = assignment
        self.course = Course(root, timeout=LOOP_TIMEOUT if assignment == ROBUSTNESS else TIMEOUT)
        self.course.release(assignment)
        self.names = harness.notebook_names(assignment)
        self.points: dict[str, float] = {}
        for name in self.names:
            self.points.update(harness.points(harness.read(harness.ROOT / "solutions" / assignment / name)))
        self.mistakes = harness.load_mistakes(assignment)
        self.honest = [m for m in self.mistakes if not m.flagged]
        self.sampled = agreement_sample(self.honest)
        # nbgrader grades the tampering mistakes (only its sandbox may run them) and the agreement sample.
        self.by_nbgrader = [m for m in self.mistakes if m.flagged or m in self.sampled]
        self.submissions = {
            "solution": {n: harness.solved(assignment, n) for n in self.names},
            "blank": {n: harness.release_notebook(assignment, n) for n in self.names},
            **{m.name: self._with_mistake(m) for m in self.mistakes},
        }

        for student in ["solution", "blank", *(m.name for m in self.by_nbgrader)]:
            self.course.submit(student, assignment, self.submissions[student])
        if assignment == ROBUSTNESS:
            for student, notebooks in _robust_submissions(assignment).items():
                self.course.submit(student, assignment, notebooks)

        submitted = self.course.root / "grading" / "submitted"
        self.before = _digest(submitted)
        self.first = {r.student: r for r in self.course.grade(assignment, jobs=1)}
        self.scores = self.course.scores(assignment)
        self.flags = self.course.flags(assignment)
        # Regrade from scratch the first mistake nbgrader graded (a submission with points lost and won), and in
        # the welcome batch the solution too. (Every assignment's determinism is also checked by the agreement
        # test: the in-process path grades the same submissions again, after all the others.)
        self.regraded = (["solution"] if assignment == ROBUSTNESS else []) + [m.name for m in self.by_nbgrader[:1]]
        self.second = self.course.grade(assignment, jobs=1, students=self.regraded, force=True)
        self.rescored = self.course.scores(assignment)
        self.after = _digest(submitted)

        # Every honest submission in process; those nbgrader graded too come last (a leak would show there).
        self.compared = [m.name for m in self.sampled] + ["blank", "solution"]
        order = [m.name for m in self.honest if m not in self.sampled] + self.compared
        with inprocess.Runner(self.course.root, assignment) as runner:
            self.inprocess = {student: runner.grade(student, self.submissions[student]) for student in order}

    def score_of(self, mistake: Mistake) -> dict[str, float] | None:
        """A mistake's scores: in process for the honest ones, from nbgrader's gradebook for the tampering ones."""
        if mistake.flagged:
            return self.scores.get(mistake.name)
        return self.inprocess[mistake.name].scores

    def _with_mistake(self, mistake: Mistake) -> dict:
        notebooks = {n: harness.solved(self.assignment, n) for n in self.names}
        target = mistake.notebook or self.names[0]
        notebooks[target] = harness.with_mistake(self.assignment, mistake)
        return notebooks

    def total(self, student: str) -> float:
        return sum(self.scores.get(student, {}).values())

    @property
    def full_log(self) -> str:
        return "\n".join(self.course.log)

    def explain(self) -> str:
        return self.full_log[-6000:]


@pytest.fixture(scope="class")
def graded(request, tmp_path_factory) -> Graded:
    """The test class's assignment, graded once for all its tests."""
    assignment = request.cls.assignment
    return Graded(assignment, tmp_path_factory.mktemp(f"course-{assignment}"))


@pytest.fixture(scope="class")
def robust(graded) -> Graded:
    if graded.assignment != ROBUSTNESS:
        pytest.skip("broken submissions are graded in the welcome batch")
    return graded


class RoundTrip:
    """The tests for one assignment; a subclass per assignment is made below, so that
    pytest-xdist (``--dist loadscope``) grades different assignments on different workers."""

    assignment = ""
    __test__ = False  # only the per-assignment subclasses below are collected

    def test_solutions_score_full_marks(self, graded):
        assert graded.scores.get("solution") == graded.points, graded.explain()

    def test_blank_release_scores_zero(self, graded):
        assert "blank" in graded.scores, graded.explain()
        assert graded.total("blank") == 0, graded.scores["blank"]

    def test_each_mistake_loses_exactly_its_tests(self, graded):
        assert graded.mistakes, f"tests/submissions/{graded.assignment}.py defines no MISTAKES"
        wrong = {}
        for mistake in graded.mistakes:
            expected = {gid: 0.0 if gid in mistake.fails else pts for gid, pts in graded.points.items()}
            got = graded.score_of(mistake)
            if got != expected:
                errors = {} if mistake.flagged else graded.inprocess[mistake.name].errors
                wrong[mistake.name] = {"expected": expected, "got": got, "errors": errors}
        assert not wrong, wrong

    def test_each_known_mistake_is_named_as_the_likely_cause(self, graded):
        """A mistake the catalogue knows gets its catalogue description in a failing check's message."""
        unnamed = {}
        for mistake in graded.honest:
            if not mistake.cause:
                continue
            entry = catalogue.catalogue_entry(mistake.cause)
            messages = graded.inprocess[mistake.name].messages
            if not any(f"Likely cause: {entry}" in messages.get(cell, "") for cell in mistake.fails):
                unnamed[mistake.name] = {"catalogue": entry, "messages": {c: messages.get(c) for c in mistake.fails}}
        assert not unnamed, unnamed

    def test_in_process_scores_equal_nbgrader_scores(self, graded):
        """The cheap path is trusted only because it agrees with nbgrader, on this run's own batch."""
        assert len(graded.compared) >= 3 and set(graded.compared) <= set(graded.scores), graded.explain()
        differ = {}
        for student in graded.compared:
            mine = graded.inprocess[student]
            if mine.scores != graded.scores[student] or bool(mine.flags) != (student in graded.flags):
                differ[student] = {"nbgrader": graded.scores[student], "in process": mine.scores,
                                   "nbgrader flags": graded.flags.get(student), "in-process flags": mine.flags,
                                   "in-process errors": mine.errors}
        assert not differ, differ

    def test_no_honest_submission_is_flagged_and_tampering_is(self, graded):
        honest = ["solution", "blank"] + [m.name for m in graded.honest]
        assert not {s: graded.flags[s] for s in honest if s in graded.flags}
        assert not {s: graded.inprocess[s].flags for s in honest if graded.inprocess[s].flags}
        for mistake in graded.mistakes:
            if mistake.flagged:
                assert mistake.name in graded.flags, f"{mistake.name} tampers with the grader but was not flagged"

    def test_regrading_gives_the_same_scores(self, graded):
        assert [r.status for r in graded.second] == ["graded"] * len(graded.regraded), graded.explain()
        for student in graded.regraded:
            assert graded.rescored[student] == graded.scores[student], student

    def test_grading_never_modifies_submissions(self, graded):
        assert graded.before == graded.after

    # ---------------------------------------------------------------------------
    # The broken submissions (welcome batch only)
    # ---------------------------------------------------------------------------

    def test_infinite_loop_times_out_and_later_cells_still_run(self, robust):
        scores = robust.scores["infinite-loop"]
        assert scores["test_softmax_values"] == scores["test_softmax_stable"] == 0
        # The cross-entropy answer and tests come after the looping cell and still earn their points.
        assert scores["test_cross_entropy_values"] == robust.points["test_cross_entropy_values"]
        assert scores["test_cross_entropy_stable"] == robust.points["test_cross_entropy_stable"]
        assert "timeout" in robust.full_log.lower() or "timed out" in robust.full_log.lower()

    def test_invalid_json_is_reported_and_others_are_graded(self, robust):
        assert robust.total("invalid-json") == 0
        assert robust.first["invalid-json"].status == "failed"
        log = robust.full_log
        assert "invalid-json" in log and ("NotJSONError" in log or "not valid JSON" in log or "JSON" in log)
        assert robust.scores.get("solution") == robust.points

    def test_edited_read_only_test_cell_is_graded_with_the_original(self, robust):
        scores = robust.scores["edited-test"]
        assert scores["test_softmax_values"] == 0, "the edited test cell must not hand out its points"
        assert scores["test_cross_entropy_values"] == robust.points["test_cross_entropy_values"]
        name = robust.names[0]
        graded_nb = robust.course.autograded_notebook("edited-test", robust.assignment, name)
        source_nb = harness.read(harness.ROOT / "solutions" / robust.assignment / name)
        assert (
            harness.test_cells(graded_nb)["test_softmax_values"].source
            == harness.test_cells(source_nb)["test_softmax_values"].source
        )
        assert "cell test_softmax_values has changed" in robust.full_log


for _assignment in ASSIGNMENTS:
    _name = "TestRoundTrip_" + _assignment
    globals()[_name] = type(_name, (RoundTrip,), {"assignment": _assignment, "__test__": True})
