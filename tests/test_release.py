"""The student release: in sync with solutions/, leak-free, and valid in both directions.

- ``notebooks/`` is byte-identical to a fresh ``nbgrader generate_assignment``
  of ``solutions/`` (run ``make release`` after editing a solutions notebook);
- no solution code and no hidden-test text reaches ``notebooks/``;
- nbgrader's Validator passes every solutions notebook and fails every student
  notebook (``invert=True``: the stubs must not pass the tests), run in grading
  mode (experiments skipped, as autograde runs them; nbval runs them in full);
- the notebooks are tidy: outputs stripped, stable cell ids, consistent nbgrader
  metadata, links generated from pyproject's Repository URL;
- every answer cell is the target of a mistake submission, and every test cell
  is failed by at least one (a test no mistake can fail is a defect).
"""

from __future__ import annotations

import json
from pathlib import Path

import harness
import links
import nbformat
import pytest
from harness import ROOT, Course

from course_lib.autograde import release

ASSIGNMENTS = harness.assignments()
NOTEBOOKS = [(a, n) for a in ASSIGNMENTS for n in harness.notebook_names(a)]
IDS = [f"{a}/{n}" for a, n in NOTEBOOKS]


def test_there_is_a_course():
    assert "00_welcome" in ASSIGNMENTS


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory) -> Path:
    course = Course(tmp_path_factory.mktemp("release"))
    for assignment in ASSIGNMENTS:
        course.nbgrader("generate_assignment", assignment, "--no-db", "--force")
    return course.root / "notebooks"


@pytest.mark.slow
def test_release_has_no_drift(fresh_release):
    committed = ROOT / "notebooks"
    fresh = {str(p.relative_to(fresh_release)) for p in fresh_release.rglob("*") if p.is_file()}
    have = {
        str(p.relative_to(committed))
        for p in committed.rglob("*")
        if p.is_file() and ".ipynb_checkpoints" not in p.parts
    }
    assert have == fresh, "notebooks/ and solutions/ list different files: run `make release`"
    stale = [name for name in sorted(fresh) if (committed / name).read_bytes() != (fresh_release / name).read_bytes()]
    assert not stale, f"out of date: {stale}; run `make release` and commit notebooks/"


@pytest.mark.parametrize(("assignment", "name"), NOTEBOOKS, ids=IDS)
def test_no_solution_or_hidden_test_text_in_release(assignment, name):
    source = harness.read(ROOT / "solutions" / assignment / name)
    release_text = (ROOT / "notebooks" / assignment / name).read_text(encoding="utf-8")
    for marker in (harness.SOLUTION_BEGIN, harness.HIDDEN_BEGIN, harness.SOLUTION_END, harness.HIDDEN_END):
        assert marker not in release_text
    leaked = [line for line in harness.secret_lines(source) if json.dumps(line)[1:-1] in release_text]
    assert not leaked, f"secret lines found in notebooks/{assignment}/{name}: {leaked}"


@pytest.mark.parametrize(("assignment", "name"), NOTEBOOKS, ids=IDS)
def test_every_answer_cell_is_marked_and_every_test_cell_locked(assignment, name):
    nb = harness.read(ROOT / "solutions" / assignment / name)
    answers, tests = harness.answer_cells(nb), harness.test_cells(nb)
    assert answers and tests
    for grade_id, cell in answers.items():
        assert harness.SOLUTION_BEGIN in cell.source, f"answer cell {grade_id} would ship its solution"
    for grade_id, cell in tests.items():
        meta = harness.nbgrader_meta(cell)
        assert meta["locked"] and meta["points"] > 0, grade_id
        assert "passed(" in cell.source, f"{grade_id} should end by printing what passed"
    grade_ids = [harness.nbgrader_meta(c)["grade_id"] for c in nb.cells if harness.nbgrader_meta(c)]
    assert len(grade_ids) == len(set(grade_ids)), "duplicate grade_id"


