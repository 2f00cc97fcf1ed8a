"""Widget code works on ipywidgets 7.7 (what Colab still ships) as well as 8 (this environment).

A throw-away environment borrows this one's packages but has ipywidgets 7.7
installed in front of them. Every solutions notebook that builds widgets is
executed there by a real kernel; an extra cell then moves every slider of
every ``interactive`` explorer and checks that the explorer's function ran
without error for the new value. (The browser test checks the front end with
ipywidgets 8.)

The cells run through a small driver on jupyter_client's blocking client, polled
in one-second slices, not through nbconvert: nbconvert's asyncio client can miss
the wake-up for a message that has arrived (pyzmq's edge-triggered socket
events; pyzmq#1558, #2173) and then sits idle until the cell's whole timeout has
passed before it reads the reply. With 300 s per cell that cost this test
5-15 minutes in about one run in three (the kernel idle, the output complete).
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


# Runs every code cell of a notebook in a kernel of this Python, stops at the first error, prints the last cell's
# output. argv: notebook path, seconds per cell.
RUN_CELLS = r'''
import sys, time
from queue import Empty

import nbformat
from jupyter_client.manager import start_new_kernel

nb = nbformat.read(sys.argv[1], as_version=4)
per_cell = float(sys.argv[2])
km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
try:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        msg_id, deadline, text, error = kc.execute(cell.source), time.monotonic() + per_cell, [], None
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=1)  # a blocking poll: a message that is there is always seen
            except Empty:
                if not km.is_alive():
                    sys.exit(f"cell {index}: the kernel died")
                if time.monotonic() > deadline:
                    sys.exit(f"cell {index}: no result after {per_cell:.0f} s:\n{cell.source[:500]}")
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                text.append(content["text"])
            elif kind == "error":
                error = "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if error:
            sys.exit(f"cell {index} raised:\n{cell.source[:500]}\n{error}")
    print("".join(text))
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
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
        [str(env_77 / "bin" / "python"), "-c", RUN_CELLS, str(path), "300"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "on ipywidgets 7.7" in proc.stdout, proc.stdout[-2000:]
