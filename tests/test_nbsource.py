"""tools/nbsource.py: each solutions notebook has a percent-format twin in sources/, in sync, converted exactly."""

from __future__ import annotations

import json
import os

import nbformat
import nbsource
import pytest

NOTEBOOKS = sorted(nbsource.SOLUTIONS.glob("*/*.ipynb"))
IDS = [str(p.relative_to(nbsource.SOLUTIONS)) for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_every_solutions_notebook_has_its_source_in_sync(notebook):
    assert nbsource.out_of_sync(notebook, nbsource.source_of(notebook)) == ""


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_building_the_source_gives_the_notebook_byte_for_byte(notebook):
    source = nbsource.export(nbformat.read(notebook, as_version=4))
    assert nbsource.notebook_text(nbsource.build(source)) == notebook.read_text(encoding="utf-8")


def test_every_source_belongs_to_a_notebook():
    orphans = [p for p in nbsource.SOURCES.rglob("*.py") if not nbsource.notebook_of(p).exists()]
    assert not orphans, f"sources without a solutions notebook: {orphans}"


def _tiny() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title\n\nText with `code`.\n", id="intro"),
        nbformat.v4.new_code_cell("def f(x):\n    return x\n\n\n", id="answer",
                                  metadata={"nbgrader": {"solution": True, "grade_id": "answer"}}),
        nbformat.v4.new_code_cell("", id="empty", metadata={"tags": ["experiment"]}),
        nbformat.v4.new_raw_cell("raw text", id="raw"),
    ]
    return nb


def test_edge_cases_round_trip_and_an_edit_reaches_only_its_cell():
    nb = _tiny()
    text = nbsource.export(nb)
    assert '# %% id="answer" nbgrader={"grade_id": "answer", "solution": true}' in text
    assert nbsource.notebook_text(nbsource.build(text)) == nbsource.notebook_text(nb)
    edited = nbsource.build(text.replace("return x", "return 2 * x"))
    changed = [c.id for c, before in zip(edited.cells, nb.cells) if c != before]
    assert changed == ["answer"]


def test_bad_input_is_refused_with_the_reason():
    nb = _tiny()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    with pytest.raises(ValueError, match="strip outputs"):
        nbsource.export(nb)
    nb = _tiny()
    nb.cells[0].source = "%% looks like a cell marker"
    with pytest.raises(ValueError, match="starts with '# %%'"):
        nbsource.export(nb)
    head = nbsource.HEADER + json.dumps({"metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    with pytest.raises(ValueError, match="needs an id"):
        nbsource.build(head + "\n\n# %%\nx = 1\n")
    with pytest.raises(ValueError, match="must start with '# '"):
        nbsource.build(head + '\n\n# %% [markdown] id="m"\nnot a comment\n')


def test_sync_takes_the_side_edited_last(tmp_path, monkeypatch):
    monkeypatch.setattr(nbsource, "SOLUTIONS", tmp_path / "solutions")
    monkeypatch.setattr(nbsource, "SOURCES", tmp_path / "sources")
    monkeypatch.setattr(nbsource, "ROOT", tmp_path)
    notebook = tmp_path / "solutions" / "a" / "n.ipynb"
    notebook.parent.mkdir(parents=True)
    notebook.write_text(nbsource.notebook_text(_tiny()), encoding="utf-8")
    assert nbsource.main(["check"]) == 1  # no source yet
    assert nbsource.main(["sync"]) == 0 and nbsource.main(["check"]) == 0
    source = nbsource.source_of(notebook)
    source.write_text(source.read_text().replace("return x", "return 3 * x"), encoding="utf-8")
    later = notebook.stat().st_mtime + 10
    os.utime(source, (later, later))
    assert nbsource.main(["sync"]) == 0  # the source is newer: the notebook is rebuilt
    assert "return 3 * x" in nbformat.read(notebook, as_version=4).cells[1].source
    assert nbsource.main(["check"]) == 0
