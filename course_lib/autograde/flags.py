"""Flags: what the grader refused to run, what went wrong while it ran, and where an instructor sees it.

Scores come from test cells that run in the student's kernel, so they are only
as trustworthy as that kernel. A hostile answer cell could make a failing
check look like a pass (an IPython exception hook, a patched comparison, a
tensor whose ``==`` always says yes). Nothing that runs *inside* the kernel can
prevent that, so the decision is taken *before* it runs, by the grader, on the
submitted text:

1. :class:`ScreenCells` (a sanitize preprocessor) screens every cell that will
   execute and is not the instructor's own text with
   :func:`course_lib.answer_rules.screen`. A cell that breaks a rule is **not
   run**: its source is replaced by a short ``raise`` that says why, so the
   tampering never happens and the tests that needed the cell fail on their own.
2. :class:`SaveFlags` (after nbgrader's ``SaveAutoGrades``) writes every flag to
   the gradebook: the affected test cells get 0 points and
   ``needs_manual_grade`` (formgrader lists the submission for review), and the
   flagged answer cell gets an automatic comment starting with
   :data:`FLAG_PREFIX` (formgrader shows it beside the answer; the student's
   feedback shows it too). Running into a cap (memory, processes, a cell's time
   limit) is flagged the same way, so an instructor sees every submission that
   did not run normally.
3. :func:`flag_failure` records a submission that could not be graded at all
   (its kernel died, it ran past the notebook's time limit).

An instructor overrides a flag in formgrader by entering a manual score; the
flag stays in the comment (and in :func:`flags`), so the override is visible.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins.export import CsvExportPlugin
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool

from .grading_mode import SKIPPED_SOURCE

FLAG_PREFIX = "FLAGGED for review"
NOT_RUN = "# course_lib.autograde: this cell was not run"

# Errors that mean a cap stopped the cell, not a wrong answer (matched in the cell's error output).
CAPS = {
    "memory": (re.compile(r"MemoryError|can't allocate memory|Cannot allocate memory|std::bad_alloc"),
               "ran into the memory cap"),
    "processes": (re.compile(r"Resource temporarily unavailable|BlockingIOError.*fork|can't start new thread"),
                  "ran into the process cap"),
    "time": (re.compile(r"CellTimeoutError|TimeoutError: Cell execution timed out"),
             "ran past the time limit of a cell"),
}


@dataclass(frozen=True)
class Flag:
    """One reason to review a submission: which cell, and why."""

    notebook: str
    cell: str  # grade_id of the answer cell the flag belongs to ('' if none)
    reason: str


def _nbgrader(cell) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def _is_answer(cell) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and bool(meta.get("solution")) and not meta.get("grade")


def _is_test(cell) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def not_run_source(reasons: list[str]) -> str:
    """What replaces a flagged cell: a comment with the reasons and a ``raise`` a student can read."""
    summary = "; ".join(reasons)
    message = (
        f"The grader did not run this cell: {summary}. "
        "It has been flagged for your instructor, who will review it."
    )
    lines = [NOT_RUN + ". It breaks the answer rules:"]
    lines += [f"#   {reason}" for reason in reasons]
    lines.append(f"raise RuntimeError({message!r})")
    return "\n".join(lines)


def _not_run_reasons(source: str) -> list[str] | None:
    lines = source.splitlines()
    if not lines or not lines[0].startswith(NOT_RUN):
        return None
    return [line[4:] for line in lines[1:] if line.startswith("#   ")]


class ScreenCells(NbGraderPreprocessor):
    """Sanitize step: cells that break the answer rules are replaced by a ``raise`` (see module docs).

    Trusted, and left alone: read-only cells the gradebook restores (nbgrader's
    ``OverwriteCells`` runs first), and unlocked cells whose text is exactly the
    instructor's (matched by cell id in the source notebook). Everything else
    that will run -- answer cells, edited experiment cells, cells a student
    added -- is screened.
    """

    enabled = Bool(True, help="Screen submitted cells before they run.").tag(config=True)

    def preprocess(self, nb, resources):
        if not self.enabled:
            return nb, resources
        from ..answer_rules import screen

        locked, plain = self._instructor_cells(resources)
        for cell in nb.cells:
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            meta = _nbgrader(cell)
            if meta.get("locked") and not meta.get("solution") and meta.get("grade_id") in locked:
                continue
            if not meta and plain.get(cell.get("id")) == cell.source:
                continue
            if cell.source == SKIPPED_SOURCE:
                continue
            violations = screen(cell.source)
            if violations:
                cell.source = not_run_source([v.message for v in violations])
                cell.outputs = []
                self.log.warning("Flagged cell %s: %s", meta.get("grade_id") or cell.get("id"),
                                 "; ".join(v.message for v in violations))
        return nb, resources

    def _instructor_cells(self, resources) -> tuple[set[str], dict[str, str]]:
        """(grade_ids of read-only cells, {cell id: source} of plain code cells) in the source notebook."""
        info = resources.get("nbgrader", {})
        owner = self.parent  # the exporter; its parent is nbgrader's converter, which has the coursedir
        while owner is not None and not hasattr(owner, "coursedir"):
            owner = owner.parent
        coursedir = getattr(owner, "coursedir", None)
        if coursedir is None or not info:
            return set(), {}
        path = os.path.join(
            coursedir.format_path(coursedir.source_directory, ".", info["assignment"]), info["notebook"] + ".ipynb"
        )
        if not os.path.exists(path):
            self.log.warning("No source notebook at %s: every unlocked cell is screened", path)
            return set(), {}
        source = nbformat.read(path, as_version=4)
        locked = {
            m["grade_id"] for c in source.cells if (m := _nbgrader(c)).get("locked") and not m.get("solution")
        }
        plain = {c.get("id"): c.source for c in source.cells if c.cell_type == "code" and not _nbgrader(c)}
        return locked, plain


def notebook_flags(nb, notebook: str) -> tuple[list[Flag], dict[str, list[str]]]:
    """The flags an executed notebook carries, and the test cells each answer cell's flags affect.

    A flag belongs to the answer cell it is in, or the answer cell before it;
    it affects the test cells from the flagged cell up to the next answer cell.
    Returns ``(flags, {answer grade_id: [affected test grade_ids]})``.
    """
    found: list[Flag] = []
    affected: dict[str, list[str]] = {}
    owner, open_flags = "", False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if _is_answer(cell):
            owner, open_flags = _nbgrader(cell)["grade_id"], False
        reasons = _not_run_reasons(cell.source) or []
        text = "\n".join(
            f"{o.get('ename', '')}: {o.get('evalue', '')}" for o in cell.get("outputs", []) if o.output_type == "error"
        )
        reasons += [why for pattern, why in CAPS.values() if text and pattern.search(text)]
        if reasons:
            open_flags = True
            found += [Flag(notebook, owner, reason) for reason in dict.fromkeys(reasons)]
            affected.setdefault(owner, [])
        if open_flags and _is_test(cell):
            affected[owner].append(_nbgrader(cell)["grade_id"])
    return found, affected


def _comment(flags: Iterable[Flag]) -> str:
    return FLAG_PREFIX + ": " + "; ".join(dict.fromkeys(f.reason for f in flags))


class SaveFlags(NbGraderPreprocessor):
    """Autograde step, after ``SaveAutoGrades``: write the notebook's flags to the gradebook."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        found, affected = notebook_flags(nb, info["notebook"])
        if not found:
            return nb, resources
        with Gradebook(info["db_url"]) as gb:
            answers = [g for c in nb.cells if _is_answer(c) for g in [_nbgrader(c)["grade_id"]]]
            for owner, tests in affected.items():
                flags = [f for f in found if f.cell == owner]
                for test in tests:
                    grade = gb.find_grade(test, info["notebook"], info["assignment"], info["student"])
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = True
                target = owner or (answers[0] if answers else "")
                if target:
                    comment = gb.find_comment(target, info["notebook"], info["assignment"], info["student"])
                    comment.auto_comment = _comment(flags)
            gb.db.commit()
        for flag in found:
            self.log.warning("%s: %s/%s %s: %s", FLAG_PREFIX, info["student"], flag.notebook, flag.cell, flag.reason)
        return nb, resources


