"""Widget code works on ipywidgets 7.7 (what Colab still ships) as well as 8 (this environment).

A throw-away environment borrows this one's packages but has ipywidgets 7.7
installed in front of them. Every solutions notebook that builds widgets is
executed there by a real kernel; an extra cell then moves every slider of
every ``interactive`` explorer and checks that the explorer's function ran
without error for the new value. (The browser test checks the front end with
ipywidgets 8.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nbformat
import pytest
from envtools import borrowing_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
WIDGET_NOTEBOOKS = sorted(
    p.relative_to(ROOT)
    for p in (ROOT / "solutions").glob("*/*.ipynb")
    if "ipywidgets" in p.read_text() or "explorer(" in p.read_text()
)

MOVE_EVERY_SLIDER = '''
import ipywidgets

assert ipywidgets.__version__.startswith("7.7"), ipywidgets.__version__
explorers = [w for w in list(ipywidgets.Widget.widgets.values()) if isinstance(w, ipywidgets.interactive)]
assert explorers, "the notebook built no interactive explorer"
moved = 0
for explorer in explorers:
    for control in explorer.kwargs_widgets:
        if isinstance(control, (ipywidgets.IntSlider, ipywidgets.FloatSlider)):
            for value in (control.max, control.min):
                explorer.result = "not run"
                control.value = value
                assert explorer.result != "not run", f"{control.description}={value}: the explorer raised"
                moved += 1
print(f"moved {moved} slider positions in {len(explorers)} explorer(s) on ipywidgets {ipywidgets.__version__}")
'''


@pytest.fixture(scope="module")
def env_77(tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("ipywidgets77") / "env"
    # This environment's packages, and the course itself (its editable install is a .pth, not followed).
    site = borrowing_env(env, also=(ROOT,))
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--target", site,
         "ipywidgets==7.7.5", "ipython_genutils==0.2.0"],
        check=True,
    )
    return env


@pytest.mark.skipif(not WIDGET_NOTEBOOKS, reason="no notebook builds widgets")
@pytest.mark.parametrize("notebook", WIDGET_NOTEBOOKS, ids=str)
def test_explorers_work_on_ipywidgets_7_7(env_77, notebook, tmp_path):
    nb = nbformat.read(ROOT / notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(MOVE_EVERY_SLIDER))
    path = tmp_path / notebook.name
    nbformat.write(nb, path)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(COURSE_FAST="1", PATH=f"{env_77 / 'bin'}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [str(env_77 / "bin" / "python"), "-m", "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=300", "--output", str(path), str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    executed = nbformat.read(path, as_version=4)
    last = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert "on ipywidgets 7.7" in last, last
