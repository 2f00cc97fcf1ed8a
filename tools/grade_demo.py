"""`make grade-demo`: the instructor's whole job, on a throw-away course.

Builds ``grading/demo/`` (wiped first) from this repository's nbgrader setup,
releases an assignment, hands in four example submissions -- ``alice`` (a
correct solution), ``bob`` (the blank release), ``carol`` (a typical mistake
from tests/submissions/) and ``mallory`` (a blank answer that tries to make
every check pass with an IPython exception hook) -- then runs what an
instructor runs: ``make grade`` (sandboxed, two workers), ``generate_feedback``
and ``export``, and prints the grade table with its flags column.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import harness
from harness import ROOT, Course


def run_demo(root: Path, assignment: str = "00_welcome", mistake: str | None = None) -> list[dict[str, str]]:
    """Grade the three demo students in a fresh course at ``root``; return the exported rows."""
    if root.exists():
        shutil.rmtree(root)
    course = Course(root)
    course.release(assignment)
    names = harness.notebook_names(assignment)
    mistakes = harness.load_mistakes(assignment)
    chosen = next((m for m in mistakes if m.name == mistake), mistakes[0] if mistakes else None)
    submissions = {
        "alice": {n: harness.solved(assignment, n) for n in names},
        "bob": {n: harness.release_notebook(assignment, n) for n in names},
    }
    if chosen is not None:
        carol = {n: harness.solved(assignment, n) for n in names}
        carol[chosen.notebook or names[0]] = harness.with_mistake(assignment, chosen)
        submissions["carol"] = carol
    first_answer = next(iter(harness.answer_cells(harness.release_notebook(assignment, names[0]))))
    hook = "get_ipython().set_custom_exc((Exception,), lambda *args, **kwargs: None)  # errors? what errors?"
    submissions["mallory"] = {
        **{n: harness.release_notebook(assignment, n) for n in names},
        names[0]: harness.fill(harness.release_notebook(assignment, names[0]), {first_answer: hook}),
    }
    for student, notebooks in submissions.items():
        course.submit(student, assignment, notebooks)

    print(f"grading {assignment} for {', '.join(submissions)} (sandboxed, grading mode, 2 workers) ...", flush=True)
    course.grade(assignment, jobs=2, progress=print)
    course.nbgrader("generate_feedback", assignment)
    grades = root / "grades.csv"
    course.nbgrader("export", f"--to={grades}")
    with grades.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["assignment"] == assignment]

    scores = course.scores(assignment)
    tests = list(harness.points(harness.read(ROOT / "solutions" / assignment / names[0])))
    header = ["student", *tests, "total", "max", "flags"]
    table = [header]
    for row in sorted(rows, key=lambda r: r["student_id"]):
        cells = scores.get(row["student_id"], {})
        table.append([row["student_id"], *[f"{cells.get(t, 0):g}" for t in tests],
                      f"{float(row['score']):g}", f"{float(row['max_score']):g}", row.get("flags", "")])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print()
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))
    print()
    if chosen is not None:
        print(f"carol's mistake ({chosen.name}): {chosen.why}")
    print("mallory's answer tried to hide the checks' errors; the grader did not run it and flagged it")
    print(f"review flags: python -m course_lib.autograde flags {assignment} --root {root}")
    print(f"grades CSV:  {grades}")
    print(f"feedback:    {root / 'grading' / 'feedback'}/<student>/{assignment}/*.html")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="00_welcome")
    parser.add_argument("--mistake", default=None, help="which tests/submissions mistake carol makes")
    parser.add_argument("--root", type=Path, default=ROOT / "grading" / "demo")
    args = parser.parse_args(argv)
    run_demo(args.root, args.assignment, args.mistake)
    return 0


if __name__ == "__main__":
    sys.exit(main())
