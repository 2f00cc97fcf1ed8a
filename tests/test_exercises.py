"""Exercises make a student think: the idea in the text, the recipe in collapsed hints (design.md, Exercises).

Read from the notebooks themselves, so that a new exercise is held to the same rules:

* no line of a solution is visible in the student's notebook: solution code may appear only inside a
  collapsed ``<details>`` hint;
* every graded answer cell has at least two hint levels (``<summary>Hint 1</summary>``, ...) in the
  markdown between the previous graded cell and it (prediction cells excepted: they are the question);
* every notebook after the welcome has a synthesis exercise (a ``## Synthesis · `` section with an
  answer cell) and at least two predict-then-run questions (answer cells ``predict_*``, each graded by a
  one-point ``test_predict_*`` cell);
* notebooks 01-06 each have a debug exercise: an answer cell that ships a colleague's buggy code
  (``### SHIPPED INSTEAD``) under a ``## Debug · `` heading.
"""

from __future__ import annotations

import re

import catalogue
import harness
import pytest

from course_lib.autograde import release

NOTEBOOKS = [(a, n) for a in harness.assignments() for n in harness.notebook_names(a)]
IDS = [f"{a}/{n}" for a, n in NOTEBOOKS]
MIN_LINE = 16  # characters (spaces ignored) of a solution line worth looking for: shorter ones are idioms
HINT = re.compile(r"<summary>\s*Hint\s+(\d+)\s*</summary>")
DETAILS = re.compile(r"<details>.*?</details>", re.S)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# A name is not a recipe: `torch.tril`, `loss.backward()`, `schedule.alpha_bars` may be named in the text.
NAME = re.compile(r"\.?[A-Za-z_][\w.]*(\(\))?")
MIN_SPAN = 14  # characters (spaces ignored) of an inline-code fragment of a solution line that give it away


def _solutions(assignment: str, name: str):
    return harness.read(harness.ROOT / "solutions" / assignment / name)


def _release(assignment: str, name: str):
    return harness.read(harness.ROOT / "notebooks" / assignment / name)


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _solution_lines(nb) -> list[str]:
    """Solution code lines (comments dropped), as a student would have to write them."""
    lines = []
    for cell in harness.answer_cells(nb).values():
        for line in harness.marked_regions(cell.source, harness.SOLUTION_BEGIN, harness.SOLUTION_END):
            code = line.split("  #")[0].strip()
            if code and not code.startswith("#") and len(_squeeze(code)) >= MIN_LINE:
                lines.append(code)
    return lines


def _visible_text(nb) -> str:
    """What a student reads without opening a hint: markdown with the <details> blocks removed."""
    return "\n".join(DETAILS.sub("", cell.source) for cell in nb.cells if cell.cell_type == "markdown")


@pytest.mark.parametrize(("assignment", "name"), NOTEBOOKS, ids=IDS)
def test_no_solution_line_is_visible_outside_a_hint(assignment, name):
    visible = _squeeze(_visible_text(_release(assignment, name)))
    lines = _solution_lines(_solutions(assignment, name))
    shown = [line for line in lines if _squeeze(line) in visible]
    assert not shown, f"solution lines in the visible text (move them into a <details> hint): {shown}"
    # A fragment quoted as inline code that is most of a solution line gives it away just as well.
    spans = {_squeeze(span) for span in INLINE_CODE.findall(_visible_text(_release(assignment, name)))}
    squeezed = [_squeeze(line) for line in lines]
    quoted = sorted(
        span for span in spans
        if len(span) >= MIN_SPAN and not NAME.fullmatch(span) and any(span in line for line in squeezed)
    )
    assert not quoted, f"inline code in the visible text that is part of a solution line: {quoted}"


def _hint_levels_before_each_answer(nb) -> dict[str, list[int]]:
    levels, text = {}, []
    for cell in nb.cells:
        meta = harness.nbgrader_meta(cell)
        if cell.cell_type == "markdown":
            text.append(cell.source)
        elif meta.get("solution") and not meta.get("grade"):
            levels[meta["grade_id"]] = sorted(int(n) for n in HINT.findall("\n".join(text)))
            text = []
        elif meta.get("grade"):
            text = []
    return levels


@pytest.mark.parametrize(("assignment", "name"), NOTEBOOKS, ids=IDS)
def test_every_graded_exercise_has_at_least_two_hint_levels(assignment, name):
    levels = _hint_levels_before_each_answer(_release(assignment, name))
    few = {gid: found for gid, found in levels.items() if not gid.startswith("predict_") and len(found) < 2}
    assert not few, f"answer cells with fewer than two hints (Hint 1, Hint 2, ... in <details>) above them: {few}"
    unordered = {gid: found for gid, found in levels.items() if found and found != list(range(1, len(found) + 1))}
    assert not unordered, f"hints must be numbered 1, 2, 3 ... in order: {unordered}"


def test_hints_are_collapsed_details_blocks():
    """Every hint sits in its own <details> block, so it starts collapsed (JupyterLab, Colab, nbconvert)."""
    loose = []
    for assignment, name in NOTEBOOKS:
        for cell in _release(assignment, name).cells:
            if cell.cell_type == "markdown":
                inside = "".join(DETAILS.findall(cell.source))
                if len(HINT.findall(cell.source)) != len(HINT.findall(inside)):
                    loose.append(f"{assignment}/{name}: {cell.get('id')}")
    assert not loose, f"hint summaries outside a <details> block: {loose}"