@pytest.mark.parametrize("folder", ["solutions", "notebooks"])
@pytest.mark.parametrize(("assignment", "name"), NOTEBOOKS, ids=IDS)
def test_notebooks_are_stripped_with_stable_ids(folder, assignment, name):
    nb = harness.read(ROOT / folder / assignment / name)
    ids = [cell.get("id") for cell in nb.cells]
    assert all(ids) and len(ids) == len(set(ids)), "every cell needs a unique, stable id"
    if folder == "solutions":  # ids are chosen by hand in the source: readable, not random
        assert all(not any(ch.isdigit() for ch in i) or "_" in i or "-" in i for i in ids), ids
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{cell.id} has outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_links_are_generated_from_pyproject():
    stale = links.updated_files()
    assert not stale, f"run `make links release`: {[str(p) for p in stale]}"
    url = links.repository_url()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in links.release_notebooks():
        assert links.colab_url(url, path) in readme and links.binder_url(url, path) in readme


def test_links_follow_a_changed_repository_url(tmp_path):
    """A fork changes one line of pyproject.toml; `make links` updates every badge and install cell."""
    for item in ("pyproject.toml", "README.md"):
        (tmp_path / item).write_text((ROOT / item).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "solutions").mkdir()
    for assignment, name in NOTEBOOKS:
        (tmp_path / "solutions" / assignment).mkdir(exist_ok=True)
        (tmp_path / "solutions" / assignment / name).write_bytes((ROOT / "solutions" / assignment / name).read_bytes())
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(links.repository_url(), "https://github.com/someone/fork"), encoding="utf-8"
    )
    changes = links.updated_files(tmp_path)
    assert tmp_path / "README.md" in changes
    assert "someone/fork" in changes[tmp_path / "README.md"]
    for assignment, name in NOTEBOOKS:
        text = changes[tmp_path / "solutions" / assignment / name]
        assert "git+https://github.com/someone/fork" in text and "github/someone/fork/blob/main" in text


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_exercise_has_a_mistake_and_every_test_can_fail(assignment):
    mistakes = harness.load_mistakes(assignment)
    answers, tests = set(), set()
    for name in harness.notebook_names(assignment):
        nb = harness.read(ROOT / "solutions" / assignment / name)
        answers |= set(harness.answer_cells(nb))
        tests |= set(harness.test_cells(nb))
    targeted = {m.cell for m in mistakes}
    failed = set().union(*(m.fails for m in mistakes)) if mistakes else set()
    assert answers <= targeted, f"answer cells without a mistake submission: {sorted(answers - targeted)}"
    assert tests <= failed, f"test cells no mistake submission fails: {sorted(tests - failed)}"
    assert targeted <= answers and failed <= tests, "a mistake names a cell that does not exist"
    assert len({m.name for m in mistakes}) == len(mistakes), "mistake names must be unique"


# ---------------------------------------------------------------------------
# nbgrader's Validator, both ways (it executes the notebooks: slow)
# ---------------------------------------------------------------------------


def _validator(invert: bool = False):
    """nbgrader's Validator in grading mode: the graded cells run as autograde runs them, experiments skipped.

    The full notebook (experiments included) is executed by nbval in the same `make test`; what the
    Validator adds is nbgrader's verdict on the graded cells, and that verdict is the one grading gives.
    """
    from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, Execute
    from nbgrader.validator import Validator
    from traitlets.config import Config

    from course_lib.autograde.grading_mode import SkipExperiments

    config = Config()
    config.Execute.timeout = 120
    config.Execute.shutdown_kernel = "immediate"  # as in nbgrader_config.py: the outputs are in by then
    validator = Validator(config=config, invert=invert)
    validator.preprocessors = [CheckCellMetadata, ClearOutput, SkipExperiments, Execute]
    return validator


@pytest.mark.slow
@pytest.mark.parametrize(("assignment", "name"), NOTEBOOKS, ids=IDS)
def test_validator_passes_solutions(assignment, name):
    result = _validator().validate(str(ROOT / "solutions" / assignment / name))
    assert result == {}, result


