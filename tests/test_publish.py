"""`make publish`: the student copy holds the course and nothing a grader keeps secret."""

from __future__ import annotations

import json
import subprocess

import harness
import publish
from harness import ROOT


def test_student_copy_has_no_solutions_or_hidden_tests(tmp_path):
    dest = tmp_path / "student"
    files = publish.publish(dest)
    top = {p.relative_to(dest).parts[0] for p in files}
    assert {"notebooks", "course_lib", "pyproject.toml", "environment.yml", "binder", "README.md", "Makefile"} <= top
    assert not top & {"solutions", "tests", "tools", "grading", "nbgrader_config.py", ".git"}
    secrets, hidden = [], []
    for assignment in harness.assignments():
        for name in harness.notebook_names(assignment):
            nb = harness.read(ROOT / "solutions" / assignment / name)
            secrets += harness.secret_lines(nb)
            hidden += harness.secret_lines(nb, solutions=False)
    assert hidden and len(secrets) > len(hidden), "the solutions hold secret lines, so this test can fail"
    markers = (harness.SOLUTION_BEGIN, harness.HIDDEN_BEGIN)
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not any(m in text for m in markers), path
        # course_lib is the reference implementation by design (later notebooks import it), so it
        # may share lines with a solution; hidden tests must appear nowhere.
        forbidden = hidden if path.relative_to(dest).parts[0] == "course_lib" else secrets
        leaked = [s for s in forbidden if s in text or json.dumps(s)[1:-1] in text]
        assert not leaked, f"{path.relative_to(dest)} contains {leaked[:3]}"
    for assignment in harness.assignments():
        for name in harness.notebook_names(assignment):
            assert (dest / "notebooks" / assignment / name).read_bytes() == (
                ROOT / "notebooks" / assignment / name
            ).read_bytes()


def test_publish_refuses_a_non_empty_folder_and_the_repo_itself(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    for bad in (tmp_path / "x", ROOT / "student-copy"):
        try:
            publish.publish(bad)
        except SystemExit as refused:
            assert "not empty" in str(refused) or "outside" in str(refused)
        else:
            raise AssertionError(f"published into {bad}")


def test_make_publish_needs_dir():
    proc = subprocess.run(["make", "--no-print-directory", "publish"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "usage: make publish DIR=" in proc.stdout
