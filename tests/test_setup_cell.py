"""Every notebook's setup cell: installs the course on Colab only, then calls course_lib.setup()."""

from __future__ import annotations

import subprocess
import sys
import types

import harness
import links
import pytest
from harness import ROOT

NOTEBOOKS = [
    (folder, a, n)
    for folder in ("solutions", "notebooks")
    for a in harness.assignments()
    for n in harness.notebook_names(a)
]


def _setup_source(folder: str, assignment: str, name: str) -> str:
    nb = harness.read(ROOT / folder / assignment / name)
    cells = [c for c in nb.cells if c.get("id") == "setup"]
    assert len(cells) == 1, "each notebook has exactly one cell with id 'setup'"
    assert harness.nbgrader_meta(cells[0]).get("locked"), "the setup cell is read-only"
    return cells[0].source


@pytest.mark.parametrize(("folder", "assignment", "name"), NOTEBOOKS)
@pytest.mark.parametrize("on_colab", [False, True])
def test_setup_cell_installs_only_on_colab(folder, assignment, name, on_colab, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    namespace: dict = {}
    exec(compile(_setup_source(folder, assignment, name), "setup-cell", "exec"), namespace)
    if on_colab:
        assert len(calls) == 1
        cmd, kwargs = calls[0]
        assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and kwargs.get("check") is True
        assert f"genai-course @ git+{links.repository_url()}" in cmd
    else:
        assert calls == []
    assert "course_lib" in capsys.readouterr().out  # setup() printed its status line
    assert namespace["session"].seed == 0