@pytest.mark.slow
@pytest.mark.parametrize(("assignment", "name"), NOTEBOOKS, ids=IDS)
def test_validator_fails_every_student_notebook(assignment, name):
    result = _validator(invert=True).validate(str(ROOT / "notebooks" / assignment / name))
    # With invert=True, nbgrader reports the test cells that *passed*: none may.
    assert "passed" not in result or not result["passed"], result


# ---------------------------------------------------------------------------
# Debug exercises ship code with a bug (course_lib.autograde.release)
# ---------------------------------------------------------------------------

DEBUG_CELL = '''def double(x):
    """2 x."""
    ### BEGIN SOLUTION
    y = x + x
    return y
    ### SHIPPED INSTEAD
    # y = x * x
    # if y:
    #     return y
    #
    # return y
    ### END SOLUTION'''


def test_a_debug_cell_ships_its_commented_code_uncommented():
    shipped = release.ship(DEBUG_CELL)
    assert shipped == 'def double(x):\n    """2 x."""\n    y = x * x\n    if y:\n        return y\n\n    return y'
    assert release.right_code(DEBUG_CELL) == DEBUG_CELL.split("    ### SHIPPED")[0] + "    ### END SOLUTION"
    assert harness.strip_markers(DEBUG_CELL) == 'def double(x):\n    """2 x."""\n    y = x + x\n    return y'
    assert release.ship("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION") is None


@pytest.mark.parametrize("bad", [
    DEBUG_CELL.replace("    # y = x * x", "    y = x * x"),  # a shipped line that is not commented out
    DEBUG_CELL.replace("    ### BEGIN SOLUTION\n", ""),  # the marker outside a solution region
    DEBUG_CELL.replace("    # if y:", "    ### SHIPPED INSTEAD"),  # two markers in one region
])
def test_a_malformed_debug_cell_is_refused(bad):
    with pytest.raises(ValueError, match="SHIPPED INSTEAD"):
        release.ship(bad)


def test_nbgrader_release_ships_the_bug_and_stubs_the_rest(tmp_path):
    """Through `nbgrader generate_assignment` with the course's config: the debug cell ships its code,
    an ordinary answer cell its stub, and the right code of neither reaches the release."""
    course = Course(tmp_path)
    folder = course.root / "solutions" / "zz_debug"
    folder.mkdir()
    answer = {"grade": False, "solution": True, "locked": False, "schema_version": 3}
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(DEBUG_CELL, metadata={"nbgrader": {**answer, "grade_id": "double"}}),
        nbformat.v4.new_code_cell("def half(x):\n    ### BEGIN SOLUTION\n    return x / 2\n    ### END SOLUTION",
                                  metadata={"nbgrader": {**answer, "grade_id": "half"}}),
    ]
    nbformat.write(nb, folder / "debug.ipynb")
    course.nbgrader("generate_assignment", "zz_debug", "--no-db", "--force")
    cells = harness.answer_cells(harness.read(course.root / "notebooks" / "zz_debug" / "debug.ipynb"))
    assert cells["double"].source == release.ship(DEBUG_CELL)
    assert cells["half"].source == "def half(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"


@pytest.mark.parametrize(("assignment", "name"), NOTEBOOKS, ids=IDS)
def test_each_debug_exercise_ships_its_bug_and_its_bug_is_a_graded_mistake(assignment, name):
    """The release holds the shipped code, and the round trip grades that code as a mistake submission
    (it must lose the exercise's points and name its cause, like every catalogued mistake)."""
    shipped = harness.shipped_cells(harness.read(ROOT / "solutions" / assignment / name))
    released = harness.answer_cells(harness.read(ROOT / "notebooks" / assignment / name))
    mistakes = {m.cell: m for m in harness.load_mistakes(assignment) if m.code == shipped.get(m.cell)}
    for grade_id, code in shipped.items():
        assert released[grade_id].source == code, f"{grade_id}: notebooks/ is stale: run `make release`"
        assert grade_id in mistakes, f"{grade_id}: no mistake submission with code=harness.as_shipped(...)"
        assert mistakes[grade_id].cause, f"{grade_id}: the shipped code's mistake must name its catalogue cause"
