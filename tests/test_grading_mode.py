"""Grading mode (course_lib.autograde.grading_mode): experiments are tagged right and skipped safely.

(a) the committed ``experiment`` tags are what ``tools/experiments.py`` computes, and no cell that runs while
grading depends on a tagged cell; (b) the release carries the same tags; (c) the preprocessor skips exactly the
tagged ungraded cells; the analysis sees the obvious side effects; (d, slow) solutions notebooks run green with
their experiments skipped.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_lib.autograde.grading_mode import (
    SKIPPED_SOURCE,
    TAG,
    SkipExperiments,
    analyse,
    undeclared_dependencies,
)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*/*.ipynb"))
IDS = [path.parent.name for path in SOLUTIONS]


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def tagged_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.id for cell in nb.cells if TAG in cell.metadata.get("tags", [])]


# --------------------------------------------------------------------------
# (a) the committed tags, (b) the release
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_the_committed_tags_are_what_the_analysis_computes(path):
    problems = undeclared_dependencies(read(path).cells)
    assert not problems, (
        f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems)
        + "\nrun `python tools/experiments.py --tag solutions/*/*.ipynb` and `make release`"
    )


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_no_cell_that_runs_while_grading_uses_a_name_from_an_experiment(path):
    """What grading runs (answer, test, read-only and untagged cells) needs nothing a tagged cell provides."""
    nb = read(path)
    needed = analyse(nb.cells, roots="untagged").needed
    messages = [
        f"{nb.cells[index].id}: {reason}" for index, reasons in needed.items() for reason in reasons
    ]
    assert not messages, f"{path.relative_to(ROOT)}: tagged {TAG!r} but needed:\n  " + "\n  ".join(messages)


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_only_ungraded_code_cells_are_tagged(path):
    for cell in read(path).cells:
        if TAG in cell.metadata.get("tags", []):
            assert cell.cell_type == "code", f"{cell.id}: only code cells are experiments"
            flags = cell.metadata.get("nbgrader", {})
            assert not (flags.get("grade") or flags.get("solution") or flags.get("locked")), cell.id


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_the_release_carries_the_same_tags(path):
    release = ROOT / "notebooks" / path.relative_to(ROOT / "solutions")
    source, released = read(path), read(release)
    assert tagged_ids(released) == tagged_ids(source), "run `make release`"
    released_ids = {cell.id for cell in released.cells}
    assert set(tagged_ids(source)) <= released_ids


# --------------------------------------------------------------------------
# The analysis sees the obvious dependencies and side effects
# --------------------------------------------------------------------------


def locked(source: str, grade_id: str = "setup") -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"schema_version": 3, "grade": False, "solution": False, "locked": True,
                                 "grade_id": grade_id}
    cell.id = grade_id
    return cell


def answer(source: str, grade_id: str = "answer") -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"schema_version": 3, "grade": False, "solution": True, "locked": False,
                                 "grade_id": grade_id}
    cell.id = grade_id
    return cell


def check_cell(source: str, grade_id: str = "test") -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"schema_version": 3, "grade": True, "solution": False, "locked": True,
                                 "grade_id": grade_id, "points": 1}
    cell.id = grade_id
    return cell


def experiment(source: str, tagged: bool = False) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    if tagged:
        cell.metadata["tags"] = [TAG]
    return cell


def experiments_of(*cells) -> list[int]:
    """Positions of the cells the analysis would tag."""
    return [info.index for info in analyse(list(cells)).experiments]


def reasons_for(cells, index) -> str:
    return "; ".join(str(r) for r in analyse(list(cells)).needed.get(index, []))


SETUP = locked("import torch\nimport course_lib\nsession = course_lib.setup(seed=0)")


def test_a_name_a_test_reads_keeps_its_cell_and_the_reason_names_both():
    cells = [SETUP, experiment("x = torch.ones(3)\ny = 2"), check_cell("assert x.sum() == 3", "test_x")]
    assert experiments_of(*cells) == []
    assert "test_x needs `x`" in reasons_for(cells, 1)


def test_a_name_nobody_graded_reads_is_an_experiment():
    cells = [SETUP, answer("def f(x):\n    return 2 * x"), experiment("y = f(torch.ones(2))"),
             experiment("print(y)"), check_cell("assert f(1) == 2")]
    assert experiments_of(*cells) == [2, 3]


def test_transitive_dependencies_through_ungraded_cells():
    cells = [SETUP, experiment("a = 1"), experiment("b = a + 1"), experiment("c = 5"), check_cell("assert b == 2")]
    assert experiments_of(*cells) == [3]
    assert "needs `a`" in reasons_for(cells, 1)


def test_training_a_model_that_a_test_inspects_is_a_dependency():
    cells = [SETUP, locked("model = torch.nn.Linear(2, 1)", "model"),
             experiment("train(model, steps=10)"),  # a library call that changes its argument
             experiment("opt = torch.optim.SGD(model.parameters(), lr=0.1)\nopt.step()"),
             check_cell("assert model.weight.shape == (1, 2)")]
    assert experiments_of(*cells) == []
    assert "test needs `model`" in reasons_for(cells, 2)
    assert "test needs `model`" in reasons_for(cells, 3)  # opt holds model's parameters: opt.step() changes them


@pytest.mark.parametrize("change", [
    "model.weight.data[0] = 1.0",  # item assignment
    "model.bias = None",  # attribute assignment
    "model.eval()",  # a method call
    "m = model\nm.requires_grad_(False)",  # through an alias
    "for p in model.parameters():\n    p.data.zero_()",  # through a loop variable
    "model.weight += 1",  # in place
])
def test_changing_an_object_a_test_uses_is_a_dependency(change):
    cells = [SETUP, locked("model = torch.nn.Linear(2, 1)", "model"), experiment(change),
             check_cell("assert model.training")]
    assert experiments_of(*cells) == [], change


def test_reading_an_object_is_not_changing_it():
    cells = [SETUP, locked("model = torch.nn.Linear(2, 1)", "model"),
             experiment("print(model.weight.shape, model.weight.sum().item(), len(list(model.parameters())))"),
             check_cell("assert model.training")]
    assert experiments_of(*cells) == [2]


def test_seeding_before_a_test_that_draws_from_the_global_generator_is_a_dependency():
    draws = check_cell("x = torch.randn(3)\nassert x.shape == (3,)")
    cells = [SETUP, experiment("torch.manual_seed(1)"), draws]
    assert experiments_of(*cells) == []
    assert "global random state" in reasons_for(cells, 1)
    # a draw without a seed changes the state as well
    assert experiments_of(SETUP, experiment("noise = torch.rand(5)"), draws) == []


def test_a_test_that_seeds_or_uses_its_own_generator_does_not_depend_on_the_random_state():
    cells = [SETUP, experiment("torch.manual_seed(1)\nw = torch.randn(4)"),
             check_cell("torch.manual_seed(0)\nassert torch.randn(3).shape == (3,)", "seeds"),
             check_cell("g = torch.Generator().manual_seed(0)\nassert torch.randn(3, generator=g).shape == (3,)",
                       "generator")]
    assert experiments_of(*cells) == [1]


def test_a_seed_inside_a_notebook_function_counts_where_it_is_called():
    cells = [SETUP, experiment("def run(seed):\n    torch.manual_seed(seed)\n    return 1"),
             experiment("run(3)"), check_cell("assert torch.rand(1) < 1")]
    assert experiments_of(*cells) == []


@pytest.mark.parametrize("setting", [
    "torch.set_default_dtype(torch.float64)",
    "torch.set_num_threads(1)",
    "torch.backends.cudnn.deterministic = True",
    "import os\nos.environ['COURSE_FAST'] = '0'",
    "import matplotlib.pyplot as plt\nplt.rcParams['figure.dpi'] = 50",
    "%matplotlib inline",
])
def test_changing_global_settings_is_a_dependency(setting):
    cells = [SETUP, experiment(setting), check_cell("assert torch.ones(1).sum() == 1")]
    assert experiments_of(*cells) == [], setting


def test_figures_matter_only_to_graded_cells_that_draw():
    plot = experiment("import matplotlib.pyplot as plt\nplt.plot([1, 2])")
    assert experiments_of(SETUP, plot, check_cell("assert torch.ones(1).sum() == 1")) == [1]
    drawing_test = check_cell("import matplotlib.pyplot as plt\nassert len(plt.gca().lines) == 0")
    assert experiments_of(SETUP, plot, drawing_test) == []


def test_settings_changed_after_the_last_graded_cell_do_not_matter():
    cells = [SETUP, check_cell("assert torch.ones(1).sum() == 1"), experiment("torch.set_default_dtype(torch.float64)")]
    assert experiments_of(*cells) == [2]


def test_importing_again_what_a_running_cell_imported_is_not_a_dependency():
    cells = [SETUP, experiment("import torch\nimport math\nfrom torch import nn"),
             check_cell("assert torch.ones(1).sum() == 1")]
    assert experiments_of(*cells) == [1]
    cells = [SETUP, experiment("import torch.nn.functional as F"), check_cell("assert F.relu(torch.ones(1)) == 1")]
    assert experiments_of(*cells) == []


def test_a_function_reads_globals_when_it_is_called_not_when_it_is_defined():
    cells = [SETUP, answer("def scaled(x):\n    return SCALE * x"), experiment("SCALE = 3"),
             check_cell("assert scaled(1) == 3")]
    assert experiments_of(*cells) == []
    assert "read when `scaled` runs" in reasons_for(cells, 2)
    # a test that binds the global itself first does not need the experiment
    cells[3] = check_cell("SCALE = 3\nassert scaled(1) == 3")
    assert experiments_of(*cells) == [2]


def test_a_name_bound_only_in_a_branch_does_not_hide_an_earlier_definition():
    cells = [SETUP, experiment("limit = 3"), experiment("if course_lib.FAST:\n    limit = 4"),
             check_cell("assert limit > 0")]
    assert experiments_of(*cells) == []
    assert len(analyse(cells).needed) == 2


def test_magics_that_run_code_are_read_and_the_rest_never_skipped_blindly():
    cells = [SETUP, experiment("%time x = 1"), check_cell("assert x == 1")]
    assert experiments_of(*cells) == []
    cells = [SETUP, experiment("%%capture\ny = 2"), check_cell("assert y == 2")]
    assert experiments_of(*cells) == []
    cells = [SETUP, experiment("%run helpers.py"), check_cell("assert helper() == 1")]
    assert experiments_of(*cells) == []  # %run may define anything
    cells = [SETUP, experiment("%timeit sum(range(10))"), check_cell("assert 1")]
    assert experiments_of(*cells) == [1]


def test_a_cell_with_a_syntax_error_runs_nothing_and_breaks_nothing():
    cells = [SETUP, experiment("def broken(:"), check_cell("assert torch.ones(1) == 1")]
    assert experiments_of(*cells) == [1]


def test_names_in_markdown_and_later_cells_do_not_count():
    cells = [SETUP, check_cell("z = 1"), new_markdown_cell("z = 5"), experiment("z = 2")]
    assert experiments_of(*cells) == [3]


# --------------------------------------------------------------------------
# (c) the preprocessor
# --------------------------------------------------------------------------


def graded_notebook() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [
        copy.deepcopy(SETUP),
        answer("def double(x):\n    return 2 * x"),
        experiment("import time\ntime.sleep(100)", tagged=True),
        check_cell("assert double(2) == 4"),
        experiment("history = [double(i) for i in range(3)]", tagged=True),
        experiment("print('untagged: runs')"),
    ]
    for cell in nb.cells:
        cell.outputs = [nbformat.v4.new_output("stream", text="old output\n")]
    for cell in (nb.cells[1], nb.cells[3], nb.cells[0]):  # tags on graded cells never make them skippable
        cell.metadata["tags"] = [TAG, "other"]
    return nb


def run_preprocessor(nb, **config):
    return SkipExperiments(**config).preprocess(copy.deepcopy(nb), {})[0]


def test_the_preprocessor_skips_exactly_the_tagged_ungraded_cells():
    nb = graded_notebook()
    out = run_preprocessor(nb)
    skipped = [i for i, cell in enumerate(out.cells) if cell.source == SKIPPED_SOURCE]
    assert skipped == [2, 4]
    for i in skipped:
        assert out.cells[i].outputs == [] and out.cells[i].execution_count is None
        assert out.cells[i].metadata == nb.cells[i].metadata  # the tag stays: feedback shows why
    for i in (0, 1, 3, 5):
        assert out.cells[i] == nb.cells[i]
    assert "\n" not in SKIPPED_SOURCE and SKIPPED_SOURCE.startswith("#")


def test_the_preprocessor_can_be_switched_off():
    nb = graded_notebook()
    out, _ = SkipExperiments(enabled=False)(copy.deepcopy(nb), {})
    assert out == nb
    out, _ = SkipExperiments()(copy.deepcopy(nb), {})
    assert out.cells[2].source == SKIPPED_SOURCE


def test_a_submission_that_uses_an_experiment_variable_keeps_that_experiment():
    """A student's answer (or an added cell) reading an experiment's variable: the experiment runs."""
    nb = graded_notebook()
    nb.cells[2] = experiment("FACTOR = 2\nimport time", tagged=True)
    nb.cells[1] = answer("def double(x):\n    return FACTOR * x")
    out = run_preprocessor(nb)
    assert out.cells[2].source == nb.cells[2].source
    assert out.cells[4].source == SKIPPED_SOURCE
    # the same through a cell the student added
    nb = graded_notebook()
    nb.cells.insert(5, experiment("print(history)"))
    out = run_preprocessor(nb)
    assert out.cells[4].source == nb.cells[4].source and out.cells[2].source == SKIPPED_SOURCE
    # without the check, the tags alone decide
    out = run_preprocessor(nb, check_dependencies=False)
    assert out.cells[4].source == SKIPPED_SOURCE


@pytest.mark.parametrize("path", SOLUTIONS, ids=IDS)
def test_on_the_course_notebooks_the_preprocessor_skips_the_tagged_cells(path):
    nb = read(path)
    out = run_preprocessor(nb)
    skipped = [cell.id for cell in out.cells if cell.source == SKIPPED_SOURCE]
    assert skipped == tagged_ids(nb)
    for before, after in zip(nb.cells, out.cells):
        if before.metadata.get("nbgrader"):
            assert after == before


def test_the_preprocessor_is_importable_by_name_for_nbgrader_config():
    from traitlets.utils.importstring import import_item

    assert import_item("course_lib.autograde.grading_mode.SkipExperiments") is SkipExperiments


# --------------------------------------------------------------------------
# (d) the solutions run green with their experiments skipped
# --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ["00_welcome", "02_forward_diffusion"])
def test_solutions_pass_every_test_with_experiments_skipped(assignment, monkeypatch):
    from nbclient import NotebookClient

    (path,) = (ROOT / "solutions" / assignment).glob("*.ipynb")
    nb = run_preprocessor(read(path))
    assert any(cell.source == SKIPPED_SOURCE for cell in nb.cells)
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{cell.id}: {errors[0].ename}: {errors[0].evalue}"
        if cell.metadata.get("nbgrader", {}).get("grade"):
            assert cell.execution_count is not None, f"{cell.id} did not run"


# --------------------------------------------------------------------------
# tools/experiments.py
# --------------------------------------------------------------------------


def test_the_tool_retags_reports_and_checks(tmp_path, capsys):
    import experiments as tool  # tools/ is on the path (conftest.py)

    nb = new_notebook()
    nb.cells = [copy.deepcopy(SETUP), experiment("x = 1"), experiment("y = 2"), check_cell("assert x == 1")]
    nb.cells[1].metadata["tags"] = [TAG, "keep-me"]  # wrong: a test reads x
    nb.cells[2].metadata["tags"] = ["keep-me"]  # missing the tag
    path = tmp_path / "demo.ipynb"
    path.write_text(tool.serialise(nb), encoding="utf-8")

    assert tool.main(["--check", str(path)]) == 1
    assert "test needs `x`" in capsys.readouterr().out
    assert "must run: " in tool.report(path) and "tags out of date" in tool.report(path)

    assert tool.main(["--tag", str(path)]) == 0
    retagged = read(path)
    assert retagged.cells[1].metadata["tags"] == ["keep-me"]
    assert retagged.cells[2].metadata["tags"] == ["keep-me", TAG]
    assert [c.id for c in retagged.cells] == [c.id for c in nb.cells]
    assert tool.main(["--check", str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert tool.main(["--tag", str(path)]) == 0 and path.read_text(encoding="utf-8") == text  # stable
    report = tool.report(path)
    assert "1 of 4 code cells are experiments" in report and "test needs `x`" in report