COURSE = [a for a in harness.assignments() if a != "00_welcome"]


def _cells(assignment: str):
    for name in harness.notebook_names(assignment):
        yield from _solutions(assignment, name).cells


@pytest.mark.parametrize("assignment", COURSE)
def test_each_notebook_has_a_graded_synthesis_exercise(assignment):
    in_synthesis, answers = False, []
    for cell in _cells(assignment):
        if cell.cell_type == "markdown" and re.search(r"^## ", cell.source, re.M):
            in_synthesis = bool(re.search(r"^## Synthesis · ", cell.source, re.M))
        meta = harness.nbgrader_meta(cell)
        if in_synthesis and meta.get("solution") and not meta.get("grade"):
            answers.append(meta["grade_id"])
    assert answers, f"{assignment} has no answer cell under a '## Synthesis · ' heading"
    mistakes = {m.cell for m in harness.load_mistakes(assignment)}
    assert set(answers) <= mistakes, f"synthesis answers without a mistake submission: {set(answers) - mistakes}"


@pytest.mark.parametrize("assignment", COURSE)
def test_each_notebook_has_two_predict_then_run_questions_worth_a_point(assignment):
    answers, tests = set(), {}
    for cell in _cells(assignment):
        meta = harness.nbgrader_meta(cell)
        if meta.get("solution") and not meta.get("grade") and meta["grade_id"].startswith("predict_"):
            answers.add(meta["grade_id"])
        if meta.get("grade") and meta["grade_id"].startswith("test_predict_"):
            tests[meta["grade_id"]] = (meta["points"], cell.source)
    assert len(answers) >= 2, f"{assignment}: predictions {sorted(answers)}"
    for gid in answers:
        points, source = tests.get(f"test_{gid}", (None, ""))
        assert points == 1, f"{gid} needs a one-point test_{gid} cell"
        hidden = "\n".join(harness.marked_regions(source, harness.HIDDEN_BEGIN, harness.HIDDEN_END))
        assert "answer=" in hidden, f"test_{gid} must grade the answer in its hidden region"
    wrong = {m.cell for m in harness.load_mistakes(assignment) if m.cell in answers}
    assert wrong == answers, f"predictions without a wrong-answer submission: {answers - wrong}"


@pytest.mark.parametrize("assignment", [a for a in COURSE if a <= "06"])
def test_each_notebook_has_a_debug_exercise_under_its_heading(assignment):
    """01-06 each ship a colleague's buggy code in one answer cell under a ``## Debug · `` heading
    (course_lib/autograde/release.py); the round trip grades the code as shipped, see test_release."""
    section, debug = "", {}
    for cell in _cells(assignment):
        if cell.cell_type == "markdown" and re.search(r"^## ", cell.source, re.M):
            section = re.search(r"^## (.*)$", cell.source, re.M).group(1)
        meta = harness.nbgrader_meta(cell)
        if meta.get("solution") and not meta.get("grade") and release.ship(cell.source) is not None:
            debug[meta["grade_id"]] = section
    assert debug, f"{assignment} has no answer cell with a '### SHIPPED INSTEAD' part"
    misplaced = {gid: heading for gid, heading in debug.items() if not heading.startswith("Debug · ")}
    assert not misplaced, f"debug cells outside a '## Debug · ' section: {misplaced}"


def test_each_mistake_cause_names_exactly_one_catalogue_entry():
    """A ``cause`` resolves to one ``*_MISTAKES``, ``*_SYMPTOMS`` or ``*_ERRORS`` description (the round trip
    then asserts that a failing check prints it); checked here on its own, without grading."""
    entries = catalogue.catalogue_entries()
    assert "forward_diffusion.Q_SAMPLE_ERRORS" in entries.values()  # an *_ERRORS mapping gives its values
    unresolved = {}
    for assignment in harness.assignments():
        for mistake in harness.load_mistakes(assignment):
            if mistake.cause:
                try:
                    catalogue.catalogue_entry(mistake.cause)
                except ValueError as exc:
                    unresolved[mistake.name] = str(exc)
    assert not unresolved, unresolved


def test_the_welcome_demo_shows_a_failed_checks_message():
    """Notebook 00's "Reading a failed check" runs a wrong function through a check: the student must see the
    check's message (the input, the worst entry, the likely cause), not a refusal of the demo itself."""
    from nbclient import NotebookClient

    nb = harness.read(harness.ROOT / "notebooks" / "00_welcome" / "welcome.ipynb")
    nb.cells = [cell for cell in nb.cells if cell.get("id") in ("setup", "hint-demo", "hint-demo-check")]
    assert [cell.get("id") for cell in nb.cells] == ["setup", "hint-demo", "hint-demo-check"]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    shown = "".join(out.get("text", "") for out in nb.cells[-1].outputs)
    assert "Likely cause: squared instead of doubling" in shown, shown
    assert "answer rules" not in shown, shown