def flag_failure(db_url: str, assignment: str, student: str, reason: str) -> None:
    """Record a submission that could not be graded (dead kernel, notebook time limit): 0 points, flagged.

    Every test cell of every notebook gets 0 and ``needs_manual_grade``; the
    first answer cell of each notebook carries the reason.
    """
    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            gb.update_or_create_student(student)
            submission = gb.add_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.cell.cell_type == "code":
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = True
            comments = sorted(notebook.comments, key=lambda c: c.cell.name)
            if comments:
                comments[0].auto_comment = f"{FLAG_PREFIX}: {reason}"
        gb.db.commit()


def flags(db_url: str, assignment: str | None = None) -> dict[tuple[str, str], list[str]]:
    """(assignment, student) -> the flag comments of that submission (unflagged submissions left out)."""
    with Gradebook(db_url) as gb:
        return flags_in(gb, assignment)


def flags_in(gb: Gradebook, assignment: str | None = None) -> dict[tuple[str, str], list[str]]:
    """:func:`flags`, on an open gradebook."""
    result: dict[tuple[str, str], list[str]] = {}
    assignments = [gb.find_assignment(assignment)] if assignment else gb.assignments
    for a in assignments:
        for submission in a.submissions:
            texts = [
                f"{nb.name}/{c.cell.name}: {c.auto_comment[len(FLAG_PREFIX) + 2:]}"
                for nb in submission.notebooks
                for c in nb.comments
                if c.auto_comment and c.auto_comment.startswith(FLAG_PREFIX)
            ]
            if texts:
                result[(a.name, submission.student.id)] = texts
    return result


class FlaggedCsvExportPlugin(CsvExportPlugin):
    """``nbgrader export``'s CSV plus a ``flags`` column (empty when the submission was not flagged).

    Enabled in nbgrader_config.py with ``c.ExportApp.plugin_class``.
    """

    def export(self, gradebook: Gradebook) -> None:
        super().export(gradebook)
        dest = self.to or "grades.csv"
        found = flags_in(gradebook)
        with open(dest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        with open(dest, "w", newline="", encoding="utf-8") as fh:
            fieldnames = (list(rows[0].keys()) if rows else ["assignment", "student_id"]) + ["flags"]
            writer = csv.DictWriter(fh, fieldnames=fieldnames)
            writer.writeheader()
            for row in rows:
                row["flags"] = " | ".join(found.get((row["assignment"], row["student_id"]), []))
                writer.writerow(row)
